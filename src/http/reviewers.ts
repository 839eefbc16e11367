import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { mkdirSync, readFileSync, renameSync, statSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { AtlasError, ConfigError, ConflictError, NotFoundError } from "../errors.js";

/**
 * Reviewers are people with credentials (issue 9): `approver`s decide, `viewer`s only see. The store keeps only
 * SHA-256 hashes of the secrets it hands out (256 random bits each, so a plain hash cannot be reversed or guessed):
 * someone who can read the file — the agent's tools may reach the data dir — can neither sign in nor approve with
 * anything in it.
 */
export type ReviewerRole = "approver" | "viewer";

export const REVIEWER_ROLES: readonly ReviewerRole[] = ["approver", "viewer"];

/** Reviewer ids are recorded in the ledger and typed on command lines: short, plain, case-sensitive. */
export const REVIEWER_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/;

/** How long a sign-in link works (one use). */
export const SIGN_IN_LINK_TTL_MS = 24 * 3_600_000;
/** How long a review-page session lasts before the reviewer signs in again (no sliding renewal). */
export const SESSION_TTL_MS = 12 * 3_600_000;

/** A reviewer as stored: identity, role, and only hashes of their secrets. */
export interface Reviewer {
  id: string;
  name?: string;
  role: ReviewerRole;
  createdAt: string;
  /** sha256 of the reviewer's key (for the CLI's `--reviewer` and `GET /api/pending`). */
  keyHash: string;
  /** sha256 of the one-time sign-in token, until it is used or replaced. */
  signIn?: { hash: string; expiresAt: string };
}

interface Session {
  hash: string;
  reviewer: string;
  createdAt: string;
  expiresAt: string;
  /** sha256 of the session's CSRF token (random, handed to the page once at sign-in). */
  csrfHash?: string;
}

interface StoreFile {
  version: 1;
  reviewers: Reviewer[];
  sessions: Session[];
}

/** The store lives in the data dir next to the ledgers it governs (0600; the dir 0700). */
export function reviewersPath(dataDir: string): string {
  return join(dataDir, "reviewers.json");
}

const hashSecret = (secret: string) => createHash("sha256").update(secret, "utf8").digest("hex");
const newSecret = (prefix: string) => `${prefix}${randomBytes(32).toString("base64url")}`;

function sameHash(a: string, b: string): boolean {
  const left = Buffer.from(a, "hex");
  const right = Buffer.from(b, "hex");
  return left.length === right.length && left.length > 0 && timingSafeEqual(left, right);
}

function readStore(dataDir: string): StoreFile {
  let text: string;
  try {
    text = readFileSync(reviewersPath(dataDir), "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return { version: 1, reviewers: [], sessions: [] };
    throw new AtlasError(`cannot read ${reviewersPath(dataDir)}: ${(error as Error).message}`);
  }
  try {
    const parsed = JSON.parse(text) as Partial<StoreFile>;
    return { version: 1, reviewers: Array.isArray(parsed.reviewers) ? parsed.reviewers : [], sessions: Array.isArray(parsed.sessions) ? parsed.sessions : [] };
  } catch (error) {
    throw new AtlasError(`${reviewersPath(dataDir)} is not valid JSON (${(error as Error).message}); fix it or move it aside and add the reviewers again`);
  }
}

/** Written whole (temp file + rename): a reader never sees half a store. */
function writeStore(dataDir: string, store: StoreFile): void {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const path = reviewersPath(dataDir);
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(store, null, 2)}\n`, { mode: 0o600 });
  renameSync(tmp, path);
}

const LOCK_WAIT_MS = 3000;
const LOCK_STALE_MS = 10_000;

/**
 * Runs a read-modify-write of the store under an exclusive lock file: the gateway writes sessions while a reviewer's
 * `reviewers add` writes a reviewer, and neither may lose the other's change. Every holder is a short synchronous
 * step, so a lock older than 10 s was left by a process that died.
 */
function updateStore<T>(dataDir: string, change: (store: StoreFile) => T): T {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const lock = `${reviewersPath(dataDir)}.lock`;
  const deadline = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    try {
      writeFileSync(lock, String(process.pid), { flag: "wx", mode: 0o600 });
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      try {
        if (Date.now() - statSync(lock).mtimeMs > LOCK_STALE_MS) unlinkSync(lock);
      } catch {
        // released meanwhile
      }
      if (Date.now() > deadline) throw new AtlasError(`the reviewer store is locked (${lock}); try again`);
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10);
    }
  }
  try {
    const store = readStore(dataDir);
    const result = change(store);
    writeStore(dataDir, store);
    return result;
  } finally {
    try {
      unlinkSync(lock);
    } catch {
      // already gone
    }
  }
}

/** Every reviewer, in the order they were added (hashes included: callers print only ids, names and roles). */
export function listReviewers(dataDir: string): Reviewer[] {
  return readStore(dataDir).reviewers;
}

/** What adding a reviewer (or a new link) hands out once; none of it is stored in clear. */
export interface IssuedCredentials {
  reviewer: Reviewer;
  /** One-time token for the review page's sign-in link. */
  signInToken: string;
  /** The reviewer's key, for CLI decisions (`--reviewer <id>` with ATLAS_REVIEWER_TOKEN) and `GET /api/pending`. */
  key?: string;
}

/** Adds a reviewer; returns their one-time sign-in token and their key (shown once, never stored). */
export function addReviewer(dataDir: string, input: { id: string; name?: string; role?: ReviewerRole }, now = new Date()): IssuedCredentials {
  if (!REVIEWER_ID_PATTERN.test(input.id)) throw new ConfigError([`reviewer id '${input.id}': use 1-64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit`]);
  const role = input.role ?? "approver";
  if (!REVIEWER_ROLES.includes(role)) throw new ConfigError([`--role: must be approver or viewer, not '${String(role)}'`]);
  const key = newSecret("atlas_rk_");
  const signInToken = newSecret("atlas_si_");
  const reviewer: Reviewer = {
    id: input.id,
    ...(input.name ? { name: input.name } : {}),
    role,
    createdAt: now.toISOString(),
    keyHash: hashSecret(key),
    signIn: { hash: hashSecret(signInToken), expiresAt: new Date(now.getTime() + SIGN_IN_LINK_TTL_MS).toISOString() },
  };
  updateStore(dataDir, (store) => {
    if (store.reviewers.some((entry) => entry.id === input.id)) {
      throw new ConflictError(`reviewer '${input.id}' already exists; issue a new sign-in link with 'atlas-gateway reviewers link ${input.id}', or remove them first`);
    }
    store.reviewers.push(reviewer);
  });
  return { reviewer, signInToken, key };
}

/** Replaces a reviewer's sign-in token with a fresh one-time token (the old link stops working). */
export function issueSignInLink(dataDir: string, id: string, now = new Date()): IssuedCredentials {
  const signInToken = newSecret("atlas_si_");
  const reviewer = updateStore(dataDir, (store) => {
    const found = store.reviewers.find((entry) => entry.id === id);
    if (!found) throw new NotFoundError(`no reviewer '${id}' (list them with 'atlas-gateway reviewers list')`);
    found.signIn = { hash: hashSecret(signInToken), expiresAt: new Date(now.getTime() + SIGN_IN_LINK_TTL_MS).toISOString() };
    return found;
  });
  return { reviewer, signInToken };
}

/** Removes a reviewer and ends their sessions at once. */
export function removeReviewer(dataDir: string, id: string): Reviewer {
  return updateStore(dataDir, (store) => {
    const reviewer = store.reviewers.find((entry) => entry.id === id);
    if (!reviewer) throw new NotFoundError(`no reviewer '${id}' (list them with 'atlas-gateway reviewers list')`);
    store.reviewers = store.reviewers.filter((entry) => entry.id !== id);
    store.sessions = store.sessions.filter((session) => session.reviewer !== id);
    return reviewer;
  });
}

/** The reviewer a key belongs to, if any (`id` narrows it: the CLI names the reviewer it claims to be). */
export function reviewerForKey(dataDir: string, key: string, id?: string): Reviewer | undefined {
  if (!key) return undefined;
  const hash = hashSecret(key.trim());
  return readStore(dataDir).reviewers.find((reviewer) => (id === undefined || reviewer.id === id) && sameHash(reviewer.keyHash, hash));
}

/** A signed-in reviewer, as the routes see it. */
export interface ReviewSession {
  reviewer: Reviewer;
  expiresAt: string;
  /** sha256 of the CSRF token every state-changing request must carry; absent for a session from an older store. */
  csrfHash?: string;
}

/**
 * Exchanges a one-time sign-in token for a session: the token is consumed, the returned session secret goes into an
 * HttpOnly cookie, and the returned CSRF token to the page, once. The CSRF token is random, not derived from the
 * cookie: cookies ignore ports, so any server on the same host (one the agent started) may receive the cookie, and
 * must not be able to decide with it. Undefined when the token is unknown, used or expired.
 */
export function signIn(dataDir: string, token: string, now = new Date()): (ReviewSession & { secret: string; csrf: string }) | undefined {
  const hash = hashSecret(token.trim());
  // Checked without the lock first: an unknown token (the common failure) writes nothing.
  if (!readStore(dataDir).reviewers.some((entry) => entry.signIn && sameHash(entry.signIn.hash, hash))) return undefined;
  return updateStore(dataDir, (store) => {
    const reviewer = store.reviewers.find((entry) => entry.signIn && sameHash(entry.signIn.hash, hash));
    if (!reviewer?.signIn) return undefined;
    const expired = Date.parse(reviewer.signIn.expiresAt) <= now.getTime();
    delete reviewer.signIn; // one use, even when it comes too late
    if (expired) return undefined;
    const secret = newSecret("atlas_ss_");
    const csrf = newSecret("atlas_cs_");
    const expiresAt = new Date(now.getTime() + SESSION_TTL_MS).toISOString();
    store.sessions = store.sessions.filter((session) => Date.parse(session.expiresAt) > now.getTime());
    store.sessions.push({ hash: hashSecret(secret), reviewer: reviewer.id, createdAt: now.toISOString(), expiresAt, csrfHash: hashSecret(csrf) });
    return { reviewer, expiresAt, csrfHash: hashSecret(csrf), csrf, secret };
  });
}

/** The live session a cookie's secret names, if it exists, has not expired and its reviewer still exists. */
export function sessionFor(dataDir: string, secret: string | undefined, now = new Date()): ReviewSession | undefined {
  if (!secret) return undefined;
  const store = readStore(dataDir);
  const hash = hashSecret(secret);
  const session = store.sessions.find((entry) => sameHash(entry.hash, hash));
  if (!session || Date.parse(session.expiresAt) <= now.getTime()) return undefined;
  const reviewer = store.reviewers.find((entry) => entry.id === session.reviewer);
  return reviewer ? { reviewer, expiresAt: session.expiresAt, ...(session.csrfHash ? { csrfHash: session.csrfHash } : {}) } : undefined;
}

/** Ends one session at once (the cookie is cleared by the caller). */
export function signOut(dataDir: string, secret: string): void {
  const hash = hashSecret(secret);
  updateStore(dataDir, (store) => {
    store.sessions = store.sessions.filter((entry) => !sameHash(entry.hash, hash));
  });
}

/** Constant-time check of a presented CSRF token against the session's (a session without one matches nothing). */
export function csrfMatches(session: Pick<ReviewSession, "csrfHash">, presented: string | undefined): boolean {
  if (!presented || !session.csrfHash) return false;
  return sameHash(session.csrfHash, hashSecret(presented));
}
