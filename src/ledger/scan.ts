import { existsSync } from "node:fs";
import { ledgerFiles } from "../dataDir.js";
import { canonicalPieces, genesisHash, hashRecord, sha256Hex, sha256Pieces, type LedgerRecord } from "./record.js";
import { listSegments, readLines, segmentName, type Segment } from "./segments.js";
import { verifyCheckpoint, type NoteVerifier } from "./signedNote.js";

export const CHECKPOINT_TYPE = "ledger.checkpoint";

/**
 * What a checkpoint carries so that start-up needs nothing before it (issue 12). Each slot holds the ledger's own
 * records, copied whole (seq, hash and all), which start-up folds exactly as if it had read them in place:
 * - `requests`: every record of each request still open (and of held requests finished recently, for `atlas_status`);
 * - `pins`: per tool, the records since its last `tool.pinned`;
 * - `halt`: the latest `gateway.halted` / `gateway.resumed` fact (the stop button, issue 9b), or null;
 * - `recent_refs`: the refs issued in the segment just closed, 8 hex each, concatenated (ref uniqueness window).
 */
export interface CheckpointState {
  requests: LedgerRecord[];
  pins: LedgerRecord[];
  halt: LedgerRecord | null;
  recent_refs: string;
}

export const EMPTY_CHECKPOINT_STATE: CheckpointState = { requests: [], pins: [], halt: null, recent_refs: "" };

/** The C2SP origin line naming one ledger. */
export function checkpointOrigin(ledgerId: string): string {
  return `atlas-gateway/${ledgerId}`;
}

/** The digest of a checkpoint's state, as its signed note names it (`atlas-state <hex>`). */
export function stateDigest(state: unknown): string {
  return sha256Pieces(canonicalPieces(state ?? null) ?? [""]);
}

/** The carried records of a checkpoint, in seq order (the order they were first written). */
export function carriedRecords(checkpoint: LedgerRecord): LedgerRecord[] {
  const state = (checkpoint.data.state ?? {}) as Partial<CheckpointState>;
  const records = [...(state.requests ?? []), ...(state.pins ?? []), ...(state.halt ? [state.halt] : [])];
  return records.sort((a, b) => a.seq - b.seq);
}

/**
 * Checks a checkpoint record against a verifier key: its note is signed by that key, names this ledger, covers
 * exactly the records before it (size = its seq, root = its prev) and the state it carries. Returns the reason
 * it fails, or undefined.
 */
export function checkCheckpointRecord(record: LedgerRecord, verifier: NoteVerifier): string | undefined {
  const note = record.data.note;
  if (typeof note !== "string") return `checkpoint seq ${record.seq} carries no signed note`;
  const check = verifyCheckpoint(note, verifier);
  if (!check.ok) return `checkpoint seq ${record.seq}: ${check.reason}`;
  const { checkpoint } = check;
  if (checkpoint.origin !== checkpointOrigin(String(record.data.ledger_id))) return `checkpoint seq ${record.seq} is signed for another ledger (${checkpoint.origin})`;
  if (checkpoint.size !== record.seq || checkpoint.head !== record.prev) return `checkpoint seq ${record.seq}: its signature covers ${checkpoint.size} records ending at ${checkpoint.head.slice(0, 16)}…, not the chain it sits in`;
  const digest = checkpoint.extensions.find((line) => line.startsWith("atlas-state "))?.slice("atlas-state ".length);
  if (digest !== stateDigest(record.data.state)) return `checkpoint seq ${record.seq}: the state it carries is not the state that was signed`;
  return undefined;
}

export type DamageKind = "torn" | "malformed" | "edited" | "missing" | "reordered" | "broken-chain";

export interface LedgerProblem {
  kind: DamageKind;
  /** Line in `segment` (1-based). */
  line: number;
  seq?: number;
  /** The segment file the problem is in. */
  segment?: string;
  message: string;
}

export interface LedgerScan {
  records: LedgerRecord[];
  /** First problem found; records before it are intact. */
  problem?: LedgerProblem;
  /** Byte length of the intact prefix of the last segment read (where a torn tail starts). */
  intactBytes: number;
  /** The last intact record. */
  last?: LedgerRecord;
  /** The last segment read. */
  segment?: Segment;
  /** The checkpoint a replay started from (its carried records were replayed first). */
  checkpoint?: LedgerRecord;
  /** The ledger id, from `ledger.created` or a checkpoint. */
  ledgerId?: string;
  /** Ledger lines read and checked (carried records not counted): what start-up cost grows with. */
  recordsRead: number;
  /** The hash of record `watchSeq`, when it was read. */
  watchedHash?: string;
}

export interface ScanOptions {
  onRecord?: (record: LedgerRecord) => void;
  /** Replay a leading checkpoint's carried records (start-up from the last checkpoint). */
  replayCarried?: boolean;
  /** Told about each checkpoint record read (`audit verify` checks signatures). */
  onCheckpoint?: (record: LedgerRecord, segment: Segment) => void;
  watchSeq?: number;
}

/** The segments of the ledger at `path`; a 0.1 file not yet migrated is read in place as the only segment. */
export function ledgerSegments(path: string): Segment[] {
  const files = ledgerFiles(path);
  if (!existsSync(files.ledger) && existsSync(files.legacyLedger)) {
    return [{ name: segmentName(0), path: files.legacyLedger, firstSeq: 0, compressed: false }];
  }
  return listSegments(files.ledger);
}

/**
 * Reads and checks segments in order: JSON per line, consecutive `seq` (across segments too, each file named after
 * its first seq), every hash recomputed, `prev` linking to the previous hash, the first record anchored at the
 * genesis hash of its own ledger id, and every later segment opened by a checkpoint. When the first segment read
 * is not the first of the ledger, its checkpoint is taken as the anchor (the caller checks it). Stops at the first
 * problem.
 */
export function scanSegments(segments: Segment[], options: ScanOptions = {}): LedgerScan {
  const keep = options.onRecord === undefined;
  const result: LedgerScan = { records: [], intactBytes: 0, recordsRead: 0 };
  let prevHash: string | undefined;
  let expectedSeq = segments[0]?.firstSeq ?? 0;
  const fail = (problem: LedgerProblem): LedgerScan => ({ ...result, problem });
  for (const [index, segment] of segments.entries()) {
    result.segment = segment;
    result.intactBytes = 0;
    let first = true;
    for (const { line, complete, lineNo } of readLines(segment.path)) {
      const at = `${segment.name} line ${lineNo}`;
      const problem = (kind: DamageKind, message: string, seq?: number): LedgerScan =>
        fail({ kind, line: lineNo, segment: segment.name, ...(seq !== undefined ? { seq } : {}), message: `${at}: ${message}` });
      if (!complete) return problem("torn", `torn tail (an unfinished write of ${Buffer.byteLength(line)} bytes, no newline)`);
      let record: LedgerRecord;
      try {
        record = JSON.parse(line) as LedgerRecord;
        if (typeof record !== "object" || record === null || typeof record.seq !== "number" || typeof record.hash !== "string") throw new Error("not a ledger record");
      } catch (error) {
        return problem("malformed", `not a ledger record (${(error as Error).message})`);
      }
      if (record.seq !== expectedSeq) {
        if (first && index > 0 && record.seq === segment.firstSeq) {
          return problem("missing", `seq ${record.seq} follows seq ${expectedSeq - 1}: record(s) ${expectedSeq}..${record.seq - 1} are missing (a segment was removed or cut short)`, record.seq);
        }
        return record.seq > expectedSeq
          ? problem("missing", `seq ${record.seq} follows seq ${expectedSeq - 1}: record(s) ${expectedSeq}..${record.seq - 1} are missing`, record.seq)
          : problem("reordered", `seq ${record.seq} appears after seq ${expectedSeq - 1}: records were reordered or duplicated`, record.seq);
      }
      if (first && record.seq !== segment.firstSeq) return problem("reordered", `the segment named for seq ${segment.firstSeq} begins with seq ${record.seq}`, record.seq);
      const { hash, ...unsigned } = record;
      if (hashRecord(unsigned) !== hash) return problem("edited", `seq ${record.seq} (${record.type}) was edited: its hash does not match its content`, record.seq);
      const opensSegment = first && segment.firstSeq > 0;
      if (opensSegment && record.type !== CHECKPOINT_TYPE) return problem("broken-chain", `seq ${record.seq} opens a segment but is not a checkpoint: the segment was replaced`, record.seq);
      const expectedPrev = prevHash ?? (record.type === "ledger.created" && record.seq === 0 ? genesisHash(String(record.data.ledger_id)) : opensSegment ? record.prev : undefined);
      if (record.prev !== expectedPrev) {
        return problem("broken-chain", `seq ${record.seq} does not link to the record before it (prev hash mismatch): records were removed, replaced or reordered`, record.seq);
      }
      if (record.type === "ledger.created" || record.type === CHECKPOINT_TYPE) result.ledgerId = String(record.data.ledger_id);
      if (record.type === CHECKPOINT_TYPE) {
        options.onCheckpoint?.(record, segment);
        if (first && index === 0 && options.replayCarried) {
          result.checkpoint = record;
          for (const carried of carriedRecords(record)) {
            if (keep) result.records.push(carried);
            else options.onRecord!(carried);
          }
        }
      }
      if (record.seq === options.watchSeq) result.watchedHash = hash;
      prevHash = hash;
      expectedSeq += 1;
      result.intactBytes += Buffer.byteLength(line) + 1;
      result.last = record;
      result.recordsRead += 1;
      first = false;
      if (keep) result.records.push(record);
      else options.onRecord!(record);
    }
  }
  return result;
}

/** Reads and checks a whole ledger, every segment (a 0.1 file is read in place). */
export function scanLedger(path: string, onRecord?: (record: LedgerRecord) => void): LedgerScan {
  return scanSegments(ledgerSegments(path), onRecord ? { onRecord } : {});
}

/**
 * What start-up reads: the last segment only — its checkpoint's carried records, then every record after it. The
 * cost is bounded by the segment size, not the history (issue 12). Readers that need open requests, pins or the
 * halt state (`pending`, reviewer commands) use this too; `show` and `audit verify` read everything.
 */
export function replayLedger(path: string, onRecord: (record: LedgerRecord) => void, watchSeq?: number): LedgerScan {
  const last = ledgerSegments(path).at(-1);
  return last ? scanSegments([last], { onRecord, replayCarried: true, ...(watchSeq !== undefined ? { watchSeq } : {}) }) : { records: [], intactBytes: 0, recordsRead: 0 };
}
