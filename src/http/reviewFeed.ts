import { statSync } from "node:fs";
import { instancePaths } from "../dataDir.js";
import { listInstances } from "../governance/instance.js";
import { RequestTable, type RequestView } from "../governance/requests.js";
import { scanLedger, type LedgerRecord } from "../ledger/ledger.js";
import { maskSecrets } from "../mask.js";
import { ToolPinTable, type PinnedDefinition } from "../risk/toolPins.js";

/** The stop button's state as the ledgers record it (`gateway.halted` / `gateway.resumed`, issue 9 item 4). */
export interface HaltState {
  halted: boolean;
  by?: string;
  reason?: string;
  at?: string;
}

/** A pending call as the review page shows it: everything a reviewer needs on one screen, secrets masked. */
export interface ReviewItem {
  ref: string;
  instance: string;
  status: string;
  tool: string;
  upstreamTool: string;
  upstream: string;
  client?: { name?: string; version?: string };
  createdAt: string;
  deadline?: string;
  args: unknown;
  /** Whether masking hid anything (the page then offers an explicit, recorded reveal). */
  masked: boolean;
  assessment?: RequestView["assessment"];
  annotations?: Record<string, unknown>;
  pin: { state: "pinned" | "changed" | "unpinned"; pinnedAt?: string; trustedBy?: string; changed?: string[]; pinned?: PinnedDefinition; current?: PinnedDefinition };
}

export interface ReviewSnapshot {
  pending: ReviewItem[];
  halt: HaltState;
}

interface InstanceScan {
  instance: string;
  table: RequestTable;
  pins: ToolPinTable;
  halt?: { record: LedgerRecord };
  extra: LedgerRecord[];
}

/** Replays every instance's ledger in the data dir, folding requests, tool pins and the halt state. */
function scanInstances(dataDir: string, options: { keepHistory?: boolean; collect?: (record: LedgerRecord) => boolean } = {}): InstanceScan[] {
  return listInstances(dataDir).map((instance) => {
    const table = new RequestTable({ keepHistory: options.keepHistory ?? false });
    const pins = new ToolPinTable();
    const scan: InstanceScan = { instance, table, pins, extra: [] };
    scanLedger(instancePaths(dataDir, instance).ledger, (record) => {
      table.apply(record);
      pins.apply(record);
      if (record.type === "gateway.halted" || record.type === "gateway.resumed") scan.halt = { record };
      if (options.collect?.(record)) scan.extra.push(record);
    });
    return scan;
  });
}

/** The latest halt/resume fact across instances wins. */
function haltOf(scans: InstanceScan[]): HaltState {
  const latest = scans.map((scan) => scan.halt?.record).filter((record): record is LedgerRecord => record !== undefined).sort((a, b) => a.ts.localeCompare(b.ts)).pop();
  if (!latest || latest.type !== "gateway.halted") return { halted: false };
  const data = latest.data;
  const by = data.by ?? data.reviewer;
  return { halted: true, at: latest.ts, ...(by !== undefined ? { by: String(by) } : {}), ...(data.reason !== undefined ? { reason: String(data.reason) } : {}) };
}

function toItem(instance: string, view: RequestView, pins: ToolPinTable): ReviewItem {
  const masked = maskSecrets(view.args);
  const pin = pins.get(view.upstream, view.tool);
  return {
    ref: view.ref,
    instance,
    status: view.status,
    tool: view.name,
    upstreamTool: view.tool,
    upstream: view.upstream,
    ...(view.client ? { client: view.client } : {}),
    createdAt: view.createdAt,
    ...(view.deadline ? { deadline: view.deadline } : {}),
    args: masked,
    masked: JSON.stringify(masked) !== JSON.stringify(view.args),
    ...(view.assessment ? { assessment: view.assessment } : {}),
    ...(view.annotations ? { annotations: view.annotations } : {}),
    pin: !pin
      ? { state: "unpinned" }
      : pin.pending
        ? { state: "changed", pinnedAt: pin.pinnedAt, changed: pin.pending.changed, ...(pin.definition ? { pinned: pin.definition } : {}), ...(pin.pending.definition ? { current: pin.pending.definition } : {}) }
        : { state: "pinned", pinnedAt: pin.pinnedAt, ...(pin.trustedBy ? { trustedBy: pin.trustedBy } : {}) },
  };
}

/** Pending calls in every instance of the data dir (newest first) and the halt state. */
export function readReviewSnapshot(dataDir: string): ReviewSnapshot {
  const scans = scanInstances(dataDir);
  const pending = scans.flatMap((scan) => scan.table.pending().map((view) => toItem(scan.instance, view, scan.pins)));
  pending.sort((a, b) => b.createdAt.localeCompare(a.createdAt));
  return { pending, halt: haltOf(scans) };
}

/** The unmasked arguments of a ref (for the page's recorded reveal), or undefined when no ledger holds it. */
export function readArguments(dataDir: string, ref: string): { instance: string; args: Record<string, unknown> } | undefined {
  for (const scan of scanInstances(dataDir)) {
    const view = scan.table.get(ref);
    if (view) return { instance: scan.instance, args: view.args };
  }
  return undefined;
}

export interface RefHistory {
  instance: string;
  view: Omit<RequestView, "history" | "args" | "editedArgs"> & { args: unknown; editedArgs?: unknown };
  /** Every ledger record about the ref (its own, and facts naming it such as `review.revealed`), secrets masked. */
  records: LedgerRecord[];
}

/** A ref's whole story from the ledgers, for the page's history view. */
export function readRefHistory(dataDir: string, ref: string): RefHistory | undefined {
  const scans = scanInstances(dataDir, { keepHistory: true, collect: (record) => record.ref === undefined && record.data.ref === ref });
  const home = scans.find((scan) => scan.table.get(ref));
  const view = home?.table.get(ref);
  if (!home || !view) return undefined;
  const records = [...view.history, ...scans.flatMap((scan) => scan.extra)]
    .sort((a, b) => a.ts.localeCompare(b.ts))
    .map((record) => ({ ...record, data: maskSecrets(record.data) as Record<string, unknown> }));
  const { history: _history, ...rest } = view;
  return {
    instance: home.instance,
    view: { ...rest, args: maskSecrets(view.args), ...(view.editedArgs ? { editedArgs: maskSecrets(view.editedArgs) } : {}) },
    records,
  };
}

export interface SearchHit {
  ref: string;
  instance: string;
  tool: string;
  upstream: string;
  status: string;
  createdAt: string;
  score?: number;
  reviewer?: string;
  decision?: string;
}

/**
 * Calls matching a search: a ref (or its prefix), a tool name, or a reviewer id — newest first, at most `limit`.
 * Calls that ran without review are not kept by a replay and are found by their exact ref in the history view.
 */
export function searchRequests(dataDir: string, query: string, limit = 200): SearchHit[] {
  const q = query.trim().toLowerCase();
  const hits: SearchHit[] = [];
  for (const scan of scanInstances(dataDir)) {
    for (const view of scan.table.byRef.values()) {
      const reviewer = view.decision?.reviewer;
      const match = !q || view.ref.startsWith(q) || view.name.toLowerCase().includes(q) || view.tool.toLowerCase().includes(q) || (reviewer?.toLowerCase() === q);
      if (!match) continue;
      hits.push({
        ref: view.ref,
        instance: scan.instance,
        tool: view.name,
        upstream: view.upstream,
        status: view.status,
        createdAt: view.createdAt,
        ...(view.assessment ? { score: view.assessment.score } : {}),
        ...(reviewer ? { reviewer } : {}),
        ...(view.decision ? { decision: view.decision.decision } : {}),
      });
    }
  }
  return hits.sort((a, b) => b.createdAt.localeCompare(a.createdAt)).slice(0, limit);
}

/**
 * Watches every ledger in the data dir (each gateway instance writes its own) and tells subscribers when any of them
 * changed, with a fresh snapshot. Polls file sizes only while someone listens: a stat per ledger every `intervalMs`.
 */
export class ReviewFeed {
  private readonly listeners = new Set<(snapshot: ReviewSnapshot) => void>();
  private timer: NodeJS.Timeout | undefined;
  private lastSignature = "";
  private last: ReviewSnapshot | undefined;

  constructor(private readonly dataDir: string, private readonly intervalMs = 200) {}

  /** The current snapshot (re-read only when a ledger changed since the last one). */
  snapshot(): ReviewSnapshot {
    const signature = this.signature();
    if (!this.last || signature !== this.lastSignature) {
      this.lastSignature = signature;
      this.last = readReviewSnapshot(this.dataDir);
    }
    return this.last;
  }

  subscribe(listener: (snapshot: ReviewSnapshot) => void): () => void {
    this.listeners.add(listener);
    if (!this.timer) {
      this.timer = setInterval(() => this.poll(), this.intervalMs);
      this.timer.unref();
    }
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0 && this.timer) {
        clearInterval(this.timer);
        this.timer = undefined;
      }
    };
  }

  /** Re-reads and notifies at once (after a decision made through this listener, instead of waiting for the poll). */
  poke(): void {
    this.poll();
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.listeners.clear();
  }

  private poll(): void {
    if (this.listeners.size === 0) return;
    const before = this.lastSignature;
    let snapshot: ReviewSnapshot;
    try {
      snapshot = this.snapshot();
    } catch {
      return; // a ledger mid-rotation or unreadable for a moment: the next tick tries again
    }
    if (this.lastSignature === before) return;
    for (const listener of this.listeners) listener(snapshot);
  }

  private signature(): string {
    return listInstances(this.dataDir)
      .map((instance) => {
        try {
          const stat = statSync(instancePaths(this.dataDir, instance).ledger);
          return `${instance}:${stat.size}:${stat.mtimeMs}`;
        } catch {
          return `${instance}:-`;
        }
      })
      .join("|");
  }
}
