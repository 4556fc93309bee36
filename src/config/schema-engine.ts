/**
 * The one schema engine: the config file, device profiles and Modbus register maps are
 * each a tree of nodes built here, checked by {@link resolveNode}, and typed by
 * {@link Infer}. Every problem names its path (`decoder.registers[2].address`); unknown
 * keys and wrong types are errors everywhere. How nodes read values: docs/config.md.
 */
import * as path from "node:path";
import { formatDuration, isBareNumber, parseDuration, parseSize } from "./units.js";

/** A rule on a string beyond "non-empty"; `mask` hides its secret part when printed. */
export interface StringRule {
  readonly expected: string;
  readonly test: (s: string) => boolean;
  readonly mask?: (s: string) => string;
}

/** What a default may depend on (the machine's host name). */
export type Defaults = { readonly hostname: string };

interface Common {
  /** In the file's form (`"10s"`, `"1MB"`), so it goes through the same parser as input. */
  readonly default?: unknown;
  readonly nullable?: boolean;
  readonly secret?: boolean;
  /** Absent is a problem: `expected <required>, got nothing`. */
  readonly required?: string;
  /** Replaces the kind's own wording in problems (`3 (holding registers) or 4 (...)`). */
  readonly expected?: string;
}

/** A node as the engine walks it; {@link Node} adds the value's type for {@link Infer}. */
export type Def = Common &
  (
    | { readonly kind: "string"; readonly rule?: StringRule }
    | { readonly kind: "int"; readonly min: number; readonly max: number }
    | { readonly kind: "number"; readonly above?: number }
    | { readonly kind: "bool" }
    | { readonly kind: "enum"; readonly values: readonly (string | number)[] }
    | {
        readonly kind: "duration";
        readonly min?: number;
        readonly max?: number;
        /** A bare number is refused (it meant milliseconds here once): write `250ms`. */
        readonly unitRequired?: boolean;
      }
    | { readonly kind: "size"; readonly min: number; readonly max: number }
    | { readonly kind: "path" }
    | { readonly kind: "list"; readonly of: Def; readonly minItems?: number }
    | {
        /** A mapping of names the file chooses (`accounts.<name>`), each key passing `keys`. */
        readonly kind: "map";
        readonly keys: StringRule;
        readonly of: Def;
      }
    | {
        readonly kind: "object";
        readonly fields: Readonly<Record<string, Def>>;
        /** Absent stays absent instead of becoming an object of defaults. */
        readonly optional?: boolean;
      }
    | {
        /** A string, or a mapping that says more (an entry with a short form). */
        readonly kind: "either";
        readonly string: Extract<Def, { kind: "string" }>;
        readonly object: Extract<Def, { kind: "object" }>;
      }
    | {
        readonly kind: "union";
        /** The key whose value picks the variant (`type`). */
        readonly key: string;
        readonly variants: Readonly<Record<string, Extract<Def, { kind: "object" }>>>;
      }
  );

declare const INFER: unique symbol;
/** A node whose resolved value is a `T`, always present when `P` is true. */
export type Node<T = unknown, P extends boolean = boolean, D extends Def = Def> = D & {
  readonly [INFER]?: [T, P];
};
type ObjectDef = Extract<Def, { kind: "object" }>;
/** The resolved value type of a node. */
export type Infer<N> = N extends { readonly [INFER]?: [infer T, boolean] } ? T : unknown;
type PresentOf<N> = N extends { readonly [INFER]?: [unknown, infer P] } ? P : false;
type Flat<T> = { [K in keyof T]: T[K] } & {};
type Shape<F> = Flat<
  { readonly [K in keyof F as PresentOf<F[K]> extends true ? K : never]: Infer<F[K]> } & {
    readonly [K in keyof F as PresentOf<F[K]> extends true ? never : K]?: Infer<F[K]>;
  }
>;
/** Present when it has a default or is required. */
type Has<O> = O extends { default: infer D } ? ([D] extends [undefined] ? Req<O> : true) : Req<O>;
type Req<O> = O extends { required: string } ? true : false;
type Opts = Omit<Common, "nullable">;

export const str = <O extends Opts & { rule?: StringRule }>(o: O = {} as O) =>
  ({ kind: "string", ...o }) as Node<string, Has<O>>;
export const int = <O extends Opts>(min: number, max: number, o: O = {} as O) =>
  ({ kind: "int", min, max, ...o }) as Node<number, Has<O>>;
export const num = <O extends Opts & { above?: number }>(o: O = {} as O) =>
  ({ kind: "number", ...o }) as Node<number, Has<O>>;
export const bool = <O extends Opts>(o: O = {} as O) =>
  ({ kind: "bool", ...o }) as Node<boolean, Has<O>>;
export const oneOf = <const V extends readonly (string | number)[], O extends Opts>(
  values: V,
  o: O = {} as O,
) => ({ kind: "enum", values, ...o }) as Node<V[number], Has<O>>;
export const duration = <O extends Opts & { min?: number; max?: number; unitRequired?: boolean }>(
  o: O = {} as O,
) => ({ kind: "duration", ...o }) as Node<number, Has<O>>;
export const size = <O extends Opts>(min: number, max: number, o: O = {} as O) =>
  ({ kind: "size", min, max, ...o }) as Node<number, Has<O>>;
export const filePath = <O extends Opts>(o: O = {} as O) =>
  ({ kind: "path", ...o }) as Node<string, Has<O>>;
export const list = <N extends Def, O extends Opts & { minItems?: number }>(
  of: N,
  o: O = {} as O,
) => ({ kind: "list", of, ...o }) as Node<readonly Infer<N>[], Has<O>>;
/** A mapping from names the file chooses, each passing `keys`, to `of`s; `{}` by default. */
export const mapOf = <N extends Def, O extends Opts>(keys: StringRule, of: N, o: O = {} as O) =>
  ({ kind: "map", keys, of, default: {}, ...o }) as Node<Readonly<Record<string, Infer<N>>>, true>;
/** A mapping of known keys; absent, it is all defaults. */
export const obj = <F extends Readonly<Record<string, Def>>>(fields: F) =>
  ({ kind: "object", fields }) as Node<Shape<F>, true, ObjectDef>;
/** A mapping that stays absent when absent. */
export const optionalObj = <F extends Readonly<Record<string, Def>>>(fields: F) =>
  ({ kind: "object", fields, optional: true }) as Node<Shape<F>, false, ObjectDef>;
/** One of several mappings, told apart by the value of `key`. */
export const union = <
  K extends string,
  V extends Readonly<Record<string, ObjectDef>>,
  O extends Opts,
>(
  key: K,
  variants: V,
  o: O = {} as O,
) =>
  ({ kind: "union", key, variants, ...o }) as Node<
    { [T in Extract<keyof V, string>]: Flat<{ readonly [_ in K]: T } & Infer<V[T]>> }[Extract<
      keyof V,
      string
    >],
    Has<O>
  >;
/** A string (its short form) or a mapping of known keys (its long form). */
export const stringOr = <M extends Node<unknown, boolean, ObjectDef>, O extends Opts>(
  string: Node<string, boolean>,
  object: M,
  o: O = {} as O,
) => ({ kind: "either", string, object, ...o }) as Node<string | Infer<M>, Has<O>>;
/** `null` is a value of its own (usually "use the fallback"), and the default. */
export const nullable = <T, D extends Def>(node: Node<T, boolean, D>) =>
  ({ ...node, nullable: true, default: null }) as Node<T | null, true, D>;

/** How resolution reports and places things; the loader knows where each value came from. */
export interface ResolveContext {
  readonly defaults: Defaults;
  readonly problems: string[];
  /** The name a problem at `at` is reported under (a path, or the env variable that set it). */
  readonly label: (at: string) => string;
  /** The directory a relative path at `at` is resolved against. */
  readonly baseDir: (at: string, fromDefault: boolean) => string;
}

export function isMapping(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

export const join = (at: string, key: string): string => (at === "" ? key : `${at}.${key}`);

function show(v: unknown, node: Def): string {
  if (v === null) return "null";
  if (v === undefined) return "nothing";
  if (Array.isArray(v)) return v.length === 0 ? "an empty list" : "a list";
  if (typeof v === "object") return "a mapping";
  if (node.secret) return `a ${typeof v}`;
  if (typeof v === "string") {
    return JSON.stringify(node.kind === "string" && node.rule?.mask ? node.rule.mask(v) : v);
  }
  return String(v);
}

const EXPECTED: { [K in Def["kind"]]: (node: Extract<Def, { kind: K }>) => string } = {
  string: (n) => n.rule?.expected ?? "a non-empty string",
  int: (n) => `an integer from ${n.min} to ${n.max}`,
  number: (n) => (n.above === undefined ? "a number" : `a number above ${n.above}`),
  bool: () => "true or false",
  enum: (n) => `one of ${n.values.join(", ")}`,
  duration: (n) =>
    n.unitRequired
      ? "a duration with its unit, like 250ms or 1s"
      : "a duration like 250ms, 10s, 5m, 2h, 7d (or a number of seconds)",
  size: () => "a size like 512KiB, 1MB, 1GB (or a number of bytes)",
  path: () => "a path",
  list: () => "a list",
  map: () => "a mapping",
  object: () => "a mapping",
  either: (n) => `${expectedOf(n.string)} or ${expectedOf(n.object)}`,
  union: (n) => `a mapping with ${n.key}: ${Object.keys(n.variants).join(", ")}`,
};
export const expectedOf = (node: Def): string =>
  node.expected ?? (EXPECTED[node.kind] as (n: Def) => string)(node);

function rangeOf(min: number | undefined, max: number | undefined, unit: (n: number) => string) {
  if (min !== undefined && max !== undefined) return `from ${unit(min)} to ${unit(max)}`;
  return min !== undefined ? `of at least ${unit(min)}` : `of at most ${unit(max ?? 0)}`;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      row.push(Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + cost));
    }
    prev = row;
  }
  return prev[b.length]!;
}

/** Suggests the closest key within 2 edits, else lists every allowed key. */
function unknownKey(key: string, allowed: readonly string[]): string {
  const ranked = allowed.map((k) => ({ k, d: editDistance(key, k) })).sort((x, y) => x.d - y.d);
  const best = ranked[0];
  return best && best.d <= 2
    ? `unknown key (did you mean "${best.k}"?)`
    : `unknown key (expected one of ${allowed.join(", ")})`;
}

/**
 * Checks `raw` against `node` and returns the resolved value. Every problem is pushed
 * onto `cx.problems`; the value returned alongside problems is partial.
 * `null` means "not set" except for nullable keys.
 */
export function resolveNode(
  node: Def,
  raw: unknown,
  at: string,
  cx: ResolveContext,
  fromDefault = false,
): unknown {
  if (raw === null && node.nullable) return null;
  const problem = (what: string): undefined => {
    cx.problems.push(`${cx.label(at)}: ${what}`);
    return undefined;
  };
  if (raw === undefined || raw === null) {
    const d = typeof node.default === "function" ? node.default(cx.defaults) : node.default;
    if (d !== undefined) return resolveNode(node, d, at, cx, true);
    if (node.required !== undefined) return problem(`expected ${node.required}, got nothing`);
    return node.kind === "object" && !node.optional
      ? resolveNode(node, {}, at, cx, true)
      : undefined;
  }
  const fail = (expected = expectedOf(node)): undefined =>
    problem(`expected ${expected}, got ${show(raw, node)}`);
  switch (node.kind) {
    case "string": {
      const ok = typeof raw === "string" && raw.length > 0 && (node.rule?.test(raw) ?? true);
      return ok ? raw : fail();
    }
    case "int":
      return typeof raw === "number" && Number.isInteger(raw) && raw >= node.min && raw <= node.max
        ? raw
        : fail();
    case "number":
      return typeof raw === "number" &&
        Number.isFinite(raw) &&
        (node.above === undefined || raw > node.above)
        ? raw
        : fail();
    case "bool":
      return typeof raw === "boolean" ? raw : fail();
    case "enum":
      return (typeof raw === "string" || typeof raw === "number") && node.values.includes(raw)
        ? raw
        : fail();
    case "duration": {
      const ms = parseDuration(raw);
      if (ms === undefined) return fail();
      if (node.unitRequired && isBareNumber(raw)) {
        const n = Number(raw);
        return problem(
          `expected a duration with its unit, like "${n}ms" or "${n}s", got ${n} ` +
            "(a bare number here once meant milliseconds; everywhere else it means seconds)",
        );
      }
      const { min, max } = node;
      if ((min !== undefined && ms < min) || (max !== undefined && ms > max)) {
        return fail(`a duration ${rangeOf(min, max, formatDuration)}`);
      }
      return ms;
    }
    case "size": {
      const bytes = parseSize(raw);
      if (bytes === undefined) return fail();
      if (bytes < node.min || bytes > node.max) {
        return fail(`a size ${rangeOf(node.min, node.max, String)} bytes`);
      }
      return bytes;
    }
    case "path":
      return typeof raw === "string" && raw.length > 0
        ? path.resolve(cx.baseDir(at, fromDefault), raw)
        : fail();
    case "list": {
      if (!Array.isArray(raw)) return fail();
      if (raw.length < (node.minItems ?? 0)) {
        return fail(node.expected ?? `at least ${node.minItems} entry`);
      }
      return raw.map((item: unknown, i) => {
        const itemAt = `${at}[${i}]`;
        if (item !== null && item !== undefined)
          return resolveNode(node.of, item, itemAt, cx, fromDefault);
        cx.problems.push(`${cx.label(itemAt)}: expected ${expectedOf(node.of)}, got null`);
        return undefined;
      });
    }
    case "map": {
      if (!isMapping(raw)) return fail();
      // fromEntries defines each key as its own property, `__proto__` included.
      return Object.fromEntries(
        Object.entries(raw).map(([key, item]) => {
          const itemAt = join(at, key);
          if (!node.keys.test(key)) {
            cx.problems.push(
              `${cx.label(itemAt)}: expected ${node.keys.expected}, got ${JSON.stringify(key)}`,
            );
          }
          // `name:` with nothing after it is that entry with its defaults.
          return [key, resolveNode(node.of, item, itemAt, cx, fromDefault)];
        }),
      );
    }
    case "either":
      if (typeof raw === "string") return resolveNode(node.string, raw, at, cx, fromDefault);
      return isMapping(raw) ? resolveNode(node.object, raw, at, cx, fromDefault) : fail();
    case "union": {
      if (!isMapping(raw)) return fail();
      const tag = raw[node.key];
      const variants = Object.keys(node.variants);
      const variant = typeof tag === "string" ? node.variants[tag] : undefined;
      if (variant === undefined || !Object.hasOwn(node.variants, tag as string)) {
        const got = tag === undefined ? "nothing" : JSON.stringify(tag);
        cx.problems.push(
          `${cx.label(join(at, node.key))}: expected one of ${variants.join(", ")}, got ${got}`,
        );
        return undefined;
      }
      const { [node.key]: _, ...rest } = raw;
      const out = resolveObject(variant.fields, rest, at, cx, fromDefault, [node.key]);
      return { [node.key]: tag, ...out };
    }
    case "object":
      return isMapping(raw) ? resolveObject(node.fields, raw, at, cx, fromDefault) : fail();
  }
}

function resolveObject(
  fields: Readonly<Record<string, Def>>,
  raw: Record<string, unknown>,
  at: string,
  cx: ResolveContext,
  fromDefault: boolean,
  also: readonly string[] = [],
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, child] of Object.entries(fields)) {
    const v = resolveNode(child, raw[key], join(at, key), cx, fromDefault);
    if (v !== undefined) out[key] = v;
  }
  const allowed = [...also, ...Object.keys(fields)];
  for (const key of Object.keys(raw)) {
    if (!Object.hasOwn(fields, key)) {
      cx.problems.push(`${cx.label(join(at, key))}: ${unknownKey(key, allowed)}`);
    }
  }
  return out;
}

/** A value back in the file's shape: durations as `10s`, secrets as `"***"`. */
export function toFileShape(node: Def, v: unknown): unknown {
  if (v === undefined || v === null) return v;
  if (node.secret) return "***";
  switch (node.kind) {
    case "duration":
      return formatDuration(v as number);
    case "string":
      return node.rule?.mask ? node.rule.mask(v as string) : v;
    case "list":
      return (v as readonly unknown[]).map((item) => toFileShape(node.of, item));
    case "map":
      return Object.fromEntries(
        Object.entries(v as Record<string, unknown>).map(([k, x]) => [k, toFileShape(node.of, x)]),
      );
    case "either":
      return toFileShape(typeof v === "string" ? node.string : node.object, v);
    case "union": {
      const tag = (v as Record<string, unknown>)[node.key] as string;
      const variant = node.variants[tag];
      return variant ? { [node.key]: tag, ...(toFileShape(variant, v) as object) } : v;
    }
    case "object": {
      const out: Record<string, unknown> = {};
      for (const [key, child] of Object.entries(node.fields)) {
        const x = toFileShape(child, (v as Record<string, unknown>)[key]);
        if (x !== undefined) out[key] = x;
      }
      return out;
    }
    default:
      return v;
  }
}
