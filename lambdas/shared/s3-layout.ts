/**
 * The S3 layout of the backup bucket (docs/contracts.md):
 *   <tier>/<db>_backup_<YYYYMMDD>_<HHMMSS>.dump         pg_dump custom format
 *   <tier>/<db>_backup_<YYYYMMDD>_<HHMMSS>.sql.gz       plain SQL, derived from the .dump
 *   <tier>/<db>_backup_<YYYYMMDD>_<HHMMSS>.manifest.json written last: the only mark of a good backup
 *   latest/<db>/<tier>.json and latest/<db>.json        {"manifest": "<key>"}, rewritten after it
 *   latest/<tier>.json and latest.json                  the same, for every database at once: still
 *                                                       written and read while readers move to the
 *                                                       per-database pointers (a transition)
 *   state/age-baselines/...                             since when an age counts while there is
 *                                                       nothing to measure it from (below)
 */

import { BACKUP_TIERS, type BackupTier, isBackupTier } from './tiers';

export { BACKUP_TIERS, type BackupTier, isBackupTier };

/** Lifecycle expiry per tier prefix (runbook: 24 h / 7 d / 4 w / 12 months). */
export const TIER_RETENTION_DAYS: Record<BackupTier, number> = { hourly: 1, daily: 7, weekly: 28, monthly: 365 };

export interface BackupObjectKeys {
  readonly stem: string;
  readonly custom: string;
  readonly plain: string;
  readonly manifest: string;
}

/**
 * Keys of one backup; the timestamp is UTC. `prefix` puts them outside the tier prefixes (the
 * restore test's own backups, under `restore-tests/`).
 */
export function backupObjectKeys(tier: BackupTier, database: string, startedAt: Date, prefix = ''): BackupObjectKeys {
  const iso = startedAt.toISOString(); // 2026-11-24T06:42:05.123Z
  const stamp = `${iso.slice(0, 10).replaceAll('-', '')}_${iso.slice(11, 19).replaceAll(':', '')}`;
  const stem = `${prefix}${tier}/${database}_backup_${stamp}`;
  return { stem, custom: `${stem}.dump`, plain: `${stem}.sql.gz`, manifest: `${stem}.manifest.json` };
}

/** The end of a backup object's key (`.dump` or `.sql.gz`): what a manifest's key has instead. */
export const BACKUP_OBJECT_SUFFIX = /\.(dump|sql\.gz)$/;

/**
 * A backup object's key with its stamp as `*`: the shape of every such key of its tier and database
 * (`<tier>/<db>_backup_*.dump`), as an IAM resource grants it and as a refusal names the right.
 */
export function anyStampKey(key: string): string {
  return key.replace(/_backup_\d{8}_\d{6}(?=\.)/, '_backup_*');
}

/** The newest backup of one database, whatever its tier. */
export function latestDatabasePointerKey(database: string): string {
  return `latest/${database}.json`;
}

/** The newest backup of one database in one tier. */
export function latestDatabaseTierPointerKey(database: string, tier: BackupTier): string {
  return `latest/${database}/${tier}.json`;
}

/** Transition only: the newest backup of any database (read when a database has no pointer of its own yet). */
export const LATEST_POINTER_KEY = 'latest.json';

/** Transition only: the newest backup of any database in a tier. */
export function latestTierPointerKey(tier: BackupTier): string {
  return `latest/${tier}.json`;
}

export const MANIFEST_SUFFIX = '.manifest.json';

/**
 * The start time a manifest key carries (`YYYYMMDD_HHMMSS`, UTC: it sorts as text), or undefined
 * for a key of another shape.
 */
export function manifestKeyStamp(key: string): string | undefined {
  return /_backup_(\d{8}_\d{6})\.manifest\.json$/.exec(key)?.[1];
}

/** The start time a manifest key carries, as a time; undefined for a key of another shape. */
export function manifestKeyStartedAt(key: string): Date | undefined {
  const stamp = /^(\d{4})(\d{2})(\d{2})_(\d{2})(\d{2})(\d{2})$/.exec(manifestKeyStamp(key) ?? '');
  if (!stamp) return undefined;
  const [year, month, day, hour, minute, second] = stamp.slice(1).map(Number);
  return new Date(Date.UTC(year, month - 1, day, hour, minute, second));
}

/**
 * How far a backup's times may be ahead of the clock that reads them (and the clock of the machine
 * taking a backup off S3's) before they are taken for the work of a wrong clock. A backup stamped
 * in the future would stay `latest` until that date (no later backup has a later stamp) and report
 * an age of 0 until then (the NoRecent alarms silenced): the backup core refuses to start on such
 * a clock, a pointer on such a stamp does not keep a backup from becoming `latest`, and the age
 * metric reports none for it (docs/backups.md). Wide enough for ordinary drift, the network's delay
 * and the one-second resolution of S3's Date header.
 */
export const CLOCK_SKEW_TOLERANCE_MS = 5 * 60_000;

export function isManifestKey(key: string): boolean {
  return key.endsWith(MANIFEST_SUFFIX);
}

/** Prefix of the monthly restore-test reports. */
export const RESTORE_TEST_REPORT_PREFIX = 'restore-tests/';

/**
 * Prefix of the backups the CLI restore test takes for itself: outside the tier prefixes, so they
 * are never listed as backups nor pointed to as anybody's latest, and kept as long as the reports.
 */
export const RESTORE_TEST_BACKUP_PREFIX = `${RESTORE_TEST_REPORT_PREFIX}backups/`;

/** Lifecycle expiry of everything under RESTORE_TEST_REPORT_PREFIX (the reports and the restore test's own backups). */
export const RESTORE_TEST_RETENTION_DAYS = 400;

/**
 * What removes a backup object that has no manifest (a run stopped or failed once it was stored):
 * the lifecycle rule of its prefix (lib/data-stack.ts), which expires it as any backup. Nothing
 * else needs to: without a manifest no command lists or restores it. Not a delete by the CLI: no
 * role of the app may delete a backup object (lib/data-stack.ts), and in the versioned, possibly
 * Object-Locked bucket a delete would leave the bytes in place anyway.
 */
export function unfinishedObjectRemoval(key: string, count = 1): string {
  const restoreTest = key.startsWith(RESTORE_TEST_BACKUP_PREFIX);
  const tier = BACKUP_TIERS.find((t) => key.startsWith(`${restoreTest ? RESTORE_TEST_BACKUP_PREFIX : ''}${t}/`));
  const [it, was] = count === 1 ? ['it', 'it was'] : ['them', 'they were'];
  if (tier === undefined) return `no lifecycle rule of the backup bucket covers ${it}`;
  const [prefix, days] = restoreTest ? [RESTORE_TEST_REPORT_PREFIX, RESTORE_TEST_RETENTION_DAYS] : [`${tier}/`, TIER_RETENTION_DAYS[tier]];
  return `the bucket's ${prefix} lifecycle rule expires ${it} ${days} day${days === 1 ? '' : 's'} after ${was} written`;
}

/**
 * The tool's own bookkeeping in the bucket: neither backups nor reports. No lifecycle rule covers
 * it (what is kept here must outlive every expiry), the catalog lists only the tier prefixes, and
 * the write-once bucket policy, which covers the tier prefixes only, does not apply.
 */
export const STATE_PREFIX = 'state/';

/**
 * The age baselines: `{"schema": 1, "since": "<ISO>"}`, written once (If-None-Match) by the backup
 * runner the first time it finds nothing to measure an age from (no backup of a tier yet, no
 * restore-test report yet), and never moved (lambdas/backup/age-baseline.ts).
 */
const AGE_BASELINE_PREFIX = `${STATE_PREFIX}age-baselines/`;

/** Since when the age of the newest backup of one database in one tier counts while it has none. */
export function backupAgeBaselineKey(database: string, tier: BackupTier): string {
  return `${AGE_BASELINE_PREFIX}${database}/${tier}.json`;
}

/** Since when the age of the newest restore-test report counts while there is none. */
export const RESTORE_TEST_AGE_BASELINE_KEY = `${AGE_BASELINE_PREFIX}restore-test-report.json`;
