import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { ToolListChangedNotificationSchema, type CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { existsSync, readFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { loadConfig, type ConfigInput } from "../../src/config.js";
import { instancePaths } from "../../src/dataDir.js";
import { scanLedger } from "../../src/ledger/ledger.js";
import { runGateway, type RunningGateway } from "../../src/mcp/serve.js";
import { StreamTransport } from "../../src/mcp/stdioTransport.js";
import { upstreamEnv } from "../../src/mcp/upstreamEnv.js";
import { UncertainOutcomeError } from "../../src/errors.js";
import { tempDir } from "../helpers.js";

const FIXTURE = fileURLToPath(new URL("../fixtures/raw-upstream.mjs", import.meta.url));
const text = (result: CallToolResult) => result.content.map((block) => (block.type === "text" ? block.text : "")).join("\n");

interface Started {
  client: Client;
  running: RunningGateway;
  stderr: () => string;
  requests: () => string[];
  dataDir: string;
}

const open: Started[] = [];
const after: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const started of open.splice(0)) {
    await started.client.close().catch(() => {});
    await started.running.close();
  }
  for (const step of after.splice(0)) await step();
});

/** The whole gateway (`runGateway`, as `serve` runs it) in front of the hand-written upstream in the given modes. */
async function start(modes: string[], options: { env?: NodeJS.ProcessEnv; fixtureEnv?: Record<string, string>; config?: ConfigInput } = {}): Promise<Started> {
  const dataDir = tempDir();
  const log = join(dataDir, "requests.log");
  const config = loadConfig({
    env: options.env ?? {},
    userConfig: {
      upstreams: { raw: { command: process.execPath, args: [FIXTURE], env: { FIXTURE_MODE: modes.join(","), FIXTURE_LOG: log, ...options.fixtureEnv } } },
      ...options.config,
    },
    flags: { dataDir, port: "0" },
  });
  const stdin = new PassThrough();
  const stdout = new PassThrough();
  const errStream = new PassThrough();
  let stderr = "";
  errStream.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const running = await runGateway(config, { stdin, stdout, stderr: errStream, env: { PATH: process.env.PATH, ...options.env } }, "test");
  const client = new Client({ name: "agent", version: "1" });
  const started: Started = {
    client,
    running,
    stderr: () => stderr,
    requests: () => (existsSync(log) ? readFileSync(log, "utf8").trim().split("\n") : []),
    dataDir,
  };
  open.push(started);
  await client.connect(new StreamTransport(stdout, stdin));
  return started;
}

describe("definitions a strict client rejects", () => {
  it("are skipped with a line naming upstream, item and field; the rest, atlas_status included, are served", async () => {
    const { client, stderr } = await start(["badtools", "tasks"]);
    // The agent's own SDK client validates every tool: one bad definition would make this throw.
    const { tools } = await client.listTools();
    expect(tools.map((tool) => tool.name)).toEqual(["echo", "progress", "crash", "getenv", "slow", "hang", "big", "write", "atlas_status"]);
    expect(stderr()).toContain("upstream raw: skipped tool 'null_description': description: Invalid input: expected string, received null");
    expect(stderr()).toContain("upstream raw: skipped tool 'numeric_title': title:");
    expect(stderr()).toContain("upstream raw: skipped tool 'string_hint': annotations.readOnlyHint:");
    expect(stderr()).toContain("upstream raw: skipped tool 'array_output': outputSchema.type:");
    expect(stderr()).toContain("upstream raw: skipped tool 'boolean_property': inputSchema.properties.flag:");
    expect(stderr()).toContain("upstream raw: hid tool 'needs_task': it requires MCP tasks");
  });
});

describe("cursors", () => {
  it("a repeating nextCursor stops after the first repeat", async () => {
    const { client, stderr, requests } = await start(["loopcursor"]);
    const { tools } = await client.listTools();
    expect(tools.map((tool) => tool.name)).toContain("echo");
    expect(requests().filter((line) => line.startsWith("tools/list"))).toHaveLength(2);
    expect(stderr()).toContain("upstream raw: tools/list repeated the cursor \"again\"; stopped after 2 page(s)");
  });

  it("an endless cursor stops at the page cap", async () => {
    const { client, stderr, requests } = await start(["endless"]);
    await client.listTools();
    expect(requests().filter((line) => line.startsWith("tools/list"))).toHaveLength(100);
    expect(stderr()).toContain("upstream raw: tools/list still had more after 100 pages; stopped there (page cap)");
  });
});

describe("progress", () => {
  it("every progress notification sent before the result reaches the agent, in order", async () => {
    const { client } = await start([]);
    for (let round = 0; round < 5; round++) {
      const seen: number[] = [];
      const result = await client.callTool({ name: "progress", arguments: { steps: 4 } }, undefined, { onprogress: (progress) => seen.push(progress.progress) });
      expect(text(result as CallToolResult)).toBe("done");
      expect(seen).toEqual([1, 2, 3, 4]);
    }
  });
});

describe("an upstream that comes and goes", () => {
  it("a crashed stdio upstream is restarted with backoff and announced with list_changed; GET / shows its state", async () => {
    const { client, stderr, requests, running } = await start([]);
    const changed: number[] = [];
    client.setNotificationHandler(ToolListChangedNotificationSchema, () => void changed.push(Date.now()));
    await client.listTools();
    const state = async () => ((await (await fetch(`http://127.0.0.1:${running.port}/`)).json()) as { upstreams: unknown[] }).upstreams;
    expect(await state()).toEqual([{ name: "raw", ok: true, tools: 8 }]);
    await client.callTool({ name: "crash", arguments: {} }).catch(() => undefined);
    await expect.poll(() => stderr(), { timeout: 15_000 }).toMatch(/upstream raw: restarting in \d+ ms \(attempt 1\)/);
    await expect.poll(state).toEqual([{ name: "raw", ok: false, tools: 0, error: "disconnected; restarting (attempt 1)" }]);
    await expect.poll(() => changed.length, { timeout: 15_000 }).toBeGreaterThanOrEqual(2); // gone, then back
    const result = (await client.callTool({ name: "echo", arguments: { text: "again" } })) as CallToolResult;
    expect(text(result)).toBe("echo: again");
    const pids = new Set(requests().filter((line) => line.startsWith("initialize")).map((line) => line.split(" ")[1]));
    expect(pids.size).toBe(2);
  });

  it("a restarted upstream gets the agent's resource subscriptions again", async () => {
    const { client, requests } = await start(["reads"]);
    await client.subscribeResource({ uri: "file:///watched" });
    await client.subscribeResource({ uri: "file:///dropped" });
    await client.unsubscribeResource({ uri: "file:///dropped" });
    await client.callTool({ name: "crash", arguments: {} });
    await expect.poll(() => new Set(requests().filter((line) => line.startsWith("resources/subscribe")).map((line) => line.split(" ")[1])).size, { timeout: 15_000 }).toBe(2);
    const renewed = requests().filter((line) => line.startsWith("resources/subscribe")).at(-1)!;
    expect(renewed).toMatch(/ file:\/\/\/watched$/);
    expect(requests().filter((line) => line.endsWith("file:///dropped") && line.startsWith("resources/subscribe"))).toHaveLength(1);
  });

  it("an upstream ready after start-up is announced with list_changed and its tools are pinned at that first sight", async () => {
    const { client, stderr, dataDir } = await start(["late"], { fixtureEnv: { FIXTURE_DELAY: "1500" }, config: { startupTimeout: "300ms" } });
    const changed = new Promise<void>((resolve) => client.setNotificationHandler(ToolListChangedNotificationSchema, () => resolve()));
    expect((await client.listTools()).tools.map((tool) => tool.name)).toEqual(["atlas_status"]);
    expect(stderr()).toContain("not ready after 300 ms");
    await changed;
    expect((await client.listTools()).tools.map((tool) => tool.name)).toContain("echo");
    await expect
      .poll(() => scanLedger(instancePaths(dataDir, "main").ledger).records.filter((record) => record.type === "tool.pinned").map((record) => record.data.tool))
      .toContain("echo");
  });
});

describe("at most once, stated honestly", () => {
  const ledgerTypes = (dataDir: string, ref: string) => scanLedger(instancePaths(dataDir, "main").ledger).records.filter((record) => record.ref === ref).map((record) => record.type);
  const refOf = (result: CallToolResult) => /Ref: (evt_[0-9a-f]{8})/.exec(text(result))![1]!;

  it("an upstream that crashes mid-call gives outcome unknown, not error, and the call is not re-run", async () => {
    const { client, requests, dataDir } = await start([]);
    const result = (await client.callTool({ name: "crash", arguments: {} })) as CallToolResult;
    expect(result.isError).toBe(true);
    expect(text(result)).toMatch(/^OUTCOME UNKNOWN \(Ref: evt_[0-9a-f]{8}\): upstream 'raw' exited or disconnected while running the call/);
    expect(ledgerTypes(dataDir, refOf(result))).toEqual(["request.admitted", "execution.interrupted"]);
    await expect.poll(() => requests().filter((line) => line.startsWith("initialize")).length, { timeout: 15_000 }).toBe(2);
    expect(requests().filter((line) => line.endsWith(" crash"))).toHaveLength(1);
  });

  it("an upstream that times out gives outcome unknown", async () => {
    const { client, dataDir } = await start([], { config: { toolTimeout: "300ms" } });
    const result = (await client.callTool({ name: "hang", arguments: {} })) as CallToolResult;
    expect(text(result)).toContain("upstream 'raw' did not answer within 300 ms");
    expect(ledgerTypes(dataDir, refOf(result)).at(-1)).toBe("execution.interrupted");
  });

  it("a call cancelled by the agent while the upstream runs it gives outcome unknown", async () => {
    const { client, dataDir, requests } = await start([]);
    const controller = new AbortController();
    const call = client.callTool({ name: "hang", arguments: {} }, undefined, { signal: controller.signal }).catch((error: Error) => error);
    // an auto-approved call is admitted (created, assessed and started in one record) before the upstream sees it
    await expect.poll(() => scanLedger(instancePaths(dataDir, "main").ledger).records.map((record) => record.type)).toContain("request.admitted");
    await expect.poll(() => requests().some((line) => line.startsWith("tools/call") && line.endsWith(" hang"))).toBe(true);
    controller.abort("the user changed their mind");
    expect(await call).toBeInstanceOf(Error);
    await expect
      .poll(() => scanLedger(instancePaths(dataDir, "main").ledger).records.find((record) => record.type === "execution.interrupted")?.data)
      .toEqual({ outcome: "unknown", reason: "the call was cancelled while upstream 'raw' was running it" });
  });

  it("a call cancelled before it was sent is not sent, and is no uncertain outcome", async () => {
    const { running, requests } = await start([]);
    await running.upstreams.ready;
    const cancelled = running.upstreams.call({ upstream: "raw", tool: "echo", args: { text: "never" } }, { signal: AbortSignal.abort("changed my mind") });
    await expect(cancelled).rejects.toThrow("atlas-gateway: the call was cancelled before it was sent to upstream 'raw'");
    await expect(cancelled).rejects.not.toBeInstanceOf(UncertainOutcomeError);
    expect((await running.upstreams.call({ upstream: "raw", tool: "echo", args: { text: "sent" } })).content).toEqual([{ type: "text", text: "echo: sent" }]);
    expect(requests().filter((line) => line.startsWith("tools/call"))).toHaveLength(1);
  });

  it("an approval made while the upstream is down waits, still approved, and runs once when it is back", async () => {
    const { client, running, requests } = await start([]);
    const held = (await client.callTool({ name: "write", arguments: { note: "n1" } })) as CallToolResult;
    const ref = refOf(held);
    await client.callTool({ name: "crash", arguments: {} });
    await running.engine.decide({ ref, decision: "approved", reviewer: "alice" });
    expect(running.engine.get(ref)!.status).toBe("approved");
    await expect.poll(() => running.engine.get(ref)!.status, { timeout: 15_000 }).toBe("executed");
    expect(running.engine.get(ref)!.outcome).toBe("ok");
    expect(requests().filter((line) => line.endsWith(" write"))).toHaveLength(1);
  });
});

describe("graceful shutdown", () => {
  it("lets a running call finish and records its outcome before the ledger closes", async () => {
    const { client, running, dataDir } = await start([]);
    const pending = client.callTool({ name: "slow", arguments: { ms: 700 } }).catch(() => undefined);
    await expect.poll(() => scanLedger(instancePaths(dataDir, "main").ledger).records.map((r) => r.type), { timeout: 3000 }).toContain("request.admitted");
    await running.close("test shutdown");
    expect(text((await pending) as CallToolResult)).toBe("slept 700");
    const types = scanLedger(instancePaths(dataDir, "main").ledger).records.map((record) => record.type);
    expect(types.indexOf("execution.finished")).toBeGreaterThan(-1);
    expect(types.indexOf("execution.finished")).toBeLessThan(types.indexOf("gateway.stopped"));
  });
});

describe("governance of resource reads and prompt gets", () => {
  it("policy rules allow or deny them (never hold), self-protection covers file:// URIs, and each is a ledger record", async () => {
    const rules = [
      { id: "no-secrets", resource: "file:///secret/*", effect: "deny", reason: "secrets stay put" },
      { id: "no-danger", prompt: "danger*", effect: "deny" },
    ];
    const { client, dataDir } = await start(["reads"], { config: { risk: { rules } } });
    expect((await client.readResource({ uri: "file:///tmp/ok.txt" })).contents[0]).toMatchObject({ text: "content of file:///tmp/ok.txt" });
    await expect(client.readResource({ uri: "file:///secret/key.pem" })).rejects.toThrow("atlas-gateway: reading file:///secret/key.pem was denied: secrets stay put");
    await expect(client.readResource({ uri: `file://${dataDir}/webhook-secret` })).rejects.toThrow(/was denied: it reaches the gateway's data dir/);
    expect((await client.getPrompt({ name: "hello" })).messages[0]!.content).toEqual({ type: "text", text: "prompt hello" });
    await expect(client.getPrompt({ name: "danger_zone" })).rejects.toThrow(/getting danger_zone was denied: prompt danger\*: deny/);

    const reads = scanLedger(instancePaths(dataDir, "main").ledger).records.filter((record) => record.type === "resource.read" || record.type === "prompt.get");
    expect(reads.map((record) => [record.type, record.data.uri ?? record.data.name, record.data.decision, (record.data.rule as { id?: string } | undefined)?.id])).toEqual([
      ["resource.read", "file:///tmp/ok.txt", "allow", undefined],
      ["resource.read", "file:///secret/key.pem", "deny", "no-secrets"],
      ["resource.read", `file://${dataDir}/webhook-secret`, "deny", "self-protection"],
      ["prompt.get", "hello", "allow", undefined],
      ["prompt.get", "danger_zone", "deny", "no-danger"],
    ]);
  });

  it("refuses a read rule that would hold, or that matches on tool arguments", () => {
    expect(() => loadConfig({ env: {}, userConfig: { risk: { rules: [{ resource: "file:///*", effect: "review" }, { prompt: "p", tool: "t", effect: "deny" }] } }, flags: { dataDir: tempDir() } })).toThrow(
      /risk\.rules\.0\.effect: a resource rule can only "allow" or "deny" \(a read cannot be held\)[\s\S]*risk\.rules\.1\.tool: a prompt rule matches on upstream and prompt only, not tool/,
    );
  });
});

describe("the environment an upstream sees", () => {
  it("has the gateway's own settings and secrets removed unless the upstream's env names them", async () => {
    // A seed-contract evaluator that scores everything low, authenticated with a key the gateway holds.
    const evaluator = createServer((_request, response) => response.setHeader("content-type", "application/json").end(JSON.stringify({ risk_score: 5, classification: "low" })));
    await new Promise<void>((resolve) => evaluator.listen(0, "127.0.0.1", resolve));
    const port = (evaluator.address() as AddressInfo).port;
    after.push(() => new Promise<void>((resolve) => evaluator.close(() => resolve())));
    const env = { ATLAS_REVIEW_SECRET: "gateway-only", INNGEST_SIGNING_KEY: "signkey-123456", MY_LLM_KEY: "sk-evaluator-key-123", KEEP_ME: "visible", ATLAS_SHARED: "named" };
    const { client } = await start([], {
      env,
      fixtureEnv: { ATLAS_SHARED: "named" },
      config: { risk: { evaluators: [{ type: "http", url: `http://127.0.0.1:${port}/score`, headers: { "x-key": "${MY_LLM_KEY}" } }] } },
    });
    const getenv = async (name: string) => text((await client.callTool({ name: "getenv", arguments: { name } })) as CallToolResult);
    expect(await getenv("ATLAS_REVIEW_SECRET")).toBe("(unset)");
    expect(await getenv("INNGEST_SIGNING_KEY")).toBe("(unset)");
    expect(await getenv("MY_LLM_KEY")).toBe("(unset)");
    expect(await getenv("KEEP_ME")).toBe("visible");
    expect(await getenv("ATLAS_SHARED")).toBe("named");
  });

  it("upstreamEnv keeps the rest and lets the upstream's env win", () => {
    expect(upstreamEnv({ PATH: "/bin", ATLAS_X: "1", INNGEST_EVENT_KEY: "k", TOKEN: "s3cret-value" }, { INNGEST_EVENT_KEY: "mine" }, ["s3cret-value"])).toEqual({ PATH: "/bin", INNGEST_EVENT_KEY: "mine" });
  });
});
