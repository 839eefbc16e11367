import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import type { Transport } from "@modelcontextprotocol/sdk/shared/transport.js";
import { CallToolResultSchema, ToolListChangedNotificationSchema, type CallToolResult, type Tool } from "@modelcontextprotocol/sdk/types.js";
import * as z from "zod";
import type { UpstreamConfig } from "../config.js";
import type { ExecuteOptions } from "../governance/engine.js";
import { ChildProcessTransport } from "./stdioTransport.js";
import { exposedToolName } from "./toolNames.js";

export { exposedToolName };

/** Names the gateway keeps for its own tools. */
export const RESERVED_TOOL_NAMES = new Set(["atlas_status"]);

/** A tool as exposed to the agent, with where it really lives. */
export interface CatalogueEntry {
  name: string;
  upstream: string;
  tool: string;
  /** The upstream's definition, untouched but for `name`. */
  definition: Tool;
  builtinScore?: { score: number; reason: string };
}

/** How to reach one upstream: a config entry, or an in-process transport (the demo tools, tests). */
export type UpstreamSource =
  | { name: string; config: UpstreamConfig }
  | { name: string; connect: () => Promise<Transport> | Transport; builtinScores?: Record<string, { score: number; reason: string }> };

export interface UpstreamSetOptions {
  env: NodeJS.ProcessEnv;
  log: (line: string) => void;
  toolTimeoutMs: number;
  startupTimeoutMs: number;
  version: string;
  /** Called when an upstream's tool list changed after start-up. */
  onToolsChanged?: () => void;
}

const looseList = z.looseObject({ tools: z.array(z.unknown()), nextCursor: z.string().optional() });
const looseTool = z.looseObject({
  name: z.string().min(1),
  inputSchema: z.looseObject({ type: z.literal("object") }),
  annotations: z.looseObject({}).optional(),
  outputSchema: z.looseObject({}).optional(),
});

interface Connected {
  name: string;
  client: Client;
  tools: Tool[];
  builtinScores: Record<string, { score: number; reason: string }> | undefined;
}

/**
 * The upstream MCP servers. They start in parallel; `ready` settles when every one has listed its tools or failed
 * (bounded by the start-up timeout). One failing server or malformed tool is reported and skipped, never fatal.
 */
export class UpstreamSet {
  readonly ready: Promise<void>;
  private readonly connected = new Map<string, Connected>();
  private readonly failures = new Map<string, string>();
  private catalogueCache: CatalogueEntry[] | undefined;
  private byName = new Map<string, CatalogueEntry>();
  private readonly order: string[];
  private readonly options: UpstreamSetOptions;
  private closed = false;

  constructor(sources: UpstreamSource[], options: UpstreamSetOptions) {
    this.options = options;
    this.order = sources.map((source) => source.name);
    const attempts = sources.map((source) => this.start(source));
    const all = Promise.all(attempts).then(() => undefined);
    this.ready = Promise.race([
      all,
      new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          const waiting = this.order.filter((name) => !this.connected.has(name) && !this.failures.has(name));
          if (waiting.length) options.log(`upstream(s) ${waiting.join(", ")} not ready after ${options.startupTimeoutMs} ms; listing the tools of the others`);
          resolve();
        }, options.startupTimeoutMs);
        timer.unref();
        void all.then(() => clearTimeout(timer));
      }),
    ]);
  }

  private async start(source: UpstreamSource): Promise<void> {
    const started = performance.now();
    try {
      const transport = "config" in source ? await this.transportFor(source.name, source.config) : await source.connect();
      const client = new Client({ name: "atlas-gateway", version: this.options.version }, { capabilities: {} });
      await client.connect(transport, { timeout: this.options.startupTimeoutMs });
      const tools = await this.listTools(source.name, client);
      if (this.closed) {
        await client.close();
        return;
      }
      this.connected.set(source.name, { name: source.name, client, tools, builtinScores: "connect" in source ? source.builtinScores : undefined });
      this.catalogueCache = undefined;
      client.setNotificationHandler(ToolListChangedNotificationSchema, async () => {
        const entry = this.connected.get(source.name);
        if (!entry) return;
        try {
          entry.tools = await this.listTools(source.name, client);
          this.catalogueCache = undefined;
          this.options.onToolsChanged?.();
        } catch (error) {
          this.options.log(`upstream ${source.name}: could not refresh its tools: ${(error as Error).message}`);
        }
      });
      client.onclose = () => {
        if (this.closed) return;
        this.connected.delete(source.name);
        this.failures.set(source.name, "disconnected");
        this.catalogueCache = undefined;
        this.options.log(`upstream ${source.name}: disconnected; its tools are no longer offered`);
        this.options.onToolsChanged?.();
      };
      this.options.log(`upstream ${source.name}: ready with ${tools.length} tool(s) in ${Math.round(performance.now() - started)} ms`);
    } catch (error) {
      const message = (error as Error).message;
      this.failures.set(source.name, message);
      this.options.log(`upstream ${source.name}: failed to start: ${message} (its tools are skipped; the other upstreams carry on)`);
    }
  }

  private async transportFor(name: string, config: UpstreamConfig): Promise<Transport> {
    if ("url" in config) {
      // loaded only when an HTTP upstream is configured: it pulls in the SDK's OAuth client, SSE parsing and web streams
      const { StreamableHTTPClientTransport } = await import("@modelcontextprotocol/sdk/client/streamableHttp.js");
      return new StreamableHTTPClientTransport(new URL(config.url), { requestInit: { headers: config.headers } });
    }
    return new ChildProcessTransport({
      command: config.command,
      args: config.args,
      // The SDK passes only a handful of variables; an upstream usually needs the user's whole environment.
      env: { ...this.options.env, ...config.env },
      ...(config.cwd ? { cwd: config.cwd } : {}),
      onStderr: (line) => this.options.log(`[${name}] ${line}`),
    });
  }

  /** tools/list with a loose schema: one malformed tool is skipped instead of failing the whole upstream. */
  private async listTools(name: string, client: Client): Promise<Tool[]> {
    const tools: Tool[] = [];
    let cursor: string | undefined;
    do {
      const page = await client.request({ method: "tools/list", params: cursor ? { cursor } : {} }, looseList, { timeout: this.options.startupTimeoutMs });
      for (const raw of page.tools) {
        const parsed = looseTool.safeParse(raw);
        if (!parsed.success) {
          const label = typeof (raw as { name?: unknown })?.name === "string" ? `'${(raw as { name: string }).name}'` : "(unnamed)";
          this.options.log(`upstream ${name}: skipped malformed tool ${label}: ${parsed.error.issues.map((issue) => `${issue.path.join(".")}: ${issue.message}`).join("; ")}`);
          continue;
        }
        tools.push(parsed.data as unknown as Tool);
      }
      cursor = page.nextCursor;
    } while (cursor);
    return tools;
  }

  /** The tools offered to the agent, named uniquely and validly; stable for a given set of upstreams. */
  catalogue(): CatalogueEntry[] {
    if (this.catalogueCache) return this.catalogueCache;
    const live = this.order.map((name) => this.connected.get(name)).filter((entry): entry is Connected => entry !== undefined);
    const prefix = this.order.length > 1;
    const taken = new Set<string>(RESERVED_TOOL_NAMES);
    const entries: CatalogueEntry[] = [];
    for (const upstream of live) {
      for (const tool of upstream.tools) {
        let name = exposedToolName(prefix ? `${upstream.name}__${tool.name}` : tool.name);
        if (taken.has(name)) name = exposedToolName(`${upstream.name}__${tool.name}`);
        if (taken.has(name)) name = exposedToolName(`${upstream.name}__${tool.name}`, true);
        taken.add(name);
        const builtin = upstream.builtinScores?.[tool.name];
        entries.push({ name, upstream: upstream.name, tool: tool.name, definition: { ...tool, name }, ...(builtin ? { builtinScore: builtin } : {}) });
      }
    }
    this.catalogueCache = entries;
    this.byName = new Map(entries.map((entry) => [entry.name, entry]));
    return entries;
  }

  find(name: string): CatalogueEntry | undefined {
    if (!this.catalogueCache) this.catalogue();
    return this.byName.get(name);
  }

  /** Upstream names with the reason each is missing, for `doctor` and error messages. */
  status(): { name: string; ok: boolean; error?: string; tools: number }[] {
    return this.order.map((name) => {
      const connected = this.connected.get(name);
      const error = this.failures.get(name);
      return { name, ok: connected !== undefined, tools: connected?.tools.length ?? 0, ...(error ? { error } : connected ? {} : { error: "still starting" }) };
    });
  }

  /** Calls a tool on its upstream. Protocol errors from the upstream (McpError) propagate unchanged. */
  async call(call: { upstream: string; tool: string; args: Record<string, unknown> }, options: ExecuteOptions = {}): Promise<CallToolResult> {
    let upstream = this.connected.get(call.upstream);
    if (!upstream && !this.failures.has(call.upstream)) {
      await this.ready; // still starting (an approval can arrive right after a restart)
      upstream = this.connected.get(call.upstream);
    }
    if (!upstream) {
      const why = this.failures.get(call.upstream);
      throw new Error(`upstream '${call.upstream}' is not connected${why ? ` (${why})` : ""}`);
    }
    const onprogress = options.onProgress;
    return upstream.client.request(
      { method: "tools/call", params: { name: call.tool, arguments: call.args } },
      CallToolResultSchema,
      {
        timeout: this.options.toolTimeoutMs,
        ...(options.signal ? { signal: options.signal } : {}),
        ...(onprogress ? { onprogress, resetTimeoutOnProgress: true } : {}),
      },
    );
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.connected.values()].map((entry) => entry.client.close().catch(() => {})));
    this.connected.clear();
  }
}

