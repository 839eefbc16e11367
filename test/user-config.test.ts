import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { ConfigError } from "../src/errors.js";
import { loadConfig, openUserConfig, userConfigPath } from "../src/config.js";

const temp = () => mkdtempSync(join(tmpdir(), "atlas-userconfig-"));
const xdgBefore = process.env.XDG_CONFIG_HOME;
afterEach(() => {
  if (xdgBefore === undefined) delete process.env.XDG_CONFIG_HOME;
  else process.env.XDG_CONFIG_HOME = xdgBefore;
});

/** loadConfig reads the user config file itself (conf is loaded only to write it): the two must agree on where it is. */
describe("user config file", () => {
  it("is where conf keeps it, with ATLAS_CONFIG_DIR", async () => {
    const env = { ATLAS_CONFIG_DIR: temp() };
    expect(userConfigPath(env)).toBe((await openUserConfig(env)).path);
  });

  it("is where conf keeps it, in the OS config dir", async () => {
    process.env.XDG_CONFIG_HOME = temp(); // keeps conf from creating a directory in the real home
    expect(userConfigPath({})).toBe((await openUserConfig({})).path);
  });

  it("what `config set` writes through conf is what loadConfig reads", async () => {
    const env = { ATLAS_CONFIG_DIR: temp(), HOME: temp() };
    const store = await openUserConfig(env);
    store.set("port", 9123);
    store.set("mcpServers", { fs: { command: "node", args: ["server.js"] } });
    const config = loadConfig({ env, cwd: temp() });
    expect(config.port).toBe(9123);
    expect(Object.keys(config.upstreams)).toEqual(["fs"]);
  });

  it("a missing file is empty; a broken one is a config error", () => {
    const dir = temp();
    const env = { ATLAS_CONFIG_DIR: dir, HOME: temp() };
    expect(loadConfig({ env, cwd: dir }).port).toBe(8000);
    writeFileSync(join(dir, "config.json"), "{ not json");
    expect(() => loadConfig({ env, cwd: dir })).toThrow(ConfigError);
  });
});
