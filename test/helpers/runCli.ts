import { execFile } from "node:child_process";
import { BIN } from "./rawMcpProcess.js";

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the installed CLI (`BIN`) once with `args` and `env`; resolves with its exit code and output, never rejects. */
export function runCli(args: string[], env: NodeJS.ProcessEnv, options: { maxBuffer?: number } = {}): Promise<CliRun> {
  return new Promise((done) => {
    execFile(process.execPath, [BIN, ...args], { env, ...options }, (error, stdout, stderr) => {
      done({ code: error ? Number((error as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}
