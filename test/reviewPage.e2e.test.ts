import { existsSync, mkdirSync, statSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { chromium, type BrowserContext, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { instancePaths } from "../src/dataDir.js";
import { GovernanceLog } from "../src/governance/governanceLog.js";
import { scanLedger } from "../src/ledger/ledger.js";
import { hashToolDefinition } from "../src/risk/toolPins.js";
import { tempDir } from "./helpers.js";
import { RawMcpProcess } from "./helpers/rawMcpProcess.js";
import { until } from "./helpers/until.js";
import { runCli } from "./helpers/runCli.js";

/**
 * The review page end to end (issue 9): the built CLI as the gateway, a reviewer added with the CLI, and a real
 * headless Chromium signing in with the printed link, watching held calls arrive live, and deciding them while the
 * agent waits in atlas_status. Set ATLAS_SCREENSHOTS_DIR to keep the screenshots (the README's come from here).
 */
const CHROMIUM = "/usr/bin/chromium";
const ROOT = resolve(import.meta.dirname, "..");
const CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"];

let dataDir: string;
let env: NodeJS.ProcessEnv;
let gateway: RawMcpProcess;
let context: BrowserContext;
let page: Page;
let shots: string;

function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return runCli([...args, "--data-dir", dataDir], env);
}

const refOf = (response: Awaited<ReturnType<RawMcpProcess["callTool"]>>) => /Ref: (evt_[0-9a-f]{8})/.exec(JSON.stringify(response.result))?.[1] ?? "";

beforeAll(async () => {
  if (!existsSync(join(ROOT, "dist", "cli.js"))) throw new Error("run `npm run build` first (npm test does)");
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)`);
  dataDir = tempDir("atlas-review-e2e-");
  shots = process.env.ATLAS_SCREENSHOTS_DIR ? resolve(process.env.ATLAS_SCREENSHOTS_DIR) : join(dataDir, "screenshots");
  mkdirSync(shots, { recursive: true });
  env = { ...process.env, ATLAS_CONFIG_DIR: join(dataDir, "config") };
  delete env.ATLAS_REVIEWER_TOKEN;
  gateway = new RawMcpProcess(["--demo", "--data-dir", dataDir, "--port", "0"], env);
  await gateway.initialize();
  await until(() => (/listening on http:\/\/127\.0\.0\.1:(\d+)/.test(gateway.stderr) ? true : undefined), "the listener");
  context = await chromium.launchPersistentContext(join(dataDir, "chromium-profile"), {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_FLAGS,
    viewport: { width: 1360, height: 900 },
    offline: false,
  });
  page = context.pages()[0] ?? (await context.newPage());
}, 60_000);

afterAll(async () => {
  await context?.close();
  await gateway?.close();
});

describe("review page in Chromium", () => {
  it("with no reviewers, explains how to add one and shows nothing", async () => {
    const port = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(gateway.stderr)![1];
    await page.goto(`http://127.0.0.1:${port}/review`);
    await expect.poll(() => page.locator("#gate h1").textContent()).toBe("No reviewers yet");
    expect(await page.locator("#gate pre").textContent()).toContain("atlas-gateway reviewers add");
    expect(await page.locator("#inbox").isVisible()).toBe(false);
  });

  it("signs in with the CLI's link, shows held calls live, and approve / deny / approve-with-edits reach the waiting agent", async () => {
    const added = await cli(["reviewers", "add", "alice", "--name", "Alice Martin"]);
    expect(added.code).toBe(0);
    const link = /(http:\/\/127\.0\.0\.1:\d+\/review#signin=atlas_si_[A-Za-z0-9_-]+)/.exec(added.stdout)?.[1];
    expect(link, added.stdout).toBeTruthy();

    await page.goto(link!); // the tab already shows the page: only the fragment changes

    await page.locator("#who-name").filter({ hasText: "Alice Martin" }).waitFor();
    expect(page.url()).not.toContain("signin="); // the one-time token leaves the address bar and history
    await page.locator("#empty").waitFor();
    let loads = 0;
    page.on("load", () => loads++);
    const cookies = await context.cookies();
    expect(cookies.find((cookie) => cookie.name.startsWith("atlas_review_"))).toMatchObject({ httpOnly: true, sameSite: "Strict" });

    // three calls the agent makes while the reviewer watches: each appears without a reload
    const approveRef = refOf(await gateway.callTool("modify_welfare_record", { beneficiary_id: "C-1001", changes: { bank_account: "DE89 3704 0044 0532 0130 00" } }));
    await page.locator(`button.item[data-ref="${approveRef}"]`).waitFor();
    const denyRef = refOf(await gateway.callTool("request_payment_extension", { beneficiary_id: "C-2002", reason: "lost job", days: 90 }));
    await page.locator(`button.item[data-ref="${denyRef}"]`).waitFor();
    const editRef = refOf(await gateway.callTool("modify_welfare_record", { beneficiary_id: "C-3003", changes: { monthly_amount: "EUR 9400.00" } }));
    await page.locator(`button.item[data-ref="${editRef}"]`).waitFor();
    expect(await page.locator("#announce").textContent()).toMatch(/New call waiting: modify_welfare_record, risk \d+/);
    expect(loads).toBe(0); // no reload: the inbox updated itself
    expect(await page.locator("#count").textContent()).toBe("3");
    // newest first
    expect(await page.locator("button.item").evaluateAll((items) => items.map((item) => item.getAttribute("data-ref")))).toEqual([editRef, denyRef, approveRef]);

    // everything on one screen: arguments, score, reasons, annotations, pin status, time left
    await page.locator(`button.item[data-ref="${approveRef}"]`).click();
    const detail = page.locator("#detail");
    await detail.locator("h2").filter({ hasText: "modify_welfare_record" }).waitFor();
    expect(await detail.locator("#args").textContent()).toContain("DE89 3704 0044 0532 0130 00");
    expect(await detail.textContent()).toMatch(/destructiveHint: true/);
    expect(await detail.textContent()).toMatch(/pinned since/i);
    expect(await detail.textContent()).toMatch(/left/);
    expect(await detail.locator("ul.reasons li").count()).toBeGreaterThan(0);
    await page.screenshot({ path: join(shots, "review-inbox.png") });

    // approve: the agent waiting in atlas_status gets the tool's real result
    const approved = gateway.callTool("atlas_status", { ref: approveRef, wait_seconds: 30 }, 40_000);
    await page.locator("#approve").click();
    const approvedResult = (await approved).result as { structuredContent: Record<string, unknown>; content: { text: string }[] };
    expect(approvedResult.structuredContent).toMatchObject({ ref: approveRef, status: "executed", outcome: "ok", decision: { reviewer: "alice", auth: "review-page" } });
    expect(JSON.stringify(approvedResult.content)).toContain("bank_account '");
    await page.locator(`button.item[data-ref="${approveRef}"]`).waitFor({ state: "detached" });

    // deny: a reason is required, and the agent sees it
    await page.locator(`button.item[data-ref="${denyRef}"]`).click();
    await page.locator("#deny").click();
    await page.locator("#confirm-deny").click();
    await page.locator("#toast").filter({ hasText: "needs a reason" }).waitFor();
    await page.locator("#reason").fill("The citizen already has an extension this year");
    const denied = gateway.callTool("atlas_status", { ref: denyRef, wait_seconds: 30 }, 40_000);
    await page.locator("#confirm-deny").click();
    const deniedResult = (await denied).result as { structuredContent: Record<string, unknown>; isError: boolean };
    expect(deniedResult.isError).toBe(true);
    expect(deniedResult.structuredContent).toMatchObject({ status: "denied", decision: { reviewer: "alice", reason: "The citizen already has an extension this year" } });

    // approve with edits: the call runs with the reviewer's arguments and the agent is told
    await page.locator(`button.item[data-ref="${editRef}"]`).click();
    await page.locator("#edit").click();
    const editor = page.locator("#edited");
    const edited = JSON.parse(await editor.inputValue()) as Record<string, unknown>;
    expect(edited).toEqual({ beneficiary_id: "C-3003", changes: { monthly_amount: "EUR 9400.00" } });
    await editor.fill(JSON.stringify({ ...edited, changes: { monthly_amount: "EUR 940.00" } }, null, 2));
    await page.locator("#edit-reason").fill("typo: one zero too many");
    await page.locator("#toast").evaluate((toast) => toast.setAttribute("hidden", ""));
    await page.screenshot({ path: join(shots, "review-edit.png") });
    const editedStatus = gateway.callTool("atlas_status", { ref: editRef, wait_seconds: 30 }, 40_000);
    await page.locator("#confirm-edit").click();
    const editedResult = (await editedStatus).result as { structuredContent: Record<string, unknown>; content: { text: string }[] };
    expect(editedResult.structuredContent).toMatchObject({ status: "executed", arguments_changed: true, original_arguments: { changes: { monthly_amount: "EUR 9400.00" } }, arguments: { changes: { monthly_amount: "EUR 940.00" } } });
    expect(editedResult.content[0]!.text).toMatch(/CHANGED YOUR ARGUMENTS/);
    expect(JSON.stringify(editedResult.content)).toContain("→ 'EUR 940.00'");
    await page.locator("#empty").waitFor();

    // history: search by reviewer, open one ref's ledger records
    await page.locator('.tab[data-view="history"]').click();
    await page.locator("#q").fill("alice");
    await page.locator("#search button[type=submit]").click();
    await expect.poll(() => page.locator("#results tbody tr").count()).toBe(3);
    await page.locator("#results tbody button", { hasText: editRef }).click();
    await page.locator("#timeline .timeline li").first().waitFor();
    const timeline = await page.locator("#timeline").textContent();
    expect(timeline).toMatch(/decision\.recorded/);
    expect(timeline).toMatch(/arguments edited/);
    expect(timeline).toMatch(/EUR 940\.00/);
    await page.locator("#toast").evaluate((toast) => toast.setAttribute("hidden", ""));
    await page.screenshot({ path: join(shots, "review-history.png"), fullPage: true });
    for (const name of ["review-inbox.png", "review-edit.png", "review-history.png"]) expect(statSync(join(shots, name)).size).toBeGreaterThan(10_000);

    // the ledger names the reviewer for every decision
    expect((await cli(["show", editRef])).stdout).toContain('approved with edits: it ran with {"beneficiary_id":"C-3003","changes":{"monthly_amount":"EUR 940.00"}}');
    const show = await cli(["show", editRef, "--json"]);
    const decision = (JSON.parse(show.stdout) as { history: { type: string; data: Record<string, unknown> }[] }).history.find((record) => record.type === "decision.recorded");
    expect(decision?.data).toMatchObject({ reviewer: "alice", auth_method: "review-page", edited_args: { changes: { monthly_amount: "EUR 940.00" } } });
    expect(gateway.nonProtocol).toEqual([]);
  }, 180_000);

  it("masked values are shown only after an explicit click, which the ledger records first", async () => {
    await page.locator('.tab[data-view="inbox"]').click();
    const secret = "ghp_0123456789abcdefghijABCDEFGHIJ0123";
    const ref = refOf(await gateway.callTool("request_payment_extension", { beneficiary_id: "C-5005", reason: secret, days: 14 }));
    await page.locator(`button.item[data-ref="${ref}"]`).click();
    await page.locator("#reveal").waitFor();
    expect(await page.locator("#args").textContent()).not.toContain(secret);
    expect(await page.locator("#args").textContent()).toContain("[masked]");
    await page.locator("#reveal").click();
    await expect.poll(() => page.locator("#args").textContent()).toContain(secret);
    const revealed = scanLedger(instancePaths(dataDir, "main").ledger).records.filter((record) => record.type === "review.revealed");
    expect(revealed.map((record) => record.data)).toEqual([expect.objectContaining({ ref, reviewer: "alice" })]);
  });

  it("shows the agent's arguments as text, never as markup", async () => {
    const payload = '<img src=x onerror="document.title=\'pwned\'"><b id="injected">bold</b>';
    const ref = refOf(await gateway.callTool("request_payment_extension", { beneficiary_id: payload, reason: "hardship", days: 9 }));
    await page.locator(`button.item[data-ref="${ref}"]`).click();
    await expect.poll(() => page.locator("#args").textContent()).toContain("<b id=\\\"injected\\\">");
    expect(await page.locator("#injected").count()).toBe(0);
    expect(await page.title()).not.toBe("pwned");

    // red team: a right-to-left override made "invoice_\u202Efdp.exe" display as "invoice_exe.pdf"
    const spoof = refOf(await gateway.callTool("request_payment_extension", { beneficiary_id: "invoice_\u202Efdp.exe", reason: "hardship", days: 8 }));
    await page.locator(`button.item[data-ref="${spoof}"]`).click();
    await expect.poll(() => page.locator("#args").textContent()).toContain("invoice_\\u202efdp.exe");
  });

  it("is keyboard friendly: arrows move through the inbox, and calls arriving meanwhile keep focus and typed text", async () => {
    const second = refOf(await gateway.callTool("request_payment_extension", { beneficiary_id: "C-6006", reason: "hardship", days: 7 }));
    const items = page.locator("button.item");
    await page.locator(`button.item[data-ref="${second}"]`).waitFor();
    await items.first().focus();
    await page.keyboard.press("ArrowDown");
    const selected = await items.nth(1).getAttribute("data-ref");
    expect(await page.locator(`button.item[data-ref="${selected}"]`).getAttribute("aria-current")).toBe("true");
    expect(await page.locator(`button.item[data-ref="${selected}"]`).evaluate((el) => el.ownerDocument.activeElement === el)).toBe(true);

    await page.locator("#deny").click();
    await page.locator("#reason").pressSequentially("Not before the ");
    const third = refOf(await gateway.callTool("request_payment_extension", { beneficiary_id: "C-7007", reason: "hardship", days: 3 }));
    await page.locator(`button.item[data-ref="${third}"]`).waitFor();
    expect(await page.locator("#reason").inputValue()).toBe("Not before the ");
    expect(await page.locator("#reason").evaluate((el) => el.ownerDocument.activeElement === el)).toBe(true);
    await page.getByRole("button", { name: "Cancel" }).click();

    await page.locator("#approve").focus();
    const fourth = refOf(await gateway.callTool("request_payment_extension", { beneficiary_id: "C-8008", reason: "hardship", days: 5 }));
    await page.locator(`button.item[data-ref="${fourth}"]`).waitFor();
    expect(await page.locator("#approve").evaluate((el) => el.ownerDocument.activeElement === el)).toBe(true);

    // a reload keeps deciding: the CSRF token from sign-in lives in this origin's storage (the session cookie, which
    // reaches every port on the host, no longer yields it)
    await page.reload();
    await page.locator(`button.item[data-ref="${fourth}"]`).click();
    await page.locator("#approve").click();
    const after = await gateway.callTool("atlas_status", { ref: fourth, wait_seconds: 20 });
    expect(after.result?.structuredContent).toMatchObject({ ref: fourth, status: "executed", decision: { reviewer: "alice", auth: "review-page" } });
  });

  it("an approver halts from the page: every view says so, the agent's calls are refused, and resume lets them through", async () => {
    await page.locator('.tab[data-view="inbox"]').click();
    await page.locator("#stop").click();
    await page.locator("#confirm-halt").click();
    await page.locator("#toast").filter({ hasText: "needs a reason" }).waitFor();
    await page.locator("#halt-reason").fill("Suspicious payment pattern, investigating");
    await page.locator("#confirm-halt").click();
    const banner = page.locator("#halt-banner");
    await banner.filter({ hasText: "halted by alice" }).waitFor();
    expect(await banner.textContent()).toContain("Reason: Suspicious payment pattern, investigating");
    expect(Date.parse((await banner.locator("time").getAttribute("datetime"))!)).not.toBeNaN();
    expect(await page.locator("#halt").textContent()).toContain("HALTED");

    // the agent's next call is refused at once, naming who halted and why; GET / says so too
    const refused = await gateway.callTool("check_payment_status", { beneficiary_id: "C-1001" });
    expect(JSON.stringify(refused.result)).toMatch(/HALTED: the gateway was halted by alice at .*Suspicious payment pattern/);
    const port = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(gateway.stderr)![1];
    const health = (await (await fetch(`http://127.0.0.1:${port}/`)).json()) as { halted: Record<string, unknown> };
    expect(health.halted).toMatchObject({ by: "alice", reason: "Suspicious payment pattern, investigating" });

    // every view shows the state
    await page.locator('.tab[data-view="history"]').click();
    expect(await banner.isVisible()).toBe(true);
    await page.locator('.tab[data-view="inbox"]').click();
    await page.locator("button.item").first().click();
    await page.locator("#toast").evaluate((toast) => toast.setAttribute("hidden", ""));
    await page.screenshot({ path: join(shots, "review-halted.png") });

    await page.locator("#resume").click();
    await banner.waitFor({ state: "hidden" });
    await page.locator("#stop").waitFor();
    const after = await gateway.callTool("check_payment_status", { beneficiary_id: "C-1001" });
    expect(JSON.stringify(after.result)).not.toMatch(/HALTED/);
    const facts = scanLedger(instancePaths(dataDir, "main").ledger).records.filter((record) => record.type === "gateway.halted" || record.type === "gateway.resumed");
    expect(facts.map((record) => [record.type, record.data.by])).toEqual([["gateway.halted", "alice"], ["gateway.resumed", "alice"]]);
  }, 120_000);

  it("a viewer sees the inbox but gets no decision buttons", async () => {
    await page.locator("#signout").click();
    await page.locator("#gate h1").filter({ hasText: "Sign in to review" }).waitFor();
    const viewer = /(http:\/\/\S+#signin=\S+)/.exec((await cli(["reviewers", "add", "vera", "--name", "Vera Auditor", "--role", "viewer"])).stdout)![1]!;
    await page.goto(viewer);
    await page.locator("#who-role").filter({ hasText: "viewer" }).waitFor();
    await page.locator("button.item").first().click();
    await page.locator("#detail .actions").filter({ hasText: "You are a viewer" }).waitFor();
    expect(await page.locator("#approve").count()).toBe(0);

    // no stop button for a viewer, but the state reaches their page live when an approver halts elsewhere
    expect(await page.locator("#stop").count()).toBe(0);
    expect((await cli(["halt", "--reason", "maintenance window"])).code).toBe(0);
    await page.locator("#halt-banner").filter({ hasText: "maintenance window" }).waitFor();
    expect(await page.locator("#resume").count()).toBe(0);
    expect(await page.locator("#halt-banner").textContent()).toContain("An approver resumes it");
    expect((await cli(["resume"])).code).toBe(0);
    await page.locator("#halt-banner").waitFor({ state: "hidden" });
  });

  it("signing out ends the session; a removed reviewer's page asks to sign in again", async () => {
    await page.locator("#signout").click();
    await page.locator("#gate h1").filter({ hasText: "Sign in to review" }).waitFor();
    const link = /(http:\/\/\S+#signin=\S+)/.exec((await cli(["reviewers", "link", "alice"])).stdout)![1]!;
    await page.goto(link);
    await page.locator("#who-name").filter({ hasText: "Alice Martin" }).waitFor();
    expect((await cli(["reviewers", "remove", "alice"])).code).toBe(0);
    // the live stream notices at its next update
    await gateway.callTool("modify_welfare_record", { beneficiary_id: "C-4004", changes: { address: "1 Nowhere St" } });
    await page.locator("#gate h1").waitFor({ timeout: 20_000 });
    expect(await page.locator("#inbox").isVisible()).toBe(false);
  });
});

describe("review page in Chromium: a rug-pulled tool", () => {
  it("shows the trusted and the changed definition side by side", async () => {
    const pinDir = tempDir("atlas-review-pin-");
    const pinEnv = { ...env, ATLAS_CONFIG_DIR: join(pinDir, "config") };
    // The ledger remembers an older definition of the demo's status tool: the upstream has changed it since.
    const old = { name: "check_payment_status", description: "Look up a payment (old wording)", inputSchema: { type: "object" }, annotations: { readOnlyHint: true } };
    const seed = GovernanceLog.open(instancePaths(pinDir, "main").ledger, { instance: "main" });
    seed.record("tool.pinned", undefined, { upstream: "demo", tool: "check_payment_status", hash: hashToolDefinition(old), definition: old }, "sync");
    await seed.close();
    const pinned = new RawMcpProcess(["--demo", "--data-dir", pinDir, "--port", "0"], pinEnv);
    try {
      await pinned.initialize();
      await until(() => (pinned.stderr.includes("changed since it was pinned") ? true : undefined), "the tool change");
      const added = (await runCli(["reviewers", "add", "alice", "--data-dir", pinDir], pinEnv)).stdout;
      const link = /(http:\/\/\S+#signin=\S+)/.exec(added)![1]!;
      const ref = refOf(await pinned.callTool("check_payment_status", { beneficiary_id: "C-1001" }));
      expect(ref).toMatch(/^evt_/);
      await page.goto(link);
      await page.locator(`button.item[data-ref="${ref}"]`).click();
      const pin = page.locator("#detail .pin.changed");
      await pin.waitFor();
      expect(await pin.textContent()).toMatch(/CHANGED since it was trusted/);
      const [trusted, now] = await pin.locator("pre").allTextContents();
      expect(trusted).toContain("Look up a payment (old wording)");
      expect(now).not.toContain("old wording");
      expect(await page.locator("#detail table.rules").textContent()).toContain("tool-pinning");
      await pin.scrollIntoViewIfNeeded();
      await page.screenshot({ path: join(shots, "review-pin.png") });
    } finally {
      await pinned.close();
    }
  }, 120_000);
});

describe("review page in Chromium: two approvers", () => {
  it("shows the count and who approved; the same reviewer approving twice is refused with a toast; the second approver runs it", async () => {
    const twoDir = tempDir("atlas-review-two-");
    const twoEnv = { ...env, ATLAS_CONFIG_DIR: join(twoDir, "config") };
    const configPath = join(twoDir, "policy.json");
    writeFileSync(configPath, JSON.stringify({ risk: { rules: [{ id: "two-people", tool: "*modify_welfare_record", effect: "review", approvals: 2, reason: "record changes need two people" }] } }));
    const run = (args: string[]) => runCli([...args, "--data-dir", twoDir], twoEnv);
    const gatewayTwo = new RawMcpProcess(["--demo", "--config", configPath, "--data-dir", twoDir, "--port", "0"], twoEnv);
    try {
      await gatewayTwo.initialize();
      await until(() => (/listening on http:\/\/127\.0\.0\.1:(\d+)/.test(gatewayTwo.stderr) ? true : undefined), "the listener");
      const link = /(http:\/\/\S+#signin=\S+)/.exec((await run(["reviewers", "add", "alice", "--name", "Alice Martin"])).stdout)![1]!;
      const ref = refOf(await gatewayTwo.callTool("modify_welfare_record", { beneficiary_id: "C-9009", changes: { monthly_amount: "EUR 12000.00" } }));
      expect(ref).toMatch(/^evt_/);
      await page.goto(link);
      const item = page.locator(`button.item[data-ref="${ref}"]`);
      await item.filter({ hasText: "0 of 2 approvals" }).waitFor();
      await item.click();
      expect(await page.locator("#approvals").textContent()).toBe("0 of 2 approvals; it runs after 2 different approvers");
      expect(await page.locator("#edit").count()).toBe(0); // every approver approves the same arguments

      await page.locator("#approve").click();
      await page.locator("#toast").filter({ hasText: "1 of 2 approvals (alice)" }).waitFor();
      await page.locator("#approvals").filter({ hasText: "1 of 2 approvals (alice)" }).waitFor();
      await page.locator("#approve").click();
      await page.locator("#toast.bad").filter({ hasText: "alice has already approved" }).waitFor();
      expect((await run(["show", ref])).stdout).toContain("approvals: 1 of 2 approvals (alice)");

      // a second person (here the OS user at the terminal) completes it; the agent gets the result
      const status = gatewayTwo.callTool("atlas_status", { ref, wait_seconds: 30 }, 40_000);
      expect((await run(["approve", ref])).code).toBe(0);
      const result = (await status).result as { structuredContent: Record<string, unknown> };
      expect(result.structuredContent).toMatchObject({ ref, status: "executed" });
      await item.waitFor({ state: "detached" });
      const records = scanLedger(instancePaths(twoDir, "main").ledger).records.filter((record) => record.ref === ref && record.type === "approval.recorded");
      expect(records.map((record) => [record.data.reviewer, record.data.auth_method])).toEqual([["alice", "review-page"], [expect.any(String), "os-user"]]);
    } finally {
      await gatewayTwo.close();
    }
  }, 120_000);
});
