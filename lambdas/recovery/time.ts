import { OPERATOR_CLI } from '../shared/constants';
import { durationSeconds, wordedDuration } from '../shared/duration';
import { OperatorError } from '../shared/errors';

const ISO_WITH_ZONE = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(:(\d{2})(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})$/;

/**
 * True when the written date and time exist: JavaScript's Date rolls 2026-11-31 over to December 1st
 * and 24:00 to the next day, which would restore production to a time nobody asked for.
 */
function isRealDateTime(match: RegExpExecArray): boolean {
  const [year, month, day, hour, minute, second] = [1, 2, 3, 4, 5, 7].map((i) => Number(match[i] ?? 0));
  const daysInMonth = new Date(Date.UTC(year, month, 0)).getUTCDate();
  return month >= 1 && month <= 12 && day >= 1 && day <= daysInMonth && hour <= 23 && minute <= 59 && second <= 59;
}

/**
 * How far back a relative --to-time goes, in seconds, or undefined for any other text: the
 * killswitch's --expires durations (`5m`, `1h30m`) or a number and a unit word (`5 min`, `5 minutes`,
 * `2 hours`, `1 day`), followed by "ago" or after a minus (`-5m`).
 */
export function relativeToTimeSeconds(text: string): number | undefined {
  const ago = /^(?:-\s*(.+)|(.+?)\s+ago)$/i.exec(text.trim());
  const span = ago?.[1] ?? ago?.[2];
  if (span === undefined) return undefined;
  return durationSeconds(wordedDuration(span) ?? span);
}

/** The offset of `zone` from UTC at the instant `ms`, in minutes (east positive), by Intl: summer time included. */
function zoneOffsetMinutes(zone: string, ms: number): number {
  // "GMT+01:00", "GMT-03:30"; "GMT" alone (or "GMT+00:00") for UTC itself.
  const name = new Intl.DateTimeFormat('en-US', { timeZone: zone, timeZoneName: 'longOffset' }).formatToParts(ms).find((p) => p.type === 'timeZoneName')?.value;
  const offset = /^GMT([+-])(\d{2}):(\d{2})$/.exec(name ?? '');
  return offset ? (offset[1] === '-' ? -1 : 1) * (Number(offset[2]) * 60 + Number(offset[3])) : 0;
}

/**
 * `--to-time`: an ISO 8601 time with its zone (`2026-11-30T14:02:00Z`, `...+01:00`) or a time
 * relative to `now` (relativeToTimeSeconds: `5 minutes ago`, `5m ago`, `-5m`). A time without a zone
 * is refused: on the worst day nobody should have to guess whether 14:02 was UTC or Paris time.
 */
export function parseToTime(text: string | undefined, now: Date = new Date(), zone = Intl.DateTimeFormat().resolvedOptions().timeZone): Date {
  const trimmed = text?.trim() ?? '';
  if (!trimmed) throw new OperatorError('recover: --to-time is required: an ISO time with its zone (2026-11-30T14:02:00Z) or "5 minutes ago"', 2);
  const secondsAgo = relativeToTimeSeconds(trimmed);
  if (secondsAgo !== undefined) {
    const date = new Date(now.getTime() - secondsAgo * 1000);
    if (!Number.isNaN(date.getTime())) return date;
  }
  const iso = ISO_WITH_ZONE.exec(trimmed);
  if (iso && isRealDateTime(iso)) {
    const date = new Date(trimmed);
    if (!Number.isNaN(date.getTime())) return date;
  }
  // A real date and time that only lacks its zone: the fix is the zone, written out for this time.
  const zoneless = /^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?)$/.exec(trimmed);
  const asUtc = zoneless && `${zoneless[1]}T${zoneless[2]}Z`;
  const real = asUtc ? ISO_WITH_ZONE.exec(asUtc) : null;
  if (zoneless && real && isRealDateTime(real)) {
    const local = `${zoneless[1]}T${zoneless[2]}`;
    // An on-call in Paris who read "14:02" off a French log means 14:02 Paris time: offered first,
    // written out with its offset on that date (summer time) and in UTC. "Add Z" first led them to
    // restore to 15:02 Paris time, after the bad DELETE.
    if (zone && !['UTC', 'Etc/UTC', 'Etc/GMT', 'GMT'].includes(zone)) {
      const wall = Date.parse(asUtc!);
      const offset = zoneOffsetMinutes(zone, wall - zoneOffsetMinutes(zone, wall) * 60_000);
      const sign = offset < 0 ? '-' : '+';
      const withOffset = `${local}${sign}${String(Math.floor(Math.abs(offset) / 60)).padStart(2, '0')}:${String(Math.abs(offset) % 60).padStart(2, '0')}`;
      const utc = new Date(wall - offset * 60_000).toISOString();
      const utcShown = `${utc.slice(0, 10) === zoneless[1] ? '' : `${utc.slice(0, 11)}`}${utc.slice(11, 11 + Math.min(zoneless[2].length, 12))}Z`;
      throw new OperatorError(`recover: --to-time "${trimmed}" has no time zone: ${zoneless[2]} in ${zone} is ${withOffset} (${utcShown}); or add Z for UTC (${local}Z)`, 2);
    }
    throw new OperatorError(`recover: --to-time "${trimmed}" has no time zone: add Z for UTC (${local}Z) or an offset (${local}+01:00)`, 2);
  }
  throw new OperatorError(
    `recover: --to-time "${trimmed}" is not a time: use ISO 8601 with a zone (2026-11-30T14:02:00Z, 2026-11-30T15:02:00+01:00) or a time ago ("5 minutes ago", "5m ago", "-1h30m")`,
    2,
  );
}

/** The longest backup retention RDS allows: no point-in-time recovery reaches further back. */
export const RDS_MAX_RETENTION_DAYS = 35;

/**
 * A --to-time no RDS instance can restore to, refused before any AWS call: a future time (a typo of
 * the year, a zone the wrong way) or one older than the longest retention RDS keeps. The source's
 * own window, narrower, is checked against RDS when the recovery is planned.
 */
export function checkPitrReach(toTime: Date, now: Date = new Date()): void {
  if (toTime.getTime() > now.getTime()) {
    throw new OperatorError(`recover: --to-time ${toTime.toISOString()} is in the future (now is ${now.toISOString()}): give a past time, e.g. "5 minutes ago"`, 2);
  }
  if (now.getTime() - toTime.getTime() > RDS_MAX_RETENTION_DAYS * 86_400_000) {
    throw new OperatorError(
      `recover: --to-time ${toTime.toISOString()} is more than ${RDS_MAX_RETENTION_DAYS} days ago, beyond any point-in-time recovery RDS keeps: give a time within the source's backup retention, or restore a dump (${OPERATOR_CLI} backups list)`,
      2,
    );
  }
}
