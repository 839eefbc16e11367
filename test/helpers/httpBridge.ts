import { spawn, type ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { StreamableHTTPServerTransport, type EventStore } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import type { JSONRPCMessage, RequestId } from "@modelcontextprotocol/sdk/types.js";
import { StreamTransport } from "../../src/mcp/stdioTransport.js";

export interface HttpBridge {
  url: string;
  /** stderr of every process the bridge started. */
  stderr(): string;
  close(): Promise<void>;
}

/** Events kept for SSE resumption (Last-Event-ID), per stream. */
function memoryEventStore(): EventStore {
  const events: { id: string; stream: string; message: JSONRPCMessage }[] = [];
  return {
    async storeEvent(stream, message) {
      const id = `${stream}::${String(events.length).padStart(8, "0")}`;
      events.push({ id, stream, message });
      return id;
    },
    async replayEventsAfter(lastEventId, { send }) {
      const stream = lastEventId.split("::")[0]!;
      for (const event of events) if (event.stream === stream && event.id > lastEventId) await send(event.id, event.message);
      return stream;
    },
  };
}

/**
 * A test-only Streamable HTTP front for a stdio MCP server: each HTTP session starts its own process (`command`) and
 * relays JSON-RPC both ways. Messages the process sends that are not responses travel on the stream of the request
 * they belong to (progress by its token, anything else the latest request still open), as an HTTP-native server
 * would send them. Hosts other than localhost are refused (DNS rebinding protection). A `tools/call` of
 * `test_reconnection` has its SSE stream closed mid-call so the client must resume (the transport's job, SEP-1699).
 */
export async function startHttpBridge(command: string, args: string[], env: NodeJS.ProcessEnv): Promise<HttpBridge> {
  const sessions = new Map<string, { transport: StreamableHTTPServerTransport; child: ChildProcess }>();
  const children = new Set<ChildProcess>();
  let stderr = "";
  let allowedHosts: string[] = [];

  const newSession = () => {
    const child = spawn(command, args, { env, stdio: ["pipe", "pipe", "pipe"] });
    children.add(child);
    child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
    child.once("exit", () => children.delete(child));
    const upstream = new StreamTransport(child.stdout!, child.stdin!);
    const open: { id: RequestId; progressToken?: unknown }[] = [];
    const transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: randomUUID,
      eventStore: memoryEventStore(),
      retryInterval: 500,
      enableDnsRebindingProtection: true,
      allowedHosts,
      onsessioninitialized: (id) => void sessions.set(id, { transport, child }),
    });
    transport.onmessage = (message) => {
      if ("method" in message && "id" in message) {
        const params = message.params as { name?: string; _meta?: { progressToken?: unknown } } | undefined;
        open.push({ id: message.id, progressToken: params?._meta?.progressToken });
        if (message.method === "tools/call" && params?.name === "test_reconnection") setTimeout(() => transport.closeSSEStream(message.id), 50);
      }
      void upstream.send(message).catch(() => {});
    };
    upstream.onmessage = (message) => {
      if (!("method" in message) && "id" in message) {
        const index = open.findIndex((entry) => entry.id === message.id);
        if (index !== -1) open.splice(index, 1);
        void transport.send(message).catch(() => {});
        return;
      }
      let related: RequestId | undefined;
      if ("method" in message && message.method === "notifications/progress") {
        related = open.find((entry) => entry.progressToken === (message.params as { progressToken?: unknown }).progressToken)?.id;
      } else {
        related = open.at(-1)?.id;
      }
      void transport.send(message, related !== undefined ? { relatedRequestId: related } : undefined).catch(() => {});
    };
    transport.onclose = () => {
      if (transport.sessionId) sessions.delete(transport.sessionId);
      child.stdin?.end();
    };
    void upstream.start();
    return transport;
  };

  const readBody = (request: IncomingMessage) =>
    new Promise<unknown>((resolve) => {
      const chunks: Buffer[] = [];
      request.on("data", (chunk: Buffer) => chunks.push(chunk));
      request.on("end", () => {
        try {
          resolve(chunks.length ? JSON.parse(Buffer.concat(chunks).toString("utf8")) : undefined);
        } catch {
          resolve(undefined);
        }
      });
    });

  const handle = async (request: IncomingMessage, response: ServerResponse) => {
    if (!allowedHosts.includes(request.headers.host ?? "")) {
      response.writeHead(403, { "content-type": "application/json" }).end(JSON.stringify({ jsonrpc: "2.0", error: { code: -32000, message: "Host not allowed" }, id: null }));
      return;
    }
    const body = request.method === "POST" ? await readBody(request) : undefined;
    const sessionId = request.headers["mcp-session-id"];
    const existing = typeof sessionId === "string" ? sessions.get(sessionId) : undefined;
    if (existing) return existing.transport.handleRequest(request, response, body);
    const isInitialize = (body as { method?: unknown } | undefined)?.method === "initialize";
    if (request.method === "POST" && sessionId === undefined && isInitialize) return newSession().handleRequest(request, response, body);
    response.writeHead(sessionId ? 404 : 400, { "content-type": "application/json" }).end(JSON.stringify({ jsonrpc: "2.0", error: { code: -32000, message: sessionId ? "Session not found" : "Missing session id" }, id: null }));
  };

  const server = createServer((request, response) => {
    handle(request, response).catch((error: Error) => {
      if (!response.headersSent) response.writeHead(500).end(error.message);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  allowedHosts = [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`];
  return {
    url: `http://127.0.0.1:${port}/mcp`,
    stderr: () => stderr,
    close: async () => {
      for (const { transport } of sessions.values()) await transport.close().catch(() => {});
      const exits = [...children].map((child) => new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once("exit", () => resolve());
        child.stdin?.end();
        setTimeout(() => child.kill("SIGKILL"), 3000).unref();
      }));
      await Promise.all(exits);
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
