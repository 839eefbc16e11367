import fc from "fast-check";
import { readdirSync, statSync } from "node:fs";
import { createConnection, type Server as NetServer } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { instancePaths } from "../../src/dataDir.js";
import type { LocalEngine } from "../../src/governance/localEngine.js";
import { serveControl } from "../../src/governance/instance.js";
import { createRequestHandler, MAX_WEBHOOK_BODY_BYTES, startListener } from "../../src/http/listener.js";
import { isWellFormedText } from "../../src/argumentBounds.js";
import { signWebhook, WebhookVerifier } from "../../src/http/webhook.js";
import type { LedgerSink } from "../../src/ledger/ledger.js";
import { openFileSink } from "../../src/ledger/ledger.js";
import { heldCall, openEngine, recordingExecutor, tempDir } from "../helpers.js";
import { ledgerRecords } from "../helpers/ledgerRecords.js";

/**
 * Issue 11: no request on the webhook or the control socket yields a 500 or changes anything, whatever it carries —
 * random bytes, random JSON, well-signed bodies with wrong fields or lone surrogates — and a decision that cannot be
 * recorded answers 503 (never 409 "already decided").
 */
const SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const RUNS = 150;

/** A ledger sink that can be switched to failing, as a full disk or a read-only file would. */
function switchableSink(path: string): LedgerSink & { failing: boolean } {
  const inner = openFileSink(path);
  const sink = {
    failing: false,
    write(text: string) {
      if (sink.failing) throw Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC" });
      inner.write(text);
    },
    sync: () => (sink.failing ? Promise.reject(new Error("ENOSPC: no space left on device, fsync")) : inner.sync()),
    close: () => inner.close(),
  };
  return sink;
}

describe("the webhook and the control socket under bad input", () => {
  const dataDir = tempDir("atlas-fuzz-");
  const ledgerPath = instancePaths(dataDir, "main").ledger;
  const executor = recordingExecutor();
  let sink: ReturnType<typeof switchableSink>;
  let engine: LocalEngine;
  let base = "";
  let ref = "";
  let control: NetServer;
  const socketPath = join(dataDir, "fuzz.sock");
  let closeHttp: () => void;
  const logs: string[] = [];

  beforeAll(async () => {
    engine = openEngine(dataDir, executor, { sink: (path) => (sink = switchableSink(path)) });
    const held = await engine.submit(heldCall({ path: "/fuzz" }));
    ref = held.ref!;
    const listening = await startListener(
      createRequestHandler({ engine, verifier: new WebhookVerifier(SECRET), dataDir, version: "test", log: (line) => logs.push(line) }),
      "127.0.0.1", 0, () => {},
    );
    base = `http://127.0.0.1:${listening!.port}`;
    closeHttp = () => listening!.server.close();
    control = await serveControl(socketPath, async (request) => {
      if (request.op === "decide") return engine.decide(request);
      throw new Error("unsupported here");
    });
  });
  afterAll(async () => {
    closeHttp();
    control.close();
    await engine.close();
  });

  /** What must not change: the held call stays pending, nothing ran, the ledger has no new bytes. */
  /** Every byte of every segment: a half-written record changes it too, not only a whole one. */
  const ledgerBytes = () => readdirSync(ledgerPath).reduce((sum, name) => sum + statSync(join(ledgerPath, name)).size, 0);
  const snapshot = () => ({ status: engine.get(ref)?.status, ran: executor.calls.length, ledgerBytes: ledgerBytes() });

  const post = (body: string | Uint8Array, headers: Record<string, string>) =>
    fetch(`${base}/webhook/approval`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body });

  const sendLine = (line: string) =>
    new Promise<string>((resolve, reject) => {
      const socket = createConnection(socketPath);
      let reply = "";
      socket.setEncoding("utf8");
      socket.on("connect", () => socket.write(`${line}\n`));
      socket.on("data", (chunk: string) => (reply += chunk));
      socket.on("end", () => resolve(reply));
      socket.on("close", () => resolve(reply));
      socket.on("error", reject);
    });

  const otherRef = fc.stringMatching(/^evt_[0-9a-f]{8}$/).filter((candidate) => candidate !== ref);
  // UTF-16 code units, so lone surrogates come up ("binary" draws whole code points only)
  const codeUnit = fc.oneof(fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 0xd800, max: 0xdfff })).map((code) => String.fromCharCode(code));
  const anyText = fc.oneof(fc.string({ unit: codeUnit, maxLength: 300 }), fc.string({ unit: "binary", maxLength: 300 }));
  const decision = fc.oneof({ arbitrary: fc.constantFrom("APPROVED", "approve", "DENIED", "deny", "REJECTED"), weight: 4 }, fc.string({ maxLength: 20 }), fc.integer(), fc.constant(null));
  const structuredBody = fc.record({
    decision,
    event_id: fc.oneof(otherRef, fc.string({ maxLength: 20 }), { arbitrary: fc.constant(null).map(() => ref), weight: 4 } /* ref is set in beforeAll */),
    reviewer: fc.oneof(anyText, fc.integer(), fc.constant("")),
    reason: fc.oneof(anyText, fc.array(fc.string()), fc.string({ minLength: 2001, maxLength: 2100 })),
  }, { requiredKeys: [] }).filter((body) => {
    // a well-formed decision on the pending ref with valid fields would be a real decision, not bad input
    const valid = (value: unknown, max: number) => value === undefined || (typeof value === "string" && value.length <= max && isWellFormedText(value));
    const realDecision = typeof body.decision === "string" && /^(approved?|denied|deny|rejected)$/i.test(body.decision);
    return !(body.event_id === ref && realDecision && valid(body.reviewer, 200) && (body.reviewer !== "") && valid(body.reason, 2000));
  });

  it("webhook: random bytes, random JSON and structured bad bodies, signed or not, answer 4xx and change nothing", async () => {
    const before = snapshot();
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.uint8Array({ maxLength: 512 }).map((bytes) => Buffer.from(bytes).toString("latin1")),
          fc.json(),
          structuredBody.map((body) => JSON.stringify(body)),
          fc.string({ unit: codeUnit, maxLength: 200 }),
        ),
        fc.constantFrom("signed", "unsigned", "badly-signed", "stale"),
        async (body, signing) => {
          const headers = signing === "signed" ? signWebhook(SECRET, body)
            : signing === "badly-signed" ? signWebhook("whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", body)
              : signing === "stale" ? signWebhook(SECRET, body, new Date(Date.now() - 3_600_000)) : {};
          const response = await post(body, headers);
          await response.arrayBuffer();
          expect(response.status, `${signing} ${body.slice(0, 80)}`).toBeGreaterThanOrEqual(400);
          expect(response.status, `${signing} ${body.slice(0, 80)}`).toBeLessThan(500);
        },
      ),
      { numRuns: RUNS },
    );
    expect(snapshot()).toEqual(before);
  }, 120_000);

  it("webhook: well-signed bodies with wrong fields answer 4xx and change nothing", async () => {
    const before = snapshot();
    await fc.assert(
      fc.asyncProperty(structuredBody, async (fields) => {
        const body = JSON.stringify(fields);
        const response = await post(body, signWebhook(SECRET, body));
        await response.arrayBuffer();
        expect(response.status, body.slice(0, 120)).toBeGreaterThanOrEqual(400);
        expect(response.status, body.slice(0, 120)).toBeLessThan(500);
      }),
      { numRuns: RUNS },
    );
    expect(snapshot()).toEqual(before);
  }, 120_000);

  it("webhook: lone surrogates in reviewer or reason answer 400, not 500", async () => {
    const before = snapshot();
    for (const fields of [{ reviewer: "al\ud800ice" }, { reason: "ok \udfff" }, { reviewer: "\udc00", reason: "\ud83d" }]) {
      const body = JSON.stringify({ decision: "APPROVED", event_id: ref, ...fields });
      const response = await post(body, signWebhook(SECRET, body));
      expect(response.status).toBe(400);
      expect(((await response.json()) as { error: string }).error).toMatch(/valid Unicode/);
    }
    expect(snapshot()).toEqual(before);
  });

  it("webhook: oversized bodies (declared or streamed) answer 413", async () => {
    const before = snapshot();
    const big = "x".repeat(MAX_WEBHOOK_BODY_BYTES + 1);
    expect((await post(big, signWebhook(SECRET, big))).status).toBe(413);
    expect(snapshot()).toEqual(before);
  });

  it("control socket: random lines and malformed requests get an error reply and change nothing", async () => {
    const before = snapshot();
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.string({ unit: codeUnit, maxLength: 300 }).map((text) => text.replace(/\n/g, " ")),
          fc.json().map((text) => text.replace(/\n/g, " ")),
          structuredBody.map((body) => JSON.stringify({ op: "decide", ...body, decision: typeof body.decision === "string" ? body.decision.toLowerCase() : body.decision, ref: body.event_id })),
          fc.record({ op: fc.string({ maxLength: 10 }), ref: fc.constant(ref) }).map((body) => JSON.stringify(body)),
        ),
        async (line) => {
          const reply = await sendLine(line);
          const parsed = JSON.parse(reply) as { error?: string; status?: string };
          // an error, or "not_found" for a well-formed decision on another ref: never applied
          expect(parsed.error !== undefined || parsed.status === "not_found", reply).toBe(true);
        },
      ),
      { numRuns: RUNS },
    );
    expect(snapshot()).toEqual(before);
    const reply = JSON.parse(await sendLine(JSON.stringify({ op: "decide", ref, decision: "approved", reviewer: "a\ud800" }))) as { error: string };
    expect(reply.error).toMatch(/reviewer: must be valid Unicode/);
    expect(snapshot()).toEqual(before);
  }, 120_000);

  it("a decision that cannot be recorded answers 503 (not 409), changes nothing, and a retry of the same message is not a replay", async () => {
    const body = JSON.stringify({ decision: "APPROVED", event_id: ref, reviewer: "alice" });
    const headers = signWebhook(SECRET, body);
    const bytes = ledgerBytes();
    sink.failing = true;
    const first = await post(body, headers);
    expect(first.status).toBe(503);
    expect(first.headers.get("retry-after")).toBe("5");
    expect(((await first.json()) as { error: string }).error).toMatch(/could not be recorded.*ENOSPC/);
    const retry = await post(body, headers);
    expect(retry.status).toBe(503);
    expect(engine.get(ref)?.status).toBe("pending");
    expect(executor.calls).toHaveLength(0);
    expect(ledgerRecords(dataDir).map((record) => record.type)).not.toContain("decision.recorded");
    expect(ledgerBytes()).toBe(bytes);
    // the control socket says the same: unavailable, not refused
    const reply = JSON.parse(await sendLine(JSON.stringify({ op: "decide", ref, decision: "approved", reviewer: "alice" }))) as { error: string; unavailable?: boolean };
    expect(reply).toMatchObject({ unavailable: true });
    expect(logs.join("\n")).toContain(`could not record the decision for ${ref}`);
  });
});
