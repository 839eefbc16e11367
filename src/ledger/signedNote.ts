import { createPrivateKey, createPublicKey, generateKeyPairSync, hash, sign, verify, type KeyObject } from "node:crypto";
import { chmodSync, existsSync, linkSync, mkdirSync, readFileSync, renameSync, unlinkSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";

/**
 * Signed checkpoints in the C2SP formats (https://c2sp.org/signed-note, https://c2sp.org/tlog-checkpoint):
 *
 *     <origin>\n<size>\n<base64 root hash>\n[extension lines\n]\n— <key name> <base64(key id ‖ signature)>\n
 *
 * For the ledger, `size` is a number of records (seq 0 … size-1) and the "root hash" is the hash of record size-1
 * (the chain head): a hash chain is a degenerate log whose head commits to everything before it. The key is Ed25519;
 * its 4-byte key id is the first bytes of SHA-256(name ‖ "\n" ‖ 0x01 ‖ public key), as signed-note specifies.
 */
export const SIGNATURE_ALGORITHM_ED25519 = 0x01;
export const KEY_NAME = "atlas-gateway-ledger";
const EM_DASH = "\u2014";

export interface Checkpoint {
  origin: string;
  size: number;
  /** The chain head: hash (hex) of record size-1. */
  head: string;
  /** Extension lines, in order (no newlines). */
  extensions: string[];
}

/** A signer: the private key and what identifies it. */
export interface NoteSigner {
  name: string;
  keyId: Buffer;
  privateKey: KeyObject;
  verifier: NoteVerifier;
}

/** A verifier key: what an auditor needs (see `formatVerifierKey`). */
export interface NoteVerifier {
  name: string;
  keyId: Buffer;
  publicKey: KeyObject;
  /** The raw 32-byte Ed25519 public key. */
  raw: Buffer;
}

function rawPublicKey(publicKey: KeyObject): Buffer {
  const jwk = publicKey.export({ format: "jwk" }) as { x?: string };
  return Buffer.from(jwk.x ?? "", "base64url");
}

function keyIdOf(name: string, raw: Buffer): Buffer {
  return Buffer.from(hash("sha256", Buffer.concat([Buffer.from(`${name}\n`), Buffer.from([SIGNATURE_ALGORITHM_ED25519]), raw]), "buffer")).subarray(0, 4);
}

export function verifierFromPublicKey(publicKey: KeyObject, name = KEY_NAME): NoteVerifier {
  const raw = rawPublicKey(publicKey);
  return { name, keyId: keyIdOf(name, raw), publicKey, raw };
}

/** The signed-note verifier key text, `<name>+<hex key id>+<base64(0x01 ‖ public key)>`. */
export function formatVerifierKey(verifier: NoteVerifier): string {
  return `${verifier.name}+${verifier.keyId.toString("hex")}+${Buffer.concat([Buffer.from([SIGNATURE_ALGORITHM_ED25519]), verifier.raw]).toString("base64")}`;
}

/** Reads a verifier key given as signed-note text (`name+hex+base64`) or as a PEM public key. Throws on anything else. */
export function parseVerifierKey(text: string): NoteVerifier {
  const trimmed = text.trim();
  if (trimmed.startsWith("-----BEGIN")) return verifierFromPublicKey(createPublicKey(trimmed));
  // base64 may itself contain '+': the name and key id are the first two fields, the key is the rest
  const match = /^([^+\s]+)\+([0-9a-fA-F]{8})\+([A-Za-z0-9+/=]+)$/.exec(trimmed);
  const [, name, hexId, encoded] = match ?? [];
  if (!name || !hexId || !encoded) throw new Error("not a verifier key: expected <name>+<key id hex>+<base64 key> or a PEM public key");
  const bytes = Buffer.from(encoded, "base64");
  if (bytes.length !== 33 || bytes[0] !== SIGNATURE_ALGORITHM_ED25519) throw new Error("not an Ed25519 verifier key (expected 0x01 and 32 key bytes)");
  const raw = bytes.subarray(1);
  const publicKey = createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: raw.toString("base64url") }, format: "jwk" });
  const verifier = verifierFromPublicKey(publicKey, name);
  if (verifier.keyId.toString("hex") !== hexId.toLowerCase()) throw new Error("verifier key id does not match its key");
  return verifier;
}

/**
 * Loads the ledger's signing key, creating it (0600, its directory 0700) on first use, and writes the public half
 * next to it as a verifier key for auditors. Throws when the key exists but cannot be read.
 */
export function loadOrCreateSigner(keyPath: string, publicKeyPath: string): NoteSigner {
  let privateKey: KeyObject;
  if (existsSync(keyPath)) {
    privateKey = createPrivateKey(readFileSync(keyPath, "utf8"));
  } else {
    mkdirSync(dirname(keyPath), { recursive: true, mode: 0o700 });
    const pair = generateKeyPairSync("ed25519");
    privateKey = pair.privateKey;
    const tmp = `${keyPath}.${process.pid}.tmp`;
    writeFileSync(tmp, privateKey.export({ format: "pem", type: "pkcs8" }) as string, { mode: 0o600 });
    chmodSync(tmp, 0o600);
    try {
      // exclusive: two processes creating the key at once must not end up signing with different keys
      renameNoReplace(tmp, keyPath);
    } catch {
      privateKey = createPrivateKey(readFileSync(keyPath, "utf8"));
    }
  }
  const verifier = verifierFromPublicKey(createPublicKey(privateKey));
  const publicText = `${formatVerifierKey(verifier)}\n`;
  if (!existsSync(publicKeyPath) || readFileSync(publicKeyPath, "utf8") !== publicText) {
    const tmp = `${publicKeyPath}.${process.pid}.tmp`;
    writeFileSync(tmp, publicText, { mode: 0o644 });
    renameSync(tmp, publicKeyPath);
  }
  return { name: verifier.name, keyId: verifier.keyId, privateKey, verifier };
}

/** Moves `from` to `to` unless `to` exists (link fails with EEXIST where rename would replace). */
function renameNoReplace(from: string, to: string): void {
  try {
    linkSync(from, to);
  } finally {
    unlinkSync(from);
  }
}

/** The note body of a checkpoint (every line newline-terminated), as signed. */
export function formatCheckpoint(checkpoint: Checkpoint): string {
  const root = Buffer.from(checkpoint.head, "hex").toString("base64");
  return `${checkpoint.origin}\n${checkpoint.size}\n${root}\n${checkpoint.extensions.map((line) => `${line}\n`).join("")}`;
}

/** A signed note: the body, a blank line, one signature line. */
export function signCheckpoint(checkpoint: Checkpoint, signer: NoteSigner): string {
  const body = formatCheckpoint(checkpoint);
  const signature = sign(null, Buffer.from(body, "utf8"), signer.privateKey);
  return `${body}\n${EM_DASH} ${signer.name} ${Buffer.concat([signer.keyId, signature]).toString("base64")}\n`;
}

export type NoteCheck = { ok: true; checkpoint: Checkpoint } | { ok: false; reason: string };

/**
 * Verifies a signed checkpoint note against a verifier key and parses it. Fails (with the reason) on a malformed
 * note, a note without a signature by this key, or a signature that does not verify.
 */
export function verifyCheckpoint(note: string, verifier: NoteVerifier): NoteCheck {
  const split = note.lastIndexOf("\n\n");
  if (split === -1 || !note.endsWith("\n")) return { ok: false, reason: "malformed signed note (no blank line before the signatures)" };
  const body = note.slice(0, split + 1);
  const signatures = note.slice(split + 2, -1).split("\n");
  let matched = false;
  for (const line of signatures) {
    const match = /^\u2014 (\S+) ([A-Za-z0-9+/=]+)$/.exec(line);
    if (!match) return { ok: false, reason: "malformed signature line" };
    const bytes = Buffer.from(match[2]!, "base64");
    if (match[1] !== verifier.name || bytes.length !== 68 || !bytes.subarray(0, 4).equals(verifier.keyId)) continue;
    matched = true;
    if (!verify(null, Buffer.from(body, "utf8"), verifier.publicKey, bytes.subarray(4))) return { ok: false, reason: `the signature by key ${verifier.keyId.toString("hex")} does not verify: the note was altered or signed by another key` };
  }
  if (!matched) return { ok: false, reason: `not signed by key ${verifier.name}+${verifier.keyId.toString("hex")} (signed by another key, or not at all)` };
  const lines = body.slice(0, -1).split("\n");
  const [origin, sizeText, root, ...extensions] = lines;
  if (!origin || !sizeText || !/^\d+$/.test(sizeText) || !root) return { ok: false, reason: "malformed checkpoint body" };
  const head = Buffer.from(root, "base64");
  if (head.length !== 32) return { ok: false, reason: "checkpoint root hash is not 32 bytes" };
  return { ok: true, checkpoint: { origin, size: Number(sizeText), head: head.toString("hex"), extensions } };
}
