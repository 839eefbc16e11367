import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterEach, describe, expect, it } from "vitest";
import { DECISION_EVENT, REQUEST_EVENT } from "../../src/inngest/events.js";
import { instancePaths } from "../../src/dataDir.js";
import { scanLedger } from "../../src/ledger/ledger.js";
import { loadOrCreateWebhookSecret, signWebhook } from "../../src/http/webhook.js";
import { FakeEventApi, FakeExecutor, TEST_EVENT_KEY, TEST_SIGNING_KEY, type CapturedEvent } from "../helpers/fakeInngest.js";
import { BIN, RawMcpProcess } from "../helpers/rawMcpProcess.js";

// The built CLI with engine inngest, end to end: its events go to a local stand-in for Inngest's event API, and the
// test plays Inngest's executor against the gateway's /api/inngest, so a decision flows back through the served
// function. No Inngest server runs here.

const INSTANCE = "e2e";
const ENCRYPTION_KEY = "e2e-encryption-key-0123456789abcdef";

interface Setup {
  dir: string;
  api: FakeEventApi;
  gateway: RawMcpProcess;
  env: NodeJS.ProcessEnv;
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanUp of cleanups.splice(0).reverse()) await cleanUp();
});

async function startGateway(extraEnv: Record<string, string> = {}, extraArgs: string[] = []): Promise<Setup> {
  const dir = mkdtempSync(join(tmpdir(), "atlas-inngest-e2e-"));
  const api = new FakeEventApi();
  const apiUrl = await api.start();
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
  const gateway = new RawMcpProcess(["serve", "--demo", "--engine", "inngest", "--port", "0", "--data-dir", dir, "--instance", INSTANCE, ...extraArgs], env);
  cleanups.push(async () => {
    if (gateway.child.exitCode === null) await gateway.close();
    await api.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { dir, api, gateway, env };
}

function listenerPort(dir: string): number {
  return (JSON.parse(readFileSync(instancePaths(dir, INSTANCE).lock, "utf8")) as { port: number }).port;
}

function executorFor(setup: Setup, event: CapturedEvent): FakeExecutor {
  return new FakeExecutor({
    url: `http://127.0.0.1:${listenerPort(setup.dir)}/api/inngest`,
    functionId: `${String(event.data.app)}-governance-workflow`,
    event,
    signingKey: TEST_SIGNING_KEY,
  });
}

function text(result: Record<string, unknown> | undefined): string {
  return ((result?.content ?? []) as { text?: string }[]).map((block) => block.text ?? "").join("\n");
}

/** What the run returned; with encryption on, Inngest only ever holds it encrypted. */
function expectOutput(run: FakeExecutor, encrypted: boolean, expected: Record<string, unknown>): void {
  if (encrypted) expect(run.output).toMatchObject({ __ENCRYPTED__: true });
  else expect(run.output).toMatchObject(expected);
}

async function runScenario(setup: Setup, encrypted = false): Promise<{ autoRun: FakeExecutor; heldRun: FakeExecutor; ref: string }> {
  const { gateway, api } = setup;
  expect((await gateway.initialize()).result).toMatchObject({ serverInfo: { name: "atlas-gateway" } });
  const tools = await gateway.request("tools/list");
  expect((tools.result!.tools as { name: string }[]).map((tool) => tool.name)).toContain("request_payment_extension");

  // Low risk: the agent's call waits while its run executes it; the agent gets the real result.
  const lowCall = gateway.callTool("check_payment_status", { beneficiary_id: "B-1001" });
  const autoEvent = await api.waitFor((event) => event.name === REQUEST_EVENT);
  expect(autoEvent.data).toMatchObject({ route: "auto", instance: INSTANCE });
  const autoRun = await executorFor(setup, autoEvent).drive();
  expectOutput(autoRun, encrypted, { status: "executed", executed: true, by: "workflow" });
  const low = await lowCall;
  expect(low.result?.isError).toBeFalsy();
  expect(text(low.result)).toContain("B-1001");
  expect(text(low.result)).not.toContain("PENDING");

  // High risk: held at once, the run waits for the reviewer.
  const held = await gateway.callTool("request_payment_extension", { beneficiary_id: "B-1001", reason: "hardship: medical bills" });
  const ref = /PENDING REVIEW \(Ref: (evt_[0-9a-f]{8})\)/.exec(text(held.result))?.[1];
  expect(ref).toBeDefined();
  const heldEvent = await api.waitFor((event) => event.name === REQUEST_EVENT && event.data.ref === ref);
  expect(heldEvent.id).toBe(`${String(heldEvent.data.app)}:${ref}`);
  const heldRun = await executorFor(setup, heldEvent).drive();
  expect(heldRun.waiting?.displayName).toBe("await-decision");
  expect(setup.gateway.stderr).toContain(`HELD ${ref}`);

  // The reviewer approves through the signed webhook; the gateway sends the decision to Inngest.
  const body = JSON.stringify({ decision: "APPROVED", event_id: ref, reviewer: "e2e-reviewer", reason: "documented" });
  const response = await fetch(`http://127.0.0.1:${listenerPort(setup.dir)}/webhook/approval`, {
    method: "POST",
    headers: { "content-type": "application/json", ...signWebhook(loadOrCreateWebhookSecret(setup.dir, setup.env), body) },
    body,
  });
  expect(response.status).toBe(200);
  const decision = await api.waitFor((event) => event.name === DECISION_EVENT && event.data.ref === ref);
  expect(decision.data).toMatchObject({ ref, decision: "approved", reviewer: "e2e-reviewer", reason: "documented", app: heldEvent.data.app });
  await heldRun.resume(decision);
  expectOutput(heldRun, encrypted, { ref, status: "executed", executed: true });

  const status = await gateway.callTool("atlas_status", { ref, wait_seconds: 10 });
  expect(status.result?.structuredContent).toMatchObject({ ref, status: "executed", outcome: "ok", decision: { decision: "approved", reviewer: "e2e-reviewer" } });
  expect(text(status.result)).toContain("B-1001");
  return { autoRun, heldRun, ref: ref! };
}

describe("engine inngest, end to end through the built CLI", () => {
  it("governs both paths through the served function; stdout carries only the protocol; the ledger verifies", async () => {
    const setup = await startGateway();
    const { ref } = await runScenario(setup);
    expect(setup.api.keys.every((key) => key === TEST_EVENT_KEY)).toBe(true);
    expect(setup.api.raw.join("\n")).toContain("B-1001");

    expect(await setup.gateway.close()).toBe(0);
    expect(setup.gateway.nonProtocol).toEqual([]);
    expect(setup.gateway.stderr).toMatch(/inngest: app 'atlas-gateway-[0-9a-f]{10}-e2e' served on http:\/\/127\.0\.0\.1:\d+\/api\/inngest \(signatures verified\)/);
    const scan = scanLedger(instancePaths(setup.dir, INSTANCE).ledger);
    expect(scan.problem).toBeUndefined();
    const types = scan.records.filter((record) => record.ref === ref).map((record) => record.type);
    expect(types).toEqual(["request.created", "request.assessed", "request.held", "workflow.event_sent", "workflow.step", "workflow.step", "decision.recorded", "workflow.step", "execution.started", "execution.finished"]);
    expect(scan.records.at(-1)?.type).toBe("gateway.stopped");
  });

  it("with inngest.encryptionKey, Inngest never sees the tool call or step data in clear", async () => {
    const setup = await startGateway({ ATLAS_INNGEST_ENCRYPTION_KEY: ENCRYPTION_KEY });
    const { autoRun, heldRun } = await runScenario(setup, true);
    const requests = setup.api.events.filter((event) => event.name === REQUEST_EVENT);
    for (const event of requests) {
      expect(event.data.call).toMatchObject({ __ENCRYPTED__: true, __STRATEGY__: "inngest/libsodium" });
      expect(event.data.ref).toMatch(/^evt_/);
    }
    expect(setup.api.raw.filter((raw) => raw.includes(REQUEST_EVENT)).join("\n")).not.toContain("B-1001");
    const stepData = [...autoRun.responses, ...heldRun.responses].map((res) => res.text).join("\n");
    expect(stepData).toContain("__ENCRYPTED__");
    expect(stepData).not.toContain("B-1001");
    expect(stepData).not.toContain("executed");
    expect(await setup.gateway.close()).toBe(0);
    expect(setup.gateway.nonProtocol).toEqual([]);
  });

  it("a reviewer command with no gateway running records the decision and sends it to Inngest", async () => {
    const setup = await startGateway();
    await setup.gateway.initialize();
    const held = await setup.gateway.callTool("request_payment_extension", { beneficiary_id: "B-2002", reason: "hardship" });
    const ref = /Ref: (evt_[0-9a-f]{8})/.exec(text(held.result))![1]!;
    await setup.api.waitFor((event) => event.name === REQUEST_EVENT && event.data.ref === ref);
    expect(await setup.gateway.close()).toBe(0);

    const from = setup.api.events.length;
    const { stdout } = await promisify(execFile)(process.execPath, [BIN, "deny", ref, "--reason", "not eligible", "--data-dir", setup.dir], { env: { ...setup.env, ATLAS_ENGINE: "inngest" } });
    expect(stdout).toContain(`denied ${ref}`);
    const sent = await setup.api.waitFor((event) => event.name === DECISION_EVENT, 10_000, from);
    expect(sent.data).toMatchObject({ ref, decision: "denied", reviewer: userInfo().username, reason: "not eligible" });
  });

  it("connect mode: MCP starts while Inngest is unreachable, nothing reaches stdout, and shutdown is clean", async () => {
    const setup = await startGateway({ ATLAS_INNGEST_MODE: "connect" });
    const started = performance.now();
    await setup.gateway.initialize();
    expect(performance.now() - started).toBeLessThan(10_000);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(setup.gateway.stderr).toContain("connecting out to");
    expect(setup.gateway.stderr).toMatch(/inngest (info|warn|error): .*(onnect|handshake)/);
    const stopping = performance.now();
    expect(await setup.gateway.close()).toBe(0);
    expect(performance.now() - stopping).toBeLessThan(8_000);
    expect(setup.gateway.nonProtocol).toEqual([]);
    expect(scanLedger(instancePaths(setup.dir, INSTANCE).ledger).records.at(-1)?.type).toBe("gateway.stopped");
  });

  it("refuses to start with missing keys outside dev mode, with one line per problem and exit code 2", async () => {
    const setup = await startGateway({ INNGEST_SIGNING_KEY: "", INNGEST_EVENT_KEY: "" });
    expect(await setup.gateway.exited).toBe(2);
    expect(setup.gateway.stderr).toContain("inngest.signingKey (INNGEST_SIGNING_KEY): missing");
    expect(setup.gateway.stderr).toContain("inngest.eventKey (INNGEST_EVENT_KEY): missing");
    expect(setup.gateway.stderr).not.toMatch(/\n\s+at /);
  });
});
