import { DescribeDBInstancesCommand, RDSClient } from '@aws-sdk/client-rds';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { MetricUnit } from '@aws-lambda-powertools/metrics';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import { captureLambdaHandler } from '@aws-lambda-powertools/tracer/middleware';
import middy from '@middy/core';
import * as os from 'node:os';
import type { Context } from 'aws-lambda';
import { z } from 'zod';
import { BackupTierSchema } from '../shared/tiers';
import { createS3Client, DEFAULT_MAX_ATTEMPTS } from '../shared/aws';
import { msUntilDeadline } from '../shared/deadline';
import { OperatorError } from '../shared/errors';
import { removedTempDirLine, runTempDir } from '../shared/temp-dir';
import { observability } from '../shared/observability';
import { RESTORE_TEST_ENV, RESTORE_TEST_SERVICE } from './contract';
import { LambdaRestoreRequestSchema, loadRestoreTestSettings, loadTemporaryInstanceSettings, runLambdaRestore, runScheduledRestoreTest } from './scheduled';
import { FunctionDeadlineStop, RESTORE_DEADLINE_MARGIN_MS, RESTORE_FUNCTION_TIMEOUT_SECONDS } from './deadline';
import { createTemporaryInstance, deleteOwnTemporaryInstance, deleteTemporaryInstance, temporaryInstanceStatus } from './temporary-instance';

/**
 * Lambda entry of the restore concern (runner image, CMD `restore.handler`):
 *  - `{}` or `{"tier": "..."}` (EventBridge Scheduler): the restore test. A failed test is
 *    reported (metric 0, report in the bucket) and returned; only a crash throws.
 *  - `{"restore": {"ref", "targetDb", "tier"?, "force"?, "format"?, "terminateConnections"?, "dropReplaced"?, "noOwner"?}}`:
 *    a verified restore on the configured target; refusals throw their one-line OperatorError.
 *  - `{"temporaryInstance": "create" | "status" | "delete" | "deleteIfOwn", "execution"?}` and `{"tier"}`:
 *    the steps of the restore test on a temporary RDS instance (driven by a Step Functions state
 *    machine; `execution`, its execution's name, marks the instance as that run's).
 */
const { logger, metrics, tracer } = observability(RESTORE_TEST_SERVICE);

// Where the stop margin and the function's limit are explained (the construct reads them too).
export { RESTORE_DEADLINE_MARGIN_MS } from './deadline';

let clients: { s3: ReturnType<typeof createS3Client>; secretsManager: SecretsManagerClient } | undefined;
let rdsClient: RDSClient | undefined;

const RestoreEventSchema = z.strictObject({ restore: LambdaRestoreRequestSchema });
const RestoreTestEventSchema = z.object({
  tier: BackupTierSchema.optional(),
  /** The temporary instance's endpoint (state machine), instead of the configured target. */
  targetHost: z.string().min(1).optional(),
  targetPort: z.number().int().min(1).max(65535).optional(),
});
const TemporaryInstanceEventSchema = z.union([
  z.strictObject({ temporaryInstance: z.enum(['create', 'status', 'delete']), execution: z.string().min(1).max(80).optional() }),
  z.strictObject({ temporaryInstance: z.literal('deleteIfOwn'), execution: z.string().min(1).max(80) }),
]);
/** Temporary-instance mode: nothing in the event can name a target, the temporary instance is the only one. */
const TemporaryInstanceTestEventSchema = z.strictObject({ tier: BackupTierSchema.optional() });

/**
 * The temporary instance as the test's target: its endpoint and its own RDS-managed master secret,
 * looked up by its fixed name (the function holds no production host, port or secret).
 */
export async function temporaryInstanceTarget(rds: RDSClient, identifier: string): Promise<{ host: string; port: number; secretArn: string }> {
  const instance = (await rds.send(new DescribeDBInstancesCommand({ DBInstanceIdentifier: identifier }))).DBInstances?.[0];
  const host = instance?.Endpoint?.Address;
  const secretArn = instance?.MasterUserSecret?.SecretArn;
  if (instance?.DBInstanceStatus !== 'available' || !host || !secretArn || instance.MasterUserSecret?.SecretStatus !== 'active') {
    throw new OperatorError(
      `temporary instance ${identifier} is not ready for the test (status ${instance?.DBInstanceStatus ?? 'unknown'}, master secret ${instance?.MasterUserSecret?.SecretStatus ?? 'none'}): run it through the state machine`,
    );
  }
  return { host, port: instance.Endpoint?.Port ?? 5432, secretArn };
}

export async function restoreTestHandler(event: unknown, context?: Context) {
  if (typeof event === 'object' && event !== null && 'temporaryInstance' in event) {
    const step = TemporaryInstanceEventSchema.safeParse(event);
    if (!step.success) {
      throw new OperatorError(
        'temporary-instance event must be {"temporaryInstance": "create" | "status" | "delete", "execution"?: "<execution name>"} or {"temporaryInstance": "deleteIfOwn", "execution": "<execution name>"}',
      );
    }
    const settings = loadTemporaryInstanceSettings(process.env);
    const rds = (rdsClient ??= tracer.captureAWSv3Client(new RDSClient({ maxAttempts: DEFAULT_MAX_ATTEMPTS })));
    const data = step.data;
    const result =
      data.temporaryInstance === 'deleteIfOwn'
        ? await deleteOwnTemporaryInstance(rds, settings, data.execution)
        : await {
            create: () => createTemporaryInstance(rds, settings, data.execution),
            status: () => temporaryInstanceStatus(rds, settings),
            delete: () => deleteTemporaryInstance(rds, settings),
          }[data.temporaryInstance]();
    logger.info(`temporary instance ${step.data.temporaryInstance}`, { result });
    return result;
  }
  const temporaryInstance = process.env[RESTORE_TEST_ENV.temporaryInstance];
  let env: NodeJS.ProcessEnv = process.env;
  if (temporaryInstance) {
    if (!TemporaryInstanceTestEventSchema.safeParse(event ?? {}).success) {
      throw new OperatorError('this restore test runs on a temporary instance: its event is {} or {"tier": "hourly|daily|weekly|monthly"}, and names no target');
    }
    rdsClient ??= tracer.captureAWSv3Client(new RDSClient({ maxAttempts: DEFAULT_MAX_ATTEMPTS }));
    const target = await temporaryInstanceTarget(rdsClient, temporaryInstance);
    env = {
      ...process.env,
      [RESTORE_TEST_ENV.targetHost]: target.host,
      [RESTORE_TEST_ENV.targetPort]: String(target.port),
      [RESTORE_TEST_ENV.targetSecretArn]: target.secretArn,
      [RESTORE_TEST_ENV.iamAuthUser]: undefined,
    };
  }
  const isRestore = typeof event === 'object' && event !== null && 'restore' in event;
  const parsed = isRestore ? RestoreEventSchema.safeParse(event) : RestoreTestEventSchema.safeParse(event ?? {});
  if (!parsed.success) {
    // The first field at fault, named: "noOwner": "yes" must not read as a malformed event as a whole.
    const issue = parsed.error.issues[0];
    const why = issue === undefined ? '' : ` (${issue.path.length > 0 ? `${issue.path.join('.')}: ` : ''}${issue.message})`;
    throw new OperatorError(
      `restore event must be {} or {"tier": "hourly|daily|weekly|monthly"} (restore test), or {"restore": {"ref": "latest", "targetDb": "<name>", "tier"?, "force"?, "format"?, "terminateConnections"?, "dropReplaced"?, "noOwner"?}}${why}`,
    );
  }
  const settings = loadRestoreTestSettings(env);
  clients ??= {
    s3: createS3Client(),
    secretsManager: tracer.captureAWSv3Client(new SecretsManagerClient({ maxAttempts: DEFAULT_MAX_ATTEMPTS })),
  };
  // A run whose process was ended (the time limit, a crash, kill -9) left its download, a whole
  // backup, in /tmp, which the next invocations of this environment share: removed first.
  const tempDir = runTempDir(os.tmpdir(), { pidReused: true });
  for (const dir of tempDir.swept) logger.warn(removedTempDirLine(dir));
  // Both stop before Lambda's time limit: a restore that does not fit is then a failure that drops its
  // staging database and leaves the target as it was (the test: report written, metric 0), not a
  // killed invocation that leaves a copy of the data on the server, or the target half swapped, and
  // no report.
  const stopInMs = msUntilDeadline(context, RESTORE_DEADLINE_MARGIN_MS);
  const deadline = new AbortController();
  const timer =
    stopInMs === undefined
      ? undefined
      : setTimeout(
          () => deadline.abort(new FunctionDeadlineStop(`stopped ${RESTORE_DEADLINE_MARGIN_MS / 1000} s before the function's time limit (${RESTORE_FUNCTION_TIMEOUT_SECONDS / 60} minutes): the restore takes longer than one run allows`)),
          stopInMs,
        );
  const deps = {
    ...clients,
    env: process.env,
    environmentName: process.env[RESTORE_TEST_ENV.environmentName] || undefined,
    region: process.env.AWS_REGION,
    log: (line: string) => logger.info(line),
    warn: (line: string) => logger.warn(line),
    tempDir: tempDir.path,
    signal: deadline.signal,
    deadlineAt: stopInMs === undefined ? undefined : Date.now() + stopInMs,
  };
  try {
    if ('restore' in parsed.data) {
      const result = await runLambdaRestore(deps, settings, parsed.data.restore);
      logger.info('restore done', { manifestKey: result.manifestKey, targetDb: result.targetDb, rtoSeconds: result.rtoSeconds });
      return { ok: true, ...result };
    }
    if (parsed.data.tier) settings.RESTORE_TEST_TIER = parsed.data.tier;
    if (parsed.data.targetHost) settings.RESTORE_TEST_TARGET_HOST = parsed.data.targetHost;
    if (parsed.data.targetPort) settings.RESTORE_TEST_TARGET_PORT = parsed.data.targetPort;
    const { report, reportKey } = await runScheduledRestoreTest(
      { ...deps, metrics: { addMetric: (name, unit, value) => metrics.addMetric(name, unit === 'Count' ? MetricUnit.Count : MetricUnit.Seconds, value) } },
      settings,
    );
    // A verified restore that missed an objective pages (RestoreTest-Rpo, RestoreTest-Rto): its log
    // says so at WARN, with what was measured against what, so "passed" alone never sits beside a page.
    const missed = [
      report.rpoMet === false ? `the restored backup was ${report.rpoSeconds} s old, over the RPO objective of ${report.rpoObjectiveSeconds} s` : undefined,
      report.rtoMet === false ? `the restore took ${report.rtoSeconds} s, over the RTO objective of ${report.rtoObjectiveSeconds} s` : undefined,
    ].filter((line) => line !== undefined);
    const measured = { reportKey, rtoSeconds: report.rtoSeconds, rpoSeconds: report.rpoSeconds };
    if (!report.ok) logger.error('restore test failed', { reportKey, error: report.error });
    else if (missed.length > 0) logger.warn(`restore test passed, objective missed: ${missed.join('; ')}`, measured);
    else logger.info('restore test passed', measured);
    return { ok: report.ok, reportKey, rtoSeconds: report.rtoSeconds, rpoSeconds: report.rpoSeconds, error: report.error };
  } finally {
    clearTimeout(timer);
    tempDir.remove();
  }
}

export const handler = middy(restoreTestHandler).use(injectLambdaContext(logger)).use(logMetrics(metrics)).use(captureLambdaHandler(tracer));
