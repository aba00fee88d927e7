import type { Command } from 'commander';
import type { BackupProgress } from '../../lambdas/backup/backup';
import { parsePlainCompressorPreference } from '../../lambdas/backup/compressor';
import { DEFAULT_COMPRESSION_LEVEL, invalidCompressionLevel } from '../../lambdas/backup/runner-contract';
import { OperatorError, oneLine } from '../../lambdas/shared/errors';
import { formatBytes } from '../../lambdas/shared/format';
import type { PgConnection } from '../../lambdas/shared/pg-connection';
import { interruptible, ownsStopSignals } from './interrupt';
import { stderrProgress } from './progress';
import { defaultEnvironmentName, resolveBackupBucket, withBucketOptions } from './resolve';

interface BackupCommandOptions {
  readonly tier: string;
  readonly formats: string;
  readonly database?: string;
  readonly databaseSecret?: string;
  readonly compressionLevel?: number;
  readonly plainCompressor: string;
  readonly json?: boolean;
  readonly progress?: boolean;
  readonly bucket?: string;
  readonly env?: string;
}

/** `atmr-dr backup`: the same core as the scheduled runner (lambdas/backup/backup.ts). */
export function registerBackupCommands(program: Command): void {
  withBucketOptions(ownsStopSignals(program.command('backup')))
    .description(
      'dump the database (pg_dump custom format, and plain SQL derived from the same stream), upload to BACKUP_BUCKET, write the manifest and the latest pointers; prints the manifest key',
    )
    .requiredOption('--tier <tier>', 'backup tier: hourly, daily, weekly or monthly')
    .option('--formats <list>', 'formats to produce: custom, plain or custom,plain', 'custom,plain')
    .option('--database <name>', "the database to back up (default: PGDATABASE, or the --database-secret's dbname)")
    .option('--database-secret <arn>', 'read the connection from this Secrets Manager secret (RDS secret JSON) instead of PG* variables')
    .option('--compression-level <0-9>', `zlib level of both formats (default ${DEFAULT_COMPRESSION_LEVEL})`, parseCompressionLevel)
    .option('--plain-compressor <auto|igzip|zlib>', 'who gzips the plain SQL: igzip (ISA-L, levels 1-3) when installed, else node zlib', 'auto')
    .option('--progress', 'progress on stderr even when it is not a terminal (at a terminal it is always shown)')
    .option('--json', 'print {manifestKey, manifest} as JSON instead of the manifest key')
    .action(async (options: BackupCommandOptions) => {
      // Validate every argument and setting before anything is read or written.
      // The backup's code (pg_dump pipeline, S3 uploads, zod) is loaded here, not with the module:
      // --help and a missing --tier answer without evaluating it.
      const [{ parseBackupTier }, { BACKUP_S3_CLIENT_OVERRIDES, parseFormats, runBackup }, { resolveConnection }, { createS3Client }] = await Promise.all([
        import('../../lambdas/shared/tiers'),
        import('../../lambdas/backup/backup'),
        import('../../lambdas/shared/pg-connection'),
        import('../../lambdas/shared/aws'),
      ]);
      const tier = parseBackupTier(options.tier);
      const formats = parseFormats(options.formats.split(','));
      const compressionLevel = options.compressionLevel ?? DEFAULT_COMPRESSION_LEVEL;
      const plainCompressor = parsePlainCompressorPreference(options.plainCompressor);
      // A compressor asked for by name compresses the plain SQL only: without it, it would be ignored.
      if (plainCompressor !== 'auto' && !formats.includes('plain')) {
        throw new OperatorError(`--plain-compressor ${plainCompressor} compresses the plain SQL, which --formats ${options.formats} does not produce: drop --plain-compressor, or add plain to --formats`, 2);
      }
      // --database names the database as backups list, backups verify and restore take it: over
      // PGDATABASE and the secret's dbname. An empty one would fall back to them silently.
      if (options.database !== undefined && options.database.trim() === '') {
        throw new OperatorError('--database is empty: name the database to back up, or drop --database to back up PGDATABASE', 2);
      }
      // Before the connection and the bucket: a cdk.json that cannot say it stops nothing half-done.
      const complianceRetentionDays = tier === 'monthly' ? await monthlyComplianceLockDays(options) : undefined;
      const connection = await resolveConnection({ secretArn: options.databaseSecret, overrides: { database: options.database } });
      const bucket = await resolveBackupBucket(options);

      const interrupt = interruptible();
      const showProgress = options.progress === true || process.stderr.isTTY === true;
      const progress = stderrProgress(showProgress);
      const estimate = showProgress ? await databaseSize(connection, (line) => progress.line(line)) : undefined;
      try {
        const result = await runBackup(
          {
            s3: createS3Client(process.env, BACKUP_S3_CLIENT_OVERRIDES),
            bucket,
            connection,
            signal: interrupt.signal,
            onPublishing: () =>
              interrupt.finishing((signal) => `received ${signal} while publishing: finishing it before stopping (cut half-way, the latest pointers would name different backups)`),
            plainCompressor,
            onProgress: showProgress ? (p) => progress.status(formatProgress(p, estimate)) : undefined,
            log: (line) => progress.line(line),
          },
          { tier, formats, compressionLevel, complianceRetentionDays },
        );
        progress.end();
        // Another run took this second and published it: said even without --progress, as the
        // reason this run's backup is that one (the key printed below).
        if (result.skipped) process.stderr.write(`${result.skipped}\n`);
        // A stop that came once the run was publishing (the manifest, then the latest pointers: its
        // last check for a stop is just before, and onPublishing said at once that it finishes
        // first): the run finished publishing. Said, or whoever pressed Ctrl-C believes they
        // stopped a backup that is published and latest; exit 0 all the same, as for a stop once
        // the work is over: the backup is complete, and a wrapper must not run it again.
        if (interrupt.received) {
          process.stderr.write(`atmr-dr: finished publishing after ${interrupt.received}: the backup is ${result.manifestKey}, published and complete (exit 0)\n`);
        }
        process.stdout.write(options.json ? `${JSON.stringify(result, null, 2)}\n` : `${result.manifestKey}\n`);
      } catch (error) {
        progress.end();
        throw interrupt.interrupted(error);
      } finally {
        interrupt.done();
      }
    });
}

/**
 * The compliance lock of the monthly tier (`backups.monthlyComplianceLockDays` of the environment in
 * cdk.json), so that a monthly backup by hand is locked as the scheduled runner locks its own: a
 * monthly object without it would be the one of its tier that an account's root user could delete.
 * Read from the config only, not the stacks: the config is what was deployed, and the lock is a
 * choice the operator must not make per run.
 */
async function monthlyComplianceLockDays(options: { readonly env?: string; readonly bucket?: string }): Promise<number | undefined> {
  const { loadCliConfig } = await import('./cli-config');
  const envName = options.env ?? defaultEnvironmentName();
  let days: number | undefined;
  try {
    days = loadCliConfig(envName).backups.monthlyComplianceLockDays;
  } catch (error) {
    // A wrong --env is its own line already.
    if (error instanceof OperatorError && /^no environment /.test(error.message)) throw error;
    throw new OperatorError(
      `cannot read backups.monthlyComplianceLockDays (the monthly tier's compliance lock) from cdk.json, nothing was dumped: ${oneLine(error)}`,
      2,
    );
  }
  // A bucket named by --bucket or BACKUP_BUCKET may be another environment's than cdk.json's default,
  // whose lock would then be sent to a bucket that may have no Object Lock (S3 refuses the upload once
  // pg_dump runs): the operator names the environment whose lock applies.
  const namedBucket = options.bucket !== undefined || Boolean(process.env.BACKUP_BUCKET?.trim());
  if (days !== undefined && options.env === undefined && namedBucket) {
    throw new OperatorError(
      `a monthly backup is compliance-locked as its environment says, and environment ${envName} (cdk.json's default) locks monthly objects ${days} days: pass --env with the environment of the bucket given by ${options.bucket !== undefined ? '--bucket' : 'BACKUP_BUCKET'} (--env ${envName} if it is that one's); nothing was dumped`,
      2,
    );
  }
  return days;
}

/**
 * `--compression-level`: exactly one digit. Number() alone would read '' and ' ' as 0 (an
 * uncompressed backup nobody asked for) and '0x3' as 3, and would echo a typo such as 'abc' back
 * as "NaN" instead of what was typed. The OperatorError passes through commander to main().
 */
export function parseCompressionLevel(text: string): number {
  if (!/^[0-9]$/.test(text)) throw invalidCompressionLevel(text);
  return Number(text);
}

/**
 * "backup: 1.2 GiB dumped (compressed) from a 5.0 GiB database, 48.0 MiB/s". The dump is compressed
 * and skips index contents, so it ends well below the database size: the size is a scale, not a 100%
 * mark, and "of a 5.0 GiB database" read as a backup stuck at 20%. A dump that stands still says
 * what it waits for (BackupProgress.waiting).
 */
export function formatProgress(progress: BackupProgress, databaseBytes?: number): string {
  const scale = databaseBytes === undefined ? '' : ` (compressed) from a ${formatBytes(databaseBytes)} database`;
  const waiting = progress.waiting ? `; ${progress.waiting}` : '';
  return `backup: ${formatBytes(progress.bytes)} dumped${scale}, ${formatBytes(progress.bytesPerSecond)}/s${waiting}`;
}

/**
 * pg_database_size of the backed-up database, for the progress line; undefined when it cannot be
 * read. A short session's read (shortRead): one given up at its bound, or failed (refused, cut), is
 * one line (`say`) saying why, and the backup goes on without the size; the size is only a scale,
 * and a progress line without it said nothing of why (a pooler that refused the session's settings).
 */
async function databaseSize(connection: PgConnection, say: (line: string) => void): Promise<number | undefined> {
  // Already loaded by the command (resolveConnection): this import costs nothing more.
  const { ReadGivenUp, shortRead } = await import('../../lambdas/shared/pg-connection');
  try {
    const rows = await shortRead<{ bytes: string }>(connection, connection.database, `the read of "${connection.database}"'s size (pg_database_size)`, 'SELECT pg_database_size(current_database()) AS bytes');
    return Number(rows[0].bytes);
  } catch (error) {
    // The size read's own connection refused (connectTo's line, an OperatorError): the backup's
    // connection meets the same refusal and says it once, as the command's failure.
    if (error instanceof OperatorError && !(error instanceof ReadGivenUp)) return undefined;
    const why = error instanceof ReadGivenUp ? error.message : `cannot read "${connection.database}"'s size (pg_database_size): ${oneLine(error)}`;
    say(`backup: ${why}; the backup goes on without the database's size`);
    return undefined;
  }
}
