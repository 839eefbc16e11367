import type { GatewayConfig } from "../config.js";
import type { DecisionInput } from "../governance/engine.js";
import { createInngestClient } from "./client.js";
import { decisionEvent } from "./events.js";
import { checkInngestConfig, resolveAppId } from "./settings.js";

/**
 * Sends a decision that a reviewer command wrote straight into the ledger (no gateway was running for it). Best
 * effort: the ledger already holds the decision, and the gateway re-sends it at its next start until the run has
 * consumed it. Returns why it could not be sent, or undefined when Inngest accepted it.
 */
export async function sendDecisionEvent(config: GatewayConfig, instance: string, input: DecisionInput, version: string, log: (line: string) => void): Promise<string | undefined> {
  const problems = checkInngestConfig(config);
  if (problems.length) return problems.join("; ");
  const app = resolveAppId(config.inngest, config.dataDir, instance);
  try {
    const client = await createInngestClient(config.inngest, { appId: app, version, log });
    await client.send(decisionEvent({ ref: input.ref, app, decision: input.decision, reviewer: input.reviewer, ...(input.reason ? { reason: input.reason } : {}) }));
    return undefined;
  } catch (error) {
    return (error as Error).message;
  }
}
