import { execFile } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { instancePaths } from "../../src/dataDir.js";
import { scanLedger } from "../../src/ledger/ledger.js";
import { InngestEmulator, TEST_EVENT_KEY, TEST_SIGNING_KEY } from "../helpers/inngestEmulator.js";
import { BIN, RawMcpProcess } from "../helpers/rawMcpProcess.js";
import { until } from "../helpers/until.js";

// Issue 11 item 5 on the inngest engine: an unopenable ledger at start leaves the gateway serving (tools/list works),
// every call refused with the cause, `GET /` reporting it, the workflow endpoint answering 503, and the gateway
// recovers by itself once the ledger can be written. Built CLI against the Inngest emulator.

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanUp of cleanups.splice(0).reverse()) await cleanUp();
});

const textOf = (result: Record<string, unknown> | undefined) => JSON.stringify(result?.content ?? "");

describe("engine inngest: an unopenable ledger at start (fail closed without dying)", () => {
  it("serves, refuses every call with the cause, reports it on GET / and /api/inngest, recovers", async () => {
    const dir = mkdtempSync(join(tmpdir(), "atlas-inngest-failclosed-"));
    const emulator = new InngestEmulator();
    const apiUrl = await emulator.start();
    const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: dir, ATLAS_CONFIG_DIR: join(dir, "config"), ATLAS_CONFIG: "", INNGEST_SIGNING_KEY: TEST_SIGNING_KEY, INNGEST_EVENT_KEY: TEST_EVENT_KEY, INNGEST_BASE_URL: apiUrl };
    // The ledger is a directory of segments: a plain file where it belongs cannot be opened.
    const ledger = instancePaths(dir, "main").ledger;
    mkdirSync(join(ledger, ".."), { recursive: true });
    writeFileSync(ledger, "not a ledger\n");
    const gateway = new RawMcpProcess(["serve", "--demo", "--engine", "inngest", "--port", "0", "--data-dir", dir], env);
    cleanups.push(async () => {
      if (gateway.child.exitCode === null) await gateway.close();
      await emulator.close();
      rmSync(dir, { recursive: true, force: true });
    });
    await gateway.initialize();
    const port = Number(await until(() => /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(gateway.stderr)?.[1], "the listener"));

    const tools = await gateway.request("tools/list");
    expect((tools.result?.tools as { name: string }[]).map((tool) => tool.name)).toContain("check_payment_status");
    const refused = await gateway.callTool("check_payment_status", { beneficiary_id: "C-1001" });
    expect(refused.result?.isError).toBe(true);
    expect(textOf(refused.result)).toMatch(/refused and not run \(fail closed\).*ENOTDIR/);
    expect(gateway.stderr).toMatch(/ENOTDIR.*Every tool call is refused until the ledger can be written/);
    expect(gateway.stderr).not.toContain("unexpected error");
    const health = (await (await fetch(`http://127.0.0.1:${port}/`)).json()) as { engine?: string; problem?: string };
    expect(health).toMatchObject({ engine: "inngest", problem: expect.stringMatching(/the ledger cannot be written: .*ENOTDIR/) });
    const doctor = await new Promise<{ failed: boolean; stdout: string }>((done) => {
      execFile(process.execPath, [BIN, "doctor", "--port", String(port), "--data-dir", dir], { env: { ...env, ATLAS_ENGINE: "inngest" } }, (error, stdout) => done({ failed: Boolean(error), stdout }));
    });
    expect(doctor.failed).toBe(true);
    expect(doctor.stdout).toMatch(/✗ the atlas-gateway running on 127\.0\.0\.1:\d+ refuses every call/);
    const notYet = await emulator.sync(`http://127.0.0.1:${port}/api/inngest`);
    expect(notYet.status).toBe(503);
    expect(emulator.events).toEqual([]); // nothing was dispatched for the refused call

    rmSync(ledger);
    await until(async () => (((await (await fetch(`http://127.0.0.1:${port}/`)).json()) as { problem?: string }).problem ? undefined : true), "recovery");
    expect(gateway.stderr).toContain("the ledger can be written again");
    expect(statSync(ledger).isDirectory()).toBe(true);
    expect((await emulator.sync(`http://127.0.0.1:${port}/api/inngest`)).status).toBe(200);
    const ok = await gateway.callTool("check_payment_status", { beneficiary_id: "C-1001" });
    expect(ok.result?.isError).toBeFalsy();
    expect(textOf(ok.result)).toContain("C-1001");
    expect(gateway.child.exitCode).toBeNull();
    // an auto-approved call's result is recorded in a batch write: poll for it
    const types = await until(() => {
      const seen = scanLedger(ledger).records.map((record) => record.type);
      return seen.includes("execution.finished") ? seen : undefined;
    }, "the call's result in the ledger");
    expect(types).toContain("gateway.started");
  }, 120_000);
});
