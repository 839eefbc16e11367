import { execFile, execFileSync } from "node:child_process";
import { chmodSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { tempDir } from "../helpers.js";
import { BIN } from "../helpers/rawMcpProcess.js";

// `doctor` from the installed package, against what the gateway itself then does (issue 13: it failed a fresh install
// and passed a ledger the gateway could not write).

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0)) cleanup();
});

/** Runs the installed CLI with `input` on stdin, then EOF (for `serve`: the client went away). */
function cli(args: string[], home: string, input = ""): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [BIN, ...args], { env: { PATH: process.env.PATH, HOME: home, ATLAS_CONFIG_DIR: join(home, "config") }, timeout: 60_000 }, (error, stdout, stderr) => {
      resolve({ code: error ? Number((error as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
    child.stdin!.end(input);
  });
}

const INITIALIZE = `${JSON.stringify({ jsonrpc: "2.0", id: 1, method: "initialize", params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "e2e", version: "1" } } })}\n`;

/**
 * Makes a file refuse appends. Permissions do not stop root, so as root the file is made immutable (chattr +i, EPERM);
 * otherwise it is made read-only (EACCES). Returns the error code the gateway will meet, or undefined if impossible.
 */
function refuseWrites(file: string): string | undefined {
  if (process.getuid?.() !== 0) {
    chmodSync(file, 0o444);
    return "EACCES";
  }
  try {
    execFileSync("chattr", ["+i", file], { stdio: "ignore" });
  } catch {
    return undefined;
  }
  cleanups.push(() => execFileSync("chattr", ["-i", file], { stdio: "ignore" }));
  return "EPERM";
}

describe("doctor (installed CLI)", () => {
  it("passes on a fresh install", async () => {
    const home = tempDir("atlas-e2e-doctor-");
    const result = await cli(["doctor", "--data-dir", join(home, "data"), "--port", "0"], home);
    expect(result.stdout).not.toContain("✗");
    expect(result.stdout).toMatch(/✓ webhook secret: none yet/);
    expect(result.stdout).toMatch(/✓ ledger: none yet/);
    expect(result.code).toBe(0);
  });

  it("fails on a ledger the gateway cannot append to, as the gateway itself refuses every call", async (context) => {
    const home = tempDir("atlas-e2e-doctor-");
    const dataDir = join(home, "data");
    const started = await cli(["serve", "--demo", "--port", "0", "--data-dir", dataDir], home, INITIALIZE);
    expect(started.stdout).toContain('"protocolVersion"');
    expect(started.code).toBe(0);
    const ledger = join(dataDir, "ledgers", "main.jsonl");
    expect((await cli(["doctor", "--data-dir", dataDir, "--port", "0"], home)).stdout).toMatch(/✓ ledger 'main': \d+ records, chain intact, writable/);

    const code = refuseWrites(ledger);
    if (!code) return context.skip("running as root without chattr: no way to make a file refuse root's writes here");
    const doctor = await cli(["doctor", "--data-dir", dataDir, "--port", "0"], home);
    expect(doctor.code).toBe(1);
    expect(doctor.stdout).toContain(`✗ ledger 'main' not writable: ${ledger} (${code}): the gateway refuses every call until it can`);
    expect(doctor.stdout).toMatch(code === "EACCES" ? /fix: give your user write access to .*main\.jsonl/ : /fix: the system refuses writes to .*main\.jsonl .*chattr -i/);

    // fail closed without dying (issue 11): it still answers initialize, and refuses every call with the cause
    const refused = await cli(["serve", "--demo", "--port", "0", "--data-dir", dataDir], home, INITIALIZE);
    expect(refused.stdout).toContain('"protocolVersion"');
    expect(refused.stderr).toMatch(/Every tool call is refused until the ledger can be written/);
  });
});
