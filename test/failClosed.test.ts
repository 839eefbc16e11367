import { chmodSync, mkdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { ledgerRecords } from "./helpers/ledgerRecords.js";
import { RawMcpProcess } from "./helpers/rawMcpProcess.js";
import { tempDir } from "./helpers.js";
import { until } from "./helpers/until.js";
import { runCli } from "./helpers/runCli.js";

/**
 * Issue 11: an unwritable ledger at start leaves the gateway serving — tools/list works, every call is refused with
 * the cause, `GET /` and `doctor` report it — and it recovers by itself once the ledger can be written. Built CLI.
 */
const running: RawMcpProcess[] = [];
afterEach(async () => {
  for (const gateway of running.splice(0)) await gateway.close();
});

const envFor = (dataDir: string) => ({ PATH: process.env.PATH, HOME: dataDir, ATLAS_CONFIG_DIR: join(dataDir, "config"), ATLAS_CONFIG: "" });

function cli(args: string[], dataDir: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return runCli([...args, "--data-dir", dataDir], envFor(dataDir));
}
const doctor = (dataDir: string, port: number) => cli(["doctor", "--port", String(port)], dataDir);

async function startWithBrokenLedger(dataDir: string): Promise<{ gateway: RawMcpProcess; port: number }> {
  const gateway = new RawMcpProcess(["serve", "--demo", "--port", "0", "--data-dir", dataDir], envFor(dataDir));
  running.push(gateway);
  await gateway.initialize();
  const port = await until(() => /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(gateway.stderr)?.[1], "the listener");
  return { gateway, port: Number(port) };
}

const textOf = (response: { result?: Record<string, unknown> }) => JSON.stringify(response.result?.content ?? "");

describe("an unwritable ledger at start (fail closed without dying)", () => {
  // The ledger is a directory of segments (issue 12): a plain file where that directory belongs cannot be opened.
  it("a file in the ledger directory's place: serves, refuses every call with the cause, reports it, recovers", async () => {
    const dataDir = tempDir("atlas-failclosed-");
    const ledger = join(dataDir, "ledgers", "main");
    mkdirSync(join(dataDir, "ledgers"), { recursive: true });
    writeFileSync(ledger, "not a ledger\n");
    const { gateway, port } = await startWithBrokenLedger(dataDir);

    const tools = await gateway.request("tools/list");
    expect((tools.result?.tools as { name: string }[]).map((tool) => tool.name)).toContain("check_payment_status");
    const refused = await gateway.callTool("check_payment_status", { beneficiary_id: "C-1001" });
    expect(refused.result?.isError).toBe(true);
    expect(textOf(refused)).toMatch(/refused and not run \(fail closed\).*ENOTDIR/);
    const held = await gateway.callTool("modify_welfare_record", { beneficiary_id: "C-1001", changes: { address: "x" } });
    expect(textOf(held)).toMatch(/fail closed/);
    expect(gateway.stderr).toMatch(/ENOTDIR.*Every tool call is refused until the ledger can be written/);

    const health = (await (await fetch(`http://127.0.0.1:${port}/`)).json()) as { problem?: string };
    expect(health.problem).toMatch(/the ledger cannot be written: .*ENOTDIR/);
    const checked = await doctor(dataDir, port);
    expect(checked.code).not.toBe(0);
    expect(checked.stdout).toContain(`✗ ledger 'main': ${ledger} is a file where the ledger's directory belongs`);
    expect(checked.stdout).toMatch(/✗ the atlas-gateway running on 127\.0\.0\.1:\d+ refuses every call/);

    // reviewer commands report it rather than crash
    const pending = await cli(["pending"], dataDir);
    expect(pending).toMatchObject({ code: 0 });
    expect(pending.stderr).toMatch(/ledger 'main'.*cannot read.*ENOTDIR/);
    const verify = await cli(["audit", "verify"], dataDir);
    expect(verify.code).toBe(5);
    expect(verify.stdout).toMatch(/✗ ledger 'main' .*cannot be read: ENOTDIR/);
    expect(pending.stderr + verify.stderr).not.toContain("unexpected error");

    rmSync(ledger);
    const ok = await until(async () => {
      const response = await gateway.callTool("check_payment_status", { beneficiary_id: "C-1001" });
      return response.result?.isError ? undefined : response;
    }, "recovery");
    expect(textOf(ok)).toContain("C-1001");
    expect(gateway.stderr).toContain("the ledger can be written again");
    expect(((await (await fetch(`http://127.0.0.1:${port}/`)).json()) as { problem?: string }).problem).toBeUndefined();
    expect(statSync(ledger).isDirectory()).toBe(true);
    // an auto-approved call's result is group-committed: it reaches the file a few ms after the agent has it
    await until(() => (ledgerRecords(dataDir).some((record) => record.type === "execution.finished") ? true : undefined), "the call's result in the ledger");
    const records = ledgerRecords(dataDir).map((record) => record.type);
    expect(records).toContain("gateway.started");
    expect(records).toContain("request.admitted"); // the auto-approved call after recovery (issue 12: one record, then its result)
    expect(records).toContain("execution.finished");
    expect(gateway.child.exitCode).toBeNull();
  }, 90_000);

  it.skipIf(process.getuid?.() === 0)("a read-only ledger directory: refuses every call with the cause (not as root: root writes anyway)", async () => {
    const dataDir = tempDir("atlas-readonly-");
    const ledger = join(dataDir, "ledgers", "main");
    mkdirSync(ledger, { recursive: true });
    chmodSync(ledger, 0o555);
    const { gateway } = await startWithBrokenLedger(dataDir);
    const refused = await gateway.callTool("check_payment_status", { beneficiary_id: "C-1001" });
    expect(textOf(refused)).toMatch(/fail closed.*EACCES/);
    chmodSync(ledger, 0o700);
    await until(async () => ((await gateway.callTool("check_payment_status", { beneficiary_id: "C-1001" })).result?.isError ? undefined : true), "recovery");
    expect(ledgerRecords(dataDir).map((record) => record.type)).toContain("gateway.started");
  }, 90_000);
});
