import { CHECKPOINT_TYPE, type CheckpointState, type LedgerRecord } from "../ledger/ledger.js";
import { CREATING_TYPES, TERMINAL_STATUSES, type RequestTable } from "./requests.js";

/** How long a finished held request stays carried from checkpoint to checkpoint (so `atlas_status` still finds it). */
export const KEEP_FINISHED_MS = 7 * 24 * 60 * 60 * 1000;

/** A ref's 8 hex digits as a uint32. */
export function refValue(ref: string): number {
  return Number.parseInt(ref.slice(4), 16) >>> 0;
}

const hex8 = (value: number) => value.toString(16).padStart(8, "0");

/**
 * What the next checkpoint must carry, kept in step with the request table: the records of every request the
 * table still holds, per tool the pin records since its last `tool.pinned`, the latest halt fact, and the refs of
 * the current segment.
 *
 * Ref uniqueness (issue 12): refs stay `evt_` + 8 hex. A new ref is checked against a window — every request the
 * table holds (all open ones, and held ones finished within `KEEP_FINISHED_MS`), the refs of the current segment and
 * those of the segment before (carried as `recent_refs`) — not against every ref ever issued, which would grow with
 * history. Two requests can therefore share a ref only if both are finished and were issued more than a segment
 * apart (odds about n / 2^32 per ref, n the refs outside the window); a reviewer never acts on an ambiguous ref,
 * because open requests are always in the window, and `show` reports the latest request with that ref.
 */
export class CheckpointCarry {
  /** The refs a new ref must not repeat. */
  readonly refs = new Set<number>();
  private segmentRefs: number[] = [];
  private readonly byRef = new Map<string, LedgerRecord[]>();
  private readonly pins = new Map<string, LedgerRecord[]>();
  private halt: LedgerRecord | null = null;
  private readonly table: RequestTable;
  private readonly now: () => Date;

  constructor(table: RequestTable, now: () => Date) {
    this.table = table;
    this.now = now;
  }

  /** Reserves a ref for a new request; false when it is taken. */
  reserve(value: number): boolean {
    if (this.refs.has(value)) return false;
    this.refs.add(value);
    this.segmentRefs.push(value);
    return true;
  }

  /** Takes note of one record, replayed or new, after the request table applied it. */
  observe(record: LedgerRecord): void {
    const ref = record.ref;
    if (ref) {
      if (CREATING_TYPES.has(record.type)) {
        this.reserve(refValue(ref));
        this.byRef.set(ref, [record]);
      } else {
        this.byRef.get(ref)?.push(record);
      }
      if (!this.table.byRef.has(ref)) this.byRef.delete(ref); // a finished auto-approved call is forgotten
      return;
    }
    if (record.type === CHECKPOINT_TYPE) {
      const recent = (record.data.state as Partial<CheckpointState> | undefined)?.recent_refs ?? "";
      for (let i = 0; i + 8 <= recent.length; i += 8) this.refs.add(Number.parseInt(recent.slice(i, i + 8), 16) >>> 0);
    } else if (record.type.startsWith("tool.")) {
      const key = `${String(record.data.upstream)}\u0000${String(record.data.tool)}`;
      if (record.type === "tool.pinned") this.pins.set(key, [record]);
      else this.pins.get(key)?.push(record);
    } else if (record.type === "gateway.halted" || record.type === "gateway.resumed") {
      this.halt = record;
    }
  }

  /**
   * The state for a checkpoint that opens a new segment. Finished held requests older than `KEEP_FINISHED_MS` are
   * dropped here, from the carry and from the table (a running gateway's memory stays bounded too), and the ref
   * window moves on to the new segment.
   */
  snapshot(): CheckpointState {
    const cutoff = this.now().getTime() - KEEP_FINISHED_MS;
    const requests: LedgerRecord[] = [];
    for (const [ref, records] of this.byRef) {
      const view = this.table.get(ref);
      if (!view) {
        this.byRef.delete(ref);
        continue;
      }
      if (TERMINAL_STATUSES.has(view.status) && Date.parse(view.updatedAt) < cutoff) {
        this.byRef.delete(ref);
        this.table.byRef.delete(ref);
        continue;
      }
      requests.push(...records);
    }
    const recent = this.segmentRefs.map(hex8).join("");
    this.refs.clear();
    for (const value of this.segmentRefs) this.refs.add(value);
    for (const ref of this.byRef.keys()) this.refs.add(refValue(ref));
    this.segmentRefs = [];
    const bySeq = (a: LedgerRecord, b: LedgerRecord) => a.seq - b.seq;
    return { requests: requests.sort(bySeq), pins: [...this.pins.values()].flat().sort(bySeq), halt: this.halt, recent_refs: recent };
  }
}
