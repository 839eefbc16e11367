import type { Command } from "commander";
import type { ConfigFlags, GatewayConfig } from "../config.js";
import { parseDuration } from "../duration.js";
import { ConfigError, NotFoundError } from "../errors.js";
import { listInstances } from "../governance/instance.js";
import { maskSecrets } from "../mask.js";
import type { AnnotationHints, FiredRule } from "../risk/policy.js";
import { explainCall, replayPolicy, type ReplayRow } from "./policyReport.js";
import { describeEffect, type Route } from "../risk/assess.js";
import { createEvaluatorFromConfig } from "../risk/setup.js";
import { ToolPinTable } from "../risk/toolPins.js";
import { findPins, namesTool, readPins, trustTool } from "./toolTrust.js";

/** What the `tools` and `policy` commands need from the CLI shell. */
export interface CommandDeps {
  out: (text: string) => void;
  err: (text: string) => void;
  env: NodeJS.ProcessEnv;
  config: (flags: ConfigFlags) => GatewayConfig;
  withCommonOptions: (command: Command) => Command;
  formatTable: (header: string[], rows: string[][]) => string;
  reviewer: () => string;
}

const ROUTE_TEXT: Record<Route, string> = {
  run: "RUN at once (auto-approved)",
  hold: "HOLD for human review",
  deny: "DENY (never runs, no review)",
};

const short = (hash: string | undefined) => (hash ? hash.slice(0, 12) : "-");

function parseJsonObject(text: string, flag: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new ConfigError([`${flag}: not valid JSON (${(error as Error).message})`]);
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) throw new ConfigError([`${flag}: expected a JSON object, e.g. '{"path": "/tmp/x"}'`]);
  return value as Record<string, unknown>;
}

/** `--since 7d` (a duration back from now) or `--since 2026-11-01` (a date). */
export function parseSince(text: string, now = Date.now()): Date {
  const ms = parseDuration(text);
  if (ms !== undefined) return new Date(now - ms);
  const at = Date.parse(text);
  if (Number.isNaN(at)) throw new ConfigError([`--since: expected a duration such as 7d or 12h, or a date such as 2026-11-01, got ${JSON.stringify(text)}`]);
  return new Date(at);
}

/** `tools list | show | trust`: pinned tool definitions and trusting a changed one. */
export function registerToolCommands(program: Command, deps: CommandDeps): void {
  const tools = program.command("tools").description("pinned tool definitions (rug-pull defence): list them, show a change, trust a new version");

  deps.withCommonOptions(tools.command("list"))
    .description("list every pinned tool, and the ones whose definition changed (their calls are held until trusted)")
    .option("--json", "print JSON")
    .action((flags: ConfigFlags & { json?: boolean }) => {
      const { dataDir } = deps.config(flags);
      const rows = listInstances(dataDir).flatMap((instance) => readPins(dataDir, instance).entries().map((entry) => ({ instance, entry })));
      if (flags.json) {
        deps.out(JSON.stringify(rows.map(({ instance, entry }) => ({ instance, ...entry })), null, 2));
        return;
      }
      if (rows.length === 0) {
        deps.out("no pinned tools yet (the gateway pins each tool the first time it lists it)");
        return;
      }
      const showInstance = new Set(rows.map((row) => row.instance)).size > 1;
      deps.out(deps.formatTable(
        [...(showInstance ? ["INSTANCE"] : []), "UPSTREAM", "TOOL", "STATUS", "PINNED", "PINNED AT", "CHANGED"],
        rows.map(({ instance, entry }) => [
          ...(showInstance ? [instance] : []),
          entry.upstream,
          entry.tool,
          entry.pending ? "CHANGED: calls held" : "pinned",
          short(entry.hash),
          entry.pinnedAt,
          entry.pending ? `${entry.pending.changed.join(", ")} -> ${short(entry.pending.hash)} (seen ${entry.pending.seenAt})` : "",
        ]),
      ));
      if (rows.some((row) => row.entry.pending)) deps.out("\nreview a change with 'atlas-gateway tools show <tool>', then 'atlas-gateway tools trust <tool>'");
    });

  deps.withCommonOptions(tools.command("show <tool>"))
    .description("show a tool's pinned definition and, if it changed, the new one")
    .option("--upstream <name>", "the tool's upstream, when several have a tool of that name")
    .action((name: string, flags: ConfigFlags & { upstream?: string }) => {
      const { dataDir } = deps.config(flags);
      const found = findPins(dataDir, name, flags.upstream);
      if (found.length === 0) throw new NotFoundError(`no pinned tool '${name}' (see 'atlas-gateway tools list')`);
      for (const { instance, entry } of found) {
        deps.out(`${entry.upstream}/${entry.tool} (instance ${instance}): ${entry.pending ? "CHANGED, calls held until trusted" : "pinned"}`);
        deps.out(`pinned ${short(entry.hash)} at ${entry.pinnedAt}${entry.trustedBy ? ` (trusted by ${entry.trustedBy})` : ""}:`);
        deps.out(JSON.stringify(entry.definition ?? null, null, 2));
        if (entry.pending) {
          deps.out(`\nnew ${short(entry.pending.hash)} seen ${entry.pending.seenAt}; changed: ${entry.pending.changed.join(", ")}:`);
          deps.out(JSON.stringify(entry.pending.definition ?? null, null, 2));
          deps.out(`\ntrust it with: atlas-gateway tools trust ${entry.upstream}__${entry.tool} --hash ${short(entry.pending.hash)}`);
        }
      }
    });

  deps.withCommonOptions(tools.command("trust <tool>"))
    .description("trust a tool's changed definition: its calls are routed by policy again (recorded in the ledger with old and new hash)")
    .option("--upstream <name>", "the tool's upstream, when several have a tool of that name")
    .option("--hash <prefix>", "trust only if the new definition has this hash (as shown by 'tools show')")
    .option("--reviewer <name>", "who trusts it (default: your OS user name)")
    .option("-r, --reason <text>", "why (recorded in the ledger)")
    .action(async (name: string, flags: ConfigFlags & { upstream?: string; hash?: string; reviewer?: string; reason?: string }) => {
      const { dataDir } = deps.config(flags);
      const reviewer = flags.reviewer ?? deps.reviewer();
      const results = await trustTool(dataDir, name, {
        reviewer,
        ...(flags.upstream ? { upstream: flags.upstream } : {}),
        ...(flags.hash ? { hash: flags.hash } : {}),
        ...(flags.reason ? { reason: flags.reason } : {}),
      });
      for (const result of results) {
        deps.out(
          `trusted ${result.upstream}/${result.tool} (instance ${result.instance}) as ${reviewer}: ${short(result.oldHash)} -> ${short(result.newHash)} ` +
            `(changed: ${result.changed.join(", ")}); ${result.via === "gateway" ? "the running gateway routes its calls by policy again" : "takes effect when the gateway next starts"}. ` +
            "Calls already held stay held for review.",
        );
      }
    });
}

function formatRules(rules: FiredRule[] | undefined): string[] {
  return (rules ?? []).map((rule) => `  ${rule.id}  ${describeEffect(rule.effect)}  ${rule.reason}`);
}

/** `policy explain | replay`: the current policy applied to one call, or to the ledgers' past calls. */
export function registerPolicyCommands(program: Command, deps: CommandDeps): void {
  const policy = program.command("policy").description("explain how the current risk policy routes a call, or replay past calls under it (shadow mode)");

  deps.withCommonOptions(policy.command("explain"))
    .description("score one call under the current policy: score, rules fired, route")
    .requiredOption("--tool <name>", "the tool, as the agent calls it")
    .option("--args <json>", "the call's arguments as a JSON object", "{}")
    .option("--upstream <name>", "the tool's upstream (default: from the pinned definition)")
    .option("--annotations <json>", 'the tool\'s annotations, e.g. \'{"readOnlyHint":true}\' (default: from the pinned definition)')
    .option("--no-models", "do not ask the configured model evaluators")
    .option("--instance <name>", "whose pinned definitions to use (default: all instances)")
    .option("--json", "print JSON")
    .action(async (flags: ConfigFlags & { tool: string; args: string; upstream?: string; annotations?: string; models: boolean; instance?: string; json?: boolean }) => {
      const config = deps.config(flags);
      const args = parseJsonObject(flags.args, "--args");
      const annotations = flags.annotations ? (parseJsonObject(flags.annotations, "--annotations") as AnnotationHints) : undefined;
      // the pins of the instance that saw this tool (preferring one where its definition changed)
      const instances = flags.instance ? [flags.instance] : listInstances(config.dataDir);
      const tables = instances.map((instance) => readPins(config.dataDir, instance));
      const knows = (table: ToolPinTable, changedOnly: boolean) => table.entries().some((entry) => namesTool(entry, flags.tool) && (!changedOnly || entry.pending));
      const pins = tables.find((table) => knows(table, true)) ?? tables.find((table) => knows(table, false)) ?? new ToolPinTable();
      const { evaluator, models } = createEvaluatorFromConfig(config, { env: deps.env, pins, models: flags.models, ...(flags.instance ? { instance: flags.instance } : {}) });
      const explanation = await explainCall(config, evaluator, pins, {
        tool: flags.tool,
        args,
        ...(flags.upstream ? { upstream: flags.upstream } : {}),
        ...(annotations ? { annotations } : {}),
      });
      const { assessment } = explanation;
      if (flags.json) {
        deps.out(JSON.stringify({ ...explanation, input: { ...explanation.input, args: maskSecrets(explanation.input.args) } }, null, 2));
        return;
      }
      deps.out(`call: ${flags.tool} (upstream ${explanation.input.upstream}) ${JSON.stringify(maskSecrets(args))}`);
      deps.out(`definition: ${explanation.definitionSource}`);
      deps.out(`score: ${assessment.score}/100 (${assessment.classification}); threshold ${explanation.threshold}${assessment.verdict ? `; policy verdict: ${assessment.verdict}` : ""}`);
      deps.out(`route: ${ROUTE_TEXT[explanation.route]}`);
      deps.out(`rules fired:${assessment.rules?.length ? "" : " none"}`);
      for (const line of formatRules(assessment.rules)) deps.out(line);
      deps.out("reasons:");
      for (const reason of assessment.reasons) deps.out(`  - ${reason}`);
      deps.out(`evaluator: ${assessment.evaluator}${!flags.models && config.risk.evaluators.length ? " (model evaluators skipped: --no-models)" : models.length === 0 ? " (no model evaluators configured)" : ""}`);
    });

  deps.withCommonOptions(policy.command("replay"))
    .description("re-score the ledgers' past calls under the current policy and print what would change (shadow mode; nothing is run or recorded)")
    .option("--since <when>", "only calls since a duration ago (7d, 12h) or a date (2026-11-01)")
    .option("--instance <name>", "replay only this instance's ledger")
    .option("--models", "also ask the configured model evaluators (one request per past call)")
    .option("--all", "list every call, not only those whose route would change")
    .option("--json", "print JSON")
    .action(async (flags: ConfigFlags & { since?: string; instance?: string; models?: boolean; all?: boolean; json?: boolean }) => {
      const config = deps.config(flags);
      const since = flags.since ? parseSince(flags.since) : undefined;
      const { evaluator } = createEvaluatorFromConfig(config, { env: deps.env, models: flags.models ?? false, ...(flags.instance ? { instance: flags.instance } : {}) });
      const rows = await replayPolicy(config, evaluator, { dataDir: config.dataDir, ...(flags.instance ? { instance: flags.instance } : {}), ...(since ? { since } : {}) });
      const changed = rows.filter((row) => row.changed);
      if (flags.json) {
        deps.out(JSON.stringify({ since: since?.toISOString(), threshold: config.risk.threshold, calls: rows.length, changed: changed.length, rows: flags.all ? rows : changed }, null, 2));
        return;
      }
      const models = config.risk.evaluators.length === 0 ? "" : flags.models ? " (model evaluators consulted)" : " (model evaluators not consulted; pass --models to ask them)";
      deps.out(`re-scored ${rows.length} past call(s)${since ? ` since ${since.toISOString()}` : ""} under the current policy, threshold ${config.risk.threshold}${models}`);
      deps.out(`${changed.length} would be routed differently${summarise(changed)}`);
      const shown = flags.all ? rows : changed;
      if (shown.length === 0) return;
      deps.out("");
      deps.out(deps.formatTable(
        ["REF", "WHEN", "TOOL", "BEFORE", "AFTER", "RULES FIRED NOW"],
        shown.map((row) => [
          row.ref,
          row.at.slice(0, 19).replace("T", " "),
          row.tool,
          `${row.before.route} ${row.before.score}`,
          `${row.after.route} ${row.after.score}${row.changed ? " *" : ""}`,
          row.after.rules.join(", ") || "-",
        ]),
      ));
    });
}

function summarise(rows: ReplayRow[]): string {
  if (rows.length === 0) return "";
  const counts = new Map<string, number>();
  for (const row of rows) {
    const key = `${row.before.route} -> ${row.after.route}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return `: ${[...counts.entries()].map(([key, count]) => `${count} ${key}`).join(", ")}`;
}
