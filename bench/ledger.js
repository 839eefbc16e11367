import { spawn } from "node:child_process";
import { closeSync, fdatasyncSync, openSync, readdirSync, readSync, statSync, writeSync } from "node:fs";
import { join } from "node:path";
import { BIN, NODE, freshDataDir, spawnGateway } from "./lib/setup.js";
import { formatMB, formatMs, formatRate, median } from "./lib/stats.js";

const hex64 = (i, salt) => (salt + i.toString(16)).padStart(64, "0");

/**
 * The records one governed call leaves, shaped like the gateway's: most calls auto-approved (2 records since 0.2:
 * `request.admitted`, then `execution.finished` with the result kept as a digest), one in 20 held, approved by a
 * human and executed (6 records, result kept whole).
 */
export function* callRecords(i) {
  const ref = `evt_${i.toString(16).padStart(8, "0")}`;
  const held = i % 20 === 19;
  const created = {
    upstream: "bench", tool: held ? "hold_me" : "echo", name: held ? "hold_me" : "echo",
    args: { n: i, text: "hello from the benchmark" }, args_digest: hex64(i, "a"), client: { name: "claude-ai", version: "0.1.0" },
  };
  if (!held) {
    const assessment = { score: 10, classification: "low", reasons: ["upstream declares the tool read-only (readOnlyHint)"], evaluator: "rules" };
    yield ["request.admitted", ref, { ...created, assessment, threshold: 70 }];
    yield ["execution.finished", ref, { outcome: "ok", result_sha256: hex64(i, "b") }];
    return;
  }
  yield ["request.created", ref, created];
  yield ["request.assessed", ref, { score: 80, classification: "high", reasons: ["tool has no annotations: treated as state-changing until a policy says otherwise"], evaluator: "rules" }];
  yield ["request.held", ref, { deadline: "2026-11-25T12:00:00.000Z", threshold: 70 }];
  yield ["decision.recorded", ref, { decision: "approved", source: "human", reviewer: "bench" }];
  yield ["execution.started", ref, {}];
  yield ["execution.finished", ref, { outcome: "ok", result: { content: [{ type: "text", text: `hold_me {"n":${i}}` }] } }];
}

/** Appends whole calls' records until at least `count` records are written; commits every `groupSize` records. */
async function appendCalls(ledger, count, groupSize) {
  const { records } = await appendWholeCalls(ledger, (written) => written < count, groupSize);
  return records;
}

/** Appends the records of `calls` whole calls; commits every `groupSize` records. */
async function appendCallCount(ledger, calls, groupSize) {
  return appendWholeCalls(ledger, (_written, i) => i < calls, groupSize);
}

async function appendWholeCalls(ledger, more, groupSize) {
  let written = 0;
  let sinceCommit = 0;
  let i = 0;
  for (; more(written, i); i++) {
    for (const [type, ref, data] of callRecords(i)) {
      ledger.append(type, ref, data, "batch");
      written += 1;
      sinceCommit += 1;
    }
    if (sinceCommit >= groupSize) {
      await ledger.commit();
      sinceCommit = 0;
    }
  }
  await ledger.commit();
  return { records: written, calls: i };
}

/** The floor for any JSONL replay: read the files in 1 MiB chunks and JSON.parse every line. */
function parseOnly(dir) {
  let count = 0;
  for (const name of readdirSync(dir).filter((file) => file.endsWith(".jsonl"))) count += parseFile(join(dir, name));
  return count;
}

function parseFile(path) {
  const fd = openSync(path, "r");
  const chunk = Buffer.allocUnsafe(1 << 20);
  let carry = "";
  let count = 0;
  try {
    for (;;) {
      const read = readSync(fd, chunk, 0, chunk.length, null);
      if (read === 0) break;
      const lines = (carry + chunk.toString("utf8", 0, read)).split("\n");
      carry = lines.pop() ?? "";
      for (const line of lines) if (JSON.parse(line).seq >= 0) count += 1;
    }
  } finally {
    closeSync(fd);
  }
  return count;
}

function runVerify(ctx, dataDir) {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(NODE, [BIN, "audit", "verify", "--data-dir", dataDir, "--instance", "bench"], { env: ctx.env, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (chunk) => (output += chunk));
    child.stderr.on("data", (chunk) => (output += chunk));
    const timer = setTimeout(() => child.kill("SIGKILL"), 300_000);
    child.once("exit", (code) => {
      clearTimeout(timer);
      if (code === 0 && output.includes("hash chain intact")) resolve(performance.now() - started);
      else reject(new Error(`audit verify exited ${code}: ${output.trim()}`));
    });
  });
}

function openEngine(ctx, path) {
  const { LocalEngine, createRulesEvaluator } = ctx.lib;
  return LocalEngine.open({
    ledgerPath: path,
    instance: "bench",
    evaluator: createRulesEvaluator({ threshold: 70, overrides: {} }),
    threshold: 70,
    reviewTimeoutMs: 3_600_000,
    executor: async () => ({ content: [] }),
    version: "bench",
  });
}

/**
 * 4. Ledger: append throughput with group commit against a plain JSONL writer doing the same I/O; start-up (engine
 * open in process, and spawn → initialize of the CLI) with three sizes of history, against an empty data dir — flat,
 * since start-up reads only the last segment — and `audit verify`, which reads everything.
 */
export async function benchLedger(ctx) {
  const { Ledger } = ctx.lib;
  const { appendRecords, group, replaySizes, replayRepeats } = ctx.counts.ledger;
  const rows = [];

  // append: hash-chained ledger vs plain JSONL, same records, one fdatasync per `group` records
  const appendDir = freshDataDir(ctx.workDir, "append");
  const ledger = Ledger.open(join(appendDir, "ledger.jsonl"), { instance: "bench" });
  let started = performance.now();
  const appended = await appendCalls(ledger, appendRecords, group);
  const ledgerRate = (appended / (performance.now() - started)) * 1000;
  await ledger.close();
  const plainFd = openSync(join(appendDir, "plain.jsonl"), "a", 0o600);
  started = performance.now();
  let plain = 0;
  for (let i = 0, since = 0; plain < appendRecords; i++) {
    for (const [type, ref, data] of callRecords(i)) {
      writeSync(plainFd, `${JSON.stringify({ v: 1, seq: plain, ts: new Date().toISOString(), type, ref, data })}\n`);
      plain += 1;
      since += 1;
    }
    if (since >= group) {
      fdatasyncSync(plainFd);
      since = 0;
    }
  }
  fdatasyncSync(plainFd);
  const plainRate = (plain / (performance.now() - started)) * 1000;
  closeSync(plainFd);
  ctx.log(`append: ${appended} records, ledger ${formatRate(ledgerRate)}, plain JSONL ${formatRate(plainRate)} (fdatasync every ${group})`);
  rows.push({ section: "4 ledger", measure: `append, group commit (fsync / ${group} records)`, value: formatRate(ledgerRate, " rec/s"), baseline: `${formatRate(plainRate, " rec/s")} plain JSONL`, ratio: ledgerRate / plainRate, target: "info" });
  const autoRecords = [...callRecords(0)].length; // records per auto-approved call
  rows.push({ section: "4 ledger", measure: "  = auto-approved calls/s the ledger sustains", value: formatRate(ledgerRate / autoRecords), baseline: "—", target: "info" });

  // start-up and verify with a history of each size (in calls: ~2.2 records per call)
  const startup = {};
  const emptyDir = freshDataDir(ctx.workDir, "startup-empty");
  const initialize = async (dataDir) => {
    const server = spawnGateway(ctx, dataDir, false);
    try {
      return (await server.initialize()) - server.spawnedAt;
    } finally {
      await server.close();
    }
  };
  const openTimes = async (path) => {
    const t = performance.now();
    const engine = openEngine(ctx, path);
    const ms = performance.now() - t;
    await engine.close();
    const ledger = Ledger.open(path, { instance: "bench", onRecord: () => {} });
    const read = ledger.recordsRead;
    await ledger.close();
    return { ms, read };
  };
  const baseline = { init: [], open: [] };
  for (let r = 0; r < replayRepeats; r++) {
    baseline.init.push(await initialize(emptyDir));
    baseline.open.push((await openTimes(join(freshDataDir(ctx.workDir, "startup-empty-open"), "ledgers", "bench"))).ms);
  }
  const base = { init: median(baseline.init), open: median(baseline.open) };
  for (const calls of replaySizes) {
    const dataDir = freshDataDir(ctx.workDir, `replay-${calls}`);
    const path = join(dataDir, "ledgers", "bench");
    const generator = Ledger.open(path, { instance: "bench" });
    const { records } = await appendCallCount(generator, calls, 10_000);
    await generator.close();
    const bytes = readdirSync(path).reduce((sum, name) => sum + statSync(join(path, name)).size, 0);
    const open = [];
    const init = [];
    let read = 0;
    for (let r = 0; r < replayRepeats; r++) {
      const times = await openTimes(path);
      open.push(times.ms);
      read = times.read;
      init.push(await initialize(dataDir));
    }
    const label = calls >= 1_000_000 ? `${calls / 1_000_000}M` : `${calls / 1000}k`;
    // audit verify reads every segment: linear in history, so it is timed up to 100k calls only (runtime)
    const verifyMs = calls <= 100_000 ? await runVerify(ctx, dataDir) : undefined;
    const floorStarted = performance.now();
    if (calls <= 100_000) parseOnly(path);
    const floorMs = performance.now() - floorStarted;
    const m = { open: median(open), init: median(init) };
    startup[calls] = m;
    ctx.log(`history ${label} calls: ${records + 1} records, ${formatMB(bytes)}; engine open ${formatMs(m.open)} (${read} records read), spawn → initialize ${formatMs(m.init)}${verifyMs !== undefined ? `, audit verify ${formatMs(verifyMs)}` : ""}`);
    rows.push({ section: "4 ledger", measure: `start-up replay, ${label} calls of history (${formatMB(bytes)})`, value: `${formatMs(m.open)}, ${read} rec read`, baseline: `${formatMs(base.open)} empty ledger`, ratio: m.open / base.open, target: "info" });
    const isBudget = calls === ctx.counts.ledger.budgetSize;
    rows.push({
      section: "4 ledger", measure: `spawn → initialize, ${label} calls of history`, value: formatMs(m.init), baseline: `${formatMs(base.init)} empty data dir`, ratio: m.init / base.init,
      target: isBudget ? "≤ 1.30x" : "info", ...(isBudget ? { pass: m.init / base.init <= 1.3 } : {}),
    });
    if (verifyMs !== undefined) rows.push({ section: "4 ledger", measure: `audit verify (CLI), ${label} calls`, value: formatMs(verifyMs), baseline: `${formatMs(floorMs)} read+JSON.parse`, ratio: verifyMs / floorMs, target: "info" });
  }
  const sizes = [...replaySizes].sort((a, b) => a - b);
  const low = sizes[0];
  const top = sizes[sizes.length - 1];
  const growth = startup[top].open / startup[low].open;
  rows.push({
    section: "4 ledger", measure: `start-up replay, ${top / 1000}k vs ${low / 1000}k calls`, value: formatMs(startup[top].open),
    baseline: formatMs(startup[low].open), ratio: growth, target: "≤ 1.30x (flat)", pass: growth <= 1.3,
  });
  return rows;
}
