import { Inngest, type Logger, type Middleware } from "inngest";
import type { InngestSettings } from "../config.js";
import { ENCRYPTED_FIELD } from "./events.js";

/** Formats the SDK's pino-style `(fields, message)` or console-style arguments as one line. */
function formatArgs(args: unknown[]): string {
  const render = (value: unknown) =>
    typeof value === "string" ? value : value instanceof Error ? value.message : JSON.stringify(value, (_key, inner: unknown) => (inner instanceof Error ? inner.message : inner));
  const parts = args.map(render);
  if (args.length >= 2 && typeof args[0] === "object" && typeof args[1] === "string") parts.unshift(parts.splice(1, 1)[0]!);
  return parts.join(" ");
}

/**
 * The SDK's logger and internal logger: everything goes to our log (stderr), never to stdout, which carries the MCP
 * protocol. (The SDK's default ConsoleLogger writes info and debug to stdout.) Debug lines are dropped.
 */
export function createStderrLogger(log: (line: string) => void): Logger {
  const write = (level: string) => (...args: unknown[]) => log(`inngest ${level}: ${formatArgs(args)}`);
  return { info: write("info"), warn: write("warn"), error: write("error"), debug: () => {} };
}

export interface InngestClientOptions {
  appId: string;
  version: string;
  log: (line: string) => void;
  /** Tests pass a fetch to watch or fail the SDK's outgoing requests. */
  fetch?: typeof fetch;
}

/**
 * The Inngest client, configured only from our parsed settings: dev mode is exactly `inngest.dev` (the SDK would
 * otherwise also decide from INNGEST_DEV itself), keys and URLs are passed explicitly. With `inngest.encryptionKey`
 * the tool call in each event (`data.call`) and every step's output are encrypted before they leave the process.
 */
export async function createInngestClient(settings: InngestSettings, options: InngestClientOptions): Promise<Inngest> {
  const logger = createStderrLogger(options.log);
  const middleware = settings.encryptionKey ? [await encryption(settings.encryptionKey)] : [];
  return new Inngest({
    id: options.appId,
    isDev: settings.dev,
    ...(settings.eventKey ? { eventKey: settings.eventKey } : {}),
    ...(settings.signingKey ? { signingKey: settings.signingKey } : {}),
    ...(settings.signingKeyFallback ? { signingKeyFallback: settings.signingKeyFallback } : {}),
    ...(settings.baseUrl ? { baseUrl: settings.baseUrl } : {}),
    ...(options.fetch ? { fetch: options.fetch } : {}),
    logger,
    internalLogger: logger,
    middleware,
    appVersion: options.version,
    aiMetadata: false,
  });
}

async function encryption(key: string): Promise<Middleware.Class> {
  type EncryptionModule = typeof import("@inngest/middleware-encryption");
  // CommonJS: Node's import() exposes its exports by name, the bundled chunk only as `default`.
  const loaded = (await import("@inngest/middleware-encryption")) as EncryptionModule & { default?: EncryptionModule };
  const { encryptionMiddleware } = loaded.default ?? loaded;
  // The package is CommonJS, so its types name the SDK's .d.cts twin of the same class.
  return encryptionMiddleware({ key, eventEncryptionField: ENCRYPTED_FIELD }) as unknown as Middleware.Class;
}
