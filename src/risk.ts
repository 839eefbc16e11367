import type { Assessment } from "./requests.js";

/** What the evaluator sees of a call. */
export interface RiskInput {
  upstream: string;
  tool: string;
  /** The name the agent called (`upstream__tool` with several upstreams). */
  name: string;
  args: Record<string, unknown>;
  annotations?: {
    readOnlyHint?: boolean;
    destructiveHint?: boolean;
    idempotentHint?: boolean;
    openWorldHint?: boolean;
  };
  /** Set for the built-in demo tools, whose risk the gateway knows. */
  builtinScore?: { score: number; reason: string };
}

export interface RiskPolicy {
  threshold: number;
  /** Exact tool name or glob (`*`, `?`) -> fixed score. Exact beats glob; the longest matching glob wins. */
  overrides: Record<string, number>;
}

export type RiskEvaluator = (input: RiskInput) => Assessment | Promise<Assessment>;

export function classify(score: number): string {
  if (score >= 90) return "critical";
  if (score >= 70) return "high";
  if (score >= 40) return "medium";
  return "low";
}

/** `*` matches any run of characters, `?` one; everything else is literal. */
export function globToRegExp(glob: string): RegExp {
  const body = glob.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".");
  return new RegExp(`^${body}$`);
}

/** Compiles the override table once; returns a lookup by candidate names. */
function compileOverrides(overrides: Record<string, number>): (names: string[]) => { pattern: string; score: number } | undefined {
  const exact = new Map<string, number>();
  const globs: { pattern: string; regexp: RegExp; score: number }[] = [];
  for (const [pattern, score] of Object.entries(overrides)) {
    if (/[*?]/.test(pattern)) globs.push({ pattern, regexp: globToRegExp(pattern), score });
    else exact.set(pattern, score);
  }
  globs.sort((a, b) => b.pattern.length - a.pattern.length);
  return (names) => {
    for (const name of names) {
      const score = exact.get(name);
      if (score !== undefined) return { pattern: name, score };
    }
    for (const glob of globs) if (names.some((name) => glob.regexp.test(name))) return { pattern: glob.pattern, score: glob.score };
    return undefined;
  };
}

/**
 * The default rules engine. Policy, in order: a config override for the tool; the built-in score of a demo tool;
 * otherwise the tool's annotations — only `readOnlyHint: true` is low risk, anything else (destructive,
 * state-changing or unannotated) is held. Pure: no I/O.
 */
export function createRulesEvaluator(policy: RiskPolicy): RiskEvaluator {
  const findOverride = compileOverrides(policy.overrides);
  return (input) => {
    const override = findOverride([input.name, `${input.upstream}__${input.tool}`, input.tool]);
    if (override) {
      return assessment(override.score, [`policy override '${override.pattern}' sets score ${override.score}`]);
    }
    if (input.builtinScore) return assessment(input.builtinScore.score, [input.builtinScore.reason]);
    const hints = input.annotations ?? {};
    if (hints.readOnlyHint === true) return assessment(10, ["upstream declares the tool read-only (readOnlyHint)"]);
    if (input.annotations === undefined || Object.keys(hints).length === 0) {
      return assessment(80, ["tool has no annotations: treated as state-changing until a policy says otherwise"]);
    }
    if (hints.destructiveHint === false) {
      return assessment(75, ["tool changes state (not read-only), though it declares itself non-destructive"]);
    }
    return assessment(90, ["tool may be destructive (destructiveHint is true or unset, readOnlyHint is not true)"]);
  };
}

function assessment(score: number, reasons: string[]): Assessment {
  return { score, classification: classify(score), reasons, evaluator: "rules" };
}

/** Runs an evaluator and fails closed: any error or out-of-range answer becomes score 100 with the reason. */
export async function assessRisk(evaluator: RiskEvaluator, input: RiskInput): Promise<Assessment> {
  try {
    const result = await evaluator(input);
    if (!Number.isFinite(result.score) || result.score < 0 || result.score > 100) {
      throw new Error(`score ${String(result.score)} is outside 0-100`);
    }
    return result;
  } catch (error) {
    return {
      score: 100,
      classification: "critical",
      reasons: [`risk evaluator failed, held for review (fail closed): ${(error as Error).message}`],
      evaluator: "fail-closed",
    };
  }
}
