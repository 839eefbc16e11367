import type { RequestListener } from "node:http";
import type { GatewayConfig } from "../config.js";
import type { Executor } from "../governance/engine.js";
import { ConfigError } from "../errors.js";
import type { LedgerRecord } from "../ledger/ledger.js";
import type { RequestView } from "../governance/requests.js";
import type { RiskEvaluator } from "../risk/assess.js";
import { createInngestClient } from "./client.js";
import { createCancellationFunction, createGovernanceFunction } from "./governanceFunction.js";
import { InngestEngine } from "./inngestEngine.js";
import { checkInngestConfig, resolveAppId, SERVE_PATH } from "./settings.js";

export interface StartInngestEngineOptions {
  config: GatewayConfig;
  instance: string;
  ledgerPath: string;
  evaluator: RiskEvaluator;
  executor: Executor;
  version: string;
  log: (line: string) => void;
  onHeld?: (view: RequestView) => void;
  onRecord?: (record: LedgerRecord) => void;
  startInfo?: Record<string, unknown>;
  fetch?: typeof fetch;
  now?: () => Date;
  /** Tests shorten how long after a deadline the gateway's own backstop acts (default 60 s). */
  expiryGraceMs?: number;
}

export interface StartedInngestEngine {
  engine: InngestEngine;
  appId: string;
  /** Listener routes to mount (`/api/inngest` in serve mode; none with connect). */
  routes: Record<string, RequestListener>;
  /** The start-up line saying where Inngest reaches this gateway, once the listener's port is known. */
  describe(port: number | undefined): string;
}

/** How long shutdown waits for a connect worker to finish in-flight steps. */
const CONNECT_CLOSE_TIMEOUT_MS = 10_000;

/**
 * Builds the `inngest` engine: client, the `governance-workflow` function, the engine, and its transport —
 * the serve handler for the listener, or a connect worker started in the background. Loaded with `import()` only
 * when this engine is selected, so the local engine never pays for the SDK.
 */
export async function startInngestEngine(options: StartInngestEngineOptions): Promise<StartedInngestEngine> {
  const settings = options.config.inngest;
  const problems = checkInngestConfig(options.config);
  if (problems.length) throw new ConfigError(problems);
  const appId = resolveAppId(settings, options.config.dataDir, options.instance);
  const client = await createInngestClient(settings, { appId, version: options.version, log: options.log, ...(options.fetch ? { fetch: options.fetch } : {}) });
  const engine = InngestEngine.open({
    ledgerPath: options.ledgerPath,
    instance: options.instance,
    appId,
    evaluator: options.evaluator,
    threshold: options.config.risk.threshold,
    reviewTimeoutMs: options.config.reviewTimeout,
    executor: options.executor,
    dispatcher: { send: async (event) => void (await client.send(event)) },
    dispatchTimeoutMs: settings.dispatchTimeout,
    onRunFailure: settings.onRunFailure,
    runStartTimeoutMs: settings.runStartTimeout,
    // Encryption turns the call into base64 ciphertext, about a third larger: leave room for it.
    maxEventBytes: Math.floor(settings.maxEventBytes / (settings.encryptionKey ? 1.4 : 1)) - 1024,
    version: options.version,
    log: options.log,
    ...(options.now ? { now: options.now } : {}),
    ...(options.expiryGraceMs !== undefined ? { expiryGraceMs: options.expiryGraceMs } : {}),
    ...(options.onHeld ? { onHeld: options.onHeld } : {}),
    ...(options.onRecord ? { onRecord: options.onRecord } : {}),
    startInfo: { ...options.startInfo, inngest_mode: settings.mode, inngest_dev: settings.dev, encrypted: Boolean(settings.encryptionKey) },
  });
  const functions = [createGovernanceFunction(client, engine, appId), createCancellationFunction(client, engine, appId)];

  const describe = (port: number | undefined) => describeEndpoint(options.config, appId, port);
  if (settings.mode === "connect") {
    await startConnectWorker(engine, client, functions, options.log);
    return { engine, appId, routes: {}, describe };
  }
  const { serve } = await import("inngest/node");
  const handler = serve({
    client,
    functions,
    servePath: SERVE_PATH,
    ...(settings.serveOrigin ? { serveOrigin: settings.serveOrigin } : {}),
    // An unsigned PUT would make the SDK register itself at a URL taken from the request's Host header.
    enableUnauthedSync: false,
  });
  const onSync = (status: number, body: string) => {
    let message = body;
    try {
      message = String((JSON.parse(body) as { message?: unknown }).message ?? body);
    } catch {
      // not JSON: keep the text
    }
    if (status === 200) {
      options.log(`inngest: app '${appId}' synced: Inngest registered the governance workflow at this gateway`);
      void engine.recordEvent("inngest.synced", { app_id: appId }).catch(() => {});
    } else {
      options.log(`inngest: app '${appId}' could not register with Inngest (HTTP ${status}: ${message}); no run will start. ${registrationHint(settings)}`);
      void engine.recordEvent("inngest.sync_failed", { app_id: appId, status, cause: message }).catch(() => {});
    }
  };
  return { engine, appId, routes: { [SERVE_PATH]: guardServeHandler(handler, options.log, onSync) }, describe };
}

function describeEndpoint(config: GatewayConfig, appId: string, port: number | undefined): string {
  const { mode, dev, baseUrl } = config.inngest;
  if (mode === "connect") {
    return `inngest: app '${appId}' connecting out to ${baseUrl ?? (dev ? "the local dev server" : "Inngest Cloud")} (connect mode, ${dev ? "dev mode" : "authenticated with the signing key"})`;
  }
  if (port === undefined) return `inngest: app '${appId}' cannot be served: the listener is not running, so no workflow step can run here (set --port, or use inngest.mode connect)`;
  const url = `http://${config.host}:${port}${SERVE_PATH}`;
  return `inngest: app '${appId}' served on ${url} (${dev ? `dev mode: no signature checks; dev server: npx inngest-cli dev -u ${url}` : "signatures verified"})`;
}

/**
 * Opens the outbound connect worker without waiting for it: `connect()` only settles once a connection is up (it
 * retries and reconnects on its own), and MCP start-up must not depend on Inngest. The worker leaves signals to
 * the gateway, runs on this thread (the bundled CLI has no separate worker script), and closes with the engine.
 */
async function startConnectWorker(engine: InngestEngine, client: Awaited<ReturnType<typeof createInngestClient>>, functions: unknown[], log: (line: string) => void): Promise<void> {
  const { connect } = await import("inngest/connect");
  let connection: Awaited<ReturnType<typeof connect>> | undefined;
  let closing = false;
  void connect({ apps: [{ client, functions: functions as Parameters<typeof connect>[0]["apps"][number]["functions"] }], handleShutdownSignals: [], isolateExecution: false }).then(
    (opened) => {
      connection = opened;
      if (closing) return void opened.close().catch(() => {});
      log(`inngest: connect worker active (connection ${opened.connectionId})`);
    },
    (error: Error) => log(`inngest: connect worker stopped: ${error.message}`),
  );
  engine.onClose(async () => {
    closing = true;
    if (!connection) {
      log("inngest: connect worker was still connecting; the process exit ends its retries");
      return;
    }
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      connection.close(),
      new Promise<void>((resolve) => {
        timer = setTimeout(() => {
          log(`inngest: connect worker did not drain within ${CONNECT_CLOSE_TIMEOUT_MS} ms; closing anyway`);
          resolve();
        }, CONNECT_CLOSE_TIMEOUT_MS);
        timer.unref();
      }),
    ]);
    clearTimeout(timer);
  });
}

/**
 * Wraps the SDK's serve handler so misconfiguration fails fast and visibly (issue 14). The SDK answers a bad
 * signature with a bare 401, which Inngest retries like any error: with a wrong or rotated signing key every run would
 * die hours later, after its retries. Adding `x-inngest-no-retry: true` makes Inngest fail the run at once, and the
 * cause is logged here, where the operator looks. A sync (`PUT`) that passed the signature check is reported to
 * `onSync` with the SDK's answer: whether it could register the app with Inngest.
 */
export function guardServeHandler(handler: RequestListener, log: (line: string) => void, onSync?: (status: number, body: string) => void): RequestListener {
  const refused = (req: Parameters<RequestListener>[0]) =>
    log(`inngest: refused a ${req.method} to ${SERVE_PATH}: ${signatureProblem(req.headers["x-inngest-signature"])}; Inngest will not retry it. Check inngest.signingKey (INNGEST_SIGNING_KEY) against the key Inngest uses (dashboard, or the self-hosted server's --signing-key)`);
  return (req, res) => {
    const writeHead = res.writeHead.bind(res) as (...args: unknown[]) => typeof res;
    let status = 0;
    res.writeHead = ((code: number, ...rest: unknown[]) => {
      status = code;
      if (code === 401) res.setHeader("x-inngest-no-retry", "true");
      if (code === 401 && req.method !== "PUT") refused(req);
      return writeHead(code, ...rest);
    }) as typeof res.writeHead;
    if (req.method === "PUT") {
      // A sync: either the signature was refused, or the SDK registered this app with Inngest (or failed to).
      const end = res.end.bind(res) as (...args: unknown[]) => typeof res;
      res.end = ((...args: unknown[]) => {
        const body = typeof args[0] === "string" ? args[0] : Buffer.isBuffer(args[0]) ? args[0].toString("utf8") : "";
        if (status === 401 && /"Unauthorized"/.test(body)) refused(req);
        else onSync?.(status, body);
        return end(...args);
      }) as typeof res.end;
    }
    handler(req, res);
  };
}

/** What to check when registration fails: the Inngest v4 pitfalls users report most. */
function registrationHint(settings: GatewayConfig["inngest"]): string {
  if (settings.dev) return "Is the dev server running at the base URL?";
  if (!settings.baseUrl) return "Outside dev mode the app registers with Inngest Cloud: for a local dev server set INNGEST_DEV=1; for Cloud check INNGEST_SIGNING_KEY against the dashboard";
  return "Self-hosted: INNGEST_SIGNING_KEY must be the key the server was started with (inngest start --signing-key), and INNGEST_BASE_URL its address";
}

function signatureProblem(header: string | string[] | undefined): string {
  if (typeof header !== "string" || !header) return "no X-Inngest-Signature header (is Inngest in dev mode while this gateway is not?)";
  const params = new URLSearchParams(header);
  const ts = Number(params.get("t"));
  if (!params.get("s") || !Number.isFinite(ts)) return "a malformed X-Inngest-Signature header";
  if (Math.abs(Date.now() - ts * 1000) > 5 * 60_000) return "a signature older than 5 minutes (clock skew, or a replayed request)";
  return "a signature that matches neither the signing key nor its fallback (wrong or rotated key)";
}
