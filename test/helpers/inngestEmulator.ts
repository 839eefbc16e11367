import { parse as parseCel } from "@marcbachmann/cel-js";
import canonicalize from "canonicalize";
import { createHash, createHmac, randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

// An emulation of Inngest's event API and executor, written from the SDK's protocol (inngest-js
// `InngestCommHandler`, `helpers/functions.ts` `parseFnData`, `api/schema.ts`, `api/api.ts`) and the server's
// behaviour (Inngest's docs and executor: size limits, dedupe, idempotency, retries, waits). It plays the server's side of every exchange over
// HTTP on 127.0.0.1: events in, signed sync and registration, signed calls to the served function, step ops, waits
// with compiled CEL expressions, retries on a pluggable backoff, failed and cancelled runs, on a controllable clock.

export const TEST_SIGNING_KEY = `signkey-test-${"5e".repeat(32)}`;
export const TEST_EVENT_KEY = "test_event_key_0123456789";

const DAY_MS = 24 * 3_600_000;
/** Self-hosted Inngest's event size limit (Cloud's free plan: 256 KiB). */
export const DEFAULT_MAX_EVENT_BYTES = 3 * 1024 * 1024;
/** The longest wait the server accepts. */
export const MAX_WAIT_MS = 366 * DAY_MS;
/** Inngest's retry schedule, roughly: 15 s doubling up to 2 h (10 retries ≈ 4 h). */
export const INNGEST_BACKOFF = (retry: number): number => Math.min(15_000 * 2 ** (retry - 1), 2 * 3_600_000);

/** `x-inngest-signature` as Inngest computes it: HMAC-SHA256 of the canonical body + timestamp, key without prefix. */
export function signInngestBody(body: unknown, signingKey: string, at = new Date()): string {
  const ts = Math.floor(at.getTime() / 1000).toString();
  const key = signingKey.replace(/^signkey-\w+-/, "");
  const encoded = typeof body === "string" ? body : (canonicalize(body) ?? "");
  return `t=${ts}&s=${createHmac("sha256", key).update(`${encoded}${ts}`).digest("hex")}`;
}

/** The bearer token the SDK registers with: the key's prefix kept, its hex bytes hashed with SHA-256. */
export function hashSigningKey(signingKey: string): string {
  const prefix = /^signkey-\w+-/.exec(signingKey)?.[0] ?? "";
  return `${prefix}${createHash("sha256").update(Buffer.from(signingKey.slice(prefix.length), "hex")).digest("hex")}`;
}

/** A time source with timers that only fire when the test advances it. */
export class EmulatorClock {
  private current: number;
  private timers: { at: number; seq: number; fire: () => void }[] = [];
  private seq = 0;

  constructor(start = Date.now()) {
    this.current = start;
  }

  now(): number {
    return this.current;
  }

  /** Runs `fire` once the clock reaches `at` (ms since the epoch); returns a cancel function. */
  at(at: number, fire: () => void): () => void {
    const timer = { at, seq: this.seq++, fire };
    this.timers.push(timer);
    return () => (this.timers = this.timers.filter((other) => other !== timer));
  }

  /** Moves time on by `ms`, firing every timer that falls due, in order. */
  advance(ms: number): void {
    const target = this.current + ms;
    for (;;) {
      const due = this.timers.filter((timer) => timer.at <= target).sort((a, b) => a.at - b.at || a.seq - b.seq)[0];
      if (!due) break;
      this.timers = this.timers.filter((timer) => timer !== due);
      this.current = Math.max(this.current, due.at);
      due.fire();
    }
    this.current = target;
  }

  /** When the next timer falls due, if any. */
  next(): number | undefined {
    return this.timers.length ? Math.min(...this.timers.map((timer) => timer.at)) : undefined;
  }
}

export interface EmulatedEvent {
  name: string;
  id: string;
  data: Record<string, unknown>;
  ts: number;
  user?: Record<string, unknown>;
  v?: string;
}

export interface StepOp {
  id: string;
  op: string;
  name?: string;
  displayName?: string;
  opts?: Record<string, unknown>;
  data?: unknown;
  error?: unknown;
}

/** One call the executor made to the served function, and what it got back. */
export interface ExecutorCall {
  stepId: string;
  attempt: number;
  body: Record<string, unknown>;
  status: number | "transport-error";
  headers: Record<string, string>;
  text: string;
  ops?: StepOp[];
}

export interface RegisteredFunction {
  id: string;
  name?: string;
  triggers: { event?: string; expression?: string; cron?: string }[];
  idempotency?: string;
  steps: Record<string, { id: string; runtime: { type: string; url: string }; retries?: { attempts?: number } }>;
  [key: string]: unknown;
}

export interface Registration {
  url: string;
  appName: string;
  functions: RegisteredFunction[];
  authorization: string;
  body: Record<string, unknown>;
}

export type StoredStep = { data: unknown } | { error: unknown };

interface Wait {
  run: EmulatedRun;
  op: StepOp;
  event: string;
  expression?: string;
  match?: (event: EmulatedEvent) => boolean;
  createdAt: number;
  expiresAt: number;
  cancelTimer: () => void;
}

interface EmulatorSignalWait {
  run: EmulatedRun;
  op: StepOp;
  signal: string;
  replaced: boolean;
  cancelTimer: () => void;
}

export type RunStatus = "running" | "completed" | "failed" | "cancelled";

/** One function run, as the executor keeps it. */
export class EmulatedRun {
  readonly id: string;
  status: RunStatus = "running";
  output: unknown;
  /** Why the run failed, or the error of the attempt being retried; cleared when it completes. */
  error: string | undefined;
  /** Memoized step results by hashed step id, in the shapes the executor stores. */
  readonly steps: Record<string, StoredStep> = {};
  readonly stack: string[] = [];
  readonly calls: ExecutorCall[] = [];
  /** The request version the SDK chose (`x-inngest-req-version`); `-1` until it answered. */
  version = -1;
  /** Planned-only mode: set once the function reported parallel steps. */
  disableImmediateExecution = false;
  /** Open branches of the current step group; discovery resumes when they are all done. */
  openBranches = 0;

  constructor(
    readonly fn: RegisteredFunction,
    readonly event: EmulatedEvent,
    readonly startedAt: number,
  ) {
    this.id = ulid(startedAt);
  }

  /** Every op the function reported, as `Op:displayName`, in order. */
  opNames(): string[] {
    return this.calls.flatMap((call) => (call.ops ?? []).map((op) => `${op.op}:${op.displayName ?? op.name ?? op.id}`));
  }

  /** The stored result of a step by its id as written in the function (hashed as the SDK hashes it). */
  stepResult(stepId: string): StoredStep | undefined {
    return this.steps[hashStepId(stepId)];
  }
}

export interface InngestEmulatorOptions {
  signingKey?: string;
  eventKey?: string;
  /** Largest event request body accepted; larger ones get 400 "event too large". */
  maxEventBytes?: number;
  /** Delay before retry number `n` (1-based), in ms of the emulator's clock. Default: Inngest's schedule. */
  backoff?: (retry: number) => number;
  clock?: EmulatorClock;
  /** Above this request size the executor sends no events or steps and sets `use_api` (default ~4 MiB). */
  maxRequestBytes?: number;
}

type Work = () => Promise<void>;

/**
 * Inngest's event API and executor in one in-process HTTP server. Runs start only for synced apps, as on the real
 * server: call `sync(url)` first (or see events accepted and nothing run, like an unsynced app).
 */
export class InngestEmulator {
  readonly clock: EmulatorClock;
  /** Events the event API accepted, in order (including deduplicated ones, flagged). */
  readonly events: (EmulatedEvent & { deduplicated?: boolean })[] = [];
  /** Every event the event API accepted, exactly as it was sent (before ids and timestamps were filled in). */
  readonly received: Record<string, unknown>[] = [];
  /** Event API requests refused, with the status and body answered. */
  readonly refused: { status: number; body: string; bytes: number }[] = [];
  readonly registrations: Registration[] = [];
  readonly runs: EmulatedRun[] = [];
  /** Requests to the SDK's authenticated API (`/v0/runs/...`), with the bearer token they carried. */
  readonly apiRequests: { path: string; authorization: string }[] = [];
  /** The next N event API requests fail with 500 (an outage). */
  failNextEvents = 0;
  /** The signing key the executor signs with; a test changes it to model a wrong or rotated key. */
  signingKey: string;
  eventKey: string;
  maxEventBytes: number;
  private readonly maxRequestBytes: number;
  private readonly backoff: (retry: number) => number;
  private server!: Server;
  private readonly waits: Wait[] = [];
  private readonly signalWaits: EmulatorSignalWait[] = [];
  /** What to do when an invoked run ends (settle its parent's step). */
  private readonly onEnd = new Map<EmulatedRun, () => void>();
  private readonly seenEventIds = new Map<string, number>();
  private readonly idempotencyKeys = new Map<string, number>();
  private inFlight = 0;
  private readonly idleListeners: (() => void)[] = [];
  private readonly changeListeners: (() => void)[] = [];
  private closed = false;

  constructor(options: InngestEmulatorOptions = {}) {
    this.signingKey = options.signingKey ?? TEST_SIGNING_KEY;
    this.eventKey = options.eventKey ?? TEST_EVENT_KEY;
    this.maxEventBytes = options.maxEventBytes ?? DEFAULT_MAX_EVENT_BYTES;
    this.backoff = options.backoff ?? INNGEST_BACKOFF;
    this.maxRequestBytes = options.maxRequestBytes ?? 4 * 1024 * 1024;
    this.clock = options.clock ?? new EmulatorClock();
  }

  /** The base URL for `INNGEST_BASE_URL`. */
  url = "";

  async start(): Promise<string> {
    this.server = createServer((req, res) => void this.handle(req, res));
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this.url;
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const wait of this.waits.splice(0)) wait.cancelTimer();
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  // ---- the HTTP side: event API and registration ----

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const raw = Buffer.concat(chunks);
    const path = new URL(req.url ?? "/", "http://x").pathname;
    const answer = (status: number, body: unknown): void => void res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
    const eventPath = /^\/e\/([^/]+)$/.exec(path);
    if (req.method === "POST" && eventPath) return this.receiveEvents(decodeURIComponent(eventPath[1]!), raw, answer);
    if (req.method === "POST" && path === "/fn/register") return this.register(req, raw, answer);
    if (req.method === "POST" && path === "/v1/signals") return this.receiveSignal(req, raw, answer);
    if (req.method === "GET" && path === "/health") return answer(200, { status: 200, message: "OK" });
    const runData = /^\/v0\/runs\/([^/]+)\/(actions|batch)$/.exec(path);
    if (req.method === "GET" && runData) return this.serveRunData(req, decodeURIComponent(runData[1]!), runData[2] as "actions" | "batch", answer);
    answer(404, { error: `not emulated: ${req.method} ${path}` });
  }

  private receiveEvents(key: string, raw: Buffer, answer: (status: number, body: unknown) => void): void {
    const refuse = (status: number, error: string) => {
      this.refused.push({ status, body: error, bytes: raw.length });
      answer(status, { error, status });
      this.changed();
    };
    if (this.failNextEvents > 0) {
      this.failNextEvents -= 1;
      return refuse(500, "simulated outage");
    }
    if (key !== this.eventKey) return refuse(401, "Event key not found");
    if (raw.length > this.maxEventBytes) return refuse(400, "event too large");
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw.toString("utf8"));
    } catch {
      return refuse(400, "unable to parse events");
    }
    const list = (Array.isArray(parsed) ? parsed : [parsed]) as Partial<EmulatedEvent>[];
    if (list.some((event) => typeof event?.name !== "string" || !event.name)) return refuse(400, "event name is required");
    const ids: string[] = [];
    this.received.push(...(list as Record<string, unknown>[]));
    for (const sent of list) {
      const internalId = ulid(this.clock.now());
      ids.push(internalId);
      this.acceptEvent({ name: sent.name!, id: sent.id ?? internalId, data: (sent.data ?? {}) as Record<string, unknown>, ts: sent.ts ?? this.clock.now(), ...(sent.user ? { user: sent.user } : {}) });
    }
    answer(200, { ids, status: 200 });
  }

  /** Signed registration (`POST /fn/register`): the bearer token must be the hashed signing key. */
  private register(req: IncomingMessage, raw: Buffer, answer: (status: number, body: unknown) => void): void {
    const authorization = req.headers.authorization ?? "";
    if (authorization !== `Bearer ${hashSigningKey(this.signingKey)}`) return answer(401, { error: "unauthorized: signing key does not match", status: 401 });
    const body = JSON.parse(raw.toString("utf8")) as Record<string, unknown>;
    const registration: Registration = {
      url: String(body.url),
      appName: String(body.appName),
      functions: (body.functions ?? []) as RegisteredFunction[],
      authorization,
      body,
    };
    const index = this.registrations.findIndex((other) => other.appName === registration.appName);
    if (index >= 0) this.registrations.splice(index, 1);
    this.registrations.push(registration);
    answer(200, { ok: true, modified: true });
    this.changed();
  }

  /**
   * The SDK's authenticated API for run data (`use_api`: the executor's payload was too big to send): the bearer
   * token must be the hashed signing key (401 otherwise), an unknown run is 404.
   */
  private serveRunData(req: IncomingMessage, runId: string, what: "actions" | "batch", answer: (status: number, body: unknown) => void): void {
    this.apiRequests.push({ path: `/v0/runs/${runId}/${what}`, authorization: req.headers.authorization ?? "" });
    if (req.headers.authorization !== `Bearer ${hashSigningKey(this.signingKey)}`) return answer(401, { error: "unauthorized", status: 401 });
    const run = this.runs.find((candidate) => candidate.id === runId);
    if (!run) return answer(404, { error: "run not found", status: 404 });
    answer(200, what === "batch" ? [run.event] : run.steps);
  }

  /**
   * Syncs an app as the dashboard or `inngest dev -u` does: a signed `PUT` to its serve URL, after which the SDK
   * registers its functions here. Resolves with the serve endpoint's status and body.
   */
  async sync(serveUrl: string): Promise<{ status: number; body: string }> {
    const res = await fetch(serveUrl, { method: "PUT", headers: { "x-inngest-signature": signInngestBody("", this.signingKey) } });
    return { status: res.status, body: await res.text() };
  }

  /** The functions an app registered, by app name. */
  app(appName: string): Registration | undefined {
    return this.registrations.find((registration) => registration.appName === appName);
  }

  // ---- events: dedupe, waits, triggers ----

  private acceptEvent(event: EmulatedEvent): void {
    const now = this.clock.now();
    const seen = this.seenEventIds.get(event.id);
    if (seen !== undefined && now - seen < DAY_MS) {
      this.events.push({ ...event, deduplicated: true });
      this.changed();
      return;
    }
    this.seenEventIds.set(event.id, now);
    this.events.push(event);
    // Waits first: only waits that exist while the event is processed can match (no lookback).
    for (const wait of [...this.waits]) {
      if (wait.event !== event.name || !wait.match?.(event)) continue;
      this.resolveWait(wait, event);
    }
    for (const registration of this.registrations) {
      for (const fn of registration.functions) {
        const trigger = fn.triggers.find((candidate) => candidate.event === event.name && (!candidate.expression || evaluateBoolean(candidate.expression, { event })));
        if (trigger) this.trigger(fn, event);
      }
    }
    this.changed();
  }

  private trigger(fn: RegisteredFunction, event: EmulatedEvent): void {
    if (fn.idempotency) {
      // A function's idempotency key is a 24 h rate limit of one run per key.
      const value = evaluate(fn.idempotency, { event });
      const key = `${fn.id}\u0000${JSON.stringify(value ?? null)}`;
      const seen = this.idempotencyKeys.get(key);
      if (seen !== undefined && this.clock.now() - seen < DAY_MS) return;
      this.idempotencyKeys.set(key, this.clock.now());
    }
    const run = new EmulatedRun(fn, event, this.clock.now());
    this.runs.push(run);
    this.schedule(run, { stepId: "step", attempt: 0 });
  }

  // ---- the executor ----

  private schedule(run: EmulatedRun, item: { stepId: string; attempt: number; op?: StepOp }, delayMs = 0): void {
    const work: Work = () => this.execute(run, item);
    if (delayMs > 0) this.clock.at(this.clock.now() + delayMs, () => this.track(work));
    else this.track(work);
  }

  private track(work: Work): void {
    this.inFlight += 1;
    void work()
      .catch((error: Error) => {
        // A bug in the emulator must not hang the test.
        console.error("inngest emulator:", error);
      })
      .finally(() => {
        this.inFlight -= 1;
        this.changed();
        if (this.inFlight === 0) for (const listener of this.idleListeners.splice(0)) listener();
      });
  }

  private maxAttempts(run: EmulatedRun): number {
    const step = Object.values(run.fn.steps)[0];
    return (step?.retries?.attempts ?? 3) + 1;
  }

  private async execute(run: EmulatedRun, item: { stepId: string; attempt: number; op?: StepOp }): Promise<void> {
    if (run.status !== "running" || this.closed) return;
    const step = Object.values(run.fn.steps)[0]!;
    const url = new URL(step.runtime.url);
    url.searchParams.set("fnId", run.fn.id);
    url.searchParams.set("stepId", item.stepId);
    let body = {
      version: run.version,
      event: run.event,
      events: [run.event],
      steps: { ...run.steps } as Record<string, StoredStep>,
      ctx: {
        fn_id: run.fn.id,
        run_id: run.id,
        step_id: item.stepId,
        attempt: item.attempt,
        max_attempts: this.maxAttempts(run),
        disable_immediate_execution: run.disableImmediateExecution,
        use_api: false,
        stack: { stack: [...run.stack], current: run.stack.length },
      },
      use_api: false,
    };
    if (Buffer.byteLength(JSON.stringify(body)) > this.maxRequestBytes) {
      // Too big to send: the SDK fetches events and steps from the API with its signing key.
      body = { ...body, events: [], steps: {}, ctx: { ...body.ctx, use_api: true }, use_api: true };
    }
    const call: ExecutorCall = { stepId: item.stepId, attempt: item.attempt, body, status: "transport-error", headers: {}, text: "" };
    run.calls.push(call);
    try {
      const res = await fetch(url, {
        method: "POST",
        headers: { "content-type": "application/json", "x-inngest-signature": signInngestBody(body, this.signingKey) },
        body: JSON.stringify(body),
      });
      call.status = res.status;
      call.headers = Object.fromEntries(res.headers.entries());
      call.text = await res.text();
    } catch (error) {
      call.text = (error as Error).message;
      return this.retryOrFail(run, item, `transport error: ${call.text}`);
    }
    if (run.status !== "running") return;
    const version = Number(call.headers["x-inngest-req-version"]);
    if (Number.isFinite(version)) run.version = version;
    if (call.status === 200) return this.finish(run, "completed", parseJson(call.text));
    if (call.status !== 206) {
      const cause = `HTTP ${call.status}: ${call.text.slice(0, 300)}`;
      if (call.headers["x-inngest-no-retry"] === "true") return this.fail(run, cause);
      return this.retryOrFail(run, item, cause);
    }
    const ops = parseJson(call.text) as StepOp[];
    call.ops = Array.isArray(ops) ? ops : [ops as StepOp];
    this.applyOps(run, item, call.ops);
  }

  private retryOrFail(run: EmulatedRun, item: { stepId: string; attempt: number; op?: StepOp }, cause: string): void {
    if (item.attempt + 1 >= this.maxAttempts(run)) return this.fail(run, cause);
    run.error = cause;
    this.schedule(run, { ...item, attempt: item.attempt + 1 }, this.backoff(item.attempt + 1));
  }

  private applyOps(run: EmulatedRun, item: { stepId: string; attempt: number; op?: StepOp }, ops: StepOp[]): void {
    if (item.op) {
      // The answer to a planned step: exactly its own result.
      const [op] = ops;
      if (!op) return this.fail(run, `planned step ${item.stepId} answered no op`);
      if (op.op === "StepError") return this.retryOrFail(run, item, `step ${op.displayName ?? op.id} errored: ${errorMessage(op.error)}`);
      this.store(run, op.id, op.op === "StepFailed" ? { error: op.error } : { data: op.data ?? null });
      return this.branchDone(run);
    }
    if (ops.length > 1) run.disableImmediateExecution = true;
    // A wait is registered before any planned step of the same response runs.
    const ordered = [...ops].sort((a, b) => Number(b.op === "WaitForEvent") - Number(a.op === "WaitForEvent"));
    run.openBranches = ops.length;
    for (const op of ordered) {
      if (run.status !== "running") return;
      switch (op.op) {
        case "StepRun":
        case "Step":
          this.store(run, op.id, { data: op.data ?? null });
          this.branchDone(run);
          break;
        case "StepFailed":
          this.store(run, op.id, { error: op.error });
          this.branchDone(run);
          break;
        case "StepError":
          // An immediately executed step failed: retry it as a planned step.
          this.retryOrFail(run, { stepId: op.id, attempt: item.attempt, op }, `step ${op.displayName ?? op.id} errored: ${errorMessage(op.error)}`);
          break;
        case "StepPlanned":
          this.schedule(run, { stepId: op.id, attempt: 0, op });
          break;
        case "WaitForEvent":
          this.registerWait(run, op);
          break;
        case "Sleep": {
          const until = parseTimeout(String(op.opts?.duration ?? op.name ?? ""), this.clock.now());
          if (typeof until === "string") return this.fail(run, `sleep ${op.displayName ?? op.id}: ${until}`);
          this.clock.at(until, () => {
            if (run.status !== "running") return;
            this.store(run, op.id, { data: null });
            this.branchDone(run);
          });
          break;
        }
        case "WaitForSignal":
          this.registerSignalWait(run, op);
          break;
        case "InvokeFunction":
          this.invoke(run, op);
          break;
        case "RunComplete":
          return this.finish(run, "completed", op.data ?? null);
        default:
          return this.fail(run, `op ${op.op} is not supported by this emulator`);
      }
    }
  }

  private store(run: EmulatedRun, id: string, result: StoredStep): void {
    run.steps[id] = result;
    run.stack.push(id);
  }

  private branchDone(run: EmulatedRun): void {
    run.openBranches -= 1;
    if (run.openBranches <= 0 && run.status === "running") {
      run.openBranches = 0;
      this.schedule(run, { stepId: "step", attempt: 0 });
    }
  }

  private registerWait(run: EmulatedRun, op: StepOp): void {
    const opts = op.opts ?? {};
    const now = this.clock.now();
    const expiresAt = parseTimeout(String(opts.timeout ?? ""), now);
    if (typeof expiresAt === "string") return this.fail(run, `waitForEvent ${op.displayName ?? op.id}: ${expiresAt}`);
    const expression = typeof opts.if === "string" ? opts.if : undefined;
    let match: ((event: EmulatedEvent) => boolean) | undefined = () => true;
    if (expression) {
      try {
        // The server fills `event.*` in from the triggering event and compiles the rest; a syntax error fails the
        // step. Here `event` and `async` are both variables of one CEL evaluation, which matches the same events.
        const compiled = parseCel(expression);
        match = (candidate) => {
          try {
            return compiled({ event: run.event, async: candidate }) === true;
          } catch {
            return false;
          }
        };
      } catch (error) {
        return this.fail(run, `waitForEvent ${op.displayName ?? op.id}: invalid expression: ${(error as Error).message.split("\n")[0]}`);
      }
    }
    const wait: Wait = { run, op, event: String(op.name), ...(expression ? { expression } : {}), match, createdAt: now, expiresAt, cancelTimer: () => {} };
    wait.cancelTimer = this.clock.at(expiresAt, () => this.resolveWait(wait, null));
    this.waits.push(wait);
  }

  /** `step.waitForSignal`: resolved by `POST /v1/signals` with `{ signal, data }` while it exists, else `null`. */
  private registerSignalWait(run: EmulatedRun, op: StepOp): void {
    const expiresAt = parseTimeout(String(op.opts?.timeout ?? ""), this.clock.now());
    if (typeof expiresAt === "string") return this.fail(run, `waitForSignal ${op.displayName ?? op.id}: ${expiresAt}`);
    const signal = String(op.opts?.signal ?? op.name);
    const holder = this.signalWaits.find((wait) => wait.signal === signal && !wait.replaced);
    if (holder) {
      // `onConflict`: "fail" fails this step's run; "replace" takes the signal over (the old wait only times out).
      if (op.opts?.conflict !== "replace") return this.fail(run, `waitForSignal ${op.displayName ?? op.id}: signal ${JSON.stringify(signal)} is already awaited`);
      holder.replaced = true;
    }
    const wait: EmulatorSignalWait = { run, op, signal, replaced: false, cancelTimer: () => {} };
    wait.cancelTimer = this.clock.at(expiresAt, () => this.resolveSignal(wait, null));
    this.signalWaits.push(wait);
  }

  private resolveSignal(wait: EmulatorSignalWait, data: { signal: string; data: unknown } | null): void {
    const index = this.signalWaits.indexOf(wait);
    if (index < 0) return;
    this.signalWaits.splice(index, 1);
    wait.cancelTimer();
    if (wait.run.status !== "running") return;
    this.store(wait.run, wait.op.id, { data });
    this.branchDone(wait.run);
    this.changed();
  }

  private receiveSignal(req: IncomingMessage, raw: Buffer, answer: (status: number, body: unknown) => void): void {
    if (req.headers.authorization !== `Bearer ${hashSigningKey(this.signingKey)}`) return answer(401, { error: "unauthorized", status: 401 });
    const body = parseJson(raw.toString("utf8")) as { signal?: unknown; data?: unknown };
    const wait = this.signalWaits.find((candidate) => candidate.signal === body.signal && !candidate.replaced);
    if (!wait) return answer(404, { error: "no run is waiting for this signal", status: 404 });
    const runId = wait.run.id;
    this.resolveSignal(wait, { signal: String(body.signal), data: body.data ?? null });
    answer(200, { data: { run_id: runId } });
  }

  /** `step.invoke`: runs the target function with `inngest/function.invoked`; its output (or error) is the step's. */
  private invoke(run: EmulatedRun, op: StepOp): void {
    const opts = (op.opts ?? {}) as { function_id?: string; payload?: { data?: Record<string, unknown> }; timeout?: string };
    const target = this.registrations.flatMap((registration) => registration.functions).find((fn) => fn.id === opts.function_id);
    const settle = (result: StoredStep) => {
      if (run.status !== "running" || op.id in run.steps) return;
      cancelTimer();
      this.store(run, op.id, result);
      this.branchDone(run);
      this.changed();
    };
    let cancelTimer = () => {};
    if (!target) return settle({ error: { name: "Error", message: `could not find function ${String(opts.function_id)}` } });
    if (opts.timeout) {
      const expiresAt = parseTimeout(opts.timeout, this.clock.now());
      if (typeof expiresAt === "string") return this.fail(run, `invoke ${op.displayName ?? op.id}: ${expiresAt}`);
      cancelTimer = this.clock.at(expiresAt, () => settle({ error: { name: "InngestInvokeTimeoutError", message: "Timed out waiting for invoked function to complete" } }));
    }
    const now = this.clock.now();
    const child = new EmulatedRun(target, { name: "inngest/function.invoked", id: ulid(now), ts: now, data: { ...(opts.payload?.data ?? {}) } }, now);
    this.runs.push(child);
    this.onEnd.set(child, () => settle(child.status === "completed" ? { data: child.output ?? null } : { error: { name: "Error", message: child.error ?? child.status } }));
    this.schedule(child, { stepId: "step", attempt: 0 });
  }

  private resolveWait(wait: Wait, event: EmulatedEvent | null): void {
    const index = this.waits.indexOf(wait);
    if (index < 0) return;
    this.waits.splice(index, 1);
    wait.cancelTimer();
    if (wait.run.status !== "running") return;
    // A matched wait stores the raw event; a timed-out one stores null.
    this.store(wait.run, wait.op.id, { data: event });
    this.branchDone(wait.run);
    this.changed();
  }

  private finish(run: EmulatedRun, status: "completed", output: unknown): void {
    run.status = status;
    run.output = output;
    run.error = undefined;
    this.dropWaits(run);
    this.notifyEnded(run);
  }

  private notifyEnded(run: EmulatedRun): void {
    const listener = this.onEnd.get(run);
    this.onEnd.delete(run);
    listener?.();
  }

  private fail(run: EmulatedRun, cause: string): void {
    if (run.status !== "running") return;
    run.status = "failed";
    run.error = cause;
    this.dropWaits(run);
    this.notifyEnded(run);
    this.emitInternal("inngest/function.failed", run, { error: { name: "Error", message: cause } });
  }

  /** Cancels a run, as the dashboard or the cancellation API does. */
  cancel(run: EmulatedRun): void {
    if (run.status !== "running") return;
    run.status = "cancelled";
    this.dropWaits(run);
    this.notifyEnded(run);
    this.emitInternal("inngest/function.cancelled", run, {});
    this.changed();
  }

  private dropWaits(run: EmulatedRun): void {
    for (const wait of this.waits.filter((candidate) => candidate.run === run)) {
      wait.cancelTimer();
      this.waits.splice(this.waits.indexOf(wait), 1);
    }
    for (const wait of this.signalWaits.filter((candidate) => candidate.run === run)) {
      wait.cancelTimer();
      this.signalWaits.splice(this.signalWaits.indexOf(wait), 1);
    }
  }

  private emitInternal(name: string, run: EmulatedRun, extra: Record<string, unknown>): void {
    const now = this.clock.now();
    this.acceptEvent({ name, id: ulid(now), ts: now, data: { function_id: run.fn.id, run_id: run.id, event: run.event, ...extra } });
  }

  /** Waits currently registered: what a decision event could match right now. */
  openWaits(): { runId: string; event: string; expression?: string; expiresAt: number }[] {
    return this.waits.map((wait) => ({ runId: wait.run.id, event: wait.event, ...(wait.expression ? { expression: wait.expression } : {}), expiresAt: wait.expiresAt }));
  }

  // ---- waiting in tests ----

  private changed(): void {
    for (const listener of this.changeListeners.splice(0)) listener();
  }

  /** Resolves once no executor call is in flight (timers on the clock do not count). */
  idle(): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleListeners.push(resolve));
  }

  /** Polls `check` on every change (and every 100 ms) until it returns a value, or fails after `timeoutMs`. */
  async until<T>(check: () => T | undefined | false, timeoutMs = 15_000, what = "condition"): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const value = check();
      if (value !== undefined && value !== false) return value;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`inngest emulator: no ${what} within ${timeoutMs} ms; runs: ${JSON.stringify(this.runs.map((run) => ({ id: run.id, status: run.status, error: run.error, ops: run.opNames() })))}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 100));
        this.changeListeners.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** The first accepted event (from index `from`) that `match` accepts. */
  waitForEvent(match: (event: EmulatedEvent) => boolean, timeoutMs = 15_000, from = 0): Promise<EmulatedEvent> {
    return this.until(() => this.events.slice(from).find((event) => !("deduplicated" in event && event.deduplicated) && match(event)), timeoutMs, "matching event");
  }

  /** The first run whose triggering event `match` accepts. */
  waitForRun(match: (run: EmulatedRun) => boolean, timeoutMs = 15_000): Promise<EmulatedRun> {
    return this.until(() => this.runs.find(match), timeoutMs, "matching run");
  }

  /** Resolves once `run` has a wait registered (or fails if it ends first). */
  async waitingRun(run: EmulatedRun, timeoutMs = 15_000): Promise<EmulatedRun> {
    await this.until(() => this.waits.some((wait) => wait.run === run) || run.status !== "running", timeoutMs, `wait of run ${run.id}`);
    if (run.status !== "running") throw new Error(`run ${run.id} ended (${run.status}: ${run.error ?? ""}) instead of waiting`);
    return run;
  }

  /** Resolves once `run` ended (completed, failed or cancelled). */
  ended(run: EmulatedRun, timeoutMs = 15_000): Promise<EmulatedRun> {
    return this.until(() => (run.status !== "running" ? run : undefined), timeoutMs, `end of run ${run.id}`);
  }
}

/** `step.run` ids as the SDK hashes them (SHA-1 of the id) — the keys of `steps`. */
export function hashStepId(id: string): string {
  return createHash("sha1").update(id).digest("hex");
}

/**
 * A wait's or sleep's timeout as the server reads it: an RFC 3339 time, or a duration (`1d`, `24h`, `1h30m`, `90s`).
 * Returns the absolute time in ms, or why it is rejected (unparseable, or more than 366 days away).
 */
export function parseTimeout(value: string, now: number): number | string {
  let at: number;
  if (/^\d{4}-\d{2}-\d{2}T/.test(value)) {
    at = Date.parse(value);
    if (Number.isNaN(at)) return `invalid timeout ${JSON.stringify(value)}`;
  } else {
    const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: DAY_MS, w: 7 * DAY_MS };
    const parts = [...value.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d|w)/g)];
    if (!parts.length || parts.map((part) => part[0]).join("") !== value) return `invalid timeout ${JSON.stringify(value)}`;
    at = now + parts.reduce((sum, part) => sum + Number(part[1]) * units[part[2]!]!, 0);
  }
  if (at - now > MAX_WAIT_MS) return `timeout ${JSON.stringify(value)} is more than 366 days away`;
  return at;
}

function evaluate(expression: string, context: Record<string, unknown>): unknown {
  try {
    return parseCel(expression)(context);
  } catch {
    return undefined;
  }
}

/** A trigger filter: true only if the expression evaluates to `true` (errors, e.g. missing fields, do not match). */
function evaluateBoolean(expression: string, context: Record<string, unknown>): boolean {
  return evaluate(expression, context) === true;
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function errorMessage(error: unknown): string {
  return typeof error === "object" && error !== null && "message" in error ? String((error as { message: unknown }).message) : JSON.stringify(error);
}

const CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/** A ULID, as Inngest's ids are. */
function ulid(ms: number): string {
  let time = "";
  for (let rest = ms, i = 0; i < 10; i++, rest = Math.floor(rest / 32)) time = CROCKFORD[rest % 32]! + time;
  return time + [...randomBytes(16)].map((byte) => CROCKFORD[byte % 32]).join("");
}
