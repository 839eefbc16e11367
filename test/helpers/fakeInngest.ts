import canonicalize from "canonicalize";
import { createHmac, randomUUID } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";

export const TEST_SIGNING_KEY = `signkey-test-${"5e".repeat(32)}`;
export const TEST_EVENT_KEY = "test_event_key_0123456789";

export interface CapturedEvent {
  name: string;
  id?: string;
  data: Record<string, unknown>;
  ts?: number;
}

/**
 * Stands in for Inngest's event API (`POST /e/<event key>`): records every event and its raw body, answers like
 * Inngest. `failNext` makes the next requests fail with 500 (an outage).
 */
export class FakeEventApi {
  readonly events: CapturedEvent[] = [];
  readonly raw: string[] = [];
  readonly keys: string[] = [];
  failNext = 0;
  /** Other requests (e.g. the connect handshake) get this status. */
  otherStatus = 503;
  private server!: Server;
  private listeners: (() => void)[] = [];

  async start(): Promise<string> {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (chunk: Buffer) => chunks.push(chunk));
      req.on("end", () => {
        const body = Buffer.concat(chunks).toString("utf8");
        const match = /^\/e\/([^/?]+)/.exec(req.url ?? "");
        if (req.method !== "POST" || !match) {
          res.writeHead(this.otherStatus, { "content-type": "application/json" }).end(JSON.stringify({ error: "not available in this fake" }));
          return;
        }
        if (this.failNext > 0) {
          this.failNext -= 1;
          res.writeHead(500, { "content-type": "application/json" }).end(JSON.stringify({ error: "simulated outage", status: 500 }));
          return;
        }
        this.keys.push(decodeURIComponent(match[1]!));
        this.raw.push(body);
        const parsed = JSON.parse(body) as CapturedEvent | CapturedEvent[];
        const list = Array.isArray(parsed) ? parsed : [parsed];
        this.events.push(...list);
        for (const listener of this.listeners.splice(0)) listener();
        res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ ids: list.map((event) => event.id ?? randomUUID()), status: 200 }));
      });
    });
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  /** Resolves with the first captured event (from index `from`) that `match` accepts. */
  async waitFor(match: (event: CapturedEvent) => boolean, timeoutMs = 10_000, from = 0): Promise<CapturedEvent> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.events.slice(from).find(match);
      if (found) return found;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no matching event within ${timeoutMs} ms; got ${JSON.stringify(this.events.map((event) => event.name))}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 200));
        this.listeners.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }
}

/** `x-inngest-signature` as Inngest computes it: HMAC-SHA256 of the canonical body + timestamp, key without prefix. */
export function signInngestBody(body: unknown, signingKey: string, at = new Date()): string {
  const ts = Math.floor(at.getTime() / 1000).toString();
  const key = signingKey.replace(/^signkey-[\w]+-/, "");
  const mac = createHmac("sha256", key).update(`${canonicalize(body) ?? ""}${ts}`).digest("hex");
  return `t=${ts}&s=${mac}`;
}

export interface Op {
  id: string;
  op: string;
  name?: string;
  displayName?: string;
  opts?: Record<string, unknown>;
  data?: unknown;
  error?: unknown;
}

export interface ExecutorResponse {
  status: number;
  body: unknown;
  text: string;
}

/**
 * Plays Inngest's executor against a served function over HTTP (the SDK's async protocol, version 2): calls the
 * function with the memoized steps so far, records what each step returned, runs planned steps one by one, and
 * stops at a `waitForEvent` until the test delivers an event (or `null` for a timeout).
 */
export class FakeExecutor {
  readonly steps: Record<string, { type: "data"; data: unknown } | { type: "error"; error: unknown }> = {};
  readonly stack: string[] = [];
  readonly responses: ExecutorResponse[] = [];
  readonly runId = `01RUN${randomUUID().replace(/-/g, "").slice(0, 20).toUpperCase()}`;
  waiting: Op | undefined;
  output: unknown;
  finished = false;

  constructor(
    private readonly options: { url: string; functionId: string; event: CapturedEvent; signingKey?: string; sign?: (body: unknown) => string | undefined },
  ) {}

  /** One raw call to the function, as the executor makes it. */
  async call(stepId = "step"): Promise<ExecutorResponse> {
    const event = { ...this.options.event, ts: this.options.event.ts ?? Date.now() };
    const body = { version: 2, event, events: [event], steps: this.steps, ctx: { run_id: this.runId, attempt: 0, stack: { stack: this.stack, current: this.stack.length } } };
    const signature = this.options.sign ? this.options.sign(body) : this.options.signingKey ? signInngestBody(body, this.options.signingKey) : undefined;
    const url = `${this.options.url}?fnId=${encodeURIComponent(this.options.functionId)}&stepId=${encodeURIComponent(stepId)}`;
    const res = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json", ...(signature !== undefined ? { "x-inngest-signature": signature } : {}) },
      body: JSON.stringify(body),
    });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      // not JSON
    }
    const response = { status: res.status, body: parsed, text };
    this.responses.push(response);
    return response;
  }

  private memo(op: Op): void {
    this.steps[op.id] = op.op === "StepError" || op.op === "StepFailed" ? { type: "error", error: op.error } : { type: "data", data: op.data ?? null };
    this.stack.push(op.id);
  }

  /** Runs until the function finishes (200), fails, or waits for an event. */
  async drive(): Promise<this> {
    for (let guard = 0; guard < 50; guard++) {
      const res = await this.call();
      if (res.status === 200) {
        this.finished = true;
        this.output = res.body;
        return this;
      }
      if (res.status !== 206) throw new Error(`executor call failed: HTTP ${res.status} ${res.text}`);
      const ops = res.body as Op[];
      const planned: Op[] = [];
      for (const op of ops) {
        if (op.op === "StepRun" || op.op === "StepError" || op.op === "StepFailed") this.memo(op);
        else if (op.op === "StepPlanned") planned.push(op);
        else if (op.op === "WaitForEvent") this.waiting = op;
        else throw new Error(`unexpected op ${op.op}`);
      }
      for (const op of planned) {
        const ran = await this.call(op.id);
        if (ran.status !== 206) throw new Error(`planned step ${op.displayName} failed: HTTP ${ran.status} ${ran.text}`);
        for (const done of ran.body as Op[]) this.memo(done);
      }
      if (this.waiting) return this;
    }
    throw new Error("the function did not settle within 50 executor calls");
  }

  /** Delivers the awaited event (`null`: the wait timed out) and drives on. */
  async resume(event: CapturedEvent | null): Promise<this> {
    const wait = this.waiting;
    if (!wait) throw new Error("the run is not waiting");
    this.waiting = undefined;
    this.steps[wait.id] = { type: "data", data: event ? { ...event, id: event.id ?? randomUUID(), ts: event.ts ?? Date.now() } : null };
    this.stack.push(wait.id);
    return this.drive();
  }

  /** Every op (by display name) the function reported so far. */
  opNames(): string[] {
    return this.responses.flatMap((res) => (Array.isArray(res.body) ? (res.body as Op[]).map((op) => `${op.op}:${op.displayName ?? op.name}`) : []));
  }
}
