import { AtlasError, ConflictError, NotFoundError } from "../errors.js";
import { GovernanceLog } from "../governance/governanceLog.js";
import { instancePaths } from "../dataDir.js";
import { callControl, listInstances, lockWhenFree, readLock, type ControlRequest } from "../governance/instance.js";
import { replayLedger } from "../ledger/ledger.js";
import { ToolPinTable, type PinEntry } from "../risk/toolPins.js";
import { exposedToolName } from "../mcp/toolNames.js";

/**
 * One instance's tool pins, folded read-only from its ledger (a running gateway may be appending); from the last
 * checkpoint, which carries every tool's pin records.
 */
export function readPins(dataDir: string, instance: string): ToolPinTable {
  const pins = new ToolPinTable();
  replayLedger(instancePaths(dataDir, instance).ledger, (record) => pins.apply(record));
  return pins;
}

export interface FoundPin {
  instance: string;
  entry: PinEntry;
}

/** Whether `name` names this tool: its own name, `upstream__tool`, or that as the agent saw it (sanitised). */
export function namesTool(entry: Pick<PinEntry, "upstream" | "tool">, name: string): boolean {
  const namespaced = `${entry.upstream}__${entry.tool}`;
  return name === entry.tool || name === namespaced || name === exposedToolName(entry.tool) || name === exposedToolName(namespaced);
}

/** Every pinned tool in the data dir that `name` names (optionally on one upstream). */
export function findPins(dataDir: string, name: string, upstream?: string): FoundPin[] {
  return listInstances(dataDir).flatMap((instance) =>
    readPins(dataDir, instance).entries()
      .filter((entry) => namesTool(entry, name) && (upstream === undefined || entry.upstream === upstream))
      .map((entry) => ({ instance, entry })),
  );
}

export interface TrustResult {
  instance: string;
  upstream: string;
  tool: string;
  oldHash: string;
  newHash: string;
  changed: string[];
  via: "gateway" | "ledger";
}

/**
 * Trusts the changed definition of a tool wherever one awaits trust: through the running gateway that holds the
 * instance (its calls are routed by policy again at once), or straight into the ledger when none runs. `hash` (a
 * prefix is enough) pins the trust to the version the human reviewed.
 */
export async function trustTool(
  dataDir: string,
  name: string,
  options: { upstream?: string; reviewer: string; reason?: string; hash?: string },
): Promise<TrustResult[]> {
  const found = findPins(dataDir, name, options.upstream);
  if (found.length === 0) throw new NotFoundError(`no pinned tool '${name}' in ${dataDir}${options.upstream ? ` on upstream '${options.upstream}'` : ""} (list them with 'atlas-gateway tools list')`);
  const changed = found.filter((item) => item.entry.pending);
  if (changed.length === 0) throw new ConflictError(`nothing to trust: '${name}' is pinned and its definition has not changed`);
  const upstreams = [...new Set(changed.map((item) => item.entry.upstream))];
  if (upstreams.length > 1) {
    throw new AtlasError(`'${name}' names changed tools on several upstreams (${upstreams.join(", ")}); say which with --upstream or name it as <upstream>__${changed[0]!.entry.tool}`, 2);
  }
  const results: TrustResult[] = [];
  for (const { instance, entry } of changed) {
    const request = {
      op: "trust" as const,
      upstream: entry.upstream,
      tool: entry.tool,
      reviewer: options.reviewer,
      ...(options.hash ? { hash: options.hash } : {}),
      ...(options.reason ? { reason: options.reason } : {}),
    };
    const { data, via } = await writeToInstance(dataDir, instance, request, (log, pins) => {
      const record = pins.trust(entry.upstream, entry.tool, options.reviewer, request);
      log.record(record.type, undefined, record.data, "sync");
      return record.data;
    });
    results.push({ instance, upstream: entry.upstream, tool: entry.tool, oldHash: String(data.old_hash), newHash: String(data.new_hash), changed: entry.pending!.changed, via });
  }
  return results;
}

/**
 * Applies a change to one instance's ledger: through the gateway holding it (control socket) or, when none runs,
 * directly under the instance lock. The same two paths as reviewer decisions.
 */
async function writeToInstance(
  dataDir: string,
  instance: string,
  request: ControlRequest,
  offline: (log: GovernanceLog, pins: ToolPinTable) => Record<string, unknown>,
): Promise<{ data: Record<string, unknown>; via: "gateway" | "ledger" }> {
  for (let attempt = 0; attempt < 3; attempt++) {
    const holder = readLock(dataDir, instance);
    if (holder?.kind === "gateway" && holder.socket) {
      let reply: Record<string, unknown> | undefined;
      try {
        reply = (await callControl(holder.socket, request)) as Record<string, unknown>;
      } catch {
        // the gateway went away between the lock check and the call: write offline instead
      }
      if (reply) {
        if (typeof reply.error === "string") throw new ConflictError(`the gateway refused: ${reply.error}`);
        return { data: reply, via: "gateway" };
      }
    }
    const lock = await lockWhenFree(dataDir, instance, "cli", 3000);
    if (!lock) continue;
    try {
      const pins = new ToolPinTable();
      const log = GovernanceLog.open(instancePaths(dataDir, instance).ledger, { instance, onRecord: (record) => pins.apply(record) });
      try {
        const data = offline(log, pins);
        await log.commit();
        return { data, via: "ledger" };
      } finally {
        await log.close();
      }
    } finally {
      lock.release();
    }
  }
  throw new AtlasError(`instance '${instance}' is busy; try again`);
}
