import { OperatorError } from '../shared/errors';

const UNIT_SECONDS: Readonly<Record<string, number>> = { second: 1, minute: 60, hour: 3600, day: 86400 };
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
 * `--to-time`: an ISO 8601 time with its zone (`2026-11-30T14:02:00Z`, `...+01:00`) or a relative
 * time (`5 minutes ago`, `2 hours ago`). A time without a zone is refused: on the worst day nobody
 * should have to guess whether 14:02 was UTC or Paris time.
 */
export function parseToTime(text: string | undefined, now: Date = new Date()): Date {
  const trimmed = text?.trim() ?? '';
  if (!trimmed) throw new OperatorError('recover: --to-time is required: an ISO time with its zone (2026-11-30T14:02:00Z) or "5 minutes ago"', 2);
  const relative = /^(\d+)\s*(second|minute|hour|day)s?\s+ago$/i.exec(trimmed);
  if (relative) {
    const date = new Date(now.getTime() - Number(relative[1]) * UNIT_SECONDS[relative[2].toLowerCase()] * 1000);
    if (!Number.isNaN(date.getTime())) return date;
  }
  const iso = ISO_WITH_ZONE.exec(trimmed);
  if (iso && isRealDateTime(iso)) {
    const date = new Date(trimmed);
    if (!Number.isNaN(date.getTime())) return date;
  }
  throw new OperatorError(
    `recover: --to-time "${trimmed}" is not a time: use ISO 8601 with a zone (2026-11-30T14:02:00Z, 2026-11-30T15:02:00+01:00) or "N minutes|hours|days ago"`,
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
      `recover: --to-time ${toTime.toISOString()} is more than ${RDS_MAX_RETENTION_DAYS} days ago, beyond any point-in-time recovery RDS keeps: give a time within the source's backup retention, or restore a dump (atmr-dr backups list)`,
      2,
    );
  }
}
