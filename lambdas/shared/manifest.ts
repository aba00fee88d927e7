import { z } from 'zod';
import { BackupTierSchema } from './tiers';

/** The backup manifest (schema 1, docs/contracts.md): written last, the only mark of a good backup. */
export const BackupManifestSchema = z.object({
  schema: z.literal(1),
  database: z.string().min(1),
  tier: BackupTierSchema,
  startedAt: z.iso.datetime(),
  finishedAt: z.iso.datetime(),
  durationMs: z.number().int().nonnegative(),
  serverVersion: z.string().min(1),
  pgDumpVersion: z.string().min(1),
  objects: z
    .array(
      z.object({
        key: z.string().min(1),
        format: z.enum(['custom', 'plain']),
        bytes: z.number().int().nonnegative(),
        sha256: z.string().regex(/^[0-9a-f]{64}$/),
      }),
    )
    .min(1),
  tables: z.array(z.object({ schema: z.string(), name: z.string(), rows: z.number().int().nonnegative() })),
  /**
   * The dump's snapshot as `txid_current_snapshot()` shows it (`xmin:xmax:xip,...`): the transaction
   * horizon of the point in time the backup holds. Optional: backups written before it was recorded.
   */
  snapshot: z
    .string()
    .regex(/^\d+:\d+:[\d,]*$/)
    .optional(),
});

export type BackupManifest = z.infer<typeof BackupManifestSchema>;
export type BackupObject = BackupManifest['objects'][number];

/** Pointer files `latest/<db>.json`, `latest/<db>/<tier>.json` (and, in transition, `latest.json`, `latest/<tier>.json`). */
export const LatestPointerSchema = z.object({ manifest: z.string().min(1) });
export type LatestPointer = z.infer<typeof LatestPointerSchema>;
