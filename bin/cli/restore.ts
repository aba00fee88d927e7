import { Command, Option } from 'commander';
import { RestoreTestConfigSchema } from '../../lib/config';
import { RestoreResult, restoreBackup } from '../../lambdas/restore/restore';
import { runRestoreTest } from '../../lambdas/restore/restore-test';
import { createS3Client } from '../../lambdas/shared/aws';
import { OperatorError, requireEnv } from '../../lambdas/shared/errors';
import { resolveConnection } from '../../lambdas/shared/pg-connection';
import { BACKUP_TIERS, BackupTier, isBackupTier } from '../../lambdas/shared/s3-layout';

const BUCKET_HINT = 'export BACKUP_BUCKET=<name of the backup bucket> (the Data stack output)';

/** Progress on stderr for an operator at a terminal; quiet in pipes and CI. */
function progress(line: string): void {
  if (process.stderr.isTTY) process.stderr.write(`${line}\n`);
}

/** `restore` (verified restore into --target-db) and `restore-test` (the runbook's test, RTO/RPO). */
export function registerRestoreCommands(program: Command): void {
  program
    .command('restore')
    .description('verified restore of a backup into --target-db on PGHOST: checksum before touching the server, restore into a staging database, row counts checked, then swapped in')
    .argument('<manifest-key|latest>', 'a manifest key from "backups list", or latest')
    .requiredOption('--target-db <name>', 'database to restore into (created, or replaced with --force)')
    .option('--force', 'replace the target database when it exists and is not empty')
    .addOption(new Option('--format <format>', 'restore this format of the backup').choices(['custom', 'plain']))
    .option('--tier <tier>', 'with latest: the latest backup of this tier')
    .option('--terminate-connections', 'end the sessions connected to the target at swap time instead of refusing')
    .option('--i-understand-this-overwrites-production', 'allow --target-db to be the production/source database (PGDATABASE or the backup\'s own database)')
    .option('--database-secret <arn>', 'read the connection from this Secrets Manager secret instead of PG* variables')
    .option('--no-parallel-copy', 'load every table through pg_restore, one COPY session per table (by default the biggest table, when it outweighs the others, is loaded through one COPY session per core)')
    .option('--json', 'print the result as JSON')
    .action(
      async (
        ref: string,
        opts: {
          targetDb: string;
          force?: boolean;
          format?: 'custom' | 'plain';
          tier?: string;
          terminateConnections?: boolean;
          iUnderstandThisOverwritesProduction?: boolean;
          databaseSecret?: string;
          parallelCopy: boolean;
          json?: boolean;
        },
      ) => {
        const bucket = requireEnv('BACKUP_BUCKET', BUCKET_HINT);
        const productionName = process.env.PGDATABASE;
        const connection = await resolveConnection({ secretArn: opts.databaseSecret, overrides: productionName ? {} : { database: 'postgres' } });
        const result = await restoreBackup(
          { s3: createS3Client(), bucket, connection, log: progress, ...(opts.parallelCopy ? {} : { parallelCopyMinRows: 0 }) },
          {
            ref,
            tier: opts.tier,
            targetDb: opts.targetDb,
            force: opts.force,
            format: opts.format,
            terminateConnections: opts.terminateConnections,
            protectedDatabases: [connection.database].filter((d) => d !== 'postgres' || productionName === 'postgres'),
            allowProductionOverwrite: opts.iUnderstandThisOverwritesProduction,
          },
        );
        process.stdout.write(opts.json ? `${JSON.stringify(restoreJson(result), null, 2)}\n` : `${restoreText(result)}\n`);
      },
    );

  const defaults = RestoreTestConfigSchema.parse({});
  program
    .command('restore-test')
    .description('the runbook\'s test_backup_restore: back up PGDATABASE, write a canary row, restore into a scratch database, verify, drop it; reports RTO and RPO')
    .option('--tier <tier>', 'tier of the backup the test takes', 'hourly')
    .option('--critical-query <sql...>', 'queries that must succeed on the restored copy (skipped when their table is absent)', defaults.criticalQueries)
    .option('--rto-objective <seconds>', 'recovery time objective', String(defaults.rtoObjectiveSeconds))
    .option('--rpo-objective <seconds>', 'recovery point objective', String(defaults.rpoObjectiveSeconds))
    .option('--database-secret <arn>', 'read the connection from this Secrets Manager secret instead of PG* variables')
    .option('--json', 'print the report as one JSON object')
    .action(async (opts: { tier: string; criticalQuery: string[]; rtoObjective: string; rpoObjective: string; databaseSecret?: string; json?: boolean }) => {
      const bucket = requireEnv('BACKUP_BUCKET', BUCKET_HINT);
      if (!isBackupTier(opts.tier)) throw new OperatorError(`unknown tier "${opts.tier}": use one of ${BACKUP_TIERS.join(', ')}`, 2);
      const rto = positiveSeconds('--rto-objective', opts.rtoObjective);
      const rpo = positiveSeconds('--rpo-objective', opts.rpoObjective);
      const source = await resolveConnection({ secretArn: opts.databaseSecret });
      const report = await runRestoreTest(
        { s3: createS3Client(), bucket, source, target: source, log: progress },
        { takeBackup: true, tier: opts.tier as BackupTier, criticalQueries: opts.criticalQuery, rtoObjectiveSeconds: rto, rpoObjectiveSeconds: rpo },
      );
      if (opts.json) {
        process.stdout.write(`${JSON.stringify(report)}\n`);
      } else {
        const status = report.ok ? 'PASSED' : 'FAILED';
        process.stdout.write(
          [
            `restore test ${status}: ${report.manifestKey ?? 'no backup'}`,
            `  tables restored: ${report.tablesRestored ?? '-'}, rows: ${report.rowsRestored ?? '-'}, canary absent: ${report.canaryAbsent ?? '-'}`,
            ...report.criticalQueries.map((q) => `  ${q.status.padEnd(7)} ${q.sql} -> ${q.detail}`),
            `  steps: ${Object.entries(report.steps).map(([k, v]) => `${k.replace(/Seconds$/, '')} ${v}s`).join(', ')}`,
            `  RTO ${report.rtoSeconds ?? '-'} s (objective ${report.rtoObjectiveSeconds} s), RPO ${report.rpoSeconds ?? '-'} s (objective ${report.rpoObjectiveSeconds} s)`,
            `  scratch database ${report.scratchDatabase} dropped: ${report.scratchDropped}`,
          ].join('\n') + '\n',
        );
      }
      if (!report.ok) throw new OperatorError(`restore test failed: ${report.error}`);
    });
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
