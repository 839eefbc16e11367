import { createServer, type IncomingMessage } from "node:http";
import type { AddressInfo } from "node:net";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { tempDir } from "../helpers.js";
import { ledgerRecords } from "../helpers/ledgerRecords.js";
import { RawMcpProcess } from "../helpers/rawMcpProcess.js";

// Model evaluators through the installed CLI (issue 13: both failed in the bundle with "request is not a function"
// while the source-level tests passed). A real HTTP server on 127.0.0.1 plays the model; the gateway must reach it,
// and its score must decide the call.

interface Seen {
  path: string;
  headers: IncomingMessage["headers"];
  body: Record<string, unknown>;
}

const cleanups: (() => Promise<unknown> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function fakeModel(answer: (seen: Seen) => unknown): Promise<{ url: string; seen: Seen[] }> {
  const seen: Seen[] = [];
  const server = createServer((req, res) => {
    let text = "";
    req.on("data", (chunk) => (text += chunk));
    req.on("end", () => {
      const entry = { path: req.url ?? "", headers: req.headers, body: JSON.parse(text) as Record<string, unknown> };
      seen.push(entry);
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(answer(entry)));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  cleanups.push(() => {
    server.closeAllConnections();
    server.close();
  });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen };
}

async function gatewayWith(evaluator: Record<string, unknown>): Promise<{ gateway: RawMcpProcess; dataDir: string }> {
  const dataDir = tempDir("atlas-e2e-model-");
  const config = join(dataDir, "atlas.json");
  writeFileSync(config, JSON.stringify({ risk: { evaluators: [{ ...evaluator, retries: 0, timeout: "20s", cacheTtl: "0s" }] } }));
  const gateway = new RawMcpProcess(["serve", "--demo", "--port", "0", "--data-dir", dataDir, "--config", config], {
    PATH: process.env.PATH,
    HOME: dataDir,
    ATLAS_CONFIG_DIR: join(dataDir, "config"),
  });
  cleanups.push(async () => {
    if (gateway.child.exitCode === null) await gateway.close();
  });
  await gateway.initialize();
  return { gateway, dataDir };
}

const text = (response: { result?: Record<string, unknown> }) => JSON.stringify(response.result?.content ?? "");
type Assessment = { score?: number; evaluator?: string; reasons?: string[] };
/** Each call's assessment, in order: its own record, or inside `request.admitted` for an auto-approved call (issue 12). */
const assessed = (dataDir: string) =>
  ledgerRecords(dataDir).flatMap((record) =>
    record.type === "request.assessed" ? [record.data as Assessment] : record.type === "request.admitted" ? [record.data.assessment as Assessment] : []);

describe("model evaluators in the installed CLI", () => {
  it("http: the model is called with the masked call and its score holds a call the rules would let through", async () => {
    const model = await fakeModel((seen) => ({
      risk_score: (seen.body.arguments as { note?: string }).note === "raise" ? 91 : 10,
      classification: "critical",
      action: "review",
      rationale: "the model says so",
    }));
    const { gateway, dataDir } = await gatewayWith({ type: "http", url: `${model.url}/score`, name: "risk-slm", headers: { "x-model-key": "k-123" } });

    const low = await gateway.callTool("check_payment_status", { beneficiary_id: "B-1001", note: "calm" });
    expect(text(low)).not.toMatch(/PENDING REVIEW/);
    const raised = await gateway.callTool("check_payment_status", { beneficiary_id: "B-1001", note: "raise" });
    expect(text(raised)).toMatch(/PENDING REVIEW \(Ref: evt_[0-9a-f]{8}\)/);

    expect(model.seen).toHaveLength(2);
    expect(model.seen[1]).toMatchObject({ path: "/score", headers: { "x-model-key": "k-123" }, body: { tool: "check_payment_status", arguments: { note: "raise" } } });
    const [first, second] = assessed(dataDir);
    expect(first!.score).toBeLessThan(70);
    expect(second).toMatchObject({ score: 91 });
    expect(JSON.stringify(second)).toContain("risk-slm");
    expect(JSON.stringify(second)).not.toMatch(/fail closed|cannot reach/);
    expect(await gateway.close()).toBe(0);
  });

  it("openai: chat completions with the JSON-schema answer, the answer's score used", async () => {
    const model = await fakeModel(() => ({
      choices: [{ message: { role: "assistant", content: JSON.stringify({ risk_score: 77, classification: "high", action: "review", rationale: "money moves" }) } }],
    }));
    const { gateway, dataDir } = await gatewayWith({ type: "openai", baseUrl: `${model.url}/v1`, model: "tiny-risk", apiKey: "sk-test-e2e" });

    const held = await gateway.callTool("check_payment_status", { beneficiary_id: "B-2002" });
    expect(text(held)).toMatch(/PENDING REVIEW/);
    expect(model.seen).toHaveLength(1);
    expect(model.seen[0]).toMatchObject({ path: "/v1/chat/completions", headers: { authorization: "Bearer sk-test-e2e" }, body: { model: "tiny-risk" } });
    expect(JSON.stringify(model.seen[0]!.body.response_format)).toContain("risk_score");
    expect(assessed(dataDir)[0]).toMatchObject({ score: 77 });
    expect(JSON.stringify(assessed(dataDir)[0])).toContain("openai:tiny-risk");
    expect(await gateway.close()).toBe(0);
  });
});
