import { Command, Option } from 'commander';
import { RESTORE_TEST_DEFAULTS } from '../../lambdas/restore/contract';
import { RestoreResult, restoreBackup } from '../../lambdas/restore/restore';
import { createS3Client } from '../../lambdas/shared/aws';
import { OperatorError } from '../../lambdas/shared/errors';
import { resolveConnection } from '../../lambdas/shared/pg-connection';
import { parseBackupTier } from '../../lambdas/shared/tiers';
import { stderrProgress } from './progress';
import { commandTempDir, interruptible } from './interrupt';
import { resolveBackupBucket, withBucketOptions } from './resolve';

/** `restore` (verified restore into --target-db) and `restore-test` (the runbook's test, RTO/RPO). */
export function registerRestoreCommands(program: Command): void {
  withBucketOptions(program.command('restore'))
    .description('verified restore of a backup into --target-db on PGHOST: checksum before touching the server, restore into a staging database, row counts checked, then swapped in')
    .argument('<manifest-key|latest>', 'a manifest key from "backups list", or latest')
    // Not requiredOption: commander checks required options before unknown ones, so a mistyped
    // `--taget-db` would be reported as a missing --target-db instead of as the typo it is.
    .option('--target-db <name>', '(required) database to restore into (created, or replaced with --force)')
    .option('--force', 'replace the target database when it exists and is not empty')
    .addOption(new Option('--format <format>', 'restore this format of the backup (default: custom when the backup has it, else plain)').choices(['custom', 'plain']))
    .option('--tier <tier>', 'with latest: the latest backup of this tier')
    .option('--database <name>', 'with latest: the database whose newest backup to restore (default: PGDATABASE)')
    .option('--terminate-connections', 'end the sessions connected to the target at swap time instead of refusing')
    .option('--i-understand-this-overwrites-production', 'allow --target-db to be the production/source database (PGDATABASE or the backup\'s own database)')
    .option('--database-secret <arn>', 'read the connection from this Secrets Manager secret instead of PG* variables')
    .option('--progress', 'progress on stderr even when it is not a terminal (at a terminal it is always shown)')
    .option('--json', 'print the result as JSON')
    .action(
      async (
        ref: string,
        opts: {
          targetDb?: string;
          force?: boolean;
          format?: 'custom' | 'plain';
          tier?: string;
          database?: string;
          terminateConnections?: boolean;
          iUnderstandThisOverwritesProduction?: boolean;
          databaseSecret?: string;
          progress?: boolean;
          json?: boolean;
          bucket?: string;
          env?: string;
        },
      ) => {
        if (opts.targetDb === undefined) throw new OperatorError('--target-db is required: name the database to restore into, e.g. --target-db atmr_restored', 2);
        const bucket = await resolveBackupBucket(opts);
        const productionName = process.env.PGDATABASE;
        const connection = await resolveConnection({ secretArn: opts.databaseSecret, overrides: productionName ? {} : { database: 'postgres' } });
        const progress = stderrProgress(opts.progress === true || process.stderr.isTTY === true);
        const target = opts.targetDb;
        // A second Ctrl-C quits before the restore's own cleanup: the download's directory goes then,
        // and the staging database, if it was not dropped yet, is named by the next restore's check.
        const tempDir = commandTempDir();
        reportSwept(tempDir.swept);
        const interrupt = interruptible(
          () => `${tempDir.remove()}; the staging database ${target}_restore_... may be left: the next restore into ${target} names it, with the DROP DATABASE to run`,
        );
        const result = await restoreBackup(
          {
            s3: createS3Client(),
            bucket,
            connection,
            tempDir: tempDir.path,
            // Warnings (leftovers of a killed restore) ask the operator to act: shown even without --progress.
            log: (line) => {
              if (line.startsWith('warning: ')) process.stderr.write(`atmr-dr: ${line}\n`);
              else progress.line(line);
            },
            onDownloadProgress: (bytes, total) => progress.meter('download', bytes, total),
          },
          {
            ref,
            tier: opts.tier,
            database: opts.database ?? productionName,
            signal: interrupt.signal,
            targetDb: opts.targetDb,
            force: opts.force,
            format: opts.format,
            terminateConnections: opts.terminateConnections,
            protectedDatabases: [connection.database].filter((d) => d !== 'postgres' || productionName === 'postgres'),
            allowProductionOverwrite: opts.iUnderstandThisOverwritesProduction,
          },
        )
          .catch((error: unknown) => {
            throw interrupt.interrupted(error);
          })
          .finally(() => {
            interrupt.done();
            tempDir.remove();
          });
        process.stdout.write(opts.json ? `${JSON.stringify(restoreJson(result), null, 2)}\n` : `${restoreText(result)}\n`);
      },
    );

  const defaults = RESTORE_TEST_DEFAULTS;
  withBucketOptions(program.command('restore-test'))
    .description('the runbook\'s test_backup_restore: back up PGDATABASE (under restore-tests/, never anybody\'s latest), restore into a scratch database, verify row counts and point in time, drop it; reports RTO and RPO. Writes nothing to PGDATABASE')
    .option('--tier <tier>', 'tier of the backup the test takes', 'hourly')
    .option('--critical-query <sql...>', 'queries that must succeed on the restored copy (skipped when their table is absent)', [...defaults.criticalQueries])
    .option('--rto-objective <seconds>', 'recovery time objective', String(defaults.rtoObjectiveSeconds))
    .option('--rpo-objective <seconds>', 'recovery point objective', String(defaults.rpoObjectiveSeconds))
    .option('--database-secret <arn>', 'read the connection from this Secrets Manager secret instead of PG* variables')
    .option('--json', 'print the report as one JSON object')
    .action(async (opts: { tier: string; criticalQuery: string[]; rtoObjective: string; rpoObjective: string; databaseSecret?: string; json?: boolean; bucket?: string; env?: string }) => {
      const bucket = await resolveBackupBucket(opts);
      const tier = parseBackupTier(opts.tier, '--tier');
      const rto = positiveSeconds('--rto-objective', opts.rtoObjective);
      const rpo = positiveSeconds('--rpo-objective', opts.rpoObjective);
      const source = await resolveConnection({ secretArn: opts.databaseSecret });
      const progress = stderrProgress(process.stderr.isTTY === true);
      const tempDir = commandTempDir();
      reportSwept(tempDir.swept);
      const interrupt = interruptible(() => `${tempDir.remove()}; a scratch database atmr_dr_restore_test_... may be left: drop it`);
      // Loaded here, not with the module: `restore` (the worst day's command) does not evaluate the
      // backup pipeline the test also runs.
      const { runRestoreTest } = await import('../../lambdas/restore/restore-test');
      const report = await runRestoreTest(
        { s3: createS3Client(), bucket, source, target: source, tempDir: tempDir.path, log: (line) => progress.line(line), signal: interrupt.signal },
        { takeBackup: true, tier, criticalQueries: opts.criticalQuery, rtoObjectiveSeconds: rto, rpoObjectiveSeconds: rpo },
      ).finally(() => {
        interrupt.done();
        tempDir.remove();
      });
      if (opts.json) {
        process.stdout.write(`${JSON.stringify(report)}\n`);
      } else {
        const status = report.ok ? 'PASSED' : 'FAILED';
        process.stdout.write(
          [
            `restore test ${status}: ${report.manifestKey ?? 'no backup'}`,
            `  tables restored: ${report.tablesRestored ?? '-'}, rows: ${report.rowsRestored ?? '-'}, point in time proven: ${report.pointInTime?.ok ?? '-'}`,
            ...report.criticalQueries.map((q) => `  ${q.status.padEnd(7)} ${q.sql} -> ${q.detail}`),
            `  steps: ${Object.entries(report.steps).map(([k, v]) => `${k.replace(/Seconds$/, '')} ${v}s`).join(', ')}`,
            `  RTO ${report.rtoSeconds ?? '-'} s (objective ${report.rtoObjectiveSeconds} s), RPO ${report.rpoSeconds ?? '-'} s (objective ${report.rpoObjectiveSeconds} s)`,
            `  scratch database ${report.scratchDatabase} dropped: ${report.scratchDropped}`,
          ].join('\n') + '\n',
        );
      }
      if (!report.ok) throw interrupt.interrupted(new OperatorError(`restore test failed: ${report.error}`));
    });
}

/** The temp directories of killed runs that commandTempDir removed: where the disk space came back from. */
function reportSwept(swept: readonly string[]): void {
  for (const dir of swept) process.stderr.write(`atmr-dr: removed temp directory ${dir}, left by an earlier run that was killed\n`);
}

function positiveSeconds(flag: string, value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new OperatorError(`${flag} "${value}" is not a whole number of seconds; pass e.g. ${flag} 1800`, 2);
  return n;
}

function restoreJson(result: RestoreResult) {
  const { manifest, ...rest } = result;
  return { ok: true, ...rest, database: manifest.database, backupStartedAt: manifest.startedAt };
}

function restoreText(result: RestoreResult): string {
  const t = result.timings;
  return [
    `restored ${result.manifestKey} (${result.object.format}) into ${result.targetDb}${result.replaced ? ' (replaced)' : ''}: ${result.tablesRestored} tables, ${result.rowsRestored} rows, row counts match the manifest`,
    `download ${t.downloadSeconds.toFixed(1)} s, restore ${t.restoreSeconds.toFixed(1)} s, verify ${t.verifySeconds.toFixed(1)} s, swap ${t.swapSeconds.toFixed(1)} s; RTO ${result.rtoSeconds.toFixed(1)} s`,
  ].join('\n');
}
