import { describe, expect, it } from "vitest";
import { WebhookVerifier, signWebhook } from "../../src/http/webhook.js";

// An unsigned approval (what the original system sent) is refused with how to sign it (issue 13).

const SECRET = `whsec_${Buffer.alloc(32, 7).toString("base64")}`;
const BODY = JSON.stringify({ decision: "APPROVED", event_id: "evt_0123abcd" });

describe("approval webhook without a signature", () => {
  it("401 that says how to sign and where the secret is", () => {
    const check = new WebhookVerifier(SECRET).check(BODY, { "content-type": "application/json" });
    expect(check).toMatchObject({ ok: false, status: 401 });
    const error = (check as { error: string }).error;
    expect(error).toMatch(/^unsigned request: approvals must be signed per Standard Webhooks/);
    expect(error).toContain("webhook-id");
    expect(error).toContain('v1,<base64 HMAC-SHA256 of "<webhook-id>.<webhook-timestamp>.<body>"');
    expect(error).toContain("atlas-gateway config get webhook.secret");
  });

  it("401 naming the missing header when only some are sent; the full signature passes", () => {
    const headers = signWebhook(SECRET, BODY);
    const partial = new WebhookVerifier(SECRET).check(BODY, { "webhook-id": headers["webhook-id"] });
    expect(partial).toMatchObject({ ok: false, status: 401, error: expect.stringMatching(/^webhook signature rejected: missing header\(s\) webhook-timestamp, webhook-signature; approvals must be signed/) });
    expect(new WebhookVerifier(SECRET).check(BODY, headers)).toMatchObject({ ok: true });
  });
});
