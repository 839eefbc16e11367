import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { createHash } from "node:crypto";
import type { DecideOutcome, Decision, DecisionInput, ExecuteOptions, Executor, GovernanceEngine, GovernedCall } from "../governance/engine.js";
import { DeadlineTimers } from "../governance/deadlines.js";
import { GovernanceLog, settledAdmission } from "../governance/governanceLog.js";
import { UncertainOutcomeError } from "../errors.js";
import type { LedgerRecord, LedgerSink } from "../ledger/ledger.js";
import { TERMINAL_STATUSES, type RequestView } from "../governance/requests.js";
import { haltRefusal, type HaltFact } from "../governance/haltState.js";
import type { RiskEvaluator } from "../risk/assess.js";
import { decisionEvent, isPermanentSendError, REQUEST_EVENT, requestEvent, type DecisionEventData, type OutgoingEvent } from "./events.js";

/** Sends events to Inngest. Resolves once the event API accepted them; rejects otherwise. */
export interface EventDispatcher {
  send(event: OutgoingEvent): Promise<void>;
}

export interface InngestEngineOptions {
  ledgerPath: string;
  instance: string;
  /** This install's Inngest app id (carried in every event as `data.app`). */
  appId: string;
  evaluator: RiskEvaluator;
  threshold: number;
  reviewTimeoutMs: number;
  executor: Executor;
  dispatcher: EventDispatcher;
  /** How long a low-risk call waits for its run to execute it before the gateway runs it itself. */
  dispatchTimeoutMs: number;
  version: string;
  now?: () => Date;
  sink?: (path: string) => LedgerSink;
  log?: (line: string) => void;
  /** The reviewer notification, called from the run's `notify-reviewer` step. */
  onHeld?: (view: RequestView) => void;
  startInfo?: Record<string, unknown>;
  /** Told about every ledger record, replayed or new (tool pins fold the ledger this way). */
  onRecord?: (record: LedgerRecord) => void;
  /** Backoff for resending events: first retry after `baseMs`, doubling up to `maxMs`. */
  retry?: { baseMs: number; maxMs: number };
  /** How long after a held call's deadline the gateway expires it itself if the run never reported back. */
  expiryGraceMs?: number;
  /** `inngest.onRunFailure`: what happens to an approved call its run cannot carry (default `expire`). */
  onRunFailure?: "expire" | "local";
  /** `inngest.runStartTimeout`: after this long without a run for an accepted request event, say so. */
  runStartTimeoutMs?: number;
  /** `inngest.maxEventBytes`: a bigger request event is sent by reference. */
  maxEventBytes?: number;
  /** Attempts per event before the gateway gives up re-sending it (logged); default 30. */
  maxSendAttempts?: number;
}

/** What the run's `assess` step reports: where the workflow goes next. */
export interface AssessStepResult {
  ref: string;
  route: "auto" | "review" | "decided";
  status: string;
  score?: number;
  deadline?: string;
}

export interface DecisionStepResult {
  ref: string;
  decision: "approved" | "denied";
  status: string;
  via: "event" | "timeout" | "ledger";
}

export interface ExecuteStepResult {
  ref: string;
  status: string;
  executed: boolean;
  outcome?: "ok" | "error" | "unknown";
  /**
   * Who ran it: this run's step, or the gateway itself (a low-risk call no run picked up in time, or a held call its
   * run could not carry, with `inngest.onRunFailure: local`).
   */
  by?: "workflow" | "gateway";
  result_sha256?: string;
}

/** The ledger-side work of each workflow step; the Inngest function calls these inside `step.run`. */
export interface WorkflowHost {
  assessStep(ref: string, runId: string): Promise<AssessStepResult>;
  notifyStep(ref: string, runId: string): Promise<{ ref: string; notified: boolean; status: string }>;
  recordDecisionStep(ref: string, event: Partial<DecisionEventData> | null, runId: string): Promise<DecisionStepResult>;
  executeStep(ref: string, runId: string): Promise<ExecuteStepResult>;
  /** The run failed or was cancelled (Inngest's `inngest/function.failed` / `.cancelled`): it will not carry the call. */
  runEndedStep(ref: string, runId: string, outcome: "failed" | "cancelled", cause: string): Promise<{ ref: string; status: string }>;
}

/**
 * A step must stop the run without retrying: the call's outcome is unknown (at most once), or the ref is not this
 * gateway's. The function turns it into Inngest's `NonRetriableError`.
 */
export class WorkflowHalt extends Error {
  constructor(message: string) {
    super(message);
    this.name = "WorkflowHalt";
  }
}

interface Waiter {
  options: ExecuteOptions | undefined;
  resolve: (decision: Decision) => void;
  reject: (error: unknown) => void;
}

/** A low-risk call's status after each record that moves it on (the table itself forgets such calls once done). */
const AUTO_STATUS_AFTER: Record<string, string> = {
  "execution.started": "executing",
  "execution.finished": "executed",
  "execution.interrupted": "unknown",
  "request.abandoned": "abandoned",
};
const RECENT_AUTO_LIMIT = 10_000;
const TERMINAL: ReadonlySet<string> = TERMINAL_STATUSES;

/**
 * The `inngest` engine. The ledger stays the source of truth (so `pending`, `show`, `audit verify` and `atlas_status`
 * work unchanged); Inngest orchestrates: every call becomes a `governance-workflow` run whose steps do their work
 * here, in the process that owns the ledger and the upstreams.
 *
 * `submit` assesses the call itself, because the agent needs its answer now: a low-risk call is handed to its run
 * and the agent gets the real result once the run's `execute` step ran it (or, if no run picks it up within
 * `dispatchTimeoutMs`, the gateway runs it — the ledger guarantees only one of them does); a high-risk call is
 * held at once and answered PENDING REVIEW, and the run carries the durable part: notify, wait for the decision
 * or the deadline, execute at most once.
 *
 * Events Inngest might lose are re-sent with backoff until the run shows it got them: the request event until
 * Inngest accepted it, a decision until the run's `record-decision` step ran here.
 */
export class InngestEngine implements GovernanceEngine, WorkflowHost {
  readonly name = "inngest" as const;
  private readonly log: GovernanceLog;
  private readonly options: InngestEngineOptions;
  private readonly now: () => Date;
  private readonly deadlines: DeadlineTimers;
  /** Events being (re)sent, by `request:<ref>` / `decision:<ref>`; the timer of the next attempt, if one is due. */
  private readonly outboxes = new Map<string, NodeJS.Timeout | undefined>();
  private readonly waiters = new Map<string, Waiter>();
  /** Requests whose event Inngest accepted. */
  private readonly requestSent = new Set<string>();
  /** Decisions the run has consumed (its `record-decision` step ran). */
  private readonly decisionConsumed = new Set<string>();
  /** Held calls whose run has started (its `assess` step ran here). */
  private readonly runStarted = new Set<string>();
  /** Per held ref: the timer that reports a run that has not started, and the one that settles a stranded approval. */
  private readonly stallTimers = new Map<string, NodeJS.Timeout>();
  private readonly strandTimers = new Map<string, NodeJS.Timeout>();
  /** Low-risk refs and their last status: the table forgets finished auto-approved calls, their late runs must not. */
  private readonly recentAuto = new Map<string, string>();
  private readonly closers: (() => Promise<void>)[] = [];
  private upstreamsReady!: () => void;
  private readonly ready = new Promise<void>((resolve) => (this.upstreamsReady = resolve));
  private closed = false;

  private constructor(options: InngestEngineOptions) {
    this.options = options;
    this.now = options.now ?? (() => new Date());
    this.log = GovernanceLog.open(options.ledgerPath, {
      instance: options.instance,
      ...(options.now ? { now: options.now } : {}),
      ...(options.sink ? { sink: options.sink } : {}),
      ...(options.log ? { log: options.log } : {}),
      onRecord: (record) => {
        this.fold(record);
        options.onRecord?.(record);
      },
    });
    // A backstop only: the run's own waitForEvent timeout decides first; the grace covers its delivery.
    this.deadlines = new DeadlineTimers(this.log, this.now, (line) => options.log?.(line), options.expiryGraceMs ?? 60_000);
  }

  /** Opens the ledger, replays it, and settles what the last run of the gateway left unfinished. */
  static open(options: InngestEngineOptions): InngestEngine {
    const engine = new InngestEngine(options);
    engine.settleReplay();
    return engine;
  }

  /** Registers shutdown work of the Inngest runtime (the connect worker), run before the ledger closes. */
  onClose(closer: () => Promise<void>): void {
    this.closers.push(closer);
  }

  private fold(record: LedgerRecord): void {
    const ref = record.ref;
    if (!ref) return;
    switch (record.type) {
      case "workflow.event_sent":
        if (record.data.event === REQUEST_EVENT) this.requestSent.add(ref);
        break;
      case "workflow.step":
        if (record.data.step === "record-decision") this.decisionConsumed.add(ref);
        this.runStarted.add(ref);
        clearTimeout(this.stallTimers.get(ref));
        this.stallTimers.delete(ref);
        break;
      case "request.auto_approved":
        this.rememberAuto(ref, "approved");
        break;
      default: {
        const status = AUTO_STATUS_AFTER[record.type];
        if (status && this.recentAuto.has(ref)) this.rememberAuto(ref, status);
        break;
      }
    }
  }

  private rememberAuto(ref: string, status: string): void {
    this.recentAuto.delete(ref);
    this.recentAuto.set(ref, status);
    if (this.recentAuto.size > RECENT_AUTO_LIMIT) this.recentAuto.delete(this.recentAuto.keys().next().value!);
  }

  private settleReplay(): void {
    const log = this.log;
    log.record("gateway.started", undefined, { version: this.options.version, pid: process.pid, engine: this.name, app_id: this.options.appId, threshold: this.options.threshold, ...this.options.startInfo }, "sync");
    for (const view of [...log.table.byRef.values()]) {
      if (view.status === "assessing" || (view.status === "approved" && view.autoApproved)) {
        // The agent that asked is gone with the last process; like the local engine, such a call is never run.
        log.record("request.abandoned", view.ref, { reason: "the gateway stopped before this call was routed; it was never run" }, "sync");
      } else if (view.status === "executing") {
        log.record("execution.interrupted", view.ref, { outcome: "unknown", reason: "the gateway stopped while this call was running; whether it took effect is unknown, and it will not be re-run" }, "sync");
      } else if (view.status === "pending") {
        this.deadlines.schedule(view);
      }
    }
  }

  /** Upstreams are ready: steps may execute, and events the last process could not deliver are sent again. */
  resume(): void {
    this.upstreamsReady();
    for (const view of [...this.log.table.byRef.values()]) {
      if (view.autoApproved) continue;
      if (view.status === "approved") {
        // An approval the last process left whose run cannot carry it: settled by policy now (or, for a run that may
        // still start, at the deadline); any other approval is settled at the deadline if no run executes it.
        if (view.problem) {
          this.settleStranded(view.ref, view.problem.cause, view.problem.kind !== "run_not_started");
          if (view.problem.kind !== "run_not_started") continue;
        } else {
          this.armStrandTimer(view.ref);
        }
      }
      if (view.status === "pending" && this.requestSent.has(view.ref) && !this.runStarted.has(view.ref) && !view.problem) this.armStallTimer(view.ref);
      // Work is left (a decision to wait for, or an approved call to run): the run must exist.
      const open = view.status === "pending" || view.status === "approved";
      if (open && !this.requestSent.has(view.ref)) this.sendRequest(view.ref);
      // A decision is only worth delivering to a run that exists or is about to.
      if (view.decision && view.decision.source !== "timeout" && !this.decisionConsumed.has(view.ref) && (open || this.requestSent.has(view.ref))) {
        this.sendDecision(view.ref);
      }
    }
  }

  get(ref: string): RequestView | undefined {
    return this.log.table.get(ref);
  }

  pending(): RequestView[] {
    return this.log.table.pending();
  }

  async submit(call: GovernedCall, options?: ExecuteOptions): Promise<Decision> {
    const admission = await this.log.admit(call, { ...this.options, now: this.now, startAutoApproved: false });
    if (admission.kind !== "run") {
      return settledAdmission(admission, (view) => {
        this.deadlines.schedule(view);
        this.sendRequest(view.ref);
      });
    }
    return this.dispatchAutoApproved(admission.ref, options);
  }

  /**
   * A low-risk call: its run executes it and the agent gets the result. If the event cannot be sent, or no run starts
   * it within `dispatchTimeoutMs`, the gateway runs it itself; whichever comes first records `execution.started`,
   * and the other finds it started and leaves it alone.
   */
  private dispatchAutoApproved(ref: string, options: ExecuteOptions | undefined): Promise<Decision> {
    const view = this.log.table.get(ref)!;
    return new Promise<Decision>((resolve, reject) => {
      const cleanUp = () => {
        clearTimeout(timer);
        options?.signal?.removeEventListener("abort", onAbort);
        this.waiters.delete(ref);
      };
      this.waiters.set(ref, {
        options,
        resolve: (decision) => {
          cleanUp();
          resolve(decision);
        },
        reject: (error) => {
          cleanUp();
          reject(error);
        },
      });
      const claim = (reason: string) => {
        if (this.log.table.get(ref)?.status !== "approved") return;
        this.options.log?.(`${ref}: ${reason}; the gateway runs this low-risk call itself (recorded in the ledger; its run will not run it again)`);
        void this.runExecution(ref, "gateway", undefined, reason).catch(() => {});
      };
      const onAbort = () => {
        if (this.log.table.get(ref)?.status !== "approved") return;
        try {
          this.log.record("request.abandoned", ref, { reason: "the agent cancelled the call before it ran; it will not run" }, "batch");
        } catch {
          // the ledger already failed; the call still must not run
        }
        this.waiters.get(ref)?.resolve({ kind: "deny", ref, reason: "cancelled by the client before it ran" });
      };
      const timer = setTimeout(() => claim(`no Inngest run started it within ${this.options.dispatchTimeoutMs} ms`), this.options.dispatchTimeoutMs);
      timer.unref();
      options?.signal?.addEventListener("abort", onAbort, { once: true });
      if (options?.signal?.aborted) return onAbort();
      this.options.dispatcher.send(requestEvent(this.options.appId, this.options.instance, view, this.options.maxEventBytes)).then(
        () => undefined,
        (error: Error) => claim(`its event could not be sent to Inngest (${error.message})`),
      );
    });
  }

  recordEvent(type: string, data: Record<string, unknown>, ref?: string): Promise<void> {
    this.log.record(type, ref, data, "sync");
    return this.log.commit();
  }

  async decide(input: DecisionInput): Promise<DecideOutcome> {
    const outcome = this.log.decide(input, this.now());
    if (outcome.status === "not_found") return outcome;
    await this.log.commit();
    if (outcome.status === "applied" && outcome.view.status !== "pending") {
      this.deadlines.clear(input.ref);
      const view = this.log.table.get(input.ref);
      if (view?.status === "approved" && view.problem) {
        // Its run cannot deliver this decision (refused, failed, cancelled, or not started): the policy decides.
        this.settleStranded(input.ref, view.problem.cause, view.problem.kind !== "run_not_started");
      } else {
        this.sendDecision(input.ref);
        if (view?.status === "approved") this.armStrandTimer(input.ref);
      }
    }
    return outcome;
  }

  waitForOutcome(ref: string, ms: number, signal?: AbortSignal): Promise<RequestView | undefined> {
    return this.log.waitForOutcome(ref, ms, signal);
  }

  haltState(): HaltFact | undefined {
    return this.log.halt.current;
  }

  async applyHalt(fact: HaltFact): Promise<{ changed: boolean; state: HaltFact | undefined }> {
    const changed = this.log.recordHalt(fact);
    await this.log.commit();
    return { changed, state: this.log.halt.current };
  }


  // ---- workflow steps (run inside `step.run`, in this process) ----

  async assessStep(ref: string, runId: string): Promise<AssessStepResult> {
    const view = this.log.table.get(ref);
    if (!view) {
      const status = this.recentAuto.get(ref);
      if (status) return { ref, route: "auto", status };
      throw new WorkflowHalt(`no request ${ref} in this gateway's ledger: the workflow only governs calls this gateway received`);
    }
    if (view.status === "assessing") throw new Error(`${ref} is still being assessed`);
    const route = view.autoApproved ? "auto" : view.status === "pending" ? "review" : "decided";
    this.recordStep(ref, runId, "assess", { route, status: view.status }, "batch");
    return { ref, route, status: view.status, ...(view.assessment ? { score: view.assessment.score } : {}), ...(view.deadline ? { deadline: view.deadline } : {}) };
  }

  async notifyStep(ref: string, runId: string): Promise<{ ref: string; notified: boolean; status: string }> {
    const view = this.requireView(ref);
    const notified = view.status === "pending";
    if (notified) this.options.onHeld?.(view);
    this.recordStep(ref, runId, "notify-reviewer", { notified, channel: "stderr" }, "batch");
    return { ref, notified, status: view.status };
  }

  async recordDecisionStep(ref: string, event: Partial<DecisionEventData> | null, runId: string): Promise<DecisionStepResult> {
    const view = this.requireView(ref);
    let via: DecisionStepResult["via"] = "ledger";
    if (view.status === "pending") {
      if (event) {
        if (event.decision !== "approved" && event.decision !== "denied") throw new WorkflowHalt(`decision event for ${ref} has no valid decision`);
        // Inngest only hands the wait an event that arrived before the deadline, so it counts even if this step
        // runs a moment after it (no deadline check here, unlike a decision taken through `decide`).
        this.log.record("decision.recorded", ref, {
          decision: event.decision,
          source: "human",
          reviewer: event.reviewer || "inngest",
          ...(event.reason ? { reason: event.reason } : {}),
          via: "inngest-event",
        }, "sync");
        via = "event";
      } else {
        this.log.expire(ref);
        via = "timeout";
      }
    }
    const decided = this.requireView(ref);
    const decision = decided.decision?.decision ?? "denied";
    this.recordStep(ref, runId, "record-decision", { via, decision, status: decided.status }, "sync");
    await this.log.commit();
    this.deadlines.clear(ref);
    this.stopOutbox(`decision:${ref}`);
    return { ref, decision, status: decided.status, via };
  }

  async executeStep(ref: string, runId: string): Promise<ExecuteStepResult> {
    await this.ready;
    const view = this.log.table.get(ref);
    if (!view) {
      const status = this.recentAuto.get(ref);
      if (!status) throw new WorkflowHalt(`no request ${ref} in this gateway's ledger`);
      const executed = status === "executed" || status === "executing";
      return { ref, status, executed, ...(executed ? { by: "gateway" as const } : {}) };
    }
    switch (view.status) {
      case "approved":
        return this.runExecution(ref, "workflow", runId);
      case "executing":
        // Started by the gateway's own fallback for a low-risk call that no run picked up in time.
        return { ref, status: view.status, executed: true, by: "gateway" };
      case "executed":
        return { ref, status: view.status, executed: true, ...(view.outcome ? { outcome: view.outcome } : {}) };
      case "unknown":
        throw new WorkflowHalt(`${ref} was started before and its outcome is unknown; it is never run twice`);
      default:
        return { ref, status: view.status, executed: false };
    }
  }

  async runEndedStep(ref: string, runId: string, outcome: "failed" | "cancelled", cause: string): Promise<{ ref: string; status: string }> {
    const view = this.log.table.get(ref);
    if (!view || view.autoApproved || TERMINAL.has(view.status)) return { ref, status: view?.status ?? "unknown" };
    const why = `its Inngest run ${runId} ${outcome === "failed" ? `failed (${cause})` : "was cancelled"}, so Inngest will not carry this call`;
    this.log.record("workflow.run_ended", ref, { run_id: runId, outcome, cause: `${why}. ${this.policyText()}` }, "sync");
    await this.log.commit();
    this.options.log?.(`inngest: ${ref} (${view.name}): ${why}. ${this.policyText()}`);
    this.stopOutbox(`decision:${ref}`);
    this.stopOutbox(`request:${ref}`);
    if (this.log.table.get(ref)?.status === "approved") this.settleStranded(ref, why, true);
    return { ref, status: this.log.table.get(ref)?.status ?? "unknown" };
  }

  private policyText(): string {
    return this.options.onRunFailure === "local"
      ? "If a reviewer approves it, this gateway runs it itself, once (inngest.onRunFailure: local); otherwise it expires at its review deadline."
      : "A reviewer can still decide, but an approval will not run it (inngest.onRunFailure: expire); it expires at its review deadline.";
  }

  /**
   * An approved held call that its Inngest run cannot carry. With `onRunFailure: local` the gateway runs it itself,
   * at most once (the ledger's `execution.started` guards it against a late run); with `expire` it is abandoned —
   * at once when the run is known to be gone (`definite`), or at its review deadline when the run may yet start.
   */
  private settleStranded(ref: string, cause: string, definite: boolean): void {
    const view = this.log.table.get(ref);
    if (!view || view.status !== "approved" || view.autoApproved || this.closed) return;
    this.stopOutbox(`decision:${ref}`);
    if (this.options.onRunFailure === "local") {
      this.clearStrandTimer(ref);
      this.options.log?.(`inngest: ${ref} (${view.name}) is approved but ${cause}; running it on this gateway (inngest.onRunFailure: local)`);
      void this.ready.then(() => {
        if (this.log.table.get(ref)?.status !== "approved" || this.closed) return;
        return this.runExecution(ref, "gateway", undefined, `inngest.onRunFailure local: ${cause}`);
      }).catch((error: Error) => this.options.log?.(`inngest: ${ref}: ${error.message}`));
      return;
    }
    if (!definite) return this.armStrandTimer(ref);
    this.clearStrandTimer(ref);
    try {
      this.log.record("request.abandoned", ref, { reason: `approved, but ${cause}; it was not run (inngest.onRunFailure: expire). Call the tool again, or set inngest.onRunFailure to local` }, "sync");
      void this.log.commit().catch(() => {});
    } catch (error) {
      this.options.log?.(`ledger: could not record that ${ref} was abandoned: ${(error as Error).message}`);
      return;
    }
    this.options.log?.(`inngest: ${ref} (${view.name}) was approved, but ${cause}; it was not run (inngest.onRunFailure: expire)`);
  }

  /** At the review deadline (plus grace), an approval no run has executed is settled by policy. */
  private armStrandTimer(ref: string): void {
    const view = this.log.table.get(ref);
    if (!view?.deadline || this.closed) return;
    this.clearStrandTimer(ref);
    const due = Date.parse(view.deadline) + (this.options.expiryGraceMs ?? 60_000) - this.now().getTime();
    const timer = setTimeout(() => {
      this.strandTimers.delete(ref);
      if (this.log.table.get(ref)?.status !== "approved") return;
      this.settleStranded(ref, "no Inngest run executed it by its review deadline", true);
    }, Math.min(Math.max(due, 0), 2_147_483_647));
    timer.unref();
    this.strandTimers.set(ref, timer);
  }

  private clearStrandTimer(ref: string): void {
    clearTimeout(this.strandTimers.get(ref));
    this.strandTimers.delete(ref);
  }

  /** After Inngest accepted a held call's event, its run should start soon; if not (an unsynced app), say so. */
  private armStallTimer(ref: string): void {
    if (this.closed || this.runStarted.has(ref) || this.stallTimers.has(ref)) return;
    const ms = this.options.runStartTimeoutMs ?? 60_000;
    const timer = setTimeout(() => {
      this.stallTimers.delete(ref);
      const view = this.log.table.get(ref);
      if (!view || this.runStarted.has(ref) || (view.status !== "pending" && view.status !== "approved") || view.problem) return;
      const cause = `Inngest accepted its request event, but no run has started within ${ms < 10_000 ? `${ms} ms` : `${Math.round(ms / 1000)} s`}: is app '${this.options.appId}' synced with Inngest, and can Inngest reach this gateway? (run 'atlas-gateway doctor')`;
      this.recordQuietly("workflow.stalled", ref, { cause: `${cause}. ${this.policyText()}` }, "sync");
      this.options.log?.(`inngest: ${ref} (${view.name}): ${cause}`);
      if (view.status === "approved") this.settleStranded(ref, cause, false);
    }, ms);
    timer.unref();
    this.stallTimers.set(ref, timer);
  }

  /** Runs an approved call once: `execution.started` is written (and, for a held call, fsynced) before the upstream sees it. */
  private async runExecution(ref: string, by: "workflow" | "gateway", runId?: string, reason?: string): Promise<ExecuteStepResult> {
    const view = this.log.table.get(ref)!;
    const waiter = this.waiters.get(ref);
    const auto = view.autoApproved;
    const halted = this.log.halt.active;
    if (halted) {
      if (auto) {
        this.recordQuietly("request.abandoned", ref, { reason: "the gateway was halted before this call started; it was never run", halt_id: halted.id }, "batch");
        waiter?.resolve({ kind: "deny", ref, reason: haltRefusal(halted) });
        return { ref, status: "abandoned", executed: false };
      }
      // An approved held call waits out the halt: Inngest retries this step with backoff and it runs after resume.
      throw new Error(`${ref} is approved but the gateway is halted; the step is retried after resume`);
    }
    try {
      this.log.record("execution.started", ref, { by, ...(runId ? { run_id: runId } : {}), ...(reason ? { reason } : {}) }, auto ? "batch" : "sync");
      // an auto-approved call's records are written (one write per event-loop turn) before the upstream sees it
      if (auto) await this.log.whenWritten();
      else await this.log.commit();
    } catch (error) {
      const message = `the audit ledger cannot be written, so nothing was run (fail closed): ${(error as Error).message}`;
      waiter?.resolve({ kind: "deny", ref, reason: message });
      throw new WorkflowHalt(message);
    }
    let result: CallToolResult;
    try {
      result = await this.options.executor({ upstream: view.upstream, tool: view.tool, args: view.editedArgs ?? view.args }, waiter?.options);
    } catch (error) {
      const message = (error as Error).message;
      if (error instanceof UncertainOutcomeError) {
        // Timed out, crashed or cancelled mid-call (issue 10): it may have acted, so `unknown`, never `error`, and
        // the step returns (Inngest memoises it) so nothing runs it again.
        this.recordQuietly("execution.interrupted", ref, { outcome: "unknown", reason: message, by, ...(runId ? { run_id: runId } : {}) }, "sync");
        await this.log.commit().catch(() => {});
        waiter?.resolve({ kind: "allow", ref, result: {
          content: [{ type: "text", text: `OUTCOME UNKNOWN (Ref: ${ref}): ${message}. The action may or may not have taken effect; it will not be re-run. A human should check the target system.` }],
          isError: true,
        } });
        return { ref, status: "unknown", executed: true, outcome: "unknown", by };
      }
      this.recordQuietly("execution.finished", ref, auto ? { outcome: "error", error: message } : { outcome: "error", result: { content: [{ type: "text", text: `Execution failed: ${message}` }], isError: true } }, auto ? "batch" : "sync");
      await this.log.commit().catch(() => {});
      waiter?.reject(error);
      // Never retried blindly: the upstream may have acted before it failed.
      throw new WorkflowHalt(`execution of ${ref} failed and is not retried (at most once): ${message}`);
    }
    const outcome = result.isError ? "error" : "ok";
    const digest = digestResult(result);
    // Auto-approved results go back in-line, so the ledger keeps their digest; a held call's result is fetched later.
    this.recordQuietly("execution.finished", ref, auto ? { outcome, result_sha256: digest } : { outcome, result }, auto ? "batch" : "sync");
    if (!auto) await this.log.commit().catch(() => {});
    waiter?.resolve({ kind: "allow", ref, result });
    return { ref, status: "executed", executed: true, outcome, by, result_sha256: digest };
  }

  // ---- delivery of events Inngest may lose ----

  private sendRequest(ref: string): void {
    this.startOutbox(`request:${ref}`, async () => {
      const view = this.log.table.get(ref);
      if (!view || this.requestSent.has(ref) || TERMINAL.has(view.status) || view.problem?.kind === "event_refused") return true;
      const event = requestEvent(this.options.appId, this.options.instance, view, this.options.maxEventBytes);
      try {
        await this.options.dispatcher.send(event);
      } catch (error) {
        if (!isPermanentSendError(error)) throw error;
        const cause = `Inngest refused its request event (${(error as Error).message}), so no run will start for it`;
        this.recordQuietly("workflow.event_refused", ref, { event: REQUEST_EVENT, cause: `${cause}. ${this.policyText()}` }, "sync");
        this.options.log?.(`inngest: ${ref} (${view.name}): ${cause}. ${this.policyText()}`);
        if (this.log.table.get(ref)?.status === "approved") this.settleStranded(ref, cause, true);
        return true;
      }
      const byReference = (event.data.call as { by_reference?: { bytes: number } }).by_reference;
      if (byReference) this.options.log?.(`inngest: ${ref}: the call (${byReference.bytes} bytes) is larger than inngest.maxEventBytes; sent by reference, its arguments stay in the ledger`);
      this.recordQuietly("workflow.event_sent", ref, { event: REQUEST_EVENT, ...(byReference ? { by_reference: byReference } : {}) }, "batch");
      if (!view.autoApproved) this.armStallTimer(ref);
      return true;
    });
  }

  /** Sends the ledger's decision for `ref`, and again with backoff until the run's `record-decision` step ran. */
  private sendDecision(ref: string): void {
    this.startOutbox(`decision:${ref}`, async () => {
      const view = this.log.table.get(ref);
      const decision = view?.decision;
      // Nothing left to deliver to: consumed, settled, or the run is gone.
      // (A denial is terminal here but still ends the waiting run at once instead of at its deadline.)
      const settled = TERMINAL.has(view?.status ?? "") && view?.status !== "denied";
      if (!view || !decision || this.decisionConsumed.has(ref) || settled || (view.problem && view.problem.kind !== "run_not_started")) return true;
      await this.options.dispatcher.send(decisionEvent({
        ref,
        app: this.options.appId,
        decision: decision.decision,
        reviewer: decision.reviewer ?? "reviewer",
        ...(decision.reason ? { reason: decision.reason } : {}),
      }));
      return this.decisionConsumed.has(ref);
    });
  }

  /** Runs `attempt` now and then with backoff (jittered, capped) until it returns true or the engine closes. */
  private startOutbox(key: string, attempt: () => Promise<boolean>): void {
    if (this.closed || this.outboxes.has(key)) return;
    const retry = this.options.retry ?? { baseMs: 1000, maxMs: 5 * 60_000 };
    const maxAttempts = this.options.maxSendAttempts ?? 30;
    let delay = retry.baseMs;
    let failures = 0;
    let attempts = 0;
    const what = key.replace(":", " event for ");
    const tick = async () => {
      if (this.closed) return;
      let done = false;
      attempts += 1;
      try {
        done = await attempt();
      } catch (error) {
        failures += 1;
        if (failures === 1 || failures % 10 === 0) this.options.log?.(`inngest: sending ${what} failed (${(error as Error).message}); retrying with backoff`);
      }
      if (!done && attempts >= maxAttempts) {
        // Bounded: the deadline backstop and the run's own timeout settle the call from here.
        this.options.log?.(`inngest: gave up sending ${what} after ${attempts} attempts; the call is settled at its review deadline`);
        done = true;
      }
      if (done || this.closed || !this.outboxes.has(key)) {
        // delivered, shutting down, or stopped (the run consumed it) while this attempt was under way
        this.outboxes.delete(key);
        return;
      }
      const timer = setTimeout(() => void tick(), delay * (0.8 + Math.random() * 0.4));
      timer.unref();
      this.outboxes.set(key, timer);
      delay = Math.min(delay * 2, retry.maxMs);
    };
    this.outboxes.set(key, undefined);
    void tick();
  }

  private stopOutbox(key: string): void {
    clearTimeout(this.outboxes.get(key));
    this.outboxes.delete(key);
  }

  private requireView(ref: string): RequestView {
    const view = this.log.table.get(ref);
    if (!view) throw new WorkflowHalt(`no request ${ref} in this gateway's ledger`);
    return view;
  }

  private recordStep(ref: string, runId: string, step: string, data: Record<string, unknown>, durability: "sync" | "batch"): void {
    this.log.record("workflow.step", ref, { step, run_id: runId, ...data }, durability);
  }

  /** After the upstream ran, a failing ledger must not turn a real result into an error; it is logged instead. */
  private recordQuietly(type: string, ref: string, data: Record<string, unknown>, durability: "sync" | "batch"): void {
    try {
      this.log.record(type, ref, data, durability);
    } catch (error) {
      this.options.log?.(`ledger: could not record ${type} for ${ref}: ${(error as Error).message}`);
    }
  }

  async close(reason = "shutdown"): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.deadlines.close();
    for (const timer of [...this.outboxes.values(), ...this.stallTimers.values(), ...this.strandTimers.values()]) clearTimeout(timer);
    this.outboxes.clear();
    this.stallTimers.clear();
    this.strandTimers.clear();
    for (const closer of this.closers.splice(0)) await closer().catch((error: Error) => this.options.log?.(`inngest: ${error.message}`));
    for (const [ref, waiter] of [...this.waiters]) {
      // Not started yet: it never will be (the next start records it abandoned). Started: its executor finishes or fails.
      if (this.log.table.get(ref)?.status === "approved") waiter.resolve({ kind: "deny", ref, reason: "the gateway is shutting down; the call was not run" });
    }
    try {
      this.log.record("gateway.stopped", undefined, { reason }, "sync");
    } catch {
      // a failed ledger has already been reported; closing must still release it
    }
    await this.log.close();
  }
}

function digestResult(result: CallToolResult): string {
  return createHash("sha256").update(JSON.stringify(result)).digest("hex");
}
