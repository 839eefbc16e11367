import { AjvJsonSchemaValidator } from "@modelcontextprotocol/sdk/validation/ajv";
import type { JsonSchemaType, JsonSchemaValidator, jsonSchemaValidator } from "@modelcontextprotocol/sdk/validation/types.js";

/**
 * The MCP SDK's default JSON Schema validator (Ajv), built on first use instead of in the `Server`/`Client`
 * constructor. Building it compiles Ajv's meta-schemas and formats, about 5 ms, which every gateway start paid before
 * answering `initialize`, and again for each upstream before its first `tools/list`, though only an elicitation
 * answer (server side) or a tool with an `outputSchema` (client side) ever needs it (issue 12: cold start). The
 * validator, its options and its answers are the SDK's own; one per Server or Client, as the SDK makes them.
 */
export class LazyJsonSchemaValidator implements jsonSchemaValidator {
  private validator: AjvJsonSchemaValidator | undefined;

  getValidator<T>(schema: JsonSchemaType): JsonSchemaValidator<T> {
    this.validator ??= new AjvJsonSchemaValidator();
    return this.validator.getValidator<T>(schema);
  }
}
