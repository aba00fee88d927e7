import { Client } from 'pg';
import { BackupResult, RunBackupDeps, RunBackupOptions, runBackup } from '../backup/backup';
import { OperatorError, oneLine } from '../shared/errors';
import { PgConnection, pgClientConfig } from '../shared/pg-connection';
import type { BackupTier } from '../shared/s3-layout';
import { CatalogDeps, SpaceCheck, resolveBackup } from './catalog';
import { ident, restoreBackup } from './restore';

/**
 * The runbook's test_backup_restore.sh, automated: (back up, write a canary row after the
 * backup,) restore into a scratch database, check that the canary is absent and the row counts
 * match, run the critical queries, drop the scratch database whatever happens, report RTO/RPO.
 */
export type BackupFunction = (deps: RunBackupDeps, options: RunBackupOptions) => Promise<BackupResult>;

export interface RestoreTestDeps extends CatalogDeps, SpaceCheck {
  /** Server that receives the scratch database. */
  readonly target: PgConnection;
  /** The backed-up database (backup step and canary row); needed when `takeBackup`. */
  readonly source?: PgConnection;
  /** The backup write path (contract 1); default: lambdas/backup/backup.ts runBackup. */
  readonly backup?: BackupFunction;
  readonly pgBinDir?: string;
  readonly tempDir?: string;
  readonly jobs?: number;
  readonly maintenanceDatabase?: string;
  readonly now?: () => Date;
  readonly log?: (line: string) => void;
  /** Id of the canary row. @default canary-<ISO time>-<random> */
  readonly canaryId?: () => string;
}

export interface RestoreTestOptions {
  /** Take a fresh backup and write a canary first (CLI); otherwise restore the tier's latest (schedule). */
  readonly takeBackup: boolean;
  /** Tier of the backup taken, or whose latest pointer is restored. */
  readonly tier: BackupTier;
  /** Must succeed on the restored copy; a query whose table does not exist is skipped. */
  readonly criticalQueries: readonly string[];
  readonly rtoObjectiveSeconds: number;
  readonly rpoObjectiveSeconds: number;
  readonly compressionLevel?: number;
}

export interface CriticalQueryResult {
  readonly sql: string;
  readonly status: 'ok' | 'skipped' | 'failed';
  /** First column of the first row (ok), or the reason (skipped/failed). */
  readonly detail: string;
}

export interface RestoreTestReport {
  readonly ok: boolean;
  readonly error?: string;
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly manifestKey?: string;
  readonly backupStartedAt?: string;
  readonly scratchDatabase: string;
  readonly scratchDropped: boolean;
  readonly rtoSeconds?: number;
  readonly rpoSeconds?: number;
  readonly rtoObjectiveSeconds: number;
  readonly rpoObjectiveSeconds: number;
  readonly rtoMet?: boolean;
  readonly rpoMet?: boolean;
  readonly tablesRestored?: number;
  readonly rowsRestored?: number;
  /** Checked only when a backup was taken: the row written after it must not be in the copy. */
  readonly canaryAbsent?: boolean;
  readonly criticalQueries: readonly CriticalQueryResult[];
  /** Seconds per step (those that ran). */
  readonly steps: Readonly<Record<string, number>>;
}

export const CANARY_TABLE = 'atmr_dr_restore_canary';

export async function runRestoreTest(deps: RestoreTestDeps, options: RestoreTestOptions): Promise<RestoreTestReport> {
  const now = deps.now ?? (() => new Date());
  const log = deps.log ?? (() => undefined);
  const startedAt = now();
  const steps: Record<string, number> = {};
  const scratch = `atmr_dr_restore_test_${startedAt.getTime().toString(36)}${Math.floor(Math.random() * 1296).toString(36)}`;
  const criticalQueries: CriticalQueryResult[] = [];
  let partial: Partial<RestoreTestReport> = {};
  let error: string | undefined;
  let canaryId: string | undefined;

  const timed = async <T>(step: string, fn: () => Promise<T>): Promise<T> => {
    const t0 = performance.now();
    try {
      return await fn();
    } finally {
      steps[`${step}Seconds`] = round((performance.now() - t0) / 1000);
    }
  };

  try {
    let ref = 'latest';
    if (options.takeBackup) {
      const source = deps.source;
      if (!source) throw new OperatorError('restore-test needs the source database connection to take a backup: set PGDATABASE (and PGHOST...)', 2);
      if (source.database === scratch) throw new OperatorError('source and scratch database names collide; retry');
      await withClient(source, source.database, (c) => c.query(`CREATE TABLE IF NOT EXISTS public.${CANARY_TABLE} (id text PRIMARY KEY, written_at timestamptz NOT NULL DEFAULT now())`));
      const backup = deps.backup ?? runBackup;
      log(`backing up ${source.database} (tier ${options.tier})`);
      const result = await timed('backup', () =>
        backup({ s3: deps.s3, bucket: deps.bucket, connection: source, pgBinDir: deps.pgBinDir, now }, { tier: options.tier, formats: ['custom'], compressionLevel: options.compressionLevel }),
      );
      ref = result.manifestKey;
      canaryId = deps.canaryId?.() ?? `canary-${startedAt.toISOString()}-${Math.random().toString(36).slice(2, 8)}`;
      const id = canaryId;
      await timed('canary', () => withClient(source, source.database, (c) => c.query(`INSERT INTO public.${CANARY_TABLE} (id) VALUES ($1) ON CONFLICT (id) DO NOTHING`, [id])));
    }

    const { manifestKey, manifest } = await resolveBackup(deps, ref, { tier: options.takeBackup ? undefined : options.tier });
    const restoreBegan = now();
    const rpoSeconds = round((restoreBegan.getTime() - Date.parse(manifest.startedAt)) / 1000);
    partial = { manifestKey, backupStartedAt: manifest.startedAt, rpoSeconds, rpoMet: rpoSeconds <= options.rpoObjectiveSeconds };

    log(`restoring ${manifestKey} into scratch database ${scratch}`);
    const restored = await restoreBackup(
      { ...deps, connection: deps.target, log },
      { ref: manifestKey, targetDb: scratch, format: 'custom', protectedDatabases: deps.source ? [deps.source.database] : [] },
    );
    steps.downloadSeconds = round(restored.timings.downloadSeconds);
    steps.restoreSeconds = round(restored.timings.restoreSeconds);
    steps.verifySeconds = round(restored.timings.verifySeconds);
    const rtoSeconds = round(restored.rtoSeconds);
    partial = { ...partial, rtoSeconds, rtoMet: rtoSeconds <= options.rtoObjectiveSeconds, tablesRestored: restored.tablesRestored, rowsRestored: restored.rowsRestored };

    await timed('checks', () =>
      withClient(deps.target, scratch, async (client) => {
        if (canaryId !== undefined) {
          const found = await client.query(`SELECT 1 FROM public.${CANARY_TABLE} WHERE id = $1`, [canaryId]).catch((e: { code?: string }) => {
            if (e.code === '42P01') return { rowCount: 0 };
            throw e;
          });
          partial = { ...partial, canaryAbsent: found.rowCount === 0 };
          if (found.rowCount !== 0) throw new OperatorError(`canary row ${canaryId}, written after the backup, is in the restored copy: the backup is not the point in time it claims`);
        }
        for (const sql of options.criticalQueries) {
          try {
            const result = await client.query({ text: sql, rowMode: 'array' });
            const first = (result.rows[0] as unknown[] | undefined)?.[0];
            criticalQueries.push({ sql, status: 'ok', detail: first === undefined ? `${result.rowCount ?? 0} rows` : String(first) });
          } catch (e) {
            if ((e as { code?: string }).code === '42P01') {
              criticalQueries.push({ sql, status: 'skipped', detail: oneLine(e) });
              continue;
            }
            criticalQueries.push({ sql, status: 'failed', detail: oneLine(e) });
            throw new OperatorError(`critical query failed on the restored copy: ${sql}: ${oneLine(e)}`);
          }
        }
      }),
    );
  } catch (e) {
    error = oneLine(e);
    log(`restore test failed: ${error}`);
  }

  let scratchDropped = false;
  await timed('cleanup', async () => {
    try {
      await withClient(deps.target, deps.maintenanceDatabase ?? 'postgres', async (c) => {
        await c.query(`DROP DATABASE IF EXISTS ${ident(scratch)} WITH (FORCE)`);
        scratchDropped = (await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [scratch])).rowCount === 0;
      });
    } catch (e) {
      error = error ?? `could not drop scratch database ${scratch}: ${oneLine(e)}; drop it by hand`;
    }
    if (canaryId !== undefined && deps.source) {
      const source = deps.source;
      const id = canaryId;
      await withClient(source, source.database, (c) => c.query(`DELETE FROM public.${CANARY_TABLE} WHERE id = $1`, [id])).catch((e: unknown) => {
        log(`could not delete canary row ${id}: ${oneLine(e)}`);
      });
    }
  });
  if (!scratchDropped && error === undefined) error = `scratch database ${scratch} is still there; drop it by hand`;

  return {
    ok: error === undefined,
    ...(error !== undefined && { error }),
    startedAt: startedAt.toISOString(),
    finishedAt: now().toISOString(),
    scratchDatabase: scratch,
    scratchDropped,
    rtoObjectiveSeconds: options.rtoObjectiveSeconds,
    rpoObjectiveSeconds: options.rpoObjectiveSeconds,
    ...partial,
    criticalQueries,
    steps,
  };
}

async function withClient<T>(connection: PgConnection, database: string, fn: (client: Client) => Promise<T>): Promise<T> {
  const client = new Client(pgClientConfig(connection, database));
  try {
    await client.connect();
  } catch (e) {
    throw new OperatorError(`cannot connect to ${connection.user}@${connection.host}:${connection.port}/${database}: ${oneLine(e)}; check the connection settings`);
  }
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

function round(seconds: number): number {
  return Math.round(seconds * 1000) / 1000;
}
