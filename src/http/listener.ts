import type { IncomingMessage, RequestListener, Server, ServerResponse } from "node:http";
import { createRequire } from "node:module";
import type { AddressInfo } from "node:net";
import type { DecisionInput, GovernanceEngine } from "../governance/engine.js";
import { NotFoundError } from "../errors.js";
import { decideRef } from "../governance/review.js";
import type { WebhookVerifier } from "./webhook.js";
import { describeHalt } from "../governance/haltState.js";
import { newHaltFact, recordHaltEverywhere } from "../governance/halt.js";

/**
 * node:http, loaded when the listener starts, through require on purpose: an ESM import of node:http builds a facade
 * over all its exports, whose lazy getters load Node's bundled undici (fetch, WebSocket, web streams) — about 25 ms of
 * every gateway start, for nothing; and loading it at all (3–6 ms) waits until after `initialize` is answered.
 */
function loadHttp(): typeof import("node:http") {
  return createRequire(import.meta.url)("node:http") as typeof import("node:http");
}

export const MAX_WEBHOOK_BODY_BYTES = 64 * 1024;

export interface ListenerDeps {
  engine: GovernanceEngine;
  verifier: WebhookVerifier;
  dataDir: string;
  version: string;
  log: (line: string) => void;
  /** This gateway's instance (a halt reaching an empty data dir is recorded there). */
  instance?: string;
  /** Extra routes by exact path (the Inngest serve handler mounts on `/api/inngest`). */
  routes?: Record<string, RequestListener>;
  /** Each upstream's state, shown by `GET /` (issue 10). */
  upstreams?: () => { name: string; ok: boolean; error?: string; tools: number }[];
}

/** Sends a JSON answer that no cache keeps. */
export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text), "cache-control": "no-store", ...headers });
  res.end(text);
}

/** Reads a request body up to `limit` bytes; a larger one resolves "too-large" without buffering it. */
export function readBody(req: IncomingMessage, limit: number): Promise<string | "too-large"> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers["content-length"]);
    if (Number.isFinite(declared) && declared > limit) {
      resolve("too-large");
      req.resume();
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) tooLarge = true;
      else chunks.push(chunk);
    });
    req.on("end", () => resolve(tooLarge ? "too-large" : Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}

/** Applies a decision here if this gateway holds the ref, otherwise wherever in the data dir it lives. */
export async function applyDecision(deps: Pick<ListenerDeps, "engine" | "dataDir">, input: DecisionInput) {
  const local = await deps.engine.decide(input);
  if (local.status !== "not_found") return local;
  return (await decideRef(deps.dataDir, input)).outcome;
}

/** The embedded HTTP listener: health on `/`, the signed approval webhook, and any mounted routes. */
export function createRequestHandler(deps: ListenerDeps): RequestListener {
  return (req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    const mounted = path ? deps.routes?.[path] : undefined;
    if (mounted) return mounted(req, res);
    if (path === "/" && (req.method === "GET" || req.method === "HEAD")) {
      const halt = deps.engine.haltState();
      const problem = deps.engine.problem?.();
      return sendJson(res, 200, {
        status: "ATLAS Governance Gateway Running",
        version: deps.version,
        engine: deps.engine.name,
        pending: deps.engine.pending().length,
        ...(problem ? { problem } : {}),
        halted: halt?.halted ? { by: halt.by, at: halt.at, ...(halt.reason ? { reason: halt.reason } : {}), message: describeHalt(halt) } : false,
        ...(deps.upstreams ? { upstreams: deps.upstreams() } : {}),
      });
    }
    if (path === "/webhook/approval") {
      if (req.method !== "POST") return sendJson(res, 405, { error: "use POST" });
      void handleWebhook(deps, req, res).catch((error: Error) => {
        deps.log(`webhook: ${error.message}`);
        if (!res.headersSent) sendJson(res, 500, { error: "internal error" });
      });
      return;
    }
    if (path === "/webhook/halt") {
      if (req.method !== "POST") return sendJson(res, 405, { error: "use POST" });
      void handleHalt(deps, req, res).catch((error: Error) => {
        deps.log(`halt webhook: ${error.message}`);
        if (!res.headersSent) sendJson(res, 500, { error: "internal error" });
      });
      return;
    }
    sendJson(res, 404, { error: `no route ${req.method} ${path}` });
  };
}

async function handleWebhook(deps: ListenerDeps, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const body = await readBody(req, MAX_WEBHOOK_BODY_BYTES);
  if (body === "too-large") return sendJson(res, 413, { error: `body larger than ${MAX_WEBHOOK_BODY_BYTES} bytes` });
  const check = deps.verifier.check(body, req.headers);
  if (!check.ok) return sendJson(res, check.status, { error: check.error });
  const { event_id: ref, decision, reason } = check.body;
  // A v1a signature names its signer: that key's id is the reviewer, whatever the body claims.
  const reviewer = check.signer ?? check.body.reviewer;
  // How the reviewer was authenticated, as the page and CLI record it: a v1a key proves who signed; an HMAC
  // signature proves only that the sender holds the shared secret (the body's reviewer is its claim).
  const auth = check.signer ? "webhook-v1a" : "webhook-hmac";
  let outcome;
  try {
    outcome = await applyDecision(deps, { ref, decision, reviewer: reviewer ?? "webhook", auth, ...(reason ? { reason } : {}) });
  } catch (error) {
    if (error instanceof NotFoundError) return sendJson(res, 404, { error: `unknown ref ${ref}` });
    // Not "already decided": nothing was recorded (an unwritable ledger, a busy instance). The sender may retry the
    // same message, so its id is not kept as a replay.
    deps.verifier.forget(check.id);
    deps.log(`webhook: could not record the decision for ${ref}: ${(error as Error).message}`);
    return sendJson(res, 503, { error: `the decision could not be recorded, nothing changed; try again: ${(error as Error).message}`, ref }, { "retry-after": "5" });
  }
  if (outcome.status === "not_found") return sendJson(res, 404, { error: `unknown ref ${ref}` });
  if (outcome.status === "refused") return sendJson(res, 409, { error: outcome.reason, ref, status: outcome.view.status });
  if (outcome.status === "already_decided") {
    return sendJson(res, 409, { error: `${ref} is already ${outcome.view.status}; nothing changed`, ref, status: outcome.view.status });
  }
  deps.log(`webhook: ${ref} ${decision} by ${reviewer ?? "webhook"}`);
  const approvals = outcome.view.approvalsRequired ? { approvals: { count: outcome.view.approvals?.length ?? 0, required: outcome.view.approvalsRequired } } : {};
  sendJson(res, 200, { ref, decision, status: outcome.view.status, ...approvals });
}

/**
 * The stop button over HTTP: a Standard Webhooks–signed `{"action": "halt", "reason": "…", "reviewer": "…"}` or
 * `{"action": "resume"}`, recorded for the whole data dir exactly as the `halt` / `resume` commands do.
 */
async function handleHalt(deps: ListenerDeps, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const body = await readBody(req, MAX_WEBHOOK_BODY_BYTES);
  if (body === "too-large") return sendJson(res, 413, { error: `body larger than ${MAX_WEBHOOK_BODY_BYTES} bytes` });
  const check = deps.verifier.checkHalt(body, req.headers);
  if (!check.ok) return sendJson(res, check.status, { error: check.error });
  const { action, reason } = check.body;
  const reviewer = check.signer ?? check.body.reviewer;
  const current = deps.engine.haltState();
  if (action === "resume" && !current?.halted) return sendJson(res, 409, { error: "the gateway is not halted; nothing changed", halted: false });
  const fact = newHaltFact(action === "halt", reviewer ?? "webhook", reason, current);
  const delivery = await recordHaltEverywhere(deps.dataDir, fact, deps.instance ?? "main");
  deps.log(`webhook: ${action} by ${fact.by}`);
  sendJson(res, 200, { halted: fact.halted, by: fact.by, at: fact.at, ...(fact.reason ? { reason: fact.reason } : {}), instances: [...delivery.gateways, ...delivery.ledgers] });
}

/**
 * Starts listening. A busy port is reported and resolves undefined: the MCP server keeps running without it.
 */
export function startListener(handler: RequestListener, host: string, port: number, log: (line: string) => void): Promise<{ server: Server; port: number } | undefined> {
  const server = loadHttp().createServer(handler);
  server.keepAliveTimeout = 5000;
  return new Promise((resolve) => {
    server.once("error", (error: NodeJS.ErrnoException) => {
      log(
        error.code === "EADDRINUSE"
          ? `listener: ${host}:${port} is in use (another atlas-gateway?). The webhook is unavailable for this gateway; set --port or ATLAS_PORT (0 = any free port). Reviewer commands still work.`
          : `listener: cannot listen on ${host}:${port}: ${error.message}. The webhook is unavailable; reviewer commands still work.`,
      );
      resolve(undefined);
    });
    server.listen(port, host, () => {
      server.unref();
      resolve({ server, port: (server.address() as AddressInfo).port });
    });
  });
}
