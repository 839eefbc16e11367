import { closeSync, existsSync, fdatasyncSync, fstatSync, linkSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, renameSync, rmSync, unlinkSync, writeSync } from "node:fs";
import { createRequire } from "node:module";
import { basename, dirname, join } from "node:path";

/**
 * A ledger (0.2) is a directory of segment files named after the seq of their first record, zero-padded to 12
 * digits so that names sort in seq order: `000000000000.jsonl`, `000000020000.jsonl`, … A segment may be
 * compressed (`.jsonl.gz`, whole-file gzip); only the last segment is ever appended to.
 */
export interface Segment {
  name: string;
  path: string;
  firstSeq: number;
  compressed: boolean;
}

const SEGMENT_NAME = /^(\d{12})\.jsonl(\.gz)?$/;

export function segmentName(firstSeq: number): string {
  return `${String(firstSeq).padStart(12, "0")}.jsonl`;
}

/** The segments of a ledger directory in seq order (empty when the directory does not exist). */
export function listSegments(dir: string): Segment[] {
  if (!existsSync(dir)) return [];
  const segments: Segment[] = [];
  for (const name of readdirSync(dir)) {
    const match = SEGMENT_NAME.exec(name);
    if (match) segments.push({ name, path: join(dir, name), firstSeq: Number(match[1]), compressed: match[2] !== undefined });
  }
  // a crash between compressing a segment and removing its plain file leaves both: the plain one counts
  const unique = new Map<number, Segment>();
  for (const segment of segments) {
    const other = unique.get(segment.firstSeq);
    if (!other || (other.compressed && !segment.compressed)) unique.set(segment.firstSeq, segment);
  }
  return [...unique.values()].sort((a, b) => a.firstSeq - b.firstSeq);
}

/**
 * node:zlib, loaded when a compressed segment is first read or written. An ESM import would load it at every gateway
 * start, before `initialize` is answered (about 2 ms of a cold start, issue 12), though most ledgers are never
 * compressed; `require` of a built-in is cached by Node after the first call.
 */
export function zlib(): typeof import("node:zlib") {
  return createRequire(import.meta.url)("node:zlib") as typeof import("node:zlib");
}

/** Streams a file's lines without holding it whole in memory (a big segment is tens of MB); gzip files are inflated whole. */
export function* readLines(path: string): Generator<{ line: string; complete: boolean; lineNo: number }> {
  if (path.endsWith(".gz")) {
    const text = zlib().gunzipSync(readFileSync(path)).toString("utf8");
    const rows = text.split("\n");
    const tail = rows.pop() ?? "";
    let lineNo = 0;
    for (const line of rows) yield { line, complete: true, lineNo: ++lineNo };
    if (tail) yield { line: tail, complete: false, lineNo: lineNo + 1 };
    return;
  }
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

/** The last complete line of a segment, read from the end (a segment's predecessor link is checked this way at start). */
export function readLastLine(path: string): string | undefined {
  if (path.endsWith(".gz")) {
    const rows = zlib().gunzipSync(readFileSync(path)).toString("utf8").split("\n");
    rows.pop();
    return rows.at(-1);
  }
  const fd = openSync(path, "r");
  try {
    const size = fstatSync(fd).size;
    for (let window = 64 * 1024; ; window *= 2) {
      const start = Math.max(0, size - window);
      const buffer = Buffer.alloc(size - start);
      readSync(fd, buffer, 0, buffer.length, start);
      const end = buffer.lastIndexOf(10); // a torn (unterminated) tail is not a line
      if (end === -1) {
        if (start === 0) return undefined;
        continue;
      }
      const before = end > 0 ? buffer.lastIndexOf(10, end - 1) : -1;
      if (before === -1 && start > 0) continue;
      return buffer.toString("utf8", before + 1, end);
    }
  } finally {
    closeSync(fd);
  }
}

/** Makes a directory entry durable (a rename or a new file) by fsyncing the directory. A no-op where unsupported. */
export function syncDirectory(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, "r");
    fdatasyncSync(fd);
  } catch {
    // Windows cannot open directories; its renames are durable once the call returns
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** Writes a whole new file durably: temp file, fsync, rename into place, fsync the directory. */
export function writeFileDurably(path: string, text: string, mode = 0o600): void {
  const tmp = `${path}.tmp`;
  const fd = openSync(tmp, "w", mode);
  try {
    const bytes = Buffer.from(text, "utf8");
    let offset = 0;
    while (offset < bytes.length) offset += writeSync(fd, bytes, offset);
    fdatasyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  syncDirectory(dirname(path));
}

/** Removes what an interrupted rollover, migration or compression left: `*.tmp` files in the ledger directory. */
export function removeLeftovers(dir: string): void {
  if (!existsSync(dir)) return;
  for (const name of readdirSync(dir)) if (name.endsWith(".tmp")) rmSync(join(dir, name), { force: true });
}

/**
 * Upgrades a 0.1 ledger (one file) to a directory whose first segment is that file, unchanged: its chain, hashes
 * and seq numbers stay valid, so it still verifies end to end. Atomic and crash-safe: the file is hard-linked (no
 * copy, no second version of the bytes) into a temp directory that is renamed into place, and only then is the old
 * name removed. Interrupted anywhere, the next start either finds the old file alone (and migrates again) or the
 * new directory (and removes the old name, which is the same file).
 */
export function migrateLegacyLedger(legacy: string, dir: string): boolean {
  const staging = `${dir}.migrating`;
  if (existsSync(dir)) {
    if (existsSync(legacy)) unlinkSync(legacy);
    rmSync(staging, { recursive: true, force: true });
    return false;
  }
  if (!existsSync(legacy)) return false;
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(staging, { mode: 0o700 });
  const first = join(staging, segmentName(0));
  try {
    linkSync(legacy, first);
  } catch {
    // no hard links on this file system: a durable copy instead
    writeFileDurably(first, readFileSync(legacy, "utf8"));
  }
  syncDirectory(staging);
  renameSync(staging, dir);
  syncDirectory(dirname(dir));
  unlinkSync(legacy);
  syncDirectory(dirname(dir));
  return true;
}

/** The segment a seq lives in (the last one whose first seq is at or before it). */
export function segmentOf(segments: Segment[], seq: number): Segment | undefined {
  let found: Segment | undefined;
  for (const segment of segments) if (segment.firstSeq <= seq) found = segment;
  return found;
}

export const describeSegment = (segment: Segment): string => basename(segment.path);
