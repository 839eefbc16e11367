import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { CreateMessageRequestSchema, ElicitRequestSchema, ListRootsRequestSchema, type CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { mkdirSync, realpathSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { tempDir } from "./helpers.js";
import { BIN } from "./helpers/rawMcpProcess.js";

const EVERYTHING = createRequire(import.meta.url).resolve("@modelcontextprotocol/server-everything/dist/index.js");
const FILESYSTEM = createRequire(import.meta.url).resolve("@modelcontextprotocol/server-filesystem/dist/index.js");

const text = (result: CallToolResult) => result.content.map((block) => (block.type === "text" ? block.text : "")).join("\n");
const clients: Client[] = [];
afterAll(async () => {
  for (const client of clients) await client.close().catch(() => {});
});

/** An agent with sampling, elicitation and roots, as Claude Code offers them, connected to `command`. */
async function agent(command: string, args: string[], env: Record<string, string> = {}, roots: () => string[] = () => ["file:///project"]): Promise<Client> {
  const client = new Client({ name: "agent", version: "1" }, { capabilities: { sampling: {}, elicitation: { form: {} }, roots: { listChanged: true } } });
  client.setRequestHandler(CreateMessageRequestSchema, () => ({ role: "assistant", content: { type: "text", text: "sampled" }, model: "fake" }));
  client.setRequestHandler(ElicitRequestSchema, () => ({ action: "decline" }));
  client.setRequestHandler(ListRootsRequestSchema, () => ({ roots: roots().map((uri) => ({ uri })) }));
  await client.connect(new StdioClientTransport({ command, args, env: { PATH: process.env.PATH ?? "", ...env }, stderr: "ignore" }));
  clients.push(client);
  return client;
}

/** Everything a client can learn from a server without side effects. */
async function survey(client: Client) {
  const resources = [];
  let cursor: string | undefined;
  do {
    const page = await client.listResources(cursor ? { cursor } : {});
    resources.push(...page.resources);
    cursor = page.nextCursor;
  } while (cursor);
  const first = resources[0]!;
  return {
    capabilities: client.getServerCapabilities(),
    tools: (await client.listTools()).tools.filter((tool) => tool.execution?.taskSupport !== "required").map((tool) => tool.name).sort(),
    taskOnly: (await client.listTools()).tools.filter((tool) => tool.execution?.taskSupport === "required").map((tool) => tool.name),
    resources: resources.map((resource) => resource.uri),
    templates: (await client.listResourceTemplates()).resourceTemplates.map((template) => template.uriTemplate),
    prompts: (await client.listPrompts()).prompts.map((prompt) => prompt.name),
    read: await client.readResource({ uri: first.uri }),
    prompt: await client.getPrompt({ name: "simple-prompt" }),
    roots: ((await client.callTool({ name: "get-roots-list", arguments: {} })) as CallToolResult).content,
    sampling: ((await client.callTool({ name: "trigger-sampling-request", arguments: { prompt: "hi", maxTokens: 5 } })) as CallToolResult).content,
  };
}

describe("@modelcontextprotocol/server-everything, directly and through the gateway", () => {
  it("offers the same capabilities, tools (plus atlas_status), resources, templates, prompts and server-to-client requests", async () => {
    const direct = await agent(process.execPath, [EVERYTHING, "stdio"]);
    const dir = tempDir();
    writeFileSync(join(dir, "config.json"), JSON.stringify({ risk: { threshold: 101 } }));
    const proxied = await agent(process.execPath, [BIN, "--data-dir", join(dir, "data"), "--config", join(dir, "config.json"), "--port", "0", "--", process.execPath, EVERYTHING, "stdio"], { HOME: dir });

    const alone = await survey(direct);
    const through = await survey(proxied);
    expect(alone.tools).toContain("trigger-sampling-request"); // offered only to a client with sampling
    // MCP tasks are not offered by the gateway: tools that require them are hidden (with a stderr line), the rest match.
    const { tasks: _tasks, ...withoutTasks } = alone.capabilities ?? {};
    expect(through.capabilities).toEqual({ ...withoutTasks, tools: { ...alone.capabilities?.tools, listChanged: true } });
    expect(through.tools).toEqual([...alone.tools, "atlas_status"].sort());
    expect(through.taskOnly).toEqual([]);
    expect(through.resources).toEqual(alone.resources);
    expect(through.templates).toEqual(alone.templates);
    expect(through.prompts).toEqual(alone.prompts);
    expect(through.read).toEqual(alone.read);
    expect(through.prompt).toEqual(alone.prompt);
    expect(through.roots).toEqual(alone.roots);
    expect(through.sampling).toEqual(alone.sampling);
    expect(proxied.getInstructions()).toContain(`Instructions from upstream '`);
    expect(proxied.getInstructions()).toContain(direct.getInstructions()!);
  }, 120_000);

  it("server-filesystem works in the agent's roots, and follows them when they change", async () => {
    const dir = tempDir();
    const [started, project, other] = ["started", "project", "other"].map((name) => join(dir, name)) as [string, string, string];
    for (const path of [started, project, other]) mkdirSync(path);
    writeFileSync(join(dir, "config.json"), JSON.stringify({ risk: { threshold: 101 } }));
    let roots = [pathToFileURL(project).href];
    const client = await agent(process.execPath, [BIN, "--data-dir", join(dir, "data"), "--config", join(dir, "config.json"), "--port", "0", "--", process.execPath, FILESYSTEM, started], { HOME: dir }, () => roots);
    const allowed = async () => text((await client.callTool({ name: "list_allowed_directories", arguments: {} })) as CallToolResult);
    await expect.poll(allowed).toContain(realpathSync(project));
    expect(await allowed()).not.toContain(started);
    roots = [pathToFileURL(other).href];
    await client.sendRootsListChanged();
    await expect.poll(allowed).toContain(realpathSync(other));
  }, 60_000);
});
