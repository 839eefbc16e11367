import type { LedgerRecord } from "../ledger/ledger.js";

/** The ledger record types of the stop button (issue 9, EU AI Act Art. 14(4)(e)). */
export const HALTED_RECORD = "gateway.halted";
export const RESUMED_RECORD = "gateway.resumed";

/**
 * One press of the stop button, or its release: the same fact is recorded in every instance's ledger of a data dir
 * (and in its `halt.json`), identified by `id` and ordered by `at`, so every instance folds to the same state.
 */
export interface HaltFact {
  /** `halt_` + random hex; the same in every ledger the fact is copied to. */
  id: string;
  halted: boolean;
  /** Who pressed it: the OS user, a `--reviewer`, or the signing key / webhook that asked. */
  by: string;
  reason?: string;
  /** When it was pressed (ISO 8601); the latest fact wins, whatever order ledgers received them in. */
  at: string;
}

/** Whether a value (off a control socket or `halt.json`) is a well-formed halt fact. */
export function isHaltFact(value: unknown): value is HaltFact {
  if (!value || typeof value !== "object") return false;
  const fact = value as Record<string, unknown>;
  return typeof fact.id === "string" && /^halt_[0-9a-f]{1,32}$/.test(fact.id)
    && typeof fact.halted === "boolean"
    && typeof fact.by === "string" && fact.by.length > 0 && fact.by.length <= 200
    && (fact.reason === undefined || (typeof fact.reason === "string" && fact.reason.length <= 2000))
    && typeof fact.at === "string" && !Number.isNaN(Date.parse(fact.at));
}

/** Whether `candidate` supersedes `current`: later `at` wins; equal times are broken by id so every instance agrees. */
export function isNewerHalt(candidate: HaltFact, current: HaltFact | undefined): boolean {
  if (!current) return true;
  if (candidate.at !== current.at) return candidate.at > current.at;
  return candidate.id > current.id;
}

/** The ledger data of a halt fact (the record type carries `halted`). */
export function haltRecordData(fact: HaltFact, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { halt_id: fact.id, by: fact.by, ...(fact.reason ? { reason: fact.reason } : {}), at: fact.at, ...extra };
}

/** Reads a halt fact back from its ledger record; undefined for any other record. */
export function haltFactFromRecord(record: LedgerRecord): HaltFact | undefined {
  if (record.type !== HALTED_RECORD && record.type !== RESUMED_RECORD) return undefined;
  const data = record.data;
  return {
    id: String(data.halt_id),
    halted: record.type === HALTED_RECORD,
    by: String(data.by),
    ...(typeof data.reason === "string" ? { reason: data.reason } : {}),
    at: typeof data.at === "string" ? data.at : record.ts,
  };
}

/**
 * The stop button's state, a pure fold over ledger records next to the request table (so a checkpoint can carry it
 * the way it carries open requests): the newest `gateway.halted` / `gateway.resumed` fact.
 */
export class HaltState {
  private latest: HaltFact | undefined;

  /** The newest fact seen (halted or resumed), if any. */
  get current(): HaltFact | undefined {
    return this.latest;
  }

  /** The active halt, when the gateway is halted. */
  get active(): HaltFact | undefined {
    return this.latest?.halted ? this.latest : undefined;
  }

  /** Applies one record; returns true when it changed the state. */
  apply(record: LedgerRecord): boolean {
    const fact = haltFactFromRecord(record);
    if (!fact || !isNewerHalt(fact, this.latest)) return false;
    this.latest = fact;
    return true;
  }
}

/** The plain sentence an agent, a reviewer and `GET /` read while the gateway is halted. */
export function describeHalt(fact: HaltFact): string {
  return `the gateway was halted by ${fact.by} at ${fact.at}${fact.reason ? ` (reason: ${fact.reason})` : ""}`;
}

/** What a tool call is told while halted: nothing reached the tool, and how it ends. */
export function haltRefusal(fact: HaltFact): string {
  return `HALTED: ${describeHalt(fact)}. No tool call runs until a reviewer resumes it ('atlas-gateway resume' or the review page); this call was not sent to the tool.`;
}
