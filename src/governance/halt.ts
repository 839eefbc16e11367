import { randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { instancePaths } from "../dataDir.js";
import { AtlasError } from "../errors.js";
import { GovernanceLog } from "./governanceLog.js";
import { isHaltFact, isNewerHalt, type HaltFact } from "./haltState.js";
import { callControl, listInstances, lockWhenFree, readLock } from "./instance.js";

/** How often a running gateway looks at `halt.json`: a halt reaches every instance within a second even if its control socket missed it. */
export const HALT_POLL_MS = 400;

/** The data dir's copy of the newest halt fact: the one place a starting or polling gateway learns of it quickly. */
export function haltFilePath(dataDir: string): string {
  return join(dataDir, "halt.json");
}

/** A new stop-button fact, stamped now — and after `previous`, so it supersedes it even within one millisecond. */
export function newHaltFact(halted: boolean, by: string, reason: string | undefined, previous?: HaltFact, now = new Date()): HaltFact {
  const floor = previous ? Date.parse(previous.at) + 1 : 0;
  const at = new Date(Math.max(now.getTime(), floor)).toISOString();
  return { id: `halt_${randomBytes(6).toString("hex")}`, halted, by, ...(reason ? { reason } : {}), at };
}

/** The fact in `halt.json`, if the file exists and holds one. */
export function readHaltFile(dataDir: string): HaltFact | undefined {
  try {
    const parsed = JSON.parse(readFileSync(haltFilePath(dataDir), "utf8")) as unknown;
    if (!isHaltFact(parsed)) return undefined;
    return { id: parsed.id, halted: parsed.halted, by: parsed.by, ...(parsed.reason !== undefined ? { reason: parsed.reason } : {}), at: parsed.at };
  } catch {
    return undefined;
  }
}

/** Replaces `halt.json` (0600, atomically) when `fact` is newer than what it holds. */
function writeHaltFile(dataDir: string, fact: HaltFact): void {
  if (!isNewerHalt(fact, readHaltFile(dataDir))) return;
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const path = haltFilePath(dataDir);
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(fact)}\n`, { mode: 0o600 });
  renameSync(tmp, path);
}

/**
 * The data dir's stop-button state as the CLI sees it: the newest of `halt.json` and every ledger's fold (a deleted
 * `halt.json` does not lift a halt the ledgers record).
 */
export function currentHalt(dataDir: string, ledgerStates: HaltFact[] = []): HaltFact | undefined {
  let newest = readHaltFile(dataDir);
  for (const fact of ledgerStates) if (isNewerHalt(fact, newest)) newest = fact;
  return newest;
}

export interface HaltDelivery {
  /** Instances whose running gateway applied it at once. */
  gateways: string[];
  /** Instances with no running gateway, whose ledger got the record directly (honoured at their next start). */
  ledgers: string[];
}

/**
 * Presses (or releases) the stop button for the whole data dir: `halt.json` first (every running gateway polls it),
 * then every instance — through its running gateway's control socket, or straight into its ledger when none runs, as
 * `decideRef` does for decisions. With no ledger yet, `fallbackInstance`'s is created. `notify`: the first running
 * gateway also tells the configured notification sinks (one notification per press, not one per instance).
 */
export async function recordHaltEverywhere(dataDir: string, fact: HaltFact, fallbackInstance: string, now: () => Date = () => new Date()): Promise<HaltDelivery> {
  writeHaltFile(dataDir, fact);
  const delivery: HaltDelivery = { gateways: [], ledgers: [] };
  const instances = listInstances(dataDir);
  if (instances.length === 0) instances.push(fallbackInstance);
  const failed: string[] = [];
  for (const instance of instances) {
    try {
      if (await tellGateway(dataDir, instance, fact, delivery.gateways.length === 0)) {
        delivery.gateways.push(instance);
        continue;
      }
      if (await writeIdleLedger(dataDir, instance, (log) => log.recordHalt(fact), now)) {
        delivery.ledgers.push(instance);
      } else if (await tellGateway(dataDir, instance, fact, delivery.gateways.length === 0)) {
        delivery.gateways.push(instance); // a gateway took the instance meanwhile (it also reads halt.json as it starts)
      }
    } catch (error) {
      // one unopenable ledger must not keep the stop button from the other instances
      failed.push(`'${instance}': ${(error as Error).message}`);
    }
  }
  if (failed.length > 0) {
    const reached = [...delivery.gateways, ...delivery.ledgers];
    throw new AtlasError(`${fact.halted ? "halt" : "resume"} written to ${haltFilePath(dataDir)}${reached.length ? ` and instance(s) ${reached.map((name) => `'${name}'`).join(", ")}` : ""}, but not recorded for instance ${failed.join("; ")}`);
  }
  return delivery;
}

/**
 * Writes to the ledger of an instance no gateway runs, under the CLI lock (fsynced before it returns). Returns false
 * when a gateway holds the instance: then go through it.
 */
export async function writeIdleLedger(dataDir: string, instance: string, write: (log: GovernanceLog) => void, now: () => Date = () => new Date()): Promise<boolean> {
  const lock = await lockWhenFree(dataDir, instance, "cli", 3000);
  if (!lock) return false;
  try {
    const log = GovernanceLog.open(instancePaths(dataDir, instance).ledger, { instance, now });
    try {
      write(log);
      await log.commit();
    } finally {
      await log.close();
    }
    return true;
  } finally {
    lock.release();
  }
}

async function tellGateway(dataDir: string, instance: string, fact: HaltFact, notify: boolean): Promise<boolean> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const holder = readLock(dataDir, instance);
    if (holder?.kind !== "gateway") return false;
    if (!holder.socket) {
      await new Promise((resolve) => setTimeout(resolve, 100)); // starting: its socket comes in a moment (and it reads halt.json)
      continue;
    }
    try {
      const reply = (await callControl(holder.socket, { op: "halt", fact, notify })) as { error?: string };
      if (reply.error) throw new AtlasError(`the gateway of instance '${instance}' refused the halt: ${reply.error}`);
      return true;
    } catch (error) {
      if (error instanceof AtlasError) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100)); // shutting down: its lock goes in a moment
    }
  }
  return false;
}

/**
 * Calls `onFact` with `halt.json`'s fact now and whenever a different fact lands there: the file is read every
 * `HALT_POLL_MS` (a few hundred bytes). A plain timer rather than `fs.watchFile`, whose stat polling was seen to miss
 * a replaced file (rename over it) on a busy process; a halt must never be missed. Returns the function that stops.
 */
export function watchHaltFile(dataDir: string, onFact: (fact: HaltFact) => void): () => void {
  let lastId: string | undefined;
  const check = () => {
    const fact = readHaltFile(dataDir);
    if (!fact || fact.id === lastId) return;
    lastId = fact.id;
    onFact(fact);
  };
  const timer = setInterval(check, HALT_POLL_MS);
  timer.unref();
  check();
  return () => clearInterval(timer);
}
