import { accessSync, constants, existsSync, mkdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { loadConfig, type ConfigFlags, type GatewayConfig } from "../config.js";
import { ConfigError } from "../errors.js";
import { instancePaths } from "../dataDir.js";
import { lastGatewayEngine, listInstances } from "../governance/instance.js";
import { scanLedger } from "../ledger/ledger.js";
import { UpstreamSet } from "../mcp/upstreams.js";
import { VERSION } from "../version.js";
import { webhookSecretPath } from "../http/webhook.js";

export interface DoctorOptions {
  env: NodeJS.ProcessEnv;
  flags: ConfigFlags;
  out: (line: string) => void;
  /** How the Inngest check reaches its URLs (tests pass their own). */
  fetch?: typeof fetch;
}

type Check = { ok: boolean; line: string; fix?: string };

/** Runs every check, prints one ✓/✗ line each (with the fix), and returns how many failed. */
export async function runDoctor(options: DoctorOptions): Promise<number> {
  const checks: Check[] = [];
  const report = (check: Check) => {
    checks.push(check);
    options.out(`${check.ok ? "✓" : "✗"} ${check.line}${check.fix ? `\n    fix: ${check.fix}` : ""}`);
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
    report({ ok: false, line: `config invalid:\n    ${problems.join("\n    ")}`, fix: "correct the listed keys (see README, Configuration)" });
    return checks.filter((check) => !check.ok).length;
  }

  report(checkDataDir(config.dataDir));
  report(checkSecret(config.dataDir));
  const instances = listInstances(config.dataDir);
  if (instances.length === 0) report({ ok: true, line: "ledger: none yet (created when the gateway first starts)" });
  for (const instance of instances) {
    const scan = scanLedger(instancePaths(config.dataDir, instance).ledger, () => {});
    report(scan.problem
      ? { ok: false, line: `ledger '${instance}': ${scan.problem.message}`, fix: "run 'atlas-gateway audit verify' and restore the ledger from a backup; a torn tail is repaired at the next start" }
      : { ok: true, line: `ledger '${instance}': ${scan.last ? scan.last.seq + 1 : 0} records, chain intact` });
  }
  report(await checkPort(config.host, config.port));
  // The gateway's engine may come only from the MCP client's --engine flag: its ledger says what it last ran.
  const ledgerEngine = instances.map((instance) => lastGatewayEngine(config.dataDir, instance)).find((engine) => engine === "inngest");
  const engine = ledgerEngine ?? config.engine;
  report({ ok: true, line: `engine: ${engine}${engine !== config.engine ? ` (the gateway's ledger says so; this command's config says ${config.engine})` : ""}` });
  if (engine === "inngest") {
    const { checkInngestEngine } = await import("../inngest/index.js");
    for (const check of await checkInngestEngine(config, options.fetch)) report(check);
  }

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

function checkDataDir(dataDir: string): Check {
  try {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    const probe = join(dataDir, `.doctor-${process.pid}`);
    writeFileSync(probe, "ok");
    rmSync(probe);
    return { ok: true, line: `data dir writable: ${dataDir}` };
  } catch (error) {
    return { ok: false, line: `data dir not writable: ${dataDir} (${(error as Error).message})`, fix: "set --data-dir / ATLAS_DATA_DIR to a directory you own" };
  }
}

function checkSecret(dataDir: string): Check {
  const path = webhookSecretPath(dataDir);
  if (!existsSync(path)) return { ok: false, line: "webhook secret missing", fix: "start the gateway once, or run 'atlas-gateway config get webhook.secret' to create it" };
  try {
    accessSync(path, constants.R_OK);
    const mode = statSync(path).mode & 0o777;
    if (process.platform !== "win32" && (mode & 0o077) !== 0) {
      return { ok: false, line: `webhook secret ${path} is readable by others (mode ${mode.toString(8)})`, fix: `chmod 600 ${path}` };
    }
    return { ok: true, line: `webhook secret present (${path}, mode 600)` };
  } catch (error) {
    return { ok: false, line: `webhook secret unreadable: ${(error as Error).message}`, fix: `check the permissions of ${path}` };
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
      const body = (await response.json()) as { status?: string };
      if (body.status === "ATLAS Governance Gateway Running") return { ok: true, line: `listener port ${host}:${port} is served by a running atlas-gateway` };
    } catch {
      // not ours
    }
    return { ok: false, line: `listener port ${host}:${port} is in use by another program`, fix: "set --port / ATLAS_PORT to a free port (0 = any)" };
  }
  return { ok: false, line: `listener port ${host}:${port}: ${free.message}`, fix: "set --host / --port to an address this machine can bind" };
}
