import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Executor, GovernedCall } from "../../src/governance/engine.js";
import type { OutgoingEvent } from "../../src/inngest/events.js";
import { InngestEngine, type InngestEngineOptions } from "../../src/inngest/inngestEngine.js";
import { scanLedger, type LedgerRecord } from "../../src/ledger/ledger.js";
import { createRulesEvaluator } from "../../src/risk/assess.js";

export const APP_ID = "atlas-test";

/** A read-only tool: scored 10, runs without review. */
export const lowRiskCall: GovernedCall = { upstream: "files", tool: "read_file", name: "read_file", args: { path: "/tmp/a.txt" }, annotations: { readOnlyHint: true } };
/** An unannotated tool: scored 80, held for review. The token is a secret the events must not carry. */
export const highRiskCall: GovernedCall = { upstream: "bank", tool: "transfer", name: "transfer", args: { iban: "DE00 1234", amount: 500, api_token: "sk_live_abcdefghijklmnop" } };

export interface EngineFixture {
  engine: InngestEngine;
  dir: string;
  ledgerPath: string;
  sent: OutgoingEvent[];
  executed: { upstream: string; tool: string; args: Record<string, unknown> }[];
  logs: string[];
  held: string[];
  /** Makes the dispatcher fail (an Inngest outage) while true. */
  outage: { on: boolean };
  records(): LedgerRecord[];
  reopen(overrides?: Partial<InngestEngineOptions>): InngestEngine;
  cleanUp(): Promise<void>;
}

/**
 * A real InngestEngine on a temporary ledger, with a fake dispatcher that records events and a fake executor that
 * records calls — no Inngest involved.
 */
export function createEngineFixture(overrides: Partial<InngestEngineOptions> = {}, result?: (call: { tool: string }) => Promise<CallToolResult>): EngineFixture {
  const dir = mkdtempSync(join(tmpdir(), "atlas-inngest-"));
  const ledgerPath = join(dir, "ledgers", "main.jsonl");
  const sent: OutgoingEvent[] = [];
  const executed: EngineFixture["executed"] = [];
  const logs: string[] = [];
  const held: string[] = [];
  const outage = { on: false };
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
        if (outage.on) throw new Error("connect ECONNREFUSED 127.0.0.1:8288");
        sent.push(event);
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
