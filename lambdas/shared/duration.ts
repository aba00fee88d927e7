/** Seconds in one of a duration's units. */
export const DURATION_UNIT_SECONDS: Readonly<Record<string, number>> = { s: 1, m: 60, h: 3600, d: 86400 };

/**
 * A duration such as `90s`, `30m`, `2h`, `1d` or `1h30m`, in seconds; undefined when the text is not
 * one (no unit, a sign, a decimal, a space). The one grammar of the killswitch's --expires and of
 * recover's relative --to-time ("5m ago").
 */
export function durationSeconds(text: string): number | undefined {
  const trimmed = text.trim();
  const pattern = /(\d+)([smhd])/gy;
  let seconds = 0;
  let consumed = 0;
  for (let match = pattern.exec(trimmed); match; match = pattern.exec(trimmed)) {
    seconds += Number(match[1]) * DURATION_UNIT_SECONDS[match[2]];
    consumed = pattern.lastIndex;
  }
  return trimmed === '' || consumed !== trimmed.length ? undefined : seconds;
}

/**
 * A number and a unit word as people type a duration (`5 min`, `90 minutes`, `2 hours`, `1 day`,
 * `2H`), written in durationSeconds' grammar (`5m`, `90m`, `2h`, `1d`, `2h`); undefined for any
 * other text. A unit word's first letter is its unit: sec(ond), min(ute), h(ou)r, day.
 */
export function wordedDuration(text: string): string | undefined {
  const worded = /^(\d+)\s*(s|secs?|seconds?|m|mins?|minutes?|h|hrs?|hours?|d|days?)$/i.exec(text.trim());
  return worded ? `${worded[1]}${worded[2][0].toLowerCase()}` : undefined;
}
