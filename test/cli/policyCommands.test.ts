import { mkdtempSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main } from "../../src/cli/main.js";
import { parseSince } from "../../src/cli/policy.js";
import { instancePaths } from "../../src/dataDir.js";
import { LocalEngine } from "../../src/governance/localEngine.js";
import { createRulesEvaluator } from "../../src/risk/assess.js";
import { pinnableDefinition, ToolPinTable } from "../../src/risk/toolPins.js";

const root = realpathSync(mkdtempSync(join(tmpdir(), "atlas-policy-cmd-")));
const dataDir = join(root, "data");
afterAll(() => rmSync(root, { recursive: true, force: true }));

const READ_ONLY = { readOnlyHint: true };

/** A ledger written under the old policy (no rules): reads run, unannotated transfers are held. */
beforeAll(async () => {
  const pins = new ToolPinTable();
  const engine = LocalEngine.open({
    ledgerPath: instancePaths(dataDir, "main").ledger,
    instance: "main",
    evaluator: createRulesEvaluator({}),
    threshold: 70,
    reviewTimeoutMs: 60_000,
    executor: async () => ({ content: [{ type: "text", text: "ok" }] }),
    version: "test",
    onRecord: (record) => pins.apply(record),
  });
  for (const record of pins.observe("fs", "read_file", pinnableDefinition({ description: "Read a file", inputSchema: { type: "object" }, annotations: READ_ONLY }, "read_file"))) await engine.recordEvent(record.type, record.data);
  const submit = (tool: string, args: Record<string, unknown>, annotations?: typeof READ_ONLY) =>
    engine.submit({ upstream: "fs", tool, name: tool, args, ...(annotations ? { annotations } : {}) });
  await submit("read_file", { path: "app/.env" }, READ_ONLY);
  await submit("read_file", { path: "notes.md" }, READ_ONLY);
  await submit("transfer", { amount: 50, iban: "DE89" });
  await submit("transfer", { amount: 50_000, iban: "DE89" });
  await engine.close();
});

const NEW_POLICY = {
  risk: {
    rules: [
      { id: "no-huge", tool: "transfer", args: { amount: { gt: 10_000 } }, effect: "deny" },
      { id: "small", tool: "transfer", args: { amount: { lte: 100 } }, effect: "allow" },
      { id: "dotenv", tool: "read_file", args: { path: { regex: "\\.env$" } }, effect: "review" },
    ],
  },
};

async function cli(...argv: string[]) {
  const file = join(root, "policy.json");
  writeFileSync(file, JSON.stringify(NEW_POLICY));
  const out: string[] = [];
  const err: string[] = [];
  const code = await main([...argv, "--config", file, "--data-dir", dataDir], { out: (text) => out.push(text), err: (text) => err.push(text), env: { ATLAS_CONFIG_DIR: join(root, "user"), HOME: join(root, "home") } });
  return { code, out: out.join("\n"), err: err.join("\n") };
}

describe("policy explain", () => {
  it("prints score, rules fired and route, with annotations from the pinned definition", async () => {
    const run = await cli("policy", "explain", "--tool", "read_file", "--args", '{"path": "notes.md"}');
    expect(run.code, run.err).toBe(0);
    expect(run.out).toContain("definition: the definition pinned for fs/read_file");
    expect(run.out).toContain("score: 10/100 (low); threshold 70");
    expect(run.out).toContain("route: RUN at once (auto-approved)");
    expect(run.out).toContain("rules fired: none");
  });

  it.each([
    ['{"amount": 20000}', "route: DENY (never runs, no review)", "no-huge  deny  tool transfer, $.amount > 10000"],
    ['{"amount": 20}', "route: RUN at once (auto-approved)", "small  allow  tool transfer, $.amount <= 100"],
    ['{"amount": 500}', "route: HOLD for human review", "reasons:\n  - tool has no annotations"],
  ])("transfer %s", async (args, route, detail) => {
    const run = await cli("policy", "explain", "--tool", "transfer", "--args", args);
    expect(run.out).toContain(route);
    expect(run.out).toContain(detail);
  });

  it("takes annotations from the command line and prints JSON", async () => {
    const run = await cli("policy", "explain", "--tool", "anything", "--annotations", '{"readOnlyHint": true}', "--args", '{"token": "sk-live-abcdefghijklmnopq"}', "--json");
    const parsed = JSON.parse(run.out) as { route: string; assessment: { score: number }; input: { args: Record<string, unknown> } };
    expect(parsed.route).toBe("run");
    expect(parsed.assessment.score).toBe(10);
    expect(parsed.input.args.token).toBe("[masked]");
  });

  it.each([
    [["--args", "{nope"], "--args: not valid JSON"],
    [["--args", "[1]"], "--args: expected a JSON object"],
  ])("rejects bad input %j with exit 2", async (extra, message) => {
    const run = await cli("policy", "explain", "--tool", "x", ...extra);
    expect(run.code).toBe(2);
    expect(run.err).toContain(message);
  });
});

describe("policy replay", () => {
  it("re-scores past calls under the current policy and prints what would change", async () => {
    const run = await cli("policy", "replay");
    expect(run.code, run.err).toBe(0);
    expect(run.out).toContain("re-scored 4 past call(s) under the current policy, threshold 70");
    expect(run.out).toContain("3 would be routed differently: 1 run -> hold, 1 hold -> run, 1 hold -> deny");
    expect(run.out).toMatch(/read_file\s+run 10\s+hold 10 \*\s+dotenv/);
    expect(run.out).toMatch(/transfer\s+hold 80\s+run 80 \*\s+small/);
    expect(run.out).toMatch(/transfer\s+hold 80\s+deny 100 \*\s+no-huge/);
    expect(run.out).not.toMatch(/notes\.md|read_file\s+run 10\s+run 10/);
  });

  it("--all lists unchanged calls too; --json is machine-readable", async () => {
    expect((await cli("policy", "replay", "--all")).out).toMatch(/read_file\s+run 10\s+run 10\s+-/);
    const parsed = JSON.parse((await cli("policy", "replay", "--json")).out) as { calls: number; changed: number; rows: { before: { route: string }; after: { route: string } }[] };
    expect(parsed).toMatchObject({ calls: 4, changed: 3 });
    expect(parsed.rows.map((row) => `${row.before.route}->${row.after.route}`)).toEqual(["run->hold", "hold->run", "hold->deny"]);
  });

  it("--since limits the replay", async () => {
    expect((await cli("policy", "replay", "--since", "2999-01-01")).out).toContain("re-scored 0 past call(s) since 2999-01-01");
    expect((await cli("policy", "replay", "--since", "1h")).out).toContain("re-scored 4 past call(s)");
    const bad = await cli("policy", "replay", "--since", "last tuesday");
    expect(bad.code).toBe(2);
    expect(bad.err).toContain("--since: expected a duration such as 7d or 12h, or a date");
  });

  it("parses --since as a duration back from now or as a date", () => {
    expect(parseSince("2h", Date.UTC(2026, 0, 1, 12)).toISOString()).toBe("2026-01-01T10:00:00.000Z");
    expect(parseSince("2026-11-01").toISOString()).toBe("2026-11-01T00:00:00.000Z");
  });
});
