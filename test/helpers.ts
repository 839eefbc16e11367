import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import type { Executor, GovernedCall } from "../src/governance/engine.js";
import { instancePaths } from "../src/dataDir.js";
import { LocalEngine, type LocalEngineOptions } from "../src/governance/localEngine.js";
import { createRulesEvaluator } from "../src/risk/assess.js";

export function tempDir(prefix = "atlas-test-"): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** An executor that records every call it runs and answers with a text result. */
export function recordingExecutor(): Executor & { calls: { upstream: string; tool: string; args: Record<string, unknown> }[] } {
  const calls: { upstream: string; tool: string; args: Record<string, unknown> }[] = [];
  const executor = (async (call) => {
    calls.push(call);
    return { content: [{ type: "text", text: `ran ${call.tool} ${JSON.stringify(call.args)}` }] } satisfies CallToolResult;
  }) as Executor & { calls: typeof calls };
  executor.calls = calls;
  return executor;
}

export function openEngine(dataDir: string, executor: Executor, over: Partial<LocalEngineOptions> = {}): LocalEngine {
  return LocalEngine.open({
    ledgerPath: instancePaths(dataDir, "main").ledger,
    instance: "main",
    evaluator: createRulesEvaluator({ threshold: 70, overrides: {} }),
    threshold: 70,
    reviewTimeoutMs: 3_600_000,
    executor,
    version: "test",
    ...over,
  });
}

export const heldCall = (args: Record<string, unknown> = { path: "/tmp/x" }): GovernedCall => ({
  upstream: "fs", tool: "write_file", name: "write_file", args, annotations: { destructiveHint: true },
});
export const lowCall = (args: Record<string, unknown> = { path: "/tmp/x" }): GovernedCall => ({
  upstream: "fs", tool: "read_file", name: "read_file", args, annotations: { readOnlyHint: true },
});
