import { spawn, type ChildProcess } from "node:child_process";
import { inject } from "vitest";

/**
 * The CLI every end-to-end test drives: `bin/atlas-gateway.js` of the packed tarball installed into an empty project
 * (test/setup/installedPackage.ts), i.e. what `npx atlas-gateway` runs for a user, not this checkout's files.
 */
export const BIN = inject("atlasBin");

interface JsonRpcResponse {
  jsonrpc: "2.0";
  id: number | null;
  method?: string;
  result?: Record<string, unknown>;
  error?: { code: number; message: string };
}

/**
 * The built CLI over raw stdio: every stdout line is parsed as JSON-RPC, and any line that is not is kept in
 * `nonProtocol` (stdout belongs to the MCP protocol; a stray log line there breaks clients).
 */
export class RawMcpProcess {
  readonly child: ChildProcess;
  readonly nonProtocol: string[] = [];
  /** Protocol messages that answer no request of ours (notifications, errors with id null). */
  readonly unmatched: JsonRpcResponse[] = [];
  stderr = "";
  private buffer = "";
  private nextId = 1;
  private readonly waiting = new Map<number, (response: JsonRpcResponse) => void>();
  private readonly failures = new Map<number, (error: Error) => void>();
  readonly exited: Promise<number | null>;

  constructor(args: string[], env: NodeJS.ProcessEnv, extraNodeArgs: string[] = []) {
    this.child = spawn(process.execPath, [...extraNodeArgs, BIN, ...args], { env, stdio: ["pipe", "pipe", "pipe"] });
    this.exited = new Promise((resolve) =>
      this.child.once("exit", (code) => {
        for (const fail of this.failures.values()) fail(new Error(`the gateway exited (code ${code}) before answering; stderr:\n${this.stderr}`));
        resolve(code);
      }),
    );
    this.child.stderr!.setEncoding("utf8").on("data", (chunk: string) => {
      this.stderr += chunk;
    });
    this.child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
      this.buffer += chunk;
      for (let nl = this.buffer.indexOf("\n"); nl !== -1; nl = this.buffer.indexOf("\n")) {
        const line = this.buffer.slice(0, nl);
        this.buffer = this.buffer.slice(nl + 1);
        let message: JsonRpcResponse | undefined;
        try {
          message = JSON.parse(line) as JsonRpcResponse;
        } catch {
          message = undefined;
        }
        if (!message || message.jsonrpc !== "2.0") {
          this.nonProtocol.push(line);
          continue;
        }
        if (typeof message.id === "number" && this.waiting.has(message.id)) this.waiting.get(message.id)!(message);
        else this.unmatched.push(message);
      }
    });
  }

  request(method: string, params: Record<string, unknown> = {}, timeoutMs = 20_000): Promise<JsonRpcResponse> {
    return this.requestJson(method, JSON.stringify(params), timeoutMs);
  }

  /** A request whose params are already JSON text (values too deep for JSON.stringify, malformed input). */
  requestJson(method: string, paramsJson: string, timeoutMs = 20_000): Promise<JsonRpcResponse> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no answer to ${method} within ${timeoutMs} ms; stderr:\n${this.stderr}`)), timeoutMs);
      this.waiting.set(id, (response) => {
        clearTimeout(timer);
        this.waiting.delete(id);
        this.failures.delete(id);
        resolve(response);
      });
      this.failures.set(id, (error) => {
        clearTimeout(timer);
        reject(error);
      });
      this.child.stdin!.write(`{"jsonrpc":"2.0","id":${id},"method":${JSON.stringify(method)},"params":${paramsJson}}\n`);
    });
  }

  notify(method: string, params: Record<string, unknown> = {}): void {
    this.child.stdin!.write(`${JSON.stringify({ jsonrpc: "2.0", method, params })}\n`);
  }

  async initialize(): Promise<JsonRpcResponse> {
    const response = await this.request("initialize", { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "e2e-agent", version: "1.0.0" } });
    this.notify("notifications/initialized");
    return response;
  }

  callTool(name: string, args: Record<string, unknown>, timeoutMs?: number): Promise<JsonRpcResponse> {
    return this.request("tools/call", { name, arguments: args }, timeoutMs);
  }

  /** Closes stdin (the client went away) and resolves with the exit code. */
  async close(): Promise<number | null> {
    this.child.stdin!.end();
    const timer = setTimeout(() => this.child.kill("SIGKILL"), 15_000);
    const code = await this.exited;
    clearTimeout(timer);
    return code;
  }
}
