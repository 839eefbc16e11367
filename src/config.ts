import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { expandHome } from "./homePath.js";
import { basename, dirname, isAbsolute, join, resolve } from "node:path";
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
    /**
     * What happens to a held call whose Inngest run cannot carry it (its request event was refused, no run started,
     * or the run failed or was cancelled): `expire` it at its review deadline (approved calls are abandoned, never
     * run), or run an approved call on the `local` engine with the decision already recorded, at most once (issue 14).
     */
    onRunFailure: z.enum(["expire", "local"]).default("expire"),
    /** How long after a held call's event was accepted the gateway waits for its run to start before saying so. */
    runStartTimeout: duration("duration").default(60_000),
    /**
     * The largest request event sent, in bytes (Inngest Cloud's free plan accepts 256 KiB, self-hosted 3 MiB).
     * A bigger call is sent by reference: its arguments stay in the ledger, the event carries their digest.
     */
    maxEventBytes: z.number().int().min(4096).default(256 * 1024),
  })
  .prefault({});

export type InngestSettings = z.output<typeof inngestSettings>;

/**
 * Where reviewers are told about held calls, decisions, executions, expiries and halts (issue 9; see `notify/`). Built
 * when a config has sinks (`z.lazy`), not at every cold start (issue 12).
 */
const notifySink = () => z.discriminatedUnion("type", [
  z.strictObject({
    type: z.literal("webhook"),
    url: z.url({ protocol: /^https?$/, error: "url must be an http(s) URL" }),
    /** Standard Webhooks signing secret: the receiver verifies every notification with it. */
    secret: z.string().regex(/^whsec_[A-Za-z0-9+/=]{16,}$/, "secret must be a Standard Webhooks secret: whsec_ followed by base64 (e.g. from 'openssl rand -base64 32')"),
  }),
  z.strictObject({
    type: z.literal("slack"),
    /** A Slack incoming-webhook URL (https://hooks.slack.com/services/…); it is itself a secret. */
    url: z.url({ protocol: /^https?$/, error: "url must be an http(s) URL" }),
  }),
], { error: "each notify sink needs \"type\": \"webhook\" (with url and secret) or \"slack\" (with url)" });

export type NotifySinkConfig = z.output<ReturnType<typeof notifySink>>;

/** Bounds on a tool call's arguments, checked before the call is recorded (issue 11; see `argumentBounds.ts`). */
const limitsSettings = z
  .strictObject({
    argumentDepth: z.number().int().min(1).max(10_000).default(64),
    argumentBytes: z.number().int().min(1024).max(1024 * 1024 * 1024).default(64 * 1024 * 1024),
  })
  .prefault({});

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
  /** Largest JSON-RPC message accepted from the agent or an upstream (bytes); a bigger one gets a JSON-RPC error. */
  maxMessageBytes: z.number().int().min(1024).default(64 * 1024 * 1024),
  /** Threshold, policy rules, model evaluators and self-protection paths (see `riskConfig.ts`). */
  risk: riskConfigSchema.prefault({}),
  upstreams: z.record(z.string().min(1), upstream).default({}),
  inngest: inngestSettings,
  /** The signed approval webhook (`/webhook/approval`, `/webhook/halt`). */
  webhook: z.strictObject({
    /**
     * Public keys (id -> `whpk_…`, raw Ed25519, base64) whose `v1a` signatures may approve; the id is recorded as the
     * reviewer. More can be added with `atlas-gateway keys add`.
     */
    publicKeys: z.record(z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/, "a key id is 1-64 letters, digits, '.', '_', '@' or '-'"), z.string().regex(/^whpk_[A-Za-z0-9+/]{43}=$/, "expected whpk_ followed by the base64 of a 32-byte Ed25519 public key")).default({}),
    /** Accept HMAC (`v1`) signatures made with the shared `whsec_` secret. Turn off so only public-key holders can approve. */
    hmac: z.boolean().default(true),
  }).prefault({}),
  /** Notification sinks (webhook, Slack); delivery never delays or fails a tool call. */
  notify: z.lazy(() => z.array(notifySink())).default([]),
  /** The address reviewers reach this gateway's listener at (e.g. through a tunnel): notifications link to `<publicUrl>/review`. */
  publicUrl: z.url({ protocol: /^https?$/, error: "publicUrl must be an http(s) URL" }).optional(),
  limits: limitsSettings,
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
  ATLAS_MAX_MESSAGE_BYTES: ["maxMessageBytes", "number"],
  ATLAS_ENGINE: ["engine", "string"],
  ATLAS_PUBLIC_URL: ["publicUrl", "string"],
  ATLAS_ARGUMENT_DEPTH: ["limits.argumentDepth", "number"],
  ATLAS_ARGUMENT_BYTES: ["limits.argumentBytes", "number"],
  ATLAS_INNGEST_MODE: ["inngest.mode", "string"],
  ATLAS_INNGEST_APP_ID: ["inngest.appId", "string"],
  ATLAS_INNGEST_ENCRYPTION_KEY: ["inngest.encryptionKey", "string"],
  ATLAS_INNGEST_DISPATCH_TIMEOUT: ["inngest.dispatchTimeout", "string"],
  ATLAS_INNGEST_ON_RUN_FAILURE: ["inngest.onRunFailure", "string"],
  ATLAS_INNGEST_RUN_START_TIMEOUT: ["inngest.runStartTimeout", "string"],
  ATLAS_INNGEST_MAX_EVENT_BYTES: ["inngest.maxEventBytes", "number"],
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

const PROTOTYPE_KEYS = new Set(["__proto__", "constructor", "prototype"]);

/** `__proto__`, `constructor` and `prototype` are never config keys (see `findPrototypeKeys`). */
export function isPrototypeKey(key: string): boolean {
  return PROTOTYPE_KEYS.has(key);
}

/**
 * `path: what is wrong` for every prototype key (`__proto__`, `constructor`, `prototype`) anywhere in a parsed config
 * value. JSON.parse keeps `__proto__` as an own key, and merging layers would then assign it — replacing an object's
 * prototype, so settings no schema saw reach the config (issue 11: a `__proto__` key set the threshold to 95).
 * Iterative: a config file is input too.
 */
export function findPrototypeKeys(value: unknown, at = ""): string[] {
  const problems: string[] = [];
  const stack: [unknown, string][] = [[value, at]];
  while (stack.length > 0) {
    const [current, path] = stack.pop()!;
    if (current === null || typeof current !== "object") continue;
    for (const [key, item] of Object.entries(current)) {
      const here = path ? `${path}.${key}` : key;
      if (PROTOTYPE_KEYS.has(key)) problems.push(`${here}: "${key}" is not allowed as a config key (it would change the defaults of every object, not a setting)`);
      else stack.push([item, here]);
    }
  }
  return problems.sort();
}

function refusePrototypeKeys(value: unknown, source: string): void {
  const problems = findPrototypeKeys(value);
  if (problems.length > 0) throw new ConfigError(problems.map((problem) => `${source}: ${problem}`));
}

/** Reads a JSON config file; `mcpServers` (the MCP client shape) is accepted as `upstreams`. */
export function readConfigFile(file: string): ConfigInput {
  if (!existsSync(file)) throw new ConfigError([`${file}: config file not found`], "create the file, or correct the path given with --config / ATLAS_CONFIG");
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, "utf8"));
  } catch (error) {
    const where = /line \d+ column \d+/.exec((error as Error).message)?.[0];
    throw new ConfigError([`${file}: not valid JSON (${(error as Error).message})`], `fix the JSON syntax${where ? ` at ${where}` : ""} of ${file} (JSON allows no comments or trailing commas, and needs double quotes)`);
  }
  if (!isPlainObject(parsed)) throw new ConfigError([`${file}: expected a JSON object at the top level`], `make ${file} one JSON object, e.g. {"upstreams": {…}}`);
  refusePrototypeKeys(parsed, file);
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
    ...(env.ATLAS_CONFIG_DIR ? { cwd: expandHome(env.ATLAS_CONFIG_DIR, env) } : {}),
  });
}

/**
 * Where conf keeps the user config file: `<ATLAS_CONFIG_DIR>/config.json`, else `config.json` in the OS config dir
 * as conf's env-paths names it — which reads the real process environment and home dir, so this does too. A test
 * holds this equal to conf's own path.
 */
export function userConfigPath(env: NodeJS.ProcessEnv = process.env, platform = process.platform): string {
  if (env.ATLAS_CONFIG_DIR) return resolve(expandHome(env.ATLAS_CONFIG_DIR, env), "config.json");
  const home = homedir();
  const os = process.env;
  const dir = platform === "darwin"
    ? join(home, "Library", "Preferences", "atlas-gateway")
    : platform === "win32"
      ? join(os.APPDATA || join(home, "AppData", "Roaming"), "atlas-gateway", "Config")
      : join(os.XDG_CONFIG_HOME || join(home, ".config"), "atlas-gateway");
  return resolve(dir, "config.json");
}

/**
 * Where a data dir's approval credentials (the webhook HMAC secret) live: `credentials/<digest of the data dir>/` in the
 * user config dir, never the data dir itself. Upstreams are often rooted at a directory that contains the data dir
 * (a filesystem server on the home dir, a project dir holding `--data-dir ./data`); keeping the secret elsewhere means
 * no upstream root given for data reaches it by accident, and self-protection guards this path too (issue 11).
 * One directory per data dir, so gateways on different data dirs keep their own secrets.
 */
export function credentialsDir(dataDir: string, env: NodeJS.ProcessEnv = process.env): string {
  const digest = createHash("sha256").update(resolve(dataDir)).digest("hex").slice(0, 16);
  return join(dirname(userConfigPath(env)), "credentials", digest);
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
    let raw: Record<string, unknown>;
    try {
      configFiles.push(userConfigPath(env));
      raw = readUserConfig(env);
    } catch (error) {
      throw new ConfigError([`user config ${userConfigPath(env)}: ${(error as Error).message} (fix it, or move it aside and use 'atlas-gateway config set')`], `fix the JSON of ${userConfigPath(env)}, or move it aside and use 'atlas-gateway config set'`);
    }
    refusePrototypeKeys(raw, `user config ${userConfigPath(env)}`);
    userLayer = normaliseFileLayer(raw);
  } else if (options.userConfig) {
    refusePrototypeKeys(options.userConfig, "user config");
    userLayer = normaliseFileLayer(options.userConfig);
  }

  let configFile = flags.config ?? env.ATLAS_CONFIG;
  if (configFile) {
    try {
      configFile = expandHome(configFile, env);
    } catch (error) {
      throw new ConfigError([`config${flags.config ? " (from --config)" : " (from ATLAS_CONFIG)"}: ${(error as Error).message}`]);
    }
  }
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

  // Parsed once per process: zod's JIT fast path (generated with `new Function` on a schema's first parse) costs more
  // to build than it saves on one parse, and this parse sits on every cold start before `initialize` (issue 12).
  const result = configSchema.safeParse(merged, { jitless: true });
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
  const pathProblems: string[] = [];
  const expand = (value: string, path: string) => {
    try {
      return expandHome(value, env);
    } catch (error) {
      pathProblems.push(`${path}${sources.get(path) ? ` (from ${sources.get(path)})` : ""}: ${(error as Error).message}`);
      return value;
    }
  };
  config.dataDir = expand(config.dataDir, "dataDir");
  for (const [name, upstream] of Object.entries(config.upstreams)) {
    if ("command" in upstream && upstream.cwd) upstream.cwd = expand(upstream.cwd, `upstreams.${name}.cwd`);
  }
  config.risk.protectedPaths = config.risk.protectedPaths.map((path, index) => expand(path, `risk.protectedPaths.${index}`));
  if (pathProblems.length > 0) throw new ConfigError(pathProblems);
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
