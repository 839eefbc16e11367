import type { Transport } from "@modelcontextprotocol/sdk/shared/transport.js";
import type { JSONRPCMessage, MessageExtraInfo } from "@modelcontextprotocol/sdk/types.js";

/**
 * Wraps the agent's transport so that `tools/call` requests wait until `ready` settles, in the order they came,
 * while everything else (`initialize`, `tools/list`, pings, notifications) is answered at once: the gateway can
 * answer `initialize` before its ledger is open (cold start, issue 12). If `ready` rejects, held calls stay held:
 * the gateway is shutting down, and nothing reaches an upstream.
 */
export function holdToolCallsUntil(transport: Transport, ready: Promise<unknown>): Transport {
  let open = false;
  const held: [JSONRPCMessage, MessageExtraInfo | undefined][] = [];
  let deliver: ((message: JSONRPCMessage, extra?: MessageExtraInfo | undefined) => void) | undefined;
  void ready.then(
    () => {
      open = true;
      for (const [message, extra] of held.splice(0)) deliver?.(message, extra);
    },
    () => {},
  );
  const gate: Transport = {
    start: () => transport.start(),
    send: (message, options) => transport.send(message, options),
    close: () => transport.close(),
    set onclose(handler: (() => void) | undefined) {
      transport.onclose = handler;
    },
    get onclose() {
      return transport.onclose;
    },
    set onerror(handler: ((error: Error) => void) | undefined) {
      transport.onerror = handler;
    },
    get onerror() {
      return transport.onerror;
    },
    set onmessage(handler: Transport["onmessage"]) {
      deliver = handler;
      transport.onmessage = handler
        ? (message, extra) => {
            if (!open && (held.length > 0 || ("method" in message && message.method === "tools/call"))) held.push([message, extra]);
            else deliver?.(message, extra);
          }
        : undefined;
    },
    get onmessage() {
      return deliver as Transport["onmessage"];
    },
  };
  return gate;
}
