import { randomBytes, randomUUID } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { isWellFormedText } from "../argumentBounds.js";
import { credentialsDir } from "../config.js";
import { Webhook, WebhookVerificationError } from "standardwebhooks";
import * as z from "zod";

/** The webhook HMAC secret's file: in the data dir's credentials dir, outside the data dir (see `credentialsDir`). */
export function webhookSecretPath(dataDir: string, env: NodeJS.ProcessEnv): string {
  return join(credentialsDir(dataDir, env), "webhook-secret");
}

/** Where versions before 0.2 kept the secret: inside the data dir, which upstream roots often contain. */
export function legacyWebhookSecretPath(dataDir: string): string {
  return join(dataDir, "webhook-secret");
}

/**
 * Reads the webhook secret, creating a fresh `whsec_…` one (mode 0600, directory 0700) on first use. A secret left
 * in the data dir by an older version is moved to the credentials dir (same value: integrations keep working) and
 * removed from the data dir.
 */
export function loadOrCreateWebhookSecret(dataDir: string, env: NodeJS.ProcessEnv): string {
  const path = webhookSecretPath(dataDir, env);
  const legacy = legacyWebhookSecretPath(dataDir);
  if (existsSync(path)) {
    removeLegacy(legacy);
    return readFileSync(path, "utf8").trim();
  }
  mkdirSync(credentialsDir(dataDir, env), { recursive: true, mode: 0o700 });
  const secret = existsSync(legacy) ? readFileSync(legacy, "utf8").trim() : `whsec_${randomBytes(32).toString("base64")}`;
  try {
    writeFileSync(path, `${secret}\n`, { mode: 0o600, flag: "wx" });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    return readFileSync(path, "utf8").trim(); // another process created it first
  }
  removeLegacy(legacy);
  return secret;
}

function removeLegacy(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // absent, or not ours to remove: self-protection still guards it
  }
}

/** The seed's approval body, plus who decided and why. */
export const approvalBodySchema = z.object({
  decision: z.string().transform((value, ctx) => {
    const upper = value.toUpperCase();
    if (upper === "APPROVED" || upper === "APPROVE") return "approved" as const;
    if (upper === "DENIED" || upper === "DENY" || upper === "REJECTED") return "denied" as const;
    ctx.addIssue({ code: "custom", message: "decision must be APPROVED or DENIED" });
    return z.NEVER;
  }),
  event_id: z.string().regex(/^evt_[0-9a-f]{8}$/, "event_id must be evt_ followed by 8 lowercase hex digits"),
  reviewer: z.string().min(1).max(200).refine(isWellFormedText, "reviewer must be valid Unicode").optional(),
  reason: z.string().max(2000).refine(isWellFormedText, "reason must be valid Unicode").optional(),
});
export type ApprovalBody = z.output<typeof approvalBodySchema>;

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
    for (const name of ["webhook-id", "webhook-timestamp", "webhook-signature"]) {
      const value = headers[name];
      if (typeof value === "string") flat[name] = value;
    }
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

  /** Forgets a verified id whose decision could not be recorded, so the sender's retry of it is accepted. */
  forget(id: string): void {
    this.seen.delete(id);
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
