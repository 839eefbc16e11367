import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { Webhook } from "standardwebhooks";

export interface ReceivedRequest {
  headers: IncomingMessage["headers"];
  body: string;
  json: unknown;
  /** For a receiver given a secret: whether the Standard Webhooks signature verified. */
  verified?: boolean;
  at: number;
}

/**
 * A notification receiver on 127.0.0.1, port 0. `answer` decides each response by its index: a status code, or
 * "hang" to accept the request and never answer (until `close`).
 */
export async function startReceiver(options: { secret?: string; answer?: (index: number) => number | "hang" } = {}) {
  const received: ReceivedRequest[] = [];
  const hanging: ServerResponse[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      const body = Buffer.concat(chunks).toString("utf8");
      let verified: boolean | undefined;
      if (options.secret) {
        try {
          new Webhook(options.secret).verify(body, req.headers as Record<string, string>);
          verified = true;
        } catch {
          verified = false;
        }
      }
      let json: unknown;
      try {
        json = JSON.parse(body);
      } catch {
        json = undefined;
      }
      const index = received.length;
      received.push({ headers: req.headers, body, json, ...(verified !== undefined ? { verified } : {}), at: Date.now() });
      const answer = options.answer?.(index) ?? (verified === false ? 401 : 200);
      if (answer === "hang") {
        hanging.push(res);
        return;
      }
      res.writeHead(answer, { "content-type": "text/plain" });
      res.end(answer < 300 ? "ok" : "no");
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
  return {
    url,
    received,
    close: () => new Promise<void>((resolve) => {
      for (const res of hanging) res.destroy();
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}
