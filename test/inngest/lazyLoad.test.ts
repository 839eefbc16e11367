import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { RawMcpProcess } from "../helpers/rawMcpProcess.js";

// The Inngest SDK is imported only when engine inngest is selected: the local engine's cold start must not load it.

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** Starts the built CLI with a module hook that lists every file it loads, answers initialize, and stops it. */
async function loadedFiles(engineArgs: string[], env: Record<string, string> = {}): Promise<string[]> {
  const dir = mkdtempSync(join(tmpdir(), "atlas-lazy-"));
  dirs.push(dir);
  const hook = join(dir, "hook.mjs");
  const log = join(dir, "loaded.txt");
  writeFileSync(log, "");
  writeFileSync(hook, `import { registerHooks } from "node:module";
import { appendFileSync } from "node:fs";
registerHooks({ load(url, context, nextLoad) { if (url.startsWith("file:")) appendFileSync(${JSON.stringify(log)}, url + "\\n"); return nextLoad(url, context); } });
`);
  const gateway = new RawMcpProcess(["serve", "--demo", "--port", "0", "--data-dir", dir, ...engineArgs], { PATH: process.env.PATH, HOME: dir, ATLAS_CONFIG_DIR: join(dir, "config"), ATLAS_CONFIG: "", ...env }, ["--import", hook]);
  await gateway.initialize();
  await gateway.request("tools/list");
  expect(await gateway.close()).toBe(0);
  return readFileSync(log, "utf8").split("\n").filter(Boolean).map((url) => fileURLToPath(url));
}

const hasInngest = (file: string) => readFileSync(file, "utf8").includes("node_modules/inngest/");

describe("lazy loading of the Inngest SDK", () => {
  it("the local engine loads no chunk that contains the SDK", async () => {
    const files = await loadedFiles([]);
    expect(files.some((file) => file.endsWith("dist/cli.js"))).toBe(true);
    expect(files.filter(hasInngest)).toEqual([]);
  });

  it("engine inngest does load it (the check above can see it)", async () => {
    const files = await loadedFiles(["--engine", "inngest"], { INNGEST_DEV: "1" });
    expect(files.filter(hasInngest).length).toBeGreaterThan(0);
  });
});
