/**
 * Maps hub subjects matching pattern `from` onto local pattern `to`, which has the same
 * wildcards in the same order (the config checks it): the hub tokens each wildcard of
 * `from` matched fill the same wildcard of `to`, a `*` one token, a `>` the rest.
 *
 *   from `cmd.gw1.devices.>`, to `devices.>`: `cmd.gw1.devices.air-1.cmd.read` → `devices.air-1.cmd.read`
 *   from `cmd.*.set`, to `local.*.cfg`:        `cmd.lamp.set` → `local.lamp.cfg`
 *
 * Identical patterns map a subject to itself. A subject `from` does not match maps to
 * undefined (the hub delivers only matching subjects; this guards the rule).
 */
export function subjectMap(from: string, to: string): (subject: string) => string | undefined {
  if (from === to) return (subject) => subject;
  const pattern = from.split(".");
  const target = to.split(".");
  return (subject) => {
    const tokens = subject.split(".");
    const captured: string[] = [];
    for (let i = 0; i < pattern.length; i++) {
      const p = pattern[i]!;
      if (p === ">") {
        if (tokens.length <= i) return undefined;
        captured.push(tokens.slice(i).join("."));
        break;
      }
      const t = tokens[i];
      if (t === undefined || (p !== "*" && p !== t)) return undefined;
      if (p === "*") captured.push(t);
      if (i === pattern.length - 1 && tokens.length !== pattern.length) return undefined;
    }
    let next = 0;
    return target.map((t) => (t === "*" || t === ">" ? captured[next++]! : t)).join(".");
  };
}
