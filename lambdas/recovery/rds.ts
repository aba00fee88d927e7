import { OPERATOR_CLI, operatorCommand } from '../shared/constants';
import {
  DBInstance,
  DeleteDBInstanceCommand,
  DescribeDBInstanceAutomatedBackupsCommand,
  ListTagsForResourceCommand,
  ModifyDBInstanceCommand,
  AddTagsToResourceCommand,
  RDSClient,
  RemoveTagsFromResourceCommand,
  RestoreDBInstanceToPointInTimeCommand,
  Tag,
} from '@aws-sdk/client-rds';
import { namedLine, OperatorError, oneLine } from '../shared/errors';
import { describeInstance } from '../shared/rds-instances';
import { COPY_BUSY_ERROR, MANAGED_TAG, RECOVERY_PURPOSE_TAG } from './contract';

/** The recovery that created an instance: deletion requires it to match. */
export const RECOVERY_ID_TAG = 'atmr-dr:recovery-id';

/**
 * The RDS side of a point-in-time recovery: checks before anything is created, the restore with
 * the source's own settings, the wait, and the deletion of a recovered copy. The production
 * instance is only ever read here (renaming it after a cutover is `markReplacedInstance`).
 */

export interface RecoveryTarget {
  readonly sourceInstance: string;
  readonly newInstance: string;
  /** Prefix the new instance's name must start with (IAM is scoped to it). */
  readonly newInstancePrefix: string;
  readonly toTime: Date;
}

export interface RestoreWindow {
  readonly earliest: Date;
  readonly latest: Date;
}

export interface ValidatedRecovery {
  readonly source: DBInstance;
  readonly window: RestoreWindow;
}

/**
 * The tags of a described instance: its TagList when DescribeDBInstances returned one, else
 * ListTagsForResource on its ARN (the recovery's role has both, on the source and the copies).
 */
async function instanceTags(rds: RDSClient, instance: DBInstance): Promise<Tag[]> {
  return instance.TagList ?? (await rds.send(new ListTagsForResourceCommand({ ResourceName: instance.DBInstanceArn }))).TagList ?? [];
}

/** An instance name RDS accepts: 1-63 letters, digits, hyphens; starts with a letter; no double or trailing hyphen. */
export function checkInstanceName(name: string, prefix: string): void {
  if (!/^[a-zA-Z][a-zA-Z0-9-]{0,62}$/.test(name) || name.includes('--') || name.endsWith('-')) {
    throw new OperatorError(`recover: --new-instance "${name}" is not a valid RDS instance name: 1-63 letters, digits or single hyphens, starting with a letter`, 2);
  }
  if (!name.startsWith(prefix)) {
    throw new OperatorError(`recover: --new-instance "${name}" must start with "${prefix}" (the workflow may only create instances under that prefix): e.g. ${prefix}${name}`.slice(0, 400), 2);
  }
}

/** `<prefix><yyyymmddhhmm>` of the time restored to. */
export function defaultInstanceName(prefix: string, toTime: Date): string {
  return `${prefix}${toTime.toISOString().replace(/[-:T]/g, '').slice(0, 12)}`;
}

/**
 * Every refusal comes before anything is created: PITR off, a time outside the restore window
 * (both limits shown), a name already taken.
 */
export async function validateRecovery(rds: RDSClient, target: RecoveryTarget): Promise<ValidatedRecovery> {
  checkInstanceName(target.newInstance, target.newInstancePrefix);
  const source = await describeInstance(rds, target.sourceInstance);
  if (!source) throw new OperatorError(`recover: source instance ${target.sourceInstance} does not exist: fix database.instanceIdentifier in the config`, 2);
  if (!source.BackupRetentionPeriod) {
    throw new OperatorError(
      `recover: point-in-time recovery is off on ${target.sourceInstance} (automated backup retention 0): no restore is possible; enable automated backups (retention >= 7 days) and restore from the dumps meanwhile (${OPERATOR_CLI} restore)`,
      2,
    );
  }
  const window = await restoreWindow(rds, source);
  const time = target.toTime;
  if (time.getTime() > window.latest.getTime()) {
    throw new OperatorError(
      `recover: --to-time ${time.toISOString()} is after the latest restorable time ${window.latest.toISOString()} (earliest ${window.earliest.toISOString()}): pick a time between them`,
      2,
    );
  }
  if (time.getTime() < window.earliest.getTime()) {
    throw new OperatorError(
      `recover: --to-time ${time.toISOString()} is before the earliest restorable time ${window.earliest.toISOString()} (latest ${window.latest.toISOString()}): pick a time between them, or restore an older dump (${OPERATOR_CLI} backups list)`,
      2,
    );
  }
  if (await describeInstance(rds, target.newInstance)) {
    throw new OperatorError(`recover: an instance named ${target.newInstance} already exists: pass --new-instance with another name (it is never overwritten)`, 2);
  }
  return { source, window };
}

async function restoreWindow(rds: RDSClient, source: DBInstance): Promise<RestoreWindow> {
  const backups = await rds.send(new DescribeDBInstanceAutomatedBackupsCommand({ DBInstanceIdentifier: source.DBInstanceIdentifier }));
  const window = backups.DBInstanceAutomatedBackups?.find((b) => b.Status === 'active')?.RestoreWindow ?? backups.DBInstanceAutomatedBackups?.[0]?.RestoreWindow;
  const earliest = window?.EarliestTime;
  const latest = source.LatestRestorableTime ?? window?.LatestTime;
  if (!earliest || !latest) {
    throw new OperatorError(`recover: ${source.DBInstanceIdentifier} has no restore window yet (no automated backup completed): wait for the first one, or restore a dump`, 2);
  }
  return { earliest: new Date(earliest), latest: new Date(latest) };
}

export interface RestoreSettings {
  /** The configured subnet group (IAM scope): the source's must be the same. */
  readonly expectedSubnetGroup?: string;
  /** Tags from the config, added after the source's own tags. */
  readonly extraTags: Readonly<Record<string, string>>;
  readonly recoveryId: string;
}

/** The restore request, settings copied from the source instance. */
export function restoreInput(validated: ValidatedRecovery, target: RecoveryTarget, sourceTags: readonly Tag[], settings: RestoreSettings) {
  const { source } = validated;
  const subnetGroup = source.DBSubnetGroup?.DBSubnetGroupName;
  if (settings.expectedSubnetGroup && subnetGroup !== settings.expectedSubnetGroup) {
    throw new OperatorError(
      `recover: ${target.sourceInstance} is in subnet group "${subnetGroup}", the config says "${settings.expectedSubnetGroup}": fix recovery.subnetGroupName and redeploy`,
      2,
    );
  }
  const tags = new Map<string, string>();
  for (const tag of sourceTags) if (tag.Key && !tag.Key.startsWith('aws:')) tags.set(tag.Key, tag.Value ?? '');
  for (const [key, value] of Object.entries(settings.extraTags)) tags.set(key, value);
  tags.set(MANAGED_TAG.Key, MANAGED_TAG.Value);
  tags.set(RECOVERY_PURPOSE_TAG.Key, RECOVERY_PURPOSE_TAG.Value);
  tags.set(RECOVERY_ID_TAG, settings.recoveryId);
  tags.set('atmr-dr:restored-from', target.sourceInstance);
  tags.set('atmr-dr:restored-to-time', target.toTime.toISOString());
  // Below 400 GiB, gp3 storage of PostgreSQL has fixed baseline IOPS and throughput, which
  // DescribeDBInstances reports but RDS refuses in a request (InvalidParameterCombination): the
  // restore gets them by itself.
  const baselineGp3 = source.StorageType === 'gp3' && (source.AllocatedStorage ?? 0) < 400;
  return {
    SourceDBInstanceIdentifier: target.sourceInstance,
    TargetDBInstanceIdentifier: target.newInstance,
    RestoreTime: target.toTime,
    DBInstanceClass: source.DBInstanceClass,
    DBSubnetGroupName: subnetGroup,
    VpcSecurityGroupIds: (source.VpcSecurityGroups ?? []).map((g) => g.VpcSecurityGroupId!).filter(Boolean),
    DBParameterGroupName: source.DBParameterGroups?.[0]?.DBParameterGroupName,
    MultiAZ: source.MultiAZ,
    StorageType: source.StorageType,
    ...(source.Iops !== undefined && !baselineGp3 && { Iops: source.Iops }),
    ...(source.StorageThroughput !== undefined && !baselineGp3 && { StorageThroughput: source.StorageThroughput }),
    Port: source.Endpoint?.Port,
    PubliclyAccessible: source.PubliclyAccessible ?? false,
    EnableIAMDatabaseAuthentication: source.IAMDatabaseAuthenticationEnabled,
    CopyTagsToSnapshot: source.CopyTagsToSnapshot,
    // Abandon deletes the copy (after a final snapshot): off here; once it is production, the
    // cutover's last lines and `recover status` give the command that turns it on.
    DeletionProtection: false,
    Tags: [...tags].map(([Key, Value]) => ({ Key, Value })),
  };
}

/** Starts the restore. The storage KMS key needs no parameter: RDS keeps the source's key. */
export async function startRestore(rds: RDSClient, validated: ValidatedRecovery, target: RecoveryTarget, settings: RestoreSettings): Promise<{ status: string }> {
  const tagList = await instanceTags(rds, validated.source);
  const input = restoreInput(validated, target, tagList, settings);
  try {
    const response = await rds.send(new RestoreDBInstanceToPointInTimeCommand(input));
    return { status: response.DBInstance?.DBInstanceStatus ?? 'creating' };
  } catch (error) {
    if ((error as { name?: string }).name === 'DBInstanceAlreadyExistsFault') {
      // The SDK retries a request whose answer was lost (a reset connection, a 5xx): when RDS had
      // accepted the first one, the retry is refused because the copy this call created exists. Its
      // tag says so; the copy is then this recovery's, under way, and not to be deleted as a failure.
      let own: string | undefined;
      try {
        own = await ownRestoreStatus(rds, target.newInstance, settings.recoveryId);
      } catch (describeError) {
        throw new OperatorError(
          `recover: RDS says an instance named ${target.newInstance} already exists, and whether this recovery created it (tag ${RECOVERY_ID_TAG}=${settings.recoveryId}) could not be read: ${oneLine(describeError)}; look at its tags before deleting it`,
        );
      }
      if (own) return { status: own };
      throw new OperatorError(`recover: an instance named ${target.newInstance} already exists: pass --new-instance with another name`, 2);
    }
    throw new OperatorError(`recover: RDS refused the restore of ${target.sourceInstance} to ${target.toTime.toISOString()}: ${oneLine(error)}`);
  }
}

const FAILED_STATES = ['failed', 'incompatible-restore', 'incompatible-parameters', 'incompatible-network', 'restore-error', 'storage-full', 'deleting', 'inaccessible-encryption-credentials'];

/** States in which an instance has no data to snapshot: RDS deletes it only with SkipFinalSnapshot. */
const NO_DATA_STATES = ['creating', 'failed', 'incompatible-restore', 'incompatible-network', 'restore-error'];

/**
 * States in which an instance holds data but RDS cannot snapshot it, with why (`why`) and what, if
 * anything, lets abandon keep a final snapshot (`keep`), for the operator. Abandon deletes such a
 * copy without one only when told to (--skip-final-snapshot), never on its own.
 *
 * Only states with a documented reason are listed. Both are RDS without the use of the instance's
 * KMS key, and a snapshot of an encrypted instance is encrypted with that same key (Amazon RDS User
 * Guide, "Encrypting Amazon RDS resources", limitations). Per "Viewing instance status" and
 * "Encrypting Amazon RDS resources": an instance whose key RDS lost (disabled, grant revoked) is
 * stopped in `inaccessible-encryption-credentials-recoverable` for seven days, recovered by enabling
 * the key and starting the instance (start-db-instance); after that it is in the terminal
 * `inaccessible-encryption-credentials`, from which RDS can only restore it from a backup.
 *
 * Not listed: `storage-full` and `incompatible-parameters`. DeleteDBInstance (API reference) requires
 * SkipFinalSnapshot only for `failed`, `incompatible-restore` and `incompatible-network` (with
 * `creating` and `restore-error`, NO_DATA_STATES), and the status table gives each of the two its own
 * fix (scale the storage up; revert the parameter changes), no snapshot refusal: abandon keeps a final
 * snapshot of them like of any copy holding data (REFUSED_DELETION_FIXES if RDS refuses anyway).
 */
export const SNAPSHOT_REFUSED_STATES: Readonly<Record<string, { why: string; keep: (identifier: string) => string }>> = {
  'inaccessible-encryption-credentials': {
    why: 'RDS could not use its KMS key (disabled, deleted or its grant revoked) for seven days: terminal',
    keep: () => '(it can no longer be snapshotted: RDS only restores it from a backup)',
  },
  'inaccessible-encryption-credentials-recoverable': {
    why: 'RDS cannot use its KMS key (disabled or its grant revoked): stopped until the key is enabled and the instance started',
    keep: (identifier) => `or enable the key again and start the copy (aws rds start-db-instance --db-instance-identifier ${identifier}) to keep one`,
  },
};

/**
 * Where the data of a copy RDS cannot snapshot still is, said true: in the automated backups of the
 * production instance it was restored from, which are encrypted with the same KMS key (a point-in-time
 * restore keeps the source's key, and every SNAPSHOT_REFUSED_STATES state is RDS without that key).
 * A restore from those backups needs RDS to use the key (AWS Knowledge Center, "resolve an Amazon RDS
 * instance ... in an inaccessible encryption state": restoring requires the key activated; a deleted
 * key leaves the data unrecoverable), so "the data is also in production's backups" alone would be
 * false while the key is disabled.
 */
export function dataAlsoIn(protectedInstance: string, options: { toTime?: string; kmsKeyId?: string } = {}): string {
  return `its data is also in the automated backups of ${protectedInstance}, but they are encrypted with the same KMS key${options.kmsKeyId ? ` (${options.kmsKeyId})` : ''}: a new recovery${options.toTime ? ` to ${options.toTime}` : ''} reads them only while RDS can use that key (enable it again first if it was disabled; a deleted key loses them too) and that time is in their restore window`;
}

/**
 * Documented fixes of states RDS is not documented to refuse a final snapshot in (so abandon asks
 * for one), for the line when RDS refuses the deletion all the same: waiting, the advice for a copy
 * busy with something, would not end these two ("Viewing instance status": scale the storage up;
 * make the parameters compatible, the instance's events naming them).
 */
const REFUSED_DELETION_FIXES: Readonly<Record<string, (identifier: string) => string>> = {
  'storage-full': (identifier) => `scale its storage up first (aws rds modify-db-instance --db-instance-identifier ${identifier} --allocated-storage <GiB, at least 10% more> --apply-immediately)`,
  'incompatible-parameters': () => 'make its parameters compatible first (its RDS events name them: revert them in its parameter group) and reboot it',
};

/**
 * Why a deletion of `identifier` in `status` cannot go as asked, or undefined when it can: a final
 * snapshot RDS refuses in that state (unless `skipFinalSnapshot`; `keep` says what would allow one),
 * or `skipFinalSnapshot` for a copy RDS can snapshot (its data would be lost for nothing). Copies
 * with no data yet, or gone, are deleted without one anyway.
 */
export function finalSnapshotRefusal(identifier: string, status: string, skipFinalSnapshot: boolean): { reason: string; skip: boolean; keep?: string } | undefined {
  const refused = SNAPSHOT_REFUSED_STATES[status];
  if (refused && !skipFinalSnapshot) {
    return { reason: `${identifier} is "${status}" (${refused.why}): RDS refuses a final snapshot of it`, skip: false, keep: refused.keep(identifier) };
  }
  if (!refused && skipFinalSnapshot && !NO_DATA_STATES.includes(status) && status !== 'not-found' && status !== 'deleting') {
    return { reason: `${identifier} is "${status}": RDS can take a final snapshot of it, so abandon keeps one`, skip: true };
  }
  return undefined;
}

/**
 * Statuses in which an instance accepts connections. RDS takes a first automated backup right after
 * a point-in-time restore (`backing-up`, minutes on a large copy), and the instance serves meanwhile:
 * what only connects (the verification, the password checks, the cutover's switch and checks) does
 * not wait for it. RDS documents an instance as "available for modifications" in `available` only,
 * so what modifies one (the password reset, the rename of the old instance) still waits for that.
 */
export const CONNECTABLE_STATES: readonly string[] = ['available', 'backing-up'];

/**
 * Statuses RDS leaves by itself, back to `available`: a backup, or a change being applied. The other
 * non-available ones (storage-full, failed, incompatible-*, inaccessible-encryption-credentials,
 * stopped, ...) need someone to act, so waiting for them is waiting for nothing.
 * 'busy' stands for a ModifyDBInstance that RDS refused as InvalidDBInstanceState right after a
 * describe said available (a backup or a change began in between).
 */
export const PASSING_STATES: readonly string[] = [
  'backing-up',
  'modifying',
  'configuring-enhanced-monitoring',
  'configuring-iam-database-auth',
  'configuring-log-exports',
  'maintenance',
  'rebooting',
  'renaming',
  'resetting-master-credentials',
  'storage-optimization',
  'upgrading',
  'busy',
];

/** RDS documents modifications (ModifyDBInstance) of an `available` instance only. */
const MODIFIABLE_STATE = 'available';

/** The instance is not `available` (a backup running): it was neither modified nor tagged; try again later. */
export class InstanceBusyError extends Error {
  constructor(
    readonly identifier: string,
    readonly status: string,
  ) {
    super(`${identifier} is "${status}": RDS documents modifications of an available instance only`);
    this.name = 'InstanceBusyError';
  }
}

const refusedAsBusy = (error: unknown) => ['InvalidDBInstanceStateFault', 'InvalidDBInstanceState'].includes((error as { name?: string }).name ?? '');

export interface InstanceState {
  readonly status: string;
  /** Accepts connections (CONNECTABLE_STATES) at the endpoint given. */
  readonly ready: boolean;
  readonly failed: boolean;
  readonly host?: string;
  readonly port?: number;
  readonly kmsKeyId?: string;
}

export async function instanceState(rds: RDSClient, identifier: string): Promise<InstanceState> {
  const instance = await describeInstance(rds, identifier);
  if (!instance) return { status: 'not-found', ready: false, failed: true };
  const status = instance.DBInstanceStatus ?? 'unknown';
  const ready = CONNECTABLE_STATES.includes(status) && Boolean(instance.Endpoint?.Address);
  return {
    status,
    ready,
    failed: FAILED_STATES.includes(status),
    ...(ready && { host: instance.Endpoint!.Address!, port: instance.Endpoint!.Port ?? 5432 }),
    ...(instance.KmsKeyId && { kmsKeyId: instance.KmsKeyId }),
  };
}

/** The DbiResourceId of the instance named `identifier` now (undefined: none, or no id reported). */
export async function instanceResourceId(rds: RDSClient, identifier: string): Promise<string | undefined> {
  return (await describeInstance(rds, identifier))?.DbiResourceId;
}

/**
 * The status of `identifier` when this recovery created it, else undefined: a restore step that
 * runs again (Step Functions retries a Lambda service error even when the function ran) finds its
 * own restore instead of refusing the name as taken.
 */
export async function ownRestoreStatus(rds: RDSClient, identifier: string, recoveryId: string): Promise<string | undefined> {
  const instance = await describeInstance(rds, identifier);
  if (!instance) return undefined;
  const tags = await instanceTags(rds, instance);
  return tags.some((t) => t.Key === RECOVERY_ID_TAG && t.Value === recoveryId) ? (instance.DBInstanceStatus ?? 'unknown') : undefined;
}

/**
 * Deletes a recovered copy, only when it carries this tool's recovery tag (never the production
 * instance, whatever name is passed). `finalSnapshot` keeps its data (abandon); a copy that never
 * became available has none worth keeping (cleanup).
 */
export async function deleteRecoveredInstance(
  rds: RDSClient,
  identifier: string,
  options: {
    finalSnapshotIdentifier?: string;
    /** Delete without the final snapshot RDS refuses in the copy's state (SNAPSHOT_REFUSED_STATES): the operator's explicit choice. */
    skipFinalSnapshot?: boolean;
    protectedInstance: string;
    recoveryId: string;
    /**
     * The environment, when the workflow deletes the copy: its refusal reaches the record and the
     * page, where `recover abandon` without --env would act on cdk.json's default environment. The
     * CLI gives none: it puts the operator's own options in (bin/cli/recover.ts withRecoverOptions).
     */
    environmentName?: string;
  },
): Promise<{ deleted: boolean; detail: string }> {
  if (identifier === options.protectedInstance) throw new OperatorError(`recover: refusing to delete ${identifier}: it is the configured production instance`, 2);
  const instance = await describeInstance(rds, identifier);
  if (!instance) return { deleted: false, detail: `${identifier} does not exist (already deleted)` };
  const tags = await instanceTags(rds, instance);
  const hasTag = (key: string, value: string) => tags.some((t) => t.Key === key && t.Value === value);
  if (!hasTag(RECOVERY_PURPOSE_TAG.Key, RECOVERY_PURPOSE_TAG.Value) || !hasTag(RECOVERY_ID_TAG, options.recoveryId)) {
    throw new OperatorError(`recover: refusing to delete ${identifier}: it is not tagged ${RECOVERY_ID_TAG}=${options.recoveryId} (not created by this recovery)`, 2);
  }
  if (instance.DBInstanceStatus === 'deleting') return { deleted: true, detail: `${identifier} is already being deleted` };
  // A copy still being created, or whose restore failed, holds no data yet, and RDS refuses a final
  // snapshot of it: abandoning it (to restore to another time) must not wait until it is available.
  const noData = NO_DATA_STATES.includes(instance.DBInstanceStatus ?? '');
  const status = instance.DBInstanceStatus ?? 'unknown';
  // Asked to keep a final snapshot (abandon): checked again here, the state may have changed since the caller looked.
  const refusal = options.finalSnapshotIdentifier ? finalSnapshotRefusal(identifier, status, Boolean(options.skipFinalSnapshot)) : undefined;
  if (refusal) throw new OperatorError(`recover: ${refusal.reason}: nothing deleted`, 3);
  const skipped = Boolean(options.finalSnapshotIdentifier && options.skipFinalSnapshot && SNAPSHOT_REFUSED_STATES[status]);
  const snapshot = noData || skipped ? undefined : options.finalSnapshotIdentifier;
  const kmsKeyId = instance.KmsKeyId;
  try {
    await rds.send(
      new DeleteDBInstanceCommand({
        DBInstanceIdentifier: identifier,
        ...(snapshot ? { FinalDBSnapshotIdentifier: snapshot, SkipFinalSnapshot: false } : { SkipFinalSnapshot: true }),
        DeleteAutomatedBackups: true,
      }),
    );
  } catch (error) {
    if ((error as { name?: string }).name === 'InvalidDBInstanceStateFault') {
      // The SDK retries a DeleteDBInstance whose answer was lost or late; the retry then meets the
      // deletion its own first attempt started ("already being deleted"). A copy now deleting, or
      // already gone, is that deletion under way: with the final snapshot asked for, the same request.
      const now = await stateAfterRefusal(rds, identifier);
      if (now === 'deleting' || now === 'gone') return deletionStarted();
      // RDS refused the state the copy is in now, which may have changed since it was read before
      // the delete (a backup or a modification started): the message and the fix are about that
      // one. Only a look that failed leaves the earlier state to name.
      const refusedIn = now ?? status;
      const fix = REFUSED_DELETION_FIXES[refusedIn];
      if (fix) throw new OperatorError(`recover: ${identifier} cannot be deleted in state "${refusedIn}" (RDS: ${oneLine(error)}): ${fix(identifier)}, then run "${operatorCommand(options.environmentName, `recover abandon ${options.recoveryId}`)}" again`);
      throw new OperatorError(`recover: ${identifier} cannot be deleted in state "${refusedIn}": wait until it is available or failed, then retry`);
    }
    throw error;
  }
  return deletionStarted();

  function deletionStarted(): { deleted: true; detail: string } {
    if (snapshot) return { deleted: true, detail: `deleting ${identifier}, final snapshot ${snapshot}` };
    if (skipped) {
      return { deleted: true, detail: `deleting ${identifier} without a final snapshot (--skip-final-snapshot: it is "${status}", RDS refuses one; ${dataAlsoIn(options.protectedInstance, { kmsKeyId })})` };
    }
    return { deleted: true, detail: options.finalSnapshotIdentifier ? `deleting ${identifier} (no final snapshot: it is "${status}", it holds no data yet)` : `deleting ${identifier} (no final snapshot)` };
  }
}

/**
 * After RDS refused a deletion on state: the instance's state now, "gone" when it no longer exists
 * ("deleting" or "gone": the deletion is under way), undefined when the look fails (it says nothing).
 */
async function stateAfterRefusal(rds: RDSClient, identifier: string): Promise<string | undefined> {
  return describeInstance(rds, identifier).then(
    (instance) => (instance ? (instance.DBInstanceStatus ?? 'unknown') : 'gone'),
    () => undefined,
  );
}

/**
 * After a cutover: the old instance is kept, renamed `<name>-replaced-<yyyymmddhhmm>` and tagged with
 * the recovery that replaced it, so nobody mistakes it for production. Never deleted here.
 */
/**
 * The commands that rename and tag the old instance as the cutover would, for someone allowed to
 * change it: the on-call's role never is (lib/constructs/recovery.ts grants nothing that changes
 * `database.instanceIdentifier`), and RDS modifies an available instance only. Tagged once renamed,
 * under its new name (its ARN follows the name).
 */
export function renameCommands(oldInstance: string, renamedTo: string, newInstance: string, recoveryId: string): string {
  return `aws rds modify-db-instance --db-instance-identifier ${oldInstance} --new-db-instance-identifier ${renamedTo} --apply-immediately, then, once renamed: aws rds add-tags-to-resource --resource-name "$(aws rds describe-db-instances --db-instance-identifier ${renamedTo} --query 'DBInstances[0].DBInstanceArn' --output text)" --tags Key=atmr-dr:replaced-by,Value=${newInstance} Key=atmr-dr:replaced-by-recovery,Value=${recoveryId} Key=atmr-dr:keep,Value=true`;
}

export function replacedInstanceName(oldInstance: string, now: Date): string {
  // Cut at 40 characters, without a trailing hyphen: RDS refuses "--" in a name.
  return `${oldInstance.slice(0, 40).replace(/-+$/, '')}-replaced-${now.toISOString().replace(/[-:T]/g, '').slice(0, 12)}`;
}

/**
 * Idempotent, so an interrupted cutover can run it again: when the instance under `renamed` has
 * the recorded resource id, the rename already happened. The instance is identified by its
 * DbiResourceId, never by its name alone: between an interrupted cutover's rename and its resume,
 * someone may have created a new instance under the old name, or a config change may have given
 * that name to the copy. Renaming or tagging that one would move production's endpoint or mislabel
 * it, so a resource id that differs is refused before any change.
 */
export async function markReplacedInstance(
  rds: RDSClient,
  oldInstance: string,
  recoveryId: string,
  newInstance: string,
  now: Date,
  renamed: string = replacedInstanceName(oldInstance, now),
  expectedResourceId?: string,
): Promise<string> {
  if (!expectedResourceId) {
    throw new OperatorError(
      `recover: no DbiResourceId recorded to identify ${oldInstance} by (a recovery or cutover begun by an earlier atmr-dr, and no instance under that name now): nothing renamed; check which instance recovery ${recoveryId} replaced, then rename it to ${renamed} and tag it atmr-dr:replaced-by=${newInstance} by hand`,
      3,
    );
  }
  const instance = await describeInstance(rds, oldInstance);
  if (instance?.DbiResourceId !== expectedResourceId) {
    // Renamed already (an interrupted cutover): whatever holds the old name now is left alone.
    if ((await describeInstance(rds, renamed))?.DbiResourceId === expectedResourceId) return renamed;
    if (!instance) throw new OperatorError(`recover: ${oldInstance} not found to mark as replaced (nor ${renamed}): nothing renamed`);
    throw new OperatorError(
      `recover: ${oldInstance} is not the instance recovery ${recoveryId} restored from (its DbiResourceId is ${instance.DbiResourceId ?? 'not reported'}, the recovery recorded ${expectedResourceId}: another instance took the name since): nothing renamed or tagged; find the old instance with "aws rds describe-db-instances --filters Name=dbi-resource-id,Values=${expectedResourceId}" and rename it by hand`,
      3,
    );
  }
  if (!instance.DBInstanceArn) throw new OperatorError(`recover: ${oldInstance} has no ARN to tag`);
  // RDS documents modifications of an `available` instance only, and production's backup window
  // makes it `backing-up`: nothing is tagged until it can be renamed too (the caller waits).
  const status = instance.DBInstanceStatus ?? 'unknown';
  if (status !== MODIFIABLE_STATE) throw new InstanceBusyError(oldInstance, status);
  await rds.send(
    new AddTagsToResourceCommand({
      ResourceName: instance.DBInstanceArn,
      Tags: [
        { Key: 'atmr-dr:replaced-by', Value: newInstance },
        { Key: 'atmr-dr:replaced-by-recovery', Value: recoveryId },
        { Key: 'atmr-dr:replaced-at', Value: now.toISOString() },
        { Key: 'atmr-dr:keep', Value: 'true' },
      ],
    }),
  );
  try {
    await rds.send(new ModifyDBInstanceCommand({ DBInstanceIdentifier: oldInstance, NewDBInstanceIdentifier: renamed, ApplyImmediately: true }));
  } catch (error) {
    // A backup that began since the describe: tagged already, which a second attempt repeats harmlessly.
    if (refusedAsBusy(error)) throw new InstanceBusyError(oldInstance, 'busy');
    throw error;
  }
  return renamed;
}

/**
 * Once production runs on the copy, takes it out of the recovery workflow's reach: the workflow's
 * role may reset the password of (ModifyDBInstance) and delete instances under the prefix that carry
 * `atmr-dr:purpose=recovery`, and the copy keeps its name under the prefix, so with the tag only the
 * code's recovery-id check would stand between that role and production. Only this tag is removed:
 * the others (`atmr-dr:recovery-id`, `restored-from`...) say where the instance came from.
 * Idempotent (an interrupted cutover runs it again): a copy without the tag is left as it is. A copy
 * tagged for another recovery is refused before any change.
 */
export async function removeRecoveryPurposeTag(rds: RDSClient, identifier: string, recoveryId: string): Promise<string> {
  const instance = await describeInstance(rds, identifier);
  if (!instance?.DBInstanceArn) throw new OperatorError(`recover: ${identifier} not found to remove its ${RECOVERY_PURPOSE_TAG.Key} tag: check which instance production runs on`);
  const tags = await instanceTags(rds, instance);
  if (!tags.some((t) => t.Key === RECOVERY_PURPOSE_TAG.Key)) return `${identifier}: no ${RECOVERY_PURPOSE_TAG.Key} tag (removed before): out of the recovery workflow's reach`;
  const owner = tags.find((t) => t.Key === RECOVERY_ID_TAG)?.Value;
  if (owner !== recoveryId) {
    throw new OperatorError(
      `recover: ${identifier} is not tagged ${RECOVERY_ID_TAG}=${recoveryId} (${owner ? `tagged ${owner}` : 'no recovery id'}): its ${RECOVERY_PURPOSE_TAG.Key} tag is left as it is; check which instance production runs on, then remove that tag from it by hand: aws rds remove-tags-from-resource --resource-name ${instance.DBInstanceArn} --tag-keys ${RECOVERY_PURPOSE_TAG.Key}`,
    );
  }
  await rds.send(new RemoveTagsFromResourceCommand({ ResourceName: instance.DBInstanceArn, TagKeys: [RECOVERY_PURPOSE_TAG.Key] }));
  return `${identifier}: tag ${RECOVERY_PURPOSE_TAG.Key} removed: out of the recovery workflow's reach (it may modify and delete only instances that carry it)`;
}

/**
 * What the cutover's last steps (deletion protection on, the purpose tag removed) left on a copy
 * that production no longer runs on, which abandon could then never delete (its check of the tag,
 * RDS's refusal of a protected instance): each found with the command that puts it back, tag first
 * (the on-call's role may modify only a copy that carries it). None for a copy as abandon needs it,
 * or gone.
 */
export async function copyKeptFromAbandon(rds: RDSClient, identifier: string): Promise<{ found: string; command: string }[]> {
  const instance = await describeInstance(rds, identifier);
  if (!instance) return [];
  const { Key, Value } = RECOVERY_PURPOSE_TAG;
  const tagged = (await instanceTags(rds, instance)).some((t) => t.Key === Key && t.Value === Value);
  return [
    ...(tagged ? [] : [{ found: `${identifier} is not tagged ${Key}=${Value}`, command: `aws rds add-tags-to-resource --resource-name ${instance.DBInstanceArn} --tags Key=${Key},Value=${Value}` }]),
    ...(instance.DeletionProtection
      ? [{ found: `${identifier} is deletion-protected`, command: `aws rds modify-db-instance --db-instance-identifier ${identifier} --no-deletion-protection --apply-immediately` }]
      : []),
  ];
}

/**
 * Turns deletion protection on for the copy production now runs on: it was restored without it (so
 * that abandon could delete it), and left so it is one delete-db-instance away from losing
 * production again. Without ApplyImmediately: RDS applies DeletionProtection at once either way
 * (AWS's own remediation runbook sets it so and checks it right after), while ApplyImmediately would
 * also apply the instance's pending modifications now (a class change: a reboot of production).
 * A refusal is thrown with the SDK error's name (AccessDenied..., InvalidDBInstanceState) for the
 * step's line and the command the operator then runs by hand.
 */
export async function protectNewProduction(rds: RDSClient, identifier: string): Promise<string> {
  try {
    await rds.send(new ModifyDBInstanceCommand({ DBInstanceIdentifier: identifier, DeletionProtection: true }));
  } catch (error) {
    throw new Error(namedLine(error));
  }
  return `${identifier}: deletion protection on`;
}

/**
 * Sets the master password of a recovered copy, so that the database secret's credentials log in
 * again after a rotation that happened after the target time. Refused, before any change, for
 * anything that is not this recovery's copy: the configured production instance, a name outside
 * the recovery prefix, an instance without this recovery's tags (IAM adds the prefix and the
 * purpose tag; the recovery id is checked here). Refused too when RDS manages the copy's own
 * password in a secret of its own: RDS rejects a password then, and it would not be the secret
 * the verification and the API read.
 */
export async function resetRecoveredPassword(
  rds: RDSClient,
  identifier: string,
  password: string,
  /** environmentName: the workflow's (the CLI puts the operator's options in: deleteRecoveredInstance). */
  options: { protectedInstance: string; newInstancePrefix: string; recoveryId: string; environmentName?: string },
): Promise<{ detail: string }> {
  if (identifier === options.protectedInstance) throw new OperatorError(`recover: refusing to reset the password of ${identifier}: it is the configured production instance`, 2);
  if (!identifier.startsWith(options.newInstancePrefix)) {
    throw new OperatorError(`recover: refusing to reset the password of ${identifier}: its name does not start with the recovery prefix "${options.newInstancePrefix}"`, 2);
  }
  const instance = await describeInstance(rds, identifier);
  if (!instance) throw new OperatorError(`recover: ${identifier} does not exist: no password to reset`, 2);
  const tags = await instanceTags(rds, instance);
  const hasTag = (key: string, value: string) => tags.some((t) => t.Key === key && t.Value === value);
  if (!hasTag(RECOVERY_PURPOSE_TAG.Key, RECOVERY_PURPOSE_TAG.Value) || !hasTag(RECOVERY_ID_TAG, options.recoveryId)) {
    throw new OperatorError(`recover: refusing to reset the password of ${identifier}: it is not tagged ${RECOVERY_ID_TAG}=${options.recoveryId} (not created by this recovery)`, 2);
  }
  if (instance.MasterUserSecret?.SecretArn) {
    throw new OperatorError(
      `recover: ${identifier} has an RDS-managed master password (secret ${instance.MasterUserSecret.SecretArn}): RDS refuses to set it, and the verification reads the configured database secret; log in with that secret by hand to check the copy, or "${operatorCommand(options.environmentName, `recover abandon ${options.recoveryId}`)}"`,
      2,
    );
  }
  // A copy verified while RDS takes its first backup is not asked for a modification until it is
  // available (the only state RDS documents for one): the workflow's Retry on this name waits.
  const status = instance.DBInstanceStatus ?? 'unknown';
  if (status !== MODIFIABLE_STATE) {
    throw Object.assign(new Error(`${identifier} is "${status}": RDS documents modifications of an available instance only; the password reset waits until it is available`), { name: COPY_BUSY_ERROR });
  }
  await rds.send(new ModifyDBInstanceCommand({ DBInstanceIdentifier: identifier, MasterUserPassword: password, ApplyImmediately: true }));
  return { detail: `master password of ${identifier} set to the database secret's current one` };
}

/**
 * Whether a password reset is applied: RDS shows the new password as pending (and the instance
 * `resetting-master-credentials`) until it is; the copy can be logged in to again once it accepts
 * connections (a backup may have begun since) without it.
 */
export async function passwordResetApplied(rds: RDSClient, identifier: string): Promise<{ applied: boolean; status: string }> {
  const instance = await describeInstance(rds, identifier);
  if (!instance) throw Object.assign(new Error(`${identifier} no longer exists (deleted while its password was being reset)`), { name: 'RecoveryInstanceFailed' });
  const status = instance.DBInstanceStatus ?? 'unknown';
  return { applied: CONNECTABLE_STATES.includes(status) && !instance.PendingModifiedValues?.MasterUserPassword, status };
}
