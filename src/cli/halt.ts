import type { Command } from "commander";
import type { ConfigFlags } from "../config.js";
import { ConfigError, ConflictError } from "../errors.js";
import type { GatewayConfig } from "../config.js";
import { currentHalt, newHaltFact, recordHaltEverywhere, writeIdleLedger, type HaltDelivery } from "../governance/halt.js";
import { describeHalt, type HaltFact } from "../governance/haltState.js";
import { Notifier, type AttemptOutcome } from "../notify/notifier.js";
import { haltEvent } from "../notify/notificationEvent.js";
import { readAllInstances } from "../governance/review.js";
import { cliReviewer } from "./reviewers.js";
import type { CommandDeps } from "./policy.js";

/** The data dir's stop-button state: `halt.json` and every ledger, newest wins. */
export function dataDirHalt(dataDir: string) {
  return currentHalt(dataDir, readAllInstances(dataDir).flatMap((instance) => (instance.halt ? [instance.halt] : [])));
}

/**
 * With no gateway running, nobody else tells the sinks: the command delivers the halt notification itself, then
 * records every attempt in the ledger it wrote the fact to. (A running gateway does both when asked to notify.)
 */
async function notifyWithoutGateway(config: GatewayConfig, fact: HaltFact, delivery: HaltDelivery, err: (line: string) => void): Promise<void> {
  if (delivery.gateways.length > 0 || config.notify.length === 0 || delivery.ledgers.length === 0) return;
  const outcomes: AttemptOutcome[] = [];
  const notifier = new Notifier({ sinks: config.notify, record: (outcome) => void outcomes.push(outcome), log: (line) => err(`atlas-gateway: ${line}`) });
  await notifier.deliverNow(haltEvent(fact, { instance: delivery.ledgers[0]!, ...(config.publicUrl ? { publicUrl: config.publicUrl } : {}) }));
  await writeIdleLedger(config.dataDir, delivery.ledgers[0]!, (log) => {
    for (const outcome of outcomes) log.record(outcome.type, outcome.ref, outcome.data, "batch");
  });
}

function describeDelivery(delivery: HaltDelivery): string {
  const parts: string[] = [];
  if (delivery.gateways.length) parts.push(`running gateway(s) ${delivery.gateways.map((name) => `'${name}'`).join(", ")} applied it now`);
  if (delivery.ledgers.length) parts.push(`recorded in ledger(s) ${delivery.ledgers.map((name) => `'${name}'`).join(", ")} for their next start`);
  return parts.join("; ");
}

/**
 * `halt` / `resume`: the stop button (issue 9; EU AI Act Art. 14(4)(e)). A durable fact in every instance's ledger of
 * the data dir, honoured by every running gateway at once and by every gateway that starts later.
 */
export function registerHaltCommands(program: Command, deps: CommandDeps): void {
  deps.withCommonOptions(program.command("halt"))
    .description("stop every tool call on this data dir now, across all gateway instances, until 'resume' (approved calls wait; pending calls stay pending)")
    .requiredOption("-r, --reason <text>", "why (required; recorded, and shown to agents and reviewers)")
    .option("--reviewer <id>", "who halts: a registered reviewer whose key is in ATLAS_REVIEWER_TOKEN (default: your OS user name)")
    .action(async (flags: ConfigFlags & { reason: string; reviewer?: string }) => {
      if (!flags.reason.trim()) throw new ConfigError(["--reason: a halt needs a reason (agents, reviewers and the audit trail see it)"]);
      const config = deps.config(flags);
      const fact = newHaltFact(true, cliReviewer(config.dataDir, flags.reviewer, deps.env, deps.reviewer).reviewer, flags.reason.trim(), dataDirHalt(config.dataDir));
      const delivery = await recordHaltEverywhere(config.dataDir, fact, config.instance);
      deps.out(`HALTED by ${fact.by}: every tool call is refused until 'atlas-gateway resume'. ${describeDelivery(delivery)}.`);
      await notifyWithoutGateway(config, fact, delivery, deps.err);
    });

  deps.withCommonOptions(program.command("resume"))
    .description("lift a halt: tool calls are routed by policy again, and approved calls that waited start (if their deadline has not passed)")
    .option("-r, --reason <text>", "why (recorded in the ledger)")
    .option("--reviewer <id>", "who resumes: a registered reviewer whose key is in ATLAS_REVIEWER_TOKEN (default: your OS user name)")
    .action(async (flags: ConfigFlags & { reason?: string; reviewer?: string }) => {
      const config = deps.config(flags);
      const state = dataDirHalt(config.dataDir);
      if (!state?.halted) throw new ConflictError("nothing changed: the gateway is not halted");
      const fact = newHaltFact(false, cliReviewer(config.dataDir, flags.reviewer, deps.env, deps.reviewer).reviewer, flags.reason?.trim() || undefined, state);
      const delivery = await recordHaltEverywhere(config.dataDir, fact, config.instance);
      deps.out(`RESUMED by ${fact.by} (the halt was: ${describeHalt(state)}). ${describeDelivery(delivery)}.`);
      await notifyWithoutGateway(config, fact, delivery, deps.err);
    });
}
