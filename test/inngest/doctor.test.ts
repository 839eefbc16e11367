import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { runDoctor } from "../../src/cli/doctor.js";
import { InngestEmulator, TEST_EVENT_KEY, TEST_SIGNING_KEY } from "../helpers/inngestEmulator.js";
import { highRiskCall, startEmulatedGateway } from "../helpers/inngestEngineFixture.js";

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanUp of cleanups.splice(0)) await cleanUp();
});

async function doctor(env: Record<string, string>, port = "0", dataDir?: string): Promise<{ lines: string[]; failures: number }> {
  const dir = dataDir ?? mkdtempSync(join(tmpdir(), "atlas-doctor-"));
  if (!dataDir) cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
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
    const api = new InngestEmulator();
    const url = await api.start();
    cleanups.push(() => api.close());
    const { lines, failures } = await doctor({ INNGEST_SIGNING_KEY: TEST_SIGNING_KEY, INNGEST_EVENT_KEY: TEST_EVENT_KEY, INNGEST_BASE_URL: url }, "8123");
    const text = lines.join("\n");
    expect(text).toMatch(/✓ inngest: mode serve, app 'atlas-gateway-[0-9a-f]{10}' \(self-hosted or custom Inngest\)/);
    expect(text).toContain("✓ inngest: event key and signing key present and well-formed");
    expect(text).toContain(`✓ inngest: ${url} reachable (HTTP 404)`);
    expect(text).toContain(`✓ inngest: Inngest at ${url} accepts inngest.signingKey (signed probe: HTTP 404)`);
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

  it("reports an app Inngest never synced, and each open call its run cannot carry, with the cause", async () => {
    const gateway = await startEmulatedGateway({ sync: false, env: { ATLAS_INNGEST_RUN_START_TIMEOUT: "100ms" } });
    cleanups.push(() => gateway.close());
    const { ref } = await gateway.engine.submit(highRiskCall);
    await gateway.emulator.until(() => gateway.engine.get(ref!)?.problem !== undefined, 15_000, "the stall warning");
    await gateway.stop();
    const env = { INNGEST_SIGNING_KEY: TEST_SIGNING_KEY, INNGEST_EVENT_KEY: TEST_EVENT_KEY, INNGEST_BASE_URL: gateway.emulator.url };
    const { lines } = await doctor(env, "0", gateway.dir);
    const text = lines.join("\n");
    expect(text).toContain("✗ inngest: instance 'main': Inngest has never synced this app or called its steps");
    expect(text).toContain(`✗ inngest: ${ref} (transfer, pending): Inngest accepted its request event, but no run has started`);
    expect(text).toContain("fix: sync the app with Inngest");
  });

  it("says when the app synced, and when a sync failed to register (a signing-key mismatch)", async () => {
    const gateway = await startEmulatedGateway();
    cleanups.push(() => gateway.close());
    const env = { INNGEST_SIGNING_KEY: TEST_SIGNING_KEY, INNGEST_EVENT_KEY: TEST_EVENT_KEY, INNGEST_BASE_URL: gateway.emulator.url };
    await gateway.emulator.until(() => gateway.records().some((record) => record.type === "inngest.synced"), 15_000, "the sync record");
    expect(gateway.logs.join("\n")).toContain(`inngest: app '${gateway.appId}' synced: Inngest registered the governance workflow`);
    // The server was started with another key: the dashboard's sync reaches the gateway, registration is refused.
    gateway.emulator.signingKey = `signkey-test-${"0b".repeat(32)}`;
    const res = await fetch(gateway.url, { method: "PUT", headers: { "x-inngest-signature": (await import("../helpers/inngestEmulator.js")).signInngestBody("", TEST_SIGNING_KEY) } });
    expect(res.status).not.toBe(200);
    await gateway.emulator.until(() => gateway.records().some((record) => record.type === "inngest.sync_failed"), 15_000, "the failed sync record");
    expect(gateway.logs.join("\n")).toContain("could not register with Inngest");
    expect(gateway.logs.join("\n")).toContain("Self-hosted: INNGEST_SIGNING_KEY must be the key the server was started with");
    await gateway.stop();
    const { lines } = await doctor(env, "0", gateway.dir);
    expect(lines.join("\n")).toContain("✗ inngest: instance 'main': the last sync failed to register the app");
  });

  it("a signing key Inngest does not know fails the signed probe", async () => {
    const api = new InngestEmulator({ signingKey: `signkey-test-${"0c".repeat(32)}` });
    const url = await api.start();
    cleanups.push(() => api.close());
    const { lines } = await doctor({ INNGEST_SIGNING_KEY: TEST_SIGNING_KEY, INNGEST_EVENT_KEY: TEST_EVENT_KEY, INNGEST_BASE_URL: url });
    expect(lines.join("\n")).toContain(`✗ inngest: Inngest at ${url} does not accept inngest.signingKey (signed probe: HTTP 401)`);
    expect(api.apiRequests[0]!.authorization).toMatch(/^Bearer signkey-test-[0-9a-f]{64}$/);
  });
});
