import { InMemoryTransport } from "@modelcontextprotocol/sdk/inMemory.js";
import { Server } from "@modelcontextprotocol/sdk/server/index.js";
import { CallToolRequestSchema, ErrorCode, ListToolsRequestSchema, McpError, type CallToolResult, type Tool } from "@modelcontextprotocol/sdk/types.js";
import type { UpstreamSource } from "../mcp/upstreams.js";
import { DEMO_SCORES } from "./scores.js";

const RECORD_FIELDS = ["eligibility", "bank_account", "address", "monthly_amount"] as const;
type RecordField = (typeof RECORD_FIELDS)[number];

/**
 * A welfare-payments back office, with the argument names the original system's agents already send (DESIGN.md,
 * "Names seen by users"): `beneficiary_id`, `reason`, `changes`. Earlier releases' names (`citizen_id`, `days`,
 * `field` + `value`) are still accepted.
 */
const DEMO_TOOLS: Tool[] = [
  {
    name: "check_payment_status",
    title: "Check payment status",
    description: "Look up the status of a beneficiary's benefit payment (read-only).",
    inputSchema: {
      type: "object",
      properties: { beneficiary_id: { type: "string", description: "Beneficiary identifier, e.g. B-1001" } },
      required: ["beneficiary_id"],
    },
    annotations: { readOnlyHint: true, openWorldHint: false },
  },
  {
    name: "request_payment_extension",
    title: "Request payment extension",
    description: "Extend the due date of a beneficiary's repayment (by 30 days unless `days` says otherwise). Changes what the beneficiary owes and when.",
    inputSchema: {
      type: "object",
      properties: {
        beneficiary_id: { type: "string" },
        reason: { type: "string", description: "Why the extension is needed; the reviewer reads it" },
        days: { type: "integer", minimum: 1, maximum: 180, default: 30 },
      },
      required: ["beneficiary_id", "reason"],
    },
    annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: false },
  },
  {
    name: "modify_welfare_record",
    title: "Modify welfare record",
    description: "Change fields of a beneficiary's welfare record: eligibility, bank account, address, monthly amount.",
    inputSchema: {
      type: "object",
      properties: {
        beneficiary_id: { type: "string" },
        changes: {
          type: "object",
          description: "The fields to change and their new values, e.g. {\"bank_account\": \"DE89 …\"}",
          properties: Object.fromEntries(RECORD_FIELDS.map((field) => [field, { type: "string" }])),
          additionalProperties: false,
          minProperties: 1,
        },
      },
      required: ["beneficiary_id", "changes"],
    },
    annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false },
  },
];

export { DEMO_SCORES };

interface BeneficiaryRecord {
  eligibility: string;
  bank_account: string;
  address: string;
  monthly_amount: string;
  due_date: string;
  status: string;
}

function seededRecord(beneficiaryId: string): BeneficiaryRecord {
  let hash = 0;
  for (const char of beneficiaryId) hash = (hash * 31 + char.charCodeAt(0)) >>> 0;
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

/** `changes` as a field -> value map (or the older `field` + `value`); a string says what is wrong. */
function changesOf(args: Record<string, unknown>): Partial<Record<RecordField, string>> | string {
  const raw = args.changes ?? (typeof args.field === "string" ? { [args.field]: args.value } : undefined);
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) return `changes must be an object of fields to change (${RECORD_FIELDS.join(", ")}) and their new values`;
  const entries = Object.entries(raw as Record<string, unknown>);
  if (entries.length === 0) return "changes names no field to change";
  const unknown = entries.map(([field]) => field).filter((field) => !(RECORD_FIELDS as readonly string[]).includes(field));
  if (unknown.length) return `field(s) ${unknown.map((field) => `'${field}'`).join(", ")} cannot be changed (allowed: ${RECORD_FIELDS.join(", ")})`;
  return Object.fromEntries(entries.map(([field, value]) => [field, typeof value === "string" ? value : JSON.stringify(value)]));
}

/** A low-level MCP server with the three demo tools and plausible in-memory behaviour. */
export function createDemoServer(version: string): Server {
  const records = new Map<string, BeneficiaryRecord>();
  const recordFor = (id: string) => {
    let record = records.get(id);
    if (!record) records.set(id, (record = seededRecord(id)));
    return record;
  };
  const server = new Server({ name: "atlas-demo", version }, { capabilities: { tools: {} } });
  server.setRequestHandler(ListToolsRequestSchema, () => ({ tools: DEMO_TOOLS }));
  server.setRequestHandler(CallToolRequestSchema, (request) => {
    const args = (request.params.arguments ?? {}) as Record<string, unknown>;
    if (!DEMO_TOOLS.some((tool) => tool.name === request.params.name)) throw new McpError(ErrorCode.InvalidParams, `Unknown tool: ${request.params.name}`);
    const given = args.beneficiary_id ?? args.citizen_id;
    const id = typeof given === "string" && given.trim() ? given.trim() : undefined;
    if (!id) return { ...text("beneficiary_id is required"), isError: true };
    const record = recordFor(id);
    switch (request.params.name) {
      case "check_payment_status":
        return text(`Beneficiary ${id}: payment ${record.status}; ${record.monthly_amount} monthly; next repayment due ${record.due_date}.`, {
          beneficiary_id: id,
          status: record.status,
          monthly_amount: record.monthly_amount,
          due_date: record.due_date,
        });
      case "request_payment_extension": {
        const days = args.days === undefined ? 30 : Number(args.days);
        if (!Number.isInteger(days) || days < 1 || days > 180) return { ...text("days must be a whole number from 1 to 180"), isError: true };
        const reason = typeof args.reason === "string" ? args.reason.trim() : "";
        const due = new Date(`${record.due_date}T00:00:00Z`);
        due.setUTCDate(due.getUTCDate() + days);
        const previous = record.due_date;
        record.due_date = due.toISOString().slice(0, 10);
        record.status = "EXTENDED";
        return text(`Extension granted for beneficiary ${id}: repayment moved from ${previous} to ${record.due_date} (${days} days)${reason ? `; reason: ${reason}` : ""}.`, {
          beneficiary_id: id,
          previous_due_date: previous,
          new_due_date: record.due_date,
          ...(reason ? { reason } : {}),
        });
      }
      default: {
        const changes = changesOf(args);
        if (typeof changes === "string") return { ...text(changes), isError: true };
        const applied: Record<string, { previous: string; value: string }> = {};
        for (const [field, value] of Object.entries(changes) as [RecordField, string][]) {
          applied[field] = { previous: record[field], value };
          record[field] = value;
        }
        const summary = Object.entries(applied).map(([field, change]) => `${field} '${change.previous}' → '${change.value}'`).join(", ");
        return text(`Welfare record of beneficiary ${id} updated: ${summary}.`, { beneficiary_id: id, changes: applied });
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
