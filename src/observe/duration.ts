/**
 * `12 s`, `3 min 4 s`, `2 h 5 min`, `3 d 4 h`: a duration for a person, in its two largest
 * units (the smaller dropped when 0). Self-contained: the status page ships its source.
 */
export function formatDuration(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  const parts: [number, string][] = [
    [Math.floor(s / 86400), "d"],
    [Math.floor(s / 3600) % 24, "h"],
    [Math.floor(s / 60) % 60, "min"],
    [s % 60, "s"],
  ];
  const first = parts.findIndex(([n]) => n > 0);
  if (first < 0) return "0 s";
  const [big, next] = [parts[first]!, parts[first + 1]];
  return next === undefined || next[0] === 0
    ? `${big[0]} ${big[1]}`
    : `${big[0]} ${big[1]} ${next[0]} ${next[1]}`;
}
