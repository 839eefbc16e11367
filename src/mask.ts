import { walkJson } from "./walkJson.js";

/** What a masked value becomes. */
export const MASK = "[masked]";

/**
 * Key names that mean a credential, as their last word(s) once the key is split into words (`dbPassword`,
 * `X-Api-Key`, `client_secret`): whole words only, so `passenger_name`, `compass_heading`, `max_tokens` and
 * `session_id` stay readable (issue 9 item 7). IBANs, account numbers and amounts are what a reviewer must see.
 */
const SECRET_LAST_WORDS = new Set([
  "password", "passwd", "pwd", "passphrase", "secret", "token", "apikey", "credential", "credentials", "cookie", "cookies",
  "authorization", "auth", "pin", "cvv", "cvc", "ssn", "otp", "signature", "bearer",
]);
/** Two-word endings: `api_key`, `private_key`, `set_cookie`, `card_number`. */
const SECRET_PAIRS = new Set([
  "api key", "access key", "secret key", "private key", "signing key", "encryption key", "master key", "client key",
  "session key", "license key", "card number", "security code", "pass phrase",
]);

/** Splits a key into lower-case words: `dbPassword` -> db, password; `X-API-KEY` -> x, api, key. */
function keyWords(key: string): string[] {
  return key
    .replace(/([a-z0-9])([A-Z])/g, "$1 $2")
    .replace(/([A-Z]+)([A-Z][a-z])/g, "$1 $2")
    .toLowerCase()
    .split(/[^a-z0-9]+/)
    .filter(Boolean);
}

/** Whether a key's name means a credential (see `SECRET_LAST_WORDS`). */
export function isSecretKey(key: string): boolean {
  if (!key) return false;
  const words = keyWords(key);
  const last = words[words.length - 1];
  if (last === undefined) return false;
  if (SECRET_LAST_WORDS.has(last)) return true;
  return words.length >= 2 && SECRET_PAIRS.has(`${words[words.length - 2]} ${last}`);
}

/**
 * Credential words as they end a key before `=` or `:` in text (`DB_PASSWORD=…`, `password: …`, `?access_token=…`):
 * the match starts after any `_`, `.` or `-`, so a prefix needs no pattern of its own (a repeated optional prefix
 * would backtrack quadratically on `a_a_a_…`).
 */
const TEXT_KEY = String.raw`(?:pass(?:word|wd|phrase)?|pwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|secret[_-]?key|credentials?|cookie|authorization|auth)`;

interface TextRule {
  pattern: RegExp;
  replace: (match: string, ...groups: string[]) => string;
}

/**
 * Secret-shaped text, masked wherever it appears in a string. Order matters: whole blocks and URLs first, so a key
 * rule does not split them.
 */
const TEXT_RULES: TextRule[] = [
  // PEM private keys (a certificate is public and stays)
  { pattern: /-----BEGIN ([A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?)-----[\s\S]*?(?:-----END \1-----|$)/g, replace: () => MASK },
  // passwords inside URLs: scheme://user:password@host (lengths bounded: an unbounded scheme rescans `a.a.a.…` from
  // every word start, quadratic in the text's length)
  { pattern: /(?<![A-Za-z0-9+.-])([a-z][a-z0-9+.-]{0,31}:\/\/[^\s:/@]{0,256}:)([^\s@/]{1,1024})@/gi, replace: (_m, head) => `${head}${MASK}@` },
  // Authorization schemes: Bearer / Basic / Token / Digest credentials
  { pattern: /\b(Bearer|Basic|Token|Digest)(\s+)[A-Za-z0-9._~+/=-]{6,}/g, replace: (_m, scheme, space) => `${scheme}${space}${MASK}` },
  // key: value and KEY=value in text, config files, query strings, headers; quoted values whole
  {
    pattern: new RegExp(String.raw`(?<![A-Za-z0-9])(${TEXT_KEY})(?![A-Za-z0-9])(["']?[ \t]{0,16}[:=][ \t]{0,16})(?:"[^"\n]{0,2000}"|'[^'\n]{0,2000}'|(?!Bearer\b|Basic\b|Token\b|Digest\b)[^\s"',;&}\]]+)`, "gi"),
    // A value the shell expands (`$(…)`, backticks, `${…}`) is code, not a secret: masked, it would hide the agent's
    // command from the reviewer and the model evaluators (`password="$(curl … | sh)"` shown as `password=[masked]`).
    replace: (match, key, sep) => (/\$\(|`|\$\{/.test(match.slice(key.length + sep.length)) ? match : `${key}${sep}${MASK}`),
  },
  // vendor key formats, anywhere: OpenAI/Anthropic/Stripe-style sk-/rk-, GitHub, Slack, AWS, Google, npm, webhooks, JWTs
  // (a key has a digit somewhere; checked on the match, as a lookahead would rescan the rest at every start)
  { pattern: /(?<![A-Za-z0-9])(?:sk|rk|pk)[-_][A-Za-z0-9_-]{12,}/g, replace: (match) => (/\d/.test(match) ? MASK : match) },
  { pattern: /(?<![A-Za-z0-9])(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})/g, replace: () => MASK },
  { pattern: /(?<![A-Za-z0-9])xox[abposr]-[A-Za-z0-9-]{10,}/g, replace: () => MASK },
  { pattern: /(?<![A-Za-z0-9])(?:AKIA|ASIA)[0-9A-Z]{16}(?![A-Za-z0-9])/g, replace: () => MASK },
  { pattern: /(?<![A-Za-z0-9])AIza[0-9A-Za-z_-]{35}/g, replace: () => MASK },
  { pattern: /(?<![A-Za-z0-9])npm_[A-Za-z0-9]{36}/g, replace: () => MASK },
  { pattern: /(?<![A-Za-z0-9])whsec_[A-Za-z0-9+/=]{16,}/g, replace: () => MASK },
  { pattern: /(?<![A-Za-z0-9])eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*/g, replace: () => MASK },
];

/** Strings longer than this are not parsed as embedded JSON (text rules still apply). */
const MAX_EMBEDDED_JSON_CHARS = 1_000_000;

/** Masks secret-shaped parts of one string, including JSON embedded in it. */
export function maskText(text: string): string {
  const trimmed = text.trim();
  if ((trimmed.startsWith("{") || trimmed.startsWith("[")) && trimmed.length <= MAX_EMBEDDED_JSON_CHARS) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(trimmed);
    } catch {
      parsed = undefined;
    }
    if (parsed !== undefined && typeof parsed === "object" && parsed !== null) {
      const masked = maskSecrets(parsed);
      try {
        const before = JSON.stringify(parsed);
        const after = JSON.stringify(masked);
        return before === after ? text : after;
      } catch {
        // too deep for JSON.stringify: fall through to the text rules
      }
    }
  }
  let out = text;
  for (const rule of TEXT_RULES) out = out.replace(rule.pattern, rule.replace as (substring: string, ...args: string[]) => string);
  return out;
}

/**
 * The one masking function (issue 9 item 7, issue 11): a copy of a value safe to show a person or a third party —
 * the CLI, logs, notifications, evaluator requests, Inngest events. Masks values under credential key names (whole
 * words, see `isSecretKey`) and secret-shaped text anywhere in strings (bearer tokens, `sk-…`/`ghp_…`-style keys,
 * JWTs, PEM private keys, passwords in URLs, `password: …`/`PASSWORD=…`, JSON inside strings). IBANs, amounts and
 * look-alike keys stay readable. The ledger keeps the original (it is 0600 and is the evidence).
 *
 * Iterative, so values nested thousands deep (an old ledger's) cannot overflow the stack. `key` names the value's
 * own key when it is a member of something (`config get risk.evaluators.0.apiKey`).
 */
export function maskSecrets(value: unknown, key = ""): unknown {
  // Walked by `walkJson`, one frame per open object or array: memory follows the depth, not the number of values (a
  // task and a closure per value made the HELD line of a call with 30 million numbers exhaust the heap, issue 10).
  // The context is the copy being filled and whether its items sit under a credential key.
  let result: unknown;
  walkJson<{ out: Record<string, unknown>; secretKey: boolean }, never>(value, { out: {}, secretKey: isSecretKey(key) }, (current, parent, name, index) => {
    const secretKey = name === undefined ? parent.secretKey : isSecretKey(name);
    let copy: unknown;
    let into: { out: Record<string, unknown>; secretKey: boolean } | undefined;
    if (Array.isArray(current)) {
      copy = new Array<unknown>(current.length);
      into = { out: copy as unknown as Record<string, unknown>, secretKey };
    } else if (current !== null && typeof current === "object") {
      const out: Record<string, unknown> = {};
      // defined in order first, and as own data properties: a `__proto__` key stays a key
      for (const member of Object.keys(current)) Object.defineProperty(out, member, { value: undefined, enumerable: true, writable: true, configurable: true });
      copy = out;
      into = { out, secretKey };
    } else if (secretKey && (typeof current === "string" || typeof current === "number" || typeof current === "bigint")) copy = MASK;
    else copy = typeof current === "string" ? maskText(current) : current;
    if (index < 0) result = copy;
    else if (name === undefined) (parent.out as unknown as unknown[])[index] = copy;
    else parent.out[name] = copy;
    return into && { into };
  });
  return result;
}
