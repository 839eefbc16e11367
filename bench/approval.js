import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { createConnection } from "node:net";
import { join } from "node:path";
import { BIN, NODE, childEnv, freshDataDir, readLockFile, spawnGateway } from "./lib/setup.js";
import { formatMs, median, sleep } from "./lib/stats.js";

/** Runs a CLI command to its exit; resolves with the exit time. */
function runCli(ctx, args) {
  return new Promise((resolve, reject) => {
    const child = spawn(NODE, [BIN, ...args], { env: ctx.env, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (chunk) => (output += chunk));
    child.stderr.on("data", (chunk) => (output += chunk));
    const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
    child.once("error", reject);
    child.once("exit", (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(performance.now());
      else reject(new Error(`atlas-gateway ${args.join(" ")} exited ${code}: ${output.trim()}`));
    });
  });
}

/** The gateway side of `atlas-gateway approve`: one JSON line on the control socket, as the CLI sends it. */
function decideOverSocket(socketPath, ref) {
  return new Promise((resolve, reject) => {
    const socket = createConnection(socketPath);
    let reply = "";
    socket.setEncoding("utf8");
    socket.setTimeout(30_000, () => socket.destroy(new Error("control socket timed out")));
    socket.on("connect", () => socket.write(`${JSON.stringify({ op: "decide", ref, decision: "approved", reviewer: "bench" })}\n`));
    socket.on("data", (chunk) => (reply += chunk));
    socket.on("end", () => {
      const parsed = JSON.parse(reply);
      if (parsed.status !== "applied") reject(new Error(`control socket decision not applied: ${reply}`));
      else resolve();
    });
    socket.on("error", reject);
  });
}

/** Adds a reviewer with the CLI and signs in as the review page does: a session cookie and its CSRF token. */
async function signInReviewer(ctx, dataDir, port) {
  const output = await new Promise((resolve, reject) => {
    const child = spawn(NODE, [BIN, "reviewers", "add", "bench", "--data-dir", dataDir], { env: ctx.env, stdio: ["ignore", "pipe", "pipe"] });
    let text = "";
    child.stdout.on("data", (chunk) => (text += chunk));
    child.stderr.on("data", (chunk) => (text += chunk));
    child.once("error", reject);
    child.once("exit", (code) => (code === 0 ? resolve(text) : reject(new Error(`reviewers add exited ${code}: ${text}`))));
  });
  const token = /#signin=(atlas_si_[A-Za-z0-9_-]+)/.exec(output)?.[1];
  if (!token) throw new Error(`no sign-in link in: ${output}`);
  const response = await fetch(`http://127.0.0.1:${port}/review/api/signin`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ token }) });
  if (response.status !== 200) throw new Error(`sign-in refused: HTTP ${response.status} ${await response.text()}`);
  const cookie = (response.headers.get("set-cookie") ?? "").split(";")[0];
  const { csrf } = await response.json();
  return { cookie, csrf };
}

/** The review page's Approve button: one same-origin JSON POST with the session cookie and CSRF token. */
async function decideOverPage(port, session, ref) {
  const response = await fetch(`http://127.0.0.1:${port}/review/api/decide`, {
    method: "POST",
    headers: { "content-type": "application/json", cookie: session.cookie, "x-atlas-csrf": session.csrf },
    body: JSON.stringify({ ref, decision: "approved" }),
  });
  if (response.status !== 200) throw new Error(`review page decision refused: HTTP ${response.status} ${await response.text()}`);
}

async function decideOverWebhook(ctx, port, secret, ref) {
  const body = JSON.stringify({ decision: "APPROVED", event_id: ref, reviewer: "bench" });
  const response = await fetch(`http://127.0.0.1:${port}/webhook/approval`, {
    method: "POST",
    headers: { "content-type": "application/json", ...ctx.lib.signWebhook(secret, body) },
    body,
  });
  if (response.status !== 200) throw new Error(`webhook refused: HTTP ${response.status} ${await response.text()}`);
}

/**
 * 3. Approval latency: a held call, the agent waiting in `atlas_status {ref, wait_seconds}`, then a decision. Timed
 * from the moment the decision is sent to the moment the agent's pending status call returns the executed result.
 */
export async function benchApproval(ctx) {
  const iterations = ctx.counts.approvals;
  const dataDir = freshDataDir(ctx.workDir, "approval");
  const gateway = spawnGateway(ctx, dataDir);
  const samples = { webhook: [], page: [], socket: [], cli: [], cliExit: [], spawnOnly: [] };
  let n = 0;
  try {
    await gateway.initialize();
    await gateway.request("tools/list");
    const lock = readLockFile(dataDir);
    const secret = readFileSync(ctx.lib.webhookSecretPath(dataDir, childEnv(ctx.workDir)), "utf8").trim();
    if (!lock.port || !lock.socket) throw new Error(`the gateway's lock file lacks port/socket: ${JSON.stringify(lock)}`);
    const session = await signInReviewer(ctx, dataDir, lock.port);

    const once = async (method) => {
      const held = await gateway.call("hold_me", { n: n++ });
      const ref = held.structuredContent?.ref ?? /Ref: (evt_[0-9a-f]{8})/.exec(held.content?.[0]?.text ?? "")?.[1];
      if (!ref) throw new Error(`hold_me was not held: ${JSON.stringify(held).slice(0, 300)}`);
      const waiting = gateway.request("tools/call", { name: "atlas_status", arguments: { ref, wait_seconds: 30 } }, 40_000);
      await sleep(ctx.smoke ? 30 : 100); // let the status call reach the gateway and start waiting
      const decidedAt = performance.now();
      let exitedAt;
      if (method === "webhook") await decideOverWebhook(ctx, lock.port, secret, ref);
      else if (method === "page") await decideOverPage(lock.port, session, ref);
      else if (method === "socket") await decideOverSocket(lock.socket, ref);
      else exitedAt = await runCli(ctx, ["approve", ref, "--data-dir", dataDir]);
      const { result, at } = await waiting;
      if (result.structuredContent?.status !== "executed" || result.isError) throw new Error(`${ref} was not executed: ${JSON.stringify(result).slice(0, 300)}`);
      samples[method].push(at - decidedAt);
      if (exitedAt !== undefined) samples.cliExit.push(exitedAt - decidedAt);
    };
    await once("webhook"); // warm-up: first HTTP connection, first execution path
    for (let i = 0; i < iterations; i++) {
      for (const method of ["webhook", "page", "socket", "cli"]) await once(method);
      const started = performance.now();
      samples.spawnOnly.push((await runCli(ctx, ["--version"])) - started);
    }
  } finally {
    await gateway.close();
  }
  const m = Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, median(v)]));
  const max = (values) => Math.max(...values);
  ctx.log(`approval medians over ${iterations}: webhook ${formatMs(m.webhook)} (max ${formatMs(max(samples.webhook))}), review page ${formatMs(m.page)} (max ${formatMs(max(samples.page))}), control socket ${formatMs(m.socket)} (max ${formatMs(max(samples.socket))}), approve CLI ${formatMs(m.cli)} (CLI exit ${formatMs(m.cliExit)}), CLI spawn alone ${formatMs(m.spawnOnly)}`);
  return [
    { section: "3 approval", measure: "signed webhook → agent has result (p50)", value: formatMs(m.webhook), baseline: "100 ms budget", ratio: m.webhook / 100, target: "≤ 100 ms", pass: m.webhook <= 100 },
    { section: "3 approval", measure: "  same, worst of the runs", value: formatMs(max(samples.webhook)), baseline: "100 ms budget", ratio: max(samples.webhook) / 100, target: "info" },
    { section: "3 approval", measure: "review page Approve → agent has result (p50)", value: formatMs(m.page), baseline: "100 ms budget", ratio: m.page / 100, target: "≤ 100 ms", pass: m.page <= 100 },
    { section: "3 approval", measure: "approve, gateway side (control socket, p50)", value: formatMs(m.socket), baseline: "100 ms budget", ratio: m.socket / 100, target: "≤ 100 ms", pass: m.socket <= 100 },
    { section: "3 approval", measure: "`approve` CLI → agent has result (p50)", value: formatMs(m.cli), baseline: `${formatMs(m.spawnOnly)} CLI spawn (--version)`, ratio: m.cli / m.spawnOnly, target: "info" },
  ];
}
