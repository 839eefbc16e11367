// `npm run bench` — atlas-gateway's performance budget, measured against baselines taken in the same run.
// `--smoke` (or ATLAS_BENCH_SMOKE=1) runs every section with tiny counts: it proves the benchmark works, not the figures.
import { rmSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { benchApproval } from "./approval.js";
import { benchColdStart } from "./coldStart.js";
import { benchLargeMessages } from "./largeMessages.js";
import { benchLedger } from "./ledger.js";
import { benchMemory } from "./memory.js";
import { benchNotify } from "./notify.js";
import { benchPolicy } from "./policy.js";
import { benchToolCalls } from "./toolCalls.js";
import { ROOT, bundleFixtures, childEnv, makeWorkDir } from "./lib/setup.js";
import { formatTable } from "./lib/table.js";

const smoke = process.argv.includes("--smoke") || process.env.ATLAS_BENCH_SMOKE === "1";
const keep = process.argv.includes("--keep");
const only = process.argv.find((arg) => arg.startsWith("--only="))?.slice("--only=".length).split(",");

const COUNTS = {
  full: {
    coldStartRounds: 15,
    calls: { warmup: 1000, rounds: 5, sequentialPerRound: 2000, concurrentPerRound: 4000 },
    approvals: 10,
    ledger: { appendRecords: 200_000, group: 256, replaySizes: [10_000, 100_000, 1_000_000], budgetSize: 100_000, replayRepeats: 3 }, // replaySizes in calls
    memory: { checkpoint: 10_000, total: 100_000 },
    notifications: 20,
    large: { bytes: 20 * 1024 * 1024, rounds: 3, idleCalls: 50 },
  },
  smoke: {
    coldStartRounds: 1,
    calls: { warmup: 10, rounds: 1, sequentialPerRound: 30, concurrentPerRound: 64 },
    approvals: 1,
    ledger: { appendRecords: 1000, group: 256, replaySizes: [200, 500, 1000], budgetSize: 500, replayRepeats: 1 },
    memory: { checkpoint: 100, total: 400 },
    notifications: 2,
    large: { bytes: 1024 * 1024, rounds: 1, idleCalls: 5 },
  },
};

const SECTIONS = [
  ["cold", "1. cold start", benchColdStart],
  ["calls", "2. auto-approved tools/call", benchToolCalls],
  ["approval", "3. approval latency", benchApproval],
  ["ledger", "4. ledger", benchLedger],
  ["memory", "5. memory", benchMemory],
  ["policy", "6. risk policy", benchPolicy],
  ["notify", "7. notifications", benchNotify],
  ["large", "8. large messages", benchLargeMessages],
];

async function main() {
  const workDir = makeWorkDir();
  const log = (line) => process.stdout.write(`  ${line}\n`);
  const ctx = {
    smoke,
    counts: smoke ? COUNTS.smoke : COUNTS.full,
    workDir,
    env: childEnv(workDir),
    log,
    lib: await import(pathToFileURL(join(ROOT, "dist", "index.js")).href),
    fixtures: await bundleFixtures(join(workDir, "fixtures")),
  };
  const rows = [];
  const began = performance.now();
  process.stdout.write(`atlas-gateway benchmark${smoke ? " (smoke: tiny counts, figures meaningless)" : ""} — Node ${process.version}, ${process.platform}/${process.arch}\n`);
  try {
    for (const [key, title, run] of SECTIONS) {
      if (only && !only.includes(key)) continue;
      process.stdout.write(`== ${title}\n`);
      const t = performance.now();
      rows.push(...(await run(ctx)));
      log(`(${((performance.now() - t) / 1000).toFixed(1)} s)`);
    }
  } finally {
    if (keep) log(`kept ${workDir}`);
    else rmSync(workDir, { recursive: true, force: true });
  }
  process.stdout.write(`\n${formatTable(rows)}\n`);
  const judged = rows.filter((row) => row.pass !== undefined);
  const missed = judged.filter((row) => !row.pass);
  process.stdout.write(`\n${judged.length - missed.length}/${judged.length} targets met${missed.length ? `; missed: ${missed.map((row) => row.measure.trim()).join("; ")}` : ""}. Total ${((performance.now() - began) / 1000).toFixed(0)} s.\n`);
}

main().catch((error) => {
  process.stderr.write(`benchmark failed: ${error.stack ?? error}\n`);
  process.exitCode = 1;
});
