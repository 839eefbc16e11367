import type { GatewayConfig } from "../config.js";
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
