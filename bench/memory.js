import { drive, freshDataDir, rssOf, spawnGateway, spawnProxy } from "./lib/setup.js";
import { formatMB, sleep } from "./lib/stats.js";

async function settledRss(pid) {
  await sleep(300);
  return rssOf(pid) ?? NaN;
}

/** Drives `total` calls, sampling RSS after `checkpoint` calls and at the end. */
async function rssCurve(server, checkpoint, total) {
  await server.initialize();
  await server.request("tools/list");
  await drive(server, { total: checkpoint, concurrency: 16, collect: false });
  const atCheckpoint = await settledRss(server.pid);
  await drive(server, { total: total - checkpoint, concurrency: 16, collect: false });
  const atEnd = await settledRss(server.pid);
  return { atCheckpoint, atEnd };
}

/**
 * 5. Memory: the gateway's resident set after `total` auto-approved calls, and its growth from the checkpoint to the
 * end; the bare SDK proxy under the same load is the baseline.
 */
export async function benchMemory(ctx) {
  const { checkpoint, total } = ctx.counts.memory;
  if (rssOf(process.pid) === undefined) {
    return [{ section: "5 memory", measure: "RSS (needs Linux /proc)", value: "skipped", baseline: "—", target: "info" }];
  }
  const gateway = spawnGateway(ctx, freshDataDir(ctx.workDir, "memory"));
  let g;
  try {
    g = await rssCurve(gateway, checkpoint, total);
  } finally {
    await gateway.close();
  }
  const proxy = spawnProxy(ctx);
  let p;
  try {
    p = await rssCurve(proxy, checkpoint, total);
  } finally {
    await proxy.close();
  }
  const label = (n) => (n >= 1000 ? `${n / 1000}k` : String(n));
  const growth = g.atEnd - g.atCheckpoint;
  ctx.log(`RSS gateway ${formatMB(g.atCheckpoint)} after ${label(checkpoint)} -> ${formatMB(g.atEnd)} after ${label(total)}; bare proxy ${formatMB(p.atCheckpoint)} -> ${formatMB(p.atEnd)}`);
  return [
    { section: "5 memory", measure: `RSS after ${label(total)} governed calls`, value: formatMB(g.atEnd), baseline: `${formatMB(p.atEnd)} bare proxy`, ratio: g.atEnd / p.atEnd, target: "info" },
    { section: "5 memory", measure: `RSS growth, ${label(checkpoint)} → ${label(total)} calls`, value: formatMB(growth), baseline: `${formatMB(p.atEnd - p.atCheckpoint)} bare proxy`, target: "< 20 MB", pass: growth < 20 * 1024 * 1024 },
  ];
}
