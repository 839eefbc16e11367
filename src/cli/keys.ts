import type { Command } from "commander";
import type { ConfigFlags } from "../config.js";
import { NotFoundError } from "../errors.js";
import { addApprovalKey, approvalKeysPath, migrateApprovalKeys, readApprovalKeys, removeApprovalKey } from "../http/approvalKeys.js";
import type { CommandDeps } from "./policy.js";

/**
 * `keys add|list|remove`: the Ed25519 public keys whose `v1a` signatures may approve, deny, halt or resume through the
 * webhook (issue 9 item 6). Only public keys live here: the private key stays with the reviewer or integration.
 */
export function registerKeyCommands(program: Command, deps: CommandDeps): void {
  /** The data dir, its keys first moved out of it if an older version left them there. */
  const keysDataDir = (config: { dataDir: string }): string => {
    const moved = migrateApprovalKeys(config.dataDir, deps.env);
    if (moved) deps.err(`atlas-gateway: ${moved}`);
    return config.dataDir;
  };
  const keys = program.command("keys").description("public keys (Ed25519, Standard Webhooks v1a) that may sign approvals");

  deps.withCommonOptions(keys.command("add <id> <public-key>"))
    .description("allow a reviewer or integration to sign approvals with its private key; <public-key> is whpk_ + base64 of the raw 32-byte key, <id> is recorded as the reviewer")
    .action((id: string, key: string, flags: ConfigFlags) => {
      const dataDir = keysDataDir(deps.config(flags));
      const replaced = id in readApprovalKeys(dataDir, deps.env);
      addApprovalKey(dataDir, id, key, deps.env);
      deps.out(`${replaced ? "replaced" : "added"} key '${id}' in ${approvalKeysPath(dataDir, deps.env)}: v1a signatures by it are accepted at once, and record '${id}' as the reviewer`);
    });

  deps.withCommonOptions(keys.command("list"))
    .description("list the public keys that may sign approvals (the stored ones and the config's webhook.publicKeys)")
    .action((flags: ConfigFlags) => {
      const config = deps.config(flags);
      const rows = [
        ...Object.entries(readApprovalKeys(keysDataDir(config), deps.env)).map(([id, key]) => [id, key, "keys add"]),
        ...Object.entries(config.webhook.publicKeys).map(([id, key]) => [id, key, "config"]),
      ];
      if (rows.length === 0) {
        deps.out(`no public keys: approvals are signed with the shared secret (HMAC v1${config.webhook.hmac ? "" : ", which is turned off: nothing can approve over the webhook"})`);
        return;
      }
      deps.out(deps.formatTable(["ID", "PUBLIC KEY", "FROM"], rows));
      deps.out(`HMAC (v1) signatures with the shared secret: ${config.webhook.hmac ? "accepted too (set webhook.hmac to false to accept only these keys)" : "refused"}`);
    });

  deps.withCommonOptions(keys.command("remove <id>"))
    .description("stop accepting signatures by a stored key")
    .action((id: string, flags: ConfigFlags) => {
      const dataDir = keysDataDir(deps.config(flags));
      if (!removeApprovalKey(dataDir, id, deps.env)) throw new NotFoundError(`no stored key '${id}' (see 'atlas-gateway keys list'; keys in the config file are removed there)`);
      deps.out(`removed key '${id}': its signatures are refused from now on`);
    });
}
