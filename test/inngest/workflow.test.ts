import { InngestTestEngine, mockCtx } from "@inngest/test";
import { afterEach, describe, expect, it, vi } from "vitest";
import { createInngestClient } from "../../src/inngest/client.js";
import { DECISION_EVENT, DECISION_MATCH, REQUEST_EVENT, type OutgoingEvent } from "../../src/inngest/events.js";
import { createGovernanceFunction } from "../../src/inngest/governanceFunction.js";
import { statusToResult } from "../../src/mcp/toolResults.js";
import { APP_ID, createEngineFixture, eventually, highRiskCall, lowRiskCall, type EngineFixture } from "../helpers/inngestEngineFixture.js";

// The workflow function, branch by branch, through @inngest/test. Its `steps` mock of waitForEvent is broken in SDK
// v4 (inngest-js#1652), so the wait is replaced through `transformCtx` instead.

const fixtures: EngineFixture[] = [];
afterEach(async () => {
  for (const fixture of fixtures.splice(0)) await fixture.cleanUp();
});

async function setUp(result?: Parameters<typeof createEngineFixture>[1]) {
  const fixture = await createEngineFixture({}, result);
  fixtures.push(fixture);
  const client = await createInngestClient({ mode: "serve", dev: true, dispatchTimeout: 10_000, onRunFailure: "expire", runStartTimeout: 60_000, maxEventBytes: 262_144 }, { appId: APP_ID, version: "test", log: () => {} });
  const fn = createGovernanceFunction(client, fixture.engine, APP_ID);
  return { fixture, fn };
}

/** @inngest/test is CommonJS: its context type is the SDK's .d.cts twin. */
type TestCtx = Parameters<NonNullable<InngestTestEngine.Options["transformCtx"]>>[0];
type Wait = (id: string, options: { event: string; if?: string; timeout: Date }) => Promise<unknown>;

/** A test engine whose `step.waitForEvent` answers with `answer` (an event, or null for a timeout). */
function withWait(fn: ReturnType<typeof createGovernanceFunction>, event: OutgoingEvent, answer: unknown) {
  const wait = vi.fn<Wait>(async () => answer);
  const engine = new InngestTestEngine({
    function: fn,
    events: [{ name: event.name, data: event.data }],
    transformCtx: (ctx: TestCtx) => {
      const mocked = mockCtx(ctx) as unknown as { step: Record<string, unknown> };
      mocked.step.waitForEvent = wait;
      return mocked as unknown as TestCtx;
    },
  });
  return { engine, wait };
}

/** The request event the engine sent to the (emulated) event API for `ref`, once it arrived. */
function requestEventFor(fixture: EngineFixture, ref: string): Promise<OutgoingEvent> {
  return eventually(() => {
    const event = fixture.sent.find((sent) => sent.name === REQUEST_EVENT && sent.data.ref === ref);
    if (!event) throw new Error(`no request event for ${ref}`);
    return event;
  });
}

function decisionEventData(ref: string, decision: "approved" | "denied", reviewer = "alice", reason?: string) {
  return { name: DECISION_EVENT, id: "01DECISION", ts: Date.now(), data: { ref, app: APP_ID, decision, reviewer, ...(reason ? { reason } : {}) } };
}

describe("governance-workflow", () => {
  it("auto-approve: a low-risk call is executed in the run's execute step and the agent gets the real result", async () => {
    const { fixture, fn } = await setUp();
    const submitted = fixture.engine.submit(lowRiskCall);
    const event = await eventually(() => {
      const found = fixture.sent[0];
      if (!found) throw new Error("no event yet");
      return found;
    });
    expect(event.name).toBe(REQUEST_EVENT);
    expect(event.data).toMatchObject({ app: APP_ID, route: "auto", call: { tool: "read_file" } });

    const { result, ctx } = await new InngestTestEngine({ function: fn, events: [{ name: event.name, data: event.data }] }).execute();
    expect(result).toMatchObject({ ref: event.data.ref, status: "executed", executed: true, by: "workflow", outcome: "ok" });
    expect(ctx.step.waitForEvent).not.toHaveBeenCalled();

    const decision = await submitted;
    expect(decision).toEqual({ kind: "allow", ref: event.data.ref, result: { content: [{ type: "text", text: "read_file done" }] } });
    expect(fixture.executed).toHaveLength(1);
    const started = fixture.records().find((record) => record.type === "execution.started");
    expect(started?.data).toMatchObject({ by: "workflow" });
    expect(fixture.records().filter((record) => record.type === "workflow.step").map((record) => record.data.step)).toEqual(["assess"]);
  });

  it("approve: waits for the decision matched on the ref (in the same parallel group as the notification), then executes once", async () => {
    const { fixture, fn } = await setUp();
    const hold = await fixture.engine.submit(highRiskCall);
    expect(hold.kind).toBe("hold");
    const ref = hold.ref!;
    const event = await requestEventFor(fixture, ref);
    expect(event.id).toBe(`${APP_ID}:${ref}`);
    expect(JSON.stringify(event)).not.toContain("sk_live_abcdefghijklmnop");

    const { engine, wait } = withWait(fn, event, decisionEventData(ref, "approved", "alice", "checked"));
    const { result, ctx } = await engine.execute();
    expect(result).toMatchObject({ ref, status: "executed", executed: true, by: "workflow", outcome: "ok" });

    const [id, options] = wait.mock.calls[0]!;
    expect(id).toBe("await-decision");
    expect(options.event).toBe(DECISION_EVENT);
    expect(options.if).toBe(DECISION_MATCH);
    expect(options.if).toContain("async.data.ref == event.data.ref");
    expect(options.timeout).toEqual(new Date(fixture.engine.get(ref)!.deadline!));
    expect(ctx.step.run).toHaveBeenCalledWith("notify-reviewer", expect.any(Function));
    expect(fixture.held).toEqual([ref]);

    const view = fixture.engine.get(ref)!;
    expect(view.status).toBe("executed");
    expect(view.decision).toMatchObject({ decision: "approved", reviewer: "alice", reason: "checked", source: "human" });
    expect(view.result).toEqual({ content: [{ type: "text", text: "transfer done" }] });
    expect(fixture.executed).toHaveLength(1);
  });

  it("deny: the call never runs", async () => {
    const { fixture, fn } = await setUp();
    const { ref } = await fixture.engine.submit(highRiskCall);
    const { engine } = withWait(fn, await requestEventFor(fixture, ref!), decisionEventData(ref!, "denied", "bob", "too much"));
    const { result, ctx } = await engine.execute();
    expect(result).toEqual({ ref, status: "denied", executed: false });
    expect(ctx.step.run).not.toHaveBeenCalledWith("execute", expect.any(Function));
    expect(fixture.executed).toHaveLength(0);
    expect(fixture.engine.get(ref!)?.decision).toMatchObject({ decision: "denied", reviewer: "bob", reason: "too much" });
  });

  it("timeout: no decision before the deadline counts as a denial", async () => {
    const { fixture, fn } = await setUp();
    const { ref } = await fixture.engine.submit(highRiskCall);
    const { engine } = withWait(fn, await requestEventFor(fixture, ref!), null);
    const { result, ctx } = await engine.execute();
    expect(result).toEqual({ ref, status: "expired", executed: false });
    expect(ctx.step.run).not.toHaveBeenCalledWith("execute", expect.any(Function));
    expect(fixture.executed).toHaveLength(0);
    expect(fixture.engine.get(ref!)?.decision).toMatchObject({ decision: "denied", source: "timeout" });
    expect(statusToResult(fixture.engine.get(ref!)!).isError).toBe(true);
  });

  it("execution error: recorded, reported to the agent, and the run fails without a retry", async () => {
    const { fixture, fn } = await setUp(async () => {
      throw new Error("upstream connection reset");
    });
    const { ref } = await fixture.engine.submit(highRiskCall);
    const { engine } = withWait(fn, await requestEventFor(fixture, ref!), decisionEventData(ref!, "approved"));
    const { error } = await engine.execute();
    expect(error).toMatchObject({ name: "NonRetriableError" });
    expect(String((error as Error).message)).toContain("not retried (at most once)");
    expect(fixture.executed).toHaveLength(1);
    const view = fixture.engine.get(ref!)!;
    expect(view).toMatchObject({ status: "executed", outcome: "error" });
    const status = statusToResult(view);
    expect(status.isError).toBe(true);
    expect(JSON.stringify(status.content)).toContain("Execution failed: upstream connection reset");
  });

  it("a decision taken before the run started is applied without waiting for an event", async () => {
    const { fixture, fn } = await setUp();
    const { ref } = await fixture.engine.submit(highRiskCall);
    await fixture.engine.decide({ ref: ref!, decision: "approved", reviewer: "carol" });
    const { engine, wait } = withWait(fn, await requestEventFor(fixture, ref!), null);
    const { result } = await engine.execute();
    expect(wait).not.toHaveBeenCalled();
    expect(result).toMatchObject({ ref, status: "executed", executed: true });
    expect(fixture.engine.get(ref!)?.decision).toMatchObject({ reviewer: "carol" });
  });

  it("the ledger's decision wins over a different one arriving by event", async () => {
    const { fixture, fn } = await setUp();
    const { ref } = await fixture.engine.submit(highRiskCall);
    const request = await requestEventFor(fixture, ref!);
    // The run is already waiting when the reviewer denies through the gateway; a stray approval reaches the wait.
    await fixture.engine.decide({ ref: ref!, decision: "denied", reviewer: "dave", reason: "no" });
    const { engine } = withWait(fn, { ...request, data: { ...request.data } }, decisionEventData(ref!, "approved", "mallory"));
    // assess sees the decision already made, so no wait is involved
    const { result } = await engine.execute();
    expect(result).toEqual({ ref, status: "denied", executed: false });
    expect(fixture.executed).toHaveLength(0);
  });

  it("refuses to act on a ref this gateway never received, without retrying", async () => {
    const { fn } = await setUp();
    const { error } = await new InngestTestEngine({
      function: fn,
      events: [{ name: REQUEST_EVENT, data: { ref: "evt_deadbeef", app: APP_ID, route: "auto" } }],
    }).execute();
    expect(error).toMatchObject({ name: "NonRetriableError" });
    expect(String((error as Error).message)).toContain("no request evt_deadbeef");
  });
});
