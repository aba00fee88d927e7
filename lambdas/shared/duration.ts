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

/** A unit word as typed, in English or French, to its unit (`heures` -> h, `jours` -> d). */
const UNIT_WORDS: readonly (readonly [RegExp, string])[] = [
  [/^(s|secs?|seconds?|secondes?)$/, 's'],
  [/^(m|mn|mins?|minutes?)$/, 'm'], // mn: the French abbreviation
  [/^(h|hrs?|hours?|heures?)$/, 'h'],
  [/^(d|days?|j|jours?)$/, 'd'],
];

/**
 * A number and a unit word as people type a duration (`5 min`, `90 minutes`, `2 hours`, `1 day`,
 * `2H`, and in French `2 heures`, `1 jour`, `2j`), written in durationSeconds' grammar (`5m`,
 * `90m`, `2h`, `1d`, `2h`, `2h`, `1d`, `2d`); undefined for any other text.
 */
export function wordedDuration(text: string): string | undefined {
  const worded = /^(\d+)\s*(\p{L}+)$/u.exec(text.trim());
  const unit = worded && UNIT_WORDS.find(([words]) => words.test(worded[2].toLowerCase()))?.[1];
  return unit ? `${worded[1]}${unit}` : undefined;
}

/**
 * What a duration durationSeconds does not take most likely meant, in its grammar: a worded one
 * (`2 heures` -> `2h`), or hours followed by bare minutes (`1h30` -> `1h30m`); undefined when
 * nothing is clearly meant.
 */
export function meantDuration(text: string): string | undefined {
  const trimmed = text.trim().toLowerCase();
  return /^\d+h\d+$/.test(trimmed) ? `${trimmed}m` : wordedDuration(trimmed);
}
