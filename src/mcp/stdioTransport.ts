import { spawn, type ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import { StringDecoder } from "node:string_decoder";
import type { Readable, Writable } from "node:stream";
import { serializeMessage } from "@modelcontextprotocol/sdk/shared/stdio.js";
import type { Transport } from "@modelcontextprotocol/sdk/shared/transport.js";
import { ErrorCode, JSONRPCMessageSchema, type JSONRPCMessage } from "@modelcontextprotocol/sdk/types.js";
import { knownArgumentTexts } from "../argumentTexts.js";

/** Largest single JSON-RPC message accepted on a stdio link by default (the SDK's own cap is 10 MiB). */
export const MAX_MESSAGE_BYTES = 64 * 1024 * 1024;

/** Every error text the gateway itself puts in a JSON-RPC error starts with this (issue 10: one prefix). */
export const ERROR_PREFIX = "atlas-gateway: ";

/** Bytes kept from each end of an oversized message: JSON-RPC's id and method sit at one end or the other. */
const EDGE_BYTES = 4096;

function describeBytes(bytes: number): string {
  return bytes % (1024 * 1024) === 0 ? `${bytes / (1024 * 1024)} MiB` : `${bytes} byte`;
}

/**
 * The id and method of a message known only by its edges. Only top-level members count: in the head, those before
 * the first nested object (`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{…`); in the tail, an id closing
 * the message (`…},"jsonrpc":"2.0","id":7}`, the SDK's order for responses).
 */
export function envelopeOf(head: string, tail: string): { id?: string | number; method?: string } {
  const top = /^\s*\{[^{]*/.exec(head)?.[0] ?? "";
  const token = (text: string | undefined) => (text === undefined ? undefined : (JSON.parse(text) as string | number));
  const idText = /"id"\s*:\s*(-?\d+|"(?:[^"\\]|\\.)*")/.exec(top)?.[1] ?? /"id"\s*:\s*(-?\d+|"(?:[^"\\]|\\.)*")\s*\}\s*$/.exec(tail)?.[1];
  const method = /"method"\s*:\s*"((?:[^"\\]|\\.)*)"/.exec(top)?.[1] ?? /"method"\s*:\s*"((?:[^"\\]|\\.)*)"\s*\}\s*$/.exec(tail)?.[1];
  return { ...(idText !== undefined ? { id: token(idText)! } : {}), ...(method !== undefined ? { method } : {}) };
}

/** Stands for a request's arguments while the rest of it is serialised: random, so no agent can write it itself. */
const ARGUMENTS_TOKEN = `atlas-arguments-${randomUUID()}`;
const QUOTED_TOKEN = JSON.stringify(ARGUMENTS_TOKEN);

/**
 * `serializeMessage`, except that a request whose arguments' JSON is already encoded (large arguments, prepared off
 * the event loop: `argumentTexts.ts`) comes as three pieces — the message up to the arguments, their bytes as they
 * are, the rest — so a 20 MiB argument is neither serialised nor encoded again (issue 10).
 */
export function serializeWithKnownArguments(message: JSONRPCMessage): string | [string, Uint8Array, string] {
  const params = (message as { params?: Record<string, unknown> }).params;
  const known = knownArgumentTexts(params?.arguments);
  if (!known) return serializeMessage(message);
  const text = JSON.stringify({ ...message, params: { ...params, arguments: ARGUMENTS_TOKEN } });
  const at = text.indexOf(QUOTED_TOKEN);
  return [text.slice(0, at), known.jsonBytes, `${text.slice(at + QUOTED_TOKEN.length)}\n`];
}

/**
 * Newline-delimited JSON-RPC over a pair of streams. Unlike the SDK's stdio transports it decodes incoming chunks as
 * they arrive and keeps them in a list (no quadratic re-copying of a 64 MiB message, and no decoding of it all at
 * once when its newline comes), reports end-of-input as a close (the SDK ignores stdin EOF),
 * and refuses — rather than dies on or silently drops — a message over the size cap (see `refuseOversized`).
 */
export class StreamTransport implements Transport {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: (message: JSONRPCMessage) => void;
  /** The current line so far, decoded as its chunks arrive (no copy of the whole message to decode at its end). */
  private texts: string[] = [];
  private readonly decoder = new StringDecoder("utf8");
  /** Bytes of the current line so far. */
  private buffered = 0;
  /** While a message over the cap streams past: its first and last bytes, enough to find its id and method. */
  private discarding: { head: string; tail: string; bytes: number } | undefined;
  private closed = false;
  private readonly input: Readable;
  private readonly output: Writable;
  private readonly maxMessageBytes: number;
  private readonly replyToMalformed: boolean;

  /**
   * `replyToMalformed`: answer a line that is not JSON with a JSON-RPC parse error (-32700), as a server must; off
   * for an upstream's stdout, where a stray log line is better ignored than answered.
   */
  constructor(input: Readable, output: Writable, options: { maxMessageBytes?: number; replyToMalformed?: boolean } = {}) {
    this.input = input;
    this.output = output;
    this.maxMessageBytes = options.maxMessageBytes ?? MAX_MESSAGE_BYTES;
    this.replyToMalformed = options.replyToMalformed ?? false;
  }

  async start(): Promise<void> {
    this.input.on("data", this.onData);
    this.input.once("end", this.onEnd);
    this.input.once("close", this.onEnd);
    this.input.on("error", this.onStreamError);
    this.output.on("error", this.onStreamError);
  }

  private readonly onData = (chunk: Buffer): void => {
    let start = 0;
    for (let nl = chunk.indexOf(10); nl !== -1; nl = chunk.indexOf(10, start)) {
      const piece = chunk.subarray(start, nl);
      start = nl + 1;
      if (this.discarding) {
        this.keepEdges(piece);
        this.refuseOversized();
        continue;
      }
      if (this.buffered + piece.length > this.maxMessageBytes) {
        this.startDiscarding(piece);
        this.refuseOversized();
        continue;
      }
      this.deliver(this.takeLine(piece));
    }
    if (start < chunk.length) {
      const rest = chunk.subarray(start);
      if (this.discarding) this.keepEdges(rest);
      else if (this.buffered + rest.length > this.maxMessageBytes) this.startDiscarding(rest);
      else {
        this.texts.push(this.decoder.write(rest));
        this.buffered += rest.length;
      }
    }
  };

  /** The current line, ending with `last`, as text (a sequence cut short by the newline decodes as U+FFFD, as `Buffer#toString` does). */
  private takeLine(last: Buffer): string {
    const end = this.decoder.write(last) + this.decoder.end();
    const text = this.texts.length ? this.texts.join("") + end : end;
    this.texts = [];
    this.buffered = 0;
    return text;
  }

  private startDiscarding(piece: Buffer): void {
    const bytes = this.buffered + piece.length;
    const held = this.takeLine(piece);
    this.discarding = { head: held.slice(0, EDGE_BYTES), tail: held.slice(-EDGE_BYTES), bytes };
  }

  private keepEdges(piece: Buffer): void {
    const discarding = this.discarding!;
    discarding.bytes += piece.length;
    discarding.tail = (discarding.tail + piece.subarray(Math.max(0, piece.length - EDGE_BYTES)).toString("utf8")).slice(-EDGE_BYTES);
  }

  /**
   * A message over the cap has been read past. A request is answered with a JSON-RPC error naming the limit; a
   * response becomes that error for whoever waits on it (the proxy's pending call fails at once instead of timing out).
   */
  private refuseOversized(): void {
    const { head, tail, bytes } = this.discarding!;
    this.discarding = undefined;
    const { id, method } = envelopeOf(head, tail);
    const message = `${ERROR_PREFIX}a message of ${bytes} bytes exceeds the ${describeBytes(this.maxMessageBytes)} limit (maxMessageBytes = ${this.maxMessageBytes})`;
    this.onerror?.(new Error(`refused ${method ? `a ${method} request` : "a message"} of ${bytes} bytes (over maxMessageBytes = ${this.maxMessageBytes})`));
    if (id === undefined) return;
    const error = { jsonrpc: "2.0" as const, id, error: { code: ErrorCode.InvalidRequest, message } };
    if (method) void this.send(error).catch(() => {});
    else this.onmessage?.(error);
  }

  private deliver(line: string): void {
    const text = line.endsWith("\r") ? line.slice(0, -1) : line;
    if (text.trim() === "") return;
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (error) {
      this.onerror?.(new Error(`ignored a line that is not JSON: ${(error as Error).message.slice(0, 200)}`));
      if (this.replyToMalformed) void this.send({ jsonrpc: "2.0", id: null, error: { code: ErrorCode.ParseError, message: `${ERROR_PREFIX}parse error: ${(error as Error).message.slice(0, 200)}` } } as unknown as JSONRPCMessage).catch(() => {});
      return;
    }
    const checked = JSONRPCMessageSchema.safeParse(parsed);
    if (!checked.success) {
      this.onerror?.(new Error(`ignored a line that is not a JSON-RPC message: ${checked.error.message.slice(0, 200)}`));
      const id = (parsed as { id?: unknown } | null)?.id;
      if (this.replyToMalformed && (typeof id === "string" || typeof id === "number") && (parsed as { method?: unknown }).method !== undefined) {
        void this.send({ jsonrpc: "2.0", id, error: { code: ErrorCode.InvalidRequest, message: `${ERROR_PREFIX}invalid JSON-RPC request` } }).catch(() => {});
      }
      return;
    }
    this.onmessage?.(checked.data);
  }

  private readonly onEnd = (): void => {
    void this.close();
  };

  private readonly onStreamError = (error: Error): void => {
    this.onerror?.(error);
  };

  send(message: JSONRPCMessage): Promise<void> {
    if (this.closed) return Promise.reject(new Error("transport is closed"));
    const serialized = serializeWithKnownArguments(message);
    return new Promise((resolve) => {
      let flowing: boolean;
      if (typeof serialized === "string") flowing = this.output.write(serialized);
      else {
        // one message: its pieces leave together, and nothing else is written between them (all writes are synchronous here)
        this.output.cork();
        flowing = serialized.map((piece) => this.output.write(piece)).every(Boolean);
        this.output.uncork();
      }
      if (flowing) resolve();
      else this.output.once("drain", resolve);
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.input.off("data", this.onData);
    this.input.off("end", this.onEnd);
    this.input.off("close", this.onEnd);
    this.texts = [];
    this.onclose?.();
  }
}

export interface SpawnOptions {
  command: string;
  args: string[];
  env: NodeJS.ProcessEnv;
  cwd?: string;
  /** Each line the child writes to stderr. */
  onStderr?: (line: string) => void;
  maxMessageBytes?: number;
}

/**
 * A stdio MCP client transport that spawns the server in its own process group, so closing it also ends the
 * grandchildren an `npx` wrapper leaves behind, and that inherits the gateway's whole environment.
 */
export class ChildProcessTransport implements Transport {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: (message: JSONRPCMessage) => void;
  private child: ChildProcess | undefined;
  private stream: StreamTransport | undefined;
  private readonly options: SpawnOptions;
  private exited = false;

  constructor(options: SpawnOptions) {
    this.options = options;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  start(): Promise<void> {
    const detached = process.platform !== "win32";
    return new Promise((resolve, reject) => {
      const child = spawn(this.options.command, this.options.args, {
        env: this.options.env,
        ...(this.options.cwd ? { cwd: this.options.cwd } : {}),
        stdio: ["pipe", "pipe", "pipe"],
        detached,
        windowsHide: true,
      });
      this.child = child;
      child.once("error", (error) => {
        this.exited = true;
        reject(error);
        this.onerror?.(error);
      });
      child.once("spawn", () => {
        liveGroups.add(this);
        const stream = new StreamTransport(child.stdout!, child.stdin!, this.options.maxMessageBytes ? { maxMessageBytes: this.options.maxMessageBytes } : {});
        stream.onmessage = (message) => this.onmessage?.(message);
        stream.onerror = (error) => this.onerror?.(error);
        this.stream = stream;
        void stream.start();
        resolve();
      });
      child.once("exit", () => {
        this.exited = true;
        liveGroups.delete(this);
        this.killGroup("SIGTERM");
      });
      child.once("close", () => {
        this.onclose?.();
      });
      let carry = "";
      child.stderr!.setEncoding("utf8");
      child.stderr!.on("data", (text: string) => {
        const lines = (carry + text).split("\n");
        carry = lines.pop() ?? "";
        for (const line of lines) this.options.onStderr?.(line);
      });
      child.stderr!.on("end", () => {
        if (carry) this.options.onStderr?.(carry);
      });
    });
  }

  send(message: JSONRPCMessage): Promise<void> {
    if (!this.stream) return Promise.reject(new Error("not connected"));
    return this.stream.send(message);
  }

  /** Ends stdin (a well-behaved server exits), then SIGTERM and finally SIGKILL to the whole process group. */
  async close(): Promise<void> {
    const child = this.child;
    if (!child) return;
    this.child = undefined;
    const closed = new Promise<void>((resolve) => {
      if (this.exited) resolve();
      else child.once("exit", () => resolve());
    });
    const within = (ms: number) => Promise.race([closed.then(() => true), new Promise<boolean>((resolve) => setTimeout(() => resolve(false), ms).unref())]);
    child.stdin?.end();
    if (!(await within(1000))) {
      this.killGroup("SIGTERM", child);
      if (!(await within(2000))) this.killGroup("SIGKILL", child);
    }
    this.killGroup("SIGKILL", child);
    liveGroups.delete(this);
    await this.stream?.close();
  }

  /** Signals the child's process group (its npx grandchildren included); tolerant of an already-gone group. */
  killGroup(signal: NodeJS.Signals, child = this.child): void {
    const pid = child?.pid;
    if (!pid) return;
    try {
      if (process.platform === "win32") child.kill(signal);
      else process.kill(-pid, signal);
    } catch {
      // the group has already exited
    }
  }
}

/** Children still running: killed synchronously if the gateway exits without a clean close. */
const liveGroups = new Set<ChildProcessTransport>();
process.once("exit", () => {
  for (const transport of liveGroups) transport.killGroup("SIGKILL");
});
