import type { GatewayConfig } from "../config.js";
import { DEMO_SCORES } from "../demo/scores.js";
import { instancePaths } from "../dataDir.js";
import { listInstances } from "../governance/instance.js";
import { assessmentFromData } from "../governance/requests.js";
import { scanLedger } from "../ledger/ledger.js";
import type { AnnotationHints } from "../risk/policy.js";
import { assessRisk, routeAssessment, type Assessment, type RiskEvaluator, type RiskInput, type Route } from "../risk/assess.js";
import { ToolPinTable, type PinEntry } from "../risk/toolPins.js";
import { namesTool } from "./toolTrust.js";

/**
 * `policy explain` and `policy replay`: the live evaluator applied to a hypothetical call, or to every past call in
 * the ledgers (shadow mode), so a policy change can be judged before it is live.
 */

/** The built-in score of a demo tool, when the call went to the built-in demo upstream (not a user's own `demo`). */
function builtinFor(config: GatewayConfig, upstream: string, tool: string): RiskInput["builtinScore"] {
  return upstream === "demo" && !("demo" in config.upstreams) ? DEMO_SCORES[tool] : undefined;
}

export interface ExplainRequest {
  tool: string;
  args: Record<string, unknown>;
  upstream?: string;
  annotations?: AnnotationHints;
}

export interface Explanation {
  input: RiskInput;
  /** Where upstream and annotations came from. */
  definitionSource: string;
  assessment: Assessment;
  route: Route;
  threshold: number;
}

/**
 * Scores one hypothetical call. The tool's upstream, annotations and current pin come from the ledgers' pins (the
 * last definition the gateway saw), unless given; a tool never seen is explained as an unannotated tool.
 */
export async function explainCall(config: GatewayConfig, evaluator: RiskEvaluator, pins: ToolPinTable, request: ExplainRequest): Promise<Explanation> {
  const matches = pins.entries().filter((entry) => namesTool(entry, request.tool) && (request.upstream === undefined || entry.upstream === request.upstream));
  const entry: PinEntry | undefined = matches.find((item) => item.pending) ?? matches[0];
  const namespaced = Object.keys(config.upstreams).find((name) => request.tool.startsWith(`${name}__`));
  const upstream = request.upstream ?? entry?.upstream ?? namespaced ?? (config.demo && DEMO_SCORES[request.tool] ? "demo" : Object.keys(config.upstreams)[0] ?? "upstream");
  const tool = entry?.tool ?? request.tool.replace(new RegExp(`^${upstream.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}__`), "");
  const definition = entry?.pending?.definition ?? entry?.definition;
  const annotations = request.annotations ?? (definition?.annotations as AnnotationHints | undefined);
  const builtin = builtinFor(config, upstream, tool);
  const input: RiskInput = {
    upstream,
    tool,
    name: request.tool,
    args: request.args,
    ...(annotations ? { annotations } : {}),
    ...(builtin ? { builtinScore: builtin } : {}),
    ...(definition?.description ? { description: definition.description } : {}),
    ...(entry?.pending ? { definitionHash: entry.pending.hash } : entry ? { definitionHash: entry.hash } : {}),
  };
  const definitionSource = request.annotations
    ? "annotations as given with --annotations"
    : entry
      ? `the definition pinned for ${entry.upstream}/${entry.tool}${entry.pending ? " (its changed, untrusted version)" : ""}`
      : builtin
        ? "the built-in demo tool"
        : "no definition seen yet (treated as an unannotated tool; pass --annotations or --upstream)";
  const assessment = await assessRisk(evaluator, input);
  return { input, definitionSource, assessment, route: routeAssessment(assessment, config.risk.threshold), threshold: config.risk.threshold };
}

export interface ReplayRow {
  instance: string;
  ref: string;
  at: string;
  tool: string;
  before: { route: Route; score: number; rules: string[] };
  after: { route: Route; score: number; rules: string[]; reasons: string[] };
  changed: boolean;
}

interface PastCall {
  ref: string;
  at: string;
  upstream: string;
  tool: string;
  name: string;
  args: Record<string, unknown>;
  annotations?: AnnotationHints;
  assessment?: Assessment;
  route?: Route;
}

/** The calls a ledger routed (run, held or denied), with what they were routed on. Calls never routed are skipped. */
export function pastCalls(path: string, since?: Date): { calls: PastCall[]; pins: ToolPinTable } {
  const byRef = new Map<string, PastCall>();
  const pins = new ToolPinTable();
  scanLedger(path, (record) => {
    pins.apply(record);
    if (!record.ref) return;
    const data = record.data;
    if (record.type === "request.created" || record.type === "request.admitted") {
      if (since && Date.parse(record.ts) < since.getTime()) return;
      const assessment = record.type === "request.admitted" && typeof data.assessment === "object" && data.assessment !== null ? assessmentFromData(data.assessment as Record<string, unknown>) : undefined;
      byRef.set(record.ref, {
        ref: record.ref,
        at: record.ts,
        upstream: String(data.upstream),
        tool: String(data.tool),
        name: String(data.name ?? data.tool),
        args: (data.args ?? {}) as Record<string, unknown>,
        ...(data.annotations ? { annotations: data.annotations as AnnotationHints } : {}),
        ...(assessment ? { assessment, route: "run" as const } : {}),
      });
      return;
    }
    const call = byRef.get(record.ref);
    if (!call) return;
    if (record.type === "request.assessed") call.assessment = assessmentFromData(data);
    else if (record.type === "request.auto_approved") call.route = "run";
    else if (record.type === "request.held") call.route = "hold";
    else if (record.type === "decision.recorded" && data.source === "policy" && call.route === undefined) call.route = "deny";
  });
  return { calls: [...byRef.values()].filter((call) => call.route !== undefined && call.assessment !== undefined), pins };
}

/**
 * Re-scores past calls under the current policy. Pins are left out (a definition's state at the time is history);
 * annotations come from the call's record, or the tool's pinned definition in older ledgers.
 */
export async function replayPolicy(
  config: GatewayConfig,
  evaluator: RiskEvaluator,
  options: { dataDir: string; instance?: string; since?: Date },
): Promise<ReplayRow[]> {
  const rows: ReplayRow[] = [];
  const instances = options.instance ? [options.instance] : listInstances(options.dataDir);
  for (const instance of instances) {
    const { calls, pins } = pastCalls(instancePaths(options.dataDir, instance).ledger, options.since);
    for (const call of calls) {
      const annotations = call.annotations ?? (pins.get(call.upstream, call.tool)?.definition?.annotations as AnnotationHints | undefined);
      const builtin = builtinFor(config, call.upstream, call.tool);
      const assessment = await assessRisk(evaluator, {
        upstream: call.upstream,
        tool: call.tool,
        name: call.name,
        args: call.args,
        ...(annotations ? { annotations } : {}),
        ...(builtin ? { builtinScore: builtin } : {}),
      });
      const route = routeAssessment(assessment, config.risk.threshold);
      const before = call.assessment!;
      rows.push({
        instance,
        ref: call.ref,
        at: call.at,
        tool: call.name,
        before: { route: call.route!, score: before.score, rules: (before.rules ?? []).map((rule) => rule.id) },
        after: { route, score: assessment.score, rules: (assessment.rules ?? []).map((rule) => rule.id), reasons: assessment.reasons },
        changed: route !== call.route,
      });
    }
  }
  return rows.sort((a, b) => a.at.localeCompare(b.at));
}
