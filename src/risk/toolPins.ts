import canonicalize from "canonicalize";
import { ConflictError } from "../errors.js";
import { sha256Hex, type LedgerRecord } from "../ledger/ledger.js";

/**
 * Tool pinning, the rug-pull defence: the first definition seen of each upstream tool is pinned in the ledger
 * (`tool.pinned`); a later, different definition is recorded (`tool.changed`, old and new hash) and every call to the
 * tool is held until a human trusts the new version (`tool.trusted`). The pins are a pure fold over those records,
 * so they are as durable and tamper-evident as the ledger itself.
 */

/** The parts of a tool definition that are pinned: what the model reads and what the policy matches on. */
export interface PinnedDefinition {
  name: string;
  description?: string;
  inputSchema?: unknown;
  annotations?: unknown;
}

export const PINNED_FIELDS = ["name", "description", "inputSchema", "annotations"] as const;

export function pinnableDefinition(definition: { description?: string | undefined; inputSchema?: unknown; annotations?: unknown }, upstreamName: string): PinnedDefinition {
  return {
    name: upstreamName,
    ...(definition.description !== undefined ? { description: definition.description } : {}),
    ...(definition.inputSchema !== undefined ? { inputSchema: definition.inputSchema } : {}),
    ...(definition.annotations !== undefined ? { annotations: definition.annotations } : {}),
  };
}

export function hashToolDefinition(definition: PinnedDefinition): string {
  return sha256Hex(`atlas-tool-v1\n${canonicalize(definition) ?? ""}`);
}

const hashCache = new WeakMap<object, string>();

/** The pin hash of a catalogue definition (renamed for the agent) under its upstream name; cached per object. */
export function toolDefinitionHash(definition: { description?: string | undefined; inputSchema?: unknown; annotations?: unknown }, upstreamName: string): string {
  const cached = hashCache.get(definition);
  if (cached !== undefined) return cached;
  const hash = hashToolDefinition(pinnableDefinition(definition, upstreamName));
  hashCache.set(definition, hash);
  return hash;
}

/** Which pinned fields differ between two definitions. */
export function changedFields(before: PinnedDefinition | undefined, after: PinnedDefinition): string[] {
  if (!before) return [...PINNED_FIELDS];
  return PINNED_FIELDS.filter((field) => canonicalize(before[field] ?? null) !== canonicalize(after[field] ?? null));
}

export interface PinEntry {
  upstream: string;
  tool: string;
  hash: string;
  definition?: PinnedDefinition;
  pinnedAt: string;
  trustedBy?: string;
  /** A definition seen since, not yet trusted: calls are held while the upstream serves it. */
  pending?: { hash: string; definition?: PinnedDefinition; seenAt: string; changed: string[] };
}

export type PinStatus =
  | { state: "unpinned" }
  | { state: "trusted"; hash: string }
  | { state: "changed"; pinnedHash: string; currentHash: string };

/** A ledger record the pins want written. */
export interface PinRecord {
  type: "tool.pinned" | "tool.changed" | "tool.trusted";
  data: Record<string, unknown>;
}

/** Lookup the risk evaluator uses; the table implements it. */
export interface PinLookup {
  check(upstream: string, tool: string, hash: string): PinStatus;
}

const key = (upstream: string, tool: string) => `${upstream}\u0000${tool}`;

export class ToolPinTable implements PinLookup {
  private readonly pins = new Map<string, PinEntry>();

  /** Applies one ledger record (others are ignored). */
  apply(record: LedgerRecord): void {
    if (!record.type.startsWith("tool.")) return;
    const data = record.data;
    const upstream = String(data.upstream);
    const tool = String(data.tool);
    const entry = this.pins.get(key(upstream, tool));
    if (record.type === "tool.pinned") {
      this.pins.set(key(upstream, tool), { upstream, tool, hash: String(data.hash), ...(data.definition ? { definition: data.definition as PinnedDefinition } : {}), pinnedAt: record.ts });
    } else if (record.type === "tool.changed" && entry) {
      entry.pending = { hash: String(data.new_hash), ...(data.definition ? { definition: data.definition as PinnedDefinition } : {}), seenAt: record.ts, changed: (data.changed ?? []) as string[] };
    } else if (record.type === "tool.trusted" && entry) {
      const trusted = String(data.new_hash);
      if (entry.pending?.hash === trusted && entry.pending.definition) entry.definition = entry.pending.definition;
      entry.hash = trusted;
      entry.pinnedAt = record.ts;
      entry.trustedBy = String(data.reviewer ?? "");
      delete entry.pending;
    }
  }

  get(upstream: string, tool: string): PinEntry | undefined {
    return this.pins.get(key(upstream, tool));
  }

  entries(): PinEntry[] {
    return [...this.pins.values()];
  }

  check(upstream: string, tool: string, hash: string): PinStatus {
    const entry = this.pins.get(key(upstream, tool));
    if (!entry) return { state: "unpinned" };
    return entry.hash === hash ? { state: "trusted", hash } : { state: "changed", pinnedHash: entry.hash, currentHash: hash };
  }

  /**
   * What to record for a definition just listed by an upstream: a pin at first sight, a change when it differs from
   * the pin (once per new version), nothing otherwise. Pure: the caller writes the records, which come back through
   * `apply`.
   */
  observe(upstream: string, tool: string, definition: PinnedDefinition): PinRecord[] {
    const hash = hashToolDefinition(definition);
    const entry = this.pins.get(key(upstream, tool));
    if (!entry) return [{ type: "tool.pinned", data: { upstream, tool, hash, definition } }];
    if (entry.hash === hash || entry.pending?.hash === hash) return [];
    return [{ type: "tool.changed", data: { upstream, tool, old_hash: entry.hash, new_hash: hash, changed: changedFields(entry.definition, definition), definition } }];
  }

  /**
   * The `tool.trusted` record for a human trusting the changed version they were shown (`hash`, or the pending one).
   * Throws ConflictError when no change awaits trust, or the pending version is not the one named.
   */
  trust(upstream: string, tool: string, reviewer: string, options: { hash?: string; reason?: string } = {}): PinRecord {
    const entry = this.pins.get(key(upstream, tool));
    if (!entry?.pending) throw new ConflictError(`${upstream}/${tool} has no changed definition awaiting trust`);
    if (options.hash && !entry.pending.hash.startsWith(options.hash)) {
      throw new ConflictError(`${upstream}/${tool}: the changed definition awaiting trust is ${entry.pending.hash.slice(0, 12)}, not ${options.hash}`);
    }
    return {
      type: "tool.trusted",
      data: { upstream, tool, old_hash: entry.hash, new_hash: entry.pending.hash, reviewer, ...(options.reason ? { reason: options.reason } : {}) },
    };
  }
}
