import { Command, Option } from "commander";
import type { ConfigFlags } from "../config.js";
import { ConfigError } from "../errors.js";
import { VERSION } from "../version.js";
import { runServe, type CliIO } from "./serveStart.js";

export type { CliIO };

/** The root command: name, version, help and error output shared by the whole CLI and the serve-only start. */
export function newProgram(io: CliIO): Command {
  return new Command()
    .name("atlas-gateway")
    .description("Human oversight for AI agents' tool calls: an MCP gateway that holds high-risk calls for review and keeps a tamper-evident ledger.")
    .version(VERSION, "-v, --version")
    .enablePositionalOptions()
    .showHelpAfterError("(run with --help for usage)")
    .configureOutput({ writeOut: (text) => io.out(text), writeErr: (text) => io.err(text) })
    .exitOverride();
}

/** `-c/--config` and `-d/--data-dir`, which every command that reads the config or the data dir takes. */
export function withCommonOptions(command: Command): Command {
  return command
    .option("-c, --config <file>", "project config file (JSON; env ATLAS_CONFIG)")
    .option("-d, --data-dir <dir>", "ledger and runtime files (env ATLAS_DATA_DIR; default: the OS data dir)");
}

/**
 * Registers `serve`, the default command (for a plain start, `main` reads the arguments with `parseServeArgs` and
 * comes here only when that declines). `commandNames` lists the CLI's commands for the error an upstream without
 * `--` gets; it may load them (the serve-only start has only `serve` registered, and needs the list only then).
 */
export function registerServeCommand(program: Command, io: CliIO, argv: readonly string[], commandNames: () => string[] | Promise<string[]>): void {
  withCommonOptions(program.command("serve", { isDefault: true }))
    .description("run the gateway as a stdio MCP server (the default command). Upstream shorthand: atlas-gateway [options] -- <command> [args...]")
    .argument("[upstream...]", "one stdio upstream command, after --")
    .option("--demo", "add the built-in demo tools (check_payment_status, request_payment_extension, modify_welfare_record)")
    .option("--host <host>", "listener host (env ATLAS_HOST; default 127.0.0.1)")
    .option("--port <port>", "listener port, 0 = any free port (env ATLAS_PORT; default 8000)")
    .option("--threshold <score>", "risk score at or above which a call is held (env ATLAS_RISK_THRESHOLD; default 70)")
    .option("--review-timeout <duration>", "how long a held call waits before it expires as denied (env ATLAS_REVIEW_TIMEOUT; default 24h)")
    .addOption(new Option("--engine <engine>", "durable engine (env ATLAS_ENGINE)").choices(["local", "inngest"]))
    .option("--instance <name>", "ledger/instance name in the data dir (env ATLAS_INSTANCE; default main)")
    .passThroughOptions()
    .action(async (upstream: string[], flags: ConfigFlags) => {
      if (upstream.length > 0 && !argv.includes("--")) {
        throw new ConfigError([`unknown command '${upstream[0]}'. Commands: ${(await commandNames()).join(", ")}. An upstream command goes after --, e.g. atlas-gateway -- npx -y @modelcontextprotocol/server-filesystem ~/Documents`]);
      }
      await runServe(io, upstream, flags);
    });
}
