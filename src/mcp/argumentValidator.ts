import { Ajv, type ErrorObject, type ValidateFunction } from "ajv";
import { Ajv2020 } from "ajv/dist/2020.js";

/** Dialects the older Ajv class speaks; everything else (and no `$schema`) is JSON Schema 2020-12, MCP's default. */
const DRAFT_07_OR_OLDER = /json-schema\.org\/draft-0[4-7]\/schema/;

/**
 * Checks tool arguments against the tool's `inputSchema` with Ajv, the validator the MCP SDK uses, before a call is
 * scored or held (issue 10: a call that cannot succeed must not wait for a human). Formats are not checked and
 * unknown keywords are allowed, so a valid call is never refused for the validator's sake; a schema Ajv cannot
 * compile is reported once and its calls are not checked (the upstream still validates).
 */
export class ArgumentValidator {
  private readonly compiled = new WeakMap<object, ValidateFunction | null>();
  private modern: Ajv2020 | undefined;
  private legacy: Ajv | undefined;
  private readonly log: (line: string) => void;

  constructor(log: (line: string) => void) {
    this.log = log;
  }

  /** The validation errors, one line each (`/path: message`), or an empty list when the arguments are valid. */
  check(tool: string, schema: Record<string, unknown>, args: unknown): string[] {
    let validate = this.compiled.get(schema);
    if (validate === undefined) {
      validate = this.compile(tool, schema);
      this.compiled.set(schema, validate);
    }
    if (!validate || validate(args)) return [];
    return (validate.errors ?? []).map(describeError);
  }

  private compile(tool: string, schema: Record<string, unknown>): ValidateFunction | null {
    const options = { strict: false, allErrors: true, validateFormats: false, validateSchema: false } as const;
    try {
      if (typeof schema.$schema === "string" && DRAFT_07_OR_OLDER.test(schema.$schema)) return (this.legacy ??= new Ajv(options)).compile(schema);
      return (this.modern ??= new Ajv2020(options)).compile(schema);
    } catch (error) {
      this.log(`tool ${tool}: its inputSchema cannot be compiled (${(error as Error).message}); its arguments are passed on unchecked`);
      return null;
    }
  }
}

function describeError(error: ErrorObject): string {
  const where = error.instancePath || "(arguments)";
  if (error.keyword === "additionalProperties") return `${where}: unexpected property '${String(error.params.additionalProperty)}'`;
  return `${where}: ${error.message ?? "is invalid"}`;
}
