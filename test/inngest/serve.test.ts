import { afterEach, describe, expect, it } from "vitest";
import { DECISION_EVENT, DECISION_MATCH, REQUEST_EVENT, requestTriggerFilter } from "../../src/inngest/events.js";
import { WORKFLOW_RETRIES } from "../../src/inngest/governanceFunction.js";
import { hashStepId, signInngestBody, TEST_SIGNING_KEY, type EmulatedEvent } from "../helpers/inngestEmulator.js";
import { highRiskCall, startEmulatedGateway, type EmulatedGateway } from "../helpers/inngestEngineFixture.js";

// The gateway's /api/inngest against the Inngest emulator: signed sync and registration, the executor's signed
// calls, and what an attacker who reaches the endpoint could send.

const FALLBACK_KEY = `signkey-test-${"a1".repeat(32)}`;

const running: EmulatedGateway[] = [];
afterEach(async () => {
  for (const gateway of running.splice(0)) await gateway.close();
});

async function gatewayWith(options: Parameters<typeof startEmulatedGateway>[0] = {}): Promise<EmulatedGateway> {
  const gateway = await startEmulatedGateway({ ...options, env: { INNGEST_SIGNING_KEY_FALLBACK: FALLBACK_KEY, ...options.env } });
  running.push(gateway);
  return gateway;
}

async function holdOne(gateway: EmulatedGateway): Promise<{ ref: string; event: EmulatedEvent }> {
  const { ref } = await gateway.engine.submit(highRiskCall);
  const event = await gateway.emulator.waitForEvent((captured) => captured.name === REQUEST_EVENT && captured.data.ref === ref);
  return { ref: ref!, event };
}

/** One raw executor request, signed by `sign` (or unsigned). */
async function rawCall(gateway: EmulatedGateway, body: Record<string, unknown>, signature: string | undefined): Promise<{ status: number; headers: Headers; text: string }> {
  const url = `${gateway.url}?fnId=${encodeURIComponent(gateway.functionId)}&stepId=step`;
  const res = await fetch(url, { method: "POST", headers: { "content-type": "application/json", ...(signature ? { "x-inngest-signature": signature } : {}) }, body: JSON.stringify(body) });
  return { status: res.status, headers: res.headers, text: await res.text() };
}

function firstCallBody(event: EmulatedEvent, steps: Record<string, unknown> = {}): Record<string, unknown> {
  return { version: -1, event, events: [event], steps, ctx: { run_id: "01FORGEDRUN", attempt: 0, stack: { stack: Object.keys(steps), current: Object.keys(steps).length } } };
}

/** Memoized steps claiming the reviewer approved: what anyone who can reach /api/inngest could send. */
function forgedSteps(ref: string, event: EmulatedEvent): Record<string, unknown> {
  const approval = { name: DECISION_EVENT, id: "forged", ts: 1, data: { ref, app: event.data.app, decision: "approved", reviewer: "attacker" } };
  return Object.fromEntries(
    ([
      ["assess", { ref, route: "review", status: "pending" }],
      ["await-decision", approval],
      ["notify-reviewer", { ref, notified: true }],
      ["record-decision", { ref, decision: "approved", status: "approved", via: "event" }],
    ] as const).map(([id, data]) => [hashStepId(id), { data }]),
  );
}

const workflowSteps = (gateway: EmulatedGateway) => gateway.records().filter((record) => record.type === "workflow.step");

describe("/api/inngest against the Inngest emulator", () => {
  it("registers through a signed sync: the trigger filter, idempotency and retries Inngest will apply", async () => {
    const gateway = await gatewayWith();
    const app = gateway.emulator.app(gateway.appId)!;
    expect(app.url).toBe(gateway.url);
    expect(app.functions.map((fn) => fn.id)).toEqual([gateway.functionId, `${gateway.functionId}-failure`, `${gateway.functionId}-cancelled`]);
    const [fn, failure, cancelled] = app.functions;
    expect(failure!.triggers).toEqual([{ event: "inngest/function.failed", expression: `event.data.function_id == '${gateway.functionId}'` }]);
    expect(cancelled!.triggers).toEqual([{ event: "inngest/function.cancelled", expression: `event.data.function_id == "${gateway.functionId}"` }]);
    expect(fn!.triggers).toEqual([{ event: REQUEST_EVENT, expression: requestTriggerFilter(gateway.appId) }]);
    expect(fn!.idempotency).toBe("event.data.ref");
    expect(Object.values(fn!.steps)[0]!.retries).toEqual({ attempts: WORKFLOW_RETRIES });
  });

  it("runs a held call: version -1 and the full ctx first, the wait registered with the notification, the decision matched by its expression", async () => {
    const gateway = await gatewayWith();
    const { emulator } = gateway;
    const { ref, event } = await holdOne(gateway);
    const run = await emulator.waitForRun((candidate) => candidate.event.id === event.id);
    await emulator.waitingRun(run);
    await emulator.until(() => gateway.logs.includes(`HELD ${ref}`), 15_000, "notification");

    const first = run.calls[0]!;
    expect(first.body).toMatchObject({ version: -1, event: { name: REQUEST_EVENT, id: `${gateway.appId}:${ref}` }, steps: {}, ctx: { run_id: run.id, attempt: 0, stack: { stack: [], current: 0 } } });
    expect(first.status).toBe(206);
    // The wait and the notification come back in one response: the wait exists before anyone is told.
    const group = run.calls.find((call) => call.ops?.some((op) => op.op === "WaitForEvent"))!;
    expect(group.ops!.map((op) => `${op.op}:${op.displayName}`)).toEqual(["WaitForEvent:await-decision", "StepPlanned:notify-reviewer"]);
    expect(emulator.openWaits()).toEqual([{ runId: run.id, event: DECISION_EVENT, expression: DECISION_MATCH, expiresAt: Date.parse(gateway.engine.get(ref)!.deadline!) }]);
    expect(gateway.executed).toEqual([]);

    await gateway.engine.decide({ ref, decision: "approved", reviewer: "alice" });
    await emulator.ended(run);
    expect(run.status).toBe("completed");
    expect(run.output).toMatchObject({ ref, status: "executed", executed: true, by: "workflow" });
    // The wait stored the raw decision event, as the executor does.
    const decision = emulator.events.find((candidate) => candidate.name === DECISION_EVENT)!;
    expect(run.stepResult("await-decision")).toEqual({ data: { name: DECISION_EVENT, id: decision.id, ts: decision.ts, data: decision.data } });
    expect(gateway.executed).toEqual(["transfer"]);
    expect(gateway.engine.get(ref)).toMatchObject({ status: "executed", outcome: "ok" });
    expect(workflowSteps(gateway).map((record) => record.data.step)).toEqual(["assess", "notify-reviewer", "record-decision"]);
  });

  it("accepts the fallback signing key during a key rotation", async () => {
    const gateway = await gatewayWith();
    gateway.emulator.signingKey = FALLBACK_KEY;
    const { event } = await holdOne(gateway);
    const run = await gateway.emulator.waitForRun((candidate) => candidate.event.id === event.id);
    await gateway.emulator.waitingRun(run);
    expect(run.calls[0]!.status).toBe(206);
  });

  it("answers 401 to a bad, stale or missing signature, and runs nothing", async () => {
    const gateway = await gatewayWith({ sync: false });
    const { event } = await holdOne(gateway);
    const body = firstCallBody(event);
    const wrongKey = `signkey-test-${"00".repeat(32)}`;
    const cases: [string, string | undefined][] = [
      ["wrong key", signInngestBody(body, wrongKey)],
      ["stale", signInngestBody(body, TEST_SIGNING_KEY, new Date(Date.now() - 10 * 60_000))],
      ["tampered", signInngestBody({ ...body, steps: { forged: true } }, TEST_SIGNING_KEY)],
      ["garbage", "t=1&s=zz"],
      ["malformed", "nonsense"],
      ["missing", undefined],
    ];
    for (const [label, signature] of cases) {
      const res = await rawCall(gateway, body, signature);
      expect(res.status, label).toBe(401);
      // without this header Inngest would retry for hours before the run dies
      expect(res.headers.get("x-inngest-no-retry"), label).toBe("true");
    }
    const logged = gateway.logs.join("\n");
    expect(logged).toContain("a signature that matches neither the signing key nor its fallback (wrong or rotated key)");
    expect(logged).toContain("a signature older than 5 minutes");
    expect(logged).toContain("a malformed X-Inngest-Signature header");
    expect(logged).toContain("no X-Inngest-Signature header");
    expect(workflowSteps(gateway)).toEqual([]);
    // Introspection and unsigned sync are refused too outside dev mode.
    expect((await fetch(gateway.url)).status).toBe(401);
    expect((await fetch(gateway.url, { method: "PUT" })).status).toBe(401);
  });

  it("rejects injected step results (a forged approval) outside dev mode", async () => {
    const gateway = await gatewayWith({ sync: false });
    const { ref, event } = await holdOne(gateway);
    const res = await rawCall(gateway, firstCallBody(event, forgedSteps(ref, event)), undefined);
    expect(res.status).toBe(401);
    expect(gateway.executed).toEqual([]);
    expect(gateway.engine.get(ref)?.status).toBe("pending");
  });

  it("in explicit dev mode skips signatures (hence loopback only), and still never executes on an injected approval", async () => {
    const gateway = await gatewayWith({ sync: false, env: { INNGEST_DEV: "1" } });
    const { ref, event } = await holdOne(gateway);
    const res = await rawCall(gateway, firstCallBody(event, forgedSteps(ref, event)), undefined);
    expect(res.status).toBe(206);
    // The forged memo skipped the real record-decision step, so the ledger still says pending and execute refuses.
    expect(JSON.parse(res.text)).toMatchObject([{ op: "StepRun", displayName: "execute", data: { executed: false, status: "pending" } }]);
    expect(gateway.executed).toEqual([]);
  });
});
