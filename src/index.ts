/**
 * atlas-gateway as a library: build a governed MCP gateway in your own process, verify ledgers, score calls.
 * The CLI (`npx atlas-gateway`) is a thin shell over these.
 */
export { loadConfig, configSchema, parseDuration, defaultDataDir } from "./config.js";
export type { GatewayConfig, UpstreamConfig, LoadConfigOptions, ConfigFlags } from "./config.js";
export { AtlasError, ConfigError, ConflictError, LedgerError, NotFoundError } from "./errors.js";
export type { Decision, DecideOutcome, DecisionInput, Executor, GovernanceEngine, GovernedCall } from "./governance/engine.js";
export { createGateway, STATUS_TOOL } from "./mcp/gateway.js";
export type { Gateway, GatewayDeps } from "./mcp/gateway.js";
export { LocalEngine } from "./governance/localEngine.js";
export type { LocalEngineOptions } from "./governance/localEngine.js";
export { Ledger, scanLedger, hashRecord } from "./ledger/ledger.js";
export type { LedgerRecord, LedgerScan, LedgerProblem, LedgerSink } from "./ledger/ledger.js";
export type { RequestStatus, RequestView } from "./governance/requests.js";
export { assessRisk, createRiskEvaluator, createRulesEvaluator, classify, routeAssessment, denialReason, baselineScore } from "./risk/assess.js";
export type { Assessment, RiskEvaluator, RiskEvaluatorParts, RiskInput, RiskPolicy, Route } from "./risk/assess.js";
export { compilePolicy, parseJsonPath } from "./risk/policy.js";
export type { ArgCondition, CompiledPolicy, FiredRule, PolicyCall, PolicyResult, PolicyRule, PolicySource, RuleEffect, Verdict } from "./risk/policy.js";
export { createHttpEvaluator, createOpenAiEvaluator, createModelEvaluator, withAnswerCache, ModelEvaluatorError } from "./risk/modelEvaluators.js";
export type { ModelAnswer, ModelEvaluator, ModelRequest } from "./risk/modelEvaluators.js";
export { createSelfProtection } from "./risk/selfProtection.js";
export type { ProtectedPath, SelfProtectionHit, SelfProtectionOptions } from "./risk/selfProtection.js";
export { ToolPinTable, hashToolDefinition, pinnableDefinition } from "./risk/toolPins.js";
export type { PinEntry, PinLookup, PinStatus } from "./risk/toolPins.js";
export { createEvaluatorFromConfig, protectedPathsFor } from "./risk/setup.js";
export type { RiskConfig, EvaluatorConfig } from "./risk/config.js";
export { UpstreamSet } from "./mcp/upstreams.js";
export type { UpstreamSource, CatalogueEntry } from "./mcp/upstreams.js";
export { demoUpstream } from "./demo/tools.js";
export { runGateway } from "./mcp/serve.js";
export type { RunningGateway, ServeIO } from "./mcp/serve.js";
export { WebhookVerifier, signWebhook, webhookSecretPath } from "./http/webhook.js";
export { maskSecrets } from "./mask.js";
export { renderJson } from "./renderJson.js";
export { VERSION } from "./version.js";
