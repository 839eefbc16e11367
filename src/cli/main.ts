import type { Command } from "commander";
import { AtlasError, ConfigError } from "../errors.js";
import { parseServeArgs, runServe, type CliIO } from "./serveStart.js";

export type { CliIO };

const defaultIO: CliIO = {
  out: (text) => void process.stdout.write(text.endsWith("\n") ? text : `${text}\n`),
  err: (text) => void process.stderr.write(text.endsWith("\n") ? text : `${text}\n`),
  env: process.env,
};

/**
 * Every top-level command but `serve`, and commander's `help`: after a leading `--`, such a word is dispatched to
 * that command, not run as an upstream. Kept equal to `buildProgram`'s commands by test/cli/servesOnly.test.ts.
 */
export const OTHER_COMMANDS: readonly string[] = ["approve", "deny", "pending", "show", "audit", "config", "tools", "policy", "halt", "resume", "keys", "reviewers", "doctor", "demo", "help"];

const HELP_OR_VERSION = new Set(["-h", "--help", "-v", "--version"]);

/**
 * Whether `argv` certainly starts the gateway: the command is `serve` (named, or the default), and no help or version
 * flag appears anywhere. Such a start (every MCP client launch) registers only `serve`, so it never loads the other
 * commands' modules (issue 12: cold start); every other invocation builds the whole program, so what it prints and
 * how it exits are what they were. Mirrors commander's dispatch (`parseOptions` with positional options): a first
 * word that is not an option names a command (or is an unknown one); after a leading `--`, the next word may still
 * name a command; a first option that is not the program's (`-v`, `-h`, alone or leading a group) goes to `serve`.
 */
export function servesOnly(argv: readonly string[]): boolean {
  if (argv.some((arg) => HELP_OR_VERSION.has(arg))) return false;
  const first = argv[0];
  if (first === undefined || first === "serve") return true;
  if (first === "--") return argv[1] === undefined || !OTHER_COMMANDS.includes(argv[1]);
  return first.startsWith("-") && !/^-[hv]/.test(first);
}

/** The commander program for `argv`: only `serve` when that is certainly what runs (`servesOnly`), otherwise the whole CLI. */
export async function programFor(io: CliIO, argv: readonly string[]): Promise<Command> {
  const loadAll = async () => (await import("./program.js")).buildProgram(io, argv);
  if (!servesOnly(argv)) return loadAll();
  const { newProgram, registerServeCommand } = await import("./serveCommand.js");
  const program = newProgram(io);
  registerServeCommand(program, io, argv, async () => (await loadAll()).commands.map((command) => command.name()));
  return program;
}

/** Whether a command's failure is commander's own (usage error, help or version shown); loads commander only then. */
async function isCommanderError(error: unknown): Promise<boolean> {
  return error instanceof Error && error instanceof (await import("commander")).CommanderError;
}

/**
 * Runs the CLI. A plain gateway start (every MCP client launch) is read by `parseServeArgs` and runs without loading
 * commander at all; everything else goes through commander. The one catch: typed errors become their message and
 * exit code; anything else is a bug, reported in one line.
 */
export async function main(argv: string[], io: CliIO = defaultIO): Promise<number> {
  try {
    const plain = servesOnly(argv) ? parseServeArgs(argv) : undefined;
    if (plain) await runServe(io, plain.upstream, plain.flags);
    else await (await programFor(io, argv)).parseAsync(argv, { from: "user" });
    return 0;
  } catch (error) {
    if (await isCommanderError(error)) return (error as { exitCode: number }).exitCode === 0 ? 0 : 2;
    if (error instanceof ConfigError) {
      for (const problem of error.problems) io.err(`atlas-gateway: ${problem}`);
      return error.exitCode;
    }
    if (error instanceof AtlasError) {
      io.err(`atlas-gateway: ${error.message}`);
      return error.exitCode;
    }
    const fsError = error as NodeJS.ErrnoException;
    if (typeof fsError.code === "string" && typeof fsError.syscall === "string") {
      // a file the command reads is missing, unreadable or in the wrong shape (say, a file where a ledger directory
      // belongs, which the gateway itself answers by refusing every call): name it, not "unexpected error"
      io.err(`atlas-gateway: ${fsError.message}: check that path ('atlas-gateway doctor' checks the data dir and its ledgers)`);
      return 1;
    }
    io.err(`atlas-gateway: unexpected error: ${(error as Error).message ?? String(error)}`);
    if (io.env.ATLAS_DEBUG) io.err(String((error as Error).stack));
    return 1;
  }
}
