/**
 * Polls `probe` until it returns a value (not `undefined`), then resolves with it; fails naming `what` after `ms`.
 * Tests wait for conditions, never for wall-clock time.
 */
export async function until<T>(probe: () => Promise<T | undefined> | T | undefined, what: string, ms = 30_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** `until` for a yes/no condition. */
export function untilTrue(check: () => boolean, what: string, ms = 30_000): Promise<true> {
  return until(() => (check() ? true : undefined), what, ms);
}
