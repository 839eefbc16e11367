import canonicalize from "canonicalize";
import { mkdirSync, mkdtempSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { forgetArgumentTexts, knownArgumentTexts, rememberArgumentTexts } from "../../src/argumentTexts.js";
import { instancePaths } from "../../src/dataDir.js";
import { verifyLedger } from "../../src/ledger/verify.js";
import { digestCall } from "../../src/ledger/record.js";
import { ArgumentPreparer, prepareArgumentsNow, type WorkerSelfProtectionOptions } from "../../src/risk/largeArguments.js";
import { createSelfProtection, type SelfProtectionHit } from "../../src/risk/selfProtection.js";
import { heldCall, lowCall, openEngine, recordingExecutor, tempDir } from "../helpers.js";
import { BIN } from "../helpers/rawMcpProcess.js";
import { untilTrue } from "../helpers/until.js";

// The worker thread of the installed package (what users run); the main thread's side is the source.
const WORKER_URL = pathToFileURL(join(dirname(BIN), "..", "dist", "argument-worker.js"));

const root = realpathSync(mkdtempSync(join(tmpdir(), "atlas-large-args-")));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const home = join(root, "home");
const dataDir = join(home, ".local", "share", "atlas-gateway");
const work = join(root, "work");
mkdirSync(join(dataDir, "ledgers"), { recursive: true });
mkdirSync(work, { recursive: true });
writeFileSync(join(dataDir, "webhook-secret"), "whsec_x\n");

const options: WorkerSelfProtectionOptions = {
  paths: [{ path: dataDir, label: "the gateway's data dir" }],
  suffixes: [{ path: "webhook-secret", label: "the gateway's approval credentials (by name)" }],
  home,
  env: { HOME: home },
};
let roots: string[] = [];
const cwds = () => [work, ...roots];
const check = createSelfProtection({ ...options, cwds });

const megabytes = "lorem ipsum ".repeat(200_000); // 2.4 MB of words
const cases: [string, Record<string, unknown>][] = [
  ["a protected path after megabytes of text", { text: `${megabytes} cat ${dataDir}/ledgers/main.jsonl` }],
  ["the CLI inside a nested array", { steps: [{ run: megabytes }, { run: "atlas-gateway approve evt_00000000" }] }],
  ["a protected name in JSON inside a string", { body: JSON.stringify({ note: megabytes, path: "~/.local/share/atlas-gateway/webhook-secret" }) }],
  ["a relative path that reaches the data dir only from an MCP root", { path: "../../home/.local/share/atlas-gateway/halt.json", pad: megabytes }],
  ["megabytes that reach nothing", { text: megabytes, n: 3, flag: true, nested: { z: 1, a: [null, "é😀"] } }],
];

describe("large arguments on the worker thread (issue 10)", () => {
  it("gets the same verdicts, texts and digest as the in-thread work", async () => {
    roots = [];
    const preparer = new ArgumentPreparer({ options, cwds, check, workerUrl: WORKER_URL });
    try {
      for (const [name, args] of cases) {
        await preparer.prepare(args, { upstream: "files", tool: "write" });
        const fresh = structuredClone(args);
        expect(preparer.selfProtection(args), name).toEqual(check(fresh));
        const texts = knownArgumentTexts(args)!;
        expect(Buffer.from(texts.canonicalBytes).toString("utf8"), name).toBe(canonicalize(fresh));
        expect(Buffer.from(texts.jsonBytes).toString("utf8"), name).toBe(JSON.stringify(fresh));
        expect(digestCall("files", "write", args), name).toBe(digestCall("files", "write", fresh));
      }
      // the roots are read at each call: the relative path reaches the data dir only from a root two levels deep
      expect(preparer.selfProtection(cases[3]![1])).toBeUndefined();
      roots = [join(root, "deep", "er")];
      const again = structuredClone(cases[3]![1]);
      await preparer.prepare(again, { upstream: "files", tool: "write" });
      expect(preparer.selfProtection(again)).toMatchObject({ target: expect.stringContaining("data dir") });
    } finally {
      await preparer.close();
    }
  });

  it("answers from what was prepared for that very object, and checks any other object anew", async () => {
    const seen: unknown[] = [];
    const counting = (args: Record<string, unknown>): SelfProtectionHit | undefined => {
      seen.push(args);
      return check(args);
    };
    const preparer = new ArgumentPreparer({ options, cwds, check: counting, workerUrl: WORKER_URL });
    try {
      const args = { text: `${megabytes} ${dataDir}/webhook-secret` };
      await preparer.prepare(args, { upstream: "files", tool: "write" });
      const verdict = check({ ...args });
      expect(verdict).toBeDefined();
      expect(preparer.selfProtection(args)).toEqual(verdict);
      expect(seen).toEqual([]); // the worker did the checking
      const copy = { ...args };
      expect(preparer.selfProtection(copy)).toEqual(verdict);
      expect(seen).toEqual([copy]);
    } finally {
      await preparer.close();
    }
  });

  it("works in-thread, with the same answers, when the worker file is missing or the worker is stopped", async () => {
    const lines: string[] = [];
    const missing = new ArgumentPreparer({ options, cwds, check, workerUrl: pathToFileURL(join(root, "no-such-worker.js")), log: (line) => lines.push(line) });
    const args = { text: `${megabytes} ${dataDir}/ledgers/main.jsonl` };
    await missing.prepare(args, { upstream: "files", tool: "write" });
    expect(missing.selfProtection(args)).toMatchObject({ target: expect.stringContaining("the gateway's data dir") });
    expect(Buffer.from(knownArgumentTexts(args)!.canonicalBytes).toString("utf8")).toBe(canonicalize(args));
    expect(lines).toEqual([expect.stringMatching(/argument worker unavailable \(.*no-such-worker\.js is missing\); large arguments are prepared in-thread/)]);

    const stopped = new ArgumentPreparer({ options, cwds, check, workerUrl: WORKER_URL, log: (line) => lines.push(line) });
    const first = { text: `${megabytes} atlas-gateway approve evt_00000001` };
    const pending = stopped.prepare(first, { upstream: "shell", tool: "run" });
    await stopped.close(); // while the worker holds the request
    await pending;
    expect(stopped.selfProtection(first)).toMatchObject({ target: expect.stringContaining("CLI") });
    const later = { text: megabytes };
    await stopped.prepare(later, { upstream: "shell", tool: "run" });
    expect(stopped.selfProtection(later)).toBeUndefined();
    expect(knownArgumentTexts(later)?.call?.digest).toBe(digestCall("shell", "run", { text: megabytes }));
  });

  it("does not check again on the main thread arguments the worker died on: they are held as unchecked", async () => {
    const lines: string[] = [];
    const seen: unknown[] = [];
    const counting = (args: Record<string, unknown>): SelfProtectionHit | undefined => {
      seen.push(args);
      return check(args);
    };
    const dying = pathToFileURL(fileURLToPath(new URL("../fixtures/dying-argument-worker.mjs", import.meta.url)));
    const preparer = new ArgumentPreparer({ options, cwds, check: counting, workerUrl: dying, log: (line) => lines.push(line) });
    try {
      // what exhausted one heap would exhaust the gateway's own, and take every other call with it
      const fatal = { text: megabytes };
      await preparer.prepare(fatal, { upstream: "files", tool: "write" });
      expect(seen).toEqual([]);
      expect(preparer.selfProtection(fatal)).toMatchObject({ at: "$", target: expect.stringContaining("the argument worker stopped while checking them") });
      expect(knownArgumentTexts(fatal)).toBeUndefined();
      expect(lines).toEqual([expect.stringMatching(/argument worker unavailable \(.*out of memory \(stand-in\)\); large arguments are prepared in-thread/)]);
      // later calls: in-thread, judged as usual
      const later = { text: megabytes };
      await preparer.prepare(later, { upstream: "files", tool: "write" });
      expect(seen).toEqual([later]);
      expect(preparer.selfProtection(later)).toBeUndefined();
    } finally {
      await preparer.close();
    }
  });

  it("prepares the canonical text in RFC 8785 order and the bytes sent upstream in the arguments' own order", () => {
    const args = { z: "é", a: { y: 1, b: [2] } };
    const prepared = prepareArgumentsNow(check, args, { upstream: "u", tool: "t" });
    expect(Buffer.from(prepared.canonicalBytes).toString("utf8")).toBe('{"a":{"b":[2],"y":1},"z":"é"}');
    expect(Buffer.from(prepared.jsonBytes).toString("utf8")).toBe('{"z":"é","a":{"y":1,"b":[2]}}');
    expect(prepared.digest).toBe(digestCall("u", "t", { a: { b: [2], y: 1 }, z: "é" }));
  });
});

describe("a held call with prepared arguments across segment rollovers (issue 10 with issue 12)", () => {
  it("checkpoints carry it with its texts known and after they are forgotten; it verifies, reopens and runs as sent", async () => {
    const dataDir = tempDir();
    const executor = recordingExecutor();
    const ledger = { segmentRecords: 4 };
    const engine = openEngine(dataDir, executor, { ledger });
    // as the gateway has them: JSON.parse's own `__proto__` member, texts and digest prepared before submit
    const args = JSON.parse(`{"z":"${"é😀 ".repeat(300_000)}","a":{"y":1,"b":[2,1e21,-0]},"n":{"__proto__":"p"}}`) as Record<string, unknown>;
    const target = { upstream: "fs", tool: "write_file" };
    const prepared = prepareArgumentsNow(() => undefined, args, target);
    rememberArgumentTexts(args, { canonicalBytes: prepared.canonicalBytes, jsonBytes: prepared.jsonBytes, call: { ...target, digest: prepared.digest } });
    const held = await engine.submit(heldCall(args));
    expect(held.kind).toBe("hold");
    for (let i = 0; i < 10; i++) await engine.submit(lowCall({ path: `/tmp/${i}` })); // rollovers with the texts known
    forgetArgumentTexts(args);
    for (let i = 0; i < 10; i++) await engine.submit(lowCall({ path: `/tmp/b${i}` })); // and serialised afresh
    await engine.close();
    const path = instancePaths(dataDir, "main").ledger;
    const verified = verifyLedger(path);
    expect(verified.scan.problem).toBeUndefined();
    expect(verified.checkpoints).toBeGreaterThan(3);

    const reopened = openEngine(dataDir, executor, { ledger });
    reopened.resume();
    expect(reopened.pending().map((view) => view.ref)).toEqual([held.ref]);
    expect((await reopened.decide({ ref: held.ref!, decision: "approved", reviewer: "ana" })).status).toBe("applied");
    await untilTrue(() => executor.calls.length === 21, "the approved call ran");
    const ran = executor.calls.at(-1)!.args;
    expect(canonicalize(ran) === canonicalize(structuredClone(args))).toBe(true);
    expect(Object.keys(ran.n as object)).toEqual(["__proto__"]);
    await reopened.close();
    expect(verifyLedger(path).scan.problem).toBeUndefined();
  });
});
