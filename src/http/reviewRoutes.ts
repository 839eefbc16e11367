import { createHash } from "node:crypto";
import type { IncomingMessage, RequestListener, ServerResponse } from "node:http";
import type { GovernanceEngine } from "../governance/engine.js";
import { REF_PATTERN } from "../governance/governanceLog.js";
import { currentHalt, newHaltFact, recordHaltEverywhere } from "../governance/halt.js";
import { describeHalt } from "../governance/haltState.js";
import { isWellFormedText } from "../argumentBounds.js";
import { maskSecrets } from "../mask.js";
import { AtlasError, ConflictError, NotFoundError } from "../errors.js";
import { applyDecision, readBody, sendJson } from "./listener.js";
import { REVIEW_PAGE_CSS, REVIEW_PAGE_HTML, REVIEW_PAGE_JS } from "./reviewPage.js";
import { readRefHistory, ReviewFeed, searchRequests, type ReviewSnapshot } from "./reviewFeed.js";
import { csrfMatches, listReviewers, reviewerForKey, sessionFor, signIn, signOut, type Reviewer, type ReviewSession } from "./reviewers.js";

/** What the review routes need: the engine (to record reveals), the data dir whose ledgers and reviewers they serve. */
export interface ReviewRoutesDeps {
  engine: GovernanceEngine;
  dataDir: string;
  /** This gateway's instance: a halt pressed on a data dir with no ledger yet is recorded there. */
  instance?: string;
  log: (line: string) => void;
  now?: () => Date;
  /** How often the live inbox checks the data dir's ledgers for changes (ms). */
  pollMs?: number;
}

/** Largest review API body: edited arguments of a big call, well under the listener's own limits. */
export const MAX_REVIEW_BODY_BYTES = 256 * 1024;

/** Every review response: no framing, no sniffing, no referrer (the sign-in token lives in a URL fragment), no cache. */
const SECURITY_HEADERS = {
  "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
  "x-frame-options": "DENY",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "cache-control": "no-store",
};

/**
 * The session cookie's name carries a digest of the data dir: cookies ignore ports, so two gateways on one host with
 * different data dirs (different reviewers) must not overwrite each other's sessions.
 */
export function sessionCookieName(dataDir: string): string {
  return `atlas_review_${createHash("sha256").update(dataDir).digest("hex").slice(0, 10)}`;
}

function readCookie(req: IncomingMessage, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? "").split(";")) {
    const eq = part.indexOf("=");
    if (eq === -1 || part.slice(0, eq).trim() !== name) continue;
    try {
      return decodeURIComponent(part.slice(eq + 1).trim());
    } catch {
      return undefined; // a malformed %-escape is no session (it threw into a 500 before)
    }
  }
  return undefined;
}

function sendStatic(res: ServerResponse, type: string, body: string): void {
  res.writeHead(200, { ...SECURITY_HEADERS, "content-type": type, "content-length": Buffer.byteLength(body) });
  res.end(body);
}

function sendError(res: ServerResponse, status: number, error: string): void {
  if (!res.headersSent) sendJson(res, status, { error });
}

/**
 * A state-changing request must come from the page itself: JSON (a cross-site form cannot send it without a CORS
 * preflight, which is never granted), and, when the browser says where it comes from, from this very origin.
 */
function sameOriginJson(req: IncomingMessage): string | undefined {
  if (!(req.headers["content-type"] ?? "").toLowerCase().startsWith("application/json")) return "send JSON (content-type: application/json)";
  const site = req.headers["sec-fetch-site"];
  if (typeof site === "string" && site !== "same-origin" && site !== "none") return "cross-site request refused";
  const origin = req.headers.origin;
  const host = req.headers.host ?? "";
  // behind a TLS-terminating proxy the page's origin is https:// on the same host
  if (typeof origin === "string" && origin !== `http://${host}` && origin !== `https://${host}`) return "cross-origin request refused";
  return undefined;
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown> | string> {
  const body = await readBody(req, MAX_REVIEW_BODY_BYTES);
  if (body === "too-large") return `body larger than ${MAX_REVIEW_BODY_BYTES} bytes`;
  try {
    const parsed = JSON.parse(body) as unknown;
    return parsed && typeof parsed === "object" && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : "body must be a JSON object";
  } catch {
    return "body is not valid JSON";
  }
}

/**
 * The reviewer edits the masked arguments they were shown: a value they left exactly as shown where masking changed
 * it keeps the original, so approving with edits never needs a secret revealed, nor replaces it with the mask. The
 * comparison is with what `maskSecrets` showed, whatever its placeholder looks like.
 */
export function restoreMasked(edited: unknown, original: unknown, shown: unknown = maskSecrets(original)): unknown {
  if (original !== undefined && !isContainer(edited) && sameJson(edited, shown) && !sameJson(shown, original)) return original;
  if (Array.isArray(edited)) {
    return edited.map((item, i) => restoreMasked(item, Array.isArray(original) ? original[i] : undefined, Array.isArray(shown) ? shown[i] : undefined));
  }
  if (isContainer(edited)) {
    const from = (value: unknown) => (isContainer(value) && !Array.isArray(value) ? (value as Record<string, unknown>) : {});
    const source = from(original);
    const seen = from(shown);
    return Object.fromEntries(Object.entries(edited as Record<string, unknown>).map(([key, value]) => [
      key,
      Object.hasOwn(source, key) ? restoreMasked(value, source[key], seen[key]) : value,
    ]));
  }
  return edited;
}

const isContainer = (value: unknown): value is object => value !== null && typeof value === "object";
const sameJson = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

const publicReviewer = (reviewer: Reviewer) => ({ id: reviewer.id, ...(reviewer.name ? { name: reviewer.name } : {}), role: reviewer.role });

/**
 * The review page (issue 9): `GET /review` and its JSON API under `/review/api/`, plus `GET /api/pending` for
 * integrations. Nothing is served to anyone who has not signed in with a reviewer's one-time link; viewers see,
 * approvers decide; every POST carries the session's CSRF token.
 */
export function createReviewRoutes(deps: ReviewRoutesDeps): Record<string, RequestListener> {
  const now = deps.now ?? (() => new Date());
  const cookieName = sessionCookieName(deps.dataDir);
  const feed = new ReviewFeed(deps.dataDir, deps.pollMs ?? 200);

  const sessionOf = (req: IncomingMessage): { session: ReviewSession; secret: string } | undefined => {
    const secret = readCookie(req, cookieName);
    const session = sessionFor(deps.dataDir, secret, now());
    return session && secret ? { session, secret } : undefined;
  };

  /** Wraps a handler: errors become JSON, never a stack trace or a hung request. */
  const guarded = (handler: (req: IncomingMessage, res: ServerResponse) => Promise<void> | void): RequestListener => (req, res) => {
    void Promise.resolve()
      .then(() => handler(req, res))
      .catch((error: Error) => {
        if (error instanceof NotFoundError) return sendError(res, 404, error.message);
        if (error instanceof ConflictError) return sendError(res, 409, error.message);
        if (error instanceof AtlasError) return sendError(res, 503, error.message); // e.g. an unreadable reviewer store
        deps.log(`review page: ${error.message}`);
        sendError(res, 500, "internal error");
      });
  };

  /** A signed-in reviewer (and, for POST, a same-origin JSON request with the CSRF token), or an error sent. */
  const authenticate = (req: IncomingMessage, res: ServerResponse, options: { method: "GET" | "POST"; role?: "approver" }): { session: ReviewSession; secret: string } | undefined => {
    if (req.method !== options.method && !(options.method === "GET" && req.method === "HEAD")) {
      sendJson(res, 405, { error: `use ${options.method}` });
      return undefined;
    }
    const auth = sessionOf(req);
    if (!auth) {
      sendJson(res, 401, { error: "sign in with your reviewer link (atlas-gateway reviewers link <id>)" });
      return undefined;
    }
    if (options.method === "POST") {
      const refused = sameOriginJson(req);
      if (refused) {
        sendJson(res, 403, { error: refused });
        return undefined;
      }
      if (!csrfMatches(auth.session, typeof req.headers["x-atlas-csrf"] === "string" ? req.headers["x-atlas-csrf"] : undefined)) {
        sendJson(res, 403, { error: "missing or wrong CSRF token (reload the page)" });
        return undefined;
      }
    }
    if (options.role === "approver" && auth.session.reviewer.role !== "approver") {
      sendJson(res, 403, { error: `${auth.session.reviewer.id} is a viewer: only approvers decide` });
      return undefined;
    }
    return auth;
  };

  const page: RequestListener = (req, res) => {
    if (req.method !== "GET" && req.method !== "HEAD") return sendJson(res, 405, { error: "use GET" });
    sendStatic(res, "text/html; charset=utf-8", REVIEW_PAGE_HTML);
  };
  const routes: Record<string, RequestListener> = {
    "/review": page,
    "/review/": page,
    "/review/app.js": (_req, res) => sendStatic(res, "text/javascript; charset=utf-8", REVIEW_PAGE_JS),
    "/review/app.css": (_req, res) => sendStatic(res, "text/css; charset=utf-8", REVIEW_PAGE_CSS),

    "/review/api/session": guarded((req, res) => {
      const auth = sessionOf(req);
      if (!auth) return sendJson(res, 200, { signedIn: false, reviewersConfigured: listReviewers(deps.dataDir).length > 0 });
      // no CSRF token here: it is handed out once, at sign-in (a cookie that reached another port must not fetch it)
      sendJson(res, 200, { signedIn: true, reviewer: publicReviewer(auth.session.reviewer), expiresAt: auth.session.expiresAt });
    }),

    "/review/api/signin": guarded(async (req, res) => {
      if (req.method !== "POST") return sendJson(res, 405, { error: "use POST" });
      const refused = sameOriginJson(req);
      if (refused) return sendJson(res, 403, { error: refused });
      const body = await readJson(req);
      if (typeof body === "string") return sendJson(res, 400, { error: body });
      const token = typeof body.token === "string" ? body.token : "";
      const session = token ? signIn(deps.dataDir, token, now()) : undefined;
      if (!session) return sendJson(res, 401, { error: "this sign-in link is unknown, already used or expired: ask for a new one (atlas-gateway reviewers link <id>)" });
      const maxAge = Math.max(0, Math.round((Date.parse(session.expiresAt) - now().getTime()) / 1000));
      const secure = req.headers["x-forwarded-proto"] === "https" ? "; Secure" : "";
      res.setHeader("set-cookie", `${cookieName}=${encodeURIComponent(session.secret)}; HttpOnly; SameSite=Strict; Path=/; Max-Age=${maxAge}${secure}`);
      deps.log(`review page: ${session.reviewer.id} signed in`);
      sendJson(res, 200, { signedIn: true, reviewer: publicReviewer(session.reviewer), csrf: session.csrf, expiresAt: session.expiresAt });
    }),

    "/review/api/signout": guarded((req, res) => {
      const auth = authenticate(req, res, { method: "POST" });
      if (!auth) return;
      signOut(deps.dataDir, auth.secret);
      res.setHeader("set-cookie", `${cookieName}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0`);
      sendJson(res, 200, { signedIn: false });
    }),

    "/review/api/pending": guarded((req, res) => {
      if (!authenticate(req, res, { method: "GET" })) return;
      sendJson(res, 200, feed.snapshot());
    }),

    "/review/api/events": guarded((req, res) => {
      if (!authenticate(req, res, { method: "GET" })) return;
      res.writeHead(200, { ...SECURITY_HEADERS, "content-type": "text/event-stream; charset=utf-8", connection: "keep-alive" });
      const send = (snapshot: ReviewSnapshot) => {
        // a session that expired or a reviewer removed meanwhile: the stream stops and the page asks to sign in
        if (!sessionOf(req)) {
          res.end("event: signedout\ndata: {}\n\n");
          return;
        }
        res.write(`event: snapshot\ndata: ${JSON.stringify(snapshot)}\n\n`);
      };
      res.write("retry: 1000\n\n");
      send(feed.snapshot());
      const unsubscribe = feed.subscribe(send);
      // the heartbeat also ends the stream of a session that expired (or whose reviewer was removed) while idle
      const heartbeat = setInterval(() => (sessionOf(req) ? res.write(": keep-alive\n\n") : res.end("event: signedout\ndata: {}\n\n")), 15_000);
      heartbeat.unref();
      const stop = () => {
        clearInterval(heartbeat);
        unsubscribe();
      };
      req.on("close", stop);
      res.on("close", stop);
    }),

    "/review/api/decide": guarded(async (req, res) => {
      const auth = authenticate(req, res, { method: "POST", role: "approver" });
      if (!auth) return;
      const body = await readJson(req);
      if (typeof body === "string") return sendJson(res, 400, { error: body });
      const ref = String(body.ref ?? "");
      if (!REF_PATTERN.test(ref)) return sendJson(res, 400, { error: "ref: expected evt_ followed by 8 lowercase hex digits" });
      if (body.decision !== "approved" && body.decision !== "denied") return sendJson(res, 400, { error: "decision: expected approved or denied" });
      const reason = typeof body.reason === "string" ? body.reason.trim() : "";
      if (body.decision === "denied" && !reason) return sendJson(res, 400, { error: "reason: a denial needs a reason (the agent and the audit trail see it)" });
      if (reason.length > 2000) return sendJson(res, 400, { error: "reason: at most 2000 characters" });
      let args: Record<string, unknown> | undefined;
      if (body.args !== undefined) {
        if (body.decision !== "approved") return sendJson(res, 400, { error: "args: only an approval can edit the arguments" });
        if (!body.args || typeof body.args !== "object" || Array.isArray(body.args)) return sendJson(res, 400, { error: "args: the edited arguments must be a JSON object" });
        const original = feed.find(ref);
        if (!original) return sendJson(res, 404, { error: `unknown ref ${ref}` });
        // each approver of a two-person call approves the same arguments: an edit by one would not be what the others saw
        if (original.view.approvalsRequired) return sendJson(res, 400, { error: `args: ${ref} needs ${original.view.approvalsRequired} approvers, who must approve the same arguments: approve or deny it as it is` });
        const restored = restoreMasked(body.args, original.view.args) as Record<string, unknown>;
        if (JSON.stringify(restored) !== JSON.stringify(original.view.args)) args = restored;
      }
      const reviewer = auth.session.reviewer.id;
      const outcome = await applyDecision(deps, { ref, decision: body.decision, reviewer, auth: "review-page", ...(reason ? { reason } : {}), ...(args ? { args } : {}) });
      if (outcome.status === "not_found") return sendJson(res, 404, { error: `unknown ref ${ref}` });
      if (outcome.status === "already_decided") return sendJson(res, 409, { error: `${ref} is already ${outcome.view.status}; nothing changed`, ref, status: outcome.view.status });
      // the two-person rule: the same reviewer approving twice changes nothing, and the page says why
      if (outcome.status === "refused") return sendJson(res, 409, { error: outcome.reason, ref, status: outcome.view.status });
      deps.log(`review page: ${ref} ${body.decision}${args ? " with edited arguments" : ""} by ${reviewer}`);
      feed.poke();
      const approvals = outcome.view.approvalsRequired
        ? { approvals: { count: outcome.view.approvals?.length ?? 0, required: outcome.view.approvalsRequired, by: (outcome.view.approvals ?? []).map((approval) => approval.reviewer) } }
        : {};
      sendJson(res, 200, { ref, decision: body.decision, status: outcome.view.status, edited: args !== undefined, ...approvals });
    }),

    /**
     * The stop button (issue 9 items 1 and 4; EU AI Act Art. 14(4)(e)): `{"action": "halt", "reason": "…"}` or
     * `{"action": "resume"}`, recorded for the whole data dir exactly as `atlas-gateway halt` / `resume` do, under the
     * signed-in approver's id.
     */
    "/review/api/halt": guarded(async (req, res) => {
      const auth = authenticate(req, res, { method: "POST", role: "approver" });
      if (!auth) return;
      const body = await readJson(req);
      if (typeof body === "string") return sendJson(res, 400, { error: body });
      if (body.action !== "halt" && body.action !== "resume") return sendJson(res, 400, { error: "action: expected halt or resume" });
      const reason = typeof body.reason === "string" ? body.reason.trim() : "";
      if (body.action === "halt" && !reason) return sendJson(res, 400, { error: "reason: a halt needs a reason (agents, reviewers and the audit trail see it)" });
      if (reason.length > 2000 || !isWellFormedText(reason)) return sendJson(res, 400, { error: "reason: at most 2000 characters of valid Unicode" });
      const engineState = deps.engine.haltState();
      const current = currentHalt(deps.dataDir, engineState ? [engineState] : []);
      if (body.action === "halt" && current?.halted) return sendJson(res, 409, { error: `already halted: ${describeHalt(current)}; nothing changed`, halted: true });
      if (body.action === "resume" && !current?.halted) return sendJson(res, 409, { error: "the gateway is not halted; nothing changed", halted: false });
      const fact = newHaltFact(body.action === "halt", auth.session.reviewer.id, reason || undefined, current, now());
      const delivery = await recordHaltEverywhere(deps.dataDir, fact, deps.instance ?? "main", now);
      deps.log(`review page: ${body.action} by ${fact.by}${fact.reason ? ` (${fact.reason})` : ""}`);
      feed.poke();
      sendJson(res, 200, { halted: fact.halted, by: fact.by, at: fact.at, ...(fact.reason ? { reason: fact.reason } : {}), instances: [...delivery.gateways, ...delivery.ledgers] });
    }),

    "/review/api/reveal": guarded(async (req, res) => {
      const auth = authenticate(req, res, { method: "POST" });
      if (!auth) return;
      const body = await readJson(req);
      if (typeof body === "string") return sendJson(res, 400, { error: body });
      const ref = String(body.ref ?? "");
      if (!REF_PATTERN.test(ref)) return sendJson(res, 400, { error: "ref: expected evt_ followed by 8 lowercase hex digits" });
      const found = feed.find(ref);
      if (!found) return sendJson(res, 404, { error: `unknown ref ${ref}` });
      // Recorded before anything is shown: a reveal that cannot be recorded does not happen.
      await deps.engine.recordEvent("review.revealed", { ref, instance: found.instance, reviewer: auth.session.reviewer.id });
      deps.log(`review page: ${auth.session.reviewer.id} revealed the masked arguments of ${ref}`);
      sendJson(res, 200, { ref, args: found.view.args });
    }),

    "/review/api/history": guarded((req, res) => {
      if (!authenticate(req, res, { method: "GET" })) return;
      const ref = new URL(req.url ?? "/", "http://localhost").searchParams.get("ref") ?? "";
      if (!REF_PATTERN.test(ref)) return sendJson(res, 400, { error: "ref: expected evt_ followed by 8 lowercase hex digits" });
      const history = readRefHistory(deps.dataDir, ref);
      if (!history) return sendJson(res, 404, { error: `no request ${ref} in this data dir` });
      sendJson(res, 200, history);
    }),

    "/review/api/search": guarded((req, res) => {
      if (!authenticate(req, res, { method: "GET" })) return;
      const q = new URL(req.url ?? "/", "http://localhost").searchParams.get("q") ?? "";
      if (q.length > 200) return sendJson(res, 400, { error: "q: at most 200 characters" });
      sendJson(res, 200, { query: q, results: searchRequests(deps.dataDir, q) });
    }),

    /** For integrations: the pending calls as JSON, with a reviewer's key (`Authorization: Bearer …`) or a page session. */
    "/api/pending": guarded((req, res) => {
      if (req.method !== "GET" && req.method !== "HEAD") return sendJson(res, 405, { error: "use GET" });
      const header = req.headers.authorization ?? "";
      const bearer = /^Bearer\s+(\S+)$/i.exec(header)?.[1];
      const reviewer = bearer ? reviewerForKey(deps.dataDir, bearer) : sessionOf(req)?.session.reviewer;
      if (!reviewer) {
        res.setHeader("www-authenticate", 'Bearer realm="atlas-gateway"');
        return sendJson(res, 401, { error: "send a reviewer key (Authorization: Bearer atlas_rk_…; see 'atlas-gateway reviewers add')" });
      }
      sendJson(res, 200, feed.snapshot());
    }),
  };
  return routes;
}
