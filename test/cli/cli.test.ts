import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { main } from "../../src/cli/main.js";
import { VERSION } from "../../src/version.js";
import { tempDir } from "../helpers.js";

/** The CLI in-process, with its own IO and a private user-config dir. */
async function run(args: string[], env: NodeJS.ProcessEnv) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(args, { out: (text) => out.push(text), err: (text) => err.push(text), env });
  return { code, out: out.join("\n"), err: err.join("\n") };
}

describe("CLI", () => {
  const configDir = tempDir("atlas-cli-config-");
  const dataDir = tempDir("atlas-cli-data-");
  const env = { HOME: dataDir, ATLAS_CONFIG_DIR: configDir, ATLAS_DATA_DIR: dataDir };

  it("config set validates, persists, and reverts a bad value", async () => {
    expect((await run(["config", "set", "risk.threshold", "55"], env)).code).toBe(0);
    expect((await run(["config", "get", "risk.threshold"], env)).out).toBe("55");
    const bad = await run(["config", "set", "port", "\"eighty\""], env);
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/^atlas-gateway: port: /);
    const path = (await run(["config", "path"], env)).out;
    expect(path).toBe(join(configDir, "config.json"));
    expect(JSON.parse(readFileSync(path, "utf8"))).toEqual({ risk: { threshold: 55 } });
  });

  it("names the user config file when it is not valid JSON", async () => {
    const brokenDir = tempDir("atlas-cli-broken-");
    const { writeFileSync } = await import("node:fs");
    writeFileSync(join(brokenDir, "config.json"), "{ port: ");
    const result = await run(["pending"], { ...env, ATLAS_CONFIG_DIR: brokenDir });
    expect(result.code).toBe(2);
    expect(result.err).toContain(`user config ${join(brokenDir, "config.json")}: `);
  });

  it("config get webhook.secret creates and prints the secret; unknown keys are an error", async () => {
    const secret = (await run(["config", "get", "webhook.secret"], env)).out;
    expect(secret).toMatch(/^whsec_/);
    expect((await run(["config", "get", "webhook.secret"], env)).out).toBe(secret);
    expect((await run(["config", "get", "nope"], env)).code).toBe(2);
  });

  it("pending, audit verify and show handle an empty data dir and bad refs", async () => {
    const empty = { ...env, ATLAS_DATA_DIR: tempDir() };
    expect((await run(["pending"], empty)).out).toBe("no calls waiting for review");
    expect(await run(["audit", "verify"], empty)).toMatchObject({ code: 4, err: expect.stringMatching(/no ledgers in .*nothing to verify/) });
    expect(await run(["show", "evt_12345678"], empty)).toMatchObject({ code: 4 });
    expect(await run(["approve", "12345678"], empty)).toMatchObject({ code: 2, err: expect.stringMatching(/not a ref/) });
    expect(await run(["tools", "show", "no_such_tool"], empty)).toMatchObject({ code: 4, err: expect.stringMatching(/no pinned tool 'no_such_tool'/) });
  });

  it("audit verify checks signatures with the data dir's key or an auditor's --public-key, on a copy", async () => {
    const { cpSync, writeFileSync } = await import("node:fs");
    const { openEngine, recordingExecutor, heldCall } = await import("../helpers.js");
    const { loadOrCreateSigner, formatVerifierKey } = await import("../../src/ledger/signedNote.js");
    const own = tempDir();
    const engine = openEngine(own, recordingExecutor());
    await engine.submit(heldCall());
    await engine.close();
    const ok = await run(["audit", "verify"], { ...env, ATLAS_DATA_DIR: own });
    expect(ok).toMatchObject({ code: 0, out: expect.stringMatching(/✓ ledger 'main': \d+ records in 1 segment\(s\), hash chain intact, 0 signed checkpoint\(s\), signed head at \d+ records/) });

    // an auditor's copy: the ledgers only, and the public key given on the command line
    const copy = tempDir();
    cpSync(join(own, "ledgers"), join(copy, "ledgers"), { recursive: true });
    const publicKey = readFileSync(join(own, "keys", "ledger.pub"), "utf8").trim();
    const unsigned = await run(["audit", "verify"], { ...env, ATLAS_DATA_DIR: copy });
    expect(unsigned.err).toMatch(/signatures not checked; pass --public-key/);
    expect(await run(["audit", "verify", "--public-key", publicKey], { ...env, ATLAS_DATA_DIR: copy })).toMatchObject({ code: 0, out: expect.stringMatching(/signed head at \d+ records/) });
    const keyFile = join(tempDir(), "auditor.pub");
    writeFileSync(keyFile, `${publicKey}\n`);
    expect((await run(["audit", "verify", "--public-key", keyFile], { ...env, ATLAS_DATA_DIR: copy })).code).toBe(0);

    const stranger = loadOrCreateSigner(join(tempDir(), "k"), join(tempDir(), "k.pub"));
    const wrong = await run(["audit", "verify", "--public-key", formatVerifierKey(stranger.verifier)], { ...env, ATLAS_DATA_DIR: copy });
    expect(wrong).toMatchObject({ code: 5, out: expect.stringMatching(/✗ ledger 'main' .*tampering: the head file .* not signed by key/) });
    expect(await run(["audit", "verify", "--public-key", "not-a-key"], { ...env, ATLAS_DATA_DIR: copy })).toMatchObject({ code: 2, err: expect.stringMatching(/--public-key: not a verifier key/) });
  });

  it("audit export writes a period with secrets masked and the signed checkpoints around it; the excerpt verifies alone", async () => {
    const { writeFileSync } = await import("node:fs");
    const { openEngine, recordingExecutor, lowCall } = await import("../helpers.js");
    const own = tempDir();
    let clock = Date.parse("2026-06-01T00:00:00Z");
    const engine = openEngine(own, recordingExecutor(), { now: () => new Date(clock), ledger: { segmentRecords: 8 } });
    for (let i = 0; i < 30; i++) {
      await engine.submit(lowCall({ path: `/tmp/${i}`, api_key: "sk-live-0123456789abcdefghij" }));
      clock += 60_000;
    }
    await engine.close();
    const ownEnv = { ...env, ATLAS_DATA_DIR: own };
    const since = new Date(Date.parse("2026-06-01T00:10:00Z")).toISOString();
    const until = new Date(Date.parse("2026-06-01T00:14:30Z")).toISOString();
    const file = join(tempDir(), "excerpt.jsonl");
    expect((await run(["audit", "export", "--since", since, "--until", until, "--output", file], ownEnv)).code).toBe(0);
    const text = readFileSync(file, "utf8");
    expect(text).not.toContain("sk-live-0123456789abcdefghij");
    const lines = text.trim().split("\n").map((line) => JSON.parse(line) as { kind?: string; records?: number; masked?: boolean });
    expect(lines[0]).toMatchObject({ atlas_excerpt: 1, records: 10 });
    expect(lines.filter((line) => line.kind === "record" && line.masked)).toHaveLength(5); // request.admitted carries the key
    expect(lines.filter((line) => line.kind === "checkpoint").length).toBeGreaterThanOrEqual(2);

    // the auditor: the excerpt and the public key, nothing else
    const auditor = { ...env, ATLAS_DATA_DIR: tempDir() };
    const publicKey = readFileSync(join(own, "keys", "ledger.pub"), "utf8").trim();
    const ok = await run(["audit", "verify", "--excerpt", file, "--public-key", publicKey], auditor);
    expect(ok).toMatchObject({ code: 0, out: expect.stringMatching(/✓ excerpt .*: 10 record\(s\) in one unbroken chain between \d+ verified signature\(s\); 5 record\(s\) had secrets masked/) });

    const rows = text.trim().split("\n");
    const unmasked = rows.findIndex((row) => row.includes('"kind":"record"') && row.includes('"masked":false') && row.includes("execution.finished"));
    const edited = [...rows];
    edited[unmasked] = edited[unmasked]!.replace('"outcome":"ok"', '"outcome":"error"');
    writeFileSync(file, `${edited.join("\n")}\n`);
    expect(await run(["audit", "verify", "--excerpt", file, "--public-key", publicKey], auditor)).toMatchObject({ code: 5, out: expect.stringMatching(/was edited/) });
    writeFileSync(file, `${rows.filter((_, i) => i !== unmasked).join("\n")}\n`);
    expect(await run(["audit", "verify", "--excerpt", file, "--public-key", publicKey], auditor)).toMatchObject({ code: 5, out: expect.stringMatching(/missing or reordered/) });

    const csv = await run(["audit", "export", "--since", since, "--until", until, "--format", "csv"], ownEnv);
    expect(csv.out.split("\n")[0]).toBe("seq,ts,type,ref,data,hash,prev,masked");
    expect(csv.out).not.toContain("sk-live-0123456789abcdefghij");
    expect(csv.out).toContain("[masked]");
    expect((await run(["audit", "export", "--since", "1d", "--format", "xml"], ownEnv)).code).toBe(2);
  });

  it("audit anchor posts the signed head to a witness and keeps the receipt", async () => {
    const { createServer } = await import("node:http");
    const { openEngine, recordingExecutor, heldCall } = await import("../helpers.js");
    const own = tempDir();
    const engine = openEngine(own, recordingExecutor());
    await engine.submit(heldCall());
    await engine.close();
    const received: string[] = [];
    const witness = createServer((request, response) => {
      let body = "";
      request.on("data", (chunk: Buffer) => (body += chunk.toString()));
      request.on("end", () => {
        received.push(body);
        response.end(`witnessed ${body.split("\n")[1]}`);
      });
    });
    await new Promise<void>((resolve) => witness.listen(0, "127.0.0.1", resolve));
    const url = `http://127.0.0.1:${(witness.address() as { port: number }).port}/witness`;
    try {
      const ownEnv = { ...env, ATLAS_DATA_DIR: own };
      expect(await run(["audit", "anchor"], ownEnv)).toMatchObject({ code: 2, err: expect.stringMatching(/anchor.url: no witness configured/) });
      const anchored = await run(["audit", "anchor", "--url", url], ownEnv);
      expect(anchored).toMatchObject({ code: 0, out: expect.stringMatching(/anchored 'main' at \d+ records .* HTTP 200/) });
      expect(received).toHaveLength(1);
      expect(received[0]).toMatch(/^atlas-gateway\/main-[0-9a-f-]+\n\d+\n[A-Za-z0-9+/=]{44}\n/);
      const receipts = readFileSync(join(own, "ledgers", "main.anchors.jsonl"), "utf8").trim().split("\n").map((line) => JSON.parse(line) as { receipt: string; size: number });
      expect(receipts[0]!.receipt).toBe(`witnessed ${receipts[0]!.size}`);
      expect((await run(["audit", "verify"], ownEnv)).code).toBe(0); // the receipts file is not taken for a ledger
    } finally {
      witness.close();
    }
  });

  it("a file where a ledger directory belongs: commands name it, never 'unexpected error' (issue 12 layout)", async () => {
    const broken = tempDir("atlas-cli-broken-");
    mkdirSync(join(broken, "ledgers"));
    writeFileSync(join(broken, "ledgers", "main"), "not a ledger\n");
    const brokenEnv = { HOME: broken, ATLAS_CONFIG_DIR: configDir, ATLAS_DATA_DIR: broken };
    for (const args of [["tools", "list"], ["policy", "replay"]]) {
      const result = await run(args, brokenEnv);
      expect(result.code, args.join(" ")).toBe(1);
      expect(result.err).toContain(`ENOTDIR: not a directory, scandir '${join(broken, "ledgers", "main")}'`);
      expect(result.err).toContain("atlas-gateway doctor");
      expect(result.err).not.toContain("unexpected error");
    }
  });

  it("--version and --help work, an unknown command is a usage error", async () => {
    expect((await run(["--version"], env)).out.trim()).toBe(VERSION);
    expect((await run(["--help"], env)).out).toMatch(/approve \[options\] <ref>/);
    const typo = await run(["aprove", "evt_12345678"], env);
    expect(typo.code).toBe(2);
    expect(typo.err).toMatch(/unknown command 'aprove'.*after --/);
  });

  it("keeps VERSION equal to package.json", () => {
    expect(VERSION).toBe(JSON.parse(readFileSync(join(import.meta.dirname, "..", "..", "package.json"), "utf8")).version);
  });
});
