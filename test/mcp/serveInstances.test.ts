import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { PassThrough } from "node:stream";
import { instancePaths } from "../../src/dataDir.js";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config.js";
import { tryLock } from "../../src/governance/instance.js";
import { runGateway } from "../../src/mcp/serve.js";
import { tempDir } from "../helpers.js";

describe("many gateways on one data dir", () => {
  it("a 26th gateway starts (instances are not capped at 20) and a dead holder's instance is taken over", async () => {
    const dataDir = tempDir();
    // 25 live holders: this test process holds main, main-2 .. main-25
    const locks = [tryLock(dataDir, "main", "gateway")!, ...Array.from({ length: 24 }, (_, i) => tryLock(dataDir, `main-${i + 2}`, "gateway")!)];
    expect(locks.every(Boolean)).toBe(true);
    const config = loadConfig({ env: {}, userConfig: false, flags: { dataDir, port: "0" } });
    const start = () => runGateway(config, { stdin: new PassThrough(), stdout: new PassThrough(), stderr: new PassThrough(), env: {} }, "test");
    const running = await start();
    expect(running.instance).toBe("main-26");
    await running.close();
    // main-7's holder died without cleaning up: its stale lock file is reclaimed
    const deadPid = spawnSync(process.execPath, ["-e", ""]).pid;
    writeFileSync(instancePaths(dataDir, "main-7").lock, JSON.stringify({ pid: deadPid, kind: "gateway", instance: "main-7", startedAt: new Date().toISOString() }));
    const again = await start();
    expect(again.instance).toBe("main-7");
    await again.close();
    for (const lock of locks) lock.release();
  }, 60_000);
});
