import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createGunzip } from 'node:zlib';
import { Client } from 'pg';
import { OperatorError, oneLine } from '../shared/errors';
import { BackupManifest, BackupObject } from '../shared/manifest';
import { PgConnection, libpqEnv, pgClientConfig } from '../shared/pg-connection';
import {
  CatalogDeps,
  DownloadOptions,
  DownloadResult,
  SpaceCheck,
  checkFreeSpace,
  chooseObject,
  downloadAndVerify,
  downloadPath,
  firstError,
  pgBin,
  resolveBackup,
  run,
} from './catalog';
import { DownloadFollowers, GrowingDownload, loadOverlappingDownload } from './streamed-load';

/**
 * Verified restore: resolve the manifest, download the object while hashing it (refused on any
 * size/sha256 mismatch before the server is touched), restore into a staging database beside the
 * target, compare every table's row count with the manifest, and only then swap the staging
 * database in under the target name (rename). Any failure drops the staging database and leaves
 * the target exactly as it was.
 */
export interface RestoreDeps extends CatalogDeps, SpaceCheck {
  /** The server to restore on; its `database` is not written to. */
  readonly connection: PgConnection;
  /** A database to connect to for CREATE/ALTER/DROP DATABASE. @default 'postgres' */
  readonly maintenanceDatabase?: string;
  /** Directory of pg_restore/psql; default: on PATH. */
  readonly pgBinDir?: string;
  /** Parent of the download directory. @default os.tmpdir() */
  readonly tempDir?: string;
  /** pg_restore -j. @default os.availableParallelism() */
  readonly jobs?: number;
  /** Progress lines (stderr on the CLI, the logger in Lambda). */
  readonly log?: (line: string) => void;
  /** Download tuning (ranged GETs). @default catalog DEFAULT_PART_BYTES / DEFAULT_DOWNLOAD_CONCURRENCY */
  readonly partBytes?: number;
  readonly downloadConcurrency?: number;
  /**
   * Load a custom archive while it downloads (streamed-load.ts), or download, verify, then
   * `pg_restore -j`. @default overlap when GNU coreutils' tail is on PATH (Linux, the runner image)
   */
  readonly overlapDownload?: boolean;
  /**
   * With the overlapped load, the biggest table goes through `jobs` COPY sessions at once when it
   * has at least this many rows and at least as many as all the others together (parallel-copy.ts);
   * 0 loads every table through one session, as pg_restore does. @default 100000
   */
  readonly parallelCopyMinRows?: number;
}

export const DEFAULT_PARALLEL_COPY_MIN_ROWS = 100_000;

export interface RestoreOptions {
  /** `latest` or a manifest key. */
  readonly ref: string;
  /** With `latest`: the tier's pointer instead of `latest.json`. */
  readonly tier?: string;
  readonly targetDb: string;
  /** Replace a non-empty target. */
  readonly force?: boolean;
  /** Restore this format (default: custom when present, else plain). */
  readonly format?: 'custom' | 'plain';
  /** Database names that are refused as a target unless `allowProductionOverwrite` (production). */
  readonly protectedDatabases?: readonly string[];
  readonly allowProductionOverwrite?: boolean;
  /** Terminate sessions connected to the target at swap time instead of refusing. */
  readonly terminateConnections?: boolean;
  readonly signal?: AbortSignal;
}

export interface RestoreTimings {
  readonly downloadSeconds: number;
  readonly restoreSeconds: number;
  readonly verifySeconds: number;
  readonly swapSeconds: number;
}

export interface RestoreResult {
  readonly manifestKey: string;
  readonly manifest: BackupManifest;
  readonly object: { readonly key: string; readonly format: 'custom' | 'plain'; readonly bytes: number };
  readonly targetDb: string;
  /** A previous database of that name was replaced. */
  readonly replaced: boolean;
  readonly tablesRestored: number;
  readonly rowsRestored: number;
  readonly timings: RestoreTimings;
  /** Wall time of the whole restore (download + restore + verify + swap), seconds. */
  readonly rtoSeconds: number;
}

export const PRODUCTION_GUARD_FLAG = '--i-understand-this-overwrites-production';
const DATABASE_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

export async function restoreBackup(deps: RestoreDeps, options: RestoreOptions): Promise<RestoreResult> {
  const started = performance.now();
  const log = deps.log ?? (() => undefined);
  const target = options.targetDb;
  if (!DATABASE_NAME.test(target)) {
    throw new OperatorError(`invalid --target-db "${target}": use letters, digits and underscores (at most 63, not starting with a digit)`, 2);
  }
  guardProduction(target, options.protectedDatabases ?? [], options.allowProductionOverwrite);

  const { manifestKey, manifest } = await resolveBackup(deps, options.ref, { tier: options.tier });
  guardProduction(target, [manifest.database], options.allowProductionOverwrite);
  const object = chooseObject(manifestKey, manifest, options.format);

  const admin = new Client(pgClientConfig(deps.connection, deps.maintenanceDatabase ?? 'postgres'));
  await connect(admin, deps.connection, deps.maintenanceDatabase ?? 'postgres');
  const staging = stagingName(target);
  let stagingCreated = false;
  const dir = fs.mkdtempSync(path.join(deps.tempDir ?? os.tmpdir(), 'atmr-dr-restore-'));
  try {
    // Fail fast, before any download: the same checks run again at swap time.
    await checkTarget(admin, deps.connection, target, options);

    const downloadOptions = {
      statfs: deps.statfs,
      factor: deps.factor,
      signal: options.signal,
      partBytes: deps.partBytes,
      concurrency: deps.downloadConcurrency,
    };
    // The row-count check: beside the last restore step when the load overlaps the download (it
    // adds no rows), after the restore otherwise.
    let rowCheck: { rows: number; seconds: number } | undefined;
    const checkRows = async (): Promise<{ rows: number; seconds: number }> => {
      log('comparing row counts with the manifest');
      const checkStarted = performance.now();
      const rows = await verifyRowCounts(deps.connection, staging, manifest, manifestKey, Math.min(4, deps.jobs ?? os.availableParallelism()));
      rowCheck = { rows, seconds: (performance.now() - checkStarted) / 1000 };
      return rowCheck;
    };
    let download: DownloadResult;
    let restoreStarted: number;
    const overlap = object.format === 'custom' && (deps.overlapDownload ?? (await canFollowDownloads()));
    if (overlap) {
      // The download overlaps the load: the schema and the table data stream into the staging
      // database as the bytes arrive in order; the sha256 verdict comes before anything else
      // (indexes, constraints, the swap), and a mismatch drops the staging database.
      await checkFreeSpace(dir, object.bytes, downloadOptions);
      log(`downloading ${object.key} (${object.bytes} bytes) and loading it into staging database ${staging}`);
      restoreStarted = performance.now();
      // Created while the first part downloads; the schema load waits for it.
      const databaseReady = admin.query(`CREATE DATABASE ${ident(staging)} TEMPLATE template0`).then(() => {
        stagingCreated = true;
      });
      databaseReady.catch(() => undefined);
      download = await loadWhileDownloading(deps, staging, object, manifest, dir, downloadOptions, databaseReady, checkRows);
    } else {
      log(`downloading ${object.key} (${object.bytes} bytes)`);
      download = await downloadAndVerify(deps, object, dir, downloadOptions);
      log(`restoring into staging database ${staging}`);
      restoreStarted = performance.now();
      await admin.query(`CREATE DATABASE ${ident(staging)} TEMPLATE template0`);
      stagingCreated = true;
      if (object.format === 'custom') await loadCustomFromFile(deps, staging, download.file);
      else await loadPlain(deps, staging, download.file);
    }
    fs.rmSync(download.file, { force: true });
    const restoreSeconds = (performance.now() - restoreStarted) / 1000;

    const { rows: rowsRestored, seconds: verifySeconds } = rowCheck ?? (await checkRows());

    const swapStarted = performance.now();
    const replaced = await swapIn(admin, deps.connection, staging, target, options);
    stagingCreated = false;
    const swapSeconds = (performance.now() - swapStarted) / 1000;
    log(`restored ${manifestKey} into ${target}`);

    return {
      manifestKey,
      manifest,
      object: { key: object.key, format: object.format, bytes: object.bytes },
      targetDb: target,
      replaced,
      tablesRestored: manifest.tables.length,
      rowsRestored,
      timings: { downloadSeconds: download.seconds, restoreSeconds, verifySeconds, swapSeconds },
      rtoSeconds: (performance.now() - started) / 1000,
    };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
    if (stagingCreated) {
      await admin.query(`DROP DATABASE IF EXISTS ${ident(staging)} WITH (FORCE)`).catch((error: unknown) => {
        log(`could not drop staging database ${staging}: ${oneLine(error)}; drop it by hand`);
      });
    }
    await admin.end().catch(() => undefined);
  }
}

function guardProduction(target: string, protectedNames: readonly string[], allowed: boolean | undefined): void {
  if (!allowed && protectedNames.includes(target)) {
    throw new OperatorError(
      `refusing to restore over "${target}", the production/source database: restore erases it; restore into a new name and swap (see docs/restore.md), or pass ${PRODUCTION_GUARD_FLAG} with --force`,
      2,
    );
  }
}

interface TargetState {
  readonly exists: boolean;
  readonly relations: number;
  readonly sessions: { pid: number; application: string }[];
}

async function inspectTarget(admin: Client, connection: PgConnection, target: string): Promise<TargetState> {
  const exists = (await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [target])).rowCount === 1;
  if (!exists) return { exists, relations: 0, sessions: [] };
  // Sessions first: our own short look inside the target below must not count as one.
  const sessions = await admin.query<{ pid: number; application: string }>(
    `SELECT pid, coalesce(nullif(application_name, ''), usename::text, '?') AS application
       FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`,
    [target],
  );
  const client = new Client(pgClientConfig(connection, target));
  let relations: number;
  await connect(client, connection, target);
  try {
    const result = await client.query<{ n: string }>(
      `SELECT count(*) AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
          AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')`,
    );
    relations = Number(result.rows[0].n);
  } finally {
    await client.end().catch(() => undefined);
  }
  return { exists, relations, sessions: sessions.rows };
}

async function checkTarget(admin: Client, connection: PgConnection, target: string, options: RestoreOptions): Promise<TargetState> {
  const state = await inspectTarget(admin, connection, target);
  if (state.exists && state.relations > 0 && !options.force) {
    throw new OperatorError(
      `target database "${target}" exists and is not empty (${state.relations} relations): pass --force to replace it, or restore into a new name`,
      2,
    );
  }
  if (state.sessions.length > 0 && !options.terminateConnections) {
    const who = [...new Set(state.sessions.map((s) => s.application))].slice(0, 3).join(', ');
    throw new OperatorError(
      `target database "${target}" has ${state.sessions.length} open connection(s) (${who}): stop its clients (killswitch maintenance, scale the API/workers to 0), or pass --terminate-connections`,
      2,
    );
  }
  return state;
}

async function swapIn(admin: Client, connection: PgConnection, staging: string, target: string, options: RestoreOptions): Promise<boolean> {
  const state = await checkTarget(admin, connection, target, options);
  if (!state.exists) {
    await admin.query(`ALTER DATABASE ${ident(staging)} RENAME TO ${ident(target)}`);
    return false;
  }
  const previous = stagingName(target, 'old');
  try {
    if (options.terminateConnections) {
      // Block reconnects, then end the sessions: the rename needs a database nobody is in.
      await admin.query(`ALTER DATABASE ${ident(target)} ALLOW_CONNECTIONS false`);
      await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [target]);
      await waitForNoSessions(admin, target);
    }
    await admin.query(`ALTER DATABASE ${ident(target)} RENAME TO ${ident(previous)}`);
  } catch (error) {
    if (options.terminateConnections) await admin.query(`ALTER DATABASE ${ident(target)} ALLOW_CONNECTIONS true`).catch(() => undefined);
    throw new OperatorError(`cannot take "${target}" out of the way (${oneLine(error)}); it is unchanged: stop its clients and retry`);
  }
  try {
    await admin.query(`ALTER DATABASE ${ident(staging)} RENAME TO ${ident(target)}`);
  } catch (error) {
    await admin.query(`ALTER DATABASE ${ident(previous)} RENAME TO ${ident(target)}`).catch(() => undefined);
    throw new OperatorError(`cannot rename the restored database to "${target}" (${oneLine(error)}); the previous database was put back`);
  }
  await admin.query(`DROP DATABASE ${ident(previous)} WITH (FORCE)`);
  return true;
}

async function waitForNoSessions(admin: Client, database: string): Promise<void> {
  for (let i = 0; i < 50; i += 1) {
    const r = await admin.query('SELECT 1 FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [database]);
    if (r.rowCount === 0) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/**
 * The custom archive loads into the staging database while it downloads (streamed-load.ts); the
 * download is verified before any load can end, and post-data reads only the verified file.
 */
async function loadWhileDownloading(
  deps: RestoreDeps,
  database: string,
  object: BackupObject,
  manifest: BackupManifest,
  dir: string,
  options: DownloadOptions,
  databaseReady: Promise<unknown>,
  whenRowsLoaded: () => Promise<unknown>,
): Promise<DownloadResult> {
  const file = downloadPath(dir, object);
  // The followers start before the first byte: the file exists (empty) from here on.
  fs.writeFileSync(file, '', { mode: 0o600 });
  const followers = new DownloadFollowers(file);
  const archive = new GrowingDownload(file);
  const download = downloadAndVerify(deps, object, dir, { ...options, onProgress: (bytes) => archive.progress(bytes) }).then(
    (result) => {
      followers.finish();
      archive.finish();
      return result;
    },
    (error: unknown) => {
      followers.abort();
      archive.fail(error);
      throw error;
    },
  );
  try {
    await loadOverlappingDownload({
      pgRestore: pgBin(deps.pgBinDir, 'pg_restore'),
      env: { ...process.env, ...libpqEnv(deps.connection, database) },
      database,
      databaseReady,
      file,
      followers,
      download,
      tables: manifest.tables,
      jobs: deps.jobs ?? os.availableParallelism(),
      dir,
      parallelCopyMinRows: deps.parallelCopyMinRows ?? DEFAULT_PARALLEL_COPY_MIN_ROWS,
      archive,
      log: deps.log,
      whenRowsLoaded,
      connect: async () => {
        const client = new Client(pgClientConfig(deps.connection, database));
        await connect(client, deps.connection, database);
        return client;
      },
    });
  } finally {
    // Whatever failed, the CREATE DATABASE has settled before the caller decides what to drop.
    await databaseReady.catch(() => undefined);
    await archive.close();
  }
  return download;
}

/** The whole custom archive from the verified file: `pg_restore -j <cores>`. */
async function loadCustomFromFile(deps: RestoreDeps, database: string, file: string): Promise<void> {
  const jobs = deps.jobs ?? os.availableParallelism();
  const result = await run(pgBin(deps.pgBinDir, 'pg_restore'), ['--no-owner', '--exit-on-error', '-j', String(jobs), '-d', database, file], libpqEnv(deps.connection, database));
  if (result.code !== 0) throw new OperatorError(`pg_restore failed (exit ${result.code}): ${firstError(result.stderr)}; the target was not touched`);
}

/** The overlapped load follows the growing download with GNU tail (`--pid`, `-s`): BSD tail cannot. */
async function canFollowDownloads(): Promise<boolean> {
  const result = await run('tail', ['--version'], {}).catch(() => undefined);
  return result?.code === 0 && /GNU coreutils/.test(result.stdout);
}

async function loadPlain(deps: RestoreDeps, database: string, file: string): Promise<void> {
  const env = libpqEnv(deps.connection, database);
  const sql = fs.createReadStream(file).pipe(createGunzip());
  const result = await run(
    pgBin(deps.pgBinDir, 'psql'),
    ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '--single-transaction', '-o', '/dev/null', '-d', database, '-f', '-'],
    env,
    sql,
  );
  if (result.code !== 0) throw new OperatorError(`psql failed (exit ${result.code}): ${firstError(result.stderr)}; the target was not touched`);
}

/** Exact row counts of the restored tables against the manifest's, naming every difference. */
export async function verifyRowCounts(
  connection: PgConnection,
  database: string,
  manifest: BackupManifest,
  manifestKey: string,
  parallel = 2,
): Promise<number> {
  // Biggest tables first, spread over a few sessions: the check is a scan of every table.
  const queue = [...manifest.tables].sort((a, b) => b.rows - a.rows);
  const differences: string[] = [];
  let rows = 0;
  const worker = async (): Promise<void> => {
    const client = new Client(pgClientConfig(connection, database));
    await connect(client, connection, database);
    try {
      for (let table = queue.shift(); table; table = queue.shift()) {
        const name = `${table.schema}.${table.name}`;
        try {
          const result = await client.query<{ n: string }>(`SELECT count(*) AS n FROM ${ident(table.schema)}.${ident(table.name)}`);
          const actual = Number(result.rows[0].n);
          rows += actual;
          if (actual !== table.rows) differences.push(`${name} has ${actual} rows, manifest ${table.rows}`);
        } catch (error) {
          differences.push(`${name} is missing (${oneLine(error)})`);
        }
      }
    } finally {
      await client.end().catch(() => undefined);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(parallel, queue.length)) }, worker));
  if (differences.length > 0) {
    differences.sort();
    const more = differences.length > 3 ? ` and ${differences.length - 3} more` : '';
    throw new OperatorError(`restored data differs from manifest ${manifestKey}: ${differences.slice(0, 3).join('; ')}${more}; the target was not touched`);
  }
  return rows;
}

async function connect(client: Client, connection: PgConnection, database: string): Promise<void> {
  try {
    await client.connect();
  } catch (error) {
    throw new OperatorError(
      `cannot connect to ${connection.user}@${connection.host}:${connection.port}/${database}: ${oneLine(error)}; check PGHOST/PGPORT/PGUSER/PGPASSWORD (or the secret)`,
    );
  }
}

/** A sibling name, unique per run, short enough for PostgreSQL's 63-byte limit. */
export function stagingName(target: string, kind: 'restore' | 'old' = 'restore'): string {
  const suffix = `_${kind}_${Date.now().toString(36)}${Math.floor(Math.random() * 1296).toString(36)}`;
  return `${target.slice(0, 63 - suffix.length)}${suffix}`;
}

export function ident(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

