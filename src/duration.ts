import * as z from "zod";

/** `30s`, `15m`, `24h`, `7d`, `250ms`, or a bare number of seconds. */
export function parseDuration(value: string | number): number | undefined {
  if (typeof value === "number") return Number.isFinite(value) && value >= 0 ? value * 1000 : undefined;
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/.exec(value);
  if (!match) return undefined;
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[match[2] ?? "s"] ?? 1000;
  return Math.round(Number(match[1]) * unit);
}

/** A config duration (string with unit, or seconds) parsed to milliseconds, with a readable error. */
export const durationSchema = (label: string) =>
  z.union([z.string(), z.number()]).transform((value, ctx) => {
    const ms = parseDuration(value);
    if (ms === undefined) {
      ctx.addIssue({ code: "custom", message: `expected a ${label} such as 30s, 15m, 24h or 7d, got ${JSON.stringify(value)}` });
      return z.NEVER;
    }
    return ms;
  });
