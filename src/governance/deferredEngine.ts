import type { DecideOutcome, Decision, DecisionInput, ExecuteOptions, GovernanceEngine, GovernedCall } from "./engine.js";
import { LedgerError } from "../errors.js";
import type { HaltFact } from "./haltState.js";
import type { RequestView } from "./requests.js";

export interface DeferredEngineOptions {
  name: GovernanceEngine["name"];
  /**
   * Opens the real engine; throws or rejects (a `LedgerError`) while its ledger cannot be written. The `inngest`
   * engine opens asynchronously (its client and transport come with it); use `startAsync` for that.
   */
  open: () => GovernanceEngine | Promise<GovernanceEngine>;
  log: (line: string) => void;
  /** Called once the real engine is open after a failed start (to record what was observed meanwhile). */
  onOpen?: () => void;
  /** First wait before trying again, in ms; it doubles up to `MAX_RETRY_MS` (a damaged ledger is re-read each time). */
  retryMs?: number;
}

const MAX_RETRY_MS = 30_000;

/**
 * Fail closed without dying (issue 11): when the ledger cannot be opened for writing at start (a read-only file, a
 * directory in its place, a full disk), the gateway still serves — `tools/list` works — but every call is refused
 * with the cause, decisions answer "cannot be recorded", and `problem()` says why for `GET /` and `doctor`. It tries
 * again every `retryMs` and, once the ledger opens, hands everything to the real engine (replay included).
 */
export class DeferredEngine implements GovernanceEngine {
  readonly name: GovernanceEngine["name"];
  private engine: GovernanceEngine | undefined;
  private cause: string | undefined;
  private timer: NodeJS.Timeout | undefined;
  private resumed = false;
  private wait: number;
  private closed = false;

  private constructor(private readonly options: DeferredEngineOptions) {
    this.name = options.name;
    this.wait = options.retryMs ?? 1000;
  }

  /**
   * Opens the engine now if it can; otherwise serves fail-closed and keeps trying. Any error opening counts: opening
   * is reading and writing the ledger, and an `EISDIR` or `EACCES` from the file system is as much a reason to refuse
   * calls as a `LedgerError`.
   */
  static start(options: DeferredEngineOptions & { open: () => GovernanceEngine }): GovernanceEngine & { problem(): string | undefined } {
    const deferred = new DeferredEngine(options);
    void deferred.tryOpen(true);
    return deferred;
  }

  /**
   * `start` for an engine that opens asynchronously (`inngest`, issue 11 item 5): settles once the first attempt
   * has, so a gateway that could open its engine never refuses a call for not having waited.
   */
  static async startAsync(options: DeferredEngineOptions): Promise<GovernanceEngine & { problem(): string | undefined }> {
    const deferred = new DeferredEngine(options);
    await deferred.tryOpen(true);
    return deferred;
  }

  /** Returns a promise only when `open` does; a synchronous `open` is settled on return. */
  private tryOpen(first: boolean): void | Promise<void> {
    let opening: GovernanceEngine | Promise<GovernanceEngine>;
    try {
      opening = this.options.open();
    } catch (error) {
      return this.failed(error as Error, first);
    }
    if (!(opening instanceof Promise)) return this.opened(opening, first);
    return opening.then((engine) => this.opened(engine, first), (error: Error) => this.failed(error, first));
  }

  private failed(error: Error, first: boolean): void {
    const message = error.message.replace(/\.$/, "");
    const changed = message !== this.cause;
    this.cause = message;
    if (first || changed) this.options.log(`${message}. Every tool call is refused until the ledger can be written (fail closed); trying again in the background`);
    if (this.closed) return;
    this.timer = setTimeout(() => {
      if (!this.closed) void this.tryOpen(false);
    }, this.wait);
    this.timer.unref();
    this.wait = Math.min(this.wait * 2, MAX_RETRY_MS);
  }

  private opened(engine: GovernanceEngine, first: boolean): void {
    if (this.closed) {
      void engine.close(); // the gateway stopped while it was opening
      return;
    }
    this.engine = engine;
    this.cause = undefined;
    if (!first) {
      this.options.log("the ledger can be written again: calls are governed as usual");
      this.options.onOpen?.();
    }
    if (this.resumed) engine.resume();
  }

  /** Why every call is refused, while it is. */
  problem(): string | undefined {
    return this.engine ? undefined : `the ledger cannot be written: ${this.cause}`;
  }

  async submit(call: GovernedCall, options?: ExecuteOptions): Promise<Decision> {
    if (this.engine) return this.engine.submit(call, options);
    return { kind: "deny", reason: `The gateway cannot record this call, so it was refused and not run (fail closed): ${this.cause}. Tell the user; an operator must make the ledger writable (see 'atlas-gateway doctor').` };
  }

  async decide(input: DecisionInput): Promise<DecideOutcome> {
    if (this.engine) return this.engine.decide(input);
    throw new LedgerError(`cannot record a decision: ${this.cause}`);
  }

  get(ref: string): RequestView | undefined {
    return this.engine?.get(ref);
  }

  pending(): RequestView[] {
    return this.engine?.pending() ?? [];
  }

  async waitForOutcome(ref: string, ms: number, signal?: AbortSignal): Promise<RequestView | undefined> {
    return this.engine?.waitForOutcome(ref, ms, signal);
  }

  async recordEvent(type: string, data: Record<string, unknown>, ref?: string): Promise<void> {
    if (this.engine) return this.engine.recordEvent(type, data, ref);
    throw new LedgerError(`cannot record ${type}: ${this.cause}`);
  }

  haltState(): HaltFact | undefined {
    return this.engine?.haltState();
  }

  async applyHalt(fact: HaltFact): Promise<{ changed: boolean; state: HaltFact | undefined }> {
    if (this.engine) return this.engine.applyHalt(fact);
    throw new LedgerError(`cannot record the ${fact.halted ? "halt" : "resume"}: ${this.cause}`);
  }

  resume(): void {
    this.resumed = true;
    this.engine?.resume();
  }

  async close(reason?: string): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    await this.engine?.close(reason);
  }
}
