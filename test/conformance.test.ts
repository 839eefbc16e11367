import { spawn } from "node:child_process";
import { createRequire } from "node:module";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { tempDir } from "./helpers.js";
import { startHttpBridge, type HttpBridge } from "./helpers/httpBridge.js";
import { BIN } from "./helpers/rawMcpProcess.js";

const FIXTURE = fileURLToPath(new URL("./fixtures/conformance-upstream.mjs", import.meta.url));
const CONFORMANCE = createRequire(import.meta.url).resolve("@modelcontextprotocol/conformance/dist/index.js");

interface Outcome {
  scenarios: Map<string, { passed: number; failed: number }>;
  output: string;
}

/** Runs the official suite's active server scenarios against `url`; the summary per scenario is its result. */
async function runSuite(url: string): Promise<Outcome> {
  const child = spawn(process.execPath, [CONFORMANCE, "server", "--url", url], { stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => (output += chunk));
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (output += chunk));
  await new Promise((resolve) => child.once("exit", resolve));
  const scenarios = new Map<string, { passed: number; failed: number }>();
  for (const match of output.matchAll(/^[✓✗]\s+([\w-]+): (\d+) passed, (\d+) failed$/gmu)) {
    scenarios.set(match[1]!, { passed: Number(match[2]), failed: Number(match[3]) });
  }
  return { scenarios, output };
}

const passing = (outcome: Outcome) => [...outcome.scenarios].filter(([, result]) => result.failed === 0).map(([name]) => name).sort();

const bridges: HttpBridge[] = [];
afterAll(async () => {
  for (const bridge of bridges) await bridge.close();
});

describe("the official MCP conformance suite (server scenarios)", () => {
  it("passes through the gateway every scenario the fixture upstream passes directly", async () => {
    const direct = await startHttpBridge(process.execPath, [FIXTURE], process.env);
    bridges.push(direct);
    const alone = await runSuite(direct.url);
    expect(alone.scenarios.size, alone.output).toBeGreaterThanOrEqual(30);

    // One gateway per HTTP session, all on one data dir, with an allow-all policy (nothing is held).
    const dir = tempDir();
    writeFileSync(join(dir, "config.json"), JSON.stringify({ risk: { threshold: 101 } }));
    const gatewayArgs = [BIN, "--data-dir", join(dir, "data"), "--config", join(dir, "config.json"), "--port", "0", "--", process.execPath, FIXTURE];
    const viaGateway = await startHttpBridge(process.execPath, gatewayArgs, { ...process.env, HOME: dir });
    bridges.push(viaGateway);
    const through = await runSuite(viaGateway.url);

    expect(passing(alone)).toHaveLength(alone.scenarios.size);
    expect(passing(through), `${through.output}\n--- gateway stderr ---\n${viaGateway.stderr().slice(-4000)}`).toEqual(passing(alone));
  }, 240_000);
});
