import { lstatSync, readlinkSync, realpathSync } from "node:fs";
import { posix, win32 } from "node:path";
import { walkJson } from "../walkJson.js";

/**
 * Self-protection: a call whose arguments reach the gateway's own config, data dir (ledgers, control socket, pins),
 * approval credentials or CLI is held as critical, whatever the policy says — an agent with a file or shell tool must
 * not approve itself or edit its own policy (issue 11). The check sees what the upstream will touch: it reads argument
 * strings as paths and as shell words (and embedded JSON), resolves relative ones against every base an upstream may
 * use, compares in Unicode NFC (a filesystem server matches NFD spellings to NFC names), collapses `.`/`..` at any
 * length, follows symlinks through the injected `realpath`, and matches protected names by suffix so that a base it
 * does not know cannot hide them. It does no other I/O.
 */

export interface ProtectedPath {
  path: string;
  /** What it is, for the reviewer: "the gateway's data dir". */
  label: string;
}

export interface SelfProtectionOptions {
  paths: ProtectedPath[];
  home: string;
  /**
   * Directories relative paths are resolved against: the gateway's cwd, upstreams' `cwd`, root directories named in
   * upstreams' arguments. A function is asked at every check (MCP roots change while the gateway runs).
   */
  cwds: string[] | (() => string[]);
  /**
   * Names that are protected wherever they appear, whatever the base: each a `/`-separated run of path components
   * (`*` within a component matches anything) found anywhere in a resolved path, e.g. `webhook-secret`,
   * `atlas-gateway/ledgers`, `ledgers/*.jsonl`.
   */
  suffixes?: ProtectedPath[];
  /** Variables `$NAME` / `${NAME}` / `%NAME%` expand from (HOME, XDG_*, APPDATA…). */
  env?: Record<string, string | undefined>;
  /** Resolves symlinks; missing tails are kept (a file about to be created). */
  realpath?: (path: string) => string;
  /** Whether a path is a symlink (a bare word naming a link into a protected dir is followed). */
  isSymlink?: (path: string) => boolean;
  platform?: NodeJS.Platform;
  /** Command names that run the gateway's CLI. */
  commandNames?: string[];
}

export interface SelfProtectionHit {
  /** Where in the arguments, as a JSON path. */
  at: string;
  /**
   * What matched, described without quoting the argument (reasons reach the agent, `pending`, `show` and Inngest
   * events; a raw value could carry a secret): e.g. "a path (212 characters)".
   */
  value: string;
  /** What it reaches. */
  target: string;
}

/** More distinct path-like words than this in one call is itself treated as a hit: each needs a realpath. */
export const MAX_PATHS_CHECKED = 2000;

/** The longest file name most file systems allow: a longer bare word cannot name a symlink. */
const NAME_MAX = 255;

/** JSON strings inside JSON strings are unwrapped this many levels deep. */
const MAX_EMBEDDED_JSON = 4;

/**
 * realpath that follows every symlink, including dangling ones (a link to a file about to be created), and keeps
 * the part of the path that does not exist yet. Walks with non-throwing lstat: a failing realpath throws, and an
 * exception per argument word would dominate a call's cost.
 */
export function realpathFollowingLinks(path: string, platform: NodeJS.Platform = process.platform): string {
  const paths = platform === "win32" ? win32 : posix;
  const missing: string[] = [];
  let current = path;
  for (let hops = 0; hops < 64; hops++) {
    const stat = statOrNothing(current);
    if (stat?.isSymbolicLink()) {
      try {
        current = paths.resolve(paths.dirname(current), readlinkSync(current));
        continue;
      } catch {
        break;
      }
    }
    if (stat) {
      try {
        const real = realpathSync.native(current);
        return missing.length ? paths.join(real, ...missing.reverse()) : real;
      } catch {
        break; // a parent link loops or vanished meanwhile: keep what we have
      }
    }
    const parent = paths.dirname(current);
    if (parent === current) break;
    missing.push(paths.basename(current));
    current = parent;
  }
  return paths.join(current, ...missing.reverse());
}

/** lstat that answers "nothing there" instead of throwing (ENAMETOOLONG, ENOTDIR, EACCES: no file to follow). */
function statOrNothing(path: string): ReturnType<typeof lstatSync> | undefined {
  try {
    return lstatSync(path, { throwIfNoEntry: false });
  } catch {
    return undefined;
  }
}

/**
 * `path.normalize` in one linear pass: `.` and repeated separators dropped, `..` cancelling the name before it (never
 * climbing above an absolute path's root; kept at the front of a relative one). Node's normalisation rescans what it
 * has built at every `..`, which is quadratic on `a/a/…/../..` a megabyte long.
 */
export function collapseDots(path: string, paths: typeof posix | typeof win32 = posix): string {
  // a POSIX root is `/` or nothing: parsing the whole path for it copies a huge argument several times
  if (paths === posix && !path.includes("/")) return path === "" ? "." : path;
  const root = paths === posix ? (path.startsWith("/") ? "/" : "") : paths.parse(path).root;
  const names: string[] = [];
  for (const part of path.slice(root.length).split(paths === win32 ? /[\\/]+/ : /\/+/)) {
    if (part === "" || part === ".") continue;
    if (part !== "..") names.push(part);
    else if (names.length > 0 && names[names.length - 1] !== "..") names.pop();
    else if (!root) names.push("..");
  }
  const joined = names.join(paths.sep);
  return root + joined || ".";
}

/** Any character `shellWords` treats specially: a text without one is a single word (or none). */
const SHELL_SYNTAX = /[\s;&|<>()`"'\\]/;
/** ASCII characters that end a shell word outside quotes: whitespace and `;&|<>()` and backtick. */
const WORD_BREAK = new Uint8Array(128);
for (const char of " \t\n\v\f\r;&|<>()`") WORD_BREAK[char.charCodeAt(0)] = 1;
/** ASCII characters a backslash before which is kept (`C:\Users\a.txt`, a Windows path), not an escape. */
const NOT_ESCAPED = new Uint8Array(128);
for (const char of "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") NOT_ESCAPED[char.charCodeAt(0)] = 1;
const BACKSLASH = 0x5c;
const DOUBLE_QUOTE = 0x22;
const SINGLE_QUOTE = 0x27;

/**
 * Splits a string into shell words: quotes group, backslash escapes, `;&|<>()` and backticks separate. One pass that
 * copies runs of plain characters as slices (issue 10: a 20 MiB argument built character by character cost seconds
 * of CPU and garbage collection while every other call waited).
 */
export function shellWords(text: string): string[] {
  const words: string[] = [];
  let word = "";
  let inWord = false;
  let quote = 0;
  /** Start of the run of characters taken as they are, not yet added to `word`. */
  let from = 0;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (quote) {
      if (code === quote) {
        word += text.slice(from, i);
        from = i + 1;
        quote = 0;
      } else if (code === BACKSLASH && quote === DOUBLE_QUOTE && i + 1 < text.length) {
        word += text.slice(from, i);
        from = i + 1; // the escaped character starts the next run
        i++;
      }
      continue;
    }
    if (code === DOUBLE_QUOTE || code === SINGLE_QUOTE) {
      word += text.slice(from, i);
      from = i + 1;
      quote = code;
      inWord = true;
    } else if (code === BACKSLASH && i + 1 < text.length && !isNotEscaped(text.charCodeAt(i + 1))) {
      word += text.slice(from, i);
      from = i + 1;
      i++;
      inWord = true;
    } else if (code < 128 ? WORD_BREAK[code] === 1 : /\s/.test(text[i]!)) {
      if (inWord) words.push(word + text.slice(from, i));
      word = "";
      inWord = false;
      from = i + 1;
    } else {
      inWord = true;
    }
  }
  if (inWord) words.push(word + text.slice(from));
  return words;
}

function isNotEscaped(code: number): boolean {
  return code < 128 && NOT_ESCAPED[code] === 1;
}

const NON_ASCII = /[^\x00-\x7f]/;
/** How many distinct words one check remembers so as not to check them again. */
const MAX_REMEMBERED_WORDS = 1 << 16;
const SCRIPT_SUFFIX = /\.(c?js|mjs|cmd|exe|ps1)$/i;
const BIN_DIR = /^\.?bin$/i;
/** A word with none of these yields no part but itself (no braces, `=`, `:`, quotes, brackets or escapes). */
const MAKES_PARTS = /[{}=:,[\]"'()+\\]/;
/** NFC without a copy of ASCII text, which is its own NFC form (a 20 MiB argument is read, not copied). */
function toNfc(text: string): string {
  return NON_ASCII.test(text) ? text.normalize("NFC") : text;
}

/** Words worth reading as paths: `~`, `.`/`..`, variables, file: URLs, drive letters, anything with a separator. */
const PATH_LIKE = /^(~|\.{1,2}([\\/]|$)|\$|%|file:|[A-Za-z]:[\\/]|\\\\)|[\\/]/;
/** After `~`, variables and file: URLs are expanded: still a path (a separator, or `.`/`..`)? */
const EXPANDED_PATH_LIKE = /^\.{1,2}$|[\\/]/;

/** Names what matched without quoting it: the raw text may carry a secret, and it reaches the agent and logs. */
function describeWord(text: string, kind: "path" | "command"): string {
  return `a ${kind} (${text.length} character${text.length === 1 ? "" : "s"})`;
}

/** `a/*.jsonl` -> a matcher of one component each. */
function componentMatchers(pattern: string, foldCase: boolean): RegExp[] {
  return pattern.split("/").filter(Boolean).map((part) => {
    const escaped = part.normalize("NFC").replace(/[.+?^$|()[\]{}\\]/g, "\\$&").replace(/\*/g, ".*");
    return new RegExp(`^${escaped}$`, foldCase ? "i" : "");
  });
}

/** Shell glob characters: a word holding one names whatever the shell expands it to, not itself. */
const GLOB = /[*?[]/;

/**
 * One path component of a shell glob as a matcher of one name: `*` any run, `?` one character, `[…]` / `[!…]` a class
 * (an unclosed `[` is literal), `**` (globstar) any name.
 */
function globComponent(glob: string, foldCase: boolean): RegExp {
  let source = "";
  for (let i = 0; i < glob.length; i++) {
    const char = glob[i]!;
    const close = char === "[" ? glob.indexOf("]", i + 2) : -1;
    if (char === "*") source += ".*";
    else if (char === "?") source += ".";
    else if (close !== -1) {
      const body = glob.slice(i + 1, close).replace(/^!/, "^").replace(/\\/g, "\\\\");
      source += `[${body}]`;
      i = close;
    } else source += char.replace(/[.+?^$|()[\]{}\\*]/g, "\\$&");
  }
  try {
    return new RegExp(`^${source}$`, foldCase ? "i" : "");
  } catch {
    return /^.*$/; // a class the shell reads differently than a RegExp: assume it can match
  }
}

/**
 * Shell brace expansion (`a{b,c}d` -> `abd`, `acd`), nested, at most `limit` words (the rest are dropped). A word
 * longer than any path (4096) or with more than 16 brace groups is left as it is: the expansion must stay cheap on
 * whatever an agent sends.
 */
export function expandBraces(word: string, limit = 64, groups = 0): string[] {
  const open = word.indexOf("{");
  if (open === -1 || word.length > 4096 || groups >= 16) return [word];
  let depth = 0;
  const commas: number[] = [];
  for (let i = open; i < word.length; i++) {
    const char = word[i];
    if (char === "{") depth++;
    else if (char === "}" && --depth === 0) {
      if (commas.length === 0) return expandBraces(word.slice(i + 1), limit, groups + 1).map((rest) => word.slice(0, i + 1) + rest).slice(0, limit);
      const bounds = [open, ...commas, i];
      const out: string[] = [];
      for (let k = 0; k + 1 < bounds.length && out.length < limit; k++) {
        for (const expanded of expandBraces(word.slice(0, open) + word.slice(bounds[k]! + 1, bounds[k + 1]) + word.slice(i + 1), limit, groups + 1)) {
          if (out.length < limit) out.push(expanded);
        }
      }
      return out;
    } else if (char === "," && depth === 1) commas.push(i);
  }
  return [word];
}

/** Returns a checker: the first protected target the arguments reach, or undefined. */
export function createSelfProtection(options: SelfProtectionOptions): (args: Record<string, unknown>) => SelfProtectionHit | undefined {
  const platform = options.platform ?? process.platform;
  const paths = platform === "win32" ? win32 : posix;
  const foldCase = platform === "win32" || platform === "darwin";
  const norm = (path: string) => (foldCase ? toNfc(path).toLowerCase() : toNfc(path));
  const cwds = typeof options.cwds === "function" ? options.cwds : () => options.cwds as string[];
  const suffixes = (options.suffixes ?? []).map(({ path, label }) => ({ parts: componentMatchers(path, foldCase), names: path.split("/").filter(Boolean), label }));
  const realpath = options.realpath ?? ((path: string) => realpathFollowingLinks(path, platform));
  const isSymlink = options.isSymlink ?? ((path: string) => statOrNothing(path)?.isSymbolicLink() === true);
  const env = options.env ?? {};
  const commandNames = new Set((options.commandNames ?? ["atlas-gateway"]).map((name) => name.toLowerCase()));
  const longestCommandName = Math.max(0, ...[...commandNames].map((name) => name.length));
  const shortestCommandName = Math.min(...[...commandNames].map((name) => name.length));

  const roots = options.paths.flatMap(({ path, label }) => {
    const lexical = paths.resolve(path);
    const real = realpath(lexical);
    return [...new Set([lexical, real])].map((root) => ({ root: norm(root), label: `${label} (${path})` }));
  });
  /** `exact`: only the protected path itself counts (a bare word resolved against a cwd that lies inside a root). */
  const reaches = (candidate: string, exact = false) => {
    const folded = norm(candidate);
    return roots.find(({ root }) => folded === root || (!exact && folded.startsWith(root.endsWith(paths.sep) ? root : root + paths.sep)));
  };
  /** Protected names of one component (`webhook-secret`): the only ones a word without a separator can match. */
  const singleNames = suffixes.filter(({ parts }) => parts.length === 1);
  /**
   * Where names are compared case-sensitively and none has a `*`, a name's matcher matches exactly that name: a map
   * lookup then answers as the first matching matcher would, without a RegExp per name and word.
   */
  const exactSingleNames = foldCase || singleNames.some(({ names }) => names[0]!.includes("*"))
    ? undefined
    : singleNames.reduce((map, entry) => (map.has(entry.names[0]!.normalize("NFC")) ? map : map.set(entry.names[0]!.normalize("NFC"), entry)), new Map<string, (typeof singleNames)[number]>());
  /** The protected name of one component that a word without a separator is, if any. */
  const singleName = (word: string) => {
    if (singleNames.length === 0) return undefined;
    const nfc = toNfc(word);
    return exactSingleNames ? exactSingleNames.get(nfc) : singleNames.find(({ parts: [matcher] }) => matcher!.test(nfc));
  };
  /** A protected name anywhere in the (resolved, normalised) path, whatever the base before it. */
  const matchesSuffix = (candidate: string) => {
    const parts = toNfc(candidate).split(/[\\/]/).filter(Boolean);
    // a globbed component matches a protected one when it could expand to its name (`atlas-g*` -> `atlas-gateway`)
    const globs = GLOB.test(candidate) ? parts.map((part) => (GLOB.test(part) ? globComponent(part, foldCase) : undefined)) : [];
    return suffixes.find(({ parts: pattern, names }) => {
      for (let start = 0; start + pattern.length <= parts.length; start++) {
        if (pattern.every((matcher, i) => matcher.test(parts[start + i]!) || globs[start + i]?.test(names[i]!) === true)) return true;
      }
      return false;
    });
  };
  /**
   * A glob reaches a protected root when it can expand to the root or a path inside it: each of its first components
   * matches the root's (`**` matches whatever follows, so a globstar above a root counts). One that can only expand to
   * an ancestor (`~/.local/*`) does not, as an ancestor's plain path does not.
   */
  const globReaches = (candidate: string) => {
    const parts = norm(candidate).split(paths === win32 ? /[\\/]+/ : /\/+/).filter(Boolean);
    return roots.find(({ root }) => {
      const rootParts = root.split(paths === win32 ? /[\\/]+/ : /\/+/).filter(Boolean);
      for (let i = 0; i < rootParts.length; i++) {
        const part = parts[i];
        if (part === undefined) return false;
        if (part === "**") return true;
        if (part !== rootParts[i] && !(GLOB.test(part) && globComponent(part, foldCase).test(rootParts[i]!))) return false;
      }
      return true;
    });
  };

  /**
   * `paths.resolve`: on POSIX, of an absolute path or against an absolute base, the same as `collapseDots`, which is
   * linear where Node's normalisation copies a huge argument character by character (issue 10).
   */
  const resolveCollapsed = (path: string, base?: string) => {
    if (paths !== posix) return base === undefined ? paths.resolve(path) : paths.resolve(base, path);
    if (base === undefined) return path.startsWith("/") ? collapseDots(path, paths) : paths.resolve(path);
    return base.startsWith("/") ? collapseDots(`${base}/${path}`, paths) : paths.resolve(base, path);
  };

  const expand = (word: string): string => {
    let text = word;
    if (/^file:/i.test(text)) {
      try {
        text = decodeURIComponent(new URL(text).pathname);
        if (platform === "win32") text = text.replace(/^\/([A-Za-z]:)/, "$1");
      } catch {
        return text;
      }
    }
    text = text.replace(/^~(?=$|[\\/])/, options.home);
    text = text.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)|%([A-Za-z_][A-Za-z0-9_]*)%/g, (whole, a?: string, b?: string, c?: string) => {
      const name = (a ?? b ?? c)!;
      const value = name === "HOME" || name === "USERPROFILE" ? options.home : env[name];
      return value ?? whole;
    });
    return text;
  };

  /**
   * A word that runs the CLI: the bare command (`atlas-gateway`, `npx atlas-gateway@1`), a launcher script
   * (`…/atlas-gateway.js`) or a command in a bin dir (`/usr/local/bin/atlas-gateway`, `node_modules/.bin/…`). A
   * directory that merely shares the name (`cd ~/src/atlas-gateway`) is not one.
   */
  const runsCli = (word: string) => {
    if (2 * word.length < shortestCommandName) return false; // see below: too short for any command name
    const cut = Math.max(word.lastIndexOf("/"), word.lastIndexOf("\\"));
    const base = word.slice(cut + 1);
    const version = base.lastIndexOf("@");
    // only a name plus a script suffix (at most 4 characters) can match, and lower-casing at most halves a length: a
    // longer last component is not copied further, so a huge word costs a scan, not several copies (issue 10)
    const nameLength = version === -1 ? base.length : version;
    if (nameLength > 2 * (longestCommandName + 4)) return false;
    // nor can a name too short to lower-case into the shortest command name (most words of a text)
    if (2 * nameLength < shortestCommandName) return false;
    if (!commandNames.has((version === -1 ? base : base.slice(0, version)).replace(SCRIPT_SUFFIX, "").toLowerCase())) return false;
    const dirs = cut === -1 ? [] : word.slice(0, cut).split(/[\\/]/);
    return dirs.length === 0 || SCRIPT_SUFFIX.test(base) || BIN_DIR.test(dirs[dirs.length - 1] ?? "");
  };

  return (args) => {
    const checked = new Set<string>();
    const seenWords = new Set<string>();
    let realpaths = 0;
    /**
     * `thorough` (path-like words) follows symlinks and counts anything inside a protected directory. A bare word
     * ("C-1001", "atlas.json") is only a hit when it names a protected path itself: otherwise a gateway started
     * inside its own package or data dir would hold every call.
     */
    /**
     * `wholeValue`: the word is a whole argument value (`{"path": "readme"}`); a bare word inside text is probed for a
     * symlink only when it looks like a file name (has a dot), so a page of prose does not cost a syscall per word.
     */
    const checkPath = (raw: string, at: string, wholeValue = false): SelfProtectionHit | undefined => {
      const unexpanded = expand(raw);
      if (!unexpanded || checked.has(unexpanded)) return undefined;
      checked.add(unexpanded);
      const thorough = EXPANDED_PATH_LIKE.test(unexpanded);
      const absolute = paths.isAbsolute(unexpanded);
      // `.`, `..` and repeated separators collapsed first, at any length (Node's own normalisation is quadratic in the
      // number of `..`); both Unicode forms are then tried on disk
      const expanded = collapseDots(unexpanded, paths);
      const spellings = NON_ASCII.test(expanded) ? [...new Set([expanded, expanded.normalize("NFC"), expanded.normalize("NFD")])] : [expanded];
      const candidates = spellings.flatMap((spelling) => (absolute ? [resolveCollapsed(spelling)] : cwds().map((cwd) => resolveCollapsed(spelling, cwd))));
      const value = describeWord(raw, "path");
      const resolved: string[] = [];
      for (const candidate of new Set(candidates)) {
        let hit = reaches(candidate, !thorough);
        resolved.push(candidate);
        // a bare word is followed only when it names a symlink: a plain file there is not the gateway's
        if (!hit && (thorough || (expanded.length <= NAME_MAX && (wholeValue || raw.includes(".")) && isSymlink(candidate)))) {
          if (++realpaths > MAX_PATHS_CHECKED) return { at, value, target: `more than ${MAX_PATHS_CHECKED} paths in one call: too many to check for self-protection` };
          const real = realpath(candidate);
          resolved.push(real);
          hit = reaches(real);
        }
        if (hit) return { at, value, target: hit.label };
      }
      if (GLOB.test(expanded)) {
        for (const candidate of new Set(candidates)) {
          const hit = globReaches(candidate);
          if (hit) return { at, value, target: hit.label };
        }
      }
      // the name alone, as the agent wrote it (`ledgers/main.jsonl` under a base nobody told us about), then resolved
      for (const path of [expanded, ...resolved]) {
        const named = matchesSuffix(path);
        if (named) return { at, value, target: named.label };
      }
      return undefined;
    };

    const checkString = (text: string, at: string, depth: number): SelfProtectionHit | undefined => {
      const whole = text.trim();
      if (whole && !whole.includes("\n")) {
        const hit = checkPath(whole, at, true);
        if (hit) return hit;
      }
      // JSON inside a string (an edit list, a request body): its strings are arguments too
      if (depth < MAX_EMBEDDED_JSON && /^[[{]/.test(whole)) {
        let inner: unknown;
        try {
          inner = JSON.parse(whole);
        } catch {
          inner = undefined;
        }
        if (inner !== undefined) {
          const hit = walk(inner, at, depth + 1);
          if (hit) return hit;
        }
      }
      // without a quote, escape or separator the text is one word: the character-by-character split is skipped
      for (const word of SHELL_SYNTAX.test(text) ? shellWords(text) : text ? [text] : []) {
        // a word met before got its answer then (every check is a pure function of the word, and `checkPath` skips a
        // path it has seen); only so many are remembered, as a text of millions of distinct words is cheaper checked
        // again than remembered (issue 10), while the words a text repeats come early
        if (seenWords.has(word)) continue;
        if (seenWords.size < MAX_REMEMBERED_WORDS) seenWords.add(word);
        if (runsCli(word)) return { at, value: describeWord(word, "command"), target: "the gateway's CLI" };
        // most words of a text are their only part and not path-like: then only a protected name can match, checked
        // here without building the parts below (the same check it would make)
        if (!MAKES_PARTS.test(word) && !PATH_LIKE.test(word)) {
          const named = singleName(word);
          if (named) return { at, value: describeWord(word, "path"), target: named.label };
          continue;
        }
        // each part is checked as it comes, none remembered: a part met twice gets the same answer twice, and
        // `checkPath` skips a path it has seen, which is what costs (a set of every word and part of a large text
        // cost more than it saved, issue 10); the first hit is the one the parts' order gives
        const checkPart = (part: string): SelfProtectionHit | undefined => {
          if (!part) return undefined;
          if (PATH_LIKE.test(part)) return checkPath(part, at);
          const named = singleName(part);
          return named && { at, value: describeWord(part, "path"), target: named.label };
        };
        let hit: SelfProtectionHit | undefined;
        for (const part of expandBraces(word)) if ((hit = checkPart(part))) return hit;
        const eq = word.indexOf("=");
        if (eq > 0 && (hit = checkPart(word.slice(eq + 1)))) return hit;
        if (word.includes(":") && !/^(file:|[A-Za-z]:[\\/])/i.test(word)) for (const part of word.split(":")) if ((hit = checkPart(part))) return hit;
        // code inside a quoted argument (`python -c "open('/p','w')"`): its string literals are words too
        if (/[,{}[\]"'()+]/.test(word)) for (const part of word.split(/[,{}[\]"'()+]/)) if ((hit = checkPart(part))) return hit;
        // a POSIX shell reads `gate\way` as `gateway` (the tokenizer keeps `\` before a letter for Windows paths)
        if (platform !== "win32" && word.includes("\\") && (hit = checkPart(word.replace(/\\(.)/g, "$1")))) return hit;
      }
      return undefined;
    };

    /**
     * Iterative over objects and arrays: arguments nested thousands deep must not overflow the stack here. One frame
     * per open object or array, walked by index, and a value's path built only for strings: a stack entry and a path
     * per value made the 30 million numbers of a 60 MB JSON text exhaust the heap (issue 10).
     */
    function walk(root: unknown, rootAt: string, depth: number): SelfProtectionHit | undefined {
      // the context is an object's or array's path; a number's or boolean's is never built
      return walkJson<string, SelfProtectionHit>(root, rootAt, (value, at, key, index) => {
        if (typeof value !== "string" && (value === null || typeof value !== "object")) return undefined;
        const path = key === undefined ? (index < 0 ? at : `${at}[${index}]`) : /^[A-Za-z_][A-Za-z0-9_]*$/.test(key) ? `${at}.${key}` : `${at}[${JSON.stringify(key.length <= 40 ? key : `${key.slice(0, 39)}…`)}]`;
        if (typeof value === "string") {
          const hit = checkString(value, path, depth);
          return hit && { stop: hit };
        }
        return { into: path };
      });
    }
    return walk(args, "$", 0);
  };
}
