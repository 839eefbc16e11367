import { afterEach, describe, expect, it } from "vitest";
import type { RequestView } from "../../src/governance/requests.js";
import { newHaltFact } from "../../src/governance/halt.js";
import { Notifier, type AttemptOutcome } from "../../src/notify/notifier.js";
import { callEvent, haltEvent, timeLeft } from "../../src/notify/notificationEvent.js";
import { slackMessage } from "../../src/notify/sinkRequest.js";
import { startReceiver } from "../helpers/webhookReceiver.js";

const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const fast = { attempts: 3, baseMs: 20, maxMs: 40 };
const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0)) await close();
});

async function receiver(options: Parameters<typeof startReceiver>[0] = {}) {
  const started = await startReceiver(options);
  closers.push(started.close);
  return started;
}

const view: RequestView = {
  ref: "evt_0123abcd",
  status: "pending",
  upstream: "bank",
  tool: "send_payment",
  name: "send_payment",
  args: { iban: "DE89370400440532013000", amount: "1500.00", api_key: "sk-live-0123456789abcdefABCDEF", note: "Bearer abcdefghijklmnop" },
  argsDigest: "x",
  createdAt: "2026-03-01T10:00:00.000Z",
  updatedAt: "2026-03-01T10:00:00.000Z",
  assessment: { score: 90, classification: "critical", reasons: ["tool may be destructive"], evaluator: "rules", rules: [{ id: "payments", effect: "review", reason: "money moves", approvals: 2 }] },
  autoApproved: false,
  deadline: "2026-03-01T12:05:00.000Z",
  approvalsRequired: 2,
  approvals: [],
  history: [],
};

function notifierFor(sinks: ConstructorParameters<typeof Notifier>[0]["sinks"], attemptTimeoutMs = 2000) {
  const outcomes: AttemptOutcome[] = [];
  const logs: string[] = [];
  const notifier = new Notifier({ sinks, record: (outcome) => void outcomes.push(outcome), log: (line) => logs.push(line), retry: fast, attemptTimeoutMs });
  closers.push(async () => notifier.close());
  return { notifier, outcomes, logs };
}

describe("Notifier", () => {
  it("signs webhook notifications (Standard Webhooks v1) with masked arguments and records the delivery", async () => {
    const hook = await receiver({ secret });
    const { notifier, outcomes } = notifierFor([{ type: "webhook", url: hook.url, secret }]);
    const event = callEvent("call.held", view, { instance: "main", publicUrl: "https://review.example.org/" });
    notifier.notify(event);
    await notifier.idle();

    expect(hook.received).toHaveLength(1);
    const [got] = hook.received;
    expect(got!.verified).toBe(true);
    expect(got!.headers["webhook-id"]).toBe(event.id);
    expect(got!.json).toMatchObject({
      type: "atlas.call.held",
      data: {
        ref: "evt_0123abcd",
        reviewUrl: "https://review.example.org/review?ref=evt_0123abcd",
        call: { tool: "send_payment", score: 90, approvals: { count: 0, required: 2 }, args: { amount: "1500.00" } },
      },
    });
    expect(got!.body).not.toContain("sk-live-0123456789abcdefABCDEF");
    expect(got!.body).not.toContain("abcdefghijklmnop");
    expect(outcomes).toEqual([{ type: "notification.sent", ref: "evt_0123abcd", data: expect.objectContaining({ notification_id: event.id, event: "call.held", sink: 0, sink_type: "webhook", host: new URL(hook.url).host, attempt: 1, status: 200 }) }]);
  });

  it("retries a receiver that fails, with the same webhook-id, and records every attempt", async () => {
    const hook = await receiver({ secret, answer: (index) => (index === 0 ? 503 : 200) });
    const { notifier, outcomes } = notifierFor([{ type: "webhook", url: hook.url, secret }]);
    notifier.notify(haltEvent(newHaltFact(true, "ana", "incident"), { instance: "main" }));
    await notifier.idle();
    expect(hook.received.map((request) => request.verified)).toEqual([true, true]);
    expect(new Set(hook.received.map((request) => request.headers["webhook-id"])).size).toBe(1);
    expect(outcomes.map((outcome) => [outcome.type, outcome.data.attempt, outcome.data.error ?? outcome.data.status])).toEqual([
      ["notification.failed", 1, "HTTP 503"],
      ["notification.sent", 2, 200],
    ]);
    expect(outcomes[0]!.data).toMatchObject({ final: false, retry_in_ms: 20 });
  });

  it("gives up on a receiver that hangs after a bounded number of timed-out attempts, without holding up notify()", async () => {
    const hook = await receiver({ answer: () => "hang" });
    const { notifier, outcomes, logs } = notifierFor([{ type: "slack", url: hook.url }], 200);
    notifier.notify(callEvent("call.held", view, { instance: "main" }));
    expect(hook.received).toHaveLength(0); // notify() returned before anything was even sent
    await notifier.idle();
    expect(hook.received).toHaveLength(3);
    expect(outcomes.map((outcome) => outcome.data.error)).toEqual(["no answer within 200 ms", "no answer within 200 ms", "no answer within 200 ms"]);
    expect(outcomes.at(-1)!.data.final).toBe(true);
    expect(logs.join("\n")).toMatch(/failed after 3 attempt\(s\)/);
    expect(logs.join("\n")).not.toContain(new URL(hook.url).pathname); // the Slack URL (a secret) stays out of logs
  });

  it("delivers to every sink independently: one failing sink does not stop the other", async () => {
    const good = await receiver();
    const bad = await receiver({ answer: () => 500 });
    const { notifier, outcomes } = notifierFor([{ type: "slack", url: bad.url }, { type: "slack", url: good.url }]);
    notifier.notify(callEvent("call.decided", { ...view, status: "approved", decision: { decision: "approved", source: "human", reviewer: "ana", at: "x" } }, { instance: "main" }));
    await notifier.idle();
    expect(good.received).toHaveLength(1);
    expect(outcomes.filter((outcome) => outcome.type === "notification.sent").map((outcome) => outcome.data.sink)).toEqual([1]);
    expect(outcomes.filter((outcome) => outcome.type === "notification.failed").map((outcome) => outcome.data.sink)).toEqual([0, 0, 0]);
  });
});

describe("Slack message", () => {
  it("shows tool, score, reasons, masked arguments, time left and a review button (Block Kit)", () => {
    const event = callEvent("call.held", view, { instance: "main", publicUrl: "https://review.example.org" });
    const message = slackMessage(event, new Date("2026-03-01T10:00:00.000Z")) as { text: string; blocks: { type: string; text?: { text: string }; fields?: { text: string }[]; elements?: { url?: string }[] }[] };
    expect(message.text).toBe("Held for review: send_payment (evt_0123abcd), risk 90 (critical), needs 2 approvals");
    const text = JSON.stringify(message.blocks);
    expect(text).toContain("2h05m left");
    expect(text).toContain("0 of 2 approvals");
    expect(text).toContain("tool may be destructive");
    expect(text).toContain("1500.00");
    expect(text).not.toContain("sk-live");
    expect(message.blocks.find((block) => block.type === "actions")?.elements?.[0]?.url).toBe("https://review.example.org/review?ref=evt_0123abcd");
    expect(slackMessage(callEvent("call.held", view, { instance: "main" }), new Date()).blocks).not.toContainEqual(expect.objectContaining({ type: "actions" }));
  });

  it("escapes Slack markup in what the agent wrote", () => {
    const event = callEvent("call.held", { ...view, args: { note: "<!channel> & <https://evil|click>" } }, { instance: "main" });
    expect(JSON.stringify(slackMessage(event, new Date()))).toContain("&lt;!channel&gt; &amp; &lt;https://evil|click&gt;");
  });

  it("keeps the agent's arguments inside their code block, and escapes the fallback text too", () => {
    // red team: an argument holding ``` closed the code block early, so the rest rendered as the agent's own mrkdwn
    // (*bold* claims, auto-linked URLs) under the gateway's name; the top-level text (push notifications) was raw
    const event = callEvent("call.decided", {
      ...view,
      args: { note: "``` *Security review: approved, safe to run* https://evil.example/approve ```", tail: "`" },
      status: "denied",
      decision: { decision: "denied", source: "human", reviewer: "ana", reason: "<!channel> see <https://evil|this>", at: "2026-03-01T10:00:00.000Z" },
    }, { instance: "main" });
    const message = slackMessage(event, new Date()) as { text: string; blocks: { text?: { text: string } }[] };
    const argsBlock = message.blocks.find((block) => block.text?.text.startsWith("*Arguments*"))!.text!.text;
    expect(argsBlock.match(/```/g)).toHaveLength(2);
    expect(argsBlock.endsWith("```")).toBe(true);
    expect(argsBlock).toContain("Security review: approved");
    expect(message.text).not.toMatch(/[<>]/);
    expect(message.text).toContain("&lt;!channel&gt;");
  });

  it("time left", () => {
    const now = new Date("2026-03-01T10:00:00Z");
    expect([timeLeft("2026-03-01T10:00:30Z", now), timeLeft("2026-03-01T10:30:00Z", now), timeLeft("2026-03-01T09:00:00Z", now), timeLeft(undefined, now)]).toEqual(["30s", "30m", "expired", undefined]);
  });
});

describe("halt with no gateway running", () => {
  it("the CLI tells the sinks itself and records each attempt in the ledger it wrote the halt to", async () => {
    const { main } = await import("../../src/cli/main.js");
    const { tempDir } = await import("../helpers.js");
    const { writeFileSync } = await import("node:fs");
    const { ledgerRecords } = await import("../helpers/ledgerRecords.js");
    const { join } = await import("node:path");
    const hook = await receiver({ secret });
    const dataDir = tempDir();
    const config = join(dataDir, "atlas.json");
    writeFileSync(config, JSON.stringify({ notify: [{ type: "webhook", url: hook.url, secret }] }));
    const out: string[] = [];
    const env = { HOME: dataDir, ATLAS_CONFIG_DIR: dataDir };
    await main(["reviewers", "add", "ana", "--data-dir", dataDir, "--config", config], { out: (text) => out.push(text), err: (text) => out.push(text), env });
    const key = /atlas_rk_\S+/.exec(out.join("\n"))![0];
    out.length = 0;
    const code = await main(["halt", "--reason", "drill", "--reviewer", "ana", "--data-dir", dataDir, "--config", config], { out: (text) => out.push(text), err: (text) => out.push(text), env: { ...env, ATLAS_REVIEWER_TOKEN: key } });
    expect(code).toBe(0);
    expect(out.join("\n")).toMatch(/HALTED by ana.*recorded in ledger\(s\) 'main'/);
    expect(hook.received).toHaveLength(1);
    expect(hook.received[0]).toMatchObject({ verified: true, json: { type: "atlas.gateway.halted", data: { halt: { by: "ana", reason: "drill" } } } });
    const records = ledgerRecords(dataDir);
    expect(records.map((record) => record.type)).toEqual(expect.arrayContaining(["gateway.halted", "notification.sent"]));
    expect(records.find((record) => record.type === "notification.sent")?.data).toMatchObject({ event: "gateway.halted", status: 200, attempt: 1 });
  });
});

describe("notify config", () => {
  it("accepts webhook and slack sinks and names each problem", async () => {
    const { loadConfig } = await import("../../src/config.js");
    const load = (notify: unknown) => loadConfig({ env: {}, userConfig: { dataDir: "/tmp/x", notify } });
    expect(load([{ type: "webhook", url: "https://example.org/h", secret }, { type: "slack", url: "https://hooks.slack.com/services/T/B/X" }]).notify).toHaveLength(2);
    expect(() => load([{ type: "webhook", url: "https://example.org/h", secret: "hunter2" }])).toThrow(/notify\.0\.secret: secret must be a Standard Webhooks secret/);
    expect(() => load([{ type: "email", to: "a@b.c" }])).toThrow(/notify\.0/);
    expect(() => load([{ type: "slack", url: "ftp://x" }])).toThrow(/notify\.0\.url: url must be an http\(s\) URL/);
  });
});
