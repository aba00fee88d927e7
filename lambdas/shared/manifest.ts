import { z } from 'zod';
import { BackupRolesSchema } from './backup-roles';
import { DatabasePropertiesSchema } from './database-properties';
import { OPERATOR_CLI } from './constants';
import { OperatorError } from './errors';
import { textStart } from './format';
import { safeJson } from './json';
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
  /**
   * What the backed-up database had set on itself (owner, connection limit, comment, grants, settings,
   * its roles' settings in it), read from the catalogs by the backup: a restore into a new name gives
   * them. Optional: backups written before it was recorded.
   */
  databaseProperties: DatabasePropertiesSchema.optional(),
  /**
   * The roles the backed-up database's objects name, and how (backup-roles.ts): a restore refuses,
   * before its download, a server that lacks one it needs. Optional: backups written before it was
   * recorded, and a run whose read of it failed.
   */
  roles: BackupRolesSchema.optional(),
});

export type BackupManifest = z.infer<typeof BackupManifestSchema>;
export type BackupObject = BackupManifest['objects'][number];

/**
 * A manifest's stored text to a validated manifest: the one reader of manifests (restore, verify,
 * list, the backup-age metric). Anything else is one line naming the key, what is wrong (not JSON
 * at all: a truncated upload, an error page stored in its place; or JSON that is not a schema-1
 * manifest, and which field) and the way out, instead of the parser's own words.
 */
export function parseManifest(manifestKey: string, text: string): BackupManifest {
  const json = safeJson(text);
  if (json === undefined) throw new InvalidManifestError(`manifest ${manifestKey} is not valid JSON (${textStart(text)})`);
  const parsed = BackupManifestSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new InvalidManifestError(`manifest ${manifestKey} is not a valid schema-1 manifest (${issue.path.join('.') || 'root'}: ${issue.message})`);
  }
  return parsed.data;
}

/** parseManifest's refusal: `problem` apart, for a reader whose fix is another (the restore's catalog names the environment). */
export class InvalidManifestError extends OperatorError {
  constructor(readonly problem: string) {
    super(`${problem}; do not restore it, choose another backup (${OPERATOR_CLI} backups list)`);
  }
}

/** Pointer files `latest/<db>.json`, `latest/<db>/<tier>.json` (and, in transition, `latest.json`, `latest/<tier>.json`). */
export const LatestPointerSchema = z.object({ manifest: z.string().min(1) });
export type LatestPointer = z.infer<typeof LatestPointerSchema>;
