import * as fs from 'node:fs';
import * as os from 'node:os';
import type { Client } from 'pg';
import { BackupResult, RunBackupDeps, RunBackupOptions, runBackup } from '../backup/backup';
import { baseChildEnv, toolVersion } from '../backup/pg-tools';
import { asOperatorError } from '../shared/aws-errors';
import { OperatorError, oneLine } from '../shared/errors';
import { operatorCommand } from '../shared/constants';
import { backupAgeSeconds, countOf, formatAge, formatBytes, roundSeconds, utcMinute } from '../shared/format';
import { connectTo, type PgConnection } from '../shared/pg-connection';
import { sqlState, UNDEFINED_TABLE } from '../shared/pg-errors';
import { RESTORE_TEST_BACKUP_PREFIX, type BackupTier } from '../shared/s3-layout';
import { pgToolPath, queryOneStatementReadOnly, quoteIdent } from '../shared/postgres';
import { roleReadOnlyReset } from '../shared/read-only';
import { CatalogDeps, CatalogError, NoBackupError, resolveBackup, type ResolvedBackup } from './catalog';
import { RESTORE_TEST_DEFAULTS } from './contract';
import { BadObjectError, checkFreeSpace, type SpaceCheck } from './download';
import { FunctionDeadlineStop } from './deadline';
import { restoreBackup, type RestoreDeps } from './restore';
import { cannotCreateDatabases, CLIENT_SESSION } from './guards';
import { idTime, runId, siblingOf } from './leftovers';
import { boundedQuery, DROP_BOUND_MS, dropDatabase, GUARD_READ_BOUND_MS } from './session';

/**
 * The runbook's test_backup_restore.sh, automated: (back up,) restore into a scratch database,
 * check the row counts and the point in time, run the critical queries, drop the scratch database
 * whatever happens, report RTO/RPO.
 *
 * It never changes the source (production) database: no table, no row, no setting. The point in
 * time is proven from transaction horizons instead of a marker row: the source's
 * `txid_current_snapshot()` read just before and just after the backup must bracket the horizon
 * recorded in the manifest (the dump's own snapshot), and the restored copy must hold exactly the
 * row counts taken in that snapshot. The backup it takes goes under `restore-tests/`, outside the
 * tier prefixes, and moves no latest pointer: it never becomes anybody's latest.
 */
export type BackupFunction = (deps: RunBackupDeps, options: RunBackupOptions) => Promise<BackupResult>;

export interface RestoreTestDeps extends CatalogDeps, SpaceCheck, Pick<RestoreDeps, 'onDownloadProgress' | 'onLoad'> {
  /** Server that receives the scratch database. */
  readonly target: PgConnection;
  /** The backed-up database (read only: the backup and two transaction horizons); needed when `takeBackup`. */
  readonly source?: PgConnection;
  /** The backup write path (the S3 layout and manifest of docs/contracts.md); default: lambdas/backup/backup.ts runBackup. */
  readonly backup?: BackupFunction;
  readonly pgBinDir?: string;
  readonly tempDir?: string;
  readonly jobs?: number;
  readonly maintenanceDatabase?: string;
  readonly now?: () => Date;
  readonly log?: (line: string) => void;
  /** What asks the operator to act (leftovers of a killed restore); default: log. */
  readonly warn?: (line: string) => void;
  /**
   * Stops the backup, the restore step or the checks (Ctrl-C): nothing is published, the staging
   * database is dropped, the scratch one by the cleanup, which the signal does not stop.
   */
  readonly signal?: AbortSignal;
  /** When (Date.now() ms) `signal` stops the test for the function's deadline: the restore's check line says so. @default none (the CLI) */
  readonly deadlineAt?: number;
  /** The scratch database's name, once chosen: a run quit at once (a second Ctrl-C) names it as maybe left. */
  readonly onScratch?: (name: string) => void;
  /**
   * True as the cleanup (the scratch database's drop) starts, false once it is over: a stop then
   * does not cut it, which would leave the scratch database, and its sender is told so.
   */
  readonly onCleanup?: (underway: boolean) => void;
}

export interface RestoreTestOptions {
  /** Take a fresh backup first (CLI); otherwise restore the tier's latest of `database` (schedule). */
  readonly takeBackup: boolean;
  /** Tier of the backup taken, or whose latest pointer is restored. */
  readonly tier: BackupTier;
  /** Without takeBackup: the database whose latest backup is restored. */
  readonly database?: string;
  /** Must succeed on the restored copy; only a default query (RESTORE_TEST_DEFAULTS) whose table does not exist is skipped, and not all of them: a test none of whose queries ran fails. */
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
  /**
   * The exit code the operator CLI ends a failed run with: that of the failure itself, as every
   * other command reports it (asOperatorError: 2 for a missing setting such as the credentials, 1
   * otherwise), not 1 for any failure.
   */
  readonly errorExitCode?: number;
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly manifestKey?: string;
  readonly backupStartedAt?: string;
  readonly scratchDatabase: string;
  /** False when the run stopped before the scratch database existed (e.g. a wrong password, a failed backup). */
  readonly scratchCreated: boolean;
  /** True when no scratch database is left: dropped, or never created (`scratchCreated` says which). */
  readonly scratchDropped: boolean;
  readonly rtoSeconds?: number;
  /**
   * Set instead of `rtoSeconds` when the function's deadline stopped the run while the
   * restore step ran: the seconds it had run by then. The RTO is longer than this; the scheduled
   * test publishes it as RtoSeconds, so that the RTO alarm fires when even this is over the objective.
   */
  readonly rtoAtLeastSeconds?: number;
  readonly rpoSeconds?: number;
  readonly rtoObjectiveSeconds: number;
  readonly rpoObjectiveSeconds: number;
  readonly rtoMet?: boolean;
  readonly rpoMet?: boolean;
  readonly tablesRestored?: number;
  readonly rowsRestored?: number;
  /**
   * Checked only when a backup was taken: the source's transaction horizon (`txid_current_snapshot()`
   * xmax) before and after the backup bracket the one recorded in the manifest.
   */
  readonly pointInTime?: { readonly before: string; readonly snapshot?: string; readonly after: string; readonly ok: boolean };
  /**
   * When the test takes its own backup (the CLI): the newest published backup of the database, as
   * `restore latest` resolves it (its latest pointer), and its age when the test began. That is the
   * RPO a restore from the catalog would give now, which `rpoSeconds` (the age of the test's own
   * fresh backup) does not say. null when there is none; `error` when it could not be read. Its
   * checksum is not verified (the whole dump would be read): `atmr-dr backups verify latest` does.
   */
  readonly latestPublished?: { readonly manifestKey: string; readonly ageSeconds: number } | { readonly error: string } | null;
  readonly criticalQueries: readonly CriticalQueryResult[];
  /** Seconds per step (those that ran). */
  readonly steps: Readonly<Record<string, number>>;
}

export async function runRestoreTest(deps: RestoreTestDeps, options: RestoreTestOptions): Promise<RestoreTestReport> {
  const now = deps.now ?? (() => new Date());
  const log = deps.log ?? (() => undefined);
  const startedAt = now();
  const steps: Record<string, number> = {};
  const scratch = `${SCRATCH_PREFIX}${runId(startedAt.getTime())}`;
  deps.onScratch?.(scratch);
  const criticalQueries: CriticalQueryResult[] = [];
  let partial: Partial<RestoreTestReport> = {};
  let error: string | undefined;
  let errorExitCode: number | undefined;
  let restoreStarted = false;
  // The restore step loads into a staging database and creates the scratch one only by its last
  // act, the swap (a rename): until it has returned, the scratch database cannot exist.
  let swappedIn = false;
  let restoreBegan: Date | undefined;
  // performance.now() as the restore step began and as its load began (onLoad): what a failed or
  // stopped restore step ran, in `steps`, when its own timings never come back.
  let restoreT0: number | undefined;
  let loadT0: number | undefined;

  const timed = async <T>(step: string, fn: () => Promise<T>): Promise<T> => {
    const t0 = performance.now();
    try {
      return await fn();
    } finally {
      steps[`${step}Seconds`] = roundSeconds((performance.now() - t0) / 1000);
    }
  };

  try {
    let ref = 'latest';
    if (options.takeBackup) {
      const source = deps.source;
      if (!source) throw new OperatorError('restore-test needs the source database connection to take a backup: set PGDATABASE (and PGHOST...)', 2);
      const published = await latestPublished(deps, source.database);
      partial = { latestPublished: published && 'manifest' in published ? { manifestKey: published.manifestKey, ageSeconds: backupAgeSeconds(published.manifest.startedAt, startedAt.getTime()) } : published };
      await assertCanRestore(deps, published && 'manifest' in published ? published : undefined);
      if (source.database === scratch) throw new OperatorError('source and scratch database names collide; retry');
      const before = await withClient(source, source.database, transactionHorizon);
      const backup = deps.backup ?? runBackup;
      log(`backing up ${source.database} (tier ${options.tier}, under ${RESTORE_TEST_BACKUP_PREFIX})`);
      const result = await timed('backup', () =>
        backup(
          { s3: deps.s3, bucket: deps.bucket, connection: source, pgBinDir: deps.pgBinDir, now, signal: deps.signal },
          { tier: options.tier, formats: ['custom'], compressionLevel: options.compressionLevel, unpublishedPrefix: RESTORE_TEST_BACKUP_PREFIX },
        ),
      );
      ref = result.manifestKey;
      const after = await withClient(source, source.database, transactionHorizon);
      const snapshot = result.manifest.snapshot;
      const ok = snapshot !== undefined && xmax(before) <= xmax(snapshot) && xmax(snapshot) <= xmax(after);
      partial = { ...partial, pointInTime: { before, snapshot, after, ok } };
      if (!ok) {
        throw new OperatorError(
          snapshot === undefined
            ? `backup ${ref} records no snapshot horizon: its point in time cannot be proven; upgrade the backup writer`
            : `backup ${ref} holds snapshot ${snapshot}, outside the test's window (${before} .. ${after}): the backup is not the point in time it claims`,
        );
      }
    }

    const { manifestKey, manifest } = await resolveBackup(deps, ref, options.takeBackup ? {} : { tier: options.tier, database: options.database });
    // Before the restore, and outside its RTO: the room a killed test's copy holds on the target
    // server (the production one, without restoreTest.targetHost) comes back before this one's.
    await dropKilledTestsDatabases(deps, startedAt.getTime());
    restoreBegan = now();
    restoreT0 = performance.now();
    // The backup's age is measured now (the scheduled run publishes it even when the restore fails);
    // whether it meets the objective is said only of a restore that completed (rpoMet below).
    const rpoSeconds = roundSeconds((restoreBegan.getTime() - Date.parse(manifest.startedAt)) / 1000);
    partial = { ...partial, manifestKey, backupStartedAt: manifest.startedAt, rpoSeconds };

    log(`restoring ${manifestKey} into scratch database ${scratch}`);
    restoreStarted = true;
    const restored = await restoreBackup(
      {
        ...deps,
        connection: deps.target,
        log,
        onLoad: (phase) => {
          loadT0 = performance.now();
          return deps.onLoad?.(phase) ?? (() => undefined);
        },
      },
      {
        ref: manifestKey,
        targetDb: scratch,
        format: 'custom',
        signal: deps.signal,
        deadlineAt: deps.deadlineAt,
        protectedDatabases: [manifest.database, ...(deps.source ? [deps.source.database] : [])],
        // The test never touches a target: its lines name the scratch database, which exists only once swapped in.
        untouched: `scratch database "${scratch}" not created`,
        // It restores as a real restore would (owners kept) and has no way to leave them out.
        noOwnerOption: null,
      },
    );
    swappedIn = true;
    stopIfAsked(deps.signal, 'after the restore step, before the checks');
    steps.downloadSeconds = roundSeconds(restored.timings.downloadSeconds);
    steps.restoreSeconds = roundSeconds(restored.timings.restoreSeconds);
    steps.verifySeconds = roundSeconds(restored.timings.verifySeconds);
    const rtoSeconds = roundSeconds(restored.rtoSeconds);
    partial = { ...partial, rtoSeconds, rtoMet: rtoSeconds <= options.rtoObjectiveSeconds, rpoMet: rpoSeconds <= options.rpoObjectiveSeconds, tablesRestored: restored.tablesRestored, rowsRestored: restored.rowsRestored };
    // A restore of no table succeeds and proves nothing: a test pointed at the wrong database (or
    // an empty one) would report green every night.
    if (restored.tablesRestored === 0) {
      throw new OperatorError(`the backup of ${manifest.database} holds no table: the test is pointed at an empty or wrong database; check PGDATABASE / the configured database`);
    }

    await timed('checks', () =>
      withClient(deps.target, scratch, async (client) => {
        for (const sql of options.criticalQueries) {
          try {
            // The recovery's verification runs these same queries on production: one statement, read-only, here too.
            const rows = await queryOneStatementReadOnly(client, sql);
            const first = rows.length === 0 ? undefined : Object.values(rows[0])[0];
            criticalQueries.push({ sql, status: 'ok', detail: first === undefined ? `${rows.length} rows` : String(first) });
          } catch (e) {
            const noTable = sqlState(e) === UNDEFINED_TABLE;
            // The defaults guess ATMR's schema and may not fit the database backed up; a query the
            // operator wrote names a table that must be there, and a test that passes without
            // running it proves nothing.
            if (noTable && RESTORE_TEST_DEFAULTS.criticalQueries.includes(sql)) {
              criticalQueries.push({ sql, status: 'skipped', detail: oneLine(e) });
              continue;
            }
            criticalQueries.push({ sql, status: 'failed', detail: oneLine(e) });
            const fix = noTable ? ': the restored copy has no such table; check the query (--critical-query, or restoreTest.criticalQueries in cdk.json)' : '';
            throw new OperatorError(`critical query failed on the restored copy: ${sql}: ${oneLine(e)}${fix}`);
          }
          // A query does not take the signal (the server's statement_timeout bounds it): the stop comes after it.
          stopIfAsked(deps.signal, 'during the checks');
        }
      }, true),
    );
    // The defaults are skipped where their table is absent; when none of the queries ran, the test
    // proved no critical data, as a test of the wrong database would. The tables restored are
    // counted in the line: with some, the database may be the right one, its tables in a schema
    // not on the search path.
    const skipped = criticalQueries.filter((q) => q.status === 'skipped');
    if (skipped.length > 0 && skipped.length === criticalQueries.length) {
      throw new OperatorError(
        `no critical query ran on the restored copy of ${manifest.database} (${countOf(restored.tablesRestored, 'table')} restored; skipped, no such table on the search path: ${skipped.map((q) => q.sql).join('; ')}): the test proved no critical data; point it at the right database, or set restoreTest.criticalQueries in cdk.json / --critical-query (with the schema, for tables outside the search path)`,
      );
    }
  } catch (e) {
    // The test's own upload, bad when the restore's download checks it: "choose another backup" does
    // not apply (the test cannot be pointed at one, and backups list does not show restore-tests/).
    // Written and checked minutes apart, it was changed by the storage or the network between.
    // The scheduled test restores the newest backup of its tier, never one it was told: the catalog's
    // and the download's fixes are the CLI operator's (name a manifest key, choose another backup),
    // which neither the function nor whoever reads its page can pass it. Their problem is kept, with
    // what an on-call can run instead.
    const scheduledProblem = !options.takeBackup && (e instanceof CatalogError || e instanceof BadObjectError) ? e.problem : undefined;
    const failure =
      options.takeBackup && e instanceof BadObjectError
        ? new OperatorError(`${e.problem}: the backup this test uploaded came back corrupt (the storage or the network between here and S3 changed it): check the bucket (its storage, any proxy in front of it), then run the test again`)
        : scheduledProblem !== undefined
          ? new OperatorError(`${scheduledProblem}: ${scheduledFix(deps, options, e instanceof NoBackupError)}`, (e as OperatorError).exitCode)
          : asOperatorError(e);
    error = oneLine(failure);
    errorExitCode = failure.exitCode;
    // The restore step failed or was stopped: its own timings never came back. The steps it ran
    // are what it had run: the download (with the manifest and the checks before it) up to the
    // load, or up to now when the load never began, and the part of the load that ran.
    if (restoreT0 !== undefined && !swappedIn) {
      const end = performance.now();
      steps.downloadSeconds = roundSeconds(((loadT0 ?? end) - restoreT0) / 1000);
      if (loadT0 !== undefined) steps.restoreSeconds = roundSeconds((end - loadT0) / 1000);
    }
    // Stopped (by the function's deadline, or an operator) while the restore step ran: no RTO was
    // measured, but the restore took at least this long, kept as a lower bound, so that a restore
    // slower than the objective is reported as such and not only as a failed run. The deadline's
    // line says it too: that stop is the function's, not a person's.
    if (deps.signal?.aborted && restoreBegan !== undefined && !swappedIn) {
      const atLeast = roundSeconds((now().getTime() - restoreBegan.getTime()) / 1000);
      partial = { ...partial, rtoAtLeastSeconds: atLeast, ...(atLeast > options.rtoObjectiveSeconds && { rtoMet: false }) };
      if (deps.signal.reason instanceof FunctionDeadlineStop) error = `stopped after ${atLeast} s: RTO > ${atLeast} s (objective ${options.rtoObjectiveSeconds} s); ${error}`;
    }
  }

  // The scratch name is fresh, so nothing can have created it before the restore step began: until
  // then there is nothing to drop, and no connection is needed to say so (the target may be the very
  // thing that failed, e.g. a wrong password). Once it began, the cleanup looks; when it cannot (the
  // server is gone), the scratch database exists only if the restore step got to its swap. A failed
  // restore step names its own leftover, the staging database, with its DROP.
  let scratchCreated = swappedIn;
  let scratchDropped = !swappedIn;
  if (restoreStarted) {
    deps.onCleanup?.(true);
    await timed('cleanup', async () => {
      try {
        await withClient(deps.target, deps.maintenanceDatabase ?? 'postgres', async (c) => {
          const exists = async () => (await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [scratch])).rowCount !== 0;
          scratchCreated = await exists();
          await dropDatabase(c, scratch);
          scratchDropped = !(await exists());
        });
      } catch (e) {
        error = error ?? `could not drop scratch database ${scratch}: ${oneLine(e)}; drop it by hand`;
      }
    });
    deps.onCleanup?.(false);
  }
  if (!scratchDropped && error === undefined) error = `scratch database ${scratch} is still there; drop it by hand`;

  return {
    ok: error === undefined,
    ...(error !== undefined && { error, errorExitCode: errorExitCode ?? 1 }),
    startedAt: startedAt.toISOString(),
    finishedAt: now().toISOString(),
    scratchDatabase: scratch,
    scratchCreated,
    scratchDropped,
    rtoObjectiveSeconds: options.rtoObjectiveSeconds,
    rpoObjectiveSeconds: options.rpoObjectiveSeconds,
    ...partial,
    criticalQueries,
    steps,
  };
}

/**
 * What an on-call runs when the scheduled test found no usable newest backup of its tier: the
 * catalog's own fix names a manifest key or --database, which the scheduled test cannot be given.
 */
function scheduledFix(deps: RestoreTestDeps, options: RestoreTestOptions, nonePublished: boolean): string {
  const database = options.database === undefined ? '' : ` --database ${options.database}`;
  const list = operatorCommand(deps.environmentName, `backups list --tier ${options.tier}${database}`);
  const backUp = operatorCommand(deps.environmentName, `backup --tier ${options.tier}${database}`);
  const what = nonePublished ? `the scheduled test restores the newest ${options.tier} backup and none is published` : `the scheduled test restores the newest ${options.tier} backup, this one, and no other`;
  return `${what}: see the ${options.tier} backups with ${list} (alarms Backups-*), take one by hand with ${backUp} (it becomes the newest), then run the scheduled test again`;
}

/** Every database the restore test makes is named so: its scratch database `<prefix><runId>`, and the restore's staging database beside it (leftovers.ts siblingPrefix). */
const SCRATCH_PREFIX = 'atmr_dr_restore_test_';

/**
 * How long after its start a restore test may still own its databases. The function's run ends at
 * Lambda's 15-minute limit; the CLI's has none, and one day is 48 times the runbook's 30-minute RTO
 * objective (a test that long has failed it many times over), and shorter than the schedule's
 * interval (monthly). A test that old is dead, unless it is so slow that the database is dropped in
 * the instant between two of its sessions: then that test fails, and nothing else is lost.
 */
const TEST_DATABASE_MAX_AGE_MS = 24 * 3600_000;

/**
 * When the restore test that made `name` began (ms), if `name` is one only a restore test makes:
 * its scratch database, or the staging database of one (the mark of the scratch name and the id
 * checked, leftovers.ts siblingOf); else undefined. The scratch id's random part was 1 or 2 digits
 * before runId named it.
 */
function restoreTestDatabaseStart(name: string): number | undefined {
  const match = new RegExp(`^(${SCRATCH_PREFIX}([0-9a-z]{8})[0-9a-z]{1,2})(_restore_.*)?$`).exec(name);
  if (!match) return undefined;
  const [, scratch, time, staging] = match;
  if (staging !== undefined && siblingOf(name, scratch)?.kind !== 'restore') return undefined;
  return idTime(time);
}

/**
 * What a killed restore test left on its target server (kill -9 of the CLI, of the function's
 * process during pg_restore): its scratch or staging database, a whole copy of the data, under a
 * name no later run makes again, which the restore's own leftovers check (named after its target)
 * does not look for. One that began more than TEST_DATABASE_MAX_AGE_MS ago (`now`) and that no
 * session is in is dropped, with a plain DROP, refused if a session has connected since: it never
 * ends a session. A recent one with no session is named, left alone (a running test's, between two
 * of its sessions; or a test killed less than a day ago). One with a session is a running test's,
 * or a killed CLI's pg_restore still loading: left alone, and dropped by a later run once it is done.
 * Each is one line on `warn`. A failure here is one line too: the test goes on.
 */
async function dropKilledTestsDatabases(deps: RestoreTestDeps, now: number): Promise<void> {
  const warn = deps.warn ?? deps.log ?? (() => undefined);
  try {
    await withClient(deps.target, deps.maintenanceDatabase ?? 'postgres', async (client) => {
      const { rows } = await boundedQuery<{ datname: string; sessions: number; bytes: string | null }>(
        client,
        `SELECT datname, (SELECT count(*)::int FROM pg_stat_activity a WHERE a.datname = d.datname AND ${CLIENT_SESSION}) AS sessions,
                CASE WHEN has_database_privilege(d.oid, 'CONNECT') THEN pg_database_size(d.oid)::text END AS bytes
           FROM pg_database d WHERE datname LIKE $1 ORDER BY datname`,
        GUARD_READ_BOUND_MS,
        [`${SCRATCH_PREFIX.replace(/_/g, '\\_')}%`],
      );
      for (const { datname, sessions, bytes } of rows) {
        const began = restoreTestDatabaseStart(datname);
        if (began === undefined || sessions > 0) continue;
        const what = `database "${datname}"${bytes === null ? '' : ` (${formatBytes(Number(bytes))})`}, of a restore test started ${utcMinute(began)}`;
        if (now - began <= TEST_DATABASE_MAX_AGE_MS) {
          warn(`${what} and no session is connected to it: left in place, it may be a running test's; if no restore test is running, DROP DATABASE ${quoteIdent(datname)}`);
          continue;
        }
        try {
          await boundedQuery(client, `DROP DATABASE IF EXISTS ${quoteIdent(datname)}`, DROP_BOUND_MS);
          warn(`dropped ${what}, left by a test that was killed (no session was connected to it)`);
        } catch (error) {
          warn(`${what}, left by a test that was killed, could not be dropped (${oneLine(error)}): DROP DATABASE ${quoteIdent(datname)}`);
        }
      }
    });
  } catch (error) {
    warn(`could not look for databases left by killed restore tests on ${deps.target.host}:${deps.target.port}: ${oneLine(error)}`);
  }
}

/** What the report's text names: the database tested, its bucket, and the environment of both (the --env of the commands it prints). */
export interface RestoreTestWhere {
  readonly database: string;
  readonly bucket: string;
  readonly environmentName?: string;
}

/**
 * The report as `restore-test` prints it. A failed report leads with why: a report pasted into a
 * ticket must not say "no backup" when the cause was a password. A passed one whose objectives were
 * missed says so on its verdict line: the restore is verified (exit 0, `ok`), the objectives are
 * the scheduled run's alarms' to page on, but whoever reads the report must not take them as met.
 */
export function restoreTestText(report: RestoreTestReport, where?: RestoreTestWhere): string {
  const missed = [report.rtoMet === false ? 'RTO' : undefined, report.rpoMet === false ? 'RPO' : undefined].filter((m) => m !== undefined);
  const verdict = missed.length === 0 ? 'restore test PASSED' : `restore test PASSED (the restore is verified); ${missed.join(' and ')} objective${missed.length > 1 ? 's' : ''} MISSED`;
  const restored = report.tablesRestored !== undefined;
  const judged = (met: boolean | undefined, objective: number) => `objective ${objective} s ${met === undefined ? 'not judged, no restore completed' : met ? 'met' : 'MISSED'}`;
  const measure = (seconds: number | undefined, met: boolean | undefined, objective: number, what: string) =>
    seconds === undefined ? `not measured: no restore began` : `${seconds.toFixed(1)} s (${what}): ${judged(met, objective)}`;
  return (
    [
      ...(report.ok ? [verdict] : [`restore test FAILED: ${report.error}`]),
      `  backup: ${report.manifestKey ?? 'none taken'}`,
      // Only what was measured: the point in time is proven by the restored row counts too.
      ...(restored ? [`  tables restored: ${report.tablesRestored}, rows: ${report.rowsRestored ?? '-'}${report.pointInTime ? `, point in time proven: ${report.pointInTime.ok}` : ''}`] : []),
      ...report.criticalQueries.map((q) => `  ${q.status.padEnd(7)} ${q.sql} -> ${q.detail}`),
      `  steps: ${Object.entries(report.steps).map(([k, v]) => `${k.replace(/Seconds$/, '')} ${v}s`).join(', ')}`,
      report.rtoAtLeastSeconds !== undefined
        ? `  RTO more than ${report.rtoAtLeastSeconds.toFixed(1)} s (stopped during the restore step): ${judged(report.rtoMet, report.rtoObjectiveSeconds)}`
        : report.rtoSeconds === undefined
          ? '  RTO not measured: no restore completed'
          : `  RTO ${measure(report.rtoSeconds, report.rtoMet, report.rtoObjectiveSeconds, rtoSpan(report.steps.backupSeconds))}`,
      `  RPO ${measure(report.rpoSeconds, report.rpoMet, report.rpoObjectiveSeconds, report.manifestKey?.startsWith(RESTORE_TEST_BACKUP_PREFIX) ? 'age of the backup this test took' : 'age of the backup restored')}`,
      ...latestLine(report.latestPublished, where),
      `  scratch database ${report.scratchDatabase} ${report.scratchCreated ? `dropped: ${report.scratchDropped}` : 'not created'}`,
    ].join('\n') + '\n'
  );
}

/**
 * What the RTO spans, as restoreBackup measures it (its rtoSeconds): from reading the manifest to
 * the swap. The test's own backup comes before and is not in it: a reader adding the two would
 * report an RTO the runbook's restore does not have.
 */
function rtoSpan(backupSeconds: number | undefined): string {
  const backup = backupSeconds === undefined ? '' : `; the backup's ${backupSeconds.toFixed(1)} s not included`;
  return `reading the manifest to the swap: download, load, row counts checked${backup}`;
}

/**
 * The RPO a restore from the catalog would give now: the test's own backup is fresh by design, and
 * its age says nothing of how old the backup a real restore would restore is.
 */
function latestLine(published: RestoreTestReport['latestPublished'], where: RestoreTestWhere | undefined): string[] {
  if (published === undefined || where === undefined) return [];
  const { database, bucket } = where;
  if (published === null) return [`  no published backup of ${database} in s3://${bucket}: a restore from the catalog has nothing to restore`];
  if ('error' in published) return [`  latest published backup of ${database}: could not be read (${published.error})`];
  return [
    `  latest published backup of ${database}: ${published.manifestKey}, ${formatAge(Math.max(0, published.ageSeconds))} old${published.ageSeconds >= 60 ? ` (${published.ageSeconds} s)` : ''}: the RPO of a restore from the catalog now; its checksum is not verified here (check it: ${operatorCommand(where.environmentName, 'backups verify latest')})`,
  ];
}

/**
 * What the restore step needs that the backup step does not (the backup writes the custom format
 * only, so it never runs pg_restore): checked before a backup is taken, or a missing pg_restore or
 * an unwritable temp directory would surface only after the whole backup (minutes on a
 * production-size database). Without a backup to take, the restore's own first steps fail as early.
 */
async function assertCanRestore(deps: RestoreTestDeps, published: ResolvedBackup | undefined): Promise<void> {
  await toolVersion(pgToolPath('pg_restore', deps.pgBinDir), baseChildEnv());
  // The scratch database is created on the target server: a role without CREATEDB, or a server that
  // cannot write (a standby, or the runbook's "DB Read-Only"), would refuse it only after the backup.
  await withClient(deps.target, deps.maintenanceDatabase ?? 'postgres', async (client) => {
    const { rows } = await client.query<{ role: string; createdb: boolean; recovery: boolean; read_only: string; read_only_source: string }>(
      `SELECT current_user AS role, (SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user) AS createdb,
              pg_is_in_recovery() AS recovery, s.setting AS read_only, s.source AS read_only_source
       FROM pg_settings s WHERE s.name = 'default_transaction_read_only'`,
    );
    const { role, createdb, recovery, read_only: readOnly, read_only_source: source } = rows[0];
    const server = `${deps.target.host}:${deps.target.port}`;
    if (recovery) {
      throw new OperatorError(`database server ${server} is a read-only standby (in recovery), and the restore test creates its scratch database there: point PGHOST at the primary (on RDS, not a read replica's endpoint)`, 2);
    }
    if (readOnly === 'on') {
      throw new OperatorError(
        `database server ${server} is read-only for this session (default_transaction_read_only = on, set by: ${source}), and the restore test creates its scratch database there: ${readOnlyFix(source, role, client.database ?? 'postgres')}, then run the test again`,
      );
    }
    if (!createdb) throw cannotCreateDatabases(role, 'the restore test creates its scratch database (loaded as a staging database, then renamed)');
  });
  const dir = deps.tempDir ?? os.tmpdir();
  try {
    await fs.promises.access(dir, fs.constants.W_OK);
  } catch (error) {
    throw new OperatorError(`temp directory ${dir} is not writable (${(error as NodeJS.ErrnoException).code ?? oneLine(error)}): point TMPDIR at an existing, writable directory with room for the backup`, 2);
  }
  // The room the restore step's download needs: the restore's own check, before the backup rather
  // than after it. The .dump this test will download does not exist yet; the last published backup
  // of the same database, dumped the same way, sizes it. Not pg_database_size (the estimate the
  // backup's progress line reads): it counts indexes and uncompressed pages, often several times the
  // dump (an empty database is 7 MiB, its dump a few KiB), and would refuse tests that fit. Without
  // a published backup, the restore's check before its download is the only one.
  const last = published?.manifest.objects.find((o) => o.format === 'custom');
  if (published && last) {
    await checkFreeSpace(dir, last.bytes, deps, `not enough space in TMPDIR (${dir}) for the test's download, sized by the last backup of "${published.manifest.database}" (${last.key}); nothing was backed up`);
  }
}

/**
 * `database`'s latest published backup, as `restore latest` resolves it (manifest only: read, never
 * verified), null when it has none, or why it could not be read: the test goes on either way (the
 * backup step reports S3's own failures), and its report says which.
 */
async function latestPublished(deps: RestoreTestDeps, database: string): Promise<ResolvedBackup | { error: string } | null> {
  try {
    return await resolveBackup(deps, 'latest', { database });
  } catch (error) {
    // A stop during this read is the backup's to report (nothing published), as any stop before it.
    // resolveBackup's own refusal when no pointer names a backup of the database is "none".
    if (error instanceof NoBackupError) return null;
    return { error: oneLine(error) };
  }
}

/**
 * Where a session's default_transaction_read_only comes from decides what turns it off. It is read
 * in the maintenance database, not in the production one whose database-level setting
 * `atmr-dr db read-write` handles (that one does not reach this session).
 */
function readOnlyFix(source: string, role: string, database: string): string {
  if (source === 'configuration file') return 'set default_transaction_read_only off in the server configuration (on RDS, its DB parameter group)';
  if (source === 'database') return `have an admin run ALTER DATABASE ${quoteIdent(database)} RESET default_transaction_read_only`;
  if (source === 'user' || source === 'database user') return `have an admin run ${roleReadOnlyReset({ role, database, defaultSource: source })}`;
  return 'find where it is set (SELECT source FROM pg_settings WHERE name = \'default_transaction_read_only\') and set it off there';
}

/** `ownTimeouts` (connectTo): for the scratch copy, which carries the backed-up database's settings. */
async function withClient<T>(connection: PgConnection, database: string, fn: (client: Client) => Promise<T>, ownTimeouts = false): Promise<T> {
  const client = await connectTo(connection, database, {}, { ownTimeouts });
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** The database's transaction horizon now; reads only (no transaction id is assigned). */
async function transactionHorizon(client: Client): Promise<string> {
  return (await client.query<{ txids: string }>('SELECT txid_current_snapshot()::text AS txids')).rows[0].txids;
}

/** The xmax of `xmin:xmax:xip`: the first transaction id not yet assigned when the snapshot was taken. */
function xmax(snapshot: string): bigint {
  return BigInt(snapshot.split(':')[1]);
}

/**
 * Stops the test once `signal` is aborted, at a step the signal does not cut itself (the restore
 * step has returned, the critical queries): without it a Ctrl-C there was heard by nothing, and the
 * test went on to PASSED and exit 0.
 */
function stopIfAsked(signal: AbortSignal | undefined, where: string): void {
  if (signal?.aborted) throw new OperatorError(`interrupted (${oneLine(signal.reason)}) ${where}`);
}
