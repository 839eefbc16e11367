import { lstatSync, readlinkSync, realpathSync } from "node:fs";
import { posix, win32 } from "node:path";

/**
 * Self-protection: a call whose arguments reach the gateway's own config, data dir (ledgers, webhook secret, control
 * socket, pins) or CLI is held as critical, whatever the policy says — an agent with a file or shell tool must not
 * approve itself or edit its own policy. The check reads argument strings as paths and as shell words; it follows
 * symlinks through the injected `realpath`, so it does no other I/O.
 */

export interface ProtectedPath {
  path: string;
  /** What it is, for the reviewer: "the gateway's data dir". */
  label: string;
}

export interface SelfProtectionOptions {
  paths: ProtectedPath[];
  home: string;
  /** Directories relative paths are resolved against (the gateway's cwd, upstreams' cwd). */
  cwds: string[];
  /** Variables `$NAME` / `${NAME}` / `%NAME%` expand from (HOME, XDG_*, APPDATA…). */
  env?: Record<string, string | undefined>;
  /** Resolves symlinks; missing tails are kept (a file about to be created). */
  realpath?: (path: string) => string;
  platform?: NodeJS.Platform;
  /** Command names that run the gateway's CLI. */
  commandNames?: string[];
}

export interface SelfProtectionHit {
  /** Where in the arguments, as a JSON path. */
  at: string;
  /** The offending word or path (clipped). */
  value: string;
  /** What it reaches. */
  target: string;
}

/** More distinct path-like words than this in one call is itself treated as a hit: each needs a realpath. */
export const MAX_PATHS_CHECKED = 2000;

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
    const stat = lstatSync(current, { throwIfNoEntry: false });
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

/** Splits a string into shell words: quotes group, backslash escapes, `;&|<>()` and backticks separate. */
export function shellWords(text: string): string[] {
  const words: string[] = [];
  let word = "";
  let inWord = false;
  let quote: '"' | "'" | undefined;
  const flush = () => {
    if (inWord) words.push(word);
    word = "";
    inWord = false;
  };
  for (let i = 0; i < text.length; i++) {
    const char = text[i]!;
    if (quote) {
      if (char === quote) quote = undefined;
      else if (char === "\\" && quote === '"' && i + 1 < text.length) word += text[++i];
      else word += char;
      continue;
    }
    if (char === '"' || char === "'") {
      quote = char;
      inWord = true;
    } else if (char === "\\" && i + 1 < text.length && !/[A-Za-z0-9_.-]/.test(text[i + 1]!)) {
      word += text[++i];
      inWord = true;
    } else if (/[\s;&|<>()`]/.test(char)) {
      flush();
    } else {
      word += char;
      inWord = true;
    }
  }
  flush();
  return words;
}

/** Words worth reading as paths: `~`, `.`/`..`, variables, file: URLs, drive letters, anything with a separator. */
const PATH_LIKE = /^(~|\.{1,2}([\\/]|$)|\$|%|file:|[A-Za-z]:[\\/]|\\\\)|[\\/]/;
/** After `~`, variables and file: URLs are expanded: still a path (a separator, or `.`/`..`)? */
const EXPANDED_PATH_LIKE = /^\.{1,2}$|[\\/]/;

function clip(text: string): string {
  return text.length <= 120 ? text : `${text.slice(0, 119)}…`;
}

/** Returns a checker: the first protected target the arguments reach, or undefined. */
export function createSelfProtection(options: SelfProtectionOptions): (args: Record<string, unknown>) => SelfProtectionHit | undefined {
  const platform = options.platform ?? process.platform;
  const paths = platform === "win32" ? win32 : posix;
  const foldCase = platform === "win32" || platform === "darwin";
  const norm = (path: string) => (foldCase ? path.toLowerCase() : path);
  const realpath = options.realpath ?? ((path: string) => realpathFollowingLinks(path, platform));
  const env = options.env ?? {};
  const commandNames = new Set((options.commandNames ?? ["atlas-gateway"]).map((name) => name.toLowerCase()));

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
    const dirs = word.split(/[\\/]/);
    const base = dirs.pop() ?? word;
    const script = /\.(c?js|mjs|cmd|exe|ps1)$/i;
    if (!commandNames.has(base.replace(/@[^@]*$/, "").replace(script, "").toLowerCase())) return false;
    return dirs.length === 0 || script.test(base) || /^\.?bin$/i.test(dirs[dirs.length - 1] ?? "");
  };

  return (args) => {
    const checked = new Set<string>();
    let realpaths = 0;
    /**
     * `thorough` (path-like words) follows symlinks and counts anything inside a protected directory. A bare word
     * ("C-1001", "atlas.json") is only a hit when it names a protected path itself: otherwise a gateway started
     * inside its own package or data dir would hold every call.
     */
    const checkPath = (raw: string, at: string): SelfProtectionHit | undefined => {
      const expanded = expand(raw);
      if (!expanded || checked.has(expanded)) return undefined;
      checked.add(expanded);
      const thorough = EXPANDED_PATH_LIKE.test(expanded);
      const absolute = paths.isAbsolute(expanded);
      const candidates = absolute ? [paths.resolve(expanded)] : options.cwds.map((cwd) => paths.resolve(cwd, expanded));
      for (const candidate of candidates) {
        let hit = reaches(candidate, !thorough);
        if (!hit && thorough) {
          if (++realpaths > MAX_PATHS_CHECKED) return { at, value: clip(raw), target: `more than ${MAX_PATHS_CHECKED} paths in one call: too many to check for self-protection` };
          hit = reaches(realpath(candidate));
        }
        if (hit) return { at, value: clip(raw), target: hit.label };
      }
      return undefined;
    };

    const checkString = (text: string, at: string): SelfProtectionHit | undefined => {
      const whole = text.trim();
      if (whole && !whole.includes("\n") && whole.length <= 4096) {
        const hit = checkPath(whole, at);
        if (hit) return hit;
      }
      for (const word of shellWords(text)) {
        if (runsCli(word)) return { at, value: clip(word), target: "the gateway's CLI" };
        const parts = new Set([word]);
        const eq = word.indexOf("=");
        if (eq > 0) parts.add(word.slice(eq + 1));
        if (word.includes(":") && !/^(file:|[A-Za-z]:[\\/])/i.test(word)) for (const part of word.split(":")) parts.add(part);
        for (const part of parts) {
          if (!part || !PATH_LIKE.test(part)) continue;
          const hit = checkPath(part, at);
          if (hit) return hit;
        }
      }
      return undefined;
    };

    const walk = (value: unknown, at: string): SelfProtectionHit | undefined => {
      if (typeof value === "string") return checkString(value, at);
      if (Array.isArray(value)) {
        for (let i = 0; i < value.length; i++) {
          const hit = walk(value[i], `${at}[${i}]`);
          if (hit) return hit;
        }
      } else if (value !== null && typeof value === "object") {
        for (const [key, item] of Object.entries(value)) {
          const hit = walk(item, /^[A-Za-z_][A-Za-z0-9_]*$/.test(key) ? `${at}.${key}` : `${at}[${JSON.stringify(key)}]`);
          if (hit) return hit;
        }
      }
      return undefined;
    };
    return walk(args, "$");
  };
}
