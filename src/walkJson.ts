/**
 * What `walkJson`'s visitor answers for one value: stop the walk with a result, or, for an object or array, the
 * context its members are visited with (without it, the object's members are not visited).
 */
export type WalkStep<C, R> = { stop: R } | { into: C } | undefined;

/**
 * Visits every value of a JSON value depth first, in member and index order, each with its parent's context and its
 * key (object member) or index (array item); the root is visited with `rootContext`, no key and index -1. Iterative, with one
 * frame per open object or array walked by index, so memory follows the nesting depth, not the number of values:
 * a stack entry per value made the 30 million numbers of a 60 MB argument exhaust the heap (issue 10), and recursion
 * overflows the stack near 5,000 levels (issue 11). Returns the result a visit stopped with, else undefined.
 */
export function walkJson<C, R>(root: unknown, rootContext: C, visit: (value: unknown, context: C, key: string | undefined, index: number) => WalkStep<C, R>): R | undefined {
  const frames: { value: object; keys: string[] | undefined; next: number; context: C }[] = [];
  const step = (value: unknown, context: C, key: string | undefined, index: number): R | undefined => {
    const answer = visit(value, context, key, index);
    if (answer && "stop" in answer) return answer.stop;
    if (answer && value !== null && typeof value === "object") frames.push({ value, keys: Array.isArray(value) ? undefined : Object.keys(value), next: 0, context: answer.into });
    return undefined;
  };
  let result = step(root, rootContext, undefined, -1);
  while (result === undefined && frames.length > 0) {
    const frame = frames[frames.length - 1]!;
    const { keys } = frame;
    if (frame.next >= (keys ? keys.length : (frame.value as unknown[]).length)) {
      frames.pop();
      continue;
    }
    const index = frame.next++;
    const key = keys?.[index];
    result = step(key === undefined ? (frame.value as unknown[])[index] : (frame.value as Record<string, unknown>)[key], frame.context, key, index);
  }
  return result;
}
