// Forces a full garbage collection in a child started with --inspect=127.0.0.1:0 and reads its memory, through the
// DevTools protocol on 127.0.0.1. RSS right after a full GC is what a leak shows up in; raw RSS mostly measures how
// lazily V8 collects.

/** The child's inspector URL, from the "Debugger listening on ws://…" line of its stderr. */
export function inspectorUrl(server) {
  for (const line of server.stderrTail) {
    const match = /Debugger listening on (ws:\/\/127\.0\.0\.1:\d+\/[\w-]+)/.exec(line);
    if (match) return match[1];
  }
  throw new Error(`no inspector URL in the child's stderr: ${server.stderrTail.join(" | ")}`);
}

/** Runs a full GC (twice, so weak references and finalizers settle) and returns process.memoryUsage() of the child. */
export async function collectAndMeasure(url) {
  const socket = new WebSocket(url);
  await new Promise((resolve, reject) => {
    socket.onopen = resolve;
    socket.onerror = () => reject(new Error(`cannot reach the inspector at ${url}`));
  });
  let id = 0;
  const pending = new Map();
  socket.onmessage = (event) => {
    const message = JSON.parse(String(event.data));
    const entry = pending.get(message.id);
    if (!entry) return;
    pending.delete(message.id);
    if (message.error) entry.reject(new Error(message.error.message));
    else entry.resolve(message.result);
  };
  const send = (method, params = {}) => new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`inspector: no answer to ${method}`)), 30_000);
    pending.set(++id, { resolve: (value) => (clearTimeout(timer), resolve(value)), reject: (error) => (clearTimeout(timer), reject(error)) });
    socket.send(JSON.stringify({ id, method, params }));
  });
  try {
    await send("HeapProfiler.collectGarbage");
    await send("HeapProfiler.collectGarbage");
    const { result } = await send("Runtime.evaluate", { expression: "JSON.stringify(process.memoryUsage())", returnByValue: true });
    return JSON.parse(result.value);
  } finally {
    socket.close();
  }
}
