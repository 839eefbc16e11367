import { Server } from "@modelcontextprotocol/sdk/server/index.js";
import type { RequestHandlerExtra } from "@modelcontextprotocol/sdk/shared/protocol.js";
import {
  CallToolRequestSchema,
  CompleteRequestSchema,
  ErrorCode,
  GetPromptRequestSchema,
  InitializeRequestSchema,
  ListPromptsRequestSchema,
  ListResourcesRequestSchema,
  ListResourceTemplatesRequestSchema,
  ListToolsRequestSchema,
  McpError,
  ReadResourceRequestSchema,
  RootsListChangedNotificationSchema,
  SetLevelRequestSchema,
  SubscribeRequestSchema,
  UnsubscribeRequestSchema,
  type CallToolResult,
  type ClientCapabilities,
  type InitializeRequest,
  type InitializeResult,
  type ServerCapabilities,
  type ServerNotification,
  type ServerRequest,
  type Tool,
} from "@modelcontextprotocol/sdk/types.js";
import * as z from "zod";
import type { ExecuteOptions } from "../governance/engine.js";
import type { ReadRequest } from "../risk/readPolicy.js";
import { ArgumentValidator } from "./argumentValidator.js";
import { LazyJsonSchemaValidator } from "./lazyJsonSchemaValidator.js";
import { measureArguments, type ArgumentLimits } from "../argumentBounds.js";
import { forgetArgumentTexts, LARGE_ARGUMENT_BYTES } from "../argumentTexts.js";
import type { CallTarget } from "../risk/largeArguments.js";
import type { GovernanceEngine } from "../governance/engine.js";
import { REF_PATTERN } from "../governance/governanceLog.js";
import { toolDefinitionHash } from "../risk/toolPins.js";
import { ERROR_PREFIX } from "./stdioTransport.js";
import { decisionToResult, statusToResult } from "./toolResults.js";
import type { UpstreamSet } from "./upstreams.js";

/** Longest an `atlas_status` call may wait: Claude Desktop cuts a tool call at about 60 s. */
export const MAX_STATUS_WAIT_SECONDS = 45;

export const STATUS_TOOL: Tool = {
  name: "atlas_status",
  title: "Governance status",
  description:
    "Look up a tool call that atlas-gateway held for human review (a reply starting 'PENDING REVIEW (Ref: evt_…)'). " +
    "Returns its state (pending, approved, denied, expired, executed, unknown), who decided and why, and once executed, the tool's real result. " +
    `Set wait_seconds (up to ${MAX_STATUS_WAIT_SECONDS}) to wait for a decision instead of polling.`,
  inputSchema: {
    type: "object",
    properties: {
      ref: { type: "string", pattern: REF_PATTERN.source, description: "The ref from the PENDING REVIEW reply, e.g. evt_1a2b3c4d" },
      wait_seconds: { type: "number", minimum: 0, maximum: MAX_STATUS_WAIT_SECONDS, description: "Wait up to this many seconds for the outcome (default 0)" },
    },
    required: ["ref"],
    additionalProperties: false,
  },
  annotations: { title: "Governance status", readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
};

export interface GatewayDeps {
  upstreams: UpstreamSet;
  engine: GovernanceEngine;
  version: string;
  /** Bounds on tool arguments (config `limits`); default depth 64, 64 MiB. */
  limits?: ArgumentLimits;
  /**
   * Told when the agent's roots may have changed (after `notifications/initialized` and on `roots/list_changed`), so
   * self-protection can resolve paths against them (issue 11).
   */
  onRootsChanged?: () => void;
  /** Most items in one page of a list answered to the agent (default 500); more are offered through `nextCursor`. */
  pageSize?: number;
  /** Where the gateway's own stderr lines go (a tool schema that cannot be compiled). */
  log?: (line: string) => void;
  /**
   * Decides a `resources/read` or `prompts/get` before it is forwarded (policy, self-protection) and records it; a
   * read cannot be held. Without it every read is allowed and unrecorded.
   */
  guardRead?: (read: ReadRequest) => Promise<{ allowed: true } | { allowed: false; reason: string }>;
  /** Longest the agent's `initialize` waits for the upstreams (default 10 s). */
  initializeWaitMs?: number;
  /** How long a server-to-client request (sampling, elicitation, roots) may wait for the agent's client. */
  clientRequestTimeoutMs?: number;
  /**
   * Prepares arguments of at least `LARGE_ARGUMENT_BYTES` before the call is submitted (self-protection's verdict and
   * their JSON texts, off the event loop: `risk/largeArguments.ts`). Must not reject.
   */
  prepareArguments?: (args: Record<string, unknown>, target: CallTarget) => Promise<void>;
}

/** Longest the agent's `initialize` answer waits for the upstreams by default. */
export const MAX_INITIALIZE_WAIT_MS = 10_000;

/** The gateway's own instructions; each upstream's follow, labelled (issue 10). */
export const GATEWAY_INSTRUCTIONS =
  "Tool calls pass through atlas-gateway, which lets low-risk calls run at once and holds high-risk ones for a human reviewer. " +
  "A held call answers 'PENDING REVIEW (Ref: evt_…)'; it has not run yet. Tell the user it awaits approval, then call atlas_status with the ref " +
  "(wait_seconds up to 45) to learn the decision and get the result. Do not retry a held call: an identical call returns the same ref.";

/** The gateway's instructions followed by each upstream's, labelled with the upstream's name. */
export function composeInstructions(upstreams: { upstream: string; text: string }[]): string {
  return [GATEWAY_INSTRUCTIONS, ...upstreams.map(({ upstream, text }) => `Instructions from upstream '${upstream}':\n${text}`)].join("\n\n");
}

/**
 * Every capability the gateway can pass through. Handlers are registered for all of them; what is advertised in
 * `initialize` is what the upstreams offer, and a method of a capability not
 * advertised answers "Method not found", as the upstream would.
 */
const HANDLED_CAPABILITIES: ServerCapabilities = {
  tools: { listChanged: true },
  resources: { subscribe: true, listChanged: true },
  prompts: { listChanged: true },
  completions: {},
  logging: {},
};

const looseResult = z.looseObject({});
/** The client capability a server-to-client request needs. */
const CLIENT_CAPABILITY: Record<string, keyof ClientCapabilities> = {
  "sampling/createMessage": "sampling",
  "elicitation/create": "elicitation",
  "roots/list": "roots",
};
const NOTIFICATION_CAPABILITY: Record<string, keyof ServerCapabilities> = {
  "notifications/resources/updated": "resources",
  "notifications/resources/list_changed": "resources",
  "notifications/prompts/list_changed": "prompts",
  "notifications/message": "logging",
};

export interface Gateway {
  /** The MCP server, not yet connected to any transport. */
  server: Server;
  upstreams: UpstreamSet;
  engine: GovernanceEngine;
}

/**
 * Builds the agent-facing MCP server: upstream tools passed through with their schemas and annotations as they are,
 * plus `atlas_status`. Every call goes through the engine. Connecting a transport and handling signals is the caller's job.
 */
export function createGateway(deps: GatewayDeps): Gateway {
  const { upstreams, engine } = deps;
  const server = new Server(
    { name: "atlas-gateway", version: deps.version, title: "ATLAS Governance Gateway" },
    { capabilities: HANDLED_CAPABILITIES, instructions: GATEWAY_INSTRUCTIONS, jsonSchemaValidator: new LazyJsonSchemaValidator() },
  );
  const pageSize = deps.pageSize ?? 500;
  const validator = new ArgumentValidator(deps.log ?? (() => {}));
  let advertised: ServerCapabilities | undefined;

  // The agent's capabilities are offered to the upstreams, so they connect only once the agent has introduced
  // itself; the answer then carries the upstreams' capabilities and instructions. The SDK's own handler still
  // records the client's capabilities and negotiates the protocol version.
  const sdkInitialize = (server as unknown as { _oninitialize(request: InitializeRequest): Promise<InitializeResult> })._oninitialize.bind(server);
  server.setRequestHandler(InitializeRequestSchema, async (request) => {
    // Clients give up on a server that takes too long to initialize (Claude Code: 30 s); an upstream slower than
    // this joins later, announced with list_changed.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([upstreams.start(request.params.capabilities), new Promise((resolve) => (timer = setTimeout(resolve, deps.initializeWaitMs ?? MAX_INITIALIZE_WAIT_MS)))]);
    clearTimeout(timer);
    advertised = upstreams.capabilities();
    const result = await sdkInitialize(request);
    return { ...result, capabilities: advertised, instructions: composeInstructions(upstreams.instructions()) };
  });

  const advertises = (capability: keyof ServerCapabilities, flag?: string): boolean => {
    const offered = advertised?.[capability] as Record<string, unknown> | undefined;
    return offered !== undefined && (flag === undefined || offered[flag] === true);
  };
  const requireCapability = (capability: keyof ServerCapabilities, method: string, flag?: string) => {
    if (!advertises(capability, flag)) throw new McpError(ErrorCode.MethodNotFound, `Method not found: ${method}`);
  };

  let markInitialized!: () => void;
  const agentInitialized = new Promise<void>((resolve) => (markInitialized = resolve));
  server.oninitialized = () => {
    markInitialized();
    deps.onRootsChanged?.();
  };
  upstreams.bindAgent({
    onNotification: (_upstream, notification) => {
      const capability = NOTIFICATION_CAPABILITY[notification.method];
      if (capability && !advertises(capability)) return;
      void server.notification(notification as ServerNotification).catch(() => {});
    },
    onRequest: async (upstream, request, signal) => {
      // Upstreams initialize while the agent's own initialize is still being answered; the agent may only be asked
      // once it has sent `notifications/initialized` (MCP lifecycle).
      await agentInitialized;
      const needed = CLIENT_CAPABILITY[request.method];
      if (needed && !server.getClientCapabilities()?.[needed]) {
        throw new McpError(ErrorCode.MethodNotFound, `${ERROR_PREFIX}the agent's client does not support ${request.method} (asked by upstream '${upstream}')`);
      }
      return server.request(request as ServerRequest, looseResult, { signal, timeout: deps.clientRequestTimeoutMs ?? 10 * 60_000 });
    },
  });

  server.setRequestHandler(ListToolsRequestSchema, async (request) => {
    await upstreams.ready;
    return paginate([...upstreams.catalogue().map((entry) => entry.definition), STATUS_TOOL], request.params?.cursor, pageSize, "tools");
  });
  server.setRequestHandler(ListResourcesRequestSchema, async (request) => {
    requireCapability("resources", request.method);
    return paginate(await upstreams.list("resources"), request.params?.cursor, pageSize, "resources");
  });
  server.setRequestHandler(ListResourceTemplatesRequestSchema, async (request) => {
    requireCapability("resources", request.method);
    return paginate(await upstreams.list("resourceTemplates"), request.params?.cursor, pageSize, "resourceTemplates");
  });
  const guard = async (kind: ReadRequest["kind"], exposed: string, resolved: { upstream: string; target: string } | undefined) => {
    if (!deps.guardRead || !resolved) return;
    const verdict = await deps.guardRead({ kind, upstream: resolved.upstream, target: resolved.target, exposed });
    if (!verdict.allowed) throw new McpError(ErrorCode.InvalidRequest, `${ERROR_PREFIX}${kind === "resource" ? "reading" : "getting"} ${exposed} was denied: ${verdict.reason}`);
  };
  server.setRequestHandler(ReadResourceRequestSchema, async (request, extra) => {
    requireCapability("resources", request.method);
    const target = upstreams.resolveUri(request.params.uri);
    await guard("resource", request.params.uri, target && { upstream: target.upstream, target: target.uri });
    return upstreams.resourceRequest("resources/read", request.params, forwardOptions(request.params, extra));
  });
  server.setRequestHandler(SubscribeRequestSchema, async (request, extra) => {
    requireCapability("resources", request.method, "subscribe");
    return upstreams.resourceRequest("resources/subscribe", request.params, forwardOptions(request.params, extra));
  });
  server.setRequestHandler(UnsubscribeRequestSchema, async (request, extra) => {
    requireCapability("resources", request.method, "subscribe");
    return upstreams.resourceRequest("resources/unsubscribe", request.params, forwardOptions(request.params, extra));
  });
  server.setRequestHandler(ListPromptsRequestSchema, async (request) => {
    requireCapability("prompts", request.method);
    return paginate(await upstreams.list("prompts"), request.params?.cursor, pageSize, "prompts");
  });
  server.setRequestHandler(GetPromptRequestSchema, async (request, extra) => {
    requireCapability("prompts", request.method);
    const target = upstreams.resolvePrompt(request.params.name);
    await guard("prompt", request.params.name, target && { upstream: target.upstream, target: target.name });
    return upstreams.getPrompt(request.params, forwardOptions(request.params, extra)) as never;
  });
  server.setRequestHandler(CompleteRequestSchema, async (request, extra) => {
    requireCapability("completions", request.method);
    return upstreams.complete(request.params, forwardOptions(request.params, extra)) as never;
  });
  server.setRequestHandler(SetLevelRequestSchema, async (request) => {
    requireCapability("logging", request.method);
    await upstreams.setLoggingLevel(request.params.level);
    return {};
  });
  server.setNotificationHandler(RootsListChangedNotificationSchema, () => {
    deps.onRootsChanged?.();
    return upstreams.notifyRootsChanged();
  });

  server.setRequestHandler(CallToolRequestSchema, async (request, extra): Promise<CallToolResult> => {
    const { name } = request.params;
    const args = (request.params.arguments ?? {}) as Record<string, unknown>;
    if (name === STATUS_TOOL.name) return answerStatus(engine, args, extra.signal);

    let entry = upstreams.find(name);
    if (!entry) {
      await upstreams.ready;
      entry = upstreams.find(name);
    }
    if (!entry) throw new McpError(ErrorCode.InvalidParams, `Unknown tool: ${name}`);
    // before anything is recorded: an unbounded value recorded once breaks every reader of the ledger
    const measured = measureArguments(args, deps.limits);
    if (measured.problem) throw new McpError(ErrorCode.InvalidParams, `${name}: ${measured.problem}; the call was refused and not recorded`);
    const invalid = validator.check(entry.name, entry.definition.inputSchema, args);
    if (invalid.length) {
      // Refused before scoring: a call that cannot succeed is never held for a human (issue 10).
      return { content: [{ type: "text", text: `${ERROR_PREFIX}invalid arguments for tool ${entry.name}: ${invalid.join("; ")}` }], isError: true };
    }
    // Large arguments are scanned and serialised off the event loop, so other calls go on meanwhile (issue 10).
    if (measured.bytes >= LARGE_ARGUMENT_BYTES && deps.prepareArguments) {
      await deps.prepareArguments(args, { upstream: entry.upstream, tool: entry.tool });
      // cancelled by the agent meanwhile: never admitted, so nothing to record, run, or call "unknown" later
      if (extra.signal.aborted) throw new McpError(ErrorCode.InvalidRequest, `${ERROR_PREFIX}${name}: the call was cancelled before it was admitted; it was not recorded or run`);
    }

    const progressToken = request.params._meta?.progressToken;
    const hasOutputSchema = entry.definition.outputSchema !== undefined;
    const client = server.getClientVersion();
    const submitted = engine.submit(
      {
        upstream: entry.upstream,
        tool: entry.tool,
        name: entry.name,
        args,
        ...(entry.definition.annotations ? { annotations: entry.definition.annotations } : {}),
        ...(entry.builtinScore ? { builtinScore: entry.builtinScore } : {}),
        ...(entry.definition.description ? { description: entry.definition.description } : {}),
        definitionHash: toolDefinitionHash(entry.definition, entry.tool),
        ...(client ? { client: { name: client.name, version: client.version } } : {}),
        hasOutputSchema,
      },
      {
        signal: extra.signal,
        ...(progressToken !== undefined
          ? { onProgress: (progress) => void extra.sendNotification({ method: "notifications/progress", params: { ...progress, progressToken } }).catch(() => {}) }
          : {}),
      },
    );
    // The texts served this call's records and forward; a held call waiting for a human must not keep a copy of
    // large arguments twice more (it is serialised afresh if approved).
    const decision = await submitted.finally(() => forgetArgumentTexts(args));
    return decisionToResult(decision, { hasOutputSchema });
  });

  return { server, upstreams, engine };
}

/** Cancellation and progress of an agent's request, carried to the upstream that serves it. */
function forwardOptions(params: { _meta?: { progressToken?: string | number } }, extra: RequestHandlerExtra<ServerRequest, ServerNotification>): ExecuteOptions {
  const progressToken = params._meta?.progressToken;
  return {
    signal: extra.signal,
    ...(progressToken !== undefined
      ? { onProgress: (progress) => void extra.sendNotification({ method: "notifications/progress", params: { ...progress, progressToken } }).catch(() => {}) }
      : {}),
  };
}

/**
 * One page of a list for the agent. The cursor is the offset of the page's first item; a cursor the gateway did not
 * hand out is a JSON-RPC invalid-params error (MCP 2025-11-25, pagination).
 */
export function paginate<K extends string, T>(items: T[], cursor: string | undefined, pageSize: number, key: K): { [P in K]: T[] } & { nextCursor?: string } {
  let start = 0;
  if (cursor !== undefined) {
    start = /^\d{1,9}$/.test(cursor) ? Number(cursor) : Number.NaN;
    if (!Number.isSafeInteger(start) || start > items.length) throw new McpError(ErrorCode.InvalidParams, `${ERROR_PREFIX}invalid cursor: ${JSON.stringify(cursor.slice(0, 80))}`);
  }
  const end = start + pageSize;
  return { [key]: items.slice(start, end), ...(end < items.length ? { nextCursor: String(end) } : {}) } as { [P in K]: T[] } & { nextCursor?: string };
}

async function answerStatus(engine: GovernanceEngine, args: Record<string, unknown>, signal: AbortSignal): Promise<CallToolResult> {
  const ref = args.ref;
  if (typeof ref !== "string" || !REF_PATTERN.test(ref)) {
    throw new McpError(ErrorCode.InvalidParams, "atlas_status needs {\"ref\": \"evt_\" followed by 8 hex digits}, as given in the PENDING REVIEW reply");
  }
  const wait = args.wait_seconds ?? 0;
  if (typeof wait !== "number" || !Number.isFinite(wait) || wait < 0) throw new McpError(ErrorCode.InvalidParams, "wait_seconds must be a number of seconds from 0 to 45");
  if (!engine.get(ref)) {
    return { content: [{ type: "text", text: `Unknown ref ${ref}: this gateway holds no request with that ref.` }], isError: true };
  }
  const view = await engine.waitForOutcome(ref, Math.min(wait, MAX_STATUS_WAIT_SECONDS) * 1000, signal);
  const halt = engine.haltState();
  return statusToResult(view!, halt?.halted ? halt : undefined);
}
