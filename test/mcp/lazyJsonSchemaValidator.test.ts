import { AjvJsonSchemaValidator } from "@modelcontextprotocol/sdk/validation/ajv";
import type { JsonSchemaType } from "@modelcontextprotocol/sdk/validation/types.js";
import { describe, expect, it } from "vitest";
import { LazyJsonSchemaValidator } from "../../src/mcp/lazyJsonSchemaValidator.js";

/** The gateway's Server and upstream Clients validate with this: it must answer exactly as the SDK's default does. */
describe("LazyJsonSchemaValidator", () => {
  const cases: [JsonSchemaType, unknown[]][] = [
    [{ type: "object", properties: { n: { type: "number" } }, required: ["n"] }, [{ n: 1 }, {}, { n: "1" }, null]],
    [{ type: "object", properties: { email: { type: "string", format: "email" } } }, [{ email: "ada@example.org" }, { email: "not an email" }]],
    [{ $id: "https://example.org/who", type: "object", properties: { who: { type: "string", minLength: 2 } }, additionalProperties: false }, [{ who: "Ada" }, { who: "A" }, { who: "Ada", extra: 1 }]],
  ];

  it.each(cases)("answers as the SDK's validator for %j", (schema, inputs) => {
    const lazy = new LazyJsonSchemaValidator().getValidator(schema);
    const sdk = new AjvJsonSchemaValidator().getValidator(schema);
    for (const input of inputs) expect(lazy(input)).toEqual(sdk(input));
    expect(inputs.map((input) => lazy(input).valid)).toContain(false);
    expect(inputs.map((input) => lazy(input).valid)).toContain(true);
  });

  it("keeps one Ajv per instance: a schema with an $id is compiled once and reused", () => {
    const validator = new LazyJsonSchemaValidator();
    const schema: JsonSchemaType = { $id: "https://example.org/once", type: "string" };
    expect(validator.getValidator(schema)("x").valid).toBe(true);
    expect(validator.getValidator(schema)(1).valid).toBe(false);
  });
});
