import { mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join, win32 } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { credentialsDir, loadConfig } from "../../src/config.js";
import { compilePolicy } from "../../src/risk/policy.js";
import { createRiskEvaluator } from "../../src/risk/assess.js";
import { createEvaluatorFromConfig, protectedSuffixesFor } from "../../src/risk/setup.js";
import { collapseDots, createSelfProtection, expandBraces, shellWords } from "../../src/risk/selfProtection.js";

// A fake home with the gateway's files laid out as on a real machine.
const root = realpathSync(mkdtempSync(join(tmpdir(), "atlas-selfprot-")));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const home = join(root, "home", "ana");
const dataDir = join(home, ".local", "share", "atlas-gateway");
const configFile = join(home, "work", "atlas.json");
const packageDir = join(root, "lib", "node_modules", "atlas-gateway");
const work = join(home, "work");
mkdirSync(join(dataDir, "ledgers"), { recursive: true });
mkdirSync(work, { recursive: true });
mkdirSync(join(packageDir, "bin"), { recursive: true });
mkdirSync(join(home, "src", "atlas-gateway"), { recursive: true });
writeFileSync(join(dataDir, "webhook-secret"), "whsec_x\n");
writeFileSync(join(dataDir, "ledgers", "main.jsonl"), "");
writeFileSync(configFile, "{}");
symlinkSync(dataDir, join(work, "innocent"));
symlinkSync(join(dataDir, "webhook-secret"), join(root, "secret-link"));
symlinkSync(join(dataDir, "not-yet-there.json"), join(root, "dangling-link"));

const check = createSelfProtection({
  paths: [
    { path: dataDir, label: "the gateway's data dir" },
    { path: configFile, label: "the gateway's config" },
    { path: packageDir, label: "the gateway's CLI" },
  ],
  home,
  cwds: [work],
  env: { XDG_DATA_HOME: join(home, ".local", "share") },
});

describe("self-protection", () => {
  const reached: [string, Record<string, unknown>, string][] = [
    ["absolute path into the data dir", { path: join(dataDir, "ledgers", "main.jsonl") }, "data dir"],
    ["the data dir itself", { path: dataDir }, "data dir"],
    ["trailing slash", { path: `${dataDir}/` }, "data dir"],
    ["the webhook secret with ~", { path: "~/.local/share/atlas-gateway/webhook-secret" }, "data dir"],
    ["$HOME", { path: "$HOME/.local/share/atlas-gateway/ledgers" }, "data dir"],
    ["${XDG_DATA_HOME}", { path: "${XDG_DATA_HOME}/atlas-gateway/webhook-secret" }, "data dir"],
    ["relative path from the cwd", { path: "../.local/share/atlas-gateway/webhook-secret" }, "data dir"],
    ["relative config file", { path: "atlas.json" }, "config"],
    ["dot-dot normalised", { path: `${work}/../work/./atlas.json` }, "config"],
    ["symlinked directory", { path: join(work, "innocent", "webhook-secret") }, "data dir"],
    ["symlinked file", { path: join(root, "secret-link") }, "data dir"],
    ["dangling symlink to a file about to be created", { path: join(root, "dangling-link") }, "data dir"],
    ["a new file inside the data dir", { path: join(dataDir, "ledgers", "forged.jsonl") }, "data dir"],
    ["file:// URL", { uri: `file://${dataDir}/webhook-secret` }, "data dir"],
    ["nested in arrays and objects", { edits: [{ ok: "x" }, { target: { path: "~/work/atlas.json" } }] }, "config"],
    ["path inside a shell command", { command: "cat ~/.local/share/atlas-gateway/webhook-secret | base64" }, "data dir"],
    ["quoted path with spaces in a command", { command: `cp x "${dataDir}/ledgers/a b.jsonl"` }, "data dir"],
    ["--flag=path", { command: `node x.js --data-dir=${dataDir}` }, "data dir"],
    ["redirect into the config", { command: "echo '{}'>~/work/atlas.json" }, "config"],
    ["PATH-style list", { env: `PATH=/usr/bin:${packageDir}/bin` }, "CLI"],
    ["the CLI by name", { command: "atlas-gateway approve evt_1a2b3c4d" }, "CLI"],
    ["the CLI through npx", { command: "npx -y atlas-gateway@latest approve evt_1a2b3c4d --reason ok" }, "CLI"],
    ["the CLI after another command", { command: "ls; ATLAS_DATA_DIR=/x atlas-gateway deny evt_1 -r no" }, "CLI"],
    ["the CLI in a subshell", { script: "echo $(atlas-gateway config get webhook.secret)" }, "CLI"],
    ["the CLI from a bin dir", { command: "/usr/local/bin/atlas-gateway pending" }, "CLI"],
    ["the CLI's launcher script", { command: "node ./node_modules/atlas-gateway/bin/atlas-gateway.js approve evt_1" }, "CLI"],
    ["the CLI in node_modules/.bin", { command: "node_modules/.bin/atlas-gateway approve evt_1" }, "CLI"],
    ["the CLI, upper case", { command: "ATLAS-GATEWAY approve evt_1" }, "CLI"],
    ["the installed package", { path: join(packageDir, "dist", "cli.js") }, "CLI"],
    // red team: the shell expands what the check read literally
    ["a glob in a directory name", { command: "cp evil.json ~/.local/share/atlas-g*/reviewers.json" }, "data dir"],
    ["a ? glob", { command: "cat ~/.local/share/atlas-gatewa?/approval-keys.json" }, "data dir"],
    ["a bracket glob", { command: "cat ~/.local/share/atlas-[f-h]ateway/halt.json" }, "data dir"],
    ["a glob for the whole directory", { command: "echo {} > ~/.local/share/*/halt.json" }, "data dir"],
    ["a glob for the data dir itself", { command: "rm -rf ~/.local/share/*" }, "data dir"],
    ["globbed socket in a command substitution", { command: "socat - UNIX-CONNECT:$(ls ~/.local/share/atlas*/run/*.sock)" }, "data dir"],
    ["a ** glob", { command: "cat ~/**/reviewers.json" }, "data dir"],
    ["a backslash the shell drops", { command: "cat ~/.local/share/atlas-gate\\way/reviewers.json" }, "data dir"],
    ["a string literal in inline code", { command: `python3 -c "open('${dataDir}/reviewers.json','w').write('{}')"` }, "data dir"],
    ["brace expansion", { command: "cp x ~/.local/share/{notes,atlas-gateway}/reviewers.json" }, "data dir"],
    ["brace expansion of a path's tail", { command: "cat ~/.local/share/atlas-gate{way,keeper}/webhook-secret" }, "data dir"],
  ];
  it.each(reached)("holds %s", (_label, args, target) => {
    const hit = check(args);
    expect(hit, JSON.stringify(args)).toBeDefined();
    expect(hit!.target).toContain(target);
  });

  const clear: [string, Record<string, unknown>][] = [
    ["an unrelated absolute path", { path: join(home, "notes.txt") }],
    ["a sibling that shares a prefix", { path: `${dataDir}-backup/x` }],
    ["a relative path elsewhere", { path: "src/index.ts" }],
    ["a repository that shares the CLI's name", { command: `cd ${join(home, "src", "atlas-gateway")} && git status` }],
    ["a word that contains the name", { query: "my-atlas-gateway-notes" }],
    ["plain values", { citizen_id: "C-1001", days: 30, ok: true, none: null }],
    ["a glob that can only match an ancestor or a sibling", { command: "ls ~/.local/* ~/.local/share/atlas-gateway-*/x" }],
    ["a glob elsewhere", { command: "rm -f ~/work/build/*.o ./*.tmp" }],
    ["braces elsewhere", { command: "mkdir -p ~/work/{src,test}" }],
    ["no arguments", {}],
  ];
  it.each(clear)("lets through %s", (_label, args) => {
    expect(check(args)).toBeUndefined();
  });

  it("a gateway started inside its own package dir holds relative paths into it, not every bare word", () => {
    const inside = createSelfProtection({ paths: [{ path: packageDir, label: "the gateway's CLI" }], home, cwds: [packageDir] });
    expect(inside({ citizen_id: "C-1001", note: "dist" })).toBeUndefined();
    expect(inside({ path: "./dist/cli.js" })?.target).toContain("CLI");
    expect(inside({ path: "bin/atlas-gateway.js" })?.target).toContain("CLI");
    expect(inside({ path: "." })?.target).toContain("CLI");
  });

  it("names where in the arguments it found the path", () => {
    expect(check({ edits: [{ ok: "x" }, { "target file": "~/work/atlas.json" }] })).toEqual({
      at: '$.edits[1]["target file"]',
      value: "a path (17 characters)",
      target: `the gateway's config (${configFile})`,
    });
  });

  it.each([
    ["a b  c", ["a", "b", "c"]],
    [`cat "x y" 'z w'`, ["cat", "x y", "z w"]],
    ["a\\ b;c|d&&e>f", ["a b", "c", "d", "e", "f"]],
    ["$(atlas-gateway pending)", ["$", "atlas-gateway", "pending"]],
  ])("splits shell words of %j", (text, words) => {
    expect(shellWords(text)).toEqual(words);
  });
});

describe("self-protection sees what the upstream will touch (issue 11)", () => {
  // an upstream rooted at a directory that contains the data dir, whose name has a space and an accent
  const fsRoot = join(root, "Users", "Zoë");
  const spaced = join(fsRoot, "Library", "Application Support", "atlas-gateway");
  mkdirSync(join(spaced, "ledgers"), { recursive: true });
  writeFileSync(join(spaced, "webhook-secret"), "whsec_x\n");
  symlinkSync(join(spaced, "webhook-secret"), join(fsRoot, "notes.txt"));
  const guard = createSelfProtection({
    paths: [{ path: spaced, label: "the gateway's data dir" }],
    suffixes: [{ path: "webhook-secret", label: "credentials (by name)" }, { path: "ledgers/*.jsonl", label: "a ledger (by name)" }],
    home,
    cwds: ["/", fsRoot],
  });
  const relative = "Library/Application Support/atlas-gateway/ledgers/main.json";
  const padded = `${"./".repeat(5000)}${relative}`;
  const nfd = relative.normalize("NFD").replace("Support", "Support/./").replace("atlas-gateway", "x/../atlas-gateway");

  it.each([
    ["relative to the upstream's root", { path: relative }],
    ["padded past 4,096 characters with ./", { path: padded }],
    ["padded inside a shell command", { command: `cat ${JSON.stringify(padded)}` }],
    ["repeated separators", { path: relative.replaceAll("/", "////") }],
    ["`..` through a sibling", { path: `Library/Caches/../${relative.slice("Library/".length)}` }],
    ["a symlink whose name gives nothing away", { path: "notes.txt" }],
    ["a path inside JSON inside a string", { edits: JSON.stringify([{ path: relative }]) }],
    ["a path inside a JSON object literal in text", { body: `{"path":"${relative}"}` }],
  ])("holds %s", (_label, args) => {
    expect(guard(args)?.target, JSON.stringify(args).slice(0, 200)).toContain("data dir");
  });

  it("compares in NFC: a decomposed spelling of an accented directory reaches the same data dir", () => {
    const zoeRoot = createSelfProtection({ paths: [{ path: join(fsRoot, "Library") , label: "the gateway's data dir" }], home, cwds: ["/"] });
    const decomposed = join(fsRoot, "Library", "x").normalize("NFD");
    expect(decomposed).not.toBe(join(fsRoot, "Library", "x"));
    expect(zoeRoot({ path: decomposed })?.target).toContain("data dir");
    expect(guard({ path: nfd })).toBeDefined();
  });

  it("matches protected names under a base it does not know", () => {
    expect(guard({ path: "somewhere/unknown/webhook-secret" })?.target).toContain("credentials");
    expect(guard({ path: "webhook-secret" })?.target).toContain("credentials");
    expect(guard({ query: "ledgers/main.jsonl please" })?.target).toContain("ledger");
    expect(guard({ path: "C:\\data\\ledgers\\main.jsonl" })?.target).toContain("ledger");
    expect(guard({ path: "reports/ledger-2024.csv", note: "webhook secrets are rotated monthly" })).toBeUndefined();
  });

  it("the gateway's own by-name list covers ledger v2: segments, the signed head and the signing key (issue 12)", () => {
    const config = loadConfig({ env: {}, userConfig: { dataDir: join(root, "custom-data") } });
    const byName = createSelfProtection({ paths: [], suffixes: protectedSuffixesFor(config), home, cwds: ["/somewhere/else"] });
    for (const path of ["srv/x/ledgers/main/000000000000.jsonl", "ledgers/main/000000020000.jsonl.gz", "ledgers/main.head", "srv/keys/ledger.key", "custom-data/keys/ledger.pub"]) {
      expect(byName({ path })?.target, path).toBeDefined();
    }
    expect(byName({ path: "srv/reports/main/2024.csv" })).toBeUndefined();
  });

  it("asks a base function at every check (MCP roots change while the gateway runs)", () => {
    const bases = ["/"];
    const live = createSelfProtection({ paths: [{ path: spaced, label: "the gateway's data dir" }], home, cwds: () => bases });
    expect(live({ path: "Library/Application Support/atlas-gateway/x" })).toBeUndefined();
    bases.push(fsRoot);
    expect(live({ path: "Library/Application Support/atlas-gateway/x" })?.target).toContain("data dir");
  });

  it("never quotes the argument in what it reports", () => {
    const hit = guard({ path: `${relative}?token=sk-live-0123456789abcdef` });
    expect(hit).toBeDefined();
    expect(JSON.stringify(hit)).not.toContain("sk-live");
  });

  it("walks arguments nested 10,000 deep without overflowing the stack", () => {
    let deep: unknown = { path: relative };
    for (let i = 0; i < 10_000; i++) deep = { a: deep };
    expect(guard({ deep })?.target).toContain("data dir");
  });
});

describe("self-protection in the risk evaluator", () => {
  const input = { upstream: "fs", tool: "write_file", name: "write_file", args: { path: "~/.local/share/atlas-gateway/ledgers/main.jsonl" } };

  it("holds as critical whatever allow or score rules say; a deny rule still denies", async () => {
    const evaluate = (rules: Parameters<typeof compilePolicy>[0]["rules"]) => createRiskEvaluator({ policy: compilePolicy({ rules }), selfProtection: check })({ ...input, annotations: { readOnlyHint: true } });
    const allowed = await evaluate([{ tool: "write_file", effect: "allow" }, { tool: "*", effect: 0 }]);
    expect(allowed).toMatchObject({ score: 100, classification: "critical", verdict: "review" });
    expect(allowed.rules!.map((rule) => rule.id)).toEqual(["rules[0]", "rules[1]", "self-protection"]);
    expect(allowed.reasons[0]).toMatch(/^self-protection: arguments reach the gateway's data dir/);
    expect((await evaluate([{ tool: "write_file", effect: "deny" }])).verdict).toBe("deny");
  });

  it("protects the config files, data dir and control socket the config names", async () => {
    const config = loadConfig({ env: {}, userConfig: false, flags: { config: configFile, dataDir }, cwd: work });
    const { evaluator } = createEvaluatorFromConfig(config, { env: { HOME: home }, cwd: work, packageDir });
    for (const path of ["./atlas.json", "~/.local/share/atlas-gateway/webhook-secret", join(dataDir, "run", "main.sock"), join(packageDir, "dist", "cli.js"), join(packageDir, "package.json")]) {
      const assessment = await evaluator({ ...input, args: { path } });
      expect(assessment.verdict, path).toBe("review");
      expect(assessment.rules?.some((rule) => rule.id === "self-protection"), path).toBe(true);
    }
    for (const path of ["./notes.md", join(packageDir, "src", "risk.ts"), "reports/ledger.csv"]) {
      expect((await evaluator({ ...input, args: { path } })).rules?.some((rule) => rule.id === "self-protection"), path).toBe(false);
    }
  });

  it("resolves relative paths against an upstream's root directories (its arguments) and the agent's MCP roots", async () => {
    const config = loadConfig({ env: {}, userConfig: false, flags: { dataDir }, cwd: "/" });
    config.upstreams = { fs: { command: "npx", args: ["-y", "@modelcontextprotocol/server-filesystem", home], env: {} } };
    const relativeLedger = { path: ".local/share/atlas-gateway/pins.json" };
    expect((await createEvaluatorFromConfig(config, { env: { HOME: home }, cwd: "/", packageDir })
      .evaluator({ ...input, args: relativeLedger })).rules?.map((rule) => rule.id)).toContain("self-protection");

    config.upstreams = {};
    const roots: string[] = [];
    const { evaluator } = createEvaluatorFromConfig(config, { env: { HOME: home }, cwd: "/", packageDir, roots: () => roots });
    expect((await evaluator({ ...input, args: relativeLedger })).rules?.map((rule) => rule.id) ?? []).not.toContain("self-protection");
    roots.push(home);
    expect((await evaluator({ ...input, args: relativeLedger })).rules?.map((rule) => rule.id)).toContain("self-protection");
  });

  it("protects the approval credentials outside the data dir, and ledger and secret names under any base", async () => {
    const env = { HOME: home, ATLAS_CONFIG_DIR: join(home, ".config", "atlas-gateway") };
    const config = loadConfig({ env, userConfig: false, flags: { dataDir }, cwd: work });
    const { evaluator } = createEvaluatorFromConfig(config, { env, cwd: work, packageDir });
    for (const path of [join(credentialsDir(dataDir, env), "webhook-secret"), join(credentialsDir(dataDir, env), "approval-keys.json"), "~/.config/atlas-gateway/credentials", "elsewhere/ledgers/main.jsonl", "x/atlas-gateway/run/main.sock",
      "somewhere/approval-keys.json", `x/${basename(dataDir)}/reviewers.json`, `x/${basename(dataDir)}/halt.json`]) {
      expect((await evaluator({ ...input, args: { path } })).rules?.map((rule) => rule.id), path).toContain("self-protection");
    }
  });

  it("protects the files that grant approval power by name, after the agent moved a directory holding them", async () => {
    // red team: `move_file <project> <p2>` (a plain destructive call a reviewer may approve), then a write to
    // <p2>/data/reviewers.json adds the agent as a reviewer, and a move back puts it in force
    const env = { HOME: home, ATLAS_CONFIG_DIR: join(home, ".config", "atlas-gateway") };
    const config = loadConfig({ env, userConfig: false, flags: { dataDir: join(work, "data"), config: configFile }, cwd: work });
    const { evaluator } = createEvaluatorFromConfig(config, { env, cwd: work, packageDir });
    for (const path of ["/tmp/p2/data/reviewers.json", "/tmp/p2/data/approval-keys.json", "/tmp/p2/data/halt.json", "/tmp/moved/atlas-gateway/config.json", "/tmp/moved/work/atlas.json"]) {
      expect((await evaluator({ ...input, args: { path } })).rules?.map((rule) => rule.id), path).toContain("self-protection");
    }
    // a bare file name the shell resolves by itself (find, xargs) names them too
    for (const command of ["find ~ -name reviewers.json -exec cp evil.json {} \\;", "find / -name approval-keys.json | xargs rm", "locate halt.json"]) {
      expect((await evaluator({ ...input, args: { command } })).rules?.map((rule) => rule.id), command).toContain("self-protection");
    }
    for (const path of ["/tmp/p2/other/config.json", "/proc/cpuinfo", "/tmp/p2/reviewers.yaml"]) {
      expect((await evaluator({ ...input, args: { path } })).rules?.map((rule) => rule.id) ?? [], path).not.toContain("self-protection");
    }
  });

  it("protects MCP clients' server lists by name: an agent that adds a server there routes around the gateway", async () => {
    const config = loadConfig({ env: {}, userConfig: false, flags: { dataDir }, cwd: work });
    const { evaluator } = createEvaluatorFromConfig(config, { env: { HOME: home }, cwd: work, packageDir });
    for (const path of ["./.mcp.json", "/srv/app/.cursor/mcp.json", "~/.vscode/mcp.json", "~/.config/Claude/claude_desktop_config.json"]) {
      expect((await evaluator({ ...input, args: { path } })).rules?.map((rule) => rule.id), path).toContain("self-protection");
    }
    expect((await evaluator({ ...input, args: { path: "./docs/mcp.json" } })).rules?.map((rule) => rule.id) ?? []).not.toContain("self-protection");
  });

  it("protects a process's environment (/proc/<pid>/environ), where the gateway's own keys are readable", async () => {
    const env = { HOME: home, ATLAS_CONFIG_DIR: join(home, ".config", "atlas-gateway") };
    const config = loadConfig({ env, userConfig: false, flags: { dataDir }, cwd: work });
    const { evaluator } = createEvaluatorFromConfig(config, { env, cwd: work, packageDir });
    // a shell upstream is the gateway's child: /proc/$PPID/environ is the gateway's own environment, which keeps a
    // reviewer's exported ATLAS_REVIEWER_TOKEN (scrubbed from upstreams' env, not from the gateway's) and model keys
    for (const command of ["cat /proc/$PPID/environ", "tr '\\0' '\\n' < /proc/1234/environ", "xxd /proc/self/../$PPID/environ"]) {
      expect((await evaluator({ ...input, args: { command } })).rules?.map((rule) => rule.id), command).toContain("self-protection");
    }
    expect((await evaluator({ ...input, args: { command: "cat /proc/cpuinfo" } })).rules?.map((rule) => rule.id) ?? []).not.toContain("self-protection");
  });
});

describe("self-protection on odd input", () => {
  it("answers for words longer than any path (no ENAMETOOLONG failure, which would hold every big argument)", () => {
    const guard = createSelfProtection({ paths: [{ path: dataDir, label: "the gateway's data dir" }], home, cwds: [work] });
    expect(guard({ blob: "y".repeat(5 * 1024 * 1024) })).toBeUndefined();
    expect(guard({ path: `./${"a/".repeat(3000)}x` })).toBeUndefined();
    expect(guard({ path: `${"./".repeat(5000)}${dataDir.slice(1)}`.replace(/^/, "/") })?.target).toContain("data dir");
  });
});

describe("self-protection on huge arguments (issue 10: bounded scans, same verdicts)", () => {
  const megabytes = "z".repeat(3 * 1024 * 1024);
  it("finds a protected path before, inside or after megabytes of text, however the shell would spell it", () => {
    const reachedInside: [string, string][] = [
      ["a path after a huge word", `${megabytes} ~/.local/share/atlas-gateway/webhook-secret`],
      ["a path before a huge word", `cat ${dataDir}/ledgers/main.jsonl ${megabytes}`],
      ["a quoted name split by quotes", `${megabytes} "${dataDir}/web"'hook-secret'`],
      ["a backslash-escaped name", `${megabytes}\n${dataDir.replace(/atlas-gateway/, "atlas\\-gate\\way")}/ledgers`],
      ["the CLI after a huge word", `${megabytes}; atlas-gateway approve evt_00000000`],
      ["$HOME glued to a huge word by =", `--x=$HOME/.local/share/atlas-gateway/${megabytes}`],
      ["a huge file name in the data dir", `${dataDir}/${megabytes}`],
    ];
    for (const [what, text] of reachedInside) expect(check({ text }), what).toBeDefined();
    const byName = createSelfProtection({ paths: [], suffixes: protectedSuffixesFor(loadConfig({ env: {}, userConfig: false, flags: { dataDir }, cwd: "/" })), home, cwds: [work] });
    expect(byName({ text: `/elsewhere/ledgers/${megabytes}.jsonl` })?.target).toContain("ledger");
    expect(byName({ text: `${megabytes} find / -name reviewers.json` })?.target).toContain("reviewers");
  });

  it("finds a protected name among a million distinct words, CSV lines or lines of code, on every platform", () => {
    let seed = 3;
    const word = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) % 1e9).toString(36);
    const lines = (make: () => string) => Array.from({ length: 300_000 }, make).join("");
    const texts: [string, string][] = [
      ["distinct words", lines(() => `${word()} `)],
      ["CSV lines", lines(() => `${word()},${word()},"${word()}"\n`)],
      ["lines of code", lines(() => `  const ${word()} = obj.${word()}(x, "${word()}");\n`)],
    ];
    for (const platform of ["linux", "darwin", "win32"] as const) {
      const byName = createSelfProtection({ paths: [], suffixes: protectedSuffixesFor(loadConfig({ env: {}, userConfig: false, flags: { dataDir }, cwd: "/" })), home, cwds: [work], platform });
      const name = platform === "linux" ? "reviewers.json" : "Reviewers.JSON";
      for (const [what, text] of texts) {
        expect(byName({ text }), `${what} on ${platform}`).toBeUndefined();
        expect(byName({ text: `${text} ${name}` })?.target, `${what} then a name on ${platform}`).toContain("reviewers");
        expect(byName({ text: `${text}x,'${name}',y` })?.target, `${what} then a quoted name on ${platform}`).toContain("reviewers");
      }
    }
  });

  it("passes huge text that reaches nothing, as a whole value and as shell words", () => {
    expect(check({ text: megabytes })).toBeUndefined();
    expect(check({ text: `${megabytes} ${megabytes}x ./${megabytes}` })).toBeUndefined();
    expect(check({ text: `${"é".normalize("NFD")}${megabytes}` })).toBeUndefined();
  });

  it("splits shell words as before: quotes, escapes and separators, without a character-by-character copy", () => {
    expect(shellWords(String.raw`a"b c"'d'\ e;f|g\h "x\"y"`)).toEqual(["ab cd e", "f", "g\\h", 'x"y']);
    expect(shellWords(`${megabytes} q`)).toEqual([megabytes, "q"]);
    expect(shellWords("\u00a0a\u3000b")).toEqual(["a", "b"]);
  });
});

describe("expandBraces", () => {
  it("expands as a shell does, nested, and stays bounded on hostile words", () => {
    expect(expandBraces("a{b,c}d")).toEqual(["abd", "acd"]);
    expect(expandBraces("x/{a,b{1,2}}/y")).toEqual(["x/a/y", "x/b1/y", "x/b2/y"]);
    expect(expandBraces("{}{a,b}")).toEqual(["{}a", "{}b"]);
    expect(expandBraces("{a,b")).toEqual(["{a,b"]);
    expect(expandBraces("{a,b}".repeat(40))).toHaveLength(64);
    expect(expandBraces("{}".repeat(500_000))).toHaveLength(1);
    expect(expandBraces(`${"{".repeat(5000)}a,b${"}".repeat(5000)}`)).toHaveLength(1);
  });
});

describe("collapseDots", () => {
  it.each([
    ["/a/./b//c/../d", "/a/b/d"],
    ["a/../../b", "../b"],
    ["/../../x", "/x"],
    ["./", "."],
    ["", "."],
    ["../", ".."],
    ["a/b/../../..", ".."],
  ])("%j -> %j (as path.posix.normalize, without trailing separators)", (path, expected) => {
    expect(collapseDots(path)).toBe(expected);
  });
  it.each([["C:\\a\\..\\b/./c", "C:\\b\\c"], ["\\\\server\\share\\x\\..\\y", "\\\\server\\share\\y"]])("win32 %j -> %j", (path, expected) => {
    expect(collapseDots(path, win32)).toBe(expected);
  });

  it("stays linear on a megabyte of `a/…/../..` (Node's normalisation is quadratic there)", () => {
    const path = `${"a/".repeat(200_000)}${"../".repeat(200_000)}${dataDir.slice(1)}/x`;
    expect(collapseDots(`/${path}`)).toBe(`${dataDir}/x`);
    const guard = createSelfProtection({ paths: [{ path: dataDir, label: "the gateway's data dir" }], home, cwds: ["/"] });
    expect(guard({ path })?.target).toContain("data dir");
  }, 60_000);
});
