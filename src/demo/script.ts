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

const refIn = (result: CallToolResult) => /PENDING REVIEW \(Ref: (evt_[0-9a-f]{8})\)/.exec(resultText(result))?.[1];

function resultText(result: CallToolResult): string {
  return result.content.map((block) => (block.type === "text" ? block.text : `[${block.type}]`)).join("\n");
}

const indent = (text: string) => text.split("\n").map((line) => `    ${line}`).join("\n");

/**
 * The original welfare back office's own calls, end to end, against the real CLI in a fresh data dir: a status check
 * runs at once; a payment extension is held, the reviewer's unsigned approval (as the original system sent it) is
 * refused with how to sign, the signed one approves it, and the agent fetches the executed result; a record change is
 * held and denied; the ledger verifies.
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
    out("ATLAS governance demo: a welfare-payments agent's tool calls, governed end to end");
    out(`data dir: ${dataDir}`);
    const started = performance.now();
    await client.connect(transport, { timeout: 30_000 });
    out(`\n✓ gateway started over stdio (initialize answered in ${Math.round(performance.now() - started)} ms)`);
    const { tools } = await client.listTools();
    out(`✓ tools offered: ${tools.map((tool) => tool.name).join(", ")}`);

    const status = await call("check_payment_status", { beneficiary_id: "B-1001" });
    if (status.isError || resultText(status).startsWith("PENDING")) throw new AtlasError("check_payment_status should have been auto-approved");
    out("✓ low risk: auto-approved and executed at once");

    const held = await call("request_payment_extension", { beneficiary_id: "B-1001", reason: "hardship: medical bills" });
    const ref = refIn(held);
    if (!ref) throw new AtlasError("request_payment_extension should have been held for review");
    out(`✓ high risk: held for human review as ${ref}`);

    const lock = JSON.parse(readFileSync(instancePaths(dataDir, instance).lock, "utf8")) as LockInfo;
    if (!lock.port) throw new AtlasError("the gateway's listener did not start");
    const webhook = `http://127.0.0.1:${lock.port}/webhook/approval`;
    const secret = loadOrCreateWebhookSecret(dataDir, gatewayEnv);
    const post = async (body: string, headers: Record<string, string>) => {
      const response = await fetch(webhook, { method: "POST", headers: { "content-type": "application/json", ...headers }, body });
      return { status: response.status, text: await response.text() };
    };

    const approval = JSON.stringify({ decision: "APPROVED", event_id: ref, reviewer: "demo-reviewer", reason: "hardship documented" });
    out(`\n→ reviewer POSTs an unsigned approval to /webhook/approval, as the original system did\n  ${approval}`);
    const unsigned = await post(approval, {});
    out(`← HTTP ${unsigned.status} ${unsigned.text}`);
    if (unsigned.status !== 401) throw new AtlasError(`an unsigned approval must be refused, got HTTP ${unsigned.status}`);
    out("✓ unsigned approval refused: nothing without the secret can approve");

    const signature = signWebhook(secret, approval);
    out(`\n→ the same approval, signed (Standard Webhooks; secret from 'atlas-gateway config get webhook.secret'):`);
    out(`  POST ${webhook}\n${Object.entries(signature).map(([name, value]) => `  ${name}: ${value}`).join("\n")}\n  ${approval}`);
    const signed = await post(approval, signature);
    out(`← HTTP ${signed.status} ${signed.text}`);
    if (signed.status !== 200) throw new AtlasError(`the signed webhook was refused (HTTP ${signed.status})`);
    out("✓ approval accepted (signature verified)");

    const final = await call("atlas_status", { ref, wait_seconds: 20 });
    const structured = final.structuredContent as { status?: string } | undefined;
    if (structured?.status !== "executed" || final.isError) throw new AtlasError(`expected ${ref} to be executed, got ${structured?.status ?? "no status"}`);
    out("✓ approved call executed exactly once; the agent received its real result");

    const change = await call("modify_welfare_record", { beneficiary_id: "B-1001", changes: { bank_account: "DE02 1203 0000 0000 2020 51" } });
    const changeRef = refIn(change);
    if (!changeRef) throw new AtlasError("modify_welfare_record should have been held for review");
    out(`✓ very high risk: held for human review as ${changeRef}`);
    const denial = JSON.stringify({ decision: "DENIED", event_id: changeRef, reviewer: "demo-reviewer", reason: "bank change needs the beneficiary's own request" });
    const denied = await post(denial, signWebhook(secret, denial));
    out(`\n→ reviewer POSTs a signed denial\n← HTTP ${denied.status} ${denied.text}`);
    if (denied.status !== 200) throw new AtlasError(`the signed denial was refused (HTTP ${denied.status})`);
    const refusal = await call("atlas_status", { ref: changeRef, wait_seconds: 20 });
    if (!refusal.isError || (refusal.structuredContent as { status?: string } | undefined)?.status !== "denied") throw new AtlasError(`expected ${changeRef} to be denied`);
    out("✓ denied call never ran; the agent was told why");

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
