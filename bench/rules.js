// The risk policy's cost per call: 1,000 rules against an empty policy, measured in the same run.
// Self-contained: `npm run build && node bench/rules.js [--smoke]`. `benchRules()` is exported for bench/run.js.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { createRiskEvaluator, compilePolicy, createSelfProtection } from "../dist/index.js";

/** 1,000 rules shaped like real policies: most name a tool exactly, some use globs, some match any tool. */
export function thousandRules({ exact = 600, globs = 300, anyTool = 100 } = {}) {
  const rules = [];
  for (let i = 0; i < exact; i++) {
    rules.push({ id: `exact-${i}`, tool: `tool_${i}`, args: { amount: { gt: 1000 + i }, "payee.iban": { regex: "^DE" } }, effect: i % 3 === 0 ? "review" : 60 });
  }
  for (let i = 0; i < globs; i++) rules.push({ id: `glob-${i}`, tool: `svc${i}_*`, args: { env: { in: ["prod", "live"] } }, effect: "deny" });
  for (let i = 0; i < anyTool; i++) rules.push({ id: `any-${i}`, upstream: `up_${i}`, args: { "items[*].price": { gte: 500 } }, effect: 80 });
  return rules;
}

/** Globs by suffix (`*_delete`) and upstream globs: indexed too. */
export function thousandGlobRules() {
  const rules = [];
  for (let i = 0; i < 900; i++) rules.push({ id: `suffix-${i}`, tool: `*_op${i}`, args: { env: { in: ["prod", "live"] } }, effect: "deny" });
  for (let i = 0; i < 100; i++) rules.push({ id: `upglob-${i}`, upstream: `up_${i}*`, args: { "items[*].price": { gte: 500 } }, effect: 80 });
  return rules;
}

/** The index cannot help: infix globs (`*op12*`) are tested on every call. */
export function thousandUnindexableRules() {
  const rules = [];
  for (let i = 0; i < 1000; i++) rules.push({ id: `infix-${i}`, tool: `*op${i}x*`, args: { env: { in: ["prod", "live"] } }, effect: "deny" });
  return rules;
}

/** Calls that hit exact rules, glob rules, any-tool rules, and nothing at all, in turn. */
function makeCalls() {
  const args = { amount: 2500, payee: { iban: "DE89370400440532013000", name: "ACME" }, env: "prod", items: [{ price: 10 }, { price: 900 }] };
  const calls = [];
  for (let i = 0; i < 64; i++) {
    const kind = i % 4;
    const tool = kind === 0 ? `tool_${i * 7}` : kind === 1 ? `svc${i * 3}_deploy` : kind === 2 ? "read_file" : "unmatched_tool";
    const upstream = kind === 2 ? `up_${i}` : "main";
    calls.push({ upstream, tool, name: tool, args, annotations: { readOnlyHint: kind === 2 } });
  }
  return calls;
}

/**
 * Median µs per call for each case. Rounds are interleaved across cases (a, b, c, a, b, c, …) so that JIT warm-up and
 * noise from other processes on a shared machine fall on every case alike.
 */
function measureAll(cases, { rounds, perRound, warmup }) {
  for (const { evaluate, calls } of cases) for (let i = 0; i < warmup; i++) evaluate(calls[i % calls.length]);
  const samples = cases.map(() => []);
  for (let round = 0; round < rounds; round++) {
    cases.forEach(({ evaluate, calls }, k) => {
      const start = process.hrtime.bigint();
      for (let i = 0; i < perRound; i++) evaluate(calls[i % calls.length]);
      samples[k].push(Number(process.hrtime.bigint() - start) / perRound / 1000);
    });
  }
  return samples.map((list) => list.sort((a, b) => a - b)[Math.floor(list.length / 2)]);
}

const us = (value) => `${value < 10 ? value.toFixed(2) : value.toFixed(1)} µs`;

/** Runs the measurement and returns rows of [case, µs per call, delta vs baseline]. */
export function benchRules({ smoke = false } = {}) {
  const counts = smoke ? { rounds: 1, perRound: 500, warmup: 100 } : { rounds: 7, perRound: 20_000, warmup: 20_000 };
  const calls = makeCalls();
  const evaluatorFor = (rules, extra = {}) => createRiskEvaluator({ policy: compilePolicy({ rules }), ...extra });
  const dir = mkdtempSync(join(tmpdir(), "atlas-bench-rules-"));
  try {
    const selfProtection = createSelfProtection({ paths: [{ path: join(dir, "data"), label: "data dir" }, { path: join(dir, "atlas.json"), label: "config" }], home: dir, cwds: [dir] });
    const withPaths = calls.map((call, i) => ({ ...call, args: { ...call.args, path: `${dir}/work/file-${i}.txt`, command: "ls -la ~/projects && git status" } }));
    const cases = [
      ["empty policy (baseline)", { evaluate: evaluatorFor([]), calls }],
      ["1,000 rules (600 exact tool names, 300 globs, 100 any-tool)", { evaluate: evaluatorFor(thousandRules()), calls }],
      ["1,000 glob rules (900 '*_opN' tool globs, 100 'up_N*' upstream globs)", { evaluate: evaluatorFor(thousandGlobRules()), calls }],
      ["1,000 infix globs ('*opNx*': not indexable, the worst case)", { evaluate: evaluatorFor(thousandUnindexableRules()), calls }],
      ["1,000 rules + self-protection (a path and a shell command per call)", { evaluate: evaluatorFor(thousandRules(), { selfProtection }), calls: withPaths }],
    ];
    const medians = measureAll(cases.map(([, item]) => item), counts);
    return cases.map(([label], k) => [label, medians[k], medians[k] - medians[0]]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const smoke = process.argv.includes("--smoke") || process.env.ATLAS_BENCH_SMOKE === "1";
  const rows = benchRules({ smoke });
  const width = Math.max(...rows.map(([label]) => label.length));
  console.log(`risk policy: cost per call (median of ${smoke ? 1 : 7} interleaved rounds${smoke ? ", smoke counts" : " of 20,000 calls"}), Node ${process.version}`);
  for (const [label, value, delta] of rows) console.log(`  ${label.padEnd(width)}  ${us(value).padStart(9)}${delta ? `  (${delta >= 0 ? "+" : "-"}${us(Math.abs(delta))} vs baseline)` : ""}`);
}
