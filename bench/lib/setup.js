import { mkdirSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { spawnServer } from "./rpc.js";

export const ROOT = resolve(fileURLToPath(new URL("../..", import.meta.url)));
export const BIN = join(ROOT, "bin", "atlas-gateway.js");
export const NODE = process.execPath;

/**
 * Bundles the fixtures exactly as the gateway's CLI is bundled (tsup, ESM, node22, everything inlined, the same
 * createRequire banner), so the baselines pay the same module-loading cost the gateway does — no more, no less.
 */
export async function bundleFixtures(outDir) {
  const { build } = await import("tsup");
  await build({
    config: false,
    entry: { upstream: join(ROOT, "bench/fixtures/upstream.js"), proxy: join(ROOT, "bench/fixtures/proxy.js"), pipe: join(ROOT, "bench/fixtures/pipe.js") },
    outDir,
    format: ["esm"],
    target: "node22",
    platform: "node",
    noExternal: [/.*/],
    splitting: true,
    sourcemap: false,
    clean: false,
    dts: false,
    silent: true,
    outExtension: () => ({ js: ".mjs" }), // ESM whatever package.json the scratch dir sits under
    banner: { js: "import { createRequire as __atlasCreateRequire } from 'node:module'; const require = __atlasCreateRequire(import.meta.url);" },
  });
  return { upstream: join(outDir, "upstream.mjs"), proxy: join(outDir, "proxy.mjs"), pipe: join(outDir, "pipe.mjs") };
}

/** A scratch area for one benchmark run (removed by the caller). */
export function makeWorkDir() {
  return mkdtempSync(join(tmpdir(), "atlas-bench-"));
}

/** The environment for every child, with an empty user config dir. */
export function childEnv(workDir) {
  const env = {};
  // no ATLAS_*/INNGEST_* from the caller's shell; no compile-cache settings either: each contender runs as shipped
  for (const [key, value] of Object.entries(process.env)) {
    if (!/^(ATLAS_|INNGEST_|NODE_COMPILE_CACHE|NODE_DISABLE_COMPILE_CACHE)/.test(key)) env[key] = value;
  }
  const configDir = join(workDir, "user-config");
  mkdirSync(configDir, { recursive: true });
  return { ...env, ATLAS_CONFIG_DIR: configDir, ATLAS_CONFIG: "" };
}

let dataDirs = 0;
export function freshDataDir(workDir, label) {
  const dir = join(workDir, `data-${label}-${++dataDirs}`);
  mkdirSync(dir, { recursive: true });
  return dir;
}

export function gatewayArgs(dataDir, upstreamScript) {
  return [BIN, "serve", "--data-dir", dataDir, "--port", "0", "--instance", "bench", ...(upstreamScript ? ["--", NODE, upstreamScript] : [])];
}

export function spawnGateway(ctx, dataDir, withUpstream = true, extraEnv = {}) {
  return spawnServer({ command: NODE, args: gatewayArgs(dataDir, withUpstream ? ctx.fixtures.upstream : undefined), env: { ...ctx.env, ...extraEnv }, label: "gateway" });
}
export function spawnUpstream(ctx, extraEnv = {}) {
  return spawnServer({ command: NODE, args: [ctx.fixtures.upstream], env: { ...ctx.env, ...extraEnv }, label: "upstream" });
}
/** The raw newline-JSON pipe: the floor for one stdio hop. */
export function spawnPipe(ctx) {
  return spawnServer({ command: NODE, args: [ctx.fixtures.pipe, "--", NODE, ctx.fixtures.upstream], env: ctx.env, label: "raw pipe" });
}
export function spawnProxy(ctx) {
  return spawnServer({ command: NODE, args: [ctx.fixtures.proxy, "--", NODE, ctx.fixtures.upstream], env: ctx.env, label: "bare proxy" });
}

/** The running gateway's lock file: its listener port and control socket. */
export function readLockFile(dataDir, instance = "bench") {
  return JSON.parse(readFileSync(join(dataDir, "run", `${instance}.lock`), "utf8"));
}

/** Calls `echo` until `total` calls are done, `concurrency` at a time; returns per-call latencies and the wall time. */
export async function drive(server, { total, concurrency, tool = "echo", collect = true }) {
  const latencies = collect ? new Array(total) : undefined;
  let issued = 0;
  const worker = async () => {
    while (issued < total) {
      const n = issued++;
      const started = performance.now();
      const { result, at } = await server.request("tools/call", { name: tool, arguments: { n, text: "hello from the benchmark" } });
      if (result.isError || !Array.isArray(result.content) || !String(result.content[0]?.text).startsWith(tool)) {
        throw new Error(`unexpected ${tool} result: ${JSON.stringify(result).slice(0, 300)}`);
      }
      if (latencies) latencies[n] = at - started;
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: concurrency }, worker));
  return { latencies, ms: performance.now() - started };
}
