import { createHash } from "node:crypto";
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
  const reachable: InngestCheck[] = [];
  for (const url of urls) reachable.push(await checkReachable(url, probe, settings.dev));
  checks.push(...reachable);
  if (!settings.dev && reachable[0]?.ok && !problems.length) {
    for (const [name, key] of [["signingKey", settings.signingKey], ["signingKeyFallback", settings.signingKeyFallback]] as const) {
      if (key) checks.push(await probeSigningKey(urls[0]!, name, key, probe));
    }
  }

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

/**
 * A signed probe: asks Inngest's API for the data of a run that does not exist, authenticated as the SDK is (bearer
 * token = the hashed signing key; inngest-js `InngestApi.getRunBatch`). Inngest answers 401 to a key it does not
 * know, and 404 to a known key: so a wrong key (another environment's, or not the self-hosted server's
 * `--signing-key`) shows here instead of as runs that never start.
 */
async function probeSigningKey(apiUrl: string, name: string, key: string, probe: typeof fetch): Promise<InngestCheck> {
  const url = new URL("/v0/runs/01ATLASDOCTORPROBE000000000/batch", apiUrl);
  try {
    const response = await probe(url, { headers: { authorization: `Bearer ${hashSigningKey(key)}` }, signal: AbortSignal.timeout(5000) });
    await response.body?.cancel().catch(() => {});
    if (response.status === 401 || response.status === 403) {
      return { ok: false, line: `inngest: Inngest at ${apiUrl} does not accept inngest.${name} (signed probe: HTTP ${response.status})`, fix: "copy the signing key of this environment from the Inngest dashboard (self-hosted: the key the server was started with); a wrong key makes every sync and run fail" };
    }
    return { ok: true, line: `inngest: Inngest at ${apiUrl} accepts inngest.${name} (signed probe: HTTP ${response.status})` };
  } catch (error) {
    return { ok: false, line: `inngest: signed probe of inngest.${name} at ${apiUrl} failed (${(error as Error).message})`, fix: "check the network and INNGEST_BASE_URL" };
  }
}

/** The bearer token the SDK authenticates with: the key's `signkey-<env>-` prefix kept, its hex bytes SHA-256-hashed. */
function hashSigningKey(key: string): string {
  const prefix = /^signkey-\w+-/.exec(key)?.[0] ?? "";
  return `${prefix}${createHash("sha256").update(Buffer.from(key.slice(prefix.length), "hex")).digest("hex")}`;
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
    // (a connect worker registers when it connects, without a sync request: only steps show that it works)
    else if (config.inngest.mode === "serve") checks.push({ ok: false, line: `inngest: instance '${instance}': Inngest has never synced this app or called its steps, so no run can start`, fix: FIXES.run_not_started! });
    for (const view of table.byRef.values()) {
      if (!view.problem || (view.status !== "pending" && view.status !== "approved")) continue;
      checks.push({ ok: false, line: `inngest: ${view.ref} (${view.name}, ${view.status}): ${view.problem.cause}`, fix: FIXES[view.problem.kind]! });
    }
  }
  return checks;
}
