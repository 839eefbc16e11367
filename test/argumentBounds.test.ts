import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { measureArguments, type ArgumentLimits } from "../src/argumentBounds.js";

const checkArgumentBounds = (args: unknown, limits?: ArgumentLimits) => measureArguments(args, limits).problem;
import { loadConfig } from "../src/config.js";
import { BIN, RawMcpProcess } from "./helpers/rawMcpProcess.js";
import { ledgerRecords } from "./helpers/ledgerRecords.js";
import { tempDir } from "./helpers.js";

const nested = (depth: number, leaf: unknown = 1): unknown => {
  let value = leaf;
  for (let i = 0; i < depth; i++) value = { a: value };
  return value;
};

describe("measureArguments", () => {
  const limits = { argumentDepth: 64, argumentBytes: 1024 };
  it.each([
    ["flat arguments", { path: "/tmp/x", n: 1, ok: true, none: null }, undefined],
    ["exactly 64 levels", nested(64), undefined],
    ["65 levels", nested(65), /nested deeper than 64 levels/],
    ["10,000 levels", nested(10_000), /nested deeper than 64 levels/],
    ["arrays count as levels", JSON.parse(`${"[".repeat(65)}${"]".repeat(65)}`), /deeper than 64/],
    ["a big string", { text: "x".repeat(2000) }, /larger than 1024 bytes/],
    ["multi-byte characters count as bytes", { text: "é".repeat(600) }, /larger than 1024 bytes/],
    ["a lone surrogate", { text: "ok \ud800 no" }, /lone surrogate/],
    ["a lone surrogate in a key", { ["k\udc00"]: 1 }, /lone surrogate in a key/],
    ["a valid surrogate pair", { text: "😀" }, undefined],
    ["many small members", Object.fromEntries(Array.from({ length: 200 }, (_, i) => [`k${i}`, i])), /larger than 1024 bytes/],
  ])("%s", (_label, args, problem) => {
    const result = checkArgumentBounds(args, limits);
    if (problem === undefined) expect(result).toBeUndefined();
    else expect(result).toMatch(problem);
  });

  it("is configurable, 64 levels and 64 MiB by default", () => {
    const config = loadConfig({ env: {}, userConfig: false, flags: { dataDir: "/tmp/x" } });
    expect(config.limits).toEqual({ argumentDepth: 64, argumentBytes: 64 * 1024 * 1024 });
    const custom = loadConfig({ env: { ATLAS_ARGUMENT_DEPTH: "8" }, userConfig: false, flags: { dataDir: "/tmp/x" } });
    expect(custom.limits.argumentDepth).toBe(8);
    expect(checkArgumentBounds(nested(8), custom.limits)).toBeUndefined();
    expect(checkArgumentBounds(nested(9), custom.limits)).toMatch(/deeper than 8/);
  });
});

describe("the gateway refuses out-of-bounds arguments before recording them (built CLI)", () => {
  const dataDir = tempDir("atlas-bounds-");
  let gateway: RawMcpProcess | undefined;
  afterAll(async () => {
    await gateway?.close();
  });

  it("answers a JSON-RPC error for a call nested 10,000 deep and for one over ATLAS_ARGUMENT_BYTES; nothing is recorded; normal calls work", async () => {
    if (!existsSync(BIN.replace(/bin\/atlas-gateway\.js$/, "dist/cli.js"))) throw new Error("run `npm run build` first");
    gateway = new RawMcpProcess(["serve", "--demo", "--port", "0", "--data-dir", dataDir], { PATH: process.env.PATH, HOME: dataDir, ATLAS_CONFIG_DIR: join(dataDir, "config"), ATLAS_CONFIG: "", ATLAS_ARGUMENT_BYTES: "1048576" });
    await gateway.initialize();
    const deepJson = `{"name":"modify_welfare_record","arguments":{"beneficiary_id":"C-1","changes":${'{"a":'.repeat(10_000)}1${"}".repeat(10_000)}}}`;
    const deep = await gateway.requestJson("tools/call", deepJson);
    expect(deep.error?.code).toBe(-32602);
    expect(deep.error?.message).toMatch(/nested deeper than 64 levels.*refused and not recorded/);
    const huge = await gateway.callTool("modify_welfare_record", { beneficiary_id: "C-1", changes: "x".repeat(2 * 1024 * 1024) });
    expect(huge.error?.message).toMatch(/larger than 1048576 bytes/);

    const fine = await gateway.callTool("check_payment_status", { beneficiary_id: "C-1001" });
    expect(fine.result?.isError, JSON.stringify(fine)).toBeFalsy();
    // a call opens with request.created, or request.admitted when auto-approved (issue 12): only the normal one is there
    const created = ledgerRecords(dataDir).filter((record) => record.type === "request.created" || record.type === "request.admitted");
    expect(created.map((record) => record.data.tool)).toEqual(["check_payment_status"]);

    const pending = await new Promise<string>((done) => execFile(process.execPath, [BIN, "pending", "--data-dir", dataDir], { env: { ...process.env, ATLAS_CONFIG_DIR: join(dataDir, "config") } }, (_error, stdout) => done(stdout)));
    expect(pending).toContain("no calls waiting for review");
  }, 60_000);
});

describe("measureArguments size", () => {
  it("is the arguments' size as UTF-8 JSON, which decides whether they go to the worker thread", () => {
    for (const args of [{}, { a: 1 }, { text: "é😀\n\"q\"".repeat(3) }, { list: [1, -0.5, 1e21, null, true, "x"], nested: { k: { "ключ": [] } } }, { big: "x".repeat(1 << 20) }]) {
      const { bytes, problem } = measureArguments(args);
      expect(problem).toBeUndefined();
      // counted while walking, not serialised: escapes are not counted, and each object or array counts one comma more
      expect(Math.abs(bytes - Buffer.byteLength(JSON.stringify(args)))).toBeLessThanOrEqual(12);
    }
  });
});
