import { rmSync } from "node:fs";
import { open, readFile, rename, unlink } from "node:fs/promises";
import { join } from "node:path";
import type { LedgerRecord } from "./record.js";
import { listSegments, readLines, syncDirectory, zlib, type Segment } from "./segments.js";

/**
 * The shortest retention the gateway applies: six months (EU AI Act Art. 26(6) asks deployers to keep logs at least
 * six months; 183 days covers any six). A shorter configured value is raised to this.
 */
export const MIN_RETENTION_MS = 183 * 24 * 60 * 60 * 1000;

export interface RetentionPolicy {
  /** How long closed segments are kept, counted from their last record; undefined keeps everything. */
  keepMs?: number;
  /** Gzip closed segments (they still verify: readers inflate them). */
  compress?: boolean;
}

export interface RetentionResult {
  compressed: string[];
  /** Deleted segments: name, seq range, and the hash of their last record (what the next checkpoint links to). */
  deleted: { segment: string; first_seq: number; last_seq: number; last_hash: string; last_ts: string }[];
  /** The retention actually applied (the configured one, raised to the floor). */
  keepMs?: number;
}

/** The first record of a segment (its checkpoint), read without the rest. */
function firstRecord(segment: Segment): LedgerRecord | undefined {
  for (const { line, complete } of readLines(segment.path)) return complete ? (JSON.parse(line) as LedgerRecord) : undefined;
  return undefined;
}

/**
 * Applies a retention policy to a ledger directory. Only closed segments are touched (never the last one, which is
 * being written). A segment is as old as its last record, whose time is that of the checkpoint opening the next
 * segment; it is deleted only when older than the retention, and never when younger than `MIN_RETENTION_MS`
 * whatever the policy says. Deletion goes oldest first and stops at the first segment kept, so what remains is
 * always a contiguous tail whose first checkpoint anchors the chain (and is signed). Compression is crash-safe:
 * the `.jsonl.gz` appears by rename after an fsync, and only then is the plain file removed.
 */
export async function applyRetention(dir: string, policy: RetentionPolicy, now: Date): Promise<RetentionResult> {
  const result: RetentionResult = { compressed: [], deleted: [] };
  const segments = listSegments(dir);
  const closed = segments.slice(0, -1);
  if (policy.keepMs !== undefined) {
    const keepMs = Math.max(policy.keepMs, MIN_RETENTION_MS);
    result.keepMs = keepMs;
    for (const [index, segment] of closed.entries()) {
      const next = firstRecord(segments[index + 1]!);
      if (!next || now.getTime() - Date.parse(next.ts) <= keepMs) break;
      result.deleted.push({ segment: segment.name, first_seq: segment.firstSeq, last_seq: next.seq - 1, last_hash: next.prev, last_ts: next.ts });
    }
    for (const gone of result.deleted) {
      const plain = join(dir, gone.segment.replace(/\.gz$/, ""));
      rmSync(plain, { force: true });
      rmSync(`${plain}.gz`, { force: true });
    }
    if (result.deleted.length) syncDirectory(dir);
  }
  if (policy.compress) {
    for (const segment of closed.slice(result.deleted.length)) {
      if (segment.compressed) continue;
      const target = `${segment.path}.gz`;
      const tmp = `${target}.tmp`;
      const contents = await readFile(segment.path);
      const packed = await new Promise<Buffer>((resolve, reject) => zlib().gzip(contents, (error, out) => (error ? reject(error) : resolve(out))));
      const handle = await open(tmp, "w", 0o600);
      try {
        await handle.writeFile(packed);
        await handle.datasync();
      } finally {
        await handle.close();
      }
      await rename(tmp, target);
      syncDirectory(dir);
      await unlink(segment.path);
      result.compressed.push(segment.name);
    }
  }
  return result;
}

