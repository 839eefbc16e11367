import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { instancePaths } from "../../src/dataDir.js";
import { scanLedger, type RolloverStep } from "../../src/ledger/ledger.js";
import { verifyLedger } from "../../src/ledger/verify.js";
import { openEngine, recordingExecutor, tempDir } from "../helpers.js";

const FIXTURE = fileURLToPath(new URL("../fixtures/ledger-crash.mjs", import.meta.url));
const DIST = fileURLToPath(new URL("../../dist/index.js", import.meta.url));

function runUntilKilled(dataDir: string, step: RolloverStep): Promise<{ signal: NodeJS.Signals | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [FIXTURE, DIST, dataDir, step], { stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.once("exit", (_code, signal) => resolve({ signal, output }));
  });
}

describe("SIGKILL during a segment rollover (real process, built package)", () => {
  const steps: RolloverStep[] = ["flushed", "synced", "checkpoint-written", "renamed"];
  it.each(steps)("killed at '%s': nothing is lost and nothing runs twice", async (step) => {
    const dataDir = tempDir();
    const { signal, output } = await runUntilKilled(dataDir, step);
    expect(signal, output).toBe("SIGKILL");
    const invoked = readFileSync(`${dataDir}/invocations.jsonl`, "utf8").split("\n").filter(Boolean);
    expect(invoked.length).toBeGreaterThan(2);

    const executor = recordingExecutor();
    const engine = openEngine(dataDir, executor, { ledger: { segmentRecords: 7 } });
    engine.resume();
    await new Promise((resolve) => setTimeout(resolve, 100));
    await engine.close();
    expect(executor.calls).toEqual([]); // nothing re-run

    const path = instancePaths(dataDir, "main").ledger;
    const verification = verifyLedger(path);
    expect(verification.scan.problem).toBeUndefined();
    expect(verification.tampering).toBeUndefined();
    expect(verification.segments).toBeGreaterThanOrEqual(2);
    // every call that reached the upstream has its admission in the ledger, exactly once
    const records = scanLedger(path).records;
    const admitted = records.filter((record) => record.type === "request.admitted" || (record.type === "request.created" && record.data.tool === "write_file"));
    const started = new Map(admitted.map((record) => [JSON.stringify(record.data.args), record]));
    for (const args of invoked) expect(started.has(args), args).toBe(true);
    expect(invoked.filter((args) => args === JSON.stringify({ path: "/held" }))).toHaveLength(1);
    expect(new Set(invoked).size).toBe(invoked.length);
    expect(existsSync(`${path}.migrating`)).toBe(false);
  });
});
