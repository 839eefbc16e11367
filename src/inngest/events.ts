import { maskSecrets, maskText } from "../mask.js";
import type { RequestView } from "../governance/requests.js";

/** Starts one governance run per governed tool call. */
export const REQUEST_EVENT = "atlas/tool.execution_requested";
/** A reviewer's decision; the waiting run matches it on `data.ref` (and on `data.app`, see `decisionMatch`). */
export const DECISION_EVENT = "atlas/review.decision";
/** The workflow's function id (Inngest shows it as `<app id>-governance-workflow`). */
export const FUNCTION_ID = "governance-workflow";
/**
 * The event field that `@inngest/middleware-encryption` encrypts: the tool call. `ref` and `app` stay in clear
 * because Inngest matches on them.
 */
export const ENCRYPTED_FIELD = "call";

export interface RequestEventData {
  ref: string;
  app: string;
  instance: string;
  /** How the gateway routed the call: run it at once, or hold it for a reviewer until `deadline`. */
  route: "auto" | "review";
  deadline?: string;
  /**
   * What the dashboard shows; secrets masked, and encrypted when `inngest.encryptionKey` is set. `by_reference`:
   * the arguments were too large for an event and stay in the gateway's ledger (the run only ever needs the ref).
   */
  call: { upstream: string; tool: string; name: string; args: unknown; args_digest: string; score?: number; reasons?: string[]; by_reference?: { bytes: number } };
}

export interface DecisionEventData {
  ref: string;
  app: string;
  decision: "approved" | "denied";
  reviewer: string;
  reason?: string;
}

export interface OutgoingEvent {
  name: string;
  id?: string;
  data: Record<string, unknown>;
}

/**
 * The request event for a routed call. Its id is the ref scoped by the app id: a resend can never start a second
 * run (Inngest drops a repeated event id for 24 h), and two installs on one account never drop each other's events
 * (event ids are deduplicated account-wide, and refs are only unique within one ledger).
 */
export function requestEvent(app: string, instance: string, view: RequestView, maxBytes = Number.POSITIVE_INFINITY): OutgoingEvent {
  const data: RequestEventData = {
    ref: view.ref,
    app,
    instance,
    route: view.autoApproved ? "auto" : "review",
    ...(view.deadline && !view.autoApproved ? { deadline: view.deadline } : {}),
    call: {
      upstream: view.upstream,
      tool: view.tool,
      name: view.name,
      args: maskSecrets(view.args),
      args_digest: view.argsDigest,
      ...(view.assessment ? { score: view.assessment.score, reasons: view.assessment.reasons.map(maskText) } : {}),
    },
  };
  const event: OutgoingEvent = { name: REQUEST_EVENT, id: requestEventId(app, view.ref), data: data as unknown as Record<string, unknown> };
  const bytes = Buffer.byteLength(JSON.stringify(event));
  if (bytes <= maxBytes) return event;
  // Inngest refuses events over its size limit (400 "event too large"), and then no run ever starts: send the call
  // by reference instead. Nothing is lost: the workflow's steps read the call from the ledger by its ref.
  data.call = { ...data.call, args: "[in the gateway's ledger: too large for an Inngest event]", by_reference: { bytes } };
  return event;
}

/**
 * Whether the event API refused an event for good (bad key, malformed or oversized payload), so re-sending it can
 * never succeed. The SDK reports the server's `error` text, not the status; these are the texts Inngest answers.
 */
export function isPermanentSendError(error: unknown): boolean {
  return /too large|event key|cannot process|unable to parse|forbidden|invalid|name is required/i.test((error as Error)?.message ?? "");
}

export function requestEventId(app: string, ref: string): string {
  return `${app}:${ref}`;
}

/**
 * A decision event. It has no id on purpose: it is re-sent until the run has consumed it, and a fixed id would make
 * Inngest drop every resend — including the one that arrives after the wait exists.
 */
export function decisionEvent(data: DecisionEventData): OutgoingEvent {
  return { name: DECISION_EVENT, data: { ...data } };
}

/**
 * The wait's match: the same ref, the same app (refs are only unique per ledger), and a well-formed decision, so a
 * malformed event cannot consume the wait.
 */
export const DECISION_MATCH =
  "async.data.ref == event.data.ref && async.data.app == event.data.app && (async.data.decision == 'approved' || async.data.decision == 'denied')";

/** Only this install's function runs for this install's requests (the trigger event name is account-wide). */
export function requestTriggerFilter(app: string): string {
  return `event.data.app == ${JSON.stringify(app)}`;
}
