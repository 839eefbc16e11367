import type { Server as HttpServer, RequestListener } from "node:http";
import type { Server as NetServer } from "node:net";
import type { Readable, Writable } from "node:stream";
import { fileURLToPath } from "node:url";
import { defaultDataDir, type GatewayConfig } from "../config.js";
import { demoUpstream } from "../demo/tools.js";
import type { Executor, GovernanceEngine } from "../governance/engine.js";
import { AtlasError, ConfigError } from "../errors.js";
import { createGateway, type Gateway } from "./gateway.js";
import { instancePaths } from "../dataDir.js";
import type { InstanceLock } from "../governance/instance.js";
import { LazyEngine } from "../governance/lazyEngine.js";
import { maskSecrets, maskText } from "../mask.js";
import type { LedgerRecord } from "../ledger/ledger.js";
import type { RequestView } from "../governance/requests.js";
import { describeEffect } from "../risk/assess.js";
import { compileReadPolicy, type ReadRequest } from "../risk/readPolicy.js";
import type { ArgumentPreparer } from "../risk/largeArguments.js";
import type { createEvaluatorFromConfig } from "../risk/setup.js";
import { holdToolCallsUntil } from "./callGate.js";
import { StreamTransport } from "./stdioTransport.js";
import { pinnableDefinition, ToolPinTable } from "../risk/toolPins.js";
import { UpstreamSet, type UpstreamSource } from "./upstreams.js";
import type { NotificationType } from "../notify/notificationEvent.js";
import { describeHalt, isHaltFact, isNewerHalt, type HaltFact } from "../governance/haltState.js";

export interface ServeIO {
  stdin: Readable;
  stdout: Writable;
  stderr: Writable;
  env: NodeJS.ProcessEnv;
}

export interface RunningGateway extends Gateway {
  instance: string;
  port: number | undefined;
  /** Resolves once the gateway has shut down (stdin closed, or `close()`). */
  closed: Promise<void>;
  close(reason?: string): Promise<void>;
}

/** Secret values the gateway itself uses (evaluator API keys and headers): kept out of upstream environments. */
function evaluatorSecrets(config: GatewayConfig): string[] {
  return config.risk.evaluators.flatMap((evaluator) => [...(evaluator.type === "openai" && evaluator.apiKey ? [evaluator.apiKey] : []), ...Object.values(evaluator.headers)]);
}

/**
 * How many gateways may share one data dir under one instance name (`main`, `main-2`, …). A bridge that starts one
 * gateway per session reaches 20 at once (issue 10); a lock whose holder died is taken over, so only live gateways count.
 */
export const MAX_INSTANCES = 1000;

/** How long a shutdown waits for tool calls under way to finish before the ledger closes. */
export const SHUTDOWN_GRACE_MS = 10_000;

/** Takes the configured instance, or — when another live gateway holds it — the next free `<instance>-N`. */
async function claimInstance(config: GatewayConfig, log: (line: string) => void): Promise<InstanceLock> {
  // A reviewer command holds the lock only while it writes a decision, but opening a big ledger takes seconds: wait
  // for it rather than move to another instance and leave this one's approved calls waiting.
  const { lockWhenFree, readLock, tryLock } = await import("./afterInitialize.js");
  const preferred = await lockWhenFree(config.dataDir, config.instance, "gateway", 15_000);
  if (preferred) return preferred;
  for (let n = 2; n <= MAX_INSTANCES; n++) {
    const name = `${config.instance}-${n}`;
    const lock = tryLock(config.dataDir, name, "gateway");
    if (lock) {
      const holder = readLock(config.dataDir, config.instance);
      log(`instance '${config.instance}' is held by another gateway (pid ${holder?.pid ?? "?"}); this one uses instance '${name}' (set ATLAS_INSTANCE to choose)`);
      return lock;
    }
  }
  throw new AtlasError(`every instance '${config.instance}' .. '${config.instance}-${MAX_INSTANCES}' in ${config.dataDir} is held by a running gateway`);
}

/**
 * Starts the whole gateway on the given streams: upstreams, MCP server, then (behind one ready-promise that every
 * tool call awaits, so `initialize` and `tools/list` are answered first) the instance lock, the engine (ledger
 * replay) and the evaluator, then the control socket and HTTP listener. Signals are the caller's business.
 */
export async function runGateway(config: GatewayConfig, io: ServeIO, version: string): Promise<RunningGateway> {
  const log = (line: string) => void io.stderr.write(`atlas-gateway: ${line}\n`);
  const cleanups: (() => Promise<void> | void)[] = [];
  let stopReason = "shutdown";
  const cleanUp = async () => {
    for (const step of cleanups.splice(0).reverse()) await Promise.resolve(step()).catch(() => {});
  };

  let openEngine!: (engine: GovernanceEngine) => void;
  let failEngine!: (error: unknown) => void;
  const engine = new LazyEngine(config.engine, new Promise<GovernanceEngine>((resolve, reject) => {
    openEngine = resolve;
    failEngine = reject;
  }));
  try {
    const sources: UpstreamSource[] = Object.entries(config.upstreams).map(([name, upstream]) => ({ name, config: upstream }));
    if (config.demo) sources.unshift(demoUpstream(version));
    if (sources.length === 0) log("no upstreams configured: only atlas_status is offered. Add upstreams to the config, pass `-- <command>`, or use --demo.");

    let gateway: Gateway | undefined;
    let reviewUrl: string | undefined;
    // Issue 9 item 8: the suggested commands must reach this gateway's state, so they name a non-default data dir.
    const dataDirFlag = config.dataDir === defaultDataDir(io.env) ? "" : ` --data-dir ${shellQuote(config.dataDir)}`;
    const upstreams = new UpstreamSet(sources, {
      env: withoutReviewerCredentials(io.env),
      log,
      toolTimeoutMs: config.toolTimeout,
      startupTimeoutMs: config.startupTimeout,
      version,
      deferStart: true,
      maxMessageBytes: config.maxMessageBytes,
      secretValues: evaluatorSecrets(config),
      onToolsChanged: () => {
        if (engineOpened) observePins();
        void gateway?.server.sendToolListChanged().catch(() => {});
      },
    });
    cleanups.push(() => upstreams.close());
    const pins = new ToolPinTable();
    let engineOpened = false;
    const readPolicy = compileReadPolicy(config.risk.rules);
    let selfProtection: ReturnType<typeof createEvaluatorFromConfig>["selfProtection"] | undefined;
    let preparer: ArgumentPreparer | undefined;
    /** Resource reads and prompt gets: policy, then self-protection for resources; each one a ledger record. */
    const guardRead = async (read: ReadRequest): Promise<{ allowed: true } | { allowed: false; reason: string }> => {
      await engine.ready; // self-protection knows the instance's files only once the lock is held (fail closed)
      let verdict = readPolicy(read);
      if (read.kind === "resource" && verdict.decision === "allow") {
        const hit = selfProtection?.({ uri: read.target });
        if (hit) verdict = { decision: "deny", rule: { id: "self-protection", reason: `it reaches ${hit.target}` } };
      }
      const client = gateway?.server.getClientVersion();
      await engine.recordEvent(read.kind === "resource" ? "resource.read" : "prompt.get", {
        upstream: read.upstream,
        [read.kind === "resource" ? "uri" : "name"]: read.target,
        decision: verdict.decision,
        ...(verdict.rule ? { rule: verdict.rule } : {}),
        ...(client ? { client: { name: client.name, version: client.version } } : {}),
      });
      return verdict.decision === "allow" ? { allowed: true } : { allowed: false, reason: verdict.rule?.reason ?? "denied by policy" };
    };
    // The agent's MCP roots: a filesystem upstream may take them as its allowed dirs, so self-protection resolves
    // relative paths against them too (issue 11).
    let clientRoots: string[] = [];
    const refreshRoots = () => {
      const server = gateway?.server;
      if (!server?.getClientCapabilities()?.roots) return;
      void server.listRoots()
        .then(({ roots }) => void (clientRoots = roots.flatMap((root) => (root.uri.startsWith("file:") ? [fileURLToPath(root.uri)] : []))))
        .catch((error: Error) => log(`could not read the client's roots: ${error.message}`));
    };
    gateway = createGateway({
      upstreams, engine, version, log, guardRead, limits: config.limits, onRootsChanged: refreshRoots,
      // tool calls wait for the engine, which opens after the evaluator (and its preparer) exists
      prepareArguments: (args, target) => preparer?.prepare(args, target) ?? Promise.resolve(),
    });

    let resolveClosed!: () => void;
    const closed = new Promise<void>((resolve) => (resolveClosed = resolve));
    let closing: Promise<void> | undefined;
    const close = (reason = "shutdown") => {
      // Assigned before the body runs: closing the MCP server re-enters close() through onclose, synchronously.
      closing ??= Promise.resolve().then(async () => {
        stopReason = reason;
        log(`shutting down (${reason})`);
        // Calls under way finish and are recorded before the ledger closes, within a bound (issue 10).
        const left = await upstreams.drain(SHUTDOWN_GRACE_MS);
        if (left > 0) log(`${left} call(s) still running after ${SHUTDOWN_GRACE_MS} ms; they will be recorded as unknown at the next start`);
        else await new Promise((resolve) => setImmediate(resolve)); // their answers reach the agent
        await gateway.server.close().catch(() => {});
        await cleanUp();
        resolveClosed();
      });
      return closing;
    };
    gateway.server.onclose = () => void close("client disconnected");

    // Connect first, then yield one turn of the event loop (listen() completes on nextTick, which never lets the
    // loop poll stdin): the agent's initialize, already waiting in the pipe, is answered before the lock, the ledger
    // and the reviewer-facing sockets below. Tool calls wait for the engine (fail closed: none reaches an upstream
    // before the lock is held and the ledger replayed).
    await gateway.server.connect(holdToolCallsUntil(new StreamTransport(io.stdin, io.stdout, { maxMessageBytes: config.maxMessageBytes, replyToMalformed: true }), engine.ready));
    await new Promise((resolve) => setImmediate(resolve));
    // Loaded only now, after that answer (cold start, issue 12): the lock, engine, listener and their schemas.
    const {
      approvalKeysFor, callEvent, createEvaluatorFromConfig, createRequestHandler, createReviewRoutes, DeferredEngine, haltEvent, loadOrCreateWebhookSecret,
      LocalEngine, migrateApprovalKeys, Notifier, readHaltFile, renderJson, serveControl, startListener, watchHaltFile, WebhookVerifier,
    } = await import("./afterInitialize.js");

    const lock = await claimInstance(config, log);
    cleanups.unshift(() => lock.release()); // released last, after the engine has closed its ledger
    if (closing) {
      // stdin closed while the lock was being taken: nothing more to start
      lock.release();
      failEngine(new AtlasError("the gateway shut down before it was ready"));
      await closing;
      return { ...gateway, instance: lock.info.instance, port: undefined, closed, close };
    }
    const instance = lock.info.instance;
    const paths = instancePaths(config.dataDir, instance);
    // The approval credentials are read after `initialize` is answered: only the listener needs them (cold start).
    const movedKeys = migrateApprovalKeys(config.dataDir, io.env);
    if (movedKeys) log(movedKeys);
    const verifier = new WebhookVerifier(loadOrCreateWebhookSecret(config.dataDir, io.env), {
      hmac: config.webhook.hmac,
      publicKeys: () => approvalKeysFor(config, log, io.env),
    });

    // Reviewer notifications follow the ledger: every new record that moves a held call on is announced. Replayed
    // records are not (`live` turns on once the engine has opened).
    let live = false;
    const notifier = new Notifier({
      sinks: config.notify,
      record: (outcome) => engine.recordEvent(outcome.type, outcome.data, outcome.ref),
      log,
    });
    const eventContext = { instance, ...(config.publicUrl ? { publicUrl: config.publicUrl } : {}) };
    const announce = (record: LedgerRecord) => {
      const view = record.ref ? engine.get(record.ref) : undefined;
      if (!view || view.autoApproved || !view.deadline) return; // only calls that were held for a human
      let type: NotificationType | undefined;
      if (record.type === "request.held") type = "call.held";
      else if (record.type === "approval.recorded" && Number(record.data.count) < Number(record.data.required)) type = "call.approval"; // the last one is announced as the decision
      else if (record.type === "decision.recorded") type = record.data.source === "timeout" ? "call.expired" : "call.decided";
      else if (record.type === "execution.finished") type = "call.executed";
      if (type) notifier.notify(callEvent(type, view, eventContext));
    };
    const created = createEvaluatorFromConfig(config, { env: io.env, instance, pins, roots: () => clientRoots, log });
    const evaluator = created.evaluator;
    selfProtection = created.selfProtection;
    preparer = created.preparer;
    cleanups.push(() => created.preparer.close());
    const engineOptions = {
      ledgerPath: paths.ledger,
      instance,
      evaluator,
      onRecord: (record: LedgerRecord) => {
        pins.apply(record);
        if (live && notifier.enabled) announce(record);
      },
      threshold: config.risk.threshold,
      reviewTimeoutMs: config.reviewTimeout,
      executor: ((call, options) => upstreams.call(call, options)) satisfies Executor,
      awaitUpstream: (upstream: string) => upstreams.whenConnected(upstream),
      version,
      log,
      startInfo: { instance, upstreams: sources.map((source) => source.name) },
      ledger: { retention: { ...(config.retention.keep === "forever" ? {} : { keepMs: config.retention.keep }), compress: config.retention.compress } },
      onHeld: (view: RequestView) => {
        const fired = view.assessment?.rules?.length ? ` rules fired: ${view.assessment.rules.map((rule) => `${rule.id} (${describeEffect(rule.effect)})`).join(", ")}.` : "";
        const reasons = maskText(view.assessment?.reasons.join("; ") ?? "");
        log(`HELD ${view.ref}: ${view.name} ${renderJson(maskSecrets(view.args), 0, 200)} (risk ${view.assessment?.score}: ${reasons}).${fired} Approve: atlas-gateway approve ${view.ref}${dataDirFlag}  Deny: atlas-gateway deny ${view.ref}${dataDirFlag} --reason "..."${reviewUrl ? `  Review page: ${reviewUrl}` : ""}`);
      },
    };
    let opened: GovernanceEngine;
    let routes: Record<string, RequestListener> | undefined;
    let describeInngest: ((port: number | undefined) => string) | undefined;
    if (config.engine === "inngest") {
      // Imported only here: the local engine's start-up never loads the Inngest SDK.
      const { checkInngestConfig, SERVE_PATH, startInngestEngine } = await import("../inngest/index.js");
      const problems = checkInngestConfig(config);
      if (problems.length) throw new ConfigError(problems); // a wrong configuration is not retried: it stops start-up
      // As with the local engine, an unwritable ledger leaves the gateway serving and refusing every call; the
      // workflow endpoint answers 503 until the engine (ledger, client, transport) is open.
      let served: RequestListener | undefined;
      opened = await DeferredEngine.startAsync({
        name: "inngest",
        log,
        onOpen: () => observePins(),
        open: async () => {
          const started = await startInngestEngine({ ...engineOptions, config });
          served = started.routes[SERVE_PATH];
          describeInngest = started.describe;
          return started.engine;
        },
      });
      if (config.inngest.mode !== "connect") {
        routes = {
          [SERVE_PATH]: (req, res) => {
            if (served) return served(req, res);
            res.writeHead(503, { "content-type": "application/json" }).end(JSON.stringify({ error: `this gateway cannot run workflow steps: ${opened.problem?.() ?? "its engine is not open"}` }));
          },
        };
      }
    } else {
      // an unwritable ledger leaves the gateway serving, refusing every call with the cause, until it can write
      opened = DeferredEngine.start({ name: "local", open: () => LocalEngine.open(engineOptions), log, onOpen: () => observePins() });
    }
    cleanups.push(() => engine.close(stopReason));
    cleanups.push(() => notifier.close()); // runs before the engine closes: no attempt records into a closed ledger
    live = true;

    /** Honours a stop-button fact from any source (control socket, `halt.json`, the HTTP endpoint); idempotent. */
    const adoptHalt = async (fact: HaltFact): Promise<{ changed: boolean; state: HaltFact | undefined }> => {
      if (!isNewerHalt(fact, opened.haltState())) return { changed: false, state: opened.haltState() };
      const result = await opened.applyHalt(fact);
      if (result.changed) {
        log(fact.halted
          ? `HALTED: ${describeHalt(fact)}. Every tool call is refused and approved calls wait until 'atlas-gateway resume'.`
          : `RESUMED by ${fact.by} at ${fact.at}${fact.reason ? ` (reason: ${fact.reason})` : ""}: tool calls are routed by policy again.`);
      }
      return result;
    };
    // Before any call is let through: a halt pressed while this gateway was down holds now.
    const pressed = readHaltFile(config.dataDir);
    if (pressed) await adoptHalt(pressed).catch((error: Error) => log(`halt: ${error.message}`));
    cleanups.push(watchHaltFile(config.dataDir, (fact) => void adoptHalt(fact).catch((error: Error) => log(`halt: ${error.message}`))));
    if (opened.haltState()?.halted) log(`starting HALTED: ${describeHalt(opened.haltState()!)}; run 'atlas-gateway resume' to let calls through.`);

    openEngine(opened);
    await engine.ready;
    engineOpened = true;

    /** Pins each listed tool at first sight and records changed definitions (their calls are then held). */
    function observePins(): void {
      for (const entry of upstreams.catalogue()) {
        for (const record of pins.observe(entry.upstream, entry.tool, pinnableDefinition(entry.definition, entry.tool))) {
          if (record.type === "tool.changed") {
            log(`tool ${entry.name} (upstream ${entry.upstream}) changed since it was pinned (${(record.data.changed as string[]).join(", ")}): every call to it is held until a human runs 'atlas-gateway tools trust ${entry.name}'`);
          }
          try {
            void engine.recordEvent(record.type, record.data).catch((error: Error) => log(`ledger: ${error.message}`));
          } catch (error) {
            log(`ledger: could not record ${record.type} for ${entry.name}: ${(error as Error).message}`);
          }
        }
      }
    }

    // Upstreams connect when the agent initializes (its capabilities are offered to them). Approved calls left from
    // an earlier run must not wait for an agent that never comes: start without its capabilities after a while.
    const startAnyway = setTimeout(() => void upstreams.start(), config.startupTimeout);
    startAnyway.unref();
    void upstreams.ready.then(() => clearTimeout(startAnyway));
    void upstreams.ready.then(() => {
      observePins();
      engine.resume();
    });
    /** Registers shutdown work; runs it at once if shutdown began while it was starting (stdin closed early). */
    const onShutdown = (step: () => Promise<void> | void) => {
      if (closing) void Promise.resolve(step()).catch(() => {});
      else cleanups.push(step);
    };

    const announcedHalts = new Set<string>();
    const control: NetServer = await serveControl(paths.socket, async (request) => {
      if (request.op === "decide") return engine.decide(request);
      if (request.op === "trust") {
        const record = pins.trust(request.upstream, request.tool, request.reviewer, { ...(request.hash ? { hash: request.hash } : {}), ...(request.reason ? { reason: request.reason } : {}) });
        await engine.recordEvent(record.type, record.data);
        log(`tool ${request.upstream}/${request.tool}: new definition trusted by ${request.reviewer}; calls are routed by policy again`);
        return { status: "trusted", ...record.data };
      }
      if (request.op === "halt") {
        if (!isHaltFact(request.fact)) throw new Error("halt needs a fact {id: halt_<hex>, halted, by, reason?, at}");
        const result = await adoptHalt(request.fact);
        // One gateway per press tells the sinks (the CLI or endpoint picks it); the fact id keeps it to one notification.
        if (request.notify && !announcedHalts.has(request.fact.id)) {
          announcedHalts.add(request.fact.id);
          notifier.notify(haltEvent(request.fact, eventContext));
        }
        return { status: result.changed ? "applied" : "unchanged", ...(result.state ? { state: result.state } : {}) };
      }
      throw new Error(`unknown op ${String((request as { op?: unknown }).op)}`);
    });
    onShutdown(() => new Promise<void>((resolve) => control.close(() => resolve())));

    const listening = await startListener(
      createRequestHandler({ engine, verifier, dataDir: config.dataDir, instance, version, log, upstreams: () => upstreams.status(), routes: { ...createReviewRoutes({ engine, dataDir: config.dataDir, instance, log }), ...routes } }),
      config.host,
      config.port,
      log,
    );
    const http: HttpServer | undefined = listening?.server;
    if (http) {
      onShutdown(() => new Promise<void>((resolve) => {
        http.close(() => resolve());
        http.closeAllConnections();
      }));
    }
    if (listening) reviewUrl = config.publicUrl ? `${config.publicUrl.replace(/\/+$/, "")}/review` : `http://${config.host.includes(":") ? `[${config.host}]` : config.host}:${listening.port}/review`;
    if (!closing) lock.update({ socket: paths.socket, ...(listening ? { port: listening.port, host: config.host } : {}) });

    log(`ready: instance '${instance}', ledger ${paths.ledger}${listening ? `, listening on http://${config.host}:${listening.port}` : ""}`);
    if (describeInngest) log(describeInngest(listening?.port));
    return { ...gateway, instance, port: listening?.port, closed, close };
  } catch (error) {
    failEngine(error);
    await cleanUp();
    throw error;
  }
}

/** Quotes a path for a POSIX shell when it needs it (the HELD line's commands are meant to be pasted). */
function shellQuote(text: string): string {
  return /^[A-Za-z0-9_./:@%+=,-]+$/.test(text) ? text : `'${text.replace(/'/g, "'\\''")}'`;
}

/**
 * The environment upstreams inherit, minus a reviewer's key: a reviewer who exports ATLAS_REVIEWER_TOKEN in the shell
 * that launches the gateway must not hand the agent's tools a credential that can approve (issue 9).
 */
function withoutReviewerCredentials(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const { ATLAS_REVIEWER_TOKEN: _key, ...rest } = env;
  return rest;
}
