import { nowOf } from '../shared/clock';
import { randomBytes } from 'node:crypto';
import { CreateDBSnapshotCommand, DescribeDBInstancesCommand, DescribeDBSnapshotsCommand, RDSClient } from '@aws-sdk/client-rds';
import { DescribeTasksCommand, ECSClient, RunTaskCommand, RunTaskCommandOutput, StopTaskCommand, Task } from '@aws-sdk/client-ecs';
import { SSMClient } from '@aws-sdk/client-ssm';
import { KillswitchReading, rawAtVersion, readKillswitch, writeKillswitch } from '../killswitch/core';
import { KillswitchValue, parseKillswitchValue } from '../killswitch/value';
import { MISSING_SETTING_EXIT_CODE, missingAwsSetting, refusedWithoutEffect } from '../shared/aws-errors';
import { operatorCommand } from '../shared/constants';
import { namedLine, OperatorError, oneLine } from '../shared/errors';
import { shellWord } from '../shared/format';
import { downgradeCommandLine, parseRevision } from './revision';
import { BackoutSettings, clusterArn } from './settings';
import { LockRecord, unlockCommandLine } from './state';

/**
 * The errors with which Step Functions' ecs:runTask.sync reports a RunTask that started no task:
 * `AmazonECS.Unknown` for a RunTask answered with a non-empty `failures` list (AWS's Step Functions
 * guide, "Run Amazon ECS or Fargate tasks": no task placed for want of Fargate capacity, an ENI or
 * memory), and `ECS.AmazonECSException` for a request ECS refused (throttled). Tried again by the
 * workflow's RunMigrationDowngrade and reported as not started: no downgrade ran.
 */
export const RUN_TASK_NOT_STARTED_ERRORS = ['AmazonECS.Unknown', 'ECS.AmazonECSException'] as const;

/**
 * The errors with which ecs:runTask.sync reports a RunTask that ECS refused outright (a 4xx on the
 * request itself: AccessDenied for a missing iam:PassRole of the failing release's task role, a task
 * definition or network setting ECS rejects, a cluster or platform it does not know): no task was
 * started either, but the same request would be refused again, so they are NOT among the retries of
 * RunMigrationDowngrade; the report says "not started" and may give the release's claim back.
 */
export const RUN_TASK_REFUSED_ERRORS = [
  'ECS.AccessDeniedException',
  'ECS.InvalidParameterException',
  'ECS.ClientException',
  'ECS.ClusterNotFoundException',
  'ECS.PlatformUnknownException',
  'ECS.PlatformTaskDefinitionIncompatibilityException',
  'ECS.UnsupportedFeatureException',
] as const;

/** Who the killswitch shows as having set maintenance for a downgrade. */
export const BACKOUT_ACTOR = 'atmr-dr backout';

/**
 * The run (workflow execution or CLI cliRunId) whose migration downgrade set this maintenance, as its
 * reason names it (prepareDowngrade); undefined for any other value: a human's maintenance, another
 * mode, or a reason an older atmr-dr wrote without the run.
 */
export function downgradeMaintenanceRun(value: KillswitchValue | null | undefined): string | undefined {
  if (value?.mode !== 'maintenance' || value.actor !== BACKOUT_ACTOR) return undefined;
  return /\(execution ([^)]+)\): migration downgrade to /.exec(value.reason)?.[1];
}

export { DOWNGRADE_DROPS, downgradeCommandLine, parseRevision } from './revision';

export function downgradeArgs(revision: string): string[] {
  return ['flask', 'db', 'downgrade', parseRevision(revision)];
}

/**
 * How a human reads the schema's revision when a release declares no Alembic head: `flask db
 * current` in a one-off task of `taskDefinition` (the failing release: its image knows the newest
 * revisions), placed as the downgrade task is; its answer is in the task's logs.
 */
export function alembicCurrentCommandLine(settings: BackoutSettings, taskDefinition: string): string {
  const network = `awsvpcConfiguration={subnets=[${settings.subnetIds.join(',')}],securityGroups=[${settings.securityGroupIds.join(',')}],assignPublicIp=DISABLED}`;
  const overrides = JSON.stringify({ containerOverrides: [{ name: settings.api.containerName, command: ['flask', 'db', 'current'] }] });
  return `aws ecs run-task --cluster ${settings.clusterName} --launch-type FARGATE --task-definition ${taskDefinition} --network-configuration '${network}' --overrides '${overrides}'`;
}

export interface DowngradePreparation {
  /** Manual snapshot taken before the downgrade (the state at its start is kept). */
  readonly snapshotId: string | null;
  /** With `beforeDowngrade: pitr`: the time to restore to, and the latest restorable time then. */
  readonly pitr: { readonly restoreTo: string; readonly latestRestorableTime: string | null } | null;
  /**
   * The killswitch value atmr-dr wrote (to restore only if nobody changed it since), or null if it
   * left it. `reason`: its maintenance reason, which names the run (the workflow's execution, the
   * CLI's cliRunId), by which a maintenance write of this run is known whatever its time
   * (restoreKillswitch); a preparation recorded by an older atmr-dr may have none.
   */
  readonly killswitchSet: { readonly updatedAt: string; readonly previous: KillswitchValue | null; readonly reason?: string } | null;
  readonly startedAt: string;
}

export interface MigrationDeps {
  readonly rds: RDSClient;
  readonly ssm: SSMClient;
  readonly ecs: ECSClient;
  readonly now?: () => Date;
}

const stamp = (date: Date) => date.toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);

/** The tag that names the execution a snapshot was taken for (its retry knows the snapshot by it). */
const EXECUTION_TAG = 'atmr-dr-execution';

/** `text` in the characters an RDS tag value takes, within its 256. */
const tagValue = (text: string) => text.replace(/[^\p{L}\p{N} _.:/=+@-]/gu, '_').slice(0, 256);

/**
 * What the workflow's execution name is to a downgrade, for one `rollback migration`: the SDK sends
 * CreateDBSnapshot again after an answer it lost, and that second request meets the first's
 * snapshot, which the command takes as its own by this id (its name and tag) instead of stopping
 * the rollback on it. The time orders the snapshots; the random part keeps two runs of one second
 * apart.
 */
export function cliRunId(now: Date): string {
  return `cli-${stamp(now)}-${randomBytes(3).toString('hex')}`;
}

/**
 * The snapshot's name: the run's (`run`), so that the step run again (or the SDK's resend) asks for
 * the same name and RDS refuses a second snapshot. By RDS's rules, under the prefix the IAM grants
 * cover: lower case (RDS keeps it so), letters, digits and single hyphens, at most 255, no
 * trailing hyphen.
 */
function snapshotName(settings: BackoutSettings, run: string, now: Date): string {
  const slug = run.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '');
  return `atmr-dr-backout-${settings.environmentName}-${slug || stamp(now)}`.slice(0, 255).replace(/-+$/, '');
}

/**
 * Before a downgrade: a snapshot (or the PITR time), then maintenance for the duration. A maintenance
 * write SSM gives no clear answer to is settled (read back, put back if it landed) before this throws
 * KillswitchWriteUnanswered: no downgrade follows it.
 * `run`: the workflow's execution name, or the CLI's cliRunId. Its maintenance reason names it, so
 * that the step run again by Step Functions (retryOnServiceExceptions: Lambda.ServiceException
 * after a first run that wrote) knows that maintenance as its own, not as an operator's that it
 * must leave on.
 */
export async function prepareDowngrade(deps: MigrationDeps, settings: BackoutSettings, revision: string, reason: string, run: string): Promise<DowngradePreparation> {
  parseRevision(revision);
  const maintenanceReason = `${reason} (execution ${run}): migration downgrade to ${revision}`.slice(0, 500);
  const now = nowOf(deps);
  let snapshotId: string | null = null;
  let pitr: DowngradePreparation['pitr'] = null;
  if (settings.beforeDowngrade === 'snapshot') {
    snapshotId = snapshotName(settings, run, now);
    const runTag = { Key: EXECUTION_TAG, Value: tagValue(run) };
    try {
      await deps.rds.send(
        new CreateDBSnapshotCommand({
          DBInstanceIdentifier: settings.databaseInstanceIdentifier,
          DBSnapshotIdentifier: snapshotId,
          Tags: [{ Key: 'atmr-dr', Value: `before downgrade to ${revision}` }, runTag],
        }),
      );
    } catch (error) {
      // Step Functions ran this step again (or the SDK sent CreateDBSnapshot again): the first
      // attempt's snapshot has this run's name. It is taken as this run's only with this run's tag.
      if ((error as Error).name !== 'DBSnapshotAlreadyExistsFault') throw error;
      const { DBSnapshots } = await deps.rds.send(new DescribeDBSnapshotsCommand({ DBSnapshotIdentifier: snapshotId }));
      const found = DBSnapshots?.[0];
      const ours = found?.DBInstanceIdentifier === settings.databaseInstanceIdentifier && found.TagList?.some((t) => t.Key === EXECUTION_TAG && t.Value === runTag.Value);
      if (!ours) throw Object.assign(new Error(`the snapshot ${snapshotId} already exists and is not this execution's (no tag ${EXECUTION_TAG}=${runTag.Value}): no downgrade was started`), { name: (error as Error).name });
    }
  } else {
    const { DBInstances } = await deps.rds.send(new DescribeDBInstancesCommand({ DBInstanceIdentifier: settings.databaseInstanceIdentifier }));
    pitr = { restoreTo: now.toISOString(), latestRestorableTime: DBInstances?.[0]?.LatestRestorableTime?.toISOString() ?? null };
  }

  let killswitchSet: DowngradePreparation['killswitchSet'] = null;
  try {
    const current = await readKillswitch(deps.ssm, settings.killswitchParameterName);
    if (current.value && isOwnMaintenance(current.value, maintenanceReason)) {
      killswitchSet = { updatedAt: current.value.updatedAt, previous: await valueBeforeOwnWrite(deps, settings, current, now), reason: maintenanceReason };
    } else if (current.value?.mode !== 'maintenance') {
      const set = { updatedAt: now.toISOString(), previous: current.value, reason: maintenanceReason };
      try {
        await writeKillswitch(
          { ssm: deps.ssm, now: () => now },
          { parameterName: settings.killswitchParameterName, mode: 'maintenance', reason: maintenanceReason, actor: BACKOUT_ACTOR, expiresAt: null },
        );
      } catch (error) {
        // A 4xx refusal wrote nothing. Anything else (a timeout, a 5xx, a throttle after earlier
        // attempts, the re-read after the put) may have left maintenance on, written by atmr-dr,
        // with no downgrade to follow: the API answers 503 to every user, and the next alarm of the
        // release is held by it (a notice, no page). Settle it now, and say what it is.
        // A clear refusal of the put wrote nothing; but writeKillswitch also reads after its put, and a
        // refusal of those reads comes after a write that landed: the value read back tells which.
        if (refusedWithoutEffect(error) && !(await holdsWrite(deps, settings, set))) throw error;
        throw new KillswitchWriteUnanswered(await settleUnansweredWrite(deps, settings, set, error, now));
      }
      killswitchSet = set;
    }
  } catch (error) {
    // The snapshot is under way: the failure's report must name it (it costs storage, and it is
    // the copy of the database from just before), not let it pass for "nothing was done".
    if (!snapshotId) throw error;
    throw Object.assign(new Error(`${oneLine(error)} (the snapshot ${snapshotId} was started before this)`), { name: (error as Error).name ?? 'Error' });
  }
  return { snapshotId, pitr, killswitchSet, startedAt: now.toISOString() };
}

/**
 * What the killswitch held before this run's maintenance (`current`, found by the step run again):
 * the newest earlier version that is not that value (the SDK may have applied one PutParameter
 * more than once, each a version of the same value). Read with the `name:version` selector of
 * GetParameter, which the role already has on the parameter (ReadTheKillswitch: no history right), so
 * the retry restores after the rollout exactly as the first run would have: no new right, no
 * special case downstream, and no page that leaves every user on 503s until a human gives the value
 * back (the other way: a preparation whose value before is unknown). When that version cannot be read (SSM failing, or no longer keeping
 * it), the value before is unknown: the step stops before the downgrade with the page's line that
 * maintenance is on, set by this run, and how to give the value before back.
 */
async function valueBeforeOwnWrite(deps: Pick<MigrationDeps, 'ssm'>, settings: BackoutSettings, current: KillswitchReading, now: Date): Promise<KillswitchValue | null> {
  let why = 'SSM no longer keeps it';
  try {
    for (let version = current.version - 1; version >= 1; version -= 1) {
      const raw = await rawAtVersion(deps.ssm, settings.killswitchParameterName, version);
      if (raw === null) break;
      if (raw === current.raw) continue;
      // A malformed value before counts as normal, as when the first run read it (previous: null).
      const parsed = parseKillswitchValue(raw);
      return parsed.ok ? parsed.value : null;
    }
  } catch (error) {
    why = namedLine(error);
  }
  throw new KillswitchWriteUnanswered(
    `PrepareDowngrade ran again (Step Functions retried it) and found the maintenance this run had set, but not the value before it (${why}), so no downgrade was started: ${mayBeInMaintenance(settings, valueBeforeCommand(settings, now))}`,
  );
}

/** How to give back a killswitch value atmr-dr no longer knows: read it in the parameter's history. */
export function valueBeforeCommand(settings: BackoutSettings, now: Date): string {
  return `the value it had before ("aws ssm get-parameter-history --name ${settings.killswitchParameterName}" shows it; from normal: ${restoreKillswitchCommand(null, now, settings.environmentName)})`;
}

/** The name of the error prepareDowngrade throws after a maintenance write SSM gave no clear answer to. */
export const KILLSWITCH_WRITE_UNANSWERED = 'KillswitchWriteUnanswered';

/**
 * PrepareDowngrade stopped because SSM did not say whether it took the maintenance write (or, run
 * again, it found its own write but not the value before it); the message is what the killswitch is
 * now (put back, untouched, or possibly in maintenance with the command that puts it back): the
 * report prints it as its Killswitch line.
 */
export class KillswitchWriteUnanswered extends Error {
  override readonly name = KILLSWITCH_WRITE_UNANSWERED;
}

/** Whether the killswitch holds the maintenance value this run wrote (its updatedAt and actor); false when it cannot be read. */
async function holdsWrite(deps: Pick<MigrationDeps, 'ssm'>, settings: BackoutSettings, set: NonNullable<DowngradePreparation['killswitchSet']>): Promise<boolean> {
  const reading = await readKillswitch(deps.ssm, settings.killswitchParameterName).catch(() => undefined);
  return isThisWrite(reading?.value, set);
}

/** Whether `value` is the maintenance value of `set`: written by atmr-dr at that write's time. */
function isThisWrite(value: KillswitchValue | null | undefined, set: NonNullable<DowngradePreparation['killswitchSet']>): boolean {
  return value?.updatedAt === set.updatedAt && value.actor === BACKOUT_ACTOR;
}

/**
 * After a maintenance write whose outcome is unknown: read the killswitch back; if it holds the value
 * this run wrote (its updatedAt and actor), put back what was there before (restoreKillswitch, which
 * leaves a later change alone). Returns what the killswitch is now, in the report's words; when it
 * cannot be read or put back, that it may be in maintenance and the exact command that restores it.
 */
async function settleUnansweredWrite(deps: Pick<MigrationDeps, 'ssm' | 'now'>, settings: BackoutSettings, set: NonNullable<DowngradePreparation['killswitchSet']>, writeError: unknown, now: Date): Promise<string> {
  const unanswered = `SSM did not say whether it took atmr-dr's maintenance write before the downgrade (${namedLine(writeError)}), so no downgrade was started`;
  try {
    const { value } = await readKillswitch(deps.ssm, settings.killswitchParameterName);
    if (!isThisWrite(value, set)) {
      return `${unanswered}; read back, it holds ${value ? `${value.mode} by ${value.actor} at ${value.updatedAt}` : 'a malformed value'}, not that write: left as it is`;
    }
    return `${unanswered}; read back, it held that write: ${await restoreKillswitch(deps, settings, set)}`;
  } catch (error) {
    return `${unanswered}, and it could not be read back or put back (${namedLine(error)}): ${mayBeInMaintenance(settings, restoreKillswitchCommand(set.previous, now, settings.environmentName))}`;
  }
}

/** The report's words for maintenance atmr-dr may have left on with no downgrade to follow, and `putBack`: how to give the value before back. */
export function mayBeInMaintenance(settings: BackoutSettings, putBack: string): string {
  return `${settings.killswitchParameterName} may be in maintenance set by ${BACKOUT_ACTOR}, the API answering 503 to every user and the next alarm of this release held by it (a notice, no page); check "${operatorCommand(settings.environmentName, 'killswitch status')}" and, if it shows maintenance by ${BACKOUT_ACTOR}, put it back: ${putBack}`;
}

/** The stopped migration task, as ECS (or the Step Functions .sync integration) describes it. */
export interface MigrationTaskResult {
  readonly taskArn: string | null;
  readonly exitCode: number | null;
  readonly stoppedReason: string | null;
  /** Why the API container stopped, as ECS says it (DescribeTasks `containers[].reason`: `OutOfMemoryError: Container killed due to memory usage`). */
  readonly containerReason?: string | null;
  readonly startedAt: string | null;
  readonly stoppedAt: string | null;
  /**
   * atmr-dr stopped following the task before it stopped by itself (time limit, Ctrl-C, ECS no
   * longer answering) and sent StopTask: `why`, and whether the task was then seen STOPPED. Not
   * stopped: it may still be running, and the lock must stay so that no second downgrade starts.
   */
  readonly abandoned?: { readonly why: string; readonly stopped: boolean };
  /**
   * RunTask was sent and no answer says whether ECS started the task (the connection failed, ECS
   * failed, or the SDK's retries ended in an error after an attempt whose answer is unknown): a
   * downgrade may be running whose ARN atmr-dr never read (`startedBy` finds it). `why`: the error.
   * The lock must stay, as for a task not seen stopped.
   */
  readonly unanswered?: { readonly why: string };
}

export interface DowngradeResult {
  readonly ok: boolean;
  readonly exitCode: number | null;
  readonly durationSeconds: number;
  /** Where the task's logs are: a CloudWatch console link and the `aws logs tail` command (taskLogs). */
  readonly logStream: string | null;
  /** Why the task stopped, its container's reason first (DescribeTasks `containers[].reason`, `tasks[].stoppedReason`). */
  readonly stopReason?: string | null;
  readonly killswitch: string;
  readonly detail: string;
}

/**
 * After the task stopped: exit code, duration and log stream for the report. After a failed
 * downgrade the schema is in between two releases: maintenance stays for a human. After one that
 * worked, maintenance is lifted (restoreKillswitch) unless `keepMaintenance` (the report's words)
 * says why it stays: the failing release still serves (the workflow until its rollout is steady,
 * `rollback migration` run before `rollback service`), and it does not run on the schema it was
 * just downgraded from.
 */
export async function finishDowngrade(
  deps: MigrationDeps,
  settings: BackoutSettings,
  preparation: DowngradePreparation,
  task: MigrationTaskResult,
  log: { group: string | null; prefix: string | null },
  keepMaintenance?: string,
): Promise<DowngradeResult> {
  const now = nowOf(deps);
  const ok = task.exitCode === 0;
  const start = Date.parse(task.startedAt ?? preparation.startedAt);
  const end = task.stoppedAt ? Date.parse(task.stoppedAt) : now.getTime();
  const taskId = task.taskArn?.split('/').pop();
  const logStream = log.group && log.prefix && taskId ? taskLogs(settings.region, log.group, `${log.prefix}/${settings.api.containerName}/${taskId}`) : null;
  // The container's reason (an out-of-memory kill) says more than the task's ("Essential container in task exited").
  const stopReason = [...new Set([task.containerReason, task.stoppedReason].filter((reason): reason is string => Boolean(reason)))].join('; ') || null;
  let killswitch = 'left as it was (atmr-dr did not change it)';
  if (preparation.killswitchSet) {
    if (!ok) killswitch = 'left in maintenance: the downgrade failed, the schema may be between two releases';
    else if (keepMaintenance) killswitch = keepMaintenance;
    else killswitch = await restoreKillswitch(deps, settings, preparation.killswitchSet);
  }
  const detail = ok
    ? `downgrade exited 0 in ${Math.round((end - start) / 1000)} s`
    : `downgrade failed: exit code ${task.exitCode ?? 'none'} (${stopReason ?? 'no reason'})`;
  return { ok, exitCode: task.exitCode, durationSeconds: Math.max(0, Math.round((end - start) / 1000)), logStream, stopReason, killswitch, detail };
}

/**
 * A log stream as the on-call opens it: the CloudWatch console's link, whose fragment takes each name
 * URI-encoded twice with '%' written '$' ('/' is '$252F'), and the `aws logs tail` command.
 */
export function taskLogs(region: string, group: string, stream: string): string {
  const consoleName = (name: string) => encodeURIComponent(encodeURIComponent(name)).replaceAll('%', '$');
  const link = `https://${region}.console.aws.amazon.com/cloudwatch/home?region=${region}#logsV2:log-groups/log-group/${consoleName(group)}/log-events/${consoleName(stream)}`;
  return `${link} or "aws logs tail ${shellWord(group)} --log-stream-names ${shellWord(stream)} --region ${region}"`;
}

/**
 * Maintenance set for a downgrade put back as it was before (its mode, reason and expiry, or
 * `normal` once that expiry passed), only if the value is still the one atmr-dr wrote: someone's
 * later change wins. Returns the report's words.
 * A step run again by Step Functions (CheckSteady after a lost answer) finds the value its first run
 * gave back: it is reported as given back, not as someone's change, and not written again.
 */
export async function restoreKillswitch(deps: Pick<MigrationDeps, 'ssm' | 'now'>, settings: BackoutSettings, set: NonNullable<DowngradePreparation['killswitchSet']>): Promise<string> {
  const now = nowOf(deps);
  const current = await readKillswitch(deps.ssm, settings.killswitchParameterName);
  if (current.value && isRestoreOf(current.value, set)) return `restored to ${current.value.mode}`;
  if (current.value?.updatedAt !== set.updatedAt && !isOwnMaintenance(current.value, set.reason)) return `left as is: changed since by ${current.value?.actor ?? 'someone'} (${current.value?.mode ?? 'malformed'})`;
  const restored = restoredValue(set.previous, now);
  await writeKillswitch({ ssm: deps.ssm, now: () => now }, { parameterName: settings.killswitchParameterName, ...restored, actor: BACKOUT_ACTOR });
  return `restored to ${restored.mode}`;
}

/**
 * Whether `value` is what restoreKillswitch writes for `set`: by atmr-dr after that maintenance,
 * with the mode, reason and expiry restoredValue gave at the time of that write (`updatedAt`).
 */
function isRestoreOf(value: KillswitchValue, set: NonNullable<DowngradePreparation['killswitchSet']>): boolean {
  const at = new Date(value.updatedAt);
  if (value.actor !== BACKOUT_ACTOR || at.getTime() <= Date.parse(set.updatedAt)) return false;
  const restored = restoredValue(set.previous, at);
  return value.mode === restored.mode && value.reason === restored.reason && value.expiresAt === (restored.expiresAt?.toISOString() ?? null);
}

/**
 * Whether `value` is maintenance this run wrote, whatever its time: by atmr-dr, with `reason`, the
 * maintenance reason that names this run (none recorded: never). PrepareDowngrade
 * run again knows its first attempt's write by it, and so does the restore after the rollout. A step
 * Step Functions ran again while its first invocation still ran (the invoke timed out on Step
 * Functions' side: Lambda.SdkClientException) can have both write it, the first invocation's write
 * landing last with its own time; it is still this run's maintenance, to be given back, not an
 * operator's change to leave on (every user on 503s).
 */
function isOwnMaintenance(value: KillswitchValue | null, reason: string | undefined): boolean {
  return reason !== undefined && value?.actor === BACKOUT_ACTOR && value.mode === 'maintenance' && value.reason === reason;
}

/** What maintenance set for a downgrade gives back: the value before it while that one has not expired, else normal. */
function restoredValue(previous: KillswitchValue | null, now: Date): { mode: KillswitchValue['mode']; reason: string; expiresAt: Date | null } {
  const stillValid = previous?.expiresAt ? Date.parse(previous.expiresAt) > now.getTime() : true;
  if (!previous || !stillValid) return { mode: 'normal', reason: 'migration downgrade finished', expiresAt: null };
  return { mode: previous.mode, reason: previous.reason, expiresAt: previous.expiresAt ? new Date(previous.expiresAt) : null };
}

/** The command a human runs to put the killswitch back as restoreKillswitch would (maintenance kept by atmr-dr), in `environmentName`. */
export function restoreKillswitchCommand(previous: KillswitchValue | null, now: Date, environmentName: string): string {
  const restored = restoredValue(previous, now);
  if (restored.mode === 'normal') return operatorCommand(environmentName, 'killswitch disable --reason "migration downgrade finished"');
  const expires = restored.expiresAt ? ` --expires ${Math.max(1, Math.ceil((restored.expiresAt.getTime() - now.getTime()) / 60_000))}m` : '';
  return operatorCommand(environmentName, `killswitch enable --mode ${restored.mode} --reason ${shellWord(restored.reason)}${expires}`);
}

/**
 * What the on-call does after a downgrade that did not end well, in order, ready to paste: the
 * retry, the restore point taken just before it (named), and the command that lifts the maintenance
 * it left on (503 to every user until then). `rollback migration` and the workflow's page print it.
 */
export function failedDowngradeNextSteps(settings: BackoutSettings, service: string, revision: string, taskDefinition: string, preparation: DowngradePreparation, now: Date): string {
  const restorePoint = preparation.snapshotId ? `the snapshot ${preparation.snapshotId}` : `the PITR point ${preparation.pitr?.restoreTo}`;
  const lift = preparation.killswitchSet
    ? `lift maintenance with ${restoreKillswitchCommand(preparation.killswitchSet.previous, now, settings.environmentName)}`
    : 'the killswitch was in maintenance before the downgrade: whoever set it lifts it';
  return `${lockTimeoutHint(settings)}retry with ${downgradeCommandLine(revision, taskDefinition, settings.environmentName)} --yes once its cause is fixed, or, if the schema is left between two releases, restore ${settings.databaseInstanceIdentifier} from ${restorePoint} (taken just before the downgrade); once ${service} runs a release of the schema's revision, ${lift}`;
}

/**
 * The sessions that hold a lock on a table of the database psql is connected to, oldest transaction
 * first: those a downgrade's ALTER or DROP waits behind. An atmr-dr backup's pg_dump shows as
 * application_name atmr-dr (PGAPPNAME of every atmr-dr session), in a transaction since its dump began.
 */
export const LOCK_HOLDERS_SQL =
  "SELECT pid, application_name, usename, state, xact_start, left(query, 60) AS query FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND pid IN (SELECT pid FROM pg_locks WHERE locktype = 'relation' AND granted) ORDER BY xact_start";

/**
 * What a downgrade ended by its lock_timeout looks like in its logs, and what to do: the sessions it
 * waited behind, read-only; waited for (a backup ends by itself) or ended by a human, never by atmr-dr.
 * Also the other way the bound itself fails: PgBouncer (by default) and RDS Proxy refuse a connection
 * whose startup packet carries `options` (lambdas/shared/pg-connection.ts says the same of atmr-dr's
 * own sessions), so behind one the downgrade never connects; the retry then needs the bound off.
 * Empty without a bound (downgradeLockTimeoutSeconds 0): the task then waits, and no log says so.
 */
function lockTimeoutHint(settings: Pick<BackoutSettings, 'downgradeLockTimeoutSeconds'>): string {
  if (settings.downgradeLockTimeoutSeconds <= 0) return '';
  return `if its logs say "canceling statement due to lock timeout" (SQLSTATE 55P03), it waited over ${settings.downgradeLockTimeoutSeconds} s for a table other sessions held a lock on: list them with psql -c "${LOCK_HOLDERS_SQL}" (PG* of the application's database; application_name atmr-dr is a backup's pg_dump, which holds every table until its dump ends: retry after it; another, a transaction left open, is for its owner to end: atmr-dr never cancels a session); if they say "unsupported startup parameter" instead, a pooler in front of the database (PgBouncer, RDS Proxy) refused the bound's PGOPTIONS and nothing ran: set backout.downgradeLockTimeoutSeconds to 0 in the config (no bound; redeploy for the workflow's own downgrades), then `;
}

/** The RunTask `startedBy` of a downgrade task: what finds one whose ARN was never read (aws ecs list-tasks --started-by). */
export const MIGRATION_STARTED_BY = 'atmr-dr-backout';

/** How to find a downgrade task whose ARN atmr-dr never read (RunTask unanswered). */
export const lookForTask = (cluster: string) => `look for it with "aws ecs list-tasks --cluster ${cluster} --started-by ${MIGRATION_STARTED_BY}"`;

/** When a lock expires, as the lines that name it print it. */
export const lockExpiry = (lock: LockRecord) => new Date(lock.expiresAt * 1000).toISOString();

/** The start of the reason of `rollback migration`'s lock, by which a lock without a holder is known to cover a downgrade. */
export const MIGRATION_LOCK_REASON = 'manual migration downgrade by';

/**
 * A lock under which a downgrade task may run: one whose item says a migration downgrade holds it
 * (every lock of `rollback migration`, and the workflow's when it downgrades the schema itself).
 * A lock written by an earlier version records no holder, only its reason: then every lock of
 * `rollback migration`, and the workflow's on the API when it may downgrade itself
 * (autoDowngradeMigrations, an alarm's rollback); `rollback service` never touches the schema.
 */
export function mayCoverDowngrade(lock: LockRecord, settings: BackoutSettings, service: string): boolean {
  if (lock.holder) return lock.holder.kind === 'migration-downgrade';
  if (lock.reason.startsWith(MIGRATION_LOCK_REASON)) return true;
  return service === settings.api.serviceName && settings.autoDowngradeMigrations && lock.reason.startsWith('alarm:');
}

/**
 * The end of a line refused because another rollback holds the lock: wait, or, if its holder is
 * dead, the exact command that releases it (with --force and the task to check first when a
 * downgrade task may run under it), and until when it holds otherwise.
 */
export function waitOrUnlock(settings: BackoutSettings, service: string, lock: LockRecord): string {
  const force = mayCoverDowngrade(lock, settings, service);
  const cluster = settings.clusterName;
  const taskArn = lock.holder?.kind === 'migration-downgrade' ? lock.holder.taskArn : undefined;
  const dead = !force
    ? 'if it is dead'
    : taskArn
      ? `if it is dead and its migration task ${taskArn} has stopped ("aws ecs describe-tasks --cluster ${cluster} --tasks ${taskArn}")`
      : `if it is dead and no migration task runs ("aws ecs list-tasks --cluster ${cluster} --started-by ${MIGRATION_STARTED_BY}")`;
  return `wait for it to end or, ${dead}, release it with ${unlockCommandLine(service, lock.owner, settings.environmentName, force)} (else it holds until ${lockExpiry(lock)})`;
}

/**
 * The downgrade task's environment override: libpq's PGOPTIONS, which psycopg2 (under SQLAlchemy, so
 * `flask db downgrade`) reads as psql does, setting lock_timeout. An ALTER or DROP needs its table's
 * ACCESS EXCLUSIVE lock and waits behind any session holding a lock on it (a backup's pg_dump holds
 * ACCESS SHARE on every table for its whole dump, an idle transaction of a worker until it ends),
 * while every later query on that table queues behind its request: the API stalls, and the task
 * sat until its 900 s limit. With the bound, the waiting statement fails (SQLSTATE 55P03, "canceling
 * statement due to lock timeout"), the task exits non-zero, and the page says what to look at
 * (failedDowngradeNextSteps). No other session is ever cancelled: atmr-dr does not touch them.
 * Not a secret: it is in the RunTask request and in ECS's description of the task.
 * ECS puts an override's variable in place of the task definition's (or the image's) of that name
 * and keeps the others: a PGOPTIONS the application sets itself (its search_path, a statement_timeout)
 * is not in the downgrade task. Not merged with it, as an environment file or the image can set it
 * where the task definition does not show it; an application that relies on its own PGOPTIONS sets
 * downgradeLockTimeoutSeconds to 0 (no override, no bound) and its own lock_timeout (docs/backout.md).
 */
export function downgradeEnvironment(settings: Pick<BackoutSettings, 'downgradeLockTimeoutSeconds'>): { name: string; value: string }[] {
  if (settings.downgradeLockTimeoutSeconds <= 0) return [];
  return [{ name: 'PGOPTIONS', value: `-c lock_timeout=${settings.downgradeLockTimeoutSeconds}s` }];
}

/** The RunTask request of a downgrade: the failing release's task definition (only its image holds the downgrade script). */
export function migrationRunTaskInput(settings: BackoutSettings, failingTaskDefinition: string, revision: string) {
  const environment = downgradeEnvironment(settings);
  return {
    cluster: clusterArn(settings),
    taskDefinition: failingTaskDefinition,
    launchType: 'FARGATE' as const,
    startedBy: MIGRATION_STARTED_BY,
    networkConfiguration: { awsvpcConfiguration: { subnets: settings.subnetIds, securityGroups: settings.securityGroupIds, assignPublicIp: 'DISABLED' as const } },
    overrides: { containerOverrides: [{ name: settings.api.containerName, command: downgradeArgs(revision), ...(environment.length > 0 && { environment }) }] },
  };
}

const pauseFor = (ms: number): Promise<void> => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** The time in ms by the injected clock (tests), else the real one. */
const msNow = (deps: Pick<MigrationDeps, 'now'>): number => nowOf(deps).getTime();

/** Fargate lets a container take up to 120 s (stopTimeout) to exit after SIGTERM; 30 s more for ECS to report it. */
export const STOP_WAIT_SECONDS = 150;

/**
 * Where the task is, for a CLI that quits at once (a second Ctrl-C) and must say what it leaves:
 * `requested` just before RunTask is sent (a task may exist before its ARN is known), `running`
 * once ECS named it, `stopping` just before StopTask is sent.
 */
export type MigrationTaskStage = { readonly stage: 'requested' } | { readonly stage: 'running' | 'stopping'; readonly taskArn: string };

type FollowDeps = MigrationDeps & {
  /** Between polls; may return early when `stopped()` turns true. */
  sleep?: (ms: number) => Promise<void>;
  /** Between polls while waiting for a stopped task to stop: not cut short by Ctrl-C. */
  sleepThrough?: (ms: number) => Promise<void>;
  stopped?: () => boolean;
  onStage?: (stage: MigrationTaskStage) => void;
  /** A line for the operator while following (stderr): a poll that failed and is tried again. */
  note?: (line: string) => void;
};

/**
 * How long DescribeTasks may keep failing (each call after the SDK's own retries) before the CLI
 * gives up following the task. One throttled poll is no reason to stop a healthy downgrade: StopTask
 * would kill `flask db downgrade` halfway (exit 137) and leave the schema between two releases.
 */
export const FOLLOW_FAILURE_SECONDS = 60;

/**
 * The CLI's path: RunTask, then poll until the task stops (the workflow uses ECS's .sync wait
 * instead). When the CLI stops following first (after `timeoutSeconds`, or on the operator's
 * Ctrl-C), it stops the task too; when ECS no longer answers for FOLLOW_FAILURE_SECONDS, it does
 * not (the task may be a healthy downgrade) and the result keeps the lock: a downgrade left running unattended would
 * let the next `rollback migration` start a second one on the same database once the lock is
 * released. The result says whether the task was seen stopped (`abandoned`), or whether RunTask
 * went unanswered so that a task may exist unseen (`unanswered`); ECS's refusal is thrown, and so is
 * a RunTask that failed before it was sent (no credentials, no region): no task exists either way.
 */
export async function runMigrationTask(deps: FollowDeps, settings: BackoutSettings, failingTaskDefinition: string, revision: string, timeoutSeconds = 900): Promise<MigrationTaskResult> {
  const sleep = deps.sleep ?? pauseFor;
  // Stopped before the task exists (Ctrl-C during the preparation): the schema is not touched.
  if (deps.stopped?.()) return { taskArn: null, exitCode: null, stoppedReason: 'not started: interrupted before RunTask, the schema is unchanged', startedAt: null, stoppedAt: null };
  deps.onStage?.({ stage: 'requested' });
  const runTask = new RunTaskCommand(migrationRunTaskInput(settings, failingTaskDefinition, revision));
  const request = recordSending(runTask);
  let answer: RunTaskCommandOutput;
  try {
    // Options given: with cacheMiddleware, a client would reuse an earlier RunTask's handler, not this record.
    answer = await deps.ecs.send(runTask, {});
  } catch (error) {
    // Failed before any request reached the HTTP handler (credentials, region, endpoint): ECS saw
    // nothing, so no task exists, as after a refusal.
    // A missing or expired login (or region) is a setting to give or renew: exit 2, as every
    // command says it through asOperatorError (rollback service's UpdateService refusal too).
    const missing = missingAwsSetting(error);
    if (!request.sent) {
      throw new OperatorError(
        `backout: RunTask was not sent (${namedLine(error)}): ${missing ?? 'check AWS_REGION, the credentials (AWS_PROFILE) and AWS_ENDPOINT_URL_ECS if set'}`,
        missing ? MISSING_SETTING_EXIT_CODE : 1,
      );
    }
    if (refusedOutright(error)) {
      // ECS refused the credentials as expired: no task exists, and a login, not a retry, fixes it.
      if (missing) throw new OperatorError(`backout: RunTask was refused (${namedLine(error)}): ${missing}`, MISSING_SETTING_EXIT_CODE);
      throw error;
    }
    const why = oneLine(error);
    return { taskArn: null, exitCode: null, stoppedReason: `RunTask got no answer, a migration task may have been started: ${why}`, startedAt: null, stoppedAt: null, unanswered: { why } };
  }
  const { tasks, failures } = answer;
  const taskArn = tasks?.[0]?.taskArn;
  if (!taskArn) throw new OperatorError(`backout: ECS did not start the migration task (${failures?.[0]?.reason ?? 'no reason given'})`, 1);
  deps.onStage?.({ stage: 'running', taskArn });
  const deadline = msNow(deps) + timeoutSeconds * 1000;
  let status = 'unknown';
  // The first of the polls failing in a row (its time and count): bounded by both, as a fake clock does not move.
  let failing: { since: number; count: number } | null = null;
  for (;;) {
    let task: Task | undefined;
    try {
      task = await describeTask(deps.ecs, settings, taskArn);
      failing = null;
    } catch (error) {
      failing ??= { since: msNow(deps), count: 0 };
      failing.count += 1;
      const gaveUp = msNow(deps) - failing.since >= FOLLOW_FAILURE_SECONDS * 1000 || failing.count > FOLLOW_FAILURE_SECONDS / 5;
      if (gaveUp) {
        // Not stopped: ECS not answering says nothing about the task, which may be a healthy
        // downgrade. The result keeps the lock (abandoned, not stopped) and says what to check.
        const why = `could not be followed: DescribeTasks failed for ${FOLLOW_FAILURE_SECONDS} s (${failing.count} polls; last: ${namedLine(error)})`;
        return {
          taskArn,
          exitCode: null,
          stoppedReason: `${why}; atmr-dr did not stop it, it may still be downgrading: check "aws ecs describe-tasks --cluster ${settings.clusterName} --tasks ${taskArn}" until it is STOPPED, then its exit code and logs`,
          startedAt: null,
          stoppedAt: null,
          abandoned: { why, stopped: false },
        };
      }
      deps.note?.(`rollback: DescribeTasks of the migration task failed (${namedLine(error)}): trying again in 5 s, for up to ${FOLLOW_FAILURE_SECONDS} s; the task is not stopped`);
      await sleep(5000);
      if (deps.stopped?.()) return stopMigrationTask(deps, settings, taskArn, `not followed to its end (interrupted while ${status})`);
      continue;
    }
    status = task?.lastStatus ?? 'unknown';
    if (task?.lastStatus === 'STOPPED') return stoppedTask(settings, taskArn, task);
    if (msNow(deps) > deadline) return stopMigrationTask(deps, settings, taskArn, `still ${status} after ${timeoutSeconds} s`);
    await sleep(5000);
    if (deps.stopped?.()) return stopMigrationTask(deps, settings, taskArn, `not followed to its end (interrupted while ${status})`);
  }
}

/**
 * Whether the command's request was handed to the HTTP handler. The record sits in the innermost
 * place of the SDK's stack (step `deserialize`, priority `low`: steps run initialize, serialize,
 * build, finalizeRequest, deserialize, each from high to low), after the credentials, the endpoint,
 * the retries and the signing: an error raised before it left nothing that ECS could act on.
 */
function recordSending(command: RunTaskCommand): { readonly sent: boolean } {
  const request = { sent: false };
  command.middlewareStack.add(
    (next) => (args) => {
      request.sent = true;
      return next(args);
    },
    { step: 'deserialize', priority: 'low', name: 'atmrDrRequestSent' },
  );
  return request;
}

/**
 * ECS refused the only RunTask attempt sent (a client fault: a revision gone, no permission): no
 * task exists. Anything else once a request was sent (no answer, a server fault, an error after the
 * SDK retried) leaves an earlier attempt whose outcome is unknown. The SDK's retries carry one
 * clientToken (it fills the idempotency token once per send), so they cannot start a second task
 * themselves.
 */
function refusedOutright(error: unknown): boolean {
  const e = error as { $fault?: string; $metadata?: { attempts?: number } } | undefined;
  return e?.$fault === 'client' && (e.$metadata?.attempts ?? 1) <= 1;
}

async function describeTask(ecs: ECSClient, settings: BackoutSettings, taskArn: string): Promise<Task | undefined> {
  const { tasks } = await ecs.send(new DescribeTasksCommand({ cluster: settings.clusterName, tasks: [taskArn] }));
  return tasks?.[0];
}

function stoppedTask(settings: BackoutSettings, taskArn: string, task: Task): MigrationTaskResult {
  const container = task.containers?.find((c) => c.name === settings.api.containerName);
  return {
    taskArn,
    exitCode: container?.exitCode ?? null,
    stoppedReason: task.stoppedReason ?? null,
    containerReason: container?.reason ?? null,
    startedAt: task.startedAt?.toISOString() ?? null,
    stoppedAt: task.stoppedAt?.toISOString() ?? null,
  };
}

/** StopTask, then wait (up to STOP_WAIT_SECONDS, through a Ctrl-C) to see the task STOPPED. */
async function stopMigrationTask(deps: FollowDeps, settings: BackoutSettings, taskArn: string, why: string): Promise<MigrationTaskResult> {
  const sleep = deps.sleepThrough ?? deps.sleep ?? pauseFor;
  const mayStillRun = (detail: string): MigrationTaskResult => ({
    taskArn,
    exitCode: null,
    stoppedReason: `${why}; ${detail}`,
    startedAt: null,
    stoppedAt: null,
    abandoned: { why, stopped: false },
  });
  deps.onStage?.({ stage: 'stopping', taskArn });
  try {
    await deps.ecs.send(new StopTaskCommand({ cluster: settings.clusterName, task: taskArn, reason: `atmr-dr: migration downgrade ${why}`.slice(0, 255) }));
  } catch (error) {
    return mayStillRun(`StopTask refused (${oneLine(error)})`);
  }
  const deadline = msNow(deps) + STOP_WAIT_SECONDS * 1000;
  let status = 'unknown';
  for (;;) {
    // ECS not answering here is not the end: the next poll may, and only STOPPED releases the lock.
    const task = await describeTask(deps.ecs, settings, taskArn).catch(() => undefined);
    status = task?.lastStatus ?? status;
    if (task?.lastStatus === 'STOPPED') {
      const stopped = stoppedTask(settings, taskArn, task);
      return { ...stopped, stoppedReason: `${why}; stopped by atmr-dr (StopTask)${task.stoppedReason ? `: ${task.stoppedReason}` : ''}`, abandoned: { why, stopped: true } };
    }
    if (msNow(deps) > deadline) return mayStillRun(`StopTask sent but the task is still ${status} ${STOP_WAIT_SECONDS} s later`);
    await sleep(5000);
  }
}
