import { spawn } from "node:child_process";
import { closeSync, fdatasyncSync, mkdirSync, openSync, readSync, statSync, writeSync } from "node:fs";
import { join } from "node:path";
import { BIN, NODE, freshDataDir } from "./lib/setup.js";
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
  let written = 0;
  let sinceCommit = 0;
  for (let i = 0; written < count; i++) {
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
  return written;
}

/** The floor for any JSONL replay: read the file in 1 MiB chunks and JSON.parse every line. */
function parseOnly(path) {
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
 * 4. Ledger: append throughput with group commit against a plain JSONL writer doing the same I/O; replay (what the
 * gateway does at start) and `audit verify` at three sizes, against reading and JSON-parsing the same file.
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

  // replay and verify at each size
  const perRecord = {};
  for (const size of replaySizes) {
    const dataDir = freshDataDir(ctx.workDir, `replay-${size}`);
    const path = join(dataDir, "ledgers", "bench.jsonl");
    mkdirSync(join(dataDir, "ledgers"), { recursive: true });
    const generator = Ledger.open(path, { instance: "bench" });
    const records = 1 + (await appendCalls(generator, size - 1, 10_000));
    await generator.close();
    const bytes = statSync(path).size;
    const floor = [];
    const replay = [];
    const verify = [];
    const repeats = size >= 1_000_000 ? 1 : replayRepeats;
    for (let r = 0; r < repeats; r++) {
      let t = performance.now();
      parseOnly(path);
      floor.push(performance.now() - t);
      t = performance.now();
      const engine = openEngine(ctx, path);
      replay.push(performance.now() - t);
      await engine.close();
      verify.push(await runVerify(ctx, dataDir));
    }
    const m = { floor: median(floor), replay: median(replay), verify: median(verify) };
    perRecord[size] = { replay: m.replay / records, verify: m.verify / records };
    const label = size >= 1_000_000 ? `${size / 1_000_000}M` : `${size / 1000}k`;
    ctx.log(`ledger ${label}: ${records} records, ${formatMB(bytes)}; parse-only ${formatMs(m.floor)}, replay ${formatMs(m.replay)}, audit verify ${formatMs(m.verify)}`);
    const isBudget = size === ctx.counts.ledger.budgetSize;
    rows.push({
      section: "4 ledger", measure: `replay at start, ${label} records (${formatMB(bytes)})`, value: formatMs(m.replay), baseline: `${formatMs(m.floor)} read+JSON.parse`, ratio: m.replay / m.floor,
      target: isBudget ? "< 1 s" : "info", ...(isBudget ? { pass: m.replay < 1000 } : {}),
    });
    rows.push({ section: "4 ledger", measure: `audit verify (CLI), ${label} records`, value: formatMs(m.verify), baseline: `${formatMs(m.floor)} read+JSON.parse`, ratio: m.verify / m.floor, target: "info" });
  }
  const sizes = [...replaySizes].sort((a, b) => a - b);
  const mid = sizes[sizes.length - 2];
  const top = sizes[sizes.length - 1];
  const growth = perRecord[top].replay / perRecord[mid].replay;
  rows.push({
    section: "4 ledger", measure: `replay time per record, ${top / 1000}k vs ${mid / 1000}k`, value: `${(perRecord[top].replay * 1000).toFixed(2)} µs`,
    baseline: `${(perRecord[mid].replay * 1000).toFixed(2)} µs`, ratio: growth, target: "≤ 1.25x (linear)", pass: growth <= 1.25,
  });
  rows.push({
    section: "4 ledger", measure: `verify time per record, ${top / 1000}k vs ${mid / 1000}k`, value: `${(perRecord[top].verify * 1000).toFixed(2)} µs`,
    baseline: `${(perRecord[mid].verify * 1000).toFixed(2)} µs`, ratio: perRecord[top].verify / perRecord[mid].verify, target: "info",
  });
  return rows;
}
