/** Nesting levels indented when `renderJson` is asked to indent; deeper ones are compact. */
export const MAX_INDENTED_LEVELS = 64;

/**
 * Characters that change how the text around them displays rather than showing themselves: C1 controls (U+009B is a
 * terminal's CSI), bidi marks, embeddings, overrides and isolates ("Trojan Source", CVE-2021-42574), line and paragraph
 * separators. The agent writes the arguments a reviewer reads: `invoice_\u202Efdp.exe` displays as `invoice_exe.pdf`.
 */
export const DISPLAY_CONTROLS = /[\u0080-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]/g;

/** `JSON.stringify` of a string with `DISPLAY_CONTROLS` escaped as `\uXXXX`: the same JSON value, shown as it is. */
export function jsonString(text: string): string {
  return JSON.stringify(text).replace(DISPLAY_CONTROLS, (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

/**
 * `JSON.stringify` for values read back from a ledger, without its recursion: V8's native stringify overflows the
 * stack near 5,000 levels, and a ledger written before arguments were bounded can hold calls nested 10,000 deep
 * (issue 11). Same output as `JSON.stringify(value, null, indent)` for JSON data (objects, arrays, strings, finite
 * numbers, booleans, null; `undefined` members skipped, non-finite numbers as null), except that with `indent`,
 * levels deeper than `MAX_INDENTED_LEVELS` are written compactly: indenting 10,000 levels would print 100 MB of spaces,
 * and that strings escape `DISPLAY_CONTROLS` (it parses back to the same value). `maxChars`: only the first that many
 * characters are wanted (a log line's excerpt), so the walk stops there rather than render megabytes to cut them.
 */
export function renderJson(value: unknown, indent = 0, maxChars = Number.POSITIVE_INFINITY): string {
  const pad = (level: number) => (indent > 0 && level <= MAX_INDENTED_LEVELS ? `\n${" ".repeat(indent * level)}` : "");
  const colonAt = (level: number) => (indent > 0 && level <= MAX_INDENTED_LEVELS ? ": " : ":");
  const out: string[] = [];
  let written = 0;
  const write = (text: string) => {
    out.push(text);
    written += text.length;
  };
  // walked by index (no entry per element): a frame's memory is its keys at most, whatever the length of an array
  type Frame = { close: string; level: number; source: object; keys: string[] | undefined; index: number };
  const stack: Frame[] = [];

  const scalar = (item: unknown): string | undefined => {
    if (item === null) return "null";
    if (typeof item === "string") return jsonString(item);
    if (typeof item === "number") return Number.isFinite(item) ? String(item) : "null";
    if (typeof item === "boolean") return String(item);
    if (typeof item === "bigint") return item.toString();
    return undefined; // undefined, functions, symbols
  };
  /** Writes a scalar, or opens a container frame. */
  const emit = (item: unknown, level: number) => {
    if (Array.isArray(item)) {
      if (item.length === 0) return void write("[]");
      write("[");
      stack.push({ close: "]", level, source: item, keys: undefined, index: 0 });
    } else if (item !== null && typeof item === "object") {
      const keys = Object.keys(item).filter((key) => {
        const member = (item as Record<string, unknown>)[key];
        return member !== undefined && typeof member !== "function" && typeof member !== "symbol";
      });
      if (keys.length === 0) return void write("{}");
      write("{");
      stack.push({ close: "}", level, source: item, keys, index: 0 });
    } else {
      write(scalar(item) ?? "null");
    }
  };

  if (value === undefined) return "undefined";
  emit(value, 0);
  while (stack.length > 0 && written < maxChars) {
    const frame = stack[stack.length - 1]!;
    const { keys } = frame;
    if (frame.index >= (keys ? keys.length : (frame.source as unknown[]).length)) {
      stack.pop();
      write(`${pad(frame.level)}${frame.close}`);
      continue;
    }
    const key = keys?.[frame.index];
    const item = key !== undefined ? (frame.source as Record<string, unknown>)[key] : (frame.source as unknown[])[frame.index];
    write(`${frame.index > 0 ? "," : ""}${pad(frame.level + 1)}${key !== undefined ? `${jsonString(key)}${colonAt(frame.level + 1)}` : ""}`);
    frame.index += 1;
    emit(keys === undefined && (item === undefined || typeof item === "function") ? null : item, frame.level + 1);
  }
  const text = out.join("");
  return written > maxChars ? text.slice(0, maxChars) : text;
}
