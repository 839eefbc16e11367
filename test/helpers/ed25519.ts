import { generateKeyPairSync, randomUUID, sign, type KeyObject } from "node:crypto";

/** A reviewer's Ed25519 key pair, as a Standard Webhooks sender holds it: the `whpk_` public key goes to the gateway. */
export function reviewerKeyPair(): { publicKey: string; privateKey: KeyObject } {
  const { publicKey, privateKey } = generateKeyPairSync("ed25519");
  const raw = Buffer.from(publicKey.export({ format: "jwk" }).x!, "base64url");
  return { publicKey: `whpk_${raw.toString("base64")}`, privateKey };
}

/** Standard Webhooks `v1a` headers: Ed25519 over `id.timestamp.body`. */
export function signV1a(privateKey: KeyObject, body: string, at = new Date(), id = `msg_${randomUUID()}`): Record<string, string> {
  const timestamp = String(Math.floor(at.getTime() / 1000));
  const signature = sign(null, Buffer.from(`${id}.${timestamp}.${body}`, "utf8"), privateKey).toString("base64");
  return { "webhook-id": id, "webhook-timestamp": timestamp, "webhook-signature": `v1a,${signature}` };
}
