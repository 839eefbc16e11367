import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { CallToolResultSchema, type CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { scanLedger } from "../src/ledger/ledger.js";
import { StreamTransport } from "../src/mcp/stdioTransport.js";
import { tempDir } from "./helpers.js";
import { BIN } from "./helpers/rawMcpProcess.js";
import { untilTrue } from "./helpers/until.js";

/** End to end: the installed CLI (see BIN), spawned as an MCP client would, with real upstream servers as child processes. */
const ROOT = resolve(import.meta.dirname, "..");
const FS_SERVER = join(ROOT, "node_modules", "@modelcontextprotocol", "server-filesystem", "dist", "index.js");
const SLOW_SERVER = join(ROOT, "test", "fixtures", "slow-server.mjs");

class GatewayProcess {
  readonly stdout: Buffer[] = [];
  stderr = "";
  readonly exited: Promise<number | null>;
  private constructor(readonly child: ChildProcess, readonly client: Client) {
    this.exited = new Promise((resolve) => child.once("exit", (code) => resolve(code)));
  }

  static async start(dataDir: string, upstream: string[], env: NodeJS.ProcessEnv = {}, extraArgs: string[] = []): Promise<GatewayProcess> {
    const child = spawn(process.execPath, [BIN, "serve", "--data-dir", dataDir, "--port", "0", ...extraArgs, "--", ...upstream], {
      env: { ...process.env, ATLAS_CONFIG_DIR: join(dataDir, "config"), ...env },
      stdio: ["pipe", "pipe", "pipe"],
    });
    const client = new Client({ name: "e2e-agent", version: "1.0" });
    const gateway = new GatewayProcess(child, client);
    child.stdout!.on("data", (chunk: Buffer) => gateway.stdout.push(chunk));
    child.stderr!.on("data", (chunk: Buffer) => (gateway.stderr += chunk.toString()));
    await client.connect(new StreamTransport(child.stdout!, child.stdin!), { timeout: 20_000 });
    running.push(gateway);
    return gateway;
  }

  call(name: string, args: Record<string, unknown> = {}): Promise<CallToolResult> {
    return this.client.request({ method: "tools/call", params: { name, arguments: args } }, CallToolResultSchema, { timeout: 60_000 });
  }

  async kill(): Promise<void> {
    this.child.kill("SIGKILL");
    await this.exited;
  }

  async close(): Promise<number | null> {
    this.child.stdin!.end();
    return this.exited;
  }

  /** Every byte on stdout must be a JSON-RPC message: one JSON object per line. */
  assertCleanStdout(): void {
    const text = Buffer.concat(this.stdout).toString("utf8");
    const lines = text.split("\n");
    expect(lines.pop()).toBe("");
    for (const line of lines) expect(JSON.parse(line)).toMatchObject({ jsonrpc: "2.0" });
  }
}

const running: GatewayProcess[] = [];
afterEach(async () => {
  for (const gateway of running.splice(0)) {
    if (gateway.child.exitCode === null && gateway.child.signalCode === null) await gateway.kill();
  }
});

function cli(args: string[], dataDir: string, withDataDir = true, env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args, ...(withDataDir ? ["--data-dir", dataDir] : [])], { env: { ...process.env, ATLAS_CONFIG_DIR: join(dataDir, "config"), ...env } }, (error, stdout, stderr) => {
      resolve({ code: error ? Number((error as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

const refOf = (result: CallToolResult) => /Ref: (evt_[0-9a-f]{8})/.exec(JSON.stringify(result.content))?.[1] ?? "";
const ledgerTypes = (dataDir: string, ref: string) =>
  scanLedger(join(dataDir, "ledgers", "main")).records.filter((record) => record.ref === ref).map((record) => record.type);
/** Waits for a process (an upstream's grandchild) to be gone. */
async function untilGone(pid: number): Promise<void> {
  await untilTrue(() => {
    try {
      process.kill(pid, 0);
      return false;
    } catch {
      return true;
    }
  }, `process ${pid} to exit`, 8000);
}

function filesystemSetup() {
  const dataDir = tempDir("atlas-e2e-data-");
  const root = tempDir("atlas-e2e-files-");
  writeFileSync(join(root, "notes.txt"), "hello from the filesystem\n");
  return { dataDir, root, upstream: [process.execPath, FS_SERVER, root] };
}

describe("with @modelcontextprotocol/server-filesystem upstream", () => {
  it("a read passes; a write is held, approved with the CLI, written once, and atlas_status returns the result", async () => {
    const { dataDir, root, upstream } = filesystemSetup();
    const gateway = await GatewayProcess.start(dataDir, upstream);
    const read = await gateway.call("read_text_file", { path: join(root, "notes.txt") });
    expect(read.isError).toBeFalsy();
    expect(JSON.stringify(read.content)).toContain("hello from the filesystem");

    const target = join(root, "approved.txt");
    const held = await gateway.call("write_file", { path: target, content: "approved content" });
    expect((held.content[0] as { text: string }).text).toMatch(/^PENDING REVIEW \(Ref: evt_[0-9a-f]{8}\)\. Action queued subject to governance checks\.$/);
    const ref = refOf(held);
    expect(existsSync(target)).toBe(false);

    const pending = await cli(["pending"], dataDir);
    expect(pending.code).toBe(0);
    expect(pending.stdout).toMatch(new RegExp(`${ref}\\s+\\S+\\s+write_file\\s+.*approved content.*\\s90\\s+tool may be destructive`));

    const waiting = gateway.call("atlas_status", { ref, wait_seconds: 30 });
    // a name anyone can type is not an identity: --reviewer needs that reviewer's own key
    const unauthenticated = await cli(["approve", ref, "--reviewer", "alice", "--reason", "looks right"], dataDir);
    expect(unauthenticated.code).toBe(2);
    expect(unauthenticated.stderr).toMatch(/ATLAS_REVIEWER_TOKEN/);
    const added = await cli(["reviewers", "add", "alice", "--name", "Alice Martin"], dataDir);
    const key = /atlas_rk_[A-Za-z0-9_-]+/.exec(added.stdout)?.[0] ?? "";
    const approve = await cli(["approve", ref, "--reviewer", "alice", "--reason", "looks right"], dataDir, true, { ATLAS_REVIEWER_TOKEN: key });
    expect(approve).toMatchObject({ code: 0 });
    expect(approve.stdout).toContain(`approved ${ref}`);
    const status = await waiting;
    expect(status.structuredContent).toMatchObject({ ref, status: "executed", outcome: "ok", decision: { reviewer: "alice", reason: "looks right", auth: "reviewer-token" } });
    expect(readFileSync(target, "utf8")).toBe("approved content");
    expect(ledgerTypes(dataDir, ref).filter((type) => type === "execution.started")).toHaveLength(1);

    const again = await cli(["approve", ref], dataDir);
    expect(again.code).toBe(3);
    expect(again.stderr).toMatch(/nothing changed.*executed/);
    const unknown = await cli(["approve", "evt_00000000"], dataDir);
    expect(unknown.code).toBe(4);

    const show = await cli(["show", ref], dataDir);
    expect(show.stdout).toMatch(/request\.held[\s\S]*decision\.recorded[\s\S]*execution\.finished/);
    await gateway.close();
    gateway.assertCleanStdout();
    expect((await cli(["audit", "verify"], dataDir)).code).toBe(0);
  });

  it("deny: the file is never written and the agent gets a plain isError reason", async () => {
    const { dataDir, root, upstream } = filesystemSetup();
    const gateway = await GatewayProcess.start(dataDir, upstream);
    const target = join(root, "denied.txt");
    const ref = refOf(await gateway.call("write_file", { path: target, content: "nope" }));
    expect((await cli(["deny", ref], dataDir)).code).toBe(2);
    const deny = await cli(["deny", ref, "--reason", "wrong folder"], dataDir);
    expect(deny.code).toBe(0);
    const status = await gateway.call("atlas_status", { ref, wait_seconds: 5 });
    expect(status.isError).toBe(true);
    expect(JSON.stringify(status.content)).toMatch(/DENIED.*wrong folder/);
    expect(existsSync(target)).toBe(false);
    await gateway.close();
    gateway.assertCleanStdout();
  });

  it("SIGKILL while pending, restart, approve: executed once", async () => {
    const { dataDir, root, upstream } = filesystemSetup();
    const first = await GatewayProcess.start(dataDir, upstream);
    const target = join(root, "survivor.txt");
    const ref = refOf(await first.call("write_file", { path: target, content: "survived a crash" }));
    await first.kill();

    const second = await GatewayProcess.start(dataDir, upstream);
    const waiting = second.call("atlas_status", { ref, wait_seconds: 30 });
    expect((await cli(["approve", ref], dataDir)).code).toBe(0);
    expect((await waiting).structuredContent).toMatchObject({ status: "executed", outcome: "ok" });
    expect(readFileSync(target, "utf8")).toBe("survived a crash");
    await second.close();
    expect(ledgerTypes(dataDir, ref).filter((type) => type === "execution.started")).toHaveLength(1);
    const verify = await cli(["audit", "verify"], dataDir);
    expect(verify.code).toBe(0);
    expect(verify.stdout).toMatch(/✓ ledger 'main'/);
  });

  it("a decision made while no gateway runs takes effect at the next start", async () => {
    const { dataDir, root, upstream } = filesystemSetup();
    const first = await GatewayProcess.start(dataDir, upstream);
    const target = join(root, "later.txt");
    const ref = refOf(await first.call("write_file", { path: target, content: "ran at next start" }));
    await first.close();
    const approve = await cli(["approve", ref], dataDir);
    expect(approve.stdout).toMatch(/runs when the gateway next starts/);
    const second = await GatewayProcess.start(dataDir, upstream);
    expect((await second.call("atlas_status", { ref, wait_seconds: 20 })).structuredContent).toMatchObject({ status: "executed" });
    expect(readFileSync(target, "utf8")).toBe("ran at next start");
    await second.close();
  });
});

describe("two gateways on one data dir", () => {
  it("the second takes instance main-2, and reviewer commands reach the gateway that holds the ref", async () => {
    const { dataDir, root, upstream } = filesystemSetup();
    const first = await GatewayProcess.start(dataDir, upstream);
    const second = await GatewayProcess.start(dataDir, upstream);
    // initialize is answered before the instance lock is taken (cold start): the choice is logged just after
    await untilTrue(() => /uses instance 'main-2'/.test(second.stderr), "the second gateway's instance");
    const target = join(root, "second.txt");
    const ref = refOf(await second.call("write_file", { path: target, content: "from the second gateway" }));
    expect(JSON.parse((await cli(["pending", "--json"], dataDir)).stdout)).toEqual([expect.objectContaining({ ref, instance: "main-2", tool: "write_file" })]);
    const waiting = second.call("atlas_status", { ref, wait_seconds: 30 });
    const approve = await cli(["approve", ref], dataDir);
    expect(approve.stdout).toMatch(/gateway is executing it now/);
    expect((await waiting).structuredContent).toMatchObject({ status: "executed", outcome: "ok" });
    expect(readFileSync(target, "utf8")).toBe("from the second gateway");
    await Promise.all([first.close(), second.close()]);
  });
});

describe("with a slow fixture upstream", () => {
  function slowSetup() {
    const dataDir = tempDir("atlas-e2e-slow-");
    const env = {
      FIXTURE_INVOCATIONS: join(dataDir, "invocations.log"),
      FIXTURE_RELEASE: join(dataDir, "release"),
      FIXTURE_PID_FILE: join(dataDir, "fixture.pid"),
    };
    return { dataDir, env };
  }

  it("SIGKILL right after execution.started: the call becomes unknown and is not re-run", async () => {
    const { dataDir, env } = slowSetup();
    const first = await GatewayProcess.start(dataDir, [process.execPath, SLOW_SERVER], env);
    const ref = refOf(await first.call("slow_write", { note: "once" }));
    expect((await cli(["approve", ref], dataDir)).code).toBe(0);
    await untilTrue(() => ledgerTypes(dataDir, ref).includes("execution.started") && existsSync(env.FIXTURE_INVOCATIONS), "execution.started");
    await first.kill();

    writeFileSync(env.FIXTURE_RELEASE, "go");
    const second = await GatewayProcess.start(dataDir, [process.execPath, SLOW_SERVER], env);
    const status = await second.call("atlas_status", { ref, wait_seconds: 2 });
    expect(status.isError).toBe(true);
    expect(status.structuredContent).toMatchObject({ status: "unknown", outcome: "unknown" });
    expect(JSON.stringify(status.content)).toMatch(/will not be re-run/);
    await second.close();
    expect(readFileSync(env.FIXTURE_INVOCATIONS, "utf8").trim().split("\n")).toHaveLength(1);
    expect(ledgerTypes(dataDir, ref)).toEqual(["request.created", "request.assessed", "request.held", "decision.recorded", "execution.started", "execution.interrupted"]);
    expect((await cli(["audit", "verify"], dataDir)).code).toBe(0);
  });

  it("closes upstreams on stdin EOF with no orphaned grandchildren, passes the environment, and carries 60 MiB messages", async () => {
    const { dataDir, env } = slowSetup();
    // `sh -c '…; true'` keeps sh as the parent, so the fixture is the gateway's grandchild (like an npx wrapper's).
    const gateway = await GatewayProcess.start(dataDir, ["sh", "-c", `"${process.execPath}" "${SLOW_SERVER}"; true`], { ...env, E2E_MARKER: "inherited" });
    expect(JSON.stringify((await gateway.call("env", { name: "E2E_MARKER" })).content)).toContain("inherited");
    const size = 60 * 1024 * 1024;
    const big = await gateway.call("big", { bytes: size });
    expect((big.content[0] as { text: string }).text.length).toBe(size);
    const echoed = await gateway.call("echo", { blob: "y".repeat(20 * 1024 * 1024) });
    expect(JSON.stringify(echoed.content)).toContain(`echo ${20 * 1024 * 1024 + 11}`);

    const pid = Number(readFileSync(env.FIXTURE_PID_FILE, "utf8"));
    expect(() => process.kill(pid, 0)).not.toThrow();
    expect(await gateway.close()).toBe(0);
    await untilGone(pid);
    gateway.assertCleanStdout();
  });
});

describe("signals", () => {
  it("SIGTERM closes the upstream process group and records the stop", async () => {
    const dataDir = tempDir("atlas-e2e-signal-");
    const pidFile = join(dataDir, "fixture.pid");
    const gateway = await GatewayProcess.start(dataDir, ["sh", "-c", `"${process.execPath}" "${SLOW_SERVER}"; true`], { FIXTURE_PID_FILE: pidFile });
    await gateway.client.listTools();
    const pid = Number(readFileSync(pidFile, "utf8"));
    gateway.child.kill("SIGTERM");
    expect(await gateway.exited).toBe(0);
    await untilGone(pid);
    const records = scanLedger(join(dataDir, "ledgers", "main")).records;
    expect(records.at(-1)).toMatchObject({ type: "gateway.stopped", data: { reason: "SIGTERM" } });
    expect(gateway.stderr).toMatch(/shutting down \(SIGTERM\)/);
  });
});

describe("CLI", () => {
  it("doctor reports each check with ✓/✗ and exits non-zero on a failure", async () => {
    const dataDir = tempDir("atlas-e2e-doctor-");
    const root = tempDir("atlas-e2e-files-");
    const config = join(dataDir, "atlas.json");
    writeFileSync(config, JSON.stringify({ port: 0, upstreams: { files: { command: process.execPath, args: [FS_SERVER, root] } } }));
    mkdirSync(dataDir, { recursive: true });
    await cli(["config", "get", "webhook.secret"], dataDir);
    const good = await cli(["doctor", "--config", config], dataDir);
    expect(good.stdout).toMatch(/✓ Node v\d+/);
    expect(good.stdout).toMatch(/✓ upstream 'files': started and listed 14 tool\(s\) in \d+ ms/);
    expect(good.code).toBe(0);

    writeFileSync(config, JSON.stringify({ port: 0, upstreams: { broken: { command: join(root, "missing-server") } } }));
    const bad = await cli(["doctor", "--config", config], dataDir);
    expect(bad.code).toBe(1);
    expect(bad.stdout).toMatch(/✗ upstream 'broken'/);
  });

  it("a bad config is one line per problem with exit 2, never a stack trace", async () => {
    const dataDir = tempDir("atlas-e2e-config-");
    const result = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, [BIN, "serve", "--port", "99999", "--engine", "local", "--data-dir", dataDir], {
        env: { ...process.env, ATLAS_CONFIG_DIR: join(dataDir, "config"), ATLAS_RISK_THRESHOLD: "high" },
      });
      let stderr = "";
      child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
      child.once("exit", (code) => resolve({ code, stderr }));
    });
    expect(result.code).toBe(2);
    expect(result.stderr.trim().split("\n")).toEqual([
      expect.stringMatching(/^atlas-gateway: port \(from --port\): .*65535/),
      expect.stringMatching(/^atlas-gateway: risk\.threshold \(from ATLAS_RISK_THRESHOLD\): /),
    ]);
  });

  it("on a Node older than 22 the bin says plainly which version it needs", async () => {
    const oldNode = ["/usr/bin/node", "/usr/local/bin/node"].find((path) => existsSync(path));
    const version = oldNode ? await new Promise<string>((resolve) => execFile(oldNode, ["--version"], (_e, out) => resolve(out.trim()))) : "";
    if (!oldNode || Number(version.slice(1).split(".")[0]) >= 22) return; // this machine has no old Node to try
    const result = await new Promise<{ code: number; stderr: string }>((resolve) =>
      execFile(oldNode, [BIN, "--version"], (error, _stdout, stderr) => resolve({ code: Number((error as { code?: number } | null)?.code ?? 0), stderr })),
    );
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(new RegExp(`needs Node\\.js 22 or newer, but this is Node ${version.replace(/\./g, "\\.")}`));
    expect(result.stderr.trimEnd().split("\n")).toHaveLength(1);
  });

  it("the demo runs the original system's calls end to end and exits 0", async () => {
    const result = await cli(["demo"], tempDir(), false);
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    const out = result.stdout;
    expect(out).toContain(`agent calls check_payment_status {"beneficiary_id":"B-1001"}`);
    expect(out).toMatch(/Beneficiary B-1001: payment/);
    expect(out).toContain(`agent calls request_payment_extension {"beneficiary_id":"B-1001","reason":"hardship: medical bills"}`);
    expect(out).toMatch(/PENDING REVIEW \(Ref: evt_[0-9a-f]{8}\)/);
    expect(out).toMatch(/← HTTP 401 \{"error":"unsigned request: approvals must be signed per Standard Webhooks: send the headers webhook-id/);
    expect(out).toMatch(/webhook-signature: v1,[A-Za-z0-9+/]+=*\n/);
    expect(out).toMatch(/HTTP 200 \{"ref":"evt_[0-9a-f]{8}","decision":"approved"/);
    expect(out).toMatch(/EXECUTED \(approved by demo-reviewer[\s\S]*Extension granted for beneficiary B-1001/);
    expect(out).toContain(`agent calls modify_welfare_record {"beneficiary_id":"B-1001","changes":{"bank_account":"DE02 1203 0000 0000 2020 51"}}`);
    expect(out).toMatch(/DENIED \(denied by demo-reviewer/);
    expect(out).toMatch(/hash chain intact/);
    expect(out).not.toMatch(/seed/i);
  });
});
