import { existsSync, readFileSync } from "node:fs";
import { ledgerFiles } from "../dataDir.js";
import { checkCheckpointRecord, checkpointOrigin, ledgerSegments, scanSegments, type LedgerScan } from "./scan.js";
import { readHead } from "./headFile.js";
import { parseVerifierKey, type Checkpoint, type NoteVerifier } from "./signedNote.js";

export interface LedgerVerification {
  scan: LedgerScan;
  records: number;
  segments: number;
  /** Checkpoints whose signature, chain position and state verified. */
  checkpoints: number;
  /** The signed head's size, when a head file was found and verified. */
  headSize?: number;
  /** Tampering found beyond the chain itself: a bad signature, a ledger shorter than its head, a rewritten chain. */
  tampering?: string;
  /** Checks that could not be made (no public key for signatures, no head file). */
  warnings: string[];
}

/**
 * Loads a verifier key from `--public-key`: a file holding a signed-note verifier key or a PEM public key, or the
 * verifier key text itself. Throws with the reason when it is neither.
 */
export function loadVerifierKey(value: string): NoteVerifier {
  const text = existsSync(value) ? readFileSync(value, "utf8") : value;
  return parseVerifierKey(text);
}

/**
 * `audit verify` for one ledger: every segment's hash chain (as `scanLedger`), every checkpoint's signature against
 * `verifier` (by default the public key in the data dir), and the head file: a ledger shorter than its signed head,
 * or whose record at the head is not the one signed, was cut or rewritten.
 */
export function verifyLedger(path: string, verifier?: NoteVerifier): LedgerVerification {
  const files = ledgerFiles(path);
  const warnings: string[] = [];
  let key = verifier;
  if (!key && existsSync(files.publicKey)) {
    try {
      key = parseVerifierKey(readFileSync(files.publicKey, "utf8"));
    } catch (error) {
      warnings.push(`the public key ${files.publicKey} cannot be read (${(error as Error).message})`);
    }
  }
  const headExists = existsSync(files.head);
  let head: Checkpoint | undefined;
  let tampering: string | undefined;
  if (headExists && key) {
    const read = readHead(files.head, key);
    if (read?.head) head = read.head;
    else tampering = `the head file ${files.head} fails its signature check: ${read?.invalid.join("; ") || "it holds no signed head"}`;
    if (read?.head && read.invalid.length) warnings.push(`a slot of the head file fails its signature (a torn write, or an edit): ${read.invalid.join("; ")}`);
  }
  let checkpoints = 0;
  let unsigned = 0;
  const segments = ledgerSegments(path);
  const retentionCovers: number[] = [];
  const scan = scanSegments(segments, {
    onRecord: (record) => {
      if (record.type === "ledger.retention") for (const gone of (record.data.deleted ?? []) as { last_seq?: number }[]) if (typeof gone.last_seq === "number") retentionCovers.push(gone.last_seq);
    },
    onCheckpoint: (record) => {
      if (!key) {
        unsigned += 1;
        return;
      }
      const reason = checkCheckpointRecord(record, key);
      if (reason) tampering ??= reason;
      else checkpoints += 1;
    },
    ...(head ? { watchSeq: head.size - 1 } : {}),
  });
  const records = scan.last ? scan.last.seq + 1 : 0;
  if (head && !tampering) {
    if (head.origin !== checkpointOrigin(scan.ledgerId ?? "")) tampering = `the head file ${files.head} belongs to another ledger (${head.origin})`;
    else if (head.size > records && !scan.problem) tampering = `the ledger ends at seq ${records - 1}, but its signed head covers ${head.size} records: ${head.size - records} record(s) were removed from the end`;
    else if (head.size <= records && scan.watchedHash !== head.head) tampering = `record ${head.size - 1} is not the record the signed head names: the chain was rewritten`;
  }
  if (head && !tampering && head.size < records) {
    warnings.push(`${records - head.size} record(s) after the signed head are covered by no signature (written after the last fsync, e.g. just before a crash, or appended by someone else); the gateway does not act on approvals among them`);
  }
  const first = segments[0];
  if (first && first.firstSeq > 0 && !scan.problem) {
    const explained = retentionCovers.some((end) => end === first.firstSeq - 1);
    if (!explained) warnings.push(`the ledger starts at seq ${first.firstSeq} (segment ${first.name}) and no ledger.retention record names the deleted segments before it`);
  }
  if (unsigned || (headExists && !key)) warnings.push(`no public key (${files.publicKey}): signatures not checked; pass --public-key`);
  if (!headExists && records > 0 && segments.length > 0 && existsSync(files.ledger)) warnings.push(`no head file (${files.head}): a cut tail after the last checkpoint cannot be detected`);
  return { scan, records, segments: segments.length, checkpoints, ...(head ? { headSize: head.size } : {}), ...(tampering ? { tampering } : {}), warnings };
}
