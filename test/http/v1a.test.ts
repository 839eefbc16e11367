import { statSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main } from "../../src/cli/main.js";
import { approvalKeysFor, approvalKeysPath, parsePublicKey } from "../../src/http/approvalKeys.js";
import { createRequestHandler, startListener } from "../../src/http/listener.js";
import { signWebhook, WebhookVerifier } from "../../src/http/webhook.js";
import type { LocalEngine } from "../../src/governance/localEngine.js";
import { reviewerKeyPair, signV1a } from "../helpers/ed25519.js";
import { heldCall, openEngine, recordingExecutor, tempDir } from "../helpers.js";

/** Asymmetric approval signatures (issue 9 item 6): Standard Webhooks `v1a`, Ed25519, the gateway holding public keys only. */
const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const body = JSON.stringify({ decision: "APPROVED", event_id: "evt_0123abcd", reviewer: "someone-else" });
const alice = reviewerKeyPair();
const mallory = reviewerKeyPair();
const keys = () => new Map([["alice", parsePublicKey(alice.publicKey)]]);

describe("v1a signatures", () => {
  const now = new Date();
  const cases: [string, () => Record<string, string>, string, boolean, 200 | 401][] = [
    ["signed by a registered key", () => signV1a(alice.privateKey, body, now), body, true, 200],
    ["signed by an unknown key", () => signV1a(mallory.privateKey, body, now), body, true, 401],
    ["tampered body", () => signV1a(alice.privateKey, body, now), body.replace("APPROVED", "DENIED"), true, 401],
    ["stale timestamp (10 min old)", () => signV1a(alice.privateKey, body, new Date(now.getTime() - 600_000)), body, true, 401],
    ["signature of another id", () => ({ ...signV1a(alice.privateKey, body, now), "webhook-id": "msg_other" }), body, true, 401],
    ["truncated signature", () => { const h = signV1a(alice.privateKey, body, now); h["webhook-signature"] = h["webhook-signature"]!.slice(0, 40); return h; }, body, true, 401],
    ["a bad v1 next to a good v1a (rotation)", () => { const h = signV1a(alice.privateKey, body, now); h["webhook-signature"] = `v1,AAAA ${h["webhook-signature"]}`; return h; }, body, true, 200],
    ["HMAC v1 while HMAC is on", () => signWebhook(secret, body, now), body, true, 200],
    ["HMAC v1 while HMAC is off", () => signWebhook(secret, body, now), body, false, 401],
    ["v1a while HMAC is off", () => signV1a(alice.privateKey, body, now), body, false, 200],
  ];
  it.each(cases)("%s -> %d", (_label, headers, payload, hmac, expected) => {
    const result = new WebhookVerifier(secret, { publicKeys: keys, hmac }).check(payload, headers());
    expect(result.ok ? 200 : result.status).toBe(expected);
  });

  it("names the signing key as the signer; HMAC names no one", () => {
    const verifier = new WebhookVerifier(secret, { publicKeys: keys });
    expect(verifier.check(body, signV1a(alice.privateKey, body))).toMatchObject({ ok: true, signer: "alice" });
    const hmac = verifier.check(body, signWebhook(secret, body));
    expect(hmac.ok && hmac.signer).toBe(undefined);
  });

  it("refuses a replayed v1a request", () => {
    const verifier = new WebhookVerifier(secret, { publicKeys: keys });
    const headers = signV1a(alice.privateKey, body);
    expect(verifier.check(body, headers).ok).toBe(true);
    expect(verifier.check(body, headers)).toMatchObject({ ok: false, status: 401, error: expect.stringMatching(/replay/) });
  });

  it("rejects public keys that are not 32-byte Ed25519 keys", () => {
    expect(() => parsePublicKey("whpk_AAAA")).toThrow(/32-byte/);
    expect(() => parsePublicKey(secret)).toThrow(/whpk_/);
  });
});

describe("v1a through the listener and the keys command", () => {
  const dataDir = tempDir();
  const executor = recordingExecutor();
  let engine: LocalEngine;
  let base: string;
  let close: () => void;
  const run = async (args: string[]) => {
    const out: string[] = [];
    const err: string[] = [];
    const code = await main([...args, "--data-dir", dataDir], { out: (text) => out.push(text), err: (text) => err.push(text), env: { HOME: dataDir, ATLAS_CONFIG_DIR: dataDir } });
    return { code, out: out.join("\n"), err: err.join("\n") };
  };

  beforeAll(async () => {
    engine = openEngine(dataDir, executor);
    const config = { dataDir, webhook: { publicKeys: {}, hmac: false } };
    const verifier = new WebhookVerifier(secret, { hmac: false, publicKeys: () => approvalKeysFor(config, () => {}) });
    const listening = await startListener(createRequestHandler({ engine, verifier, dataDir, version: "test", log: () => {} }), "127.0.0.1", 0, () => {});
    base = `http://127.0.0.1:${listening!.port}`;
    close = () => listening!.server.close();
  });
  afterAll(async () => {
    close();
    await engine.close();
  });

  const approve = (ref: string, headers: (payload: string) => Record<string, string>) => {
    const payload = JSON.stringify({ decision: "APPROVED", event_id: ref, reviewer: "claimed-name" });
    return fetch(`${base}/webhook/approval`, { method: "POST", headers: { "content-type": "application/json", ...headers(payload) }, body: payload });
  };

  it("a key added while the gateway runs approves at once, recorded as its id; removed, it no longer can", async () => {
    const ref = (await engine.submit(heldCall({ path: "/v1a" }))).ref!;
    expect((await approve(ref, (payload) => signV1a(alice.privateKey, payload))).status).toBe(401);

    expect((await run(["keys", "add", "alice", "whpk_nonsense"])).code).toBe(2);
    const added = await run(["keys", "add", "alice", alice.publicKey]);
    expect(added).toMatchObject({ code: 0, out: expect.stringMatching(/added key 'alice'/) });
    if (process.platform !== "win32") expect(statSync(approvalKeysPath(dataDir)).mode & 0o777).toBe(0o600);
    expect((await run(["keys", "list"])).out).toMatch(/alice\s+whpk_\S+\s+keys add[\s\S]*HMAC \(v1\) signatures with the shared secret: accepted too/);

    expect((await approve(ref, (payload) => signWebhook(secret, payload))).status).toBe(401); // HMAC is off here
    const response = await approve(ref, (payload) => signV1a(alice.privateKey, payload));
    expect(response.status).toBe(200);
    expect((await engine.waitForOutcome(ref, 5000))?.decision).toMatchObject({ decision: "approved", reviewer: "alice", auth: "webhook-v1a" });

    expect((await run(["keys", "remove", "alice"])).code).toBe(0);
    expect((await run(["keys", "remove", "alice"])).code).toBe(4);
    const next = (await engine.submit(heldCall({ path: "/v1a-2" }))).ref!;
    expect((await approve(next, (payload) => signV1a(alice.privateKey, payload))).status).toBe(401);
    expect(engine.get(next)?.status).toBe("pending");
  });
});
