import { collectAndMeasure, inspectorUrl } from "./lib/inspector.js";
import { BIN, NODE, drive, freshDataDir } from "./lib/setup.js";
import { spawnServer } from "./lib/rpc.js";
import { formatMB, sleep } from "./lib/stats.js";

/** Drives `total` calls, measuring memory after a forced full GC at `checkpoint` calls and at the end. */
async function memoryCurve(server, checkpoint, total) {
  await server.initialize();
  await server.request("tools/list");
  const url = inspectorUrl(server);
  await drive(server, { total: checkpoint, concurrency: 16, collect: false });
  await sleep(200);
  const atCheckpoint = await collectAndMeasure(url);
  await drive(server, { total: total - checkpoint, concurrency: 16, collect: false });
  await sleep(200);
  const atEnd = await collectAndMeasure(url);
  return { atCheckpoint, atEnd };
}

/**
 * 5. Memory: the gateway's resident set after `total` auto-approved calls, and its growth from the checkpoint to the
 * end, each read right after a forced full GC; the bare SDK proxy under the same load is the baseline.
 */
export async function benchMemory(ctx) {
  const { checkpoint, total } = ctx.counts.memory;
  if (typeof WebSocket !== "function") {
    return [{ section: "5 memory", measure: "RSS growth (needs the WebSocket global, Node 22.4+)", value: "skipped", baseline: "—", target: "info" }];
  }
  const inspect = "--inspect=127.0.0.1:0";
  const gateway = spawnServer({
    command: NODE,
    args: [inspect, BIN, "serve", "--data-dir", freshDataDir(ctx.workDir, "memory"), "--port", "0", "--instance", "bench", "--", NODE, ctx.fixtures.upstream],
    env: ctx.env,
    label: "gateway",
  });
  let g;
  try {
    g = await memoryCurve(gateway, checkpoint, total);
  } finally {
    await gateway.close();
  }
  const proxy = spawnServer({ command: NODE, args: [inspect, ctx.fixtures.proxy, "--", NODE, ctx.fixtures.upstream], env: ctx.env, label: "bare proxy" });
  let p;
  try {
    p = await memoryCurve(proxy, checkpoint, total);
  } finally {
    await proxy.close();
  }
  const label = (n) => (n >= 1000 ? `${n / 1000}k` : String(n));
  const growth = g.atEnd.rss - g.atCheckpoint.rss;
  ctx.log(`after a full GC: gateway RSS ${formatMB(g.atCheckpoint.rss)} at ${label(checkpoint)} -> ${formatMB(g.atEnd.rss)} at ${label(total)} calls (heap ${formatMB(g.atCheckpoint.heapUsed)} -> ${formatMB(g.atEnd.heapUsed)}); ` +
    `bare proxy RSS ${formatMB(p.atCheckpoint.rss)} -> ${formatMB(p.atEnd.rss)} (heap ${formatMB(p.atCheckpoint.heapUsed)} -> ${formatMB(p.atEnd.heapUsed)})`);
  return [
    { section: "5 memory", measure: `RSS after ${label(total)} governed calls (after GC)`, value: formatMB(g.atEnd.rss), baseline: `${formatMB(p.atEnd.rss)} bare proxy`, ratio: g.atEnd.rss / p.atEnd.rss, target: "info" },
    { section: "5 memory", measure: `RSS growth, ${label(checkpoint)} → ${label(total)} calls`, value: formatMB(growth), baseline: `${formatMB(p.atEnd.rss - p.atCheckpoint.rss)} bare proxy`, target: "< 20 MB", pass: growth < 20 * 1024 * 1024 },
    { section: "5 memory", measure: `  heap in use, ${label(checkpoint)} → ${label(total)} calls`, value: `${formatMB(g.atCheckpoint.heapUsed)} → ${formatMB(g.atEnd.heapUsed)}`, baseline: `${formatMB(p.atCheckpoint.heapUsed)} → ${formatMB(p.atEnd.heapUsed)}`, target: "info" },
  ];
}
