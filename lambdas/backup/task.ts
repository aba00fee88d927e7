import { RDSClient } from '@aws-sdk/client-rds';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { createS3Client, DEFAULT_MAX_ATTEMPTS } from '../shared/aws';
import { OperatorError, oneLine } from '../shared/errors';
import { exitWhenFailed } from '../shared/exit';
import { observability } from '../shared/observability';
import type { BackupTier } from '../shared/s3-layout';
import { BACKUP_RUNNER_SERVICE, RUNNER_ENV } from './runner-contract';
import { parseBackupTier } from '../shared/tiers';
import { loadRunnerSettings, runScheduledBackup, type ScheduledRunDeps } from './scheduled-run';

/**
 * ECS Fargate entry of the backup runner (same image as the Lambda; `node /var/task/task.js
 * --tier weekly`), for databases whose dump outgrows Lambda's 15 minutes. Same code path as the
 * handler: runScheduledBackup. Exit 0 on success, non-zero with one line on stderr otherwise.
 */

/** The tier from `--tier T` / `--tier=T`, else from BACKUP_TIER. */
export function tierFromCommandLine(argv: readonly string[], env: NodeJS.ProcessEnv): BackupTier {
  const index = argv.findIndex((a) => a === '--tier' || a.startsWith('--tier='));
  if (index >= 0) {
    const arg = argv[index];
    const value = arg === '--tier' ? argv[index + 1] : arg.slice('--tier='.length);
    return parseBackupTier(value, '--tier');
  }
  if (env[RUNNER_ENV.tier] !== undefined) return parseBackupTier(env[RUNNER_ENV.tier], RUNNER_ENV.tier);
  throw new OperatorError(`no backup tier: pass --tier hourly|daily|weekly|monthly or set ${RUNNER_ENV.tier}`, 2);
}

export interface TaskIo {
  readonly stderr: { write(line: string): unknown };
  /** Overrides for tests; default: SDK clients from the environment. */
  readonly clients?: Pick<ScheduledRunDeps, 's3' | 'rds' | 'secretsManager'>;
  readonly signal?: AbortSignal;
  readonly pgBinDir?: string;
}

/** Runs one scheduled backup; resolves to the process exit code. */
export async function main(argv: readonly string[], env: NodeJS.ProcessEnv, io: TaskIo): Promise<number> {
  const { logger, metrics } = observability(BACKUP_RUNNER_SERVICE);
  let ran = false;
  try {
    const tier = tierFromCommandLine(argv, env);
    const settings = loadRunnerSettings(env);
    ran = true;
    const clients = io.clients ?? {
      s3: createS3Client(env),
      rds: new RDSClient({ maxAttempts: DEFAULT_MAX_ATTEMPTS }),
      secretsManager: new SecretsManagerClient({ maxAttempts: DEFAULT_MAX_ATTEMPTS }),
    };
    const result = await runScheduledBackup(
      { settings, ...clients, metrics, logger, env, region: env.AWS_REGION, signal: io.signal, pgBinDir: io.pgBinDir },
      tier,
    );
    logger.info('scheduled backup done', { ...result });
    return 0;
  } catch (error) {
    io.stderr.write(`atmr-dr backup task: ${oneLine(error)}\n`);
    return error instanceof OperatorError ? error.exitCode : 1;
  } finally {
    // Outside Lambda there is no middleware to flush: EMF lines go to stdout, hence CloudWatch Logs.
    if (ran) metrics.publishStoredMetrics();
  }
}

if (require.main === module) {
  const abort = new AbortController();
  // ECS stops a task with SIGTERM, then SIGKILL after stopTimeout: abort uploads in between.
  process.once('SIGTERM', () => abort.abort(new Error('task stopped (SIGTERM)')));
  void main(process.argv.slice(2), process.env, { stderr: process.stderr, signal: abort.signal }).then(exitWhenFailed);
}
