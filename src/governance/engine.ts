import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import type { RequestView } from "./requests.js";
import type { RiskInput } from "../risk/assess.js";
import type { HaltFact } from "./haltState.js";

/** A tool call as the engine sees it: where it goes, what it carries, and what the evaluator needs. */
export interface GovernedCall extends RiskInput {
  client?: { name?: string; version?: string };
  /** Whether the tool declares an outputSchema (a held reply must then not claim success). */
  hasOutputSchema?: boolean;
}

export interface ExecuteOptions {
  signal?: AbortSignal;
  onProgress?: (progress: { progress: number; total?: number; message?: string }) => void;
}

/** Runs a call against its upstream. Supplied by the proxy; the engine never sees MCP transports. */
export type Executor = (call: { upstream: string; tool: string; args: Record<string, unknown> }, options?: ExecuteOptions) => Promise<CallToolResult>;

/** The routing outcome of one call: data, turned into an MCP result in one place (`toolResults.ts`). */
export type Decision =
  | { kind: "allow"; ref: string; result: CallToolResult }
  | { kind: "hold"; ref: string; view: RequestView; deduplicated: boolean }
  | { kind: "deny"; ref?: string; reason: string; halted?: boolean };

export interface DecisionInput {
  ref: string;
  decision: "approved" | "denied";
  /** Who decided: an authenticated reviewer id, or the OS user for a CLI decision without a reviewer token. */
  reviewer: string;
  reason?: string;
  /**
   * Approve with edits (issue 9, EU AI Act Art. 14(4)(d)): the arguments the call runs with instead of the agent's.
   * The ledger keeps both (`request.created` the original, `decision.recorded` the edited). Ignored on a denial.
   */
  args?: Record<string, unknown>;
  /** How the reviewer was authenticated (`os-user`, `reviewer-token`, `review-page`, `webhook-v1a` for a registered key's signature, `webhook-hmac` for a name an HMAC-signed body claims), recorded with the decision. */
  auth?: string;
}

export type DecideOutcome =
  | { status: "applied"; view: RequestView }
  | { status: "already_decided"; view: RequestView }
  /** Nothing changed, for a reason the reviewer must hear (the same reviewer approving a two-person call twice). */
  | { status: "refused"; view: RequestView; reason: string }
  | { status: "not_found" };

/**
 * One interface, two engines: the proxy and the reviewer paths talk to this and cannot tell which runs.
 */
export interface GovernanceEngine {
  readonly name: "local" | "inngest";
  /** Routes one call: runs it now, holds it for review, or refuses it. */
  submit(call: GovernedCall, options?: ExecuteOptions): Promise<Decision>;
  /** Applies a human decision. */
  decide(input: DecisionInput): Promise<DecideOutcome>;
  get(ref: string): RequestView | undefined;
  /** Resolves with the view once it is terminal, or when `ms` runs out or `signal` aborts. */
  waitForOutcome(ref: string, ms: number, signal?: AbortSignal): Promise<RequestView | undefined>;
  pending(): RequestView[];
  /**
   * Appends a fact outside the request state machine (tool pins: `tool.pinned`, `tool.changed`, `tool.trusted`; with
   * a `ref`, facts about a request such as `notification.sent`); durable when the promise resolves.
   */
  recordEvent(type: string, data: Record<string, unknown>, ref?: string): Promise<void>;
  /** The newest stop-button fact this engine's ledger holds (halted or resumed), if any. */
  haltState(): HaltFact | undefined;
  /**
   * Records a halt or resume fact (durable when the promise resolves) unless the ledger already holds it or a newer one.
   * While halted every new call is refused and approved calls wait; on resume they start if their deadline has not passed.
   */
  applyHalt(fact: HaltFact): Promise<{ changed: boolean; state: HaltFact | undefined }>;
  /** Why the engine refuses every call right now (an unwritable ledger), if it does; shown by `GET /` and `doctor`. */
  problem?(): string | undefined;
  /** Starts work that replay left due (approved-but-not-executed calls) once the upstreams are ready. */
  resume(): void;
  close(reason?: string): Promise<void>;
}
