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
