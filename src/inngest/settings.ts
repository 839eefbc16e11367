import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { GatewayConfig, InngestSettings } from "../config.js";

/** The longest `step.waitForEvent` timeout Inngest accepts: 366 days (the server rejects longer ones). */
export const MAX_WAIT_MS = 366 * 86_400_000;

/** Where the embedded listener serves the Inngest function. */
export const SERVE_PATH = "/api/inngest";

/** `signkey-<env>-<hex>` as Inngest Cloud shows it, or the bare hex a self-hosted server is started with. */
const SIGNING_KEY = /^(?:signkey-[A-Za-z0-9]+-)?(?:[0-9a-f]{2}){16,}$/;
const LOOPBACK = new Set(["127.0.0.1", "::1", "localhost"]);

/**
 * What stops the `inngest` engine from running safely with these settings, one `key (source): problem` line each.
 * Pure: `serve` refuses to start on any, `doctor` prints them.
 */
export function checkInngestConfig(config: Pick<GatewayConfig, "host" | "inngest"> & Partial<Pick<GatewayConfig, "reviewTimeout">>): string[] {
  const settings = config.inngest;
  const problems: string[] = [];
  if (config.reviewTimeout !== undefined && config.reviewTimeout > MAX_WAIT_MS) {
    problems.push(`reviewTimeout (ATLAS_REVIEW_TIMEOUT): ${Math.round(config.reviewTimeout / 86_400_000)} days is longer than an Inngest wait can last (366 days; Inngest Cloud's free plan: 7 days); every held run would fail before notifying anyone. Use a shorter review timeout`);
  }
  if (!settings.dev) {
    if (!settings.signingKey) {
      problems.push("inngest.signingKey (INNGEST_SIGNING_KEY): missing. Outside dev mode Inngest signs every request to this gateway with it; set it, or set INNGEST_DEV=1 for a local dev server");
    }
    if (!settings.eventKey) {
      problems.push("inngest.eventKey (INNGEST_EVENT_KEY): missing. Outside dev mode the gateway needs it to send events; set it, or set INNGEST_DEV=1 for a local dev server");
    }
  }
  for (const [key, env, value] of [["signingKey", "INNGEST_SIGNING_KEY", settings.signingKey], ["signingKeyFallback", "INNGEST_SIGNING_KEY_FALLBACK", settings.signingKeyFallback]] as const) {
    if (value !== undefined && !SIGNING_KEY.test(value)) problems.push(`inngest.${key} (${env}): not a signing key; expected signkey-<env>-<hex> as the Inngest dashboard shows it (or, self-hosted, the hex key the server was started with)`);
  }
  if (settings.eventKey !== undefined && !/^[A-Za-z0-9_-]+$/.test(settings.eventKey)) {
    problems.push("inngest.eventKey (INNGEST_EVENT_KEY): malformed; an event key is letters, digits, '-' and '_' only (check for quotes or spaces)");
  }
  if (settings.encryptionKey !== undefined && settings.encryptionKey.trim().length < 16) {
    problems.push("inngest.encryptionKey (ATLAS_INNGEST_ENCRYPTION_KEY): too short; use at least 16 random characters (e.g. `openssl rand -base64 32`)");
  }
  if (settings.dev && settings.mode === "serve" && !LOOPBACK.has(config.host)) {
    problems.push(`inngest.dev (INNGEST_DEV): dev mode skips signature checks, so anyone who reaches ${config.host} could inject step results (approvals); bind the listener to 127.0.0.1 or turn dev mode off`);
  }
  return problems;
}

/** A short random id for this data dir, created once (mode 0600): the default app id is built from it. */
export function loadOrCreateInstallId(dataDir: string): string {
  const path = join(dataDir, "inngest-install-id");
  if (existsSync(path)) return readFileSync(path, "utf8").trim();
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const id = randomBytes(5).toString("hex");
  try {
    writeFileSync(path, `${id}\n`, { mode: 0o600, flag: "wx" });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    return readFileSync(path, "utf8").trim();
  }
  return id;
}

/**
 * This instance's Inngest app id: `inngest.appId`, or `atlas-gateway-<install id>`; other instances than `main`
 * add `-<instance>`. Unique per install and instance, because workers of one app id share its runs.
 */
export function resolveAppId(settings: InngestSettings, dataDir: string, instance: string): string {
  const base = settings.appId ?? `atlas-gateway-${loadOrCreateInstallId(dataDir)}`;
  return instance === "main" ? base : `${base}-${instance}`;
}

/** Where the SDK sends events and API calls: the configured URL, the dev server's default, or Inngest Cloud. */
export function inngestBaseUrl(settings: InngestSettings): string {
  return settings.baseUrl ?? (settings.dev ? "http://localhost:8288" : "https://api.inngest.com");
}

/** The command that starts a local dev server pointed at this gateway. */
export function devServerCommand(port: number | string): string {
  return `npx inngest-cli dev -u http://127.0.0.1:${port}${SERVE_PATH}`;
}
