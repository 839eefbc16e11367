// A minimal newline-delimited JSON-RPC client over a child's stdio: the benchmark's "agent". Kept tiny so that
// what it measures is the server side, not an SDK client.
import { spawn } from "node:child_process";

export const PROTOCOL_VERSION = "2025-06-18";
const DEFAULT_TIMEOUT_MS = 30_000;

/**
 * Spawns a stdio MCP server. `spawnedAt` is taken just before spawn(), so a request sent at once and answered
 * later measures spawn → answer.
 */
export function spawnServer({ command, args, env, label }) {
  const spawnedAt = performance.now();
  const child = spawn(command, args, { env, stdio: ["pipe", "pipe", "pipe"] });
  const pending = new Map();
  const stderrTail = [];
  let nextId = 1;
  let carry = "";
  let exited = false;
  const exitedPromise = new Promise((resolve) => child.once("exit", (code, signal) => {
    exited = true;
    for (const { reject, timer } of pending.values()) {
      clearTimeout(timer);
      reject(new Error(`${label} exited (code ${code}, signal ${signal}) with requests pending; stderr: ${stderrTail.join(" | ")}`));
    }
    pending.clear();
    resolve();
  }));
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (text) => {
    for (const line of text.split("\n")) if (line.trim()) stderrTail.push(line.trim());
    while (stderrTail.length > 20) stderrTail.shift();
  });
  child.stdout.setEncoding("utf8");
  child.stdout.on("data", (text) => {
    const lines = (carry + text).split("\n");
    carry = lines.pop() ?? "";
    const at = performance.now();
    for (const line of lines) {
      if (!line) continue;
      const message = JSON.parse(line);
      if (message.id === undefined || message.method !== undefined) continue; // notifications, server requests
      const entry = pending.get(message.id);
      if (!entry) continue;
      pending.delete(message.id);
      clearTimeout(entry.timer);
      if (message.error) entry.reject(new Error(`${label}: ${entry.method} failed: ${message.error.message}`));
      else entry.resolve({ result: message.result, at });
    }
  });
  child.stdin.on("error", () => {});

  /** Sends a request; resolves with `{ result, at }` (`at` = performance.now() when the answer line arrived). */
  const request = (method, params = {}, timeoutMs = DEFAULT_TIMEOUT_MS) => new Promise((resolve, reject) => {
    if (exited) return reject(new Error(`${label} has exited`));
    const id = nextId++;
    const timer = setTimeout(() => {
      pending.delete(id);
      reject(new Error(`${label}: no answer to ${method} within ${timeoutMs} ms; stderr: ${stderrTail.join(" | ")}`));
    }, timeoutMs);
    pending.set(id, { resolve, reject, timer, method });
    child.stdin.write(`${JSON.stringify({ jsonrpc: "2.0", id, method, params })}\n`);
  });
  const notify = (method, params = {}) => void child.stdin.write(`${JSON.stringify({ jsonrpc: "2.0", method, params })}\n`);

  return {
    child,
    spawnedAt,
    request,
    notify,
    stderrTail,
    get pid() {
      return child.pid;
    },
    /** initialize + notifications/initialized; resolves with the time the initialize answer arrived. */
    async initialize() {
      const { at } = await request("initialize", { protocolVersion: PROTOCOL_VERSION, capabilities: {}, clientInfo: { name: "atlas-bench", version: "1.0.0" } });
      notify("notifications/initialized");
      return at;
    },
    /** tools/call; throws on a JSON-RPC error, returns the result. */
    async call(name, args, timeoutMs) {
      return (await request("tools/call", { name, arguments: args }, timeoutMs)).result;
    },
    /** Ends stdin (servers exit on EOF), then SIGTERM, then SIGKILL; bounded. */
    async close() {
      if (exited) return;
      child.stdin.end();
      const within = (ms) => Promise.race([exitedPromise.then(() => true), new Promise((resolve) => setTimeout(() => resolve(false), ms).unref())]);
      if (await within(3000)) return;
      child.kill("SIGTERM");
      if (await within(3000)) return;
      child.kill("SIGKILL");
      await within(3000);
    },
  };
}
