import { cpSync, readFileSync, writeFileSync } from "node:fs";
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

  it("fail closed: when the ledger cannot be opened, initialize is answered but no call reaches an upstream, and it says why", async () => {
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
    const copy = tempDir();
    cpSync(dataDir, copy, { recursive: true });

    const second = gateway(dataDir);
    const init = await second.request("initialize", { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "t", version: "1" } });
    expect(init.result).toBeDefined();
    const call = second.request("tools/call", { name: "check_payment_status", arguments: { beneficiary_id: "C-1001" } }).catch((error: Error) => error);
    expect(await second.exited).toBe(5);
    expect(await call).toBeInstanceOf(Error); // never answered: the process stopped
    expect(second.stderr).toMatch(/shows tampering: it ends at seq \d+, but its signed head/);
    expect(readFileSync(segment, "utf8")).toBe(before); // nothing written, nothing run
  });
});
