import type { LedgerRecord } from "../ledger/ledger.js";
import type { Assessment } from "../risk/assess.js";
import type { FiredRule, Verdict } from "../risk/policy.js";

/**
 * Where a governed call stands. `assessing` is transient; at replay an unfinished `executing` becomes `unknown`
 * (never re-run) and a call the gateway never finished routing becomes `abandoned`.
 */
export type RequestStatus =
  | "assessing"
  | "pending"
  | "approved"
  | "executing"
  | "executed"
  | "denied"
  | "expired"
  | "unknown"
  | "abandoned";

export const TERMINAL_STATUSES: ReadonlySet<RequestStatus> = new Set(["executed", "denied", "expired", "unknown", "abandoned"]);

export interface RecordedDecision {
  decision: "approved" | "denied";
  source: "human" | "timeout" | "policy";
  reviewer?: string;
  reason?: string;
  /** How the reviewer was authenticated (see `DecisionInput.auth`). */
  auth?: string;
  at: string;
  /** The seq of the `decision.recorded` record (an approval is acted on only if a signed head covers it). */
  seq?: number;
}

/** One reviewer's approval of a call that needs several (the two-person rule, EU AI Act Art. 14(5)). */
export interface RecordedApproval {
  reviewer: string;
  reason?: string;
  at: string;
  /** The seq of the `decision.recorded` record (an approval is acted on only if a signed head covers it). */
  seq?: number;
}

/** Everything known about one request, rebuilt from the ledger. */
export interface RequestView {
  ref: string;
  status: RequestStatus;
  upstream: string;
  tool: string;
  name: string;
  args: Record<string, unknown>;
  /** The arguments a reviewer approved instead of `args` (approve with edits); the call runs with these. */
  editedArgs?: Record<string, unknown>;
  argsDigest: string;
  /** The tool's MCP annotations as the upstream declared them when the call was made. */
  annotations?: Record<string, unknown>;
  client?: { name?: string; version?: string };
  createdAt: string;
  updatedAt: string;
  assessment?: Assessment;
  autoApproved: boolean;
  deadline?: string;
  /** Distinct approvals a held call needs before it runs (a policy rule's `approvals`); absent means one. */
  approvalsRequired?: number;
  /** Approvals recorded so far, when more than one is required. */
  approvals?: RecordedApproval[];
  decision?: RecordedDecision;
  outcome?: "ok" | "error" | "unknown";
  /** Why an `abandoned` call was never run (the gateway stopped before routing it, or a halt outlasted its deadline). */
  abandonedReason?: string;
  /** Why an earlier approval of this request was not acted on (`decision.unproven`). */
  unproven?: string;
  result?: unknown;
  /**
   * Why the durable engine cannot (yet) carry this call, when it cannot: the Inngest engine's request event was
   * refused, its run has not started, or it failed or was cancelled (issue 14). Shown by `atlas_status` and `pending`.
   */
  problem?: { kind: "event_refused" | "run_not_started" | "run_ended"; cause: string; at: string };
  history: LedgerRecord[];
}

/** Ledger records that report an engine problem with a call, and the `problem.kind` each sets. */
const PROBLEM_RECORDS: Record<string, NonNullable<RequestView["problem"]>["kind"]> = {
  "workflow.event_refused": "event_refused",
  "workflow.stalled": "run_not_started",
  "workflow.run_ended": "run_ended",
};

/**
 * The record types that open a request. `request.created` starts the separate-records shape (held, denied, and
 * every call of a 0.1 ledger); `request.admitted` is an auto-approved call's created + assessed + auto_approved +
 * execution.started in one record (issue 12), followed only by `execution.finished`.
 */
export const CREATING_TYPES: ReadonlySet<string> = new Set(["request.created", "request.admitted"]);

/** An assessment as a record carries it (`request.assessed`'s data, or `request.admitted`'s `assessment`). */
export function assessmentFromData(data: Record<string, unknown>): Assessment {
  return {
    score: Number(data.score),
    classification: String(data.classification),
    reasons: (data.reasons ?? []) as string[],
    evaluator: String(data.evaluator),
    ...(Array.isArray(data.rules) ? { rules: data.rules as FiredRule[] } : {}),
    ...(data.verdict === "allow" || data.verdict === "review" || data.verdict === "deny" ? { verdict: data.verdict } : {}),
  };
}

/** The request table: a pure fold over ledger records. */
export class RequestTable {
  readonly byRef = new Map<string, RequestView>();
  /** args digest -> ref, for requests awaiting a human (identical calls share the ref). */
  private readonly openByDigest = new Map<string, string>();
  private readonly keepHistory: boolean;

  constructor(options: { keepHistory?: boolean } = {}) {
    this.keepHistory = options.keepHistory ?? false;
  }

  get(ref: string): RequestView | undefined {
    return this.byRef.get(ref);
  }

  openRefFor(digest: string): string | undefined {
    return this.openByDigest.get(digest);
  }

  /** Applies one record; returns the view it changed, if any. */
  apply(record: LedgerRecord): RequestView | undefined {
    const ref = record.ref;
    if (!ref) return undefined;
    const data = record.data;
    if (CREATING_TYPES.has(record.type)) {
      const admitted = record.type === "request.admitted";
      const view: RequestView = {
        ref,
        status: admitted ? "executing" : "assessing",
        upstream: String(data.upstream),
        tool: String(data.tool),
        name: String(data.name ?? data.tool),
        args: (data.args ?? {}) as Record<string, unknown>,
        argsDigest: String(data.args_digest),
        ...(data.client ? { client: data.client as RequestView["client"] } : {}),
        ...(data.annotations && typeof data.annotations === "object" ? { annotations: data.annotations as Record<string, unknown> } : {}),
        createdAt: record.ts,
        updatedAt: record.ts,
        ...(admitted && typeof data.assessment === "object" && data.assessment !== null ? { assessment: assessmentFromData(data.assessment as Record<string, unknown>) } : {}),
        autoApproved: admitted,
        history: this.keepHistory ? [record] : [],
      };
      this.byRef.set(ref, view);
      return view;
    }
    const view = this.byRef.get(ref);
    if (!view) return undefined;
    view.updatedAt = record.ts;
    if (this.keepHistory) view.history.push(record);
    switch (record.type) {
      case "request.assessed":
        view.assessment = assessmentFromData(data);
        break;
      case "request.auto_approved":
        view.status = "approved";
        view.autoApproved = true;
        break;
      case "request.held":
        view.status = "pending";
        view.deadline = String(data.deadline);
        if (Number(data.approvals_required) > 1) view.approvalsRequired = Number(data.approvals_required);
        this.openByDigest.set(view.argsDigest, ref);
        break;
      case "approval.recorded":
        (view.approvals ??= []).push({ reviewer: String(data.reviewer), ...(data.reason !== undefined ? { reason: String(data.reason) } : {}), at: record.ts });
        break;
      case "decision.recorded":
        view.decision = {
          decision: data.decision === "approved" ? "approved" : "denied",
          source: (data.source ?? "human") as RecordedDecision["source"],
          ...(data.reviewer !== undefined ? { reviewer: String(data.reviewer) } : {}),
          ...(data.reason !== undefined ? { reason: String(data.reason) } : {}),
          ...(data.auth_method !== undefined ? { auth: String(data.auth_method) } : data.auth !== undefined ? { auth: String(data.auth) } : {}),
          at: record.ts,
          seq: record.seq,
        };
        if (view.decision.decision === "approved" && data.edited_args && typeof data.edited_args === "object") view.editedArgs = data.edited_args as Record<string, unknown>;
        view.status = view.decision.decision === "approved" ? "approved" : view.decision.source === "timeout" ? "expired" : "denied";
        break;
      case "decision.unproven":
        // an approval the gateway cannot prove (issue 12): back to the reviewer, never run on its strength
        if (view.status === "approved") {
          view.status = "pending";
          delete view.decision;
          delete view.editedArgs;
          view.unproven = String(data.reason ?? "the approval cannot be proven");
          this.openByDigest.set(view.argsDigest, ref);
        }
        break;
      case "execution.started":
        view.status = "executing";
        break;
      case "execution.finished":
        view.status = "executed";
        view.outcome = data.outcome === "ok" ? "ok" : "error";
        view.result = data.result;
        break;
      case "execution.interrupted":
        view.status = "unknown";
        view.outcome = "unknown";
        break;
      case "request.abandoned":
        view.status = "abandoned";
        if (typeof data.reason === "string") view.abandonedReason = data.reason;
        break;
      case "workflow.step":
        // The run started after all: a "not started" warning no longer holds.
        if (view.problem?.kind === "run_not_started") delete view.problem;
        break;
      default: {
        const kind = PROBLEM_RECORDS[record.type];
        if (kind) view.problem = { kind, cause: String(data.cause ?? ""), at: record.ts };
        break;
      }
    }
    if (TERMINAL_STATUSES.has(view.status)) {
      if (this.openByDigest.get(view.argsDigest) === ref) this.openByDigest.delete(view.argsDigest);
      // A finished auto-approved call was answered in-line; a running gateway need not keep it (memory stays flat).
      if (view.autoApproved && !this.keepHistory) this.byRef.delete(ref);
    }
    return view;
  }

  /** Requests waiting for a human, oldest first. */
  pending(): RequestView[] {
    return [...this.byRef.values()].filter((view) => view.status === "pending");
  }
}
