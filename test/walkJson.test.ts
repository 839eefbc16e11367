import { describe, expect, it } from "vitest";
import { walkJson } from "../src/walkJson.js";

describe("walkJson", () => {
  it("visits every value depth first in member and index order, with its parent's context, key or index", () => {
    const seen: string[] = [];
    walkJson<string, never>({ a: [1, { b: null }], c: "x" }, "$", (value, at, key, index) => {
      const path = key !== undefined ? `${at}.${key}` : index < 0 ? at : `${at}[${index}]`;
      seen.push(`${path}=${JSON.stringify(value)}`);
      return value !== null && typeof value === "object" ? { into: path } : undefined;
    });
    expect(seen).toEqual(['$={"a":[1,{"b":null}],"c":"x"}', '$.a=[1,{"b":null}]', "$.a[0]=1", '$.a[1]={"b":null}', "$.a[1].b=null", '$.c="x"']);
  });

  it("stops at the first result, and does not enter what a visit does not open", () => {
    const visited: unknown[] = [];
    const found = walkJson<number, string>({ skip: { inner: "never" }, list: ["a", "stop here", "b"] }, 0, (value, depth, key) => {
      visited.push(value);
      if (value === "stop here") return { stop: `found at depth ${depth}` };
      return key === "skip" ? undefined : value !== null && typeof value === "object" ? { into: depth + 1 } : undefined;
    });
    expect(found).toBe("found at depth 2");
    expect(visited).not.toContain("never");
    expect(visited).not.toContain("b");
  });

  it("walks values nested far deeper than the stack allows, and millions of values, in bounded memory", () => {
    let deep: unknown = "bottom";
    for (let i = 0; i < 100_000; i++) deep = [deep];
    expect(walkJson<number, number>(deep, 0, (value, depth) => (value === "bottom" ? { stop: depth } : { into: depth + 1 }))).toBe(100_000);
    let count = 0;
    walkJson<null, never>(new Array(3_000_000).fill(0), null, (value) => {
      count++;
      return Array.isArray(value) ? { into: null } : undefined;
    });
    expect(count).toBe(3_000_001);
  });
});
