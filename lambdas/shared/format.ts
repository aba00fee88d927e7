import { OperatorError } from './errors';

/** "1.5 KiB", "5.0 GiB", "512 B": sizes for operators (binary units). */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${Math.round(value)} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/** "1 table", "2 tables": a count with its noun, for the lines an operator reads. */
export function countOf(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}

/**
 * "40 s", "55 min", "54 min 58 s", "7 h 01 min": a duration in whole seconds, for operators. From an
 * hour on, hours and minutes (seconds no longer matter, and "421 min" is misread by a tired reader).
 */
export function formatSeconds(seconds: number): string {
  const s = Math.max(0, seconds);
  if (s < 60) return `${s} s`;
  if (s >= 3600) return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')} min`;
  return s % 60 === 0 ? `${s / 60} min` : `${Math.floor(s / 60)} min ${s % 60} s`;
}

/** 2026-12-01T02:00:05Z: an instant to the second (an ISO string or a Date), for the lines and keys that need no milliseconds. */
export function isoSecond(time: Date | string): string {
  return (typeof time === 'string' ? time : time.toISOString()).replace(/\.\d{3}Z$/, 'Z');
}

/** "12 min", "5.0 h", "9 d": how long ago something was recorded or taken, for operators. */
export function formatAge(seconds: number): string {
  // Under a minute in seconds: a backup taken 6 s ago read as "0 min old" looks like a wrong clock.
  if (seconds < 59.5) return `${Math.round(seconds)} s`;
  return seconds < 3600 ? `${Math.round(seconds / 60)} min` : seconds < 172800 ? `${(seconds / 3600).toFixed(1)} h` : `${Math.round(seconds / 86400)} d`;
}

/**
 * "taken 2026-11-28T08:00:00.000Z, 7 d ago": when a backup was taken (its manifest's startedAt) and
 * how old it is, on every line that names the backup a restore restores: `latest` may be days old,
 * or already after the damage.
 */
export function takenAgo(startedAt: string, nowMs = Date.now()): string {
  const age = backupAgeSeconds(startedAt, nowMs);
  // A backup "taken" after now: one of the two clocks is wrong, which an age of "-5 min" would hide.
  if (age < -60) return `taken ${startedAt}, ${formatAge(-age)} in the future: this machine's clock or the backup writer's is wrong`;
  return `taken ${startedAt}, ${formatAge(Math.max(0, age))} ago`;
}

/** "2026-12-05 18:12 UTC": an instant (milliseconds since the epoch) to the minute, for operators. */
export function utcMinute(ms: number): string {
  return `${new Date(ms).toISOString().slice(0, 16).replace('T', ' ')} UTC`;
}

/**
 * "14:02:00Z" when the instant (milliseconds since the epoch) is today (UTC), else
 * "2026-11-30T14:02:00Z": the moment after which writes are not in a copy (a restored backup, a
 * recovered instance). A bare time of day of a week-old moment would be read as this morning.
 */
export function utcSecond(ms: number, nowMs = Date.now()): string {
  const iso = new Date(ms).toISOString();
  return `${iso.slice(iso.slice(0, 10) === new Date(nowMs).toISOString().slice(0, 10) ? 11 : 0, 19)}Z`;
}

/** Whole seconds since the backup started (its manifest's startedAt). */
export function backupAgeSeconds(startedAt: string, nowMs = Date.now()): number {
  return Math.round((nowMs - Date.parse(startedAt)) / 1000);
}

/** Seconds to the millisecond, for reports: 0.096 rather than 0.09633967699999997. */
export function roundSeconds(seconds: number): number {
  return Math.round(seconds * 1000) / 1000;
}

/** What a terminal would not print as itself: control and format characters (bidi marks), undecodable bytes (U+FFFD). */
const UNPRINTABLE = /[\p{C}\uFFFD]/u;

/**
 * The start of a stored text for a one-line error: `it is empty`, or `it starts with "..."` with
 * whitespace runs as one space, at most `max` characters, and the unprintable as \xNN / \uNNNN.
 * The text may be binary (a .dump copied onto a pointer or a manifest), whose raw bytes would
 * garble the operator's terminal; binary shows 16 characters, enough to tell what it is (PGDMP).
 */
export function textStart(text: string, max = 40): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  if (flat === '') return 'it is empty';
  const binary = UNPRINTABLE.test(flat.slice(0, max));
  const chars = [...flat].slice(0, binary ? 16 : max).map((c) => {
    if (c === '"' || c === '\\') return `\\${c}`;
    if (!UNPRINTABLE.test(c)) return c;
    const code = c.codePointAt(0)!;
    return code < 0x100 ? `\\x${code.toString(16).padStart(2, '0')}` : code <= 0xffff ? `\\u${code.toString(16).padStart(4, '0')}` : `\\u{${code.toString(16)}}`;
  });
  return `it starts with "${chars.join('')}"`;
}

/**
 * `text` as one POSIX shell word, for a command line printed for an operator to paste: as it is when
 * it holds only characters no shell reads specially (a name, a duration, an ARN), which reads best
 * in a pasted command; else single-quoted, so that a killswitch reason holding `$(...)`, a
 * backquote, a quote or a space runs nothing and stays one argument. Empty: `''`, still an argument.
 */
export function shellWord(text: string): string {
  // Not a leading '=': zsh expands `=name` to the path of the command name.
  return /^[\w./:@+,-][\w./:@+=,-]*$/.test(text) ? text : `'${text.replaceAll("'", `'\\''`)}'`;
}

/** `a`, `a and b`, `a, b and c`: the items of a line that names several. */
export function andList(items: readonly string[]): string {
  return items.length < 2 ? items.join('') : `${items.slice(0, -1).join(', ')} and ${items[items.length - 1]}`;
}

/**
 * An operator's free text (a killswitch or recovery reason, a resolution note) as one line: whitespace runs
 * (newlines too) as one space, trimmed; undefined when nothing is left. Longer than `max`: refused
 * (exit 2) as `<what> is <n> characters: shorten it to <max> or fewer`.
 */
export function boundedLine(value: string | undefined, what: string, max: number): string | undefined {
  const text = value?.replace(/\s+/g, ' ').trim();
  if (!text) return undefined;
  if (text.length > max) throw new OperatorError(`${what} is ${text.length} characters: shorten it to ${max} or fewer`, 2);
  return text;
}
