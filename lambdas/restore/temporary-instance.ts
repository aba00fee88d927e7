import {
  DeleteDBInstanceCommand,
  DBInstance,
  DescribeDBInstancesCommand,
  RDSClient,
  RestoreDBInstanceToPointInTimeCommand,
} from '@aws-sdk/client-rds';
import { createHash } from 'node:crypto';
import { isTransientAwsError, noNews } from '../shared/aws-errors';
import { namedLine, OperatorError, oneLine } from '../shared/errors';
import { describeInstance } from '../shared/rds-instances';
import { EXECUTION_TAG, TEMPORARY_INSTANCE_TRANSIENT_ERROR } from './contract';

/**
 * The temporary RDS instance of the restore test (`restoreTest.useTemporaryInstance`): created by
 * point-in-time restore of the backed-up instance to its latest restorable time (the newest
 * automated snapshot plus the transaction logs after it), polled until available, deleted
 * whatever happens. A Step Functions state machine drives the steps (an instance restore outlasts
 * one Lambda invocation); each step is one call here.
 */
export interface TemporaryInstanceSettings {
  readonly sourceInstanceIdentifier: string;
  /** Fixed per environment: one temporary instance at a time, and IAM scoped to exactly it. */
  readonly temporaryInstanceIdentifier: string;
  readonly instanceClass: string;
  readonly subnetGroupName: string;
  readonly securityGroupIds: readonly string[];
  /** The source's customer-managed storage key (config recovery.storageKmsKeyArn), when configured. */
  readonly storageKmsKeyArn?: string;
}

export const TEMPORARY_INSTANCE_TAGS = [
  { Key: 'atmr-dr:managed', Value: 'true' },
  { Key: 'atmr-dr:purpose', Value: 'restore-test' },
];

// Defined with the contract: the state machine's failure line names it too.
export { EXECUTION_TAG } from './contract';

/**
 * The tag value for an execution name. RDS accepts letters, digits, spaces and _.:/=+-@ in tag values;
 * an execution name may also hold characters such as ( ) ! ' (a name given by hand to
 * start-execution): such a name is tagged by its hash, the same for every call of that execution.
 */
export function executionTagValue(execution: string): string {
  return /^[\p{L}\p{Z}\p{N}_.:/=+\-@]{1,256}$/u.test(execution) ? execution : `sha256:${createHash('sha256').update(execution).digest('hex')}`;
}

export interface TemporaryInstanceStatus {
  readonly identifier: string;
  readonly status: string;
  readonly ready: boolean;
  readonly host?: string;
  readonly port?: number;
}

/**
 * The instance of that name as RDS describes it, with the execution it was created by (its
 * EXECUTION_TAG: DescribeDBInstances returns the tags, no other right needed); undefined when there
 * is none.
 */
async function describeTemporaryInstance(rds: RDSClient, identifier: string): Promise<{ status: string; execution?: string } | undefined> {
  const instance = await describeInstance(rds, identifier);
  if (!instance) return undefined;
  return { status: instance.DBInstanceStatus ?? 'unknown', execution: instance.TagList?.find((tag) => tag.Key === EXECUTION_TAG)?.Value };
}

/**
 * `execution`: the state machine execution's name, tagged on the instance so that a retry of this
 * same create recognizes it. Without it (an invocation by hand), the instance is untagged and any
 * instance of that name is refused.
 */
export async function createTemporaryInstance(rds: RDSClient, settings: TemporaryInstanceSettings, execution?: string): Promise<TemporaryInstanceStatus> {
  try {
    const response = await rds.send(
      new RestoreDBInstanceToPointInTimeCommand({
        SourceDBInstanceIdentifier: settings.sourceInstanceIdentifier,
        TargetDBInstanceIdentifier: settings.temporaryInstanceIdentifier,
        UseLatestRestorableTime: true,
        DBInstanceClass: settings.instanceClass,
        DBSubnetGroupName: settings.subnetGroupName,
        VpcSecurityGroupIds: [...settings.securityGroupIds],
        PubliclyAccessible: false,
        MultiAZ: false,
        DeletionProtection: false,
        AutoMinorVersionUpgrade: false,
        CopyTagsToSnapshot: false,
        // No automated backups: a restored instance with a retention takes its first backup once
        // available ("backing-up"), and RDS refuses to delete an instance in that state, which
        // would leave the test's instance billed after the test. Nothing here needs its backups.
        BackupRetentionPeriod: 0,
        Tags: [...TEMPORARY_INSTANCE_TAGS, ...(execution ? [{ Key: EXECUTION_TAG, Value: executionTagValue(execution) }] : [])],
      }),
    );
    return { identifier: settings.temporaryInstanceIdentifier, status: response.DBInstance?.DBInstanceStatus ?? 'creating', ready: false };
  } catch (error) {
    if ((error as { name?: string }).name === 'DBInstanceAlreadyExistsFault') {
      const identifier = settings.temporaryInstanceIdentifier;
      let existing: Awaited<ReturnType<typeof describeTemporaryInstance>>;
      try {
        existing = await describeTemporaryInstance(rds, identifier);
      } catch (describeError) {
        throw new OperatorError(
          `temporary instance ${identifier} already exists and its tags could not be read (${oneLine(describeError)}): if its ${EXECUTION_TAG} tag is not this run's, wait for it or delete it, then retry; if it is, delete it (it costs money)`,
        );
      }
      // This execution's own create, accepted by RDS once already: the instance is the one to test on.
      if (execution && existing?.execution === executionTagValue(execution)) return { identifier, status: existing.status, ready: false };
      const owner = existing?.execution ? `: created by restore-test execution ${existing.execution}` : '';
      throw new OperatorError(
        `temporary instance ${identifier} already exists (a previous restore test did not clean up, or one is running${owner}): wait for it or delete it, then retry`,
      );
    }
    if (refusedForTheKey(error)) {
      // The restore creates a grant on the source's storage key with the function's rights: PITR and
      // the subnet group have nothing to do with it.
      throw new OperatorError(
        settings.storageKmsKeyArn
          ? `cannot restore ${settings.sourceInstanceIdentifier} to a temporary instance: RDS could not use its storage key ${settings.storageKmsKeyArn} (${oneLine(error)}); check that recovery.storageKmsKeyArn is the key of ${settings.sourceInstanceIdentifier}'s storage and that the key's policy lets this account's IAM policies grant it (kms:CreateGrant via RDS), then redeploy`
          : `cannot restore ${settings.sourceInstanceIdentifier} to a temporary instance: RDS could not use its storage key (${oneLine(error)}); its storage is encrypted with a customer-managed key: set recovery.storageKmsKeyArn to that key's ARN in cdk.json and redeploy (the test's role then gets kms:CreateGrant on it via RDS)`,
      );
    }
    throw new OperatorError(`cannot restore ${settings.sourceInstanceIdentifier} to a temporary instance: ${oneLine(error)}; check PITR (automated backups) and the subnet group`);
  }
}

/**
 * A restore RDS refused because it could not use the storage key: its KMSKeyNotAccessibleFault, or
 * an access denial that names KMS (the caller's missing kms:CreateGrant, as RDS passes it on).
 */
function refusedForTheKey(error: unknown): boolean {
  const { name, message } = error as { name?: string; message?: string };
  if (name === 'KMSKeyNotAccessibleFault') return true;
  return /AccessDenied|NotAuthorized/i.test(name ?? '') && /\bkms\b/i.test(message ?? '');
}

const FAILED_STATES = ['failed', 'incompatible-restore', 'incompatible-parameters', 'incompatible-network', 'restore-error', 'storage-full', 'deleting'];

/**
 * One poll of the instance. A describe that RDS throttled or answered with a 5xx past the SDK's
 * attempts says nothing about the instance: not ready, polled again a minute later (the state
 * machine's 4-hour limit still ends a wait that never gets an answer), rather than a failed test.
 */
export async function temporaryInstanceStatus(rds: RDSClient, settings: TemporaryInstanceSettings): Promise<TemporaryInstanceStatus> {
  const identifier = settings.temporaryInstanceIdentifier;
  let instance: DBInstance | undefined;
  try {
    instance = (await rds.send(new DescribeDBInstancesCommand({ DBInstanceIdentifier: identifier }))).DBInstances?.[0];
  } catch (error) {
    instance = noNews((status): DBInstance => ({ DBInstanceStatus: status }))(error);
  }
  const status = instance?.DBInstanceStatus ?? 'unknown';
  if (FAILED_STATES.includes(status)) {
    throw new OperatorError(`temporary instance ${identifier} is "${status}": the point-in-time restore failed; see the RDS events of the instance`);
  }
  const ready = status === 'available' && Boolean(instance?.Endpoint?.Address);
  return {
    identifier,
    status,
    ready,
    ...(ready && { host: instance!.Endpoint!.Address!, port: instance!.Endpoint!.Port ?? 5432 }),
  };
}

/**
 * Runs one temporary-instance step; RDS throttling or a 5xx outlasting the SDK's attempts (the SDK's
 * error, or the cause of the step's own OperatorError) says nothing about the instance: it is named
 * TEMPORARY_INSTANCE_TRANSIENT_ERROR so that the state machine asks again (every step named so is
 * safe to repeat) before its failure path. `unknown`: what the failure leaves unknown.
 */
async function namingTransientFailures<T>(identifier: string, unknown: string, step: () => Promise<T>): Promise<T> {
  try {
    return await step();
  } catch (error) {
    const sdkError = error instanceof OperatorError ? error.cause : error;
    if (isTransientAwsError(sdkError)) {
      throw Object.assign(new Error(`temporary instance ${identifier}: RDS failed transiently (${namedLine(sdkError)}); ${unknown}`), {
        name: TEMPORARY_INSTANCE_TRANSIENT_ERROR,
      });
    }
    throw error;
  }
}

/**
 * Idempotent: an instance already gone (or being deleted) is fine. RDS answers InvalidDBInstanceState
 * for other states too (a backup or maintenance in progress): the instance then stays, and the step
 * fails so that the execution's alarm says so. Throttling or a 5xx (of either call) is named for the
 * state machine's Retry.
 */
export async function deleteTemporaryInstance(rds: RDSClient, settings: TemporaryInstanceSettings): Promise<{ identifier: string; deleted: boolean }> {
  const identifier = settings.temporaryInstanceIdentifier;
  return namingTransientFailures(identifier, 'the instance may still exist', async () => {
    try {
      await rds.send(new DeleteDBInstanceCommand({ DBInstanceIdentifier: identifier, SkipFinalSnapshot: true, DeleteAutomatedBackups: true }));
      return { identifier, deleted: true };
    } catch (error) {
      const name = (error as { name?: string }).name;
      if (name === 'DBInstanceNotFoundFault') return { identifier, deleted: false };
      if (name === 'InvalidDBInstanceStateFault') {
        let status: string | undefined;
        let describeError: unknown;
        try {
          status = (await rds.send(new DescribeDBInstancesCommand({ DBInstanceIdentifier: identifier }))).DBInstances?.[0]?.DBInstanceStatus;
        } catch (caught) {
          // Its deletion ended between the two calls: gone. Any other error: unknown, so not done.
          if ((caught as { name?: string }).name === 'DBInstanceNotFoundFault') return { identifier, deleted: false };
          describeError = caught;
        }
        if (status === 'deleting') return { identifier, deleted: false };
        // The describe's error as the cause: a throttled look at the state is asked again, not a refusal.
        throw new OperatorError(
          `cannot delete temporary instance ${identifier}: it is "${status ?? 'unknown'}" (${oneLine(error)}); delete it by hand once it is available (it costs money)`,
          1,
          describeError === undefined ? undefined : { cause: describeError },
        );
      }
      // The SDK's error as the cause: a caller tells a throttled or failing RDS from a refusal by it.
      throw new OperatorError(`cannot delete temporary instance ${identifier}: ${oneLine(error)}; delete it by hand (it costs money)`, 1, { cause: error });
    }
  });
}

/**
 * After a failed create step: the create may have been accepted by RDS all the same (its answer lost,
 * then the retries spent, or the step failing after the call), so the instance is deleted when it is
 * this execution's (EXECUTION_TAG), and left alone otherwise (another run's, or none).
 */
export async function deleteOwnTemporaryInstance(
  rds: RDSClient,
  settings: TemporaryInstanceSettings,
  execution: string,
): Promise<{ identifier: string; deleted: boolean; detail: string }> {
  const identifier = settings.temporaryInstanceIdentifier;
  return namingTransientFailures(identifier, "this run's instance, if any, may still exist", async () => {
    const existing = await describeTemporaryInstance(rds, identifier);
    if (!existing) return { identifier, deleted: false, detail: 'not created' };
    if (existing.execution !== executionTagValue(execution)) {
      return { identifier, deleted: false, detail: `not this execution's (${EXECUTION_TAG}=${existing.execution ?? 'none'}): left as it is` };
    }
    const result = await deleteTemporaryInstance(rds, settings);
    return { ...result, detail: result.deleted ? 'created by this execution: deleted' : 'created by this execution: already gone or being deleted' };
  });
}
