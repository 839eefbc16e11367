import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { CallToolResultSchema, ListRootsRequestSchema, type CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { StreamTransport } from "../src/mcp/stdioTransport.js";
import { BIN } from "./helpers/rawMcpProcess.js";

/**
 * Self-protection resolves relative paths against the agent's MCP roots too (a filesystem server may take them as its
 * allowed directories): built CLI, launched from `/`, the client offering a root that contains the data dir.
 */
const ROOT = resolve(import.meta.dirname, "..");
const FS_SERVER = join(ROOT, "node_modules", "@modelcontextprotocol", "server-filesystem", "dist", "index.js");
const base = realpathSync(mkdtempSync(join(tmpdir(), "atlas-roots-")));
const project = join(base, "project");
const dataDir = join(project, "state");
const elsewhere = join(base, "elsewhere");
let child: ChildProcess | undefined;

afterAll(() => {
  child?.kill("SIGKILL");
  rmSync(base, { recursive: true, force: true });
});

describe("MCP roots", () => {
  it("a relative path into the data dir, under a root the client offers, is held", async () => {
    mkdirSync(join(dataDir, "notes"), { recursive: true });
    mkdirSync(elsewhere, { recursive: true });
    writeFileSync(join(dataDir, "notes", "todo.txt"), "not for the agent\n");
    const env = { ...process.env, HOME: base, ATLAS_CONFIG_DIR: join(base, "config"), ATLAS_CONFIG: "" };
    child = spawn(process.execPath, [BIN, "serve", "--data-dir", dataDir, "--port", "0", "--", process.execPath, FS_SERVER, elsewhere], { cwd: "/", env, stdio: ["pipe", "pipe", "pipe"] });
    let asked!: () => void;
    const rootsAsked = new Promise<void>((done) => (asked = done));
    const client = new Client({ name: "rooted", version: "1.0" }, { capabilities: { roots: { listChanged: true } } });
    client.setRequestHandler(ListRootsRequestSchema, () => {
      asked();
      return { roots: [{ uri: pathToFileURL(project).href, name: "project" }] };
    });
    await client.connect(new StreamTransport(child.stdout!, child.stdin!), { timeout: 30_000 });
    await rootsAsked;
    await client.listTools();

    const result = (await client.request({ method: "tools/call", params: { name: "read_text_file", arguments: { path: "state/notes/todo.txt" } } }, CallToolResultSchema, { timeout: 30_000 })) as CallToolResult;
    const text = result.content.map((item) => ("text" in item ? item.text : "")).join("\n");
    expect(text).toMatch(/^PENDING REVIEW/);
    expect(text).toContain("self-protection");
    expect(text).not.toContain("not for the agent");
    await client.close();
  }, 60_000);
});
