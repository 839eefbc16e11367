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
      // Inngest gives up on a run after its retries (e.g. the gateway was away for hours): the gateway must hear of
      // it, or an approved call would wait forever for a run that no longer exists (issue 14).
      onFailure: async ({ event, error, runId }) => {
        const failed = event.data as { run_id?: string; event?: { data?: { ref?: unknown } } };
        const ref = String(failed.event?.data?.ref ?? "");
        if (!ref) return { ignored: true };
        return host.runEndedStep(ref, String(failed.run_id ?? runId), "failed", error.message);
      },
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

/** The function id of the handler for cancelled governance runs. */
export const CANCELLED_FUNCTION_ID = `${FUNCTION_ID}-cancelled`;

/**
 * Tells the gateway when a governance run is cancelled (dashboard, API, or a bulk cancellation): like a failed run,
 * it will never carry its call, and the gateway settles the call by policy.
 */
export function createCancellationFunction(client: Inngest.Any, host: WorkflowHost, appId: string) {
  return client.createFunction(
    {
      id: CANCELLED_FUNCTION_ID,
      name: "atlas-gateway governance run cancelled",
      triggers: [{ event: "inngest/function.cancelled", if: `event.data.function_id == ${JSON.stringify(`${appId}-${FUNCTION_ID}`)}` }],
      retries: WORKFLOW_RETRIES,
      checkpointing: false,
    },
    async ({ event }) => {
      const data = event.data as { run_id?: string; event?: { data?: { ref?: unknown } } };
      const ref = String(data.event?.data?.ref ?? "");
      if (!ref) return { ignored: true };
      return host.runEndedStep(ref, String(data.run_id ?? ""), "cancelled", "cancelled");
    },
  );
}
