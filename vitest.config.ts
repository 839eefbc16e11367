import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 30_000,
    pool: "forks",
    // end-to-end tests drive the packed-and-installed CLI, not this checkout (issue 13)
    globalSetup: ["test/setup/installedPackage.ts"],
    // CI reads the JSON summary to print "N passed, N failed".
    reporters: process.env.CI ? ["default", "json"] : ["default"],
    outputFile: { json: ".vitest-results.json" },
  },
});
