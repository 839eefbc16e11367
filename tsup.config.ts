import { createRequire } from "node:module";
import { defineConfig } from "tsup";

/**
 * `@inngest/middleware-encryption` is CommonJS and `require`s the Inngest SDK, which would pull the SDK's CommonJS
 * twin into the bundle next to its ESM build (twice the code, and two copies of its classes). Point those requires
 * at the ESM build the rest of the bundle uses.
 */
const singleInngest = {
  name: "single-inngest",
  setup(build: { onResolve: (options: { filter: RegExp }, callback: (args: { kind: string }) => { path: string } | undefined) => void }) {
    const esmEntry = createRequire(import.meta.url).resolve("inngest").replace(/index\.cjs$/, "index.js");
    build.onResolve({ filter: /^inngest$/ }, (args) => (args.kind === "require-call" ? { path: esmEntry } : undefined));
  },
};

export default defineConfig([
  {
    // The library entry: dependencies stay external so they dedupe with the host project's; .d.ts emitted.
    // The Inngest SDK is an optional peer here: only the `inngest` engine needs it.
    entry: { index: "src/index.ts" },
    format: ["esm"],
    target: "node22",
    platform: "node",
    // ajv is bundled, not a runtime dependency: `conf` (bundled here, a devDependency) reaches it through CommonJS
    // `require("ajv")` in ajv-formats, which an ESM bundle cannot resolve against an external package.
    noExternal: [/^ajv(\/|$)/],
    dts: true,
    sourcemap: true,
    clean: true,
  },
  {
    // The CLI: one bundled ESM file (cold start matters: Claude Desktop spawns it at every launch). The Inngest
    // engine lands in chunks loaded only by `import()` when that engine is selected.
    // argument-worker: the worker thread that prepares large tool-call arguments (risk/largeArguments.ts), found
    // next to the bundle by both the CLI and the library entry.
    entry: { cli: "src/cli/main.ts", "argument-worker": "src/risk/argumentWorker.ts" },
    format: ["esm"],
    target: "node22",
    platform: "node",
    noExternal: [/.*/],
    splitting: true,
    sourcemap: false,
    clean: false,
    esbuildPlugins: [singleInngest],
    // CommonJS code that reads __dirname/__filename (libsodium, under the Inngest encryption middleware) gets this
    // chunk's own; `define` only rewrites free references, so modules declaring their own are untouched.
    define: { __dirname: "__atlasDirname", __filename: "__atlasFilename" },
    banner: {
      js: "import { createRequire as __atlasCreateRequire } from 'node:module'; import { fileURLToPath as __atlasFileURLToPath } from 'node:url'; const require = __atlasCreateRequire(import.meta.url); const __atlasFilename = __atlasFileURLToPath(import.meta.url); const __atlasDirname = __atlasFileURLToPath(new URL('.', import.meta.url));",
    },
  },
]);
