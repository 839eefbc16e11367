import type { DecideOutcome, DecisionInput } from "./engine.js";
import { ConflictError, NotFoundError, AtlasError, LedgerError } from "../errors.js";
import { GovernanceLog, REF_PATTERN } from "./governanceLog.js";
import { replayLedger, scanLedger, type LedgerProblem, type LedgerRecord } from "../ledger/ledger.js";
import { instancePaths } from "../dataDir.js";
import { callControl, listInstances, lockWhenFree, readLock, type ControlErrorReply } from "./instance.js";
import { RequestTable, type RequestView } from "./requests.js";
import { HaltState, type HaltFact } from "./haltState.js";

export interface InstanceState {
  instance: string;
  table: RequestTable;
  /** The newest stop-button fact in this ledger. */
  halt?: HaltFact;
  problem?: LedgerProblem;
}

/**
 * A read-only replay of one instance's ledger (a running gateway may be appending; a torn last line is skipped).
 * Without history, only from the last checkpoint (open requests, recent held ones): cheap whatever the ledger's age.
 * With history (`show`), every segment.
 */
export function readInstance(dataDir: string, instance: string, keepHistory = false): InstanceState {
  const table = new RequestTable({ keepHistory });
  const path = instancePaths(dataDir, instance).ledger;
  const halt = new HaltState();
  const apply = (record: LedgerRecord) => {
    table.apply(record);
    halt.apply(record);
  };
  let scan;
  try {
    scan = keepHistory ? scanLedger(path, apply) : replayLedger(path, apply);
  } catch (error) {
    // unreadable (a directory in its place, no permission): reported like damage, so one bad ledger does not stop
    // reviewers from seeing the others
    return { instance, table, problem: { kind: "malformed", line: 0, message: `cannot read ${path}: ${(error as Error).message}` } };
  }
  return { instance, table, ...(halt.current ? { halt: halt.current } : {}), ...(scan.problem && scan.problem.kind !== "torn" ? { problem: scan.problem } : {}) };
}

export function readAllInstances(dataDir: string, keepHistory = false): InstanceState[] {
  return listInstances(dataDir).map((instance) => readInstance(dataDir, instance, keepHistory));
}

/** Finds which instance's ledger holds a ref. */
export function findRef(dataDir: string, ref: string, keepHistory = false): { instance: string; view: RequestView } {
  if (!REF_PATTERN.test(ref)) throw new AtlasError(`'${ref}' is not a ref: refs look like evt_1a2b3c4d`, 2);
  for (const state of readAllInstances(dataDir, keepHistory)) {
    const view = state.table.get(ref);
    if (view) return { instance: state.instance, view };
  }
  throw new NotFoundError(`no request ${ref} in ${dataDir} (check --data-dir, or list open requests with 'atlas-gateway pending')`);
}

export interface DecideResult {
  instance: string;
  outcome: DecideOutcome;
  /** "gateway" when a running gateway applied it (and will execute it); "ledger" when written for the next start. */
  via: "gateway" | "ledger";
}

/**
 * Applies a reviewer's decision wherever the ref lives: through the running gateway that holds it (which executes an
 * approved call at once), or — when none runs — straight into its ledger, to take effect at the next start.
 */
export async function decideRef(dataDir: string, input: DecisionInput, now: () => Date = () => new Date()): Promise<DecideResult> {
  if (!REF_PATTERN.test(input.ref)) throw new AtlasError(`'${input.ref}' is not a ref: refs look like evt_1a2b3c4d`, 2);
  // Running gateways keep their open requests in memory: ask them before replaying every ledger (seconds on a big one).
  for (const instance of listInstances(dataDir)) {
    const holder = readLock(dataDir, instance);
    if (holder?.kind !== "gateway" || !holder.socket) continue;
    const reply = await askGateway(holder.socket, input);
    if (reply && reply.status !== "not_found") return { instance, outcome: reply, via: "gateway" };
  }
  const { instance, view: seen } = findRef(dataDir, input.ref, false);
  for (let attempt = 0; attempt < 30; attempt++) {
    const holder = readLock(dataDir, instance);
    if (holder?.kind === "gateway" && holder.socket) {
      const reply = await askGateway(holder.socket, input);
      if (reply) return { instance, outcome: reply.status === "not_found" ? { status: "already_decided", view: seen } : reply, via: "gateway" };
      await new Promise((resolve) => setTimeout(resolve, 100)); // a gateway shutting down: its lock goes in a moment
      continue;
    } else if (holder?.kind === "gateway") {
      await new Promise((resolve) => setTimeout(resolve, 100)); // a gateway that is starting: its socket comes in a moment
      continue;
    }
    const lock = await lockWhenFree(dataDir, instance, "cli", 3000);
    if (!lock) continue; // a gateway took the instance meanwhile: go through it
    try {
      const log = GovernanceLog.open(instancePaths(dataDir, instance).ledger, { instance, now });
      try {
        const outcome = log.decide(input, now());
        await log.commit();
        return { instance, outcome: outcome.status === "not_found" ? { status: "already_decided", view: seen } : outcome, via: "ledger" };
      } finally {
        await log.close();
      }
    } finally {
      lock.release();
    }
  }
  throw new AtlasError(`instance '${instance}' is busy; try again`);
}

/** A running gateway's answer to a decision; undefined when it went away between the lock check and the call. */
async function askGateway(socket: string, input: DecisionInput): Promise<DecideOutcome | undefined> {
  let reply: DecideOutcome | ControlErrorReply;
  try {
    reply = (await callControl(socket, { op: "decide", ...input })) as DecideOutcome | ControlErrorReply;
  } catch {
    return undefined;
  }
  if ("error" in reply) {
    if (reply.unavailable) throw new LedgerError(`the gateway could not record the decision: ${reply.error}`);
    throw new AtlasError(`the gateway refused the decision: ${reply.error}`);
  }
  return reply;
}

/** Throws the CLI's conflict error for a decision that changed nothing. */
export function assertApplied(result: DecideResult, describe: (view: RequestView) => string): RequestView {
  if (result.outcome.status === "applied") return result.outcome.view;
  if (result.outcome.status === "already_decided") throw new ConflictError(`nothing changed: ${describe(result.outcome.view)}`);
  if (result.outcome.status === "refused") throw new ConflictError(`nothing changed: ${result.outcome.reason}`);
  throw new NotFoundError("request not found");
}
