import canonicalize from "canonicalize";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { isWellFormedText } from "../../src/argumentBounds.js";
import { knownArgumentTexts, rememberArgumentTexts } from "../../src/argumentTexts.js";
import { canonicalJson, canonicalRecord, digestCall, openFileSink, type UnsignedRecord } from "../../src/ledger/ledger.js";

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

  it("are the same when a record holds arguments already encoded, written in pieces, and the chain verifies", async () => {
    const { mkdtempSync, readFileSync } = await import("node:fs");
    const { tmpdir } = await import("node:os");
    const { join } = await import("node:path");
    const { Ledger, scanLedger } = await import("../../src/ledger/ledger.js");
    const path = join(mkdtempSync(join(tmpdir(), "atlas-lines-")), "l.jsonl");
    const writes: (string | Uint8Array)[] = [];
    const ledger = Ledger.open(path, {
      instance: "main",
      sink: (file) => {
        const inner = openFileSink(file);
        return { ...inner, write: (data) => (writes.push(data), inner.write(data)) };
      },
    });
    const args = { z: "é😀".repeat(1000), a: [1, { y: null, b: true }] };
    rememberArgumentTexts(args, { canonicalBytes: Buffer.from(canonicalize(args)!), jsonBytes: Buffer.from(JSON.stringify(args)) });
    ledger.append("request.admitted", "evt_0000abcd", { upstream: "u", tool: "t", args, args_digest: digestCall("u", "t", args) }, "batch");
    ledger.append("gateway.started", undefined, {}, "sync");
    await ledger.close();
    expect(writes.some((data) => data === knownArgumentTexts(args)!.canonicalBytes)).toBe(true); // not copied into one buffer
    const lines = readFileSync(join(path.replace(/\.jsonl$/, ""), "000000000000.jsonl"), "utf8").trimEnd().split("\n");
    expect(JSON.parse(lines[1]!).data.args).toEqual(args);
    for (const line of lines) expect(line).toBe(canonicalize(JSON.parse(line)));
    const scan = scanLedger(path.replace(/\.jsonl$/, ""));
    expect(scan.problem).toBeUndefined();
    expect(scan.records.map((record) => record.type)).toEqual(["ledger.created", "request.admitted", "gateway.started"]);
  });
});

describe("canonicalJson (the fast RFC 8785 path)", () => {
  it.each([
    ["integer-like keys, which V8 enumerates first", { 10: "a", 2: "b", a: 1, "01": 2 }],
    ["keys ordered by UTF-16 code units", { z: 1, "\u00e9": 2, "\ud83d\ude00": 3, "\uff21": 4, A: 5, a: 6, "": 7 }],
    ["a null-prototype object", Object.assign(Object.create(null) as object, { b: 1, a: 2 })],
    ["nested arrays and objects", { list: [{ b: [1, { d: null, c: true }], a: "x" }, [], {}], n: -0, f: 1.5e-7 }],
    ["a class instance", { when: new Map([[1, 2]]) }],
    // JSON.parse makes `__proto__` an own member; a copy built by assignment would set its prototype instead
    ["members named __proto__, as JSON.parse makes them", JSON.parse('{"a":{"__proto__":"/data/webhook-secret","b":1},"c":{"__proto__":{"p":"/x"}}}') as object],
  ])("matches canonicalize for %s", (_name, value) => {
    expect(canonicalJson(value)).toBe(canonicalize(value));
  });

  it("records an agent's __proto__ member and tells calls apart by it (it reaches the upstream)", () => {
    const args = JSON.parse('{"x":{"__proto__":"/data/webhook-secret"}}') as Record<string, unknown>;
    expect(canonicalJson({ args })).toBe('{"args":{"x":{"__proto__":"/data/webhook-secret"}}}');
    expect(digestCall("u", "t", args)).not.toBe(digestCall("u", "t", { x: {} }));
  });

  it("matches canonicalize on thousands of generated JSON values", () => {
    let seed = 12;
    const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const alphabet = ["a", "b", "Z", "é", "€", "😀", "\n", "\"", "\\", "\u0001", "1", "0", " ", "\u2028"];
    const text = () => Array.from({ length: Math.floor(random() * 6) }, () => alphabet[Math.floor(random() * alphabet.length)]).join("");
    const value = (depth: number): unknown => {
      const pick = Math.floor(random() * (depth > 3 ? 5 : 7));
      if (pick === 0) return null;
      if (pick === 1) return random() < 0.5;
      if (pick === 2) return [0, -1, 1e21, 0.1, 123.456, -5e-7, 2 ** 53][Math.floor(random() * 7)];
      if (pick === 3 || pick === 4) return text();
      if (pick === 5) return Array.from({ length: Math.floor(random() * 4) }, () => value(depth + 1));
      return Object.fromEntries(Array.from({ length: Math.floor(random() * 5) }, () => [text(), value(depth + 1)]));
    };
    for (let i = 0; i < 3000; i++) {
      const sample = value(0);
      expect(canonicalJson(sample)).toBe(canonicalize(sample));
    }
  });
});

describe("arguments whose texts are known (issue 10: large arguments are serialised once)", () => {
  const jsonValue = fc.jsonValue({ maxDepth: 4 });
  const argsArbitrary = fc.dictionary(fc.string({ unit: "binary" }), jsonValue, { maxKeys: 6 });

  it("a digest input and a record's data read the same with the texts known as without", () => {
    fc.assert(
      fc.property(argsArbitrary, fc.string(), fc.string(), fc.dictionary(fc.string(), jsonValue, { maxKeys: 4 }), (args, upstream, tool, extra) => {
        fc.pre(Object.keys(args).every((key) => isWellFormedText(key)));
        const fresh = structuredClone(args);
        rememberArgumentTexts(args, { canonicalBytes: Buffer.from(canonicalize(args)!), jsonBytes: Buffer.from(JSON.stringify(args)) });
        expect(canonicalJson(args)).toBe(canonicalize(fresh));
        expect(canonicalJson({ upstream, tool, args })).toBe(canonicalize({ upstream, tool, args: fresh }));
        expect(canonicalJson({ ...extra, args, name: tool })).toBe(canonicalize({ ...extra, args: fresh, name: tool }));
        // at any depth, more than once (a checkpoint carries the records of calls still open)
        expect(canonicalJson({ state: { requests: [{ data: { args } }, extra, { data: { args } }] } })).toBe(canonicalize({ state: { requests: [{ data: { args: fresh } }, extra, { data: { args: fresh } }] } }));
        expect(digestCall(upstream, tool, args)).toBe(digestCall(upstream, tool, fresh));
      }),
      { numRuns: 300 },
    );
  });

  it("uses the known text rather than serialising the arguments again", () => {
    const args = { a: 1 };
    rememberArgumentTexts(args, { canonicalBytes: Buffer.from('{"a":"as remembered"}'), jsonBytes: Buffer.from("{}") });
    expect(canonicalJson({ z: true, args })).toBe('{"args":{"a":"as remembered"},"z":true}');
    expect(canonicalJson({ list: [args, { args }], b: "\u0000" })).toBe('{"b":"\\u0000","list":[{"a":"as remembered"},{"args":{"a":"as remembered"}}]}');
  });

  it("the digest a worker computed is used only for the upstream and tool it was computed for", () => {
    const args = { path: "/tmp/x" };
    rememberArgumentTexts(args, { canonicalBytes: Buffer.from(canonicalize(args)!), jsonBytes: Buffer.from(JSON.stringify(args)), call: { upstream: "fs", tool: "read", digest: "d".repeat(64) } });
    expect(digestCall("fs", "read", args)).toBe("d".repeat(64));
    expect(digestCall("fs", "write", args)).toBe(digestCall("fs", "write", { path: "/tmp/x" }));
    expect(digestCall("other", "read", args)).toBe(digestCall("other", "read", { path: "/tmp/x" }));
  });

  it("a member that is not plain JSON still takes the general path", () => {
    const args = { a: 1 };
    rememberArgumentTexts(args, { canonicalBytes: Buffer.from(canonicalize(args)!), jsonBytes: Buffer.from(JSON.stringify(args)) });
    const value = { args, when: new Date(0), gone: undefined };
    expect(canonicalJson(value)).toBe(canonicalize({ args: { a: 1 }, when: new Date(0), gone: undefined }));
  });
});
