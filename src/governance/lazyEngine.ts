import type { DecideOutcome, Decision, DecisionInput, ExecuteOptions, GovernanceEngine, GovernedCall } from "./engine.js";
import type { HaltFact } from "./haltState.js";
import type { RequestView } from "./requests.js";

/**
 * An engine that is opened later: what `initialize` and `tools/list` do not need — the instance lock, the ledger's
 * replay, the evaluator — happens behind one promise that every engine call awaits (cold start, issue 12). Fail
 * closed is unchanged: nothing reaches an upstream before the real engine is open, and if opening fails every call
 * fails with that error. `get` and `pending` are synchronous and answer as if empty until then; the gateway holds
 * `tools/call` (where `atlas_status` reads them) until `ready` settles.
 */
export class LazyEngine implements GovernanceEngine {
  readonly name: "local" | "inngest";
  /** Settles when the real engine is open (rejects if it could not be opened). */
  readonly ready: Promise<GovernanceEngine>;
  private engine: GovernanceEngine | undefined;
  private resumeWanted = false;
  private closed = false;

  constructor(name: "local" | "inngest", open: Promise<GovernanceEngine>) {
    this.name = name;
    this.ready = open.then((engine) => {
      this.engine = engine;
      if (this.closed) void engine.close();
      else if (this.resumeWanted) engine.resume();
      return engine;
    });
    this.ready.catch(() => {}); // reported by whoever awaits it (runGateway); calls reject with it
  }

  async submit(call: GovernedCall, options?: ExecuteOptions): Promise<Decision> {
    return (await this.ready).submit(call, options);
  }

  async decide(input: DecisionInput): Promise<DecideOutcome> {
    return (await this.ready).decide(input);
  }

  get(ref: string): RequestView | undefined {
    return this.engine?.get(ref);
  }

  async waitForOutcome(ref: string, ms: number, signal?: AbortSignal): Promise<RequestView | undefined> {
    return (await this.ready).waitForOutcome(ref, ms, signal);
  }

  pending(): RequestView[] {
    return this.engine?.pending() ?? [];
  }

  async recordEvent(type: string, data: Record<string, unknown>, ref?: string): Promise<void> {
    return (await this.ready).recordEvent(type, data, ref);
  }

  /** Nothing is halted for a call before the engine opens: calls wait for `ready`, then see the real state. */
  haltState(): HaltFact | undefined {
    return this.engine?.haltState();
  }

  async applyHalt(fact: HaltFact): Promise<{ changed: boolean; state: HaltFact | undefined }> {
    return (await this.ready).applyHalt(fact);
  }

  problem(): string | undefined {
    return this.engine?.problem?.();
  }

  resume(): void {
    if (this.engine) this.engine.resume();
    else this.resumeWanted = true;
  }

  async close(reason?: string): Promise<void> {
    this.closed = true;
    if (this.engine) await this.engine.close(reason);
  }
}
