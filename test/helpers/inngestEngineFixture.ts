import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Executor, GovernedCall } from "../../src/governance/engine.js";
import type { Server } from "node:http";
import { loadConfig } from "../../src/config.js";
import { createRequestHandler, startListener } from "../../src/http/listener.js";
import { loadOrCreateWebhookSecret, WebhookVerifier } from "../../src/http/webhook.js";
import { FUNCTION_ID, type OutgoingEvent } from "../../src/inngest/events.js";
import { InngestEngine, type InngestEngineOptions } from "../../src/inngest/inngestEngine.js";
import { SERVE_PATH } from "../../src/inngest/settings.js";
import { startInngestEngine } from "../../src/inngest/startInngestEngine.js";
import { scanLedger, type LedgerRecord } from "../../src/ledger/ledger.js";
import { createRulesEvaluator } from "../../src/risk/assess.js";
import { InngestEmulator, TEST_EVENT_KEY, TEST_SIGNING_KEY, type InngestEmulatorOptions } from "./inngestEmulator.js";

export const APP_ID = "atlas-test";

/** A read-only tool: scored 10, runs without review. */
export const lowRiskCall: GovernedCall = { upstream: "files", tool: "read_file", name: "read_file", args: { path: "/tmp/a.txt" }, annotations: { readOnlyHint: true } };
/** An unannotated tool: scored 80, held for review. The token is a secret the events must not carry. */
export const highRiskCall: GovernedCall = { upstream: "bank", tool: "transfer", name: "transfer", args: { iban: "DE00 1234", amount: 500, api_token: "sk_live_abcdefghijklmnop" } };

export interface EngineFixture {
  engine: InngestEngine;
  dir: string;
  ledgerPath: string;
  /** Every event the emulated event API accepted, as the engine sent it. */
  sent: OutgoingEvent[];
  emulator: InngestEmulator;
  executed: { upstream: string; tool: string; args: Record<string, unknown> }[];
  logs: string[];
  held: string[];
  /** Makes the event API answer 500 (an Inngest outage) while true. */
  outage: { on: boolean };
  records(): LedgerRecord[];
  reopen(overrides?: Partial<InngestEngineOptions>): InngestEngine;
  cleanUp(): Promise<void>;
}

/**
 * A real InngestEngine on a temporary ledger whose events go to the emulator's event API (an app that is not
 * synced: Inngest accepts the events and starts no run, so a test plays the steps itself), and a fake upstream
 * executor that records calls.
 */
export async function createEngineFixture(overrides: Partial<InngestEngineOptions> = {}, result?: (call: { tool: string }) => Promise<CallToolResult>): Promise<EngineFixture> {
  const dir = mkdtempSync(join(tmpdir(), "atlas-inngest-"));
  const emulator = new InngestEmulator();
  await emulator.start();
  const ledgerPath = join(dir, "ledgers", "main.jsonl");
  const sent = emulator.received as unknown as OutgoingEvent[];
  const executed: EngineFixture["executed"] = [];
  const logs: string[] = [];
  const held: string[] = [];
  const outage = {
    get on() {
      return emulator.failNextEvents > 0;
    },
    set on(value: boolean) {
      emulator.failNextEvents = value ? Number.MAX_SAFE_INTEGER : 0;
    },
  };
  const executor: Executor = async (call) => {
    executed.push(call);
    return result ? result(call) : { content: [{ type: "text", text: `${call.tool} done` }] };
  };
  const options = (): InngestEngineOptions => ({
    ledgerPath,
    instance: "main",
    appId: APP_ID,
    evaluator: createRulesEvaluator({ threshold: 70, overrides: {} }),
    threshold: 70,
    reviewTimeoutMs: 3_600_000,
    executor,
    dispatcher: {
      send: async (event) => {
        const res = await fetch(`${emulator.url}/e/${TEST_EVENT_KEY}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(event) });
        const body = (await res.json()) as { error?: string };
        if (!res.ok) throw new Error(`Inngest API Error: ${res.status} ${body.error ?? ""}`);
      },
    },
    dispatchTimeoutMs: 5_000,
    version: "test",
    log: (line) => logs.push(line),
    onHeld: (view) => held.push(view.ref),
    retry: { baseMs: 20, maxMs: 80 },
    ...overrides,
  });
  const fixture: EngineFixture = {
    engine: InngestEngine.open(options()),
    dir,
    ledgerPath,
    sent,
    emulator,
    executed,
    logs,
    held,
    outage,
    records: () => scanLedger(ledgerPath).records,
    reopen(more = {}) {
      fixture.engine = InngestEngine.open({ ...options(), ...more });
      return fixture.engine;
    },
    async cleanUp() {
      await fixture.engine.close();
      await emulator.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  fixture.engine.resume();
  return fixture;
}

/** Waits until `check` passes (polling), or fails with its last error. */
export async function eventually<T>(check: () => T, timeoutMs = 5_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return check();
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }
}

export interface EmulatedGateway {
  engine: InngestEngine;
  appId: string;
  emulator: InngestEmulator;
  /** The gateway's `/api/inngest` URL. */
  url: string;
  functionId: string;
  dir: string;
  ledgerPath: string;
  executed: string[];
  logs: string[];
  records(): LedgerRecord[];
  /** Stops the gateway (as a crash would: no further steps run) and keeps the data dir and emulator. */
  stop(): Promise<void>;
  /** Starts a new gateway process on the same data dir, listening where the old one did, as a restart does. */
  restart(): Promise<void>;
  close(): Promise<void>;
}

export interface EmulatedGatewayOptions {
  env?: Record<string, string>;
  emulator?: InngestEmulatorOptions;
  /** Sync the app with the emulator once serving (default true). */
  sync?: boolean;
  executor?: Executor;
  expiryGraceMs?: number;
}

/**
 * A real `inngest` engine (`startInngestEngine`: client, function, serve handler) on the gateway's own listener,
 * talking to an `InngestEmulator` over HTTP on 127.0.0.1: events go to its event API, its executor calls
 * `/api/inngest` with signed requests. In-process, so a test can drive many scenarios quickly.
 */
export async function startEmulatedGateway(options: EmulatedGatewayOptions = {}): Promise<EmulatedGateway> {
  const dir = mkdtempSync(join(tmpdir(), "atlas-emulated-"));
  const emulator = new InngestEmulator(options.emulator);
  const apiUrl = await emulator.start();
  const config = loadConfig({
    env: { HOME: dir, ATLAS_ENGINE: "inngest", INNGEST_SIGNING_KEY: TEST_SIGNING_KEY, INNGEST_EVENT_KEY: TEST_EVENT_KEY, INNGEST_BASE_URL: apiUrl, ...options.env },
    userConfig: false,
    flags: { dataDir: dir },
  });
  const executed: string[] = [];
  const logs: string[] = [];
  const log = (line: string) => logs.push(line);
  const ledgerPath = join(dir, "ledgers", "main.jsonl");
  const executor: Executor = async (call, execOptions) => {
    executed.push(call.tool);
    if (options.executor) return options.executor(call, execOptions);
    return { content: [{ type: "text", text: `${call.tool} done` }] };
  };
  let port = 0;
  let current: { engine: InngestEngine; appId: string; server: Server } | undefined;
  const boot = async () => {
    const started = await startInngestEngine({ config, instance: "main", ledgerPath, evaluator: createRulesEvaluator(config.risk), executor, version: "test", log, onHeld: (view) => log(`HELD ${view.ref}`), ...(options.expiryGraceMs !== undefined ? { expiryGraceMs: options.expiryGraceMs } : {}) });
    started.engine.resume();
    const listening = await startListener(
      createRequestHandler({ engine: started.engine, verifier: new WebhookVerifier(loadOrCreateWebhookSecret(dir, { ATLAS_CONFIG_DIR: join(dir, "config") })), dataDir: dir, version: "test", log, routes: started.routes }),
      "127.0.0.1",
      port,
      log,
    );
    port = listening!.port;
    current = { engine: started.engine, appId: started.appId, server: listening!.server };
    gateway.engine = started.engine;
  };
  const stop = async () => {
    if (!current) return;
    const { engine, server } = current;
    current = undefined;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
    await engine.close();
  };
  const gateway: EmulatedGateway = {
    engine: undefined as unknown as InngestEngine,
    appId: "",
    emulator,
    url: "",
    functionId: "",
    dir,
    ledgerPath,
    executed,
    logs,
    records: () => scanLedger(ledgerPath).records,
    stop,
    restart: boot,
    async close() {
      await stop();
      await emulator.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  await boot();
  gateway.appId = current!.appId;
  gateway.url = `http://127.0.0.1:${port}${SERVE_PATH}`;
  gateway.functionId = `${gateway.appId}-${FUNCTION_ID}`;
  if (options.sync !== false) {
    const synced = await emulator.sync(gateway.url);
    if (synced.status !== 200) throw new Error(`sync failed: HTTP ${synced.status} ${synced.body}`);
  }
  return gateway;
}
