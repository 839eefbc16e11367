import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { reviewerKeyPair, signV1a } from "./helpers/ed25519.js";
import { ledgerRecords } from "./helpers/ledgerRecords.js";
import { RawMcpProcess } from "./helpers/rawMcpProcess.js";
import { tempDir } from "./helpers.js";
import { untilTrue } from "./helpers/until.js";
import { runCli } from "./helpers/runCli.js";

/** The stop button end to end: the built CLI, two gateways on one data dir, the CLI and the signed HTTP endpoint. */
const ROOT = resolve(import.meta.dirname, "..");

beforeAll(() => {
  if (!existsSync(join(ROOT, "dist", "cli.js"))) throw new Error("run `npm run build` first (npm test does)");
});

const running: RawMcpProcess[] = [];
afterEach(async () => {
  for (const gateway of running.splice(0)) if (gateway.child.exitCode === null) gateway.child.kill("SIGKILL");
});

const envFor = (dataDir: string) => ({ ...process.env, ATLAS_CONFIG_DIR: join(dataDir, "config") });

async function startGateway(dataDir: string): Promise<{ gateway: RawMcpProcess; port: number; instance: string }> {
  const gateway = new RawMcpProcess(["serve", "--demo", "--data-dir", dataDir, "--port", "0"], envFor(dataDir));
  running.push(gateway);
  await gateway.initialize();
  await untilTrue(() => /ready: instance '([^']+)'.*listening on http:\/\/127\.0\.0\.1:(\d+)/.test(gateway.stderr), "the gateway to be ready");
  const [, instance, port] = /ready: instance '([^']+)'.*listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(gateway.stderr)!;
  return { gateway, port: Number(port), instance: instance! };
}

function cli(args: string[], dataDir: string, env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return runCli([...args, "--data-dir", dataDir], { ...envFor(dataDir), ...env });
}

/** Registers a reviewer; returns the env that lets the CLI act as them (`--reviewer` needs their key). */
async function asReviewer(dataDir: string, id: string): Promise<Record<string, string>> {
  const added = await cli(["reviewers", "add", id], dataDir);
  return { ATLAS_REVIEWER_TOKEN: /atlas_rk_\S+/.exec(added.stdout)![0] };
}

type ToolResult = { content: { type: string; text: string }[]; isError?: boolean; structuredContent?: Record<string, unknown> };
const resultOf = (response: { result?: Record<string, unknown> }) => response.result as unknown as ToolResult;
const textOf = (result: ToolResult) => result.content.map((item) => item.text).join("\n");
const refOf = (result: ToolResult) => /Ref: (evt_[0-9a-f]{8})/.exec(textOf(result))?.[1] ?? "";
const ledgerTypes = (dataDir: string, instance: string) =>
  ledgerRecords(dataDir, instance).map((record) => record.type);

describe("halt / resume across two gateways on one data dir", () => {
  it("stops every call in both, holds approved calls, survives a restart, and resumes through the signed endpoint", async () => {
    const dataDir = tempDir("atlas-halt-e2e-");
    const a = await startGateway(dataDir);
    const b = await startGateway(dataDir);
    expect(new Set([a.instance, b.instance]).size).toBe(2);

    const held = resultOf(await b.gateway.callTool("request_payment_extension", { beneficiary_id: "C-1001", reason: "hardship", days: 30 }));
    const ref = refOf(held);
    expect(ref).toMatch(/^evt_/);

    const halt = await cli(["halt", "--reason", "suspicious payment pattern", "--reviewer", "ana"], dataDir, await asReviewer(dataDir, "ana"));
    expect(halt.stderr).toBe("");
    expect(halt.code).toBe(0);
    expect(halt.stdout).toMatch(/HALTED by ana/);
    expect(halt.stdout).toContain(`'${a.instance}'`);
    expect(halt.stdout).toContain(`'${b.instance}'`);

    for (const { gateway } of [a, b]) {
      const refused = resultOf(await gateway.callTool("check_payment_status", { beneficiary_id: "C-1001" }));
      expect(refused.isError).toBe(true);
      expect(textOf(refused)).toMatch(/^HALTED: the gateway was halted by ana at .* \(reason: suspicious payment pattern\)\. No tool call runs until/);
    }

    const approve = await cli(["approve", ref, "--reviewer", "carl"], dataDir, await asReviewer(dataDir, "carl"));
    expect(approve.code).toBe(0);
    expect(approve.stdout).toMatch(/the gateway is HALTED .*: it runs after 'atlas-gateway resume'/);
    const status = resultOf(await b.gateway.callTool("atlas_status", { ref, wait_seconds: 1 }));
    expect(status.structuredContent).toMatchObject({ status: "approved", halted: { by: "ana", reason: "suspicious payment pattern" } });
    expect(textOf(status)).toMatch(/gateway is HALTED/);

    const pending = await cli(["pending"], dataDir);
    expect(pending.stdout).toMatch(/^HALTED: the gateway was halted by ana/);
    const health = (await (await fetch(`http://127.0.0.1:${a.port}/`)).json()) as { halted: { by: string; reason: string } };
    expect(health.halted).toMatchObject({ by: "ana", reason: "suspicious payment pattern" });

    // A restart keeps the halt (it is in the ledger and in halt.json).
    await a.gateway.close();
    const again = await startGateway(dataDir);
    expect(again.gateway.stderr).toMatch(/starting HALTED/);
    expect(resultOf(await again.gateway.callTool("check_payment_status", { beneficiary_id: "C-1001" })).isError).toBe(true);

    // Resume over HTTP, signed like an approval: here with a reviewer's Ed25519 key (v1a) registered while running.
    const unsigned = await fetch(`http://127.0.0.1:${again.port}/webhook/halt`, { method: "POST", body: JSON.stringify({ action: "resume" }) });
    expect(unsigned.status).toBe(401);
    const dora = reviewerKeyPair();
    expect((await cli(["keys", "add", "dora", dora.publicKey], dataDir)).code).toBe(0);
    const body = JSON.stringify({ action: "resume", reviewer: "not-dora", reason: "pattern explained" });
    const resumed = await fetch(`http://127.0.0.1:${again.port}/webhook/halt`, { method: "POST", headers: { "content-type": "application/json", ...signV1a(dora.privateKey, body) }, body });
    expect(resumed.status).toBe(200);
    expect(await resumed.json()).toMatchObject({ halted: false, by: "dora" });

    const executed = resultOf(await b.gateway.callTool("atlas_status", { ref, wait_seconds: 20 }));
    expect(executed.structuredContent).toMatchObject({ status: "executed", outcome: "ok" });
    for (const { gateway } of [again, b]) {
      expect(resultOf(await gateway.callTool("check_payment_status", { beneficiary_id: "C-1001" })).isError).toBeFalsy();
    }
    expect((await cli(["resume"], dataDir)).code).toBe(3);

    for (const instance of [a.instance, b.instance]) {
      const types = ledgerTypes(dataDir, instance);
      expect(types).toContain("gateway.halted");
      expect(types).toContain("gateway.resumed");
    }
    await again.gateway.close();
    await b.gateway.close();
    for (const { gateway } of [a, b, again]) expect(gateway.nonProtocol).toEqual([]);
    expect((await cli(["audit", "verify"], dataDir)).code).toBe(0);
  }, 90_000);
});
