import { maskSecrets } from "../mask.js";
import type { ModelEvaluator } from "./modelEvaluators.js";
import { compilePolicy, type AnnotationHints, type CompiledPolicy, type FiredRule, type PolicySource, type RuleEffect, type Verdict } from "./policy.js";
import type { SelfProtectionHit } from "./selfProtection.js";
import type { PinLookup } from "./toolPins.js";

/** What the risk evaluator concluded about one call: score 0-100, its class, and why. */
export interface Assessment {
  score: number;
  classification: string;
  reasons: string[];
  evaluator: string;
  /** The policy rules that matched, in config order, plus `self-protection` / `tool-pinning` when they held the call. */
  rules?: FiredRule[];
  /** A route the policy forces whatever the score: `allow` runs, `review` waits for a human, `deny` never runs. */
  verdict?: Verdict;
}

export { globToRegExp } from "./policy.js";

/** What the evaluator sees of a call. */
export interface RiskInput {
  upstream: string;
  tool: string;
  /** The name the agent called (`upstream__tool` with several upstreams). */
  name: string;
  args: Record<string, unknown>;
  annotations?: AnnotationHints;
  /** Set for the built-in demo tools, whose risk the gateway knows. */
  builtinScore?: { score: number; reason: string };
  /** The tool's description, for model evaluators. */
  description?: string;
  /** The pin hash of the tool's current definition (see `toolPins.ts`); checked against the pinned one. */
  definitionHash?: string;
}

/** The legacy policy shape; `rules` may be added. */
export interface RiskPolicy extends PolicySource {
  threshold: number;
}

export type RiskEvaluator = (input: RiskInput) => Assessment | Promise<Assessment>;

/** Where a call goes: runs at once, waits for a human, or never runs. */
export type Route = "run" | "hold" | "deny";

export function classify(score: number): string {
  if (score >= 90) return "critical";
  if (score >= 70) return "high";
  if (score >= 40) return "medium";
  return "low";
}

/**
 * The one routing rule, shared by every engine: a policy `deny` never runs, `review` always waits for a human, `allow`
 * always runs; otherwise a score at or above the threshold waits.
 */
export function routeAssessment(assessment: Assessment, threshold: number): Route {
  if (assessment.verdict === "deny") return "deny";
  if (assessment.verdict === "review") return "hold";
  if (assessment.verdict === "allow") return "run";
  return assessment.score < threshold ? "run" : "hold";
}

/** The reason a policy denial gives the agent and the ledger: the deny rules that fired. */
export function denialReason(assessment: Assessment): string {
  const rules = (assessment.rules ?? []).filter((rule) => rule.effect === "deny");
  if (rules.length === 0) return "denied by policy";
  return `denied by policy rule ${rules.map((rule) => `'${rule.id}' (${rule.reason})`).join(", ")}; it was not run and will not be reviewed`;
}

export function describeEffect(effect: RuleEffect): string {
  return typeof effect === "number" ? `score ${effect}` : effect;
}

/** The score when no score rule matched: a demo tool's built-in score, else what its annotations say. */
export function baselineScore(input: Pick<RiskInput, "annotations" | "builtinScore">): { score: number; reason: string } {
  if (input.builtinScore) return input.builtinScore;
  const hints = input.annotations ?? {};
  if (hints.readOnlyHint === true) return { score: 10, reason: "upstream declares the tool read-only (readOnlyHint)" };
  if (input.annotations === undefined || Object.keys(hints).length === 0) {
    return { score: 80, reason: "tool has no annotations: treated as state-changing until a policy says otherwise" };
  }
  if (hints.destructiveHint === false) return { score: 75, reason: "tool changes state (not read-only), though it declares itself non-destructive" };
  return { score: 90, reason: "tool may be destructive (destructiveHint is true or unset, readOnlyHint is not true)" };
}

export interface RiskEvaluatorParts {
  policy: CompiledPolicy;
  /** Remote models; each answer's score joins the maximum. */
  models?: ModelEvaluator[];
  /** Returns what a call's arguments reach of the gateway itself, if anything. */
  selfProtection?: (args: Record<string, unknown>) => SelfProtectionHit | undefined;
  pins?: PinLookup;
  /** Told to the models, so their rationale can refer to it. */
  threshold?: number;
}

/**
 * The risk evaluator every engine runs. In order:
 * 1. policy rules; a `deny` rule ends it (never runs, no review, no model asked);
 * 2. self-protection and tool pinning: a call reaching the gateway's own files or CLI, or to a tool whose definition
 *    changed since it was pinned, is held as critical (score 100) whatever `allow` or score rules say;
 * 3. an `allow` rule ends it (runs; no model asked);
 * 4. the score: the highest score rule (or, when none matched, the tool's baseline) and every model's score — the
 *    maximum wins; a `review` rule holds the call whatever the score. A failing model scores 100 (fail closed).
 * No I/O of its own: models and pins are injected.
 */
export function createRiskEvaluator(parts: RiskEvaluatorParts): RiskEvaluator {
  const models = parts.models ?? [];
  return (input) => {
    const result = parts.policy.evaluate(input);
    const fired: FiredRule[] = [...result.fired];
    const ruleReasons = fired.map((rule) => `rule '${rule.id}' (${describeEffect(rule.effect)}): ${rule.reason}`);
    if (result.verdict === "deny") {
      return { score: 100, classification: "critical", reasons: ruleReasons, evaluator: "rules", rules: fired, verdict: "deny" };
    }

    const guards: string[] = [];
    const hit = parts.selfProtection?.(input.args);
    if (hit) {
      const reason = `arguments reach ${hit.target}: ${hit.value} at ${hit.at}`;
      fired.push({ id: "self-protection", effect: "review", reason });
      guards.push(`self-protection: ${reason}; held as critical whatever the policy says`);
    }
    if (parts.pins && input.definitionHash) {
      const pin = parts.pins.check(input.upstream, input.tool, input.definitionHash);
      if (pin.state === "changed") {
        const reason = `the tool's definition changed since it was pinned (${pin.pinnedHash.slice(0, 12)} -> ${pin.currentHash.slice(0, 12)}); held until a human runs 'atlas-gateway tools trust ${input.name}'`;
        fired.push({ id: "tool-pinning", effect: "review", reason });
        guards.push(`tool pinning: ${reason}`);
      }
    }
    if (guards.length > 0) {
      return { score: 100, classification: "critical", reasons: [...guards, ...ruleReasons], evaluator: "rules", rules: fired, verdict: "review" };
    }

    const base = result.score !== undefined ? { score: result.score, reason: undefined } : baselineScore(input);
    const reasons = [...ruleReasons, ...(base.reason ? [base.reason] : [])];
    const review = result.verdict === "review" ? { verdict: "review" as const } : {};
    if (result.verdict === "allow") {
      return { score: base.score, classification: classify(base.score), reasons, evaluator: "rules", rules: fired, verdict: "allow" };
    }
    // Rules only: answered synchronously (the fast path, and what `createRulesEvaluator` callers rely on).
    if (models.length === 0) return { score: base.score, classification: classify(base.score), reasons, evaluator: "rules", rules: fired, ...review };
    return askModels(models, input, fired, base.score, parts.threshold).then((answers) => {
      const score = Math.max(base.score, ...answers.map((answer) => answer.score));
      return {
        score,
        classification: classify(score),
        reasons: [...reasons, ...answers.map((answer) => answer.reason)],
        evaluator: ["rules", ...models.map((model) => model.name)].join("+"),
        rules: fired,
        ...review,
      };
    });
  };
}

/** Asks every model at once; a failing one answers 100 with the failure as its reason (fail closed). */
async function askModels(models: ModelEvaluator[], input: RiskInput, fired: FiredRule[], rulesScore: number, threshold: number | undefined): Promise<{ score: number; reason: string }[]> {
  const request = {
    tool: input.tool,
    arguments: maskSecrets(input.args) as Record<string, unknown>,
    context: {
      upstream: input.upstream,
      exposed_name: input.name,
      ...(input.description ? { description: input.description } : {}),
      ...(input.annotations ? { annotations: input.annotations } : {}),
      rules_fired: fired.map((rule) => ({ id: rule.id, effect: rule.effect })),
      rules_score: rulesScore,
      ...(threshold !== undefined ? { threshold } : {}),
      oversight: "EU AI Act Art. 14 human oversight: calls at or above the threshold wait for a human reviewer",
    },
  };
  return Promise.all(models.map(async (model) => {
    try {
      const answer = await model.evaluate(request);
      const extra = [answer.classification, answer.action ? `action ${answer.action}` : undefined].filter(Boolean).join(", ");
      return { score: answer.score, reason: `model ${model.name}: ${answer.score}${extra ? ` (${extra})` : ""}${answer.rationale ? `: ${answer.rationale}` : ""}` };
    } catch (error) {
      return { score: 100, reason: `model ${model.name} failed, held for review (fail closed): ${(error as Error).message}` };
    }
  }));
}

/** The rules-only evaluator for a policy (no models, no self-protection, no pins); it answers synchronously. */
export function createRulesEvaluator(policy: PolicySource & { threshold?: number }): RiskEvaluator {
  return createRiskEvaluator({ policy: compilePolicy(policy) });
}

const VERDICTS = new Set(["allow", "review", "deny"]);

/** Runs an evaluator and fails closed: any error or out-of-range answer becomes score 100 with the reason. */
export async function assessRisk(evaluator: RiskEvaluator, input: RiskInput): Promise<Assessment> {
  try {
    const result = await evaluator(input);
    if (!Number.isFinite(result.score) || result.score < 0 || result.score > 100) {
      throw new Error(`score ${String(result.score)} is outside 0-100`);
    }
    if (result.verdict !== undefined && !VERDICTS.has(result.verdict)) throw new Error(`unknown verdict ${String(result.verdict)}`);
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
