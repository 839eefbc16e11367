import { randomBytes, randomUUID } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { KeyObject } from "node:crypto";
import { isWellFormedText } from "../argumentBounds.js";
import { credentialsDir } from "../config.js";
import { Webhook, WebhookVerificationError } from "standardwebhooks";
import { findV1aSigner } from "./approvalKeys.js";
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
  reviewer: z.string().min(1).max(200).refine(isWellFormedText, "reviewer must be valid Unicode").optional(),
  reason: z.string().max(2000).refine(isWellFormedText, "reason must be valid Unicode").optional(),
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

/** The stop button over HTTP (`POST /webhook/halt`): the action is inside the signed body, so a signature for one cannot serve the other. */
export const haltBodySchema = z.strictObject({
  action: z.enum(["halt", "resume"], { error: "action must be \"halt\" or \"resume\"" }),
  reason: z.string().trim().min(1).max(2000).optional(),
  reviewer: z.string().min(1).max(200).optional(),
}).refine((body) => body.action !== "halt" || body.reason !== undefined, { message: "a halt needs a reason", path: ["reason"] });
export type HaltBody = z.output<typeof haltBodySchema>;

export type WebhookCheck =
  | { ok: true; body: ApprovalBody; id: string; signer?: string }
  | { ok: false; status: 400 | 401; error: string };

/**
 * A request whose signature holds and whose id is fresh, with its body parsed as JSON (not yet validated). `signer`
 * is the id of the public key whose `v1a` signature verified; absent for HMAC (`v1`), which names no one.
 */
export type SignedRequest =
  | { ok: true; id: string; json: unknown; signer?: string }
  | { ok: false; status: 400 | 401; error: string };

export interface VerifierOptions {
  /** Public keys allowed to sign (`v1a`), by id; read on every request, so keys added while running count at once. */
  publicKeys?: () => ReadonlyMap<string, KeyObject>;
  /** Accept HMAC `v1` signatures with the shared secret (default true). Off: only a registered public key can approve. */
  hmac?: boolean;
}

/** Standard Webhooks' tolerance for the signed timestamp. */
const TOLERANCE_SECONDS = 5 * 60;

function describeIssues(error: z.ZodError): string {
  return error.issues.map((issue) => `${issue.path.join(".") || "body"}: ${issue.message}`).join("; ");
}

/**
 * Verifies a Standard Webhooks request (`webhook-id`, `webhook-timestamp` within ±5 min, `webhook-signature`) and
 * parses the approval body. Two schemes: `v1a,<base64 Ed25519>` by a registered public key (the signer is then known,
 * and nothing on this machine can forge it), and `v1,<base64 HMAC-SHA256>` with the shared secret (unless turned
 * off). A replayed `webhook-id` is refused.
 */
export class WebhookVerifier {
  private readonly webhook: Webhook;
  private readonly seen = new Map<string, number>();
  private readonly options: VerifierOptions;

  constructor(secret: string, options: VerifierOptions = {}) {
    this.webhook = new Webhook(secret);
    this.options = options;
  }

  check(rawBody: string, headers: Record<string, string | string[] | undefined>): WebhookCheck {
    const signed = this.verify(rawBody, headers);
    if (!signed.ok) return signed;
    const parsed = approvalBodySchema.safeParse(signed.json);
    if (!parsed.success) return { ok: false, status: 400, error: describeIssues(parsed.error) };
    return { ok: true, body: parsed.data, id: signed.id, ...(signed.signer ? { signer: signed.signer } : {}) };
  }

  /**
   * The id of the registered key whose `v1a` signature verifies; undefined when none does (HMAC may still);
   * null when a `v1a` signature came with an unusable timestamp.
   */
  private asymmetricSigner(rawBody: string, headers: Record<string, string>): string | undefined | null {
    const signatures = headers["webhook-signature"];
    const keys = this.options.publicKeys?.();
    if (!signatures?.includes("v1a,") || !keys || keys.size === 0) return undefined;
    const timestamp = headers["webhook-timestamp"] ?? "";
    if (!/^\d{1,12}$/.test(timestamp) || Math.abs(Date.now() / 1000 - Number(timestamp)) > TOLERANCE_SECONDS) return null;
    return findV1aSigner(keys, headers["webhook-id"] ?? "", timestamp, rawBody, signatures);
  }

  /** Checks the signature and the id (replays are refused), then parses the body as JSON. */
  verify(rawBody: string, headers: Record<string, string | string[] | undefined>): SignedRequest {
    const flat: Record<string, string> = {};
    for (const name of SIGNATURE_HEADERS) {
      const value = headers[name];
      if (typeof value === "string") flat[name] = value;
    }
    const missing = SIGNATURE_HEADERS.filter((name) => flat[name] === undefined);
    if (missing.length === SIGNATURE_HEADERS.length) return { ok: false, status: 401, error: `unsigned request: ${HOW_TO_SIGN}` };
    if (missing.length > 0) return { ok: false, status: 401, error: `webhook signature rejected: missing header(s) ${missing.join(", ")}; ${HOW_TO_SIGN}` };
    const signer = this.asymmetricSigner(rawBody, flat);
    if (signer === null) return { ok: false, status: 401, error: "webhook signature rejected: the timestamp is missing or more than 5 minutes off" };
    if (signer === undefined) {
      if (this.options.hmac === false) {
        return { ok: false, status: 401, error: "webhook signature rejected: only v1a signatures by a registered public key are accepted (HMAC v1 is turned off)" };
      }
      try {
        this.webhook.verify(rawBody, flat, { jsonParse: false });
      } catch (error) {
        const message = error instanceof WebhookVerificationError ? error.message : "invalid signature";
        return { ok: false, status: 401, error: `webhook signature rejected: ${message}` };
      }
    }
    const id = flat["webhook-id"]!;
    this.forgetOld();
    if (this.seen.has(id)) return { ok: false, status: 401, error: "webhook signature rejected: this webhook-id was already used (replay)" };
    this.seen.set(id, Date.now());
    try {
      return { ok: true, id, json: JSON.parse(rawBody) as unknown, ...(signer ? { signer } : {}) };
    } catch {
      return { ok: false, status: 400, error: "body is not valid JSON" };
    }
  }

  /** Checks a signed stop-button request (`POST /webhook/halt`). */
  checkHalt(rawBody: string, headers: Record<string, string | string[] | undefined>): { ok: true; body: HaltBody; id: string; signer?: string } | { ok: false; status: 400 | 401; error: string } {
    const signed = this.verify(rawBody, headers);
    if (!signed.ok) return signed;
    const parsed = haltBodySchema.safeParse(signed.json);
    if (!parsed.success) return { ok: false, status: 400, error: describeIssues(parsed.error) };
    return { ok: true, body: parsed.data, id: signed.id, ...(signed.signer ? { signer: signed.signer } : {}) };
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
