import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { runDoctor } from "../../src/cli/doctor.js";
import { FakeEventApi, TEST_EVENT_KEY, TEST_SIGNING_KEY } from "../helpers/fakeInngest.js";

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanUp of cleanups.splice(0)) await cleanUp();
});

async function doctor(env: Record<string, string>, port = "0"): Promise<{ lines: string[]; failures: number }> {
  const dir = mkdtempSync(join(tmpdir(), "atlas-doctor-"));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const lines: string[] = [];
  const failures = await runDoctor({ env: { HOME: dir, ATLAS_CONFIG_DIR: join(dir, "config"), ATLAS_ENGINE: "inngest", ...env }, flags: { dataDir: dir, port }, out: (line) => lines.push(line) });
  return { lines, failures };
}

/** A port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe("doctor with engine inngest", () => {
  it("checks mode, keys, the base URL, and prints the dev server command", async () => {
    const api = new FakeEventApi();
    const url = await api.start();
    cleanups.push(() => api.close());
    const { lines, failures } = await doctor({ INNGEST_SIGNING_KEY: TEST_SIGNING_KEY, INNGEST_EVENT_KEY: TEST_EVENT_KEY, INNGEST_BASE_URL: url }, "8123");
    const text = lines.join("\n");
    expect(text).toMatch(/✓ inngest: mode serve, app 'atlas-gateway-[0-9a-f]{10}' \(self-hosted or custom Inngest\)/);
    expect(text).toContain("✓ inngest: event key and signing key present and well-formed");
    expect(text).toContain(`✓ inngest: ${url} reachable (HTTP 503)`);
    expect(text).toContain("npx inngest-cli dev -u http://127.0.0.1:8123/api/inngest");
    // a fresh data dir is not a failure: the webhook secret and ledger are created at first start (issue 13)
    expect(lines.filter((line) => line.startsWith("✗"))).toEqual([]);
    expect(failures).toBe(0);
  });

  it("names each missing or malformed key and an unreachable Inngest, and fails", async () => {
    const port = await closedPort();
    const { lines, failures } = await doctor({ INNGEST_SIGNING_KEY: "signkey-prod-xyz", INNGEST_BASE_URL: `http://127.0.0.1:${port}` });
    const text = lines.join("\n");
    expect(text).toContain("✗ inngest.signingKey (INNGEST_SIGNING_KEY): not a signing key");
    expect(text).toContain("✗ inngest.eventKey (INNGEST_EVENT_KEY): missing");
    expect(text).toContain(`✗ inngest: http://127.0.0.1:${port} not reachable (ECONNREFUSED)`);
    expect(lines.filter((line) => line.startsWith("✗ inngest"))).toHaveLength(3);
    expect(failures).toBe(3);
  });

  it("in dev mode needs no keys and checks the dev server's URL", async () => {
    const port = await closedPort();
    const { lines } = await doctor({ INNGEST_DEV: `http://127.0.0.1:${port}`, ATLAS_INNGEST_MODE: "connect" });
    const text = lines.join("\n");
    expect(text).toContain("mode connect");
    expect(text).toContain("✓ inngest: dev mode is on (INNGEST_DEV), keys not required");
    expect(text).toContain(`✗ inngest: http://127.0.0.1:${port} not reachable`);
    expect(text).not.toContain("inngest-cli dev -u");
  });
});
