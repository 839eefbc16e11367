import { statSync } from "node:fs";
import { homedir } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import { credentialsDir, type GatewayConfig } from "../config.js";
import { instancePaths } from "../dataDir.js";
import { PACKAGE_DIR } from "../packageDir.js";
import { createModelEvaluator, type ModelEvaluator } from "./modelEvaluators.js";
import { compilePolicy } from "./policy.js";
import { createRiskEvaluator, type RiskEvaluator } from "./assess.js";
import { ArgumentPreparer } from "./largeArguments.js";
import { createSelfProtection, type ProtectedPath } from "./selfProtection.js";
import type { PinLookup } from "./toolPins.js";


/** What the gateway protects from its own agents: config files, data dir, control socket, CLI, configured extras. */
export function protectedPathsFor(config: GatewayConfig, options: { instance?: string; packageDir?: string; home?: string; env?: NodeJS.ProcessEnv } = {}): ProtectedPath[] {
  const home = options.home ?? homedir();
  const expandHome = (path: string) => path.replace(/^~(?=$|[\\/])/, home);
  const paths: ProtectedPath[] = [
    { path: config.dataDir, label: "the gateway's data dir (ledgers, pins, control socket)" },
    { path: credentialsDir(config.dataDir, options.env ?? { HOME: home }), label: "the gateway's approval credentials" },
    ...(config.configFiles ?? []).map((path) => ({ path, label: "the gateway's config" })),
    { path: instancePaths(config.dataDir, options.instance ?? config.instance).socket, label: "the gateway's control socket" },
    // what runs when the CLI runs (in a source checkout, src/ and tests are not the running gateway)
    ...["bin", "dist", "package.json", "node_modules"].map((part) => ({ path: join(options.packageDir ?? PACKAGE_DIR, part), label: "the gateway's CLI" })),
    ...config.risk.protectedPaths.map((path) => ({ path: expandHome(path), label: "a protected path (risk.protectedPaths)" })),
  ];
  return paths;
}

/**
 * Protected names matched wherever they appear in a resolved path, so a base the gateway does not know (an upstream's
 * own notion of its root) cannot hide them: the credential and ledger file names (segments, head, signing key), the data dir's own entries under
 * its name (`atlas-gateway/ledgers`), and the config files under their directory's name. The files that grant
 * approval power (reviewers, public keys, the halt fact, the config's `webhook.publicKeys` and `notify`) are among
 * them: after a plain `move_file` of a directory that holds the data dir (a destructive call a reviewer may approve
 * without seeing what it holds), a write to `<moved>/data/reviewers.json` must still be held as critical.
 */
export function protectedSuffixesFor(config: GatewayConfig): ProtectedPath[] {
  const dataDirName = basename(resolve(config.dataDir));
  const parentAndName = (path: string) => `${basename(dirname(resolve(path)))}/${basename(path)}`;
  return [
    { path: "webhook-secret", label: "the gateway's approval credentials (by name)" },
    // bare names too: `find ~ -name reviewers.json -exec cp evil.json {} \;` names no directory at all
    ...["reviewers.json", "approval-keys.json", "halt.json"].map((path) => ({ path, label: "the gateway's reviewers, keys or halt state (by name)" })),
    { path: "atlas-gateway/credentials", label: "the gateway's approval credentials (by name)" },
    { path: "ledgers/*.jsonl", label: "a gateway ledger (by name)" },
    // ledger v2 (issue 12): a directory of segments, a signed head next to it, and the key that signs both
    { path: "ledgers/*/*.jsonl", label: "a gateway ledger segment (by name)" },
    { path: "ledgers/*/*.jsonl.gz", label: "a gateway ledger segment (by name)" },
    { path: "ledgers/*.head", label: "a gateway ledger's signed head (by name)" },
    { path: "keys/ledger.key", label: "the gateway's ledger signing key (by name)" },
    // a shell upstream's $PPID is the gateway: its environ keeps what the gateway started with (an exported
    // ATLAS_REVIEWER_TOKEN, model and Inngest keys), which scrubbing the upstreams' env cannot take back
    // where MCP clients list their servers: a server the agent adds there reaches it without the gateway
    ...[".mcp.json", ".cursor/mcp.json", ".vscode/mcp.json", "claude_desktop_config.json"].map((path) => ({ path, label: "an MCP client's server list (a server added there bypasses the gateway)" })),
    { path: "proc/*/environ", label: "a process's environment (the gateway's keys and a reviewer's token)" },
    ...["ledgers", "run", "keys", "webhook-secret", "reviewers.json", "approval-keys.json", "halt.json"].map((entry) => ({ path: `${dataDirName}/${entry}`, label: "the gateway's data dir (by name)" })),
    ...[...new Set(["atlas-gateway/config.json", ...(config.configFiles ?? []).map(parentAndName)])].map((path) => ({ path, label: "the gateway's config (by name)" })),
  ];
}

/**
 * Every directory an upstream may resolve a relative path against: the gateway's cwd, each stdio upstream's `cwd`,
 * and each of its arguments that names an existing directory (a filesystem server's allowed dirs are its arguments;
 * a script path is not a base).
 */
export function upstreamBases(config: GatewayConfig, cwd: string, home: string): string[] {
  const bases = new Set([cwd]);
  for (const upstream of Object.values(config.upstreams)) {
    if (!("command" in upstream)) continue;
    const upstreamCwd = upstream.cwd ? resolve(cwd, upstream.cwd.replace(/^~(?=$|[\\/])/, home)) : cwd;
    bases.add(upstreamCwd);
    for (const arg of upstream.args) {
      const value = arg.replace(/^--?[A-Za-z][\w-]*=/, "").replace(/^~(?=$|[\\/])/, home);
      if (!value || /^-/.test(value)) continue;
      const candidate = resolve(upstreamCwd, value);
      if (statSync(candidate, { throwIfNoEntry: false })?.isDirectory()) bases.add(candidate);
    }
  }
  return [...bases];
}

export interface EvaluatorSetup {
  env: NodeJS.ProcessEnv;
  cwd?: string;
  instance?: string;
  pins?: PinLookup;
  /** The agent's MCP roots as file paths (a filesystem server may use them as its allowed dirs); asked at every call. */
  roots?: () => string[];
  /** false: rules, self-protection and pins only (replay, `explain --no-models`). */
  models?: boolean;
  packageDir?: string;
  now?: () => number;
  /** Where a stderr line goes (the argument worker could not start). */
  log?: (line: string) => void;
}

/** Builds the one risk evaluator from config: compiled rules, model evaluators, self-protection, pins. */
export function createEvaluatorFromConfig(config: GatewayConfig, setup: EvaluatorSetup): {
  evaluator: RiskEvaluator;
  models: ModelEvaluator[];
  /** The same self-protection check, for what is not a tool call (a `file://` resource read). */
  selfProtection: ReturnType<typeof createSelfProtection>;
  /** Prepares large arguments off the event loop; the evaluator uses its verdicts (issue 10). Close it at shutdown. */
  preparer: ArgumentPreparer;
} {
  const home = setup.env.HOME || homedir();
  const cwd = setup.cwd ?? process.cwd();
  const bases = upstreamBases(config, cwd, home);
  const roots = setup.roots;
  const cwds = roots ? () => [...bases, ...roots()] : () => bases;
  const options = {
    paths: protectedPathsFor(config, { home, env: setup.env, ...(setup.instance ? { instance: setup.instance } : {}), ...(setup.packageDir ? { packageDir: setup.packageDir } : {}) }),
    suffixes: protectedSuffixesFor(config),
    home,
    env: { ...setup.env },
  };
  const selfProtection = createSelfProtection({ ...options, cwds });
  const preparer = new ArgumentPreparer({ options, cwds, check: selfProtection, ...(setup.log ? { log: setup.log } : {}) });
  const models = setup.models === false ? [] : config.risk.evaluators.map((item) => createModelEvaluator(item, setup.now));
  const evaluator = createRiskEvaluator({
    policy: compilePolicy(config.risk),
    models,
    selfProtection: preparer.selfProtection,
    ...(setup.pins ? { pins: setup.pins } : {}),
    threshold: config.risk.threshold,
  });
  return { evaluator, models, selfProtection, preparer };
}
