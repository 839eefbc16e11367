import { describe, expect, it } from "vitest";
import { compilePolicy, parseJsonPath, resolveJsonPath, type PolicyCall, type PolicyRule, type PolicySource } from "../../src/risk/policy.js";

const call = (overrides: Partial<PolicyCall> = {}): PolicyCall => ({
  upstream: "payments",
  tool: "transfer",
  name: "transfer",
  args: {
    amount: 1500,
    amount_text: "2500.50",
    currency: "EUR",
    payee: { iban: "DE89370400440532013000", name: "ACME GmbH", tags: ["new", "vendor"] },
    items: [{ sku: "a", price: 10 }, { sku: "b", price: 900 }],
    "key.with.dots": true,
    note: null,
  },
  annotations: { readOnlyHint: false, destructiveHint: true },
  ...overrides,
});

const fires = (rule: Omit<PolicyRule, "effect">, input: PolicyCall = call()) =>
  compilePolicy({ rules: [{ ...rule, effect: "review" }] }).evaluate(input).fired.length === 1;

describe("argument operators", () => {
  const cases: [string, PolicyRule["args"], boolean][] = [
    ["equals string", { currency: { equals: "EUR" } }, true],
    ["equals mismatch", { currency: { equals: "USD" } }, false],
    ["equals object (deep)", { "items[0]": { equals: { sku: "a", price: 10 } } }, true],
    ["equals null", { note: { equals: null } }, true],
    ["in", { currency: { in: ["EUR", "GBP"] } }, true],
    ["in miss", { currency: { in: ["USD"] } }, false],
    ["notIn", { "payee.iban": { notIn: ["GB00"] } }, true],
    ["notIn hit", { currency: { notIn: ["EUR"] } }, false],
    ["regex", { "payee.iban": { regex: "^DE\\d{20}$" } }, true],
    ["regex with flags", { "payee.name": { regex: "/acme/i" } }, true],
    ["regex without flag is case-sensitive", { "payee.name": { regex: "acme" } }, false],
    ["regex ignores non-strings", { amount: { regex: "1500" } }, false],
    ["gt", { amount: { gt: 1000 } }, true],
    ["gt boundary", { amount: { gt: 1500 } }, false],
    ["gte boundary", { amount: { gte: 1500 } }, true],
    ["lt", { amount: { lt: 1000 } }, false],
    ["lte boundary", { amount: { lte: 1500 } }, true],
    ["numeric string compares as a number", { amount_text: { gt: 2500 } }, true],
    ["non-numeric string never compares", { currency: { gt: 0 } }, false],
    ["range: all operators must hold", { amount: { gte: 1000, lt: 2000 } }, true],
    ["range miss", { amount: { gte: 1000, lt: 1200 } }, false],
    ["exists", { "payee.iban": { exists: true } }, true],
    ["exists on null value", { note: { exists: true } }, true],
    ["exists false on missing", { "payee.bic": { exists: false } }, true],
    ["exists false on present", { currency: { exists: false } }, false],
  ];
  it.each(cases)("%s", (_label, args, expected) => {
    expect(fires({ args: args! })).toBe(expected);
  });
});

describe("JSON paths", () => {
  const cases: [string, PolicyRule["args"], boolean][] = [
    ["$. prefix", { "$.payee.name": { equals: "ACME GmbH" } }, true],
    ["nested without $", { "payee.name": { equals: "ACME GmbH" } }, true],
    ["array index", { "items[1].price": { equals: 900 } }, true],
    ["dotted index", { "items.1.sku": { equals: "b" } }, true],
    ["wildcard: any element", { "items[*].price": { gt: 500 } }, true],
    ["wildcard: none matches", { "items[*].price": { gt: 1000 } }, false],
    ["wildcard over object values", { "payee.*": { equals: "ACME GmbH" } }, true],
    ["array element equals", { "payee.tags[*]": { equals: "vendor" } }, true],
    ["quoted key with dots", { '["key.with.dots"]': { equals: true } }, true],
    ["whole-args path $", { $: { exists: true } }, true],
    ["missing nested arg", { "payee.address.city": { equals: "Berlin" } }, false],
    ["index out of range", { "items[5].price": { exists: true } }, false],
    ["path through a scalar", { "currency.code": { exists: true } }, false],
    ["prototype keys are not arguments", { "payee.constructor": { exists: true } }, false],
  ];
  it.each(cases)("%s", (_label, args, expected) => {
    expect(fires({ args: args! })).toBe(expected);
  });

  it.each(["", "a..b", "a[", "a[x]", "$a", "a]b"])("rejects %j", (path) => {
    expect(() => parseJsonPath(path)).toThrow();
  });

  it("resolves every value a wildcard reaches", () => {
    expect(resolveJsonPath(call().args, parseJsonPath("items[*].sku"))).toEqual(["a", "b"]);
  });
});

describe("missing arguments", () => {
  const empty = call({ args: {} });
  it.each([
    ["equals", { amount: { equals: 1 } }],
    ["in", { amount: { in: [1] } }],
    ["notIn", { amount: { notIn: [1] } }],
    ["regex", { amount: { regex: "." } }],
    ["gt", { amount: { gt: 0 } }],
    ["lte", { amount: { lte: 0 } }],
    ["exists", { amount: { exists: true } }],
  ] as [string, PolicyRule["args"]][])("%s matches nothing when the argument is missing", (_label, args) => {
    expect(fires({ args: args! }, empty)).toBe(false);
  });
  it("exists:false matches a missing argument", () => {
    expect(fires({ args: { amount: { exists: false } } }, empty)).toBe(true);
  });
});

describe("tool, upstream and annotation matching", () => {
  const many = call({ upstream: "bank", tool: "transfer", name: "bank__transfer" });
  const cases: [string, Omit<PolicyRule, "effect">, PolicyCall, boolean][] = [
    ["exact tool", { tool: "transfer" }, call(), true],
    ["exact tool mismatch", { tool: "transfer_funds" }, call(), false],
    ["glob *", { tool: "trans*" }, call(), true],
    ["glob ?", { tool: "transfe?" }, call(), true],
    ["glob is anchored", { tool: "ransfer*" }, call(), false],
    ["suffix glob", { tool: "*fer" }, call(), true],
    ["suffix glob mismatch", { tool: "*_delete" }, call(), false],
    ["infix glob", { tool: "*ansf*" }, call(), true],
    ["infix glob mismatch", { tool: "*zzz*" }, call(), false],
    ["a glob also sees upstream__tool", { tool: "*pay*" }, call(), true],
    ["catch-all glob", { tool: "*" }, call(), true],
    ["glob with ? in the middle", { tool: "tr?nsfer" }, call(), true],
    ["glob chars are literal otherwise", { tool: "trans.er" }, call(), false],
    ["list of patterns", { tool: ["read_*", "transfer"] }, call(), true],
    ["exposed namespaced name", { tool: "bank__transfer" }, many, true],
    ["upstream's own name under a namespace", { tool: "transfer" }, many, true],
    ["upstream__tool even with one upstream", { tool: "payments__transfer" }, call(), true],
    ["upstream exact", { upstream: "payments" }, call(), true],
    ["upstream glob", { upstream: "pay*" }, call(), true],
    ["upstream mismatch", { upstream: "files" }, call(), false],
    ["upstream suffix glob", { upstream: "*ments" }, call(), true],
    ["upstream glob mismatch", { upstream: "file*" }, call(), false],
    ["annotation equal", { annotations: { destructiveHint: true } }, call(), true],
    ["annotation differs", { annotations: { readOnlyHint: true } }, call(), false],
    ["undeclared annotation never matches", { annotations: { openWorldHint: false } }, call(), false],
    ["no annotations at all", { annotations: { readOnlyHint: false } }, call({ annotations: undefined as never }), false],
    ["all constraints must hold", { tool: "transfer", upstream: "files" }, call(), false],
    ["empty rule matches every call", {}, call(), true],
  ];
  it.each(cases)("%s", (_label, rule, input, expected) => {
    expect(fires(rule, input)).toBe(expected);
  });
});

describe("precedence", () => {
  const evaluate = (source: PolicySource, input: PolicyCall = call()) => compilePolicy(source).evaluate(input);
  const cases: [string, PolicyRule["effect"][], string | undefined, number | undefined][] = [
    ["deny beats review beats allow", ["allow", "review", "deny"], "deny", undefined],
    ["deny beats review (any order)", ["deny", "review"], "deny", undefined],
    ["review beats allow", ["review", "allow"], "review", undefined],
    ["review beats allow (reversed)", ["allow", "review"], "review", undefined],
    ["allow alone", ["allow"], "allow", undefined],
    ["scores: the highest wins", [20, 85, 40], undefined, 85],
    ["a verdict and a score are both reported", [30, "allow"], "allow", 30],
    ["no rule: neither", [], undefined, undefined],
  ];
  it.each(cases)("%s", (_label, effects, verdict, score) => {
    const result = evaluate({ rules: effects.map((effect, i) => ({ id: `r${i}`, tool: "transfer", effect })) });
    expect(result.verdict).toBe(verdict);
    expect(result.score).toBe(score);
    expect(result.fired.map((rule) => rule.id)).toEqual(effects.map((_, i) => `r${i}`));
  });

  it("reports every fired rule in config order, whether indexed by exact name or matched by glob", () => {
    const result = evaluate({
      rules: [
        { id: "glob", tool: "trans*", effect: 10 },
        { id: "other", tool: "read_file", effect: "deny" },
        { id: "exact", tool: "transfer", effect: 50 },
        { id: "any", effect: "allow" },
        { id: "both", tool: ["transfer", "x*"], effect: 20 },
        { id: "suffix", tool: "*fer", effect: 5 },
        { id: "exact-and-catch-all", tool: ["transfer", "*"], effect: 6 },
        { id: "upstream-glob", upstream: "pay*", effect: 7 },
        { id: "upstream-exact", upstream: "payments", effect: 8 },
        { id: "infix", tool: "*zzz*", effect: 90 },
        { id: "other-upstream", upstream: "files", effect: 90 },
      ],
    });
    expect(result.fired.map((rule) => rule.id)).toEqual(["glob", "exact", "any", "both", "suffix", "exact-and-catch-all", "upstream-glob", "upstream-exact"]);
    expect(result.score).toBe(50);
  });

  it("describes a rule without a reason from what it matches", () => {
    const [fired] = evaluate({ rules: [{ tool: "transfer", args: { amount: { gt: 1000 } }, effect: "review" }] }).fired;
    expect(fired).toEqual({ id: "rules[0]", effect: "review", reason: "tool transfer, $.amount > 1000" });
  });
});

describe("legacy overrides", () => {
  const cases: [string, Record<string, number>, number | undefined, string | undefined][] = [
    ["exact", { transfer: 15 }, 15, 'overrides["transfer"]'],
    ["exact beats glob", { "*": 90, transfer: 15 }, 15, 'overrides["transfer"]'],
    ["longest glob wins", { "*": 90, "trans*": 20 }, 20, 'overrides["trans*"]'],
    ["no match", { read_file: 5 }, undefined, undefined],
  ];
  it.each(cases)("%s", (_label, overrides, score, id) => {
    const result = compilePolicy({ overrides }).evaluate(call());
    expect(result.score).toBe(score);
    expect(result.fired[0]?.id).toBe(id);
  });
  it("joins score rules: the highest wins", () => {
    expect(compilePolicy({ overrides: { transfer: 15 }, rules: [{ tool: "transfer", effect: 60 }] }).evaluate(call()).score).toBe(60);
  });
});
