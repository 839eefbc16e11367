import { createHash, hash, randomUUID } from "node:crypto";
import { closeSync, existsSync, fdatasync, fstatSync, mkdirSync, openSync, readSync, renameSync, writeFileSync, writeSync } from "node:fs";
import { dirname } from "node:path";
import canonicalize from "canonicalize";
import { LedgerError } from "../errors.js";

export const LEDGER_VERSION = 1;
const HASH_PREFIX = "atlas-ledger-v1\n";

/** One line of the ledger. `hash` covers every other field (RFC 8785 canonical JSON). */
export interface LedgerRecord {
  v: number;
  seq: number;
  ts: string;
  type: string;
  ref?: string;
  data: Record<string, unknown>;
  prev: string;
  hash: string;
}

export type UnsignedRecord = Omit<LedgerRecord, "hash">;

/** One-shot `crypto.hash`: about half the cost of createHash().update().digest() on the small inputs hashed per call. */
export function sha256Hex(text: string): string {
  return hash("sha256", text, "hex");
}

export function hashRecord(record: UnsignedRecord): string {
  return sha256Hex(HASH_PREFIX + canonicalRecord(record));
}

const ENVELOPE_KEYS = new Set(["v", "seq", "ts", "type", "ref", "data", "prev"]);
// String#isWellFormed is ES2024 (Node 20+); canonicalize refuses lone surrogates, and so does the fast path.
const isJsonString = (value: unknown): value is string => typeof value === "string" && (value as string & { isWellFormed(): boolean }).isWellFormed();

/**
 * RFC 8785 JSON of a record without its hash. A record has a fixed envelope whose canonical member order is known
 * (data, prev, ref, seq, ts, type, v), so only `data` needs the general canonicalizer: the same bytes for a third of
 * the work, and hashing runs five times per auto-approved call and once per record at replay. Anything else — an
 * edited line with extra members or odd types — takes the general path, which decides (or throws) as before.
 */
export function canonicalRecord(record: UnsignedRecord): string {
  let members = 0;
  for (const key in record) {
    if (!ENVELOPE_KEYS.has(key)) return canonicalize(record) ?? "";
    members += 1;
  }
  if (members !== Object.keys(record).length) return canonicalize(record) ?? "";
  return canonicalEnvelope(record.v, record.seq, record.ts, record.type, record.ref, record.data, record.prev) ?? canonicalize(record) ?? "";
}

/** The fast path of `canonicalRecord`; undefined when a member is not of the envelope's plain types. */
function canonicalEnvelope(v: unknown, seq: unknown, ts: unknown, type: unknown, ref: unknown, data: unknown, prev: unknown): string | undefined {
  const parts = envelopeParts(v, seq, ts, type, ref, data, prev);
  return parts && `{"data":${parts.data},${parts.rest}`;
}

/**
 * The canonical JSON of a record's `data`, and of the members after it (`prev` … `v`, closing brace). Canonical
 * member order puts `hash` between the two, so one serialisation yields both the hashed text and the stored line.
 */
function envelopeParts(v: unknown, seq: unknown, ts: unknown, type: unknown, ref: unknown, data: unknown, prev: unknown): { data: string; rest: string } | undefined {
  if (
    typeof v !== "number" || !Number.isFinite(v) || typeof seq !== "number" || !Number.isFinite(seq) ||
    !isJsonString(ts) || !isJsonString(type) || !isJsonString(prev) || (ref !== undefined && !isJsonString(ref)) ||
    typeof data !== "object" || data === null
  ) {
    return undefined;
  }
  const dataJson = canonicalize(data);
  if (dataJson === undefined) return undefined;
  return {
    data: dataJson,
    rest: `"prev":${JSON.stringify(prev)},${ref === undefined ? "" : `"ref":${JSON.stringify(ref)},`}"seq":${JSON.stringify(seq)},"ts":${JSON.stringify(ts)},"type":${JSON.stringify(type)},"v":${JSON.stringify(v)}}`,
  };
}

/** The chain's anchor: the first record's `prev`. */
export function genesisHash(ledgerId: string): string {
  return sha256Hex(ledgerId);
}

/** Where the bytes go. The default writes to a file; tests pass one that fails to prove we fail closed. */
export interface LedgerSink {
  write(text: string): void;
  sync(): Promise<void>;
  close(): void;
}

export function openFileSink(path: string): LedgerSink {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const fd = openSync(path, "a", 0o600);
  return {
    write(text) {
      const bytes = Buffer.from(text, "utf8");
      let offset = 0;
      while (offset < bytes.length) offset += writeSync(fd, bytes, offset);
    },
    sync: () => new Promise((resolve, reject) => fdatasync(fd, (error) => (error ? reject(error) : resolve()))),
    close: () => closeSync(fd),
  };
}

/** Streams a file's lines without holding it whole in memory (a 1M-record ledger is hundreds of MB). */
export function* readLines(path: string): Generator<{ line: string; complete: boolean; lineNo: number }> {
  const fd = openSync(path, "r");
  try {
    const chunk = Buffer.allocUnsafe(1 << 20);
    let carry: Buffer[] = [];
    let lineNo = 0;
    for (;;) {
      const read = readSync(fd, chunk, 0, chunk.length, null);
      if (read === 0) break;
      let start = 0;
      for (let nl = chunk.indexOf(10, start); nl !== -1 && nl < read; nl = chunk.indexOf(10, start)) {
        const piece = chunk.subarray(start, nl);
        const line = carry.length ? Buffer.concat([...carry, piece]).toString("utf8") : piece.toString("utf8");
        carry = [];
        lineNo += 1;
        yield { line, complete: true, lineNo };
        start = nl + 1;
      }
      if (start < read) carry.push(Buffer.from(chunk.subarray(start, read)));
    }
    if (carry.length) yield { line: Buffer.concat(carry).toString("utf8"), complete: false, lineNo: lineNo + 1 };
  } finally {
    closeSync(fd);
  }
}

export type DamageKind = "torn" | "malformed" | "edited" | "missing" | "reordered" | "broken-chain";

export interface LedgerProblem {
  kind: DamageKind;
  line: number;
  seq?: number;
  message: string;
}

export interface LedgerScan {
  records: LedgerRecord[];
  /** First problem found; records before it are intact. */
  problem?: LedgerProblem;
  /** Byte length of the intact prefix (where a torn tail starts). */
  intactBytes: number;
  /** The last intact record. */
  last?: LedgerRecord;
}

/**
 * Reads and checks a ledger: JSON per line, consecutive `seq`, `prev` linking to the previous hash, each hash
 * recomputed, and the first record anchored at the genesis hash of its own ledger id. Stops at the first problem.
 */
export function scanLedger(path: string, onRecord?: (record: LedgerRecord) => void): LedgerScan {
  const records: LedgerRecord[] = [];
  const keep = onRecord === undefined;
  let intactBytes = 0;
  let prevHash: string | undefined;
  let expectedSeq = 0;
  let last: LedgerRecord | undefined;
  const fail = (problem: LedgerProblem): LedgerScan => ({ records, problem, intactBytes, ...(last ? { last } : {}) });
  if (!existsSync(path)) return { records, intactBytes };
  for (const { line, complete, lineNo } of readLines(path)) {
    if (!complete) {
      return fail({ kind: "torn", line: lineNo, message: `line ${lineNo}: torn tail (an unfinished write of ${Buffer.byteLength(line)} bytes, no newline)` });
    }
    let record: LedgerRecord;
    try {
      record = JSON.parse(line) as LedgerRecord;
      if (typeof record !== "object" || record === null || typeof record.seq !== "number" || typeof record.hash !== "string") throw new Error("not a ledger record");
    } catch (error) {
      return fail({ kind: "malformed", line: lineNo, message: `line ${lineNo}: not a ledger record (${(error as Error).message})` });
    }
    if (record.seq !== expectedSeq) {
      return record.seq > expectedSeq
        ? fail({ kind: "missing", line: lineNo, seq: record.seq, message: `line ${lineNo}: seq ${record.seq} follows seq ${expectedSeq - 1}: record(s) ${expectedSeq}..${record.seq - 1} are missing` })
        : fail({ kind: "reordered", line: lineNo, seq: record.seq, message: `line ${lineNo}: seq ${record.seq} appears after seq ${expectedSeq - 1}: records were reordered or duplicated` });
    }
    const { hash, ...unsigned } = record;
    if (hashRecord(unsigned) !== hash) {
      return fail({ kind: "edited", line: lineNo, seq: record.seq, message: `line ${lineNo}: seq ${record.seq} (${record.type}) was edited: its hash does not match its content` });
    }
    const expectedPrev = prevHash ?? (record.type === "ledger.created" ? genesisHash(String(record.data.ledger_id)) : undefined);
    if (record.prev !== expectedPrev) {
      return fail({ kind: "broken-chain", line: lineNo, seq: record.seq, message: `line ${lineNo}: seq ${record.seq} does not link to the record before it (prev hash mismatch): records were removed, replaced or reordered` });
    }
    prevHash = hash;
    expectedSeq += 1;
    intactBytes += Buffer.byteLength(line) + 1;
    last = record;
    if (keep) records.push(record);
    else onRecord(record);
  }
  return { records, intactBytes, ...(last ? { last } : {}) };
}

export interface OpenLedgerOptions {
  instance: string;
  now?: () => Date;
  sink?: (path: string) => LedgerSink;
  /** Called for each intact record during replay, in order. */
  onRecord?: (record: LedgerRecord) => void;
  log?: (line: string) => void;
}

export type Durability = "sync" | "batch";

const BATCH_DELAY_MS = 10;

/**
 * The append-only, hash-chained JSONL ledger. One writer at a time (the instance lock guarantees it).
 * A `sync` append is written at once, together with anything buffered before it (a failed write throws: callers
 * fail closed). `batch` appends are buffered and written together — one write per event-loop turn, or earlier by
 * `flush()`, `whenWritten()`, `commit()` — so a burst of calls costs one write, not five per call. `commit()` resolves
 * once every append so far is fsynced, and concurrent commits share one fsync (group commit).
 */
export class Ledger {
  readonly path: string;
  private readonly sink: LedgerSink;
  private readonly now: () => Date;
  private seq: number;
  private lastHash: string;
  private written = 0;
  private synced = 0;
  private syncing: Promise<void> | undefined;
  private batchTimer: NodeJS.Timeout | undefined;
  /** Serialised `batch` records not yet handed to the OS, in seq order. */
  private unwritten: string[] = [];
  private writing: Promise<void> | undefined;
  private failure: LedgerError | undefined;
  private closed = false;

  private constructor(path: string, sink: LedgerSink, now: () => Date, seq: number, lastHash: string) {
    this.path = path;
    this.sink = sink;
    this.now = now;
    this.seq = seq;
    this.lastHash = lastHash;
  }

  /**
   * Opens (or creates) a ledger and replays it. A torn tail — a write cut off by a crash, never acknowledged — is
   * moved aside to `<file>.torn-<time>` and recorded; any other damage refuses to open (run `audit verify`).
   */
  static open(path: string, options: OpenLedgerOptions): Ledger {
    const now = options.now ?? (() => new Date());
    const makeSink = options.sink ?? openFileSink;
    const scan = scanLedger(path, options.onRecord ?? (() => {}));
    let tornNote: Record<string, unknown> | undefined;
    if (scan.problem) {
      if (scan.problem.kind !== "torn") {
        throw new LedgerError(`ledger ${path} is damaged: ${scan.problem.message}. Run 'atlas-gateway audit verify' for details; the gateway will not write to a damaged ledger.`);
      }
      tornNote = moveTornTail(path, scan.intactBytes, now());
      options.log?.(`ledger: moved a torn tail (${tornNote.bytes} bytes from an interrupted write) to ${tornNote.saved_to}`);
    }
    const last = scan.last;
    let ledger: Ledger;
    try {
      ledger = new Ledger(path, makeSink(path), now, last ? last.seq + 1 : 0, last?.hash ?? "");
    } catch (error) {
      throw new LedgerError(`cannot open ledger ${path}: ${(error as Error).message}`);
    }
    if (!last) {
      const ledgerId = `${options.instance}-${randomUUID()}`;
      ledger.lastHash = genesisHash(ledgerId);
      const created = ledger.append("ledger.created", undefined, { ledger_id: ledgerId, instance: options.instance }, "sync");
      options.onRecord?.(created);
    }
    if (tornNote) {
      const repaired = ledger.append("ledger.repaired", undefined, tornNote, "sync");
      options.onRecord?.(repaired);
    }
    return ledger;
  }

  get nextSeq(): number {
    return this.seq;
  }

  /** Writes one record now and returns it. Throws `LedgerError` if it cannot be written; the ledger then stays failed. */
  append(type: string, ref: string | undefined, data: Record<string, unknown>, durability: Durability): LedgerRecord {
    if (this.failure) throw this.failure;
    if (this.closed) throw new LedgerError("ledger is closed");
    const seq = this.seq;
    const ts = this.now().toISOString();
    const prev = this.lastHash;
    // Serialised once: the stored line is the record's own canonical JSON, `hash` in its sorted place. Odd input
    // takes the general path (which throws where canonicalize does, as before).
    const parts = envelopeParts(LEDGER_VERSION, seq, ts, type, ref || undefined, data, prev);
    const hash = sha256Hex(HASH_PREFIX + (parts ? `{"data":${parts.data},${parts.rest}` : canonicalize({ v: LEDGER_VERSION, seq, ts, type, ...(ref ? { ref } : {}), data, prev })));
    const record: LedgerRecord = ref ? { v: LEDGER_VERSION, seq, ts, type, ref, data, prev, hash } : { v: LEDGER_VERSION, seq, ts, type, data, prev, hash };
    this.unwritten.push(parts ? `{"data":${parts.data},"hash":"${hash}",${parts.rest}\n` : `${JSON.stringify(record)}\n`);
    this.seq += 1;
    this.lastHash = record.hash;
    this.written += 1;
    if (durability === "sync") this.flush();
    else {
      this.scheduleWrite();
      this.scheduleBatch();
    }
    return record;
  }

  /** Hands every buffered record to the OS now (not fsynced). Throws `LedgerError` if it cannot; the ledger then stays failed. */
  flush(): void {
    if (this.failure) throw this.failure;
    if (this.unwritten.length === 0) return;
    const text = this.unwritten.length === 1 ? this.unwritten[0]! : this.unwritten.join("");
    this.unwritten = [];
    try {
      this.sink.write(text);
    } catch (error) {
      this.failure = new LedgerError(`cannot write ledger ${this.path}: ${(error as Error).message}`);
      throw this.failure;
    }
  }

  /**
   * Resolves once every record appended so far is written (not fsynced); rejects with `LedgerError` if that write
   * fails. Callers that must not act on an unwritten record (an auto-approved call before it reaches the upstream)
   * await this; all the calls of one event-loop turn share a single write.
   */
  whenWritten(): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.unwritten.length === 0) return Promise.resolve();
    this.scheduleWrite();
    return this.writing!;
  }

  private scheduleWrite(): void {
    this.writing ??= new Promise<void>((resolve, reject) => {
      setImmediate(() => {
        this.writing = undefined;
        try {
          this.flush();
          resolve();
        } catch (error) {
          reject(error as Error);
        }
      });
    });
    // a rejection nobody awaits is not an unhandled one: the failure stays on the ledger and the next append throws it
    this.writing.catch(() => {});
  }

  /** Resolves once everything appended so far is on disk. Rejects (and fails the ledger) if fsync fails. */
  async commit(): Promise<void> {
    this.flush();
    const target = this.written;
    while (this.synced < target) {
      if (this.failure) throw this.failure;
      if (!this.syncing) {
        this.flush(); // what is fsynced must first be written: records appended while the last fsync ran
        const upTo = this.written;
        this.syncing = this.sink
          .sync()
          .then(() => {
            this.synced = Math.max(this.synced, upTo);
          })
          .catch((error: Error) => {
            this.failure = new LedgerError(`cannot fsync ledger ${this.path}: ${error.message}`);
          })
          .finally(() => {
            this.syncing = undefined;
          });
      }
      await this.syncing;
    }
    if (this.failure) throw this.failure;
  }

  private scheduleBatch(): void {
    if (this.batchTimer) return;
    this.batchTimer = setTimeout(() => {
      this.batchTimer = undefined;
      this.commit().catch(() => {});
    }, BATCH_DELAY_MS);
    this.batchTimer.unref();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    clearTimeout(this.batchTimer);
    await this.commit().catch(() => {});
    this.closed = true;
    try {
      this.sink.close();
    } catch {
      // already closed or failed: nothing more to flush
    }
  }
}

function moveTornTail(path: string, intactBytes: number, now: Date): Record<string, unknown> {
  const fd = openSync(path, "r+");
  try {
    const size = fstatSync(fd).size;
    const torn = Buffer.alloc(size - intactBytes);
    readSync(fd, torn, 0, torn.length, intactBytes);
    const savedTo = `${path}.torn-${now.toISOString().replace(/[:.]/g, "-")}`;
    writeFileSync(savedTo, torn, { mode: 0o600 });
    const tmp = `${path}.repair`;
    const intact = Buffer.alloc(intactBytes);
    readSync(fd, intact, 0, intactBytes, 0);
    writeFileSync(tmp, intact, { mode: 0o600 });
    renameSync(tmp, path);
    return { bytes: torn.length, sha256: createHash("sha256").update(torn).digest("hex"), saved_to: savedTo };
  } finally {
    closeSync(fd);
  }
}
