import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { reviewersPath } from "../../src/http/reviewers.js";
import { tempDir } from "../helpers.js";
import { BIN, RawMcpProcess } from "../helpers/rawMcpProcess.js";
import { until } from "../helpers/until.js";
import { runCli } from "../helpers/runCli.js";

/** The reviewer commands, the HELD line, `pending --watch` and `GET /api/pending`, through the built CLI. */
beforeAll(() => {
  if (!existsSync(resolve(import.meta.dirname, "..", "..", "dist", "cli.js"))) throw new Error("run `npm run build` first (npm test does)");
});

const running: RawMcpProcess[] = [];
afterEach(async () => {
  for (const gateway of running.splice(0)) await gateway.close();
});

function envFor(dataDir: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ATLAS_CONFIG_DIR: join(dataDir, "config"), ...extra };
  if (!("ATLAS_REVIEWER_TOKEN" in extra)) delete env.ATLAS_REVIEWER_TOKEN;
  return env;
}

function cli(dataDir: string, args: string[], extra: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return runCli([...args, "--data-dir", dataDir], envFor(dataDir, extra));
}

async function startGateway(dataDir: string): Promise<{ gateway: RawMcpProcess; port: number }> {
  const gateway = new RawMcpProcess(["--demo", "--data-dir", dataDir, "--port", "0"], envFor(dataDir));
  running.push(gateway);
  await gateway.initialize();
  const port = await until(() => /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(gateway.stderr)?.[1], "the listener");
  return { gateway, port: Number(port) };
}

const holdOne = async (gateway: RawMcpProcess, citizen = "C-1001") => {
  const response = await gateway.callTool("modify_welfare_record", { beneficiary_id: citizen, changes: { address: "2 Main St" } });
  return /Ref: (evt_[0-9a-f]{8})/.exec(JSON.stringify(response.result))![1]!;
};

describe("reviewers commands", () => {
  it("add prints a one-time link for the running gateway and a key; only hashes are stored; list and remove", async () => {
    const dataDir = tempDir();
    expect((await cli(dataDir, ["reviewers", "list"])).stdout).toMatch(/no reviewers/);
    const { port } = await startGateway(dataDir);
    const added = await cli(dataDir, ["reviewers", "add", "alice", "--name", "Alice Martin"]);
    expect(added.code).toBe(0);
    const link = /http:\/\/127\.0\.0\.1:(\d+)\/review#signin=(atlas_si_\S+)/.exec(added.stdout);
    expect(Number(link?.[1])).toBe(port);
    const key = /atlas_rk_[A-Za-z0-9_-]+/.exec(added.stdout)![0];
    const stored = readFileSync(reviewersPath(dataDir), "utf8");
    expect(stored).not.toContain(link![2]!);
    expect(stored).not.toContain(key);

    expect((await cli(dataDir, ["reviewers", "add", "viv", "--role", "viewer"])).code).toBe(0);
    const list = await cli(dataDir, ["reviewers", "list"]);
    expect(list.stdout).toMatch(/alice\s+Alice Martin\s+approver/);
    expect(list.stdout).toMatch(/viv\s+-\s+viewer/);
    expect(list.stdout).not.toContain(key);

    const duplicate = await cli(dataDir, ["reviewers", "add", "alice"]);
    expect(duplicate.code).toBe(3);
    const badRole = await cli(dataDir, ["reviewers", "add", "bob", "--role", "owner"]);
    expect(badRole.code).toBe(2);
    expect((await cli(dataDir, ["reviewers", "remove", "nobody"])).code).toBe(4);
    expect((await cli(dataDir, ["reviewers", "remove", "viv"])).stdout).toMatch(/removed reviewer viv/);
    expect((await cli(dataDir, ["reviewers", "list", "--json"])).stdout).not.toContain("viv");
  });

  it("concurrent changes to the reviewer store lose nothing", async () => {
    const dataDir = tempDir();
    const ids = Array.from({ length: 8 }, (_, i) => `r${i}`);
    const results = await Promise.all(ids.map((id) => cli(dataDir, ["reviewers", "add", id])));
    expect(results.map((result) => result.code)).toEqual(ids.map(() => 0));
    const listed = JSON.parse((await cli(dataDir, ["reviewers", "list", "--json"])).stdout) as { id: string }[];
    expect(listed.map((reviewer) => reviewer.id).sort()).toEqual(ids);
  });

  it("CLI decisions: the OS user by default, or a reviewer proven by their key; viewers cannot decide", async () => {
    const dataDir = tempDir();
    const { gateway } = await startGateway(dataDir);
    const alice = /atlas_rk_\S+/.exec((await cli(dataDir, ["reviewers", "add", "alice"])).stdout)![0];
    const viv = /atlas_rk_\S+/.exec((await cli(dataDir, ["reviewers", "add", "viv", "--role", "viewer"])).stdout)![0];
    const ref = await holdOne(gateway);

    const noKey = await cli(dataDir, ["approve", ref, "--reviewer", "alice"]);
    expect(noKey.code).toBe(2);
    const wrongKey = await cli(dataDir, ["approve", ref, "--reviewer", "alice"], { ATLAS_REVIEWER_TOKEN: viv });
    expect(wrongKey.code).toBe(2);
    expect(wrongKey.stderr).toMatch(/not alice's reviewer key/);
    const viewer = await cli(dataDir, ["approve", ref, "--reviewer", "viv"], { ATLAS_REVIEWER_TOKEN: viv });
    expect(viewer.code).toBe(2);
    expect(viewer.stderr).toMatch(/viewer/);
    const ok = await cli(dataDir, ["approve", ref, "--reviewer", "alice"], { ATLAS_REVIEWER_TOKEN: alice });
    expect(ok.stdout).toContain(`approved ${ref} (modify_welfare_record) as alice`);
    const show = JSON.parse((await cli(dataDir, ["show", ref, "--json"])).stdout) as { history: { type: string; data: Record<string, unknown> }[] };
    expect(show.history.find((record) => record.type === "decision.recorded")?.data).toMatchObject({ reviewer: "alice", auth_method: "reviewer-token" });

    const second = await holdOne(gateway, "C-2002");
    await cli(dataDir, ["deny", second, "--reason", "no"]);
    const denied = JSON.parse((await cli(dataDir, ["show", second, "--json"])).stdout) as { history: { type: string; data: Record<string, unknown> }[] };
    expect(denied.history.find((record) => record.type === "decision.recorded")?.data).toMatchObject({ auth_method: "os-user" });
  });

  it("the HELD line names the data dir and the review page; GET /api/pending takes a reviewer key", async () => {
    const dataDir = tempDir();
    const { gateway, port } = await startGateway(dataDir);
    const key = /atlas_rk_\S+/.exec((await cli(dataDir, ["reviewers", "add", "ci", "--role", "viewer"])).stdout)![0];
    const ref = await holdOne(gateway);
    const held = await until(() => gateway.stderr.split("\n").find((line) => line.includes(`HELD ${ref}`)), "the HELD line");
    expect(held).toContain(`atlas-gateway approve ${ref} --data-dir ${dataDir}`);
    expect(held).toContain(`atlas-gateway deny ${ref} --data-dir ${dataDir} --reason`);
    expect(held).toContain(`Review page: http://127.0.0.1:${port}/review`);

    const unauthenticated = await fetch(`http://127.0.0.1:${port}/api/pending`);
    expect(unauthenticated.status).toBe(401);
    const res = await fetch(`http://127.0.0.1:${port}/api/pending`, { headers: { authorization: `Bearer ${key}` } });
    const body = (await res.json()) as { pending: { ref: string; tool: string; args: Record<string, unknown> }[]; halt: { halted: boolean } };
    expect(body.pending).toMatchObject([{ ref, tool: "modify_welfare_record", args: { beneficiary_id: "C-1001" } }]);
    expect(body.halt).toEqual({ halted: false });
    expect(gateway.nonProtocol).toEqual([]);
  });

  it("with the default data dir, the HELD line's commands need no --data-dir", async () => {
    const home = tempDir();
    const env: NodeJS.ProcessEnv = { ...envFor(home), HOME: home, XDG_DATA_HOME: join(home, "xdg") };
    delete env.ATLAS_DATA_DIR;
    const gateway = new RawMcpProcess(["--demo", "--port", "0"], env);
    running.push(gateway);
    await gateway.initialize();
    const ref = await holdOne(gateway);
    const held = await until(() => gateway.stderr.split("\n").find((line) => line.includes(`HELD ${ref}`)), "the HELD line");
    expect(held).toContain(`Approve: atlas-gateway approve ${ref}  Deny: atlas-gateway deny ${ref} --reason`);
    expect(held).not.toContain("--data-dir");
  });

  it("a reviewer key in the gateway's environment never reaches an upstream", async () => {
    const dataDir = tempDir();
    const fixture = resolve(import.meta.dirname, "..", "fixtures", "slow-server.mjs");
    const gateway = new RawMcpProcess(["--data-dir", dataDir, "--port", "0", "--", process.execPath, fixture], envFor(dataDir, { ATLAS_REVIEWER_TOKEN: "atlas_rk_secret", OTHER_VAR: "visible" }));
    running.push(gateway);
    await gateway.initialize();
    const read = async (name: string) => JSON.stringify((await gateway.callTool("env", { name })).result);
    expect(await read("OTHER_VAR")).toContain("visible");
    expect(await read("ATLAS_REVIEWER_TOKEN")).not.toContain("atlas_rk_secret");
  });

  it("pending --watch prints the list again when a call is held or decided", async () => {
    const dataDir = tempDir();
    const { gateway } = await startGateway(dataDir);
    const watch = spawn(process.execPath, [BIN, "pending", "--watch", "--json", "--data-dir", dataDir], { env: envFor(dataDir), stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    watch.stdout.setEncoding("utf8").on("data", (chunk: string) => (out += chunk));
    try {
      const lists = () => out.split("\n").filter(Boolean).map((line) => JSON.parse(line) as { ref: string }[]);
      await until(() => (lists().length >= 1 ? true : undefined), "the first list");
      expect(lists()[0]).toEqual([]);
      const ref = await holdOne(gateway);
      await until(() => (lists().some((list) => list.some((item) => item.ref === ref)) ? true : undefined), "the held call");
      await cli(dataDir, ["deny", ref, "--reason", "no"]);
      await until(() => (lists().at(-1)?.length === 0 ? true : undefined), "the decided call to leave");
    } finally {
      watch.kill();
    }
  });
});
