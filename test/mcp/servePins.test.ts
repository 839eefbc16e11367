import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { CallToolResultSchema, type CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { mkdirSync, mkdtempSync, realpathSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { afterAll, describe, expect, it } from "vitest";
import { main } from "../../src/cli/main.js";
import { loadConfig } from "../../src/config.js";
import { GovernanceLog } from "../../src/governance/governanceLog.js";
import { instancePaths } from "../../src/dataDir.js";
import { scanLedger } from "../../src/ledger/ledger.js";
import { runGateway } from "../../src/mcp/serve.js";
import { StreamTransport } from "../../src/mcp/stdioTransport.js";
import { hashToolDefinition } from "../../src/risk/toolPins.js";

const root = realpathSync(mkdtempSync(join(tmpdir(), "atlas-serve-pins-")));
const dataDir = join(root, "data");
const home = join(root, "home");
mkdirSync(home, { recursive: true });
afterAll(() => rmSync(root, { recursive: true, force: true }));

const cli = async (...argv: string[]) => {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main([...argv, "--data-dir", dataDir], { out: (text) => out.push(text), err: (text) => err.push(text), env: { ATLAS_CONFIG_DIR: join(root, "user") } });
  return { code, out: out.join("\n"), err: err.join("\n") };
};
const text = (result: CallToolResult) => result.content.map((block) => (block.type === "text" ? block.text : "")).join("\n");

describe("a running gateway with a rug-pulled tool", () => {
  it("holds its calls, shows the pin in pending/show, and runs them again once `tools trust` goes through the control socket", async () => {
    // The ledger remembers an older definition of the demo's status tool: the upstream has changed it since.
    const old = { name: "check_payment_status", description: "Look up a payment (old wording)", inputSchema: { type: "object" }, annotations: { readOnlyHint: true } };
    const seed = GovernanceLog.open(instancePaths(dataDir, "main").ledger, { instance: "main" });
    seed.record("tool.pinned", undefined, { upstream: "demo", tool: "check_payment_status", hash: hashToolDefinition(old), definition: old }, "sync");
    await seed.close();

    const config = loadConfig({ env: {}, userConfig: false, flags: { dataDir, port: "0", demo: true } });
    const stdin = new PassThrough();
    const stdout = new PassThrough();
    const stderr: string[] = [];
    const errStream = new PassThrough();
    errStream.on("data", (chunk: Buffer) => stderr.push(chunk.toString()));
    const running = await runGateway(config, { stdin, stdout, stderr: errStream, env: { HOME: home } }, "test");
    const client = new Client({ name: "agent", version: "1" });
    try {
      await client.connect(new StreamTransport(stdout, stdin));
      const call = (args: Record<string, unknown>) => client.request({ method: "tools/call", params: { name: "check_payment_status", arguments: args } }, CallToolResultSchema);
      await expect.poll(() => scanLedger(instancePaths(dataDir, "main").ledger).records.some((record) => record.type === "tool.changed")).toBe(true);

      const held = await call({ beneficiary_id: "B-1" });
      expect(text(held)).toContain("PENDING REVIEW");
      const ref = /Ref: (evt_[0-9a-f]{8})/.exec(text(held))![1]!;
      expect(stderr.join("")).toContain("tool check_payment_status (upstream demo) changed since it was pinned (description, inputSchema, annotations)");
      expect(stderr.join("")).toContain(`HELD ${ref}`);
      expect(stderr.join("")).toContain("rules fired: tool-pinning (review)");

      const pending = await cli("pending");
      expect(pending.out).toMatch(new RegExp(`${ref}.*check_payment_status.*100\\s+tool pinning: .*\\s+tool-pinning$`, "m"));
      const show = await cli("show", ref);
      expect(show.out).toContain("rules fired: tool-pinning (review); policy verdict: review");

      const trust = await cli("tools", "trust", "check_payment_status", "--reviewer", "ana");
      expect(trust.code, trust.err).toBe(0);
      expect(trust.out).toContain("the running gateway routes its calls by policy again");

      const ran = await call({ beneficiary_id: "B-2" });
      expect(text(ran)).toContain("Beneficiary B-2: payment");
      expect((await cli("pending")).out).toContain(ref); // the call held before the trust still waits for a human
    } finally {
      await client.close().catch(() => {});
      await running.close("test");
    }
    const records = scanLedger(instancePaths(dataDir, "main").ledger);
    expect(records.problem).toBeUndefined();
    expect(records.records.filter((record) => record.type === "tool.trusted").map((record) => record.data.reviewer)).toEqual(["ana"]);
  });
});
