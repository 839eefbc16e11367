import canonicalize from "canonicalize";
import { describe, expect, it } from "vitest";
import { canonicalRecord, type UnsignedRecord } from "../../src/ledger/ledger.js";

const prev = "ab".repeat(32);
const base = { v: 1, seq: 7, ts: "2026-11-24T10:00:00.000Z", type: "request.created", ref: "evt_0a1b2c3d", prev };

/** Records of every shape the hash must agree on: the fast envelope path and the general path give the same bytes. */
const cases: [string, Record<string, unknown>][] = [
  ["plain", { ...base, data: { upstream: "fs", tool: "read", args: { path: "/tmp/x", n: 1 } } }],
  ["no ref", { v: 1, seq: 0, ts: base.ts, type: "ledger.created", data: { ledger_id: "main-1" }, prev }],
  ["ref present but undefined", { ...base, ref: undefined, data: {} }],
  ["empty data", { ...base, data: {} }],
  ["unsorted nested keys", { ...base, data: { z: 1, a: { y: [3, { d: 1, c: 2 }], b: null }, m: true } }],
  ["numbers", { ...base, seq: 123456789, data: { a: 1e21, b: 0.1, c: -0, d: 5e-7, e: 2 ** 53 } }],
  ["unicode and escapes", { ...base, type: "t\u00e9st", data: { "\u20ac": "line\nbreak \"quoted\" \\ \u2028", emoji: "😀", ctl: "\u0001" } }],
  ["undefined members and array holes", { ...base, data: { gone: undefined, list: [1, undefined, () => 1, "x"] } }],
  ["toJSON in data", { ...base, data: { at: new Date(0), nested: { toJSON: () => ({ b: 2, a: 1 }) } } }],
  ["array data", { ...base, data: [1, 2] as unknown as Record<string, unknown> }],
  ["extra member", { ...base, data: {}, extra: "x" }],
  ["hash member (an edited line)", { ...base, data: {}, hash: "00" }],
  ["numeric strings", { ...base, seq: "7", data: {} }],
  ["boxed string", { ...base, type: new String("request.created"), data: {} }],
];

describe("canonicalRecord", () => {
  it.each(cases)("matches canonicalize for %s", (_name, record) => {
    expect(canonicalRecord(record as unknown as UnsignedRecord)).toBe(canonicalize(record));
  });

  it.each([
    ["a lone surrogate in the envelope", { ...base, type: "bad\ud800", data: {} }],
    ["a lone surrogate in data", { ...base, data: { s: "bad\udc00" } }],
    ["NaN", { ...base, seq: Number.NaN, data: {} }],
    ["Infinity in data", { ...base, data: { n: Number.POSITIVE_INFINITY } }],
  ])("refuses %s, as canonicalize does", (_name, record) => {
    expect(() => canonicalize(record)).toThrow();
    expect(() => canonicalRecord(record as unknown as UnsignedRecord)).toThrow();
  });
});

describe("stored lines", () => {
  it("are each record's own RFC 8785 canonical JSON, hash included", async () => {
    const { mkdtempSync, readFileSync } = await import("node:fs");
    const { tmpdir } = await import("node:os");
    const { join } = await import("node:path");
    const { default: canonicalizeJson } = await import("canonicalize");
    const { Ledger } = await import("../../src/ledger/ledger.js");
    const path = join(mkdtempSync(join(tmpdir(), "atlas-lines-")), "l.jsonl");
    const ledger = Ledger.open(path, { instance: "main" });
    ledger.append("request.created", "evt_0000abcd", { z: 1, a: { y: [3, "é", null], b: 1e21 }, s: "line\nbreak" }, "batch");
    ledger.append("gateway.started", undefined, {}, "sync");
    await ledger.close();
    const lines = readFileSync(join(path.replace(/\.jsonl$/, ""), "000000000000.jsonl"), "utf8").trimEnd().split("\n");
    expect(lines).toHaveLength(3);
    for (const line of lines) expect(line).toBe(canonicalizeJson(JSON.parse(line)));
  });
});
