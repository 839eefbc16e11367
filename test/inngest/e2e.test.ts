import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterEach, describe, expect, it } from "vitest";
import { DECISION_EVENT, REQUEST_EVENT } from "../../src/inngest/events.js";
import { instancePaths } from "../../src/dataDir.js";
import { scanLedger } from "../../src/ledger/ledger.js";
import { loadOrCreateWebhookSecret, signWebhook } from "../../src/http/webhook.js";
import { INNGEST_BACKOFF, InngestEmulator, TEST_EVENT_KEY, TEST_SIGNING_KEY, type EmulatedRun } from "../helpers/inngestEmulator.js";
import { BIN, RawMcpProcess } from "../helpers/rawMcpProcess.js";

// The built CLI with engine inngest, end to end against the Inngest emulator: its events go to the emulator's event
// API, the emulator syncs the app and its executor calls the gateway's /api/inngest, so every step and decision
// flows as it would with a real Inngest server. The local engine's scenarios, on this engine.

const INSTANCE = "e2e";
const ENCRYPTION_KEY = "e2e-encryption-key-0123456789abcdef";

interface Setup {
  dir: string;
  emulator: InngestEmulator;
  gateway: RawMcpProcess;
  env: NodeJS.ProcessEnv;
  port: number;
  /** Starts the gateway again on the same data dir and port (Inngest keeps calling the URL it synced). */
  restart(): Promise<RawMcpProcess>;
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanUp of cleanups.splice(0).reverse()) await cleanUp();
});

function listenerPort(dir: string): number {
  return (JSON.parse(readFileSync(instancePaths(dir, INSTANCE).lock, "utf8")) as { port: number }).port;
}

/** The env that lets the CLI decide as reviewer erin (a named reviewer must carry their key). */
async function asErin(setup: Setup): Promise<NodeJS.ProcessEnv> {
  const { stdout } = await promisify(execFile)(process.execPath, [BIN, "reviewers", "add", "erin", "--data-dir", setup.dir], { env: setup.env });
  return { ...setup.env, ATLAS_REVIEWER_TOKEN: /atlas_rk_\S+/.exec(stdout)![0] };
}

async function startGateway(extraEnv: Record<string, string> = {}, options: { sync?: boolean } = {}): Promise<Setup> {
  const dir = mkdtempSync(join(tmpdir(), "atlas-inngest-e2e-"));
  const emulator = new InngestEmulator();
  const apiUrl = await emulator.start();
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: dir,
    ATLAS_CONFIG_DIR: join(dir, "config"),
    ATLAS_CONFIG: "",
    INNGEST_SIGNING_KEY: TEST_SIGNING_KEY,
    INNGEST_EVENT_KEY: TEST_EVENT_KEY,
    INNGEST_BASE_URL: apiUrl,
    ...extraEnv,
  };
  const spawn = (port: number) => new RawMcpProcess(["serve", "--demo", "--engine", "inngest", "--port", String(port), "--data-dir", dir, "--instance", INSTANCE], env);
  const setup: Setup = {
    dir,
    emulator,
    env,
    gateway: spawn(0),
    port: 0,
    async restart() {
      setup.gateway = spawn(setup.port);
      await setup.gateway.initialize();
      await waitForListener(setup.port);
      return setup.gateway;
    },
  };
  cleanups.push(async () => {
    if (setup.gateway.child.exitCode === null) await setup.gateway.close();
    await emulator.close();
    rmSync(dir, { recursive: true, force: true });
  });
  if (options.sync === false) return setup;
  await setup.gateway.initialize();
  await emulator.until(() => existsSync(instancePaths(dir, INSTANCE).lock) && listenerPort(dir) > 0, 15_000, "the gateway's listener");
  setup.port = listenerPort(dir);
  const synced = await emulator.sync(`http://127.0.0.1:${setup.port}/api/inngest`);
  expect(synced.status).toBe(200);
  return setup;
}

/** Resolves once the gateway's listener answers on `port` (after a restart the old lock file still names it). */
async function waitForListener(port: number): Promise<void> {
  for (let tries = 0; ; tries++) {
    try {
      const res = await fetch(`http://127.0.0.1:${port}/`);
      await res.body?.cancel();
      return;
    } catch (error) {
      if (tries > 150) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

function text(result: Record<string, unknown> | undefined): string {
  return ((result?.content ?? []) as { text?: string }[]).map((block) => block.text ?? "").join("\n");
}

async function hold(setup: Setup, citizen = "C-1001"): Promise<{ ref: string; run: EmulatedRun }> {
  const held = await setup.gateway.callTool("request_payment_extension", { beneficiary_id: citizen, reason: "hardship: medical bills", days: 30 });
  const ref = /PENDING REVIEW \(Ref: (evt_[0-9a-f]{8})\)/.exec(text(held.result))?.[1];
  expect(ref).toBeDefined();
  const run = await setup.emulator.waitForRun((candidate) => candidate.event.data.ref === ref && candidate.fn.id.endsWith("-governance-workflow"));
  await setup.emulator.waitingRun(run);
  await setup.emulator.until(() => run.opNames().includes("StepRun:notify-reviewer"), 15_000, "the notification step");
  return { ref: ref!, run };
}

async function webhookDecision(setup: Setup, ref: string, decision: "APPROVED" | "DENIED", reason: string): Promise<void> {
  const body = JSON.stringify({ decision, event_id: ref, reviewer: "e2e-reviewer", reason });
  const response = await fetch(`http://127.0.0.1:${setup.port}/webhook/approval`, {
    method: "POST",
    headers: { "content-type": "application/json", ...signWebhook(loadOrCreateWebhookSecret(setup.dir, setup.env), body) },
    body,
  });
  expect(response.status).toBe(200);
}

async function status(setup: Setup, ref: string): Promise<Record<string, unknown>> {
  const answer = await setup.gateway.callTool("atlas_status", { ref, wait_seconds: 10 });
  return answer.result!;
}

function ledgerTypes(setup: Setup, ref: string): string[] {
  return scanLedger(instancePaths(setup.dir, INSTANCE).ledger).records.filter((record) => record.ref === ref).map((record) => record.type);
}

describe("engine inngest, end to end through the built CLI against the emulator", () => {
  it("auto-approve and hold → approve → run once; stdout carries only the protocol; the ledger verifies", async () => {
    const setup = await startGateway();
    const { gateway, emulator } = setup;
    const tools = await gateway.request("tools/list");
    expect((tools.result!.tools as { name: string }[]).map((tool) => tool.name)).toContain("request_payment_extension");

    // Low risk: the agent's call waits while its run executes it; the agent gets the real result.
    const low = await gateway.callTool("check_payment_status", { beneficiary_id: "C-1001" });
    expect(low.result?.isError).toBeFalsy();
    expect(text(low.result)).toContain("C-1001");
    const autoRun = await emulator.waitForRun((run) => run.event.data.route === "auto");
    await emulator.ended(autoRun);
    expect(autoRun.output).toMatchObject({ status: "executed", executed: true, by: "workflow" });

    // High risk: held at once, the run waits for the reviewer; the signed webhook approves.
    const { ref, run } = await hold(setup);
    expect(run.event.id).toBe(`${String(run.event.data.app)}:${ref}`);
    await emulator.until(() => gateway.stderr.includes(`HELD ${ref}`), 15_000, "the HELD line");
    await webhookDecision(setup, ref, "APPROVED", "documented");
    await emulator.ended(run);
    expect(run.output).toMatchObject({ ref, status: "executed", executed: true });
    const decision = emulator.events.find((event) => event.name === DECISION_EVENT)!;
    expect(decision.data).toMatchObject({ ref, decision: "approved", reviewer: "e2e-reviewer", reason: "documented", app: run.event.data.app });
    const answer = await status(setup, ref);
    expect(answer.structuredContent).toMatchObject({ ref, status: "executed", outcome: "ok", decision: { decision: "approved", reviewer: "e2e-reviewer" } });
    expect(text(answer)).toContain("C-1001");

    expect(await gateway.close()).toBe(0);
    expect(gateway.nonProtocol).toEqual([]);
    expect(gateway.stderr).toMatch(/inngest: app 'atlas-gateway-[0-9a-f]{10}-e2e' served on http:\/\/127\.0\.0\.1:\d+\/api\/inngest \(signatures verified\)/);
    const scan = scanLedger(instancePaths(setup.dir, INSTANCE).ledger);
    expect(scan.problem).toBeUndefined();
    expect(ledgerTypes(setup, ref)).toEqual(["request.created", "request.assessed", "request.held", "workflow.event_sent", "workflow.step", "workflow.step", "decision.recorded", "workflow.step", "execution.started", "execution.finished"]);
    expect(scan.records.at(-1)?.type).toBe("gateway.stopped");
  });

  it("deny with the CLI while the gateway runs (no engine flag of its own): the run ends at once and the call never runs", async () => {
    const setup = await startGateway();
    const { ref, run } = await hold(setup);
    const { stdout } = await promisify(execFile)(process.execPath, [BIN, "deny", ref, "--reason", "not eligible", "--reviewer", "erin", "--data-dir", setup.dir], { env: await asErin(setup) });
    expect(stdout).toContain(`denied ${ref} (request_payment_extension) as erin: engine inngest: it will not run.`);
    await setup.emulator.ended(run);
    expect(run.output).toEqual({ ref, status: "denied", executed: false });
    expect((await status(setup, ref)).structuredContent).toMatchObject({ status: "denied", decision: { reason: "not eligible" } });
    expect(ledgerTypes(setup, ref)).not.toContain("execution.started");
  });

  it("expire: Inngest's wait times out at the deadline and the call is expired, never run", async () => {
    const setup = await startGateway();
    const { ref, run } = await hold(setup);
    const deadline = Date.parse(String(run.event.data.deadline));
    setup.emulator.clock.advance(deadline - setup.emulator.clock.now() + 1);
    await setup.emulator.ended(run);
    expect(run.output).toEqual({ ref, status: "expired", executed: false });
    expect((await status(setup, ref)).structuredContent).toMatchObject({ status: "expired" });
  });

  it("crash while the run waits (SIGKILL), restart, approve: the call runs once", async () => {
    const setup = await startGateway();
    const { ref, run } = await hold(setup);
    setup.gateway.child.kill("SIGKILL");
    await setup.gateway.exited;
    await setup.restart();
    await webhookDecision(setup, ref, "APPROVED", "after restart");
    await setup.emulator.ended(run);
    expect(run.output).toMatchObject({ ref, status: "executed", executed: true });
    expect(ledgerTypes(setup, ref).filter((type) => type === "execution.started")).toHaveLength(1);
  });

  it("a reviewer command with no gateway running sends the decision; Inngest retries until the gateway is back", async () => {
    const setup = await startGateway();
    const { ref, run } = await hold(setup, "C-2002");
    expect(await setup.gateway.close()).toBe(0);

    // The engine came from the MCP client's --engine flag only: the command learns it from the data dir.
    expect(setup.env.ATLAS_ENGINE).toBeUndefined();
    const { stdout } = await promisify(execFile)(process.execPath, [BIN, "approve", ref, "--reason", "ok", "--reviewer", "erin", "--data-dir", setup.dir], { env: await asErin(setup) });
    expect(stdout).toContain(`approved ${ref} (request_payment_extension) as erin: engine inngest: its Inngest run executes it once the decision reaches it and the gateway is running again`);
    const sent = await setup.emulator.waitForEvent((event) => event.name === DECISION_EVENT);
    expect(sent.data).toMatchObject({ ref, decision: "approved", reviewer: "erin", reason: "ok" });
    // The wait resumed; the run's next call finds no gateway and is retried on Inngest's backoff.
    await setup.emulator.until(() => run.calls.some((call) => call.status === "transport-error"), 15_000, "a failed call");
    await setup.emulator.idle();
    await setup.restart();
    setup.emulator.clock.advance(INNGEST_BACKOFF(run.calls.filter((call) => call.status === "transport-error").length));
    await setup.emulator.ended(run);
    expect(run.output).toMatchObject({ ref, status: "executed", executed: true });
    expect((await status(setup, ref)).structuredContent).toMatchObject({ status: "executed", outcome: "ok" });
  });

  it("an app Inngest never synced: atlas_status and pending say the run has not started, and why, instead of 'Running now'", async () => {
    const setup = await startGateway({ ATLAS_INNGEST_RUN_START_TIMEOUT: "300ms" });
    // The gateway serves and sends events, but nobody synced the app: Inngest accepts the events and starts nothing.
    setup.emulator.registrations.splice(0);
    const held = await setup.gateway.callTool("request_payment_extension", { beneficiary_id: "C-3003", reason: "hardship", days: 5 });
    const ref = /Ref: (evt_[0-9a-f]{8})/.exec(text(held.result))![1]!;
    await setup.emulator.until(() => setup.gateway.stderr.includes(`inngest: ${ref} (request_payment_extension): Inngest accepted its request event, but no run has started`), 15_000, "the stall line on stderr");
    expect(setup.emulator.runs).toEqual([]);
    const pending = await promisify(execFile)(process.execPath, [BIN, "pending", "--data-dir", setup.dir], { env: setup.env });
    expect(pending.stdout).toContain(`warning: ${ref}: Inngest accepted its request event, but no run has started`);
    const approved = await promisify(execFile)(process.execPath, [BIN, "approve", ref, "--reviewer", "erin", "--data-dir", setup.dir], { env: await asErin(setup) });
    expect(approved.stdout).toContain(`approved ${ref} (request_payment_extension) as erin: engine inngest: warning: Inngest accepted its request event, but no run has started`);
    const answer = await setup.gateway.callTool("atlas_status", { ref });
    expect(text(answer.result)).not.toContain("Running now");
    expect(text(answer.result)).toMatch(/APPROVED \(approved by erin\), but not running\. Warning: Inngest accepted its request event, but no run has started within 300 ms: is app '\S+' synced with Inngest/);
    expect(answer.result?.structuredContent).toMatchObject({ status: "approved", problem: { kind: "run_not_started" } });
    expect(await setup.gateway.close()).toBe(0);
    const { stdout } = await promisify(execFile)(process.execPath, [BIN, "doctor", "--data-dir", setup.dir], { env: setup.env }).catch((error: { stdout: string }) => error);
    expect(stdout).toContain(`✗ inngest: ${ref} (request_payment_extension, approved): Inngest accepted its request event, but no run has started`);
  });

  it("with inngest.encryptionKey, Inngest never sees the tool call or step data in clear", async () => {
    const setup = await startGateway({ ATLAS_INNGEST_ENCRYPTION_KEY: ENCRYPTION_KEY });
    await setup.gateway.callTool("check_payment_status", { beneficiary_id: "C-1001" });
    const { ref, run } = await hold(setup);
    await webhookDecision(setup, ref, "APPROVED", "documented");
    await setup.emulator.ended(run);
    expect(run.output).toMatchObject({ __ENCRYPTED__: true });
    for (const event of setup.emulator.events.filter((candidate) => candidate.name === REQUEST_EVENT)) {
      expect(event.data.call).toMatchObject({ __ENCRYPTED__: true, __STRATEGY__: "inngest/libsodium" });
      expect(event.data.ref).toMatch(/^evt_/);
    }
    expect(JSON.stringify(setup.emulator.events)).not.toContain("C-1001");
    const stepData = setup.emulator.runs.flatMap((candidate) => candidate.calls.map((call) => call.text)).join("\n");
    expect(stepData).toContain("__ENCRYPTED__");
    expect(stepData).not.toContain("C-1001");
    expect(stepData).not.toContain("executed");
    expect((await status(setup, ref)).structuredContent).toMatchObject({ status: "executed" });
    expect(await setup.gateway.close()).toBe(0);
    expect(setup.gateway.nonProtocol).toEqual([]);
  });

  it("connect mode: MCP starts while Inngest is unreachable, nothing reaches stdout, and shutdown is clean", async () => {
    const setup = await startGateway({ ATLAS_INNGEST_MODE: "connect" }, { sync: false });
    await setup.gateway.initialize();
    await setup.emulator.until(() => /inngest (info|warn|error): .*(onnect|handshake)/.test(setup.gateway.stderr) && setup.gateway.stderr.includes("connecting out to"), 15_000, "the connect worker's log lines");
    expect(await setup.gateway.close()).toBe(0);
    expect(setup.gateway.nonProtocol).toEqual([]);
    expect(scanLedger(instancePaths(setup.dir, INSTANCE).ledger).records.at(-1)?.type).toBe("gateway.stopped");
  });

  it("refuses to start with missing keys outside dev mode, with one line per problem and exit code 2", async () => {
    const setup = await startGateway({ INNGEST_SIGNING_KEY: "", INNGEST_EVENT_KEY: "" }, { sync: false });
    expect(await setup.gateway.exited).toBe(2);
    expect(setup.gateway.stderr).toContain("inngest.signingKey (INNGEST_SIGNING_KEY): missing");
    expect(setup.gateway.stderr).toContain("inngest.eventKey (INNGEST_EVENT_KEY): missing");
    expect(setup.gateway.stderr).not.toMatch(/\n\s+at /);
  });

  it("refuses to start with a review timeout longer than an Inngest wait can last", async () => {
    const setup = await startGateway({ ATLAS_REVIEW_TIMEOUT: "400d" }, { sync: false });
    expect(await setup.gateway.exited).toBe(2);
    expect(setup.gateway.stderr).toContain("reviewTimeout (ATLAS_REVIEW_TIMEOUT): 400 days is longer than an Inngest wait can last (366 days");
  });
});
