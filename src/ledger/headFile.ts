import { closeSync, existsSync, fstatSync, openSync, readFileSync, writeSync } from "node:fs";
import { verifyCheckpoint, type Checkpoint, type NoteVerifier } from "./signedNote.js";

/**
 * The head file holds the ledger's latest signed head: a signed checkpoint note (see `signedNote.ts`) naming the
 * number of records fsynced and the hash of the last one. It is rewritten after every fsync, so it must be cheap and
 * crash-safe without a rename (a rename per group commit cost 13 % of the gateway's CPU in a profile): the file has
 * two fixed slots of `HEAD_SLOT_BYTES`, each a note padded with NUL bytes, written alternately in place. A crash in
 * the middle of a write tears at most the slot being written, whose signature then fails; the other still holds the
 * head before it. Readers take the valid slot with the larger size.
 */
export const HEAD_SLOT_BYTES = 1024;

export interface HeadRead {
  /** The newest head whose signature verifies. */
  head?: Checkpoint;
  /** Its slot (0 or 1). */
  slot?: number;
  /** Why slots that hold something failed (a torn write, or an edit). */
  invalid: string[];
}

/** The notes in a head file's slots (empty slots left out). */
export function readHeadSlots(path: string): { slot: number; note: string }[] {
  const bytes = readFileSync(path);
  const slots: { slot: number; note: string }[] = [];
  for (let slot = 0; slot * HEAD_SLOT_BYTES < bytes.length && slot < 2; slot++) {
    const raw = bytes.subarray(slot * HEAD_SLOT_BYTES, (slot + 1) * HEAD_SLOT_BYTES);
    const end = raw.indexOf(0);
    const note = raw.subarray(0, end === -1 ? raw.length : end).toString("utf8");
    if (note) slots.push({ slot, note });
  }
  return slots;
}

/** Reads and verifies the head file; `undefined` when there is none. */
export function readHead(path: string, verifier: NoteVerifier): HeadRead | undefined {
  if (!existsSync(path)) return undefined;
  const read: HeadRead = { invalid: [] };
  for (const { slot, note } of readHeadSlots(path)) {
    const check = verifyCheckpoint(note, verifier);
    if (!check.ok) {
      read.invalid.push(`slot ${slot}: ${check.reason}`);
      continue;
    }
    if (!read.head || check.checkpoint.size > read.head.size) {
      read.head = check.checkpoint;
      read.slot = slot;
    }
  }
  return read;
}

/** Writes signed heads into the head file's slots, alternately, through one open file. */
export class HeadWriter {
  private readonly fd: number;
  private slot: number;

  /** `lastSlot`: the slot holding the newest head now (the next write goes to the other). */
  constructor(path: string, lastSlot: number | undefined) {
    this.fd = openSync(path, existsSync(path) ? "r+" : "w+", 0o600);
    if (fstatSync(this.fd).size < 2 * HEAD_SLOT_BYTES) writeSync(this.fd, Buffer.alloc(2 * HEAD_SLOT_BYTES), 0, 2 * HEAD_SLOT_BYTES, 0);
    this.slot = lastSlot === 0 ? 1 : 0;
  }

  write(note: string): void {
    const bytes = Buffer.alloc(HEAD_SLOT_BYTES);
    const written = bytes.write(note, "utf8");
    if (written >= HEAD_SLOT_BYTES) throw new Error(`a signed head of ${written} bytes does not fit a ${HEAD_SLOT_BYTES}-byte slot`);
    writeSync(this.fd, bytes, 0, HEAD_SLOT_BYTES, this.slot * HEAD_SLOT_BYTES);
    this.slot = 1 - this.slot;
  }

  close(): void {
    closeSync(this.fd);
  }
}
