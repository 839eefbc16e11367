import { hash } from "node:crypto";
import canonicalize from "canonicalize";
import { knownArgumentTexts } from "../argumentTexts.js";

export const LEDGER_VERSION = 1;
export const HASH_PREFIX = "atlas-ledger-v1\n";

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
export function envelopeParts(v: unknown, seq: unknown, ts: unknown, type: unknown, ref: unknown, data: unknown, prev: unknown): { data: string; rest: string } | undefined {
  if (
    typeof v !== "number" || !Number.isFinite(v) || typeof seq !== "number" || !Number.isFinite(seq) ||
    !isJsonString(ts) || !isJsonString(type) || !isJsonString(prev) || (ref !== undefined && !isJsonString(ref)) ||
    typeof data !== "object" || data === null
  ) {
    return undefined;
  }
  const dataJson = canonicalJson(data);
  if (dataJson === undefined) return undefined;
  return {
    data: dataJson,
    rest: `"prev":${JSON.stringify(prev)},${ref === undefined ? "" : `"ref":${JSON.stringify(ref)},`}"seq":${JSON.stringify(seq)},"ts":${JSON.stringify(ts)},"type":${JSON.stringify(type)},"v":${JSON.stringify(v)}}`,
  };
}

const INDEX_KEY = /^(?:0|[1-9][0-9]*)$/;
const NOT_PLAIN = Symbol("not plain");

/**
 * RFC 8785 canonical JSON, the fast way: a copy of the value with every object's members inserted in sorted order
 * (UTF-16 code units, RFC 8785 §3.2.3 — what `Array#sort` compares), serialised by the native `JSON.stringify`,
 * whose number and string forms are the ones RFC 8785 adopts (§3.2.2). That holds only for plain JSON data, so
 * anything else — integer-like keys (which V8 enumerates first, whatever the insertion order), `toJSON`, undefined
 * members, non-finite numbers, lone surrogates, class instances — takes the `canonicalize` package, which decides
 * (or throws) as before. About five times cheaper per call than `canonicalize` alone (notes/performance.md, item 3).
 */
export function canonicalJson(value: unknown): string | undefined {
  const known = knownArgumentTexts(value);
  if (known) return known.canonical;
  const spliced = withKnownMembers(value);
  if (spliced !== undefined) return spliced;
  const sorted = sortedCopy(value, 0);
  return sorted === NOT_PLAIN ? canonicalize(value) : JSON.stringify(sorted);
}

/**
 * A plain object holding arguments whose canonical text is already known (a call digest's `{upstream, tool, args}`,
 * a record's `data`), serialised member by member around that text instead of serialising the arguments again
 * (issue 10). Canonical JSON composes: an object's text is its members' texts in sorted key order (RFC 8785 §3.2.3).
 * Undefined when no member is known or a member is not plain JSON (the general path then decides).
 */
function withKnownMembers(value: unknown): string | undefined {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return undefined;
  const proto = Object.getPrototypeOf(value) as unknown;
  if ((proto !== Object.prototype && proto !== null) || "toJSON" in value) return undefined;
  const record = value as Record<string, unknown>;
  const keys = Object.keys(record);
  if (!keys.some((key) => knownArgumentTexts(record[key]) !== undefined)) return undefined;
  // concatenated, not joined: the known text is linked into the result, not copied
  let text = "{";
  for (const key of keys.sort()) {
    const member = isJsonString(key) ? canonicalJson(record[key]) : undefined;
    if (member === undefined) return undefined;
    text += `${text.length > 1 ? "," : ""}${JSON.stringify(key)}:${member}`;
  }
  return `${text}}`;
}

function sortedCopy(value: unknown, depth: number): unknown {
  if (value === null || typeof value === "boolean") return value;
  if (typeof value === "number") return Number.isFinite(value) ? value : NOT_PLAIN;
  if (typeof value === "string") return isJsonString(value) ? value : NOT_PLAIN;
  if (typeof value !== "object" || depth > 200) return NOT_PLAIN;
  if (Array.isArray(value)) {
    const copy = new Array<unknown>(value.length);
    for (let i = 0; i < value.length; i++) {
      if (!(i in value)) return NOT_PLAIN;
      const item = sortedCopy(value[i], depth + 1);
      if (item === NOT_PLAIN) return NOT_PLAIN;
      copy[i] = item;
    }
    return copy;
  }
  const proto = Object.getPrototypeOf(value) as unknown;
  if ((proto !== Object.prototype && proto !== null) || "toJSON" in value) return NOT_PLAIN;
  const keys = Object.keys(value).sort();
  const copy: Record<string, unknown> = {};
  for (const key of keys) {
    if (INDEX_KEY.test(key)) return NOT_PLAIN;
    const member = sortedCopy((value as Record<string, unknown>)[key], depth + 1);
    if (member === NOT_PLAIN) return NOT_PLAIN;
    copy[key] = member;
  }
  return copy;
}

/**
 * Digest identifying "the same call": upstream, tool and canonical arguments (RFC 8785 JSON of all three), as
 * recorded in `args_digest`. Taken from the arguments' prepared texts when they carry it (issue 10).
 */
export function digestCall(upstream: string, tool: string, args: Record<string, unknown>): string {
  const known = knownArgumentTexts(args)?.call;
  if (known && known.upstream === upstream && known.tool === tool) return known.digest;
  return sha256Hex(canonicalJson({ upstream, tool, args }) ?? "");
}

/** The chain's anchor: the first record's `prev`. */
export function genesisHash(ledgerId: string): string {
  return sha256Hex(ledgerId);
}


/**
 * Builds a record and its stored line in one serialisation: the line is the record's own canonical JSON with `hash`
 * in its sorted place. Odd input takes the general path (which throws where canonicalize does).
 */
export function buildRecord(seq: number, ts: string, type: string, ref: string | undefined, data: Record<string, unknown>, prev: string): { record: LedgerRecord; line: string } {
  const parts = envelopeParts(LEDGER_VERSION, seq, ts, type, ref || undefined, data, prev);
  const hash = sha256Hex(HASH_PREFIX + (parts ? `{"data":${parts.data},${parts.rest}` : canonicalize({ v: LEDGER_VERSION, seq, ts, type, ...(ref ? { ref } : {}), data, prev })));
  const record: LedgerRecord = ref ? { v: LEDGER_VERSION, seq, ts, type, ref, data, prev, hash } : { v: LEDGER_VERSION, seq, ts, type, data, prev, hash };
  return { record, line: parts ? `{"data":${parts.data},"hash":"${hash}",${parts.rest}\n` : `${JSON.stringify(record)}\n` };
}
