import { randomUUID } from "node:crypto";
import { digestCall, Ledger, type Durability, type LedgerRecord, type LedgerSink, type OpenLedgerOptions } from "../ledger/ledger.js";
import { CheckpointCarry, refValue } from "./checkpointCarry.js";
import type { DecideOutcome, Decision, DecisionInput, GovernedCall } from "./engine.js";
import { LedgerError } from "../errors.js";
import { RequestTable, TERMINAL_STATUSES, type RequestView } from "./requests.js";
import { haltRecordData, HaltState, haltRefusal, HALTED_RECORD, isNewerHalt, RESUMED_RECORD, type HaltFact } from "./haltState.js";
import { assessRisk, denialReason, routeAssessment, type RiskEvaluator } from "../risk/assess.js";

export const REF_PATTERN = /^evt_[0-9a-f]{8}$/;

/** How a new call was admitted: its records are written (and fsynced where a human depends on them). */
export type Admission =
  | { kind: "duplicate"; view: RequestView }
  | { kind: "run"; ref: string }
  | { kind: "hold"; view: RequestView }
  | { kind: "deny"; ref: string; reason: string }
  /** The gateway is halted: nothing was created or run (the refusal is recorded as `request.refused`). */
  | { kind: "halted"; reason: string };

/**
 * The decision for an admission that ends here (everything but `run`), the same in every engine. `onHold` is the
 * engine's own step for a newly held call (deadline, notification or workflow event).
 */
export function settledAdmission(admission: Exclude<Admission, { kind: "run" }>, onHold: (view: RequestView) => void): Decision {
  switch (admission.kind) {
    case "duplicate":
      return { kind: "hold", ref: admission.view.ref, view: admission.view, deduplicated: true };
    case "deny":
      return admission;
    case "halted":
      return { kind: "deny", reason: admission.reason, halted: true };
    case "hold":
      onHold(admission.view);
      return { kind: "hold", ref: admission.view.ref, view: admission.view, deduplicated: false };
  }
}

export interface AdmitOptions {
  evaluator: RiskEvaluator;
  threshold: number;
  reviewTimeoutMs: number;
  now: () => Date;
  /**
   * The engine runs an auto-approved call itself, right away: it is recorded as one `request.admitted` record.
   * Otherwise (the Inngest engine, whose run records `execution.started`) it keeps the separate
   * created / assessed / auto_approved records.
   */
  startAutoApproved: boolean;
}

export interface GovernanceLogOptions {
  instance: string;
  now?: () => Date;
  sink?: (path: string) => LedgerSink;
  keepHistory?: boolean;
  log?: (line: string) => void;
  /** Told about every record, replayed or new, after the request table (tool pins fold the ledger this way). */
  onRecord?: (record: LedgerRecord) => void;
  /** Ledger tuning and test hooks (segment size, checkpoint interval, rollover crash points). */
  ledger?: LedgerTuning;
}

export type LedgerTuning = Pick<OpenLedgerOptions, "segmentRecords" | "checkpointEveryMs" | "onRolloverStep" | "retention">;

/**
 * A ledger and the request table folded from it, kept in step: every record is applied the moment it is written,
 * and listeners on a ref hear about it. Used by the local engine and by reviewer commands when no gateway runs.
 */
export class GovernanceLog {
  readonly ledger: Ledger;
  readonly table: RequestTable;
  /** The stop button's state, folded from the same records as the table. */
  readonly halt: HaltState;
  /** What the next checkpoint carries, and the window of refs a new ref must not repeat. */
  private readonly carry: CheckpointCarry;
  private readonly listeners = new Map<string, Set<(view: RequestView) => void>>();
  /** The latest admission in progress per call digest: an identical call waits for it, so it can find it pending. */
  private readonly admitting = new Map<string, Promise<unknown>>();
  private readonly onRecord: ((record: LedgerRecord) => void) | undefined;

  private constructor(ledger: Ledger, table: RequestTable, halt: HaltState, carry: CheckpointCarry, onRecord: ((record: LedgerRecord) => void) | undefined) {
    this.ledger = ledger;
    this.table = table;
    this.halt = halt;
    this.carry = carry;
    this.onRecord = onRecord;
  }

  /**
   * Opens the ledger (replaying from its last checkpoint) and refuses to act on approvals it cannot prove: an approval
   * recorded after the last signed head (written but never covered by a signature, e.g. just before a crash, or in a
   * ledger whose head file is gone) is recorded as `decision.unproven` and the request waits for a reviewer again.
   */
  static open(path: string, options: GovernanceLogOptions): GovernanceLog {
    const table = new RequestTable({ keepHistory: options.keepHistory ?? false });
    const carry = new CheckpointCarry(table, options.now ?? (() => new Date()));
    const halt = new HaltState();
    const ledger = Ledger.open(path, {
      instance: options.instance,
      ...(options.now ? { now: options.now } : {}),
      ...(options.sink ? { sink: options.sink } : {}),
      ...(options.log ? { log: options.log } : {}),
      ...options.ledger,
      checkpointState: () => carry.snapshot(),
      onRecord: (record) => {
        table.apply(record);
        carry.observe(record);
        halt.apply(record);
        options.onRecord?.(record);
      },
    });
    const log = new GovernanceLog(ledger, table, halt, carry, options.onRecord);
    log.settleUnproven();
    return log;
  }

  private settleUnproven(): void {
    for (const view of [...this.table.byRef.values()]) {
      const decision = view.decision;
      if (view.status !== "approved" || view.autoApproved || !decision || decision.seq === undefined || decision.seq < this.ledger.provenSize) continue;
      this.record("decision.unproven", view.ref, {
        decision_seq: decision.seq,
        reviewer: decision.reviewer ?? null,
        reason: `the approval (seq ${decision.seq}) is not covered by the ledger's signed head (${this.ledger.provenSize} records), so it cannot be proven and is not acted on; a reviewer must decide again`,
      }, "sync");
    }
  }

  /**
   * A fresh `evt_` + 8 hex ref, unique among the refs in `CheckpointCarry`'s window (see there). The hex is the first
   * 8 (fully random) digits of a v4 UUID: `randomUUID` draws from a cached entropy pool, where `randomBytes(4)` costs
   * a trip into OpenSSL on every call.
   */
  newRef(): string {
    for (;;) {
      const ref = `evt_${randomUUID().slice(0, 8)}`;
      // reserved now: the call's first record is written only after its assessment
      if (this.carry.reserve(refValue(ref))) return ref;
    }
  }

  /** Appends and applies one record. Throws `LedgerError` when it cannot be written (callers fail closed). */
  record(type: string, ref: string | undefined, data: Record<string, unknown>, durability: Durability): LedgerRecord {
    const record = this.ledger.append(type, ref, data, durability);
    const view = this.table.apply(record);
    this.carry.observe(record);
    this.halt.apply(record);
    this.onRecord?.(record);
    if (view && ref) for (const listener of this.listeners.get(ref) ?? []) listener(view);
    return record;
  }

  /** Calls `listener` on every change to `ref`; returns the unsubscribe function. */
  subscribe(ref: string, listener: (view: RequestView) => void): () => void {
    let set = this.listeners.get(ref);
    if (!set) this.listeners.set(ref, (set = new Set()));
    set.add(listener);
    return () => {
      set.delete(listener);
      if (set.size === 0) this.listeners.delete(ref);
    };
  }

  /**
   * The intake both engines share: an identical call already pending is a duplicate; otherwise the call is recorded,
   * assessed and routed. A `run` admission resolves only once its records are written, so nothing reaches the
   * upstream unrecorded; a ledger that cannot be written turns every route into a fail-closed `deny`.
   */
  admit(call: GovernedCall, options: AdmitOptions): Promise<Admission> {
    const digest = digestCall(call.upstream, call.tool, call.args);
    // Identical calls are admitted one after another: an agent's parallel calls would otherwise all pass the
    // duplicate check while the first is still being assessed, and queue one held request (and one approval) each.
    const earlier = this.admitting.get(digest);
    const admission = earlier ? earlier.then(() => this.admitOnce(call, digest, options)) : this.admitOnce(call, digest, options);
    const settled = admission.then(() => {}, () => {});
    this.admitting.set(digest, settled);
    void settled.then(() => {
      if (this.admitting.get(digest) === settled) this.admitting.delete(digest);
    });
    return admission;
  }

  private async admitOnce(call: GovernedCall, digest: string, options: AdmitOptions): Promise<Admission> {
    const halted = this.halt.active;
    if (halted) {
      const reason = haltRefusal(halted);
      try {
        // No ref: nothing was created. The record says what was refused while halted, without its arguments.
        this.record("request.refused", undefined, { upstream: call.upstream, tool: call.tool, name: call.name, args_digest: digest, halt_id: halted.id, reason: "halted" }, "batch");
      } catch {
        // refused either way
      }
      return { kind: "halted", reason };
    }
    const openRef = this.table.openRefFor(digest);
    const open = openRef ? this.table.get(openRef) : undefined;
    if (open && open.status === "pending") return { kind: "duplicate", view: open };

    const ref = this.newRef();
    const created: Record<string, unknown> = {
      upstream: call.upstream,
      tool: call.tool,
      name: call.name,
      args: call.args,
      args_digest: digest,
      ...(call.annotations ? { annotations: call.annotations } : {}),
      ...(call.client ? { client: call.client } : {}),
    };
    try {
      const assessment = await assessRisk(options.evaluator, call);
      const haltedMeanwhile = this.halt.active as HaltFact | undefined; // re-read: an await passed since the check above
      if (haltedMeanwhile) {
        // The stop button was pressed while a model assessed this call: it must not start now.
        this.record("request.refused", undefined, { upstream: call.upstream, tool: call.tool, name: call.name, args_digest: digest, halt_id: haltedMeanwhile.id, reason: "halted" }, "batch");
        return { kind: "halted", reason: haltRefusal(haltedMeanwhile) };
      }
      const route = routeAssessment(assessment, options.threshold);
      if (route === "run" && options.startAutoApproved) {
        // One record for created + assessed + auto_approved + started (issue 12): written, not fsynced, before the
        // upstream sees the call, so an unwritable ledger still stops it.
        this.record("request.admitted", ref, { ...created, assessment: { ...assessment }, threshold: options.threshold }, "batch");
        await this.whenWritten(); // one write shared by the burst of calls in this event-loop turn
        return { kind: "run", ref };
      }
      this.record("request.created", ref, created, "batch");
      this.record("request.assessed", ref, { ...assessment }, "batch");
      if (route === "deny") {
        const reason = denialReason(assessment);
        this.record("decision.recorded", ref, { decision: "denied", source: "policy", reviewer: "policy", reason }, "sync");
        await this.commit();
        return { kind: "deny", ref, reason };
      }
      if (route === "run") {
        this.record("request.auto_approved", ref, { threshold: options.threshold, ...(assessment.verdict ? { verdict: assessment.verdict } : {}) }, "batch");
        await this.whenWritten();
        return { kind: "run", ref };
      }
      const deadline = new Date(options.now().getTime() + options.reviewTimeoutMs).toISOString();
      const approvals = Math.max(1, ...(assessment.rules ?? []).map((rule) => rule.approvals ?? 1));
      this.record("request.held", ref, { deadline, threshold: options.threshold, ...(approvals > 1 ? { approvals_required: approvals } : {}) }, "sync");
      await this.commit();
      return { kind: "hold", view: this.table.get(ref)! };
    } catch (error) {
      if (error instanceof LedgerError) return { kind: "deny", ref, reason: `the audit ledger cannot be written, so nothing was run (fail closed): ${error.message}` };
      throw error;
    }
  }

  /**
   * Records a halt or resume fact if it is newer than the state this ledger holds (sync; the caller commits).
   * Returns whether it changed anything: the same fact arriving twice (control socket and `halt.json`) is a no-op.
   */
  recordHalt(fact: HaltFact, extra: Record<string, unknown> = {}): boolean {
    if (!isNewerHalt(fact, this.halt.current)) return false;
    this.record(fact.halted ? HALTED_RECORD : RESUMED_RECORD, undefined, haltRecordData(fact, extra), "sync");
    return true;
  }

  /** Resolves with the view once it is terminal, or when `ms` runs out or `signal` aborts. */
  waitForOutcome(ref: string, ms: number, signal?: AbortSignal): Promise<RequestView | undefined> {
    const view = this.table.get(ref);
    if (!view || TERMINAL_STATUSES.has(view.status) || ms <= 0 || signal?.aborted) return Promise.resolve(view);
    return new Promise((resolve) => {
      const finish = () => {
        clearTimeout(timer);
        unsubscribe();
        signal?.removeEventListener("abort", finish);
        resolve(this.table.get(ref) ?? view);
      };
      const timer = setTimeout(finish, ms);
      const unsubscribe = this.subscribe(ref, (changed) => {
        if (TERMINAL_STATUSES.has(changed.status)) finish();
      });
      signal?.addEventListener("abort", finish, { once: true });
    });
  }

  /** Records that a pending ref's deadline passed without a decision: expiry counts as a denial. */
  expire(ref: string): void {
    const deadline = this.table.get(ref)?.deadline;
    this.record("decision.recorded", ref, {
      decision: "denied",
      source: "timeout",
      reason: `no decision before the review deadline (${deadline ?? "unknown"}); expiry counts as a denial`,
    }, "sync");
  }

  /**
   * Records a human decision if the ref is still pending (expiring it first if its deadline has passed). Deciding an
   * already-decided ref changes nothing. The caller commits.
   */
  decide(input: DecisionInput, now: Date): DecideOutcome {
    const view = this.table.get(input.ref);
    if (!view) return { status: "not_found" };
    if (isPastDeadline(view, now)) this.expire(view.ref);
    if (view.status !== "pending") return { status: "already_decided", view };
    const required = view.approvalsRequired ?? 1;
    if (input.decision === "approved" && required > 1) {
      // The two-person rule (EU AI Act Art. 14(5)): each approval is its own record; the Nth distinct one decides.
      // Every approver approves the same arguments: an edit by one of them would run unseen by the others.
      if (input.args) {
        return { status: "refused", view, reason: `${view.ref} needs ${required} approvals, so its arguments cannot be edited: each approver must approve the same call. Deny it with the change you want as the reason; the agent can call again` };
      }
      const approvers = (view.approvals ?? []).map((approval) => approval.reviewer);
      if (approvers.includes(input.reviewer)) {
        return { status: "refused", view, reason: `${input.reviewer} has already approved ${view.ref}; it needs ${required} different approvers (${approvers.length} of ${required} so far)` };
      }
      this.record("approval.recorded", view.ref, { reviewer: input.reviewer, ...(input.reason ? { reason: input.reason } : {}), ...(input.auth ? { auth_method: input.auth } : {}), count: approvers.length + 1, required }, "sync");
      if (approvers.length + 1 < required) return { status: "applied", view };
      this.record("decision.recorded", view.ref, {
        decision: "approved",
        source: "human",
        reviewer: input.reviewer,
        approvers: [...approvers, input.reviewer],
        ...(input.reason ? { reason: input.reason } : {}),
        ...(input.auth ? { auth_method: input.auth } : {}),
      }, "sync");
      return { status: "applied", view };
    }
    this.record("decision.recorded", view.ref, {
      decision: input.decision,
      source: "human",
      reviewer: input.reviewer,
      ...(input.reason ? { reason: input.reason } : {}),
      ...(input.auth ? { auth_method: input.auth } : {}),
      ...(input.args && input.decision === "approved" ? { edited_args: input.args, edited_args_digest: digestCall(view.upstream, view.tool, input.args) } : {}),
    }, "sync");
    return { status: "applied", view };
  }

  /** Resolves once every record so far is written (not fsynced); see `Ledger.whenWritten`. */
  whenWritten(): Promise<void> {
    return this.ledger.whenWritten();
  }

  commit(): Promise<void> {
    return this.ledger.commit();
  }

  close(): Promise<void> {
    return this.ledger.close();
  }
}

export function isPastDeadline(view: RequestView, now: Date): boolean {
  return view.status === "pending" && view.deadline !== undefined && Date.parse(view.deadline) <= now.getTime();
}
