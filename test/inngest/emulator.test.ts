import { Inngest, NonRetriableError } from "inngest";
import { serve } from "inngest/node";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { InngestEmulator, parseTimeout, TEST_EVENT_KEY, TEST_SIGNING_KEY, type InngestEmulatorOptions } from "../helpers/inngestEmulator.js";

// The emulator itself, against the real SDK serving a toy app: if it misplays the protocol, the gateway's tests
// against it prove nothing.

const DAY = 86_400_000;
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanUp of cleanups.splice(0).reverse()) await cleanUp();
});

interface Toy {
  emulator: InngestEmulator;
  client: Inngest;
  attempts: Record<string, number>;
  /** Answers the next N executor calls with HTTP 502 before the SDK sees them. */
  failNext: { count: number };
}

/** A toy app on the real SDK, served on 127.0.0.1 and synced with a fresh emulator. */
async function toyApp(define: (client: Inngest, attempts: Record<string, number>) => unknown[], options: InngestEmulatorOptions = {}): Promise<Toy> {
  const emulator = new InngestEmulator({ backoff: () => 1000, ...options });
  const baseUrl = await emulator.start();
  const client = new Inngest({ id: "toy", isDev: false, signingKey: TEST_SIGNING_KEY, eventKey: TEST_EVENT_KEY, baseUrl, logger: quiet, internalLogger: quiet });
  const attempts: Record<string, number> = {};
  const failNext = { count: 0 };
  const handler = serve({ client, functions: define(client, attempts) as Parameters<typeof serve>[0]["functions"], servePath: "/api/inngest" });
  const server: Server = createServer((req, res) => {
    if (req.method === "POST" && failNext.count > 0) {
      failNext.count -= 1;
      res.writeHead(502).end("bad gateway");
      return;
    }
    handler(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  cleanups.push(async () => {
    await emulator.close();
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  });
  expect((await emulator.sync(`http://127.0.0.1:${(server.address() as AddressInfo).port}/api/inngest`)).status).toBe(200);
  return { emulator, client, attempts, failNext };
}

const noop = () => {};
const quiet = { info: noop, warn: noop, error: noop, debug: noop };

async function post(emulator: InngestEmulator, body: unknown, key = TEST_EVENT_KEY): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${emulator.url}/e/${key}`, { method: "POST", body: typeof body === "string" ? body : JSON.stringify(body) });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

/** Lets the run take every step it can without the clock moving. */
async function settle(emulator: InngestEmulator): Promise<void> {
  for (let i = 0; i < 5; i++) {
    await emulator.idle();
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe("the emulated event API", () => {
  it("checks the event key and the size limit, assigns internal ids, and drops a repeated event id for 24 h", async () => {
    const { emulator } = await toyApp((client) => [client.createFunction({ id: "noop", triggers: [{ event: "toy/go" }] }, async () => "done")], { maxEventBytes: 1024 });
    expect(await post(emulator, { name: "toy/go", data: {} }, "wrong-key")).toMatchObject({ status: 401, body: { error: "Event key not found" } });
    expect(await post(emulator, { name: "toy/go", data: { blob: "x".repeat(2000) } })).toMatchObject({ status: 400, body: { error: "event too large" } });
    expect(await post(emulator, { data: {} })).toMatchObject({ status: 400 });
    expect(emulator.runs).toEqual([]);

    const first = await post(emulator, { name: "toy/go", id: "my-id", data: {} });
    expect(first.status).toBe(200);
    expect(first.body.ids).toEqual([expect.stringMatching(/^[0-9A-HJKMNP-TV-Z]{26}$/)]);
    await post(emulator, { name: "toy/go", id: "my-id", data: {} });
    await settle(emulator);
    expect(emulator.runs).toHaveLength(1);
    expect(emulator.events.map((event) => Boolean(event.deduplicated))).toEqual([false, true]);
    emulator.clock.advance(DAY + 1);
    await post(emulator, { name: "toy/go", id: "my-id", data: {} });
    await settle(emulator);
    expect(emulator.runs).toHaveLength(2);
    expect(emulator.runs[0]!.output).toBe("done");
  });

  it("evaluates trigger expressions and turns idempotency into one run per key per 24 h", async () => {
    const { emulator } = await toyApp((client) => [
      client.createFunction({ id: "filtered", triggers: [{ event: "toy/order", if: "event.data.total > 100 && event.data.region == 'eu'" }], idempotency: "event.data.order" }, async ({ event }) => event.data.order),
    ]);
    for (const data of [{ order: "a", total: 50, region: "eu" }, { order: "b", total: 500, region: "us" }, { order: "c", total: 500 }, { order: "d", total: 500, region: "eu" }, { order: "d", total: 900, region: "eu" }]) {
      expect((await post(emulator, { name: "toy/order", data })).status).toBe(200);
    }
    await settle(emulator);
    expect(emulator.runs.map((run) => run.event.data.order)).toEqual(["d"]);
    emulator.clock.advance(DAY + 1);
    await post(emulator, { name: "toy/order", data: { order: "d", total: 900, region: "eu" } });
    await settle(emulator);
    expect(emulator.runs.map((run) => run.event.data.order)).toEqual(["d", "d"]);
  });
});

describe("the emulated executor", () => {
  it("retries a failing step on the pluggable backoff with the attempt in ctx, then continues", async () => {
    const { emulator } = await toyApp((client, attempts) => [
      client.createFunction({ id: "flaky", triggers: [{ event: "toy/go" }], retries: 3 }, async ({ step }) => {
        const value = await step.run("flaky-step", () => {
          attempts.flaky = (attempts.flaky ?? 0) + 1;
          if (attempts.flaky < 3) throw new Error(`attempt ${attempts.flaky} failed`);
          return "third time lucky";
        });
        return { value };
      }),
    ]);
    await post(emulator, { name: "toy/go", data: {} });
    const run = await emulator.waitForRun(() => true);
    await settle(emulator);
    expect(run.status).toBe("running");
    emulator.clock.advance(1000);
    await settle(emulator);
    emulator.clock.advance(1000);
    await emulator.ended(run);
    expect(run.output).toEqual({ value: "third time lucky" });
    expect(run.opNames().filter((op) => op.endsWith("flaky-step"))).toEqual(["StepError:flaky-step", "StepError:flaky-step", "StepRun:flaky-step"]);
    expect(run.calls.map((call) => (call.body.ctx as { attempt: number }).attempt)).toEqual([0, 1, 2, 0]);
    expect(run.stepResult("flaky-step")).toEqual({ data: "third time lucky" });
  });

  it("fails the run once retries are exhausted, or at once on a non-retriable error, and emits inngest/function.failed", async () => {
    const { emulator } = await toyApp((client) => [
      client.createFunction({ id: "doomed", triggers: [{ event: "toy/doomed" }], retries: 1 }, async ({ step }) => step.run("always", () => {
        throw new Error("nope");
      })),
      client.createFunction({ id: "final", triggers: [{ event: "toy/final" }], retries: 5 }, async () => {
        throw new NonRetriableError("never again");
      }),
    ]);
    await post(emulator, [{ name: "toy/doomed", data: {} }, { name: "toy/final", data: {} }]);
    await settle(emulator);
    emulator.clock.advance(1000);
    const [doomed, final] = await Promise.all(["toy/doomed", "toy/final"].map((name) => emulator.waitForRun((run) => run.event.name === name)));
    await emulator.ended(doomed!);
    await emulator.ended(final!);
    expect(doomed).toMatchObject({ status: "failed" });
    expect(final).toMatchObject({ status: "failed", error: expect.stringContaining("never again") });
    expect(final!.calls).toHaveLength(1);
    expect(final!.calls[0]).toMatchObject({ status: 400, headers: { "x-inngest-no-retry": "true" } });
    const failed = emulator.events.filter((event) => event.name === "inngest/function.failed");
    expect(failed.map((event) => event.data.function_id).sort()).toEqual(["toy-doomed", "toy-final"]);
  });

  it("retries non-2xx answers with the same request, then fails the run after the last attempt", async () => {
    const toy = await toyApp((client) => [client.createFunction({ id: "plain", triggers: [{ event: "toy/go" }], retries: 2 }, async () => "ok")]);
    toy.failNext.count = 1;
    await post(toy.emulator, { name: "toy/go", data: {} });
    const run = await toy.emulator.waitForRun(() => true);
    await settle(toy.emulator);
    toy.emulator.clock.advance(1000);
    await toy.emulator.ended(run);
    // the retry repeats the same call; the SDK then finishes (a RunComplete op, with checkpointing on by default)
    expect(run.calls.map((call) => [call.status, call.stepId, (call.body.ctx as { attempt: number }).attempt])).toEqual([[502, "step", 0], [expect.any(Number), "step", 1]]);
    expect(run.output).toBe("ok");

    toy.failNext.count = 3;
    await post(toy.emulator, { name: "toy/go", data: {} });
    const second = await toy.emulator.waitForRun((candidate) => candidate !== run);
    for (let i = 0; i < 3; i++) {
      await settle(toy.emulator);
      toy.emulator.clock.advance(1000);
    }
    await toy.emulator.ended(second);
    expect(second).toMatchObject({ status: "failed", error: expect.stringContaining("HTTP 502") });
    expect(second.calls).toHaveLength(3);
  });

  it("registers a wait before running the planned step beside it, matches only events that arrive while it exists, and stores the raw event", async () => {
    const { emulator } = await toyApp((client) => [
      client.createFunction({ id: "waiter", triggers: [{ event: "toy/start" }] }, async ({ step }) => {
        const [reply] = await Promise.all([
          step.waitForEvent("reply", { event: "toy/reply", timeout: "1h", if: "async.data.key == event.data.key" }),
          step.run("announce", () => "announced"),
        ]);
        return { reply };
      }),
    ]);
    // A reply sent before the run exists is lost, as on the real server.
    await post(emulator, { name: "toy/reply", data: { key: "k1", early: true } });
    await post(emulator, { name: "toy/start", data: { key: "k1" } });
    const run = await emulator.waitForRun(() => true);
    await emulator.waitingRun(run);
    await settle(emulator);
    expect(run.opNames().slice(0, 2)).toEqual(["WaitForEvent:reply", "StepPlanned:announce"]);
    expect(run.calls.slice(1).every((call) => (call.body.ctx as { disable_immediate_execution: boolean }).disable_immediate_execution)).toBe(true);
    expect(run.status).toBe("running");
    await post(emulator, { name: "toy/reply", data: { key: "other" } });
    await post(emulator, { name: "toy/reply", data: { key: "k1", late: true } });
    await emulator.ended(run);
    const reply = emulator.events.find((event) => event.data.late)!;
    expect(run.stepResult("reply")).toEqual({ data: { name: "toy/reply", id: reply.id, ts: reply.ts, data: { key: "k1", late: true } } });
    expect(run.output).toEqual({ reply: { name: "toy/reply", id: reply.id, ts: reply.ts, data: { key: "k1", late: true } } });
  });

  it("switches to use_api for a payload too big to send: the SDK fetches events and steps with its hashed signing key", async () => {
    const { emulator } = await toyApp((client) => [
      client.createFunction({ id: "bulky", triggers: [{ event: "toy/go" }] }, async ({ step }) => {
        const blob = await step.run("make-blob", () => "b".repeat(20_000));
        const size = await step.run("measure", () => blob.length);
        return { size };
      }),
    ], { maxRequestBytes: 10_000 });
    await post(emulator, { name: "toy/go", data: {} });
    const run = await emulator.waitForRun(() => true);
    await emulator.ended(run);
    expect(run.output).toEqual({ size: 20_000 });
    expect(run.calls.some((call) => (call.body.ctx as { use_api: boolean }).use_api)).toBe(true);
    expect(emulator.apiRequests.map((request) => request.path)).toEqual(expect.arrayContaining([`/v0/runs/${run.id}/actions`, `/v0/runs/${run.id}/batch`]));
    expect(emulator.apiRequests[0]!.authorization).toMatch(/^Bearer signkey-test-[0-9a-f]{64}$/);
    expect(emulator.apiRequests[0]!.authorization).not.toContain("5e5e5e");
  });

  it("times a wait out on its clock (storing null), sleeps until the clock says so, and rejects bad waits", async () => {
    const { emulator } = await toyApp((client) => [
      client.createFunction({ id: "patient", triggers: [{ event: "toy/patient" }] }, async ({ step }) => {
        await step.sleep("nap", "2h");
        const reply = await step.waitForEvent("reply", { event: "toy/reply", timeout: "1d" });
        return { reply };
      }),
      client.createFunction({ id: "too-long", triggers: [{ event: "toy/too-long" }] }, async ({ step }) => step.waitForEvent("reply", { event: "toy/reply", timeout: "400d" })),
      client.createFunction({ id: "bad-expr", triggers: [{ event: "toy/bad-expr" }] }, async ({ step }) => step.waitForEvent("reply", { event: "toy/reply", timeout: "1h", if: "async.data.key == = 1" })),
    ]);
    await post(emulator, [{ name: "toy/patient", data: {} }, { name: "toy/too-long", data: {} }, { name: "toy/bad-expr", data: {} }]);
    await settle(emulator);
    const byName = (name: string) => emulator.runs.find((run) => run.event.name === name)!;
    expect(byName("toy/too-long")).toMatchObject({ status: "failed", error: expect.stringContaining("more than 366 days") });
    expect(byName("toy/bad-expr")).toMatchObject({ status: "failed", error: expect.stringContaining("invalid expression") });
    const patient = byName("toy/patient");
    expect(patient.opNames()).toEqual(["Sleep:nap"]);
    emulator.clock.advance(2 * 3_600_000 - 1);
    await settle(emulator);
    expect(patient.opNames()).toEqual(["Sleep:nap"]);
    emulator.clock.advance(1);
    await emulator.waitingRun(patient);
    emulator.clock.advance(DAY);
    await emulator.ended(patient);
    expect(patient.stepResult("reply")).toEqual({ data: null });
    expect(patient.output).toEqual({ reply: null });
  });
});

describe("the other step ops", () => {
  it("invoke runs the target function and stores its output; waitForSignal resumes on a signal sent with the signing key", async () => {
    const { emulator, client } = await toyApp((inngest) => {
      const double = inngest.createFunction({ id: "double", triggers: [{ event: "toy/never" }] }, async ({ event }) => (event.data as { n: number }).n * 2);
      const parent = inngest.createFunction({ id: "parent", triggers: [{ event: "toy/go" }] }, async ({ step }) => {
        const doubled = await step.invoke("call-double", { function: double, data: { n: 21 } });
        const signal = await step.waitForSignal("await-signal", { signal: "toy-signal", timeout: "1h", onConflict: "fail" });
        return { doubled, signal };
      });
      return [double, parent];
    });
    await post(emulator, { name: "toy/go", data: {} });
    const parent = await emulator.waitForRun((run) => run.fn.id === "toy-parent");
    await emulator.until(() => parent.opNames().includes("WaitForSignal:await-signal"), 15_000, "the signal wait");
    await settle(emulator);
    expect(emulator.runs.find((run) => run.fn.id === "toy-double")).toMatchObject({ status: "completed", output: 42, event: { name: "inngest/function.invoked", data: { n: 21 } } });
    expect(await client.sendSignal({ signal: "toy-signal", data: { ok: true } })).toEqual({ runId: parent.id });
    await emulator.ended(parent);
    expect(parent.output).toEqual({ doubled: 42, signal: { signal: "toy-signal", data: { ok: true } } });
    // nobody waits for it any more: the server answers 404 and the SDK reports no run
    expect(await client.sendSignal({ signal: "toy-signal", data: {} })).toEqual({ runId: undefined });
  });
});

describe("parseTimeout", () => {
  const now = Date.parse("2026-01-01T00:00:00Z");
  it.each([
    ["30s", now + 30_000],
    ["1h30m", now + 5_400_000],
    ["1d", now + DAY],
    ["366d", now + 366 * DAY],
    ["2026-01-02T00:00:00.000Z", now + DAY],
  ])("%s", (value, expected) => expect(parseTimeout(value, now)).toBe(expected));
  it.each([["367d"], ["2027-06-01T00:00:00Z"], ["soon"], ["1 h"], [""]])("rejects %s", (value) => expect(typeof parseTimeout(value, now)).toBe("string"));
});
