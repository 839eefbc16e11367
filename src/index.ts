/**
 * atlas-gateway as a library: build a governed MCP gateway in your own process, verify ledgers, score calls.
 * The CLI (`npx atlas-gateway`) is a thin shell over these.
 */
export { loadConfig, configSchema, parseDuration, defaultDataDir } from "./config.js";
export type { GatewayConfig, UpstreamConfig, LoadConfigOptions, ConfigFlags } from "./config.js";
export { AtlasError, ConfigError, ConflictError, LedgerError, NotFoundError } from "./errors.js";
export type { Decision, DecideOutcome, DecisionInput, Executor, GovernanceEngine, GovernedCall } from "./engine.js";
export { createGateway, STATUS_TOOL } from "./gateway.js";
export type { Gateway, GatewayDeps } from "./gateway.js";
export { LocalEngine } from "./localEngine.js";
export type { LocalEngineOptions } from "./localEngine.js";
export { Ledger, scanLedger, hashRecord } from "./ledger.js";
export type { LedgerRecord, LedgerScan, LedgerProblem, LedgerSink } from "./ledger.js";
export type { RequestStatus, RequestView, Assessment } from "./requests.js";
export { assessRisk, createRiskEvaluator, createRulesEvaluator, classify, routeAssessment, denialReason, baselineScore } from "./risk.js";
export type { RiskEvaluator, RiskEvaluatorParts, RiskInput, RiskPolicy, Route } from "./risk.js";
export { compilePolicy, parseJsonPath } from "./policy.js";
export type { ArgCondition, CompiledPolicy, FiredRule, PolicyCall, PolicyResult, PolicyRule, PolicySource, RuleEffect, Verdict } from "./policy.js";
export { createHttpEvaluator, createOpenAiEvaluator, createModelEvaluator, withAnswerCache, ModelEvaluatorError } from "./modelEvaluators.js";
export type { ModelAnswer, ModelEvaluator, ModelRequest } from "./modelEvaluators.js";
export { createSelfProtection } from "./selfProtection.js";
export type { ProtectedPath, SelfProtectionHit, SelfProtectionOptions } from "./selfProtection.js";
export { ToolPinTable, hashToolDefinition, pinnableDefinition } from "./toolPins.js";
export type { PinEntry, PinLookup, PinStatus } from "./toolPins.js";
export { createEvaluatorFromConfig, protectedPathsFor } from "./riskSetup.js";
export type { RiskConfig, EvaluatorConfig } from "./riskConfig.js";
export { UpstreamSet } from "./upstreams.js";
export type { UpstreamSource, CatalogueEntry } from "./upstreams.js";
export { demoUpstream } from "./demoTools.js";
export { runGateway } from "./serve.js";
export type { RunningGateway, ServeIO } from "./serve.js";
export { WebhookVerifier, signWebhook } from "./webhook.js";
export { maskSecrets } from "./mask.js";
export { VERSION } from "./version.js";
