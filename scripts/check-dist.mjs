#!/usr/bin/env node
// Run by `npm run build` after tsup: proves the built files load as Node will load them for a user.
//
// Why (issue 13): the tests import the sources, so a fault that only the bundle has goes unseen. The one that
// shipped: `const { request } = await import("undici")` became an import of a chunk whose only export is `default`
// (esbuild wraps a CommonJS package that way when it splits code), so `request` was undefined and every model
// evaluator failed in the built CLI while every test passed. This check closes that class:
//   1. every file in dist/ loads (which also links every static import by name);
//   2. every `import("…")` in dist/ resolves and loads;
//   3. every name an importer takes from a dynamic import (`const { a, b: c } = await import("…")`,
//      `(await import("…")).a`, `import("…").then((m) => m.a)`) is an export of what it loads;
//   4. every package the built files import is a `dependencies` or `peerDependencies` entry of package.json, and every
//      `dependencies` entry is imported by some built file (the CLI is bundled; only the library entry needs packages);
//   5. a `require("pkg")` that esbuild could not bundle (left as `__require`) is either such a dependency or an
//      optional one, inside a `try` (debug's `supports-color`): otherwise it would throw at run time for a user.
// It loads them in a child process with a temp HOME and config/data dirs, so loading a chunk cannot touch the user's files.
// Usage: node scripts/check-dist.mjs [distDir]   (exit 0 = all good, 1 = problems, one line each)

import { spawnSync } from "node:child_process";
import { isBuiltin } from "node:module";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { init, parse } from "es-module-lexer";

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const dist = resolve(process.argv[2] ?? join(root, "dist"));

// What an importer takes from `import("…")`, read from the code around the call (es-module-lexer finds the calls
// themselves, skipping comments and strings, e.g. the `import("../types/x")` in a bundled package's JSDoc).
const BEFORE_DESTRUCTURED = /\{([^{}]*)\}\s*=\s*await\s+$/;
const BEFORE_PARENTHESISED = /\(\s*await\s+$/;
const AFTER_MEMBER = /^\s*\)\s*\.\s*([A-Za-z_$][\w$]*)/;
const AFTER_THEN_MEMBER = /^\s*\.then\(\s*\(?\s*([A-Za-z_$][\w$]*)\s*\)?\s*=>\s*\1\s*\.\s*([A-Za-z_$][\w$]*)/;

/** `a, b: c, default: D, ...rest` -> the exported names taken (`a`, `b`, `default`). */
function destructuredNames(list) {
  return list
    .split(",")
    .map((part) => part.trim())
    .filter((part) => part && !part.startsWith("..."))
    .map((part) => part.split(/[:=]/)[0].trim());
}

const files = readdirSync(dist).filter((name) => name.endsWith(".js")).sort();
if (!files.includes("cli.js")) {
  console.error(`check-dist: ${dist} has no cli.js (run tsup first)`);
  process.exit(1);
}

/** package name -> the first file importing it (static or dynamic, bare specifiers that are not Node built-ins) */
const packagesUsed = new Map();
const packageOf = (specifier) => specifier.split("/").slice(0, specifier.startsWith("@") ? 2 : 1).join("/");
const notePackage = (file, specifier) => {
  if (specifier.startsWith(".") || specifier.startsWith("/") || specifier.startsWith("node:") || isBuiltin(specifier)) return;
  if (!packagesUsed.has(packageOf(specifier))) packagesUsed.set(packageOf(specifier), file);
};

/** target key -> { specifier, from (absolute file), names: Set, sites: Set } */
const targets = new Map();
const need = (file, specifier, name) => {
  const key = `${file}\0${specifier}`;
  let entry = targets.get(key);
  if (!entry) targets.set(key, (entry = { file, specifier, names: [] }));
  if (name && !entry.names.includes(name)) entry.names.push(name);
};
const UNBUNDLED_REQUIRE = /\b__require\(\s*(["'])([^"']+)\1\s*\)/g;
const unbundledRequires = [];

await init;
for (const name of files) {
  const file = join(dist, name);
  const code = readFileSync(file, "utf8");
  for (const match of code.matchAll(UNBUNDLED_REQUIRE)) {
    const specifier = match[2];
    if (specifier.startsWith("node:") || isBuiltin(specifier)) continue;
    const optional = /\btry\s*\{[^{}]*$/.test(code.slice(Math.max(0, match.index - 300), match.index));
    unbundledRequires.push({ file, name: packageOf(specifier), optional });
  }
  const [imports] = parse(code, name);
  for (const found of imports) {
    if (found.n !== undefined) notePackage(file, found.n);
    if (found.d < 0 || found.n === undefined) continue; // static imports are linked (and checked) when the file loads
    need(file, found.n);
    const before = code.slice(Math.max(0, found.ss - 400), found.ss);
    const after = code.slice(found.se, found.se + 200);
    const destructured = BEFORE_DESTRUCTURED.exec(before);
    if (destructured) for (const taken of destructuredNames(destructured[1])) need(file, found.n, taken);
    const member = BEFORE_PARENTHESISED.test(before) ? AFTER_MEMBER.exec(after) : null;
    if (member) need(file, found.n, member[1]);
    const thenMember = AFTER_THEN_MEMBER.exec(after);
    if (thenMember) need(file, found.n, thenMember[2]);
  }
}

// The probe runs in its own process: a fresh module graph, a temp HOME/cwd, and no stdout noise in the build.
// The probe runs in its own process: a fresh module graph, a temp HOME, and no stdout noise in the build. Its cwd is
// the package root, so a bare specifier (`@modelcontextprotocol/sdk/…` in the library entry) resolves through the same
// node_modules as from dist/.
const probe = `
const [files, targets] = JSON.parse(process.argv[1]);
const { pathToFileURL } = await import("node:url");
const out = { files: {}, targets: [] };
const firstLine = (error) => String(error?.message ?? error).split("\\n")[0];
for (const file of files) {
  try { await import(pathToFileURL(file).href); out.files[file] = null; } catch (error) { out.files[file] = firstLine(error); }
}
for (const target of targets) {
  const spec = target.specifier.startsWith(".") ? new URL(target.specifier, pathToFileURL(target.file)).href : target.specifier;
  try {
    out.targets.push({ ...target, exports: Object.keys(await import(spec)), error: null });
  } catch (error) {
    out.targets.push({ ...target, exports: [], error: firstLine(error) });
  }
}
process.stdout.write(JSON.stringify(out));
process.exit(0);
`;
const sandbox = mkdtempSync(join(tmpdir(), "atlas-check-dist-"));
let report;
try {
  const run = spawnSync(process.execPath, ["--input-type=module", "-e", probe, JSON.stringify([files.map((name) => join(dist, name)), [...targets.values()]])], {
    cwd: dirname(dist),
    env: { PATH: process.env.PATH, HOME: sandbox, ATLAS_CONFIG_DIR: join(sandbox, "config"), ATLAS_DATA_DIR: join(sandbox, "data"), NODE_PATH: "" },
    encoding: "utf8",
    maxBuffer: 64 * 1024 * 1024,
    timeout: 120_000,
  });
  if (run.status !== 0) {
    console.error(`check-dist: the probe process failed (exit ${run.status}${run.signal ? `, ${run.signal}` : ""}):\n${run.stderr}`);
    process.exit(1);
  }
  report = JSON.parse(run.stdout);
} finally {
  rmSync(sandbox, { recursive: true, force: true });
}

const problems = [];
const rel = (file) => `dist/${file.slice(dist.length + 1)}`;
for (const [file, error] of Object.entries(report.files)) if (error) problems.push(`${rel(file)} does not load: ${error}`);
for (const target of report.targets) {
  const where = `${rel(target.file)}: import("${target.specifier}")`;
  if (target.error) {
    problems.push(`${where} fails: ${target.error}`);
    continue;
  }
  const missing = target.names.filter((name) => !target.exports.includes(name));
  if (missing.length > 0) {
    const hint = target.exports.length === 1 && target.exports[0] === "default" ? " (a CommonJS module bundled with only a default export: take it from `default`, or avoid the dynamic import)" : "";
    problems.push(`${where} is used for ${missing.map((name) => `'${name}'`).join(", ")}, which it does not export (it exports: ${target.exports.join(", ") || "nothing"})${hint}`);
  }
}
const manifest = JSON.parse(readFileSync(join(dirname(dist), "package.json"), "utf8"));
const declared = new Set([...Object.keys(manifest.dependencies ?? {}), ...Object.keys(manifest.peerDependencies ?? {})]);
for (const { file, name, optional } of unbundledRequires) {
  if (!optional && !declared.has(name)) problems.push(`${rel(file)} requires '${name}' at run time outside a try (esbuild could not bundle it), and package.json does not list it in dependencies`);
}
for (const [name, file] of packagesUsed) {
  if (!declared.has(name)) problems.push(`${rel(file)} imports '${name}', which package.json does not list in dependencies (a user's install would not have it)`);
}
for (const name of Object.keys(manifest.dependencies ?? {})) {
  if (!packagesUsed.has(name)) problems.push(`package.json lists '${name}' in dependencies, but no built file imports it: move it to devDependencies (every user's install downloads it)`);
}
if (problems.length > 0) {
  for (const problem of problems) console.error(`check-dist: ${problem}`);
  process.exit(1);
}
const named = report.targets.reduce((sum, target) => sum + target.names.length, 0);
console.error(`check-dist: ${files.length} files load; ${report.targets.length} dynamic imports resolve; ${named} imported names exist; packages imported: ${[...packagesUsed.keys()].sort().join(", ")}`);
