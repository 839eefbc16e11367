import { accessSync, closeSync, constants, existsSync, mkdirSync, openSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { dirname, join } from "node:path";
import { loadConfig, type ConfigFlags, type GatewayConfig } from "../config.js";
import { ConfigError } from "../errors.js";
import { instancePaths } from "../dataDir.js";
import { lastGatewayEngine, listInstances } from "../governance/instance.js";
import { scanLedger } from "../ledger/ledger.js";
import { UpstreamSet } from "../mcp/upstreams.js";
import type { EvaluatorConfig } from "../risk/config.js";
import { createModelEvaluator } from "../risk/modelEvaluators.js";
import { VERSION } from "../version.js";
import { legacyWebhookSecretPath, webhookSecretPath } from "../http/webhook.js";
import { approvalKeysPath, legacyApprovalKeysPath, readApprovalKeys } from "../http/approvalKeys.js";
import { listReviewers, reviewersPath } from "../http/reviewers.js";
import { Notifier } from "../notify/notifier.js";
import { testEvent } from "../notify/notificationEvent.js";
import { describeSink } from "../notify/sinkRequest.js";

export interface DoctorOptions {
  env: NodeJS.ProcessEnv;
  flags: ConfigFlags;
  out: (line: string) => void;
  /** How the Inngest check reaches its URLs (tests pass their own). */
  fetch?: typeof fetch;
  /** `--notify-test`: send a test notification to every configured sink and report each outcome. */
  notifyTest?: boolean;
}

/** `warn`: works, but something the user likely wants is missing (printed `!`, not counted as a failure). */
type Check = { ok: boolean; line: string; fix?: string; warn?: boolean };

/** The stored `v1a` public keys: outside the data dir (an older version's file there is moved at start), mode 600. */
function checkApprovalKeys(dataDir: string, env: NodeJS.ProcessEnv): Check {
  const legacy = legacyApprovalKeysPath(dataDir);
  if (existsSync(legacy)) return { ok: false, line: `approval keys in the data dir (${legacy}), where an upstream rooted above it could add a key of its own`, fix: "start the gateway once or run 'atlas-gateway keys list' (either moves the keys to the credentials dir)" };
  const path = approvalKeysPath(dataDir, env);
  if (!existsSync(path)) return { ok: true, line: "approval keys: none stored ('atlas-gateway keys add' registers v1a public keys)" };
  let count: number;
  try {
    count = Object.keys(readApprovalKeys(dataDir, env)).length;
  } catch (error) {
    return { ok: false, line: `approval keys unreadable: ${path} (${fsMessage(error)})`, fix: `fix or delete ${path}, then add the keys again with 'atlas-gateway keys add'` };
  }
  const mode = statSync(path).mode & 0o777;
  if (process.platform !== "win32" && (mode & 0o077) !== 0) {
    return { ok: false, line: `approval keys ${path} can be changed or read by others (mode ${mode.toString(8)})`, fix: `chmod 600 ${path}` };
  }
  return { ok: true, line: `approval keys: ${count} stored (${path}, mode 600)` };
}

/** Who can use the review page: with no reviewer it stays closed (issue 9 item 2), which is worth a warning. */
function checkReviewers(dataDir: string): Check {
  let reviewers;
  try {
    reviewers = listReviewers(dataDir);
  } catch (error) {
    return { ok: false, line: `reviewers unreadable: ${fsMessage(error)}`, fix: `fix or delete ${reviewersPath(dataDir)}, then add reviewers again` };
  }
  if (reviewers.length === 0) {
    return { ok: true, warn: true, line: "reviewers: none, so nobody can sign in to the review page (GET /review)", fix: "atlas-gateway reviewers add <id> --role approver (prints a sign-in link)" };
  }
  const approvers = reviewers.filter((reviewer) => reviewer.role === "approver").length;
  const line = `reviewers: ${reviewers.length} (${approvers} approver(s), ${reviewers.length - approvers} viewer(s)): ${reviewers.map((reviewer) => `${reviewer.id} (${reviewer.role})`).join(", ")}`;
  return approvers === 0
    ? { ok: true, warn: true, line: `${line}; no approver, so nobody can decide on the review page`, fix: "atlas-gateway reviewers add <id> --role approver" }
    : { ok: true, line };
}

/**
 * Runs every check, prints one ✓/✗ line each (with the fix), and returns how many failed. The rule (issue 13): a ✓
 * means the gateway will start and work on that point, a ✗ means it will not, and each ✗ says what to do about its
 * own cause. What start-up creates (data dir, ledger, webhook secret) is not a failure when absent: doctor checks that
 * it can be created.
 */
export async function runDoctor(options: DoctorOptions): Promise<number> {
  const checks: Check[] = [];
  const report = (check: Check) => {
    checks.push(check);
    options.out(`${check.ok ? (check.warn ? "!" : "✓") : "✗"} ${check.line}${check.fix ? `\n    fix: ${check.fix}` : ""}`);
  };

  const major = Number(process.versions.node.split(".")[0]);
  report(major >= 22
    ? { ok: true, line: `Node ${process.version}` }
    : { ok: false, line: `Node ${process.version} is too old`, fix: "install Node 22 or newer" });

  let config: GatewayConfig;
  try {
    config = loadConfig({ env: options.env, flags: options.flags });
    report({ ok: true, line: `config valid (engine ${config.engine}, threshold ${config.risk.threshold}, ${Object.keys(config.upstreams).length} upstream(s)${config.demo ? " + demo tools" : ""})` });
  } catch (error) {
    const problems = error instanceof ConfigError ? error.problems : [(error as Error).message];
    const fix = error instanceof ConfigError && error.fix ? error.fix : "correct the listed keys (see README, Configuration)";
    report({ ok: false, line: `config invalid:\n    ${problems.join("\n    ")}`, fix });
    return checks.filter((check) => !check.ok).length;
  }

  const dataDir = checkDataDir(config.dataDir);
  report(dataDir);
  if (options.notifyTest) for (const check of await testNotifications(config)) report(check);
  else if (config.notify.length > 0) {
    const sinks = config.notify.map((sink, index) => {
      const where = describeSink(sink, index);
      return `${where.sink_type} ${where.host}`;
    });
    report({ ok: true, line: `notify: ${sinks.length} sink(s): ${sinks.join(", ")} (run with --notify-test to send a test notification)` });
  }
  if (dataDir.ok) {
    report(checkSecret(config.dataDir, options.env));
    report(checkApprovalKeys(config.dataDir, options.env));
    report(checkReviewers(config.dataDir));
    for (const check of checkLedgers(config.dataDir, config.instance)) report(check);
  }
  report(await checkPort(config.host, config.port));
  // The gateway's engine may come only from the MCP client's --engine flag: its ledger says what it last ran.
  let instances: string[] = [];
  try {
    instances = listInstances(config.dataDir);
  } catch {
    // reported by the ledger check above
  }
  const ledgerEngine = instances.map((instance) => lastGatewayEngine(config.dataDir, instance)).find((engine) => engine === "inngest");
  const engine = ledgerEngine ?? config.engine;
  report({ ok: true, line: `engine: ${engine}${engine !== config.engine ? ` (the gateway's ledger says so; this command's config says ${config.engine})` : ""}` });
  if (engine === "inngest") {
    const { checkInngestEngine } = await import("../inngest/index.js");
    for (const check of await checkInngestEngine(config, options.fetch)) report(check);
  }

  for (const evaluator of config.risk.evaluators) report(await checkEvaluator(evaluator));
  // Notification sinks (issue 9b) report here, one dry-run check per sink.

  for (const [name, upstream] of Object.entries(config.upstreams)) {
    const started = performance.now();
    const errors: string[] = [];
    const set = new UpstreamSet([{ name, config: upstream }], {
      env: options.env,
      log: (line) => {
        if (line.includes("failed")) errors.push(line);
      },
      toolTimeoutMs: config.toolTimeout,
      startupTimeoutMs: config.startupTimeout,
      version: VERSION,
    });
    await set.ready;
    const [status] = set.status();
    const ms = Math.round(performance.now() - started);
    await set.close();
    report(status?.ok
      ? { ok: true, line: `upstream '${name}': started and listed ${status.tools} tool(s) in ${ms} ms` }
      : { ok: false, line: `upstream '${name}': ${status?.error ?? errors.join("; ")} (after ${ms} ms)`, fix: "check its command/args (or url) in the config; run the command by hand to see its error" });
  }
  return checks.filter((check) => !check.ok).length;
}

/** Sends one test notification to each sink (two attempts), so a reviewer can see it arrive and a webhook receiver can check the signature. */
async function testNotifications(config: GatewayConfig): Promise<Check[]> {
  if (config.notify.length === 0) {
    return [{ ok: false, line: "notify: no sinks configured, so --notify-test has nothing to send", fix: "add a sink to the config: \"notify\": [{\"type\": \"slack\", \"url\": \"https://hooks.slack.com/services/…\"}]" }];
  }
  const notifier = new Notifier({ sinks: config.notify, record: () => {}, log: () => {}, retry: { attempts: 2, baseMs: 500, maxMs: 500 } });
  const outcomes = await notifier.deliverNow(testEvent({ instance: config.instance }));
  return outcomes.map((outcome) => outcome.ok
    ? { ok: true, line: `${outcome.sink}: test notification delivered (HTTP ${outcome.detail})` }
    : { ok: false, line: `${outcome.sink}: test notification failed: ${outcome.detail}`, fix: "check the sink's url (and, for a webhook, that the receiver verifies with the same whsec_ secret)" });
}

/** What to do about a file system error on `path`, by its cause. */
function fsFix(error: unknown, path: string): string {
  switch ((error as NodeJS.ErrnoException).code) {
    case "EACCES":
      return `give your user write access to ${path} (chmod u+w, or chown it to you), or set --data-dir / ATLAS_DATA_DIR to a directory you own`;
    case "EPERM":
      return `the system refuses writes to ${path} even with write permission (an immutable or append-only attribute: see lsattr / chattr -i, or a sandbox rule): lift it, or set --data-dir / ATLAS_DATA_DIR elsewhere`;
    case "EROFS":
      return `${path} is on a read-only file system: set --data-dir / ATLAS_DATA_DIR to a writable directory`;
    case "EISDIR":
      return `${path} is a directory where a file belongs: move it aside`;
    case "ENOTDIR":
    case "EEXIST":
      return `a file sits where a directory belongs on the way to ${path}: move it aside`;
    case "ENOSPC":
      return "the disk is full: free some space";
    default:
      return `check ${path}, or set --data-dir / ATLAS_DATA_DIR to a directory you own`;
  }
}

const fsMessage = (error: unknown) => (error as NodeJS.ErrnoException).code ?? (error as Error).message;

/** Creates the data dir as start-up would, and proves a file can be written in it. */
function checkDataDir(dataDir: string): Check {
  const existed = existsSync(dataDir);
  try {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    const probe = join(dataDir, `.doctor-${process.pid}`);
    writeFileSync(probe, "ok");
    rmSync(probe);
    return { ok: true, line: `data dir writable: ${dataDir}${existed ? "" : " (created)"}` };
  } catch (error) {
    return { ok: false, line: `data dir not writable: ${dataDir} (${fsMessage(error)})`, fix: fsFix(error, dataDir) };
  }
}

function checkSecret(dataDir: string, env: NodeJS.ProcessEnv): Check {
  const legacy = legacyWebhookSecretPath(dataDir);
  if (existsSync(legacy)) return { ok: false, line: `webhook secret in the data dir (${legacy}), where an upstream rooted above it could read it`, fix: "start the gateway once (it moves the secret to the credentials dir), or run 'atlas-gateway config get webhook.secret'" };
  const path = webhookSecretPath(dataDir, env);
  if (!existsSync(path)) return { ok: true, line: "webhook secret: none yet (created when the gateway first starts; 'atlas-gateway config get webhook.secret' creates and prints it)" };
  try {
    accessSync(path, constants.R_OK);
    const mode = statSync(path).mode & 0o777;
    if (process.platform !== "win32" && (mode & 0o077) !== 0) {
      return { ok: false, line: `webhook secret ${path} is readable by others (mode ${mode.toString(8)})`, fix: `chmod 600 ${path}` };
    }
    return { ok: true, line: `webhook secret present (${path}, mode 600)` };
  } catch (error) {
    return { ok: false, line: `webhook secret unreadable: ${fsMessage(error)}`, fix: `give your user read access to ${path} (chmod 600, owned by you)` };
  }
}

/**
 * Each ledger must verify and take appends (otherwise the gateway serves but refuses every call: it fails closed);
 * with none yet, the folder that will hold the configured instance's ledger must take a new file.
 */
function checkLedgers(dataDir: string, instance: string): Check[] {
  const folder = dirname(instancePaths(dataDir, instance).ledger);
  let instances: string[];
  try {
    instances = listInstances(dataDir);
  } catch (error) {
    return [{ ok: false, line: `ledger folder ${folder} unreadable (${fsMessage(error)})`, fix: fsFix(error, folder) }];
  }
  if (instances.length === 0) {
    try {
      mkdirSync(folder, { recursive: true, mode: 0o700 });
      const probe = join(folder, `.doctor-${process.pid}`);
      writeFileSync(probe, "");
      rmSync(probe);
      return [{ ok: true, line: `ledger: none yet (created in ${folder} when the gateway first starts)` }];
    } catch (error) {
      return [{ ok: false, line: `ledger folder ${folder} not writable (${fsMessage(error)}): the gateway refuses every call until it can`, fix: fsFix(error, folder) }];
    }
  }
  return instances.map((name) => checkLedger(name, instancePaths(dataDir, name).ledger));
}

/**
 * One ledger (issue 12: a directory of segment files): it must be a directory that takes a new segment, its last
 * segment must take appends, and its chain must verify. A 0.1 ledger file not yet migrated is checked in place (the
 * start moves it into a new directory next to it). A file where the directory belongs gets its own ✗: the gateway
 * cannot open the ledger and refuses every call (issue 11), and the fix is to move that file, not to change modes.
 */
function checkLedger(name: string, path: string): Check {
  let scan: ReturnType<typeof scanLedger>;
  try {
    const stat = statSync(path, { throwIfNoEntry: false });
    if (stat && !stat.isDirectory()) {
      return { ok: false, line: `ledger '${name}': ${path} is a file where the ledger's directory belongs; the gateway refuses every call until it is fixed`, fix: "move the file aside; the gateway starts a new ledger in its place (a 0.1 ledger file, named <instance>.jsonl, is migrated by itself)" };
    }
    // the next segment (or, for a 0.1 file, the new directory) must be creatable there
    const folder = stat ? path : dirname(path);
    const probe = join(folder, `.doctor-${process.pid}`);
    writeFileSync(probe, "");
    rmSync(probe);
    scan = scanLedger(path, () => {});
    if (scan.segment && !scan.segment.compressed) closeSync(openSync(scan.segment.path, "a")); // opening for append writes nothing, and fails as the gateway's append would
  } catch (error) {
    return { ok: false, line: `ledger '${name}' not writable: ${path} (${fsMessage(error)}): the gateway refuses every call until it can`, fix: fsFix(error, path) };
  }
  return scan.problem
    ? { ok: false, line: `ledger '${name}' damaged: ${scan.problem.message}`, fix: "run 'atlas-gateway audit verify' to see where, and restore the ledger from a backup; a torn last line is repaired at the next start" }
    : { ok: true, line: `ledger '${name}': ${scan.last ? scan.last.seq + 1 : 0} records, chain intact, writable` };
}

/** What a user can do about a model evaluator's failure, read from the failure's cause. */
function evaluatorFix(evaluator: EvaluatorConfig, message: string): string {
  const where = evaluator.type === "http" ? `url (${evaluator.url})` : `baseUrl (${evaluator.baseUrl})`;
  if (/ECONNREFUSED/.test(message)) return `nothing answers there: start the model server, or correct ${where}`;
  if (/ENOTFOUND|EAI_AGAIN/.test(message)) return `the host name does not resolve: correct ${where}`;
  if (/^timeout/.test(message)) return `no answer within ${evaluator.timeout} ms: check that the server is up and not overloaded, or raise its timeout`;
  if (/HTTP 40[13]\b/.test(message)) return evaluator.type === "openai" ? "the endpoint refused the credentials: check apiKey (and its environment variable) and headers" : "the endpoint refused the credentials: check headers";
  if (/HTTP 404\b/.test(message)) return evaluator.type === "openai" ? `no such endpoint: baseUrl must be the API base that /chat/completions is appended to (often ending in /v1), and model a model it serves` : `no such endpoint: url must be the full scoring URL`;
  if (/HTTP 5\d\d\b/.test(message)) return "the model server failed: see its logs";
  if (/HTTP 3\d\d\b/.test(message)) return `the endpoint redirects: put the final address in ${where}`;
  if (/malformed answer|out-of-range|not JSON|larger than/.test(message)) return `the endpoint answered, but not as a${evaluator.type === "http" ? "n http" : "n openai"} evaluator must (see README, Model evaluators)`;
  if (/refused/.test(message)) return "the model refused the probe: try another model";
  return `check ${where} and the server's logs`;
}

/**
 * A live probe call to a model evaluator, as the gateway will make one (issue 13: in the 0.1 bundle every model call
 * failed while doctor showed ✓). A failing evaluator holds every call it scores (fail closed), so it is a ✗.
 */
async function checkEvaluator(config: EvaluatorConfig): Promise<Check> {
  const evaluator = createModelEvaluator({ ...config, cacheTtl: 0 });
  const started = performance.now();
  try {
    const answer = await evaluator.evaluate({
      tool: "atlas_doctor_probe",
      arguments: {},
      context: { probe: "a connectivity check from 'atlas-gateway doctor', not a real call; nothing will run", description: "does nothing" },
    });
    return { ok: true, line: `evaluator '${evaluator.name}': answered in ${Math.round(performance.now() - started)} ms (probe scored ${answer.score})` };
  } catch (error) {
    const message = (error as Error).message;
    return { ok: false, line: `evaluator '${evaluator.name}': ${message} — every call it scores would be held (fail closed)`, fix: evaluatorFix(config, message) };
  }
}

async function checkPort(host: string, port: number): Promise<Check> {
  if (port === 0) return { ok: true, line: "listener port: 0 (any free port)" };
  const free = await new Promise<NodeJS.ErrnoException | undefined>((resolve) => {
    const server = createServer();
    server.once("error", (error: NodeJS.ErrnoException) => resolve(error));
    server.listen(port, host, () => server.close(() => resolve(undefined)));
  });
  if (!free) return { ok: true, line: `listener port ${host}:${port} is free` };
  if (free.code === "EADDRINUSE") {
    try {
      const response = await fetch(`http://${host}:${port}/`, { signal: AbortSignal.timeout(2000) });
      const body = (await response.json()) as { status?: string; problem?: string };
      if (body.status === "ATLAS Governance Gateway Running") {
        return body.problem
          ? { ok: false, line: `the atlas-gateway running on ${host}:${port} refuses every call: ${body.problem}`, fix: "make the ledger writable; the gateway recovers by itself" }
          : { ok: true, line: `listener port ${host}:${port} is served by a running atlas-gateway` };
      }
    } catch {
      // not ours
    }
    return { ok: false, line: `listener port ${host}:${port} is in use by another program`, fix: "set --port / ATLAS_PORT to a free port (0 = any)" };
  }
  return { ok: false, line: `listener port ${host}:${port}: ${free.message}`, fix: "set --host / --port to an address this machine can bind" };
}
