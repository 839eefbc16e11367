import { existsSync } from "node:fs";
import { ledgerFiles } from "../dataDir.js";
import { maskSecrets } from "../mask.js";
import { readHeadSlots } from "./headFile.js";
import { genesisHash, hashRecord, type LedgerRecord } from "./record.js";
import { CHECKPOINT_TYPE, checkpointOrigin, ledgerSegments, scanSegments } from "./scan.js";
import { verifyCheckpoint, type NoteVerifier } from "./signedNote.js";

/**
 * An excerpt of a ledger (`audit export --format jsonl`) that an auditor can verify on its own
 * (`audit verify --excerpt`): one JSON object per line.
 *
 * - line 1, the header: `{ "atlas_excerpt": 1, "origin", "since", "until", "records" }`;
 * - then every record from an anchor to a signed point, in seq order, each as one entry:
 *   - `{ "kind": "record", "masked", "record" }`: a record of the period, whole, with secrets masked (`masked` says
 *     whether masking changed it: its hash can then not be recomputed, only its place in the chain checked);
 *   - `{ "kind": "link", "seq", "type", "prev", "hash" }`: a record outside the period, by its hashes only;
 *   - `{ "kind": "checkpoint", "seq", "prev", "hash", "note" }`: a checkpoint, by its hashes and its signed note
 *     (which covers every record before it: size = seq, root = prev);
 * - last, when no checkpoint follows the period, `{ "kind": "head", "note" }`: the signed head that covers it.
 *
 * The anchor is the checkpoint at or before the period's first record (or the ledger's genesis record); the signed
 * point is the first checkpoint after the period's last record, or the signed head.
 */
export interface ExcerptHeader {
  atlas_excerpt: 1;
  origin: string;
  since: string;
  until: string;
  records: number;
}

export type ExcerptEntry =
  | { kind: "record"; masked: boolean; record: LedgerRecord }
  | { kind: "link"; seq: number; type: string; prev: string; hash: string }
  | { kind: "checkpoint"; seq: number; prev: string; hash: string; note: string }
  | { kind: "head"; note: string };

export interface Excerpt {
  header: ExcerptHeader;
  entries: ExcerptEntry[];
}

/** Builds the excerpt of the records written in [since, until]. Reads the ledger segment by segment. */
export function buildExcerpt(path: string, since: Date, until: Date): Excerpt {
  const from = since.getTime();
  const to = until.getTime();
  let entries: ExcerptEntry[] = [];
  let inPeriod = 0;
  let ledgerId = "";
  let closed = false;
  const scan = scanSegments(ledgerSegments(path), {
    onRecord: (record) => {
      if (closed) return;
      if (record.type === "ledger.created" || record.type === CHECKPOINT_TYPE) ledgerId = String(record.data.ledger_id);
      const at = Date.parse(record.ts);
      if (record.type === CHECKPOINT_TYPE) {
        const entry: ExcerptEntry = { kind: "checkpoint", seq: record.seq, prev: record.prev, hash: record.hash, note: String(record.data.note ?? "") };
        if (inPeriod === 0) entries = [entry]; // a later anchor: nothing of the period yet
        else {
          entries.push(entry);
          if (at > to) closed = true; // the signed point after the period
        }
        return;
      }
      if (at >= from && at <= to) {
        const masked = maskSecrets(record.data) as Record<string, unknown>;
        const changed = JSON.stringify(masked) !== JSON.stringify(record.data);
        entries.push({ kind: "record", masked: changed, record: changed ? { ...record, data: masked } : record });
        inPeriod += 1;
      } else if (record.seq === 0) {
        entries = [{ kind: "record", masked: false, record }]; // the genesis anchor, whole
      } else {
        entries.push({ kind: "link", seq: record.seq, type: record.type, prev: record.prev, hash: record.hash });
      }
    },
  });
  if (scan.problem && scan.problem.kind !== "torn") throw new Error(`the ledger is damaged (${scan.problem.message}); run 'atlas-gateway audit verify'`);
  if (!closed) {
    const files = ledgerFiles(path);
    const head = existsSync(files.head) ? readHeadNote(files.head) : undefined;
    if (head) {
      // only what the head covers: records written after it are not signed yet
      entries = entries.filter((entry) => entry.kind === "head" || entrySeq(entry) < head.size);
      entries.push({ kind: "head", note: head.note });
    }
  }
  return { header: { atlas_excerpt: 1, origin: checkpointOrigin(ledgerId), since: since.toISOString(), until: until.toISOString(), records: inPeriod }, entries };
}

function entrySeq(entry: ExcerptEntry): number {
  return entry.kind === "record" ? entry.record.seq : entry.kind === "head" ? Number.POSITIVE_INFINITY : entry.seq;
}

/** The newest slot of a head file, by size, unverified: the excerpt's verifier checks its signature. */
function readHeadNote(path: string): { note: string; size: number } | undefined {
  let best: { note: string; size: number } | undefined;
  for (const { note } of readHeadSlots(path)) {
    const size = Number(note.split("\n")[1]);
    if (Number.isInteger(size) && (!best || size > best.size)) best = { note, size };
  }
  return best;
}

export function formatExcerptJsonl(excerpt: Excerpt): string {
  return [excerpt.header, ...excerpt.entries].map((line) => JSON.stringify(line)).join("\n") + "\n";
}

const csvCell = (value: unknown): string => {
  const text = value === undefined ? "" : typeof value === "string" ? value : JSON.stringify(value);
  return /[",\n\r]/.test(text) ? `"${text.replaceAll("\"", "\"\"")}"` : text;
};

/** The period's records as CSV (secrets masked), and the signed notes that cover them, for spreadsheets. */
export function formatExcerptCsv(excerpt: Excerpt): string {
  const rows = [["seq", "ts", "type", "ref", "data", "hash", "prev", "masked"]];
  for (const entry of excerpt.entries) {
    if (entry.kind === "record") rows.push([String(entry.record.seq), entry.record.ts, entry.record.type, entry.record.ref ?? "", csvCell(entry.record.data), entry.record.hash, entry.record.prev, String(entry.masked)]);
    else if (entry.kind === "checkpoint") rows.push([String(entry.seq), "", CHECKPOINT_TYPE, "", csvCell(entry.note), entry.hash, entry.prev, "false"]);
    else if (entry.kind === "head") rows.push(["", "", "ledger.head", "", csvCell(entry.note), "", "", "false"]);
  }
  return rows.map((row) => row.map(csvCell).join(",")).join("\n") + "\n";
}

export interface ExcerptVerification {
  records: number;
  masked: number;
  /** Signed notes that verified (checkpoints and head). */
  signed: number;
  /** The first problem, if any. */
  problem?: string;
}

/**
 * Verifies an excerpt alone: the entries form one unbroken chain (consecutive seq, each `prev` the hash before),
 * every unmasked record re-hashes to its `hash`, it starts at the genesis record or a checkpoint whose signed note
 * covers exactly the records before it, and ends at a checkpoint or signed head covering its last entry — every
 * note verified with `verifier`.
 */
export function verifyExcerpt(text: string, verifier: NoteVerifier): ExcerptVerification {
  const result: ExcerptVerification = { records: 0, masked: 0, signed: 0 };
  const fail = (problem: string): ExcerptVerification => ({ ...result, problem });
  const lines = text.split("\n").filter((line) => line.trim());
  let header: ExcerptHeader;
  let entries: ExcerptEntry[];
  try {
    header = JSON.parse(lines[0] ?? "") as ExcerptHeader;
    entries = lines.slice(1).map((line) => JSON.parse(line) as ExcerptEntry);
  } catch (error) {
    return fail(`not an excerpt (${(error as Error).message})`);
  }
  if (header.atlas_excerpt !== 1) return fail("not an atlas-gateway excerpt (no atlas_excerpt header)");
  const checkNote = (note: string, size: number, head: string, what: string): string | undefined => {
    const check = verifyCheckpoint(note, verifier);
    if (!check.ok) return `${what}: ${check.reason}`;
    if (check.checkpoint.origin !== header.origin) return `${what} is signed for another ledger (${check.checkpoint.origin})`;
    if (check.checkpoint.size !== size || check.checkpoint.head !== head) return `${what} does not cover the chain it closes (size ${check.checkpoint.size})`;
    result.signed += 1;
    return undefined;
  };
  let prevHash: string | undefined;
  let prevSeq: number | undefined;
  let closedBySignature = false;
  for (const [index, entry] of entries.entries()) {
    if (entry.kind === "head") {
      if (index !== entries.length - 1 || prevSeq === undefined || prevHash === undefined) return fail("a signed head must come last, after the chain it covers");
      const problem = checkNote(entry.note, prevSeq + 1, prevHash, "the signed head");
      if (problem) return fail(problem);
      closedBySignature = true;
      break;
    }
    const seq = entry.kind === "record" ? entry.record.seq : entry.seq;
    const prev = entry.kind === "record" ? entry.record.prev : entry.prev;
    const hash = entry.kind === "record" ? entry.record.hash : entry.hash;
    if (prevSeq !== undefined && seq !== prevSeq + 1) return fail(`seq ${seq} follows seq ${prevSeq}: entries are missing or reordered`);
    if (index === 0) {
      if (entry.kind === "checkpoint") {
        const problem = checkNote(entry.note, seq, prev, `the anchoring checkpoint seq ${seq}`);
        if (problem) return fail(problem);
      } else if (entry.kind === "record" && seq === 0 && !entry.masked && prev === genesisHash(String(entry.record.data.ledger_id))) {
        // anchored at the genesis hash
      } else return fail("the excerpt does not start at a signed checkpoint or the ledger's genesis record");
    } else if (prev !== prevHash) {
      return fail(`seq ${seq} does not link to the entry before it`);
    }
    if (entry.kind === "record") {
      result.records += 1;
      if (entry.masked) result.masked += 1;
      else {
        const { hash: _hash, ...unsigned } = entry.record;
        if (hashRecord(unsigned) !== hash) return fail(`seq ${seq} (${entry.record.type}) was edited: its hash does not match its content`);
      }
    }
    if (entry.kind === "checkpoint" && index > 0) {
      const problem = checkNote(entry.note, seq, prev, `checkpoint seq ${seq}`);
      if (problem) return fail(problem);
      closedBySignature = true;
    } else if (index > 0) closedBySignature = false;
    prevSeq = seq;
    prevHash = hash;
  }
  if (!closedBySignature) return fail("the excerpt does not end at a signed checkpoint or signed head: its last records are not covered by a signature");
  if (result.records !== header.records) return fail(`the header announces ${header.records} record(s), the excerpt holds ${result.records}`);
  return result;
}
