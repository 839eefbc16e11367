import { createPublicKey, verify, type KeyObject } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { credentialsDir, type GatewayConfig } from "../config.js";
import { AtlasError, ConfigError } from "../errors.js";

/**
 * Where the public keys that may sign approvals (`v1a`, Ed25519) are kept: one file, mode 0600, in the data dir's
 * credentials dir next to the webhook secret — outside the data dir, which upstream roots often contain, so that no
 * tool given a directory for data can add a key of its own (issue 11 item 1; issue 9 item 6). The one place that
 * names this location.
 */
export function approvalKeysPath(dataDir: string, env: NodeJS.ProcessEnv): string {
  return join(credentialsDir(dataDir, env), "approval-keys.json");
}

/** Where versions before 0.2 kept the keys: inside the data dir. */
export function legacyApprovalKeysPath(dataDir: string): string {
  return join(dataDir, "approval-keys.json");
}

/**
 * Moves keys an older version stored in the data dir to the credentials dir, once: the first run creates the
 * credentials dir's file (from the old one's keys, or empty), and from then on only that file counts — a file that
 * appears in the data dir later (written by an older version, or by anything that can write there) is never read,
 * only removed. Returns a line for stderr when it did something, or could not. Run at gateway start and by `keys`.
 */
export function migrateApprovalKeys(dataDir: string, env: NodeJS.ProcessEnv): string | undefined {
  const path = approvalKeysPath(dataDir, env);
  const legacy = legacyApprovalKeysPath(dataDir);
  const hadLegacy = existsSync(legacy);
  if (existsSync(path)) {
    if (!hadLegacy) return undefined;
    removeQuietly(legacy);
    return `approval keys: ignored and removed ${legacy}: keys live in ${path} (add them with 'atlas-gateway keys add')`;
  }
  let keys: Record<string, string> = {};
  if (hadLegacy) {
    try {
      keys = parseKeyFile(readFileSync(legacy, "utf8"), legacy);
    } catch (error) {
      return `approval keys: cannot move ${legacy} to the credentials dir (${(error as Error).message}); its keys are not used until you fix or delete it`;
    }
  }
  mkdirSync(credentialsDir(dataDir, env), { recursive: true, mode: 0o700 });
  try {
    writeFileSync(path, `${JSON.stringify(keys, null, 2)}\n`, { mode: 0o600, flag: "wx" });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error; // another process migrated first
  }
  if (!hadLegacy) return undefined;
  removeQuietly(legacy);
  return `approval keys: moved ${Object.keys(keys).length} key(s) from ${legacy} to ${path}`;
}

function removeQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // absent, or not ours to remove: it is never read again, and self-protection still guards it
  }
}

function parseKeyFile(text: string, path: string): Record<string, string> {
  const parsed = JSON.parse(text) as unknown;
  if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) throw new AtlasError(`${path}: expected a JSON object of key id -> whpk_ public key`);
  return Object.fromEntries(Object.entries(parsed).filter((entry): entry is [string, string] => typeof entry[1] === "string"));
}

const KEY_ID = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/;

/**
 * A Standard Webhooks public key, `whpk_` + base64 of the raw 32-byte Ed25519 key, as a KeyObject. Throws an
 * `AtlasError` naming the problem (exit 2).
 */
export function parsePublicKey(text: string): KeyObject {
  const match = /^whpk_([A-Za-z0-9+/=_-]+)$/.exec(text.trim());
  const raw = match ? Buffer.from(match[1]!, "base64") : undefined;
  if (!raw || raw.length !== 32) throw new AtlasError("a public key must be whpk_ followed by the base64 of a raw 32-byte Ed25519 public key", 2);
  return createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: raw.toString("base64url") }, format: "jwk" });
}

/** The stored keys (id -> `whpk_…`); none when the file does not exist. A damaged file is an error, never "no keys". */
export function readApprovalKeys(dataDir: string, env: NodeJS.ProcessEnv): Record<string, string> {
  const path = approvalKeysPath(dataDir, env);
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return {};
    throw error;
  }
  return parseKeyFile(text, path);
}

function writeApprovalKeys(dataDir: string, keys: Record<string, string>, env: NodeJS.ProcessEnv): void {
  mkdirSync(credentialsDir(dataDir, env), { recursive: true, mode: 0o700 });
  const path = approvalKeysPath(dataDir, env);
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(keys, null, 2)}\n`, { mode: 0o600 });
  renameSync(tmp, path);
}

/** Adds (or replaces) a reviewer's or integration's public key. */
export function addApprovalKey(dataDir: string, id: string, key: string, env: NodeJS.ProcessEnv): void {
  if (!KEY_ID.test(id)) throw new ConfigError([`key id '${id}': use 1-64 letters, digits, '.', '_', '@' or '-' (it is recorded as the reviewer)`]);
  parsePublicKey(key);
  writeApprovalKeys(dataDir, { ...readApprovalKeys(dataDir, env), [id]: key.trim() }, env);
}

/** Removes a key; returns whether it was there. */
export function removeApprovalKey(dataDir: string, id: string, env: NodeJS.ProcessEnv): boolean {
  const keys = readApprovalKeys(dataDir, env);
  if (!(id in keys)) return false;
  delete keys[id];
  writeApprovalKeys(dataDir, keys, env);
  return true;
}

/**
 * Checks Standard Webhooks `v1a` signatures (Ed25519 over `id.timestamp.body`) against every key; returns the id of
 * the key that signed, if any. Several space-separated signatures may be sent (key rotation); one valid one suffices.
 */
export function findV1aSigner(keys: ReadonlyMap<string, KeyObject>, msgId: string, timestamp: string, body: string, signatureHeader: string): string | undefined {
  const signed = Buffer.from(`${msgId}.${timestamp}.${body}`, "utf8");
  for (const entry of signatureHeader.split(" ")) {
    const [version, encoded] = entry.split(",", 2);
    if (version !== "v1a" || !encoded) continue;
    const signature = Buffer.from(encoded, "base64");
    if (signature.length !== 64) continue;
    for (const [id, key] of keys) if (verify(null, signed, key, signature)) return id;
  }
  return undefined;
}

/**
 * Every key that may sign approvals: the config's `webhook.publicKeys` and the stored ones (`keys add`), read now so
 * a key added or removed while the gateway runs counts at once. A damaged key file is logged and its keys ignored
 * (fail closed: fewer signers, never more).
 */
export function approvalKeysFor(config: Pick<GatewayConfig, "dataDir" | "webhook">, log: (line: string) => void, env: NodeJS.ProcessEnv): Map<string, KeyObject> {
  let stored: Record<string, string> = {};
  try {
    stored = readApprovalKeys(config.dataDir, env);
  } catch (error) {
    log(`approval keys: cannot read ${approvalKeysPath(config.dataDir, env)} (${(error as Error).message}); only the config's keys are used`);
  }
  const keys = new Map<string, KeyObject>();
  for (const [id, text] of Object.entries({ ...stored, ...config.webhook.publicKeys })) {
    try {
      keys.set(id, parsePublicKey(text));
    } catch (error) {
      log(`approval key '${id}': ${(error as Error).message}; ignored`);
    }
  }
  return keys;
}
