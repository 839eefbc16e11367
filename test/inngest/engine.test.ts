import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config.js";
import { DECISION_EVENT, REQUEST_EVENT } from "../../src/inngest/events.js";
import { WorkflowHalt } from "../../src/inngest/inngestEngine.js";
import { checkInngestConfig, loadOrCreateInstallId, resolveAppId } from "../../src/inngest/settings.js";
import { createRulesEvaluator } from "../../src/risk/assess.js";
import { APP_ID, createEngineFixture, eventually, highRiskCall, lowRiskCall, type EngineFixture } from "../helpers/inngestEngineFixture.js";

const fixtures: EngineFixture[] = [];
async function fixture(...args: Parameters<typeof createEngineFixture>): Promise<EngineFixture> {
  const created = await createEngineFixture(...args);
  fixtures.push(created);
  return created;
}
afterEach(async () => {
  for (const created of fixtures.splice(0)) await created.cleanUp();
});

describe("InngestEngine without Inngest", () => {
  it("runs a low-risk call itself when its event cannot be sent, and the late run does not run it again", async () => {
    const f = await fixture();
    f.outage.on = true;
    const decision = await f.engine.submit(lowRiskCall);
    expect(decision).toMatchObject({ kind: "allow", result: { content: [{ type: "text", text: "read_file done" }] } });
    expect(f.executed).toHaveLength(1);
    expect(f.logs.join("\n")).toContain("could not be sent to Inngest");
    const started = f.records().find((record) => record.type === "execution.started");
    expect(started?.data).toMatchObject({ by: "gateway" });

    // The table forgets finished auto-approved calls; a run arriving later still must not execute it.
    expect(await f.engine.assessStep(decision.ref!, "run-late")).toMatchObject({ route: "auto" });
    expect(await f.engine.executeStep(decision.ref!, "run-late")).toMatchObject({ executed: true, by: "gateway" });
    expect(f.executed).toHaveLength(1);
  });

  it("runs a low-risk call itself when no run starts it within the dispatch timeout", async () => {
    const f = await fixture({ dispatchTimeoutMs: 50 });
    const decision = await f.engine.submit(lowRiskCall);
    expect(decision.kind).toBe("allow");
    expect(f.sent.map((event) => event.name)).toEqual([REQUEST_EVENT]);
    expect(f.logs.join("\n")).toContain("no Inngest run started it within 50 ms");
    expect(await f.engine.executeStep(decision.ref!, "run-late")).toMatchObject({ executed: true });
    expect(f.executed).toHaveLength(1);
  });

  it("a cancelled low-risk call that no run started is abandoned and never runs", async () => {
    const f = await fixture();
    const controller = new AbortController();
    const submitted = f.engine.submit(lowRiskCall, { signal: controller.signal });
    await eventually(() => expect(f.sent).toHaveLength(1));
    controller.abort();
    expect(await submitted).toMatchObject({ kind: "deny", reason: expect.stringContaining("cancelled") });
    expect(await f.engine.executeStep(String(f.sent[0]!.data.ref), "run")).toMatchObject({ executed: false, status: "abandoned" });
    expect(f.executed).toHaveLength(0);
  });

  it("holds a high-risk call at once, durably, and re-sends its event until Inngest accepts it", async () => {
    const f = await fixture();
    f.outage.on = true;
    const hold = await f.engine.submit(highRiskCall);
    expect(hold.kind).toBe("hold");
    expect(f.engine.pending().map((view) => view.ref)).toEqual([hold.ref]);
    await eventually(() => expect(f.logs.join("\n")).toContain("retrying with backoff"));
    f.outage.on = false;
    const event = await eventually(() => {
      const found = f.sent.find((sent) => sent.name === REQUEST_EVENT);
      if (!found) throw new Error("not sent yet");
      return found;
    });
    expect(event).toMatchObject({ id: `${APP_ID}:${hold.ref}`, data: { ref: hold.ref, app: APP_ID, route: "review", instance: "main" } });
    expect((event.data.call as { args: Record<string, unknown> }).args.api_token).toBe("[masked]");
    await eventually(() => expect(f.records().some((record) => record.type === "workflow.event_sent" && record.ref === hold.ref)).toBe(true));
  });

  it("gives up re-sending after a bounded number of attempts, and says so", async () => {
    const f = await fixture({ maxSendAttempts: 3 });
    f.outage.on = true;
    const { ref } = await f.engine.submit(highRiskCall);
    await eventually(() => expect(f.logs.join("\n")).toContain(`gave up sending request event for ${ref} after 3 attempts`));
    const attempts = f.logs.filter((line) => line.includes("retrying with backoff")).length;
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(f.logs.filter((line) => line.includes("retrying with backoff")).length).toBe(attempts);
    expect(f.engine.get(ref!)?.status).toBe("pending");
  });

  it("sends a call larger than maxEventBytes by reference: ref and digest, not the arguments", async () => {
    const f = await fixture({ maxEventBytes: 4096 });
    const { ref } = await f.engine.submit({ ...highRiskCall, args: { blob: "z".repeat(10_000) } });
    const event = await eventually(() => {
      const found = f.sent.find((sent) => sent.data.ref === ref);
      if (!found) throw new Error("not sent yet");
      return found;
    });
    expect(JSON.stringify(event).length).toBeLessThan(4096);
    expect(event.data.call).toMatchObject({ args: expect.stringContaining("in the gateway's ledger"), by_reference: { bytes: expect.any(Number) }, args_digest: f.engine.get(ref!)!.argsDigest });
    await eventually(() => expect(f.records().find((record) => record.type === "workflow.event_sent")?.data).toMatchObject({ by_reference: { bytes: expect.any(Number) } }));
  });

  it("re-sends a decision with backoff until the run's record-decision step consumed it", async () => {
    const f = await fixture();
    const { ref } = await f.engine.submit(highRiskCall);
    await f.engine.decide({ ref: ref!, decision: "approved", reviewer: "alice", reason: "ok" });
    // No run consumed it yet (it might have arrived before the wait existed): it keeps coming.
    await eventually(() => expect(f.sent.filter((event) => event.name === DECISION_EVENT).length).toBeGreaterThanOrEqual(3));
    expect(f.sent.find((event) => event.name === DECISION_EVENT)).toMatchObject({ data: { ref, app: APP_ID, decision: "approved", reviewer: "alice", reason: "ok" } });
    expect(f.sent.find((event) => event.name === DECISION_EVENT)?.id).toBeUndefined();

    await f.engine.recordDecisionStep(ref!, { ref: ref!, decision: "approved", reviewer: "alice" }, "run-1");
    const count = f.sent.filter((event) => event.name === DECISION_EVENT).length;
    await new Promise((resolve) => setTimeout(resolve, 250));
    expect(f.sent.filter((event) => event.name === DECISION_EVENT).length).toBeLessThanOrEqual(count + 1);
    const settled = f.sent.filter((event) => event.name === DECISION_EVENT).length;
    await new Promise((resolve) => setTimeout(resolve, 250));
    expect(f.sent.filter((event) => event.name === DECISION_EVENT).length).toBe(settled);
  });

  it("after a restart, sends again what the last process could not deliver while work is left", async () => {
    const f = await fixture();
    f.outage.on = true;
    const approved = await f.engine.submit(highRiskCall);
    await f.engine.decide({ ref: approved.ref!, decision: "approved", reviewer: "bob" });
    const denied = await f.engine.submit({ ...highRiskCall, args: { amount: 1 } });
    await f.engine.decide({ ref: denied.ref!, decision: "denied", reviewer: "bob", reason: "no" });
    // (the first attempts have been refused before the outage ends)
    await eventually(() => {
      for (const ref of [approved.ref, denied.ref]) {
        for (const kind of ["request", "decision"]) expect(f.logs.join("\n")).toContain(`sending ${kind} event for ${ref} failed`);
      }
    });
    await f.engine.close();
    f.outage.on = false;
    f.reopen().resume();
    await eventually(() => {
      expect(f.sent.some((event) => event.name === REQUEST_EVENT && event.data.ref === approved.ref)).toBe(true);
      expect(f.sent.some((event) => event.name === DECISION_EVENT && event.data.ref === approved.ref && event.data.decision === "approved")).toBe(true);
    });
    // A denied call that never reached Inngest needs no run: nothing is sent for it.
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(f.sent.filter((event) => event.data.ref === denied.ref)).toEqual([]);
  });

  it("never re-runs a call whose execution was interrupted (outcome unknown)", async () => {
    const f = await fixture({}, () => new Promise(() => {}));
    const { ref } = await f.engine.submit(highRiskCall);
    await f.engine.decide({ ref: ref!, decision: "approved", reviewer: "alice" });
    void f.engine.executeStep(ref!, "run-1").catch(() => {});
    await eventually(() => expect(f.executed).toHaveLength(1));
    // the process dies mid-call; Inngest retries the step against the restarted gateway
    await f.engine.close();
    const engine = f.reopen();
    engine.resume();
    expect(engine.get(ref!)?.status).toBe("unknown");
    await expect(engine.executeStep(ref!, "run-1")).rejects.toBeInstanceOf(WorkflowHalt);
    expect(f.executed).toHaveLength(1);
  });

  it("expires a held call itself if its run never reports back after the deadline", async () => {
    const f = await fixture({ reviewTimeoutMs: 30, expiryGraceMs: 30 });
    const { ref } = await f.engine.submit(highRiskCall);
    await eventually(() => expect(f.engine.get(ref!)?.status).toBe("expired"));
    expect(f.engine.get(ref!)?.decision?.source).toBe("timeout");
  });

  it("shares one ref between identical pending calls", async () => {
    const f = await fixture();
    const first = await f.engine.submit(highRiskCall);
    const second = await f.engine.submit({ ...highRiskCall, args: { ...highRiskCall.args } });
    expect(second).toMatchObject({ kind: "hold", ref: first.ref, deduplicated: true });
  });
});

describe("inngest settings", () => {
  const config = (env: Record<string, string>) => loadConfig({ env: { HOME: "/nonexistent", ...env }, userConfig: false, flags: { dataDir: "/tmp/x" } });

  it("reads Inngest's own variables into the one config, INNGEST_DEV as a flag or a URL", () => {
    expect(config({ INNGEST_EVENT_KEY: "ek", INNGEST_SIGNING_KEY: "signkey-prod-ab", INNGEST_BASE_URL: "http://inngest.internal:8288", ATLAS_ENGINE: "inngest" })).toMatchObject({
      engine: "inngest",
      inngest: { eventKey: "ek", signingKey: "signkey-prod-ab", baseUrl: "http://inngest.internal:8288", dev: false, mode: "serve", dispatchTimeout: 10_000 },
    });
    expect(config({ INNGEST_DEV: "1" }).inngest).toMatchObject({ dev: true });
    expect(config({ INNGEST_DEV: "0" }).inngest).toMatchObject({ dev: false });
    expect(config({ INNGEST_DEV: "http://localhost:9999" }).inngest).toMatchObject({ dev: true, baseUrl: "http://localhost:9999" });
    expect(config({}).inngest.dev).toBe(false);
  });

  it("reports missing and malformed keys, and refuses dev mode on a non-loopback listener", () => {
    const base = config({ ATLAS_ENGINE: "inngest" });
    expect(checkInngestConfig(base).join("\n")).toMatch(/signingKey \(INNGEST_SIGNING_KEY\): missing[\s\S]*eventKey \(INNGEST_EVENT_KEY\): missing/);
    expect(checkInngestConfig(config({ INNGEST_SIGNING_KEY: "not-a-key", INNGEST_EVENT_KEY: "has space" })).join("\n")).toMatch(/not a signing key[\s\S]*malformed/);
    expect(checkInngestConfig(config({ INNGEST_SIGNING_KEY: `signkey-prod-${"ab".repeat(32)}`, INNGEST_EVENT_KEY: "abc_DEF-123" }))).toEqual([]);
    expect(checkInngestConfig(config({ INNGEST_SIGNING_KEY: "cd".repeat(32), INNGEST_EVENT_KEY: "abc" }))).toEqual([]);
    expect(checkInngestConfig(config({ INNGEST_SIGNING_KEY: "signkey-prod-abc", INNGEST_EVENT_KEY: "abc" })).join("\n")).toContain("not a signing key");
    expect(checkInngestConfig(config({ INNGEST_DEV: "1" }))).toEqual([]);
    expect(checkInngestConfig(config({ INNGEST_DEV: "1", ATLAS_HOST: "0.0.0.0" })).join("\n")).toContain("dev mode skips signature checks");
  });

  it("gives each install (and instance) its own app id, kept in the data dir", () => {
    const dir = mkdtempSync(join(tmpdir(), "atlas-appid-"));
    try {
      const settings = config({}).inngest;
      const id = resolveAppId(settings, dir, "main");
      expect(id).toMatch(/^atlas-gateway-[0-9a-f]{10}$/);
      expect(resolveAppId(settings, dir, "main")).toBe(id);
      expect(resolveAppId(settings, dir, "second")).toBe(`${id}-second`);
      expect(statSync(join(dir, "inngest-install-id")).mode & 0o077).toBe(0);
      expect(readFileSync(join(dir, "inngest-install-id"), "utf8").trim()).toBe(loadOrCreateInstallId(dir));
      const other = mkdtempSync(join(tmpdir(), "atlas-appid-"));
      expect(resolveAppId(settings, other, "main")).not.toBe(id);
      rmSync(other, { recursive: true, force: true });
      expect(resolveAppId({ ...settings, appId: "team-gw" }, dir, "main")).toBe("team-gw");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("InngestEngine and the risk policy", () => {
  it("refuses a call a deny rule matches: recorded as a policy decision, no event sent, nothing run", async () => {
    const f = await fixture({
      evaluator: createRulesEvaluator({
        overrides: {},
        rules: [{ id: "no-big-transfers", tool: "transfer", args: { "$.amount": { gt: 100 } }, effect: "deny", reason: "transfers over 100 are never automated" }],
      }),
    });
    const decision = await f.engine.submit(highRiskCall);
    expect(decision).toMatchObject({ kind: "deny", reason: expect.stringContaining("transfers over 100") });
    expect(f.sent).toEqual([]);
    expect(f.executed).toEqual([]);
    expect(f.records().find((record) => record.type === "decision.recorded")?.data).toMatchObject({ decision: "denied", source: "policy" });
  });

  it("records facts outside requests and tells onRecord about every record (tool pins fold the ledger this way)", async () => {
    const seen: string[] = [];
    const f = await fixture({ onRecord: (record) => seen.push(record.type) });
    await f.engine.recordEvent("tool.pinned", { upstream: "files", tool: "read_file", hash: "abc" });
    expect(seen).toContain("gateway.started");
    expect(seen.at(-1)).toBe("tool.pinned");
    expect(f.records().at(-1)).toMatchObject({ type: "tool.pinned", data: { hash: "abc" } });
  });
});
