// Swagger UI, served by the Worker from its own static assets (swagger-ui-dist), on the same
// OpenAPI document the API serves: nothing is fetched from another origin.
window.ui = SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true, validatorUrl: "none" });
