import type { Command } from "commander";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { main, OTHER_COMMANDS, programFor, servesOnly } from "../../src/cli/main.js";
import { buildProgram } from "../../src/cli/program.js";
import { parseServeArgs } from "../../src/cli/serveStart.js";
import { tempDir } from "../helpers.js";

/**
 * A plain gateway start builds only `serve` (issue 12: cold start). These tests hold it to the whole program's
 * behaviour: the same command runs with the same arguments and options, or the same usage error comes out.
 */
const io = (out: string[]) => ({ out: (text: string) => void out.push(text), err: (text: string) => void out.push(text), env: {} });

/** Parses argv with every action replaced by a recorder: which command ran, with what, or which error. */
async function outcome(program: Command, argv: string[], out: string[]): Promise<unknown> {
  const runs: unknown[] = [];
  const instrument = (command: Command) => {
    command.action(function (this: Command) {
      runs.push({ command: this.name(), args: this.args, opts: this.opts() });
    });
    command.commands.forEach(instrument);
  };
  program.commands.forEach(instrument);
  try {
    await program.parseAsync(argv, { from: "user" });
  } catch (error) {
    return { error: (error as { code?: string }).code, exitCode: (error as { exitCode?: number }).exitCode, out };
  }
  return { runs, out };
}

describe("the serve-only start", () => {
  it("knows every other top-level command of the whole program", () => {
    const names = buildProgram(io([]), []).commands.map((command) => command.name()).filter((name) => name !== "serve");
    expect([...OTHER_COMMANDS].sort()).toEqual([...names, "help"].sort());
  });

  const plainStarts = [
    [],
    ["serve"],
    ["--"],
    ["--", "npx", "-y", "@modelcontextprotocol/server-filesystem", "/tmp"],
    ["--", "serve"],
    ["--", "node", "up.js", "pending"],
    ["serve", "--data-dir", "/x", "--", "node", "up.js"],
    ["--data-dir", "/x", "--port", "0", "--instance", "bench", "--", "node", "up.js"],
    ["-d", "/x", "-c", "/y.json", "--demo"],
    ["-d/x", "--port=0"],
    ["--threshold", "50", "--review-timeout", "2h", "--engine", "local", "--host", "::1"],
    ["--engine", "nope"],
    ["--bogus"],
    ["--data-dir", "/x", "pending"],
    ["-"],
    ["--port"],
  ];
  it.each(plainStarts)("%j runs serve exactly as the whole program does", async (...argv) => {
    expect(servesOnly(argv)).toBe(true);
    const fast: string[] = [];
    const whole: string[] = [];
    const fastProgram = await programFor(io(fast), argv);
    expect(fastProgram.commands.map((command) => command.name())).toEqual(["serve"]);
    expect(await outcome(fastProgram, argv, fast)).toEqual(await outcome(buildProgram(io(whole), argv), argv, whole));
  });

  it.each([["--help"], ["-h"], ["-v"], ["--version"], ["-vh"], ["pending"], ["help"], ["aprove"], ["--", "pending"], ["--", "help"], ["serve", "--help"], ["--", "npx", "server", "--help"]])(
    "%j builds the whole program",
    async (...argv) => {
      expect(servesOnly(argv)).toBe(false);
      const names = (program: Command) => program.commands.map((command) => command.name());
      expect(names(await programFor(io([]), argv))).toEqual(names(buildProgram(io([]), argv)));
    },
  );

  it("an upstream without -- names every command, loaded for the message", async () => {
    const err: string[] = [];
    const code = await main(["--data-dir", tempDir(), "pendin"], { out: () => {}, err: (text) => void err.push(text), env: { ATLAS_CONFIG_DIR: tempDir() } });
    expect(code).toBe(2);
    const all = buildProgram(io([]), []).commands.map((command) => command.name());
    expect(all.length).toBeGreaterThan(10);
    expect(err.join("\n")).toContain(`unknown command 'pendin'. Commands: ${all.join(", ")}. An upstream command goes after --`);
  });
});

/** What commander does with argv: runs serve with (upstream, flags), runs another command, or fails. */
async function commanderServe(argv: string[]): Promise<unknown> {
  const program = buildProgram(io([]), argv);
  let ran: unknown = "nothing";
  const instrument = (command: Command) => {
    command.action(function (this: Command, ...params: unknown[]) {
      ran = this.name() === "serve" ? { upstream: params[0], flags: { ...(params[1] as object) } } : `ran ${this.name()}`;
    });
    command.commands.forEach(instrument);
  };
  program.commands.forEach(instrument);
  try {
    await program.parseAsync(argv, { from: "user" });
  } catch {
    return "error";
  }
  return ran;
}

describe("parseServeArgs (a plain start without commander)", () => {
  it.each([
    [[], { upstream: [], flags: {} }],
    [["--", "npx", "-y", "@modelcontextprotocol/server-filesystem", "/tmp"], { upstream: ["npx", "-y", "@modelcontextprotocol/server-filesystem", "/tmp"], flags: {} }],
    [["serve", "--data-dir", "/d", "--port", "0", "--instance", "bench", "--", "node", "up.js"], { upstream: ["node", "up.js"], flags: { dataDir: "/d", port: "0", instance: "bench" } }],
    [["-c", "/c.json", "-d", "/d", "--demo", "--engine=inngest", "--review-timeout", "2h", "--threshold", "50", "--host", "::1"], { upstream: [], flags: { config: "/c.json", dataDir: "/d", demo: true, engine: "inngest", reviewTimeout: "2h", threshold: "50", host: "::1" } }],
  ])("reads %j as commander does", async (argv, expected) => {
    expect(parseServeArgs(argv)).toEqual(expected);
    expect(await commanderServe(argv)).toEqual(expected);
  });

  it.each([[["--bogus"]], [["--engine", "nope"]], [["--port"]], [["--port", "-1"]], [["--port="]], [["-d/x"]], [["serve", "x"]], [["--data-dir", "/x", "pending"]]])(
    "leaves %j to commander",
    (argv) => expect(parseServeArgs(argv)).toBeUndefined(),
  );

  it("agrees with commander on every argv it reads (generated)", async () => {
    const tokens = ["serve", "--", "--demo", "-c", "--config", "-d", "--data-dir", "--host", "--port", "--threshold", "--review-timeout", "--engine", "--instance",
      "local", "inngest", "nope", "x", "/tmp/a b", "0", "-x", "-1", "--bogus", "--port=1", "--engine=local", "--engine=bad", "--data-dir=", "-d/x", "pending", "help", "--demo=1", ""];
    await fc.assert(
      fc.asyncProperty(fc.array(fc.constantFrom(...tokens), { maxLength: 8 }), async (argv) => {
        if (!servesOnly(argv)) return;
        const read = parseServeArgs(argv);
        if (read !== undefined) expect(await commanderServe(argv)).toEqual(read);
      }),
      { numRuns: 3000 },
    );
  });
});
