import { execFileSync } from "node:child_process";
import { chmodSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { createServer as createHttpServer, type ServerResponse } from "node:http";
import { createServer } from "node:net";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { runDoctor } from "../../src/cli/doctor.js";
import { instancePaths } from "../../src/dataDir.js";
import { loadOrCreateWebhookSecret, webhookSecretPath } from "../../src/http/webhook.js";
import { approvalKeysPath, legacyApprovalKeysPath, migrateApprovalKeys } from "../../src/http/approvalKeys.js";
import { addReviewer } from "../../src/http/reviewers.js";
import { reviewerKeyPair } from "../helpers/ed25519.js";
import { heldCall, openEngine, recordingExecutor, tempDir } from "../helpers.js";

// doctor tells the truth (issue 13): a ✓ for each thing that will work, a ✗ for each that will not, with a fix for
// that cause. One test per ✓/✗ pair.

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0)) cleanup();
});

async function doctor(dataDir: string, config?: unknown, configText?: string, home = tempDir("atlas-doctor-home-")): Promise<{ text: string; failures: number }> {
  let configPath: string | undefined;
  if (config !== undefined || configText !== undefined) {
    configPath = join(home, "atlas.json");
    writeFileSync(configPath, configText ?? JSON.stringify(config));
  }
  const lines: string[] = [];
  const failures = await runDoctor({
    env: { HOME: home, ATLAS_CONFIG_DIR: join(home, "config") },
    flags: { dataDir, port: "0", ...(configPath ? { config: configPath } : {}) },
    out: (line) => lines.push(line),
  });
  return { text: lines.join("\n"), failures };
}

/** The ✗ line naming `what`, and the fix printed under it. */
function failure(text: string, what: RegExp): { line: string; fix: string } {
  const lines = text.split("\n");
  const index = lines.findIndex((line) => line.startsWith("✗") && what.test(line));
  expect(index, `no ✗ line matching ${what} in:\n${text}`).toBeGreaterThanOrEqual(0);
  const fix = lines.slice(index + 1).find((line) => line.trimStart().startsWith("fix:")) ?? "";
  return { line: lines[index]!, fix };
}

async function modelServer(handler: (res: ServerResponse) => void): Promise<string> {
  const server = createHttpServer((req, res) => {
    req.resume();
    req.on("end", () => handler(res));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  cleanups.push(() => {
    server.closeAllConnections();
    server.close();
  });
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/**
 * Makes a file refuse appends. Permissions do not stop root, so as root the file is made immutable (chattr +i, EPERM);
 * otherwise it is made read-only (EACCES). Returns the error code an append meets, or undefined if impossible here.
 */
function refuseWrites(file: string): string | undefined {
  if (process.getuid?.() !== 0) {
    chmodSync(file, 0o444);
    return "EACCES";
  }
  try {
    execFileSync("chattr", ["+i", file], { stdio: "ignore" });
  } catch {
    return undefined;
  }
  cleanups.push(() => execFileSync("chattr", ["-i", file], { stdio: "ignore" }));
  return "EPERM";
}

async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

const json = (body: unknown, status = 200) => (res: ServerResponse) => res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));

describe("doctor", () => {
  it("passes on a fresh install: creates the data dir, and says the ledger and webhook secret come at first start", async () => {
    const dataDir = join(tempDir(), "fresh", "atlas");
    const { text, failures } = await doctor(dataDir);
    expect(text).not.toContain("✗");
    expect(failures).toBe(0);
    expect(text).toContain(`✓ data dir writable: ${dataDir} (created)`);
    expect(text).toMatch(/✓ webhook secret: none yet \(created when the gateway first starts/);
    expect(text).toMatch(/✓ ledger: none yet \(created in .*ledgers when the gateway first starts\)/);
  });

  it("data dir: ✗ when a file blocks it, with a fix for that cause", async () => {
    const blocker = join(tempDir(), "not-a-dir");
    writeFileSync(blocker, "");
    const { text, failures } = await doctor(join(blocker, "atlas"));
    expect(failures).toBe(1);
    const { line, fix } = failure(text, /data dir not writable/);
    expect(line).toContain("ENOTDIR");
    expect(fix).toMatch(/a file sits where a directory belongs/);
  });

  it("webhook secret: ✓ at mode 600, ✗ with a chmod fix when others can read it", async () => {
    const dataDir = tempDir();
    const home = tempDir("atlas-doctor-home-");
    const env = { HOME: home, ATLAS_CONFIG_DIR: join(home, "config") };
    loadOrCreateWebhookSecret(dataDir, env);
    expect((await doctor(dataDir, undefined, undefined, home)).text).toMatch(/✓ webhook secret present \(.*, mode 600\)/);
    chmodSync(webhookSecretPath(dataDir, env), 0o644);
    const { text, failures } = await doctor(dataDir, undefined, undefined, home);
    expect(failures).toBe(1);
    expect(failure(text, /webhook secret .* readable by others \(mode 644\)/).fix).toContain(`chmod 600 ${webhookSecretPath(dataDir, env)}`);
  });

  it("approval keys: ✓ none, ✓ stored at mode 600 in the credentials dir, ✗ left in the data dir or readable by others", async () => {
    const dataDir = tempDir();
    const home = tempDir("atlas-doctor-home-");
    const env = { HOME: home, ATLAS_CONFIG_DIR: join(home, "config") };
    expect((await doctor(dataDir, undefined, undefined, home)).text).toMatch(/✓ approval keys: none stored/);
    writeFileSync(legacyApprovalKeysPath(dataDir), JSON.stringify({ alice: reviewerKeyPair().publicKey }));
    const legacy = await doctor(dataDir, undefined, undefined, home);
    expect(failure(legacy.text, /approval keys in the data dir/).fix).toMatch(/start the gateway once or run 'atlas-gateway keys list'/);
    expect(migrateApprovalKeys(dataDir, env)).toMatch(/moved 1 key/);
    expect((await doctor(dataDir, undefined, undefined, home)).text).toMatch(/✓ approval keys: 1 stored \(.*credentials.*, mode 600\)/);
    chmodSync(approvalKeysPath(dataDir, env), 0o666);
    const { text, failures } = await doctor(dataDir, undefined, undefined, home);
    expect(failures).toBe(1);
    expect(failure(text, /approval keys .* by others \(mode 666\)/).fix).toContain(`chmod 600 ${approvalKeysPath(dataDir, env)}`);
  });

  it("reviewers: ! when none (the review page cannot be used), then the count and roles", async () => {
    const dataDir = tempDir();
    const none = await doctor(dataDir);
    expect(none.failures).toBe(0);
    expect(none.text).toMatch(/^! reviewers: none, so nobody can sign in to the review page/m);
    expect(none.text).toContain("fix: atlas-gateway reviewers add <id> --role approver");
    addReviewer(dataDir, { id: "vera", role: "viewer" });
    expect((await doctor(dataDir)).text).toMatch(/^! reviewers: 1 \(0 approver\(s\), 1 viewer\(s\)\): vera \(viewer\); no approver/m);
    addReviewer(dataDir, { id: "alice", role: "approver" });
    expect((await doctor(dataDir)).text).toMatch(/^✓ reviewers: 2 \(1 approver\(s\), 1 viewer\(s\)\): vera \(viewer\), alice \(approver\)$/m);
  });

  it("ledger: ✓ when it verifies and takes appends, ✗ damaged when a record was edited", async () => {
    const dataDir = tempDir();
    const engine = openEngine(dataDir, recordingExecutor());
    await engine.submit(heldCall());
    await engine.close();
    const good = await doctor(dataDir);
    expect(good.failures).toBe(0);
    expect(good.text).toMatch(/✓ ledger 'main': \d+ records, chain intact, writable/);

    const dir = instancePaths(dataDir, "main").ledger;
    const segment = join(dir, readdirSync(dir).find((name) => name.endsWith(".jsonl"))!);
    expect(readFileSync(segment, "utf8")).toContain("/tmp/x");
    writeFileSync(segment, readFileSync(segment, "utf8").replace("/tmp/x", "/tmp/y"));
    const { text, failures } = await doctor(dataDir);
    expect(failures).toBe(1);
    expect(failure(text, /ledger 'main' damaged/).fix).toMatch(/atlas-gateway audit verify/);
  });

  it("ledger: ✗ when a file sits where the instance's ledger directory belongs (the gateway cannot open it)", async () => {
    const dataDir = tempDir();
    mkdirSync(join(dataDir, "ledgers"));
    const path = instancePaths(dataDir, "main").ledger;
    writeFileSync(path, "not a ledger\n");
    const { text, failures } = await doctor(dataDir);
    expect(failures).toBe(1);
    const { line, fix } = failure(text, /ledger 'main'/);
    expect(line).toContain(`${path} is a file where the ledger's directory belongs; the gateway refuses every call until it is fixed`);
    expect(fix).toMatch(/move the file aside/);
  });

  it("ledger: ✗ not writable when the ledger refuses appends, with the fix for that cause", async (context) => {
    const dataDir = tempDir();
    const engine = openEngine(dataDir, recordingExecutor());
    await engine.close();
    const code = refuseWrites(instancePaths(dataDir, "main").ledger);
    if (!code) return context.skip("running as root without chattr: no way to make a file refuse root's writes here");
    const { text, failures } = await doctor(dataDir);
    expect(failures).toBe(1);
    const { line, fix } = failure(text, /ledger 'main' not writable/);
    expect(line).toContain(`(${code}): the gateway refuses every call until it can`);
    expect(fix).toMatch(code === "EACCES" ? /give your user write access/ : /chattr -i/);
  });

  it("ledger folder: ✗ when a file sits where it belongs", async () => {
    const dataDir = tempDir();
    writeFileSync(join(dataDir, "ledgers"), "");
    const { text, failures } = await doctor(dataDir);
    expect(failures).toBe(1);
    expect(failure(text, /ledger folder .*ledgers/).fix).toMatch(/a file sits where a directory belongs/);
  });

  it("config: ✓ when valid; a ✗ for a missing file, a JSON syntax error and a bad key, each with its own fix", async () => {
    const dataDir = tempDir();
    expect((await doctor(dataDir, { risk: { threshold: 60 } })).text).toMatch(/✓ config valid \(engine local, threshold 60/);

    const home = tempDir();
    const lines: string[] = [];
    const missing = await runDoctor({ env: { HOME: home, ATLAS_CONFIG_DIR: join(home, "c") }, flags: { dataDir, config: join(home, "nope.json") }, out: (line) => lines.push(line) });
    expect(missing).toBe(1);
    expect(lines.join("\n")).toContain("config file not found");
    expect(failure(lines.join("\n"), /config invalid/).fix).toMatch(/create the file, or correct the path given with --config/);

    const syntax = await doctor(dataDir, undefined, '{\n  "port": 0,\n}\n');
    expect(syntax.failures).toBe(1);
    expect(syntax.text).toContain("not valid JSON");
    expect(failure(syntax.text, /config invalid/).fix).toMatch(/fix the JSON syntax at line 3 column 1 of .*atlas\.json/);

    const badKey = await doctor(dataDir, { risk: { threshhold: 60 } });
    expect(badKey.failures).toBe(1);
    expect(badKey.text).toMatch(/threshhold/);
    expect(failure(badKey.text, /config invalid/).fix).toMatch(/correct the listed keys/);
  });

  it("evaluator: ✓ when a live probe gets a valid answer (http and openai)", async () => {
    const http = await modelServer(json({ risk_score: 3, classification: "low", action: "allow", rationale: "a probe" }));
    const openai = await modelServer(json({ choices: [{ message: { content: JSON.stringify({ risk_score: 0, classification: "low", action: "allow", rationale: "probe" }) } }] }));
    const { text, failures } = await doctor(tempDir(), {
      risk: { evaluators: [{ type: "http", url: `${http}/score`, name: "slm" }, { type: "openai", baseUrl: `${openai}/v1`, model: "m1" }] },
    });
    expect(text).toMatch(/✓ evaluator 'slm': answered in \d+ ms \(probe scored 3\)/);
    expect(text).toMatch(/✓ evaluator 'openai:m1': answered in \d+ ms \(probe scored 0\)/);
    expect(failures).toBe(0);
  });

  it("evaluator: ✗ for nothing listening, refused credentials, a wrong path and a foreign answer, each with its fix", async () => {
    const port = await closedPort();
    const unauthorized = await modelServer(json({ error: "bad key" }, 401));
    const notFound = await modelServer(json({ error: "no route" }, 404));
    const foreign = await modelServer(json({ score: "low" }));
    const { text, failures } = await doctor(tempDir(), {
      risk: {
        evaluators: [
          { type: "http", url: `http://127.0.0.1:${port}/score`, name: "down", retries: 0 },
          { type: "openai", baseUrl: `${unauthorized}/v1`, model: "m", apiKey: "sk-wrong", name: "keyed", retries: 0 },
          { type: "openai", baseUrl: notFound, model: "m", name: "pathless", retries: 0 },
          { type: "http", url: foreign, name: "foreign", retries: 0 },
        ],
      },
    });
    expect(failures).toBe(4);
    expect(failure(text, /evaluator 'down': cannot reach the evaluator \(ECONNREFUSED\)/).fix).toMatch(/nothing answers there: start the model server, or correct url/);
    expect(failure(text, /evaluator 'keyed': HTTP 401/).fix).toMatch(/check apiKey/);
    expect(failure(text, /evaluator 'pathless': HTTP 404/).fix).toMatch(/often ending in \/v1/);
    expect(failure(text, /evaluator 'foreign': malformed answer/).fix).toMatch(/not as an http evaluator must/);
  });
});
