import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { instancePaths } from "../../src/dataDir.js";
import { scanLedger } from "../../src/ledger/ledger.js";
import { RawMcpProcess } from "../helpers/rawMcpProcess.js";
import { UncertainOutcomeError } from "../../src/errors.js";
import { statusToResult } from "../../src/mcp/toolResults.js";
import { INNGEST_BACKOFF, InngestEmulator, TEST_EVENT_KEY, TEST_SIGNING_KEY } from "../helpers/inngestEmulator.js";
import { highRiskCall, lowRiskCall, startEmulatedGateway, type EmulatedGateway } from "../helpers/inngestEngineFixture.js";

// Issue 10 item 5 on the inngest engine: an upstream that times out, crashes or is cancelled mid-call (the upstream
// set throws `UncertainOutcomeError`) may have acted, so the call's outcome is `unknown` — never `error` — and no
// step runs it again, however often Inngest retries. Against the emulated Inngest executor.

const running: EmulatedGateway[] = [];
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const gateway of running.splice(0)) await gateway.close();
  for (const cleanUp of cleanups.splice(0).reverse()) await cleanUp();
});

const interrupted = async () => {
  throw new UncertainOutcomeError("upstream 'files' did not answer within 300 ms");
};

async function settle(gateway: EmulatedGateway): Promise<void> {
  // Inngest would retry a failed step with backoff: sit the delays out, so a retry that ran the call again shows.
  for (let retry = 1; retry <= 4; retry++) {
    await gateway.emulator.idle();
    gateway.emulator.clock.advance(INNGEST_BACKOFF(retry));
  }
  await gateway.emulator.idle();
}

const typesOf = (gateway: EmulatedGateway, ref: string) => gateway.records().filter((record) => record.ref === ref).map((record) => record.type);

describe("engine inngest: an interrupted upstream call is unknown, never error, never re-run", () => {
  it("auto-approved: the agent is told OUTCOME UNKNOWN, the ledger says unknown, the step is not retried", async () => {
    const gateway = await startEmulatedGateway({ executor: interrupted });
    running.push(gateway);
    const decision = await gateway.engine.submit(lowRiskCall);
    expect(decision.kind).toBe("allow");
    const result = (decision as { result: { isError?: boolean; content: { text: string }[] } }).result;
    expect(result.isError).toBe(true);
    expect(result.content[0]!.text).toMatch(/^OUTCOME UNKNOWN \(Ref: evt_[0-9a-f]{8}\): upstream 'files' did not answer within 300 ms\. .*will not be re-run/);
    const run = await gateway.emulator.waitForRun((candidate) => candidate.event.data.ref === decision.ref);
    await gateway.emulator.ended(run);
    await settle(gateway);
    expect(run).toMatchObject({ status: "completed", output: { status: "unknown", outcome: "unknown", by: "workflow" } });
    expect(gateway.executed).toEqual(["read_file"]);
    const types = typesOf(gateway, decision.ref!);
    expect(types).toContain("execution.interrupted");
    expect(types).not.toContain("execution.finished");
    expect(gateway.records().find((record) => record.ref === decision.ref && record.type === "execution.interrupted")?.data).toMatchObject({ outcome: "unknown", reason: "upstream 'files' did not answer within 300 ms" });
  });

  it("held and approved: the request ends unknown, atlas_status says so, and it runs once", async () => {
    const gateway = await startEmulatedGateway({ executor: interrupted });
    running.push(gateway);
    const { ref } = await gateway.engine.submit(highRiskCall);
    const run = await gateway.emulator.waitForRun((candidate) => candidate.event.data.ref === ref && candidate.fn.id === gateway.functionId);
    await gateway.emulator.waitingRun(run);
    await gateway.engine.decide({ ref: ref!, decision: "approved", reviewer: "bob", reason: "ok" });
    await gateway.emulator.ended(run);
    await settle(gateway);
    expect(run).toMatchObject({ status: "completed", output: { ref, status: "unknown", outcome: "unknown" } });
    expect(gateway.engine.get(ref!)).toMatchObject({ status: "unknown", outcome: "unknown" });
    expect(statusToResult(gateway.engine.get(ref!)!).content.map((block) => (block as { text: string }).text).join("\n")).toMatch(/OUTCOME UNKNOWN. The action was interrupted while running .*upstream timed out/);
    expect(gateway.executed).toEqual(["transfer"]);
    const types = typesOf(gateway, ref!);
    expect(types.filter((type) => type === "execution.started")).toHaveLength(1);
    expect(types.at(-1)).toBe("execution.interrupted");
    expect(types).not.toContain("execution.finished");
  });

  it("an error the upstream itself answered stays a plain error (the distinction is the error's kind)", async () => {
    const gateway = await startEmulatedGateway({ executor: async () => { throw new Error("upstream 'files' refused: bad path"); } });
    running.push(gateway);
    await expect(gateway.engine.submit(lowRiskCall)).rejects.toThrow("bad path");
    await settle(gateway);
    const finished = gateway.records().find((record) => record.type === "execution.finished");
    expect(finished?.data).toMatchObject({ outcome: "error" });
    expect(gateway.records().some((record) => record.type === "execution.interrupted")).toBe(false);
  });
});

describe("engine inngest, built CLI: a real upstream that does not answer within toolTimeout", () => {
  it("ends unknown through the emulator's execute step, and the upstream sees the call once", async () => {
    const dir = mkdtempSync(join(tmpdir(), "atlas-inngest-unknown-"));
    const emulator = new InngestEmulator();
    const apiUrl = await emulator.start();
    const requestLog = join(dir, "requests.log");
    const configFile = join(dir, "atlas.json");
    const fixture = fileURLToPath(new URL("../fixtures/raw-upstream.mjs", import.meta.url));
    writeFileSync(configFile, JSON.stringify({ engine: "inngest", toolTimeout: "300ms", upstreams: { raw: { command: process.execPath, args: [fixture], env: { FIXTURE_MODE: "", FIXTURE_LOG: requestLog } } } }));
    const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: dir, ATLAS_CONFIG_DIR: join(dir, "config"), ATLAS_CONFIG: configFile, INNGEST_SIGNING_KEY: TEST_SIGNING_KEY, INNGEST_EVENT_KEY: TEST_EVENT_KEY, INNGEST_BASE_URL: apiUrl };
    const gateway = new RawMcpProcess(["serve", "--port", "0", "--data-dir", dir], env);
    cleanups.push(async () => {
      if (gateway.child.exitCode === null) await gateway.close();
      await emulator.close();
      rmSync(dir, { recursive: true, force: true });
    });
    await gateway.initialize();
    await emulator.until(() => /listening on http:\/\/127\.0\.0\.1:\d+/.test(gateway.stderr), 15_000, "the listener");
    const port = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(gateway.stderr)![1];
    expect((await emulator.sync(`http://127.0.0.1:${port}/api/inngest`)).status).toBe(200);

    const answer = await gateway.callTool("hang", {});
    const text = JSON.stringify(answer.result?.content);
    expect(answer.result?.isError).toBe(true);
    expect(text).toMatch(/OUTCOME UNKNOWN \(Ref: evt_[0-9a-f]{8}\): upstream 'raw' did not answer within 300 ms/);
    const ref = /Ref: (evt_[0-9a-f]{8})/.exec(text)![1];
    const run = await emulator.waitForRun((candidate) => candidate.event.data.ref === ref);
    await emulator.ended(run);
    for (let retry = 1; retry <= 4; retry++) {
      await emulator.idle();
      emulator.clock.advance(INNGEST_BACKOFF(retry));
    }
    await emulator.idle();
    expect(run).toMatchObject({ status: "completed", output: { status: "unknown", outcome: "unknown" } });
    const records = scanLedger(instancePaths(dir, "main").ledger).records.filter((record) => record.ref === ref);
    expect(records.find((record) => record.type === "execution.interrupted")?.data).toMatchObject({ outcome: "unknown", reason: "upstream 'raw' did not answer within 300 ms" });
    expect(records.map((record) => record.type)).not.toContain("execution.finished");
    expect(existsSync(requestLog) && readFileSync(requestLog, "utf8").split("\n").filter((line) => line.endsWith(" hang"))).toHaveLength(1);
  }, 90_000);
});
