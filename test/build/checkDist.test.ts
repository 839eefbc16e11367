import { execFile } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { tempDir } from "../helpers.js";

// scripts/check-dist.mjs runs in `npm run build`: the built files must load as a user's Node loads them (issue 13).

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const SCRIPT = join(ROOT, "scripts", "check-dist.mjs");

function checkDist(dist: string): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [SCRIPT, dist], { timeout: 120_000 }, (error, _stdout, stderr) => {
      resolve({ code: error ? Number((error as { code?: number }).code ?? 1) : 0, stderr });
    });
  });
}

/** A package folder with a package.json and the given dist/ files. */
function fakePackage(files: Record<string, string>, dependencies: Record<string, string> = {}): string {
  const root = tempDir("atlas-check-dist-");
  mkdirSync(join(root, "dist"));
  writeFileSync(join(root, "package.json"), JSON.stringify({ name: "fake", type: "module", dependencies }));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(root, "dist", name), text);
  return join(root, "dist");
}

describe("check-dist", () => {
  it("passes on the real build and names what it checked", async () => {
    const result = await checkDist(join(ROOT, "dist"));
    expect(result.stderr).toMatch(/check-dist: \d+ files load; \d+ dynamic imports resolve; \d+ imported names exist/);
    expect(result.code).toBe(0);
  });

  it("fails on a named import from a CommonJS chunk that only has a default export (the undici fault)", async () => {
    const dist = fakePackage({
      "cli.js": `export async function main() {\n  // a comment with import("./nowhere.js") is not an import\n  const { request } = await import("./undici-X.js");\n  return request;\n}\n`,
      "undici-X.js": `var require_undici = () => ({ request() {} });\nexport default require_undici();\n`,
    });
    const result = await checkDist(dist);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`dist/cli.js: import("./undici-X.js") is used for 'request', which it does not export (it exports: default)`);
    expect(result.stderr).not.toContain("nowhere");
  });

  it("checks member access on an awaited import and in .then()", async () => {
    const dist = fakePackage({
      "cli.js": `export const a = async () => (await import("./m.js")).present;\nexport const b = () => import("./m.js").then((m) => m.absent);\n`,
      "m.js": `export const present = 1;\n`,
    });
    const result = await checkDist(dist);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`import("./m.js") is used for 'absent'`);
    expect(result.stderr).not.toContain("'present'");
  });

  it("fails when a chunk throws while loading, or a lazily imported file is missing", async () => {
    const dist = fakePackage({
      "cli.js": `export const lazy = () => import("./gone.js");\n`,
      "broken.js": `throw new Error("boom at load");\n`,
    });
    const result = await checkDist(dist);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("dist/broken.js does not load: boom at load");
    expect(result.stderr).toMatch(/dist\/cli\.js: import\("\.\/gone\.js"\) fails: Cannot find module/);
  });

  it("fails on an imported package that package.json does not declare, and on a declared one nothing imports", async () => {
    const dist = fakePackage({ "cli.js": `export const lazy = () => import("left-pad-nowhere");\n` }, { "unused-dep": "^1.0.0" });
    const result = await checkDist(dist);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("dist/cli.js imports 'left-pad-nowhere', which package.json does not list in dependencies");
    expect(result.stderr).toContain("package.json lists 'unused-dep' in dependencies, but no built file imports it");
  });

  it("fails on a require that esbuild left unbundled, unless it is optional (inside a try)", async () => {
    const dist = fakePackage({
      "cli.js": `var __require = () => ({});\nexport function a() { return __require("needed-pkg"); }\nexport function b() { try { return __require("optional-pkg"); } catch { return undefined; } }\n`,
    });
    const result = await checkDist(dist);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("dist/cli.js requires 'needed-pkg' at run time outside a try");
    expect(result.stderr).not.toContain("optional-pkg");
  });
});
