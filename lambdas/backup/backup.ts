import { AbortMultipartUploadCommand, GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { Logger } from '@aws-lambda-powertools/logger';
import { MetricUnit, type Metrics } from '@aws-lambda-powertools/metrics';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import type { Readable, Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import type { Client } from 'pg';
import { OperatorError, oneLine } from '../shared/errors';
import { formatBytes, isoSecond } from '../shared/format';
import { isRefusedStatement } from '../shared/pg-errors';
import { type BackupRoles, readBackupRoles } from '../shared/backup-roles';
import { type DatabaseProperties, readDatabaseProperties } from '../shared/database-properties';
import { BackupManifestSchema, LatestPointerSchema, parseManifest, type BackupManifest, type BackupObject, type LatestPointer } from '../shared/manifest';
import { safeJson } from '../shared/json';
import { systemClockOffsetMs } from '../shared/clock-offset';
import { connectTo, type PgConnection } from '../shared/pg-connection';
import { countFailure, LOCKED_TABLE_FIX, openCountedSnapshot, privilegeRefused, rowSecurityFix } from './counted-snapshot';
import { LockCycleError, LockCycleWatch, LockWaitWatch, SideLooks } from './lock-wait';
import {
  anyStampKey,
  backupObjectKeys,
  type BackupObjectKeys,
  CLOCK_SKEW_TOLERANCE_MS,
  LATEST_POINTER_KEY,
  latestDatabasePointerKey,
  latestDatabaseTierPointerKey,
  latestTierPointerKey,
  manifestKeyStamp,
  manifestKeyStartedAt,
  type BackupTier,
  unfinishedObjectRemoval,
} from '../shared/s3-layout';
import { getTextIfExists, getVersionedTextIfExists, isNoSuchBucket, isNotFound, lostConditionalWrite, missingBucketError, s3ErrorCause, s3Failure } from '../shared/s3-objects';
import { isAccessDenied } from '../shared/aws-errors';
import { parseBackupTier } from '../shared/tiers';
import { isErrorLine, pgToolPath } from '../shared/postgres';
import { igzipArgs, resolvePlainCompressor, type PlainCompressor, type PlainCompressorPreference } from './compressor';
import { HashingStream } from './hashing-stream';
import {
  assertPgDumpCanDump,
  baseChildEnv,
  buildRowCountQueries,
  childEnv,
  parseServerVersionNum,
  type PgVersion,
  toolVersion,
  type TableRef,
} from './pg-tools';
import { DEFAULT_COMPRESSION_LEVEL, invalidCompressionLevel } from './runner-contract';

export type BackupFormat = 'custom' | 'plain';
export interface BackupProgress {
  readonly bytes: number;
  readonly bytesPerSecond: number;
  /** When the dump has stood still a while: what it waits for (a table another session holds locked), see lock-wait.ts. */
  readonly waiting?: string;
}
export interface RunBackupDeps {
  readonly s3: S3Client;
  readonly bucket: string;
  readonly connection: PgConnection;
  /** Directory of pg_dump/pg_restore; default: found on PATH. */
  readonly pgBinDir?: string;
  readonly metrics?: Metrics;
  readonly now?: () => Date;
  /** The dump's bytes, about once a second while pg_dump runs, and once more when it has ended. */
  readonly onProgress?: (p: BackupProgress) => void;
  /**
   * Phase lines for a person watching (the CLI's stderr): once the dump has ended, what is left
   * before the run is done (the rest of the uploads, then the manifest and the pointers). 'warn':
   * a line a run nobody watches must log too (a scheduled run's log, scheduled-run.ts): the run
   * ended an attempt and took a new snapshot for an application statement caught between its
   * locks and pg_dump's.
   */
  readonly log?: (line: string, level?: 'warn') => void;
  readonly signal?: AbortSignal;
  /**
   * Called once, when the run has passed its last check for a stop and writes the manifest, then
   * the latest pointers: a stop from then on is finished first (cut half-way, the pointers would
   * name different backups), and whoever sent it should hear that at once, not a cleanup.
   */
  readonly onPublishing?: () => void;
  /** Who gzips the plain SQL (compressor.ts); default auto: igzip when present, else zlib. */
  readonly plainCompressor?: PlainCompressorPreference;
  /** Path of igzip; default: found on PATH. */
  readonly igzipPath?: string;
  /** How long a run that lost its second to another run waits for that run's manifest; default OTHER_RUN_WAIT_MS. */
  readonly otherRunWaitMs?: number;
}
export interface RunBackupOptions {
  readonly tier: BackupTier;
  /** default ['custom','plain'] */
  readonly formats?: readonly BackupFormat[];
  /** 0-9, default 1 (config backups.compressionLevel; contract said 6, see docs/backups.md) */
  readonly compressionLevel?: number;
  readonly partSizeBytes?: number;
  readonly queueSize?: number;
  /**
   * S3 Object Lock in compliance mode for every object of this run (dumps and manifest), retained
   * this many days from the start: nobody, the root user included, can delete or overwrite them
   * before. Needs a bucket with Object Lock enabled. @default - no per-object retention
   */
  readonly complianceRetentionDays?: number;
  /**
   * Keys under this prefix instead of the tier prefixes, and no latest pointer written: a backup
   * that must never become anybody's latest (the restore test's own). @default '' (a published backup)
   */
  readonly unpublishedPrefix?: string;
  /**
   * How long pg_dump and the row counts wait for a table another session holds locked (a migration,
   * VACUUM FULL, LOCK TABLE) before the run fails naming it. @default DEFAULT_LOCK_WAIT_TIMEOUT_MS
   */
  readonly lockWaitTimeoutMs?: number;
  /**
   * A scheduled run's scheduled time (EventBridge Scheduler's, the same on every delivery of one
   * run): a backup of this tier and database published since then ends the run with nothing to do
   * (backupTakenSince). @default - a manual run, which always backs up
   */
  readonly scheduledTime?: Date;
}
export interface BackupResult {
  readonly manifestKey: string;
  readonly manifest: BackupManifest;
  /**
   * Set when another run of the same tier and database took this run's second and published it:
   * the one line saying so. manifestKey and manifest are that run's; this run published nothing.
   */
  readonly skipped?: string;
}

export const BACKUP_FORMATS: readonly BackupFormat[] = ['custom', 'plain'];
/** zlib level of both formats (defined with the runner's contract, see there). */
export { DEFAULT_COMPRESSION_LEVEL };
/**
 * Multipart part size and parts in flight per upload: memory is bounded by about 2 x partSize x
 * (queueSize + 1). 5 MiB (S3's minimum) keeps the runner's peak RSS lowest (bench: ~20 MiB less than
 * 8 MiB, same speed); S3's 10,000 parts then cap one object at 48.8 GiB (config backups.partSizeMiB).
 */
export const DEFAULT_PART_SIZE_BYTES = 5 * 1024 * 1024;
export const DEFAULT_QUEUE_SIZE = 2;
const MIN_PART_SIZE_BYTES = 5 * 1024 * 1024;
/**
 * S3 client settings of the operator's `atmr-dr backup`: a CRC32 checksum on every upload (the SDK
 * default, as the scheduled runner sends). A bucket with a default Object Lock retention
 * (`backups.objectLockGovernanceDays`, on in the example environment) refuses any PutObject or
 * UploadPart without Content-MD5 or a checksum header, so without it every manual backup (and its
 * pointers) would fail there. The CRC32 costs ~10% of the client's CPU per uploaded byte (bench).
 */
export const BACKUP_S3_CLIENT_OVERRIDES = { requestChecksumCalculation: 'WHEN_SUPPORTED' } as const;
/**
 * Buffer between pipeline stages: enough slack that a stage busy for a moment (an upload part being
 * sent, a scheduler hiccup) does not stall the others on a 2-core runner. Bounded, and small next to
 * the upload parts.
 */
const STAGE_BUFFER_BYTES = 1024 * 1024;
/** zlib output chunk: fewer thread-pool round trips than the 16 KiB default (~10% less CPU). */
const GZIP_CHUNK_BYTES = 256 * 1024;
const PROGRESS_INTERVAL_MS = 1000;
/**
 * pg_read_all_data, the backup role's grant, does not cover large objects, and PostgreSQL 15 has no
 * default privileges for them: one created after the role's grants stops every dump.
 */
const LARGE_OBJECT_FIX =
  "; the backup role may not read that large object (pg_read_all_data does not cover large objects): as its owner, GRANT SELECT ON LARGE OBJECT <oid> TO the backup role, for it and for each one the application creates (docs/backup-runner.md, \"The runner's database role\"), then run the backup again";

/** A dump that has not moved for this long is looked at (lock-wait.ts): a lock wait is worth naming, a pause is not. */
const STALL_LOOK_AFTER_MS = 3000;
const KILL_GRACE_MS = 5000;
/**
 * A table locked by another session: without a bound, the run waits as long as that session does
 * (forever, for a forgotten open transaction), printing "0 B dumped", and no backup is taken
 * meanwhile. Five minutes outlast an ordinary migration's lock and leave a Lambda runner time to fail
 * with the reason.
 */
export const DEFAULT_LOCK_WAIT_TIMEOUT_MS = 5 * 60_000;
const KEY_CLAIM_ATTEMPTS = 3;
/**
 * How long a run that lost a write-once key to another run of its second waits for that run's
 * manifest. The other run stored its first object: what it has left is the tail of its other
 * upload (a few parts) and the manifest, seconds at most; two minutes cover a slow S3 and still end
 * a run whose rival died well before the next schedule.
 */
export const OTHER_RUN_WAIT_MS = 120_000;
const OTHER_RUN_LOOK_MS = 1000;
/**
 * Snapshots a run takes when the application's statement is caught between the run's locks and
 * pg_dump's (lock-wait.ts): each attempt is ended within seconds to let it run, and the next one is
 * taken after it. Three meet an application that truncates a table now and then; one that does it
 * each time the run starts is a schedule to change, not a wait to prolong.
 */
const LOCK_CYCLE_ATTEMPTS = 3;
/** How often a pg_dump that has not yet written a byte is checked for such a cycle: the application waits about this long. */
const LOCK_CYCLE_LOOK_MS = 1000;
const NOTHING_PUBLISHED = 'backup failed, nothing published (no manifest, latest pointers unchanged)';
/** How long a failure waits for pg_dump's / pg_restore's own exit status, to report the root cause. */
const ROOT_CAUSE_WAIT_MS = 1500;
/**
 * How long a failed run waits for S3 to abort its multipart uploads. The abort only tidies (the
 * bucket's AbortIncompleteMultipartUpload rule removes the parts anyway), and an S3 that went silent
 * would hold a stopped run for minutes (socket timeout times retries) before it exits.
 */
const ABORT_UPLOAD_WAIT_MS = 5000;
const STDERR_TAIL_CHARS = 8192;

const logger = new Logger({ serviceName: 'backup' });

/** Validates a list of formats (CLI `--formats`, events): known names, no repeats, at least one. */
export function parseFormats(values: readonly string[]): BackupFormat[] {
  const names = values.map((v) => v.trim()).filter((v) => v !== '');
  const unknown = names.filter((n) => !(BACKUP_FORMATS as readonly string[]).includes(n));
  if (names.length === 0 || unknown.length > 0) {
    throw new OperatorError(
      `invalid backup format${unknown.length > 1 ? 's' : ''} "${unknown.join(',') || values.join(',')}": use custom, plain or custom,plain`,
      2,
    );
  }
  // Stable order (custom first) so manifests list objects the same way whatever the input order.
  return BACKUP_FORMATS.filter((f) => names.includes(f));
}

/**
 * A compression level as a number (config, events, the CLI's parsed flag): an integer from 0 to 9.
 * Text is the caller's to parse (the CLI reads `--compression-level` in bin/cli/backup.ts).
 */
export function assertCompressionLevel(level: number): number {
  if (!Number.isInteger(level) || level < 0 || level > 9) throw invalidCompressionLevel(level);
  return level;
}

/**
 * One backup run: pg_dump in custom format from an exported REPEATABLE READ snapshot,
 * streamed to S3 while the plain `.sql.gz` is derived from the same stream by pg_restore, with exact
 * row counts taken in the same snapshot. All-or-nothing: the manifest, then the `latest` pointers,
 * are written only after every process exited cleanly and every upload completed. Any failure
 * aborts both uploads and throws a one-line OperatorError; nothing is published then.
 */
export async function runBackup(deps: RunBackupDeps, options: RunBackupOptions): Promise<BackupResult> {
  const now = deps.now ?? (() => new Date());
  const startedAt = now();
  deps.metrics?.addDimension('Tier', options.tier);
  try {
    const result = await backupOnce(deps, options, startedAt, now);
    // The other run that published this second counts its own backup: counting it here too would double it.
    if (result.skipped) return result;
    const bytes = result.manifest.objects.reduce((sum, o) => sum + o.bytes, 0);
    deps.metrics?.addMetric('BackupSuccess', MetricUnit.Count, 1);
    deps.metrics?.addMetric('BackupDurationSeconds', MetricUnit.Seconds, result.manifest.durationMs / 1000);
    deps.metrics?.addMetric('BackupBytes', MetricUnit.Bytes, bytes);
    return result;
  } catch (error) {
    deps.metrics?.addMetric('BackupFailure', MetricUnit.Count, 1);
    if (error instanceof OperatorError) throw error;
    throw new OperatorError(`backup failed, nothing published: ${oneLine(error)}`);
  }
}

async function backupOnce(deps: RunBackupDeps, options: RunBackupOptions, firstStart: Date, now: () => Date): Promise<BackupResult> {
  const tier = parseBackupTier(options.tier);
  const formats = parseFormats(options.formats ?? BACKUP_FORMATS);
  const level = assertCompressionLevel(options.compressionLevel ?? DEFAULT_COMPRESSION_LEVEL);
  const partSize = options.partSizeBytes ?? DEFAULT_PART_SIZE_BYTES;
  const queueSize = options.queueSize ?? DEFAULT_QUEUE_SIZE;
  if (!Number.isInteger(partSize) || partSize < MIN_PART_SIZE_BYTES) {
    throw new OperatorError(`invalid part size ${partSize}: S3 multipart parts are at least ${MIN_PART_SIZE_BYTES} bytes`, 2);
  }
  if (!Number.isInteger(queueSize) || queueSize < 1) throw new OperatorError(`invalid upload queue size ${queueSize}: use a positive integer`, 2);
  const lockWaitMs = options.lockWaitTimeoutMs ?? DEFAULT_LOCK_WAIT_TIMEOUT_MS;
  if (!Number.isInteger(lockWaitMs) || lockWaitMs < 1) throw new OperatorError(`invalid lock wait timeout ${lockWaitMs}: use a positive number of milliseconds`, 2);
  throwIfAborted(deps.signal);
  if (options.scheduledTime) {
    const taken = await backupTakenSince(deps, tier, formats, options.scheduledTime, firstStart, options.unpublishedPrefix ?? '');
    if (taken) return await skippedFor(deps, tier, taken, options.unpublishedPrefix ?? '');
  }

  const { connection, s3, bucket } = deps;
  const env = childEnv(connection);
  const writeOnce = writeOnceParams(options.complianceRetentionDays, firstStart);
  const pgDumpPath = pgToolPath('pg_dump', deps.pgBinDir);
  const pgRestorePath = pgToolPath('pg_restore', deps.pgBinDir);

  // Fail fast, before touching the database: the tools exist, and the bucket answers. The checks
  // are independent (a process start each, one S3 request): they run at the same time.
  const plain = formats.includes('plain');
  const [pgDumpVersion, , compressor, { keys, startedAt }] = await Promise.all([
    toolVersion(pgDumpPath, env),
    plain ? toolVersion(pgRestorePath, baseChildEnv()) : undefined,
    plain ? resolvePlainCompressor(level, deps.plainCompressor, deps.igzipPath) : undefined,
    claimKeys(s3, bucket, tier, connection.database, firstStart, now, options.unpublishedPrefix ?? '', deps.signal),
  ]);

  // This run's mark on each dump object it writes (ownDumpWrite): one per run, whatever its attempts.
  const runToken = randomUUID();
  const attempt = { deps, env, keys, formats, level, compressor, partSize, queueSize, pgDumpPath, pgRestorePath, pgDumpVersion, writeOnce, lockWaitMs, runToken };
  const unpublishedPrefix = options.unpublishedPrefix ?? '';
  let manifest: BackupManifest;
  try {
    manifest = await dumpAndWriteManifest(attempt, tier, startedAt, now, unpublishedPrefix);
  } catch (error) {
    if (!(error instanceof LostWriteError)) throw error;
    const other = await awaitOtherRun(deps, tier, keys, formats, startedAt, error);
    if (other.skipped) return await skippedFor(deps, tier, other, unpublishedPrefix);
    manifest = other.manifest;
  }
  if (!unpublishedPrefix) await publishPointers(s3, bucket, tier, connection.database, keys.manifest, deps.log ?? (() => undefined));
  return { manifestKey: keys.manifest, manifest };
}

/**
 * A run that ends with nothing to do, the tier's backup taken by another run, still points `latest`
 * at that backup: the other run may have published its manifest and then failed on the pointers
 * (paged once, for that), and without this the age metric and the restore's `latest` stay on the
 * backup before it. publishPointers never moves a pointer back to an older backup.
 */
async function skippedFor(deps: RunBackupDeps, tier: BackupTier, other: BackupResult, unpublishedPrefix: string): Promise<BackupResult> {
  if (!unpublishedPrefix) await publishPointers(deps.s3, deps.bucket, tier, deps.connection.database, other.manifestKey, deps.log ?? (() => undefined));
  return other;
}

/** The dump (and its attempts), then the manifest; the latest pointers are the caller's. */
async function dumpAndWriteManifest(attempt: AttemptInput, tier: BackupTier, startedAt: Date, now: () => Date, unpublishedPrefix: string): Promise<BackupManifest> {
  const { deps, keys, pgDumpVersion, writeOnce } = attempt;
  const { connection, s3, bucket } = deps;
  let dumped: DumpedAttempt | undefined;
  for (let n = 1; !dumped; n += 1) {
    try {
      dumped = await dumpAttempt(attempt, n > 1);
    } catch (error) {
      // The application's statement caught between the run's locks and pg_dump's (lock-wait.ts) has
      // run once the attempt ended; a new snapshot waits for it to commit and is taken after it. The
      // attempt ended before pg_dump wrote a byte (the watch looks only until then): no upload has a
      // part, none completed, so the keys claimed above are still free for the next attempt (and
      // If-None-Match would refuse an overwrite anyway). An application that does it again each time
      // fails the run after LOCK_CYCLE_ATTEMPTS, naming the statement.
      if (!(error instanceof LockCycleError)) throw error;
      // An abort that landed while this attempt was ending stops the run here, before a line that
      // says another attempt starts.
      if (deps.signal?.aborted) throw abortedRun(deps.signal);
      if (n >= LOCK_CYCLE_ATTEMPTS) {
        throw new OperatorError(
          `${NOTHING_PUBLISHED}: ${error.message}, on each of ${n} attempts (each ended so that it could run): let the application finish changing that table (TRUNCATE, ALTER TABLE), then run the backup again`,
        );
      }
      deps.log?.(`backup: ${error.message}: ended this attempt so that it can run; starting again (attempt ${n + 1} of ${LOCK_CYCLE_ATTEMPTS})`, 'warn');
    }
  }
  const { serverVersion, txids, streamed, databaseProperties, roles } = dumped;
  const finishedAt = now();
  const manifest = BackupManifestSchema.parse({
    schema: 1,
    database: connection.database,
    tier,
    startedAt: startedAt.toISOString(),
    finishedAt: finishedAt.toISOString(),
    durationMs: Math.max(0, finishedAt.getTime() - startedAt.getTime()),
    serverVersion: serverVersion.text,
    pgDumpVersion: pgDumpVersion.text,
    objects: streamed.objects,
    tables: streamed.tables,
    snapshot: txids,
    ...(databaseProperties !== undefined && { databaseProperties }),
    ...(roles !== undefined && { roles }),
  } satisfies BackupManifest);
  // Stopped between the uploads and the manifest: its objects are stored, and named as left.
  if (deps.signal?.aborted) throw new OperatorError(`${NOTHING_PUBLISHED}: backup aborted (${abortReason(deps.signal)})${leftWithoutManifest(manifest.objects)}`);
  deps.onPublishing?.();
  deps.log?.(`upload: publishing the manifest${unpublishedPrefix ? '' : ' and the latest pointers'}`);
  await putJson(s3, bucket, keys.manifest, manifest, 'writing the manifest', writeOnce).catch((error: unknown) => {
    if (error instanceof LostWriteError) throw error;
    // The dump objects are stored, but without their manifest no reader lists or restores them
    // (the tier's lifecycle rule expires them): the run published nothing, as any earlier failure.
    const exitCode = error instanceof OperatorError ? error.exitCode : 1;
    throw new OperatorError(`${NOTHING_PUBLISHED}: ${oneLine(error)}${leftWithoutManifest(manifest.objects)}`, exitCode);
  });
  return manifest;
}

interface AttemptInput {
  readonly deps: RunBackupDeps;
  readonly env: NodeJS.ProcessEnv;
  readonly keys: BackupObjectKeys;
  readonly formats: readonly BackupFormat[];
  readonly level: number;
  readonly compressor: PlainCompressor | undefined;
  readonly partSize: number;
  readonly queueSize: number;
  readonly pgDumpPath: string;
  readonly pgRestorePath: string;
  readonly pgDumpVersion: PgVersion;
  readonly writeOnce: WriteOnceParams;
  readonly lockWaitMs: number;
  /** Written as user metadata (RUN_TOKEN_METADATA) on each dump object: tells this run's own write from another run's. */
  readonly runToken: string;
}

interface DumpedAttempt {
  readonly serverVersion: PgVersion;
  /** txid_current_snapshot() of the dump's snapshot. */
  readonly txids: string;
  readonly streamed: StreamedDump;
  /** Read just before the snapshot; undefined when the read failed (a warning said so). */
  readonly databaseProperties: DatabaseProperties | undefined;
  /** Read with them; undefined when the read failed (a warning said so). */
  readonly roles: BackupRoles | undefined;
}

/**
 * One snapshot and its dump, on a connection of its own, committed and closed when both readers
 * are done. Rejects with a LockCycleError when the application's statement is caught between the
 * snapshot's locks and pg_dump's (lock-wait.ts), once the attempt has ended and released it.
 * `answeredBefore`: an earlier attempt of this run connected with the same settings (connectTo).
 */
async function dumpAttempt(input: AttemptInput, answeredBefore: boolean): Promise<DumpedAttempt> {
  const { deps, lockWaitMs } = input;
  const { connection } = deps;
  // An abort that came while the previous attempt was ending (or while this one connected) has
  // already fired: no listener added from here on would hear it, and the new snapshot's LOCK TABLE
  // would wait behind the application's open transaction for the whole lock wait bound.
  if (deps.signal?.aborted) throw abortedRun(deps.signal);
  // An attempt after a standoff (LockCycleError) whose connection is refused: the server that took
  // the first attempt's went away (a restart, a failover), and the settings are not what to check.
  const client = await connectTo(connection, connection.database, {}, { answeredBefore });
  // One side connection for the attempt's looks, whichever watches use it (lock-wait.ts).
  const looks = new SideLooks(connection);
  let lockWatch: LockWaitWatch | undefined;
  try {
    if (deps.signal?.aborted) throw abortedRun(deps.signal);
    const session = (await client.query<{ version: string; pid: number }>("SELECT current_setting('server_version_num') AS version, pg_backend_pid() AS pid")).rows[0];
    const serverVersion = parseServerVersionNum(session.version);
    assertPgDumpCanDump(serverVersion, input.pgDumpVersion);

    // The snapshot must outlive pg_dump's import of it: this transaction stays open until the end.
    // lock_timeout bounds the LOCK TABLE of the tables to count (counted-snapshot.ts), taken before
    // pg_dump starts: a table another session holds is waited for there first, as long as pg_dump
    // would wait for it (--lock-wait-timeout).
    await client.query(`SET idle_in_transaction_session_timeout = 0; SET statement_timeout = 0; SET lock_timeout = ${lockWaitMs}`);
    // A failed or interrupted run closes this connection while it may be queued behind another
    // session's lock: without this check the server keeps the orphaned backend waiting (and its
    // queued lock request blocking everyone after it) until that lock is released. PostgreSQL 14+.
    if (serverVersion.major >= 14) await client.query("SET client_connection_check_interval = '1s'");
    // Only for a person watching (the CLI's progress): the scheduled runs fail naming the table.
    lockWatch = deps.onProgress ? new LockWaitWatch(looks, lockWaitMs) : undefined;
    // What the database has set on itself, for a restore into a new name: read beside the snapshot's
    // transaction, just before it, so that a refusal cannot abort the transaction pg_dump imports.
    // Catalogs every role may read: a failure (lost connection aside, which the snapshot meets next)
    // leaves the field out with a warning, never the backup undone for it.
    const databaseProperties = await readDatabaseProperties((sql, params) => client.query(sql, params), connection.database).catch((error: unknown) => {
      deps.log?.(`backup: could not read what "${connection.database}" has set on itself (${oneLine(error)}): the manifest leaves it out, and a restore into a new name will say it cannot give them`, 'warn');
      return undefined;
    });
    // The roles its objects name, which a restore onto a new server must find there: the same way.
    const roles = await readBackupRoles((sql) => client.query(sql)).catch((error: unknown) => {
      deps.log?.(`backup: could not read which roles "${connection.database}"'s objects name (${oneLine(error)}): the manifest leaves them out, and a restore will not check for them before its download`, 'warn');
      return undefined;
    });
    const { snapshot, txids, tables } = await whileLocking(deps, lockWatch, openCountedSnapshot(client, connection.user), client).catch((error: unknown) => {
      if (deps.signal?.aborted) throw abortedRun(deps.signal);
      throw error instanceof OperatorError ? new OperatorError(`${NOTHING_PUBLISHED}: ${error.message}`, error.exitCode) : error;
    });
    if (deps.signal?.aborted) throw abortedRun(deps.signal);

    const streamed = await streamDump({ ...input, client, snapshot, snapshotPid: session.pid, tables, lockWatch, looks });
    await client.query('COMMIT').catch(() => undefined);
    return { serverVersion, txids, streamed, databaseProperties, roles };
  } finally {
    await looks.close();
    await client.end().catch(() => undefined);
  }
}

/**
 * While the tables to count are being locked, before pg_dump starts: a wait behind another
 * session's lock is reported as pg_dump's own would be (the progress line names the table and who
 * holds it), and an abort (Ctrl-C, a deadline) ends the connection, and so the wait, at once.
 */
async function whileLocking<T>(deps: RunBackupDeps, lockWatch: LockWaitWatch | undefined, locking: Promise<T>, client: Client): Promise<T> {
  const endClient = (): void => void client.end().catch(() => undefined);
  // Aborted during the queries before the locks: the event is past, and would never reach a listener.
  if (deps.signal?.aborted) endClient();
  else deps.signal?.addEventListener('abort', endClient, { once: true });
  // Nothing is dumped yet: the line stands at 0 B, and names the lock once it has stood for STALL_LOOK_AFTER_MS.
  const ticker = progressTicker(deps, lockWatch, Date.now(), () => 0);
  try {
    return await locking;
  } finally {
    ticker.stop();
    lockWatch?.clear();
    deps.signal?.removeEventListener('abort', endClient);
  }
}

/**
 * The progress line of a person watching (deps.onProgress; nothing without it), about once a second
 * from `start` (epoch ms) on: the bytes `dumped()` so far and their rate and, once they have stood
 * still for STALL_LOOK_AFTER_MS, what the run waits for (lockWatch), cleared as soon as they move.
 * The same while the counted snapshot locks its tables (nothing dumped yet) as during the dump.
 * `report` sends one line now (the final count); `stop` ends the ticking. The timer keeps no process alive.
 */
function progressTicker(deps: RunBackupDeps, lockWatch: LockWaitWatch | undefined, start: number, dumped: () => number): { report(): void; stop(): void } {
  let lastBytes = 0;
  let movedAt = start;
  const report = (): void => {
    const at = Date.now();
    const bytes = dumped();
    if (bytes !== lastBytes) {
      lastBytes = bytes;
      movedAt = at;
      lockWatch?.clear();
    } else if (at - movedAt >= STALL_LOOK_AFTER_MS) {
      lockWatch?.look();
    }
    const seconds = (at - start) / 1000;
    deps.onProgress?.({ bytes, bytesPerSecond: seconds > 0 ? bytes / seconds : 0, ...(lockWatch?.current && { waiting: lockWatch.current }) });
  };
  const ticker = deps.onProgress ? setInterval(report, PROGRESS_INTERVAL_MS) : undefined;
  ticker?.unref();
  return { report, stop: () => clearInterval(ticker) };
}

interface StreamDumpInput extends AttemptInput {
  readonly client: Client;
  readonly snapshot: string;
  /** pg_backend_pid() of the snapshot's session (`client`). */
  readonly snapshotPid: number;
  /** The tables to count, already locked by the snapshot's transaction (counted-snapshot.ts). */
  readonly tables: readonly TableRef[];
  /** Names what a standing-still dump waits for, when a person watches (deps.onProgress). */
  readonly lockWatch: LockWaitWatch | undefined;
  /** The attempt's side connection, shared with lockWatch. */
  readonly looks: SideLooks;
}

/**
 * Request parameters of every object written under a tier prefix: `If-None-Match: *` (S3 refuses
 * to overwrite an existing key, and the bucket policy refuses any tier write without it), plus the
 * compliance retention when the run asks for one.
 */
export interface WriteOnceParams {
  readonly IfNoneMatch: '*';
  readonly ObjectLockMode?: 'COMPLIANCE';
  readonly ObjectLockRetainUntilDate?: Date;
  /** S3 requires an integrity checksum on every write that carries Object Lock parameters. */
  readonly ChecksumAlgorithm?: 'CRC32';
}

export function writeOnceParams(complianceRetentionDays: number | undefined, startedAt: Date): WriteOnceParams {
  if (complianceRetentionDays === undefined) return { IfNoneMatch: '*' };
  if (!Number.isInteger(complianceRetentionDays) || complianceRetentionDays < 1) {
    throw new OperatorError(`invalid compliance retention ${complianceRetentionDays}: use a whole number of days, at least 1`, 2);
  }
  return {
    IfNoneMatch: '*',
    ObjectLockMode: 'COMPLIANCE',
    ObjectLockRetainUntilDate: new Date(startedAt.getTime() + complianceRetentionDays * 86_400_000),
    ChecksumAlgorithm: 'CRC32',
  };
}

interface StreamedDump {
  readonly objects: BackupObject[];
  readonly tables: { schema: string; name: string; rows: number }[];
}

interface Sink {
  readonly format: BackupFormat;
  readonly key: string;
  readonly hasher: HashingStream;
  readonly upload: Upload;
  /** Bytes S3 has acknowledged so far. */
  stored: number;
  completed: boolean;
}

/**
 * pg_dump -Fc ──┬─> sha256/bytes ─> Upload(.dump)
 *               └─> pg_restore -f - ─> igzip | zlib ─> sha256/bytes ─> Upload(.sql.gz)
 * with the row counts running on the snapshot's own connection meanwhile. The upload bodies are
 * ended only when every producer has exited cleanly, so a failed producer can never complete an
 * upload with a truncated body.
 */
async function streamDump(input: StreamDumpInput): Promise<StreamedDump> {
  const { deps, client, env, keys, formats, level, compressor, partSize, queueSize, snapshot } = input;
  const children: ChildProcess[] = [];
  const streams: (Readable | Writable)[] = [];
  const sinks: Sink[] = [];
  let failure: Error | undefined;

  const fail = (error: Error): void => {
    if (failure) return;
    failure = error;
    for (const child of children) terminate(child);
    // The failure is already recorded: the 'error' events of the streams torn down are echoes of it.
    for (const stream of [...streams, ...sinks.map((s) => s.hasher)]) stream.on('error', () => undefined);
    for (const stream of streams) stream.destroy(error);
    for (const sink of sinks) {
      // An errored body (never a merely ended one) makes the upload fail instead of completing.
      sink.hasher.destroy(error);
      void sink.upload.abort();
    }
    // Interrupts the row counts (their query rejects) and releases the snapshot.
    void client.end().catch(() => undefined);
  };
  const onAbort = (): void => fail(new OperatorError(`backup aborted (${abortReason(deps.signal)})`));
  deps.signal?.addEventListener('abort', onAbort, { once: true });

  const addSink = (format: BackupFormat, key: string, contentType: string): HashingStream => {
    const hasher = new HashingStream({ highWaterMark: STAGE_BUFFER_BYTES });
    const upload = new Upload({
      client: deps.s3,
      // lib-storage passes these to PutObject (small objects) and CreateMultipartUpload, whose
      // object then carries the metadata, and the conditions to PutObject and CompleteMultipartUpload.
      params: { Bucket: deps.bucket, Key: key, Body: hasher, ContentType: contentType, Metadata: { [RUN_TOKEN_METADATA]: input.runToken }, ...input.writeOnce },
      partSize,
      queueSize,
      // We abort ourselves, so that a failed abort (s3rver answers 405) is logged, not fatal.
      leavePartsOnError: true,
    });
    const sink: Sink = { format, key, hasher, upload, stored: 0, completed: false };
    upload.on('httpUploadProgress', (p) => (sink.stored = p.loaded ?? sink.stored));
    sinks.push(sink);
    return hasher;
  };

  // Sinks first: nothing below can throw synchronously once a child process exists.
  const customSink = formats.includes('custom') ? addSink('custom', keys.custom, 'application/octet-stream') : undefined;
  const plainSink = formats.includes('plain') ? addSink('plain', keys.plain, 'application/gzip') : undefined;

  const streamStart = Date.now();
  /** Phase timings at debug level (POWERTOOLS_LOG_LEVEL=DEBUG), to see where a slow run spends its time. */
  const phase = (name: string) => (): void => logger.debug('backup phase done', { phase: name, seconds: (Date.now() - streamStart) / 1000 });
  const dump = spawn(input.pgDumpPath, ['--format=custom', `--compress=${level}`, `--snapshot=${snapshot}`, `--lock-wait-timeout=${input.lockWaitMs}`, '--no-password'], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(dump);
  streams.push(dump.stdout);
  const dumpExit = watchChild(dump, 'pg_dump').catch((error: unknown) => {
    if (!(error instanceof Error)) throw error;
    // pg_dump's --lock-wait-timeout is a statement timeout on its LOCK TABLE: say what it means.
    if (/statement timeout.*LOCK TABLE/.test(error.message)) throw new OperatorError(`${error.message}${LOCKED_TABLE_FIX}`);
    if (/permission denied for large object/.test(error.message)) throw new OperatorError(`${error.message}${LARGE_OBJECT_FIX}`);
    // A sequence the row counts do not read (they read tables only) is refused to pg_dump alone.
    if (/permission denied for (?:table|sequence) /.test(error.message)) throw privilegeRefused(error.message, input.deps.connection.user);
    if (/query would be affected by row-level security policy/.test(error.message)) throw new OperatorError(`${error.message}${rowSecurityFix(input.deps.connection.user)}`);
    throw error;
  });
  void dumpExit.then(phase('pg_dump exited'), () => undefined);
  const producers: Promise<unknown>[] = [dumpExit, finished(dump.stdout)];
  const rootCauses: Promise<unknown>[] = [];
  /** Each child's failure as it happens, in child order: a wait that times out still sees them. */
  const childFailures = new Map<number, unknown>();
  const addRootCause = (exit: Promise<unknown>): void => {
    const index = rootCauses.push(exit) - 1;
    exit.catch((reason: unknown) => childFailures.set(index, reason));
  };
  addRootCause(dumpExit);

  /** When pg_dump dies its consumers fail too (truncated input): report the first cause, not the echo. */
  const onProducerFailure = async (error: unknown): Promise<void> => {
    // pg_dump keeps running when only a consumer died: wait for every child, or for a while.
    await Promise.race([Promise.allSettled(rootCauses), delay(ROOT_CAUSE_WAIT_MS)]);
    const rejected = [...childFailures.entries()].sort(([a], [b]) => a - b).map(([, reason]) => reason);
    // A process killed by a signal is never the echo of another's failure, except by SIGPIPE: that
    // is a writer whose reader died (pg_restore writing to a killed igzip).
    const cause = rejected.find((r) => r instanceof Error && / was killed by (?!SIGPIPE)/.test(r.message)) ?? rejected[0];
    const chosen = cause ?? error;
    fail(chosen instanceof Error ? chosen : new Error(String(chosen)));
  };

  if (customSink) dump.stdout.pipe(customSink, { end: false });
  if (plainSink && compressor) {
    // pg_restore reads the custom archive sequentially from a pipe: it needs no data offsets as long
    // as it restores entries in archive order, which a serial, unfiltered script output does. It
    // never connects here: no database password, no AWS credentials in its environment.
    const restore = spawn(input.pgRestorePath, ['--file=-', '--exit-on-error'], { env: baseChildEnv(), stdio: ['pipe', 'pipe', 'pipe'] });
    children.push(restore);
    const restoreExit = watchChild(restore, 'pg_restore');
    addRootCause(restoreExit);
    restore.stdin.on('error', (error) => void onProducerFailure(new OperatorError(`pg_restore stopped reading the dump: ${oneLine(error)}`)));
    dump.stdout.pipe(restore.stdin);
    streams.push(restore.stdin);
    void restoreExit.then(phase('pg_restore exited'), () => undefined);
    if (compressor.kind === 'igzip') {
      // pg_restore writes straight into igzip through an OS pipe: the SQL text never enters node.
      // igzip needs no credentials either.
      const gzip = spawn(compressor.path, igzipArgs(compressor.level), {
        env: baseChildEnv(),
        stdio: [restore.stdout, 'pipe', 'pipe'],
      });
      // The child holds its own copy of the pipe: closing ours lets pg_restore see igzip's exit.
      restore.stdout.destroy();
      children.push(gzip);
      const gzipExit = watchChild(gzip, 'igzip');
      addRootCause(gzipExit);
      streams.push(gzip.stdout);
      gzip.stdout.pipe(plainSink, { end: false });
      producers.push(restoreExit, gzipExit, finished(gzip.stdout));
    } else {
      const gzip = createGzip({ level: compressor.level, chunkSize: GZIP_CHUNK_BYTES });
      streams.push(restore.stdout, gzip);
      restore.stdout.pipe(gzip).pipe(plainSink, { end: false });
      producers.push(restoreExit, finished(gzip));
    }
  }

  let dumpedBytes = 0;
  // Until pg_dump writes its first byte it is taking its locks (it writes the archive only once it
  // has read the catalog, every table locked): a statement of the application caught between the
  // snapshot's locks and pg_dump's would hold everyone for the lock wait bound, unseen by the
  // deadlock detector (lock-wait.ts). Looked for each second until then, on the attempt's side
  // connection (the progress line's looks share it), opened at the first look; ending the attempt
  // (fail: pg_dump killed, the snapshot's transaction closed) lets that statement run at once, and
  // the caller takes a new snapshot after it. Ending it, rather than waiting it out, is the only
  // way out: the run cannot give up a lock inside its transaction, and pg_dump's request stays
  // queued behind the statement's.
  const cycleWatch = new LockCycleWatch(input.looks, input.snapshotPid);
  const cycleTicker = setInterval(() => {
    cycleWatch.look((cycle) => {
      if (dumpedBytes === 0) fail(new LockCycleError(cycle));
    });
  }, LOCK_CYCLE_LOOK_MS);
  cycleTicker.unref();
  const stopCycleWatch = (): void => {
    clearInterval(cycleTicker);
    void cycleWatch.close();
  };
  dump.stdout.once('data', stopCycleWatch);
  void dumpExit.finally(stopCycleWatch).catch(() => undefined);
  dump.stdout.on('data', (chunk: Buffer) => (dumpedBytes += chunk.length));
  const lockWatch = input.lockWatch;
  const ticker = progressTicker(deps, lockWatch, streamStart, () => dumpedBytes);
  // The dump's count stops with pg_dump, but the last parts, the plain SQL's tail, the manifest and
  // the pointers can take a while yet: the final count, then say what is left instead of a meter
  // that stands still.
  void dumpExit.then(
    () => {
      if (failure) return;
      ticker.stop();
      void lockWatch?.close();
      lockWatch?.clear();
      ticker.report();
      const stored = sinks.reduce((sum, s) => sum + s.stored, 0);
      const written = sinks.reduce((sum, s) => sum + s.hasher.bytes, 0);
      deps.log?.(`upload: pg_dump finished (${formatBytes(dumpedBytes)} dumped); finishing the uploads: ${formatBytes(stored)} of ${formatBytes(written)} stored so far`);
    },
    () => undefined,
  );

  const counting = countRows(client, input.tables).catch((error: unknown) => {
    if (failure) throw failure;
    const refused = countFailure(error, deps.connection.user);
    // A statement the server refused (no SELECT right, a timeout) aborts the snapshot's transaction:
    // pg_dump then fails to import or keep the snapshot, an echo that must not be reported instead
    // of this root cause. A lost connection (SQLSTATE class 08, 57) may be pg_dump's trouble too:
    // that goes through the usual wait for the children's own reasons.
    if (isRefusedStatement(error)) fail(refused);
    throw refused;
  });
  producers.push(counting);
  void counting.then(phase('row counts'), () => undefined);

  const uploads = sinks.map((sink) =>
    sink.upload.done().then(
      () => {
        phase(`upload ${sink.format}`)();
        sink.completed = true;
      },
      async (error: unknown) => {
        if (failure) return;
        const lost = mayBeLostAnswer(error, sink) ? await ownDumpWrite(deps.s3, deps.bucket, sink, input.runToken, deps.signal) : undefined;
        if (lost?.own) {
          phase(`upload ${sink.format}`)();
          sink.completed = true;
          return;
        }
        const refused = tierWriteFailure(`upload of ${sink.key}`, sink.key, deps.bucket, error);
        // The refusal may still be this run's own write: the run's failure says why that could not
        // be told, after the blame and its advice (awaitOtherRun), or after S3's NoSuchUpload.
        if (lost?.unread === undefined) fail(refused);
        else if (refused instanceof LostWriteError) fail(new LostWriteError(refused.message, undefined, unreadOwnWrite(sink.key, lost.unread)));
        else if (isNoSuchUpload(error)) fail(new OperatorError(abortedUpload(sink.key, deps.bucket, lost.unread)));
        else fail(new OperatorError(`${refused.message}; ${unreadOwnWrite(sink.key, lost.unread)}`, refused.exitCode));
      },
    ),
  );
  for (const producer of producers) producer.catch((error: unknown) => void onProducerFailure(error));
  const produced = Promise.allSettled(producers).then(async () => {
    // Ended only now: every producer exited cleanly, so the bodies are complete. One after the
    // other, in the sinks' fixed order (custom first), each once the one before is stored: of two
    // runs of one second, the one that loses the first key to the other then writes nothing else
    // (fail() aborts the rest), and never wins a later key that the other still has to write, which
    // would leave both runs failed and the second with no backup.
    for (const [i, sink] of sinks.entries()) {
      if (i > 0) await uploads[i - 1];
      if (failure) return;
      sink.hasher.end();
    }
  });

  try {
    await Promise.all([produced, ...uploads]);
  } finally {
    ticker.stop();
    stopCycleWatch();
    await lockWatch?.close();
    deps.signal?.removeEventListener('abort', onAbort);
  }

  if (failure) {
    await Promise.all(sinks.filter((s) => !s.completed).map((s) => abortMultipartUpload(deps.s3, deps.bucket, s)));
    if (failure instanceof LockCycleError || failure instanceof LostWriteError) throw failure;
    const exitCode = failure instanceof OperatorError ? failure.exitCode : 1;
    throw new OperatorError(`${NOTHING_PUBLISHED}: ${oneLine(failure)}${leftWithoutManifest(sinks.filter((s) => s.completed).map((s) => ({ key: s.key, bytes: s.hasher.bytes })))}`, exitCode);
  }
  const tables = await counting;
  return {
    objects: sinks.map((s) => ({ key: s.key, format: s.format, bytes: s.hasher.bytes, sha256: s.hasher.sha256 })),
    tables,
  };
}

/**
 * A wait the run awaits: its timer keeps the process alive. An unref'd one did not, and where
 * nothing else was open (claimKeys, between its S3 requests) node ended the CLI there, mid-run,
 * with exit 0 and nothing printed: a backup reported as done that never ran.
 */
function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Resolves when the child exited 0 with no error on stderr; rejects with a one-line reason otherwise. */
function watchChild(child: ChildProcess, name: string): Promise<void> {
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    stderr = (stderr + chunk).slice(-STDERR_TAIL_CHARS);
  });
  return new Promise<void>((resolve, reject) => {
    child.on('error', (error: NodeJS.ErrnoException) => reject(new OperatorError(`cannot run ${name}: ${oneLine(error)}`)));
    child.on('close', (code, signal) => {
      const lines = stderr.split('\n').filter((l) => l.trim() !== '');
      const firstError = lines.findIndex(isErrorLine);
      // The error line and its detail/hint lines (pg_dump prints the server's message as "detail").
      const reason = firstError >= 0 ? lines.slice(firstError, firstError + 3).join(' ') : lines.slice(-2).join(' ');
      if (code === 0 && firstError < 0) return resolve();
      const status = signal ? `was killed by ${signal}` : code === 0 ? 'reported an error' : `exited with code ${code}`;
      reject(new OperatorError(`${name} ${status}${reason ? `: ${oneLine(reason).slice(0, 400)}` : ''}`));
    });
  });
}

function terminate(child: ChildProcess): void {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  setTimeout(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }, KILL_GRACE_MS).unref();
}

/**
 * Exact per-table row counts, on the connection that holds the exported snapshot and, since before
 * pg_dump started, a lock on each of `tables`: no TRUNCATE can empty one between pg_dump's read
 * and its count (counted-snapshot.ts).
 */
async function countRows(client: Client, tables: readonly TableRef[]): Promise<{ schema: string; name: string; rows: number }[]> {
  const counts = new Array<number>(tables.length).fill(-1);
  for (const query of buildRowCountQueries(tables)) {
    for (const row of (await client.query<{ idx: number; rows: string }>(query)).rows) counts[row.idx] = Number(row.rows);
  }
  return tables.map((t, i) => {
    if (counts[i] < 0) throw new Error(`no row count came back for ${t.schema}.${t.name}`);
    return { schema: t.schema, name: t.name, rows: counts[i] };
  });
}

/**
 * Keys carry the start second (the S3 layout, docs/contracts.md): a second run of the same tier within that second would
 * overwrite a published backup. Wait for the next second instead (bounded), never overwrite.
 */
async function claimKeys(
  s3: S3Client,
  bucket: string,
  tier: BackupTier,
  database: string,
  firstStart: Date,
  now: () => Date,
  prefix: string,
  signal: AbortSignal | undefined,
): Promise<{ keys: BackupObjectKeys; startedAt: Date }> {
  let startedAt = firstStart;
  for (let attempt = 1; ; attempt += 1) {
    const keys = backupObjectKeys(tier, database, startedAt, prefix);
    const exists = await objectExists(s3, bucket, keys.manifest, signal);
    if (attempt === 1) assertClockAgreesWithS3(s3);
    if (!exists) return { keys, startedAt };
    if (attempt >= KEY_CLAIM_ATTEMPTS) {
      throw new OperatorError(`a backup ${keys.manifest} already exists in s3://${bucket}: another run started in the same second; retry in a second`);
    }
    await delay(1000 - startedAt.getUTCMilliseconds() + 10);
    startedAt = now();
  }
}

/**
 * The keys and the manifest carry this machine's time: a clock that runs fast stamps a backup in
 * the future, and S3 still takes it (the SDK signs with S3's time, corrected from the Date of its
 * answers), so it would stay `latest` and report an age of 0 until that date (docs/backups.md).
 * The SDK keeps that correction, S3's clock minus this machine's as of its last answer (here, the
 * key check's), as systemClockOffset: a run whose clock is off by more than the tolerance (either
 * way: a slow one stamps a new backup older than the ones it follows) stops before dumping
 * anything. A client with no such setting (no SigV4 signing) is not checked.
 */
function assertClockAgreesWithS3(s3: S3Client): void {
  const offsetMs = systemClockOffsetMs(s3);
  if (offsetMs === undefined || Math.abs(offsetMs) <= CLOCK_SKEW_TOLERANCE_MS) return;
  throw new OperatorError(
    `this machine's clock is ${Math.round(Math.abs(offsetMs) / 1000)} s ${offsetMs < 0 ? 'ahead of' : 'behind'} S3's (more than ${CLOCK_SKEW_TOLERANCE_MS / 1000} s), and a backup is stamped with it: nothing was dumped; fix the clock (NTP) and run again`,
    2,
  );
}

/**
 * GetObject rather than HeadObject: a HEAD answer has no body, so a missing bucket and a missing key
 * are the same bare 404, and a mistyped bucket would pass as "key free" and fail only at the upload,
 * after the dump started. GET's error names which one is missing (same s3:GetObject right).
 */
async function objectExists(s3: S3Client, bucket: string, key: string, signal: AbortSignal | undefined): Promise<boolean> {
  try {
    // The signal: an S3 that accepts the connection and never answers would otherwise hold the run
    // here, deaf to Ctrl-C, SIGTERM and the Lambda deadline, until the S3 client's idle timeout and
    // its retries give up (minutes: lambdas/shared/aws.ts).
    const response = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }), { abortSignal: signal });
    (response.Body as Readable | undefined)?.destroy();
    return true;
  } catch (error) {
    throwIfAborted(signal);
    if (isNoSuchBucket(error)) throw missingBucketError(bucket, ', nothing was dumped');
    if (isNotFound(error)) return false;
    throw s3Failure('checking the backup key', bucket, error);
  }
}

async function abortMultipartUpload(s3: S3Client, bucket: string, sink: Sink): Promise<void> {
  const uploadId = sink.upload.uploadId;
  if (!uploadId) return;
  try {
    await s3.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: sink.key, UploadId: uploadId }), {
      abortSignal: AbortSignal.timeout(ABORT_UPLOAD_WAIT_MS),
    });
  } catch (error) {
    // Not fatal: the bucket's AbortIncompleteMultipartUpload lifecycle rule removes the parts. Debug
    // level: the operator's stderr carries the one line of the failure's root cause, not a JSON
    // warning per refused abort (s3rver always refuses; S3 does when it is what failed).
    logger.debug('could not abort a multipart upload; the bucket lifecycle rule will remove its parts', {
      bucket,
      key: sink.key,
      uploadId,
      error: oneLine(error),
    });
  }
}

/** S3's answer to a multipart upload it no longer knows (aborted, or completed: its id is gone). */
function isNoSuchUpload(error: unknown): boolean {
  return (error as { name?: string } | undefined)?.name === 'NoSuchUpload';
}

/** The user metadata key of the run token on each dump object (S3 sends it back as x-amz-meta-atmr-dr-run). */
const RUN_TOKEN_METADATA = 'atmr-dr-run';

/**
 * A refused dump write that may be this run's own, landed with its answer lost and retried by the
 * SDK. A PutObject's or CompleteMultipartUpload's retry meets the object the first attempt wrote:
 * S3 documents 412 PreconditionFailed for an `If-None-Match: *` write on a key that exists, and 409
 * ConditionalRequestConflict for one that meets another write of the key at that moment. A retried
 * CompleteMultipartUpload may instead get 404 NoSuchUpload: S3 documents that error as "the upload
 * ID may be invalid, or the upload may have been aborted or completed", and a completed upload's id
 * is gone. The body must have ended: a write refused before that cannot be a completed one.
 */
function mayBeLostAnswer(error: unknown, sink: Sink): boolean {
  if (!sink.hasher.readableEnded) return false;
  if (lostConditionalWrite(error) !== undefined) return true;
  return sink.upload.uploadId !== undefined && isNoSuchUpload(error);
}

/**
 * Whether the object at a refused dump key is this run's own write (mayBeLostAnswer). Without this
 * the run took it for another run's, waited OTHER_RUN_WAIT_MS for a manifest nobody writes, then
 * failed blaming a backup of the same second. One HeadObject, whatever the object's size: it is
 * ours when it carries this run's token (RUN_TOKEN_METADATA, a random UUID no other run has) and
 * the byte count this run hashed, which the manifest records. Another run's object has another
 * token, or none (an older version). No object at the key (a NoSuchUpload whose upload was aborted)
 * is not ours. `unread` says why the object could not be looked at (AccessDenied, a network
 * failure): not known to be ours, the refusal stands, and the run's failure says why.
 */
async function ownDumpWrite(s3: S3Client, bucket: string, sink: Sink, runToken: string, signal?: AbortSignal): Promise<{ own: boolean; unread?: unknown }> {
  try {
    // With the run's signal: an S3 that hangs after a lost answer must not hold a Ctrl-C or the deadline.
    const head = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: sink.key }), { abortSignal: signal });
    return { own: head.Metadata?.[RUN_TOKEN_METADATA] === runToken && head.ContentLength === sink.hasher.bytes };
  } catch (error) {
    if (isNotFound(error)) return { own: false };
    return { own: false, unread: error };
  }
}

/**
 * Why a refused dump object could not be told from another run's: the HeadObject's error and, when
 * S3 refused it, the right it takes (s3:GetObject on that key shape, any stamp: anyStampKey). A HEAD
 * answer has no body, so S3's refusal arrives as a bare 403 with no error code (the SDK's
 * UnknownError): said as the status, and taken for the refusal it nearly always is.
 */
function unreadOwnWrite(key: string, error: unknown): string {
  const bare403 = !isAccessDenied(error) && (error as { $metadata?: { httpStatusCode?: number } } | undefined)?.$metadata?.httpStatusCode === 403;
  const cause = bare403 ? 'HTTP 403 Forbidden, most likely AccessDenied' : s3ErrorCause(error);
  const grant = bare403 || isAccessDenied(error) ? `: grant s3:GetObject on ${anyStampKey(key)}` : '';
  return `it may instead be this run's own write: looking at it (HeadObject) failed (${cause})${grant}`;
}

/** A key under a tier prefix (the manifest), written once (`writeOnce`); pointers are rewritten (putPointer). */
async function putJson(s3: S3Client, bucket: string, key: string, value: unknown, what: string, writeOnce: WriteOnceParams): Promise<void> {
  const body = `${JSON.stringify(value, null, 2)}\n`;
  try {
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body, ContentType: 'application/json', ...writeOnce }));
  } catch (error) {
    // A write that landed but whose answer was lost (a reset connection) is retried by the SDK, and
    // the retry's If-None-Match then meets our own object: 412 (409 if it was still landing). The
    // object holding exactly our body is that first write, not another run's (which would differ:
    // its own start, sizes and hashes).
    if (lostConditionalWrite(error) !== undefined && (await getTextIfExists(s3, bucket, key).catch(() => undefined)) === body) return;
    throw tierWriteFailure(what, key, bucket, error, body);
  }
}

/**
 * `latest/<db>/<tier>.json`, then `latest/<db>.json`; only ever after the manifest exists. The
 * bucket-wide `latest/<tier>.json` and `latest.json` follow, while readers move to the per-database
 * pointers (the backup-age metric still reads `latest.json`).
 */
async function publishPointers(s3: S3Client, bucket: string, tier: BackupTier, database: string, manifestKey: string, log: NonNullable<RunBackupDeps['log']>): Promise<void> {
  const pointer: LatestPointer = { manifest: manifestKey };
  const keys = [latestDatabaseTierPointerKey(database, tier), latestDatabasePointerKey(database), latestTierPointerKey(tier), LATEST_POINTER_KEY];
  const naming: string[] = [];
  try {
    // A backup that started later may have finished first (a manual run beside the scheduled one):
    // a pointer never moves back to an older backup. Each is read, then written only if it still is
    // what was read (If-Match its ETag, If-None-Match when there was none): a run that moved it in
    // between (the hourly and the daily backups both finish around the hour) makes S3 answer 412,
    // or 409 when both writes meet at the same moment, and the choice is made again on what is there.
    const current = await Promise.all(keys.map((key) => readPointer(s3, bucket, key)));
    const ours = manifestKeyStamp(manifestKey) ?? '';
    // A later stamp protects a backup only if that backup exists: a pointer left on a manifest that
    // is gone (deleted, or stamped ahead by a runner whose clock ran fast, then removed) would
    // otherwise keep every later backup from becoming `latest`, silently, until that date.
    const exists = new Map<string, Promise<boolean>>();
    const stillThere = (key: string): Promise<boolean> => exists.get(key) ?? exists.set(key, objectExists(s3, bucket, key, undefined)).get(key)!;
    // Nor does a stamp ahead of now, existing or not: written by a machine whose clock ran fast (the
    // key check refuses such a clock, but an older version or another writer may not have), it would
    // keep every later backup from becoming `latest` until that date. Now is the wall clock, which
    // the key check compared with S3's; the run's `now` only stamps its keys.
    for (const [i, key] of keys.entries()) {
      for (let seen = current[i], attempt = 1; ; seen = await readPointer(s3, bucket, key), attempt += 1) {
        // Already this backup's (a run with nothing to do, its other delivery's pointers written):
        // not written again, where a failed rewrite would page for pointers that are right; it names
        // the backup all the same, as a failure's line says.
        if (seen.manifest === manifestKey) {
          naming.push(key);
          break;
        }
        const theirs = manifestKeyStamp(seen.manifest ?? '');
        const aheadMs = (manifestKeyStartedAt(seen.manifest ?? '')?.getTime() ?? 0) - Date.now();
        if (theirs !== undefined && theirs > ours && aheadMs > CLOCK_SKEW_TOLERANCE_MS) {
          log(`upload: ${key} named ${seen.manifest}, stamped ${Math.round(aheadMs / 1000)} s ahead of now (a machine whose clock ran fast): moved to this backup`, 'warn');
        } else if (theirs !== undefined && theirs > ours && (await stillThere(seen.manifest!))) {
          log(`upload: ${key} kept on ${seen.manifest}, a backup that started later than this one`);
          break;
        }
        if (await putPointer(s3, bucket, key, pointer, seen.etag)) {
          naming.push(key);
          break;
        }
        if (attempt === POINTER_WRITE_ATTEMPTS) throw new Error(`${key} changed under each of ${attempt} conditional writes (other runs are writing it)`);
      }
    }
  } catch (error) {
    // The pointers are written one by one: a failure after the first leaves some on this backup and
    // the rest on an older one, and "not updated" would hide which `latest` now means which backup.
    const state =
      naming.length === 0
        ? 'the latest pointers were not updated'
        : `${naming.join(', ')} ${naming.length === 1 ? 'names' : 'name'} it now, ${keys.slice(keys.indexOf(naming[naming.length - 1]) + 1).join(', ')} were not updated`;
    throw new OperatorError(`backup ${manifestKey} is complete but ${state}: ${oneLine(error)}; rerun the backup once S3 is reachable`);
  }
}

/** Conditional writes of one pointer before giving up: each 412 or 409 means another run was writing it. */
const POINTER_WRITE_ATTEMPTS = 5;

/**
 * A latest pointer as read: the manifest key it names (undefined when there is none or it is not a
 * pointer) and the ETag of the object (undefined when it does not exist).
 */
async function readPointer(s3: S3Client, bucket: string, key: string): Promise<{ manifest: string | undefined; etag: string | undefined }> {
  const read = await getVersionedTextIfExists(s3, bucket, key);
  const parsed = read === undefined ? undefined : LatestPointerSchema.safeParse(safeJson(read.text));
  return { manifest: parsed?.success ? parsed.data.manifest : undefined, etag: read?.etag };
}

/**
 * Writes a pointer only over the version that was read (`etag`; undefined: only if there is still
 * none). False when S3 refuses because it changed (412), because another write met this one at
 * the same moment (409 ConditionalRequestConflict, which the SDK does not retry), or because it was
 * deleted meanwhile (404 to an If-Match): the caller reads it again. A write of ours that landed
 * but whose answer was lost, retried by the SDK, also meets 412: read again, the pointer names this
 * very backup, and the next write replaces it with the same body.
 */
async function putPointer(s3: S3Client, bucket: string, key: string, pointer: LatestPointer, etag: string | undefined): Promise<boolean> {
  const condition = etag === undefined ? { IfNoneMatch: '*' } : { IfMatch: etag };
  try {
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: `${JSON.stringify(pointer, null, 2)}\n`, ContentType: 'application/json', ...condition }));
    return true;
  } catch (error) {
    if (lostConditionalWrite(error) !== undefined || (etag !== undefined && isNotFound(error))) return false;
    throw s3Failure(`updating ${key}`, bucket, error);
  }
}

/**
 * A write-once key of this run taken by another run of the same second (tierWriteFailure). `body`:
 * what this run wrote there (the manifest), so that finding it there later tells our own write,
 * landed with its answer lost, from another run's. `unread`: why this run's own write could not be
 * ruled out (unreadOwnWrite), said after the blame and its advice.
 */
class LostWriteError extends OperatorError {
  constructor(
    message: string,
    readonly body: string | undefined,
    readonly unread?: string,
  ) {
    super(message);
  }
}

/**
 * A write-once key (If-None-Match: *) that exists makes S3 answer 412; one that another write is
 * creating at the same moment, 409. The key check before the dump found it free, so another run of
 * the same tier and database took the same start second meanwhile (EventBridge Scheduler delivering
 * twice, a scheduled run and a manual one): say so, rather than blame the bucket, the network or
 * the role. The run then waits for that run's manifest (awaitOtherRun).
 */
function tierWriteFailure(what: string, key: string, bucket: string, error: unknown, body?: string): OperatorError {
  switch (lostConditionalWrite(error)) {
    case 'precondition':
      return new LostWriteError(`S3 refused to overwrite ${key} in bucket ${bucket}: another backup of this tier and database started in the same second and wrote it first`, body);
    case 'conflict':
      return new LostWriteError(
        `S3 refused to write ${key} in bucket ${bucket}: another write to this key at the same moment (a backup of this tier and database started in the same second)`,
        body,
      );
    default:
      // A retried CompleteMultipartUpload whose key holds no object of this run (ownDumpWrite): the
      // upload this run started is gone, so the bucket and the rights work; something else aborted it
      // (an operator, a lifecycle rule on incomplete uploads, a script).
      if (isNoSuchUpload(error)) return new OperatorError(abortedUpload(key, bucket));
      return s3Failure(what, bucket, error);
  }
}

/**
 * The line of a CompleteMultipartUpload answered NoSuchUpload with no object of this run's at the
 * key: something else aborted the upload. When the HeadObject that looks for the run's own object
 * failed (`unread`), the upload may as well have been completed by this run with its answer lost:
 * both are said, and why it could not be told.
 */
function abortedUpload(key: string, bucket: string, unread?: unknown): string {
  const known = `S3 no longer knows the multipart upload of ${key} in bucket ${bucket} (NoSuchUpload)`;
  const who = '(a person, a script, a lifecycle rule on incomplete uploads)';
  if (unread === undefined) return `${known}: something other than this run aborted it ${who}; run the backup again`;
  return `${known}: something other than this run aborted it ${who}, or this run completed it and lost the answer; run the backup again; ${unreadOwnWrite(key, unread)}`;
}

/**
 * This run lost one of its write-once keys to another run of its second, and wrote nothing after
 * it (the objects are written one after the other, the manifest last): that run is the one to
 * publish the second's backup. Its manifest at this run's manifest key, within OTHER_RUN_WAIT_MS,
 * ends this run with nothing to do (no failure, no page: the tier has its backup); none means that
 * run failed or hangs, and this one fails too (the tier has no backup of that second), as it does
 * when that run's manifest lacks one of this run's formats. A manifest
 * holding this run's own body is this run's (`lost.body`): returned without `skipped`, the caller
 * publishes it as any other.
 */
async function awaitOtherRun(
  deps: RunBackupDeps,
  tier: BackupTier,
  keys: BackupObjectKeys,
  formats: readonly BackupFormat[],
  startedAt: Date,
  lost: LostWriteError,
): Promise<BackupResult> {
  const waitMs = deps.otherRunWaitMs ?? OTHER_RUN_WAIT_MS;
  const giveUpAt = Date.now() + waitMs;
  const aside = lost.unread === undefined ? '' : `; ${lost.unread}`;
  for (;;) {
    let text: string | undefined;
    try {
      text = await getTextIfExists(deps.s3, deps.bucket, keys.manifest, deps.signal);
    } catch (error) {
      if (deps.signal?.aborted) throw abortedRun(deps.signal);
      throw new OperatorError(`${NOTHING_PUBLISHED}: ${lost.message}, and reading its manifest failed: ${oneLine(error)}${aside}`);
    }
    // Our own manifest: its write landed, its answer was lost, and the read-back that should have
    // told so failed (putJson). The backup is this run's: it goes on to publish it.
    if (text !== undefined && text === lost.body) return { manifestKey: keys.manifest, manifest: parseManifest(keys.manifest, text) };
    if (text !== undefined) {
      const manifest = parseManifest(keys.manifest, text);
      // That run may have been asked for fewer formats (`--formats custom`): its backup then lacks
      // one this run was to take, and the tier has none of that format for the second.
      const missing = missingFormats(manifest, formats);
      if (missing.length > 0) {
        throw new OperatorError(
          `${NOTHING_PUBLISHED}: ${lost.message}, and published ${keys.manifest} without the ${missing.map((f) => `${f} (${keys[f]})`).join(' and ')} this run was asked for: the tier has no ${missing.join(' or ')} backup of that second; run the backup again${aside}`,
        );
      }
      return { manifestKey: keys.manifest, manifest, skipped: `another run of the ${tier} backup took ${isoSecond(startedAt)} (${keys.manifest}); nothing to do` };
    }
    if (Date.now() >= giveUpAt) {
      throw new OperatorError(
        `${NOTHING_PUBLISHED}: ${lost.message}, and published no manifest within ${Math.round(waitMs / 1000)} s (it failed, or hangs); run the backup again${aside}`,
      );
    }
    await delay(OTHER_RUN_LOOK_MS);
    if (deps.signal?.aborted) throw abortedRun(deps.signal);
  }
}

/**
 * A scheduled run delivered twice (EventBridge Scheduler delivers at least once) whose other
 * delivery started in an earlier second and has published: claimKeys guards one second only, so
 * this run would take the next second and back the tier up a second time, unnoticed. Every delivery
 * of one run carries the same scheduled time: a published manifest of this tier and database
 * stamped at or after it is a backup the tier already has for this run (the other delivery's, or a
 * manual backup taken since), and this run ends as the loser of a shared second does (the same
 * `skipped`: no success, no failure counted). Not a manifest lacking a format this run is to take,
 * nor one stamped ahead of this run's clock beyond CLOCK_SKEW_TOLERANCE_MS (a fast clock's: it
 * would stop every run of the tier until its date), nor one that does not parse: the run backs up.
 * One listing: keys sort by their stamp, so listing the tier's keys of this database after the
 * scheduled second's stem finds that run across midnight (scheduled at 23:59:59, started at
 * 00:00:01 the next day), where a prefix of the scheduled date would not.
 */
async function backupTakenSince(
  deps: RunBackupDeps,
  tier: BackupTier,
  formats: readonly BackupFormat[],
  scheduledTime: Date,
  startedAt: Date,
  prefix: string,
): Promise<BackupResult | undefined> {
  const { s3, bucket, signal } = deps;
  const database = deps.connection.database;
  const from = backupObjectKeys(tier, database, scheduledTime, prefix).stem;
  let listed;
  try {
    listed = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: from.replace(/\d{8}_\d{6}$/, ''), StartAfter: from }), { abortSignal: signal });
  } catch (error) {
    throwIfAborted(signal);
    if (isNoSuchBucket(error)) throw missingBucketError(bucket, ', nothing was dumped');
    throw s3Failure(`listing the ${tier} backups since the run's scheduled time`, bucket, error);
  }
  for (const { Key: key = '' } of listed.Contents ?? []) {
    const second = manifestKeyStartedAt(key);
    // A .dump or .sql.gz, or another database whose name starts with this one's and `_backup_`.
    if (!second || key !== backupObjectKeys(tier, database, second, prefix).manifest) continue;
    if (second.getTime() - startedAt.getTime() > CLOCK_SKEW_TOLERANCE_MS) break;
    const parsed = BackupManifestSchema.safeParse(safeJson((await getTextIfExists(s3, bucket, key, signal)) ?? ''));
    if (!parsed.success || missingFormats(parsed.data, formats).length > 0) continue;
    return {
      manifestKey: key,
      manifest: parsed.data,
      skipped: `another run of the ${tier} backup scheduled at ${isoSecond(scheduledTime)} already took ${isoSecond(second)} (${key}); nothing to do`,
    };
  }
  return undefined;
}

/** The formats a run is to take that a published backup lacks (one asked for fewer, `--formats custom`). */
function missingFormats(manifest: BackupManifest, formats: readonly BackupFormat[]): BackupFormat[] {
  return formats.filter((f) => !manifest.objects.some((o) => o.format === f));
}

/**
 * The objects a failed run had stored (uploads completed before the failure: a Ctrl-C once the .dump
 * is in, a refused manifest), named on its failure line: "nothing published" alone left the operator
 * to find, say, 43 MiB in the tier that nothing names. They are not deleted: no role of the app may
 * delete a backup object, and the tier's lifecycle rule expires them as any backup.
 */
function leftWithoutManifest(objects: readonly { readonly key: string; readonly bytes: number }[]): string {
  if (objects.length === 0) return '';
  const names = objects.map((o) => `${o.key} (${formatBytes(o.bytes)})`).join(' and ');
  return `; left ${names} without a manifest: not a backup (never listed nor restored); ${unfinishedObjectRemoval(objects[0].key, objects.length)}`;
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new OperatorError(`backup aborted (${abortReason(signal)}), nothing published`);
}

/** An abort during an attempt says so in the words of one during the dump (the connection's end is its echo). */
function abortedRun(signal: AbortSignal | undefined): OperatorError {
  return new OperatorError(`${NOTHING_PUBLISHED}: backup aborted (${abortReason(signal)})`);
}

function abortReason(signal: AbortSignal | undefined): string {
  const reason: unknown = signal?.reason;
  if (reason instanceof Error) return reason.name === 'TimeoutError' ? 'timed out' : oneLine(reason);
  return reason === undefined ? 'aborted' : String(reason);
}
