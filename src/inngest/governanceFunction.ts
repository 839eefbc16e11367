import { NonRetriableError, type Inngest } from "inngest";
import { DECISION_EVENT, DECISION_MATCH, FUNCTION_ID, REQUEST_EVENT, requestTriggerFilter, type DecisionEventData } from "./events.js";
import { WorkflowHalt, type WorkflowHost } from "./inngestEngine.js";

/** Retries for a failing step (e.g. the gateway was down when Inngest called). Execution itself is never re-run. */
export const WORKFLOW_RETRIES = 10;

/** Runs a host step, turning a `WorkflowHalt` into Inngest's `NonRetriableError` (no blind retry). */
async function halting<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (error instanceof WorkflowHalt) throw new NonRetriableError(error.message, { cause: error });
    throw error;
  }
}

/**
 * The governance workflow as an Inngest function: assess; low risk → execute; high risk → wait for the reviewer's
 * decision (matched on the ref) or the deadline, with the reviewer notification started in the same parallel group
 * so the wait is registered in the same response that schedules the notification; timeout → deny; approved →
 * execute once. Each step's work happens in `host` (the gateway's ledger and upstreams).
 *
 * Checkpointing is off: with it, the SDK may run the notification in-process before Inngest has registered the
 * wait, and a decision that arrives in between would be lost.
 */
export function createGovernanceFunction(client: Inngest.Any, host: WorkflowHost, appId: string) {
  return client.createFunction(
    {
      id: FUNCTION_ID,
      name: "atlas-gateway governance workflow",
      triggers: [{ event: REQUEST_EVENT, if: requestTriggerFilter(appId) }],
      idempotency: "event.data.ref",
      retries: WORKFLOW_RETRIES,
      checkpointing: false,
    },
    async ({ event, step, runId }) => {
      const ref = String(event.data.ref);
      const assessed = await step.run("assess", () => halting(() => host.assessStep(ref, runId)));
      if (assessed.route === "auto") {
        return step.run("execute", () => halting(() => host.executeStep(ref, runId)));
      }
      let decisionData: Partial<DecisionEventData> | null = null;
      if (assessed.route === "review") {
        const [decisionEvent] = await Promise.all([
          step.waitForEvent("await-decision", {
            event: DECISION_EVENT,
            if: DECISION_MATCH,
            timeout: new Date(assessed.deadline ?? Date.now()),
          }),
          step.run("notify-reviewer", () => halting(() => host.notifyStep(ref, runId))),
        ]);
        decisionData = (decisionEvent?.data as Partial<DecisionEventData> | undefined) ?? null;
      }
      const decided = await step.run("record-decision", () => halting(() => host.recordDecisionStep(ref, decisionData, runId)));
      if (decided.decision !== "approved") return { ref, status: decided.status, executed: false };
      return step.run("execute", () => halting(() => host.executeStep(ref, runId)));
    },
  );
}
