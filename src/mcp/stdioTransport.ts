import { spawn, type ChildProcess } from "node:child_process";
import type { Readable, Writable } from "node:stream";
import { deserializeMessage, serializeMessage } from "@modelcontextprotocol/sdk/shared/stdio.js";
import type { Transport } from "@modelcontextprotocol/sdk/shared/transport.js";
import type { JSONRPCMessage } from "@modelcontextprotocol/sdk/types.js";

/** Largest single JSON-RPC message accepted on a stdio link (the SDK's own cap is 10 MiB). */
export const MAX_MESSAGE_BYTES = 64 * 1024 * 1024;

/**
 * Newline-delimited JSON-RPC over a pair of streams. Unlike the SDK's stdio transports it keeps incoming chunks in
 * a list (no quadratic re-copying of a 64 MiB message), reports end-of-input as a close (the SDK ignores stdin EOF),
 * and drops — rather than dies on — a message over the size cap.
 */
export class StreamTransport implements Transport {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: (message: JSONRPCMessage) => void;
  private chunks: Buffer[] = [];
  private buffered = 0;
  private discarding = false;
  private closed = false;
  private readonly input: Readable;
  private readonly output: Writable;
  private readonly maxMessageBytes: number;

  constructor(input: Readable, output: Writable, options: { maxMessageBytes?: number } = {}) {
    this.input = input;
    this.output = output;
    this.maxMessageBytes = options.maxMessageBytes ?? MAX_MESSAGE_BYTES;
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
        this.discarding = false;
        continue;
      }
      const line = this.chunks.length ? Buffer.concat([...this.chunks, piece]) : piece;
      this.chunks = [];
      this.buffered = 0;
      this.deliver(line);
    }
    if (start < chunk.length && !this.discarding) {
      this.chunks.push(chunk.subarray(start));
      this.buffered += chunk.length - start;
      if (this.buffered > this.maxMessageBytes) {
        this.chunks = [];
        this.buffered = 0;
        this.discarding = true;
        this.onerror?.(new Error(`dropped an incoming message larger than ${this.maxMessageBytes} bytes`));
      }
    }
  };

  private deliver(line: Buffer): void {
    const text = line.toString("utf8").replace(/\r$/, "");
    if (text.trim() === "") return;
    let message: JSONRPCMessage;
    try {
      message = deserializeMessage(text);
    } catch (error) {
      this.onerror?.(new Error(`ignored a line that is not a JSON-RPC message: ${(error as Error).message.slice(0, 200)}`));
      return;
    }
    this.onmessage?.(message);
  }

  private readonly onEnd = (): void => {
    void this.close();
  };

  private readonly onStreamError = (error: Error): void => {
    this.onerror?.(error);
  };

  send(message: JSONRPCMessage): Promise<void> {
    if (this.closed) return Promise.reject(new Error("transport is closed"));
    return new Promise((resolve) => {
      if (this.output.write(serializeMessage(message))) resolve();
      else this.output.once("drain", resolve);
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.input.off("data", this.onData);
    this.input.off("end", this.onEnd);
    this.input.off("close", this.onEnd);
    this.chunks = [];
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
        const stream = new StreamTransport(child.stdout!, child.stdin!);
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
