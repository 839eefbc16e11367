import type { Command } from "commander";
import { readFileSync, writeFileSync } from "node:fs";
import { userInfo } from "node:os";
import { isPrototypeKey, loadConfig, openUserConfig, userConfigPath, type ConfigFlags } from "../config.js";
import { parseSince, registerPolicyCommands, registerToolCommands } from "./policy.js";
import { registerHaltCommands } from "./halt.js";
import { registerKeyCommands } from "./keys.js";
import { currentHalt, readHaltFile } from "../governance/halt.js";
import { describeHalt } from "../governance/haltState.js";
import { AtlasError, ConfigError, LedgerError, NotFoundError } from "../errors.js";
import { instancePaths } from "../dataDir.js";
import { lastGatewayEngine, listInstances } from "../governance/instance.js";
import { anchorHead } from "../ledger/anchor.js";
import { buildExcerpt, formatExcerptCsv, formatExcerptJsonl, verifyExcerpt } from "../ledger/excerpt.js";
import { loadVerifierKey, verifyLedger } from "../ledger/verify.js";
import { maskSecrets, maskText } from "../mask.js";
import { renderJson } from "../renderJson.js";
import type { RequestView } from "../governance/requests.js";
import { assertApplied, decideRef, findRef, readAllInstances } from "../governance/review.js";
import { describeEffect } from "../risk/assess.js";
import { loadOrCreateWebhookSecret } from "../http/webhook.js";
import { ReviewFeed } from "../http/reviewFeed.js";
import { VERSION } from "../version.js";
import { cliReviewer, registerReviewerCommands } from "./reviewers.js";
import { newProgram, registerServeCommand, withCommonOptions, type CliIO } from "./serveCommand.js";

function describeView(view: RequestView): string {
  const decision = view.decision;
  const by = decision ? (decision.source === "timeout" ? "expired" : `${decision.decision} by ${decision.reviewer ?? "?"}${decision.reason ? ` (${decision.reason})` : ""}`) : "";
  return `${view.ref} (${view.name}) is ${view.status}${by && view.status !== "expired" ? `: ${by}` : ""}`;
}

/** "1 of 2 approvals": where a two-person call stands. */
function approvalCount(view: RequestView): string {
  return `${view.approvals?.length ?? 0} of ${view.approvalsRequired ?? 1} approvals`;
}

function age(iso: string, now = Date.now()): string {
  const seconds = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (seconds < 60) return `${seconds}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m`;
  if (seconds < 86_400) return `${Math.floor(seconds / 3600)}h${String(Math.floor((seconds % 3600) / 60)).padStart(2, "0")}m`;
  return `${Math.floor(seconds / 86_400)}d${Math.floor((seconds % 86_400) / 3600)}h`;
}

function clip(text: string, width: number): string {
  return text.length <= width ? text : `${text.slice(0, width - 1)}…`;
}

/** A plain text table: a header row, then rows, columns padded to fit. */
export function formatTable(header: string[], rows: string[][]): string {
  const widths = header.map((title, i) => Math.max(title.length, ...rows.map((row) => (row[i] ?? "").length)));
  const line = (cells: string[]) => cells.map((cell, i) => (i === cells.length - 1 ? cell : cell.padEnd(widths[i]!))).join("  ").trimEnd();
  return [line(header), ...rows.map(line)].join("\n");
}

/**
 * Builds the whole CLI: every command. `main` runs it for every invocation except a plain gateway start, which
 * builds only `serve` (see `servesOnly`), so that a client's launch never loads the other commands' modules.
 */
export function buildProgram(io: CliIO, argv: readonly string[]): Command {
  const program = newProgram(io);
  const config = (flags: ConfigFlags) => loadConfig({ env: io.env, flags });

  registerServeCommand(program, io, argv, () => program.commands.map((command) => command.name()));

  const decideCommand = (name: "approve" | "deny") =>
    withCommonOptions(program.command(`${name} <ref>`))
      .description(name === "approve" ? "approve a held call: it runs once, and the agent gets its result from atlas_status" : "deny a held call: it never runs")
      .option("-r, --reason <text>", name === "approve" ? "why (recorded in the ledger)" : "why (required; recorded and shown to the agent)")
      .option("--reviewer <id>", "decide as this registered reviewer; needs their key in ATLAS_REVIEWER_TOKEN (default: your OS user name)")
      .action(async (ref: string, flags: ConfigFlags & { reason?: string; reviewer?: string }) => {
        if (name === "deny" && !flags.reason?.trim()) throw new ConfigError(["--reason: a denial needs a reason (the agent and the audit trail see it)"]);
        const resolved = config(flags);
        const { reviewer, auth } = cliReviewer(resolved.dataDir, flags.reviewer, io.env, safeUserName);
        const input = { ref, decision: name === "approve" ? "approved" as const : "denied" as const, reviewer, auth, ...(flags.reason ? { reason: flags.reason } : {}) };
        const result = await decideRef(resolved.dataDir, input);
        const view = assertApplied(result, describeView);
        // The engine that acts is the one of the gateway that owns this ledger (running, or the last to run), not
        // whatever this command's own flags say: a held Inngest run needs the decision event either way.
        const engine = lastGatewayEngine(resolved.dataDir, result.instance) ?? resolved.engine;
        if (result.via === "ledger" && engine === "inngest") {
          // No gateway holds it: tell the waiting run now; the gateway also re-sends it at its next start.
          const { sendDecisionEvent } = await import("../inngest/index.js");
          const failed = await sendDecisionEvent(resolved, result.instance, input, VERSION, (line) => io.err(`atlas-gateway: ${line}`));
          if (failed) io.err(`atlas-gateway: the decision is recorded, but could not be sent to Inngest now (${failed}); the gateway sends it when it next starts`);
        }
        const verb = name === "approve" ? "approved" : "denied";
        if (view.status === "pending" && view.approvalsRequired) {
          const count = view.approvals?.length ?? 0;
          io.out(`${verb} ${view.ref} (${view.name}) as ${reviewer}: ${approvalCount(view)}; it runs once ${view.approvalsRequired - count} more distinct reviewer(s) approve.`);
          return;
        }
        const halted = name === "approve" ? readHaltFile(resolved.dataDir) : undefined;
        const next = name === "deny"
          ? `engine ${engine}: it will not run.`
          : halted?.halted
            ? `engine ${engine}: the gateway is HALTED (${describeHalt(halted)}): it runs after 'atlas-gateway resume', if its deadline has not passed.`
          : engine === "inngest" && view.status === "abandoned"
            ? `engine inngest: it was not run: ${view.problem?.cause ?? "its Inngest run cannot carry it"}`
          : engine === "inngest" && view.problem
            ? `engine inngest: warning: ${view.problem.cause}`
          : engine === "inngest"
            ? `engine inngest: its Inngest run executes it once the decision reaches it${result.via === "gateway" ? "" : " and the gateway is running again"}; the agent gets the result from atlas_status.`
            : result.via === "gateway" ? "engine local: the gateway is executing it now; the agent gets the result from atlas_status." : "engine local: no gateway is running for it; it runs when the gateway next starts.";
        io.out(`${verb} ${view.ref} (${view.name}) as ${reviewer}: ${next}`);
      });
  decideCommand("approve");
  decideCommand("deny");

  /** The pending list as `pending` prints it: a table, or JSON (one line per snapshot when `compact`). */
  const printPending = (dataDir: string, json: boolean, compact = false): void => {
    const states = readAllInstances(dataDir);
    for (const state of states) if (state.problem) io.err(`warning: ledger '${state.instance}' is damaged from ${state.problem.message}; run 'atlas-gateway audit verify'`);
    const halt = currentHalt(dataDir, states.flatMap((state) => (state.halt ? [state.halt] : [])));
    // stderr for --json, so the JSON stays a plain list for scripts
    if (halt?.halted) (json ? io.err : io.out)(`HALTED: ${describeHalt(halt)}. Every tool call is refused and approved calls wait until 'atlas-gateway resume'.`);
    const now = Date.now();
    const pending = states.flatMap((state) => state.table.pending().map((view) => ({ instance: state.instance, view })))
      .sort((a, b) => a.view.createdAt.localeCompare(b.view.createdAt));
    if (json) {
      const items = pending.map(({ instance, view }) => ({
        ref: view.ref, instance, tool: view.name, upstream: view.upstream, created_at: view.createdAt, deadline: view.deadline,
        expired: view.deadline !== undefined && Date.parse(view.deadline) <= now, args: maskSecrets(view.args), assessment: maskSecrets(view.assessment),
        ...(view.approvalsRequired ? { approvals: { count: view.approvals?.length ?? 0, required: view.approvalsRequired, reviewers: (view.approvals ?? []).map((a) => a.reviewer) } } : {}),
        ...(view.problem ? { problem: view.problem } : {}),
        ...(view.unproven ? { unproven_approval: view.unproven } : {}),
      }));
      io.out(compact ? renderJson(items) : renderJson(items, 2));
      return;
    }
    if (pending.length === 0) {
      io.out("no calls waiting for review");
      return;
    }
    const showInstance = new Set(pending.map((item) => item.instance)).size > 1;
    const showApprovals = pending.some((item) => item.view.approvalsRequired);
    io.out(formatTable(
      ["REF", "AGE", ...(showInstance ? ["INSTANCE"] : []), ...(showApprovals ? ["APPROVALS"] : []), "TOOL", "ARGUMENTS", "SCORE", "REASONS", "RULES"],
      pending.map(({ instance, view }) => [
        view.ref,
        view.deadline && Date.parse(view.deadline) <= now ? `${age(view.createdAt, now)} (expired)` : age(view.createdAt, now),
        ...(showInstance ? [instance] : []),
        ...(showApprovals ? [view.approvalsRequired ? approvalCount(view) : "-"] : []),
        view.name,
        clip(renderJson(maskSecrets(view.args), 0, 60), 60),
        String(view.assessment?.score ?? "?"),
        clip(maskText((view.assessment?.reasons ?? []).join("; ")), 80),
        (view.assessment?.rules ?? []).map((rule) => rule.id).join(", ") || "-",
      ]),
    ));
    for (const { view } of pending) if (view.problem) io.out(`warning: ${view.ref}: ${maskText(view.problem.cause)}`);
    // approvals the gateway could not prove (issue 12): the reviewer must decide again, and should know why
    for (const { view } of pending) if (view.unproven) io.out(`note: ${view.ref} was approved before, but ${view.unproven.replace(/^the approval /, "that approval ")}`);
  };

  withCommonOptions(program.command("pending"))
    .description("list calls waiting for review: ref, age, tool, masked arguments, risk score, rules fired and reasons")
    .option("--json", "print JSON instead of a table")
    .option("--watch", "keep running and print the list again whenever it changes, across every gateway on the data dir (with --json: one JSON array per line)")
    .action(async (flags: ConfigFlags & { json?: boolean; watch?: boolean }) => {
      const { dataDir } = config(flags);
      if (!flags.watch) return printPending(dataDir, flags.json ?? false);
      const feed = new ReviewFeed(dataDir, 250);
      const show = () => {
        if (!flags.json) io.out(`--- ${new Date().toISOString()} ---`);
        printPending(dataDir, flags.json ?? false, true);
      };
      show();
      feed.subscribe(show);
      // Until interrupted: the feed's own timer does not keep the process alive.
      await new Promise(() => setInterval(() => {}, 1 << 30));
    });


  withCommonOptions(program.command("show <ref>"))
    .description("show a call's whole history from the ledger")
    .option("--json", "print the ledger records as JSON")
    .action((ref: string, flags: ConfigFlags & { json?: boolean }) => {
      const { dataDir } = config(flags);
      const { instance, view } = findRef(dataDir, ref, true);
      const history = view.history.map((record) => ({ ...record, data: maskSecrets(record.data) as Record<string, unknown> }));
      if (flags.json) {
        io.out(renderJson({ instance, ref: view.ref, status: view.status, history }, 2));
        return;
      }
      io.out(`${view.ref}  ${view.name} (upstream ${view.upstream}, instance ${instance})  status: ${view.status.toUpperCase()}`);
      io.out(`arguments: ${renderJson(maskSecrets(view.args))}`);
      if (view.assessment) io.out(`risk: ${view.assessment.score} (${view.assessment.classification}, ${view.assessment.evaluator}): ${maskText(view.assessment.reasons.join("; "))}`);
      if (view.editedArgs) io.out(`approved with edits: it ran with ${renderJson(maskSecrets(view.editedArgs))}`);
      if (view.assessment?.rules?.length) io.out(`rules fired: ${view.assessment.rules.map((rule) => `${rule.id} (${describeEffect(rule.effect)})`).join(", ")}${view.assessment.verdict ? `; policy verdict: ${view.assessment.verdict}` : ""}`);
      if (view.approvalsRequired) io.out(`approvals: ${approvalCount(view)}${view.approvals?.length ? ` (${view.approvals.map((a) => a.reviewer).join(", ")})` : ""}`);
      if (view.decision) io.out(`decision: ${maskText(describeView(view).split(": ").slice(1).join(": ")) || view.status}`);
      io.out("history:");
      for (const record of history) {
        const { args: _args, result, ...rest } = record.data;
        const detail = { ...rest, ...(result !== undefined ? { result: clip(renderJson(result), 200) } : {}) };
        io.out(`  #${record.seq}  ${record.ts}  ${record.type.padEnd(22)} ${Object.keys(detail).length ? renderJson(detail) : ""}`.trimEnd());
      }
    });

  const audit = program.command("audit").description("audit ledger commands");
  withCommonOptions(audit.command("verify"))
    .description("check every ledger: each segment's hash chain, each checkpoint's signature, and the signed head (a cut tail or rewritten chain is tampering); names the first bad record and why. Exit 0 only when all are whole")
    .option("--instance <name>", "verify only this instance's ledger")
    .option("--public-key <key>", "verify signatures with this key (a file with the verifier key or PEM public key, or the key itself), e.g. an auditor's copy; default: the data dir's keys/ledger.pub")
    .option("--excerpt <file>", "verify an excerpt written by 'audit export --format jsonl' on its own (needs --public-key, or the data dir's key)")
    .action((flags: ConfigFlags & { instance?: string; publicKey?: string; excerpt?: string }) => {
      const { dataDir } = config(flags);
      if (flags.excerpt) {
        let key;
        try {
          key = loadVerifierKey(flags.publicKey ?? instancePaths(dataDir, flags.instance ?? "main").publicKey);
        } catch (error) {
          throw new ConfigError([`--public-key: ${(error as Error).message} (an excerpt is verified with the ledger's public key)`]);
        }
        let text: string;
        try {
          text = readFileSync(flags.excerpt, "utf8");
        } catch (error) {
          throw new ConfigError([`--excerpt: ${(error as Error).message}`]);
        }
        const result = verifyExcerpt(text, key);
        if (result.problem) {
          io.out(`✗ excerpt ${flags.excerpt}: ${result.problem}`);
          throw new AtlasError("the excerpt failed verification", 5);
        }
        io.out(`✓ excerpt ${flags.excerpt}: ${result.records} record(s) in one unbroken chain between ${result.signed} verified signature(s)${result.masked ? `; ${result.masked} record(s) had secrets masked, so their content is checked by position in the chain, not re-hashed` : ""}`);
        return;
      }
      const instances = flags.instance ? [flags.instance] : listInstances(dataDir);
      if (instances.length === 0) {
        throw new NotFoundError(`no ledgers in ${dataDir}: nothing to verify (check --data-dir)`);
      }
      let verifier;
      try {
        verifier = flags.publicKey ? loadVerifierKey(flags.publicKey) : undefined;
      } catch (error) {
        throw new ConfigError([`--public-key: ${(error as Error).message}`]);
      }
      let bad = 0;
      for (const instance of instances) {
        const path = instancePaths(dataDir, instance).ledger;
        let result: ReturnType<typeof verifyLedger>;
        try {
          result = verifyLedger(path, verifier);
        } catch (error) {
          bad += 1;
          io.out(`✗ ledger '${instance}' (${path}): cannot be read: ${(error as Error).message}`);
          continue;
        }
        const { scan, records } = result;
        for (const warning of result.warnings) io.err(`warning: ledger '${instance}': ${warning}`);
        if (scan.problem) {
          bad += 1;
          io.out(`✗ ledger '${instance}' (${path}): ${scan.problem.message}. The ${records} record(s) before it are intact.`);
        } else if (result.tampering) {
          bad += 1;
          io.out(`✗ ledger '${instance}' (${path}): tampering: ${result.tampering}`);
        } else if (!scan.last) {
          bad += 1;
          io.out(`✗ ledger '${instance}' (${path}): missing or empty`);
        } else {
          const signed = `${result.checkpoints} signed checkpoint(s)${result.headSize !== undefined ? `, signed head at ${result.headSize} records` : ""}`;
          io.out(`✓ ledger '${instance}': ${records} records in ${result.segments} segment(s), hash chain intact, ${signed} (head ${scan.last.hash.slice(0, 16)}…)`);
        }
      }
      if (bad) throw new AtlasError(`${bad} ledger(s) failed verification`, 5);
    });

  withCommonOptions(audit.command("export"))
    .description("write the records of a period (secrets masked) with the signed checkpoints that cover them, so an auditor can verify the excerpt alone ('audit verify --excerpt')")
    .requiredOption("--since <when>", "start: a duration ago (30d, 12h) or a date (2026-11-01)")
    .option("--until <when>", "end: a duration ago or a date (default: now)")
    .option("--format <format>", "jsonl (verifiable) or csv (for spreadsheets)", "jsonl")
    .option("--instance <name>", "the instance's ledger (default: the configured instance)")
    .option("--output <file>", "write to this file (default: stdout)")
    .action((flags: ConfigFlags & { since: string; until?: string; format: string; instance?: string; output?: string }) => {
      const resolved = config(flags);
      if (flags.format !== "jsonl" && flags.format !== "csv") throw new ConfigError([`--format: expected jsonl or csv, got ${JSON.stringify(flags.format)}`]);
      const since = parseSince(flags.since);
      const until = flags.until ? parseSince(flags.until) : new Date();
      const instance = flags.instance ?? resolved.instance;
      if (!listInstances(resolved.dataDir).includes(instance)) throw new NotFoundError(`no ledger for instance '${instance}' in ${resolved.dataDir}`);
      let excerpt;
      try {
        excerpt = buildExcerpt(instancePaths(resolved.dataDir, instance).ledger, since, until);
      } catch (error) {
        throw new LedgerError((error as Error).message);
      }
      const text = flags.format === "csv" ? formatExcerptCsv(excerpt) : formatExcerptJsonl(excerpt);
      if (flags.output) {
        writeFileSync(flags.output, text, { mode: 0o600 });
        io.err(`wrote ${excerpt.header.records} record(s) of '${instance}' from ${since.toISOString()} to ${until.toISOString()} to ${flags.output}`);
      } else io.out(text.trimEnd());
    });

  withCommonOptions(audit.command("anchor"))
    .description("post the ledger's latest signed head to a witness (config anchor.url, or --url) and keep its receipt in <instance>.anchors.jsonl")
    .option("--url <url>", "the witness URL (default: config anchor.url)")
    .option("--instance <name>", "the instance's ledger (default: the configured instance)")
    .action(async (flags: ConfigFlags & { url?: string; instance?: string }) => {
      const resolved = config(flags);
      const url = flags.url ?? resolved.anchor.url;
      if (!url) throw new ConfigError(["anchor.url: no witness configured (set anchor.url, or pass --url)"]);
      const instance = flags.instance ?? resolved.instance;
      const paths = instancePaths(resolved.dataDir, instance);
      let receipt;
      try {
        receipt = await anchorHead(paths.ledger, url, loadVerifierKey(paths.publicKey), { headers: resolved.anchor.headers });
      } catch (error) {
        throw new LedgerError(`audit anchor: ${(error as Error).message}`);
      }
      io.out(`anchored '${instance}' at ${receipt.size} records (head ${receipt.head.slice(0, 16)}…) with ${url}: HTTP ${receipt.status}, receipt sha256 ${receipt.receipt_sha256.slice(0, 16)}… kept in ${paths.anchors}`);
    });

  const configCommand = program.command("config").description("read and change the user config file");
  withCommonOptions(configCommand.command("get <key>"))
    .description("print a resolved config value (dot path, e.g. risk.threshold); 'webhook.secret' prints the webhook signing secret")
    .action((key: string, flags: ConfigFlags) => {
      const resolved = config(flags);
      if (key === "webhook.secret") {
        io.out(loadOrCreateWebhookSecret(resolved.dataDir, io.env));
        return;
      }
      let value: unknown = resolved;
      for (const part of key.split(".")) value = value && typeof value === "object" ? (value as Record<string, unknown>)[part] : undefined;
      if (value === undefined) throw new ConfigError([`${key}: no such config key`]);
      // evaluator API keys and auth headers stay out of terminals and logs
      const masked = maskSecrets(value, key.split(".").pop());
      io.out(typeof masked === "string" ? masked : JSON.stringify(masked, null, 2));
    });
  configCommand
    .command("set <key> <value>")
    .description("set a value in the user config file (JSON values are parsed: 75, true, {\"command\":\"npx\"})")
    .action(async (key: string, raw: string) => {
      const bad = key.split(".").find(isPrototypeKey);
      if (bad) throw new ConfigError([`${key}: "${bad}" is not allowed as a config key`]);
      let value: unknown = raw;
      try {
        value = JSON.parse(raw);
      } catch {
        // a plain string
      }
      const store = await openUserConfig(io.env);
      const before = { ...store.store };
      store.set(key, value);
      try {
        loadConfig({ env: { ...io.env, ATLAS_CONFIG: "" }, userConfig: store.store });
      } catch (error) {
        store.store = before;
        throw error;
      }
      io.out(`set ${key} = ${JSON.stringify(value)} in ${store.path}`);
    });
  configCommand
    .command("path")
    .description("print the user config file's path")
    .action(() => io.out(userConfigPath(io.env)));

  const commandDeps = { out: io.out, err: io.err, env: io.env, config: (flags: ConfigFlags) => config(flags), withCommonOptions, formatTable, reviewer: safeUserName };
  registerToolCommands(program, commandDeps);
  registerPolicyCommands(program, commandDeps);
  registerHaltCommands(program, commandDeps);
  registerKeyCommands(program, commandDeps);
  registerReviewerCommands(program, commandDeps);

  withCommonOptions(program.command("doctor"))
    .description("check Node, config, data dir, ledgers, webhook secret, listener port, model evaluators (live probe) and upstreams; exit non-zero on any ✗")
    .option("--port <port>", "listener port to check")
    .option("--notify-test", "send a test notification to every configured notify sink and report each outcome")
    .action(async (flags: ConfigFlags & { notifyTest?: boolean }) => {
      const { runDoctor } = await import("./doctor.js");
      const { notifyTest, ...configFlags } = flags;
      const failures = await runDoctor({ env: io.env, flags: configFlags, out: io.out, ...(notifyTest ? { notifyTest } : {}) });
      if (failures > 0) throw new AtlasError(`${failures} check(s) failed`, 1);
    });

  program
    .command("demo")
    .description("run a governed agent session end to end in a temporary data dir: auto-approved call, held call, unsigned and signed webhook approval, result, a denial, audit")
    .option("--keep", "keep the temporary data dir")
    .option("--verbose", "show the gateway's stderr")
    .action(async (flags: { keep?: boolean; verbose?: boolean }) => {
      const { runDemo } = await import("../demo/script.js");
      await runDemo({ out: io.out, env: io.env, keep: flags.keep ?? false, verbose: flags.verbose ?? false });
    });

  return program;
}

function safeUserName(): string {
  try {
    return userInfo().username || "reviewer";
  } catch {
    return "reviewer";
  }
}
