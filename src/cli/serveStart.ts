import { loadConfig, type ConfigFlags } from "../config.js";
import { VERSION } from "../version.js";

/** Where the CLI writes and what environment it reads: the process's by default, a test's own in tests. */
export interface CliIO {
  out: (text: string) => void;
  err: (text: string) => void;
  env: NodeJS.ProcessEnv;
}

/** `serve`'s options that take a value, by every spelling parsed here, and the flag each sets (as `serveCommand.ts` registers them). */
const VALUE_OPTIONS: Readonly<Record<string, Exclude<keyof ConfigFlags, "demo">>> = {
  "-c": "config",
  "--config": "config",
  "-d": "dataDir",
  "--data-dir": "dataDir",
  "--host": "host",
  "--port": "port",
  "--threshold": "threshold",
  "--review-timeout": "reviewTimeout",
  "--engine": "engine",
  "--instance": "instance",
};
const ENGINES: readonly string[] = ["local", "inngest"];

/**
 * The upstream command and flags of a plain gateway start, read without commander (issue 12: cold start, every MCP
 * client launch), or undefined for anything this does not read exactly as commander does — a positional word before
 * `--`, an unknown or grouped option, a value that is missing, empty or starts with `-`, an engine that is not a
 * choice — which `main` then hands to commander, so its errors and help stay what they are. Call it only for an argv
 * that `servesOnly` accepts. test/cli/servesOnly.test.ts checks it against commander on generated argvs.
 */
export function parseServeArgs(argv: readonly string[]): { upstream: string[]; flags: ConfigFlags } | undefined {
  // After a leading `--`, commander parses no options: a command word (here only `serve`) is dispatched, the rest is operands.
  if (argv[0] === "--") return { upstream: argv.slice(argv[1] === "serve" ? 2 : 1), flags: {} };
  const flags: ConfigFlags = {};
  for (let i = argv[0] === "serve" ? 1 : 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--") return { upstream: argv.slice(i + 1), flags };
    if (arg === "--demo") {
      flags.demo = true;
      continue;
    }
    const equals = arg.startsWith("--") ? arg.indexOf("=") : -1;
    const key = VALUE_OPTIONS[equals > 0 ? arg.slice(0, equals) : arg];
    if (key === undefined) return undefined;
    const value = equals > 0 ? arg.slice(equals + 1) : argv[++i];
    if (value === undefined || value === "" || value.startsWith("-")) return undefined;
    if (key === "engine" && !ENGINES.includes(value)) return undefined;
    flags[key] = value;
  }
  return { upstream: [], flags };
}

/**
 * Runs the gateway for `serve` until it shuts down: the config (flags, then the `--` shorthand upstream), then
 * `runGateway`, imported only now so that one-shot commands never load the MCP SDK.
 */
export async function runServe(io: CliIO, upstream: string[], flags: ConfigFlags): Promise<void> {
  const resolved = loadConfig({ env: io.env, flags, shorthand: upstream });
  // serve, doctor and demo are imported when run: a one-shot command (approve, pending, audit verify) then never
  // loads the MCP SDK, and a reviewer's `approve` starts in about half the time
  const { runGateway } = await import("../mcp/serve.js");
  const running = await runGateway(resolved, { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr, env: io.env }, VERSION);
  const stop = (signal: string) => void running.close(signal);
  process.once("SIGINT", () => stop("SIGINT"));
  process.once("SIGTERM", () => stop("SIGTERM"));
  process.once("SIGHUP", () => stop("SIGHUP"));
  await running.closed;
}
