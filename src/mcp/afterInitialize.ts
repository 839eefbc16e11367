/**
 * What `runGateway` needs only once the agent's `initialize` has been answered: the instance lock and control socket,
 * the engine and its ledger, the evaluator, the reviewer-facing listener, webhook credentials and notifications.
 * `serve.ts` imports this module then, so none of it is loaded, compiled or evaluated (zod schemas, node:http's
 * listener, standardwebhooks) before the answer (issue 12: spawn → `initialize` within 1.2x of a bare SDK server).
 * Part of serve.ts's assembly, which is why it may import from every layer.
 */
export { lockWhenFree, readLock, serveControl, tryLock } from "../governance/instance.js";
export { createRequestHandler, startListener } from "../http/listener.js";
export { DeferredEngine } from "../governance/deferredEngine.js";
export { createReviewRoutes } from "../http/reviewRoutes.js";
export { LocalEngine } from "../governance/localEngine.js";
export { renderJson } from "../renderJson.js";
export { createEvaluatorFromConfig } from "../risk/setup.js";
export { loadOrCreateWebhookSecret, WebhookVerifier } from "../http/webhook.js";
export { approvalKeysFor, migrateApprovalKeys } from "../http/approvalKeys.js";
export { readHaltFile, watchHaltFile } from "../governance/halt.js";
export { Notifier } from "../notify/notifier.js";
export { callEvent, haltEvent } from "../notify/notificationEvent.js";
