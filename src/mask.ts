const SECRET_KEY = /pass(word|phrase)?|secret|token|api[-_]?key|authori[sz]ation|credential|private[-_]?key|cookie|session|iban|bank[-_]?account|card[-_]?number|cvv|cvc|ssn|pin$/i;
const SECRET_VALUE = /^(sk|pk|rk)[-_][A-Za-z0-9_-]{12,}$|^(ghp|gho|ghs|ghu|github_pat)_[A-Za-z0-9_]{16,}$|^xox[abposr]-[A-Za-z0-9-]{10,}$|^AKIA[0-9A-Z]{16}$|^Bearer\s+\S{8,}$|^whsec_[A-Za-z0-9+/=]{16,}$|^eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\./;

/**
 * A copy of tool arguments safe to show a human or a third party: values under secret-looking keys, and values that
 * look like credentials, become `[masked]`. The ledger keeps the original (it is 0600 and is the evidence).
 */
export function maskSecrets(value: unknown, key = ""): unknown {
  if (key && SECRET_KEY.test(key) && value !== null && typeof value !== "object") return "[masked]";
  if (typeof value === "string") return SECRET_VALUE.test(value.trim()) ? "[masked]" : value;
  if (Array.isArray(value)) return value.map((item) => maskSecrets(item));
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, maskSecrets(v, k)]));
  }
  return value;
}
