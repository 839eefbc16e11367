import type { Transport, TransportSendOptions } from "@modelcontextprotocol/sdk/shared/transport.js";
import type { JSONRPCMessage, MessageExtraInfo } from "@modelcontextprotocol/sdk/types.js";

/** What a `notifications/progress` carries besides its token. */
export interface ProgressParams {
  progress: number;
  total?: number;
  message?: string;
}

/**
 * Wraps an upstream transport and hands `notifications/progress` for tokens the gateway chose straight to their
 * listeners, below the SDK's request layer. The SDK Client drops a progress notification read in the same chunk as
 * the result (it removes the handler when the result arrives), so the last progress of a call was lost about half
 * the time (issue 10). Everything else passes through untouched.
 */
export class ProgressTap implements Transport {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: (message: JSONRPCMessage, extra?: MessageExtraInfo) => void;
  private readonly listeners = new Map<string, (progress: ProgressParams) => void>();
  readonly inner: Transport;

  constructor(inner: Transport) {
    this.inner = inner;
    inner.onmessage = (message, extra) => {
      if ("method" in message && message.method === "notifications/progress" && !("id" in message)) {
        const params = (message.params ?? {}) as unknown as { progressToken?: unknown } & ProgressParams;
        const listener = this.listeners.get(String(params.progressToken));
        if (listener && typeof params.progress === "number") {
          listener({ progress: params.progress, ...(params.total !== undefined ? { total: params.total } : {}), ...(params.message !== undefined ? { message: params.message } : {}) });
          return;
        }
      }
      this.onmessage?.(message, extra);
    };
    inner.onclose = () => this.onclose?.();
    inner.onerror = (error) => this.onerror?.(error);
  }

  /** Routes progress with this token to `listener` until the returned function is called. */
  listen(token: string, listener: (progress: ProgressParams) => void): () => void {
    this.listeners.set(token, listener);
    return () => this.listeners.delete(token);
  }

  get sessionId(): string | undefined {
    return this.inner.sessionId;
  }

  setProtocolVersion(version: string): void {
    this.inner.setProtocolVersion?.(version);
  }

  start(): Promise<void> {
    return this.inner.start();
  }

  send(message: JSONRPCMessage, options?: TransportSendOptions): Promise<void> {
    return this.inner.send(message, options);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
