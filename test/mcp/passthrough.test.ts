import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { InMemoryTransport } from "@modelcontextprotocol/sdk/inMemory.js";
import { Server } from "@modelcontextprotocol/sdk/server/index.js";
import {
  CallToolRequestSchema,
  CompleteRequestSchema,
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  GetPromptRequestSchema,
  ListPromptsRequestSchema,
  ListResourcesRequestSchema,
  ListResourceTemplatesRequestSchema,
  ListRootsRequestSchema,
  ListToolsRequestSchema,
  LoggingMessageNotificationSchema,
  McpError,
  ReadResourceRequestSchema,
  ResourceListChangedNotificationSchema,
  ResourceUpdatedNotificationSchema,
  SetLevelRequestSchema,
  SubscribeRequestSchema,
  UnsubscribeRequestSchema,
  type ClientCapabilities,
  type LoggingMessageNotification,
  type ServerCapabilities,
} from "@modelcontextprotocol/sdk/types.js";
import { afterEach, describe, expect, it } from "vitest";
import { instancePaths } from "../../src/dataDir.js";
import { LocalEngine } from "../../src/governance/localEngine.js";
import { createGateway, GATEWAY_INSTRUCTIONS } from "../../src/mcp/gateway.js";
import { UpstreamSet, type UpstreamSource } from "../../src/mcp/upstreams.js";
import { createRulesEvaluator } from "../../src/risk/assess.js";
import { tempDir } from "../helpers.js";

interface FixtureOptions {
  capabilities?: ServerCapabilities;
  instructions?: string;
  /** Items per page the upstream answers lists with. */
  pageSize?: number;
}

/**
 * A real upstream with resources (two pages), a template, prompts, completions and logging; its `ask` tool asks the
 * client for sampling, elicitation and roots, and `shout` logs. It records what it saw.
 */
function richUpstream(name: string, options: FixtureOptions = {}) {
  const seen: { clientCapabilities?: ClientCapabilities; levels: string[]; subscribed: string[]; reads: string[]; prompts: string[] } = { levels: [], subscribed: [], reads: [], prompts: [] };
  let server!: Server;
  const capabilities: ServerCapabilities = options.capabilities ?? {
    tools: {},
    resources: { subscribe: true, listChanged: true },
    prompts: { listChanged: true },
    completions: {},
    logging: {},
  };
  const pageSize = options.pageSize ?? 2;
  const resources = [1, 2, 3].map((n) => ({ uri: `memo://${name}/note/${n}`, name: `note-${n}`, mimeType: "text/plain" }));
  const page = <T>(items: T[], cursor: string | undefined) => {
    const start = cursor ? Number(cursor) : 0;
    return { items: items.slice(start, start + pageSize), ...(start + pageSize < items.length ? { nextCursor: String(start + pageSize) } : {}) };
  };
  const source: UpstreamSource = {
    name,
    connect: async () => {
      server = new Server({ name: `${name}-rich`, version: "1" }, { capabilities, ...(options.instructions ? { instructions: options.instructions } : {}) });
      server.oninitialized = () => {
        seen.clientCapabilities = server.getClientCapabilities();
      };
      if (capabilities.tools) {
        server.setRequestHandler(ListToolsRequestSchema, () => ({
          tools: [
            { name: "ask", inputSchema: { type: "object" }, annotations: { readOnlyHint: true } },
            { name: "shout", inputSchema: { type: "object" }, annotations: { readOnlyHint: true } },
          ],
        }));
        server.setRequestHandler(CallToolRequestSchema, async (request) => {
          if (request.params.name === "shout") {
            await server.sendLoggingMessage({ level: "warning", logger: "noise", data: "loud" });
            await server.sendLoggingMessage({ level: "debug", data: "quiet" });
            return { content: [{ type: "text", text: "shouted" }] };
          }
          const sampled = await server.createMessage({ messages: [{ role: "user", content: { type: "text", text: "hi" } }], maxTokens: 5 });
          const elicited = await server.elicitInput({ message: "name?", requestedSchema: { type: "object", properties: { who: { type: "string" } } } });
          const roots = await server.listRoots();
          return { content: [{ type: "text", text: JSON.stringify({ sampled: sampled.content, elicited: elicited.content, roots: roots.roots.map((root) => root.uri) }) }] };
        });
      }
      if (capabilities.resources) {
        server.setRequestHandler(ListResourcesRequestSchema, (request) => {
          const { items, nextCursor } = page(resources, request.params?.cursor);
          return { resources: items, ...(nextCursor ? { nextCursor } : {}) };
        });
        server.setRequestHandler(ListResourceTemplatesRequestSchema, () => ({ resourceTemplates: [{ uriTemplate: `memo://${name}/note/{n}`, name: "note" }] }));
        server.setRequestHandler(ReadResourceRequestSchema, (request) => {
          seen.reads.push(request.params.uri);
          return { contents: [{ uri: request.params.uri, text: `body of ${request.params.uri}` }] };
        });
        server.setRequestHandler(SubscribeRequestSchema, async (request) => {
          seen.subscribed.push(request.params.uri);
          setImmediate(() => void server.sendResourceUpdated({ uri: request.params.uri }));
          return {};
        });
        server.setRequestHandler(UnsubscribeRequestSchema, () => ({}));
      }
      if (capabilities.prompts) {
        server.setRequestHandler(ListPromptsRequestSchema, () => ({ prompts: [{ name: "greet", arguments: [{ name: "who", required: true }] }] }));
        server.setRequestHandler(GetPromptRequestSchema, (request) => {
          seen.prompts.push(request.params.name);
          return { messages: [{ role: "user", content: { type: "text", text: `hello ${request.params.arguments?.who} from ${name}` } }] };
        });
      }
      if (capabilities.completions) {
        server.setRequestHandler(CompleteRequestSchema, (request) => ({
          completion: { values: [`${request.params.ref.type}:${"name" in request.params.ref ? request.params.ref.name : request.params.ref.uri}:${request.params.argument.value}`] },
        }));
      }
      if (capabilities.logging) {
        server.setRequestHandler(SetLevelRequestSchema, (request) => {
          seen.levels.push(request.params.level);
          return {};
        });
      }
      const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
      await server.connect(serverSide);
      return clientSide;
    },
  };
  return { source, seen, server: () => server };
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

async function connectAgent(sources: UpstreamSource[], agentCapabilities: ClientCapabilities = {}, gatewayOptions: { pageSize?: number } = {}) {
  const logs: string[] = [];
  const upstreams = new UpstreamSet(sources, { env: process.env, log: (line) => logs.push(line), toolTimeoutMs: 10_000, startupTimeoutMs: 5_000, version: "test", deferStart: true });
  const engine = LocalEngine.open({
    ledgerPath: instancePaths(tempDir(), "main").ledger,
    instance: "main",
    evaluator: createRulesEvaluator({ threshold: 70, overrides: {} }),
    threshold: 70,
    reviewTimeoutMs: 3_600_000,
    executor: (call, opts) => upstreams.call(call, opts),
    version: "test",
  });
  const gateway = createGateway({ upstreams, engine, version: "test", ...gatewayOptions });
  const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
  await gateway.server.connect(serverSide);
  const client = new Client({ name: "agent", version: "1" }, { capabilities: agentCapabilities });
  await client.connect(clientSide);
  void upstreams.ready.then(() => engine.resume());
  cleanups.push(async () => {
    await client.close();
    await gateway.server.close();
    await upstreams.close();
    await engine.close();
  });
  return { client, logs, upstreams };
}

describe("capabilities and instructions", () => {
  it("advertises exactly what one upstream offers and keeps its instructions after the gateway's own", async () => {
    const rich = richUpstream("rich", { instructions: "Use notes wisely." });
    const { client } = await connectAgent([rich.source]);
    expect(client.getServerCapabilities()).toEqual({
      tools: { listChanged: true },
      resources: { subscribe: true, listChanged: true },
      prompts: { listChanged: true },
      completions: {},
      logging: {},
    });
    const instructions = client.getInstructions()!;
    expect(instructions.startsWith(GATEWAY_INSTRUCTIONS)).toBe(true);
    expect(instructions).toContain("Instructions from upstream 'rich':\nUse notes wisely.");
  });

  it("offers no capability an upstream lacks, and answers its methods 'Method not found'", async () => {
    const bare = richUpstream("bare", { capabilities: { tools: {} } });
    const { client } = await connectAgent([bare.source]);
    expect(client.getServerCapabilities()).toEqual({ tools: { listChanged: true } });
    for (const method of ["resources/list", "prompts/list", "resources/templates/list"]) {
      const error = await client.request({ method, params: {} } as never, ListResourcesRequestSchema.shape.params as never).catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(McpError);
      expect((error as McpError).code).toBe(-32601);
    }
  });

  it("merges the capabilities of several upstreams", async () => {
    const a = richUpstream("a", { capabilities: { tools: {}, prompts: {} } });
    const b = richUpstream("b", { capabilities: { resources: { listChanged: true } } });
    const { client } = await connectAgent([a.source, b.source]);
    expect(client.getServerCapabilities()).toEqual({ tools: { listChanged: true }, prompts: {}, resources: { listChanged: true } });
  });
});

describe("resources, prompts, completions, logging", () => {
  it("lists every page of resources, reads, subscribes and forwards updates and list changes", async () => {
    const rich = richUpstream("rich");
    const { client } = await connectAgent([rich.source]);
    const { resources, nextCursor } = await client.listResources();
    expect(resources.map((resource) => resource.uri)).toEqual(["memo://rich/note/1", "memo://rich/note/2", "memo://rich/note/3"]);
    expect(nextCursor).toBeUndefined();
    const { resourceTemplates } = await client.listResourceTemplates();
    expect(resourceTemplates).toEqual([{ uriTemplate: "memo://rich/note/{n}", name: "note" }]);
    const read = await client.readResource({ uri: "memo://rich/note/2" });
    expect(read.contents).toEqual([{ uri: "memo://rich/note/2", text: "body of memo://rich/note/2" }]);

    const updated = new Promise<string>((resolve) => client.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => resolve(n.params.uri)));
    await client.subscribeResource({ uri: "memo://rich/note/1" });
    expect(await updated).toBe("memo://rich/note/1");
    expect(rich.seen.subscribed).toEqual(["memo://rich/note/1"]);
    await client.unsubscribeResource({ uri: "memo://rich/note/1" });

    const changed = new Promise<void>((resolve) => client.setNotificationHandler(ResourceListChangedNotificationSchema, () => resolve()));
    await rich.server().sendResourceListChanged();
    await changed;
  });

  it("pages its own answers when the agent's list is longer than a page", async () => {
    const rich = richUpstream("rich");
    const { client } = await connectAgent([rich.source], {}, { pageSize: 2 });
    const first = await client.listResources();
    expect(first.resources).toHaveLength(2);
    expect(first.nextCursor).toBeDefined();
    const second = await client.listResources({ cursor: first.nextCursor! });
    expect(second.resources.map((resource) => resource.uri)).toEqual(["memo://rich/note/3"]);
    expect(second.nextCursor).toBeUndefined();
    await expect(client.listResources({ cursor: "bogus" })).rejects.toThrow(/atlas-gateway: invalid cursor/);
  });

  it("passes prompts, completions and logging through", async () => {
    const rich = richUpstream("rich");
    const { client } = await connectAgent([rich.source]);
    const { prompts } = await client.listPrompts();
    expect(prompts).toEqual([{ name: "greet", arguments: [{ name: "who", required: true }] }]);
    const prompt = await client.getPrompt({ name: "greet", arguments: { who: "Ada" } });
    expect(prompt.messages[0]!.content).toEqual({ type: "text", text: "hello Ada from rich" });
    const completion = await client.complete({ ref: { type: "ref/prompt", name: "greet" }, argument: { name: "who", value: "A" } });
    expect(completion.completion.values).toEqual(["ref/prompt:greet:A"]);

    await client.setLoggingLevel("warning");
    expect(rich.seen.levels).toEqual(["warning"]);
    const logged: LoggingMessageNotification["params"][] = [];
    client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => void logged.push(n.params));
    await client.callTool({ name: "shout", arguments: {} });
    // Filtering by level is the upstream's business (it received setLevel); the gateway forwards what it sends.
    await expect.poll(() => logged).toEqual([{ level: "warning", logger: "noise", data: "loud" }, { level: "debug", data: "quiet" }]);
  });

  it("namespaces prompt names and URIs reversibly with several upstreams", async () => {
    const a = richUpstream("a");
    const b = richUpstream("b");
    const { client } = await connectAgent([a.source, b.source]);
    const { resources } = await client.listResources();
    expect(resources.map((resource) => resource.uri)).toEqual([
      "atlas://a/memo://a/note/1", "atlas://a/memo://a/note/2", "atlas://a/memo://a/note/3",
      "atlas://b/memo://b/note/1", "atlas://b/memo://b/note/2", "atlas://b/memo://b/note/3",
    ]);
    const read = await client.readResource({ uri: "atlas://b/memo://b/note/3" });
    expect(read.contents[0]!.uri).toBe("atlas://b/memo://b/note/3");
    expect(b.seen.reads).toEqual(["memo://b/note/3"]);
    expect(a.seen.reads).toEqual([]);
    const { resourceTemplates } = await client.listResourceTemplates();
    expect(resourceTemplates.map((template) => template.uriTemplate)).toEqual(["atlas://a/memo://a/note/{n}", "atlas://b/memo://b/note/{n}"]);

    const { prompts } = await client.listPrompts();
    expect(prompts.map((prompt) => prompt.name)).toEqual(["a__greet", "b__greet"]);
    const prompt = await client.getPrompt({ name: "b__greet", arguments: { who: "Bo" } });
    expect(prompt.messages[0]!.content).toEqual({ type: "text", text: "hello Bo from b" });
    const completion = await client.complete({ ref: { type: "ref/resource", uri: "atlas://a/memo://a/note/{n}" }, argument: { name: "n", value: "1" } });
    expect(completion.completion.values).toEqual(["ref/resource:memo://a/note/{n}:1"]);
    await expect(client.readResource({ uri: "memo://a/note/1" })).rejects.toThrow(/no upstream serves/);

    const updated = new Promise<string>((resolve) => client.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => resolve(n.params.uri)));
    await client.subscribeResource({ uri: "atlas://a/memo://a/note/1" });
    expect(await updated).toBe("atlas://a/memo://a/note/1");
  });
});

describe("server-to-client requests", () => {
  it("reach the agent's client when it declared sampling, elicitation and roots, which are offered upstream", async () => {
    const rich = richUpstream("rich");
    const agentCapabilities: ClientCapabilities = { sampling: {}, elicitation: { form: {} }, roots: { listChanged: true } };
    const { client } = await connectAgent([rich.source], agentCapabilities);
    client.setRequestHandler(CreateMessageRequestSchema, () => ({ role: "assistant", content: { type: "text", text: "sampled!" }, model: "m" }));
    client.setRequestHandler(ElicitRequestSchema, () => ({ action: "accept", content: { who: "Ada" } }));
    client.setRequestHandler(ListRootsRequestSchema, () => ({ roots: [{ uri: "file:///work" }] }));
    expect(rich.seen.clientCapabilities).toEqual(agentCapabilities);
    const result = await client.callTool({ name: "ask", arguments: {} });
    expect(JSON.parse((result.content as { text: string }[])[0]!.text)).toEqual({ sampled: { type: "text", text: "sampled!" }, elicited: { who: "Ada" }, roots: ["file:///work"] });
  });

  it("are not offered to upstreams when the agent's client lacks them", async () => {
    const rich = richUpstream("rich");
    const { client } = await connectAgent([rich.source]);
    expect(rich.seen.clientCapabilities).toEqual({});
    await expect(client.callTool({ name: "ask", arguments: {} })).rejects.toThrow(/does not support sampling\/createMessage \(asked by upstream 'rich'\)/);
  });
});
