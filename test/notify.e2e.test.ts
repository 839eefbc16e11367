import { existsSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { RawMcpProcess } from "./helpers/rawMcpProcess.js";
import { ledgerRecords } from "./helpers/ledgerRecords.js";
import { startReceiver } from "./helpers/webhookReceiver.js";
import { tempDir } from "./helpers.js";
import { untilTrue } from "./helpers/until.js";
import { runCli } from "./helpers/runCli.js";

/** Notifications end to end: the built CLI with webhook and Slack sinks on 127.0.0.1, one of which never answers. */
const ROOT = resolve(import.meta.dirname, "..");
const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

beforeAll(() => {
  if (!existsSync(join(ROOT, "dist", "cli.js"))) throw new Error("run `npm run build` first (npm test does)");
});

const cleanups: (() => Promise<unknown> | void)[] = [];
afterEach(async () => {
  for (const step of cleanups.splice(0).reverse()) await step();
});

function cli(args: string[], dataDir: string, config: string, env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return runCli([...args, "--data-dir", dataDir, "--config", config], { ...process.env, ATLAS_CONFIG_DIR: join(dataDir, "config"), ...env });
}

/** Registers a reviewer; returns the env that lets the CLI act as them (`--reviewer` needs their key). */
async function asReviewer(dataDir: string, config: string, id: string): Promise<Record<string, string>> {
  const added = await cli(["reviewers", "add", id], dataDir, config);
  return { ATLAS_REVIEWER_TOKEN: /atlas_rk_\S+/.exec(added.stdout)![0] };
}

type Notification = { type: string; data: { ref?: string; call?: { args: Record<string, unknown>; status: string }; halt?: { by: string } } };
const types = (received: { json: unknown }[]) => received.map((request) => (request.json as Notification).type);
const ledger = (dataDir: string) => ledgerRecords(dataDir);

describe("notifications from a running gateway", () => {
  it("tells every sink about a held call, its decision, execution and a halt; a hanging sink delays nothing", async () => {
    const hook = await startReceiver({ secret });
    const slack = await startReceiver();
    const hanging = await startReceiver({ answer: () => "hang" });
    cleanups.push(hook.close, slack.close, hanging.close);
    const dataDir = tempDir("atlas-notify-e2e-");
    const config = join(dataDir, "atlas.json");
    writeFileSync(config, JSON.stringify({
      publicUrl: "https://atlas.example.org",
      notify: [{ type: "webhook", url: hanging.url, secret }, { type: "webhook", url: hook.url, secret }, { type: "slack", url: slack.url }],
    }));

    const gateway = new RawMcpProcess(["serve", "--demo", "--data-dir", dataDir, "--config", config, "--port", "0"], { ...process.env, ATLAS_CONFIG_DIR: join(dataDir, "config") });
    cleanups.push(() => {
      if (gateway.child.exitCode === null) gateway.child.kill("SIGKILL");
    });
    await gateway.initialize();

    const held = (await gateway.callTool("modify_welfare_record", { beneficiary_id: "C-1001", changes: { bank_account: "sk-live-0123456789abcdefABCDEF" } })).result as { content: { text: string }[] };
    const ref = /Ref: (evt_[0-9a-f]{8})/.exec(held.content[0]!.text)![1]!;
    await untilTrue(() => hook.received.length >= 1 && slack.received.length >= 1 && hanging.received.length >= 1, "the held call's notifications");
    // The agent had its answer although one sink still holds its request open.
    const first = hook.received[0]!;
    expect(first.verified).toBe(true);
    expect(first.json).toMatchObject({ type: "atlas.call.held", data: { ref, reviewUrl: `https://atlas.example.org/review?ref=${ref}`, call: { tool: "modify_welfare_record", status: "pending", args: { beneficiary_id: "C-1001" } } } });
    expect(first.body).not.toContain("sk-live-0123456789abcdefABCDEF");
    expect(slack.received[0]!.body).not.toContain("sk-live-0123456789abcdefABCDEF");
    expect(JSON.stringify(slack.received[0]!.json)).toContain(`https://atlas.example.org/review?ref=${ref}`);

    const approve = await cli(["approve", ref, "--reviewer", "ana"], dataDir, config, await asReviewer(dataDir, config, "ana"));
    expect(approve.code).toBe(0);
    await untilTrue(() => types(hook.received).includes("atlas.call.executed"), "the execution notification");
    expect(types(hook.received)).toEqual(["atlas.call.held", "atlas.call.decided", "atlas.call.executed"]);
    expect(hook.received.every((request) => request.verified)).toBe(true);

    const halt = await cli(["halt", "--reason", "drill", "--reviewer", "ben"], dataDir, config, await asReviewer(dataDir, config, "ben"));
    expect(halt.code).toBe(0);
    await untilTrue(() => types(hook.received).includes("atlas.gateway.halted"), "the halt notification");
    expect((hook.received.at(-1)!.json as Notification).data.halt).toMatchObject({ by: "ben" });
    expect(types(slack.received)).toEqual([undefined, undefined, undefined, undefined]); // Slack gets Block Kit, not our envelope
    expect(JSON.stringify(slack.received.at(-1)!.json)).toContain("HALTED by ben: drill");

    // Every attempt is in the ledger, tied to the call: "the reviewer was told at 10:02" is provable.
    await untilTrue(() => ledger(dataDir).filter((record) => record.type === "notification.sent" && record.ref === ref).length >= 6, "the delivery records");
    const sent = ledger(dataDir).filter((record) => record.type === "notification.sent" && record.ref === ref);
    expect(new Set(sent.map((record) => `${record.data.event}@${record.data.sink}`))).toEqual(new Set(["call.held@1", "call.held@2", "call.decided@1", "call.decided@2", "call.executed@1", "call.executed@2"]));
    expect(JSON.stringify(ledger(dataDir).filter((record) => record.type.startsWith("notification.")))).not.toContain(new URL(slack.url).pathname);

    await gateway.close();
    expect(gateway.nonProtocol).toEqual([]);
    expect((await cli(["audit", "verify"], dataDir, config)).code).toBe(0);
  }, 90_000);

  it("two approvers through the built CLI: the first approval is announced with its count, the second decides", async () => {
    const hook = await startReceiver({ secret });
    cleanups.push(hook.close);
    const dataDir = tempDir("atlas-notify-two-");
    const config = join(dataDir, "atlas.json");
    writeFileSync(config, JSON.stringify({
      notify: [{ type: "webhook", url: hook.url, secret }],
      risk: { rules: [{ id: "records-need-two", tool: "modify_welfare_record", effect: "review", approvals: 2 }] },
    }));
    const gateway = new RawMcpProcess(["serve", "--demo", "--data-dir", dataDir, "--config", config, "--port", "0"], { ...process.env, ATLAS_CONFIG_DIR: join(dataDir, "config") });
    cleanups.push(() => {
      if (gateway.child.exitCode === null) gateway.child.kill("SIGKILL");
    });
    await gateway.initialize();
    const held = (await gateway.callTool("modify_welfare_record", { beneficiary_id: "C-1001", changes: { address: "1 Main St" } })).result as { content: { text: string }[] };
    const ref = /Ref: (evt_[0-9a-f]{8})/.exec(held.content[0]!.text)![1]!;

    const ana = await asReviewer(dataDir, config, "ana");
    expect((await cli(["approve", ref, "--reviewer", "ana"], dataDir, config, ana)).stdout).toMatch(/1 of 2 approvals/);
    const twice = await cli(["approve", ref, "--reviewer", "ana"], dataDir, config, ana);
    expect(twice.code).toBe(3);
    expect(twice.stderr).toMatch(/ana has already approved/);
    expect((await cli(["pending"], dataDir, config)).stdout).toMatch(/1 of 2 approvals/);
    expect((await cli(["approve", ref, "--reviewer", "ben"], dataDir, config, await asReviewer(dataDir, config, "ben"))).code).toBe(0);
    await untilTrue(() => types(hook.received).includes("atlas.call.executed"), "the execution notification");
    expect(types(hook.received)).toEqual(["atlas.call.held", "atlas.call.approval", "atlas.call.decided", "atlas.call.executed"]);
    expect(hook.received[1]!.json).toMatchObject({ data: { summary: expect.stringMatching(/Approved by ana: .*1 of 2 approvals/), call: { approvals: { count: 1, required: 2, reviewers: ["ana"] } } } });
    expect((await cli(["show", ref], dataDir, config)).stdout).toMatch(/approvals: 2 of 2 approvals \(ana, ben\)/);
    await gateway.close();
  }, 90_000);

  it("doctor --notify-test sends a signed test notification to each sink and reports a failing one", async () => {
    const hook = await startReceiver({ secret });
    const broken = await startReceiver({ answer: () => 500 });
    cleanups.push(hook.close, broken.close);
    const dataDir = tempDir("atlas-notify-doctor-");
    const config = join(dataDir, "atlas.json");
    writeFileSync(config, JSON.stringify({ port: 0, notify: [{ type: "webhook", url: hook.url, secret }, { type: "slack", url: broken.url }] }));
    const doctor = await cli(["doctor", "--notify-test"], dataDir, config);
    expect(doctor.stdout).toMatch(/✓ notify\[0\] webhook 127\.0\.0\.1:\d+: test notification delivered \(HTTP 200\)/);
    expect(doctor.stdout).toMatch(/✗ notify\[1\] slack 127\.0\.0\.1:\d+: test notification failed: HTTP 500/);
    expect(doctor.code).not.toBe(0);
    expect(hook.received).toHaveLength(1);
    expect(hook.received[0]).toMatchObject({ verified: true, json: { type: "atlas.test" } });
    expect(broken.received).toHaveLength(2);
  }, 60_000);
});
