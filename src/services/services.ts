import { drizzle } from "drizzle-orm/d1";
import { AlertsService } from "./alerts-service";
import { AuthService } from "./auth-service";
import { CostsService } from "./costs-service";
import { CustomersService } from "./customers-service";
import { DlqService } from "./dlq-service";
import { InsightsService } from "./insights-service";
import { MetricsService } from "./metrics-service";
import { OpenMetricsService } from "./openmetrics-service";
import { PoolsService } from "./pools-service";
import { PricingService } from "./pricing-service";
import { RateLimitService } from "./rate-limit-service";
import { RunTypesService } from "./run-types-service";
import { RunsService } from "./runs-service";
import { SecretsService } from "./secrets-service";

export interface Services {
  auth: AuthService;
  customers: CustomersService;
  runTypes: RunTypesService;
  runs: RunsService;
  dlq: DlqService;
  pricing: PricingService;
  costs: CostsService;
  secrets: SecretsService;
  rateLimit: RateLimitService;
  alerts: AlertsService;
  metrics: MetricsService;
  insights: InsightsService;
  openMetrics: OpenMetricsService;
  pools: PoolsService;
}

/** Built once per request and put on the Hono context: routes use these, never bindings. */
export function buildServices(env: Env, waitUntil: (work: Promise<unknown>) => void): Services {
  const db = drizzle(env.DB);
  const rateLimit = new RateLimitService(env);
  const customers = new CustomersService(env, db, rateLimit);
  const secrets = new SecretsService(env, db);
  const runTypes = new RunTypesService(db, customers, secrets);
  const pricing = new PricingService(env, db);
  return {
    auth: new AuthService(env, db),
    customers,
    runTypes,
    runs: new RunsService(env, db, customers, runTypes, pricing, secrets, waitUntil),
    dlq: new DlqService(env, db),
    pricing,
    costs: new CostsService(env),
    secrets,
    rateLimit,
    alerts: new AlertsService(db),
    metrics: new MetricsService(env),
    insights: new InsightsService(env),
    openMetrics: new OpenMetricsService(env),
    pools: new PoolsService(env, db),
  };
}
