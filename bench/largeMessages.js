import { freshDataDir, spawnGateway, spawnUpstream } from "./lib/setup.js";
import { formatMs, median, percentile } from "./lib/stats.js";

/**
 * 7. Large messages (issue 10): a tools/call whose argument is 20 MiB, through the gateway and to the upstream alone
 * (target: within 2x), and small calls sent one after another while such a call is in flight (target: at most 50 ms
 * later than the same calls to the upstream alone, which reads its input in order).
 */
export async function benchLargeMessages(ctx) {
  const { bytes, rounds, idleCalls } = ctx.counts.large;
  const direct = spawnUpstream(ctx);
  const gateway = spawnGateway(ctx, freshDataDir(ctx.workDir, "large"));
  const text = "x".repeat(bytes);
  const big = async (server) => {
    const began = performance.now();
    const { result } = await server.request("tools/call", { name: "size", arguments: { text } }, 120_000);
    if (result?.content?.[0]?.text !== `size ${bytes}`) throw new Error(`unexpected answer to the large call: ${JSON.stringify(result).slice(0, 200)}`);
    return performance.now() - began;
  };
  const small = async (server) => {
    const began = performance.now();
    await server.request("tools/call", { name: "echo", arguments: { n: 1 } });
    return performance.now() - began;
  };
  try {
    for (const server of [direct, gateway]) {
      await server.initialize();
      await server.request("tools/list");
    }
    const times = { direct: [], gateway: [] };
    for (let round = 0; round < rounds; round++) {
      times.direct.push(await big(direct));
      times.gateway.push(await big(gateway));
    }
    const idle = [];
    for (let i = 0; i < idleCalls; i++) idle.push(await small(gateway));
    /** Small calls one after another while a large one is in flight; the upstream itself reads them in order. */
    const smallDuringBig = async (server) => {
      const during = [];
      let inFlight = true;
      const bigCall = big(server).finally(() => (inFlight = false));
      while (inFlight) during.push(await small(server));
      await bigCall;
      return during;
    };
    const directDuring = await smallDuringBig(direct);
    const during = await smallDuringBig(gateway);

    const d = median(times.direct);
    const g = median(times.gateway);
    const idleP50 = median(idle);
    const worst = Math.max(...during);
    const directWorst = Math.max(...directDuring);
    ctx.log(`${(bytes / 1024 / 1024).toFixed(0)} MiB argument, ${rounds} round(s): direct ${times.direct.map(formatMs).join(", ")} | gateway ${times.gateway.map(formatMs).join(", ")}`);
    ctx.log(`small calls during a large one: gateway ${during.length}, p50 ${formatMs(percentile(during, 50))}, worst ${formatMs(worst)} | direct worst ${formatMs(directWorst)} (gateway idle p50 ${formatMs(idleP50)})`);
    const section = "8 large messages";
    return [
      { section, measure: `${(bytes / 1024 / 1024).toFixed(0)} MiB argument, median`, value: formatMs(g), baseline: `${formatMs(d)} upstream alone`, ratio: g / d, target: "≤ 2x", pass: g / d <= 2 },
      // The upstream reads its stdin in order, so a small call waits behind the large one even without the gateway:
      // the gateway's own share is the difference.
      { section, measure: "small call during a large one, worst", value: formatMs(worst), baseline: `${formatMs(directWorst)} upstream alone`, ratio: worst / directWorst, target: "≤ +50 ms", pass: worst - directWorst <= 50 },
    ];
  } finally {
    await Promise.all([direct.close(), gateway.close()]);
  }
}
