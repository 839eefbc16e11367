import { writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { join } from "node:path";
import { freshDataDir, spawnGateway } from "./lib/setup.js";
import { formatMs, median, percentile } from "./lib/stats.js";

const SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/** A webhook receiver on 127.0.0.1 that notes when each `atlas.call.held` notification for a ref arrived. */
async function startReceiver() {
  const arrivals = new Map();
  const waiters = new Map();
  const server = createServer((req, res) => {
    let body = "";
    req.setEncoding("utf8");
    req.on("data", (chunk) => (body += chunk));
    req.on("end", () => {
      const at = performance.now();
      res.writeHead(200).end("ok");
      const message = JSON.parse(body);
      if (message.type !== "atlas.call.held") return;
      arrivals.set(message.data.ref, at);
      waiters.get(message.data.ref)?.(at);
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}/hook`,
    /** Resolves with the arrival time of `ref`'s held notification. */
    arrival: (ref) => arrivals.has(ref) ? Promise.resolve(arrivals.get(ref)) : new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no notification for ${ref} within 20 s`)), 20_000);
      waiters.set(ref, (at) => {
        clearTimeout(timer);
        resolve(at);
      });
    }),
    close: () => new Promise((resolve) => {
      server.closeAllConnections();
      server.close(resolve);
    }),
  };
}

/**
 * 7. Notifications: how soon a reviewer's webhook hears of a held call. Timed from the agent sending the `tools/call`
 * to the receiver having the signed `atlas.call.held` notification (assessment, fsync of `request.held`, delivery).
 */
export async function benchNotify(ctx) {
  const iterations = ctx.counts.notifications;
  const receiver = await startReceiver();
  const dataDir = freshDataDir(ctx.workDir, "notify");
  const config = join(dataDir, "atlas.json");
  writeFileSync(config, JSON.stringify({ notify: [{ type: "webhook", url: receiver.url, secret: SECRET }] }));
  const gateway = spawnGateway(ctx, dataDir, true, { ATLAS_CONFIG: config });
  const samples = [];
  const replies = [];
  try {
    await gateway.initialize();
    await gateway.request("tools/list");
    for (let i = 0; i <= iterations; i++) {
      const sent = performance.now();
      const held = await gateway.call("hold_me", { n: i, text: "notify bench" });
      const replied = performance.now();
      const ref = held.structuredContent?.ref ?? /Ref: (evt_[0-9a-f]{8})/.exec(held.content?.[0]?.text ?? "")?.[1];
      if (!ref) throw new Error(`hold_me was not held: ${JSON.stringify(held).slice(0, 300)}`);
      const at = await receiver.arrival(ref);
      if (i === 0) continue; // warm-up: first connection to the receiver
      samples.push(at - sent);
      replies.push(replied - sent);
    }
  } finally {
    await gateway.close();
    await receiver.close();
  }
  const p50 = median(samples);
  ctx.log(`held → notification received over ${iterations}: p50 ${formatMs(p50)}, p90 ${formatMs(percentile(samples, 90))}, max ${formatMs(Math.max(...samples))}; the agent's PENDING reply p50 ${formatMs(median(replies))}`);
  return [
    { section: "7 notify", measure: "held call → webhook notification received (p50)", value: formatMs(p50), baseline: "1 s budget", ratio: p50 / 1000, target: "≤ 1 s", pass: p50 <= 1000 },
    { section: "7 notify", measure: "  the agent's PENDING reply, same calls (p50)", value: formatMs(median(replies)), baseline: "info", ratio: median(replies) / p50, target: "info" },
  ];
}
