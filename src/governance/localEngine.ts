import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import type { DecideOutcome, Decision, DecisionInput, ExecuteOptions, Executor, GovernanceEngine, GovernedCall } from "./engine.js";
import { DeadlineTimers } from "./deadlines.js";
import { GovernanceLog, settledAdmission, type LedgerTuning } from "./governanceLog.js";
import { sha256Hex, type LedgerRecord, type LedgerSink } from "../ledger/ledger.js";
import type { RequestView } from "./requests.js";
import type { HaltFact } from "./haltState.js";
import type { RiskEvaluator } from "../risk/assess.js";
import { UncertainOutcomeError } from "../errors.js";

export interface LocalEngineOptions {
  ledgerPath: string;
  instance: string;
  evaluator: RiskEvaluator;
  threshold: number;
  reviewTimeoutMs: number;
  executor: Executor;
  version: string;
  now?: () => Date;
  sink?: (path: string) => LedgerSink;
  log?: (line: string) => void;
  /** Told about every held call (the local engine's reviewer notification). */
  onHeld?: (view: RequestView) => void;
  /** Extra facts for the `gateway.started` record. */
  startInfo?: Record<string, unknown>;
  /** Told about every ledger record, replayed or new (tool pins fold the ledger this way). */
  onRecord?: (record: LedgerRecord) => void;
  /** Resolves when an upstream is connected (or will not be soon): an approved call waits for it before it starts. */
  awaitUpstream?: (upstream: string) => Promise<void>;
  /** Ledger tuning and test hooks. */
  ledger?: LedgerTuning;
}

/**
 * The embedded engine: the ledger is the source of truth, state is its replay. Held calls wait for a decision
 * (or expire at their deadline), approved calls run at most once, and a call found started-but-unfinished at
 * replay is recorded as `unknown`, never re-run.
 */
export class LocalEngine implements GovernanceEngine {
  readonly name = "local" as const;
  private readonly log: GovernanceLog;
  private readonly options: LocalEngineOptions;
  private readonly now: () => Date;
  private readonly deadlines: DeadlineTimers;
  private readonly due: string[] = [];
  /** Approved calls that did not start because the gateway is halted; they start on resume, within their deadline. */
  private readonly parked = new Set<string>();
  private closed = false;

  private constructor(log: GovernanceLog, options: LocalEngineOptions) {
    this.log = log;
    this.options = options;
    this.now = options.now ?? (() => new Date());
    this.deadlines = new DeadlineTimers(log, this.now, (line) => options.log?.(line));
  }

  /** Opens the ledger, replays it, and settles what the last run left unfinished. */
  static open(options: LocalEngineOptions): LocalEngine {
    const log = GovernanceLog.open(options.ledgerPath, {
      instance: options.instance,
      ...(options.now ? { now: options.now } : {}),
      ...(options.sink ? { sink: options.sink } : {}),
      ...(options.log ? { log: options.log } : {}),
      ...(options.onRecord ? { onRecord: options.onRecord } : {}),
      ...(options.ledger ? { ledger: options.ledger } : {}),
    });
    const engine = new LocalEngine(log, options);
    engine.settleReplay();
    return engine;
  }

  private settleReplay(): void {
    const log = this.log;
    log.record("gateway.started", undefined, { version: this.options.version, pid: process.pid, engine: this.name, threshold: this.options.threshold, ...this.options.startInfo }, "sync");
    for (const view of [...log.table.byRef.values()]) {
      if (view.status === "assessing" || (view.status === "approved" && view.autoApproved)) {
        log.record("request.abandoned", view.ref, { reason: "the gateway stopped before this call was routed; it was never run" }, "sync");
      } else if (view.status === "executing") {
        log.record("execution.interrupted", view.ref, { outcome: "unknown", reason: "the gateway stopped while this call was running; whether it took effect is unknown, and it will not be re-run" }, "sync");
      } else if (view.status === "pending") {
        this.deadlines.schedule(view);
      } else if (view.status === "approved") {
        this.due.push(view.ref);
      }
    }
  }

  resume(): void {
    for (const ref of this.due.splice(0)) void this.executeApproved(ref);
  }

  get(ref: string): RequestView | undefined {
    return this.log.table.get(ref);
  }

  pending(): RequestView[] {
    return this.log.table.pending();
  }

  async submit(call: GovernedCall, options?: ExecuteOptions): Promise<Decision> {
    const admission = await this.log.admit(call, { ...this.options, now: this.now, startAutoApproved: true });
    if (admission.kind !== "run") {
      return settledAdmission(admission, (view) => {
        this.deadlines.schedule(view);
        this.options.onHeld?.(view);
      });
    }
    const ref = admission.ref;
    let result: CallToolResult;
    try {
      result = await this.options.executor(call, options);
    } catch (error) {
      if (error instanceof UncertainOutcomeError) return { kind: "allow", ref, result: this.recordUnknown(ref, error) };
      this.recordQuietly("execution.finished", ref, { outcome: "error", error: (error as Error).message });
      throw error;
    }
    this.recordQuietly("execution.finished", ref, { outcome: result.isError ? "error" : "ok", result_sha256: digestResult(result) });
    return { kind: "allow", ref, result };
  }

  /**
   * Appends a fact that belongs to no request (tool pins: `tool.pinned`, `tool.changed`, `tool.trusted`). The record
   * is applied at once (listeners hear it before this returns a promise) and durable when the promise resolves.
   */
  recordEvent(type: string, data: Record<string, unknown>, ref?: string): Promise<void> {
    this.log.record(type, ref, data, "sync");
    return this.log.commit();
  }

  async decide(input: DecisionInput): Promise<DecideOutcome> {
    const outcome = this.log.decide(input, this.now());
    if (outcome.status === "not_found") return outcome;
    // a two-person call still waiting for its next approval keeps its deadline
    if (outcome.view.status !== "pending") this.deadlines.clear(input.ref);
    await this.log.commit();
    if (outcome.status === "applied" && input.decision === "approved") void this.executeApproved(input.ref);
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
    if (changed && !this.log.halt.active) {
      for (const ref of [...this.parked]) {
        this.parked.delete(ref);
        this.startAfterHalt(ref);
      }
    }
    return { changed, state: this.log.halt.current };
  }

  /** An approved call the halt kept from starting: it starts now, unless its review deadline passed meanwhile. */
  private startAfterHalt(ref: string): void {
    const view = this.log.table.get(ref);
    if (!view || view.status !== "approved") return;
    if (view.deadline && Date.parse(view.deadline) <= this.now().getTime()) {
      this.recordQuietly("request.abandoned", ref, { reason: `approved, but the gateway was halted until after the review deadline (${view.deadline}); it was never run` }, "sync");
      void this.log.commit().catch(() => {});
      return;
    }
    void this.executeApproved(ref);
  }

  /** Runs an approved call once: `execution.started` is on disk before the upstream sees anything. */
  private async executeApproved(ref: string): Promise<void> {
    let view = this.log.table.get(ref);
    if (!view || view.status !== "approved" || this.closed) return;
    if (this.log.halt.active) {
      this.parked.add(ref);
      return;
    }
    // Still `approved` while its upstream is away (restarting): it runs when the upstream is back.
    if (this.options.awaitUpstream) {
      await this.options.awaitUpstream(view.upstream).catch(() => {});
      view = this.log.table.get(ref);
      if (!view || view.status !== "approved" || this.closed) return;
      if (this.log.halt.active) {
        // halted while it waited for its upstream
        this.parked.add(ref);
        return;
      }
    }
    try {
      this.log.record("execution.started", ref, {}, "sync");
      await this.log.commit();
    } catch (error) {
      this.options.log?.(`cannot start ${ref}: ${(error as Error).message}`);
      return;
    }
    let data: Record<string, unknown>;
    try {
      const result = await this.options.executor({ upstream: view.upstream, tool: view.tool, args: view.editedArgs ?? view.args });
      data = { outcome: result.isError ? "error" : "ok", result };
    } catch (error) {
      if (error instanceof UncertainOutcomeError) {
        this.recordUnknown(ref, error);
        await this.log.commit().catch(() => {});
        return;
      }
      const message = (error as Error).message;
      data = { outcome: "error", result: { content: [{ type: "text", text: `Execution failed: ${message}` }], isError: true } };
    }
    this.recordQuietly("execution.finished", ref, data, "sync");
    await this.log.commit().catch(() => {});
  }

  /** A call that may or may not have taken effect: `unknown`, for a human to check; never re-run. */
  private recordUnknown(ref: string, error: UncertainOutcomeError): CallToolResult {
    this.recordQuietly("execution.interrupted", ref, { outcome: "unknown", reason: error.message }, "sync");
    return {
      content: [{ type: "text", text: `OUTCOME UNKNOWN (Ref: ${ref}): ${error.message}. The action may or may not have taken effect; it will not be re-run. A human should check the target system.` }],
      isError: true,
    };
  }

  /** After the upstream ran, a failing ledger must not turn a real result into an error; it is logged instead. */
  private recordQuietly(type: string, ref: string, data: Record<string, unknown>, durability: "sync" | "batch" = "batch"): void {
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
    try {
      this.log.record("gateway.stopped", undefined, { reason }, "sync");
    } catch {
      // a failed ledger has already been reported; closing must still release it
    }
    await this.log.close();
  }
}

/** Auto-approved results are answered in-line; the ledger keeps their digest, not their (possibly huge) body. */
function digestResult(result: CallToolResult): string {
  return sha256Hex(JSON.stringify(result));
}
