import { knownArgumentTexts } from "../argumentTexts.js";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import type { RequestOptions } from "@modelcontextprotocol/sdk/shared/protocol.js";
import type { Transport } from "@modelcontextprotocol/sdk/shared/transport.js";
import {
  CallToolResultSchema,
  ErrorCode,
  McpError,
  PromptSchema,
  ResourceSchema,
  ResourceTemplateSchema,
  ToolListChangedNotificationSchema,
  ToolSchema,
  type CallToolResult,
  type ClientCapabilities,
  type Notification,
  type ServerCapabilities,
  type Tool,
} from "@modelcontextprotocol/sdk/types.js";
import * as z from "zod";
import type { UpstreamConfig } from "../config.js";
import { UncertainOutcomeError } from "../errors.js";
import type { ExecuteOptions } from "../governance/engine.js";
import { ProgressTap, type ProgressParams } from "./progressTap.js";
import { ChildProcessTransport, ERROR_PREFIX } from "./stdioTransport.js";
import { LazyJsonSchemaValidator } from "./lazyJsonSchemaValidator.js";
import { exposedToolName } from "./toolNames.js";
import { upstreamEnv } from "./upstreamEnv.js";

export { exposedToolName };

/** Names the gateway keeps for its own tools. */
export const RESERVED_TOOL_NAMES = new Set(["atlas_status"]);

/** Most pages read from one upstream list before the gateway stops following `nextCursor` (issue 10). */
export const DEFAULT_PAGE_CAP = 100;

/** With several upstreams, a resource URI `U` of upstream `A` is offered as `atlas://A/U` (A percent-encoded). */
export const URI_PREFIX = "atlas://";

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

/** A request an upstream sends to the client side (sampling, elicitation, roots), to be answered by the agent's client. */
export interface ServerToClientRequest {
  method: string;
  params?: Record<string, unknown>;
}

export interface UpstreamSetOptions {
  env: NodeJS.ProcessEnv;
  log: (line: string) => void;
  toolTimeoutMs: number;
  startupTimeoutMs: number;
  version: string;
  /** Called when an upstream's tool list changed after start-up (also when an upstream arrives late or returns). */
  onToolsChanged?: () => void;
  /** A notification from an upstream other than tools/list_changed and progress, already mapped to exposed names. */
  onNotification?: (upstream: string, notification: Notification) => void;
  /** A server-to-client request from an upstream; answered by the agent's client. Without it, such requests fail. */
  onRequest?: (upstream: string, request: ServerToClientRequest, signal: AbortSignal) => Promise<Record<string, unknown>>;
  /**
   * Wait for `start(clientCapabilities)` instead of connecting at once: the agent's capabilities (sampling,
   * elicitation, roots) are then offered to the upstreams. Without it the upstreams start at once, offered none.
   */
  deferStart?: boolean;
  /** Secret values of the gateway's (evaluator keys) whose variables stay out of stdio upstreams' environments (see `upstreamEnv`). */
  secretValues?: readonly string[];
  /** Largest message accepted from a stdio upstream (default `MAX_MESSAGE_BYTES`). */
  maxMessageBytes?: number;
  /** Page cap for list requests (default 100). */
  pageCap?: number;
  /** First delay before restarting a stdio upstream that exited; doubles per attempt up to `restartMaxMs`. */
  restartBaseMs?: number;
  restartMaxMs?: number;
}

type ListKind = "tools" | "resources" | "resourceTemplates" | "prompts";
const LISTS: Record<ListKind, { method: string; schema: z.ZodType; label: string; id: string }> = {
  tools: { method: "tools/list", schema: ToolSchema, label: "tool", id: "name" },
  resources: { method: "resources/list", schema: ResourceSchema, label: "resource", id: "uri" },
  resourceTemplates: { method: "resources/templates/list", schema: ResourceTemplateSchema, label: "resource template", id: "uriTemplate" },
  prompts: { method: "prompts/list", schema: PromptSchema, label: "prompt", id: "name" },
};

const loosePage = z.looseObject({ nextCursor: z.string().optional() });
const looseResult = z.looseObject({});
/** setTimeout's largest delay: the SDK's own request timer is parked there while ours (reset on progress) rules. */
const NO_SDK_TIMEOUT = 2_147_483_647;

interface Connected {
  name: string;
  client: Client;
  tap: ProgressTap;
  capabilities: ServerCapabilities;
  instructions: string | undefined;
  tools: Tool[];
  builtinScores: Record<string, { score: number; reason: string }> | undefined;
  since: number;
}

let tokenCounter = 0;

/** A Streamable HTTP upstream (a session to renew, a server to reconnect to) rather than a process. */
function isRemote(source: UpstreamSource): boolean {
  return "config" in source && "url" in source.config;
}

/**
 * The upstream MCP servers. They start in parallel; `ready` settles when every one has listed its tools or failed
 * (bounded by the start-up timeout). One failing server or malformed item is reported and skipped, never fatal. A
 * stdio upstream that exits is restarted with capped exponential backoff; an HTTP upstream whose session is gone
 * (404) gets a new session.
 */
export class UpstreamSet {
  readonly ready: Promise<void>;
  private readonly sources = new Map<string, UpstreamSource>();
  private readonly connected = new Map<string, Connected>();
  private readonly failures = new Map<string, string>();
  private readonly restartAttempts = new Map<string, number>();
  private readonly restartTimers = new Map<string, NodeJS.Timeout>();
  private readonly reconnecting = new Map<string, Promise<void>>();
  private readonly arrivals = new Set<() => void>();
  private readonly running = new Set<Promise<CallToolResult>>();
  /** The resource URIs (upstream's own) the agent subscribed to, per upstream: renewed when it comes back. */
  private readonly subscriptions = new Map<string, Set<string>>();
  private catalogueCache: CatalogueEntry[] | undefined;
  private byName = new Map<string, CatalogueEntry>();
  private readonly order: string[];
  private readonly options: UpstreamSetOptions;
  private offered: ClientCapabilities = {};
  private loggingLevel: string | undefined;
  private startOnce: (() => void) | undefined;
  private settled = false;
  private closed = false;

  constructor(sources: UpstreamSource[], options: UpstreamSetOptions) {
    this.options = { ...options };
    this.order = sources.map((source) => source.name);
    for (const source of sources) this.sources.set(source.name, source);
    let begin!: () => void;
    const begun = new Promise<void>((resolve) => (begin = resolve));
    this.startOnce = begin;
    this.ready = begun.then(() => {
      const all = Promise.all(sources.map((source) => this.connect(source))).then(() => undefined);
      return Promise.race([
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
      ]).then(() => {
        this.settled = true;
      });
    });
    if (!options.deferStart) this.start();
  }

  /**
   * Connects the upstreams, offering them the agent's client capabilities that the gateway can forward (sampling,
   * elicitation, roots). Only the first call counts.
   */
  start(clientCapabilities: ClientCapabilities = {}): Promise<void> {
    if (this.startOnce) {
      const { sampling, elicitation, roots } = clientCapabilities;
      this.offered = { ...(sampling ? { sampling } : {}), ...(elicitation ? { elicitation } : {}), ...(roots ? { roots } : {}) };
      const begin = this.startOnce;
      this.startOnce = undefined;
      begin();
    }
    return this.ready;
  }

  /** Connects the agent's side: where upstream notifications and server-to-client requests go. */
  bindAgent(handlers: Pick<UpstreamSetOptions, "onNotification" | "onRequest">): void {
    Object.assign(this.options, handlers);
  }

  /** How long a connection attempt may take in all: past the start-up timeout, it is a late arrival. */
  private get lateLimitMs(): number {
    return Math.max(60_000, this.options.startupTimeoutMs * 4);
  }

  private get prefixed(): boolean {
    return this.order.length > 1;
  }

  private async connect(source: UpstreamSource): Promise<void> {
    const started = performance.now();
    const { name } = source;
    try {
      const inner = "config" in source ? await this.transportFor(name, source.config) : await source.connect();
      const tap = new ProgressTap(inner);
      const client = new Client({ name: "atlas-gateway", version: this.options.version }, { capabilities: this.offered, jsonSchemaValidator: new LazyJsonSchemaValidator() });
      // Anything the upstream sends that the gateway does not itself handle goes to the agent's side.
      client.fallbackRequestHandler = async (request, extra) => {
        if (!this.options.onRequest) throw new McpError(ErrorCode.MethodNotFound, `Method not found: ${request.method}`);
        return this.options.onRequest(name, { method: request.method, ...(request.params ? { params: request.params as Record<string, unknown> } : {}) }, extra.signal) as never;
      };
      client.fallbackNotificationHandler = async (notification) => {
        this.options.onNotification?.(name, this.exposeNotification(name, notification));
      };
      // `ready` stops waiting at the start-up timeout; a slower upstream still connects and is announced when it
      // arrives (issue 10), up to a longer bound.
      await client.connect(tap, { timeout: this.lateLimitMs });
      const capabilities = client.getServerCapabilities() ?? {};
      const tools = await this.listTools(name, client);
      if (this.closed) {
        await client.close();
        return;
      }
      const entry: Connected = {
        name,
        client,
        tap,
        capabilities,
        instructions: client.getInstructions(),
        tools,
        builtinScores: "connect" in source ? source.builtinScores : undefined,
        since: Date.now(),
      };
      this.connected.set(name, entry);
      this.failures.delete(name);
      this.catalogueCache = undefined;
      client.setNotificationHandler(ToolListChangedNotificationSchema, async () => {
        if (this.connected.get(name)?.client !== client) return;
        try {
          entry.tools = await this.listTools(name, client);
          this.catalogueCache = undefined;
          this.options.onToolsChanged?.();
        } catch (error) {
          this.options.log(`upstream ${name}: could not refresh its tools: ${(error as Error).message}`);
        }
      });
      client.onclose = () => this.onDisconnect(source, client);
      // A restarted upstream or a new session knows nothing of the agent's subscriptions: renew them.
      for (const uri of this.subscriptions.get(name) ?? []) {
        void client.request({ method: "resources/subscribe", params: { uri } }, looseResult).catch((error: Error) => this.options.log(`upstream ${name}: could not renew the subscription to ${uri}: ${error.message}`));
      }
      if (this.loggingLevel && capabilities.logging) {
        void client.request({ method: "logging/setLevel", params: { level: this.loggingLevel } }, looseResult).catch(() => {});
      }
      this.options.log(`upstream ${name}: ready with ${tools.length} tool(s) in ${Math.round(performance.now() - started)} ms`);
      for (const arrived of [...this.arrivals]) arrived();
      if (this.settled) this.announce(name, capabilities);
    } catch (error) {
      const message = (error as Error).message;
      this.failures.set(name, message);
      if (this.restartAttempts.has(name)) {
        this.options.log(`upstream ${name}: restart failed: ${message}`);
        this.scheduleRestart(source);
      } else if (isRemote(source) && !this.closed) {
        // A remote server that is down now may be up in a minute: try again, with the same backoff as a restart.
        this.options.log(`upstream ${name}: failed to connect: ${message} (its tools are skipped until it answers; the other upstreams carry on)`);
        this.scheduleRestart(source);
      } else {
        this.options.log(`upstream ${name}: failed to start: ${message} (its tools are skipped; the other upstreams carry on)`);
      }
    }
  }

  /** An upstream that arrives after start-up (late, or restarted): its lists are announced as changed. */
  private announce(name: string, capabilities: ServerCapabilities): void {
    this.options.onToolsChanged?.();
    if (capabilities.resources) this.options.onNotification?.(name, { method: "notifications/resources/list_changed" });
    if (capabilities.prompts) this.options.onNotification?.(name, { method: "notifications/prompts/list_changed" });
  }

  private onDisconnect(source: UpstreamSource, client: Client): void {
    const entry = this.connected.get(source.name);
    if (this.closed || entry?.client !== client) return;
    this.connected.delete(source.name);
    this.failures.set(source.name, "disconnected");
    this.catalogueCache = undefined;
    const restartable = "config" in source && "command" in source.config;
    this.options.log(`upstream ${source.name}: disconnected; its tools are unavailable${restartable ? " until it is restarted" : ""}`);
    this.options.onToolsChanged?.();
    if (entry.capabilities.resources) this.options.onNotification?.(source.name, { method: "notifications/resources/list_changed" });
    if (entry.capabilities.prompts) this.options.onNotification?.(source.name, { method: "notifications/prompts/list_changed" });
    if (restartable) {
      // A server that stayed up a minute starts the backoff afresh; one that keeps dying waits ever longer.
      if (Date.now() - entry.since > 60_000) this.restartAttempts.delete(source.name);
      this.scheduleRestart(source);
    }
  }

  private scheduleRestart(source: UpstreamSource): void {
    if (this.closed || this.restartTimers.has(source.name)) return;
    const attempt = this.restartAttempts.get(source.name) ?? 0;
    this.restartAttempts.set(source.name, attempt + 1);
    const delay = Math.min((this.options.restartBaseMs ?? 500) * 2 ** attempt, this.options.restartMaxMs ?? 30_000);
    this.options.log(`upstream ${source.name}: ${isRemote(source) ? "reconnecting" : "restarting"} in ${delay} ms (attempt ${attempt + 1})`);
    const timer = setTimeout(() => {
      this.restartTimers.delete(source.name);
      if (!this.closed) void this.connect(source);
    }, delay);
    timer.unref();
    this.restartTimers.set(source.name, timer);
  }

  /** Replaces an HTTP upstream's session (the server forgot it: 404), once at a time. */
  private renewSession(name: string): Promise<void> {
    let renewing = this.reconnecting.get(name);
    if (!renewing) {
      const source = this.sources.get(name)!;
      const old = this.connected.get(name);
      this.connected.delete(name);
      this.options.log(`upstream ${name}: its session is gone (HTTP 404); starting a new session`);
      renewing = (async () => {
        await old?.client.close().catch(() => {});
        await this.connect(source);
      })().finally(() => this.reconnecting.delete(name));
      this.reconnecting.set(name, renewing);
    }
    return renewing;
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
      env: upstreamEnv(this.options.env, config.env, this.options.secretValues),
      ...(config.cwd ? { cwd: config.cwd } : {}),
      onStderr: (line) => this.options.log(`[${name}] ${line}`),
      ...(this.options.maxMessageBytes ? { maxMessageBytes: this.options.maxMessageBytes } : {}),
    });
  }

  private async listTools(name: string, client: Client): Promise<Tool[]> {
    if (!client.getServerCapabilities()?.tools) return [];
    const tools: Tool[] = [];
    const seen = new Set<string>();
    for (const tool of (await this.listAll(name, client, "tools")) as Tool[]) {
      if (seen.has(tool.name)) continue;
      seen.add(tool.name);
      if (tool.execution?.taskSupport === "required") {
        this.options.log(`upstream ${name}: hid tool '${tool.name}': it requires MCP tasks (execution.taskSupport "required"), which the gateway does not offer`);
        continue;
      }
      tools.push(tool);
    }
    return tools;
  }

  /**
   * Every page of one list, each item checked with the SDK's own (client-side) schema: an item a strict client
   * would reject is skipped with a line naming upstream, item and field, and the item is passed on as the upstream
   * sent it (unknown fields kept). A cursor seen before, or more than the page cap, ends the listing.
   */
  private async listAll(name: string, client: Client, kind: ListKind): Promise<Record<string, unknown>[]> {
    const { method, schema, label, id } = LISTS[kind];
    const key = kind;
    const items: Record<string, unknown>[] = [];
    const cursors = new Set<string>();
    const cap = this.options.pageCap ?? DEFAULT_PAGE_CAP;
    let cursor: string | undefined;
    let pages = 0;
    do {
      const page = await client.request({ method, params: cursor ? { cursor } : {} }, loosePage, { timeout: this.lateLimitMs }) as Record<string, unknown> & { nextCursor?: string };
      pages++;
      const raw = page[key];
      if (!Array.isArray(raw)) throw new Error(`${method} answered without a '${key}' array`);
      for (const item of raw) {
        const parsed = schema.safeParse(item);
        if (!parsed.success) {
          const ident = (item as Record<string, unknown> | null)?.[id];
          const itemLabel = typeof ident === "string" ? `'${ident}'` : "(unnamed)";
          const fields = parsed.error.issues.map((issue) => `${issue.path.join(".") || "(item)"}: ${issue.message}`).join("; ");
          this.options.log(`upstream ${name}: skipped ${label} ${itemLabel}: ${fields}`);
          continue;
        }
        items.push(item as Record<string, unknown>);
      }
      cursor = page.nextCursor;
      if (cursor) {
        if (cursors.has(cursor)) {
          this.options.log(`upstream ${name}: ${method} repeated the cursor ${JSON.stringify(cursor.slice(0, 80))}; stopped after ${pages} page(s)`);
          break;
        }
        if (pages >= cap) {
          this.options.log(`upstream ${name}: ${method} still had more after ${cap} pages; stopped there (page cap)`);
          break;
        }
        cursors.add(cursor);
      }
    } while (cursor);
    return items;
  }

  /** The tools offered to the agent, named uniquely and validly; stable for a given set of upstreams. */
  catalogue(): CatalogueEntry[] {
    if (this.catalogueCache) return this.catalogueCache;
    const live = this.live();
    const taken = new Set<string>(RESERVED_TOOL_NAMES);
    const entries: CatalogueEntry[] = [];
    for (const upstream of live) {
      for (const tool of upstream.tools) {
        let name = exposedToolName(this.prefixed ? `${upstream.name}__${tool.name}` : tool.name);
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

  private live(): Connected[] {
    return this.order.map((name) => this.connected.get(name)).filter((entry): entry is Connected => entry !== undefined);
  }

  /**
   * The capabilities to advertise: those the connected upstreams offer, merged (a flag is set when any upstream
   * sets it). `tools.listChanged` is always offered: the gateway's own `atlas_status` and upstream restarts change the list.
   */
  capabilities(): ServerCapabilities {
    const merged: ServerCapabilities = { tools: { listChanged: true } };
    for (const { capabilities } of this.live()) {
      if (capabilities.resources) {
        merged.resources = {
          ...merged.resources,
          ...(capabilities.resources.subscribe ? { subscribe: true } : {}),
          ...(capabilities.resources.listChanged ? { listChanged: true } : {}),
        };
      }
      if (capabilities.prompts) merged.prompts = { ...merged.prompts, ...(capabilities.prompts.listChanged ? { listChanged: true } : {}) };
      if (capabilities.completions) merged.completions = {};
      if (capabilities.logging) merged.logging = {};
    }
    return merged;
  }

  /** Each connected upstream's `instructions`, in configuration order. */
  instructions(): { upstream: string; text: string }[] {
    return this.live().flatMap((entry) => (entry.instructions ? [{ upstream: entry.name, text: entry.instructions }] : []));
  }

  /** One of the pass-through lists, all upstreams merged, names and URIs namespaced when there are several. */
  async list(kind: "resources" | "resourceTemplates" | "prompts"): Promise<Record<string, unknown>[]> {
    const capability = kind === "prompts" ? "prompts" : "resources";
    const lists = await Promise.all(
      this.live()
        .filter((entry) => entry.capabilities[capability])
        .map(async (entry) => {
          try {
            const items = await this.listAll(entry.name, entry.client, kind);
            return items.map((item) => this.exposeItem(entry.name, kind, item));
          } catch (error) {
            this.options.log(`upstream ${entry.name}: ${LISTS[kind].method} failed: ${(error as Error).message}`);
            return [];
          }
        }),
    );
    return lists.flat();
  }

  private exposeItem(upstream: string, kind: ListKind, item: Record<string, unknown>): Record<string, unknown> {
    if (!this.prefixed) return item;
    if (kind === "prompts") return { ...item, name: `${upstream}__${item.name as string}` };
    if (kind === "resources") return { ...item, uri: this.exposeUri(upstream, item.uri as string) };
    if (kind === "resourceTemplates") return { ...item, uriTemplate: this.exposeUri(upstream, item.uriTemplate as string) };
    return item;
  }

  /** The URI the agent sees for an upstream's URI: unchanged with one upstream, `atlas://<upstream>/<uri>` with several. */
  exposeUri(upstream: string, uri: string): string {
    return this.prefixed ? `${URI_PREFIX}${encodeURIComponent(upstream)}/${uri}` : uri;
  }

  /** The inverse of `exposeUri`; undefined when the URI names no configured upstream. */
  resolveUri(exposed: string): { upstream: string; uri: string } | undefined {
    if (!this.prefixed) return this.order[0] !== undefined ? { upstream: this.order[0], uri: exposed } : undefined;
    if (!exposed.startsWith(URI_PREFIX)) return undefined;
    const rest = exposed.slice(URI_PREFIX.length);
    const slash = rest.indexOf("/");
    if (slash === -1) return undefined;
    let upstream: string;
    try {
      upstream = decodeURIComponent(rest.slice(0, slash));
    } catch {
      return undefined;
    }
    return this.sources.has(upstream) ? { upstream, uri: rest.slice(slash + 1) } : undefined;
  }

  /** Which upstream a prompt name belongs to: `<upstream>__<name>` with several upstreams (longest match wins). */
  resolvePrompt(exposed: string): { upstream: string; name: string } | undefined {
    if (!this.prefixed) return this.order[0] !== undefined ? { upstream: this.order[0], name: exposed } : undefined;
    const owner = this.order.filter((name) => exposed.startsWith(`${name}__`)).sort((a, b) => b.length - a.length)[0];
    return owner === undefined ? undefined : { upstream: owner, name: exposed.slice(owner.length + 2) };
  }

  private exposeNotification(upstream: string, notification: Notification): Notification {
    if (!this.prefixed) return notification;
    const params = notification.params as Record<string, unknown> | undefined;
    if (notification.method === "notifications/resources/updated" && typeof params?.uri === "string") {
      return { ...notification, params: { ...params, uri: this.exposeUri(upstream, params.uri) } };
    }
    if (notification.method === "notifications/message") {
      return { ...notification, params: { ...params, logger: typeof params?.logger === "string" ? `${upstream}/${params.logger}` : upstream } };
    }
    return notification;
  }

  /** `resources/read`, `subscribe`, `unsubscribe`: routed by URI, the URIs in the answer mapped back. */
  async resourceRequest(method: "resources/read" | "resources/subscribe" | "resources/unsubscribe", params: Record<string, unknown>, options: ExecuteOptions = {}): Promise<Record<string, unknown>> {
    const target = typeof params.uri === "string" ? this.resolveUri(params.uri) : undefined;
    if (!target) throw new McpError(ErrorCode.InvalidParams, `${ERROR_PREFIX}resource not found: no upstream serves ${JSON.stringify(params.uri)}`);
    const result = await this.forward(target.upstream, method, { ...params, uri: target.uri }, looseResult, options);
    if (method !== "resources/read") {
      const subscribed = this.subscriptions.get(target.upstream) ?? new Set<string>();
      if (method === "resources/subscribe") subscribed.add(target.uri);
      else subscribed.delete(target.uri);
      this.subscriptions.set(target.upstream, subscribed);
    }
    if (method === "resources/read" && this.prefixed && Array.isArray(result.contents)) {
      return { ...result, contents: result.contents.map((item: Record<string, unknown>) => (typeof item?.uri === "string" ? { ...item, uri: this.exposeUri(target.upstream, item.uri) } : item)) };
    }
    return result;
  }

  /** `prompts/get`, routed by name. */
  async getPrompt(params: Record<string, unknown>, options: ExecuteOptions = {}): Promise<Record<string, unknown>> {
    const target = typeof params.name === "string" ? this.resolvePrompt(params.name) : undefined;
    if (!target) throw new McpError(ErrorCode.InvalidParams, `${ERROR_PREFIX}prompt not found: ${JSON.stringify(params.name)}`);
    return this.forward(target.upstream, "prompts/get", { ...params, name: target.name }, looseResult, options);
  }

  /** `completion/complete`, routed by its `ref` (a prompt name or a resource template URI). */
  async complete(params: Record<string, unknown>, options: ExecuteOptions = {}): Promise<Record<string, unknown>> {
    const ref = (params.ref ?? {}) as Record<string, unknown>;
    if (ref.type === "ref/prompt" && typeof ref.name === "string") {
      const target = this.resolvePrompt(ref.name);
      if (target) return this.forward(target.upstream, "completion/complete", { ...params, ref: { ...ref, name: target.name } }, looseResult, options);
    } else if (ref.type === "ref/resource" && typeof ref.uri === "string") {
      const target = this.resolveUri(ref.uri);
      if (target) return this.forward(target.upstream, "completion/complete", { ...params, ref: { ...ref, uri: target.uri } }, looseResult, options);
    }
    throw new McpError(ErrorCode.InvalidParams, `${ERROR_PREFIX}no upstream serves completion for ${JSON.stringify(ref)}`);
  }

  /** `logging/setLevel` to every upstream that logs; remembered for upstreams that connect later. */
  async setLoggingLevel(level: string): Promise<void> {
    this.loggingLevel = level;
    await Promise.all(
      this.live()
        .filter((entry) => entry.capabilities.logging)
        .map((entry) => this.forward(entry.name, "logging/setLevel", { level }, looseResult).catch((error: Error) => this.options.log(`upstream ${entry.name}: logging/setLevel failed: ${error.message}`))),
    );
  }

  /** Tells every upstream that the agent's roots changed. */
  notifyRootsChanged(): void {
    if (!this.offered.roots?.listChanged) return;
    for (const entry of this.live()) void entry.client.notification({ method: "notifications/roots/list_changed" }).catch(() => {});
  }

  /** Upstream names with the reason each is missing, for `doctor` and error messages. */
  status(): { name: string; ok: boolean; error?: string; tools: number }[] {
    return this.order.map((name) => {
      const connected = this.connected.get(name);
      const error = this.failures.get(name);
      const restarting = !connected && this.restartTimers.has(name) ? `; restarting (attempt ${this.restartAttempts.get(name)})` : "";
      return { name, ok: connected !== undefined, tools: connected?.tools.length ?? 0, ...(error ? { error: `${error}${restarting}` } : connected ? {} : { error: "still starting" }) };
    });
  }

  /**
   * Calls a tool on its upstream. An upstream that is restarting is waited for (bounded by the tool timeout).
   * Protocol errors from the upstream (McpError) propagate unchanged.
   */
  async call(call: { upstream: string; tool: string; args: Record<string, unknown> }, options: ExecuteOptions = {}): Promise<CallToolResult> {
    if (!this.connected.has(call.upstream)) await this.whenConnected(call.upstream, options.signal);
    // Large arguments (prepared off the event loop, so their texts are known) let the calls already read from the
    // agent go first: once a large message is in the pipe, whatever follows it waits until the upstream has read it.
    if (knownArgumentTexts(call.args)) await new Promise((resolve) => setImmediate(() => setImmediate(resolve)));
    const running = this.forward(call.upstream, "tools/call", { name: call.tool, arguments: call.args }, CallToolResultSchema, options) as Promise<CallToolResult>;
    this.running.add(running);
    void running.catch(() => {}).finally(() => this.running.delete(running));
    return running;
  }

  /** Waits for the tool calls under way to finish, at most `ms`; how many were still running then. */
  async drain(ms: number): Promise<number> {
    if (this.running.size === 0) return 0;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.allSettled([...this.running]), new Promise((resolve) => (timer = setTimeout(resolve, ms)))]);
    clearTimeout(timer);
    return this.running.size;
  }

  /** Resolves once the upstream is connected, it cannot come back, the tool timeout passes, or `signal` aborts. */
  async whenConnected(name: string, signal?: AbortSignal): Promise<void> {
    if (!this.settled && this.sources.has(name)) await this.ready;
    if (this.connected.has(name) || (!this.restartTimers.has(name) && !this.reconnecting.has(name))) return;
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.arrivals.delete(arrived);
        signal?.removeEventListener("abort", done);
        resolve();
      };
      const arrived = () => {
        if (this.connected.has(name)) done();
      };
      const timer = setTimeout(done, this.options.toolTimeoutMs);
      timer.unref();
      this.arrivals.add(arrived);
      signal?.addEventListener("abort", done);
    });
  }

  /**
   * Sends one request to an upstream. Progress is taken below the SDK (see `ProgressTap`) under a token of the
   * gateway's; the timeout (tool timeout) restarts on each progress. A 404 from an HTTP upstream means the session is
   * gone before the request was processed: a new session is started and the request sent once more.
   */
  private async forward<T extends z.ZodType>(name: string, method: string, params: Record<string, unknown>, schema: T, options: ExecuteOptions = {}, retried = false): Promise<z.infer<T>> {
    const upstream = this.connected.get(name);
    if (!upstream) {
      const why = this.failures.get(name);
      throw new Error(`${ERROR_PREFIX}upstream '${name}' is not connected${why ? ` (${why})` : ""}`);
    }
    // cancelled before it was sent (a large call gives way first): the upstream never saw it, so it did not run
    if (options.signal?.aborted) throw new Error(`${ERROR_PREFIX}the call was cancelled before it was sent to upstream '${name}'`);
    const token = `atlas-${++tokenCounter}`;
    const timeout = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => timeout.abort(new McpError(ErrorCode.RequestTimeout, `${ERROR_PREFIX}upstream '${name}' did not answer ${method} within ${this.options.toolTimeoutMs} ms`)), this.options.toolTimeoutMs);
    };
    arm();
    const onProgress = options.onProgress;
    const unlisten = onProgress
      ? upstream.tap.listen(token, (progress: ProgressParams) => {
          arm();
          onProgress(progress);
        })
      : () => {};
    const { progressToken: _agentToken, ...agentMeta } = (params._meta ?? {}) as Record<string, unknown>;
    const meta = { ...agentMeta, ...(onProgress ? { progressToken: token } : {}) };
    const requestOptions: RequestOptions = {
      timeout: NO_SDK_TIMEOUT,
      signal: options.signal ? AbortSignal.any([options.signal, timeout.signal]) : timeout.signal,
    };
    try {
      const { _meta: _dropped, ...rest } = params;
      return await upstream.client.request({ method, params: Object.keys(meta).length ? { ...rest, _meta: meta } : rest } as never, schema, requestOptions);
    } catch (error) {
      const source = this.sources.get(name);
      if (!retried && (error as { code?: unknown }).code === 404 && source && isRemote(source)) {
        await this.renewSession(name);
        return this.forward(name, method, params, schema, options, true);
      }
      if (method === "tools/call") {
        // Sent, and then no answer from the upstream: its effect may have happened.
        if (timeout.signal.aborted) throw new UncertainOutcomeError(`upstream '${name}' did not answer within ${this.options.toolTimeoutMs} ms`);
        if (options.signal?.aborted) throw new UncertainOutcomeError(`the call was cancelled while upstream '${name}' was running it`);
        if ((error as { code?: unknown }).code === ErrorCode.ConnectionClosed) throw new UncertainOutcomeError(`upstream '${name}' exited or disconnected while running the call`);
      }
      throw error;
    } finally {
      clearTimeout(timer);
      unlisten();
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const timer of this.restartTimers.values()) clearTimeout(timer);
    this.restartTimers.clear();
    await Promise.all([...this.connected.values()].map((entry) => entry.client.close().catch(() => {})));
    this.connected.clear();
  }
}
