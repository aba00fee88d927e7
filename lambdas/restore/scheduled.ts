import { PutObjectCommand } from '@aws-sdk/client-s3';
import type { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { z } from 'zod';
import { OperatorError } from '../shared/errors';
import { parseEnvSettings } from '../shared/env-settings';
import { resolveConnection } from '../shared/pg-connection';
import { RESTORE_TEST_REPORT_PREFIX } from '../shared/s3-layout';
import { BackupTierSchema } from '../shared/tiers';
import type { CatalogDeps } from './catalog';
import type { StatFs } from './download';
import { RESTORE_TEST_ENV, RESTORE_TEST_METRICS } from './contract';
import { RestoreResult, restoreBackup } from './restore';
import type { TemporaryInstanceSettings } from './temporary-instance';
import { RestoreTestReport, runRestoreTest } from './restore-test';

/**
 * The scheduled restore test (first Wednesday of the month): restores the latest backup of a tier
 * into a scratch database on the configured target instance, publishes RestoreTestSuccess /
 * RtoSeconds / RpoSeconds, and keeps the JSON report under `restore-tests/` in the bucket.
 */

const positiveInt = z.coerce.number().int().positive();
/** An environment variable holding a JSON array of non-empty strings (empty when unset). */
function jsonStringArray(what: string) {
  return z
    .string()
    .default('[]')
    .transform((text, ctx) => {
      try {
        return z.array(z.string().min(1)).parse(JSON.parse(text));
      } catch {
        ctx.addIssue({ code: 'custom', message: `must be a JSON array of ${what}` });
        return z.NEVER;
      }
    });
}

export const RestoreTestSettingsSchema = z.object({
  [RESTORE_TEST_ENV.bucket]: z.string().min(3),
  [RESTORE_TEST_ENV.targetHost]: z.string().min(1),
  [RESTORE_TEST_ENV.targetPort]: positiveInt.max(65535),
  [RESTORE_TEST_ENV.targetSecretArn]: z.string().startsWith('arn:').optional(),
  [RESTORE_TEST_ENV.iamAuthUser]: z.string().min(1).optional(),
  [RESTORE_TEST_ENV.tier]: BackupTierSchema.default('daily'),
  [RESTORE_TEST_ENV.database]: z.string().min(1).optional(),
  [RESTORE_TEST_ENV.criticalQueries]: jsonStringArray('SQL strings'),
  [RESTORE_TEST_ENV.protectedDatabases]: jsonStringArray('database names'),
  [RESTORE_TEST_ENV.rtoObjectiveSeconds]: positiveInt.default(1800),
  [RESTORE_TEST_ENV.rpoObjectiveSeconds]: positiveInt.default(900),
});
export type RestoreTestSettings = z.infer<typeof RestoreTestSettingsSchema>;

const TemporaryInstanceSettingsSchema = z.object({
  [RESTORE_TEST_ENV.sourceInstance]: z.string().min(1),
  [RESTORE_TEST_ENV.temporaryInstance]: z.string().min(1),
  [RESTORE_TEST_ENV.temporaryInstanceClass]: z.string().min(1),
  [RESTORE_TEST_ENV.temporaryInstanceSubnetGroup]: z.string().min(1),
  [RESTORE_TEST_ENV.temporaryInstanceSecurityGroups]: z.string().transform((text, ctx) => {
    try {
      return z.array(z.string().min(1)).min(1).parse(JSON.parse(text));
    } catch {
      ctx.addIssue({ code: 'custom', message: 'must be a JSON array of security group ids' });
      return z.NEVER;
    }
  }),
  [RESTORE_TEST_ENV.temporaryInstanceStorageKmsKey]: z.string().startsWith('arn:').optional(),
});

/** The temporary-instance settings, or a one-line error when this function is not configured for it. */
export function loadTemporaryInstanceSettings(env: NodeJS.ProcessEnv): TemporaryInstanceSettings {
  const s = parseEnvSettings(TemporaryInstanceSettingsSchema, env, {
    what: 'restore-test temporary instance',
    fix: 'this function is not configured for restoreTest.useTemporaryInstance: set it in cdk.json and redeploy',
  });
  return {
    sourceInstanceIdentifier: s[RESTORE_TEST_ENV.sourceInstance],
    temporaryInstanceIdentifier: s[RESTORE_TEST_ENV.temporaryInstance],
    instanceClass: s[RESTORE_TEST_ENV.temporaryInstanceClass],
    subnetGroupName: s[RESTORE_TEST_ENV.temporaryInstanceSubnetGroup],
    securityGroupIds: s[RESTORE_TEST_ENV.temporaryInstanceSecurityGroups],
    storageKmsKeyArn: s[RESTORE_TEST_ENV.temporaryInstanceStorageKmsKey],
  };
}

export function loadRestoreTestSettings(env: NodeJS.ProcessEnv): RestoreTestSettings {
  const settings = parseEnvSettings(RestoreTestSettingsSchema, env, {
    what: 'restore-test function',
    fix: 'it is set by the restore-test construct from the restoreTest config: redeploy the ops stack',
  });
  if (!settings[RESTORE_TEST_ENV.targetSecretArn] && !settings[RESTORE_TEST_ENV.iamAuthUser]) {
    throw new OperatorError(`restore-test needs ${RESTORE_TEST_ENV.targetSecretArn} or ${RESTORE_TEST_ENV.iamAuthUser}; it is set by the restore-test construct from the restoreTest config: redeploy the ops stack`, 2);
  }
  return settings;
}

/** The part of Powertools Metrics the test uses. */
export interface MetricsSink {
  addMetric(name: string, unit: 'Count' | 'Seconds', value: number): void;
}

export interface ScheduledRestoreTestDeps extends Pick<CatalogDeps, 's3' | 'environmentName'> {
  readonly secretsManager?: SecretsManagerClient;
  readonly metrics?: MetricsSink;
  /** libpq defaults (PGSSLMODE, PGSSLROOTCERT set by the runner image). */
  readonly env?: NodeJS.ProcessEnv;
  readonly region?: string;
  readonly now?: () => Date;
  readonly tempDir?: string;
  readonly statfs?: StatFs;
  readonly log?: (line: string) => void;
  /** What asks the operator to act (leftovers of a killed restore); default: log. */
  readonly warn?: (line: string) => void;
  /** Stops the test or the restore (the Lambda deadline): the staging (and the test's scratch) database dropped, the target untouched. */
  readonly signal?: AbortSignal;
  /** When (Date.now() ms) `signal` stops it for the function's deadline: the restore's check line says so. */
  readonly deadlineAt?: number;
}

export interface ScheduledRestoreTestResult {
  readonly report: RestoreTestReport;
  readonly reportKey: string;
}

/** A restore asked of the Lambda entry (same verified restore as the CLI, on the configured target). */
export const LambdaRestoreRequestSchema = z.strictObject({
  ref: z.string().min(1),
  tier: BackupTierSchema.optional(),
  targetDb: z.string().min(1),
  force: z.boolean().default(false),
  format: z.enum(['custom', 'plain']).optional(),
  terminateConnections: z.boolean().default(false),
  /** The CLI's --drop-replaced: by default the database replaced is kept, and the result names it (replacedKeptAs). */
  dropReplaced: z.boolean().default(false),
  /** pg_restore --no-owner, as the CLI's --no-owner (custom format only). */
  noOwner: z.boolean().default(false),
});
export type LambdaRestoreRequest = z.infer<typeof LambdaRestoreRequestSchema>;

/**
 * `{"restore": {...}}` on the Lambda entry: a verified restore into `targetDb` on the configured
 * target instance. The protected (production) names are refused with no override from an event:
 * overwriting production stays an operator's explicit CLI act.
 */
export async function runLambdaRestore(
  deps: ScheduledRestoreTestDeps,
  settings: RestoreTestSettings,
  request: LambdaRestoreRequest,
): Promise<Omit<RestoreResult, 'manifest'>> {
  const target = await targetConnection(deps, settings);
  const { manifest: _manifest, ...result } = await restoreBackup(
    { s3: deps.s3, bucket: settings[RESTORE_TEST_ENV.bucket], environmentName: deps.environmentName, connection: target, tempDir: deps.tempDir, statfs: deps.statfs, log: deps.log, warn: deps.warn },
    // The event's field, not the CLI's flag, is what an operator invoking the function can set.
    { ...request, database: testedDatabase(settings), protectedDatabases: settings[RESTORE_TEST_ENV.protectedDatabases], allowProductionOverwrite: false, signal: deps.signal, deadlineAt: deps.deadlineAt, noOwnerOption: '"noOwner": true in the event' },
  );
  return result;
}

/**
 * The database whose backups `latest` means here: the configured one, else the production database
 * (the only protected name), whose backups are the ones that matter.
 */
function testedDatabase(settings: RestoreTestSettings): string | undefined {
  const protectedNames = settings[RESTORE_TEST_ENV.protectedDatabases];
  return settings[RESTORE_TEST_ENV.database] ?? (protectedNames.length === 1 ? protectedNames[0] : undefined);
}

function targetConnection(deps: ScheduledRestoreTestDeps, settings: RestoreTestSettings) {
  return resolveConnection({
    env: { PGSSLMODE: deps.env?.PGSSLMODE, PGSSLROOTCERT: deps.env?.PGSSLROOTCERT },
    secretArn: settings[RESTORE_TEST_ENV.targetSecretArn],
    secretsManager: deps.secretsManager,
    iamAuthUser: settings[RESTORE_TEST_ENV.iamAuthUser],
    region: deps.region,
    // The scratch database is created from here; the secret's own dbname is never written to.
    overrides: { host: settings[RESTORE_TEST_ENV.targetHost], port: settings[RESTORE_TEST_ENV.targetPort], database: 'postgres' },
  });
}

export async function runScheduledRestoreTest(deps: ScheduledRestoreTestDeps, settings: RestoreTestSettings): Promise<ScheduledRestoreTestResult> {
  const now = deps.now ?? (() => new Date());
  const bucket = settings[RESTORE_TEST_ENV.bucket];
  const target = await targetConnection(deps, settings);
  const report = await runRestoreTest(
    { s3: deps.s3, bucket, environmentName: deps.environmentName, target, now, tempDir: deps.tempDir, statfs: deps.statfs, log: deps.log, warn: deps.warn, signal: deps.signal, deadlineAt: deps.deadlineAt },
    {
      takeBackup: false,
      tier: settings[RESTORE_TEST_ENV.tier],
      database: testedDatabase(settings),
      criticalQueries: settings[RESTORE_TEST_ENV.criticalQueries],
      rtoObjectiveSeconds: settings[RESTORE_TEST_ENV.rtoObjectiveSeconds],
      rpoObjectiveSeconds: settings[RESTORE_TEST_ENV.rpoObjectiveSeconds],
    },
  );
  deps.metrics?.addMetric(RESTORE_TEST_METRICS.success, 'Count', report.ok ? 1 : 0);
  // A run stopped during the restore publishes the time it ran as its RTO: a lower bound, which
  // still fires RestoreTest-Rto when it is over the objective.
  const rtoSeconds = report.rtoSeconds ?? report.rtoAtLeastSeconds;
  if (rtoSeconds !== undefined) deps.metrics?.addMetric(RESTORE_TEST_METRICS.rtoSeconds, 'Seconds', rtoSeconds);
  if (report.rpoSeconds !== undefined) deps.metrics?.addMetric(RESTORE_TEST_METRICS.rpoSeconds, 'Seconds', report.rpoSeconds);

  const reportKey = `${RESTORE_TEST_REPORT_PREFIX}${report.startedAt.replaceAll(':', '').replace(/\.\d+Z$/, 'Z')}.json`;
  try {
    await deps.s3.send(new PutObjectCommand({ Bucket: bucket, Key: reportKey, Body: `${JSON.stringify(report, null, 2)}\n`, ContentType: 'application/json' }));
  } catch (error) {
    throw new OperatorError(`restore test ${report.ok ? 'passed' : 'failed'} but its report could not be written to s3://${bucket}/${reportKey}: ${(error as Error).message}`);
  }
  return { report, reportKey };
}
