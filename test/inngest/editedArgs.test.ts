import { afterEach, describe, expect, it } from "vitest";
import { createEngineFixture, highRiskCall, type EngineFixture } from "../helpers/inngestEngineFixture.js";

const fixtures: EngineFixture[] = [];
afterEach(async () => {
  for (const created of fixtures.splice(0)) await created.cleanUp();
});

describe("InngestEngine: approve with edits", () => {
  it("the run executes the reviewer's arguments, and the ledger keeps the agent's", async () => {
    const f = createEngineFixture();
    fixtures.push(f);
    const { ref } = await f.engine.submit(highRiskCall);
    const edited = { ...highRiskCall.args, amount: 1 };
    expect(await f.engine.decide({ ref: ref!, decision: "approved", reviewer: "alice", auth: "review-page", args: edited })).toMatchObject({ status: "applied" });
    await f.engine.recordDecisionStep(ref!, { ref: ref!, decision: "approved", reviewer: "alice" }, "run-1");
    expect(await f.engine.executeStep(ref!, "run-1")).toMatchObject({ executed: true });
    expect(f.executed.map((call) => call.args)).toEqual([edited]);
    expect(f.records().find((record) => record.type === "request.created" && record.ref === ref)?.data.args).toEqual(highRiskCall.args);
    expect(f.records().find((record) => record.type === "decision.recorded" && record.ref === ref)?.data).toMatchObject({ edited_args: edited, auth_method: "review-page" });
  });
});
