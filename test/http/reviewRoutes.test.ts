import { createHash } from "node:crypto";
import fc from "fast-check";
import type { Server } from "node:http";
import { afterEach, describe, expect, it } from "vitest";
import { instancePaths } from "../../src/dataDir.js";
import { readHaltFile } from "../../src/governance/halt.js";
import { serveControl, tryLock } from "../../src/governance/instance.js";
import type { LocalEngineOptions } from "../../src/governance/localEngine.js";
import type { LocalEngine } from "../../src/governance/localEngine.js";
import { createRequestHandler, startListener } from "../../src/http/listener.js";
import { addReviewer } from "../../src/http/reviewers.js";
import { createReviewRoutes, restoreMasked, sessionCookieName } from "../../src/http/reviewRoutes.js";
import { WebhookVerifier } from "../../src/http/webhook.js";
import { scanLedger } from "../../src/ledger/ledger.js";
import { maskSecrets } from "../../src/mask.js";
import { createRulesEvaluator } from "../../src/risk/assess.js";
import { heldCall, openEngine, recordingExecutor, tempDir } from "../helpers.js";

/** The review page's HTTP API on a real listener (port 0) over a real local engine. */
interface Harness {
  base: string;
  dataDir: string;
  engine: LocalEngine;
  executor: ReturnType<typeof recordingExecutor>;
  server: Server;
}

const open: Harness[] = [];
afterEach(async () => {
  for (const harness of open.splice(0)) {
    harness.server.closeAllConnections();
    await new Promise((resolve) => harness.server.close(resolve));
    await harness.engine.close();
  }
});

async function start(over: Partial<LocalEngineOptions> = {}): Promise<Harness> {
  const dataDir = tempDir();
  const executor = recordingExecutor();
  const engine = openEngine(dataDir, executor, over);
  const routes = createReviewRoutes({ engine, dataDir, instance: "main", log: () => {}, pollMs: 50 });
  const handler = createRequestHandler({ engine, verifier: new WebhookVerifier("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), dataDir, version: "test", log: () => {}, routes });
  const listening = (await startListener(handler, "127.0.0.1", 0, () => {}))!;
  const harness = { base: `http://127.0.0.1:${listening.port}`, dataDir, engine, executor, server: listening.server };
  open.push(harness);
  return harness;
}

/** Signs a reviewer in as the page does; returns the cookie and CSRF token. */
async function signInAs(harness: Harness, id: string, role: "approver" | "viewer" = "approver") {
  const issued = addReviewer(harness.dataDir, { id, role });
  const res = await fetch(`${harness.base}/review/api/signin`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ token: issued.signInToken }) });
  expect(res.status).toBe(200);
  const setCookie = res.headers.get("set-cookie") ?? "";
  const body = (await res.json()) as { csrf: string };
  return { cookie: setCookie.split(";")[0]!, setCookie, csrf: body.csrf, key: issued.key!, token: issued.signInToken };
}

function post(harness: Harness, path: string, body: unknown, auth: { cookie: string; csrf?: string }, extra: Record<string, string> = {}) {
  return fetch(`${harness.base}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", cookie: auth.cookie, ...(auth.csrf ? { "x-atlas-csrf": auth.csrf } : {}), ...extra },
    body: JSON.stringify(body),
  });
}

/** Test reads of our own JSON API: shapes are asserted by the expectations. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const jsonOf = async (res: Response | Promise<Response>): Promise<any> => (await res).json();

const held = async (harness: Harness, args: Record<string, unknown> = { path: "/tmp/x" }) => {
  const decision = await harness.engine.submit(heldCall(args));
  if (decision.kind !== "hold") throw new Error("expected a hold");
  return decision.ref;
};

describe("review page", () => {
  it("never runs open: with no reviewers the page explains how to add one and every API answers 401", async () => {
    const harness = await start();
    await held(harness);
    const page = await fetch(`${harness.base}/review`);
    expect(page.status).toBe(200);
    expect(page.headers.get("content-security-policy")).toMatch(/default-src 'none'/);
    expect(await page.text()).toContain("/review/app.js");
    const script = await (await fetch(`${harness.base}/review/app.js`)).text();
    expect(script).toContain("reviewers add");
    expect(script).not.toContain("innerHTML");
    expect(await jsonOf(fetch(`${harness.base}/review/api/session`))).toEqual({ signedIn: false, reviewersConfigured: false });
    for (const path of ["/review/api/pending", "/review/api/events", "/review/api/search?q=", "/api/pending"]) {
      expect((await fetch(`${harness.base}${path}`)).status, path).toBe(401);
    }
    const decide = await post(harness, "/review/api/decide", { ref: "evt_00000000", decision: "approved" }, { cookie: "" });
    expect(decide.status).toBe(401);
    expect(harness.executor.calls).toHaveLength(0);
  });

  it("signs in once with the link's token into an HttpOnly, SameSite=Strict session", async () => {
    const harness = await start();
    const auth = await signInAs(harness, "alice");
    expect(auth.setCookie).toMatch(new RegExp(`^${sessionCookieName(harness.dataDir)}=atlas_ss_`));
    expect(auth.setCookie).toMatch(/HttpOnly/);
    expect(auth.setCookie).toMatch(/SameSite=Strict/);
    expect(auth.setCookie).toMatch(/Max-Age=43\d{3}(;|$)/); // 12 h: sessions expire
    const again = await fetch(`${harness.base}/review/api/signin`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ token: auth.token }) });
    expect(again.status).toBe(401);
    const session = await jsonOf(fetch(`${harness.base}/review/api/session`, { headers: { cookie: auth.cookie } }));
    expect(session).toMatchObject({ signedIn: true, reviewer: { id: "alice", role: "approver" } });
  });

  it("the session cookie alone cannot decide: the CSRF token is handed out once, at sign-in, and not derived from it", async () => {
    // red team: cookies ignore ports, so a server the agent runs on 127.0.0.1:<other port> receives the session cookie
    // when the reviewer opens it; the CSRF token was sha256 of the cookie and /review/api/session returned it too
    const harness = await start();
    const ref = await held(harness);
    const auth = await signInAs(harness, "alice");
    const secret = decodeURIComponent(auth.cookie.split("=")[1]!);
    const session = await jsonOf(fetch(`${harness.base}/review/api/session`, { headers: { cookie: auth.cookie } }));
    expect(session.csrf).toBeUndefined();
    expect(JSON.stringify(session)).not.toContain(auth.csrf);
    const derived = createHash("sha256").update(`atlas-csrf-v1\n${secret}`).digest("base64url");
    expect((await post(harness, "/review/api/decide", { ref, decision: "approved" }, { cookie: auth.cookie, csrf: derived })).status).toBe(403);
    expect(harness.engine.get(ref)?.status).toBe("pending");
    expect((await post(harness, "/review/api/decide", { ref, decision: "approved" }, auth)).status).toBe(200);
  });

  it("approves through the page: the decision names the signed-in reviewer and the call runs once", async () => {
    const harness = await start();
    const auth = await signInAs(harness, "alice");
    const ref = await held(harness);
    const pending = await jsonOf(fetch(`${harness.base}/review/api/pending`, { headers: { cookie: auth.cookie } }));
    expect(pending.pending).toMatchObject([{ ref, tool: "write_file", upstream: "fs", annotations: { destructiveHint: true }, assessment: { score: expect.any(Number) } }]);

    const res = await post(harness, "/review/api/decide", { ref, decision: "approved", reviewer: "mallory" }, auth);
    expect(res.status).toBe(200);
    expect((await harness.engine.waitForOutcome(ref, 5000))?.status).toBe("executed");
    expect(harness.engine.get(ref)?.decision).toMatchObject({ reviewer: "alice", auth: "review-page" });
    expect(harness.executor.calls).toHaveLength(1);
    const twice = await post(harness, "/review/api/decide", { ref, decision: "approved" }, auth);
    expect(twice.status).toBe(409);
    expect(harness.executor.calls).toHaveLength(1);
  });

  it("refuses state changes without the CSRF token, from another origin, or not as JSON", async () => {
    const harness = await start();
    const auth = await signInAs(harness, "alice");
    const ref = await held(harness);
    const cases: [string, () => Promise<Response>][] = [
      ["no csrf", () => post(harness, "/review/api/decide", { ref, decision: "approved" }, { cookie: auth.cookie })],
      ["wrong csrf", () => post(harness, "/review/api/decide", { ref, decision: "approved" }, { cookie: auth.cookie, csrf: "x".repeat(43) })],
      ["cross origin", () => post(harness, "/review/api/decide", { ref, decision: "approved" }, auth, { origin: "http://evil.example" })],
      ["cross site", () => post(harness, "/review/api/decide", { ref, decision: "approved" }, auth, { "sec-fetch-site": "cross-site" })],
      ["form post", () => fetch(`${harness.base}/review/api/decide`, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded", cookie: auth.cookie, "x-atlas-csrf": auth.csrf }, body: `ref=${ref}&decision=approved` })],
    ];
    for (const [label, run] of cases) expect((await run()).status, label).toBe(403);
    expect(harness.engine.get(ref)?.status).toBe("pending");
  });

  it("behind a TLS-terminating proxy: the https origin is accepted and the cookie is Secure", async () => {
    const harness = await start();
    const issued = addReviewer(harness.dataDir, { id: "alice" });
    const host = new URL(harness.base).host;
    const res = await fetch(`${harness.base}/review/api/signin`, { method: "POST", headers: { "content-type": "application/json", origin: `https://${host}`, "x-forwarded-proto": "https" }, body: JSON.stringify({ token: issued.signInToken }) });
    expect(res.status).toBe(200);
    expect(res.headers.get("set-cookie")).toMatch(/; Secure$/);
    const { csrf } = (await res.json()) as { csrf: string };
    const ref = await held(harness);
    const decided = await post(harness, "/review/api/decide", { ref, decision: "denied", reason: "no" }, { cookie: res.headers.get("set-cookie")!.split(";")[0]!, csrf }, { origin: `https://${host}` });
    expect(decided.status).toBe(200);
  });

  it("viewers see but cannot decide", async () => {
    const harness = await start();
    const auth = await signInAs(harness, "vic", "viewer");
    const ref = await held(harness);
    expect((await fetch(`${harness.base}/review/api/pending`, { headers: { cookie: auth.cookie } })).status).toBe(200);
    const res = await post(harness, "/review/api/decide", { ref, decision: "approved" }, auth);
    expect(res.status).toBe(403);
    expect(((await res.json()) as { error: string }).error).toMatch(/viewer/);
    expect(harness.engine.get(ref)?.status).toBe("pending");
  });

  it("a denial needs a reason; bad input changes nothing", async () => {
    const harness = await start();
    const auth = await signInAs(harness, "alice");
    const ref = await held(harness);
    const bad: unknown[] = [
      { ref, decision: "denied" },
      { ref, decision: "denied", reason: "   " },
      { ref, decision: "maybe" },
      { ref: "evt_XYZ", decision: "approved" },
      { ref, decision: "approved", args: [1, 2] },
      { ref, decision: "denied", reason: "no", args: { path: "/x" } },
    ];
    for (const body of bad) expect((await post(harness, "/review/api/decide", body, auth)).status, JSON.stringify(body)).toBe(400);
    const notJson = await fetch(`${harness.base}/review/api/decide`, { method: "POST", headers: { "content-type": "application/json", cookie: auth.cookie, "x-atlas-csrf": auth.csrf }, body: "{nope" });
    expect(notJson.status).toBe(400);
    expect(harness.engine.get(ref)?.status).toBe("pending");
    const deny = await post(harness, "/review/api/decide", { ref, decision: "denied", reason: "wrong beneficiary" }, auth);
    expect(deny.status).toBe(200);
    expect(harness.engine.get(ref)?.decision).toMatchObject({ decision: "denied", reviewer: "alice", reason: "wrong beneficiary" });
    expect(harness.executor.calls).toHaveLength(0);
  });

  it("approve with edits keeps masked values the reviewer did not touch", async () => {
    const harness = await start();
    const auth = await signInAs(harness, "alice");
    const ref = await held(harness, { path: "/tmp/a", api_key: "sk-live-0123456789abcdef", amount: 100 });
    const pending = await jsonOf(fetch(`${harness.base}/review/api/pending`, { headers: { cookie: auth.cookie } }));
    expect(pending.pending[0]).toMatchObject({ masked: true, args: { api_key: "[masked]", amount: 100 } });
    const edited = { ...pending.pending[0].args, amount: 50 };
    const res = await post(harness, "/review/api/decide", { ref, decision: "approved", args: edited, reason: "halved" }, auth);
    expect(await jsonOf(res)).toMatchObject({ edited: true });
    expect((await harness.engine.waitForOutcome(ref, 5000))?.status).toBe("executed");
    expect(harness.executor.calls[0]?.args).toEqual({ path: "/tmp/a", api_key: "sk-live-0123456789abcdef", amount: 50 });
  });

  it("a two-person call cannot be approved with edits (400), and a second approval by the same reviewer is refused (409)", async () => {
    // red team: the first approver's edits were dropped silently (200, "edited": true) and the second approval ran
    // the agent's original arguments; a repeated approval answered 200 as if it had counted
    const harness = await start({
      evaluator: createRulesEvaluator({ threshold: 70, overrides: {}, rules: [{ id: "two", tool: "write_file", effect: "review", approvals: 2 }] }),
    });
    const ref = await held(harness, { path: "/payments/evil" });
    const ana = await signInAs(harness, "ana");
    const ben = await signInAs(harness, "ben");
    const edited = await post(harness, "/review/api/decide", { ref, decision: "approved", args: { path: "/payments/safe" } }, ana);
    expect(edited.status).toBe(400);
    expect((await jsonOf(edited)).error).toMatch(/needs 2 approvers, who must approve the same arguments/);
    expect(harness.engine.get(ref)?.approvals ?? []).toEqual([]);

    expect(await jsonOf(post(harness, "/review/api/decide", { ref, decision: "approved" }, ana))).toMatchObject({ status: "pending" });
    const twice = await post(harness, "/review/api/decide", { ref, decision: "approved" }, ana);
    expect(twice.status).toBe(409);
    expect((await jsonOf(twice)).error).toMatch(/ana has already approved/);

    expect(await jsonOf(post(harness, "/review/api/decide", { ref, decision: "approved" }, ben))).toMatchObject({ status: expect.stringMatching(/approved|executing|executed/) });
    expect((await harness.engine.waitForOutcome(ref, 5000))?.status).toBe("executed");
    expect(harness.executor.calls.map((call) => call.args)).toEqual([{ path: "/payments/evil" }]);
    const approvals = scanLedger(instancePaths(harness.dataDir, "main").ledger).records.filter((record) => record.type === "approval.recorded");
    expect(approvals.map((record) => record.data)).toEqual([
      { reviewer: "ana", count: 1, required: 2, auth_method: "review-page" },
      { reviewer: "ben", count: 2, required: 2, auth_method: "review-page" },
    ]);
  });

  it("revealing masked values is recorded before they are shown; history and search find the call", async () => {
    const harness = await start();
    const auth = await signInAs(harness, "alice");
    const ref = await held(harness, { path: "/tmp/a", password: "hunter2" });
    const reveal = await post(harness, "/review/api/reveal", { ref }, auth);
    expect(await reveal.json()).toEqual({ ref, args: { path: "/tmp/a", password: "hunter2" } });
    const records = scanLedger(instancePaths(harness.dataDir, "main").ledger).records;
    expect(records.find((record) => record.type === "review.revealed")?.data).toMatchObject({ ref, reviewer: "alice" });

    await post(harness, "/review/api/decide", { ref, decision: "denied", reason: "not today" }, auth);
    const history = await jsonOf(fetch(`${harness.base}/review/api/history?ref=${ref}`, { headers: { cookie: auth.cookie } }));
    expect(history.view).toMatchObject({ ref, status: "denied", args: { password: "[masked]" }, decision: { reviewer: "alice" } });
    expect(history.records.map((record: { type: string }) => record.type)).toEqual(expect.arrayContaining(["request.created", "request.held", "review.revealed", "decision.recorded"]));
    expect(JSON.stringify(history)).not.toContain("hunter2");
    for (const q of [ref, "write_file", "alice"]) {
      const search = await jsonOf(fetch(`${harness.base}/review/api/search?q=${q}`, { headers: { cookie: auth.cookie } }));
      expect(search.results.map((hit: { ref: string }) => hit.ref), q).toContain(ref);
    }
    const none = await jsonOf(fetch(`${harness.base}/review/api/search?q=bob`, { headers: { cookie: auth.cookie } }));
    expect(none.results).toEqual([]);
  });

  it("GET /api/pending takes a reviewer key as a bearer token", async () => {
    const harness = await start();
    const auth = await signInAs(harness, "ci-bot", "viewer");
    const ref = await held(harness);
    const ok = await fetch(`${harness.base}/api/pending`, { headers: { authorization: `Bearer ${auth.key}` } });
    expect(ok.status).toBe(200);
    expect((await jsonOf(ok)).pending.map((item: { ref: string }) => item.ref)).toEqual([ref]);
    expect((await fetch(`${harness.base}/api/pending`, { headers: { authorization: "Bearer atlas_rk_wrong" } })).status).toBe(401);
    expect((await fetch(`${harness.base}/api/pending`, { headers: { cookie: auth.cookie } })).status).toBe(200);
  });

  it("streams the inbox over server-sent events, including calls held by another gateway instance", async () => {
    const harness = await start();
    const auth = await signInAs(harness, "alice");
    const controller = new AbortController();
    const res = await fetch(`${harness.base}/review/api/events`, { headers: { cookie: auth.cookie }, signal: controller.signal });
    expect(res.headers.get("content-type")).toMatch(/text\/event-stream/);
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    const snapshots = () => [...text.matchAll(/event: snapshot\ndata: (.*)\n\n/g)].map((match) => JSON.parse(match[1]!) as { pending: { ref: string; instance: string }[] });
    const until = async (predicate: () => boolean) => {
      while (!predicate()) {
        const { value, done } = await reader.read();
        if (done) throw new Error("stream ended");
        text += value;
      }
    };
    await until(() => snapshots().length >= 1);
    expect(snapshots()[0]!.pending).toEqual([]);

    const other = openEngine(harness.dataDir, recordingExecutor(), { ledgerPath: instancePaths(harness.dataDir, "main-2").ledger, instance: "main-2" });
    try {
      const decision = await other.submit(heldCall({ path: "/tmp/other" }));
      await until(() => snapshots().some((snapshot) => snapshot.pending.some((item) => item.ref === decision.ref)));
      expect(snapshots().at(-1)!.pending.find((item) => item.ref === decision.ref)?.instance).toBe("main-2");
    } finally {
      controller.abort();
      await other.close();
    }
  });
});

describe("review API under bad input", () => {
  it("random cookies, headers, methods and bodies on every review route answer 2xx-4xx, never 5xx, and decide nothing", async () => {
    // red team: a cookie with a malformed %-escape made decodeURIComponent throw: 500 on every route that reads it
    const harness = await start();
    const ref = await held(harness);
    const ana = await signInAs(harness, "ana");
    const name = sessionCookieName(harness.dataDir);
    const routes = ["/review", "/review/api/session", "/review/api/signin", "/review/api/signout", "/review/api/pending", "/review/api/decide", "/review/api/reveal", "/review/api/history?ref=%", "/review/api/search?q=%E0%A4", "/api/pending"];
    const text = fc.string({ unit: "binary", maxLength: 80 }).map((value) => value.replace(/[^\x20-\x7e]/g, "%"));
    const cookie = fc.oneof(text.map((value) => `${name}=${value}`), fc.constant(`${name}=%E0%A4%A`), fc.constant(`${name}=%`), fc.constant(ana.cookie), text);
    const body = fc.oneof(fc.json(), text, fc.constant(JSON.stringify({ ref, decision: "approved", args: "x" })), fc.constant(JSON.stringify({ ref, decision: "denied" })));
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...routes), fc.constantFrom("GET", "POST", "PUT", "DELETE"), cookie, fc.option(fc.constantFrom(ana.csrf, "x", "")), fc.constantFrom("application/json", "text/plain", "application/x-www-form-urlencoded"), body, async (route, method, cookieHeader, csrf, type, payload) => {
          const res = await fetch(`${harness.base}${route}`, {
            method,
            headers: { cookie: cookieHeader, "content-type": type, ...(csrf !== null ? { "x-atlas-csrf": csrf } : {}), ...(route === "/api/pending" ? { authorization: `Bearer ${cookieHeader}` } : {}) },
            ...(method === "GET" ? {} : { body: payload }),
          });
          await res.arrayBuffer();
          expect(res.status, `${method} ${route} cookie=${cookieHeader}`).toBeLessThan(500);
        },
      ),
      { numRuns: 150 },
    );
    expect(harness.engine.get(ref)?.status).toBe("pending");
  });
});

describe("review page across gateways", () => {
  it("a decision on a call held by another gateway on the data dir reaches it through its control socket", async () => {
    const harness = await start();
    const auth = await signInAs(harness, "alice");
    const executor = recordingExecutor();
    const other = openEngine(harness.dataDir, executor, { ledgerPath: instancePaths(harness.dataDir, "main-2").ledger, instance: "main-2" });
    const lock = tryLock(harness.dataDir, "main-2", "gateway")!;
    const socket = instancePaths(harness.dataDir, "main-2").socket;
    const control = await serveControl(socket, async (request) => (request.op === "decide" ? other.decide(request) : { error: "unsupported" }));
    lock.update({ socket });
    try {
      const decision = await other.submit(heldCall({ path: "/tmp/elsewhere" }));
      const res = await post(harness, "/review/api/decide", { ref: decision.ref, decision: "approved", args: { path: "/tmp/edited" } }, auth);
      expect(res.status).toBe(200);
      expect((await other.waitForOutcome(decision.ref!, 5000))?.status).toBe("executed");
      expect(executor.calls.map((call) => call.args)).toEqual([{ path: "/tmp/edited" }]);
      expect(other.get(decision.ref!)?.decision).toMatchObject({ reviewer: "alice", auth: "review-page" });
      expect(harness.executor.calls).toHaveLength(0);
    } finally {
      control.close();
      lock.release();
      await other.close();
    }
  });
});

describe("review page: the stop button", () => {
  /** The harness's engine as a running gateway: its lock and control socket, as `serve` sets them up. */
  async function asGateway(harness: Harness) {
    const lock = tryLock(harness.dataDir, "main", "gateway")!;
    const socket = instancePaths(harness.dataDir, "main").socket;
    const control = await serveControl(socket, async (request) => (request.op === "halt" ? harness.engine.applyHalt(request.fact) : { error: "unsupported" }));
    lock.update({ socket });
    return () => {
      control.close();
      lock.release();
    };
  }

  it("an approver halts (reason required) and resumes; the halt is recorded under their id and every view shows it", async () => {
    const harness = await start();
    const stop = await asGateway(harness);
    try {
      const auth = await signInAs(harness, "alice");
      const noReason = await post(harness, "/review/api/halt", { action: "halt", reason: "  " }, auth);
      expect(noReason.status).toBe(400);
      expect(harness.engine.haltState()).toBeUndefined();

      const halted = await post(harness, "/review/api/halt", { action: "halt", reason: "suspicious payments", by: "mallory" }, auth);
      expect(halted.status).toBe(200);
      expect(await halted.json()).toMatchObject({ halted: true, by: "alice", reason: "suspicious payments", instances: ["main"] });
      expect(harness.engine.haltState()).toMatchObject({ halted: true, by: "alice", reason: "suspicious payments" });
      expect(readHaltFile(harness.dataDir)).toMatchObject({ halted: true, by: "alice" });
      const record = scanLedger(instancePaths(harness.dataDir, "main").ledger).records.find((entry) => entry.type === "gateway.halted");
      expect(record?.data).toMatchObject({ by: "alice", reason: "suspicious payments" });
      // the tool call is refused at once
      expect(await harness.engine.submit(heldCall())).toMatchObject({ kind: "deny", halted: true });
      const snapshot = await jsonOf(fetch(`${harness.base}/review/api/pending`, { headers: { cookie: auth.cookie } }));
      expect(snapshot.halt).toEqual({ halted: true, by: "alice", reason: "suspicious payments", at: record?.data.at });
      expect((await post(harness, "/review/api/halt", { action: "halt", reason: "again" }, auth)).status).toBe(409);

      const resumed = await post(harness, "/review/api/halt", { action: "resume" }, auth);
      expect(resumed.status).toBe(200);
      expect(harness.engine.haltState()).toMatchObject({ halted: false, by: "alice" });
      expect((await jsonOf(fetch(`${harness.base}/review/api/pending`, { headers: { cookie: auth.cookie } }))).halt).toEqual({ halted: false });
      expect((await post(harness, "/review/api/halt", { action: "resume" }, auth)).status).toBe(409);
    } finally {
      stop();
    }
  });

  it("viewers, requests without the CSRF token and bad bodies cannot press it", async () => {
    const harness = await start();
    const stop = await asGateway(harness);
    try {
      const viewer = await signInAs(harness, "vera", "viewer");
      expect((await post(harness, "/review/api/halt", { action: "halt", reason: "x" }, viewer)).status).toBe(403);
      const approver = await signInAs(harness, "alice");
      expect((await post(harness, "/review/api/halt", { action: "halt", reason: "x" }, { cookie: approver.cookie })).status).toBe(403);
      expect((await post(harness, "/review/api/halt", { action: "halt", reason: "x" }, approver, { origin: "http://evil.example" })).status).toBe(403);
      expect((await post(harness, "/review/api/halt", { action: "explode", reason: "x" }, approver)).status).toBe(400);
      expect((await post(harness, "/review/api/halt", { action: "halt", reason: "\ud800" }, approver)).status).toBe(400);
      expect((await post(harness, "/review/api/halt", { action: "halt", reason: "x".repeat(2001) }, approver)).status).toBe(400);
      expect((await fetch(`${harness.base}/review/api/halt`, { headers: { cookie: approver.cookie } })).status).toBe(405);
      expect(harness.engine.haltState()).toBeUndefined();
      expect(readHaltFile(harness.dataDir)).toBeUndefined();
    } finally {
      stop();
    }
  });
});

describe("review page: the stop button under bad input", () => {
  it("random bodies never answer 5xx, and a refused one changes nothing", async () => {
    const harness = await start();
    const lock = tryLock(harness.dataDir, "main", "gateway")!;
    const socket = instancePaths(harness.dataDir, "main").socket;
    const control = await serveControl(socket, async (request) => (request.op === "halt" ? harness.engine.applyHalt(request.fact) : { error: "unsupported" }));
    lock.update({ socket });
    try {
      const auth = await signInAs(harness, "alice");
      const codeUnit = fc.oneof(fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 0xd800, max: 0xdfff })).map((code) => String.fromCharCode(code));
      const text = fc.oneof(fc.string({ unit: codeUnit, maxLength: 80 }), fc.string({ minLength: 1995, maxLength: 2010 }), fc.constant(""), fc.integer(), fc.constant(null));
      const body = fc.oneof(
        fc.record({ action: fc.oneof(fc.constantFrom("halt", "resume", "HALT", "stop"), fc.integer(), fc.constant(null)), reason: text }, { requiredKeys: [] }),
        fc.json().map((json) => JSON.parse(json) as unknown),
      );
      await fc.assert(
        fc.asyncProperty(body, async (sent) => {
          const before = harness.engine.haltState();
          const res = await post(harness, "/review/api/halt", sent, auth);
          expect(res.status).toBeLessThan(500);
          if (res.status !== 200) expect(harness.engine.haltState()).toEqual(before);
        }),
        { numRuns: 60 },
      );
    } finally {
      control.close();
      lock.release();
    }
  }, 60_000);
});

describe("review page: the two-person rule", () => {
  const evaluator = createRulesEvaluator({
    threshold: 70,
    overrides: {},
    rules: [{ id: "payments", tool: "write_file", args: { path: { regex: "^/payments/" } }, effect: "review", approvals: 2, reason: "payments need two people" }],
  });

  it("shows the count and who approved; the same reviewer cannot approve twice; the second approver runs it", async () => {
    const harness = await start({ evaluator });
    const alice = await signInAs(harness, "alice");
    const bob = await signInAs(harness, "bob");
    const ref = await held(harness, { path: "/payments/batch-7" });
    const pending = async () => (await jsonOf(fetch(`${harness.base}/api/pending`, { headers: { authorization: `Bearer ${alice.key}` } }))).pending;
    expect((await pending())[0]).toMatchObject({ ref, approvals: { count: 0, required: 2, by: [] } });

    const first = await post(harness, "/review/api/decide", { ref, decision: "approved" }, alice);
    expect(first.status).toBe(200);
    expect(await first.json()).toMatchObject({ ref, status: "pending", approvals: { count: 1, required: 2, by: ["alice"] } });
    expect((await pending())[0]).toMatchObject({ ref, approvals: { count: 1, required: 2, by: ["alice"] } });

    const twice = await post(harness, "/review/api/decide", { ref, decision: "approved" }, alice);
    expect(twice.status).toBe(409);
    expect((await jsonOf(twice)).error).toMatch(/alice has already approved .*1 of 2/);
    const edited = await post(harness, "/review/api/decide", { ref, decision: "approved", args: { path: "/payments/other" } }, bob);
    expect(edited.status).toBe(400);
    expect(harness.executor.calls).toHaveLength(0);

    const second = await post(harness, "/review/api/decide", { ref, decision: "approved" }, bob);
    expect(second.status).toBe(200);
    expect((await harness.engine.waitForOutcome(ref, 5000))?.status).toBe("executed");
    expect(harness.executor.calls).toHaveLength(1);
    expect(harness.engine.get(ref)?.decision).toMatchObject({ reviewer: "bob" });
  });
});

describe("restoreMasked", () => {
  // the third column is what the reviewer was shown (the masking function's output, whatever its placeholder)
  it.each([
    [{ password: "[masked]", b: 1 }, { password: "secret", b: 2 }, { password: "[masked]", b: 2 }, { password: "secret", b: 1 }],
    [{ nested: { token: "•••" } }, { nested: { token: "t" } }, { nested: { token: "•••" } }, { nested: { token: "t" } }],
    [{ list: ["[masked]", "x"] }, { list: ["s", "y"] }, { list: ["[masked]", "y"] }, { list: ["s", "x"] }],
    [{ note: "password: [masked] ok" }, { note: "password: hunter2 ok" }, { note: "password: [masked] ok" }, { note: "password: hunter2 ok" }],
    [{ added: "[masked]" }, {}, {}, { added: "[masked]" }],
    [{ password: "new-one" }, { password: "old" }, { password: "[masked]" }, { password: "new-one" }],
    [{ plain: "[masked]" }, { plain: "[masked]" }, { plain: "[masked]" }, { plain: "[masked]" }],
  ])("%j over %j (shown %j) -> %j", (edited, original, shown, expected) => {
    expect(restoreMasked(edited, original, shown)).toEqual(expected);
  });

  it("by default compares with maskSecrets' own rendering", () => {
    const original = { api_key: "abc", amount: 5 };
    const shown = maskSecrets(original) as Record<string, unknown>;
    expect(shown.api_key).not.toBe("abc");
    expect(restoreMasked({ ...shown, amount: 6 }, original)).toEqual({ api_key: "abc", amount: 6 });
  });
});
