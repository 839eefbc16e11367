import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import type { TestProject } from "vitest/node";

declare module "vitest" {
  export interface ProvidedContext {
    /** The bin of atlas-gateway as a user gets it: packed with `npm pack`, installed from the tarball. */
    atlasBin: string;
  }
}

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const run = promisify(execFile);

/**
 * Vitest global setup (issue 13: what users install is what is tested). Packs the package exactly as `npm publish`
 * would, installs the tarball into an empty project outside this checkout (so nothing can resolve from the
 * checkout's node_modules), and provides that install's bin to every end-to-end test (`BIN` in
 * test/helpers/rawMcpProcess.ts). Dependencies come from npm's cache first (`--prefer-offline`): after `npm ci` they
 * are all there, so no network is needed. The install is kept in the temp dir under the tarball's hash, so a re-run
 * with an unchanged build reuses it; the build itself is `npm run build`'s job (`npm test` runs it first).
 */
/** Installs of earlier builds (36 MB each) go once nobody has used them for a day. */
function pruneOldInstalls(keep: string): void {
  const dayAgo = Date.now() - 24 * 3600_000;
  for (const name of readdirSync(tmpdir())) {
    const dir = join(tmpdir(), name);
    if (!name.startsWith("atlas-installed-") || dir === keep) continue;
    try {
      if (statSync(dir).mtimeMs < dayAgo) rmSync(dir, { recursive: true, force: true });
    } catch {
      // another run removed it
    }
  }
}

export default async function setup(project: TestProject): Promise<void> {
  if (!existsSync(join(ROOT, "dist", "cli.js"))) throw new Error("dist/cli.js is missing: run `npm run build` first (npm test does)");
  const packDir = mkdtempSync(join(tmpdir(), "atlas-pack-"));
  try {
    // --ignore-scripts: `prepare` would rebuild; the tests run against the build already made
    const { stdout } = await run("npm", ["pack", "--json", "--ignore-scripts", "--pack-destination", packDir], { cwd: ROOT, maxBuffer: 16 * 1024 * 1024 });
    const [packed] = JSON.parse(stdout) as { filename: string }[];
    const tarball = join(packDir, packed!.filename);
    const digest = createHash("sha256").update(readFileSync(tarball)).digest("hex").slice(0, 16);
    const installDir = join(tmpdir(), `atlas-installed-${digest}`);
    const bin = join(installDir, "node_modules", "atlas-gateway", "bin", "atlas-gateway.js");
    if (existsSync(join(installDir, "installed.ok"))) utimesSync(installDir, new Date(), new Date()); // in use: keep it
    else {
      const staging = mkdtempSync(join(tmpdir(), "atlas-installing-"));
      writeFileSync(join(staging, "package.json"), JSON.stringify({ name: "atlas-artifact-test", private: true }));
      await run("npm", ["install", "--prefer-offline", "--no-audit", "--no-fund", "--no-save", "--loglevel=error", tarball], {
        cwd: staging,
        maxBuffer: 16 * 1024 * 1024,
        timeout: 300_000,
      }).catch((error: Error & { stderr?: string }) => {
        rmSync(staging, { recursive: true, force: true });
        throw new Error(`installing the packed tarball failed: ${error.message}\n${error.stderr ?? ""}`);
      });
      writeFileSync(join(staging, "installed.ok"), `${packed!.filename}\n`);
      // a folder without installed.ok is a run killed mid-install; one with it, another run's finished install
      if (!existsSync(join(installDir, "installed.ok"))) rmSync(installDir, { recursive: true, force: true });
      try {
        renameSync(staging, installDir);
      } catch {
        rmSync(staging, { recursive: true, force: true });
      }
    }
    if (!existsSync(bin)) throw new Error(`the installed package has no bin at ${bin}`);
    pruneOldInstalls(installDir);
    project.provide("atlasBin", bin);
  } finally {
    rmSync(packDir, { recursive: true, force: true });
  }
}
