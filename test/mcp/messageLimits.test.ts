import type { JSONRPCMessage } from "@modelcontextprotocol/sdk/types.js";
import { PassThrough } from "node:stream";
import { afterAll, describe, expect, it } from "vitest";
import { envelopeOf, StreamTransport } from "../../src/mcp/stdioTransport.js";
import { BIN, RawMcpProcess } from "../helpers/rawMcpProcess.js";
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
