import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { rememberArgumentTexts } from "../argumentTexts.js";
import { canonicalJson, digestCall } from "../ledger/record.js";
import { createSelfProtection, type SelfProtectionHit, type SelfProtectionOptions } from "./selfProtection.js";

/** The self-protection options a worker thread can be given: plain data, no functions; roots come with each call. */
export type WorkerSelfProtectionOptions = Omit<SelfProtectionOptions, "cwds" | "realpath" | "isSymlink">;

/** The tool a call goes to: part of its digest. */
export interface CallTarget {
  upstream: string;
  tool: string;
}

/** What the gateway needs from a call's arguments before it records and forwards them. */
export interface PreparedArguments {
  /** Self-protection's verdict (undefined: nothing of the gateway's is reached). */
  hit: SelfProtectionHit | undefined;
  /** UTF-8 of the canonical text and of `JSON.stringify(args)` (the same buffer when they are equal); moved, not copied, from the worker. */
  canonicalBytes: Uint8Array;
  jsonBytes: Uint8Array;
  /** The call digest (`digestCall`). */
  digest: string;
}

/**
 * The work itself, the same on the worker and in-thread: self-protection's verdict, the arguments' two JSON texts and
 * the call digest (computed around the canonical text, not by serialising the arguments again).
 */
export function prepareArgumentsNow(check: (args: Record<string, unknown>) => SelfProtectionHit | undefined, args: Record<string, unknown>, target: CallTarget): PreparedArguments {
  const hit = check(args);
  const canonical = canonicalJson(args) ?? "{}";
  const json = JSON.stringify(args);
  const canonicalBytes = Buffer.from(canonical, "utf8");
  const jsonBytes = json === canonical ? canonicalBytes : Buffer.from(json, "utf8");
  rememberArgumentTexts(args, { canonicalBytes, jsonBytes });
  return { hit, canonicalBytes, jsonBytes, digest: digestCall(target.upstream, target.tool, args) };
}

interface WorkerRequest {
  id: number;
  args: Record<string, unknown>;
  target: CallTarget;
  cwds: string[];
}
type WorkerReply = { id: number; prepared: PreparedArguments } | { id: number; error: string };

/** The worker died while it held a request: those arguments may be what killed it (an exhausted heap). */
class WorkerDied extends Error {}

/**
 * The verdict for arguments the worker died on: held as unchecked. Checking them again on the main thread could
 * exhaust the gateway's own heap and take every other call with it.
 */
const UNCHECKED: SelfProtectionHit = {
  at: "$",
  value: "the whole arguments",
  target: "something not known: the argument worker stopped while checking them (not checked again on the gateway's own thread)",
};

/** Marks the worker thread started by `ArgumentPreparer`, so loading its file anywhere else does nothing. */
export const WORKER_MARK = "atlas-gateway argument worker";

/**
 * The worker thread's side: answers each request with `prepareArgumentsNow`, using a self-protection check built
 * from the same options as the main thread's.
 */
export function serveArgumentRequests(port: { on(event: "message", listener: (request: WorkerRequest) => void): void; postMessage(reply: WorkerReply, transfer?: ArrayBuffer[]): void }, options: WorkerSelfProtectionOptions): void {
  let cwds: string[] = [];
  const check = createSelfProtection({ ...options, cwds: () => cwds });
  port.on("message", (request) => {
    try {
      cwds = request.cwds;
      const prepared = prepareArgumentsNow(check, request.args, request.target);
      // the encoded texts move to the main thread without a copy when they own their memory (Buffer.from of a large text does)
      const movable = new Set<ArrayBuffer>();
      for (const bytes of [prepared.canonicalBytes, prepared.jsonBytes]) {
        if (bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength && bytes.buffer instanceof ArrayBuffer) movable.add(bytes.buffer);
      }
      port.postMessage({ id: request.id, prepared }, [...movable]);
    } catch (error) {
      port.postMessage({ id: request.id, error: (error as Error).message });
    }
  });
}

/** Where the built worker entry lies: next to the bundle that holds this module (`dist/`). */
const DEFAULT_WORKER_URL = new URL("./argument-worker.js", import.meta.url);

/**
 * Prepares large tool-call arguments off the event loop (issue 10: a small call sent during a 20 MiB call must not
 * wait for that call's scans and serialisations). One worker thread, started at the first large call, runs
 * self-protection and both serialisations; the results are remembered by arguments object — the verdict here, the
 * texts in `argumentTexts.ts` — so the evaluator, the ledger and the upstream transport reuse them.
 *
 * The verdict never depends on the thread: the worker runs the same check built from the same options, and if it
 * cannot start or fails, the work is done in-thread (slower, same answer). `selfProtection` is what the risk
 * evaluator calls: the prepared verdict for these arguments, else a check made now.
 */
export class ArgumentPreparer {
  private worker: Worker | undefined;
  /** Set once the worker could not be started or died: everything runs in-thread from then on. */
  private unavailable: string | undefined;
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (prepared: PreparedArguments) => void; reject: (error: Error) => void }>();
  private readonly verdicts = new WeakMap<object, SelfProtectionHit | undefined>();
  private readonly check: (args: Record<string, unknown>) => SelfProtectionHit | undefined;
  private readonly options: WorkerSelfProtectionOptions;
  private readonly cwds: () => string[];
  private readonly workerUrl: URL;
  private readonly log: (line: string) => void;

  constructor(init: {
    options: WorkerSelfProtectionOptions;
    /** Bases for relative paths, read at each call (MCP roots change). */
    cwds: () => string[];
    /** The in-thread check, built from the same options and bases. */
    check: (args: Record<string, unknown>) => SelfProtectionHit | undefined;
    /** The worker entry; default `argument-worker.js` next to this bundle. Missing: in-thread. */
    workerUrl?: URL;
    log?: (line: string) => void;
  }) {
    this.options = init.options;
    this.cwds = init.cwds;
    this.check = init.check;
    this.workerUrl = init.workerUrl ?? DEFAULT_WORKER_URL;
    this.log = init.log ?? (() => {});
  }

  /** Self-protection for the risk evaluator: the verdict prepared for this very object, else checked now. */
  readonly selfProtection = (args: Record<string, unknown>): SelfProtectionHit | undefined => {
    return this.verdicts.has(args) ? this.verdicts.get(args) : this.check(args);
  };

  /**
   * Prepares `args` (which must not change afterwards) on the worker thread. Never rejects: whatever the worker
   * cannot do is done in-thread, so the caller's answer is the same either way — except for arguments the worker
   * died on, which self-protection reports as unchecked (the call is held, not run unreviewed).
   */
  async prepare(args: Record<string, unknown>, target: CallTarget): Promise<void> {
    if (this.verdicts.has(args)) return;
    let prepared: PreparedArguments;
    try {
      prepared = await this.onWorker(args, target);
    } catch (error) {
      if (error instanceof WorkerDied) {
        this.verdicts.set(args, UNCHECKED);
        return;
      }
      try {
        prepared = prepareArgumentsNow(this.check, args, target);
      } catch {
        return; // nothing remembered: the evaluator and the ledger do the work themselves, and fail as they would
      }
    }
    this.verdicts.set(args, prepared.hit);
    rememberArgumentTexts(args, { canonicalBytes: prepared.canonicalBytes, jsonBytes: prepared.jsonBytes, call: { ...target, digest: prepared.digest } });
  }

  /** Stops the worker thread; calls still waiting on it are prepared in-thread. */
  async close(): Promise<void> {
    const worker = this.worker;
    this.worker = undefined;
    this.unavailable = "closed";
    this.failPending(new Error("the argument worker was stopped"));
    await worker?.terminate();
  }

  private onWorker(args: Record<string, unknown>, target: CallTarget): Promise<PreparedArguments> {
    const worker = this.startWorker();
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      try {
        worker.postMessage({ id, args, target, cwds: this.cwds() } satisfies WorkerRequest);
      } catch (error) {
        this.pending.delete(id);
        reject(error as Error);
      }
      // only a call waiting on it keeps the process alive for the worker
      worker.ref();
    });
  }

  private startWorker(): Worker {
    if (this.worker) return this.worker;
    if (this.unavailable) throw new Error(this.unavailable);
    const file = fileURLToPath(this.workerUrl);
    if (!existsSync(file)) {
      this.unavailable = `${file} is missing`;
      this.log(`argument worker unavailable (${this.unavailable}); large arguments are prepared in-thread`);
      throw new Error(this.unavailable);
    }
    const worker = new Worker(this.workerUrl, { workerData: { mark: WORKER_MARK, options: this.options } });
    worker.unref();
    worker.on("message", (reply: WorkerReply) => {
      const waiting = this.pending.get(reply.id);
      if (!waiting) return;
      this.pending.delete(reply.id);
      if (this.pending.size === 0) worker.unref();
      if ("error" in reply) waiting.reject(new Error(reply.error));
      else waiting.resolve(reply.prepared);
    });
    const fail = (error: Error) => {
      if (this.worker !== worker) return;
      this.worker = undefined;
      this.unavailable = error.message;
      this.log(`argument worker unavailable (${error.message}); large arguments are prepared in-thread`);
      this.failPending(new WorkerDied(error.message));
    };
    worker.on("error", fail);
    worker.on("exit", (code) => fail(new Error(`the argument worker exited (code ${code})`)));
    this.worker = worker;
    return worker;
  }

  private failPending(error: Error): void {
    const waiting = [...this.pending.values()];
    this.pending.clear();
    for (const { reject } of waiting) reject(error);
  }
}
