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
  // One frame per open object or array, walked by index: memory follows the depth (at most argumentDepth frames),
  // not the number of values — a stack entry per value made 30 million zeros (60 MB of JSON) exhaust the heap.
  const frames: { value: object; keys: string[] | undefined; next: number; depth: number }[] = [];
  /** Counts a value; opens a frame for an object or array. */
  const enter = (value: unknown, depth: number): string | undefined => {
    if (typeof value === "string") {
      if (!isWellFormedText(value)) return "arguments contain a lone surrogate (a string that is not valid Unicode)";
      bytes += Buffer.byteLength(value, "utf8") + 2;
    } else if (value === null || typeof value !== "object") bytes += String(value).length;
    else {
      if (depth > limits.argumentDepth) return `arguments are nested deeper than ${limits.argumentDepth} levels (limits.argumentDepth)`;
      const keys = Array.isArray(value) ? undefined : Object.keys(value);
      bytes += 2 + (keys ? keys.length : (value as unknown[]).length);
      frames.push({ value, keys, next: 0, depth });
    }
    return bytes > limits.argumentBytes ? `arguments are larger than ${limits.argumentBytes} bytes as JSON (limits.argumentBytes)` : undefined;
  };
  let problem = enter(args, 1);
  while (!problem && frames.length > 0) {
    const frame = frames[frames.length - 1]!;
    const { keys } = frame;
    if (frame.next >= (keys ? keys.length : (frame.value as unknown[]).length)) {
      frames.pop();
      continue;
    }
    const index = frame.next++;
    if (keys) {
      const key = keys[index]!;
      if (!isWellFormedText(key)) return { problem: "arguments contain a lone surrogate in a key (not valid Unicode)", bytes };
      bytes += Buffer.byteLength(key, "utf8") + 3;
      problem = enter((frame.value as Record<string, unknown>)[key], frame.depth + 1);
    } else {
      problem = enter((frame.value as unknown[])[index], frame.depth + 1);
    }
  }
  return problem ? { problem, bytes } : { bytes };
}
