import { Server } from "@modelcontextprotocol/sdk/server/index.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { CallToolRequestSchema, ListToolsRequestSchema } from "@modelcontextprotocol/sdk/types.js";
import { createServer, type IncomingMessage, type Server as HttpServer } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { UpstreamSet } from "../../src/mcp/upstreams.js";

/** A real Streamable HTTP MCP server on 127.0.0.1 that insists on an Authorization header. */
describe("Streamable HTTP upstream", () => {
  const seen: (string | undefined)[] = [];
  let url = "";
  let close = () => {};

  beforeAll(async () => {
    const http = createServer(async (req: IncomingMessage, res) => {
      seen.push(req.headers.authorization);
      if (req.headers.authorization !== "Bearer s3cret") {
        res.writeHead(401).end();
        return;
      }
      const server = new Server({ name: "http-fixture", version: "1" }, { capabilities: { tools: {} } });
      server.setRequestHandler(ListToolsRequestSchema, () => ({
        tools: [{ name: "ping", inputSchema: { type: "object" }, annotations: { readOnlyHint: true } }],
      }));
      server.setRequestHandler(CallToolRequestSchema, () => ({ content: [{ type: "text", text: "pong" }] }));
      const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
      await server.connect(transport);
      await transport.handleRequest(req, res);
    });
    await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve));
    url = `http://127.0.0.1:${(http.address() as AddressInfo).port}/mcp`;
    close = () => http.close();
  });
  afterAll(() => close());

  it("connects with the configured headers, lists and calls tools", async () => {
    const logs: string[] = [];
    const set = new UpstreamSet([{ name: "remote", config: { url, headers: { Authorization: "Bearer s3cret" } } }], {
      env: {}, log: (line) => logs.push(line), toolTimeoutMs: 5000, startupTimeoutMs: 5000, version: "test",
    });
    await set.ready;
    expect(set.catalogue().map((entry) => entry.name)).toEqual(["ping"]);
    expect(await set.call({ upstream: "remote", tool: "ping", args: {} })).toMatchObject({ content: [{ type: "text", text: "pong" }] });
    expect(seen.every((header) => header === "Bearer s3cret")).toBe(true);
    await set.close();
  });

  it("reports a refused upstream and keeps going", async () => {
    const logs: string[] = [];
    const set = new UpstreamSet([{ name: "remote", config: { url, headers: {} } }], {
      env: {}, log: (line) => logs.push(line), toolTimeoutMs: 5000, startupTimeoutMs: 5000, version: "test",
    });
    await set.ready;
    expect(set.catalogue()).toEqual([]);
    expect(set.status()[0]).toMatchObject({ name: "remote", ok: false });
    expect(logs.some((line) => line.startsWith("upstream remote: failed to connect"))).toBe(true);
    await set.close();
  });
});

/**
 * A hand-written Streamable HTTP upstream (JSON responses, no SSE) that can "restart": it then forgets every session
 * and answers 404 to them, as a restarted server does.
 */
describe("a Streamable HTTP upstream that restarts", () => {
  let http: HttpServer;
  let sessions = new Set<string>();
  let next = 0;
  const methods: string[] = [];
  let url = "";
  let close = () => {};

  beforeAll(async () => {
    http = createServer((req, res) => {
      if (req.method !== "POST") {
        res.writeHead(405).end();
        return;
      }
      let body = "";
      req.setEncoding("utf8").on("data", (chunk: string) => (body += chunk)).on("end", () => {
        const message = JSON.parse(body) as { id?: number; method?: string; params?: Record<string, unknown> };
        methods.push(message.method ?? "response");
        const session = req.headers["mcp-session-id"];
        if (message.method === "initialize") {
          const id = `s${++next}`;
          sessions.add(id);
          res.writeHead(200, { "content-type": "application/json", "mcp-session-id": id });
          res.end(JSON.stringify({ jsonrpc: "2.0", id: message.id, result: { protocolVersion: message.params!.protocolVersion, capabilities: { tools: {} }, serverInfo: { name: "restarting", version: "1" } } }));
          return;
        }
        if (typeof session !== "string" || !sessions.has(session)) {
          res.writeHead(404, { "content-type": "application/json" }).end(JSON.stringify({ jsonrpc: "2.0", id: null, error: { code: -32001, message: "Session not found" } }));
          return;
        }
        if (message.id === undefined) {
          res.writeHead(202).end();
          return;
        }
        const result = message.method === "tools/list"
          ? { tools: [{ name: "ping", inputSchema: { type: "object" }, annotations: { readOnlyHint: true } }] }
          : { content: [{ type: "text", text: `pong from ${session}` }] };
        res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ jsonrpc: "2.0", id: message.id, result }));
      });
    });
    await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve));
    url = `http://127.0.0.1:${(http.address() as AddressInfo).port}/mcp`;
    close = () => http.close();
  });
  afterAll(() => close());

  it("a server that is down at start-up is connected to once it answers", async () => {
    const logs: string[] = [];
    const port = Number(new URL(url).port);
    await new Promise<void>((resolve) => http.close(() => resolve()));
    const set = new UpstreamSet([{ name: "remote", config: { url, headers: {} } }], {
      env: {}, log: (line) => logs.push(line), toolTimeoutMs: 5000, startupTimeoutMs: 5000, version: "test", restartBaseMs: 50, restartMaxMs: 200,
    });
    await set.ready;
    expect(set.catalogue()).toEqual([]);
    expect(logs.some((line) => line.startsWith("upstream remote: failed to connect"))).toBe(true);
    await new Promise<void>((resolve) => http.listen(port, "127.0.0.1", resolve));
    await expect.poll(() => set.catalogue().map((entry) => entry.name), { timeout: 10_000 }).toEqual(["ping"]);
    expect(logs.some((line) => /^upstream remote: reconnecting in \d+ ms/.test(line))).toBe(true);
    await set.close();
  });

  it("answering 404 for its session makes the gateway start a new session and send the call once more", async () => {
    sessions = new Set();
    next = 0;
    methods.length = 0;
    const logs: string[] = [];
    const set = new UpstreamSet([{ name: "remote", config: { url, headers: {} } }], {
      env: {}, log: (line) => logs.push(line), toolTimeoutMs: 5000, startupTimeoutMs: 5000, version: "test",
    });
    await set.ready;
    expect(await set.call({ upstream: "remote", tool: "ping", args: {} })).toMatchObject({ content: [{ text: "pong from s1" }] });
    sessions = new Set(); // the server restarted
    expect(await set.call({ upstream: "remote", tool: "ping", args: {} })).toMatchObject({ content: [{ text: "pong from s2" }] });
    expect(await set.call({ upstream: "remote", tool: "ping", args: {} })).toMatchObject({ content: [{ text: "pong from s2" }] });
    expect(logs).toContain("upstream remote: its session is gone (HTTP 404); starting a new session");
    expect(methods.filter((method) => method === "initialize")).toHaveLength(2);
    await set.close();
  });
});
