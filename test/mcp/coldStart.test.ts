import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { instancePaths } from "../../src/dataDir.js";
import { scanLedger } from "../../src/ledger/ledger.js";
import { tempDir } from "../helpers.js";
import { RawMcpProcess } from "../helpers/rawMcpProcess.js";

/** The built CLI with the demo tools. */
function gateway(dataDir: string): RawMcpProcess {
  return new RawMcpProcess(["serve", "--demo", "--port", "0", "--data-dir", dataDir], { PATH: process.env.PATH, HOME: dataDir, ATLAS_CONFIG_DIR: join(dataDir, "config"), ATLAS_CONFIG: "" });
}

describe("cold start: initialize first, the lock and the ledger behind one ready-promise (built CLI)", () => {
  it("a tool call sent together with initialize waits for the ledger and runs once it is ready", async () => {
    const dataDir = tempDir();
    const process = gateway(dataDir);
    const init = process.request("initialize", { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "t", version: "1" } });
    process.notify("notifications/initialized");
    const call = process.request("tools/call", { name: "check_payment_status", arguments: { beneficiary_id: "C-1001" } });
    const list = process.request("tools/list");
    expect((await init).result).toMatchObject({ serverInfo: { name: "atlas-gateway" } });
    expect((await list).result?.tools).toEqual(expect.arrayContaining([expect.objectContaining({ name: "check_payment_status" })]));
    const result = (await call).result as { isError?: boolean; content: { text: string }[] };
    expect(result.content[0]?.text).toBeTruthy(); // the demo tool's own answer
    process.child.stdin!.end();
    expect(await process.exited).toBe(0);
    const records = scanLedger(instancePaths(dataDir, "main").ledger).records;
    expect(records.find((record) => record.type === "request.admitted")?.data).toMatchObject({ tool: "check_payment_status" });
    const types = records.map((record) => record.type);
    // the call's record comes after the gateway's start: it was admitted only once the ledger was open
    expect(types.indexOf("request.admitted")).toBeGreaterThan(types.indexOf("gateway.started"));
  });

  it("fail closed: when the ledger cannot be opened, initialize is answered, no call reaches an upstream, each says why, and it keeps serving", async () => {
    const dataDir = tempDir();
    const first = gateway(dataDir);
    await first.request("initialize", { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "t", version: "1" } });
    first.child.stdin!.end();
    await first.exited;
    // cut the ledger below its signed head: tampering, the gateway must not act
    const segment = join(instancePaths(dataDir, "main").ledger, "000000000000.jsonl");
    const rows = readFileSync(segment, "utf8").split("\n").filter(Boolean);
    writeFileSync(segment, rows.slice(0, -1).map((row) => `${row}\n`).join(""));
    const before = readFileSync(segment, "utf8");

    const second = gateway(dataDir);
    const init = await second.request("initialize", { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "t", version: "1" } });
    expect(init.result).toMatchObject({ serverInfo: { name: "atlas-gateway" } });
    second.notify("notifications/initialized");
    // a low-risk call (would run at once) and a high-risk one (would be held): both refused with the cause
    for (const [name, args] of [["check_payment_status", { beneficiary_id: "C-1001" }], ["modify_welfare_record", { beneficiary_id: "C-1001", changes: { address: "x" } }]] as const) {
      const result = (await second.request("tools/call", { name, arguments: args })).result as { isError?: boolean; content: { text: string }[] };
      expect(result.isError, name).toBe(true);
      expect(result.content[0]?.text).toMatch(/refused and not run \(fail closed\).*shows tampering: it ends at seq \d+, but its signed head/);
      expect(result.content[0]?.text).not.toContain("C-1001"); // the demo tool's own answer names the beneficiary
    }
    expect(second.stderr).toMatch(/shows tampering: it ends at seq \d+, but its signed head/);
    expect(second.child.exitCode).toBeNull(); // still serving (issue 11: refuse every call, do not exit)
    expect((await second.request("tools/list")).result?.tools).toEqual(expect.arrayContaining([expect.objectContaining({ name: "check_payment_status" })]));
    expect(readFileSync(segment, "utf8")).toBe(before); // nothing written, nothing run
    second.child.stdin!.end();
    await second.exited;
  });
});
