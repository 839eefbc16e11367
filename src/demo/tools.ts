import { InMemoryTransport } from "@modelcontextprotocol/sdk/inMemory.js";
import { Server } from "@modelcontextprotocol/sdk/server/index.js";
import { CallToolRequestSchema, ErrorCode, ListToolsRequestSchema, McpError, type CallToolResult, type Tool } from "@modelcontextprotocol/sdk/types.js";
import type { UpstreamSource } from "../mcp/upstreams.js";
import { DEMO_SCORES } from "./scores.js";

/** The seed's scenario: a welfare-payments back office. */
const DEMO_TOOLS: Tool[] = [
  {
    name: "check_payment_status",
    title: "Check payment status",
    description: "Look up the status of a citizen's benefit payment (read-only).",
    inputSchema: {
      type: "object",
      properties: { citizen_id: { type: "string", description: "Citizen identifier, e.g. C-1001" } },
      required: ["citizen_id"],
    },
    annotations: { readOnlyHint: true, openWorldHint: false },
  },
  {
    name: "request_payment_extension",
    title: "Request payment extension",
    description: "Extend the due date of a citizen's repayment. Changes what the citizen owes and when.",
    inputSchema: {
      type: "object",
      properties: {
        citizen_id: { type: "string" },
        days: { type: "integer", minimum: 1, maximum: 180 },
        reason: { type: "string" },
      },
      required: ["citizen_id", "days"],
    },
    annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: false },
  },
  {
    name: "modify_welfare_record",
    title: "Modify welfare record",
    description: "Change a field of a citizen's welfare record (eligibility, bank account, address).",
    inputSchema: {
      type: "object",
      properties: {
        citizen_id: { type: "string" },
        field: { type: "string", enum: ["eligibility", "bank_account", "address", "monthly_amount"] },
        value: { type: "string" },
      },
      required: ["citizen_id", "field", "value"],
    },
    annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false },
  },
];

export { DEMO_SCORES };

interface CitizenRecord {
  eligibility: string;
  bank_account: string;
  address: string;
  monthly_amount: string;
  due_date: string;
  status: string;
}

function seededRecord(citizenId: string): CitizenRecord {
  let hash = 0;
  for (const char of citizenId) hash = (hash * 31 + char.charCodeAt(0)) >>> 0;
  const amount = 600 + (hash % 900);
  const day = 1 + (hash % 27);
  return {
    eligibility: "eligible",
    bank_account: `DE89 3704 0044 0532 ${String(hash % 10_000).padStart(4, "0")} 00`,
    address: `${1 + (hash % 120)} Hauptstraße, Berlin`,
    monthly_amount: `EUR ${amount}.00`,
    due_date: `2026-12-${String(day).padStart(2, "0")}`,
    status: hash % 5 === 0 ? "OVERDUE" : "ON SCHEDULE",
  };
}

function text(value: string, structured?: Record<string, unknown>): CallToolResult {
  return { content: [{ type: "text", text: value }], ...(structured ? { structuredContent: structured } : {}) };
}

/** A low-level MCP server with the three demo tools and plausible in-memory behaviour. */
export function createDemoServer(version: string): Server {
  const records = new Map<string, CitizenRecord>();
  const recordFor = (id: string) => {
    let record = records.get(id);
    if (!record) records.set(id, (record = seededRecord(id)));
    return record;
  };
  const server = new Server({ name: "atlas-demo", version }, { capabilities: { tools: {} } });
  server.setRequestHandler(ListToolsRequestSchema, () => ({ tools: DEMO_TOOLS }));
  server.setRequestHandler(CallToolRequestSchema, (request) => {
    const args = (request.params.arguments ?? {}) as Record<string, unknown>;
    const citizenId = typeof args.citizen_id === "string" && args.citizen_id.trim() ? args.citizen_id.trim() : undefined;
    if (!DEMO_TOOLS.some((tool) => tool.name === request.params.name)) throw new McpError(ErrorCode.InvalidParams, `Unknown tool: ${request.params.name}`);
    if (!citizenId) return { ...text("citizen_id is required"), isError: true };
    const record = recordFor(citizenId);
    switch (request.params.name) {
      case "check_payment_status":
        return text(`Citizen ${citizenId}: payment ${record.status}; ${record.monthly_amount} monthly; next repayment due ${record.due_date}.`, {
          citizen_id: citizenId,
          status: record.status,
          monthly_amount: record.monthly_amount,
          due_date: record.due_date,
        });
      case "request_payment_extension": {
        const days = Number(args.days);
        if (!Number.isInteger(days) || days < 1 || days > 180) return { ...text("days must be a whole number from 1 to 180"), isError: true };
        const due = new Date(`${record.due_date}T00:00:00Z`);
        due.setUTCDate(due.getUTCDate() + days);
        const previous = record.due_date;
        record.due_date = due.toISOString().slice(0, 10);
        record.status = "EXTENDED";
        return text(`Extension granted for citizen ${citizenId}: repayment moved from ${previous} to ${record.due_date} (${days} days).`, {
          citizen_id: citizenId,
          previous_due_date: previous,
          new_due_date: record.due_date,
        });
      }
      default: {
        const field = String(args.field) as keyof CitizenRecord;
        if (!["eligibility", "bank_account", "address", "monthly_amount"].includes(field)) return { ...text(`field '${field}' cannot be changed`), isError: true };
        const previous = record[field];
        record[field] = String(args.value ?? "");
        return text(`Welfare record of citizen ${citizenId} updated: ${field} changed from '${previous}' to '${record[field]}'.`, {
          citizen_id: citizenId,
          field,
          previous,
          value: record[field],
        });
      }
    }
  });
  return server;
}

/** The demo tools as an upstream named `demo`, connected in-process. */
export function demoUpstream(version: string): UpstreamSource {
  return {
    name: "demo",
    builtinScores: DEMO_SCORES,
    connect: async () => {
      const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
      await createDemoServer(version).connect(serverSide);
      return clientSide;
    },
  };
}
