import { globToRegExp, type PolicyRule } from "./policy.js";

/** A read the agent asks for: `resources/read` of a URI or `prompts/get` of a name, on one upstream. */
export interface ReadRequest {
  kind: "resource" | "prompt";
  upstream: string;
  /** The URI or prompt name as the upstream knows it. */
  target: string;
  /** The URI or name as the agent sent it (namespaced with several upstreams). */
  exposed: string;
}

export interface ReadVerdict {
  decision: "allow" | "deny";
  /** The rule that decided, when one matched. */
  rule?: { id: string; reason: string };
}

/**
 * Compiles the policy rules that govern reads (issue 10): rules with `resource` (URI glob) or `prompt` (name glob),
 * optionally limited by `upstream`, effect `allow` or `deny`. A read cannot be held, so there is no review: `deny`
 * beats `allow`, and a read no rule matches is allowed. Globs are tested against the upstream's own URI or name and
 * the one the agent sent. Pure.
 */
export function compileReadPolicy(rules: readonly PolicyRule[]): (read: ReadRequest) => ReadVerdict {
  const compiled = rules.flatMap((rule, index) => {
    const patterns = rule.resource ?? rule.prompt;
    if (patterns === undefined || (rule.effect !== "allow" && rule.effect !== "deny")) return [];
    const asList = (value: string | string[]) => (Array.isArray(value) ? value : [value]);
    return [{
      kind: rule.resource !== undefined ? ("resource" as const) : ("prompt" as const),
      id: rule.id ?? `rules[${index}]`,
      effect: rule.effect,
      reason: rule.reason ?? `${rule.resource !== undefined ? "resource" : "prompt"} ${asList(patterns).join(", ")}: ${rule.effect}`,
      targets: asList(patterns).map(globToRegExp),
      upstreams: rule.upstream === undefined ? undefined : asList(rule.upstream).map(globToRegExp),
    }];
  });
  return (read) => {
    let allowed: ReadVerdict | undefined;
    for (const rule of compiled) {
      if (rule.kind !== read.kind) continue;
      if (rule.upstreams && !rule.upstreams.some((glob) => glob.test(read.upstream))) continue;
      if (!rule.targets.some((glob) => glob.test(read.target) || glob.test(read.exposed))) continue;
      if (rule.effect === "deny") return { decision: "deny", rule: { id: rule.id, reason: rule.reason } };
      allowed ??= { decision: "allow", rule: { id: rule.id, reason: rule.reason } };
    }
    return allowed ?? { decision: "allow" };
  };
}
