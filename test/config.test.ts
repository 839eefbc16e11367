import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { defaultDataDir, loadConfig, nameForCommand, parseDuration } from "../src/config.js";
import { ConfigError } from "../src/errors.js";

const dir = mkdtempSync(join(tmpdir(), "atlas-config-"));
const file = (name: string, content: unknown) => {
  const path = join(dir, name);
  writeFileSync(path, typeof content === "string" ? content : JSON.stringify(content));
  return path;
};
const problemsOf = (fn: () => unknown): string[] => {
  try {
    fn();
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  throw new Error("expected a ConfigError");
};
const base = { env: { HOME: "/home/u" }, userConfig: false as const, cwd: dir };

describe("loadConfig", () => {
  it("applies the documented defaults", () => {
    const config = loadConfig(base);
    expect(config).toMatchObject({ host: "127.0.0.1", port: 8000, demo: false, engine: "local", instance: "main", upstreams: {} });
    expect(config.risk.threshold).toBe(70);
    expect(config.reviewTimeout).toBe(24 * 3_600_000);
    expect(config.dataDir).toBe(defaultDataDir({ HOME: "/home/u" }));
  });

  it("layers defaults < user file < --config file < env < flags", () => {
    const project = file("layers.json", { port: 9001, host: "127.0.0.2", risk: { threshold: 50 }, reviewTimeout: "2h" });
    const config = loadConfig({
      ...base,
      userConfig: { port: 9000, demo: true, instance: "user" },
      env: { HOME: "/h", ATLAS_CONFIG: project, ATLAS_PORT: "9002", ATLAS_RISK_THRESHOLD: "60" },
      flags: { port: "9003" },
    });
    expect(config.port).toBe(9003);
    expect(config.risk.threshold).toBe(60);
    expect(config.host).toBe("127.0.0.2");
    expect(config.demo).toBe(true);
    expect(config.instance).toBe("user");
    expect(config.reviewTimeout).toBe(7_200_000);
  });

  it("accepts the MCP client's mcpServers shape and the -- shorthand", () => {
    const project = file("servers.json", { mcpServers: { fs: { command: "npx", args: ["-y", "x"] }, web: { url: "http://127.0.0.1:1/mcp" } } });
    const config = loadConfig({ ...base, flags: { config: project }, shorthand: ["npx", "-y", "@scope/server-files@1.2", "/tmp"] });
    expect(Object.keys(config.upstreams)).toEqual(["fs", "web", "server-files"]);
    expect(config.upstreams["server-files"]).toEqual({ command: "npx", args: ["-y", "@scope/server-files@1.2", "/tmp"], env: {} });
    expect(config.upstreams.web).toEqual({ url: "http://127.0.0.1:1/mcp", headers: {} });
  });

  it("reports every problem as `path: what is wrong`, naming env sources", () => {
    const problems = problemsOf(() =>
      loadConfig({ ...base, env: { HOME: "/h", ATLAS_PORT: "eighty", ATLAS_ENGINE: "temporal", ATLAS_REVIEW_TIMEOUT: "soon" } }),
    );
    expect(problems).toHaveLength(3);
    expect(problems.find((p) => p.startsWith("port (from ATLAS_PORT):"))).toBeDefined();
    expect(problems.find((p) => p.startsWith("engine (from ATLAS_ENGINE):"))).toBeDefined();
    expect(problems.find((p) => p.startsWith("reviewTimeout (from ATLAS_REVIEW_TIMEOUT):"))).toMatch(/30s, 15m, 24h/);
  });

  it("rejects unknown keys, bad upstreams and out-of-range numbers", () => {
    const project = file("bad.json", { prot: 1, port: 70000, upstreams: { a: { args: ["x"] }, b: { url: "ftp://x" } } });
    const problems = problemsOf(() => loadConfig({ ...base, flags: { config: project } }));
    expect(problems.some((p) => p.startsWith("port:"))).toBe(true);
    expect(problems.some((p) => p.includes("prot"))).toBe(true);
    expect(problems.some((p) => p.startsWith("upstreams.a:") && p.includes("command"))).toBe(true);
    expect(problems.some((p) => p.startsWith("upstreams.b.url:"))).toBe(true);
  });

  it("explains a missing or broken config file", () => {
    expect(problemsOf(() => loadConfig({ ...base, flags: { config: join(dir, "nope.json") } }))[0]).toMatch(/config file not found/);
    expect(problemsOf(() => loadConfig({ ...base, flags: { config: file("broken.json", "{ port: ") } }))[0]).toMatch(/not valid JSON/);
    expect(problemsOf(() => loadConfig({ ...base, flags: { config: file("array.json", "[]") } }))[0]).toMatch(/JSON object/);
  });

  it("resolves a relative data dir against the working directory", () => {
    expect(loadConfig({ ...base, flags: { dataDir: "state" } }).dataDir).toBe(join(dir, "state"));
  });
});

describe("parseDuration", () => {
  it.each([
    ["250ms", 250], ["30s", 30_000], ["15m", 900_000], ["24h", 86_400_000], ["7d", 604_800_000], ["90", 90_000], [5, 5000],
  ] as const)("%s -> %d ms", (input, ms) => expect(parseDuration(input)).toBe(ms));
  it.each(["", "soon", "-5s", "1w"])("rejects %j", (input) => expect(parseDuration(input)).toBeUndefined());
});

describe("nameForCommand", () => {
  it.each([
    [["npx", ["-y", "@modelcontextprotocol/server-filesystem", "/tmp"]], "server-filesystem"],
    [["node", ["/opt/servers/weather.js"]], "weather"],
    [["/usr/local/bin/my-server", []], "my-server"],
    [["uvx", ["mcp-server-git@0.6"]], "mcp-server-git"],
  ] as const)("%j -> %s", ([command, args], name) => expect(nameForCommand(command, [...args])).toBe(name));
});

describe("prototype keys (issue 11)", () => {
  it.each([
    ["__proto__ at the top", '{"__proto__": {"risk": {"threshold": 95}}}', "__proto__"],
    ["__proto__ nested", '{"risk": {"__proto__": {"threshold": 95}}}', "risk.__proto__"],
    ["constructor in an upstream", '{"upstreams": {"fs": {"command": "x", "constructor": {"prototype": {"demo": true}}}}}', "upstreams.fs.constructor"],
    ["prototype inside a list", '{"risk": {"rules": [{"tool": "*", "effect": "allow", "prototype": 1}]}}', "risk.rules.0.prototype"],
  ])("refuses %s in a config file, naming where", (_label, json, where) => {
    const path = file(`proto-${where}.json`, json);
    const problems = problemsOf(() => loadConfig({ ...base, flags: { config: path } }));
    expect(problems).toEqual([expect.stringMatching(new RegExp(`^${path.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}: ${where.replace(/\./g, "\\.")}: "[a-z_]+" is not allowed as a config key`))]);
    // nothing leaked into objects' defaults
    expect(({} as Record<string, unknown>).threshold).toBeUndefined();
  });

  it("refuses them in the user config file, with exit code 2 from the CLI", async () => {
    const userDir = mkdtempSync(join(tmpdir(), "atlas-proto-user-"));
    writeFileSync(join(userDir, "config.json"), '{"risk": {"__proto__": {"threshold": 95}}}');
    const { main } = await import("../src/cli/main.js");
    const err: string[] = [];
    const code = await main(["pending", "--data-dir", dir], { out: () => {}, err: (text) => err.push(text), env: { HOME: dir, ATLAS_CONFIG_DIR: userDir } });
    expect(code).toBe(2);
    expect(err.join("\n")).toContain(`user config ${join(userDir, "config.json")}: risk.__proto__: "__proto__" is not allowed as a config key`);
    const set = await main(["config", "set", "risk.__proto__.threshold", "95"], { out: () => {}, err: (text) => err.push(text), env: { HOME: dir, ATLAS_CONFIG_DIR: mkdtempSync(join(tmpdir(), "atlas-proto-set-")) } });
    expect(set).toBe(2);
  });
});

describe("~ in path settings", () => {
  it("is expanded in --data-dir, --config, dataDir, an upstream's cwd and protectedPaths", () => {
    const home = mkdtempSync(join(tmpdir(), "atlas-home-"));
    writeFileSync(join(home, "project.json"), JSON.stringify({ dataDir: "~/from-file", upstreams: { fs: { command: "x", cwd: "~" } }, risk: { protectedPaths: ["~/secrets"] } }));
    const env = { HOME: home };
    const fromFile = loadConfig({ env, userConfig: false, flags: { config: "~/project.json" } });
    expect(fromFile.dataDir).toBe(join(home, "from-file"));
    expect((fromFile.upstreams.fs as { cwd?: string }).cwd).toBe(home);
    expect(fromFile.risk.protectedPaths).toEqual([join(home, "secrets")]);
    expect(fromFile.configFiles).toEqual([join(home, "project.json")]);
    expect(loadConfig({ env, userConfig: false, flags: { dataDir: "~/atlas" } }).dataDir).toBe(join(home, "atlas"));
    expect(loadConfig({ env: { ...env, ATLAS_DATA_DIR: "~" }, userConfig: false }).dataDir).toBe(home);
  });

  it("refuses ~user, which cannot be expanded portably, naming where it came from", () => {
    expect(problemsOf(() => loadConfig({ env: { HOME: "/h" }, userConfig: false, flags: { dataDir: "~bob/atlas" } }))).toEqual([
      "dataDir (from --data-dir): '~bob/atlas': only '~' and '~/…' can be expanded; write the full path",
    ]);
  });
});
