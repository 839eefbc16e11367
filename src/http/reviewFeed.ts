import { closeSync, openSync, readSync, statSync } from "node:fs";
import { instancePaths } from "../dataDir.js";
import { listInstances } from "../governance/instance.js";
import { haltFactFromRecord, isNewerHalt, type HaltFact } from "../governance/haltState.js";
import { RequestTable, type RequestView } from "../governance/requests.js";
import { carriedRecords, CHECKPOINT_TYPE, ledgerSegments, readLines, scanLedger, type LedgerRecord } from "../ledger/ledger.js";
import { maskSecrets } from "../mask.js";
import { ToolPinTable, type PinnedDefinition } from "../risk/toolPins.js";

/**
 * The stop button's state as the ledgers record it (`gateway.halted` / `gateway.resumed`, issue 9 item 4): who
 * pressed it, why and since when (`at`, ISO 8601, when it was pressed).
 */
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
  /**
   * The two-person rule (issue 9 item 5, EU AI Act Art. 14(5)): present when the call's policy rule asks for
   * `approvals: N` (N > 1); `by` lists who approved so far, in order.
   */
  approvals?: { count: number; required: number; by: string[] };
  pin: { state: "pinned" | "changed" | "unpinned"; pinnedAt?: string; trustedBy?: string; changed?: string[]; pinned?: PinnedDefinition; current?: PinnedDefinition };
}

/** What the inbox shows at one moment: the pending calls of every instance and whether the gateway is halted. */
export interface ReviewSnapshot {
  pending: ReviewItem[];
  halt: HaltState;
}

interface InstanceScan {
  instance: string;
  table: RequestTable;
  pins: ToolPinTable;
  extra: LedgerRecord[];
}

/** Replays every instance's ledger in the data dir (history and search: on demand, not per update). */
function scanInstances(dataDir: string, options: { keepHistory?: boolean; collect?: (record: LedgerRecord) => boolean } = {}): InstanceScan[] {
  return listInstances(dataDir).map((instance) => {
    const table = new RequestTable({ keepHistory: options.keepHistory ?? false });
    const pins = new ToolPinTable();
    const scan: InstanceScan = { instance, table, pins, extra: [] };
    scanLedger(instancePaths(dataDir, instance).ledger, (record) => {
      table.apply(record);
      pins.apply(record);
      if (options.collect?.(record)) scan.extra.push(record);
    });
    return scan;
  });
}

/** The page's view of the newest halt/resume fact across instances (ordered as every gateway orders them). */
function haltFrom(latest: HaltFact | undefined): HaltState {
  if (!latest?.halted) return { halted: false };
  return { halted: true, by: latest.by, at: latest.at, ...(latest.reason !== undefined ? { reason: latest.reason } : {}) };
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
    ...(view.approvalsRequired ? { approvals: { count: view.approvals?.length ?? 0, required: view.approvalsRequired, by: (view.approvals ?? []).map((approval) => approval.reviewer) } } : {}),
    pin: !pin
      ? { state: "unpinned" }
      : pin.pending
        ? { state: "changed", pinnedAt: pin.pinnedAt, changed: pin.pending.changed, ...(pin.definition ? { pinned: pin.definition } : {}), ...(pin.pending.definition ? { current: pin.pending.definition } : {}) }
        : { state: "pinned", pinnedAt: pin.pinnedAt, ...(pin.trustedBy ? { trustedBy: pin.trustedBy } : {}) },
  };
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
  // One ledger's records keep their own order (seq; timestamps tie within a millisecond); others interleave by time.
  const tagged = [...view.history.map((record) => ({ instance: home.instance, record })), ...scans.flatMap((scan) => scan.extra.map((record) => ({ instance: scan.instance, record })))];
  const records = tagged
    .sort((a, b) => (a.instance === b.instance ? a.record.seq - b.record.seq : a.record.ts.localeCompare(b.record.ts)))
    .map(({ record }) => ({ ...record, data: maskSecrets(record.data) as Record<string, unknown> }));
  const { history: _history, ...rest } = view;
  return {
    instance: home.instance,
    view: { ...rest, args: maskSecrets(view.args), ...(view.editedArgs ? { editedArgs: maskSecrets(view.editedArgs) } : {}), ...(view.result !== undefined ? { result: maskSecrets(view.result) } : {}) },
    records,
  };
}

/** One call found by the history search. */
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
 * One instance's ledger followed from where it was last read: only the newest segment is read, and of it only the
 * bytes appended since the last update, so a live inbox costs a directory listing and a `stat` per poll and a few
 * lines per change, not a replay of the ledger (issue 12: a ledger is a directory of segments; a 0.1 file not yet
 * migrated is read in place as its only segment). When a newer segment appears (a rollover, or the 0.1 file's
 * migration), the view starts over from that segment: its opening `ledger.checkpoint` carries every open request,
 * the pins and the halt fact, so nothing before it is needed, however many segments were written between two polls.
 * A view only (hashes are not rechecked: `audit verify` does that); a line that does not parse is skipped. A segment
 * that shrank or was replaced (a torn tail moved away at start) is re-read.
 */
class LedgerTail {
  table = new RequestTable();
  pins = new ToolPinTable();
  halt: HaltFact | undefined;
  private segment: string | undefined;
  private offset = 0;
  private carry: Buffer[] = [];
  private inode = -1;
  /** No complete line of the segment read yet: a checkpoint there opens it and its carried records come first. */
  private atStart = true;

  constructor(private readonly path: string) {}

  /** Reads what was appended since the last call; true when anything was. */
  update(): boolean {
    const newest = ledgerSegments(this.path).at(-1);
    if (!newest) return false;
    let stat;
    try {
      stat = statSync(newest.path);
    } catch {
      return false; // renamed away between the listing and the stat (a migration): the next poll sees the new name
    }
    const restarted = newest.path !== this.segment || stat.ino !== this.inode || stat.size < this.offset;
    if (restarted) this.restart(newest.path, stat.ino);
    if (stat.size === this.offset) return restarted;
    if (newest.compressed) {
      // only closed segments are compressed, so this is never appended to: read it whole, once
      for (const { line, complete } of readLines(newest.path)) if (complete) this.apply(line);
      this.offset = stat.size;
      return true;
    }
    const fd = openSync(newest.path, "r");
    try {
      const chunk = Buffer.allocUnsafe(1 << 20);
      while (this.offset < stat.size) {
        const read = readSync(fd, chunk, 0, Math.min(chunk.length, stat.size - this.offset), this.offset);
        if (read === 0) break;
        this.offset += read;
        let start = 0;
        for (let nl = chunk.indexOf(10, start); nl !== -1 && nl < read; nl = chunk.indexOf(10, start)) {
          const piece = chunk.subarray(start, nl);
          const line = this.carry.length ? Buffer.concat([...this.carry, piece]).toString("utf8") : piece.toString("utf8");
          this.carry = [];
          start = nl + 1;
          this.apply(line);
        }
        if (start < read) this.carry.push(Buffer.from(chunk.subarray(start, read)));
      }
    } finally {
      closeSync(fd);
    }
    return true;
  }

  private restart(segment: string, inode: number): void {
    this.table = new RequestTable();
    this.pins = new ToolPinTable();
    this.halt = undefined;
    this.segment = segment;
    this.inode = inode;
    this.offset = 0;
    this.carry = [];
    this.atStart = true;
  }

  private apply(line: string): void {
    const first = this.atStart;
    this.atStart = false;
    let record: LedgerRecord;
    try {
      record = JSON.parse(line) as LedgerRecord;
    } catch {
      return;
    }
    if (!record || typeof record.type !== "string" || typeof record.data !== "object" || record.data === null) return;
    if (first && record.type === CHECKPOINT_TYPE) for (const carried of carriedRecords(record)) this.fold(carried);
    this.fold(record);
  }

  private fold(record: LedgerRecord): void {
    this.table.apply(record);
    this.pins.apply(record);
    const fact = haltFactFromRecord(record);
    if (fact && isNewerHalt(fact, this.halt)) this.halt = fact;
  }
}

/**
 * Watches every ledger in the data dir (each gateway instance writes its own) and tells subscribers when any of them
 * changed, with a fresh snapshot: pending calls newest first, and the halt state. Polls only while someone listens.
 */
export class ReviewFeed {
  private readonly listeners = new Set<(snapshot: ReviewSnapshot) => void>();
  private readonly tails = new Map<string, LedgerTail>();
  private timer: NodeJS.Timeout | undefined;
  private last: ReviewSnapshot | undefined;

  constructor(private readonly dataDir: string, private readonly intervalMs = 200) {}

  /** The current snapshot, after reading whatever the ledgers gained since the last one. */
  snapshot(): ReviewSnapshot {
    this.refresh();
    return this.last!;
  }

  /** A ref's current view and instance, from the followed ledgers (held calls are always kept). */
  find(ref: string): { instance: string; view: RequestView } | undefined {
    this.refresh();
    for (const [instance, tail] of this.tails) {
      const view = tail.table.get(ref);
      if (view) return { instance, view };
    }
    return undefined;
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

  /** True when a ledger gained records (or a new instance appeared) since the last refresh. */
  private refresh(): boolean {
    let changed = this.last === undefined;
    for (const instance of listInstances(this.dataDir)) {
      let tail = this.tails.get(instance);
      if (!tail) {
        this.tails.set(instance, (tail = new LedgerTail(instancePaths(this.dataDir, instance).ledger)));
        changed = true;
      }
      if (tail.update()) changed = true;
    }
    if (!changed) return false;
    const pending = [...this.tails].flatMap(([instance, tail]) => tail.table.pending().map((view) => toItem(instance, view, tail.pins)));
    pending.sort((a, b) => b.createdAt.localeCompare(a.createdAt));
    let latestHalt: HaltFact | undefined;
    for (const tail of this.tails.values()) if (tail.halt && isNewerHalt(tail.halt, latestHalt)) latestHalt = tail.halt;
    this.last = { pending, halt: haltFrom(latestHalt) };
    return true;
  }

  private poll(): void {
    if (this.listeners.size === 0) return;
    let changed: boolean;
    try {
      changed = this.refresh();
    } catch {
      return; // a ledger unreadable for a moment: the next tick tries again
    }
    if (!changed) return;
    for (const listener of this.listeners) listener(this.last!);
  }
}
