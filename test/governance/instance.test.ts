import { spawn, spawnSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { buildSync } from "esbuild";
import { describe, expect, it } from "vitest";
import { instancePaths } from "../../src/dataDir.js";
import { tempDir } from "../helpers.js";

const ROOT = resolve(import.meta.dirname, "../..");
const TAKER = join(ROOT, "test", "fixtures", "lock-taker.mjs");

/** src/governance/instance.ts bundled as a plain ES module a child process can import (it needs only node: builtins). */
function instanceModule(): string {
  const path = join(tempDir(), "instance.mjs");
  const built = buildSync({ entryPoints: [join(ROOT, "src", "governance", "instance.ts")], bundle: true, format: "esm", platform: "node", write: false });
  writeFileSync(path, built.outputFiles[0]!.text);
  return path;
}

/** Starts one contender; resolves with its answer. Every contender stays alive (a live holder) until `release`. */
function contend(modulePath: string, dataDir: string, startAt: number, release: Promise<void>): Promise<string> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, [TAKER, modulePath, dataDir, String(startAt)], { stdio: ["pipe", "pipe", "inherit"] });
    let out = "";
    child.stdout.on("data", (chunk: Buffer) => {
      out += chunk.toString();
      if (out.endsWith("\n")) done(out.trim());
    });
    child.once("error", fail);
    child.once("exit", () => done(out.trim()));
    void release.then(() => child.stdin.end());
  });
}

describe("instance lock", () => {
  it("a dead holder's lock is taken over by exactly one of several processes starting at once", async () => {
    const modulePath = instanceModule();
    const deadPid = spawnSync(process.execPath, ["-e", "0"]).pid;
    for (let round = 0; round < 5; round++) {
      const dataDir = tempDir();
      mkdirSync(join(dataDir, "run"), { recursive: true });
      writeFileSync(instancePaths(dataDir, "main").lock, JSON.stringify({ pid: deadPid, kind: "gateway", instance: "main", startedAt: new Date(0).toISOString() }));
      const startAt = Date.now() + 500;
      let release!: () => void;
      const released = new Promise<void>((resolve) => (release = resolve));
      const results = await Promise.all(Array.from({ length: 6 }, () => contend(modulePath, dataDir, startAt, released)));
      release();
      expect(results.filter((result) => result === "won"), `round ${round}: ${results.join(" ")}`).toHaveLength(1);
    }
  }, 30_000);
});

describe("lock file", () => {
  it("is created and updated whole, leaving no temp files", async () => {
    const { mkdtempSync, readdirSync, readFileSync } = await import("node:fs");
    const { tmpdir } = await import("node:os");
    const { join } = await import("node:path");
    const { tryLock } = await import("../../src/governance/instance.js");
    const { instancePaths } = await import("../../src/dataDir.js");
    const dataDir = mkdtempSync(join(tmpdir(), "atlas-lockfile-"));
    const lock = tryLock(dataDir, "main", "gateway")!;
    expect(JSON.parse(readFileSync(instancePaths(dataDir, "main").lock, "utf8"))).toMatchObject({ pid: process.pid, kind: "gateway" });
    lock.update({ port: 1234, socket: "/tmp/x.sock" });
    expect(JSON.parse(readFileSync(instancePaths(dataDir, "main").lock, "utf8"))).toMatchObject({ pid: process.pid, port: 1234 });
    expect(tryLock(dataDir, "main", "cli")).toBeUndefined();
    expect(readdirSync(join(dataDir, "run"))).toEqual(["main.lock"]);
    lock.release();
    expect(readdirSync(join(dataDir, "run"))).toEqual([]);
  });
});
