import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const root = fileURLToPath(new URL("..", import.meta.url));

/** Runs `node bench/run.js --smoke` (tiny counts) against the built dist. Checks that it runs, never its timings. */
function runSmokeBench(): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ["bench/run.js", "--smoke"], { cwd: root, timeout: 100_000, maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

describe("npm run bench --smoke", () => {
  it("runs every section to the end and prints the results table", async () => {
    const { code, stdout, stderr } = await runSmokeBench();
    expect(stderr).not.toContain("benchmark failed");
    expect(code, stderr).toBe(0);
    for (const section of ["== 1. cold start", "== 2. auto-approved tools/call", "== 3. approval latency", "== 4. ledger", "== 5. memory", "== 6. risk policy", "== 7. notifications", "== 8. large messages"]) {
      expect(stdout).toContain(section);
    }
    for (const row of ["spawn → initialize", "auto-approved p50, sequential", "calls/s, 16 concurrent", "raw newline-JSON pipe (the floor)", "signed webhook → agent has result", "`approve` CLI", "start-up replay", "calls of history", "audit verify (CLI)", "RSS growth", "1,000 rules", "webhook notification received", "MiB argument, median", "small call during a large one"]) {
      expect(stdout).toContain(row);
    }
    expect(stdout).toMatch(/\| Section +\| Measure +\| Gateway +\| Baseline +\| Ratio +\| Target +\| Result +\|/);
    expect(stdout).toMatch(/\d+\/\d+ targets met/);
  }, 120_000);
});
