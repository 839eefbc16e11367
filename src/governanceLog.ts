import { randomUUID } from "node:crypto";
import canonicalize from "canonicalize";
import { Ledger, sha256Hex, type Durability, type LedgerRecord, type LedgerSink } from "./ledger.js";
import type { DecideOutcome, DecisionInput } from "./engine.js";
import { RequestTable, type RequestView } from "./requests.js";

export const REF_PATTERN = /^evt_[0-9a-f]{8}$/;

/** Digest identifying "the same call": upstream, tool and canonical arguments. */
export function digestCall(upstream: string, tool: string, args: Record<string, unknown>): string {
  return sha256Hex(canonicalize({ upstream, tool, args }) ?? "");
}

export interface GovernanceLogOptions {
  instance: string;
  now?: () => Date;
  sink?: (path: string) => LedgerSink;
  keepHistory?: boolean;
  log?: (line: string) => void;
  /** Told about every record, replayed or new, after the request table (tool pins fold the ledger this way). */
  onRecord?: (record: LedgerRecord) => void;
}

/**
 * A ledger and the request table folded from it, kept in step: every record is applied the moment it is written,
 * and listeners on a ref hear about it. Used by the local engine and by reviewer commands when no gateway runs.
 */
export class GovernanceLog {
  readonly ledger: Ledger;
  readonly table: RequestTable;
  /** Every ref in this ledger, as the uint32 of its hex (refs stay unique without keeping whole records). */
  private readonly refs = new Set<number>();
  private readonly listeners = new Map<string, Set<(view: RequestView) => void>>();
  private readonly onRecord: ((record: LedgerRecord) => void) | undefined;

  private constructor(ledger: Ledger, table: RequestTable, refs: Set<number>, onRecord: ((record: LedgerRecord) => void) | undefined) {
    this.ledger = ledger;
    this.table = table;
    this.refs = refs;
    this.onRecord = onRecord;
  }

  static open(path: string, options: GovernanceLogOptions): GovernanceLog {
    const table = new RequestTable({ keepHistory: options.keepHistory ?? false });
    const refs = new Set<number>();
    const ledger = Ledger.open(path, {
      instance: options.instance,
      ...(options.now ? { now: options.now } : {}),
      ...(options.sink ? { sink: options.sink } : {}),
      ...(options.log ? { log: options.log } : {}),
      onRecord: (record) => {
        if (record.type === "request.created" && record.ref) refs.add(refValue(record.ref));
        table.apply(record);
        options.onRecord?.(record);
      },
    });
    return new GovernanceLog(ledger, table, refs, options.onRecord);
  }

  /**
   * A fresh `evt_` + 8 hex ref, unique in this ledger. The hex is the first 8 (fully random) digits of a v4 UUID:
   * `randomUUID` draws from a cached entropy pool, where `randomBytes(4)` costs a trip into OpenSSL on every call.
   */
  newRef(): string {
    for (;;) {
      const ref = `evt_${randomUUID().slice(0, 8)}`;
      if (!this.refs.has(refValue(ref))) return ref;
    }
  }

  /** Appends and applies one record. Throws `LedgerError` when it cannot be written (callers fail closed). */
  record(type: string, ref: string | undefined, data: Record<string, unknown>, durability: Durability): LedgerRecord {
    const record = this.ledger.append(type, ref, data, durability);
    if (type === "request.created" && ref) this.refs.add(refValue(ref));
    const view = this.table.apply(record);
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
    this.record("decision.recorded", view.ref, {
      decision: input.decision,
      source: "human",
      reviewer: input.reviewer,
      ...(input.reason ? { reason: input.reason } : {}),
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

function refValue(ref: string): number {
  return Number.parseInt(ref.slice(4), 16) | 0;
}
