import { createHash } from "node:crypto";
import type { Server } from "node:http";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config.js";
import { DECISION_EVENT, REQUEST_EVENT } from "../../src/inngest/events.js";
import type { InngestEngine } from "../../src/inngest/inngestEngine.js";
import { startInngestEngine } from "../../src/inngest/startInngestEngine.js";
import { createRequestHandler, startListener } from "../../src/http/listener.js";
import { scanLedger } from "../../src/ledger/ledger.js";
import { createRulesEvaluator } from "../../src/risk/assess.js";
import { loadOrCreateWebhookSecret, WebhookVerifier } from "../../src/http/webhook.js";
import { FakeEventApi, FakeExecutor, signInngestBody, TEST_EVENT_KEY, TEST_SIGNING_KEY, type CapturedEvent } from "../helpers/fakeInngest.js";
import { eventually, highRiskCall } from "../helpers/inngestEngineFixture.js";

// Plays Inngest's executor against /api/inngest on the gateway's own listener, over HTTP, with signed requests.

const FALLBACK_KEY = `signkey-test-${"a1".repeat(32)}`;

interface Served {
  engine: InngestEngine;
  url: string;
  functionId: string;
  api: FakeEventApi;
  ledgerPath: string;
  executed: string[];
  logs: string[];
  close(): Promise<void>;
}

const running: Served[] = [];
afterEach(async () => {
  for (const served of running.splice(0)) await served.close();
});

async function serveGateway(env: Record<string, string> = {}): Promise<Served> {
  const dir = mkdtempSync(join(tmpdir(), "atlas-serve-"));
  const api = new FakeEventApi();
  const apiUrl = await api.start();
  const config = loadConfig({
    env: { HOME: dir, ATLAS_ENGINE: "inngest", INNGEST_SIGNING_KEY: TEST_SIGNING_KEY, INNGEST_SIGNING_KEY_FALLBACK: FALLBACK_KEY, INNGEST_EVENT_KEY: TEST_EVENT_KEY, INNGEST_BASE_URL: apiUrl, ...env },
    userConfig: false,
    flags: { dataDir: dir },
  });
  const executed: string[] = [];
  const logs: string[] = [];
  const log = (line: string) => logs.push(line);
  const ledgerPath = join(dir, "ledgers", "main.jsonl");
  const started = await startInngestEngine({
    config,
    instance: "main",
    ledgerPath,
    evaluator: createRulesEvaluator(config.risk),
    executor: async (call) => {
      executed.push(call.tool);
      return { content: [{ type: "text", text: `${call.tool} done` }] };
    },
    version: "test",
    log,
    onHeld: (view) => log(`HELD ${view.ref}`),
  });
  started.engine.resume();
  const listening = await startListener(
    createRequestHandler({ engine: started.engine, verifier: new WebhookVerifier(loadOrCreateWebhookSecret(dir, { ATLAS_CONFIG_DIR: join(dir, "config") })), dataDir: dir, version: "test", log, routes: started.routes }),
    "127.0.0.1",
    0,
    log,
  );
  const server: Server = listening!.server;
  const served: Served = {
    engine: started.engine,
    url: `http://127.0.0.1:${listening!.port}/api/inngest`,
    functionId: `${started.appId}-governance-workflow`,
    api,
    ledgerPath,
    executed,
    logs,
    async close() {
      await started.engine.close();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      await api.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  running.push(served);
  return served;
}

async function holdOne(served: Served): Promise<{ ref: string; event: CapturedEvent }> {
  const { ref } = await served.engine.submit(highRiskCall);
  const event = await served.api.waitFor((captured) => captured.name === REQUEST_EVENT && captured.data.ref === ref);
  return { ref: ref!, event };
}

/**
 * An unsigned executor request whose memoized steps claim the reviewer approved: what anyone who can reach
 * /api/inngest could send. Step results are keyed by the sha1 of the step id, as the SDK does.
 */
function forgedApproval(served: Served, ref: string, event: CapturedEvent): FakeExecutor {
  const run = new FakeExecutor({ url: served.url, functionId: served.functionId, event, sign: () => undefined });
  const approval = { name: DECISION_EVENT, id: "forged", ts: 1, data: { ref, app: event.data.app, decision: "approved", reviewer: "attacker" } };
  const forged: [string, unknown][] = [
    ["assess", { ref, route: "review", status: "pending" }],
    ["await-decision", approval],
    ["notify-reviewer", { ref, notified: true }],
    ["record-decision", { ref, decision: "approved", status: "approved", via: "event" }],
  ];
  for (const [id, data] of forged) {
    const hashed = createHash("sha1").update(id).digest("hex");
    run.steps[hashed] = { type: "data", data };
    run.stack.push(hashed);
  }
  return run;
}

const workflowSteps = (served: Served) => scanLedger(served.ledgerPath).records.filter((record) => record.type === "workflow.step");

describe("/api/inngest served on the listener", () => {
  it("runs the workflow for correctly signed executor requests (206 per step, 200 at the end)", async () => {
    const served = await serveGateway();
    const { ref, event } = await holdOne(served);
    const run = new FakeExecutor({ url: served.url, functionId: served.functionId, event, signingKey: TEST_SIGNING_KEY });
    await run.drive();
    expect(run.responses[0]!.status).toBe(206);
    // The wait and the reviewer notification come back in one response: the wait exists before anyone is told.
    const group = run.responses.find((res) => Array.isArray(res.body) && (res.body as { op: string }[]).some((op) => op.op === "WaitForEvent"))!;
    expect((group.body as { op: string; displayName: string }[]).map((op) => `${op.op}:${op.displayName}`)).toEqual(["WaitForEvent:await-decision", "StepPlanned:notify-reviewer"]);
    expect(run.waiting?.opts).toMatchObject({ timeout: served.engine.get(ref)!.deadline });
    expect(served.logs).toContain(`HELD ${ref}`);
    expect(served.executed).toEqual([]);

    await served.engine.decide({ ref, decision: "approved", reviewer: "alice" });
    const decision = await served.api.waitFor((captured) => captured.name === DECISION_EVENT && captured.data.ref === ref);
    await run.resume(decision);
    expect(run.finished).toBe(true);
    expect(run.responses.at(-1)!.status).toBe(200);
    expect(run.output).toMatchObject({ ref, status: "executed", executed: true, by: "workflow" });
    expect(served.executed).toEqual(["transfer"]);
    expect(served.engine.get(ref)).toMatchObject({ status: "executed", outcome: "ok" });
    expect(workflowSteps(served).map((record) => record.data.step)).toEqual(["assess", "notify-reviewer", "record-decision"]);
    expect(scanLedger(served.ledgerPath).problem).toBeUndefined();
  });

  it("accepts the fallback signing key during a key rotation", async () => {
    const served = await serveGateway();
    const { event } = await holdOne(served);
    const res = await new FakeExecutor({ url: served.url, functionId: served.functionId, event, signingKey: FALLBACK_KEY }).call();
    expect(res.status).toBe(206);
  });

  it("answers 401 to a bad, stale or missing signature, and runs nothing", async () => {
    const served = await serveGateway();
    const { event } = await holdOne(served);
    const wrongKey = `signkey-test-${"00".repeat(32)}`;
    const cases: [string, (body: unknown) => string | undefined][] = [
      ["wrong key", (body) => signInngestBody(body, wrongKey)],
      ["stale", (body) => signInngestBody(body, TEST_SIGNING_KEY, new Date(Date.now() - 10 * 60_000))],
      ["tampered", (body) => signInngestBody({ ...(body as object), steps: { forged: true } }, TEST_SIGNING_KEY)],
      ["garbage", () => "t=1&s=zz"],
      ["missing", () => undefined],
    ];
    for (const [label, sign] of cases) {
      const res = await new FakeExecutor({ url: served.url, functionId: served.functionId, event, sign }).call();
      expect(res.status, label).toBe(401);
    }
    expect(workflowSteps(served)).toEqual([]);
    // Introspection and unsigned sync are refused too outside dev mode.
    expect((await fetch(served.url)).status).toBe(401);
    expect((await fetch(served.url, { method: "PUT" })).status).toBe(401);
  });

  it("rejects injected step results (a forged approval) outside dev mode", async () => {
    const served = await serveGateway();
    const { ref, event } = await holdOne(served);
    const res = await forgedApproval(served, ref, event).call();
    expect(res.status).toBe(401);
    expect(served.executed).toEqual([]);
    expect(served.engine.get(ref)?.status).toBe("pending");
  });

  it("in explicit dev mode skips signatures (hence loopback only), and still never executes on an injected approval", async () => {
    const served = await serveGateway({ INNGEST_DEV: "1" });
    const { ref, event } = await holdOne(served);
    const run = forgedApproval(served, ref, event);
    await run.drive();
    expect(run.responses[0]!.status).toBe(206);
    expect(run.finished).toBe(true);
    // The forged memo skipped the real record-decision step, so the ledger still says pending and execute refuses.
    expect(run.output).toMatchObject({ executed: false, status: "pending" });
    expect(served.executed).toEqual([]);
  });
});

