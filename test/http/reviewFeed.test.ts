import { appendFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { instancePaths } from "../../src/dataDir.js";
import { ReviewFeed, readRefHistory, searchRequests } from "../../src/http/reviewFeed.js";
import { heldCall, lowCall, openEngine, recordingExecutor, tempDir } from "../helpers.js";

describe("review feed", () => {
  it("follows every instance's ledger as it grows: pending newest first, pin status, halt state", async () => {
    const dataDir = tempDir();
    const feed = new ReviewFeed(dataDir);
    expect(feed.snapshot()).toEqual({ pending: [], halt: { halted: false } });

    const main = openEngine(dataDir, recordingExecutor());
    const other = openEngine(dataDir, recordingExecutor(), { ledgerPath: instancePaths(dataDir, "second").ledger, instance: "second" });
    try {
      const definition = { name: "write_file", description: "writes", annotations: { destructiveHint: true } };
      await main.recordEvent("tool.pinned", { upstream: "fs", tool: "write_file", hash: "a".repeat(64), definition });
      const first = await main.submit(heldCall({ path: "/tmp/1" }));
      await main.submit(lowCall());
      expect(feed.snapshot().pending.map((item) => item.ref)).toEqual([first.ref]);
      expect(feed.snapshot().pending[0]).toMatchObject({ instance: "main", tool: "write_file", annotations: { destructiveHint: true }, pin: { state: "pinned" }, masked: false });

      await main.recordEvent("tool.changed", { upstream: "fs", tool: "write_file", old_hash: "a".repeat(64), new_hash: "b".repeat(64), changed: ["description"], definition: { ...definition, description: "writes, and mails a copy" } });
      await new Promise((resolve) => setTimeout(resolve, 5)); // distinct createdAt (ms resolution) so "newest" is defined
      const second = await other.submit(heldCall({ path: "/tmp/2", token: "ghp_abcdefghijklmnopqrstuvwxyz" }));
      const snapshot = feed.snapshot();
      expect(snapshot.pending.map((item) => item.ref)).toEqual([second.ref, first.ref]);
      expect(snapshot.pending[0]).toMatchObject({ instance: "second", masked: true, args: { token: "[masked]" } });
      expect(snapshot.pending[1]!.pin).toMatchObject({ state: "changed", changed: ["description"], pinned: { description: "writes" }, current: { description: "writes, and mails a copy" } });

      await other.recordEvent("gateway.halted", { by: "ops", reason: "incident 42" });
      expect(feed.snapshot().halt).toMatchObject({ halted: true, by: "ops", reason: "incident 42" });
      await main.recordEvent("gateway.resumed", { by: "ops" });
      expect(feed.snapshot().halt).toEqual({ halted: false });

      await main.decide({ ref: first.ref!, decision: "denied", reviewer: "ana", reason: "no" });
      expect(feed.snapshot().pending.map((item) => item.ref)).toEqual([second.ref]);
      expect(feed.find(first.ref!)?.view.status).toBe("denied");
    } finally {
      await main.close();
      await other.close();
    }
  });

  it("skips a half-written last line until it is complete", async () => {
    const dataDir = tempDir();
    const engine = openEngine(dataDir, recordingExecutor());
    await engine.close();
    const feed = new ReviewFeed(dataDir);
    expect(feed.snapshot().pending).toEqual([]);
    const path = instancePaths(dataDir, "main").ledger;
    const record = (type: string, data: Record<string, unknown>) => JSON.stringify({ v: 1, seq: 99, ts: new Date().toISOString(), type, ref: "evt_0000abcd", data, prev: "x", hash: "y" });
    const created = record("request.created", { upstream: "fs", tool: "t", name: "t", args: {}, args_digest: "d" });
    appendFileSync(path, `${created}\n${record("request.held", { deadline: "2099-01-01T00:00:00Z" }).slice(0, 30)}`);
    expect(feed.snapshot().pending).toEqual([]);
    appendFileSync(path, `${record("request.held", { deadline: "2099-01-01T00:00:00Z" }).slice(30)}\n`);
    expect(feed.snapshot().pending.map((item) => item.ref)).toEqual(["evt_0000abcd"]);
  });

  it("history collects a ref's records and the facts naming it; search finds by ref, tool and reviewer", async () => {
    const dataDir = tempDir();
    const engine = openEngine(dataDir, recordingExecutor());
    const held = await engine.submit(heldCall({ path: "/tmp/h", password: "hunter2" }));
    await engine.recordEvent("review.revealed", { ref: held.ref, reviewer: "ana" });
    await engine.decide({ ref: held.ref!, decision: "approved", reviewer: "ana" });
    await engine.waitForOutcome(held.ref!, 5000);
    await engine.close();
    const history = readRefHistory(dataDir, held.ref!)!;
    expect(history.records.map((record) => record.type)).toEqual(["request.created", "request.assessed", "request.held", "review.revealed", "decision.recorded", "execution.started", "execution.finished"]);
    expect(history.view.args).toEqual({ path: "/tmp/h", password: "[masked]" });
    expect(history.records[0]!.data.args).toEqual({ path: "/tmp/h", password: "[masked]" });
    expect(readRefHistory(dataDir, "evt_ffffffff")).toBeUndefined();
    for (const q of [held.ref!.slice(0, 7), "WRITE", "ana"]) expect(searchRequests(dataDir, q).map((hit) => hit.ref), q).toEqual([held.ref]);
    expect(searchRequests(dataDir, "an")).toEqual([]); // reviewer ids match whole, not as substrings
  });
});
