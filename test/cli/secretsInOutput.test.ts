import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RawMcpProcess } from "../helpers/rawMcpProcess.js";
import { heldCall, openEngine, recordingExecutor, tempDir } from "../helpers.js";
import { runCli } from "../helpers/runCli.js";

/**
 * Canary secrets in a held call's arguments never appear unmasked where a person reads them: the gateway's stderr
 * HELD line, `pending` (table and JSON) and `show` (text and JSON) — the built CLI, end to end (issue 11). And a
 * value nested 10,000 deep, as an old ledger may hold, renders without a stack overflow.
 */
const ROOT = resolve(import.meta.dirname, "..", "..");
const CANARIES = ["hunter2-canary", "sk-live-CANARY0123456789abc", "CanaryBearer0123456789", "canary-url-pass", "eyJjYW5hcnkiOiIxIn0"];

function cli(args: string[], dataDir: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return runCli([...args, "--data-dir", dataDir], { ...process.env, ATLAS_CONFIG_DIR: join(dataDir, "config"), ATLAS_CONFIG: "" }, { maxBuffer: 64 * 1024 * 1024 });
}

beforeAll(() => {
  if (!existsSync(join(ROOT, "dist", "cli.js"))) throw new Error("run `npm run build` first (npm test does)");
});

describe("no canary secret in stderr or CLI output", () => {
  const dataDir = tempDir("atlas-canary-");
  let gateway: RawMcpProcess;
  let ref = "";
  afterAll(async () => {
    await gateway?.close();
  });

  it("holds a call carrying secrets and never prints them", async () => {
    gateway = new RawMcpProcess(["serve", "--demo", "--port", "0", "--data-dir", dataDir], { PATH: process.env.PATH, HOME: dataDir, ATLAS_CONFIG_DIR: join(dataDir, "config"), ATLAS_CONFIG: "" });
    await gateway.initialize();
    const held = await gateway.callTool("modify_welfare_record", {
      beneficiary_id: "C-1001",
      changes: { address: `reset: password: hunter2-canary; api sk-live-CANARY0123456789abc; header Authorization: Bearer CanaryBearer0123456789; db postgres://svc:canary-url-pass@db/x; jwt eyJjYW5hcnkiOiIxIn0.eyJzdWIiOiJjYW5hcnkifQ.c2lnbmF0dXJl; iban FR7630006000011234567890189` },
    });
    ref = /Ref: (evt_[0-9a-f]{8})/.exec(JSON.stringify(held.result))![1]!;
    const deadline = Date.now() + 15_000;
    while (!gateway.stderr.includes(`HELD ${ref}`) && Date.now() < deadline) await new Promise((done) => setTimeout(done, 25));
    expect(gateway.stderr).toContain(`HELD ${ref}`);

    const outputs = [
      ["stderr", gateway.stderr],
      ["pending", (await cli(["pending"], dataDir)).stdout],
      ["pending --json", (await cli(["pending", "--json"], dataDir)).stdout],
      ["show", (await cli(["show", ref], dataDir)).stdout],
      ["show --json", (await cli(["show", ref, "--json"], dataDir)).stdout],
    ] as const;
    for (const [sink, text] of outputs) {
      expect(text, sink).toContain(ref);
      for (const canary of CANARIES) expect(text, `${sink} shows ${canary}`).not.toContain(canary);
    }
    // what a reviewer must see stays
    expect(outputs[4][1]).toContain("FR7630006000011234567890189");
    expect(outputs[4][1]).toContain("[masked]");
  });
});

describe("values nested 10,000 deep in an old ledger", () => {
  it("pending and show render them without a stack overflow", async () => {
    const dataDir = tempDir("atlas-deep-");
    let deep: unknown = { password: "deep-canary-secret" };
    for (let i = 0; i < 10_000; i++) deep = { a: deep };
    const engine = openEngine(dataDir, recordingExecutor());
    const decision = await engine.submit(heldCall({ path: "/tmp/x", deep }));
    await engine.close();
    expect(decision.kind).toBe("hold");
    const ref = decision.ref!;

    for (const args of [["pending"], ["pending", "--json"], ["show", ref], ["show", ref, "--json"]]) {
      const result = await cli(args, dataDir);
      expect(result.stderr, args.join(" ")).not.toMatch(/stack|unexpected error/i);
      expect(result.code, args.join(" ")).toBe(0);
      expect(result.stdout).toContain(ref);
      expect(result.stdout).not.toContain("deep-canary-secret");
    }
    const json = JSON.parse((await cli(["pending", "--json"], dataDir)).stdout) as { ref: string }[];
    expect(json.map((item) => item.ref)).toEqual([ref]);
  }, 60_000);
});
