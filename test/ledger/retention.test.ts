import { readdirSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { instancePaths } from "../../src/dataDir.js";
import { Ledger, scanLedger } from "../../src/ledger/ledger.js";
import { applyRetention, MIN_RETENTION_MS } from "../../src/ledger/retention.js";
import { verifyLedger } from "../../src/ledger/verify.js";
import { lowCall, openEngine, recordingExecutor, tempDir } from "../helpers.js";

const DAY = 86_400_000;

describe("retention", () => {
  it("compresses closed segments (gzip); the ledger still verifies, replays and carries on", async () => {
    const dataDir = tempDir();
    const engine = openEngine(dataDir, recordingExecutor(), { ledger: { segmentRecords: 10, retention: { compress: true } } });
    for (let i = 0; i < 30; i++) await engine.submit(lowCall({ path: `/tmp/${i}` }));
    await engine.close();
    const dir = instancePaths(dataDir, "main").ledger;
    const names = readdirSync(dir).filter((name) => /\.jsonl(\.gz)?$/.test(name)).sort();
    expect(names.at(-1)).toMatch(/\.jsonl$/); // the segment being written never is
    expect(names.slice(0, -1).length).toBeGreaterThan(3);
    for (const name of names.slice(0, -1)) expect(name).toMatch(/\.jsonl\.gz$/);
    const verification = verifyLedger(dir);
    expect(verification.scan.problem).toBeUndefined();
    expect(verification.tampering).toBeUndefined();
    expect(scanLedger(dir).records.filter((record) => record.type === "request.admitted")).toHaveLength(30);
    const again = openEngine(dataDir, recordingExecutor(), { ledger: { segmentRecords: 10 } });
    await again.close();
    expect(verifyLedger(dir).tampering).toBeUndefined();
  });

  it("deletes only segments older than the retention, never one younger than 183 days, and records what it deleted", async () => {
    const dataDir = tempDir();
    const dir = instancePaths(dataDir, "main").ledger;
    let clock = Date.parse("2025-01-01T00:00:00Z");
    const ledger = Ledger.open(dir, { instance: "main", segmentRecords: 5, now: () => new Date(clock) });
    // one segment's worth of records per step, the clock moving 50 days each time: segments end 400 … 0 days ago
    for (let step = 0; step < 9; step++) {
      for (let i = 0; i < 5; i++) ledger.append("request.held", `evt_${String(step * 5 + i).padStart(8, "0")}`, { step }, "sync");
      clock += 50 * DAY;
    }
    await ledger.close();
    const before = readdirSync(dir).filter((name) => name.endsWith(".jsonl")).length;
    const now = new Date(clock);
    // asks for 30 days: raised to the 183-day floor
    const result = await applyRetention(dir, { keepMs: 30 * DAY }, now);
    expect(result.keepMs).toBe(MIN_RETENTION_MS);
    expect(result.deleted.length).toBeGreaterThan(0);
    for (const gone of result.deleted) expect(now.getTime() - Date.parse(gone.last_ts)).toBeGreaterThan(MIN_RETENTION_MS);
    const left = readdirSync(dir).filter((name) => name.endsWith(".jsonl"));
    expect(left.length).toBe(before - result.deleted.length);
    // the oldest kept segment ended (the next checkpoint) within the floor: it was too young to delete
    const checkpoints = scanLedger(dir).records.filter((record) => record.type === "ledger.checkpoint");
    expect(scanLedger(dir).records[0]!.type).toBe("ledger.checkpoint");
    expect(now.getTime() - Date.parse(checkpoints[1]!.ts)).toBeLessThanOrEqual(MIN_RETENTION_MS);

    // through the ledger: the deletion is recorded, and audit verify accepts the shortened ledger
    const reopened = Ledger.open(dir, { instance: "main", segmentRecords: 5, now: () => now, retention: { keepMs: 30 * DAY } });
    await reopened.retain();
    await reopened.close();
    const verification = verifyLedger(dir);
    expect(verification.scan.problem).toBeUndefined();
    expect(verification.tampering).toBeUndefined();
    expect(verification.warnings.join(" ")).toMatch(/no ledger.retention record names the deleted segments/); // deleted outside the ledger (by the call above)

    // a second pass through the ledger itself: nothing young enough is touched, and a deletion it makes is explained
    clock = now.getTime() + 60 * DAY;
    const later = Ledger.open(dir, { instance: "main", segmentRecords: 5, now: () => new Date(clock), retention: { keepMs: 30 * DAY } });
    await later.retain();
    await later.close();
    const retention = scanLedger(dir).records.filter((record) => record.type === "ledger.retention");
    expect(retention.length).toBeGreaterThan(0);
    for (const record of retention) {
      for (const gone of record.data.deleted as { last_ts: string }[]) expect(Date.parse(record.ts) - Date.parse(gone.last_ts)).toBeGreaterThan(MIN_RETENTION_MS);
    }
    expect(verifyLedger(dir).tampering).toBeUndefined();
  });
});
