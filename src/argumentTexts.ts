/**
 * The JSON texts of one call's arguments, computed once and reused by everything that serialises the same arguments
 * object: the call digest and the ledger record (`canonicalBytes`, RFC 8785) and the message forwarded to a stdio upstream
 * (`jsonBytes`, the arguments' own member order). Large arguments get theirs on a worker thread
 * (`risk/largeArguments.ts`): serialising and encoding a 20 MiB argument several times on the event loop held every
 * other call up (issue 10).
 *
 * Keyed by object identity, so a text is valid only while its object is unchanged. That holds for a call's arguments:
 * the gateway reads them and never edits them (arguments edited by a reviewer are a new object).
 */
/**
 * Arguments at least this large (UTF-8 JSON bytes) are prepared on a worker thread (`risk/largeArguments.ts`): below
 * it the work takes a few milliseconds, which a thread hop would not repay.
 */
export const LARGE_ARGUMENT_BYTES = 1024 * 1024;

export interface ArgumentTexts {
  /** RFC 8785 canonical JSON, UTF-8 encoded: hashed and written to the ledger as it is. */
  canonicalBytes: Uint8Array;
  /** `JSON.stringify` of the arguments, UTF-8 encoded: written to the upstream as it is. */
  jsonBytes: Uint8Array;
  /** The call digest (`digestCall`) of these arguments sent to `tool` of `upstream`. */
  call?: { upstream: string; tool: string; digest: string };
}

const known = new WeakMap<object, ArgumentTexts>();

/** Remembers the texts of `args` (which must not change afterwards). */
export function rememberArgumentTexts(args: object, texts: ArgumentTexts): void {
  known.set(args, texts);
}

/** The remembered texts of `value`, if it is an object whose texts were remembered. */
export function knownArgumentTexts(value: unknown): ArgumentTexts | undefined {
  return typeof value === "object" && value !== null ? known.get(value) : undefined;
}

/** Drops the remembered texts of `args` (the memory of a large argument's copies), once nothing will serialise it soon. */
export function forgetArgumentTexts(args: object): void {
  known.delete(args);
}
