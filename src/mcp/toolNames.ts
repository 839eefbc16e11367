import { createHash } from "node:crypto";

/**
 * A name that passes `^[a-zA-Z0-9_-]{1,64}$`: invalid characters become `_`, long names keep a hash suffix. Its own
 * module so that reviewer commands can name tools without loading the MCP SDK that `upstreams.ts` needs.
 */
export function exposedToolName(raw: string, forceHash = false): string {
  let name = raw.replace(/[^a-zA-Z0-9_-]/g, "_") || "tool";
  if (name.length > 64 || forceHash) name = `${name.slice(0, 55)}_${createHash("sha256").update(raw).digest("hex").slice(0, 8)}`;
  return name;
}
