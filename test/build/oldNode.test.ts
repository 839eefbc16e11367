import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

// On a Node older than 22, development stops at once with one plain line (issue 13: `npm install` printed ~1,000
// warnings, `npm test` failed 50 tests and crashed vitest's reporter). Needs an old Node on the machine (Debian's
// /usr/bin/node is 20 on this project's CI).

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const OLD_NODE = ["/usr/bin/node", "/usr/local/bin/node"].find((path) => existsSync(path));

function run(command: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const env = { ...process.env, PATH: `${dirname(OLD_NODE!)}:/usr/bin:/bin`, npm_config_update_notifier: "false" };
  return new Promise((resolve) => {
    execFile(command, args, { cwd: ROOT, env, timeout: 120_000 }, (error, stdout, stderr) =>
      resolve({ code: error ? Number((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

async function oldNodeVersion(): Promise<string | undefined> {
  if (!OLD_NODE) return undefined;
  const { stdout } = await run(OLD_NODE, ["--version"]);
  return Number(stdout.trim().slice(1).split(".")[0]) < 22 ? stdout.trim() : undefined;
}

const ONE_LINE = /^atlas-gateway needs Node\.js 22 or newer, but this is Node v\d+\.\d+\.\d+: install Node 22\+/;

describe("on a Node older than 22", () => {
  it("npm test and npm run build stop before doing anything, with one line", async (context) => {
    const version = await oldNodeVersion();
    if (!version) return context.skip("no Node older than 22 on this machine");
    for (const script of ["test", "build"]) {
      const result = await run(join(dirname(OLD_NODE!), "npm"), ["run", script]);
      expect(result.code).not.toBe(0);
      const lines = result.stderr.split("\n").filter((line) => line.startsWith("atlas-gateway"));
      expect(lines).toEqual([expect.stringMatching(ONE_LINE)]);
      expect(lines[0]).toContain(version);
      expect(result.stdout).not.toMatch(/tsup|vitest|RUN/);
    }
  });

  it("npm install refuses (engine-strict) and names the Node it needs", async (context) => {
    if (!(await oldNodeVersion())) return context.skip("no Node older than 22 on this machine");
    const result = await run(join(dirname(OLD_NODE!), "npm"), ["install", "--dry-run", "--offline", "--no-audit", "--no-fund"]);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain("EBADENGINE");
    expect(result.stderr).toContain('Required: {"node":">=22"}');
  });
});
