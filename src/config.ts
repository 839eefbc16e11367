import { existsSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { basename, isAbsolute, join, resolve } from "node:path";
import type Conf from "conf";
import * as z from "zod";
import { durationSchema, parseDuration } from "./duration.js";
import { ConfigError } from "./errors.js";
import { resolveEvaluatorSecrets, riskConfigSchema } from "./risk/config.js";

export { parseDuration };

const duration = durationSchema;

const stringMap = z.record(z.string(), z.string());

const stdioUpstream = z.strictObject({
  type: z.literal("stdio").optional(),
  command: z.string().min(1, "command must not be empty"),
  args: z.array(z.string()).default([]),
  env: stringMap.default({}),
  cwd: z.string().optional(),
});

const httpUpstream = z.strictObject({
  type: z.enum(["http", "streamable-http", "streamableHttp"]).optional(),
  url: z.url({ protocol: /^https?$/, error: "url must be an http(s) URL" }),
  headers: stringMap.default({}),
});

const upstream = z.union([stdioUpstream, httpUpstream], {
  error: "expected either { command, args?, env?, cwd? } (stdio) or { url, headers? } (Streamable HTTP)",
});

/** The `inngest` engine's settings; checked for completeness only when that engine runs (`checkInngestConfig`). */
const inngestSettings = z
  .strictObject({
    /** `serve`: Inngest calls `/api/inngest` on the listener (dev server, self-hosted, tunnel). `connect`: outbound WebSocket (Cloud behind NAT). */
    mode: z.enum(["serve", "connect"]).default("serve"),
    /** Default: `atlas-gateway-<random id kept in the data dir>`, so two installs on one Inngest account never share runs. */
    appId: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_-]{0,79}$/, "appId must be 1-80 letters, digits, '_' or '-'").optional(),
    eventKey: z.string().min(1).optional(),
    signingKey: z.string().min(1).optional(),
    signingKeyFallback: z.string().min(1).optional(),
    /** Development mode (INNGEST_DEV): no signature checks. Never implied: only this key or INNGEST_DEV turns it on. */
    dev: z.boolean().default(false),
    baseUrl: z.url({ protocol: /^https?$/, error: "baseUrl must be an http(s) URL" }).optional(),
    serveOrigin: z.url({ protocol: /^https?$/, error: "serveOrigin must be an http(s) URL" }).optional(),
    /** Encrypts tool calls in events and all step data end to end (@inngest/middleware-encryption). */
    encryptionKey: z.string().min(1).optional(),
    /** How long a low-risk call waits for its Inngest run to execute it before the gateway runs it itself. */
    dispatchTimeout: duration("duration").default(10_000),
  })
  .prefault({});

export type InngestSettings = z.output<typeof inngestSettings>;

export type StdioUpstreamConfig = z.output<typeof stdioUpstream>;
export type HttpUpstreamConfig = z.output<typeof httpUpstream>;
export type UpstreamConfig = StdioUpstreamConfig | HttpUpstreamConfig;

/** The one schema: defaults, validation and the config type. */
export const configSchema = z.strictObject({
  dataDir: z.string().min(1),
  instance: z.string().regex(/^[A-Za-z0-9_-]{1,40}$/, "instance must be 1-40 letters, digits, '_' or '-'").default("main"),
  host: z.string().min(1).default("127.0.0.1"),
  port: z.number().int().min(0).max(65535).default(8000),
  demo: z.boolean().default(false),
  engine: z.enum(["local", "inngest"]).default("local"),
  reviewTimeout: duration("duration").default(24 * 3_600_000),
  toolTimeout: duration("duration").default(5 * 60_000),
  startupTimeout: duration("duration").default(30_000),
  /** Threshold, policy rules, model evaluators and self-protection paths (see `riskConfig.ts`). */
  risk: riskConfigSchema.prefault({}),
  upstreams: z.record(z.string().min(1), upstream).default({}),
  inngest: inngestSettings,
  /**
   * Audit ledger retention (issue 12): how long closed segments are kept ("forever", the default, or a duration;
   * anything under 183 days is raised to 183 days, EU AI Act Art. 26(6)), and whether closed segments are gzipped.
   */
  retention: z
    .strictObject({
      keep: z.union([z.literal("forever"), duration("duration such as 365d, or \"forever\"")]).default("forever"),
      compress: z.boolean().default(false),
    })
    .prefault({}),
  /** Where `audit anchor` posts the ledger's signed head (a witness), and headers to send (e.g. a token). */
  anchor: z
    .strictObject({
      url: z.url({ protocol: /^https?$/, error: "anchor.url must be an http(s) URL" }).optional(),
      headers: stringMap.default({}),
    })
    .prefault({}),
});

export type GatewayConfig = z.output<typeof configSchema> & {
  /** The config files this config was read from (absolute): the gateway protects them from its own agents. */
  configFiles?: string[];
};
/** What a config file, env or flags may hold: every key optional. */
export type ConfigInput = Record<string, unknown>;

/** The OS data dir for atlas-gateway (XDG on Linux, Application Support on macOS, LOCALAPPDATA on Windows). */
export function defaultDataDir(env: NodeJS.ProcessEnv = process.env, platform = process.platform): string {
  const home = env.HOME ?? homedir();
  if (platform === "darwin") return join(home, "Library", "Application Support", "atlas-gateway");
  if (platform === "win32") return join(env.LOCALAPPDATA ?? join(home, "AppData", "Local"), "atlas-gateway", "Data");
  return join(env.XDG_DATA_HOME ?? join(home, ".local", "share"), "atlas-gateway");
}

/** Flags as commander hands them over; all optional. */
export interface ConfigFlags {
  config?: string;
  dataDir?: string;
  instance?: string;
  host?: string;
  port?: string;
  demo?: boolean;
  threshold?: string;
  reviewTimeout?: string;
  engine?: string;
}

const ENV_KEYS: Record<string, [key: string, kind: "string" | "number" | "boolean"]> = {
  ATLAS_DATA_DIR: ["dataDir", "string"],
  ATLAS_INSTANCE: ["instance", "string"],
  ATLAS_HOST: ["host", "string"],
  ATLAS_PORT: ["port", "number"],
  ATLAS_DEMO: ["demo", "boolean"],
  ATLAS_RISK_THRESHOLD: ["risk.threshold", "number"],
  ATLAS_REVIEW_TIMEOUT: ["reviewTimeout", "string"],
  ATLAS_TOOL_TIMEOUT: ["toolTimeout", "string"],
  ATLAS_ENGINE: ["engine", "string"],
  ATLAS_INNGEST_MODE: ["inngest.mode", "string"],
  ATLAS_INNGEST_APP_ID: ["inngest.appId", "string"],
  ATLAS_INNGEST_ENCRYPTION_KEY: ["inngest.encryptionKey", "string"],
  ATLAS_INNGEST_DISPATCH_TIMEOUT: ["inngest.dispatchTimeout", "string"],
  // Inngest's own variables, read here so no other module touches process.env.
  INNGEST_EVENT_KEY: ["inngest.eventKey", "string"],
  INNGEST_SIGNING_KEY: ["inngest.signingKey", "string"],
  INNGEST_SIGNING_KEY_FALLBACK: ["inngest.signingKeyFallback", "string"],
  INNGEST_BASE_URL: ["inngest.baseUrl", "string"],
  INNGEST_SERVE_ORIGIN: ["inngest.serveOrigin", "string"],
};

const FLAG_KEYS: Record<string, [key: string, kind: "string" | "number" | "boolean"]> = {
  dataDir: ["dataDir", "string"],
  instance: ["instance", "string"],
  host: ["host", "string"],
  port: ["port", "number"],
  demo: ["demo", "boolean"],
  threshold: ["risk.threshold", "number"],
  reviewTimeout: ["reviewTimeout", "string"],
  engine: ["engine", "string"],
};

/** Numbers and booleans arrive as strings from env and flags; convert what converts, keep the rest for zod to reject. */
function convert(raw: unknown, kind: "string" | "number" | "boolean"): unknown {
  if (typeof raw !== "string") return raw;
  if (kind === "number") return /^\s*-?\d+(\.\d+)?\s*$/.test(raw) ? Number(raw) : raw;
  if (kind === "boolean") {
    if (/^(1|true|yes|on)$/i.test(raw)) return true;
    if (/^(0|false|no|off|)$/i.test(raw)) return false;
  }
  return raw;
}

function setPath(target: Record<string, unknown>, path: string, value: unknown): void {
  const keys = path.split(".");
  let node = target;
  for (const key of keys.slice(0, -1)) {
    const next = node[key];
    node = (typeof next === "object" && next !== null ? next : (node[key] = {})) as Record<string, unknown>;
  }
  node[keys[keys.length - 1]!] = value;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Deep merge of config layers; `upstreams` and `risk.overrides` maps (and arrays such as `risk.rules`) are replaced whole by a higher layer. */
function mergeLayers(base: Record<string, unknown>, over: Record<string, unknown>, path = ""): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(over)) {
    const here = path ? `${path}.${key}` : key;
    const replaceWhole = here === "upstreams" || here === "risk.overrides";
    out[key] = !replaceWhole && isPlainObject(value) && isPlainObject(out[key])
      ? mergeLayers(out[key] as Record<string, unknown>, value, here)
      : value;
  }
  return out;
}

/** Reads a JSON config file; `mcpServers` (the MCP client shape) is accepted as `upstreams`. */
export function readConfigFile(file: string): ConfigInput {
  if (!existsSync(file)) throw new ConfigError([`${file}: config file not found`]);
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, "utf8"));
  } catch (error) {
    throw new ConfigError([`${file}: not valid JSON (${(error as Error).message})`]);
  }
  if (!isPlainObject(parsed)) throw new ConfigError([`${file}: expected a JSON object at the top level`]);
  return normaliseFileLayer(parsed);
}

function normaliseFileLayer(layer: Record<string, unknown>): ConfigInput {
  const { mcpServers, ...rest } = layer;
  if (mcpServers !== undefined && rest.upstreams === undefined) return { ...rest, upstreams: mcpServers };
  return rest;
}

/**
 * The user config file, kept by conf in the OS config dir (or ATLAS_CONFIG_DIR), for `config set`. Loaded on demand:
 * conf brings ajv's 2020 dialect, semver and atomic writes, about 10 ms that every gateway start would otherwise pay
 * just to read one JSON file (which `loadConfig` does itself, at `userConfigPath`).
 */
export async function openUserConfig(env: NodeJS.ProcessEnv = process.env): Promise<Conf<Record<string, unknown>>> {
  const { default: Conf } = await import("conf");
  return new Conf<Record<string, unknown>>({
    projectName: "atlas-gateway",
    projectSuffix: "",
    ...(env.ATLAS_CONFIG_DIR ? { cwd: env.ATLAS_CONFIG_DIR } : {}),
  });
}

/**
 * Where conf keeps the user config file: `<ATLAS_CONFIG_DIR>/config.json`, else `config.json` in the OS config dir
 * as conf's env-paths names it — which reads the real process environment and home dir, so this does too. A test
 * holds this equal to conf's own path.
 */
export function userConfigPath(env: NodeJS.ProcessEnv = process.env, platform = process.platform): string {
  if (env.ATLAS_CONFIG_DIR) return resolve(env.ATLAS_CONFIG_DIR, "config.json");
  const home = homedir();
  const os = process.env;
  const dir = platform === "darwin"
    ? join(home, "Library", "Preferences", "atlas-gateway")
    : platform === "win32"
      ? join(os.APPDATA || join(home, "AppData", "Roaming"), "atlas-gateway", "Config")
      : join(os.XDG_CONFIG_HOME || join(home, ".config"), "atlas-gateway");
  return resolve(dir, "config.json");
}

/** Reads the user config file as conf would: missing means empty; unreadable or invalid JSON throws. */
function readUserConfig(env: NodeJS.ProcessEnv): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(userConfigPath(env), "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return {};
    throw error;
  }
  return Object.assign({}, JSON.parse(text) as unknown);
}

export interface LoadConfigOptions {
  env?: NodeJS.ProcessEnv;
  flags?: ConfigFlags;
  /** `atlas-gateway -- <command> [args...]`: one stdio upstream. */
  shorthand?: string[];
  cwd?: string;
  /** Skip the user config file (tests, `config path`). */
  userConfig?: ConfigInput | false;
}

/**
 * Resolves the config from its layers, lowest first: defaults < user config file < `--config` file <
 * environment < flags (< the `--` shorthand upstream). Every problem is reported at once, as `path: what is wrong`.
 */
export function loadConfig(options: LoadConfigOptions = {}): GatewayConfig {
  const env = options.env ?? process.env;
  const flags = options.flags ?? {};
  const cwd = options.cwd ?? process.cwd();
  const sources = new Map<string, string>();

  let userLayer: ConfigInput = {};
  const configFiles: string[] = [];
  if (options.userConfig === undefined) {
    try {
      configFiles.push(userConfigPath(env));
      userLayer = normaliseFileLayer(readUserConfig(env));
    } catch (error) {
      throw new ConfigError([`user config ${userConfigPath(env)}: ${(error as Error).message} (fix it, or move it aside and use 'atlas-gateway config set')`]);
    }
  } else if (options.userConfig) userLayer = normaliseFileLayer(options.userConfig);

  const configFile = flags.config ?? env.ATLAS_CONFIG;
  if (configFile) configFiles.push(resolve(cwd, configFile));
  const fileLayer = configFile ? readConfigFile(resolve(cwd, configFile)) : {};

  const envLayer: Record<string, unknown> = {};
  for (const [name, [key, kind]] of Object.entries(ENV_KEYS)) {
    const raw = env[name];
    if (raw === undefined || raw === "") continue;
    setPath(envLayer, key, convert(raw, kind));
    sources.set(key, name);
  }
  applyInngestDev(env.INNGEST_DEV, envLayer, sources);

  const flagLayer: Record<string, unknown> = {};
  for (const [name, [key, kind]] of Object.entries(FLAG_KEYS)) {
    const raw = (flags as Record<string, unknown>)[name];
    if (raw === undefined) continue;
    setPath(flagLayer, key, convert(raw, kind));
    sources.set(key, `--${name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`);
  }

  let merged = mergeLayers(mergeLayers(mergeLayers({ dataDir: defaultDataDir(env) }, userLayer), fileLayer), envLayer);
  merged = mergeLayers(merged, flagLayer);
  if (options.shorthand && options.shorthand.length > 0) {
    const [command, ...args] = options.shorthand as [string, ...string[]];
    merged = { ...merged, upstreams: { ...(merged.upstreams as object | undefined), [nameForCommand(command, args)]: { command, args } } };
  }

  const result = configSchema.safeParse(merged);
  if (!result.success) {
    throw new ConfigError(
      result.error.issues.map((issue) => {
        const path = issue.path.join(".");
        const source = sources.get(path);
        return `${path || "config"}${source ? ` (from ${source})` : ""}: ${issue.message}`;
      }),
    );
  }
  const config: GatewayConfig = result.data;
  const secretProblems = resolveEvaluatorSecrets(config.risk, env);
  if (secretProblems.length > 0) throw new ConfigError(secretProblems);
  config.dataDir = isAbsolute(config.dataDir) ? config.dataDir : resolve(cwd, config.dataDir);
  config.configFiles = configFiles;
  return config;
}

/**
 * `INNGEST_DEV` as the Inngest SDK reads it: a boolean (`1`, `true`, `0`, ...) or the dev server's URL, which also
 * means dev mode. A URL becomes `inngest.baseUrl` unless `INNGEST_BASE_URL` names one.
 */
function applyInngestDev(raw: string | undefined, envLayer: Record<string, unknown>, sources: Map<string, string>): void {
  if (raw === undefined || raw === "") return;
  const flag = convert(raw, "boolean");
  if (typeof flag === "boolean") {
    setPath(envLayer, "inngest.dev", flag);
  } else {
    setPath(envLayer, "inngest.dev", true);
    if ((envLayer.inngest as Record<string, unknown> | undefined)?.baseUrl === undefined) {
      setPath(envLayer, "inngest.baseUrl", raw.includes("://") ? raw : `http://${raw}`);
      sources.set("inngest.baseUrl", "INNGEST_DEV");
    }
  }
  sources.set("inngest.dev", "INNGEST_DEV");
}

const LAUNCHERS = new Set(["npx", "npm", "pnpm", "bunx", "uvx", "uv", "node", "python", "python3", "deno", "bun", "docker"]);

/** A readable upstream name for the `--` shorthand: `npx -y @scope/server-x@1 /tmp` -> `server-x`. */
export function nameForCommand(command: string, args: string[]): string {
  let candidate = basename(command).replace(/\.(exe|cmd|js|mjs|py)$/i, "");
  if (LAUNCHERS.has(candidate.toLowerCase())) {
    const target = args.find((arg) => !arg.startsWith("-") && arg !== "exec" && arg !== "run");
    if (target) candidate = basename(target.replace(/@[^/@]*$/, "")).replace(/\.(js|mjs|py)$/i, "");
  }
  const cleaned = candidate.replace(/[^A-Za-z0-9_-]/g, "_").slice(0, 32);
  return cleaned || "upstream";
}
