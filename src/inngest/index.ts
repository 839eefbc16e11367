/**
 * The `inngest` engine's entry, loaded with `import()` only when that engine is selected (serve, reviewer commands,
 * doctor), so the local engine never loads the Inngest SDK. One entry keeps the bundle to one set of lazy chunks.
 */
export { startInngestEngine } from "./startInngestEngine.js";
export type { StartInngestEngineOptions, StartedInngestEngine } from "./startInngestEngine.js";
export { sendDecisionEvent } from "./sendDecision.js";
export { checkInngestEngine } from "./doctorChecks.js";
export { checkInngestConfig, SERVE_PATH } from "./settings.js";
