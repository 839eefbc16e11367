import { existsSync, linkSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync, unlinkSync, writeFileSync } from "node:fs";
import { createConnection, createServer, type Server as NetServer, type Socket } from "node:net";
import { join } from "node:path";
import * as z from "zod";
import { isWellFormedText } from "../argumentBounds.js";
import { instanceOfLedgerEntry, instancePaths, ledgersDir } from "../dataDir.js";
import { LedgerError } from "../errors.js";
import type { HaltFact } from "./haltState.js";
import { scanLedger } from "../ledger/ledger.js";

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

/**
 * The engine of the gateway that last started on this instance's ledger (its `gateway.started` record): the one that
 * owns the instance's calls, running or not. Reviewer commands and `doctor` act for it whatever their own flags say,
 * because `--engine` usually lives only in the MCP client's arguments (issue 14). A ledger that cannot be read says
 * nothing about it (undefined): the commands that read it report that themselves.
 */
export function lastGatewayEngine(dataDir: string, instance: string): "local" | "inngest" | undefined {
  let engine: "local" | "inngest" | undefined;
  try {
    scanLedger(instancePaths(dataDir, instance).ledger, (record) => {
      if (record.type === "gateway.started") engine = record.data.engine === "inngest" ? "inngest" : "local";
    });
  } catch {
    return undefined;
  }
  return engine;
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

const text = (max: number) => z.string().min(1).max(max).refine(isWellFormedText, "must be valid Unicode");

/**
 * What the control socket accepts, checked before anything acts on it: only this user can reach the socket, but a
 * malformed request (a made-up decision, a lone surrogate the ledger cannot record) must change nothing (issue 11).
 */
export const controlRequestSchema = z.discriminatedUnion("op", [
  z.strictObject({
    op: z.literal("decide"),
    ref: z.string().regex(/^evt_[0-9a-f]{8}$/, "ref must be evt_ followed by 8 lowercase hex digits"),
    decision: z.enum(["approved", "denied"]),
    reviewer: text(200),
    reason: z.string().max(2000).refine(isWellFormedText, "must be valid Unicode").optional(),
    /** Approve with edits: the arguments the call runs with instead of the agent's. */
    args: z.record(z.string(), z.unknown()).optional(),
    auth: text(40).optional(),
  }),
  z.strictObject({
    op: z.literal("trust"),
    upstream: text(200),
    tool: text(200),
    reviewer: text(200),
    hash: z.string().regex(/^[0-9a-f]{1,128}$/, "hash must be hex").optional(),
    reason: z.string().max(2000).refine(isWellFormedText, "must be valid Unicode").optional(),
  }),
  /** The stop button: record and honour `fact`; `notify` asks this gateway to tell the notification sinks. */
  z.strictObject({
    op: z.literal("halt"),
    fact: z.strictObject({
      id: z.string().regex(/^halt_[0-9a-f]{1,32}$/, "fact.id must be halt_ followed by hex digits"),
      halted: z.boolean(),
      by: text(200),
      reason: z.string().max(2000).refine(isWellFormedText, "must be valid Unicode").optional(),
      at: z.iso.datetime({ offset: true }),
    }),
    notify: z.boolean().optional(),
  }),
]);
export type ControlRequest = z.output<typeof controlRequestSchema>;
export type ControlHandler = (request: ControlRequest) => Promise<unknown>;

/**
 * A control reply's error. `unavailable`: the gateway could not record it (its ledger is unwritable) and nothing
 * changed — unlike a refusal, trying again later may work.
 */
export interface ControlErrorReply {
  error: string;
  unavailable?: true;
}

/** Parses one control line: the request, or the error reply that says why it is not one. */
export function parseControlRequest(line: string): ControlRequest | ControlErrorReply {
  let json: unknown;
  try {
    json = JSON.parse(line);
  } catch {
    return { error: "the request is not valid JSON" };
  }
  const parsed = controlRequestSchema.safeParse(json);
  if (!parsed.success) return { error: `invalid request: ${parsed.error.issues.map((issue) => `${issue.path.join(".") || "request"}: ${issue.message}`).join("; ")}` };
  return parsed.data;
}

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
        const request = parseControlRequest(line);
        if ("error" in request) reply = request;
        else {
          try {
            reply = await handler(request);
          } catch (error) {
            reply = { error: (error as Error).message, ...(error instanceof LedgerError ? { unavailable: true } : {}) } satisfies ControlErrorReply;
          }
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
