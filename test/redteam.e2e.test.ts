import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join, resolve } from "node:path";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { tempDir } from "./helpers.js";
import { RawMcpProcess } from "./helpers/rawMcpProcess.js";
import { until } from "./helpers/until.js";
import { runCli } from "./helpers/runCli.js";

/**
 * Attacks found by red-teaming the built CLI, replayed against it: the agent is the adversary, the filesystem server
 * (`@modelcontextprotocol/server-filesystem`) and the demo tools are its tools, reviewers sign in over HTTP.
 */
const FILESYSTEM_SERVER = createRequire(import.meta.url).resolve("@modelcontextprotocol/server-filesystem/dist/index.js");

beforeAll(() => {
  if (!existsSync(resolve(import.meta.dirname, "..", "dist", "cli.js"))) throw new Error("run `npm run build` first (npm test does)");
});

const running: RawMcpProcess[] = [];
afterEach(async () => {
  for (const gateway of running.splice(0)) await gateway.close();
});

interface Setup {
  base: string;
  project: string;
  dataDir: string;
  config: string;
  env: NodeJS.ProcessEnv;
}

/** A project dir holding the data dir, served by the filesystem server; the policy allows every write there. */
function setup(rules: unknown[]): Setup {
  const base = tempDir("atlas-redteam-");
  const project = join(base, "project");
  mkdirSync(project);
  const dataDir = join(project, "data");
  const config = join(base, "atlas.json");
  writeFileSync(config, JSON.stringify({ dataDir, upstreams: { fs: { command: process.execPath, args: [FILESYSTEM_SERVER, base] } }, risk: { rules } }));
  const env: NodeJS.ProcessEnv = { ...process.env, ATLAS_CONFIG_DIR: join(base, "config") };
  delete env.ATLAS_REVIEWER_TOKEN;
  return { base, project, dataDir, config, env };
}

function cli(s: Setup, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return runCli([...args, "--config", s.config], s.env);
}

async function start(s: Setup): Promise<{ gateway: RawMcpProcess; base: string }> {
  const gateway = new RawMcpProcess(["--demo", "--config", s.config, "--port", "0"], s.env);
  running.push(gateway);
  await gateway.initialize();
  const port = await until(() => /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(gateway.stderr)?.[1], "the listener");
  return { gateway, base: `http://127.0.0.1:${port}` };
}

const refOf = (response: Awaited<ReturnType<RawMcpProcess["callTool"]>>) => /Ref: (evt_[0-9a-f]{8})/.exec(JSON.stringify(response.result))?.[1] ?? "";

async function signIn(s: Setup, base: string, id: string): Promise<{ cookie: string; csrf: string }> {
  const added = await cli(s, ["reviewers", "add", id]);
  const token = /#signin=(atlas_si_\S+)/.exec(added.stdout)![1];
  const res = await fetch(`${base}/review/api/signin`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ token }) });
  expect(res.status).toBe(200);
  return { cookie: res.headers.get("set-cookie")!.split(";")[0]!, csrf: ((await res.json()) as { csrf: string }).csrf };
}

function decide(base: string, auth: { cookie: string; csrf: string }, body: Record<string, unknown>) {
  return fetch(`${base}/review/api/decide`, { method: "POST", headers: { "content-type": "application/json", cookie: auth.cookie, "x-atlas-csrf": auth.csrf }, body: JSON.stringify(body) });
}

describe("red team, through the built CLI", () => {
  it("a moved data dir's reviewers.json is still the gateway's: writing it is held as critical though writes are allowed", async () => {
    const s = setup([{ id: "project-writes", tool: "fs__*", effect: "allow" }]);
    const { gateway } = await start(s);
    const moved = join(s.base, "moved");
    const ran = (response: Awaited<ReturnType<RawMcpProcess["callTool"]>>) => !JSON.stringify(response.result).includes("PENDING");
    // writes the policy allows run at once, and so does moving a directory that merely holds the data dir
    expect(ran(await gateway.callTool("fs__write_file", { path: join(s.project, "notes.txt"), content: "x" }))).toBe(true);
    expect(ran(await gateway.callTool("fs__move_file", { source: s.project, destination: moved }))).toBe(true);
    const held: string[] = [];
    for (const file of ["reviewers.json", "approval-keys.json", "halt.json"]) {
      const write = await gateway.callTool("fs__write_file", { path: join(moved, "data", file), content: "{}" });
      expect(ran(write), `${file}: ${JSON.stringify(write).slice(0, 600)}`).toBe(false);
      held.push(refOf(write));
    }
    expect(ran(await gateway.callTool("fs__move_file", { source: moved, destination: s.project }))).toBe(true);
    for (const ref of held) {
      const shown = JSON.parse((await cli(s, ["show", ref, "--json"])).stdout) as { assessment?: { rules?: { id: string }[] }; status: string };
      expect(JSON.stringify(shown), ref).toContain("self-protection");
    }
    expect(readFileSync(join(s.project, "notes.txt"), "utf8")).toBe("x");
  }, 60_000);

  it("approve-with-edits on a two-person call is refused (400) and the edit never runs in place of the original", async () => {
    const s = setup([{ id: "records-need-two", tool: "demo__modify_welfare_record", effect: "review", approvals: 2 }]);
    const { gateway, base } = await start(s);
    const ana = await signIn(s, base, "ana");
    const ben = await signIn(s, base, "ben");
    const ref = refOf(await gateway.callTool("demo__modify_welfare_record", { beneficiary_id: "B-1001", changes: { address: "1 Agent Street" } }));

    const edited = await decide(base, ana, { ref, decision: "approved", args: { beneficiary_id: "B-1001", changes: { address: "2 Reviewer Road" } } });
    expect(edited.status).toBe(400);
    expect(((await edited.json()) as { error: string }).error).toMatch(/needs 2 approvers, who must approve the same arguments/);
    expect((await decide(base, ana, { ref, decision: "approved" })).status).toBe(200);
    expect((await decide(base, ana, { ref, decision: "approved" })).status).toBe(409);
    expect((await decide(base, ben, { ref, decision: "approved" })).status).toBe(200);

    const status = await gateway.callTool("atlas_status", { ref, wait_seconds: 20 });
    expect(JSON.stringify(status.result)).toContain("1 Agent Street");
    const shown = JSON.parse((await cli(s, ["show", ref, "--json"])).stdout) as { history: { type: string; data: Record<string, unknown> }[] };
    expect(shown.history.filter((record) => record.type === "approval.recorded").map((record) => record.data.auth_method)).toEqual(["review-page", "review-page"]);
  }, 60_000);
});
