import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { InMemoryTransport } from "@modelcontextprotocol/sdk/inMemory.js";
import { Server } from "@modelcontextprotocol/sdk/server/index.js";
import { CallToolRequestSchema, CallToolResultSchema, ListToolsRequestSchema, McpError, type CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { afterEach, describe, expect, it } from "vitest";
import { demoUpstream } from "../../src/demo/tools.js";
import { createGateway, type GatewayDeps } from "../../src/mcp/gateway.js";
import { instancePaths } from "../../src/dataDir.js";
import type { LedgerSink } from "../../src/ledger/ledger.js";
import { scanLedger } from "../../src/ledger/ledger.js";
import { LocalEngine } from "../../src/governance/localEngine.js";
import { createRulesEvaluator } from "../../src/risk/assess.js";
import { UpstreamSet, type UpstreamSource } from "../../src/mcp/upstreams.js";
import { tempDir } from "../helpers.js";

/** A real upstream MCP server with read-only, destructive, structured-output and broken tools; it counts calls. */
function fixtureUpstream(name: string, extraTools: Record<string, unknown>[] = []) {
  const calls: { tool: string; args: Record<string, unknown> }[] = [];
  const source: UpstreamSource = {
    name,
    connect: async () => {
      const server = new Server({ name: `${name}-fixture`, version: "1" }, { capabilities: { tools: {} } });
      server.setRequestHandler(ListToolsRequestSchema, () => ({
        tools: [
          { name: "lookup", description: "read", inputSchema: { type: "object", properties: { id: { type: "string" } }, additionalProperties: false }, annotations: { readOnlyHint: true }, _meta: { vendor: "x" } },
          { name: "delete_row", inputSchema: { type: "object" }, annotations: { destructiveHint: true } },
          { name: "structured", inputSchema: { type: "object" }, outputSchema: { type: "object", properties: { n: { type: "number" } }, required: ["n"] } },
          { name: "bad tool", inputSchema: { type: "string" } },
          { name: "x".repeat(80), inputSchema: { type: "object" }, annotations: { readOnlyHint: true } },
          ...extraTools,
        ] as never,
      }));
      server.setRequestHandler(CallToolRequestSchema, (request) => {
        const args = (request.params.arguments ?? {}) as Record<string, unknown>;
        calls.push({ tool: request.params.name, args });
        if (request.params.name === "structured") return { content: [{ type: "text", text: "{\"n\":1}" }], structuredContent: { n: 1 } };
        return { content: [{ type: "text", text: `${name}:${request.params.name}:${JSON.stringify(args)}` }], _meta: { upstream: name } };
      });
      const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
      await server.connect(serverSide);
      return clientSide;
    },
  };
  return { source, calls };
}

interface Harness {
  client: Client;
  engine: LocalEngine;
  upstreams: UpstreamSet;
  dataDir: string;
  logs: string[];
  call(name: string, args?: Record<string, unknown>): Promise<CallToolResult>;
  close(): Promise<void>;
}

const open: Harness[] = [];
afterEach(async () => {
  for (const harness of open.splice(0)) await harness.close();
});

async function startHarness(sources: UpstreamSource[], options: { dataDir?: string; reviewTimeoutMs?: number; sink?: (path: string) => LedgerSink; prepareArguments?: GatewayDeps["prepareArguments"] } = {}): Promise<Harness> {
  const dataDir = options.dataDir ?? tempDir();
  const logs: string[] = [];
  const upstreams = new UpstreamSet(sources, { env: process.env, log: (line) => logs.push(line), toolTimeoutMs: 10_000, startupTimeoutMs: 5_000, version: "test" });
  const engine = LocalEngine.open({
    ledgerPath: instancePaths(dataDir, "main").ledger,
    instance: "main",
    evaluator: createRulesEvaluator({ threshold: 70, overrides: {} }),
    threshold: 70,
    reviewTimeoutMs: options.reviewTimeoutMs ?? 3_600_000,
    executor: (call, opts) => upstreams.call(call, opts),
    version: "test",
    ...(options.sink ? { sink: options.sink } : {}),
  });
  const gateway = createGateway({ upstreams, engine, version: "test", ...(options.prepareArguments ? { prepareArguments: options.prepareArguments } : {}) });
  const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
  await gateway.server.connect(serverSide);
  const client = new Client({ name: "test-agent", version: "9.9" });
  await client.connect(clientSide);
  void upstreams.ready.then(() => engine.resume());
  const harness: Harness = {
    client, engine, upstreams, dataDir, logs,
    call: (name, args = {}) => client.request({ method: "tools/call", params: { name, arguments: args } }, CallToolResultSchema),
    close: async () => {
      await client.close();
      await engine.close();
      await upstreams.close();
    },
  };
  open.push(harness);
  return harness;
}

const refOf = (result: CallToolResult) => /Ref: (evt_[0-9a-f]{8})/.exec(JSON.stringify(result.content))?.[1] ?? "";

describe("catalogue", () => {
  it("passes upstream tools through unchanged, skips malformed ones, and adds atlas_status", async () => {
    const { source } = fixtureUpstream("db");
    const h = await startHarness([source]);
    const { tools } = await h.client.listTools();
    const names = tools.map((tool) => tool.name);
    expect(names).toContain("lookup");
    expect(names).not.toContain("bad tool");
    expect(names.at(-1)).toBe("atlas_status");
    const lookup = tools.find((tool) => tool.name === "lookup")!;
    expect(lookup.inputSchema).toEqual({ type: "object", properties: { id: { type: "string" } }, additionalProperties: false });
    expect(lookup.annotations).toEqual({ readOnlyHint: true });
    expect(tools.find((tool) => tool.name === "structured")!.outputSchema).toBeDefined();
    for (const name of names) expect(name).toMatch(/^[a-zA-Z0-9_-]{1,64}$/);
    expect(h.logs.some((line) => line.includes("skipped tool 'bad tool': inputSchema.type"))).toBe(true);
  });

  it("prefixes names with several upstreams and maps them back exactly", async () => {
    const a = fixtureUpstream("alpha");
    const b = fixtureUpstream("beta");
    const h = await startHarness([a.source, b.source]);
    const { tools } = await h.client.listTools();
    expect(tools.map((tool) => tool.name)).toEqual(expect.arrayContaining(["alpha__lookup", "beta__lookup", "alpha__delete_row"]));
    const long = tools.find((tool) => tool.name.startsWith("beta__xxx"))!;
    expect(long.name.length).toBeLessThanOrEqual(64);
    await h.call("beta__lookup", { id: "7" });
    await h.call(long.name, {});
    expect(b.calls).toEqual([{ tool: "lookup", args: { id: "7" } }, { tool: "x".repeat(80), args: {} }]);
    expect(a.calls).toEqual([]);
  });

  it("keeps serving the other upstreams when one fails to start", async () => {
    const good = fixtureUpstream("good");
    const h = await startHarness([{ name: "broken", config: { command: "/nonexistent/mcp-server", args: [], env: {} } }, good.source]);
    const { tools } = await h.client.listTools();
    expect(tools.some((tool) => tool.name === "good__lookup")).toBe(true);
    expect(h.logs.some((line) => line.startsWith("upstream broken: failed to start"))).toBe(true);
  });
});

describe("governed calls", () => {
  it("runs a low-risk call at once and returns the upstream result unchanged", async () => {
    const { source, calls } = fixtureUpstream("db");
    const h = await startHarness([source]);
    const result = await h.call("lookup", { id: "42" });
    expect(result).toEqual({ content: [{ type: "text", text: "db:lookup:{\"id\":\"42\"}" }], _meta: { upstream: "db" } });
    expect(calls).toHaveLength(1);
  });

  it("holds a high-risk call, dedupes an identical one, and runs it once after approval", async () => {
    const { source, calls } = fixtureUpstream("db");
    const h = await startHarness([source]);
    const held = await h.call("delete_row", { id: "1" });
    expect((held.content[0] as { text: string }).text).toMatch(/^PENDING REVIEW \(Ref: evt_[0-9a-f]{8}\)\. Action queued subject to governance checks\.$/);
    expect(held.isError).toBeFalsy();
    const ref = refOf(held);
    expect(held.structuredContent).toMatchObject({ status: "pending_review", ref });
    expect(refOf(await h.call("delete_row", { id: "1" }))).toBe(ref);
    expect(refOf(await h.call("delete_row", { id: "2" }))).not.toBe(ref);
    expect(calls).toHaveLength(0);

    const waiting = h.call("atlas_status", { ref, wait_seconds: 10 });
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect((await h.engine.decide({ ref, decision: "approved", reviewer: "alice", reason: "checked" })).status).toBe("applied");
    const status = await waiting;
    expect(status.structuredContent).toMatchObject({ ref, status: "executed", outcome: "ok", decision: { decision: "approved", reviewer: "alice" } });
    expect(JSON.stringify(status.content)).toContain("db:delete_row:{\\\"id\\\":\\\"1\\\"}");
    expect((await h.engine.decide({ ref, decision: "approved", reviewer: "bob" })).status).toBe("already_decided");
    expect(calls.filter((call) => call.tool === "delete_row" && call.args.id === "1")).toHaveLength(1);
  });

  it("gives identical calls made in parallel one ref, so one approval runs the action once", async () => {
    const { source, calls } = fixtureUpstream("db");
    const h = await startHarness([source]);
    await h.upstreams.ready;
    const [first, second] = await Promise.all([h.call("delete_row", { id: "7" }), h.call("delete_row", { id: "7" })]);
    const ref = refOf(first);
    expect(refOf(second)).toBe(ref);
    expect(h.engine.pending().map((view) => view.ref)).toEqual([ref]);
    await h.engine.decide({ ref, decision: "approved", reviewer: "alice" });
    expect((await h.engine.waitForOutcome(ref, 5000))?.status).toBe("executed");
    expect(calls).toHaveLength(1);
  });

  it("denies: the call never runs and atlas_status says why with isError", async () => {
    const { source, calls } = fixtureUpstream("db");
    const h = await startHarness([source]);
    const ref = refOf(await h.call("delete_row", { id: "9" }));
    await h.engine.decide({ ref, decision: "denied", reviewer: "carol", reason: "not today" });
    const status = await h.call("atlas_status", { ref });
    expect(status.isError).toBe(true);
    expect(JSON.stringify(status.content)).toMatch(/DENIED.*carol.*not today/);
    expect(calls).toHaveLength(0);
  });

  it("expires a held call at its deadline as a denial", async () => {
    const { source, calls } = fixtureUpstream("db");
    const h = await startHarness([source], { reviewTimeoutMs: 200 });
    const ref = refOf(await h.call("delete_row", { id: "3" }));
    const status = await h.call("atlas_status", { ref, wait_seconds: 5 });
    expect(status.structuredContent).toMatchObject({ status: "expired", decision: { decision: "denied", source: "timeout" } });
    expect(status.isError).toBe(true);
    expect((await h.engine.decide({ ref, decision: "approved", reviewer: "late" })).status).toBe("already_decided");
    expect(calls).toHaveLength(0);
  });

  it("answers a held call on a tool with outputSchema as isError, so output validation cannot break", async () => {
    const { source } = fixtureUpstream("db");
    const h = await startHarness([source]);
    // callTool validates structuredContent against the tool's outputSchema, as strict clients do.
    await h.client.listTools();
    const result = await h.client.callTool({ name: "structured", arguments: {} });
    expect(result.isError).toBe(true);
    expect(result.structuredContent).toBeUndefined();
    expect((result.content as { text: string }[])[0]!.text).toMatch(/^PENDING REVIEW \(Ref: evt_/);
  });

  it("rejects unknown tools and malformed atlas_status calls as JSON-RPC errors", async () => {
    const { source } = fixtureUpstream("db");
    const h = await startHarness([source]);
    await expect(h.call("no_such_tool")).rejects.toBeInstanceOf(McpError);
    await expect(h.call("atlas_status", { ref: "nope" })).rejects.toThrow(/evt_/);
    const unknown = await h.call("atlas_status", { ref: "evt_00000000" });
    expect(unknown.isError).toBe(true);
  });

  it("fails closed when the ledger cannot be written: nothing reaches the upstream", async () => {
    const { source, calls } = fixtureUpstream("db");
    let broken = false;
    const { openFileSink } = await import("../../src/ledger/ledger.js");
    const h = await startHarness([source], {
      sink: (path) => {
        const real = openFileSink(path);
        return { ...real, write: (text) => {
          if (broken) throw new Error("EIO: disk gone");
          real.write(text);
        } };
      },
    });
    broken = true;
    for (const tool of ["lookup", "delete_row"]) {
      const result = await h.call(tool, { id: "1" });
      expect(result.isError).toBe(true);
      expect(JSON.stringify(result.content)).toMatch(/ledger cannot be written.*fail closed/);
    }
    expect(calls).toHaveLength(0);
  });

  it("governs the demo tools with their built-in scores", async () => {
    const h = await startHarness([demoUpstream("test")]);
    const ok = await h.call("check_payment_status", { beneficiary_id: "B-7" });
    expect(JSON.stringify(ok.content)).toContain("Beneficiary B-7");
    for (const [tool, args] of [["request_payment_extension", { beneficiary_id: "B-7", reason: "hardship" }], ["modify_welfare_record", { beneficiary_id: "B-7", changes: { address: "x" } }]] as const) {
      const held = await h.call(tool, args);
      const view = h.engine.get(refOf(held))!;
      expect(view.status).toBe("pending");
      expect(view.assessment!.score).toBeGreaterThanOrEqual(tool === "modify_welfare_record" ? 90 : 70);
    }
  });
});

describe("argument validation", () => {
  it("refuses a call whose arguments break the tool's inputSchema at once, with the errors: never scored, held or run", async () => {
    const modern = {
      name: "modern",
      inputSchema: { $schema: "https://json-schema.org/draft/2020-12/schema", type: "object", $defs: { n: { type: "integer" } }, properties: { n: { $ref: "#/$defs/n" } }, required: ["n"] },
      annotations: { readOnlyHint: true },
    };
    const { source, calls } = fixtureUpstream("db", [modern]);
    const h = await startHarness([source, demoUpstream("test")]);
    const bad = await h.call("db__lookup", { id: 5, extra: true });
    expect(bad.isError).toBe(true);
    expect(JSON.stringify(bad.content)).toContain("atlas-gateway: invalid arguments for tool db__lookup: (arguments): unexpected property 'extra'; /id: must be string");
    // The seed-style call that used to be held, approved, then fail: refused before anyone is asked.
    const seed = await h.call("demo__request_payment_extension", {});
    expect(seed.isError).toBe(true);
    expect(JSON.stringify(seed.content)).toContain("must have required property");
    expect(h.engine.pending()).toEqual([]);
    expect((await h.call("db__modern", { n: 1.5 })).isError).toBe(true);
    expect((await h.call("db__modern", { n: 2 })).isError).toBeUndefined();
    expect(calls.map((call) => call.tool)).toEqual(["modern"]);
  });
});

describe("large arguments (issue 10)", () => {
  it("a call the agent cancels while its arguments are being prepared is not admitted, recorded or run", async () => {
    const { source, calls } = fixtureUpstream("db");
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    let preparing!: () => void;
    const started = new Promise<void>((resolve) => (preparing = resolve));
    const h = await startHarness([source], { prepareArguments: async () => { preparing(); await released; } });
    await h.upstreams.ready;
    const controller = new AbortController();
    const call = h.client.request({ method: "tools/call", params: { name: "lookup", arguments: { id: "x".repeat(2 * 1024 * 1024) } } }, CallToolResultSchema, { signal: controller.signal }).catch((error: Error) => error);
    await started;
    controller.abort("the user changed their mind");
    expect(await call).toBeInstanceOf(Error);
    await h.client.ping(); // the cancellation, sent before this ping, has reached the gateway
    release();
    await h.client.ping();
    await h.engine.close(); // flushes whatever the call would have recorded
    expect(scanLedger(instancePaths(h.dataDir, "main").ledger).records.map((record) => record.type).filter((type) => type.startsWith("request.") || type.startsWith("execution."))).toEqual([]);
    expect(calls).toEqual([]);
  });
});

describe("durability across restarts", () => {
  it("a pending call survives a restart and runs once when approved afterwards", async () => {
    const dataDir = tempDir();
    const first = fixtureUpstream("db");
    const h1 = await startHarness([first.source], { dataDir });
    const ref = refOf(await h1.call("delete_row", { id: "5" }));
    await h1.close();
    open.splice(open.indexOf(h1), 1);

    const second = fixtureUpstream("db");
    const h2 = await startHarness([second.source], { dataDir });
    expect(h2.engine.get(ref)?.status).toBe("pending");
    expect(refOf(await h2.call("delete_row", { id: "5" }))).toBe(ref);
    await h2.engine.decide({ ref, decision: "approved", reviewer: "dave" });
    expect((await h2.engine.waitForOutcome(ref, 5000))?.status).toBe("executed");
    expect(first.calls).toHaveLength(0);
    expect(second.calls).toHaveLength(1);
    expect(scanLedger(instancePaths(dataDir, "main").ledger).problem).toBeUndefined();
  });
});
