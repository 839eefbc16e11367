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
 * Why a call's arguments are out of bounds, or undefined. Checked before the call is recorded (issue 11): a value
 * nested thousands deep is recorded once and then breaks every recursive reader (JSON.stringify, evaluators,
 * reviewers' tools); a huge one bloats the ledger. Iterative, and it stops at the first limit crossed, so a hostile
 * value costs no more than the limit to reject.
 */
export function checkArgumentBounds(args: unknown, limits: ArgumentLimits = DEFAULT_ARGUMENT_LIMITS): string | undefined {
  return measureArguments(args, limits).problem;
}

/**
 * `checkArgumentBounds`, plus the arguments' size in bytes as UTF-8 JSON (exact for strings, keys and structure;
 * numbers counted by their shortest form). `bytes` is the size counted so far when there is a `problem`.
 */
export function measureArguments(args: unknown, limits: ArgumentLimits = DEFAULT_ARGUMENT_LIMITS): { problem?: string; bytes: number } {
  let bytes = 0;
  const stack: [value: unknown, depth: number][] = [[args, 1]];
  while (stack.length > 0) {
    const [value, depth] = stack.pop()!;
    if (typeof value === "string") {
      if (!isWellFormedText(value)) return { problem: "arguments contain a lone surrogate (a string that is not valid Unicode)", bytes };
      bytes += Buffer.byteLength(value, "utf8") + 2;
    }
    else if (value === null || typeof value !== "object") bytes += String(value).length;
    else {
      if (depth > limits.argumentDepth) return { problem: `arguments are nested deeper than ${limits.argumentDepth} levels (limits.argumentDepth)`, bytes };
      const items = Array.isArray(value) ? value.map((item) => ["", item] as const) : Object.entries(value);
      bytes += 2 + items.length;
      for (const [key, item] of items) {
        if (key && !isWellFormedText(key)) return { problem: "arguments contain a lone surrogate in a key (not valid Unicode)", bytes };
        if (key) bytes += Buffer.byteLength(key, "utf8") + 3;
        stack.push([item, depth + 1]);
      }
    }
    if (bytes > limits.argumentBytes) return { problem: `arguments are larger than ${limits.argumentBytes} bytes as JSON (limits.argumentBytes)`, bytes };
  }
  return { bytes };
}
