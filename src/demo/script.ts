import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { CallToolResultSchema, type CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AtlasError } from "../errors.js";
import { instancePaths } from "../dataDir.js";
import type { LockInfo } from "../governance/instance.js";
import { PACKAGE_DIR } from "../packageDir.js";
import { scanLedger } from "../ledger/ledger.js";
import { ChildProcessTransport } from "../mcp/stdioTransport.js";
import { VERSION } from "../version.js";
import { loadOrCreateWebhookSecret, signWebhook } from "../http/webhook.js";

export interface DemoOptions {
  out: (line: string) => void;
  env: NodeJS.ProcessEnv;
  keep: boolean;
  verbose: boolean;
  /** The CLI entry to spawn (defaults to this package's bin). */
  bin?: string;
}

function resultText(result: CallToolResult): string {
  return result.content.map((block) => (block.type === "text" ? block.text : `[${block.type}]`)).join("\n");
}

const indent = (text: string) => text.split("\n").map((line) => `    ${line}`).join("\n");

/**
 * The seed's handshake, end to end, against the real CLI in a fresh data dir: a low-risk call runs at once, a
 * high-risk call is held, a reviewer approves it through the signed webhook, the agent fetches the executed result,
 * and the ledger verifies.
 */
export async function runDemo(options: DemoOptions): Promise<void> {
  const { out } = options;
  const dataDir = mkdtempSync(join(tmpdir(), "atlas-demo-"));
  const gatewayEnv = { ...options.env, ATLAS_CONFIG_DIR: join(dataDir, "config"), ATLAS_CONFIG: "" };
  const instance = "demo";
  const bin = options.bin ?? join(PACKAGE_DIR, "bin", "atlas-gateway.js");
  const transport = new ChildProcessTransport({
    command: process.execPath,
    args: [bin, "serve", "--demo", "--data-dir", dataDir, "--port", "0", "--instance", instance],
    env: gatewayEnv,
    onStderr: (line) => {
      if (options.verbose) out(`    [gateway] ${line}`);
    },
  });
  const client = new Client({ name: "atlas-demo-agent", version: VERSION });
  const call = async (name: string, args: Record<string, unknown>) => {
    out(`\n→ agent calls ${name} ${JSON.stringify(args)}`);
    const result = await client.request({ method: "tools/call", params: { name, arguments: args } }, CallToolResultSchema, { timeout: 60_000 });
    out(`← ${result.isError ? "error result" : "result"}:\n${indent(resultText(result))}`);
    return result;
  };

  try {
    out("ATLAS governance demo — the seed's handshake, end to end");
    out(`data dir: ${dataDir}`);
    const started = performance.now();
    await client.connect(transport, { timeout: 30_000 });
    out(`\n✓ gateway started over stdio (initialize answered in ${Math.round(performance.now() - started)} ms)`);
    const { tools } = await client.listTools();
    out(`✓ tools offered: ${tools.map((tool) => tool.name).join(", ")}`);

    const status = await call("check_payment_status", { citizen_id: "C-1001" });
    if (status.isError || resultText(status).startsWith("PENDING")) throw new AtlasError("check_payment_status should have been auto-approved");
    out("✓ low risk: auto-approved and executed at once");

    const held = await call("request_payment_extension", { citizen_id: "C-1001", days: 30, reason: "hardship: medical bills" });
    const ref = /PENDING REVIEW \(Ref: (evt_[0-9a-f]{8})\)/.exec(resultText(held))?.[1];
    if (!ref) throw new AtlasError("request_payment_extension should have been held for review");
    out(`✓ high risk: held for human review as ${ref}`);

    const lock = JSON.parse(readFileSync(instancePaths(dataDir, instance).lock, "utf8")) as LockInfo;
    if (!lock.port) throw new AtlasError("the gateway's listener did not start");
    const body = JSON.stringify({ decision: "APPROVED", event_id: ref, reviewer: "demo-reviewer", reason: "hardship documented" });
    const response = await fetch(`http://127.0.0.1:${lock.port}/webhook/approval`, {
      method: "POST",
      headers: { "content-type": "application/json", ...signWebhook(loadOrCreateWebhookSecret(dataDir, gatewayEnv), body) },
      body,
    });
    out(`\n→ reviewer POSTs a signed approval to /webhook/approval\n← HTTP ${response.status} ${await response.text()}`);
    if (response.status !== 200) throw new AtlasError(`the signed webhook was refused (HTTP ${response.status})`);
    out("✓ approval accepted (Standard Webhooks signature verified)");

    const final = await call("atlas_status", { ref, wait_seconds: 20 });
    const structured = final.structuredContent as { status?: string } | undefined;
    if (structured?.status !== "executed" || final.isError) throw new AtlasError(`expected ${ref} to be executed, got ${structured?.status ?? "no status"}`);
    out("✓ approved call executed exactly once; the agent received its real result");

    await client.close();
    const scan = scanLedger(instancePaths(dataDir, instance).ledger);
    if (scan.problem) throw new AtlasError(`audit verify failed: ${scan.problem.message}`);
    out(`\n→ atlas-gateway audit verify\n← ✓ ledger '${instance}': ${scan.records.length} records, hash chain intact`);
    out("  " + scan.records.map((record) => record.type).join(" → "));
    out("\nDemo complete.");
  } finally {
    await client.close().catch(() => {});
    if (options.keep) out(`(kept ${dataDir})`);
    else rmSync(dataDir, { recursive: true, force: true });
  }
}
