/**
 * The policy language: rules that match a tool call on its upstream, tool name, annotations and arguments, and set a
 * score or force a route. Pure: compiled once from config, evaluated per call without I/O.
 *
 * Precedence (independent of rule order): `deny` beats `review` beats `allow` beats scores; among score rules the
 * highest score wins. Every matching rule is reported, in config order.
 */

/** What a rule does when it matches: force a route, or set a score 0-100. */
export type RuleEffect = "allow" | "deny" | "review" | number;

/** Operators on one argument value. Several in one condition must all hold (`{ "gte": 10, "lt": 100 }`). */
export interface ArgCondition {
  equals?: unknown;
  in?: unknown[];
  notIn?: unknown[];
  /** A JavaScript regular expression, `pattern` or `/pattern/flags`; tested against string values only. */
  regex?: string;
  gt?: number;
  gte?: number;
  lt?: number;
  lte?: number;
  exists?: boolean;
}

export interface AnnotationHints {
  readOnlyHint?: boolean;
  destructiveHint?: boolean;
  idempotentHint?: boolean;
  openWorldHint?: boolean;
}

export interface PolicyRule {
  /** Shown in assessments, `pending`, `show` and the ledger; defaults to `rules[<index>]`. */
  id?: string;
  /** Upstream name or glob (`*`, `?`), or a list of them. */
  upstream?: string | string[];
  /** Tool name or glob, or a list: tested against the exposed name, `upstream__tool` and the upstream's own name. */
  tool?: string | string[];
  /** Every listed hint must equal the tool's declared value (an undeclared hint matches nothing). */
  annotations?: AnnotationHints;
  /** JSON path -> condition; all must hold. */
  args?: Record<string, ArgCondition>;
  effect: RuleEffect;
  /** Why the rule exists; shown to reviewers and, for `deny`, to the agent. */
  reason?: string;
  /**
   * The two-person rule (EU AI Act Art. 14(5)): a call this rule matches that is held for review runs only after this
   * many distinct reviewers approve it (any denial denies). Default 1.
   */
  approvals?: number;
  /** Resource URI or glob: a rule for `resources/read` (see `readPolicy.ts`), never for tool calls. */
  resource?: string | string[];
  /** Prompt name or glob: a rule for `prompts/get` (see `readPolicy.ts`), never for tool calls. */
  prompt?: string | string[];
}

export interface PolicySource {
  rules?: PolicyRule[];
  /** The older form: tool name or glob -> score. The most specific match (exact, then longest glob) applies. */
  overrides?: Record<string, number>;
}

/** The call facts a policy can match on. */
export interface PolicyCall {
  upstream: string;
  tool: string;
  /** The exposed name (`upstream__tool` with several upstreams). */
  name: string;
  args: Record<string, unknown>;
  annotations?: AnnotationHints;
}

export interface FiredRule {
  id: string;
  effect: RuleEffect;
  /** The rule's `reason`, or a description of what matched. */
  reason: string;
  /** Distinct approvals a held call needs, when the rule asks for more than one. */
  approvals?: number;
}

export type Verdict = "allow" | "review" | "deny";

export interface PolicyResult {
  /** Every matching rule, in config order (the override, if any, last). */
  fired: FiredRule[];
  /** The strongest route forced by a rule: deny > review > allow. */
  verdict?: Verdict;
  /** The highest score set by a score rule, if one matched. */
  score?: number;
}

// ---------------------------------------------------------------------------------------------------------------
// JSON paths: `$.a.b`, `a.b`, `items[0].price`, `items[*].price`, `items.*.price`, `["key.with.dots"]`

export type PathSegment = { key: string } | { index: number } | { any: true };

/** Parses a JSON path; throws an Error naming the problem. A leading `$` or `$.` is optional. */
export function parseJsonPath(input: string): PathSegment[] {
  if (input === "") throw new Error("empty path");
  const segments: PathSegment[] = [];
  let path = input;
  let i = 0;
  if (path.startsWith("$")) i = 1;
  else if (path[0] !== "[" && path[0] !== ".") path = `.${path}`;
  while (i < path.length) {
    const char = path[i];
    if (char === ".") {
      i += 1;
      if (path[i] === "*") {
        segments.push({ any: true });
        i += 1;
        continue;
      }
      const start = i;
      while (i < path.length && path[i] !== "." && path[i] !== "[") i += 1;
      const key = path.slice(start, i);
      if (!key) throw new Error(`empty key at position ${start}`);
      if (key.includes("]")) throw new Error(`unexpected ']' in '${key}'`);
      segments.push({ key });
    } else if (char === "[") {
      const close = path[i + 1] === '"' || path[i + 1] === "'" ? findQuotedClose(path, i + 1) : path.indexOf("]", i);
      if (close === -1) throw new Error(`unclosed '[' at position ${i}`);
      const inner = path.slice(i + 1, close);
      if (inner === "*") segments.push({ any: true });
      else if (/^\d+$/.test(inner)) segments.push({ index: Number(inner) });
      else if (/^(["']).*\1$/s.test(inner)) segments.push({ key: inner.slice(1, -1).replace(/\\(["'\\])/g, "$1") });
      else throw new Error(`'[${inner}]' must be an index, * or a quoted key`);
      i = close + 1;
    } else {
      throw new Error(`expected '.' or '[' at position ${i}`);
    }
  }
  return segments;
}

function findQuotedClose(path: string, quoteAt: number): number {
  const quote = path[quoteAt];
  for (let i = quoteAt + 1; i < path.length; i++) {
    if (path[i] === "\\") i += 1;
    else if (path[i] === quote) return path[i + 1] === "]" ? i + 1 : -1;
  }
  return -1;
}

/** Every value a path reaches (several through `*`); none when it leads nowhere. Own properties only. */
export function resolveJsonPath(root: unknown, segments: PathSegment[]): unknown[] {
  let current: unknown[] = [root];
  for (const segment of segments) {
    const next: unknown[] = [];
    for (const value of current) {
      if (value === null || typeof value !== "object") continue;
      if ("any" in segment) {
        next.push(...(Array.isArray(value) ? value : Object.values(value)));
      } else if ("index" in segment) {
        if (Array.isArray(value) && segment.index < value.length) next.push(value[segment.index]);
      } else if (Array.isArray(value)) {
        if (/^\d+$/.test(segment.key) && Number(segment.key) < value.length) next.push(value[Number(segment.key)]);
      } else if (Object.hasOwn(value, segment.key)) {
        next.push((value as Record<string, unknown>)[segment.key]);
      }
    }
    current = next;
    if (current.length === 0) break;
  }
  return current.filter((value) => value !== undefined);
}

// ---------------------------------------------------------------------------------------------------------------
// Conditions

/** `pattern` or `/pattern/flags` -> RegExp; throws on a bad pattern or a stateful flag (g, y). */
export function compileRegex(source: string): RegExp {
  const literal = /^\/(.*)\/([a-z]*)$/s.exec(source);
  const [pattern, flags] = literal ? [literal[1]!, literal[2]!] : [source, ""];
  if (/[gy]/.test(flags)) throw new Error(`flag '${flags.match(/[gy]/)![0]}' is not allowed (matching must not depend on earlier matches)`);
  return new RegExp(pattern, flags);
}

/** Numbers, and strings that are plainly numbers ("1500.00"): amounts often arrive as strings. */
function toNumber(value: unknown): number | undefined {
  if (typeof value === "number") return Number.isFinite(value) ? value : undefined;
  if (typeof value === "string" && /^\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*$/.test(value)) return Number(value);
  return undefined;
}

export function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) {
    const other = b as unknown[];
    return a.length === other.length && a.every((item, i) => deepEqual(item, other[i]));
  }
  const keysA = Object.keys(a);
  const keysB = Object.keys(b);
  return keysA.length === keysB.length && keysA.every((key) => Object.hasOwn(b, key) && deepEqual((a as Record<string, unknown>)[key], (b as Record<string, unknown>)[key]));
}

type ValueTest = (value: unknown) => boolean;

interface CompiledCondition {
  path: string;
  segments: PathSegment[];
  exists?: boolean;
  /** All must hold for one reached value. */
  tests: ValueTest[];
  describe: string;
}

function compileCondition(path: string, condition: ArgCondition): CompiledCondition {
  const tests: ValueTest[] = [];
  const parts: string[] = [];
  const show = (value: unknown) => JSON.stringify(value);
  if (condition.equals !== undefined) {
    const expected = condition.equals;
    tests.push((value) => deepEqual(value, expected));
    parts.push(`= ${show(expected)}`);
  }
  if (condition.in !== undefined) {
    const list = condition.in;
    tests.push((value) => list.some((item) => deepEqual(value, item)));
    parts.push(`in ${show(list)}`);
  }
  if (condition.notIn !== undefined) {
    const list = condition.notIn;
    tests.push((value) => !list.some((item) => deepEqual(value, item)));
    parts.push(`not in ${show(list)}`);
  }
  if (condition.regex !== undefined) {
    const regex = compileRegex(condition.regex);
    tests.push((value) => typeof value === "string" && regex.test(value));
    parts.push(`matches ${regex}`);
  }
  const numeric: [keyof ArgCondition, string, (a: number, b: number) => boolean][] = [
    ["gt", ">", (a, b) => a > b],
    ["gte", ">=", (a, b) => a >= b],
    ["lt", "<", (a, b) => a < b],
    ["lte", "<=", (a, b) => a <= b],
  ];
  for (const [key, symbol, compare] of numeric) {
    const bound = condition[key];
    if (typeof bound !== "number") continue;
    tests.push((value) => {
      const number = toNumber(value);
      return number !== undefined && compare(number, bound);
    });
    parts.push(`${symbol} ${bound}`);
  }
  if (condition.exists !== undefined) parts.push(condition.exists ? "exists" : "is absent");
  return {
    path,
    segments: parseJsonPath(path),
    ...(condition.exists !== undefined ? { exists: condition.exists } : {}),
    tests,
    describe: `${path.startsWith("$") ? path : `$.${path}`} ${parts.join(" and ")}`,
  };
}

/**
 * A condition holds when its path reaches a value that passes every operator (through `*`, any one value will do);
 * `exists: true` needs a value to be there, `exists: false` needs none. A missing argument matches nothing but
 * `exists: false`.
 */
function conditionHolds(condition: CompiledCondition, args: Record<string, unknown>): boolean {
  const values = resolveJsonPath(args, condition.segments);
  if (condition.exists === false) return values.length === 0;
  if (condition.exists === true && values.length === 0) return false;
  if (condition.tests.length === 0) return true;
  return values.some((value) => condition.tests.every((test) => test(value)));
}

// ---------------------------------------------------------------------------------------------------------------
// Rules

/** `*` matches any run of characters, `?` one; everything else is literal. */
export function globToRegExp(glob: string): RegExp {
  const body = glob.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".");
  return new RegExp(`^${body}$`);
}

const isGlob = (pattern: string) => /[*?]/.test(pattern);
const asList = (value: string | string[] | undefined) => (value === undefined ? undefined : Array.isArray(value) ? value : [value]);

interface CompiledRule {
  index: number;
  id: string;
  effect: RuleEffect;
  reason: string;
  approvals?: number;
  upstream?: (name: string) => boolean;
  /** Glob tool patterns; exact ones are indexed by name instead. */
  toolGlobs?: RegExp[];
  /** Per glob, its longest literal run: a name without it cannot match (a cheap test before the regex). */
  toolLiterals?: string[];
  annotations?: [keyof AnnotationHints, boolean][];
  conditions: CompiledCondition[];
}

export interface CompiledPolicy {
  readonly size: number;
  evaluate(call: PolicyCall): PolicyResult;
}

function matcherFor(patterns: string[]): (name: string) => boolean {
  const exact = new Set(patterns.filter((pattern) => !isGlob(pattern)));
  const globs = patterns.filter(isGlob).map(globToRegExp);
  return (name) => exact.has(name) || globs.some((glob) => glob.test(name));
}

function describeRule(rule: PolicyRule, conditions: CompiledCondition[]): string {
  const parts: string[] = [];
  const upstreams = asList(rule.upstream);
  const tools = asList(rule.tool);
  if (upstreams) parts.push(`upstream ${upstreams.join("|")}`);
  if (tools) parts.push(`tool ${tools.join("|")}`);
  for (const [hint, value] of Object.entries(rule.annotations ?? {})) parts.push(`${hint} ${String(value)}`);
  parts.push(...conditions.map((condition) => condition.describe));
  return parts.length ? parts.join(", ") : "every call";
}

const VERDICT_RANK: Record<Verdict, number> = { allow: 1, review: 2, deny: 3 };

/**
 * Patterns -> rules, looked up by name without testing every pattern: exact names in a map, globs by the literal
 * text before their first wildcard (`svc_*`) or, failing that, after their last (`*_delete`). Only globs with
 * neither (`*`, `*pay*`) are tested on every lookup.
 */
class PatternIndex {
  private readonly exact = new Map<string, CompiledRule[]>();
  private readonly prefixes = new Map<string, CompiledRule[]>();
  private readonly suffixes = new Map<string, CompiledRule[]>();
  private prefixLengths: number[] = [];
  private suffixLengths: number[] = [];
  /** Rules with a pattern the maps cannot hold, in rule order. */
  readonly unindexed: CompiledRule[] = [];

  add(pattern: string, rule: CompiledRule): void {
    if (!isGlob(pattern)) return PatternIndex.push(this.exact, pattern, rule);
    const prefix = pattern.slice(0, pattern.search(/[*?]/));
    const suffix = pattern.slice(Math.max(pattern.lastIndexOf("*"), pattern.lastIndexOf("?")) + 1);
    if (prefix) PatternIndex.push(this.prefixes, prefix, rule);
    else if (suffix) PatternIndex.push(this.suffixes, suffix, rule);
    else if (this.unindexed[this.unindexed.length - 1] !== rule) this.unindexed.push(rule);
  }

  /** Call once all patterns are added. */
  seal(): void {
    const lengths = (map: Map<string, unknown>) => [...new Set([...map.keys()].map((key) => key.length))].sort((a, b) => a - b);
    this.prefixLengths = lengths(this.prefixes);
    this.suffixLengths = lengths(this.suffixes);
  }

  /** Visits the rules whose patterns may match one of `names` (`exact` when an exact pattern did). */
  lookup(names: readonly string[], visit: (rule: CompiledRule, exact: boolean) => void): void {
    for (const name of names) for (const rule of this.exact.get(name) ?? []) visit(rule, true);
    for (const name of names) {
      for (const length of this.prefixLengths) {
        if (length > name.length) break;
        for (const rule of this.prefixes.get(name.slice(0, length)) ?? []) visit(rule, false);
      }
      for (const length of this.suffixLengths) {
        if (length > name.length) break;
        for (const rule of this.suffixes.get(name.slice(name.length - length)) ?? []) visit(rule, false);
      }
    }
  }

  private static push(map: Map<string, CompiledRule[]>, key: string, rule: CompiledRule): void {
    const list = map.get(key);
    if (!list) map.set(key, [rule]);
    else if (list[list.length - 1] !== rule) list.push(rule);
  }
}

/**
 * Compiles rules (and the legacy `overrides` table) once. A rule is indexed by its tool patterns, or — when it names
 * no tool — by its upstream patterns, so a call only tests the rules that can concern it: 1,000 rules cost little more
 * than a handful (see bench/rules.js). Throws on an invalid path or regex (config validation reports those earlier,
 * with their config path).
 */
export function compilePolicy(source: PolicySource): CompiledPolicy {
  const rules = source.rules ?? [];
  const byTool = new PatternIndex();
  const byUpstream = new PatternIndex();
  const always: CompiledRule[] = [];
  rules.forEach((rule, index) => {
    if (rule.resource !== undefined || rule.prompt !== undefined) return; // governs reads, not tool calls
    const conditions = Object.entries(rule.args ?? {}).map(([path, condition]) => compileCondition(path, condition));
    const tools = asList(rule.tool);
    const upstreams = asList(rule.upstream);
    const compiled: CompiledRule = {
      index,
      id: rule.id ?? `rules[${index}]`,
      effect: rule.effect,
      reason: rule.reason ?? describeRule(rule, conditions),
      ...(rule.approvals !== undefined && rule.approvals > 1 ? { approvals: rule.approvals } : {}),
      ...(upstreams ? { upstream: matcherFor(upstreams) } : {}),
      ...(tools && tools.some(isGlob)
        ? { toolGlobs: tools.filter(isGlob).map(globToRegExp), toolLiterals: tools.filter(isGlob).map((glob) => glob.split(/[*?]/).reduce((a, b) => (b.length > a.length ? b : a), "")) }
        : {}),
      ...(rule.annotations ? { annotations: Object.entries(rule.annotations) as [keyof AnnotationHints, boolean][] } : {}),
      conditions,
    };
    if (tools) for (const pattern of tools) byTool.add(pattern, compiled);
    else if (upstreams) for (const pattern of upstreams) byUpstream.add(pattern, compiled);
    else always.push(compiled);
  });
  byTool.seal();
  byUpstream.seal();
  // Rules tested on every call, in rule order: merged with the (few) indexed candidates without a full sort.
  const everyCall = [...byTool.unindexed, ...byUpstream.unindexed, ...always].sort((a, b) => a.index - b.index);

  const findOverride = compileOverrides(source.overrides ?? {});

  /** `exactHit`: reached through an exact tool name, so its tool constraint already holds. */
  const matches = (rule: CompiledRule, call: PolicyCall, names: string[], exactHit: boolean): boolean => {
    if (rule.upstream && !rule.upstream(call.upstream)) return false;
    if (rule.toolGlobs && !exactHit && !names.some((name) => rule.toolGlobs!.some((glob, k) => name.includes(rule.toolLiterals![k]!) && glob.test(name)))) return false;
    if (rule.annotations) {
      for (const [hint, expected] of rule.annotations) if (call.annotations?.[hint] !== expected) return false;
    }
    for (const condition of rule.conditions) if (!conditionHolds(condition, call.args)) return false;
    return true;
  };

  return {
    size: rules.length,
    evaluate(call) {
      const names = call.name === call.tool ? [call.name, `${call.upstream}__${call.tool}`] : [call.name, `${call.upstream}__${call.tool}`, call.tool];
      const indexed = new Map<CompiledRule, boolean>();
      const visit = (rule: CompiledRule, exact: boolean) => {
        if (exact || !indexed.has(rule)) indexed.set(rule, exact);
      };
      byTool.lookup(names, visit);
      byUpstream.lookup([call.upstream], (rule) => visit(rule, false));
      const found = [...indexed.keys()].sort((a, b) => a.index - b.index);

      const fired: FiredRule[] = [];
      let verdict: Verdict | undefined;
      let score: number | undefined;
      const consider = (rule: CompiledRule, exact: boolean) => {
        if (!matches(rule, call, names, exact)) return;
        fired.push({ id: rule.id, effect: rule.effect, reason: rule.reason, ...(rule.approvals ? { approvals: rule.approvals } : {}) });
        if (typeof rule.effect === "number") score = Math.max(score ?? 0, rule.effect);
        else if (!verdict || VERDICT_RANK[rule.effect] > VERDICT_RANK[verdict]) verdict = rule.effect;
      };
      // merge two lists sorted by rule index; a rule in both (an exact name and a `*`) is considered once
      for (let i = 0, j = 0; i < found.length || j < everyCall.length; ) {
        const a = found[i];
        const b = everyCall[j];
        if (a && (!b || a.index <= b.index)) {
          consider(a, indexed.get(a)!);
          i += 1;
          if (a === b) j += 1;
        } else {
          consider(b!, false);
          j += 1;
        }
      }
      const override = findOverride(names);
      if (override) {
        fired.push({ id: `overrides["${override.pattern}"]`, effect: override.score, reason: `policy override '${override.pattern}' sets score ${override.score}` });
        score = Math.max(score ?? 0, override.score);
      }
      return { fired, ...(verdict ? { verdict } : {}), ...(score !== undefined ? { score } : {}) };
    },
  };
}

/** The legacy override table: exact beats glob; the longest matching glob wins. */
function compileOverrides(overrides: Record<string, number>): (names: string[]) => { pattern: string; score: number } | undefined {
  const exact = new Map<string, number>();
  const globs: { pattern: string; regexp: RegExp; score: number }[] = [];
  for (const [pattern, score] of Object.entries(overrides)) {
    if (isGlob(pattern)) globs.push({ pattern, regexp: globToRegExp(pattern), score });
    else exact.set(pattern, score);
  }
  globs.sort((a, b) => b.pattern.length - a.pattern.length);
  return (names) => {
    for (const name of names) {
      const score = exact.get(name);
      if (score !== undefined) return { pattern: name, score };
    }
    for (const glob of globs) if (names.some((name) => glob.regexp.test(name))) return { pattern: glob.pattern, score: glob.score };
    return undefined;
  };
}
