import { existsSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync, appendFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { LedgerError } from "../../src/errors.js";
import { genesisHash, hashRecord, Ledger, openFileSink, scanLedger, type LedgerRecord, type LedgerSink } from "../../src/ledger/ledger.js";

const fresh = () => join(mkdtempSync(join(tmpdir(), "atlas-ledger-")), "ledgers", "main.jsonl");

/** The first segment file of the ledger at `path` (a 0.1-style path stands for the directory that replaces it). */
const seg0 = (path: string) => join(path.replace(/\.jsonl$/, ""), "000000000000.jsonl");

async function writeSample(path: string, count = 5): Promise<LedgerRecord[]> {
  const ledger = Ledger.open(path, { instance: "main" });
  for (let i = 0; i < count; i++) ledger.append("request.created", `evt_0000000${i}`, { tool: "t", args: { i } }, "batch");
  await ledger.close();
  return scanLedger(path).records;
}
const lines = (path: string) => readFileSync(path, "utf8").split("\n").filter(Boolean);
const writeLines = (path: string, rows: string[]) => writeFileSync(path, rows.map((row) => `${row}\n`).join(""));

describe("ledger chain", () => {
  it("starts with ledger.created anchored at the genesis hash and links every record", async () => {
    const path = fresh();
    const records = await writeSample(path);
    expect(records).toHaveLength(6);
    expect(records[0]!.type).toBe("ledger.created");
    expect(records[0]!.prev).toBe(genesisHash(String(records[0]!.data.ledger_id)));
    records.forEach((record, i) => {
      expect(record.seq).toBe(i);
      const { hash, ...unsigned } = record;
      expect(hashRecord(unsigned)).toBe(hash);
      if (i > 0) expect(record.prev).toBe(records[i - 1]!.hash);
    });
    expect(statSync(seg0(path)).mode & 0o777).toBe(0o600);
  });

  it("replays on open and continues the chain", async () => {
    const path = fresh();
    await writeSample(path, 2);
    const seen: string[] = [];
    const ledger = Ledger.open(path, { instance: "main", onRecord: (record) => seen.push(record.type) });
    expect(seen).toEqual(["ledger.created", "request.created", "request.created"]);
    ledger.append("gateway.started", undefined, {}, "sync");
    await ledger.commit();
    await ledger.close();
    const scan = scanLedger(path);
    expect(scan.problem).toBeUndefined();
    expect(scan.records.map((record) => record.seq)).toEqual([0, 1, 2, 3]);
  });

  it("shares one fsync among concurrent commits (group commit)", async () => {
    let syncs = 0;
    const path = fresh();
    const ledger = Ledger.open(path, {
      instance: "main",
      sink: (p) => {
        const real = openFileSink(p);
        return { ...real, sync: async () => {
          syncs += 1;
          await new Promise((resolve) => setTimeout(resolve, 20));
          return real.sync();
        } };
      },
    });
    await ledger.commit();
    const before = syncs;
    const commits = [];
    for (let i = 0; i < 20; i++) {
      ledger.append("request.held", `evt_1000000${i % 10}`, {}, "sync");
      commits.push(ledger.commit());
    }
    await Promise.all(commits);
    expect(syncs - before).toBeLessThanOrEqual(2);
    await ledger.close();
  });
});

describe("scanLedger names the first bad record", () => {
  const damage: [string, (rows: string[]) => string[], string, RegExp][] = [
    ["edited", (rows) => { rows[3] = rows[3]!.replace('"i":2', '"i":9'); return rows; }, "edited", /line 4: seq 3 .*edited/],
    ["missing", (rows) => rows.filter((_, i) => i !== 2), "missing", /line 3: seq 3 follows seq 1.*2\.\.2 are missing/],
    ["reordered", (rows) => { [rows[2], rows[3]] = [rows[3]!, rows[2]!]; return rows; }, "missing", /line 3/],
    ["duplicated", (rows) => [...rows.slice(0, 3), rows[2]!, ...rows.slice(3)], "reordered", /line 4: seq 2 appears after seq 2/],
    ["malformed", (rows) => { rows[1] = "{not json"; return rows; }, "malformed", /line 2: not a ledger record/],
    ["re-hashed but unlinked", (rows) => {
      const record = JSON.parse(rows[2]!) as LedgerRecord;
      const { hash: _hash, ...unsigned } = { ...record, data: { forged: true } };
      rows[2] = JSON.stringify({ ...unsigned, hash: hashRecord(unsigned) });
      return rows;
    }, "broken-chain", /line 4: seq 3 does not link/],
  ];
  it.each(damage)("%s", async (_label, mutate, kind, message) => {
    const path = fresh();
    await writeSample(path);
    writeLines(seg0(path), mutate(lines(seg0(path))));
    const scan = scanLedger(path);
    expect(scan.problem?.kind).toBe(kind);
    expect(scan.problem?.message).toMatch(message);
  });

  it("torn tail", async () => {
    const path = fresh();
    await writeSample(path);
    appendFileSync(seg0(path), '{"v":1,"seq":6,"ts":"2026');
    const scan = scanLedger(path);
    expect(scan.problem).toMatchObject({ kind: "torn", line: 7 });
    expect(scan.records).toHaveLength(6);
  });
});

describe("opening a damaged ledger", () => {
  it("moves a torn tail aside, records the repair, and carries on", async () => {
    const path = fresh();
    await writeSample(path);
    appendFileSync(seg0(path), '{"v":1,"seq":6,"ts":"2026');
    const ledger = Ledger.open(path, { instance: "main" });
    await ledger.close();
    const scan = scanLedger(path);
    expect(scan.problem).toBeUndefined();
    expect(scan.last?.type).toBe("ledger.repaired");
    const saved = readdirSync(join(seg0(path), "..")).find((name) => name.includes(".torn-"));
    expect(saved).toBeDefined();
    expect(readFileSync(join(seg0(path), "..", saved!), "utf8")).toBe('{"v":1,"seq":6,"ts":"2026');
  });

  it("refuses to write after other damage", async () => {
    const path = fresh();
    await writeSample(path);
    const rows = lines(seg0(path));
    rows[2] = rows[2]!.replace("request.created", "request.deleted");
    writeLines(seg0(path), rows);
    expect(() => Ledger.open(path, { instance: "main" })).toThrow(/damaged.*audit verify/);
  });
});

describe("failing storage", () => {
  const failing = (failOn: "write" | "sync"): ((path: string) => LedgerSink) => () => ({
    write: () => {
      if (failOn === "write") throw Object.assign(new Error("ENOSPC: no space left on device"), { code: "ENOSPC" });
    },
    sync: async () => {
      if (failOn === "sync") throw new Error("EIO: i/o error");
    },
    close: () => {},
  });

  it("a failed write throws LedgerError and the ledger stays failed", () => {
    const path = fresh();
    expect(() => Ledger.open(path, { instance: "main", sink: failing("write") })).toThrow(LedgerError);
  });

  it("a failed fsync rejects commit and blocks later appends", async () => {
    const path = fresh();
    const ledger = Ledger.open(path, { instance: "main", sink: failing("sync") });
    await expect(ledger.commit()).rejects.toThrow(/cannot fsync/);
    expect(() => ledger.append("x", undefined, {}, "sync")).toThrow(LedgerError);
    expect(existsSync(path)).toBe(false);
  });
});
