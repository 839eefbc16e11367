import type { GatewayConfig } from "../config.js";
import { instancePaths } from "../dataDir.js";
import { listInstances } from "../governance/instance.js";
import { RequestTable } from "../governance/requests.js";
import { scanLedger } from "../ledger/ledger.js";
import { checkInngestConfig, devServerCommand, inngestBaseUrl, resolveAppId } from "./settings.js";

export interface InngestCheck {
  ok: boolean;
  line: string;
  fix?: string;
}

/**
 * `doctor` for the `inngest` engine: mode, app id, keys, the Inngest URL(s) reachable, and how to start a local dev
 * server. Needs no SDK: a plain HTTP request shows whether Inngest answers.
 */
export async function checkInngestEngine(config: GatewayConfig, probe: typeof fetch = fetch): Promise<InngestCheck[]> {
  const settings = config.inngest;
  const checks: InngestCheck[] = [];
  const app = resolveAppId(settings, config.dataDir, config.instance);
  const target = settings.dev ? "dev mode: no signature checks, local dev server" : settings.baseUrl ? "self-hosted or custom Inngest" : "Inngest Cloud";
  checks.push({ ok: true, line: `inngest: mode ${settings.mode}, app '${app}' (${target})${settings.encryptionKey ? ", events and steps encrypted" : ""}` });

  const problems = checkInngestConfig(config);
  if (problems.length) for (const problem of problems) checks.push({ ok: false, line: problem, fix: "set the key (see README, Inngest engine)" });
  else checks.push({ ok: true, line: settings.dev ? "inngest: dev mode is on (INNGEST_DEV), keys not required" : "inngest: event key and signing key present and well-formed" });

  if (settings.mode === "connect" && typeof WebSocket === "undefined") {
    checks.push({ ok: false, line: "inngest: connect mode needs the built-in WebSocket (Node 22.4 or newer)", fix: "upgrade Node, or use inngest.mode serve" });
  }

  const urls = settings.baseUrl || settings.dev ? [inngestBaseUrl(settings)] : ["https://api.inngest.com", "https://inn.gs"];
  for (const url of urls) checks.push(await checkReachable(url, probe, settings.dev));

  if (!settings.dev && !settings.baseUrl) {
    checks.push({ ok: true, line: "inngest: not in dev mode and no INNGEST_BASE_URL, so the app registers with Inngest Cloud; a local dev server needs INNGEST_DEV=1 (else its sync registers this app with Cloud, and runs never reach it)" });
  }
  checks.push(...checkLedgers(config));

  if (settings.mode === "serve") {
    checks.push({
      ok: true,
      line: `inngest: local development: ${devServerCommand(config.port === 0 ? "<port>" : config.port)}${config.port === 0 ? " (port 0: use the port from the gateway's 'served on' log line)" : ""}`,
    });
  }
  return checks;
}

async function checkReachable(url: string, probe: typeof fetch, dev: boolean): Promise<InngestCheck> {
  try {
    const response = await probe(url, { method: "GET", signal: AbortSignal.timeout(3000), redirect: "manual" });
    await response.body?.cancel().catch(() => {});
    return { ok: true, line: `inngest: ${url} reachable (HTTP ${response.status})` };
  } catch (error) {
    const cause = (error as { cause?: { code?: string } }).cause?.code ?? (error as Error).message;
    return {
      ok: false,
      line: `inngest: ${url} not reachable (${cause})`,
      fix: dev ? "start the dev server (command below) or set INNGEST_DEV / INNGEST_BASE_URL to its URL" : "check the network, proxy, or INNGEST_BASE_URL",
    };
  }
}

const FIXES: Record<string, string> = {
  event_refused: "the call's event was refused by Inngest's event API (see the cause); raise inngest.maxEventBytes only if your plan accepts bigger events, or set inngest.onRunFailure to local",
  run_not_started: "sync the app with Inngest (dashboard 'Sync app', or the dev server command below) and check that Inngest can reach this gateway",
  run_ended: "the run is gone; approve to run it here with inngest.onRunFailure local, or let it expire and call the tool again",
};

/**
 * What the ledgers say about this engine: whether Inngest ever synced and called the gateway, and every open call
 * its run cannot carry (issue 14: surfaced in `doctor` with the cause). Reads only the local ledgers.
 */
function checkLedgers(config: GatewayConfig): InngestCheck[] {
  const checks: InngestCheck[] = [];
  for (const instance of listInstances(config.dataDir)) {
    const table = new RequestTable();
    let started: string | undefined;
    let synced: string | undefined;
    let syncFailed: string | undefined;
    let stepped = false;
    scanLedger(instancePaths(config.dataDir, instance).ledger, (record) => {
      table.apply(record);
      if (record.type === "gateway.started") started = record.data.engine === "inngest" ? record.ts : undefined;
      else if (record.type === "inngest.synced") [synced, syncFailed] = [record.ts, undefined];
      else if (record.type === "inngest.sync_failed") syncFailed = `HTTP ${String(record.data.status)}: ${String(record.data.cause)}`;
      else if (record.type === "workflow.step") stepped = true;
    });
    if (!started) continue;
    if (syncFailed) checks.push({ ok: false, line: `inngest: instance '${instance}': the last sync failed to register the app (${syncFailed})`, fix: "check INNGEST_SIGNING_KEY and INNGEST_BASE_URL (self-hosted: the server's --signing-key), then sync again" });
    else if (synced || stepped) checks.push({ ok: true, line: `inngest: instance '${instance}': ${synced ? `app synced (last at ${synced})` : "Inngest has called this gateway's steps"}` });
    else checks.push({ ok: false, line: `inngest: instance '${instance}': Inngest has never synced this app or called its steps, so no run can start`, fix: FIXES.run_not_started! });
    for (const view of table.byRef.values()) {
      if (!view.problem || (view.status !== "pending" && view.status !== "approved")) continue;
      checks.push({ ok: false, line: `inngest: ${view.ref} (${view.name}, ${view.status}): ${view.problem.cause}`, fix: FIXES[view.problem.kind]! });
    }
  }
  return checks;
}
