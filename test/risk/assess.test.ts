import { describe, expect, it } from "vitest";
import { assessRisk, classify, createRulesEvaluator, globToRegExp, type RiskInput } from "../../src/risk/assess.js";

const call = (over: Partial<RiskInput>): RiskInput => ({ upstream: "fs", tool: "write_file", name: "write_file", args: {}, ...over });

describe("rules evaluator", () => {
  const evaluate = createRulesEvaluator({ threshold: 70, overrides: {} });
  it.each([
    ["read-only tool", { annotations: { readOnlyHint: true } }, 10, "low"],
    ["destructive tool", { annotations: { readOnlyHint: false, destructiveHint: true } }, 90, "critical"],
    ["destructiveHint unset", { annotations: { readOnlyHint: false } }, 90, "critical"],
    ["state-changing, non-destructive", { annotations: { destructiveHint: false } }, 75, "high"],
    ["no annotations", {}, 80, "high"],
    ["empty annotations", { annotations: {} }, 80, "high"],
    ["readOnlyHint false only", { annotations: { readOnlyHint: false, destructiveHint: false } }, 75, "high"],
  ] as const)("%s scores %d (%s)", (_label, over, score, classification) => {
    const result = evaluate(call(over as Partial<RiskInput>)) as { score: number; classification: string; reasons: string[] };
    expect(result.score).toBe(score);
    expect(result.classification).toBe(classification);
    expect(result.reasons[0]!.length).toBeGreaterThan(10);
  });

  it("holds exactly the default policy's non-read-only tools at threshold 70", () => {
    const low = evaluate(call({ annotations: { readOnlyHint: true } })) as { score: number };
    const high = evaluate(call({ annotations: { destructiveHint: false } })) as { score: number };
    expect(low.score < 70 && high.score >= 70).toBe(true);
  });

  it("uses demo builtin scores (status low, extension high, record change very high)", () => {
    const score = (tool: string, builtin: number) => (evaluate(call({ tool, name: tool, builtinScore: { score: builtin, reason: "r" } })) as { score: number }).score;
    expect(score("check_payment_status", 15)).toBeLessThan(70);
    expect(score("request_payment_extension", 80)).toBeGreaterThanOrEqual(70);
    expect(score("modify_welfare_record", 95)).toBeGreaterThanOrEqual(90);
  });

  it("applies overrides: exact beats glob, longest glob wins, qualified names match", () => {
    const withOverrides = createRulesEvaluator({
      threshold: 70,
      overrides: { "*": 50, "write_*": 85, "write_file": 20, "fs__move_*": 5, "git__*": 30 },
    });
    const score = (over: Partial<RiskInput>) => (withOverrides(call(over)) as { score: number; reasons: string[] });
    expect(score({}).score).toBe(20);
    expect(score({ tool: "write_other", name: "write_other" }).score).toBe(85);
    expect(score({ tool: "move_file", name: "move_file" }).score).toBe(5);
    expect(score({ tool: "delete", name: "delete" }).score).toBe(50);
    expect(score({ upstream: "git", tool: "commit", name: "git__commit" }).reasons[0]).toContain("git__*");
  });
});

describe("assessRisk", () => {
  it("fails closed when the evaluator throws", async () => {
    const result = await assessRisk(() => {
      throw new Error("model endpoint down");
    }, call({}));
    expect(result).toMatchObject({ score: 100, classification: "critical", evaluator: "fail-closed" });
    expect(result.reasons[0]).toContain("model endpoint down");
  });
  it.each([-1, 101, Number.NaN])("fails closed on an out-of-range score %d", async (bad) => {
    const result = await assessRisk(() => ({ score: bad, classification: "low", reasons: [], evaluator: "x" }), call({}));
    expect(result.score).toBe(100);
    expect(result.reasons[0]).toMatch(/outside 0-100/);
  });
});

describe("helpers", () => {
  it.each([[0, "low"], [39, "low"], [40, "medium"], [69, "medium"], [70, "high"], [89, "high"], [90, "critical"], [100, "critical"]] as const)(
    "classify(%d) = %s", (score, label) => expect(classify(score)).toBe(label),
  );
  it("globs match * and ? and treat other characters literally", () => {
    expect(globToRegExp("a.b*").test("a.bcd")).toBe(true);
    expect(globToRegExp("a.b*").test("axbcd")).toBe(false);
    expect(globToRegExp("read_?").test("read_x")).toBe(true);
    expect(globToRegExp("read_?").test("read_xy")).toBe(false);
  });
});
