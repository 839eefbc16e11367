import { appendFileSync, existsSync } from "node:fs";
import { ledgerFiles } from "../dataDir.js";
import { sha256Hex } from "./record.js";
import { readHead, readHeadSlots } from "./headFile.js";
import type { NoteVerifier } from "./signedNote.js";

/** One line of `<instance>.anchors.jsonl`: where the signed head went and what came back. */
export interface AnchorReceipt {
  at: string;
  url: string;
  size: number;
  head: string;
  status: number;
  /** The witness's answer (up to 4 KiB) and its sha256. */
  receipt: string;
  receipt_sha256: string;
}

/**
 * Posts the ledger's latest signed head (the note text, `text/plain`) to a witness — a transparency log witness, a
 * service that commits it to a git repository, any URL that keeps what it is sent — and appends the receipt to
 * `<instance>.anchors.jsonl` next to the head file. A copy of the head held elsewhere is what makes a rebuilt or
 * re-signed ledger detectable even by someone holding the signing key. Throws when there is no valid head or the
 * witness does not answer 2xx.
 */
export async function anchorHead(path: string, url: string, verifier: NoteVerifier, options: { headers?: Record<string, string>; now?: Date } = {}): Promise<AnchorReceipt> {
  const files = ledgerFiles(path);
  const read = existsSync(files.head) ? readHead(files.head, verifier) : undefined;
  if (!read?.head || read.slot === undefined) throw new Error(`no signed head in ${files.head} (start the gateway once, or check the key)`);
  const note = readHeadSlots(files.head).find((slot) => slot.slot === read.slot)!.note;
  const response = await fetch(url, { method: "POST", headers: { "content-type": "text/plain; charset=utf-8", ...options.headers }, body: note, signal: AbortSignal.timeout(15_000) });
  const body = (await response.text()).slice(0, 4096);
  if (!response.ok) throw new Error(`the witness at ${url} answered HTTP ${response.status}: ${body.slice(0, 200)}`);
  const receipt: AnchorReceipt = {
    at: (options.now ?? new Date()).toISOString(),
    url,
    size: read.head.size,
    head: read.head.head,
    status: response.status,
    receipt: body,
    receipt_sha256: sha256Hex(body),
  };
  appendFileSync(files.anchors, `${JSON.stringify(receipt)}\n`, { mode: 0o600 });
  return receipt;
}
