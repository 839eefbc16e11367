import { readFileSync, statSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { addReviewer, csrfMatches, issueSignInLink, listReviewers, removeReviewer, reviewerForKey, reviewersPath, sessionFor, SESSION_TTL_MS, SIGN_IN_LINK_TTL_MS, signIn } from "../../src/http/reviewers.js";
import { tempDir } from "../helpers.js";

describe("reviewer store", () => {
  it("stores only hashes: nothing in the file signs in or authenticates", () => {
    const dataDir = tempDir();
    const issued = addReviewer(dataDir, { id: "alice", name: "Alice Martin", role: "approver" });
    const text = readFileSync(reviewersPath(dataDir), "utf8");
    expect(text).not.toContain(issued.signInToken);
    expect(text).not.toContain(issued.key!);
    expect(statSync(reviewersPath(dataDir)).mode & 0o777).toBe(0o600);
    // every value in the file, tried as a token or a key, opens nothing
    const values = [...text.matchAll(/"([^"]{20,})"/g)].map((match) => match[1]!);
    expect(values.length).toBeGreaterThan(0);
    for (const value of values) {
      expect(reviewerForKey(dataDir, value)).toBeUndefined();
      expect(signIn(dataDir, value)).toBeUndefined();
    }
    expect(reviewerForKey(dataDir, issued.key!)?.id).toBe("alice");
    expect(reviewerForKey(dataDir, issued.key!, "bob")).toBeUndefined();
  });

  it("a sign-in link works once, then the session works until it expires", () => {
    const dataDir = tempDir();
    const t0 = new Date("2026-01-01T10:00:00Z");
    const { signInToken } = addReviewer(dataDir, { id: "alice" }, t0);
    const session = signIn(dataDir, signInToken, t0)!;
    expect(session.reviewer.id).toBe("alice");
    expect(signIn(dataDir, signInToken, t0)).toBeUndefined();
    expect(sessionFor(dataDir, session.secret, new Date(t0.getTime() + SESSION_TTL_MS - 1000))?.reviewer.id).toBe("alice");
    expect(sessionFor(dataDir, session.secret, new Date(t0.getTime() + SESSION_TTL_MS + 1000))).toBeUndefined();
    expect(sessionFor(dataDir, "atlas_ss_forged", t0)).toBeUndefined();
    const live = sessionFor(dataDir, session.secret, t0)!;
    expect(csrfMatches(live, session.csrf)).toBe(true);
    expect(csrfMatches(live, session.csrf.slice(1))).toBe(false);
    expect(csrfMatches(live, undefined)).toBe(false);
    expect(csrfMatches(live, session.secret)).toBe(false); // the cookie is not the CSRF token, nor derives it
    expect(JSON.stringify(live)).not.toContain(session.csrf);
  });

  it("an expired link is refused and a new one replaces the old", () => {
    const dataDir = tempDir();
    const t0 = new Date("2026-01-01T10:00:00Z");
    const first = addReviewer(dataDir, { id: "bob", role: "viewer" }, t0);
    expect(signIn(dataDir, first.signInToken, new Date(t0.getTime() + SIGN_IN_LINK_TTL_MS + 1))).toBeUndefined();
    const second = issueSignInLink(dataDir, "bob", t0);
    const third = issueSignInLink(dataDir, "bob", t0);
    expect(signIn(dataDir, second.signInToken, t0)).toBeUndefined();
    expect(signIn(dataDir, third.signInToken, t0)?.reviewer).toMatchObject({ id: "bob", role: "viewer" });
  });

  it("removing a reviewer ends their sessions and their key", () => {
    const dataDir = tempDir();
    const issued = addReviewer(dataDir, { id: "carol" });
    const session = signIn(dataDir, issued.signInToken)!;
    removeReviewer(dataDir, "carol");
    expect(sessionFor(dataDir, session.secret)).toBeUndefined();
    expect(reviewerForKey(dataDir, issued.key!)).toBeUndefined();
    expect(listReviewers(dataDir)).toEqual([]);
  });

  it.each([
    ["bad id", () => addReviewer(tempDir(), { id: "-x" }), /reviewer id/],
    ["bad role", () => addReviewer(tempDir(), { id: "x", role: "owner" as never }), /approver or viewer/],
    ["unknown reviewer", () => removeReviewer(tempDir(), "nobody"), /no reviewer 'nobody'/],
  ])("%s is refused with a clear error", (_label, run, message) => {
    expect(run).toThrow(message);
  });

  it("refuses a duplicate id", () => {
    const dataDir = tempDir();
    addReviewer(dataDir, { id: "dan" });
    expect(() => addReviewer(dataDir, { id: "dan" })).toThrow(/already exists/);
  });
});
