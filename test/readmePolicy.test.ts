import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../src/config.js";
import type { AnnotationHints } from "../src/risk/policy.js";
import { createRulesEvaluator, routeAssessment, type Assessment } from "../src/risk/assess.js";

// The README's policy examples are documentation users copy: they must load and route as the prose says.
const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");
const policyStart = readme.indexOf("## Risk policy");
const section = readme.slice(policyStart, readme.indexOf("\n## ", policyStart));
const examples = [...section.matchAll(/```json\n([\s\S]*?)```/g)].map((match) => JSON.parse(match[1]!) as Record<string, unknown>);
const env = { MODAL_KEY: "k", MODAL_SECRET: "s", OPENAI_API_KEY: "sk-x" };

function routerFor(example: Record<string, unknown>) {
  const config = loadConfig({ env, userConfig: { dataDir: "/tmp/atlas-readme", ...example } });
  const evaluate = createRulesEvaluator(config.risk);
  return (upstream: string, tool: string, args: Record<string, unknown>, annotations?: AnnotationHints) => {
    const assessment = evaluate({ upstream, tool, name: `${upstream}__${tool}`, args, ...(annotations ? { annotations } : {}) }) as Assessment;
    return `${routeAssessment(assessment, config.risk.threshold)} ${(assessment.rules ?? []).map((rule) => rule.id).join(",")}`.trim();
  };
}

describe("README JSON", () => {
  it("every json code block parses (users paste them into their client and config files)", () => {
    const blocks = [...readme.matchAll(/```json\n([\s\S]*?)```/g)].map((match) => match[1]!);
    expect(blocks.length).toBeGreaterThan(3);
    for (const block of blocks) expect(() => JSON.parse(block), block).not.toThrow();
  });
});

describe("README risk policy examples", () => {
  it("has the payments, filesystem and evaluator examples, and each loads", () => {
    expect(examples).toHaveLength(3);
    for (const example of examples) expect(() => loadConfig({ env, userConfig: { dataDir: "/tmp/atlas-readme", ...example } })).not.toThrow();
  });

  it("payments policy routes as described", () => {
    const route = routerFor(examples[0]!);
    const known = { iban: "DE89370400440532013000" };
    expect(route("bank", "transfer", { amount: 20_000, payee: known })).toBe("deny over-mandate");
    expect(route("bank", "transfer", { amount: 200, payee: known })).toBe("run small-known-payees");
    expect(route("bank", "transfer", { amount: 200, payee: { iban: "DE44500105175407324931" } })).toBe("hold");
    expect(route("bank", "transfer", { amount: 200, payee: { iban: "FR7630006000011234567890189" } })).toBe("hold foreign-accounts");
    expect(route("bank", "add_payee", { iban: "DE1" })).toBe("hold new-payees");
    expect(route("bank", "get_balance", {})).toBe("run lookups");
  });

  it("filesystem policy routes as described", () => {
    const route = routerFor(examples[1]!);
    const read = { readOnlyHint: true };
    expect(route("fs", "read_text_file", { path: "/home/ana/project/src/a.ts" }, read)).toBe("run project-reads");
    expect(route("fs", "read_text_file", { path: "/home/ana/project/.env" }, read)).toBe("hold secrets,project-reads");
    expect(route("fs", "read_text_file", { path: "/etc/passwd" }, read)).toBe("hold outside-project,project-reads");
    expect(route("fs", "delete_file", { path: "/home/ana/project/a" })).toBe("deny no-deletes");
    expect(route("fs", "write_file", { path: "/home/ana/project/dist/a.js" }, { readOnlyHint: false, destructiveHint: true })).toBe("run generated");
    expect(route("fs", "write_file", { path: "/home/ana/project/src/a.ts" }, { readOnlyHint: false, destructiveHint: true })).toBe("hold");
  });
});
