import { spawn } from "node:child_process";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { tempDir } from "../helpers.js";
import { BIN } from "../helpers/rawMcpProcess.js";

// `atlas-gateway … | head`: when the reader goes away, the command ends quietly (issue 13: an EPIPE stack trace).

/** Runs the installed CLI, closes its stdout after `keepLines` lines, and returns its stderr and exit code. */
function runThenCloseStdout(args: string[], keepLines: number): Promise<{ code: number | null; stderr: string; lines: string[] }> {
  const home = tempDir("atlas-e2e-epipe-");
  const child = spawn(process.execPath, [BIN, ...args], { env: { PATH: process.env.PATH, HOME: home, ATLAS_CONFIG_DIR: join(home, "config"), ATLAS_DATA_DIR: join(home, "data") } });
  let stderr = "";
  const lines: string[] = [];
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  let buffer = "";
  const close = () => child.stdout.destroy();
  if (keepLines === 0) close();
  else {
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      buffer += chunk;
      const complete = buffer.split("\n");
      buffer = complete.pop()!;
      lines.push(...complete);
      if (lines.length >= keepLines) close();
    });
  }
  return new Promise((resolve) => child.once("exit", (code) => resolve({ code, stderr, lines })));
}

describe("a closed stdout (… | head)", () => {
  it("the demo keeps running to its end and exits 0 without a stack trace", async () => {
    const result = await runThenCloseStdout(["demo"], 1);
    expect(result.lines[0]).toMatch(/^ATLAS governance demo/);
    expect(result.stderr).not.toMatch(/EPIPE|Error|at /);
    expect(result.code).toBe(0);
  });

  it.each([[["pending"]], [["audit", "verify"]], [["--help"]]])("%j with stdout closed before it writes", async (args) => {
    const result = await runThenCloseStdout(args, 0);
    expect(result.stderr).not.toMatch(/EPIPE|Unhandled|at /);
    expect(result.code).not.toBeNull();
  });
});
