import type { JSONRPCMessage } from "@modelcontextprotocol/sdk/types.js";
import { PassThrough } from "node:stream";
import { afterAll, describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { rememberArgumentTexts } from "../../src/argumentTexts.js";
import { digestCall } from "../../src/ledger/ledger.js";
import { envelopeOf, serializeWithKnownArguments, StreamTransport } from "../../src/mcp/stdioTransport.js";
import { ledgerRecords } from "../helpers/ledgerRecords.js";
import { BIN, RawMcpProcess } from "../helpers/rawMcpProcess.js";
import { runCli } from "../helpers/runCli.js";
import { tempDir } from "../helpers.js";
import { fileURLToPath } from "node:url";

function link(options: { maxMessageBytes: number; replyToMalformed?: boolean }) {
  const input = new PassThrough();
  const output = new PassThrough();
  const transport = new StreamTransport(input, output, options);
  const received: JSONRPCMessage[] = [];
  const errors: string[] = [];
  const replies: unknown[] = [];
  transport.onmessage = (message) => void received.push(message);
  transport.onerror = (error) => void errors.push(error.message);
  output.on("data", (chunk: Buffer) => {
    for (const line of chunk.toString("utf8").split("\n").filter(Boolean)) replies.push(JSON.parse(line));
  });
  void transport.start();
  return { input, received, errors, replies };
}

const flush = () => new Promise((resolve) => setImmediate(resolve));

describe("StreamTransport limits", () => {
  it("answers an oversized request with a JSON-RPC error naming the limit, and carries on", async () => {
    const peer = link({ maxMessageBytes: 2048 });
    const huge = JSON.stringify({ jsonrpc: "2.0", id: 7, method: "tools/call", params: { name: "x", arguments: { blob: "y".repeat(10_000) } } });
    // arrives in pieces, as a pipe delivers it
    for (let at = 0; at < huge.length; at += 1000) peer.input.write(huge.slice(at, at + 1000));
    peer.input.write(`\n${JSON.stringify({ jsonrpc: "2.0", id: 8, method: "ping" })}\n`);
    await flush();
    expect(peer.replies).toEqual([{ jsonrpc: "2.0", id: 7, error: { code: -32600, message: expect.stringMatching(/^atlas-gateway: a message of 10\d{3} bytes exceeds the 2048 byte limit \(maxMessageBytes = 2048\)$/) } }]);
    expect(peer.received).toEqual([{ jsonrpc: "2.0", id: 8, method: "ping" }]);
  });

  it("turns an oversized response into an error for whoever waits on it", async () => {
    const peer = link({ maxMessageBytes: 2048 });
    // the SDK writes responses result-first, id last
    peer.input.write(`${JSON.stringify({ result: { content: [{ type: "text", text: "z".repeat(5000) }] }, jsonrpc: "2.0", id: "req-3" })}\n`);
    await flush();
    expect(peer.received).toEqual([{ jsonrpc: "2.0", id: "req-3", error: { code: -32600, message: expect.stringContaining("exceeds the 2048 byte limit") } }]);
    expect(peer.replies).toEqual([]);
  });

  it("replies to a line that is not JSON with a parse error when it serves, and ignores it when it is a client", async () => {
    const server = link({ maxMessageBytes: 2048, replyToMalformed: true });
    server.input.write("this is not json\n");
    await flush();
    expect(server.replies).toEqual([{ jsonrpc: "2.0", id: null, error: { code: -32700, message: expect.stringMatching(/^atlas-gateway: parse error/) } }]);
    const client = link({ maxMessageBytes: 2048 });
    client.input.write("a stray log line\n");
    await flush();
    expect(client.replies).toEqual([]);
    expect(client.errors[0]).toMatch(/not JSON/);
  });

  it("decodes characters split across chunks, and a line ending in CRLF", async () => {
    const peer = link({ maxMessageBytes: 2048 });
    const line = Buffer.from(`${JSON.stringify({ jsonrpc: "2.0", id: 1, method: "ping", params: { _meta: { note: "é😀€" } } })}\r\n`);
    const at = line.indexOf(Buffer.from("😀")) + 2; // inside the emoji's four bytes
    peer.input.write(line.subarray(0, at));
    await flush();
    peer.input.write(line.subarray(at));
    await flush();
    expect(peer.received).toEqual([{ jsonrpc: "2.0", id: 1, method: "ping", params: { _meta: { note: "é😀€" } } }]);
  });

  it("finds id and method at the top level only", () => {
    expect(envelopeOf('{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"id":99', "")).toEqual({ id: 1, method: "tools/call" });
    expect(envelopeOf('{"result":{"id":5,"method":"x"', '"jsonrpc":"2.0","id":"a\\"b"}')).toEqual({ id: 'a"b' });
    expect(envelopeOf('{"result":{"content":[', "no id here")).toEqual({});
  });
});

const FIXTURE = fileURLToPath(new URL("../fixtures/raw-upstream.mjs", import.meta.url));
const processes: RawMcpProcess[] = [];
afterAll(async () => {
  for (const gateway of processes) await gateway.close();
});

describe("the built gateway with a small message limit", () => {
  it("refuses an oversized request and an oversized upstream result at once, and answers a malformed line with a parse error", async () => {
    const dir = tempDir();
    const gateway = new RawMcpProcess(["--data-dir", dir, "--port", "0", "--", process.execPath, FIXTURE], { PATH: process.env.PATH, HOME: dir, ATLAS_MAX_MESSAGE_BYTES: "100000" });
    processes.push(gateway);
    await gateway.initialize();

    const tooBig = await gateway.callTool("echo", { text: "a".repeat(200_000) });
    expect(tooBig.error?.message).toMatch(/^atlas-gateway: a message of \d+ bytes exceeds the 100000 byte limit \(maxMessageBytes = 100000\)$/);

    const bigResult = await gateway.callTool("big", { bytes: 200_000 });
    expect(JSON.stringify(bigResult)).toContain("exceeds the 100000 byte limit");
    const small = await gateway.callTool("echo", { text: "still here" });
    expect(JSON.stringify(small.result)).toContain("echo: still here");

    gateway.child.stdin!.write("{not json\n");
    await expect.poll(() => gateway.unmatched.find((message) => message.id === null)?.error?.code).toBe(-32700);
    expect(gateway.nonProtocol).toEqual([]);
  });
});

describe("a request whose arguments are already encoded (issue 10)", () => {
  it("is written as the same JSON line, arguments spliced in their place, nothing between its pieces", async () => {
    const args = { text: "é".repeat(5000), nested: { b: 1, a: [true, null] } };
    rememberArgumentTexts(args, { canonicalBytes: Buffer.from("unused here"), jsonBytes: Buffer.from(JSON.stringify(args)) });
    const request = { jsonrpc: "2.0" as const, id: 9, method: "tools/call", params: { name: "echo", arguments: args, _meta: { progressToken: "p" } } };
    const pieces = serializeWithKnownArguments(request);
    expect(Array.isArray(pieces)).toBe(true);
    expect(Buffer.concat((pieces as (string | Uint8Array)[]).map((piece) => Buffer.from(piece))).toString("utf8")).toBe(`${JSON.stringify(request)}\n`);

    const output = new PassThrough();
    const transport = new StreamTransport(new PassThrough(), output);
    let written = "";
    output.on("data", (chunk: Buffer) => (written += chunk.toString("utf8")));
    await Promise.all([transport.send(request), transport.send({ jsonrpc: "2.0", id: 10, method: "ping" })]);
    await flush();
    expect(written.split("\n").filter(Boolean).map((line) => JSON.parse(line) as unknown)).toEqual([request, { jsonrpc: "2.0", id: 10, method: "ping" }]);
  });

  it("is serialised as usual when its arguments are not known", () => {
    const request = { jsonrpc: "2.0" as const, id: 1, method: "tools/call", params: { name: "echo", arguments: { text: "x" } } };
    expect(serializeWithKnownArguments(request)).toBe(`${JSON.stringify(request)}\n`);
  });
});

describe("the built gateway with large arguments (issue 10)", () => {
  it("judges them off the event loop with the same verdicts, records and forwards them as sent, and lets a small call overtake", async () => {
    const dir = tempDir();
    const log = join(dir, "requests.log");
    const env = { PATH: process.env.PATH, HOME: dir, FIXTURE_LOG: log };
    const gateway = new RawMcpProcess(["--data-dir", dir, "--port", "0", "--", process.execPath, FIXTURE], env);
    processes.push(gateway);
    await gateway.initialize();
    const pad = "lorem ipsum ".repeat(300_000); // 3.6 MB: past the size that goes to the worker thread

    // a read-only tool runs unreviewed, unless its arguments reach the gateway's own files
    const reaching = await gateway.callTool("echo", { text: `${pad} cat ${dir}/webhook-secret` });
    expect(JSON.stringify(reaching.result).slice(0, 300)).toMatch(/PENDING REVIEW \(Ref: evt_[0-9a-f]{8}\)/);
    const passing = { text: `${pad} é😀` };
    const echoed = await gateway.callTool("echo", passing);
    expect((echoed.result as { content: { text: string }[] }).content[0]!.text === `echo: ${passing.text}`).toBe(true);

    const records = ledgerRecords(dir);
    const assessed = records.find((record) => record.type === "request.assessed");
    expect(assessed?.data).toMatchObject({ score: 100, rules: [expect.objectContaining({ id: "self-protection" })] });
    const admitted = records.find((record) => record.type === "request.admitted");
    // compared piecewise: a failing match would print megabytes
    const { upstream, tool, args, args_digest: digest } = admitted!.data as { upstream: string; tool: string; args: { text: string }; args_digest: string };
    expect(args.text === passing.text).toBe(true);
    expect(digest).toBe(digestCall(upstream, tool, passing));
    expect(tool).toBe("echo");
    const verified = await runCli(["audit", "verify", "--data-dir", dir], env);
    expect(verified.code, verified.stdout + verified.stderr).toBe(0);

    // sent one after the other, the small call reaches the upstream first: it is not held behind the large one
    const large = gateway.callTool("echo", { text: "y".repeat(16 * 1024 * 1024) }, 120_000);
    const small = gateway.callTool("getenv", { name: "HOME" });
    expect(JSON.stringify((await small).result)).toContain(dir);
    expect((await large).error).toBeUndefined();
    const calls = readFileSync(log, "utf8").trim().split("\n").filter((line) => line.startsWith("tools/call"));
    expect(calls.slice(-2).map((line) => line.split(" ")[2])).toEqual(["getenv", "echo"]);
    expect(gateway.nonProtocol).toEqual([]);
    expect(gateway.stderr).not.toContain("argument worker unavailable"); // the worker thread did the work
  });
});

describe("the built gateway with arguments of millions of values (issue 10: a 60 MiB argument is allowed)", () => {
  it("answers them, with a heap far smaller than their count of values times a walk's bookkeeping", async () => {
    const dir = tempDir();
    // 384 MiB of heap: enough for the values themselves (8M array slots, 64 MB), not for a per-value stack entry
    const gateway = new RawMcpProcess(["--data-dir", dir, "--port", "0", "--", process.execPath, FIXTURE], { PATH: process.env.PATH, HOME: dir }, ["--max-old-space-size=384"]);
    processes.push(gateway);
    await gateway.initialize();
    const zeros = `[${"0,".repeat(8_000_000)}0]`; // 16 MB of JSON: 8 million values
    // an array of values (bounds and self-protection walk it), then the same as JSON inside a string (self-protection parses and walks it)
    const listed = await gateway.requestJson("tools/call", `{"name":"echo","arguments":{"text":"listed","list":${zeros}}}`, 120_000);
    expect(JSON.stringify(listed).slice(0, 200)).toContain("echo: listed");
    const embedded = await gateway.requestJson("tools/call", `{"name":"echo","arguments":{"text":${JSON.stringify(zeros)}}}`, 120_000);
    expect(JSON.stringify(embedded).slice(0, 200)).toContain("echo: [0,0,0");
    // a held call is masked for its HELD line (and the review page, notifications, `pending`)
    const held = await gateway.requestJson("tools/call", `{"name":"write","arguments":{"note":"held","list":${zeros}}}`, 120_000);
    expect(JSON.stringify(held).slice(0, 300)).toMatch(/PENDING REVIEW \(Ref: evt_[0-9a-f]{8}\)/);
    await expect.poll(() => gateway.stderr).toMatch(/HELD evt_[0-9a-f]{8}: write \{"note":"held","list":\[0,0,0/);
    expect(gateway.stderr).not.toContain("argument worker unavailable");
    const verified = await runCli(["audit", "verify", "--data-dir", dir], { PATH: process.env.PATH, HOME: dir });
    expect(verified.code, verified.stdout + verified.stderr).toBe(0);
  });
});
