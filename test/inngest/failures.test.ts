import { afterEach, describe, expect, it } from "vitest";
import { DECISION_EVENT, REQUEST_EVENT } from "../../src/inngest/events.js";
import { WORKFLOW_RETRIES } from "../../src/inngest/governanceFunction.js";
import { statusToResult } from "../../src/mcp/toolResults.js";
import { INNGEST_BACKOFF, TEST_EVENT_KEY, type EmulatedRun } from "../helpers/inngestEmulator.js";
import { highRiskCall, lowRiskCall, startEmulatedGateway, type EmulatedGateway, type EmulatedGatewayOptions } from "../helpers/inngestEngineFixture.js";

// The Inngest engine against the emulated executor, failure by failure (issue 14): every held call either runs
// once or says plainly why it cannot, and the mutations that used to pass unnoticed (a wrong or invalid match
// expression, no trigger filter, no idempotency key) fail here.

const running: EmulatedGateway[] = [];
afterEach(async () => {
  for (const gateway of running.splice(0)) await gateway.close();
});

async function gatewayWith(options: EmulatedGatewayOptions = {}): Promise<EmulatedGateway> {
  const gateway = await startEmulatedGateway(options);
  running.push(gateway);
  return gateway;
}

/** Submits a high-risk call and waits until its run is waiting for the decision. */
async function holdAndWait(gateway: EmulatedGateway, call = highRiskCall): Promise<{ ref: string; run: EmulatedRun }> {
  const { ref } = await gateway.engine.submit(call);
  const run = await gateway.emulator.waitForRun((candidate) => candidate.event.data.ref === ref && candidate.fn.id === gateway.functionId);
  await gateway.emulator.waitingRun(run);
  await gateway.emulator.until(() => gateway.logs.includes(`HELD ${ref}`), 15_000, "notification");
  return { ref: ref!, run };
}

/** Posts events straight to the emulator's event API, as another install or a replay would. */
async function postEvents(gateway: EmulatedGateway, events: unknown): Promise<number> {
  const res = await fetch(`${gateway.emulator.url}/e/${TEST_EVENT_KEY}`, { method: "POST", body: JSON.stringify(events) });
  await res.body?.cancel();
  return res.status;
}

/** Advances the emulator's clock through `retries` backoff delays, letting each retried call finish. */
async function sitOutRetries(gateway: EmulatedGateway, retries: number): Promise<void> {
  for (let retry = 1; retry <= retries; retry++) {
    await gateway.emulator.idle();
    gateway.emulator.clock.advance(INNGEST_BACKOFF(retry));
  }
  await gateway.emulator.idle();
}

describe("the happy paths on the emulated executor", () => {
  it("auto-approve: a low-risk call runs in its run's execute step, once", async () => {
    const gateway = await gatewayWith();
    const decision = await gateway.engine.submit(lowRiskCall);
    expect(decision).toMatchObject({ kind: "allow", result: { content: [{ type: "text", text: "read_file done" }] } });
    const run = await gateway.emulator.waitForRun((candidate) => candidate.event.data.ref === decision.ref);
    await gateway.emulator.ended(run);
    expect(run).toMatchObject({ status: "completed", output: { executed: true, by: "workflow" } });
    expect(gateway.executed).toEqual(["read_file"]);
  });

  it("deny: the run ends without executing", async () => {
    const gateway = await gatewayWith();
    const { ref, run } = await holdAndWait(gateway);
    await gateway.engine.decide({ ref, decision: "denied", reviewer: "bob", reason: "no" });
    await gateway.emulator.ended(run);
    expect(run.output).toEqual({ ref, status: "denied", executed: false });
    expect(gateway.executed).toEqual([]);
  });

  it("expire: the wait times out on Inngest's clock, the run stores null and records the expiry", async () => {
    const gateway = await gatewayWith();
    const { ref, run } = await holdAndWait(gateway);
    gateway.emulator.clock.advance(Date.parse(gateway.engine.get(ref)!.deadline!) - gateway.emulator.clock.now() + 1);
    await gateway.emulator.ended(run);
    expect(run.stepResult("await-decision")).toEqual({ data: null });
    expect(run.output).toEqual({ ref, status: "expired", executed: false });
    expect(gateway.engine.get(ref)?.decision).toMatchObject({ decision: "denied", source: "timeout" });
    expect(gateway.executed).toEqual([]);
  });
});

describe("what Inngest applies from the registered config", () => {
  it("the trigger filter: another install's request event (same event name) starts no run here", async () => {
    const gateway = await gatewayWith();
    expect(await postEvents(gateway, { name: REQUEST_EVENT, id: "other-app:evt_0000abcd", data: { ref: "evt_0000abcd", app: "another-install", route: "review" } })).toBe(200);
    await gateway.emulator.idle();
    expect(gateway.emulator.runs).toEqual([]);
    expect(gateway.logs.join("\n")).not.toContain("evt_0000abcd");
  });

  it("idempotency: a second request event for the same ref (another event id) starts no second run", async () => {
    const gateway = await gatewayWith();
    const { ref, run } = await holdAndWait(gateway);
    const original = gateway.emulator.events.find((event) => event.name === REQUEST_EVENT)!;
    expect(await postEvents(gateway, { name: REQUEST_EVENT, id: `replayed-${ref}`, data: original.data })).toBe(200);
    // and the same event id again is dropped by Inngest's 24 h event-id dedupe
    expect(await postEvents(gateway, { name: REQUEST_EVENT, id: original.id, data: original.data })).toBe(200);
    await gateway.emulator.idle();
    expect(gateway.emulator.runs.filter((candidate) => candidate.fn.id === gateway.functionId)).toEqual([run]);
  });

  it("the decision match: only a well-formed decision for this ref and app resumes the wait", async () => {
    const gateway = await gatewayWith();
    const { ref, run } = await holdAndWait(gateway);
    const data = { ref, app: gateway.appId, decision: "approved", reviewer: "mallory" };
    for (const wrong of [{ ...data, ref: "evt_ffffffff" }, { ...data, app: "another-install" }, { ...data, decision: "maybe" }, { ref }]) {
      expect(await postEvents(gateway, { name: DECISION_EVENT, data: wrong })).toBe(200);
    }
    await gateway.emulator.idle();
    expect(gateway.emulator.openWaits().map((wait) => wait.runId)).toEqual([run.id]);
    await gateway.engine.decide({ ref, decision: "approved", reviewer: "alice" });
    await gateway.emulator.ended(run);
    expect(run.output).toMatchObject({ ref, status: "executed", executed: true });
    expect(gateway.engine.get(ref)?.decision).toMatchObject({ reviewer: "alice" });
  });

  it("an app synced only after the approval: the decision event found no wait, the run that starts later applies the ledger's decision", async () => {
    const gateway = await gatewayWith({ sync: false });
    const { ref } = await gateway.engine.submit(highRiskCall);
    await gateway.engine.decide({ ref: ref!, decision: "approved", reviewer: "alice" });
    await gateway.emulator.waitForEvent((event) => event.name === DECISION_EVENT);
    // The app syncs only now; the request event went nowhere, so replay it as Inngest's dashboard would.
    await gateway.emulator.sync(gateway.url);
    const request = gateway.emulator.events.find((event) => event.name === REQUEST_EVENT)!;
    expect(await postEvents(gateway, { name: REQUEST_EVENT, id: `replay-${ref}`, data: request.data })).toBe(200);
    const run = await gateway.emulator.waitForRun((candidate) => candidate.event.data.ref === ref);
    await gateway.emulator.ended(run, 30_000);
    expect(run.output).toMatchObject({ ref, status: "executed", executed: true });
    expect(gateway.executed).toEqual(["transfer"]);
  });
});

describe("crash and restart at each step", () => {
  it("crash before Inngest accepted the request event: the restarted gateway sends it, and the call runs once", async () => {
    const gateway = await gatewayWith();
    gateway.emulator.failNextEvents = 1_000;
    const { ref } = await gateway.engine.submit(highRiskCall);
    await gateway.emulator.until(() => gateway.emulator.refused.length > 0, 15_000, "a failed send");
    await gateway.stop();
    gateway.emulator.failNextEvents = 0;
    await gateway.restart();
    const run = await gateway.emulator.waitForRun((candidate) => candidate.event.data.ref === ref);
    await gateway.emulator.waitingRun(run);
    await gateway.engine.decide({ ref: ref!, decision: "approved", reviewer: "alice" });
    await gateway.emulator.ended(run);
    expect(run.output).toMatchObject({ status: "executed", executed: true });
    expect(gateway.executed).toEqual(["transfer"]);
  });

  it("crash before the run's first step: Inngest retries it against the restarted gateway", async () => {
    const gateway = await gatewayWith();
    const { ref } = await gateway.engine.submit(highRiskCall);
    await gateway.emulator.waitForEvent((event) => event.data.ref === ref);
    await gateway.stop();
    const run = await gateway.emulator.waitForRun((candidate) => candidate.event.data.ref === ref);
    await gateway.emulator.until(() => run.calls.some((call) => call.status === "transport-error"), 15_000, "the first call to fail");
    await gateway.emulator.idle();
    await gateway.restart();
    gateway.emulator.clock.advance(INNGEST_BACKOFF(1));
    await gateway.emulator.waitingRun(run);
    await gateway.engine.decide({ ref: ref!, decision: "approved", reviewer: "alice" });
    await gateway.emulator.ended(run);
    expect(gateway.executed).toEqual(["transfer"]);
  });

  it("crash while the call executes: never re-run; the retried step ends the run and the call stays 'unknown'", async () => {
    let release!: () => void;
    const gateway = await gatewayWith({ executor: () => new Promise((resolve) => (release = () => resolve({ content: [{ type: "text", text: "late" }] }))) });
    const { ref, run } = await holdAndWait(gateway);
    await gateway.engine.decide({ ref, decision: "approved", reviewer: "alice" });
    await gateway.emulator.until(() => gateway.executed.length === 1, 15_000, "the execution to start");
    await gateway.stop().catch(() => {});
    release();
    await gateway.restart();
    expect(gateway.engine.get(ref)?.status).toBe("unknown");
    await sitOutRetries(gateway, 2);
    await gateway.emulator.ended(run);
    expect(run.status).toBe("failed");
    expect(run.error).toContain("never run twice");
    expect(gateway.executed).toEqual(["transfer"]);
    expect(gateway.engine.get(ref)?.status).toBe("unknown");
  });

  it("gateway down while the run waits: approving after the restart runs the call once", async () => {
    const gateway = await gatewayWith();
    const { ref, run } = await holdAndWait(gateway);
    await gateway.stop();
    await gateway.restart();
    await gateway.engine.decide({ ref, decision: "approved", reviewer: "alice" });
    await gateway.emulator.ended(run);
    expect(run.output).toMatchObject({ status: "executed", executed: true });
    expect(gateway.executed).toEqual(["transfer"]);
  });

  it("gateway down when the decision arrives: Inngest retries the step on its backoff until the gateway is back", async () => {
    const gateway = await gatewayWith();
    const { ref, run } = await holdAndWait(gateway);
    await gateway.engine.decide({ ref, decision: "approved", reviewer: "alice" });
    await gateway.emulator.until(() => gateway.emulator.openWaits().length === 0, 15_000, "the wait to be resumed");
    // the decision is in Inngest; the gateway crashes before the run's next call
    await gateway.stop();
    await gateway.emulator.idle();
    const failedCalls = run.calls.filter((call) => call.status === "transport-error").length;
    expect(failedCalls).toBeGreaterThan(0);
    await gateway.restart();
    gateway.emulator.clock.advance(INNGEST_BACKOFF(failedCalls));
    await gateway.emulator.ended(run);
    expect(run.output).toMatchObject({ status: "executed", executed: true });
    expect(gateway.executed).toEqual(["transfer"]);
  });

  it("a run that exhausts its retries while the gateway is away: the approved call is settled, never left approved", async () => {
    const gateway = await gatewayWith();
    const { ref, run } = await holdAndWait(gateway);
    await gateway.engine.decide({ ref, decision: "approved", reviewer: "alice" });
    await gateway.emulator.until(() => gateway.emulator.openWaits().length === 0, 15_000, "the wait to be resumed");
    await gateway.stop();
    await sitOutRetries(gateway, WORKFLOW_RETRIES);
    expect(run.status).toBe("failed");
    expect(run.calls.filter((call) => call.status === "transport-error")).toHaveLength(WORKFLOW_RETRIES + 1);
    // The gateway returns while Inngest still retries the failure handler: it learns the run is gone.
    await gateway.restart();
    await sitOutRetries(gateway, 1);
    await gateway.emulator.until(() => gateway.engine.get(ref)?.status === "abandoned", 15_000, "the call to be settled");
    expect(gateway.engine.get(ref)?.problem).toMatchObject({ kind: "run_ended" });
    expect(gateway.executed).toEqual([]);
    expect(gateway.logs.join("\n")).toMatch(new RegExp(`${ref} \\(transfer\\) was approved, but its Inngest run \\S+ failed`));
  });

  it("with inngest.onRunFailure local, the same approved call runs on this gateway, once", async () => {
    const gateway = await gatewayWith({ env: { ATLAS_INNGEST_ON_RUN_FAILURE: "local" } });
    const { ref, run } = await holdAndWait(gateway);
    await gateway.engine.decide({ ref, decision: "approved", reviewer: "alice" });
    await gateway.emulator.until(() => gateway.emulator.openWaits().length === 0, 15_000, "the wait to be resumed");
    await gateway.stop();
    await sitOutRetries(gateway, WORKFLOW_RETRIES);
    await gateway.restart();
    await sitOutRetries(gateway, 1);
    await gateway.emulator.until(() => gateway.engine.get(ref)?.status === "executed", 15_000, "the local run");
    expect(gateway.executed).toEqual(["transfer"]);
    expect(gateway.records().find((record) => record.type === "execution.started" && record.ref === ref)?.data).toMatchObject({ by: "gateway", reason: expect.stringContaining("onRunFailure local") });
    expect(run.status).toBe("failed");
  });

  it("without the failure handler's news (gateway away for it too), the deadline backstop settles the approval", async () => {
    const gateway = await gatewayWith({ env: { ATLAS_REVIEW_TIMEOUT: "3s" }, expiryGraceMs: 0 });
    const { ref } = await holdAndWait(gateway);
    await gateway.engine.decide({ ref, decision: "approved", reviewer: "alice" });
    await gateway.emulator.until(() => gateway.emulator.openWaits().length === 0, 15_000, "the wait to be resumed");
    await gateway.stop();
    await sitOutRetries(gateway, WORKFLOW_RETRIES + 2);
    await gateway.restart();
    await gateway.emulator.until(() => gateway.engine.get(ref)?.status === "abandoned", 20_000, "the deadline backstop");
    const abandoned = gateway.records().find((record) => record.type === "request.abandoned" && record.ref === ref);
    expect(abandoned?.data.reason).toContain("no Inngest run executed it by its review deadline");
    expect(gateway.executed).toEqual([]);
  });

  it("a cancelled run: the gateway hears of it and the approval is settled by policy", async () => {
    const gateway = await gatewayWith({ env: { ATLAS_INNGEST_ON_RUN_FAILURE: "local" } });
    const { ref, run } = await holdAndWait(gateway);
    gateway.emulator.cancel(run);
    await gateway.emulator.until(() => gateway.engine.get(ref)?.problem?.kind === "run_ended", 15_000, "the cancellation to reach the gateway");
    expect(statusToResult(gateway.engine.get(ref)!).content.map((block) => (block as { text: string }).text).join("\n")).toContain("was cancelled");
    await gateway.engine.decide({ ref, decision: "approved", reviewer: "alice" });
    await gateway.emulator.until(() => gateway.engine.get(ref)?.status === "executed", 15_000, "the local run");
    expect(gateway.executed).toEqual(["transfer"]);
  });
});

describe("misconfiguration and limits", () => {
  it("an oversized call is sent by reference: the run starts, and approval runs it with the full arguments", async () => {
    const seen: unknown[] = [];
    const gateway = await gatewayWith({ emulator: { maxEventBytes: 256 * 1024 }, executor: async (call) => (seen.push(call.args), { content: [{ type: "text", text: "written" }] }) });
    const content = "x".repeat(300 * 1024);
    const { ref, run } = await holdAndWait(gateway, { upstream: "files", tool: "write_file", name: "write_file", args: { path: "/tmp/big.txt", content } });
    expect(gateway.emulator.refused).toEqual([]);
    expect(run.event.data.call).toMatchObject({ by_reference: { bytes: expect.any(Number) }, args_digest: expect.any(String) });
    await gateway.engine.decide({ ref, decision: "approved", reviewer: "alice" });
    await gateway.emulator.ended(run);
    expect(seen).toEqual([{ path: "/tmp/big.txt", content }]);
  });

  it("a request event Inngest refuses is surfaced at once, not re-sent in a loop; approval then follows the policy", async () => {
    // Inngest's limit is below what the gateway was told: the event API answers 400 "event too large".
    const gateway = await gatewayWith({ emulator: { maxEventBytes: 8 * 1024 } });
    const { ref } = await gateway.engine.submit({ ...highRiskCall, args: { note: "y".repeat(20 * 1024) } });
    await gateway.emulator.until(() => gateway.engine.get(ref!)?.problem?.kind === "event_refused", 15_000, "the refusal to be recorded");
    const refusals = gateway.emulator.refused.length;
    // one send (the SDK itself tries a few times), not a loop
    expect(refusals).toBeLessThanOrEqual(5);
    expect(gateway.emulator.refused[0]).toMatchObject({ status: 400, body: "event too large" });
    expect(statusToResult(gateway.engine.get(ref!)!).content.map((block) => (block as { text: string }).text).join("\n")).toMatch(/PENDING REVIEW[\s\S]*Warning: Inngest refused its request event \(.*event too large\)/);
    expect(gateway.logs.join("\n")).toContain(`inngest: ${ref} (transfer): Inngest refused its request event`);
    await gateway.engine.decide({ ref: ref!, decision: "approved", reviewer: "alice" });
    expect(gateway.engine.get(ref!)?.status).toBe("abandoned");
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(gateway.emulator.refused.length).toBe(refusals);
    expect(gateway.emulator.events.filter((event) => event.name === DECISION_EVENT)).toEqual([]);
    expect(gateway.executed).toEqual([]);
  });

  it("an app Inngest never synced: the held call says its run has not started; with onRunFailure local an approval runs it", async () => {
    const gateway = await gatewayWith({ sync: false, env: { ATLAS_INNGEST_RUN_START_TIMEOUT: "200ms", ATLAS_INNGEST_ON_RUN_FAILURE: "local" } });
    const { ref } = await gateway.engine.submit(highRiskCall);
    await gateway.emulator.until(() => gateway.engine.get(ref!)?.problem?.kind === "run_not_started", 15_000, "the stall warning");
    expect(gateway.engine.get(ref!)?.problem?.cause).toContain(`is app '${gateway.appId}' synced`);
    await gateway.engine.decide({ ref: ref!, decision: "approved", reviewer: "alice" });
    await gateway.emulator.until(() => gateway.engine.get(ref!)?.status === "executed", 15_000, "the local run");
    expect(gateway.executed).toEqual(["transfer"]);
    // The app syncs late and the run finally starts: it finds the call executed and does not run it again.
    await gateway.emulator.sync(gateway.url);
    const request = gateway.emulator.events.find((event) => event.name === REQUEST_EVENT)!;
    await postEvents(gateway, { name: REQUEST_EVENT, id: `late-${ref}`, data: request.data });
    const run = await gateway.emulator.waitForRun((candidate) => candidate.event.data.ref === ref);
    await gateway.emulator.ended(run);
    expect(run.output).toMatchObject({ status: "executed", executed: true });
    expect(gateway.executed).toEqual(["transfer"]);
  });

  it("a wrong signing key fails the run at once (no retries for hours) and the gateway logs why", async () => {
    const gateway = await gatewayWith();
    gateway.emulator.signingKey = `signkey-test-${"00".repeat(32)}`;
    const { ref } = await gateway.engine.submit(highRiskCall);
    const run = await gateway.emulator.waitForRun((candidate) => candidate.event.data.ref === ref);
    await gateway.emulator.ended(run);
    expect(run.status).toBe("failed");
    expect(run.calls).toHaveLength(1);
    expect(run.calls[0]).toMatchObject({ status: 401, headers: { "x-inngest-no-retry": "true" } });
    expect(gateway.logs.join("\n")).toContain("matches neither the signing key nor its fallback (wrong or rotated key)");
  });
});
