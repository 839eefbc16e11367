import { join } from "node:path";
import { freshDataDir, spawnGateway, spawnProxy, spawnUpstream } from "./lib/setup.js";
import { formatMs, median } from "./lib/stats.js";

/** spawn → initialize answer, in ms. */
async function timeInitialize(spawn) {
  const server = spawn();
  try {
    const at = await server.initialize();
    return at - server.spawnedAt;
  } finally {
    await server.close();
  }
}

/** spawn → first tools/list answer (sent the moment initialize is answered), in ms. */
async function timeFirstList(spawn) {
  const server = spawn();
  try {
    await server.initialize();
    const { result, at } = await server.request("tools/list");
    if (!result.tools.some((tool) => tool.name === "echo")) throw new Error(`first tools/list lacks the upstream's tools: ${JSON.stringify(result).slice(0, 200)}`);
    return at - server.spawnedAt;
  } finally {
    await server.close();
  }
}

/**
 * 1. Cold start. Rounds alternate the order of the contenders so drift on a shared machine hits all of them alike;
 * medians are compared. The gateway keeps one data dir across rounds, as it does between client launches.
 */
export async function benchColdStart(ctx) {
  const rounds = ctx.counts.coldStartRounds;
  const bareDir = freshDataDir(ctx.workDir, "cold-bare");
  const upDir = freshDataDir(ctx.workDir, "cold-up");
  const samples = { bare: [], gateway: [], bareCached: [], gatewayFirstRun: [], upstreamList: [], proxyList: [], gatewayList: [] };
  // The gateway enables Node's compile cache itself (bin/atlas-gateway.js); a bare server does not. Two more rows keep
  // that honest: both with a warm cache, and the gateway's first run with an empty one.
  const bareCache = { NODE_COMPILE_CACHE: join(ctx.workDir, "compile-cache-bare") };
  let emptyCaches = 0;
  const emptyCache = () => ({ NODE_COMPILE_CACHE: join(ctx.workDir, `compile-cache-empty-${++emptyCaches}`) });
  const contenders = [
    ["bare", () => timeInitialize(() => spawnUpstream(ctx))],
    ["gateway", () => timeInitialize(() => spawnGateway(ctx, bareDir, false))],
    ["bareCached", () => timeInitialize(() => spawnUpstream(ctx, bareCache))],
    ["gatewayFirstRun", () => timeInitialize(() => spawnGateway(ctx, bareDir, false, emptyCache()))],
    ["upstreamList", () => timeFirstList(() => spawnUpstream(ctx))],
    ["proxyList", () => timeFirstList(() => spawnProxy(ctx))],
    ["gatewayList", () => timeFirstList(() => spawnGateway(ctx, upDir, true))],
  ];
  // one unmeasured pass warms the OS file cache
  for (const [, run] of contenders) await run();
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? contenders : [...contenders].reverse();
    for (const [name, run] of order) samples[name].push(await run());
  }
  const m = Object.fromEntries(Object.entries(samples).map(([name, values]) => [name, median(values)]));
  ctx.log(`cold start medians over ${rounds} rounds: ${Object.entries(m).map(([k, v]) => `${k} ${formatMs(v)}`).join(", ")}`);
  return [
    { section: "1 cold start", measure: "spawn → initialize (no upstream)", value: formatMs(m.gateway), baseline: `${formatMs(m.bare)} bare SDK server`, ratio: m.gateway / m.bare, target: "≤ 1.20x", pass: m.gateway / m.bare <= 1.2 },
    { section: "1 cold start", measure: "  same, both with a warm compile cache", value: formatMs(m.gateway), baseline: `${formatMs(m.bareCached)} bare SDK server`, ratio: m.gateway / m.bareCached, target: "info" },
    { section: "1 cold start", measure: "  same, gateway's first run (empty cache)", value: formatMs(m.gatewayFirstRun), baseline: `${formatMs(m.bare)} bare SDK server`, ratio: m.gatewayFirstRun / m.bare, target: "info" },
    { section: "1 cold start", measure: "spawn → first tools/list (1 upstream)", value: formatMs(m.gatewayList), baseline: `${formatMs(m.proxyList)} bare SDK proxy`, ratio: m.gatewayList / m.proxyList, target: "≤ 1.20x", pass: m.gatewayList / m.proxyList <= 1.2 },
    { section: "1 cold start", measure: "  same, vs the upstream's own", value: formatMs(m.gatewayList), baseline: `${formatMs(m.upstreamList)} upstream alone`, ratio: m.gatewayList / m.upstreamList, target: "info" },
  ];
}
