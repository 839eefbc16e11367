import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { describe, expect, it } from "vitest";

/**
 * The source layout (issue 8, README "Development"): each folder may import only from folders below it in this list.
 * `cli/` and `mcp/serve.ts` assemble everything (with `mcp/afterInitialize.ts`, the part of serve.ts's imports it
 * loads once `initialize` is answered); `index.ts` is the library entry; `config.ts` composes each concern's config
 * schema (`risk/config.ts`).
 */
const LAYERS = ["cli", "demo", "http", "notify", "inngest", "mcp", "governance", "risk", "ledger", "."];
const ASSEMBLERS = new Set(["cli", "mcp/serve.ts", "mcp/afterInitialize.ts", "index.ts"]);
const ALLOWED = new Set(["config.ts -> risk/config.ts"]);

const SRC = resolve(import.meta.dirname, "..", "src");

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? sourceFiles(join(dir, entry.name)) : entry.name.endsWith(".ts") ? [join(dir, entry.name)] : [],
  );
}

const layerOf = (file: string) => {
  const top = relative(SRC, file).split("/");
  return top.length === 1 ? "." : top[0]!;
};

describe("source layout", () => {
  it("every file sits in a known folder", () => {
    for (const file of sourceFiles(SRC)) expect(LAYERS, relative(SRC, file)).toContain(layerOf(file));
  });

  it("no folder imports from a folder above it (except the assemblers)", () => {
    const violations: string[] = [];
    for (const file of sourceFiles(SRC)) {
      const from = relative(SRC, file);
      if (ASSEMBLERS.has(from) || ASSEMBLERS.has(layerOf(file))) continue;
      const text = readFileSync(file, "utf8");
      for (const match of text.matchAll(/(?:from|import\()\s*"(\.{1,2}\/[^"]+)"/g)) {
        const target = resolve(dirname(file), match[1]!).replace(/\.js$/, ".ts");
        const to = relative(SRC, target);
        if (ALLOWED.has(`${from} -> ${to}`)) continue;
        if (LAYERS.indexOf(layerOf(target)) < LAYERS.indexOf(layerOf(file))) violations.push(`${from} -> ${to}`);
      }
    }
    expect(violations).toEqual([]);
  });
});
