import { z } from 'zod';
import { OperatorError } from './errors';

/**
 * Backup tiers: the one definition every part uses (config, CLI, runner events, manifests, S3
 * prefixes). The runbook keeps hourly dumps for 24 h, daily for 7 days, weekly for 4 weeks and
 * monthly for 12 months.
 */
export const BACKUP_TIERS = ['hourly', 'daily', 'weekly', 'monthly'] as const;
export const BackupTierSchema = z.enum(BACKUP_TIERS);
export type BackupTier = z.infer<typeof BackupTierSchema>;

/** Tiers that also take a manual RDS snapshot. */
export const SNAPSHOT_TIERS = ['weekly', 'monthly'] as const satisfies readonly BackupTier[];
export type SnapshotTier = (typeof SNAPSHOT_TIERS)[number];

export function isBackupTier(value: unknown): value is BackupTier {
  return BackupTierSchema.safeParse(value).success;
}

export function isSnapshotTier(tier: BackupTier): tier is SnapshotTier {
  return (SNAPSHOT_TIERS as readonly string[]).includes(tier);
}

/**
 * A tier from a flag, an event or a variable, or one line naming the valid ones (exit code 2).
 * `source` says where the value came from when that is not obvious (`backup event`, `BACKUP_TIER`).
 */
export function parseBackupTier(value: unknown, source?: string): BackupTier {
  const parsed = BackupTierSchema.safeParse(value);
  if (parsed.success) return parsed.data;
  const shown = value === undefined ? '(none)' : JSON.stringify(value);
  throw new OperatorError(`${source ? `${source}: ` : ''}invalid backup tier ${shown}: use one of ${BACKUP_TIERS.join(', ')}`, 2);
}
