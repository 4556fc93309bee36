import type { Counter, Gauge, Labels, Metrics } from "../core/index.js";

type Kind = "counter" | "gauge";

interface Family {
  readonly name: string;
  readonly help: string;
  readonly kind: Kind;
  readonly values: Map<string, number>;
}

/** Keys of frozen label objects: hot paths pass the same frozen constant every time. */
const FROZEN_KEYS = new WeakMap<Labels, string>();

function labelKey(labels: Labels | undefined): string {
  if (labels === undefined) return "";
  const known = FROZEN_KEYS.get(labels);
  if (known !== undefined) return known;
  const key = computeLabelKey(labels);
  if (Object.isFrozen(labels)) FROZEN_KEYS.set(labels, key);
  return key;
}

function computeLabelKey(labels: Labels): string {
  const keys = Object.keys(labels).sort();
  if (keys.length === 0) return "";
  return keys.map((k) => `${k}="${String(labels[k]).replace(/["\\\n]/g, "_")}"`).join(",");
}

/** In-memory metrics, rendered in the Prometheus text format by `render()`. */
export class MetricsRegistry implements Metrics {
  readonly #families = new Map<string, Family>();

  #family(name: string, help: string, kind: Kind): Family {
    let family = this.#families.get(name);
    if (family === undefined) {
      family = { name, help, kind, values: new Map() };
      this.#families.set(name, family);
    } else if (family.kind !== kind) {
      throw new TypeError(`metric ${name} is already a ${family.kind}`);
    }
    return family;
  }

  counter(name: string, help: string): Counter {
    const { values } = this.#family(name, help, "counter");
    return {
      inc(labels?: Labels, by = 1) {
        const key = labelKey(labels);
        values.set(key, (values.get(key) ?? 0) + by);
      },
    };
  }

  gauge(name: string, help: string): Gauge {
    const { values } = this.#family(name, help, "gauge");
    return {
      set(value: number, labels?: Labels) {
        values.set(labelKey(labels), value);
      },
    };
  }

  /** Current value of one series; 0 when it has never been touched. */
  value(name: string, labels?: Labels): number {
    return this.#families.get(name)?.values.get(labelKey(labels)) ?? 0;
  }

  /**
   * The sum of every series of `name` whose `label` is `value` (`undefined`: series
   * without it), whatever their other labels: e.g. one account's drops over classes.
   */
  sum(name: string, label: string, value: string | undefined): number {
    const want = value === undefined ? undefined : labelKey({ [label]: value });
    let total = 0;
    for (const [key, n] of this.#families.get(name)?.values ?? []) {
      const has = key.split(",").find((pair) => pair.startsWith(`${label}="`));
      if (has === want) total += n;
    }
    return total;
  }

  render(): string {
    const out: string[] = [];
    for (const { name, help, kind, values } of this.#families.values()) {
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${kind}`);
      for (const [key, value] of values) out.push(`${name}${key ? `{${key}}` : ""} ${value}`);
    }
    return `${out.join("\n")}\n`;
  }
}
