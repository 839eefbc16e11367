import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { main } from "../../src/cli/main.js";
import { loadConfig } from "../../src/config.js";
import { ConfigError } from "../../src/errors.js";
import { compilePolicy } from "../../src/risk/policy.js";

const dir = mkdtempSync(join(tmpdir(), "atlas-riskcfg-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const load = (risk: unknown, env: NodeJS.ProcessEnv = {}) => loadConfig({ env, userConfig: { dataDir: dir, risk } });

function problems(risk: unknown, env: NodeJS.ProcessEnv = {}): string[] {
  try {
    load(risk, env);
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  return [];
}

describe("risk config", () => {
  it("defaults: threshold 70, no rules, no evaluators, overrides kept", () => {
    const { risk } = load({ overrides: { "read_*": 10 } });
    expect(risk).toMatchObject({ threshold: 70, rules: [], evaluators: [], protectedPaths: [], overrides: { "read_*": 10 } });
  });

  it("expands a scalar condition to equals and a single pattern to a list", () => {
    const { risk } = load({ rules: [{ tool: "transfer", args: { currency: "EUR", "payee.iban": { regex: "^DE" } }, effect: 80 }] });
    expect(risk.rules[0]).toEqual({ tool: ["transfer"], args: { currency: { equals: "EUR" }, "payee.iban": { regex: "^DE" } }, effect: 80 });
    expect(compilePolicy(risk).evaluate({ upstream: "u", tool: "transfer", name: "transfer", args: { currency: "EUR", payee: { iban: "DE1" } } }).score).toBe(80);
  });

  const bad: [string, unknown, string][] = [
    ["unknown effect", { rules: [{ effect: "block" }] }, 'risk.rules.0.effect: expected "allow", "deny", "review" or a score from 0 to 100, got "block"'],
    ["missing effect", { rules: [{ tool: "x" }] }, "risk.rules.0.effect: every rule needs an effect"],
    ["score out of range", { rules: [{ effect: 101 }] }, "risk.rules.0.effect: expected"],
    ["bad tool pattern", { rules: [{ tool: 5, effect: 1 }] }, "risk.rules.0.tool: expected a name or glob, or a list of them"],
    ["unknown operator", { rules: [{ args: { a: { gtt: 1 } }, effect: 1 }] }, "risk.rules.0.args.a: unknown operator 'gtt'"],
    ["empty condition", { rules: [{ args: { a: {} }, effect: 1 }] }, "risk.rules.0.args.a: a condition needs at least one operator"],
    ["non-numeric bound", { rules: [{ args: { a: { gt: "5" } }, effect: 1 }] }, "risk.rules.0.args.a.gt: Invalid input: expected number"],
    ["bad JSON path", { rules: [{ args: { "a..b": 1 }, effect: 1 }] }, "risk.rules.0.args.a..b: invalid JSON path: empty key"],
    ["bad regex", { rules: [{ args: { a: { regex: "([a-z" } }, effect: 1 }] }, "risk.rules.0.args.a.regex: invalid regular expression"],
    ["stateful regex flag", { rules: [{ args: { a: { regex: "/x/g" } }, effect: 1 }] }, "risk.rules.0.args.a.regex: invalid regular expression: flag 'g' is not allowed"],
    ["unknown rule key", { rules: [{ effect: 1, when: {} }] }, "risk.rules.0: Unrecognized key"],
    ["duplicate ids", { rules: [{ id: "a", effect: 1 }, { id: "a", effect: 2 }] }, "risk.rules.1.id: duplicate rule id 'a' (also rules.0)"],
    ["unknown evaluator type", { evaluators: [{ type: "grpc" }] }, "risk.evaluators.0.type: Invalid discriminator value"],
    ["evaluator url", { evaluators: [{ type: "http", url: "ftp://x" }] }, "risk.evaluators.0.url: url must be an http(s) URL"],
    ["evaluator timeout", { evaluators: [{ type: "http", url: "http://x", timeout: "soon" }] }, "risk.evaluators.0.timeout: expected a duration"],
    ["openai needs a model", { evaluators: [{ type: "openai", baseUrl: "http://x/v1" }] }, "risk.evaluators.0.model:"],
  ];
  it.each(bad)("%s: one path: problem line", (_label, risk, expected) => {
    const lines = problems(risk);
    expect(lines.some((line) => line.startsWith(expected)), lines.join("\n")).toBe(true);
  });

  it("takes API keys and headers from the environment, and names a missing variable", () => {
    const evaluators = [{ type: "openai", baseUrl: "http://x/v1", model: "m", apiKey: "${MY_KEY}", headers: { "x-team": "t-${TEAM}" } }];
    const { risk } = load({ evaluators }, { MY_KEY: "sk-secret", TEAM: "42" });
    expect(risk.evaluators[0]).toMatchObject({ apiKey: "sk-secret", headers: { "x-team": "t-42" }, timeout: 10_000, retries: 2, cacheTtl: 60_000 });
    expect(problems({ evaluators }, { TEAM: "1" })).toEqual(["risk.evaluators.0.apiKey: environment variable MY_KEY is not set"]);
  });
});

describe("bad policy config through the CLI", () => {
  it("prints one path: problem line per problem and exits 2", async () => {
    const file = join(dir, "bad.json");
    writeFileSync(file, JSON.stringify({ risk: { rules: [{ tool: "x", effect: "block" }, { args: { amount: { gt: "a lot" } }, effect: "review" }] } }));
    const err: string[] = [];
    const out: string[] = [];
    const code = await main(["policy", "explain", "--tool", "x", "--config", file, "--data-dir", dir], {
      out: (text) => out.push(text),
      err: (text) => err.push(text),
      env: { ATLAS_CONFIG_DIR: join(dir, "user") },
    });
    expect(code).toBe(2);
    expect(out).toEqual([]);
    expect(err).toEqual([
      'atlas-gateway: risk.rules.0.effect: expected "allow", "deny", "review" or a score from 0 to 100, got "block"',
      "atlas-gateway: risk.rules.1.args.amount.gt: Invalid input: expected number, received string",
    ]);
  });
});
