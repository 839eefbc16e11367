import { mkdirSync, renameSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { NotFoundError } from "../../src/errors.js";
import { instancePaths } from "../../src/dataDir.js";
import { serveControl, tryLock } from "../../src/governance/instance.js";
import { scanLedger } from "../../src/ledger/ledger.js";
import { decideRef, findRef, readAllInstances } from "../../src/governance/review.js";
import { heldCall, lowCall, openEngine, recordingExecutor, tempDir } from "../helpers.js";

const refOf = (decision: { kind: string; ref?: string }) => decision.ref ?? "";

describe("reviewer decisions", () => {
  it("with no gateway running, writes the decision to the ledger; the next start executes it once", async () => {
    const dataDir = tempDir();
    const before = recordingExecutor();
    const engine = openEngine(dataDir, before);
    const ref = refOf(await engine.submit(heldCall()));
    await engine.close();

    const result = await decideRef(dataDir, { ref, decision: "approved", reviewer: "erin", reason: "fine" });
    expect(result).toMatchObject({ via: "ledger", outcome: { status: "applied" } });
    expect(findRef(dataDir, ref).view.status).toBe("approved");

    const after = recordingExecutor();
    const restarted = openEngine(dataDir, after);
    restarted.resume();
    expect((await restarted.waitForOutcome(ref, 5000))?.status).toBe("executed");
    await restarted.close();
    expect(before.calls).toHaveLength(0);
    expect(after.calls).toHaveLength(1);

    const again = openEngine(dataDir, after);
    again.resume();
    await again.close();
    expect(after.calls).toHaveLength(1);
  });

  it("reaches the running gateway that holds the ref through its control socket", async () => {
    const dataDir = tempDir();
    const executor = recordingExecutor();
    const engine = openEngine(dataDir, executor);
    const lock = tryLock(dataDir, "main", "gateway")!;
    const socket = instancePaths(dataDir, "main").socket;
    const control = await serveControl(socket, async (request) => (request.op === "decide" ? engine.decide(request) : { error: `unsupported ${request.op}` }));
    lock.update({ socket });
    try {
      const ref = refOf(await engine.submit(heldCall()));
      const result = await decideRef(dataDir, { ref, decision: "approved", reviewer: "frank" });
      expect(result.via).toBe("gateway");
      expect((await engine.waitForOutcome(ref, 5000))?.status).toBe("executed");
      const second = await decideRef(dataDir, { ref, decision: "denied", reviewer: "frank", reason: "too late" });
      expect(second.outcome.status).toBe("already_decided");
      expect(executor.calls).toHaveLength(1);
    } finally {
      control.close();
      lock.release();
      await engine.close();
    }
  });

  it("waits for a gateway that is shutting down (socket closed, lock still held) and writes the decision to the ledger", async () => {
    const dataDir = tempDir();
    const engine = openEngine(dataDir, recordingExecutor());
    const ref = refOf(await engine.submit(heldCall()));
    await engine.close();
    // The control socket closes first; the lock goes only after the upstreams have stopped (up to a few seconds).
    const lock = tryLock(dataDir, "main", "gateway")!;
    lock.update({ socket: `${instancePaths(dataDir, "main").socket}.closed` });
    setTimeout(() => lock.release(), 300);
    expect(await decideRef(dataDir, { ref, decision: "approved", reviewer: "erin" })).toMatchObject({ via: "ledger", outcome: { status: "applied" } });
    expect(findRef(dataDir, ref).view.status).toBe("approved");
  });

  it("asks running gateways before replaying ledgers", async () => {
    const dataDir = tempDir();
    const executor = recordingExecutor();
    const engine = openEngine(dataDir, executor);
    const lock = tryLock(dataDir, "main", "gateway")!;
    const { ledger, socket } = instancePaths(dataDir, "main");
    const control = await serveControl(socket, async (request) => (request.op === "decide" ? engine.decide(request) : { error: `unsupported ${request.op}` }));
    lock.update({ socket });
    try {
      const ref = refOf(await engine.submit(heldCall()));
      // The gateway keeps writing to its open file; the path now shows an empty ledger, so only the gateway knows the ref.
      renameSync(ledger, `${ledger}.moved`);
      mkdirSync(ledger);
      expect(() => findRef(dataDir, ref)).toThrow(NotFoundError);
      expect(await decideRef(dataDir, { ref, decision: "approved", reviewer: "ivy" })).toMatchObject({ via: "gateway", outcome: { status: "applied" } });
      expect((await engine.waitForOutcome(ref, 5000))?.status).toBe("executed");
    } finally {
      control.close();
      lock.release();
      await engine.close();
    }
  });

  it("finds refs across instances and says clearly when a ref is unknown", async () => {
    const dataDir = tempDir();
    const engine = openEngine(dataDir, recordingExecutor());
    const ref = refOf(await engine.submit(heldCall()));
    await engine.close();
    expect(findRef(dataDir, ref).instance).toBe("main");
    expect(() => findRef(dataDir, "evt_deadbeef")).toThrow(NotFoundError);
    expect(() => findRef(dataDir, "not-a-ref")).toThrow(/not a ref/);
    expect(readAllInstances(dataDir)[0]!.table.pending().map((view) => view.ref)).toEqual([ref]);
  });

  it("expires a ref whose deadline passed while no gateway ran, instead of approving it", async () => {
    const dataDir = tempDir();
    const engine = openEngine(dataDir, recordingExecutor(), { reviewTimeoutMs: 1 });
    const ref = refOf(await engine.submit(heldCall()));
    await engine.close();
    await new Promise((resolve) => setTimeout(resolve, 5));
    const result = await decideRef(dataDir, { ref, decision: "approved", reviewer: "gina" });
    expect(result.outcome.status).toBe("already_decided");
    expect(findRef(dataDir, ref).view.status).toBe("expired");
  });
});

describe("crash semantics", () => {
  it("a call started but unfinished at a crash becomes unknown and is never re-run", async () => {
    const dataDir = tempDir();
    const started: string[] = [];
    const hanging = openEngine(dataDir, async (call) => {
      started.push(call.tool);
      return new Promise(() => {});
    });
    const ref = refOf(await hanging.submit(heldCall()));
    await hanging.decide({ ref, decision: "approved", reviewer: "hal" });
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(started).toEqual(["write_file"]);
    // no close(): the process "died" here
    const executor = recordingExecutor();
    const restarted = openEngine(dataDir, executor);
    restarted.resume();
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(restarted.get(ref)).toMatchObject({ status: "unknown", outcome: "unknown" });
    expect(executor.calls).toHaveLength(0);
    await restarted.close();
    const types = scanLedger(instancePaths(dataDir, "main").ledger).records.map((record) => record.type);
    expect(types).toContain("execution.interrupted");
  });

  it("an auto-approved call cut off before it finished is recorded, not replayed", async () => {
    const dataDir = tempDir();
    const hanging = openEngine(dataDir, () => new Promise(() => {}));
    void hanging.submit(lowCall());
    await new Promise((resolve) => setTimeout(resolve, 20));
    const executor = recordingExecutor();
    const restarted = openEngine(dataDir, executor);
    restarted.resume();
    await restarted.close();
    expect(executor.calls).toHaveLength(0);
    const records = scanLedger(instancePaths(dataDir, "main").ledger).records;
    expect(records.filter((record) => record.type === "execution.interrupted")).toHaveLength(1);
  });
});
