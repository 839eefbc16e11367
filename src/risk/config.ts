import * as z from "zod";
import { durationSchema } from "../duration.js";
import { compileRegex, parseJsonPath } from "./policy.js";

/** The `risk` part of the one config schema: threshold, policy rules, model evaluators, self-protection paths. */

const isScalar = (value: unknown) => value === null || ["string", "number", "boolean"].includes(typeof value);

/**
 * The policy rules' schema, built when a config has rules (`z.lazy`): most starts have none, and building it is a
 * good part of the config schema's cost at every cold start, before `initialize` is answered (issue 12).
 */
function buildRules() {
  const regex = z.string().superRefine((source, ctx) => {
    try {
      compileRegex(source);
    } catch (error) {
      ctx.addIssue({ code: "custom", message: `invalid regular expression: ${(error as Error).message.replace(/^Invalid regular expression: /, "")}` });
    }
  });

  const OPERATORS = "equals, in, notIn, regex, gt, gte, lt, lte, exists";

  const conditionObject = z
    .strictObject({
      equals: z.json().optional(),
      in: z.array(z.json()).optional(),
      notIn: z.array(z.json()).optional(),
      regex: regex.optional(),
      gt: z.number().optional(),
      gte: z.number().optional(),
      lt: z.number().optional(),
      lte: z.number().optional(),
      exists: z.boolean().optional(),
    }, {
      error: (issue) =>
        issue.code === "unrecognized_keys"
          ? `unknown operator ${issue.keys.map((key) => `'${key}'`).join(", ")} (operators: ${OPERATORS})`
          : issue.code === "invalid_type"
            ? `expected a value (shorthand for equals) or an object of operators: ${OPERATORS}`
            : undefined,
    })
    .refine((condition) => Object.keys(condition).length > 0, {
      message: `a condition needs at least one operator: ${OPERATORS}`,
      when: (payload) => payload.issues.length === 0,
    });

  /** A bare value is shorthand for `{ "equals": value }`. */
  const condition = z.preprocess((value) => (isScalar(value) ? { equals: value } : value), conditionObject);

  const args = z.record(z.string(), condition).superRefine((record, ctx) => {
    for (const path of Object.keys(record)) {
      try {
        parseJsonPath(path);
      } catch (error) {
        ctx.addIssue({ code: "custom", path: [path], message: `invalid JSON path: ${(error as Error).message}` });
      }
    }
  });

  const patterns = z.preprocess(
    (value) => (typeof value === "string" ? [value] : value),
    z.array(z.string().min(1, "a pattern must not be empty"), { error: "expected a name or glob, or a list of them" }).min(1, "expected at least one name or glob"),
  );

  const effect = z.unknown().transform((value, ctx) => {
    if (value === "allow" || value === "deny" || value === "review") return value;
    if (typeof value === "number" && Number.isFinite(value) && value >= 0 && value <= 100) return value;
    ctx.addIssue({
      code: "custom",
      message: value === undefined
        ? `every rule needs an effect: "allow", "deny", "review" or a score from 0 to 100`
        : `expected "allow", "deny", "review" or a score from 0 to 100, got ${JSON.stringify(value)}`,
    });
    return z.NEVER;
  });

  const rule = z.strictObject({
    id: z.string().min(1).max(100).optional(),
    upstream: patterns.optional(),
    tool: patterns.optional(),
    annotations: z
      .strictObject({
        readOnlyHint: z.boolean().optional(),
        destructiveHint: z.boolean().optional(),
        idempotentHint: z.boolean().optional(),
        openWorldHint: z.boolean().optional(),
      })
      .optional(),
    args: args.optional(),
    /** A resource URI or glob: the rule governs `resources/read` (issue 10), with `allow` or `deny` only. */
    resource: patterns.optional(),
    /** A prompt name or glob: the rule governs `prompts/get`, with `allow` or `deny` only. */
    prompt: patterns.optional(),
    effect,
    reason: z.string().max(500).optional(),
    /** Distinct approvers a held call matching this rule needs (the two-person rule). */
    approvals: z.number().int("approvals must be a whole number").min(1).max(10).optional(),
  }).superRefine((item, ctx) => {
    if (item.resource === undefined && item.prompt === undefined) return;
    const what = item.resource !== undefined ? "resource" : "prompt";
    if (item.resource !== undefined && item.prompt !== undefined) ctx.addIssue({ code: "custom", path: ["prompt"], message: "a rule governs resources or prompts, not both" });
    if (item.effect !== "allow" && item.effect !== "deny") ctx.addIssue({ code: "custom", path: ["effect"], message: `a ${what} rule can only "allow" or "deny" (a read cannot be held)` });
    for (const key of ["tool", "annotations", "args", "approvals"] as const) {
      if (item[key] !== undefined) ctx.addIssue({ code: "custom", path: [key], message: `a ${what} rule matches on upstream and ${what} only, not ${key}` });
    }
  });

  const rules = z.array(rule).superRefine((list, ctx) => {
    const seen = new Map<string, number>();
    list.forEach((item, index) => {
      if (item.id === undefined) return;
      const first = seen.get(item.id);
      if (first !== undefined) ctx.addIssue({ code: "custom", path: [index, "id"], message: `duplicate rule id '${item.id}' (also rules.${first})` });
      else seen.set(item.id, index);
    });
  });
  return rules;
}

/** A model evaluator's schema, built when a config has evaluators (as `buildRules`). */
function buildEvaluator() {
  const evaluatorCommon = {
    /** Shown in assessments; defaults to `http:<host>` or `openai:<model>`. */
    name: z.string().min(1).max(60).optional(),
    timeout: durationSchema("duration").default(10_000),
    retries: z.number().int().min(0).max(5).default(2),
    /** How long an answer for an identical call (same upstream, tool, arguments) is reused. 0 turns the cache off. */
    cacheTtl: durationSchema("duration").default(60_000),
    /** Extra request headers; values may name environment variables as `${NAME}`. */
    headers: z.record(z.string(), z.string()).default({}),
  };

  const httpUrl = (what: string) => z.url({ protocol: /^https?$/, error: `${what} must be an http(s) URL` });

  const httpEvaluator = z.strictObject({
    type: z.literal("http"),
    url: httpUrl("url"),
    ...evaluatorCommon,
  });

  const openaiEvaluator = z.strictObject({
    type: z.literal("openai"),
    /** The API base, e.g. https://api.openai.com/v1 or http://localhost:11434/v1 (Ollama); `/chat/completions` is appended. */
    baseUrl: httpUrl("baseUrl"),
    model: z.string().min(1),
    /** Sent as `Authorization: Bearer …`; may be `${OPENAI_API_KEY}`. */
    apiKey: z.string().min(1).optional(),
    ...evaluatorCommon,
  });

  const evaluator = z.discriminatedUnion("type", [httpEvaluator, openaiEvaluator]);
  return evaluator;
}

export type EvaluatorConfig = z.output<ReturnType<typeof buildEvaluator>>;
export type HttpEvaluatorConfig = Extract<EvaluatorConfig, { type: "http" }>;
export type OpenAiEvaluatorConfig = Extract<EvaluatorConfig, { type: "openai" }>;

export const riskConfigSchema = z.strictObject({
  threshold: z.number().min(0).max(101).default(70),
  /** Tool name (exposed or `upstream__tool`) or glob -> fixed score. Kept for compatibility; see `rules`. */
  overrides: z.record(z.string(), z.number().min(0).max(100)).default({}),
  rules: z.lazy(buildRules).default([]),
  evaluators: z.lazy(() => z.array(buildEvaluator())).default([]),
  /** More files or directories that calls must not reach (e.g. the MCP client's config that launches the gateway). */
  protectedPaths: z.array(z.string().min(1)).default([]),
});

export type RiskConfig = z.output<typeof riskConfigSchema>;

/**
 * Replaces `${NAME}` in evaluator API keys and header values with the environment's value, so secrets stay out of
 * config files. Returns one `path: problem` line per variable that is not set.
 */
export function resolveEvaluatorSecrets(risk: RiskConfig, env: NodeJS.ProcessEnv): string[] {
  const problems: string[] = [];
  const expand = (value: string, path: string) =>
    value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_, name: string) => {
      const found = env[name];
      if (found === undefined || found === "") {
        problems.push(`${path}: environment variable ${name} is not set`);
        return "";
      }
      return found;
    });
  risk.evaluators.forEach((item, index) => {
    const base = `risk.evaluators.${index}`;
    if (item.type === "openai" && item.apiKey !== undefined) item.apiKey = expand(item.apiKey, `${base}.apiKey`);
    for (const [header, value] of Object.entries(item.headers)) item.headers[header] = expand(value, `${base}.headers.${header}`);
  });
  return problems;
}
