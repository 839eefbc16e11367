import { Option, type Command } from "commander";
import type { GatewayConfig } from "../config.js";
import { AtlasError, ConfigError } from "../errors.js";
import { listInstances, readLock } from "../governance/instance.js";
import { addReviewer, issueSignInLink, listReviewers, removeReviewer, reviewerForKey, REVIEWER_ROLES, type IssuedCredentials, type ReviewerRole } from "../http/reviewers.js";
import type { CommandDeps } from "./policy.js";

/**
 * Where the review page is: a running gateway's listener on this data dir (its lock names host and port), else the
 * configured one. A wildcard bind address is not something a browser can open, so it becomes loopback.
 */
export function reviewPageUrl(config: GatewayConfig): { url: string; running: boolean } {
  for (const instance of listInstances(config.dataDir)) {
    const holder = readLock(config.dataDir, instance);
    if (holder?.kind === "gateway" && holder.port) return { url: pageUrl(holder.host ?? config.host, holder.port), running: true };
  }
  return { url: pageUrl(config.host, config.port), running: false };
}

function pageUrl(host: string, port: number): string {
  const reachable = host === "0.0.0.0" || host === "::" || host === "" ? "127.0.0.1" : host;
  return `http://${reachable.includes(":") ? `[${reachable}]` : reachable}:${port}/review`;
}

/**
 * Who a CLI decision is recorded under (issue 9): the OS user by default, or a registered reviewer when `--reviewer`
 * names one *and* ATLAS_REVIEWER_TOKEN holds that reviewer's key — a name anyone can type is not an identity.
 */
export function cliReviewer(dataDir: string, claimed: string | undefined, env: NodeJS.ProcessEnv, osUser: () => string): { reviewer: string; auth: "os-user" | "reviewer-token" } {
  if (claimed === undefined) return { reviewer: osUser(), auth: "os-user" };
  const key = env.ATLAS_REVIEWER_TOKEN ?? "";
  if (!key) {
    throw new ConfigError([`--reviewer ${claimed}: set ATLAS_REVIEWER_TOKEN to ${claimed}'s reviewer key (printed by 'atlas-gateway reviewers add'), or leave out --reviewer to decide as your OS user`]);
  }
  const reviewer = reviewerForKey(dataDir, key, claimed);
  if (!reviewer) throw new AtlasError(`--reviewer ${claimed}: ATLAS_REVIEWER_TOKEN is not ${claimed}'s reviewer key in ${dataDir} (check --data-dir; 'atlas-gateway reviewers list')`, 2);
  if (reviewer.role !== "approver") throw new AtlasError(`${claimed} is a viewer: only approvers decide`, 2);
  return { reviewer: reviewer.id, auth: "reviewer-token" };
}

/** `reviewers add|link|list|remove`: people with their own credentials for the review page and CLI decisions. */
export function registerReviewerCommands(program: Command, deps: CommandDeps): void {
  const reviewers = program.command("reviewers").description("manage reviewers: people who sign in to the review page (approvers decide, viewers see)");

  const printLink = (config: GatewayConfig, issued: IssuedCredentials) => {
    const { url, running } = reviewPageUrl(config);
    deps.out(`sign-in link for ${issued.reviewer.id} (works once, for 24 hours; send it only to them):`);
    deps.out(`  ${url}#signin=${issued.signInToken}`);
    if (!running) deps.out(`  (no gateway is running on ${config.dataDir} now: the link works once one listens there)`);
  };

  deps.withCommonOptions(reviewers.command("add <id>"))
    .description("add a reviewer; prints their one-time sign-in link for the review page and their reviewer key")
    .option("--name <name>", "their full name, shown on the page")
    .addOption(new Option("--role <role>", "approver (decides) or viewer (sees only)").choices([...REVIEWER_ROLES]).default("approver"))
    .action((id: string, flags: { name?: string; role: ReviewerRole; config?: string; dataDir?: string }) => {
      const config = deps.config(flags);
      const issued = addReviewer(config.dataDir, { id, role: flags.role, ...(flags.name ? { name: flags.name } : {}) });
      deps.out(`added reviewer ${id}${flags.name ? ` (${flags.name})` : ""} as ${flags.role}`);
      printLink(config, issued);
      deps.out(`reviewer key for ${id} (shown once; only its hash is stored). It authenticates CLI decisions and GET /api/pending:`);
      deps.out(`  ${issued.key}`);
      deps.out(`  e.g. ATLAS_REVIEWER_TOKEN=<key> atlas-gateway approve <ref> --reviewer ${id}; integrations send 'Authorization: Bearer <key>'`);
    });

  deps.withCommonOptions(reviewers.command("link <id>"))
    .description("issue a new one-time sign-in link for a reviewer (the previous unused link stops working)")
    .action((id: string, flags: { config?: string; dataDir?: string }) => {
      const config = deps.config(flags);
      printLink(config, issueSignInLink(config.dataDir, id));
    });

  deps.withCommonOptions(reviewers.command("list"))
    .description("list reviewers: id, name, role, added, sign-in link state")
    .option("--json", "print JSON")
    .action((flags: { json?: boolean; config?: string; dataDir?: string }) => {
      const { dataDir } = deps.config(flags);
      const list = listReviewers(dataDir);
      if (flags.json) {
        deps.out(JSON.stringify(list.map((reviewer) => ({ id: reviewer.id, name: reviewer.name, role: reviewer.role, created_at: reviewer.createdAt, sign_in_link_open_until: reviewer.signIn?.expiresAt })), null, 2));
        return;
      }
      if (list.length === 0) {
        deps.out("no reviewers: add one with 'atlas-gateway reviewers add <id> --name \"…\"' (the review page stays closed until you do)");
        return;
      }
      deps.out(deps.formatTable(["ID", "NAME", "ROLE", "ADDED", "SIGN-IN LINK"], list.map((reviewer) => [
        reviewer.id,
        reviewer.name ?? "-",
        reviewer.role,
        reviewer.createdAt.slice(0, 16).replace("T", " "),
        reviewer.signIn ? `unused, until ${reviewer.signIn.expiresAt.slice(0, 16).replace("T", " ")}` : "used (or none)",
      ])));
    });

  deps.withCommonOptions(reviewers.command("remove <id>"))
    .description("remove a reviewer: their sessions end at once and their key stops working")
    .action((id: string, flags: { config?: string; dataDir?: string }) => {
      const { dataDir } = deps.config(flags);
      const removed = removeReviewer(dataDir, id);
      deps.out(`removed reviewer ${removed.id}; their sessions are ended and their key no longer works`);
    });
}
