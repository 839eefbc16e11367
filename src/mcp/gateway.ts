import { Server } from "@modelcontextprotocol/sdk/server/index.js";
import { CallToolRequestSchema, ErrorCode, ListToolsRequestSchema, McpError, type CallToolResult, type Tool } from "@modelcontextprotocol/sdk/types.js";
import { checkArgumentBounds, type ArgumentLimits } from "../argumentBounds.js";
import type { GovernanceEngine } from "../governance/engine.js";
import { REF_PATTERN } from "../governance/governanceLog.js";
import { toolDefinitionHash } from "../risk/toolPins.js";
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
}

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
    {
      capabilities: { tools: { listChanged: true } },
      instructions:
        "Tool calls pass through atlas-gateway, which lets low-risk calls run at once and holds high-risk ones for a human reviewer. " +
        "A held call answers 'PENDING REVIEW (Ref: evt_…)'; it has not run yet. Tell the user it awaits approval, then call atlas_status with the ref " +
        "(wait_seconds up to 45) to learn the decision and get the result. Do not retry a held call: an identical call returns the same ref.",
    },
  );

  server.setRequestHandler(ListToolsRequestSchema, async () => {
    await upstreams.ready;
    return { tools: [...upstreams.catalogue().map((entry) => entry.definition), STATUS_TOOL] };
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
    const outOfBounds = checkArgumentBounds(args, deps.limits);
    if (outOfBounds) throw new McpError(ErrorCode.InvalidParams, `${name}: ${outOfBounds}; the call was refused and not recorded`);

    const progressToken = request.params._meta?.progressToken;
    const hasOutputSchema = entry.definition.outputSchema !== undefined;
    const client = server.getClientVersion();
    const decision = await engine.submit(
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
    return decisionToResult(decision, { hasOutputSchema });
  });

  return { server, upstreams, engine };
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
