import type { Command } from "commander";
import type { ConfigFlags } from "../config.js";
import { ConfigError, ConflictError } from "../errors.js";
import { currentHalt, newHaltFact, recordHaltEverywhere, type HaltDelivery } from "../governance/halt.js";
import { describeHalt } from "../governance/haltState.js";
import { readAllInstances } from "../governance/review.js";
import type { CommandDeps } from "./policy.js";

/** The data dir's stop-button state: `halt.json` and every ledger, newest wins. */
export function dataDirHalt(dataDir: string) {
  return currentHalt(dataDir, readAllInstances(dataDir).flatMap((instance) => (instance.halt ? [instance.halt] : [])));
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
    .option("--reviewer <name>", "who halts (default: your OS user name)")
    .action(async (flags: ConfigFlags & { reason: string; reviewer?: string }) => {
      if (!flags.reason.trim()) throw new ConfigError(["--reason: a halt needs a reason (agents, reviewers and the audit trail see it)"]);
      const config = deps.config(flags);
      const fact = newHaltFact(true, flags.reviewer ?? deps.reviewer(), flags.reason.trim(), dataDirHalt(config.dataDir));
      const delivery = await recordHaltEverywhere(config.dataDir, fact, config.instance);
      deps.out(`HALTED by ${fact.by}: every tool call is refused until 'atlas-gateway resume'. ${describeDelivery(delivery)}.`);
    });

  deps.withCommonOptions(program.command("resume"))
    .description("lift a halt: tool calls are routed by policy again, and approved calls that waited start (if their deadline has not passed)")
    .option("-r, --reason <text>", "why (recorded in the ledger)")
    .option("--reviewer <name>", "who resumes (default: your OS user name)")
    .action(async (flags: ConfigFlags & { reason?: string; reviewer?: string }) => {
      const config = deps.config(flags);
      const state = dataDirHalt(config.dataDir);
      if (!state?.halted) throw new ConflictError("nothing changed: the gateway is not halted");
      const fact = newHaltFact(false, flags.reviewer ?? deps.reviewer(), flags.reason?.trim() || undefined, state);
      const delivery = await recordHaltEverywhere(config.dataDir, fact, config.instance);
      deps.out(`RESUMED by ${fact.by} (the halt was: ${describeHalt(state)}). ${describeDelivery(delivery)}.`);
    });
}
