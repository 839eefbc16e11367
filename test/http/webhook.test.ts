import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createRequestHandler, MAX_WEBHOOK_BODY_BYTES, startListener } from "../../src/http/listener.js";
import type { LocalEngine } from "../../src/governance/localEngine.js";
import { legacyWebhookSecretPath, loadOrCreateWebhookSecret, signWebhook, WebhookVerifier, webhookSecretPath } from "../../src/http/webhook.js";
import { heldCall, openEngine, recordingExecutor, tempDir } from "../helpers.js";

const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const body = JSON.stringify({ decision: "APPROVED", event_id: "evt_0123abcd" });

describe("WebhookVerifier (Standard Webhooks)", () => {
  const now = new Date();
  const cases: [string, () => Record<string, string>, string, 200 | 400 | 401][] = [
    ["valid signature", () => signWebhook(secret, body, now), body, 200],
    ["missing headers", () => ({}), body, 401],
    ["missing signature", () => { const h = signWebhook(secret, body, now); delete h["webhook-signature"]; return h; }, body, 401],
    ["wrong secret", () => signWebhook("whsec_" + Buffer.from("another secret entirely!").toString("base64"), body, now), body, 401],
    ["tampered body", () => signWebhook(secret, body, now), body.replace("APPROVED", "DENIED"), 401],
    ["stale timestamp (10 min old)", () => signWebhook(secret, body, new Date(now.getTime() - 600_000)), body, 401],
    ["future timestamp (10 min ahead)", () => signWebhook(secret, body, new Date(now.getTime() + 600_000)), body, 401],
    ["non-numeric timestamp", () => ({ ...signWebhook(secret, body, now), "webhook-timestamp": "yesterday" }), body, 401],
    ["truncated signature", () => { const h = signWebhook(secret, body, now); h["webhook-signature"] = h["webhook-signature"]!.slice(0, 10); return h; }, body, 401],
    ["v2 scheme only", () => { const h = signWebhook(secret, body, now); h["webhook-signature"] = h["webhook-signature"]!.replace("v1,", "v2,"); return h; }, body, 401],
  ];
  it.each(cases)("%s -> %d", (_label, headers, payload, expected) => {
    const result = new WebhookVerifier(secret).check(payload, headers());
    expect(result.ok ? 200 : result.status).toBe(expected);
  });

  it("refuses a replayed webhook-id", () => {
    const verifier = new WebhookVerifier(secret);
    const headers = signWebhook(secret, body);
    expect(verifier.check(body, headers).ok).toBe(true);
    expect(verifier.check(body, headers)).toMatchObject({ ok: false, status: 401, error: expect.stringMatching(/replay/) });
  });

  it.each([
    ["not JSON", "{decision"],
    ["unknown decision", JSON.stringify({ decision: "MAYBE", event_id: "evt_0123abcd" })],
    ["bad ref", JSON.stringify({ decision: "APPROVED", event_id: "evt_XYZ" })],
    ["missing ref", JSON.stringify({ decision: "APPROVED" })],
  ])("signed but malformed body (%s) -> 400", (_label, payload) => {
    const result = new WebhookVerifier(secret).check(payload, signWebhook(secret, payload));
    expect(result).toMatchObject({ ok: false, status: 400 });
  });

  it.each([
    ["an approval body", body],
    ["a halt without a reason", JSON.stringify({ action: "halt" })],
    ["an unknown action", JSON.stringify({ action: "explode", reason: "x" })],
    ["an unknown key", JSON.stringify({ action: "resume", event_id: "evt_0123abcd" })],
  ])("the stop button refuses %s, signed or not (400)", (_label, payload) => {
    expect(new WebhookVerifier(secret).checkHalt(payload, signWebhook(secret, payload))).toMatchObject({ ok: false, status: 400 });
  });

  it("a stop-button body carries its action under the signature", () => {
    const payload = JSON.stringify({ action: "halt", reason: "incident", reviewer: "ana" });
    expect(new WebhookVerifier(secret).checkHalt(payload, signWebhook(secret, payload))).toMatchObject({ ok: true, body: { action: "halt", reason: "incident", reviewer: "ana" } });
    expect(new WebhookVerifier(secret).checkHalt(payload.replace("halt", "resume"), signWebhook(secret, payload))).toMatchObject({ ok: false, status: 401 });
  });

  it("creates the secret once, as whsec_ in a 0600 file outside the data dir", () => {
    const dir = tempDir();
    const env = { ATLAS_CONFIG_DIR: tempDir() };
    const first = loadOrCreateWebhookSecret(dir, env);
    expect(first).toMatch(/^whsec_[A-Za-z0-9+/=]{40,}$/);
    expect(loadOrCreateWebhookSecret(dir, env)).toBe(first);
    const path = webhookSecretPath(dir, env);
    expect(path.startsWith(env.ATLAS_CONFIG_DIR)).toBe(true);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(statSync(dirname(path)).mode & 0o777).toBe(0o700);
    expect(readdirSync(dir)).toEqual([]);
    // another data dir has its own secret
    expect(loadOrCreateWebhookSecret(tempDir(), env)).not.toBe(first);
  });

  it("moves a secret an older version left in the data dir, keeping its value", () => {
    const dir = tempDir();
    const env = { ATLAS_CONFIG_DIR: tempDir() };
    writeFileSync(legacyWebhookSecretPath(dir), "whsec_bGVnYWN5c2VjcmV0bGVnYWN5c2VjcmV0\n", { mode: 0o600 });
    expect(loadOrCreateWebhookSecret(dir, env)).toBe("whsec_bGVnYWN5c2VjcmV0bGVnYWN5c2VjcmV0");
    expect(existsSync(legacyWebhookSecretPath(dir))).toBe(false);
    expect(readFileSync(webhookSecretPath(dir, env), "utf8").trim()).toBe("whsec_bGVnYWN5c2VjcmV0bGVnYWN5c2VjcmV0");
    // a stale copy reappearing (a restored backup) is removed, the credentials dir wins
    writeFileSync(legacyWebhookSecretPath(dir), "whsec_b3RoZXJvdGhlcm90aGVyb3RoZXJvdGhlcg==\n");
    expect(loadOrCreateWebhookSecret(dir, env)).toBe("whsec_bGVnYWN5c2VjcmV0bGVnYWN5c2VjcmV0");
    expect(existsSync(legacyWebhookSecretPath(dir))).toBe(false);
  });
});

describe("HTTP listener", () => {
  const dataDir = tempDir();
  const executor = recordingExecutor();
  let engine: LocalEngine;
  let base: string;
  let close: () => void;
  const webhookSecret = loadOrCreateWebhookSecret(dataDir, { ATLAS_CONFIG_DIR: join(dataDir, "config") });

  beforeAll(async () => {
    engine = openEngine(dataDir, executor);
    const listening = await startListener(
      createRequestHandler({ engine, verifier: new WebhookVerifier(webhookSecret), dataDir, version: "test", log: () => {} }),
      "127.0.0.1", 0, () => {},
    );
    base = `http://127.0.0.1:${listening!.port}`;
    close = () => listening!.server.close();
  });
  afterAll(async () => {
    close();
    await engine.close();
  });

  const post = (payload: string, headers: Record<string, string> = signWebhook(webhookSecret, payload)) =>
    fetch(`${base}/webhook/approval`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: payload });

  it("GET / reports status, version, engine and pending count", async () => {
    await engine.submit(heldCall({ path: "/a" }));
    const response = await fetch(`${base}/`);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ status: "ATLAS Governance Gateway Running", version: "test", engine: "local", pending: 1, halted: false });
  });

  it("applies a signed approval (200), then refuses a second decision (409)", async () => {
    const decision = await engine.submit(heldCall({ path: "/b" }));
    const ref = decision.kind === "hold" ? decision.ref : "";
    const payload = JSON.stringify({ decision: "APPROVED", event_id: ref, reviewer: "alice", reason: "ok" });
    const response = await post(payload);
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ ref, decision: "approved" });
    const final = await engine.waitForOutcome(ref, 5000);
    expect(final?.status).toBe("executed");
    expect(final?.decision).toMatchObject({ reviewer: "alice", reason: "ok", source: "human", auth: "webhook-hmac" });
    const again = await post(JSON.stringify({ decision: "DENIED", event_id: ref }));
    expect(again.status).toBe(409);
    expect(executor.calls.filter((call) => call.args.path === "/b")).toHaveLength(1);
  });

  it("rejects unsigned (401), malformed (400), unknown ref (404) and oversized (413) requests without changing anything", async () => {
    const decision = await engine.submit(heldCall({ path: "/c" }));
    const ref = decision.kind === "hold" ? decision.ref : "";
    const payload = JSON.stringify({ decision: "APPROVED", event_id: ref });
    expect((await post(payload, {})).status).toBe(401);
    expect((await post(payload, signWebhook(webhookSecret, payload, new Date(Date.now() - 3_600_000)))).status).toBe(401);
    expect((await post("{oops")).status).toBe(400);
    expect((await post(JSON.stringify({ decision: "APPROVED", event_id: "evt_ffffffff" }))).status).toBe(404);
    const huge = JSON.stringify({ decision: "APPROVED", event_id: ref, reason: "x".repeat(MAX_WEBHOOK_BODY_BYTES) });
    expect((await post(huge)).status).toBe(413);
    expect(engine.get(ref)?.status).toBe("pending");
  });

  it("answers unknown routes with 404 and wrong methods with 405", async () => {
    expect((await fetch(`${base}/nope`)).status).toBe(404);
    expect((await fetch(`${base}/webhook/approval`)).status).toBe(405);
  });

  it("reports a busy port instead of failing", async () => {
    const port = Number(new URL(base).port);
    const lines: string[] = [];
    const second = await startListener(() => {}, "127.0.0.1", port, (line) => lines.push(line));
    expect(second).toBeUndefined();
    expect(lines[0]).toMatch(/in use/);
  });
});
