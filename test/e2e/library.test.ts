import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { describe, expect, it } from "vitest";
import { BIN } from "../helpers/rawMcpProcess.js";

// The library entry of the installed package: `import "atlas-gateway"` in a project that installed only the tarball
// must find every package dist/index.js imports (issue 13: runtime dependencies are exactly those).

const PACKAGE = dirname(dirname(BIN));
const PROJECT = dirname(dirname(PACKAGE));

// index.js imports the MCP SDK, zod, canonicalize and standardwebhooks at load: loading it proves they are installed.
const SCRIPT = `
import * as atlas from "atlas-gateway";
const signed = atlas.signWebhook("whsec_" + Buffer.alloc(32, 1).toString("base64"), "{}");
console.log(JSON.stringify({
  version: atlas.VERSION,
  names: Object.keys(atlas).sort(),
  classify: atlas.classify(95),
  masked: atlas.maskSecrets({ password: "hunter2", amount: 12 }),
  signature: signed["webhook-signature"],
}));
`;

describe("library entry (installed package)", () => {
  it("imports in a project that installed only the tarball, and works", async () => {
    const version = (JSON.parse(readFileSync(join(PACKAGE, "package.json"), "utf8")) as { version: string }).version;
    const output = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(process.execPath, ["--input-type=module", "-e", SCRIPT], { cwd: PROJECT, timeout: 60_000 }, (error, stdout, stderr) =>
        resolve({ code: error ? Number((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      );
    });
    expect(output.stderr).toBe("");
    expect(output.code).toBe(0);
    const result = JSON.parse(output.stdout) as { version: string; names: string[]; classify: string; masked: Record<string, unknown>; signature: string };
    expect(result.version).toBe(version);
    expect(result.names).toEqual(expect.arrayContaining(["createGateway", "runGateway", "loadConfig", "scanLedger", "LocalEngine", "createHttpEvaluator"]));
    expect(result.classify).toBe("critical");
    expect(result.masked).toMatchObject({ amount: 12 });
    expect(result.masked.password).not.toBe("hunter2");
    expect(result.signature).toMatch(/^v1,[A-Za-z0-9+/]+=*$/);
  });
});
