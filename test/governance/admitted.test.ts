import { cpSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { instancePaths } from "../../src/dataDir.js";
import { pastCalls } from "../../src/cli/policyReport.js";
import { findRef, readAllInstances } from "../../src/governance/review.js";
import { Ledger, openFileSink, scanLedger, type LedgerSink } from "../../src/ledger/ledger.js";
import { heldCall, lowCall, openEngine, recordingExecutor, tempDir } from "../helpers.js";

const ledgerOf = (dataDir: string) => instancePaths(dataDir, "main").ledger;
const typesOf = (dataDir: string, ref: string) => scanLedger(ledgerOf(dataDir)).records.filter((record) => record.ref === ref).map((record) => record.type);

/** A file sink that counts fsyncs. */
function syncCounting(counter: { syncs: number }): (path: string) => LedgerSink {
  return (path) => {
    const file = openFileSink(path);
    return { ...file, sync: () => ((counter.syncs += 1), file.sync()) };
  };
}

describe("request.admitted: two records per auto-approved call (issue 12)", () => {
  it("writes request.admitted (carrying created + assessed + route + started) before the upstream sees the call, then execution.finished", async () => {
    const dataDir = tempDir();
    const seenAtExecution: string[][] = [];
    const executor = recordingExecutor();
    const engine = openEngine(dataDir, async (call, options) => {
      // what is on disk (written, maybe not fsynced) when the upstream is called
      seenAtExecution.push(scanLedger(ledgerOf(dataDir)).records.map((record) => record.type));
      return executor(call, options);
    });
    const decision = await engine.submit({ ...lowCall({ path: "/tmp/a" }), client: { name: "agent", version: "1" } });
    expect(decision.kind).toBe("allow");
    const ref = decision.ref!;
    await engine.close();

    expect(seenAtExecution).toHaveLength(1);
    expect(seenAtExecution[0]!.at(-1)).toBe("request.admitted");
    expect(typesOf(dataDir, ref)).toEqual(["request.admitted", "execution.finished"]);
    const admitted = scanLedger(ledgerOf(dataDir)).records.find((record) => record.type === "request.admitted")!;
    expect(admitted.data).toMatchObject({
      upstream: "fs",
      tool: "read_file",
      name: "read_file",
      args: { path: "/tmp/a" },
      args_digest: expect.stringMatching(/^[0-9a-f]{64}$/),
      annotations: { readOnlyHint: true },
      client: { name: "agent", version: "1" },
      assessment: { score: expect.any(Number), classification: expect.any(String), evaluator: "rules" },
      threshold: 70,
    });
    // `show` reads it like the five-record shape
    expect(findRef(dataDir, ref, true).view).toMatchObject({ status: "executed", outcome: "ok", autoApproved: true, upstream: "fs", tool: "read_file", assessment: { evaluator: "rules" } });
  });

  it("a held call keeps its separate records, fsynced before the reply", async () => {
    const dataDir = tempDir();
    const counter = { syncs: 0 };
    const engine = openEngine(dataDir, recordingExecutor(), { sink: syncCounting(counter) });
    const before = counter.syncs;
    const decision = await engine.submit(heldCall());
    expect(decision.kind).toBe("hold");
    expect(counter.syncs).toBeGreaterThan(before);
    expect(typesOf(dataDir, decision.ref!)).toEqual(["request.created", "request.assessed", "request.held"]);
    await engine.close();
  });

  it("an admitted call unfinished at restart becomes unknown and is never re-run", async () => {
    const dataDir = tempDir();
    const executor = recordingExecutor();
    let release!: () => void;
    const engine = openEngine(dataDir, async (call) => {
      executor.calls.push(call);
      await new Promise<void>((resolve) => (release = resolve));
      return { content: [] };
    });
    const pending = engine.submit(lowCall());
    while (executor.calls.length === 0) await new Promise((resolve) => setTimeout(resolve, 20));
    // the process "dies" here: a copy of the data dir as it is on disk is opened by a fresh engine
    const ref = scanLedger(ledgerOf(dataDir)).records.find((record) => record.type === "request.admitted")!.ref!;
    const second = recordingExecutor();
    const copyDir = tempDir();
    cpSync(dataDir, copyDir, { recursive: true });
    const restarted = openEngine(copyDir, second);
    restarted.resume();
    await restarted.close();
    expect(findRef(copyDir, ref, true).view).toMatchObject({ status: "unknown", outcome: "unknown" });
    expect(second.calls).toEqual([]);
    expect(typesOf(copyDir, ref)).toEqual(["request.admitted", "execution.interrupted"]);
    release();
    await pending;
    await engine.close();
  });

  it("old ledgers keep working: the five-record shape and the two-record shape side by side in show, pending and policy replay", async () => {
    const dataDir = tempDir();
    const ledger = Ledger.open(ledgerOf(dataDir), { instance: "main" });
    const created = { upstream: "fs", tool: "read_file", name: "read_file", args: { path: "/old" }, args_digest: "d1", annotations: { readOnlyHint: true } };
    const assessment = { score: 10, classification: "low", reasons: ["read-only"], evaluator: "rules" };
    ledger.append("request.created", "evt_00000001", created, "batch");
    ledger.append("request.assessed", "evt_00000001", assessment, "batch");
    ledger.append("request.auto_approved", "evt_00000001", { threshold: 70 }, "batch");
    ledger.append("execution.started", "evt_00000001", {}, "batch");
    ledger.append("execution.finished", "evt_00000001", { outcome: "ok", result_sha256: "x" }, "batch");
    ledger.append("request.admitted", "evt_00000002", { ...created, args: { path: "/new" }, args_digest: "d2", assessment, threshold: 70 }, "batch");
    ledger.append("execution.finished", "evt_00000002", { outcome: "error", result_sha256: "y" }, "batch");
    ledger.append("request.created", "evt_00000003", { ...created, tool: "write_file", name: "write_file", args_digest: "d3", annotations: { destructiveHint: true } }, "batch");
    ledger.append("request.assessed", "evt_00000003", { ...assessment, score: 80, classification: "high" }, "batch");
    ledger.append("request.held", "evt_00000003", { deadline: "2999-01-01T00:00:00.000Z", threshold: 70 }, "sync");
    await ledger.close();

    const [state] = readAllInstances(dataDir, true);
    expect(state!.table.get("evt_00000001")).toMatchObject({ status: "executed", outcome: "ok", autoApproved: true });
    expect(state!.table.get("evt_00000002")).toMatchObject({ status: "executed", outcome: "error", autoApproved: true, args: { path: "/new" }, assessment: { score: 10 } });
    expect(state!.table.get("evt_00000002")!.history.map((record) => record.type)).toEqual(["request.admitted", "execution.finished"]);
    expect(state!.table.pending().map((view) => view.ref)).toEqual(["evt_00000003"]);

    const { calls } = pastCalls(ledgerOf(dataDir));
    expect(calls.map((call) => [call.ref, call.route, call.assessment?.score])).toEqual([
      ["evt_00000001", "run", 10],
      ["evt_00000002", "run", 10],
      ["evt_00000003", "hold", 80],
    ]);
  });
});
