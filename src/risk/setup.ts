import { homedir } from "node:os";
import { join } from "node:path";
import type { GatewayConfig } from "../config.js";
import { instancePaths } from "../dataDir.js";
import { PACKAGE_DIR } from "../packageDir.js";
import { createModelEvaluator, type ModelEvaluator } from "./modelEvaluators.js";
import { compilePolicy } from "./policy.js";
import { createRiskEvaluator, type RiskEvaluator } from "./assess.js";
import { createSelfProtection, type ProtectedPath } from "./selfProtection.js";
import type { PinLookup } from "./toolPins.js";


/** What the gateway protects from its own agents: config files, data dir, control socket, CLI, configured extras. */
export function protectedPathsFor(config: GatewayConfig, options: { instance?: string; packageDir?: string; home?: string } = {}): ProtectedPath[] {
  const home = options.home ?? homedir();
  const expandHome = (path: string) => path.replace(/^~(?=$|[\\/])/, home);
  const paths: ProtectedPath[] = [
    { path: config.dataDir, label: "the gateway's data dir (ledgers, webhook secret, pins, control socket)" },
    ...(config.configFiles ?? []).map((path) => ({ path, label: "the gateway's config" })),
    { path: instancePaths(config.dataDir, options.instance ?? config.instance).socket, label: "the gateway's control socket" },
    // what runs when the CLI runs (in a source checkout, src/ and tests are not the running gateway)
    ...["bin", "dist", "package.json", "node_modules"].map((part) => ({ path: join(options.packageDir ?? PACKAGE_DIR, part), label: "the gateway's CLI" })),
    ...config.risk.protectedPaths.map((path) => ({ path: expandHome(path), label: "a protected path (risk.protectedPaths)" })),
  ];
  return paths;
}

export interface EvaluatorSetup {
  env: NodeJS.ProcessEnv;
  cwd?: string;
  instance?: string;
  pins?: PinLookup;
  /** false: rules, self-protection and pins only (replay, `explain --no-models`). */
  models?: boolean;
  packageDir?: string;
  now?: () => number;
}

/** Builds the one risk evaluator from config: compiled rules, model evaluators, self-protection, pins. */
export function createEvaluatorFromConfig(config: GatewayConfig, setup: EvaluatorSetup): {
  evaluator: RiskEvaluator;
  models: ModelEvaluator[];
  /** The same self-protection check, for what is not a tool call (a `file://` resource read). */
  selfProtection: ReturnType<typeof createSelfProtection>;
} {
  const home = setup.env.HOME || homedir();
  const cwd = setup.cwd ?? process.cwd();
  const cwds = [cwd, ...Object.values(config.upstreams).flatMap((upstream) => ("cwd" in upstream && upstream.cwd ? [upstream.cwd] : []))];
  const selfProtection = createSelfProtection({
    paths: protectedPathsFor(config, { home, ...(setup.instance ? { instance: setup.instance } : {}), ...(setup.packageDir ? { packageDir: setup.packageDir } : {}) }),
    home,
    cwds,
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
  return { evaluator, models, selfProtection };
}
