/** The JSON depth limit lives in the domain (services check it too); routes take it from here. */
export { MAX_JSON_DEPTH, TOO_DEEP_MESSAGE, exceedsJsonDepth, refineJsonDepth } from "../domain/json-limits";
