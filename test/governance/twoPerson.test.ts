import { describe, expect, it } from "vitest";
import { main } from "../../src/cli/main.js";
import { loadConfig } from "../../src/config.js";
import { ConfigError } from "../../src/errors.js";
import { createRulesEvaluator } from "../../src/risk/assess.js";
import { heldCall, openEngine, recordingExecutor, tempDir } from "../helpers.js";
import { ledgerRecords } from "../helpers/ledgerRecords.js";

/** The two-person rule (issue 9 item 5; EU AI Act Art. 14(5)): `approvals: N` on a policy rule. */
const evaluator = createRulesEvaluator({
  threshold: 70,
  overrides: {},
  rules: [{ id: "big-writes", tool: "write_file", args: { path: { regex: "^/payments/" } }, effect: "review", approvals: 2, reason: "payments need two people" }],
});
const paymentCall = () => heldCall({ path: "/payments/batch-7" });

const records = (dataDir: string) => ledgerRecords(dataDir);

async function run(args: string[], dataDir: string, env: Record<string, string> = {}) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main([...args, "--data-dir", dataDir], { out: (text) => out.push(text), err: (text) => err.push(text), env: { HOME: dataDir, ATLAS_CONFIG_DIR: dataDir, ...env } });
  return { code, out: out.join("\n"), err: err.join("\n") };
}

describe("the two-person rule", () => {
  it("runs after the second distinct approval, refuses the same reviewer twice, and records every approval", async () => {
    const dataDir = tempDir();
    const executor = recordingExecutor();
    const engine = openEngine(dataDir, executor, { evaluator });
    const held = await engine.submit(paymentCall());
    const ref = held.ref!;
    expect(engine.get(ref)).toMatchObject({ status: "pending", approvalsRequired: 2 });

    expect(await engine.decide({ ref, decision: "approved", reviewer: "ana", reason: "checked totals", auth: "review-page" })).toMatchObject({ status: "applied", view: { status: "pending" } });
    expect(engine.get(ref)?.approvals).toMatchObject([{ reviewer: "ana", reason: "checked totals" }]);
    const twice = await engine.decide({ ref, decision: "approved", reviewer: "ana" });
    expect(twice).toMatchObject({ status: "refused", reason: expect.stringMatching(/ana has already approved .* 2 different approvers \(1 of 2/) });
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(executor.calls).toHaveLength(0);

    await engine.decide({ ref, decision: "approved", reviewer: "ben", auth: "webhook-v1a" });
    expect((await engine.waitForOutcome(ref, 5000))?.status).toBe("executed");
    expect(executor.calls).toHaveLength(1);
    await engine.close();

    const mine = records(dataDir).filter((record) => record.ref === ref);
    expect(mine.filter((record) => record.type === "approval.recorded").map((record) => record.data)).toEqual([
      { reviewer: "ana", reason: "checked totals", auth_method: "review-page", count: 1, required: 2 },
      { reviewer: "ben", auth_method: "webhook-v1a", count: 2, required: 2 },
    ]);
    expect(mine.filter((record) => record.type === "decision.recorded").map((record) => record.data)).toEqual([
      { decision: "approved", source: "human", reviewer: "ben", approvers: ["ana", "ben"], auth_method: "webhook-v1a" },
    ]);
  });

  it("any denial denies, even after an approval; a call no such rule matches needs one approval", async () => {
    const dataDir = tempDir();
    const executor = recordingExecutor();
    const engine = openEngine(dataDir, executor, { evaluator });
    const ref = (await engine.submit(paymentCall())).ref!;
    await engine.decide({ ref, decision: "approved", reviewer: "ana" });
    await engine.decide({ ref, decision: "denied", reviewer: "ben", reason: "wrong account" });
    expect(engine.get(ref)?.status).toBe("denied");

    const single = (await engine.submit(heldCall({ path: "/tmp/notes" }))).ref!;
    expect(engine.get(single)?.approvalsRequired).toBeUndefined();
    await engine.decide({ ref: single, decision: "approved", reviewer: "ana" });
    expect((await engine.waitForOutcome(single, 5000))?.status).toBe("executed");
    expect(executor.calls.map((call) => call.args)).toEqual([{ path: "/tmp/notes" }]);
    await engine.close();
  });

  it("approvals survive a restart; the CLI shows the count in pending and show, and refuses a second approval by the same person", async () => {
    const dataDir = tempDir();
    const executor = recordingExecutor();
    const engine = openEngine(dataDir, executor, { evaluator });
    const ref = (await engine.submit(paymentCall())).ref!;
    await engine.close();

    const ana = { ATLAS_REVIEWER_TOKEN: /atlas_rk_\S+/.exec((await run(["reviewers", "add", "ana"], dataDir)).out)![0] };
    const first = await run(["approve", ref, "--reviewer", "ana"], dataDir, ana);
    expect(first.code).toBe(0);
    expect(first.out).toMatch(new RegExp(`approved ${ref} .* as ana: 1 of 2 approvals; it runs once 1 more distinct reviewer`));
    const again = await run(["approve", ref, "--reviewer", "ana"], dataDir, ana);
    expect(again.code).toBe(3);
    expect(again.err).toMatch(/ana has already approved/);
    expect((await run(["pending"], dataDir)).out).toMatch(new RegExp(`APPROVALS[\\s\\S]*${ref}\\s+\\S+\\s+1 of 2 approvals\\s+write_file`));
    expect(JSON.parse((await run(["pending", "--json"], dataDir)).out)[0]).toMatchObject({ ref, approvals: { count: 1, required: 2, reviewers: ["ana"] } });
    expect((await run(["show", ref], dataDir)).out).toMatch(/approvals: 1 of 2 approvals \(ana\)[\s\S]*approval\.recorded/);

    const restarted = openEngine(dataDir, executor, { evaluator });
    restarted.resume();
    expect(restarted.get(ref)?.approvals?.map((approval) => approval.reviewer)).toEqual(["ana"]);
    expect((await restarted.decide({ ref, decision: "approved", reviewer: "ana" })).status).toBe("refused");
    await restarted.decide({ ref, decision: "approved", reviewer: "ben" });
    expect((await restarted.waitForOutcome(ref, 5000))?.status).toBe("executed");
    expect(executor.calls).toHaveLength(1);
    await restarted.close();
  });

  it("config accepts approvals from 1 to 10 on a rule and names a bad value", () => {
    const load = (approvals: unknown) => loadConfig({ env: {}, userConfig: { dataDir: "/tmp/x", risk: { rules: [{ tool: "pay", effect: "review", approvals }] } } });
    expect(load(2).risk.rules[0]!.approvals).toBe(2);
    expect(() => load(0)).toThrow(ConfigError);
    expect(() => load(1.5)).toThrow(/risk\.rules\.0\.approvals/);
  });
});
