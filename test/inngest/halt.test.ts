import { afterEach, describe, expect, it } from "vitest";
import { newHaltFact } from "../../src/governance/halt.js";
import { createEngineFixture, highRiskCall, lowRiskCall, type EngineFixture } from "../helpers/inngestEngineFixture.js";

/** The stop button with the Inngest engine: the same refusals; an approved call's execute step waits out the halt. */
const fixtures: EngineFixture[] = [];
afterEach(async () => {
  for (const created of fixtures.splice(0)) await created.cleanUp();
});

describe("InngestEngine while halted", () => {
  it("refuses new calls, and the execute step of an approved call fails (Inngest retries it) until resume", async () => {
    const f = await createEngineFixture();
    fixtures.push(f);
    const held = await f.engine.submit(highRiskCall);
    const halt = newHaltFact(true, "ana", "incident");
    await f.engine.applyHalt(halt);
    expect(f.engine.haltState()).toMatchObject({ halted: true, by: "ana" });

    expect(await f.engine.submit(lowRiskCall)).toMatchObject({ kind: "deny", halted: true, reason: expect.stringMatching(/^HALTED: /) });
    await f.engine.decide({ ref: held.ref!, decision: "approved", reviewer: "carl" });
    await expect(f.engine.executeStep(held.ref!, "run-1")).rejects.toThrow(/halted; the step is retried after resume/);
    expect(f.executed).toHaveLength(0);

    await f.engine.applyHalt(newHaltFact(false, "dora", undefined, halt));
    expect(await f.engine.executeStep(held.ref!, "run-1")).toMatchObject({ executed: true, outcome: "ok" });
    expect(f.executed).toHaveLength(1);
    expect(f.records().map((record) => record.type)).toEqual(expect.arrayContaining(["gateway.halted", "request.refused", "gateway.resumed"]));
  });
});
