import { homedir } from "node:os";
import { join } from "node:path";

/**
 * Expands a leading `~` or `~/` to the home directory, as a shell would before the program saw the path: without it
 * `--data-dir ~/atlas` from a config file or an MCP client's JSON creates a directory literally named `~` (issue 10).
 * `~user` cannot be expanded portably and is refused. Anything else is returned unchanged.
 * @throws Error naming the path when it starts with `~user`.
 */
export function expandHome(path: string, env: NodeJS.ProcessEnv = process.env): string {
  if (path === "~") return env.HOME ?? homedir();
  if (path.startsWith("~/") || path.startsWith("~\\")) return join(env.HOME ?? homedir(), path.slice(2));
  if (path.startsWith("~")) throw new Error(`'${path}': only '~' and '~/…' can be expanded; write the full path`);
  return path;
}
