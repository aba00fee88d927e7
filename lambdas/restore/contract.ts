/**
 * What the restore-test infrastructure (lib/constructs/restore-test.ts) and its code
 * (lambdas/restore/{handler,scheduled}.ts) agree on. No runtime dependencies: the CDK app imports it.
 */

/** Powertools service name: also the `service` dimension of the metrics below. */
export const RESTORE_TEST_SERVICE = 'restore-test';

/**
 * Defaults shared by the config (lib/config.ts RestoreTestConfigSchema) and the CLI's `restore-test`
 * options: here, without zod, so that the CLI's restore commands start without evaluating the
 * config schemas.
 */
export const RESTORE_TEST_DEFAULTS = {
  /** Recovery point objective in seconds (runbook: 15 minutes). */
  rpoObjectiveSeconds: 900,
  /** Recovery time objective in seconds (runbook: 30 minutes). */
  rtoObjectiveSeconds: 1800,
  /** Queries that must succeed on the restored database (these defaults alone are skipped when their table is absent; a test where all were skipped fails). */
  criticalQueries: ['SELECT COUNT(*) FROM company', 'SELECT COUNT(*) FROM booking'] as readonly string[],
} as const;

export const RESTORE_TEST_METRICS = { success: 'RestoreTestSuccess', rtoSeconds: 'RtoSeconds', rpoSeconds: 'RpoSeconds' } as const;

/** Non-secret settings of the function (never a password). */
export const RESTORE_TEST_ENV = {
  /** The cdk.json environment, named with --env in every command the function's lines print. */
  environmentName: 'RESTORE_ENVIRONMENT_NAME',
  bucket: 'BACKUP_BUCKET',
  targetHost: 'RESTORE_TEST_TARGET_HOST',
  targetPort: 'RESTORE_TEST_TARGET_PORT',
  targetSecretArn: 'RESTORE_TEST_TARGET_SECRET_ARN',
  iamAuthUser: 'RESTORE_TEST_IAM_AUTH_USER',
  tier: 'RESTORE_TEST_TIER',
  criticalQueries: 'RESTORE_TEST_CRITICAL_QUERIES',
  rtoObjectiveSeconds: 'RESTORE_TEST_RTO_OBJECTIVE_SECONDS',
  rpoObjectiveSeconds: 'RESTORE_TEST_RPO_OBJECTIVE_SECONDS',
  /** Database whose latest backup the test restores. @default the only protected database */
  database: 'RESTORE_TEST_DATABASE',
  /** JSON array of database names a Lambda restore never targets (the production database). */
  protectedDatabases: 'RESTORE_PROTECTED_DATABASES',
  /** useTemporaryInstance only: the instance restored from, and the temporary instance's settings. */
  sourceInstance: 'RESTORE_TEST_SOURCE_INSTANCE',
  temporaryInstance: 'RESTORE_TEST_TEMPORARY_INSTANCE',
  temporaryInstanceClass: 'RESTORE_TEST_TEMPORARY_INSTANCE_CLASS',
  temporaryInstanceSubnetGroup: 'RESTORE_TEST_TEMPORARY_INSTANCE_SUBNET_GROUP',
  temporaryInstanceSecurityGroups: 'RESTORE_TEST_TEMPORARY_INSTANCE_SECURITY_GROUPS',
  /** The source instance's customer-managed storage key (config recovery.storageKmsKeyArn), when there is one. */
  temporaryInstanceStorageKmsKey: 'RESTORE_TEST_STORAGE_KMS_KEY_ARN',
} as const;

/**
 * The state machine execution that created the temporary instance. A create whose answer was lost
 * (Step Functions retries the step on a Lambda service error, the SDK retries a request on a reset
 * connection or a 5xx) meets "already exists" on its own instance: this tag tells that instance from
 * one another run left or is using.
 */
export const EXECUTION_TAG = 'atmr-dr:restore-test-execution';

/**
 * The error of a temporary-instance step whose RDS call failed with what the SDK classifies as
 * throttling, transient or a server error once its own attempts were spent: the state machine tries
 * the step again (its Retry on this name) before its failure path.
 */
export const TEMPORARY_INSTANCE_TRANSIENT_ERROR = 'TemporaryInstanceRdsTransient';

/** The fixed name of an environment's temporary instance (IAM is scoped to exactly it). */
export function temporaryInstanceIdentifier(environmentName: string): string {
  return `atmr-dr-restore-test-${environmentName}`;
}
