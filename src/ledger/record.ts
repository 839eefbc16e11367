import { createHash, hash, randomUUID } from "node:crypto";
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

/**
 * A JSON text in pieces: strings, and the UTF-8 bytes of texts already encoded (large arguments prepared off the
 * event loop, issue 10), which are hashed and written as they are rather than copied into one string.
 */
export type TextPieces = (string | Uint8Array)[];

/** The text of pieces that are a single string (every call but a large one), else undefined. */
function onlyText(pieces: TextPieces): string | undefined {
  return pieces.length === 1 && typeof pieces[0] === "string" ? pieces[0] : undefined;
}

/** sha256 (hex) of the UTF-8 of the pieces, in order. */
export function sha256Pieces(pieces: TextPieces): string {
  const text = onlyText(pieces);
  if (text !== undefined) return sha256Hex(text);
  const digest = createHash("sha256");
  for (const piece of pieces) digest.update(piece);
  return digest.digest("hex");
}

/** The pieces as one string (decoding any bytes): for readers that need text, never on a large call's path. */
export function joinPieces(pieces: TextPieces): string {
  return onlyText(pieces) ?? pieces.map((piece) => (typeof piece === "string" ? piece : Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength).toString("utf8"))).join("");
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
  return parts && joinPieces(['{"data":', ...parts.data, `,${parts.rest}`]);
}

/**
 * The canonical JSON of a record's `data`, and of the members after it (`prev` … `v`, closing brace). Canonical
 * member order puts `hash` between the two, so one serialisation yields both the hashed text and the stored line.
 */
export function envelopeParts(v: unknown, seq: unknown, ts: unknown, type: unknown, ref: unknown, data: unknown, prev: unknown): { data: TextPieces; rest: string } | undefined {
  if (
    typeof v !== "number" || !Number.isFinite(v) || typeof seq !== "number" || !Number.isFinite(seq) ||
    !isJsonString(ts) || !isJsonString(type) || !isJsonString(prev) || (ref !== undefined && !isJsonString(ref)) ||
    typeof data !== "object" || data === null
  ) {
    return undefined;
  }
  const dataJson = canonicalPieces(data);
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
 * Objects whose canonical text is already known (`argumentTexts.ts`), at any depth, are not serialised again.
 */
export function canonicalJson(value: unknown): string | undefined {
  const pieces = canonicalPieces(value);
  return pieces && joinPieces(pieces);
}

/**
 * `canonicalJson` in pieces: the encoded canonical text of an object prepared earlier (`argumentTexts.ts`), at any
 * depth, is a piece of its own, neither serialised nor copied again (issue 10). Undefined where `canonicalJson` is.
 */
export function canonicalPieces(value: unknown): TextPieces | undefined {
  const known = knownArgumentTexts(value);
  if (known) return [known.canonicalBytes];
  const spliced: Uint8Array[] = [];
  const sorted = sortedCopy(value, 0, spliced);
  const general = () => {
    const text = canonicalize(value);
    return text === undefined ? undefined : [text];
  };
  if (sorted === NOT_PLAIN) return general();
  const text = JSON.stringify(sorted);
  return spliced.length === 0 ? [text] : splice(text, spliced) ?? general();
}

/**
 * Stands, while a value is serialised, for an object inside it whose canonical text is already known: the text is
 * put in its place afterwards. Random, so no string in the value can be mistaken for it.
 */
const KNOWN_TOKEN = `\u0000atlas-known-${randomUUID()}-`;

/** `text` cut at each token, the i-th replaced by `known[i]`; tokens come out in the order `sortedCopy` met them. */
function splice(text: string, known: Uint8Array[]): TextPieces | undefined {
  const pieces: TextPieces = [];
  let at = 0;
  for (let i = 0; i < known.length; i++) {
    const token = JSON.stringify(`${KNOWN_TOKEN}${i}`);
    const found = text.indexOf(token, at);
    if (found === -1) return undefined;
    pieces.push(text.slice(at, found), known[i]!);
    at = found + token.length;
  }
  pieces.push(text.slice(at));
  return pieces;
}

function sortedCopy(value: unknown, depth: number, spliced: Uint8Array[]): unknown {
  if (value === null || typeof value === "boolean") return value;
  if (typeof value === "number") return Number.isFinite(value) ? value : NOT_PLAIN;
  if (typeof value === "string") return isJsonString(value) ? value : NOT_PLAIN;
  if (typeof value !== "object" || depth > 200) return NOT_PLAIN;
  const known = knownArgumentTexts(value);
  if (known) return `${KNOWN_TOKEN}${spliced.push(known.canonicalBytes) - 1}`;
  if (Array.isArray(value)) {
    const copy = new Array<unknown>(value.length);
    for (let i = 0; i < value.length; i++) {
      if (!(i in value)) return NOT_PLAIN;
      const item = sortedCopy(value[i], depth + 1, spliced);
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
    const member = sortedCopy((value as Record<string, unknown>)[key], depth + 1, spliced);
    if (member === NOT_PLAIN) return NOT_PLAIN;
    // JSON.parse makes `__proto__` an own member, and it reaches the upstream: an assignment would set the copy's
    // prototype instead and leave the member out of the record and the digest
    if (key === "__proto__") Object.defineProperty(copy, key, { value: member, enumerable: true, writable: true, configurable: true });
    else copy[key] = member;
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
  return sha256Pieces(canonicalPieces({ upstream, tool, args }) ?? [""]);
}

/** The chain's anchor: the first record's `prev`. */
export function genesisHash(ledgerId: string): string {
  return sha256Hex(ledgerId);
}


/**
 * Builds a record and its stored line in one serialisation: the line is the record's own canonical JSON with `hash`
 * in its sorted place. Odd input takes the general path (which throws where canonicalize does).
 */
export function buildRecord(seq: number, ts: string, type: string, ref: string | undefined, data: Record<string, unknown>, prev: string): { record: LedgerRecord; line: string | TextPieces } {
  const parts = envelopeParts(LEDGER_VERSION, seq, ts, type, ref || undefined, data, prev);
  const dataText = parts && onlyText(parts.data);
  const hash = !parts
    ? sha256Hex(HASH_PREFIX + canonicalize({ v: LEDGER_VERSION, seq, ts, type, ...(ref ? { ref } : {}), data, prev }))
    : dataText !== undefined
      ? sha256Hex(`${HASH_PREFIX}{"data":${dataText},${parts.rest}`)
      : sha256Pieces([`${HASH_PREFIX}{"data":`, ...parts.data, `,${parts.rest}`]);
  const record: LedgerRecord = ref ? { v: LEDGER_VERSION, seq, ts, type, ref, data, prev, hash } : { v: LEDGER_VERSION, seq, ts, type, data, prev, hash };
  if (!parts) return { record, line: `${JSON.stringify(record)}\n` };
  const tail = `,"hash":"${hash}",${parts.rest}\n`;
  return { record, line: dataText !== undefined ? `{"data":${dataText}${tail}` : ['{"data":', ...parts.data, tail] };
}
