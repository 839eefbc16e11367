import { randomBytes, randomUUID } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Webhook, WebhookVerificationError } from "standardwebhooks";
import * as z from "zod";

export function webhookSecretPath(dataDir: string): string {
  return join(dataDir, "webhook-secret");
}

/** Reads the webhook secret, creating a fresh `whsec_…` one (mode 0600) on first use. */
export function loadOrCreateWebhookSecret(dataDir: string): string {
  const path = webhookSecretPath(dataDir);
  if (existsSync(path)) return readFileSync(path, "utf8").trim();
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const secret = `whsec_${randomBytes(32).toString("base64")}`;
  try {
    writeFileSync(path, `${secret}\n`, { mode: 0o600, flag: "wx" });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    return readFileSync(path, "utf8").trim(); // another process created it first
  }
  return secret;
}

/** The original system's approval body, plus who decided and why. */
export const approvalBodySchema = z.object({
  decision: z.string().transform((value, ctx) => {
    const upper = value.toUpperCase();
    if (upper === "APPROVED" || upper === "APPROVE") return "approved" as const;
    if (upper === "DENIED" || upper === "DENY" || upper === "REJECTED") return "denied" as const;
    ctx.addIssue({ code: "custom", message: "decision must be APPROVED or DENIED" });
    return z.NEVER;
  }),
  event_id: z.string().regex(/^evt_[0-9a-f]{8}$/, "event_id must be evt_ followed by 8 lowercase hex digits"),
  reviewer: z.string().min(1).max(200).optional(),
  reason: z.string().max(2000).optional(),
});
export type ApprovalBody = z.output<typeof approvalBodySchema>;

const SIGNATURE_HEADERS = ["webhook-id", "webhook-timestamp", "webhook-signature"] as const;

/**
 * Told to a sender whose request carries no signature (issue 13: the original system's unsigned POST got a bare 401).
 * Standard Webhooks, https://www.standardwebhooks.com/ (the signature scheme of the README's "Approval webhook").
 */
export const HOW_TO_SIGN =
  "approvals must be signed per Standard Webhooks: send the headers webhook-id (a unique id), webhook-timestamp (unix " +
  "seconds, within 5 minutes) and webhook-signature: v1,<base64 HMAC-SHA256 of \"<webhook-id>.<webhook-timestamp>.<body>\", " +
  "keyed with the base64-decoded part of the secret after whsec_>. The secret: run 'atlas-gateway config get webhook.secret'. " +
  "Example and libraries: README, Approval webhook; 'atlas-gateway demo' shows a signed request.";

export type WebhookCheck =
  | { ok: true; body: ApprovalBody; id: string }
  | { ok: false; status: 400 | 401; error: string };

/**
 * Verifies a Standard Webhooks request (`webhook-id`, `webhook-timestamp` within ±5 min, `webhook-signature`
 * `v1,<base64 HMAC-SHA256>`) and parses the approval body. A replayed `webhook-id` is refused.
 */
export class WebhookVerifier {
  private readonly webhook: Webhook;
  private readonly seen = new Map<string, number>();

  constructor(secret: string) {
    this.webhook = new Webhook(secret);
  }

  check(rawBody: string, headers: Record<string, string | string[] | undefined>): WebhookCheck {
    const flat: Record<string, string> = {};
    for (const name of SIGNATURE_HEADERS) {
      const value = headers[name];
      if (typeof value === "string") flat[name] = value;
    }
    const missing = SIGNATURE_HEADERS.filter((name) => flat[name] === undefined);
    if (missing.length === SIGNATURE_HEADERS.length) return { ok: false, status: 401, error: `unsigned request: ${HOW_TO_SIGN}` };
    if (missing.length > 0) return { ok: false, status: 401, error: `webhook signature rejected: missing header(s) ${missing.join(", ")}; ${HOW_TO_SIGN}` };
    try {
      this.webhook.verify(rawBody, flat, { jsonParse: false });
    } catch (error) {
      const message = error instanceof WebhookVerificationError ? error.message : "invalid signature";
      return { ok: false, status: 401, error: `webhook signature rejected: ${message}` };
    }
    const id = flat["webhook-id"]!;
    this.forgetOld();
    if (this.seen.has(id)) return { ok: false, status: 401, error: "webhook signature rejected: this webhook-id was already used (replay)" };
    this.seen.set(id, Date.now());
    let json: unknown;
    try {
      json = JSON.parse(rawBody);
    } catch {
      return { ok: false, status: 400, error: "body is not valid JSON" };
    }
    const parsed = approvalBodySchema.safeParse(json);
    if (!parsed.success) return { ok: false, status: 400, error: parsed.error.issues.map((issue) => `${issue.path.join(".") || "body"}: ${issue.message}`).join("; ") };
    return { ok: true, body: parsed.data, id };
  }

  /** Ids only need remembering while their timestamp is still acceptable (10 min covers ±5 min). */
  private forgetOld(): void {
    const cutoff = Date.now() - 10 * 60_000;
    for (const [id, at] of this.seen) {
      if (at >= cutoff) break;
      this.seen.delete(id);
    }
  }
}

/** Signs a body as a Standard Webhooks sender would (the CLI's `demo`, tests, and scripts). */
export function signWebhook(secret: string, body: string, at = new Date(), id = `msg_${randomUUID()}`): Record<string, string> {
  return {
    "webhook-id": id,
    "webhook-timestamp": String(Math.floor(at.getTime() / 1000)),
    "webhook-signature": new Webhook(secret).sign(id, at, body),
  };
}
