import { readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { instancePaths } from "../../src/dataDir.js";
import { haltFilePath, newHaltFact, readHaltFile, recordHaltEverywhere } from "../../src/governance/halt.js";
import { HaltState, isHaltFact, isNewerHalt } from "../../src/governance/haltState.js";
import { serveControl, tryLock } from "../../src/governance/instance.js";
import { readAllInstances } from "../../src/governance/review.js";
import { heldCall, lowCall, openEngine, recordingExecutor, tempDir } from "../helpers.js";
import { ledgerRecords } from "../helpers/ledgerRecords.js";
import { untilTrue } from "../helpers/until.js";

const records = ledgerRecords;

describe("halt facts", () => {
  it("the newest fact wins whatever order it arrives in; equal times are broken by id", () => {
    const halt = newHaltFact(true, "ana", "incident", undefined, new Date("2026-01-01T10:00:00Z"));
    const resume = newHaltFact(false, "ben", undefined, halt, new Date("2026-01-01T09:00:00Z"));
    expect(resume.at > halt.at).toBe(true); // stamped after the fact it lifts, even with a clock behind it
    expect(isNewerHalt(resume, halt)).toBe(true);
    expect(isNewerHalt(halt, resume)).toBe(false);
    const twin = { ...halt, id: `${halt.id}0` };
    expect(isNewerHalt(twin, halt)).not.toBe(isNewerHalt(halt, twin));

    const state = new HaltState();
    const asRecord = (fact: typeof halt, seq: number) => ({ v: 1, seq, ts: fact.at, type: fact.halted ? "gateway.halted" : "gateway.resumed", data: { halt_id: fact.id, by: fact.by, at: fact.at }, prev: "", hash: "" });
    state.apply(asRecord(resume, 1));
    expect(state.apply(asRecord(halt, 2))).toBe(false);
    expect(state.active).toBeUndefined();
  });
});

describe("isHaltFact", () => {
  it("accepts a fact as newHaltFact makes it and refuses anything else off a socket or file", () => {
    const fact = newHaltFact(true, "ana", "incident");
    expect(isHaltFact(fact)).toBe(true);
    for (const bad of [null, "halt", { ...fact, id: "x" }, { ...fact, halted: "yes" }, { ...fact, by: "" }, { ...fact, at: "soon" }, { ...fact, reason: 7 }]) {
      expect(isHaltFact(bad)).toBe(false);
    }
  });
});

describe("a halted engine", () => {
  it("refuses every new call at once without reaching the upstream, and records the refusal", async () => {
    const dataDir = tempDir();
    const executor = recordingExecutor();
    const engine = openEngine(dataDir, executor);
    const fact = newHaltFact(true, "ana", "suspicious transfers");
    expect((await engine.applyHalt(fact)).changed).toBe(true);
    expect((await engine.applyHalt(fact)).changed).toBe(false);

    for (const call of [lowCall(), heldCall()]) {
      const decision = await engine.submit(call);
      expect(decision).toMatchObject({ kind: "deny" });
      expect(decision.kind === "deny" && decision.reason).toMatch(/^HALTED: the gateway was halted by ana at .* \(reason: suspicious transfers\)/);
      expect(decision.ref).toBeUndefined();
    }
    expect(executor.calls).toHaveLength(0);
    expect(engine.pending()).toHaveLength(0);
    await engine.close();
    const types = records(dataDir).map((record) => record.type);
    expect(types.filter((type) => type === "request.refused")).toHaveLength(2);
    expect(types).not.toContain("request.created");
    expect(types.filter((type) => type === "gateway.halted")).toHaveLength(1);
  });

  it("keeps pending calls pending, does not start approved ones, and starts them on resume", async () => {
    const dataDir = tempDir();
    const executor = recordingExecutor();
    const engine = openEngine(dataDir, executor);
    const first = await engine.submit(heldCall({ path: "/a" }));
    const second = await engine.submit(heldCall({ path: "/b" }));
    const halt = newHaltFact(true, "ana", "incident");
    await engine.applyHalt(halt);

    await engine.decide({ ref: first.ref!, decision: "approved", reviewer: "carl" });
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(engine.get(first.ref!)?.status).toBe("approved");
    expect(engine.get(second.ref!)?.status).toBe("pending");
    expect(executor.calls).toHaveLength(0);

    await engine.applyHalt(newHaltFact(false, "dora", "all clear", halt));
    expect((await engine.waitForOutcome(first.ref!, 5000))?.status).toBe("executed");
    expect(engine.get(second.ref!)?.status).toBe("pending");
    expect(executor.calls.map((call) => call.args)).toEqual([{ path: "/a" }]);
    expect((await engine.submit(lowCall())).kind).toBe("allow");
    await engine.close();
  });

  it("lets deadlines run while halted; an approved call whose deadline passed meanwhile never runs", async () => {
    const dataDir = tempDir();
    const executor = recordingExecutor();
    let now = new Date("2026-03-01T10:00:00Z");
    const engine = openEngine(dataDir, executor, { now: () => now, reviewTimeoutMs: 60_000 });
    const approvedRef = (await engine.submit(heldCall({ path: "/a" }))).ref!;
    const halt = newHaltFact(true, "ana", "incident", undefined, now);
    await engine.applyHalt(halt);
    await engine.decide({ ref: approvedRef, decision: "approved", reviewer: "carl" });
    now = new Date("2026-03-01T10:05:00Z");
    await engine.applyHalt(newHaltFact(false, "dora", undefined, halt, now));
    await untilTrue(() => engine.get(approvedRef)?.status === "abandoned", "the stale approval to be abandoned");
    expect(executor.calls).toHaveLength(0);
    await engine.close();
  });

  it("a pending call's deadline runs out while halted: it expires as usual", async () => {
    const dataDir = tempDir();
    const executor = recordingExecutor();
    const engine = openEngine(dataDir, executor, { reviewTimeoutMs: 150 });
    const ref = (await engine.submit(heldCall())).ref!;
    await engine.applyHalt(newHaltFact(true, "ana", "incident"));
    expect((await engine.waitForOutcome(ref, 10_000))?.status).toBe("expired");
    expect(executor.calls).toHaveLength(0);
    await engine.close();
  });

  it("survives a restart: a halted ledger starts halted and its approved calls wait", async () => {
    const dataDir = tempDir();
    const executor = recordingExecutor();
    const engine = openEngine(dataDir, executor);
    const ref = (await engine.submit(heldCall())).ref!;
    const halt = newHaltFact(true, "ana", "incident");
    await engine.applyHalt(halt);
    await engine.decide({ ref, decision: "approved", reviewer: "carl" });
    await engine.close();

    const restarted = openEngine(dataDir, executor);
    restarted.resume();
    expect(restarted.haltState()).toMatchObject({ halted: true, by: "ana", reason: "incident" });
    expect((await restarted.submit(lowCall())).kind).toBe("deny");
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(restarted.get(ref)?.status).toBe("approved");
    await restarted.applyHalt(newHaltFact(false, "dora", undefined, halt));
    expect((await restarted.waitForOutcome(ref, 5000))?.status).toBe("executed");
    expect(executor.calls).toHaveLength(1);
    await restarted.close();
  });

  it("survives segment rollovers: the halt fact is carried from checkpoint to checkpoint (issue 12)", async () => {
    const dataDir = tempDir();
    const executor = recordingExecutor();
    const ledger = { segmentRecords: 5 };
    const engine = openEngine(dataDir, executor, { ledger });
    await engine.applyHalt(newHaltFact(true, "ana", "incident"));
    for (let i = 0; i < 8; i++) expect((await engine.submit(lowCall({ path: `/tmp/${i}` }))).kind).toBe("deny");
    await engine.close();
    // start-up reads the last segment only: the halt record itself is in an earlier one, only its checkpoint carries it
    const dir = instancePaths(dataDir, "main").ledger;
    const last = readdirSync(dir).filter((name) => name.endsWith(".jsonl")).sort().at(-1)!;
    expect(last).not.toBe("000000000000.jsonl");
    const lines = readFileSync(join(dir, last), "utf8").split("\n").filter(Boolean).map((line) => JSON.parse(line) as { type: string });
    expect(lines[0]?.type).toBe("ledger.checkpoint");
    expect(lines.map((record) => record.type)).not.toContain("gateway.halted");

    const restarted = openEngine(dataDir, executor, { ledger });
    restarted.resume();
    expect(restarted.haltState()).toMatchObject({ halted: true, by: "ana", reason: "incident" });
    expect((await restarted.submit(lowCall())).kind).toBe("deny");
    expect(executor.calls).toHaveLength(0);
    await restarted.close();
  });
});

describe("recordHaltEverywhere", () => {
  it("reaches a running gateway through its control socket and writes idle instances' ledgers and halt.json (0600)", async () => {
    const dataDir = tempDir();
    const executor = recordingExecutor();
    const idle = openEngine(dataDir, executor, { ledgerPath: instancePaths(dataDir, "idle").ledger, instance: "idle" });
    await idle.close();
    const engine = openEngine(dataDir, executor);
    const lock = tryLock(dataDir, "main", "gateway")!;
    const socket = instancePaths(dataDir, "main").socket;
    const asked: unknown[] = [];
    const control = await serveControl(socket, async (request) => {
      asked.push(request);
      return request.op === "halt" ? engine.applyHalt(request.fact) : { error: "unsupported" };
    });
    lock.update({ socket });
    try {
      const fact = newHaltFact(true, "ana", "incident");
      const delivery = await recordHaltEverywhere(dataDir, fact, "main");
      expect(delivery).toEqual({ gateways: ["main"], ledgers: ["idle"] });
      expect(asked).toEqual([{ op: "halt", fact, notify: true }]);
      expect(engine.haltState()).toEqual(fact);
      expect(readHaltFile(dataDir)).toEqual(fact);
      if (process.platform !== "win32") expect(statSync(haltFilePath(dataDir)).mode & 0o777).toBe(0o600);
      const states = Object.fromEntries(readAllInstances(dataDir).map((state) => [state.instance, state.halt]));
      expect(states).toEqual({ idle: fact, main: fact });
      expect(records(dataDir, "idle").find((record) => record.type === "gateway.halted")?.data).toMatchObject({ halt_id: fact.id, by: "ana", reason: "incident" });
    } finally {
      control.close();
      lock.release();
      await engine.close();
    }
  });

  it("an unopenable ledger does not keep the halt from the other instances, and the command says which failed", async () => {
    const dataDir = tempDir();
    await openEngine(dataDir, recordingExecutor()).close();
    writeFileSync(instancePaths(dataDir, "broken").ledger, "a file where a ledger directory belongs\n");
    const fact = newHaltFact(true, "ana", "incident");
    await expect(recordHaltEverywhere(dataDir, fact, "main")).rejects.toThrow(/halt written to .*halt\.json and instance\(s\) 'main', but not recorded for instance 'broken': .*ENOTDIR/);
    expect(readHaltFile(dataDir)).toEqual(fact);
    expect(records(dataDir, "main").find((record) => record.type === "gateway.halted")?.data).toMatchObject({ halt_id: fact.id });
  });

  it("with no ledger yet, creates the fallback instance's ledger so the halt holds at its first start", async () => {
    const dataDir = tempDir();
    const fact = newHaltFact(true, "ana", "before anything ran");
    expect(await recordHaltEverywhere(dataDir, fact, "main")).toEqual({ gateways: [], ledgers: ["main"] });
    const engine = openEngine(dataDir, recordingExecutor());
    expect(engine.haltState()).toEqual(fact);
    await engine.close();
  });
});

describe("watchHaltFile", () => {
  it("hands over halt.json's fact at once and again when the file changes (a gateway the control socket missed)", async () => {
    const dataDir = tempDir();
    const { watchHaltFile } = await import("../../src/governance/halt.js");
    const first = newHaltFact(true, "ana", "incident");
    await recordHaltEverywhere(dataDir, first, "main");
    const seen: string[] = [];
    const stop = watchHaltFile(dataDir, (fact) => seen.push(fact.id));
    try {
      expect(seen).toEqual([first.id]);
      const second = newHaltFact(false, "ben", undefined, first);
      await recordHaltEverywhere(dataDir, second, "main");
      await untilTrue(() => seen.includes(second.id), "the watcher to see the resume");
    } finally {
      stop();
    }
  });
});
