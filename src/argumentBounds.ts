import { walkJson } from "./walkJson.js";

/** How large tool arguments may be (config `limits`). */
export interface ArgumentLimits {
  /** Nesting levels of objects and arrays; the arguments object itself is level 1. */
  argumentDepth: number;
  /** Size in bytes of the arguments as UTF-8 JSON (counted while walking, without serialising). */
  argumentBytes: number;
}

/**
 * Whether a string is valid Unicode: no lone surrogate, which JSON can carry (`"\ud800"`) but the ledger's canonical
 * JSON (RFC 8785) cannot record. (`String#isWellFormed` is ES2024, Node 20+.)
 */
export function isWellFormedText(text: string): boolean {
  return (text as string & { isWellFormed(): boolean }).isWellFormed();
}

/** 64 MiB matches the largest message the gateway carries; the size bound is for configs that want a tighter one. */
export const DEFAULT_ARGUMENT_LIMITS: ArgumentLimits = { argumentDepth: 64, argumentBytes: 64 * 1024 * 1024 };

/**
 * Why a call's arguments are out of bounds (`problem`), and their size in bytes as UTF-8 JSON, counted while walking
 * (escapes not counted, one separator per item: within a few bytes per object or array; the size counted so far when
 * there is a `problem`).
 * Checked before the call is recorded (issue 11): a value nested thousands deep is recorded once and then breaks
 * every recursive reader (JSON.stringify, evaluators, reviewers' tools); a huge one bloats the ledger. Iterative, and
 * it stops at the first limit crossed, so a hostile value costs no more than the limit to reject.
 */
export function measureArguments(args: unknown, limits: ArgumentLimits = DEFAULT_ARGUMENT_LIMITS): { problem?: string; bytes: number } {
  let bytes = 0;
  const over = () => (bytes > limits.argumentBytes ? `arguments are larger than ${limits.argumentBytes} bytes as JSON (limits.argumentBytes)` : undefined);
  // the context is a value's depth; memory follows the depth (at most argumentDepth frames), not the number of values
  const problem = walkJson<number, string>(args, 1, (value, depth, key) => {
    if (key !== undefined) {
      if (!isWellFormedText(key)) return { stop: "arguments contain a lone surrogate in a key (not valid Unicode)" };
      bytes += Buffer.byteLength(key, "utf8") + 3;
    }
    if (typeof value === "string") {
      if (!isWellFormedText(value)) return { stop: "arguments contain a lone surrogate (a string that is not valid Unicode)" };
      bytes += Buffer.byteLength(value, "utf8") + 2;
    } else if (value === null || typeof value !== "object") bytes += String(value).length;
    else {
      if (depth > limits.argumentDepth) return { stop: `arguments are nested deeper than ${limits.argumentDepth} levels (limits.argumentDepth)` };
      bytes += 2 + (Array.isArray(value) ? value.length : Object.keys(value).length);
      const tooLarge = over();
      return tooLarge ? { stop: tooLarge } : { into: depth + 1 };
    }
    const tooLarge = over();
    return tooLarge ? { stop: tooLarge } : undefined;
  });
  return problem ? { problem, bytes } : { bytes };
}
