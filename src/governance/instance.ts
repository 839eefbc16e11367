import { existsSync, linkSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync, unlinkSync, writeFileSync } from "node:fs";
import { createConnection, createServer, type Server as NetServer, type Socket } from "node:net";
import { join } from "node:path";
import { instanceOfLedgerEntry, instancePaths, ledgersDir } from "../dataDir.js";

/** Instances that have a ledger in this data dir (a 0.2 ledger directory, or a 0.1 file not yet migrated). */
export function listInstances(dataDir: string): string[] {
  const dir = ledgersDir(dataDir);
  if (!existsSync(dir)) return [];
  const names = new Set<string>();
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const instance = instanceOfLedgerEntry(entry.name, entry.isDirectory());
    if (instance) names.add(instance);
  }
  return [...names].sort();
}

export interface LockInfo {
  pid: number;
  kind: "gateway" | "cli";
  instance: string;
  startedAt: string;
  socket?: string;
  port?: number;
  host?: string;
}

export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** The live holder of an instance's lock, if any. */
export function readLock(dataDir: string, instance: string): LockInfo | undefined {
  try {
    const info = JSON.parse(readFileSync(instancePaths(dataDir, instance).lock, "utf8")) as LockInfo;
    return isProcessAlive(info.pid) ? info : undefined;
  } catch {
    return undefined;
  }
}

export interface InstanceLock {
  readonly info: LockInfo;
  update(extra: Partial<LockInfo>): void;
  release(): void;
}

/**
 * Takes the single-writer lock on an instance's ledger: a file created exclusively, naming the holder's pid. A lock
 * whose holder is dead (SIGKILL, crash) is taken over. Returns undefined when a live process holds it.
 */
export function tryLock(dataDir: string, instance: string, kind: LockInfo["kind"]): InstanceLock | undefined {
  const path = instancePaths(dataDir, instance).lock;
  mkdirSync(join(dataDir, "run"), { recursive: true, mode: 0o700 });
  const info: LockInfo = { pid: process.pid, kind, instance, startedAt: new Date().toISOString() };
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      createWhole(path, JSON.stringify(info));
      let current = info;
      return {
        get info() {
          return current;
        },
        update(extra) {
          current = { ...current, ...extra };
          const tmp = `${path}.${process.pid}.tmp`;
          writeFileSync(tmp, JSON.stringify(current), { mode: 0o600 });
          renameSync(tmp, path); // readers see the old content or the new, never a truncated file
        },
        release() {
          try {
            const onDisk = JSON.parse(readFileSync(path, "utf8")) as LockInfo;
            if (onDisk.pid === process.pid) unlinkSync(path);
          } catch {
            // already gone
          }
        },
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      let seen: string;
      let holder: LockInfo | undefined;
      try {
        seen = readFileSync(path, "utf8");
      } catch {
        continue; // released meanwhile: try again
      }
      try {
        holder = JSON.parse(seen) as LockInfo;
      } catch {
        holder = undefined; // half-written by a process that died at once: stale
      }
      if (holder && isProcessAlive(holder.pid)) return undefined;
      removeStaleLock(path, seen);
    }
  }
  return undefined;
}

/**
 * Creates `path` exclusively with its whole content at once: written to a temp file, then hard-linked into place
 * (link fails with EEXIST like an exclusive create). A reader never sees the lock empty or half-written.
 */
function createWhole(path: string, text: string): void {
  const tmp = `${path}.${process.pid}.${Date.now()}.tmp`;
  writeFileSync(tmp, text, { mode: 0o600 });
  try {
    linkSync(tmp, path);
  } finally {
    unlinkSync(tmp);
  }
}

const TAKEOVER_GUARD_STALE_MS = 5000;

/**
 * Removes a dead holder's lock file, provided it still holds what was read. One process at a time (a `.takeover`
 * file created exclusively): otherwise two processes that both read the dead holder could each take the lock, the
 * later unlink removing the lock the earlier one had just created, and two gateways would write one ledger.
 */
function removeStaleLock(path: string, seen: string): void {
  const guard = `${path}.takeover`;
  try {
    writeFileSync(guard, String(process.pid), { flag: "wx", mode: 0o600 });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    // another process is taking over right now (microseconds); a guard this old was left by one that died mid-way
    try {
      if (Date.now() - statSync(guard).mtimeMs > TAKEOVER_GUARD_STALE_MS) unlinkSync(guard);
    } catch {
      // gone already
    }
    return;
  }
  try {
    if (readFileSync(path, "utf8") === seen) unlinkSync(path);
  } catch {
    // gone already: the next attempt creates it
  } finally {
    unlinkSync(guard);
  }
}

/** Waits (briefly) for a lock held by a short-lived CLI command rather than moving to another instance. */
export async function lockWhenFree(dataDir: string, instance: string, kind: LockInfo["kind"], waitMs: number): Promise<InstanceLock | undefined> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    const lock = tryLock(dataDir, instance, kind);
    if (lock) return lock;
    const holder = readLock(dataDir, instance);
    if ((holder && holder.kind !== "cli") || Date.now() > deadline) return undefined;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

export type ControlRequest =
  | { op: "decide"; ref: string; decision: "approved" | "denied"; reviewer: string; reason?: string }
  | { op: "trust"; upstream: string; tool: string; reviewer: string; hash?: string; reason?: string };
export type ControlHandler = (request: ControlRequest) => Promise<unknown>;

/** The running gateway's control channel: one JSON line in, one JSON line out, on a socket only this user can reach. */
export function serveControl(path: string, handler: ControlHandler): Promise<NetServer> {
  if (process.platform !== "win32" && existsSync(path)) unlinkSync(path);
  const server = createServer((socket: Socket) => {
    let buffer = "";
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => {
      buffer += chunk;
      if (buffer.length > 65_536) socket.destroy();
      const nl = buffer.indexOf("\n");
      if (nl === -1) return;
      const line = buffer.slice(0, nl);
      buffer = "";
      void (async () => {
        let reply: unknown;
        try {
          reply = await handler(JSON.parse(line) as ControlRequest);
        } catch (error) {
          reply = { error: (error as Error).message };
        }
        socket.end(`${JSON.stringify(reply)}\n`);
      })();
    });
    socket.on("error", () => {});
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(path, () => {
      server.off("error", reject);
      server.unref();
      resolve(server);
    });
  });
}

export function callControl(path: string, request: ControlRequest, timeoutMs = 15_000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(path);
    let buffer = "";
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer from the gateway on ${path} within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.setEncoding("utf8");
    socket.on("connect", () => socket.write(`${JSON.stringify(request)}\n`));
    socket.on("data", (chunk: string) => {
      buffer += chunk;
    });
    socket.on("end", () => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(buffer));
      } catch {
        reject(new Error("the gateway closed the control connection without an answer"));
      }
    });
    socket.on("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}
