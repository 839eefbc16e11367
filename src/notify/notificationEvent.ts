import { randomUUID } from "node:crypto";
import type { HaltFact } from "../governance/haltState.js";
import type { RequestView } from "../governance/requests.js";
import { maskSecrets } from "../mask.js";

/** What a notification is about: a held call's life (held → approvals → decided → executed, or expired) and the stop button. */
export type NotificationType =
  | "call.held"
  | "call.approval"
  | "call.decided"
  | "call.executed"
  | "call.expired"
  | "gateway.halted"
  | "gateway.resumed"
  | "test";

/** A held call as a reviewer needs to see it; arguments are already masked. */
export interface CallSummary {
  ref: string;
  tool: string;
  upstream: string;
  status: string;
  args: unknown;
  score?: number;
  classification?: string;
  reasons: string[];
  rules: string[];
  deadline?: string;
  decision?: { decision: string; source: string; reviewer?: string; reason?: string };
  approvals?: { count: number; required: number; reviewers: string[] };
  outcome?: string;
}

/**
 * One notification, the same for every sink. `id` is the Standard Webhooks `webhook-id`: it stays the same across
 * retries, so a receiver that got an attempt whose answer was lost can drop the duplicate.
 */
export interface NotificationEvent {
  id: string;
  type: NotificationType;
  at: string;
  instance: string;
  /** One plain sentence: Slack's fallback text, log lines, and what a receiver shows first. */
  summary: string;
  ref?: string;
  call?: CallSummary;
  halt?: { halted: boolean; by: string; reason?: string; at: string };
  /** Where a reviewer opens the call (`<publicUrl>/review?ref=…`), when `publicUrl` is configured. */
  reviewUrl?: string;
}

export interface EventContext {
  instance: string;
  publicUrl?: string;
  now?: Date;
}

function reviewUrl(publicUrl: string | undefined, ref?: string): string | undefined {
  if (!publicUrl) return undefined;
  const base = `${publicUrl.replace(/\/+$/, "")}/review`;
  return ref ? `${base}?ref=${encodeURIComponent(ref)}` : base;
}

/** The masked, reviewer-facing summary of a request. Masking (`maskSecrets`) applies to every value sent anywhere. */
export function summariseCall(view: RequestView): CallSummary {
  return maskSecrets({
    ref: view.ref,
    tool: view.name,
    upstream: view.upstream,
    status: view.status,
    args: view.args,
    ...(view.assessment ? { score: view.assessment.score, classification: view.assessment.classification } : {}),
    reasons: view.assessment?.reasons ?? [],
    rules: (view.assessment?.rules ?? []).map((rule) => rule.id),
    ...(view.deadline ? { deadline: view.deadline } : {}),
    ...(view.decision ? { decision: { decision: view.decision.decision, source: view.decision.source, ...(view.decision.reviewer ? { reviewer: view.decision.reviewer } : {}), ...(view.decision.reason ? { reason: view.decision.reason } : {}) } } : {}),
    ...(view.approvalsRequired && view.approvalsRequired > 1
      ? { approvals: { count: view.approvals?.length ?? 0, required: view.approvalsRequired, reviewers: (view.approvals ?? []).map((approval) => approval.reviewer) } }
      : {}),
    ...(view.outcome ? { outcome: view.outcome } : {}),
  }) as CallSummary;
}

function describeCall(type: NotificationType, call: CallSummary): string {
  const what = `${call.tool} (${call.ref})`;
  switch (type) {
    case "call.held":
      return `Held for review: ${what}, risk ${call.score ?? "?"}${call.classification ? ` (${call.classification})` : ""}${call.approvals ? `, needs ${call.approvals.required} approvals` : ""}`;
    case "call.approval":
      return `Approved by ${call.approvals?.reviewers.at(-1) ?? "a reviewer"}: ${what}, ${call.approvals?.count ?? 1} of ${call.approvals?.required ?? 1} approvals`;
    case "call.decided":
      return `${call.decision?.decision === "approved" ? "Approved" : "Denied"} by ${call.decision?.reviewer ?? "a reviewer"}: ${what}${call.decision?.reason ? ` (${call.decision.reason})` : ""}`;
    case "call.executed":
      return `Executed: ${what}, outcome ${call.outcome ?? "?"}`;
    case "call.expired":
      return `Expired without a decision: ${what}; it was not run`;
    default:
      return what;
  }
}

/** A notification about one request. */
export function callEvent(type: NotificationType, view: RequestView, context: EventContext): NotificationEvent {
  const call = summariseCall(view);
  const url = reviewUrl(context.publicUrl, view.ref);
  return {
    id: `msg_${randomUUID()}`,
    type,
    at: (context.now ?? new Date()).toISOString(),
    instance: context.instance,
    summary: describeCall(type, call),
    ref: view.ref,
    call,
    ...(url ? { reviewUrl: url } : {}),
  };
}

/** A notification that the stop button was pressed or released. */
export function haltEvent(fact: HaltFact, context: EventContext): NotificationEvent {
  const url = reviewUrl(context.publicUrl);
  const halt = maskSecrets({ halted: fact.halted, by: fact.by, ...(fact.reason ? { reason: fact.reason } : {}), at: fact.at }) as NotificationEvent["halt"] & object;
  return {
    id: `msg_${randomUUID()}`,
    type: fact.halted ? "gateway.halted" : "gateway.resumed",
    at: (context.now ?? new Date()).toISOString(),
    instance: context.instance,
    summary: fact.halted
      ? `HALTED by ${halt.by}${halt.reason ? `: ${halt.reason}` : ""}. Every tool call is refused until resume.`
      : `Resumed by ${halt.by}${halt.reason ? `: ${halt.reason}` : ""}. Tool calls are routed by policy again.`,
    halt,
    ...(url ? { reviewUrl: url } : {}),
  };
}

/** `doctor --notify-test`: proves a sink is reachable and, for webhooks, that the receiver accepts our signature. */
export function testEvent(context: EventContext): NotificationEvent {
  return {
    id: `msg_${randomUUID()}`,
    type: "test",
    at: (context.now ?? new Date()).toISOString(),
    instance: context.instance,
    summary: "Test notification from atlas-gateway doctor: this sink is reachable.",
  };
}

/** "2h05m", "45s", "expired": the time a held call has left before it expires as denied. */
export function timeLeft(deadline: string | undefined, now: Date): string | undefined {
  if (!deadline) return undefined;
  const seconds = Math.round((Date.parse(deadline) - now.getTime()) / 1000);
  if (seconds <= 0) return "expired";
  if (seconds < 60) return `${seconds}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m`;
  return `${Math.floor(seconds / 3600)}h${String(Math.floor((seconds % 3600) / 60)).padStart(2, "0")}m`;
}
