import { createHash } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** Where one instance's state lives in the data dir. */
export interface InstancePaths {
  ledger: string;
  lock: string;
  socket: string;
}

export function instancePaths(dataDir: string, instance: string): InstancePaths {
  const socketInDir = join(dataDir, "run", `${instance}.sock`);
  const hash = createHash("sha256").update(dataDir).digest("hex").slice(0, 12);
  const socket = process.platform === "win32"
    ? `\\\\.\\pipe\\atlas-gateway-${hash}-${instance}`
    : socketInDir.length < 100 ? socketInDir : join(tmpdir(), `atlas-${hash}-${instance}.sock`);
  return { ledger: join(dataDir, "ledgers", `${instance}.jsonl`), lock: join(dataDir, "run", `${instance}.lock`), socket };
}
