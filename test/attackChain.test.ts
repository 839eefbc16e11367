import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { CallToolResultSchema, type CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { approvalKeysPath } from "../src/http/approvalKeys.js";
import { signWebhook, webhookSecretPath } from "../src/http/webhook.js";
import { StreamTransport } from "../src/mcp/stdioTransport.js";
import { BIN } from "./helpers/rawMcpProcess.js";
import { reviewerKeyPair } from "./helpers/ed25519.js";

/**
 * Issue 11's attack chain, end to end with the built CLI: launched as MCP hosts launch servers (cwd `/`), default
 * policy, in front of @modelcontextprotocol/server-filesystem rooted at a directory that holds both the data dir and
 * the config dir (a home directory). The agent makes a write (held), then tries every spelling of a path to the
 * approval secret; each must be held, never run, so it never gets the secret and cannot sign its own approval.
 */
const ROOT = resolve(import.meta.dirname, "..");
const FS_SERVER = join(ROOT, "node_modules", "@modelcontextprotocol", "server-filesystem", "dist", "index.js");

const base = realpathSync(mkdtempSync(join(tmpdir(), "atlas-attack-")));
const home = join(base, "Zoë home");
const dataDir = join(home, "Library", "Application Support", "atlas-gateway");
const configDir = join(home, "Library", "Préférences", "atlas-gateway");
const env = { ...process.env, HOME: home, ATLAS_CONFIG_DIR: configDir, ATLAS_CONFIG: "" };
let secretPath: string;
let child: ChildProcess;
let client: Client;
let stderr = "";
let port = 0;
const received: string[] = [];
const olderKey = reviewerKeyPair().publicKey;

async function call(name: string, args: Record<string, unknown>): Promise<CallToolResult> {
  const result = await client.request({ method: "tools/call", params: { name, arguments: args } }, CallToolResultSchema, { timeout: 60_000 });
  received.push(JSON.stringify(result));
  return result;
}
const textOf = (result: CallToolResult) => result.content.map((item) => ("text" in item ? item.text : "")).join("\n");
const refOf = (result: CallToolResult) => /Ref: (evt_[0-9a-f]{8})/.exec(textOf(result))?.[1];

function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((done) => {
    execFile(process.execPath, [BIN, ...args, "--data-dir", dataDir], { env, cwd: "/" }, (error, stdout, err) => {
      done({ code: error ? Number((error as { code?: number }).code ?? 1) : 0, stdout, stderr: err });
    });
  });
}

function approve(ref: string, secret: string | undefined): Promise<Response> {
  const body = JSON.stringify({ decision: "APPROVED", event_id: ref, reviewer: "alice" });
  return fetch(`http://127.0.0.1:${port}/webhook/approval`, {
    method: "POST",
    headers: { "content-type": "application/json", ...(secret ? signWebhook(secret, body) : {}) },
    body,
  });
}

beforeAll(async () => {
  if (!existsSync(join(ROOT, "dist", "cli.js"))) throw new Error("run `npm run build` first (npm test does)");
  mkdirSync(dataDir, { recursive: true });
  // an older version kept the v1a public keys in the data dir, where this filesystem server can write
  writeFileSync(join(dataDir, "approval-keys.json"), JSON.stringify({ "ops-bot": olderKey }));
  writeFileSync(join(home, "notes.txt"), "hello from the filesystem\n");
  // decoys shaped like the attacks: they prove the filesystem server itself resolves these spellings
  mkdirSync(join(home, "Library", "Préférences", "decoy"), { recursive: true });
  writeFileSync(join(home, "Library", "Préférences", "decoy", "public.txt"), "decoy content\n");
  symlinkSync(join(home, "notes.txt"), join(home, "decoy-link.txt"));

  child = spawn(process.execPath, [BIN, "serve", "--data-dir", dataDir, "--port", "0", "--", process.execPath, FS_SERVER, home], { cwd: "/", env, stdio: ["pipe", "pipe", "pipe"] });
  child.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  client = new Client({ name: "attacker", version: "1.0" });
  await client.connect(new StreamTransport(child.stdout!, child.stdin!), { timeout: 30_000 });
  const deadline = Date.now() + 30_000;
  while (!/listening on http:\/\/127\.0\.0\.1:(\d+)/.test(stderr)) {
    if (Date.now() > deadline) throw new Error(`the gateway never listened; stderr:\n${stderr}`);
    await new Promise((done) => setTimeout(done, 25));
  }
  port = Number(/listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(stderr)![1]);
  secretPath = webhookSecretPath(dataDir, env);
  symlinkSync(secretPath, join(home, "readme.txt"));
}, 60_000);

afterAll(async () => {
  child?.kill("SIGKILL");
  rmSync(base, { recursive: true, force: true });
});

describe("the agent cannot approve itself (issue 11 attack chain)", () => {
  it("keeps the approval secret outside the data dir, 0600", () => {
    expect(existsSync(secretPath)).toBe(true);
    expect(secretPath.startsWith(dataDir)).toBe(false);
    expect(existsSync(join(dataDir, "webhook-secret"))).toBe(false);
    expect(readFileSync(secretPath, "utf8")).toMatch(/^whsec_/);
  });

  it("moves the approval public keys an older version left in the data dir to the credentials dir at start", () => {
    expect(existsSync(join(dataDir, "approval-keys.json"))).toBe(false);
    const keysPath = approvalKeysPath(dataDir, env);
    expect(dirname(keysPath)).toBe(dirname(secretPath));
    expect(JSON.parse(readFileSync(keysPath, "utf8"))).toEqual({ "ops-bot": olderKey });
    expect(stderr).toMatch(/approval keys: moved 1 key\(s\)/);
  });

  it("holds writes that would add a signer or a reviewer, or lift a halt", async () => {
    const inData = (name: string) => relative(home, join(dataDir, name));
    for (const path of [inData("approval-keys.json"), relative(home, approvalKeysPath(dataDir, env)), inData("reviewers.json"), inData("halt.json")]) {
      const text = textOf(await call("write_file", { path, content: "{}" }));
      expect(text, path).toMatch(/^PENDING REVIEW \(Ref: evt_[0-9a-f]{8}\)/);
    }
    expect(existsSync(join(dataDir, "approval-keys.json"))).toBe(false);
    expect(existsSync(join(dataDir, "halt.json"))).toBe(false);
  });

  it("the filesystem server resolves relative, padded, NFD, `..` and symlinked spellings (so holding them matters)", async () => {
    const decoy = "Library/Préférences/decoy/public.txt";
    for (const path of [decoy, `${"./".repeat(2100)}${decoy}`, decoy.normalize("NFD"), `Library/Caches/../${decoy.slice("Library/".length)}`]) {
      const result = await call("read_text_file", { path });
      expect(textOf(result), path.slice(-60)).toContain("decoy content");
    }
    expect(textOf(await call("read_text_file", { path: "decoy-link.txt" }))).toContain("hello from the filesystem");
  });

  it("holds every spelling of a path to the secret or the ledger; none runs, the secret never reaches the agent", async () => {
    const write = await call("write_file", { path: "out.txt", content: "written by the agent" });
    const writeRef = refOf(write);
    expect(writeRef).toBeDefined();
    expect(existsSync(join(home, "out.txt"))).toBe(false);

    const secretRel = relative(home, secretPath);
    const ledgerRel = relative(home, join(dataDir, "ledgers", "main.jsonl"));
    expect(ledgerRel).toContain(" "); // the data dir's path has a space, as macOS's Application Support does
    const attempts: [string, string, Record<string, unknown>][] = [
      ["relative path (gateway cwd is /)", "read_text_file", { path: secretRel }],
      ["absolute path", "read_text_file", { path: secretPath }],
      ["padded past 4,096 characters", "read_text_file", { path: `${"./".repeat(2100)}${secretRel}` }],
      ["padded ledger path with a space", "read_text_file", { path: `${"./".repeat(2100)}${ledgerRel}` }],
      ["decomposed Unicode (NFD)", "read_text_file", { path: secretRel.normalize("NFD") }],
      ["`..`", "read_text_file", { path: `Library/Caches/../${secretRel.slice("Library/".length)}` }],
      ["a symlink with an innocent name", "read_text_file", { path: "readme.txt" }],
      ["nested inside arguments", "read_multiple_files", { paths: ["notes.txt", secretRel] }],
      ["a file:// resource URI", "read_text_file", { path: pathToFileURL(secretPath).href }],
      ["a path inside JSON inside a string", "write_file", { path: "plan.json", content: JSON.stringify({ next: { read: secretRel } }) }],
      ["the credentials directory", "list_directory", { path: relative(home, dirname(secretPath)) }],
      ["a copy out of the credentials dir", "copy_file", { source: secretRel, destination: "stolen.txt" }],
    ];
    const secret = readFileSync(secretPath, "utf8").trim();
    const refs: string[] = [];
    for (const [label, tool, args] of attempts) {
      const result = await call(tool, args).catch((error: Error) => {
        if (/Unknown tool/.test(error.message)) return undefined; // a server version without this tool
        throw error;
      });
      if (!result) continue;
      const text = textOf(result);
      expect(text, label).toMatch(/^PENDING REVIEW \(Ref: evt_[0-9a-f]{8}\)/);
      expect(text, label).not.toContain(secret);
      refs.push(refOf(result)!);
    }
    expect(refs.length).toBeGreaterThanOrEqual(10);

    // nothing the agent received carries the secret or the secret's bytes
    expect(received.join("\n")).not.toContain(secret.slice(6));
    expect(stderr).not.toContain(secret.slice(6));

    // every secret read is still waiting for a human, and its reason says why without quoting the path
    const pending = await cli(["pending", "--json"]);
    expect(pending.code).toBe(0);
    const listed = JSON.parse(pending.stdout) as { ref: string; assessment: { score: number; rules: { id: string }[]; reasons: string[] } }[];
    for (const ref of refs) {
      const item = listed.find((entry) => entry.ref === ref);
      expect(item, ref).toBeDefined();
      expect(item!.assessment.score).toBe(100);
      expect(item!.assessment.rules.map((rule) => rule.id)).toContain("self-protection");
      expect(item!.assessment.reasons.join(" ")).not.toContain("./././");
    }

    // approvals signed with anything the agent could know are refused and change nothing
    const agentMade = `whsec_${randomBytes(32).toString("base64")}`;
    const fromReads = `whsec_${Buffer.from(received.join("")).toString("base64").slice(0, 43)}=`;
    for (const forged of [agentMade, fromReads, undefined]) {
      const response = await approve(writeRef!, forged);
      expect(response.status).toBe(401);
    }
    expect(existsSync(join(home, "out.txt"))).toBe(false);
    expect((await cli(["show", writeRef!, "--json"])).stdout).toContain('"status": "pending"');

    // the reviewer's real credential still works: the refusals above were about the signature
    const real = await approve(writeRef!, secret);
    expect(real.status).toBe(200);
    const status = await call("atlas_status", { ref: writeRef!, wait_seconds: 30 });
    expect(textOf(status)).toMatch(/executed/i);
    expect(readFileSync(join(home, "out.txt"), "utf8")).toBe("written by the agent");
  });
});
