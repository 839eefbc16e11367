import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { InMemoryTransport } from "@modelcontextprotocol/sdk/inMemory.js";
import { CallToolResultSchema, type CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { describe, expect, it } from "vitest";
import { createDemoServer } from "../../src/demo/tools.js";

// The demo tools take the argument names the original system's agents send (DESIGN.md; issue 13).

async function demoClient(): Promise<Client> {
  const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
  await createDemoServer("test").connect(serverSide);
  const client = new Client({ name: "t", version: "1" });
  await client.connect(clientSide);
  return client;
}

const call = (client: Client, name: string, args: Record<string, unknown>) =>
  client.request({ method: "tools/call", params: { name, arguments: args } }, CallToolResultSchema) as Promise<CallToolResult>;
const text = (result: CallToolResult) => (result.content[0] as { text: string }).text;

describe("demo tools", () => {
  it("declare beneficiary_id, reason and changes as their arguments", async () => {
    const { tools } = await (await demoClient()).listTools();
    const schema = (name: string) => tools.find((tool) => tool.name === name)!.inputSchema;
    expect(schema("check_payment_status").required).toEqual(["beneficiary_id"]);
    expect(schema("request_payment_extension").required).toEqual(["beneficiary_id", "reason"]);
    expect(schema("modify_welfare_record").required).toEqual(["beneficiary_id", "changes"]);
  });

  it.each([
    ["check_payment_status", { beneficiary_id: "B-1" }, /^Beneficiary B-1: payment /],
    ["request_payment_extension", { beneficiary_id: "B-1", reason: "hardship" }, /repayment moved from .* \(30 days\); reason: hardship\.$/],
    ["request_payment_extension", { beneficiary_id: "B-1", reason: "x", days: 10 }, /\(10 days\)/],
    ["modify_welfare_record", { beneficiary_id: "B-1", changes: { address: "1 Neue Str.", monthly_amount: "EUR 700.00" } }, /updated: address '.*' → '1 Neue Str\.', monthly_amount '.*' → 'EUR 700\.00'\.$/],
    // earlier releases' names still work
    ["check_payment_status", { citizen_id: "C-1" }, /^Beneficiary C-1: payment /],
    ["modify_welfare_record", { citizen_id: "C-1", field: "address", value: "x" }, /address '.*' → 'x'/],
  ])("%s %j runs", async (tool, args, expected) => {
    const result = await call(await demoClient(), tool, args);
    expect(result.isError).toBeFalsy();
    expect(text(result)).toMatch(expected);
  });

  it.each([
    ["check_payment_status", {}, "beneficiary_id is required"],
    ["request_payment_extension", { beneficiary_id: "B-1", days: 0 }, "days must be a whole number from 1 to 180"],
    ["modify_welfare_record", { beneficiary_id: "B-1" }, "changes must be an object"],
    ["modify_welfare_record", { beneficiary_id: "B-1", changes: {} }, "changes names no field to change"],
    ["modify_welfare_record", { beneficiary_id: "B-1", changes: { status: "PAID" } }, "field(s) 'status' cannot be changed"],
  ])("%s %j is a tool error naming the problem", async (tool, args, problem) => {
    const result = await call(await demoClient(), tool, args);
    expect(result.isError).toBe(true);
    expect(text(result)).toContain(problem);
  });
});
