import { drive, freshDataDir, spawnGateway, spawnPipe, spawnProxy, spawnUpstream } from "./lib/setup.js";
import { formatMs, formatRate, percentile } from "./lib/stats.js";

/**
 * 2. Auto-approved tools/call through the gateway, directly to the upstream, through a bare SDK proxy (the baseline
 * the targets name) and through a raw newline-JSON pipe (the floor for one stdio hop). All run side by side; each
 * round measures them in rotating order, sequential then 16 at once.
 */
export async function benchToolCalls(ctx) {
  const { sequentialPerRound, concurrentPerRound, rounds, warmup } = ctx.counts.calls;
  const concurrency = 16;
  const targets = {
    direct: spawnUpstream(ctx),
    pipe: spawnPipe(ctx),
    proxy: spawnProxy(ctx),
    gateway: spawnGateway(ctx, freshDataDir(ctx.workDir, "calls")),
  };
  try {
    for (const server of Object.values(targets)) {
      await server.initialize();
      await server.request("tools/list");
    }
    const first = await targets.gateway.call("echo", { n: -1 });
    if (first.isError || !String(first.content?.[0]?.text).startsWith("echo")) throw new Error(`the gateway did not auto-approve echo: ${JSON.stringify(first).slice(0, 300)}`);
    for (const server of Object.values(targets)) await drive(server, { total: warmup, concurrency: 4, collect: false });

    const seq = { direct: [], pipe: [], proxy: [], gateway: [] };
    const conc = { direct: [], pipe: [], proxy: [], gateway: [] };
    const seqMs = { direct: 0, pipe: 0, proxy: 0, gateway: 0 };
    const concMs = { direct: 0, pipe: 0, proxy: 0, gateway: 0 };
    const names = Object.keys(targets);
    for (let round = 0; round < rounds; round++) {
      const order = names.map((_, i) => names[(i + round) % names.length]);
      for (const name of order) {
        const s = await drive(targets[name], { total: sequentialPerRound, concurrency: 1 });
        seq[name].push(...s.latencies);
        seqMs[name] += s.ms;
      }
      for (const name of order) {
        const c = await drive(targets[name], { total: concurrentPerRound, concurrency });
        conc[name].push(...c.latencies);
        concMs[name] += c.ms;
      }
    }
    const stat = (name) => ({
      p50: percentile(seq[name], 50),
      p99: percentile(seq[name], 99),
      seqRate: (seq[name].length / seqMs[name]) * 1000,
      cp50: percentile(conc[name], 50),
      cp99: percentile(conc[name], 99),
      concRate: (conc[name].length / concMs[name]) * 1000,
    });
    const g = stat("gateway");
    const p = stat("proxy");
    const d = stat("direct");
    const f = stat("pipe");
    ctx.log(`tools/call: ${rounds} rounds x (${sequentialPerRound} sequential + ${concurrentPerRound} at ${concurrency}) per target`);
    for (const [name, s] of [["direct", d], ["pipe", f], ["proxy", p], ["gateway", g]]) {
      ctx.log(`  ${name.padEnd(8)} seq p50 ${formatMs(s.p50)} p99 ${formatMs(s.p99)} ${formatRate(s.seqRate)} | x16 p50 ${formatMs(s.cp50)} p99 ${formatMs(s.cp99)} ${formatRate(s.concRate)}`);
    }
    const row = (measure, value, base, ratio, target, pass, fmt = formatMs) => ({
      section: "2 tools/call", measure, value: fmt(value), baseline: `${fmt(base)} bare proxy`, ratio, target, ...(pass === undefined ? {} : { pass }),
    });
    return [
      row("auto-approved p50, sequential", g.p50, p.p50, g.p50 / p.p50, "≤ 1.15x", g.p50 / p.p50 <= 1.15),
      row("auto-approved p99, sequential", g.p99, p.p99, g.p99 / p.p99, "info"),
      row("calls/s, sequential", g.seqRate, p.seqRate, g.seqRate / p.seqRate, "≥ 0.85x", g.seqRate / p.seqRate >= 0.85, formatRate),
      row("auto-approved p50, 16 concurrent", g.cp50, p.cp50, g.cp50 / p.cp50, "≤ 1.15x", g.cp50 / p.cp50 <= 1.15),
      row("auto-approved p99, 16 concurrent", g.cp99, p.cp99, g.cp99 / p.cp99, "info"),
      row("calls/s, 16 concurrent", g.concRate, p.concRate, g.concRate / p.concRate, "≥ 0.85x", g.concRate / p.concRate >= 0.85, formatRate),
      { section: "2 tools/call", measure: "  raw newline-JSON pipe (the floor): p50 seq", value: formatMs(f.p50), baseline: `${formatMs(p.p50)} bare proxy`, ratio: f.p50 / p.p50, target: "info" },
      { section: "2 tools/call", measure: "  raw pipe: calls/s, 16 concurrent", value: formatRate(f.concRate), baseline: `${formatRate(p.concRate)} bare proxy`, ratio: f.concRate / p.concRate, target: "info" },
      { section: "2 tools/call", measure: "  gateway vs raw pipe: p50 seq / calls/s x16", value: `${(g.p50 / f.p50).toFixed(2)}x / ${(g.concRate / f.concRate).toFixed(2)}x`, baseline: "raw pipe", target: "info" },
      { section: "2 tools/call", measure: "  direct to upstream: p50 seq / calls/s x16", value: `${formatMs(d.p50)} / ${formatRate(d.concRate)}`, baseline: "—", target: "info" },
    ];
  } finally {
    await Promise.all(Object.values(targets).map((server) => server.close()));
  }
}
