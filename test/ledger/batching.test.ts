import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { LedgerError } from "../../src/errors.js";
import { Ledger, openFileSink, scanLedger, type LedgerSink } from "../../src/ledger/ledger.js";
import { LocalEngine } from "../../src/governance/localEngine.js";
import { createRulesEvaluator } from "../../src/risk/assess.js";

const freshPath = () => join(mkdtempSync(join(tmpdir(), "atlas-batch-")), "ledgers", "main.jsonl");
const lineCount = (path: string) => readFileSync(join(path.replace(/\.jsonl$/, ""), "000000000000.jsonl"), "utf8").split("\n").filter(Boolean).length;

/** A file sink that counts its writes and syncs, and can be told to fail. */
function countingSink(counts: { writes: number; syncs: number }, fail: { write?: boolean } = {}): (path: string) => LedgerSink {
  return (path) => {
    const file = openFileSink(path);
    return {
      write: (text) => {
        if (fail.write) throw new Error("ENOSPC: no space left on device");
        counts.writes += 1;
        file.write(text);
      },
      sync: () => {
        counts.syncs += 1;
        return file.sync();
      },
      close: () => file.close(),
    };
  };
}

describe("ledger write batching", () => {
  it("writes a burst of batch appends once, in order, and a sync append at once", async () => {
    const path = freshPath();
    const counts = { writes: 0, syncs: 0 };
    const ledger = Ledger.open(path, { instance: "main", sink: countingSink(counts), onRecord: () => {} });
    const writesAfterOpen = counts.writes;
    for (let i = 0; i < 5; i++) ledger.append("request.created", `evt_0000000${i}`, { i }, "batch");
    expect(lineCount(path)).toBe(1); // only ledger.created so far
    await ledger.whenWritten();
    expect(counts.writes - writesAfterOpen).toBe(1);
    expect(lineCount(path)).toBe(6);

    ledger.append("request.created", "evt_00000010", {}, "batch");
    ledger.append("request.held", "evt_00000010", {}, "sync"); // carries the buffered record with it
    expect(lineCount(path)).toBe(8);
    await ledger.close();
    const scan = scanLedger(path);
    expect(scan.problem).toBeUndefined();
    expect(scan.records.map((record) => record.seq)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
  });

  it("commit() writes what is buffered before it fsyncs", async () => {
    const path = freshPath();
    const ledger = Ledger.open(path, { instance: "main", onRecord: () => {} });
    ledger.append("request.created", "evt_00000001", {}, "batch");
    await ledger.commit();
    expect(lineCount(path)).toBe(2);
    await ledger.close();
  });

  it("a failed deferred write fails the ledger: whenWritten rejects and later appends throw", async () => {
    const path = freshPath();
    const fail = { write: false };
    const ledger = Ledger.open(path, { instance: "main", sink: countingSink({ writes: 0, syncs: 0 }, fail), onRecord: () => {} });
    fail.write = true;
    ledger.append("request.created", "evt_00000001", {}, "batch");
    await expect(ledger.whenWritten()).rejects.toThrow(LedgerError);
    expect(() => ledger.append("request.created", "evt_00000002", {}, "batch")).toThrow(/cannot write ledger/);
  });

  it("an auto-approved call whose records cannot be written never reaches the upstream (fail closed)", async () => {
    const path = freshPath();
    const fail = { write: false };
    const executed: string[] = [];
    const engine = LocalEngine.open({
      ledgerPath: path,
      instance: "main",
      evaluator: createRulesEvaluator({ threshold: 70, overrides: {} }),
      threshold: 70,
      reviewTimeoutMs: 60_000,
      executor: async (call) => {
        executed.push(call.tool);
        return { content: [{ type: "text", text: "ran" }] };
      },
      version: "test",
      sink: countingSink({ writes: 0, syncs: 0 }, fail),
    });
    const call = { upstream: "fs", tool: "read_file", name: "read_file", args: { path: "/tmp/x" }, annotations: { readOnlyHint: true } };
    expect((await engine.submit(call)).kind).toBe("allow");
    fail.write = true;
    const [first, second] = await Promise.all([engine.submit(call), engine.submit({ ...call, args: { path: "/tmp/y" } })]);
    expect(first.kind).toBe("deny");
    expect(second.kind).toBe("deny");
    expect(first.kind === "deny" && first.reason).toMatch(/fail closed/);
    expect(executed).toEqual(["read_file"]);
    await engine.close();
  });
});
