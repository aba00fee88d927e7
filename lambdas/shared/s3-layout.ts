/**
 * The S3 layout of the backup bucket (docs/contracts.md):
 *   <tier>/<db>_backup_<YYYYMMDD>_<HHMMSS>.dump         pg_dump custom format
 *   <tier>/<db>_backup_<YYYYMMDD>_<HHMMSS>.sql.gz       plain SQL, derived from the .dump
 *   <tier>/<db>_backup_<YYYYMMDD>_<HHMMSS>.manifest.json written last: the only mark of a good backup
 *   latest/<tier>.json and latest.json                  {"manifest": "<key>"}, rewritten after it
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

/** Keys of one backup; the timestamp is UTC. */
export function backupObjectKeys(tier: BackupTier, database: string, startedAt: Date): BackupObjectKeys {
  const iso = startedAt.toISOString(); // 2026-11-24T06:42:05.123Z
  const stamp = `${iso.slice(0, 10).replaceAll('-', '')}_${iso.slice(11, 19).replaceAll(':', '')}`;
  const stem = `${tier}/${database}_backup_${stamp}`;
  return { stem, custom: `${stem}.dump`, plain: `${stem}.sql.gz`, manifest: `${stem}.manifest.json` };
}

export const LATEST_POINTER_KEY = 'latest.json';

export function latestTierPointerKey(tier: BackupTier): string {
  return `latest/${tier}.json`;
}

export const MANIFEST_SUFFIX = '.manifest.json';

export function isManifestKey(key: string): boolean {
  return key.endsWith(MANIFEST_SUFFIX);
}

/** Prefix of the monthly restore-test reports. */
export const RESTORE_TEST_REPORT_PREFIX = 'restore-tests/';
