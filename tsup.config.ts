import { defineConfig } from "tsup";

export default defineConfig([
  {
    // The library entry: dependencies stay external so they dedupe with the host project's; .d.ts emitted.
    entry: { index: "src/index.ts" },
    format: ["esm"],
    target: "node22",
    platform: "node",
    dts: true,
    sourcemap: true,
    clean: true,
  },
  {
    // The CLI: one bundled ESM file (cold start matters: Claude Desktop spawns it at every launch).
    entry: { cli: "src/cli.ts" },
    format: ["esm"],
    target: "node22",
    platform: "node",
    noExternal: [/.*/],
    splitting: true,
    sourcemap: false,
    clean: false,
    banner: { js: "import { createRequire as __atlasCreateRequire } from 'node:module'; const require = __atlasCreateRequire(import.meta.url);" },
  },
]);
