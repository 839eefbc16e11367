import { statSync } from "node:fs";
import { homedir } from "node:os";
import { basename, join, resolve } from "node:path";
import { credentialsDir, type GatewayConfig } from "../config.js";
import { instancePaths } from "../dataDir.js";
import { PACKAGE_DIR } from "../packageDir.js";
import { createModelEvaluator, type ModelEvaluator } from "./modelEvaluators.js";
import { compilePolicy } from "./policy.js";
import { createRiskEvaluator, type RiskEvaluator } from "./assess.js";
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
 * own notion of its root) cannot hide them: the credential and ledger file names (segments, head, signing key), and
 * the data dir's own entries under its name (`atlas-gateway/ledgers`).
 */
export function protectedSuffixesFor(config: GatewayConfig): ProtectedPath[] {
  const dataDirName = basename(resolve(config.dataDir));
  return [
    { path: "webhook-secret", label: "the gateway's approval credentials (by name)" },
    { path: "atlas-gateway/credentials", label: "the gateway's approval credentials (by name)" },
    { path: "ledgers/*.jsonl", label: "a gateway ledger (by name)" },
    // ledger v2 (issue 12): a directory of segments, a signed head next to it, and the key that signs both
    { path: "ledgers/*/*.jsonl", label: "a gateway ledger segment (by name)" },
    { path: "ledgers/*/*.jsonl.gz", label: "a gateway ledger segment (by name)" },
    { path: "ledgers/*.head", label: "a gateway ledger's signed head (by name)" },
    { path: "keys/ledger.key", label: "the gateway's ledger signing key (by name)" },
    ...["ledgers", "run", "keys", "webhook-secret"].map((entry) => ({ path: `${dataDirName}/${entry}`, label: "the gateway's data dir (by name)" })),
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
}

/** Builds the one risk evaluator from config: compiled rules, model evaluators, self-protection, pins. */
export function createEvaluatorFromConfig(config: GatewayConfig, setup: EvaluatorSetup): { evaluator: RiskEvaluator; models: ModelEvaluator[] } {
  const home = setup.env.HOME || homedir();
  const cwd = setup.cwd ?? process.cwd();
  const bases = upstreamBases(config, cwd, home);
  const roots = setup.roots;
  const selfProtection = createSelfProtection({
    paths: protectedPathsFor(config, { home, env: setup.env, ...(setup.instance ? { instance: setup.instance } : {}), ...(setup.packageDir ? { packageDir: setup.packageDir } : {}) }),
    suffixes: protectedSuffixesFor(config),
    home,
    cwds: roots ? () => [...bases, ...roots()] : bases,
    env: setup.env,
  });
  const models = setup.models === false ? [] : config.risk.evaluators.map((item) => createModelEvaluator(item, setup.now));
  const evaluator = createRiskEvaluator({
    policy: compilePolicy(config.risk),
    models,
    selfProtection,
    ...(setup.pins ? { pins: setup.pins } : {}),
    threshold: config.risk.threshold,
  });
  return { evaluator, models };
}
