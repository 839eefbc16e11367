import { createHash, randomUUID } from "node:crypto";
import { closeSync, existsSync, fdatasync, fdatasyncSync, fstatSync, mkdirSync, openSync, readFileSync, readSync, renameSync, writeFileSync, writeSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { ledgerFiles, type LedgerFiles } from "../dataDir.js";
import { LedgerError } from "../errors.js";
import { buildRecord, genesisHash, type LedgerRecord, type TextPieces } from "./record.js";
import { CHECKPOINT_TYPE, checkCheckpointRecord, checkpointOrigin, EMPTY_CHECKPOINT_STATE, scanSegments, stateDigest, type CheckpointState, type LedgerScan } from "./scan.js";
import { listSegments, migrateLegacyLedger, readLastLine, readLines, removeLeftovers, segmentName, segmentOf, syncDirectory, type Segment } from "./segments.js";
import { applyRetention, type RetentionPolicy } from "./retention.js";
import { HeadWriter, readHead, type HeadRead } from "./headFile.js";
import { loadOrCreateSigner, signCheckpoint, type NoteSigner } from "./signedNote.js";

export { LEDGER_VERSION, canonicalJson, canonicalRecord, digestCall, genesisHash, hashRecord, sha256Hex, type LedgerRecord, type UnsignedRecord } from "./record.js";
export { CHECKPOINT_TYPE, carriedRecords, ledgerSegments, replayLedger, scanLedger, type CheckpointState, type DamageKind, type LedgerProblem, type LedgerScan } from "./scan.js";
export { readLines, type Segment } from "./segments.js";

/**
 * Where the bytes go. The default writes to a file; tests pass one that fails to prove we fail closed. `write` gets
 * bytes rather than text when a record holds arguments already encoded (issue 10).
 */
export interface LedgerSink {
  write(data: string | Uint8Array): void;
  sync(): Promise<void>;
  close(): void;
}

export function openFileSink(path: string): LedgerSink {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const fd = openSync(path, "a", 0o600);
  return {
    write(data) {
      const bytes = typeof data === "string" ? Buffer.from(data, "utf8") : data;
      let offset = 0;
      while (offset < bytes.length) offset += writeSync(fd, bytes, offset);
    },
    sync: () => new Promise((resolve, reject) => fdatasync(fd, (error) => (error ? reject(error) : resolve()))),
    close: () => closeSync(fd),
  };
}

/** Adjacent strings joined, so text between encoded pieces is one write. */
function coalesce(pieces: TextPieces): TextPieces {
  const out: TextPieces = [];
  for (const piece of pieces) {
    const last = out.length - 1;
    if (typeof piece === "string" && typeof out[last] === "string") out[last] += piece;
    else out.push(piece);
  }
  return out;
}

/** Text pieces as one buffer: one copy of encoded arguments, no string of them. */
function concatPieces(pieces: TextPieces): Buffer {
  return Buffer.concat(pieces.map((piece) => (typeof piece === "string" ? Buffer.from(piece, "utf8") : piece)));
}

/** Steps of a segment rollover, named for tests that stop a process at each (a crash there must lose nothing). */
export type RolloverStep = "flushed" | "synced" | "checkpoint-written" | "renamed";

export interface OpenLedgerOptions {
  instance: string;
  now?: () => Date;
  sink?: (path: string) => LedgerSink;
  /** Called for each intact record during replay, in order: the last checkpoint's carried records, then the rest. */
  onRecord?: (record: LedgerRecord) => void;
  log?: (line: string) => void;
  /** The state a new checkpoint carries (the governance log supplies it); empty when not given. */
  checkpointState?: () => CheckpointState;
  /** Records per segment before a rollover (default 20,000). */
  segmentRecords?: number;
  /** A checkpoint at least this often while records are written (default 1 h). */
  checkpointEveryMs?: number;
  /** The signing key; by default loaded (or created) where `ledgerFiles` puts it, outside the ledger directory. */
  signer?: NoteSigner;
  /** Which closed segments to compress or delete (default: keep everything as is). Applied at open and after each rollover. */
  retention?: RetentionPolicy;
  /** Test hook: called at each step of a rollover; throwing there stands for a crash. */
  onRolloverStep?: (step: RolloverStep) => void;
}

export type Durability = "sync" | "batch";

const BATCH_DELAY_MS = 10;
export const DEFAULT_SEGMENT_RECORDS = 20_000;
export const DEFAULT_CHECKPOINT_EVERY_MS = 60 * 60 * 1000;

/**
 * The append-only, hash-chained ledger: a directory of segment files (see `segments.ts`), each after the first
 * opened by a signed checkpoint. One writer at a time (the instance lock guarantees it).
 * A `sync` append is written at once, together with anything buffered before it (a failed write throws: callers
 * fail closed). `batch` appends are buffered and written together — one write per event-loop turn, or earlier by
 * `flush()`, `whenWritten()`, `commit()` — so a burst of calls costs one write. `commit()` resolves once every append
 * so far is fsynced, and concurrent commits share one fsync (group commit); after each fsync the signed head is
 * rewritten (`<ledger>.head`), so a cut tail or a rebuilt chain shows at the next start and in `audit verify`.
 */
export class Ledger {
  /** The ledger directory. */
  readonly path: string;
  readonly files: LedgerFiles;
  /** Records 0 … provenSize-1 are covered by a signature that verified at open; approvals after it are not acted on. */
  readonly provenSize: number;
  /** Ledger lines read at open (carried records not counted): bounded by the segment size, not the history. */
  readonly recordsRead: number;
  private sink: LedgerSink;
  private readonly makeSink: (path: string) => LedgerSink;
  private readonly now: () => Date;
  private readonly signer: NoteSigner;
  private readonly options: OpenLedgerOptions;
  private ledgerId: string;
  private seq: number;
  private lastHash: string;
  private segmentPath: string;
  private segmentFirstSeq: number;
  private segmentStartedMs: number;
  private headSize = 0;
  private readonly headSlot: number | undefined;
  private headWriter: HeadWriter | undefined;
  private written = 0;
  private synced = 0;
  private syncing: Promise<void> | undefined;
  private batchTimer: NodeJS.Timeout | undefined;
  /** Serialised `batch` records not yet handed to the OS, in seq order. */
  private unwritten: (string | TextPieces)[] = [];
  private writing: Promise<void> | undefined;
  private retaining: Promise<void> | undefined;
  private retainAgain = false;
  private failure: LedgerError | undefined;
  private closed = false;

  private constructor(init: {
    files: LedgerFiles; sink: LedgerSink; makeSink: (path: string) => LedgerSink; now: () => Date; signer: NoteSigner; options: OpenLedgerOptions;
    ledgerId: string; seq: number; lastHash: string; segment: { path: string; firstSeq: number; startedMs: number }; provenSize: number; recordsRead: number; headSize: number; headSlot: number | undefined;
  }) {
    this.headSlot = init.headSlot;
    this.files = init.files;
    this.path = init.files.ledger;
    this.sink = init.sink;
    this.makeSink = init.makeSink;
    this.now = init.now;
    this.signer = init.signer;
    this.options = init.options;
    this.ledgerId = init.ledgerId;
    this.seq = init.seq;
    this.lastHash = init.lastHash;
    this.segmentPath = init.segment.path;
    this.segmentFirstSeq = init.segment.firstSeq;
    this.segmentStartedMs = init.segment.startedMs;
    this.provenSize = init.provenSize;
    this.recordsRead = init.recordsRead;
    this.headSize = init.headSize;
  }

  /**
   * Opens (or creates) a ledger and replays it from its last checkpoint. A 0.1 ledger file is first upgraded to a
   * directory (`migrateLegacyLedger`). A torn tail — a write cut off by a crash, never acknowledged — is moved aside
   * to `<segment>.torn-<time>` and recorded. Tampering (a ledger shorter than its signed head, a head or checkpoint
   * whose signature fails, a chain that is not the one signed) and any other damage refuse to open: run
   * `audit verify`.
   */
  static open(path: string, options: OpenLedgerOptions): Ledger {
    const files = ledgerFiles(path);
    const now = options.now ?? (() => new Date());
    const makeSink = options.sink ?? openFileSink;
    const damaged = (message: string) => new LedgerError(`ledger ${files.ledger} is damaged: ${message}. Run 'atlas-gateway audit verify' for details; the gateway will not write to a damaged ledger.`);
    const tampered = (message: string) => new LedgerError(`ledger ${files.ledger} shows tampering: ${message}. Nothing in it is acted on and nothing is re-run; run 'atlas-gateway audit verify' for details.`);
    let migrated: boolean;
    let signer: NoteSigner;
    try {
      migrated = migrateLegacyLedger(files.legacyLedger, files.ledger);
      if (migrated) options.log?.(`ledger: upgraded the 0.1 ledger ${files.legacyLedger} to the segment directory ${files.ledger}`);
      removeLeftovers(files.ledger);
      signer = options.signer ?? loadOrCreateSigner(files.signingKey, files.publicKey);
    } catch (error) {
      throw new LedgerError(`cannot open ledger ${files.ledger}: ${(error as Error).message}`);
    }
    const head = readSignedHead(files, signer, tampered, options.log);
    const segments = listSegments(files.ledger);
    const lastSegment = segments.at(-1);
    const watchSeq = head ? head.size - 1 : undefined;
    const scan: LedgerScan = lastSegment
      ? scanSegments([lastSegment], { onRecord: options.onRecord ?? (() => {}), replayCarried: true, ...(watchSeq !== undefined ? { watchSeq } : {}) })
      : { records: [], intactBytes: 0, recordsRead: 0 };
    if (scan.problem && scan.problem.kind !== "torn") throw damaged(scan.problem.message);
    if (lastSegment?.compressed) throw damaged(`its last segment ${lastSegment.name} is compressed; only closed segments may be`);
    if (scan.checkpoint) {
      const reason = checkCheckpointRecord(scan.checkpoint, signer.verifier) ?? checkLink(segments, scan.checkpoint);
      if (reason) throw tampered(reason);
    }
    const count = scan.last ? scan.last.seq + 1 : 0;
    let provenSize: number;
    if (head) {
      if (head.origin !== checkpointOrigin(scan.ledgerId ?? "")) throw tampered(`its head file ${files.head} belongs to another ledger (${head.origin})`);
      if (head.size > count) throw tampered(`it ends at seq ${count - 1}, but its signed head (${files.head}) covers ${head.size} records: ${head.size - count} record(s) were removed from the end`);
      const hashAtHead = lastSegment && head.size - 1 >= lastSegment.firstSeq ? scan.watchedHash : hashInSegment(segments, head.size - 1);
      if (hashAtHead !== head.head) throw tampered(`record ${head.size - 1} is not the record its signed head names: the chain was rewritten`);
      provenSize = head.size;
    } else if (count === 0 || migrated) {
      provenSize = count; // new, or a 0.1 ledger signed for the first time now: trusted as found
    } else {
      provenSize = scan.checkpoint ? scan.checkpoint.seq + 1 : 0;
      options.log?.(`ledger: no signed head (${files.head}); approvals after seq ${provenSize - 1} cannot be proven and will not be acted on`);
    }
    let tornNote: Record<string, unknown> | undefined;
    if (scan.problem?.kind === "torn" && lastSegment) {
      tornNote = moveTornTail(lastSegment.path, scan.intactBytes, now());
      options.log?.(`ledger: moved a torn tail (${tornNote.bytes} bytes from an interrupted write) to ${tornNote.saved_to}`);
    }
    const segment = lastSegment ?? { path: join(files.ledger, segmentName(0)), firstSeq: 0 };
    const startedAt = scan.checkpoint ? Date.parse(scan.checkpoint.ts) : now().getTime();
    let ledger: Ledger;
    try {
      mkdirSync(files.ledger, { recursive: true, mode: 0o700 });
      ledger = new Ledger({
        files, sink: makeSink(segment.path), makeSink, now, signer, options,
        ledgerId: scan.ledgerId ?? `${options.instance}-${randomUUID()}`,
        seq: count, lastHash: scan.last?.hash ?? "",
        segment: { path: segment.path, firstSeq: segment.firstSeq, startedMs: Number.isFinite(startedAt) ? startedAt : now().getTime() },
        provenSize, recordsRead: scan.recordsRead, headSize: head?.size ?? 0, headSlot: head?.slot,
      });
    } catch (error) {
      throw new LedgerError(`cannot open ledger ${files.ledger}: ${(error as Error).message}`);
    }
    if (!scan.last) {
      ledger.lastHash = genesisHash(ledger.ledgerId);
      const created = ledger.append("ledger.created", undefined, { ledger_id: ledger.ledgerId, instance: options.instance }, "sync");
      options.onRecord?.(created);
    }
    if (tornNote) {
      const repaired = ledger.append("ledger.repaired", undefined, tornNote, "sync");
      options.onRecord?.(repaired);
    }
    if (migrated || ledger.seq - ledger.segmentFirstSeq >= ledger.segmentLimit) ledger.rollover(migrated ? "migration" : "size");
    else ledger.retain();
    return ledger;
  }

  get nextSeq(): number {
    return this.seq;
  }

  private get segmentLimit(): number {
    return this.options.segmentRecords ?? DEFAULT_SEGMENT_RECORDS;
  }

  /** Writes one record now and returns it. Throws `LedgerError` if it cannot be written; the ledger then stays failed. */
  append(type: string, ref: string | undefined, data: Record<string, unknown>, durability: Durability): LedgerRecord {
    if (this.failure) throw this.failure;
    if (this.closed) throw new LedgerError("ledger is closed");
    const nowMs = this.now().getTime();
    const inSegment = this.seq - this.segmentFirstSeq;
    if (inSegment >= this.segmentLimit) this.rollover("size");
    else if (inSegment > 1 && nowMs - this.segmentStartedMs >= (this.options.checkpointEveryMs ?? DEFAULT_CHECKPOINT_EVERY_MS)) this.rollover("interval");
    const { record, line } = buildRecord(this.seq, new Date(nowMs).toISOString(), type, ref, data, this.lastHash);
    this.unwritten.push(line);
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

  /**
   * Closes the current segment and opens the next with a signed checkpoint record carrying the chain head and the
   * state start-up needs. Crash-safe at every step: the old segment is fsynced first, and the new one appears only by
   * an atomic rename of a complete, fsynced file; until then the old segment simply stays the last.
   */
  private rollover(reason: "size" | "interval" | "migration"): void {
    this.flush();
    const hook = this.options.onRolloverStep;
    try {
      hook?.("flushed");
      syncFile(this.segmentPath);
      hook?.("synced");
      const state = this.options.checkpointState?.() ?? EMPTY_CHECKPOINT_STATE;
      const ts = this.now().toISOString();
      const note = signCheckpoint({
        origin: checkpointOrigin(this.ledgerId),
        size: this.seq,
        head: this.lastHash,
        extensions: [`atlas-state ${stateDigest(state)}`, `atlas-time ${ts}`],
      }, this.signer);
      const { record, line } = buildRecord(this.seq, ts, CHECKPOINT_TYPE, undefined, { ledger_id: this.ledgerId, reason, state, note }, this.lastHash);
      const path = join(this.path, segmentName(record.seq));
      const tmp = `${path}.tmp`;
      writeFileSync(tmp, typeof line === "string" ? line : concatPieces(line), { mode: 0o600 });
      syncFile(tmp);
      hook?.("checkpoint-written");
      renameSync(tmp, path);
      syncDirectory(this.path);
      hook?.("renamed");
      const old = this.sink;
      // an fsync of the old segment may still be running: close its file only after it settles
      void (this.syncing ?? Promise.resolve()).finally(() => old.close());
      this.sink = this.makeSink(path);
      this.segmentPath = path;
      this.segmentFirstSeq = record.seq;
      this.segmentStartedMs = Date.parse(ts);
      this.seq += 1;
      this.lastHash = record.hash;
      this.written += 1;
      this.synced = this.written;
      this.writeHead(this.seq, this.lastHash);
    } catch (error) {
      this.failure = error instanceof LedgerError ? error : new LedgerError(`cannot roll the ledger ${this.path} over to a new segment: ${(error as Error).message}`);
      throw this.failure;
    }
    this.retain();
  }

  /**
   * Applies the retention policy in the background (compression runs on the thread pool); deletions are recorded
   * in the ledger as `ledger.retention`, naming each deleted segment's seq range and last hash.
   */
  retain(): Promise<void> {
    const policy = this.options.retention;
    if (!policy || (policy.keepMs === undefined && !policy.compress) || this.closed) return Promise.resolve();
    if (this.retaining) {
      this.retainAgain = true; // a segment closed while the last pass ran: one more pass after it
      return this.retaining;
    }
    this.retaining = applyRetention(this.path, policy, this.now())
      .then((result) => {
        if (result.keepMs !== undefined && policy.keepMs !== undefined && result.keepMs > policy.keepMs) {
          this.options.log?.(`ledger: retention ${Math.round(policy.keepMs / 86_400_000)} days is below the minimum; keeping segments ${Math.round(result.keepMs / 86_400_000)} days`);
        }
        if (result.deleted.length && !this.closed && !this.failure) {
          this.append("ledger.retention", undefined, { keep_ms: result.keepMs ?? null, deleted: result.deleted }, "sync");
        }
      })
      .catch((error: Error) => this.options.log?.(`ledger: retention could not be applied: ${error.message}`))
      .finally(() => {
        this.retaining = undefined;
        if (this.retainAgain && !this.closed) {
          this.retainAgain = false;
          void this.retain();
        }
      });
    return this.retaining;
  }

  /** Hands every buffered record to the OS now (not fsynced). Throws `LedgerError` if it cannot; the ledger then stays failed. */
  flush(): void {
    if (this.failure) throw this.failure;
    if (this.unwritten.length === 0) return;
    const lines = this.unwritten;
    this.unwritten = [];
    try {
      if (lines.every((line) => typeof line === "string")) this.sink.write(lines.length === 1 ? lines[0]! : lines.join(""));
      // encoded arguments are written as they are, between the text around them: no copy into one buffer
      else for (const piece of coalesce(lines.flat())) this.sink.write(piece);
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

  /** Resolves once everything appended so far is on disk and under a signed head. Rejects (and fails the ledger) if fsync fails. */
  async commit(): Promise<void> {
    this.flush();
    const target = this.written;
    while (this.synced < target) {
      if (this.failure) throw this.failure;
      if (!this.syncing) {
        this.flush(); // what is fsynced must first be written: records appended while the last fsync ran
        const upTo = this.written;
        const size = this.seq;
        const head = this.lastHash;
        this.syncing = this.sink
          .sync()
          .then(() => {
            this.synced = Math.max(this.synced, upTo);
            this.writeHead(size, head);
          })
          .catch((error: Error) => {
            this.failure = error instanceof LedgerError ? error : new LedgerError(`cannot fsync ledger ${this.path}: ${error.message}`);
          })
          .finally(() => {
            this.syncing = undefined;
          });
      }
      await this.syncing;
    }
    if (this.failure) throw this.failure;
  }

  /**
   * Writes a signed note for the first `size` records (whose last hash is `head`) into the head file (see
   * `headFile.ts`). Written after the fsync that made them durable, so the head never names a record the disk may
   * not have. Not fsynced itself: after a crash an older head may remain, which is shorter than the ledger — never a
   * false alarm.
   */
  private writeHead(size: number, head: string): void {
    if (size <= this.headSize) return;
    const note = signCheckpoint({ origin: checkpointOrigin(this.ledgerId), size, head, extensions: [`atlas-time ${this.now().toISOString()}`] }, this.signer);
    try {
      this.headWriter ??= new HeadWriter(this.files.head, this.headSlot);
      this.headWriter.write(note);
    } catch (error) {
      throw new LedgerError(`cannot write the ledger head ${this.files.head}: ${(error as Error).message}`);
    }
    this.headSize = size;
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
    while (this.retaining) await this.retaining;
    await this.commit().catch(() => {});
    this.closed = true;
    try {
      this.sink.close();
      this.headWriter?.close();
    } catch {
      // already closed or failed: nothing more to flush
    }
  }
}

interface SignedHead {
  origin: string;
  size: number;
  head: string;
  slot: number | undefined;
}

/** The head file's newest valid signed head; undefined when there is none. A head file with no valid slot is tampering. */
function readSignedHead(files: LedgerFiles, signer: NoteSigner, tampered: (message: string) => LedgerError, log?: (line: string) => void): SignedHead | undefined {
  let read: HeadRead | undefined;
  try {
    read = readHead(files.head, signer.verifier);
  } catch (error) {
    throw new LedgerError(`cannot read the ledger head ${files.head}: ${(error as Error).message}`);
  }
  if (!read) return undefined;
  if (!read.head) throw tampered(`its head file ${files.head} fails its signature check: ${read.invalid.join("; ") || "it holds no signed head"}`);
  if (read.invalid.length) log?.(`ledger: ignoring a torn or altered slot of ${files.head} (${read.invalid.join("; ")}); using the other`);
  return { origin: read.head.origin, size: read.head.size, head: read.head.head, slot: read.slot };
}

/** A checkpoint must link to the last record of the segment before it; returns why not, or undefined. */
function checkLink(segments: Segment[], checkpoint: LedgerRecord): string | undefined {
  const previous = segments.at(-2);
  if (!previous) return `checkpoint seq ${checkpoint.seq} opens the only segment: the segments before it were removed`;
  const line = readLastLine(previous.path);
  let last: LedgerRecord | undefined;
  try {
    last = line ? (JSON.parse(line) as LedgerRecord) : undefined;
  } catch {
    last = undefined;
  }
  if (!last || last.seq !== checkpoint.seq - 1 || last.hash !== checkpoint.prev) {
    return `segment ${previous.name} does not end with the record checkpoint seq ${checkpoint.seq} links to: it was cut short or rewritten`;
  }
  return undefined;
}

/** The hash of record `seq` read from the segment that holds it (the head may predate the last rollover). */
function hashInSegment(segments: Segment[], seq: number): string | undefined {
  const segment = segmentOf(segments, seq);
  if (!segment) return undefined;
  for (const { line, complete } of readLines(segment.path)) {
    if (!complete) return undefined;
    const record = JSON.parse(line) as LedgerRecord;
    if (record.seq === seq) return record.hash;
    if (record.seq > seq) return undefined;
  }
  return undefined;
}

function syncFile(path: string): void {
  const fd = openSync(path, "r");
  try {
    fdatasyncSync(fd);
  } finally {
    closeSync(fd);
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
    return { bytes: torn.length, sha256: createHash("sha256").update(torn).digest("hex"), saved_to: savedTo, segment: basename(path) };
  } finally {
    closeSync(fd);
  }
}
