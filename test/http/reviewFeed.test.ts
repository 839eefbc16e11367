import { appendFileSync, cpSync, existsSync, mkdirSync, rmSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { instancePaths, ledgersDir } from "../../src/dataDir.js";
import { ReviewFeed, readRefHistory, searchRequests } from "../../src/http/reviewFeed.js";
import { ledgerSegments } from "../../src/ledger/ledger.js";
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
    const path = ledgerSegments(instancePaths(dataDir, "main").ledger).at(-1)!.path; // the segment being appended to
    const record = (type: string, data: Record<string, unknown>) => JSON.stringify({ v: 1, seq: 99, ts: new Date().toISOString(), type, ref: "evt_0000abcd", data, prev: "x", hash: "y" });
    const created = record("request.created", { upstream: "fs", tool: "t", name: "t", args: {}, args_digest: "d" });
    appendFileSync(path, `${created}\n${record("request.held", { deadline: "2099-01-01T00:00:00Z" }).slice(0, 30)}`);
    expect(feed.snapshot().pending).toEqual([]);
    appendFileSync(path, `${record("request.held", { deadline: "2099-01-01T00:00:00Z" }).slice(30)}\n`);
    expect(feed.snapshot().pending.map((item) => item.ref)).toEqual(["evt_0000abcd"]);
  });

  it("follows rollovers to new segments, however many happen between two reads, without re-reading what it read", async () => {
    const dataDir = tempDir();
    const engine = openEngine(dataDir, recordingExecutor(), { ledger: { segmentRecords: 5, retention: { compress: true } } });
    const feed = new ReviewFeed(dataDir);
    try {
      const definition = { name: "write_file", description: "writes" };
      await engine.recordEvent("tool.pinned", { upstream: "fs", tool: "write_file", hash: "a".repeat(64), definition });
      const first = await engine.submit(heldCall({ path: "/tmp/1" }));
      expect(feed.snapshot().pending.map((item) => item.ref)).toEqual([first.ref]);
      const segmentsBefore = ledgerSegments(instancePaths(dataDir, "main").ledger).length;

      for (let i = 0; i < 6; i++) await engine.recordEvent("review.revealed", { ref: first.ref, reviewer: "ana" });
      await new Promise((resolve) => setTimeout(resolve, 5)); // distinct createdAt (ms resolution)
      const second = await engine.submit(heldCall({ path: "/tmp/2" }));
      expect(ledgerSegments(instancePaths(dataDir, "main").ledger).length).toBeGreaterThan(segmentsBefore + 1);
      // the newest segment's checkpoint carried the first call and the pin; the second was read after it
      const snapshot = feed.snapshot();
      expect(snapshot.pending.map((item) => item.ref)).toEqual([second.ref, first.ref]);
      expect(snapshot.pending[1]!.pin).toMatchObject({ state: "pinned" });
      expect(snapshot.halt).toEqual({ halted: false });

      await engine.decide({ ref: first.ref!, decision: "denied", reviewer: "ana", reason: "no" });
      await engine.recordEvent("gateway.halted", { by: "ops", reason: "drill" });
      for (let i = 0; i < 6; i++) await engine.recordEvent("review.revealed", { ref: second.ref, reviewer: "ana" });
      expect(feed.snapshot().halt).toMatchObject({ halted: true, by: "ops", reason: "drill" });
      expect(feed.snapshot().pending.map((item) => item.ref)).toEqual([second.ref]);
      expect(feed.find(first.ref!)?.view.status).toBe("denied");
      expect(feed.find(second.ref!)?.view.status).toBe("pending");

      // nothing new: the same snapshot object (nothing re-read or rebuilt)
      const settled = feed.snapshot();
      expect(feed.snapshot()).toBe(settled);
    } finally {
      await engine.close();
    }
  });

  it("reads a 0.1 single-file ledger in place and follows it through its migration", async () => {
    const dataDir = tempDir();
    const scratch = tempDir();
    const old = openEngine(scratch, recordingExecutor());
    const held = await old.submit(heldCall());
    await old.close();
    mkdirSync(ledgersDir(dataDir), { recursive: true });
    const legacy = instancePaths(dataDir, "main").legacyLedger;
    cpSync(ledgerSegments(instancePaths(scratch, "main").ledger)[0]!.path, legacy);

    const feed = new ReviewFeed(dataDir);
    expect(feed.snapshot().pending.map((item) => item.ref)).toEqual([held.ref]);
    const record = (type: string, data: Record<string, unknown>) => JSON.stringify({ v: 1, seq: 99, ts: new Date().toISOString(), type, ref: "evt_0000abcd", data, prev: "x", hash: "y" });
    appendFileSync(legacy, `${record("request.created", { upstream: "fs", tool: "t", name: "t", args: {}, args_digest: "d" })}\n${record("request.held", { deadline: "2099-01-01T00:00:00Z" })}\n`);
    expect(feed.snapshot().pending.map((item) => item.ref).sort()).toEqual([held.ref, "evt_0000abcd"].sort());

    rmSync(legacy); // drop the hand-written records again: a real gateway migrates only a ledger that verifies
    cpSync(ledgerSegments(instancePaths(scratch, "main").ledger)[0]!.path, legacy);
    const engine = openEngine(dataDir, recordingExecutor()); // migrates: the file becomes segment 0, a checkpoint opens segment 1
    try {
      expect(existsSync(legacy)).toBe(false);
      expect(feed.snapshot().pending.map((item) => item.ref)).toEqual([held.ref]);
      await engine.decide({ ref: held.ref!, decision: "denied", reviewer: "ana", reason: "no" });
      expect(feed.snapshot().pending).toEqual([]);
    } finally {
      await engine.close();
    }
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
