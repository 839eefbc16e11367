import { createPublicKey, verify, type KeyObject } from "node:crypto";
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { GatewayConfig } from "../config.js";
import { AtlasError, ConfigError } from "../errors.js";

/**
 * Where the public keys that may sign approvals (`v1a`, Ed25519) are kept: one file, mode 0600, in the data dir —
 * which self-protection keeps out of every upstream's reach, so an agent cannot add a key of its own. The one place
 * that names this location (issue 9 item 6; issue 11 may move it with the webhook secret).
 */
export function approvalKeysPath(dataDir: string): string {
  return join(dataDir, "approval-keys.json");
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
export function readApprovalKeys(dataDir: string): Record<string, string> {
  let text: string;
  try {
    text = readFileSync(approvalKeysPath(dataDir), "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return {};
    throw error;
  }
  const parsed = JSON.parse(text) as unknown;
  if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) throw new AtlasError(`${approvalKeysPath(dataDir)}: expected a JSON object of key id -> whpk_ public key`);
  return Object.fromEntries(Object.entries(parsed).filter((entry): entry is [string, string] => typeof entry[1] === "string"));
}

function writeApprovalKeys(dataDir: string, keys: Record<string, string>): void {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const path = approvalKeysPath(dataDir);
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(keys, null, 2)}\n`, { mode: 0o600 });
  renameSync(tmp, path);
}

/** Adds (or replaces) a reviewer's or integration's public key. */
export function addApprovalKey(dataDir: string, id: string, key: string): void {
  if (!KEY_ID.test(id)) throw new ConfigError([`key id '${id}': use 1-64 letters, digits, '.', '_', '@' or '-' (it is recorded as the reviewer)`]);
  parsePublicKey(key);
  writeApprovalKeys(dataDir, { ...readApprovalKeys(dataDir), [id]: key.trim() });
}

/** Removes a key; returns whether it was there. */
export function removeApprovalKey(dataDir: string, id: string): boolean {
  const keys = readApprovalKeys(dataDir);
  if (!(id in keys)) return false;
  delete keys[id];
  writeApprovalKeys(dataDir, keys);
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
export function approvalKeysFor(config: Pick<GatewayConfig, "dataDir" | "webhook">, log: (line: string) => void): Map<string, KeyObject> {
  let stored: Record<string, string> = {};
  try {
    stored = readApprovalKeys(config.dataDir);
  } catch (error) {
    log(`approval keys: cannot read ${approvalKeysPath(config.dataDir)} (${(error as Error).message}); only the config's keys are used`);
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
