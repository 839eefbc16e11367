import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

// `npm ci` on a clean clone needs every platform's optional packages in the lockfile (issue 13: the lockfile lacked
// @rollup/rollup-* for every platform but this one, so `npm ci` failed elsewhere). npm drops them when it rewrites the
// lockfile from a node_modules that has only this platform's; this catches that before CI on another machine does.

interface LockEntry {
  version?: string;
  optionalDependencies?: Record<string, string>;
}

const lock = JSON.parse(readFileSync(fileURLToPath(new URL("../../package-lock.json", import.meta.url)), "utf8")) as { lockfileVersion: number; packages: Record<string, LockEntry> };

/** Where Node (and npm) would find `name` from the package at `key`: its own node_modules, then each parent's. */
function resolves(key: string, name: string): boolean {
  let base = key;
  for (;;) {
    if (lock.packages[`${base ? `${base}/` : ""}node_modules/${name}`]) return true;
    if (!base) return false;
    const cut = base.lastIndexOf("/node_modules/");
    base = cut === -1 ? "" : base.slice(0, cut);
  }
}

describe("package-lock.json", () => {
  it("is lockfile v3 and lists every optional dependency of every package, for every platform", () => {
    expect(lock.lockfileVersion).toBe(3);
    const missing: string[] = [];
    for (const [key, entry] of Object.entries(lock.packages)) {
      for (const name of Object.keys(entry.optionalDependencies ?? {})) if (!resolves(key, name)) missing.push(`${key || "(root)"} -> ${name}`);
    }
    expect(missing, "regenerate: rm -rf node_modules && npm install --package-lock-only && npm ci").toEqual([]);
    expect(Object.keys(lock.packages).filter((key) => key.startsWith("node_modules/@rollup/rollup-")).length).toBeGreaterThan(10);
  });
});
