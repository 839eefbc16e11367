import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { instancePaths } from "../../src/dataDir.js";
import { scanLedger, type RolloverStep } from "../../src/ledger/ledger.js";
import { verifyLedger } from "../../src/ledger/verify.js";
import { cpSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { heldCall, lowCall, openEngine, recordingExecutor, tempDir } from "../helpers.js";
import { BIN } from "../helpers/rawMcpProcess.js";

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

describe("SIGKILL during the 0.1 → 0.2 migration (built CLI, killed at varying moments of its start)", () => {
  it("loses nothing: the old file or the new directory holds every record, and the next start verifies end to end", async () => {
    // a 0.1-style ledger: one file with the records the old layout held
    const scratch = tempDir();
    const seed = openEngine(scratch, recordingExecutor());
    for (let i = 0; i < 50; i++) await seed.submit(lowCall({ path: `/tmp/${i}` }));
    const held = await seed.submit(heldCall());
    await seed.close();
    const original = scanLedger(instancePaths(scratch, "main").ledger).records;
    for (const delay of [0, 15, 30, 60, 120, 240]) {
      const dataDir = tempDir();
      mkdirSync(join(dataDir, "ledgers"));
      cpSync(join(instancePaths(scratch, "main").ledger, "000000000000.jsonl"), instancePaths(dataDir, "main").legacyLedger);
      const child = spawn(process.execPath, [BIN, "serve", "--data-dir", dataDir, "--port", "0"], { stdio: ["pipe", "ignore", "ignore"], env: { PATH: process.env.PATH, HOME: dataDir, ATLAS_CONFIG_DIR: join(dataDir, "config"), ATLAS_CONFIG: "" } });
      // initialize first: the gateway opens (and migrates) the ledger right after answering it
      child.stdin.write(`${JSON.stringify({ jsonrpc: "2.0", id: 1, method: "initialize", params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "t", version: "1" } } })}\n`);
      await new Promise((resolve) => setTimeout(resolve, delay));
      child.kill("SIGKILL");
      await new Promise((resolve) => child.once("exit", resolve));

      const executor = recordingExecutor();
      const engine = openEngine(dataDir, executor);
      expect(engine.pending().map((view) => view.ref), `killed after ${delay} ms`).toEqual([held.ref]);
      await engine.close();
      expect(executor.calls).toEqual([]);
      const path = instancePaths(dataDir, "main").ledger;
      expect(existsSync(instancePaths(dataDir, "main").legacyLedger)).toBe(false);
      const verification = verifyLedger(path);
      expect(verification.scan.problem).toBeUndefined();
      expect(verification.tampering).toBeUndefined();
      expect(scanLedger(path).records.slice(0, original.length)).toEqual(original);
    }
  });
});
