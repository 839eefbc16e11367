import { cpSync, existsSync, linkSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { instancePaths } from "../../src/dataDir.js";
import { LedgerError } from "../../src/errors.js";
import { decideRef, findRef } from "../../src/governance/review.js";
import { GovernanceLog } from "../../src/governance/governanceLog.js";
import { hashRecord, Ledger, scanLedger, type LedgerRecord, type RolloverStep } from "../../src/ledger/ledger.js";
import { loadOrCreateSigner, formatVerifierKey } from "../../src/ledger/signedNote.js";
import { verifyLedger } from "../../src/ledger/verify.js";
import { HEAD_SLOT_BYTES } from "../../src/ledger/headFile.js";
import { ToolPinTable } from "../../src/risk/toolPins.js";
import { heldCall, lowCall, openEngine, recordingExecutor, tempDir } from "../helpers.js";

const paths = (dataDir: string) => instancePaths(dataDir, "main");
const segmentsOf = (dataDir: string) => readdirSync(paths(dataDir).ledger).filter((name) => name.endsWith(".jsonl")).sort();
const small = { ledger: { segmentRecords: 10 } };

/** Runs `calls` auto-approved calls (distinct args) through the engine. */
async function runCalls(engine: ReturnType<typeof openEngine>, calls: number, from = 0): Promise<void> {
  for (let i = from; i < from + calls; i++) expect((await engine.submit(lowCall({ path: `/tmp/${i}` }))).kind).toBe("allow");
}

describe("segments and checkpoints", () => {
  it("rolls over into segments opened by signed checkpoints, and start-up reads only the last one, whatever the history", async () => {
    const readAtStart: number[] = [];
    for (const history of [30, 300]) {
      const dataDir = tempDir();
      const executor = recordingExecutor();
      const engine = openEngine(dataDir, executor, small);
      await engine.recordEvent("tool.pinned", { upstream: "fs", tool: "read_file", hash: "h1" });
      const held = await engine.submit(heldCall());
      await runCalls(engine, history);
      await engine.close();
      expect(segmentsOf(dataDir).length).toBeGreaterThan(history / 10);

      const verification = verifyLedger(paths(dataDir).ledger);
      expect(verification.scan.problem).toBeUndefined();
      expect(verification.tampering).toBeUndefined();
      expect(verification.checkpoints).toBe(verification.segments - 1);
      expect(verification.headSize).toBe(verification.records);

      // a restart: the held call (from the first segment) and the pin are carried by the last checkpoint
      const pins = new ToolPinTable();
      const log = GovernanceLog.open(paths(dataDir).ledger, { instance: "main", onRecord: (record) => pins.apply(record), ...small });
      readAtStart.push(log.ledger.recordsRead);
      expect(log.ledger.recordsRead).toBeLessThanOrEqual(12);
      expect(log.table.get(held.ref!)?.status).toBe("pending");
      expect(pins.get("fs", "read_file")?.hash).toBe("h1");
      await log.close();

      const restarted = openEngine(dataDir, executor, small);
      restarted.resume();
      expect(restarted.pending().map((view) => view.ref)).toEqual([held.ref]);
      await restarted.decide({ ref: held.ref!, decision: "approved", reviewer: "erin" });
      expect((await restarted.waitForOutcome(held.ref!, 5000))?.status).toBe("executed");
      await restarted.close();
      expect(executor.calls.filter((call) => call.tool === "write_file")).toHaveLength(1);
      expect(findRef(dataDir, held.ref!, true).view.status).toBe("executed");
    }
    // flat: ten times the history, no more records read at start
    expect(readAtStart[1]).toBeLessThanOrEqual(12);
  });

  it("rolls over under concurrent calls: every call's records land in the chain once, in order, and verify", async () => {
    const dataDir = tempDir();
    const executor = recordingExecutor();
    const engine = openEngine(dataDir, executor, { ledger: { segmentRecords: 7 } });
    const held = await Promise.all(Array.from({ length: 4 }, (_, i) => engine.submit(heldCall({ path: `/held/${i}` }))));
    for (let round = 0; round < 5; round++) {
      const decisions = await Promise.all(Array.from({ length: 16 }, (_, i) => engine.submit(lowCall({ path: `/tmp/${round}-${i}` }))));
      expect(decisions.every((decision) => decision.kind === "allow")).toBe(true);
    }
    await Promise.all(held.map((decision) => engine.decide({ ref: decision.ref!, decision: "approved", reviewer: "erin" })));
    for (const decision of held) expect((await engine.waitForOutcome(decision.ref!, 5000))?.status).toBe("executed");
    await engine.close();
    const verification = verifyLedger(paths(dataDir).ledger);
    expect(verification.scan.problem).toBeUndefined();
    expect(verification.tampering).toBeUndefined();
    expect(verification.segments).toBeGreaterThan(10);
    const records = scanLedger(paths(dataDir).ledger).records;
    expect(records.filter((record) => record.type === "request.admitted")).toHaveLength(80);
    expect(records.filter((record) => record.type === "execution.finished")).toHaveLength(84);
    expect(executor.calls).toHaveLength(84);
  });

  it("pending and reviewer decisions without a gateway read from the last checkpoint", async () => {
    const dataDir = tempDir();
    const engine = openEngine(dataDir, recordingExecutor(), small);
    const held = await engine.submit(heldCall());
    await runCalls(engine, 40);
    await engine.close();
    expect((await decideRef(dataDir, { ref: held.ref!, decision: "denied", reviewer: "erin", reason: "no" })).outcome.status).toBe("applied");
    expect(findRef(dataDir, held.ref!).view.status).toBe("denied");
  });

  it("a new ref never repeats one in the window: open requests, the current and the previous segment", async () => {
    const dataDir = tempDir();
    const log = GovernanceLog.open(paths(dataDir).ledger, { instance: "main", ...small });
    const refs = new Set<string>();
    for (let i = 0; i < 25; i++) {
      const ref = log.newRef();
      refs.add(ref);
      log.record("request.admitted", ref, { upstream: "fs", tool: "t", name: "t", args: {}, args_digest: `d${i}`, assessment: {}, threshold: 70 }, "batch");
      log.record("execution.finished", ref, { outcome: "ok" }, "batch");
    }
    await log.close();
    const checkpoint = scanLedger(paths(dataDir).ledger).records.filter((record) => record.type === "ledger.checkpoint").at(-1)!;
    const recent = String((checkpoint.data.state as { recent_refs: string }).recent_refs);
    expect(recent.length % 8).toBe(0);
    expect(recent.length).toBeGreaterThan(0);
    for (let i = 0; i < recent.length; i += 8) expect(refs.has(`evt_${recent.slice(i, i + 8)}`)).toBe(true);
    // after a restart the window holds them again: newRef skips a ref taken in it
    const reopened = GovernanceLog.open(paths(dataDir).ledger, { instance: "main", ...small });
    const carry = (reopened as unknown as { carry: { refs: Set<number> } }).carry;
    expect(carry.refs.has(Number.parseInt(recent.slice(0, 8), 16))).toBe(true);
    await reopened.close();
  });
});

describe("an existing 0.1 ledger", () => {
  /** Writes a 0.1-style single-file ledger: what `Ledger` wrote before segments (same records, one file). */
  async function legacyLedger(dataDir: string): Promise<{ path: string; records: LedgerRecord[]; ref: string }> {
    const scratch = tempDir();
    const engine = openEngine(scratch, recordingExecutor());
    await runCalls(engine, 3);
    const held = await engine.submit(heldCall());
    await engine.close();
    const segment = join(paths(scratch).ledger, "000000000000.jsonl");
    const path = paths(dataDir).legacyLedger;
    mkdirSync(join(dataDir, "ledgers"), { recursive: true });
    cpSync(segment, path);
    return { path, records: scanLedger(path).records, ref: held.ref! };
  }

  it("is read in place by readers, and migrated once, atomically, at the first start; its chain still verifies end to end", async () => {
    const dataDir = tempDir();
    const { path, records, ref } = await legacyLedger(dataDir);
    const bytes = readFileSync(path, "utf8");
    expect(findRef(dataDir, ref).view.status).toBe("pending"); // read in place, nothing moved
    expect(existsSync(path)).toBe(true);

    const engine = openEngine(dataDir, recordingExecutor());
    expect(existsSync(path)).toBe(false);
    expect(engine.pending().map((view) => view.ref)).toEqual([ref]);
    await engine.close();
    expect(readFileSync(join(paths(dataDir).ledger, "000000000000.jsonl"), "utf8").startsWith(bytes)).toBe(true);
    const verification = verifyLedger(paths(dataDir).ledger);
    expect(verification.scan.problem).toBeUndefined();
    expect(verification.tampering).toBeUndefined();
    const all = scanLedger(paths(dataDir).ledger).records;
    expect(all.slice(0, records.length)).toEqual(records);
    const checkpoint = all.find((record) => record.type === "ledger.checkpoint");
    expect(checkpoint?.data.reason).toBe("migration");
    expect(verification.checkpoints).toBe(1);
  });

  it("a crash at any point of the migration loses nothing", async () => {
    // the states a crash can leave, in order: staging dir half-made; dir renamed, old name still there
    for (const crash of ["staging", "renamed"] as const) {
      const dataDir = tempDir();
      const { path, records, ref } = await legacyLedger(dataDir);
      const dir = paths(dataDir).ledger;
      if (crash === "staging") {
        mkdirSync(`${dir}.migrating`);
        linkSync(path, join(`${dir}.migrating`, "000000000000.jsonl"));
      } else {
        mkdirSync(dir);
        linkSync(path, join(dir, "000000000000.jsonl"));
      }
      const engine = openEngine(dataDir, recordingExecutor());
      expect(engine.pending().map((view) => view.ref)).toEqual([ref]);
      await engine.close();
      expect(existsSync(path)).toBe(false);
      expect(existsSync(`${dir}.migrating`)).toBe(false);
      const scan = scanLedger(dir);
      expect(scan.problem).toBeUndefined();
      expect(scan.records.slice(0, records.length)).toEqual(records);
    }
  });
});

describe("crash during rollover", () => {
  const steps: RolloverStep[] = ["flushed", "synced", "checkpoint-written", "renamed"];
  it.each(steps)("stopped at '%s': nothing is lost and the ledger carries on", async (step) => {
    const dataDir = tempDir();
    const path = paths(dataDir).ledger;
    let armed = true;
    const ledger = Ledger.open(path, {
      instance: "main",
      segmentRecords: 5,
      onRolloverStep: (at) => {
        if (armed && at === step) throw new Error(`crash at ${at}`);
      },
    });
    const appended: string[] = [];
    let crashed = false;
    for (let i = 0; i < 8 && !crashed; i++) {
      try {
        ledger.append("request.held", `evt_0000000${i}`, { i }, "sync");
        appended.push(`evt_0000000${i}`);
      } catch (error) {
        expect(error).toBeInstanceOf(LedgerError);
        crashed = true;
      }
    }
    expect(crashed).toBe(true);
    armed = false;
    // the process is gone: a new one opens what is on disk
    const reopened = Ledger.open(path, { instance: "main", segmentRecords: 5 });
    reopened.append("gateway.started", undefined, {}, "sync");
    await reopened.close();
    expect(readdirSync(path).filter((name) => name.endsWith(".tmp"))).toEqual([]);
    const verification = verifyLedger(path);
    expect(verification.scan.problem).toBeUndefined();
    expect(verification.tampering).toBeUndefined();
    const refs = scanLedger(path).records.filter((record) => record.type === "request.held").map((record) => record.ref);
    expect(refs).toEqual(appended);
  });
});

describe("tampering", () => {
  /** A held call approved and executed, the gateway closed: the ledger's head covers all of it. */
  async function executedCall(): Promise<{ dataDir: string; ref: string }> {
    const dataDir = tempDir();
    const executor = recordingExecutor();
    const engine = openEngine(dataDir, executor);
    const ref = (await engine.submit(heldCall())).ref!;
    await engine.decide({ ref, decision: "approved", reviewer: "erin" });
    expect((await engine.waitForOutcome(ref, 5000))?.status).toBe("executed");
    await engine.close();
    expect(executor.calls).toHaveLength(1);
    return { dataDir, ref };
  }
  const segmentPath = (dataDir: string) => join(paths(dataDir).ledger, "000000000000.jsonl");
  const lines = (dataDir: string) => readFileSync(segmentPath(dataDir), "utf8").split("\n").filter(Boolean);

  it("truncation at every record boundary of an executed call is detected, and the call is never re-run", async () => {
    const { dataDir, ref } = await executedCall();
    const rows = lines(dataDir);
    const first = rows.findIndex((row) => (JSON.parse(row) as LedgerRecord).ref === ref);
    const last = rows.length;
    expect(rows.slice(first).filter((row) => (JSON.parse(row) as LedgerRecord).ref === ref).map((row) => (JSON.parse(row) as LedgerRecord).type))
      .toEqual(["request.created", "request.assessed", "request.held", "decision.recorded", "execution.started", "execution.finished"]);
    for (let keep = first; keep < last; keep++) {
      const copy = tempDir();
      cpSync(dataDir, copy, { recursive: true });
      truncateSync(segmentPath(copy), rows.slice(0, keep).reduce((sum, row) => sum + Buffer.byteLength(row) + 1, 0));
      const executor = recordingExecutor();
      expect(() => openEngine(copy, executor), `cut after ${keep} records`).toThrow(/shows tampering: it ends at seq \d+, but its signed head .* record\(s\) were removed from the end/);
      expect(executor.calls).toEqual([]);
      expect(verifyLedger(paths(copy).ledger).tampering).toMatch(/removed from the end/);
    }
  });

  it("a forged approval appended after the signed head chains, but is not acted on: the call goes back to the reviewer", async () => {
    const dataDir = tempDir();
    const first = openEngine(dataDir, recordingExecutor());
    const ref = (await first.submit(heldCall())).ref!;
    await first.close();
    const rows = lines(dataDir);
    const last = JSON.parse(rows.at(-1)!) as LedgerRecord;
    const unsigned = { v: 1, seq: last.seq + 1, ts: new Date().toISOString(), type: "decision.recorded", ref, data: { decision: "approved", source: "human", reviewer: "mallory" }, prev: last.hash };
    writeFileSync(segmentPath(dataDir), [...rows, JSON.stringify({ ...unsigned, hash: hashRecord(unsigned) })].map((row) => `${row}\n`).join(""));
    expect(scanLedger(paths(dataDir).ledger).problem).toBeUndefined(); // the chain alone cannot tell
    expect(verifyLedger(paths(dataDir).ledger).warnings.join(" ")).toMatch(/1 record\(s\) after the signed head are covered by no signature/);

    const executor = recordingExecutor();
    const engine = openEngine(dataDir, executor);
    engine.resume();
    expect(engine.get(ref)).toMatchObject({ status: "pending", unproven: expect.stringMatching(/cannot be proven/) });
    await new Promise((resolve) => setTimeout(resolve, 50));
    await engine.close();
    expect(executor.calls).toEqual([]);
    expect(scanLedger(paths(dataDir).ledger).records.filter((record) => record.ref === ref).map((record) => record.type)).toContain("decision.unproven");
    // surfaced to the reviewer
    const out: string[] = [];
    const { main } = await import("../../src/cli/main.js");
    await main(["pending"], { out: (text) => out.push(text), err: () => {}, env: { HOME: dataDir, ATLAS_CONFIG_DIR: tempDir(), ATLAS_DATA_DIR: dataDir } });
    expect(out.join("\n")).toMatch(new RegExp(`note: ${ref} was approved before, but that approval \\(seq \\d+\\) is not covered by the ledger's signed head`));
  });

  it("a rebuilt chain (an edit with every hash recomputed) fails the head's and the checkpoints' signatures", async () => {
    const dataDir = tempDir();
    const engine = openEngine(dataDir, recordingExecutor(), small);
    const ref = (await engine.submit(heldCall())).ref!;
    await runCalls(engine, 25);
    await engine.close();
    const copy = tempDir();
    cpSync(dataDir, copy, { recursive: true });
    // rewrite every segment: change the held call's args, recompute every hash and link
    let prev: string | undefined;
    for (const name of segmentsOf(copy)) {
      const file = join(paths(copy).ledger, name);
      const rebuilt = readFileSync(file, "utf8").split("\n").filter(Boolean).map((row) => {
        const record = JSON.parse(row) as LedgerRecord;
        const { hash: _hash, ...rest } = record;
        const data = record.ref === ref && record.type === "request.created" ? { ...record.data, args: { path: "/etc/passwd" } } : record.data;
        const unsigned = { ...rest, data, prev: prev ?? record.prev };
        prev = hashRecord(unsigned);
        return JSON.stringify({ ...unsigned, hash: prev });
      });
      writeFileSync(file, rebuilt.map((row) => `${row}\n`).join(""));
    }
    expect(scanLedger(paths(copy).ledger).problem).toBeUndefined(); // a consistent chain
    expect(verifyLedger(paths(copy).ledger).tampering).toMatch(/checkpoint seq \d+: its signature covers/);
    expect(() => openEngine(copy, recordingExecutor(), small)).toThrow(/shows tampering/);
    rmSync(paths(copy).head);
    expect(verifyLedger(paths(copy).ledger).tampering).toMatch(/checkpoint seq \d+: its signature covers/);
    expect(() => openEngine(copy, recordingExecutor(), small)).toThrow(/shows tampering: checkpoint/);
  });

  it("a head file or checkpoint signed by another key, or altered, fails; an auditor's public key verifies a good copy", async () => {
    const { dataDir } = await executedCall();
    const headPath = paths(dataDir).head;
    const good = readFileSync(headPath);
    expect(good.length).toBe(2 * HEAD_SLOT_BYTES);
    const alter = (slots: number[]) => {
      const bytes = Buffer.from(good);
      for (const slot of slots) {
        const text = bytes.subarray(slot * HEAD_SLOT_BYTES, (slot + 1) * HEAD_SLOT_BYTES).toString("latin1");
        bytes.write(text.replace("atlas-time 20", "atlas-time 19"), slot * HEAD_SLOT_BYTES, "latin1"); // same length, signed text changed
      }
      writeFileSync(headPath, bytes);
    };
    // one slot torn or altered: the other still holds a signed head (what a crash mid-write leaves)
    alter([0]);
    const oneSlot = verifyLedger(paths(dataDir).ledger);
    expect(oneSlot.tampering).toBeUndefined();
    expect(oneSlot.warnings.join(" ")).toMatch(/slot of the head file fails its signature/);
    // both: tampering
    alter([0, 1]);
    expect(verifyLedger(paths(dataDir).ledger).tampering).toMatch(/head file .* fails its signature check/);
    expect(() => openEngine(dataDir, recordingExecutor())).toThrow(/head file .* fails its signature check/);
    writeFileSync(headPath, good);

    const other = loadOrCreateSigner(join(tempDir(), "k"), join(tempDir(), "k.pub"));
    expect(verifyLedger(paths(dataDir).ledger, other.verifier).tampering).toMatch(/not signed by key/);
    const own = readFileSync(paths(dataDir).publicKey, "utf8");
    expect(own.trim()).toMatch(/^atlas-gateway-ledger\+[0-9a-f]{8}\+[A-Za-z0-9+/=]{44}$/);
    expect(formatVerifierKey(loadOrCreateSigner(paths(dataDir).signingKey, paths(dataDir).publicKey).verifier)).toBe(own.trim());
    expect(verifyLedger(paths(dataDir).ledger).tampering).toBeUndefined();
    expect(statSync(paths(dataDir).signingKey).mode & 0o777).toBe(0o600);
    expect(paths(dataDir).signingKey.startsWith(paths(dataDir).ledger)).toBe(false);
  });
});
