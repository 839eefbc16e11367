import { describe, expect, it } from "vitest";
import { instancePaths } from "../../src/dataDir.js";
import { decideRef, findRef } from "../../src/governance/review.js";
import { scanLedger } from "../../src/ledger/ledger.js";
import { statusToResult } from "../../src/mcp/toolResults.js";
import { heldCall, openEngine, recordingExecutor, tempDir } from "../helpers.js";

/** Approve with edits (issue 9, Art. 14(4)(d)): the call runs with the reviewer's arguments, the ledger keeps both. */
describe("approve with edits", () => {
  it("runs the edited arguments, keeps the original in the ledger, and tells the agent", async () => {
    const dataDir = tempDir();
    const executor = recordingExecutor();
    const engine = openEngine(dataDir, executor);
    const decision = await engine.submit(heldCall({ path: "/tmp/report.txt", content: "draft" }));
    const ref = decision.kind === "hold" ? decision.ref : "";
    const outcome = await engine.decide({ ref, decision: "approved", reviewer: "ana", auth: "review-page", args: { path: "/tmp/report-final.txt", content: "draft" } });
    expect(outcome.status).toBe("applied");
    const view = await engine.waitForOutcome(ref, 5000);
    expect(view?.status).toBe("executed");
    expect(executor.calls).toEqual([{ upstream: "fs", tool: "write_file", args: { path: "/tmp/report-final.txt", content: "draft" } }]);

    const result = statusToResult(view!);
    expect(JSON.stringify(result.content[0])).toMatch(/CHANGED YOUR ARGUMENTS/);
    expect(result.structuredContent).toMatchObject({ arguments_changed: true, original_arguments: { path: "/tmp/report.txt" }, arguments: { path: "/tmp/report-final.txt" } });
    await engine.close();

    const records = scanLedger(instancePaths(dataDir, "main").ledger).records.filter((record) => record.ref === ref);
    expect(records.find((record) => record.type === "request.created")?.data.args).toEqual({ path: "/tmp/report.txt", content: "draft" });
    expect(records.find((record) => record.type === "decision.recorded")?.data).toMatchObject({ reviewer: "ana", auth_method: "review-page", edited_args: { path: "/tmp/report-final.txt" } });
    // a replay (another process reading the ledger) sees the same edit
    expect(findRef(dataDir, ref).view.editedArgs).toEqual({ path: "/tmp/report-final.txt", content: "draft" });
  });

  it("edits written while no gateway runs are executed at the next start", async () => {
    const dataDir = tempDir();
    const engine = openEngine(dataDir, recordingExecutor());
    const decision = await engine.submit(heldCall({ path: "/tmp/a" }));
    const ref = decision.kind === "hold" ? decision.ref : "";
    await engine.close();
    await decideRef(dataDir, { ref, decision: "approved", reviewer: "ana", args: { path: "/tmp/b" } });
    const executor = recordingExecutor();
    const restarted = openEngine(dataDir, executor);
    restarted.resume();
    expect((await restarted.waitForOutcome(ref, 5000))?.status).toBe("executed");
    await restarted.close();
    expect(executor.calls[0]?.args).toEqual({ path: "/tmp/b" });
  });

  it("a denial ignores arguments", async () => {
    const dataDir = tempDir();
    const engine = openEngine(dataDir, recordingExecutor());
    const decision = await engine.submit(heldCall({ path: "/tmp/a" }));
    const ref = decision.kind === "hold" ? decision.ref : "";
    await engine.decide({ ref, decision: "denied", reviewer: "ana", reason: "no", args: { path: "/tmp/b" } });
    expect(engine.get(ref)?.editedArgs).toBeUndefined();
    await engine.close();
  });
});
