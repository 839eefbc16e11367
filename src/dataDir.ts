import { createHash } from "node:crypto";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";

/** Where one instance's state lives in the data dir: its ledger's files, its lock and its control socket. */
export interface InstancePaths extends LedgerFiles {
  lock: string;
  socket: string;
}

/** Where a data dir keeps its ledgers: one directory (or, from 0.1, one `.jsonl` file) per instance. */
export function ledgersDir(dataDir: string): string {
  return join(dataDir, "ledgers");
}

export function instancePaths(dataDir: string, instance: string): InstancePaths {
  const socketInDir = join(dataDir, "run", `${instance}.sock`);
  const hash = createHash("sha256").update(dataDir).digest("hex").slice(0, 12);
  const socket = process.platform === "win32"
    ? `\\\\.\\pipe\\atlas-gateway-${hash}-${instance}`
    : socketInDir.length < 100 ? socketInDir : join(tmpdir(), `atlas-${hash}-${instance}.sock`);
  return { ...ledgerFiles(join(ledgersDir(dataDir), instance)), lock: join(dataDir, "run", `${instance}.lock`), socket };
}

/** The files of one ledger, from its location. */
export interface LedgerFiles {
  /** The ledger: a directory of segment files (0.2). */
  ledger: string;
  /** Where a 0.1 ledger lived (one file); migrated into `ledger` at the first start. */
  legacyLedger: string;
  /** The latest signed head of the ledger, rewritten after every fsync. */
  head: string;
  /** The Ed25519 key that signs checkpoints and heads: outside the ledger directory, one per data dir. */
  signingKey: string;
  /** Its public half, for auditors (`audit verify --public-key`). */
  publicKey: string;
  /** Receipts of `audit anchor`, one JSON line each. */
  anchors: string;
}

/**
 * The files of the ledger at `path`. `path` is the ledger's directory; a path ending in `.jsonl` names a 0.1 ledger
 * file and stands for the directory that replaces it (so callers that kept a 0.1 path keep working). The head file
 * sits next to the directory. The signing key lives in `<dataDir>/keys/` for a ledger under `<dataDir>/ledgers/`,
 * otherwise in a `keys` directory next to the ledger's: never inside the ledger directory (issue 12).
 */
export function ledgerFiles(path: string): LedgerFiles {
  const dir = path.endsWith(".jsonl") ? path.slice(0, -".jsonl".length) : path;
  const parent = dirname(dir);
  const keys = basename(parent) === "ledgers" ? join(dirname(parent), "keys") : join(parent, "keys");
  return {
    ledger: dir,
    legacyLedger: `${dir}.jsonl`,
    head: `${dir}.head`,
    signingKey: join(keys, "ledger.key"),
    publicKey: join(keys, "ledger.pub"),
    anchors: `${dir}.anchors.jsonl`,
  };
}

/**
 * The instance a name in `ledgersDir` belongs to: a ledger directory, or a 0.1 `.jsonl` file not yet migrated. A
 * plain file with an instance's name (no dot) is listed too: it sits where that instance's ledger directory belongs,
 * so the gateway cannot open it (it refuses every call, issue 11), and `doctor`, `pending` and `audit verify` must
 * say so rather than report no ledger at all.
 */
export function instanceOfLedgerEntry(name: string, isDirectory: boolean): string | undefined {
  if (!name.includes(".")) return name;
  if (isDirectory) return undefined;
  const base = name.endsWith(".jsonl") ? name.slice(0, -".jsonl".length) : undefined;
  return base && !base.includes(".") ? base : undefined; // not `<instance>.anchors.jsonl`
}
