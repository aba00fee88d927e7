import { nowOf } from '../shared/clock';
import type { Logger } from '@aws-lambda-powertools/logger';
import type { Metrics } from '@aws-lambda-powertools/metrics';
import { CloudWatchClient } from '@aws-sdk/client-cloudwatch';
import { ECSClient } from '@aws-sdk/client-ecs';
import { EventBridgeClient, PutEventsCommand } from '@aws-sdk/client-eventbridge';
import { RDSClient } from '@aws-sdk/client-rds';
import { PublishCommand, SNSClient } from '@aws-sdk/client-sns';
import { GetParameterCommand, ParameterNotFound, PutParameterCommand, SSMClient } from '@aws-sdk/client-ssm';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { runbookAlarmName } from '../../lib/alarm-names';
import { readKillswitch } from '../killswitch/core';
import { effectiveMode, KillswitchValue } from '../killswitch/value';
import { EVENT_SOURCE, OPERATOR_CLI, operatorCommand } from '../shared/constants';
import { namedLine, OperatorError, oneLine } from '../shared/errors';
import { assertFamily, currentTaskDefinition, inactiveTargetLine, ROLLBACK_NOT_STARTED, RollbackNotStarted, deploymentStatus, deploymentUnderway, describeRelease, describeService, schemaHead, imageRepository, isDigestReference, pinToRecordedDigests, PrimaryRollout, primaryRollout, ReleaseInfo, runningImageDigests, stoppedTasksSince, taskDefinitionFamily, UnderwayDeployment, underwayLine, updateServiceTo } from './ecs';
import { formatAge } from '../shared/format';
import { addRollbackMetrics, RollbackMetric, rollbackMetrics } from './metrics';
import {
  alembicCurrentCommandLine,
  DOWNGRADE_DROPS,
  downgradeArgs,
  downgradeCommandLine,
  DowngradePreparation,
  DowngradeResult,
  downgradeMaintenanceRun,
  failedDowngradeNextSteps,
  finishDowngrade,
  KILLSWITCH_WRITE_UNANSWERED,
  lookForTask,
  mayBeInMaintenance,
  MIGRATION_STARTED_BY,
  MigrationTaskResult,
  prepareDowngrade,
  restoreKillswitch,
  restoreKillswitchCommand,
  RUN_TASK_NOT_STARTED_ERRORS,
  RUN_TASK_REFUSED_ERRORS,
  valueBeforeCommand,
  waitOrUnlock,
} from './migration';
import { rollbackServiceCommand, rollbackStatusCommand } from './revision';
import { BackoutSettings, findService, pinParameterName, ROLLBACK_OBJECTIVE_SECONDS } from './settings';
import { alarmsInAlarm, conditionHolds, readApiSignals } from './signals';
import {
  acquireLock,
  claimReleaseRollback,
  cooldownUntil,
  LastKnownGood,
  lastKnownGoodBefore,
  lastKnownGoodHistory,
  lastKnownGoodOf,
  latestLastKnownGood,
  LockHolder,
  LockRecord,
  readLock,
  recordRollback,
  releaseClaim,
  releaseLock,
  releaseOwnedBy,
  RollbackHistoryEntry,
  lastSchemaDowngrade,
  rollbackHistory,
  SchemaDowngrade,
  startCooldown,
  unlockCommandLine,
} from './state';

export const ROLLBACK_FINISHED_DETAIL_TYPE = 'Rollback Finished';
export { ROLLBACK_OUTCOME_METRIC, ROLLBACK_SECONDS_METRIC } from './metrics';

export interface BackoutDeps {
  readonly ecs: ECSClient;
  readonly cloudwatch: CloudWatchClient;
  readonly doc: DynamoDBDocumentClient;
  readonly ssm: SSMClient;
  readonly sns: SNSClient;
  readonly events: EventBridgeClient;
  readonly rds: RDSClient;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly now?: () => Date;
  readonly fetch?: typeof fetch;
}

/** What started a rollback: a backout alarm (the raw EventBridge event) or an operator. */
const AlarmEventSchema = z.looseObject({
  source: z.literal('aws.cloudwatch'),
  'detail-type': z.literal('CloudWatch Alarm State Change'),
  time: z.iso.datetime({ offset: true }),
  detail: z.looseObject({ alarmName: z.string(), state: z.looseObject({ value: z.literal('ALARM') }) }),
});
export const RollbackRequestSchema = z.union([
  z.strictObject({ service: z.string().min(1), event: z.unknown() }),
  z.strictObject({
    service: z.string().min(1),
    manual: z.strictObject({ actor: z.string().min(1), targetTaskDefinition: z.string().optional(), dryRun: z.boolean().default(false) }),
  }),
]);
export type RollbackRequest = z.input<typeof RollbackRequestSchema>;

export type Decision = 'proceed' | 'notify' | 'skip' | 'ignore';
export type Outcome =
  | 'rolled-back'
  | 'rolled-back-checks-failed'
  | 'rolled-back-unchecked'
  | 'steady-timeout'
  | 'deployment-failed'
  | 'migration-failed'
  | 'error'
  | 'dry-run'
  | 'not-needed'
  | 'refused'
  | 'rollout-started';

/** The workflow's state: every step takes it and returns it, completed. */
export interface RollbackState {
  readonly service: string;
  readonly owner: string;
  readonly trigger: { readonly kind: 'alarm' | 'manual'; readonly name: string; readonly at: string };
  readonly decision: Decision;
  readonly reason: string;
  /** Does the end of this rollback need a human (page) rather than a notice? */
  readonly page: boolean;
  readonly dryRun: boolean;
  readonly lockHeld: boolean;
  /**
   * The release (task definition) this run claimed as its one automatic rollback (RELEASE#<arn>),
   * named just before the claim is written: a write that failed may still have been applied. The
   * report gives the claim back when the run changed nothing on ECS (claimKeptBecause).
   */
  readonly claimed?: string;
  readonly from: ReleaseInfo | null;
  readonly to: { readonly taskDefinitionArn: string; readonly images: readonly string[]; readonly alembicHead: string | null } | null;
  /** The target's own revision runs, with other images than its bake recorded (retaggedRelease): what the report says of it. */
  readonly retagged?: string;
  /** With `retagged`: the digests its running tasks pulled in place of the recorded ones, the bad images the pin and the report name. */
  readonly badDigests?: readonly string[];
  readonly downgrade: {
    /** The releases declare different Alembic heads. */
    readonly needed: boolean;
    /** atmr-dr runs it itself (autoDowngradeMigrations, not a dry run). */
    readonly run: boolean;
    readonly revision: string | null;
    readonly args: string[] | null;
    readonly command: string | null;
    /**
     * The schema state the report must call unknown: a release of an automatic rollback, with
     * autoDowngradeMigrations, declares no Alembic head, so whether the schema is ahead of the code
     * that will run cannot be decided (`needed` stays false).
     */
    readonly unknownHead?: string;
    readonly preparation?: DowngradePreparation;
    /** The .sync integration's output, or its error. */
    readonly task?: Record<string, unknown>;
    readonly taskError?: { readonly Error?: string; readonly Cause?: string };
    readonly result?: DowngradeResult;
    /**
     * The killswitch once the service was steady on the target: maintenance set for the downgrade
     * is lifted only then (`ok`: the restore was tried by its rule; not ok: SSM refused it).
     */
    readonly lifted?: { readonly ok: boolean; readonly line: string };
  };
  /** `pinError`: UpdateService was accepted but the pin could not be written (the deploys must be held by hand). */
  readonly rollout?: {
    readonly startedAt: string;
    readonly deploymentId: string | null;
    readonly pin: string;
    readonly pinError?: string;
    /** The images of the target: the revision registered with the recorded digests (`to` is then that revision), or why none was. */
    readonly images?: { readonly pinnedFrom?: string; readonly line: string };
  };
  readonly steady?: { readonly status: 'steady' | 'in-progress' | 'failed' | 'timeout'; readonly detail: string; readonly at: string };
  readonly checks?: { readonly ok: boolean; readonly lines: string[] };
  /** The Catch of a failed step (Step Functions' `{Error, Cause}`). */
  readonly error?: { readonly Error?: string; readonly Cause?: string };
}


function base(service: string, trigger: RollbackState['trigger'], dryRun: boolean, owner: string = randomUUID()): RollbackState {
  return {
    service,
    owner,
    trigger,
    decision: 'ignore',
    reason: '',
    page: false,
    dryRun,
    lockHeld: false,
    from: null,
    to: null,
    downgrade: { needed: false, run: false, revision: null, args: null, command: null },
  };
}

/**
 * The guards, in order: a valid trigger for a configured service; a target (the last known good,
 * or the operator's `--to`) of the service's family; for alarms, no other alarm run holding the lock
 * (a quiet skip); for alarms, the condition still holds, the killswitch (5xx ratio only), no dependency
 * of the API down (holdAlarmNames) and no deployment under way; a target that differs from what runs
 * (else a page); the lock; for alarms, no cooldown and no earlier automatic rollback of this release.
 * Everything that can be decided before the lock is read-only.
 *
 * `execution`: the name of the workflow's execution, the owner of what these guards take (the lock,
 * the release claim). A Guards Lambda that times out or is killed returns no state, so the report
 * knows only the execution: it then releases what that execution owns (report). Without it (the CLI
 * calls the guards itself), a random owner.
 */
export async function guards(deps: BackoutDeps, settings: BackoutSettings, input: unknown, execution?: string): Promise<RollbackState> {
  const now = nowOf(deps);
  const request = RollbackRequestSchema.safeParse(input);
  if (!request.success) {
    deps.logger.warn('ignored: malformed rollback request', { problem: oneLine(request.error.issues[0]?.message) });
    return { ...base('unknown', { kind: 'alarm', name: 'malformed', at: now.toISOString() }, settings.dryRun), reason: 'malformed request' };
  }
  const { service: serviceName } = request.data;
  let trigger: RollbackState['trigger'];
  let targetOverride: string | undefined;
  let dryRun = settings.dryRun;
  if ('event' in request.data) {
    const event = AlarmEventSchema.safeParse(request.data.event);
    const alarmNames = [settings.alarmNames.errorRate, settings.alarmNames.noHealthyHosts];
    if (!event.success || !alarmNames.includes(event.data.detail.alarmName)) {
      const why = event.success ? `alarm ${event.data.detail.alarmName} is not a backout alarm` : `${event.error.issues[0].path.join('.')}: ${event.error.issues[0].message}`;
      deps.logger.warn('ignored: not a backout alarm going to ALARM', { why });
      return { ...base(serviceName, { kind: 'alarm', name: 'foreign', at: now.toISOString() }, dryRun), reason: `ignored: ${why}` };
    }
    trigger = { kind: 'alarm', name: event.data.detail.alarmName, at: event.data.time };
  } else {
    trigger = { kind: 'manual', name: request.data.manual.actor, at: now.toISOString() };
    targetOverride = request.data.manual.targetTaskDefinition;
    dryRun = dryRun || request.data.manual.dryRun;
  }
  let state = base(serviceName, trigger, dryRun, execution);
  const automatic = trigger.kind === 'alarm';
  const notify = (reason: string, page: boolean): RollbackState => ({ ...state, decision: 'notify', reason, page });

  let service;
  try {
    service = findService(settings, serviceName);
  } catch (error) {
    deps.logger.warn('ignored: rollback request for a service the backout does not watch', { service: serviceName });
    return { ...state, reason: `ignored: ${oneLine(error)}` };
  }
  const ecsService = await describeService(deps.ecs, settings, serviceName);
  const currentArn = currentTaskDefinition(ecsService);
  const containerName = serviceName === settings.api.serviceName ? settings.api.containerName : '';
  const from = await describeRelease(deps.ecs, settings, currentArn, containerName);
  state = { ...state, from };

  let to: RollbackState['to'];
  // The newest record, read once: retaggedRelease decides on the same record as the target.
  let newest: LastKnownGood | undefined;
  // The target as ECS has it (its status): read below, before anything is written.
  let targetRelease: ReleaseInfo | undefined;
  if (targetOverride) {
    assertFamily(service, targetOverride);
    const target = await describeRelease(deps.ecs, settings, targetOverride, containerName);
    targetRelease = target;
    to = { taskDefinitionArn: target.taskDefinitionArn, images: target.images, alembicHead: target.alembicHead };
  } else {
    const lkg = await latestLastKnownGood(deps.doc, settings.tableName, serviceName);
    if (!lkg) {
      // The API's alarms start a run for every service: a worker none of whose releases has baked yet
      // is not what they say fails, and a page of its own per worker would bury the API's on the worst
      // day. A line in the report then, and a page only when the API has none either.
      const apiHasOne = automatic && serviceName !== settings.api.serviceName && (await latestLastKnownGood(deps.doc, settings.tableName, settings.api.serviceName)) !== null;
      if (apiHasOne) {
        return notify(`no last known good is recorded for ${serviceName} (none of its releases has passed a bake): not rolled back, the API's alarm does not say this worker fails; if it does, run "${rollbackServiceCommand(serviceName, settings.environmentName, 'TASK_DEF_ARN')}"`, false);
      }
      return notify(`no last known good is recorded for ${serviceName}: nothing rolled back; choose the release to go back to among the revisions of ${service.taskFamily} ("${listRevisionsCommand(service.taskFamily)}" lists them, newest first) and run "${rollbackServiceCommand(serviceName, settings.environmentName, 'TASK_DEF_ARN')}"`, true);
    }
    assertFamily(service, lkg.taskDefinitionArn);
    to = { taskDefinitionArn: lkg.taskDefinitionArn, images: lkg.images, alembicHead: lkg.alembicHead };
    newest = lkg;
  }
  const retagged = to.taskDefinitionArn === currentArn ? await retaggedRelease(deps, settings, serviceName, currentArn, newest) : null;
  state = { ...state, to, ...(retagged && { retagged: retagged.line, badDigests: retagged.moved }) };
  // A copy of the target pinned to its digests (rollOut) is that release: an alarm on it must not
  // roll it back to itself again, once per cooldown, registering a new copy each time.
  const onTarget = !retagged && (to.taskDefinitionArn === currentArn || from.pinnedFrom === to.taskDefinitionArn);
  const isApi = serviceName === settings.api.serviceName;
  // Read first: another alarm's run of this workflow holding the lock is the dedupe of concurrent
  // triggers (a second backout alarm during a rollback: NoHealthyHosts while the ErrorRate alarm's
  // rollback replaces the tasks, finding the last known good primary because of that rollback, or
  // maintenance set by that run's downgrade), which ends quietly before any hold can page or notify
  // about what that run itself is doing. By hand, or on a worker on its target, any holder ends it.
  // A lock of this run's own owner is not another run's: Step Functions running these guards again.
  const read = automatic || onTarget ? await readLock(deps.doc, settings.tableName, serviceName, now) : null;
  const lock = read?.owner === state.owner ? null : read;
  if (lock && (concurrentAlarmRun(settings, lock, now) || (onTarget && !(automatic && isApi)))) {
    deps.logger.info('skipped: another rollback of this service holds the lock', { service: serviceName, lock: lock.reason });
    return { ...state, decision: 'skip', reason: `another rollback of this service is in progress (${lock.reason}, since ${lock.acquiredAt})` };
  }
  const copy = currentArn === to.taskDefinitionArn ? '' : ` (a copy of ${to.taskDefinitionArn} pinned to its digests)`;
  // The API's alarms fire for every service: a worker that was not redeployed has nothing to roll
  // back and must not page (nor read the API's signals to say so).
  if (onTarget && !isApi) return notify(`${serviceName} already runs ${currentArn}${copy}, the rollback target: nothing to roll back`, false);

  // The automatic holds come before "already runs its last known good": each says why this alarm
  // needs no rollback (maintenance answers, a dependency down, ECS's circuit breaker already rolling
  // back to the last known good), which the "it went bad after its bake" page would otherwise hide.
  if (automatic) {
    const signals = await readApiSignals(deps.cloudwatch, settings, new Date(now.getTime() - settings.evaluationMinutes * 60_000), now);
    const fired = trigger.name === settings.alarmNames.errorRate ? 'error-rate' : 'no-healthy-hosts';
    const condition = conditionHolds(settings, signals, fired);
    if (!condition.holds) return notify(`condition cleared (${condition.why}): no rollback`, false);
    state = { ...state, reason: condition.why };
    // Maintenance and degraded answer 5xx but keep /health and /ready served (MAINTENANCE_EXEMPT_PATHS):
    // they explain the 5xx ratio, never zero healthy hosts, which proceeds as without them.
    // No datapoint landed yet: the alarm that fired names the condition.
    const errorRate = (condition.cause ?? fired) === 'error-rate';
    const killswitch = errorRate ? await killswitchHold(deps, settings, serviceName, now) : null;
    if (killswitch) return notify(killswitch.reason, killswitch.page);
    // The runbook: no backout without a confirmed root cause. The probe checks OSRM, Redis and the
    // database directly, not through the API: one of them down explains the API's errors, and the
    // last known good would fail the same way, so a rollback would only add a deployment to the outage.
    // Those alarms keep their state while the probe is silent (missing data ignored), so its silence
    // alarms (Probe-Silent, Probe-Errors) are in the list too: the cause is then unknown, and holding
    // for a human is still the runbook's answer; the notice says which of the two it is.
    const down = await alarmsInAlarm(deps.cloudwatch, settings.holdAlarmNames);
    if (down.length > 0) {
      const silent = down.filter((name) => [runbookAlarmName(settings.environmentName, 'Probe', 'Silent'), runbookAlarmName(settings.environmentName, 'Probe', 'Errors')].includes(name));
      const why = [
        ...(silent.length < down.length ? ['a dependency of the API is down and a rollback cannot fix it'] : []),
        ...(silent.length > 0 ? ['the health probe is silent, so no dependency alarm can say whether one is down, and the cause is unknown'] : []),
      ].join('; and ');
      const held = `held: ${down.join(', ')} in ALARM, ${why} (runbook: no backout without a confirmed root cause): follow that alarm; if the API still fails once it is OK, run "${rollbackServiceCommand(serviceName, settings.environmentName)}"`;
      // Database-Down fires when the probe cannot connect, and the release itself can cause that: a
      // connection leak or a larger pool exhausts max_connections. It then turns OK only after a
      // rollback, so "wait for it" would keep the outage going: the human who confirms the cause is
      // told where to look and to roll back at once if the release holds the connections.
      const database = runbookAlarmName(settings.environmentName, 'Database', 'Down');
      const suspectRelease = down.includes(database)
        ? `; but ${database} fires whenever the probe cannot connect to the database, which the running release ${currentArn} can cause itself (a connection leak, or a larger pool, exhausting max_connections), and the alarm then clears only after a rollback to ${to.taskDefinitionArn}: check pg_stat_activity (connections by application_name and state, against max_connections) and the release's pool size; if the release holds the connections, run "${rollbackServiceCommand(serviceName, settings.environmentName)}" now, not after the alarm clears`
        : '';
      return notify(`${held}${suspectRelease}`, true);
    }
    // The alarm's datapoints are one minute each, evaluationMinutes of them breaching: the breach
    // began at the latest that long before the alarm changed state.
    const breachStart = new Date(Date.parse(trigger.at) - settings.evaluationMinutes * 60_000);
    const underway = deploymentUnderway(ecsService, to.taskDefinitionArn, breachStart);
    if (underway) return notify(`${underwayLine(serviceName, underway, to.taskDefinitionArn, settings.environmentName)}; nothing rolled back`, true);
  }

  if (onTarget) {
    // The API already on its last known good (or a copy of it pinned to its digests): a rollback to
    // it cannot help, and the page names the one before it for the human who decides whether it went
    // bad after its bake; a lock held by a rollback by hand is named too.
    const held = lock ? `; ${lockHeldLine(settings, serviceName, lock)}` : '';
    // The pin says which release not to name; unread (throttled, malformed), the page still goes
    // out, naming no release and saying why, rather than the guards failing on the read.
    const read: { pin: RollbackPin | null; unread?: string } = targetOverride
      ? { pin: null }
      : await readPin(deps, settings, serviceName).then((pin) => ({ pin }), (error: unknown) => ({ pin: null, unread: namedLine(error) }));
    const pinUnread = read.unread ? `; the pin ${pinParameterName(settings, serviceName)} could not be read (${read.unread}), so no release before it is named: "${rollbackStatusCommand(serviceName, settings.environmentName)}" lists them` : '';
    const before = targetOverride || read.unread ? null : await lastKnownGoodBefore(deps.doc, settings.tableName, serviceName, to.taskDefinitionArn, [currentArn, from.pinnedFrom], unpinned(read.pin, serviceName));
    return notify(
      before
        ? `${wentBadAfterBake(serviceName, currentArn, before)}: decide by hand: ${rollbackServiceCommand(serviceName, settings.environmentName, before.taskDefinitionArn)}${held}`
        : `${serviceName} already runs ${currentArn}${copy}, the rollback target: a rollback cannot help, investigate by hand${pinUnread}${held}`,
      true,
    );
  }

  // The newest last known good can be the release a human just rolled away from (it passed its bake,
  // then failed): rolling "back" to it would bring the failure back, and its downgrade would run in
  // the older image. The pin of the last rollback names that release and its images.
  if (automatic) {
    const refused = pinRefusal(await readPin(deps, settings, serviceName), serviceName, to, newest?.recordedAt);
    if (refused) return notify(`the rollback target ${refused}: not rolled back; choose another target: "${rollbackServiceCommand(serviceName, settings.environmentName, 'TASK_DEF_ARN')}"`, true);
  }
  // A deregistered target fails only at RollOut, after the snapshot, the maintenance and the
  // downgrade: asked before the lock, the claim and any of them (inactiveTargetLine).
  targetRelease ??= await describeRelease(deps.ecs, settings, to.taskDefinitionArn, containerName);
  const inactive = inactiveTargetLine(targetRelease, serviceName, settings.environmentName);
  if (inactive) return notify(inactive, true);

  // The schema is at the release's head unless a downgrade that worked took it elsewhere since.
  const fromSchema = isApi ? schemaHead(ecsService, from, await lastSchemaDowngrade(deps.doc, settings.tableName, serviceName)) : from.alembicHead;
  const needed = Boolean(isApi && to.alembicHead && fromSchema && to.alembicHead !== fromSchema);
  // Only the automatic path downgrades, and only with autoDowngradeMigrations (a dry run says what
  // the real run would do).
  const downgradesOn = settings.autoDowngradeMigrations && automatic;
  const downgrades = needed && downgradesOn;
  // A lock under which the downgrade task may run says so: releasing it by hand needs --force.
  const holder: LockHolder = downgrades && !dryRun ? { kind: 'migration-downgrade' } : { kind: 'service-rollback' };
  const locked = await acquireLock(deps.doc, settings.tableName, { service: serviceName, owner: state.owner, now, ttlSeconds: workflowLockSeconds(settings), reason: `${trigger.kind}: ${trigger.name}`, holder });
  if (!locked) {
    const lock = await readLock(deps.doc, settings.tableName, serviceName, now);
    if (automatic && lock && !concurrentAlarmRun(settings, lock, now)) {
      deps.logger.warn('held: a rollback that is not an alarm run holds the lock', { service: serviceName, lock: lock.reason, owner: lock.owner });
      return notify(lockHeldLine(settings, serviceName, lock), true);
    }
    deps.logger.info('skipped: another rollback of this service holds the lock', { service: serviceName });
    return { ...state, decision: 'skip', reason: `another rollback of this service is in progress${lock ? ` (${lock.reason}, since ${lock.acquiredAt})` : ''}` };
  }
  state = { ...state, lockHeld: true };
  // From here on, nothing may throw: the state machine's Catch would hand the report the raw
  // trigger, without this run's owner, and the lock would stay held for workflowLockSeconds, every
  // later alarm of the service skipping quietly as "another alarm's run" while the API fails. An
  // error (DynamoDB throttled or failing on the cooldown or the claim, a release whose Alembic head
  // is no revision) ends in the report instead, which releases the lock and pages with the error.
  try {
    // Value-only work first (a release head that is no Alembic revision throws here): the claim below
    // is the last thing written, so an error cannot leave a release claimed by a run that rolled
    // nothing back, and the next alarm refused as "already rolled back automatically once".
    let schema = '';
    // What a dry run would do before the rollout: the state machine downgrades first (DowngradeFirst).
    let downgradeFirst = '';
    let downgrade: RollbackState['downgrade'] = state.downgrade;
    if (needed) {
      const revision = to.alembicHead as string;
      // By hand, in the same release as the workflow's own downgrade task (`from`: what runs now).
      const command = downgradeCommandLine(revision, from.taskDefinitionArn, settings.environmentName);
      downgrade = { needed, run: downgrades && !dryRun, revision, args: downgradeArgs(revision), command };
      // The headline (SNS, the Rollback Finished event, the timeline) says what happens to the schema.
      // Left ahead, it is no call to downgrade: a downgrade drops data, and the previous release
      // often runs on an additive migration (docs/backout.md, "When not to downgrade").
      schema = downgrades
        ? ` after downgrading the schema to ${revision}`
        : `; the schema stays at ${fromSchema}, ahead of the release rolled back to (Alembic ${revision}): downgrade by hand only if that release cannot run on the new schema (it drops what the migration added): ${command}`;
      if (downgrades) downgradeFirst = `downgrade the schema to ${revision} in ${from.taskDefinitionArn}, then `;
    }
    const headless = [!from.alembicHead && `the failing release ${from.taskDefinitionArn}`, !to.alembicHead && `the last known good ${to.taskDefinitionArn}`].filter((x): x is string => Boolean(x));
    if (isApi && downgradesOn && headless.length) {
      const unknownHead = `schema state unknown: ${headless.join(' and ')} ${headless.length > 1 ? 'declare' : 'declares'} no ${settings.alembicHead.name}, so atmr-dr cannot tell whether the schema is ahead of the code it rolls back to and downgrades nothing; check the schema's revision by hand with "${operatorCommand(settings.environmentName, 'db revision')}" (from a machine that reaches the database; else ${alembicCurrentCommandLine(settings, from.taskDefinitionArn)}, the revision in the task's logs) and, if it is ahead of the last known good's, downgrade with "${OPERATOR_CLI} rollback migration --to <revision> --task-definition ${from.taskDefinitionArn} --env ${settings.environmentName}"`;
      downgrade = { ...downgrade, unknownHead };
    }

    if (automatic && !dryRun) {
      const until = await cooldownUntil(deps.doc, settings.tableName, serviceName, now);
      if (until) return notify(`cooldown: ${serviceName} was rolled back recently, no automatic rollback before ${until}; if the API still fails, roll back by hand: "${rollbackServiceCommand(serviceName, settings.environmentName, to.taskDefinitionArn)}"`, true);
      state = { ...state, claimed: currentArn };
      const first = await claimReleaseRollback(deps.doc, settings.tableName, { service: serviceName, taskDefinitionArn: currentArn, owner: state.owner, now });
      if (!first) {
        // Another run's claim: not this run's to give back.
        const { claimed: _theirs, ...unclaimed } = state;
        state = unclaimed;
        return notify(`${currentArn} was already rolled back automatically once: no second automatic rollback of the same release`, true);
      }
    }
    state = { ...state, downgrade };
    // A moved tag: the revision that runs is the target's own, so the history and the page name the bad digests.
    const ran = retagged ? ` (running ${retagged.moved.join(', ')})` : '';
    const rollBack = `roll ${serviceName} back from ${currentArn}${ran} to ${to.taskDefinitionArn}`;
    const plan = `${rollBack}${schema}`;
    // A dry run lists the steps in the order the run would take them.
    if (dryRun) return { ...state, decision: 'notify', reason: `dry run: would ${downgradeFirst ? `${downgradeFirst}${rollBack}` : plan} (${state.reason || trigger.name})`, page: false };
    return { ...state, decision: 'proceed', reason: `${plan} (${state.reason || trigger.name})` };
  } catch (error) {
    deps.logger.error('guards: stopped on an error after taking the lock, the report releases it', { service: serviceName, error: namedLine(error) });
    return {
      ...notify(`stopped on an error after taking the lock, nothing rolled back${automatic ? `; the alarm does not fire again while it stays in ALARM: if the API still fails, run "${rollbackServiceCommand(serviceName, settings.environmentName)}"` : ''}`, true),
      error: { Error: (error as { name?: string } | null)?.name ?? 'Error', Cause: oneLine(error) },
    };
  }
}

/** The page's, the CLI's and `rollback status`'s words for a newest last known good that runs and fails. */
function wentBadAfterBake(serviceName: string, currentArn: string, before: LastKnownGood): string {
  return `${serviceName} already runs ${currentArn}, its newest last known good, so no automatic rollback; if it went bad after its bake, the last known good before it is ${before.taskDefinitionArn} (recorded ${before.recordedAt})`;
}

/** The life of the workflow's lock: the rollback's steady timeout and 30 min, as the state machine's timeout. */
const workflowLockSeconds = (settings: BackoutSettings) => settings.steadyTimeoutSeconds + 30 * 60;

/**
 * A lock taken by another alarm's run of this workflow within its life: the normal dedupe of
 * concurrent triggers (both backout alarms, EventBridge delivering twice), which ends quietly.
 * Any other holder (a `rollback service` or `rollback migration` by hand, or a command killed,
 * whose lock holds up to an hour) would otherwise swallow the alarm's rollback without a word.
 */
function concurrentAlarmRun(settings: BackoutSettings, lock: LockRecord, now: Date): boolean {
  return lock.reason.startsWith('alarm: ') && now.getTime() - Date.parse(lock.acquiredAt) <= workflowLockSeconds(settings) * 1000;
}

/** An alarm's rollback not done because another holder has the lock: who, since when, and what releases it. */
function lockHeldLine(settings: BackoutSettings, service: string, lock: LockRecord): string {
  return `held: the rollback lock of ${service} is held by ${lock.owner} (${lock.reason}) since ${lock.acquiredAt}, no automatic rollback: ${waitOrUnlock(settings, service, lock)}; the alarm does not fire again while it stays in ALARM: once the lock is free, if the API still fails, run "${rollbackServiceCommand(service, settings.environmentName)}"`;
}

/**
 * Why an automatic rollback is held by the killswitch, or null when its mode in effect is normal.
 * In maintenance the API answers 503 itself, and the ErrorRate alarm counts those target 5xx: the
 * on-call turning maintenance on during a release's bake (runbook "Pic de charge") would otherwise
 * have a healthy release rolled back, its schema downgraded with autoDowngradeMigrations. A human
 * set the mode, so the notice does not page. A killswitch that cannot be read leaves that unknown:
 * a human decides (page). A malformed value counts as normal, as for every reader of the killswitch.
 */
async function killswitchHold(deps: BackoutDeps, settings: BackoutSettings, serviceName: string, now: Date): Promise<{ reason: string; page: boolean } | null> {
  const byHand = `"${rollbackServiceCommand(serviceName, settings.environmentName)}"`;
  let reading;
  try {
    reading = await readKillswitch(deps.ssm, settings.killswitchParameterName);
  } catch (error) {
    return {
      reason: `held: the killswitch ${settings.killswitchParameterName} could not be read (${namedLine(error)}): whether maintenance mode explains the 5xx is unknown, no rollback; check "${operatorCommand(settings.environmentName, 'killswitch status')}" and, if the mode is normal and the API still fails, run ${byHand}`,
      page: true,
    };
  }
  const value = reading.value;
  const mode = value ? effectiveMode(value, now.getTime()) : 'normal';
  if (!value || mode === 'normal') return null;
  const run = mode === 'maintenance' ? downgradeMaintenanceRun(value) : undefined;
  if (run) return downgradeMaintenanceHold(deps, settings, serviceName, value, run, now, byHand);
  const answers = mode === 'maintenance' ? 'the 5xx are the maintenance answers' : 'the API sheds work on purpose and its 5xx may be that';
  return {
    reason: `held: ${mode} mode is on (set by ${value.actor}, reason ${value.reason}${value.expiresAt ? `, until ${value.expiresAt}` : ''}): ${answers}; no rollback. Once the killswitch is back to normal, if the API still fails, run ${byHand}`,
    page: false,
  };
}

/**
 * The hold for maintenance that atmr-dr set for a migration downgrade of the API (`run` named in its
 * reason), which is no human's word that the 5xx are expected. While an alarm's run of this workflow
 * that set it still holds the API's lock, the alarm that started it had seen the 5xx before any
 * maintenance: the other services' runs of that alarm (the workers, the guards of one reading the
 * killswitch just after the API's PrepareDowngrade wrote it) decide as they would have a moment
 * earlier, so no hold (the API's own runs ended quietly on that lock already). Any other such
 * maintenance is held: a `rollback migration` by hand still under way (its operator is there, a
 * notice), or a run that ended and left it on, which nothing lifts by itself and the API answers 503
 * to every user until a human restores it: a page for the API, and a notice for a worker, whose run
 * would otherwise page a second time for the same cause. The killswitch is only read here.
 */
async function downgradeMaintenanceHold(deps: BackoutDeps, settings: BackoutSettings, serviceName: string, value: KillswitchValue, run: string, now: Date, byHand: string): Promise<{ reason: string; page: boolean } | null> {
  const api = settings.api.serviceName;
  const lock = await readLock(deps.doc, settings.tableName, api, now);
  const underway = lock?.owner === run;
  if (underway && concurrentAlarmRun(settings, lock, now)) return null;
  const set = `held: maintenance mode is on, set at ${value.updatedAt} by the backout run ${run} for its migration downgrade (${value.reason})`;
  const answers = 'the 5xx are the maintenance answers; no rollback';
  if (underway) {
    return { reason: `${set}; that run is still under way (it holds the rollback lock of ${api}: ${lock.reason}, since ${lock.acquiredAt}) and maintenance stays until it, or whoever runs it, lifts it: ${answers}. Once the killswitch is back to normal, if the API still fails, run ${byHand}`, page: false };
  }
  return {
    reason: `${set}; that run has ended and left it on, and nothing lifts it by itself: ${answers}. Read that run's report ("${rollbackStatusCommand(api, settings.environmentName)}"), then restore ${valueBeforeCommand(settings, now)}; once the killswitch is back to normal, if the API still fails, run ${byHand}`,
    page: serviceName === api,
  };
}

export async function prepareDowngradeStep(deps: BackoutDeps, settings: BackoutSettings, state: RollbackState): Promise<RollbackState> {
  // The owner is the execution's name: a retry of this step knows the maintenance it set by it.
  const preparation = await prepareDowngrade(deps, settings, state.downgrade.revision as string, `backout of ${state.service}`, state.owner);
  return { ...state, downgrade: { ...state.downgrade, preparation } };
}

/** The .sync output (or Catch) of the migration task, as a plain result. */
export function migrationTaskFromSync(state: RollbackState, containerName: string): MigrationTaskResult {
  const get = syncTaskField(state);
  const containers = (get('Containers') ?? []) as Record<string, unknown>[];
  const container = containers.find((c) => (c.Name ?? c.name) === containerName);
  const exit = container?.ExitCode ?? container?.exitCode;
  const time = (value: unknown) => (value === undefined || value === null ? null : new Date(value as number | string).toISOString());
  const why = taskErrorLine(state.downgrade.taskError);
  const unanswered = downgradeMayRun(state);
  const refused = downgradeNotStarted(state);
  const mayRunWhy = state.downgrade.taskError?.Error === 'ECS.ServerException' ? `RunTask got no answer, a migration task may have been started: ${why}` : `no stopped task seen, the downgrade task may still be running: ${why}`;
  const caught = unanswered ? mayRunWhy : refused ? `not started: ECS refused RunTask, the schema is unchanged (${why})` : why;
  return {
    taskArn: (get('TaskArn') as string | undefined) ?? null,
    exitCode: typeof exit === 'number' ? exit : null,
    stoppedReason: (get('StoppedReason') as string | undefined) ?? caught,
    // An out-of-memory kill is named on the container, not the task ("Essential container in task exited").
    containerReason: ((container?.Reason ?? container?.reason) as string | undefined) ?? null,
    startedAt: time(get('StartedAt')),
    stoppedAt: time(get('StoppedAt')),
    ...(unanswered && { unanswered: { why: why as string } }),
  };
}

/** A field of the .sync task description: the integration's output, or the one in its error's Cause (either case of the first letter). */
function syncTaskField(state: RollbackState): (key: string) => unknown {
  const task = state.downgrade.task ?? tryJson(state.downgrade.taskError?.Cause);
  return (key) => task?.[key] ?? task?.[key.charAt(0).toLowerCase() + key.slice(1)];
}

/**
 * RunTask started no task: RUN_TASK_NOT_STARTED_ERRORS after the state's retries, or a request ECS
 * refused outright (RUN_TASK_REFUSED_ERRORS). The Cause may be RunTask's answer (its Failures, no
 * task in it): no TaskArn is what says no task ran.
 */
function downgradeNotStarted(state: RollbackState): boolean {
  const error = state.downgrade.taskError?.Error ?? '';
  return !syncTaskField(state)('TaskArn') && ([...RUN_TASK_NOT_STARTED_ERRORS, ...RUN_TASK_REFUSED_ERRORS] as readonly string[]).includes(error);
}

/**
 * The Catch of the migration task. One of RUN_TASK_NOT_STARTED_ERRORS (after the state's retries) or
 * RUN_TASK_REFUSED_ERRORS without a task description is a RunTask that started no task (throttled, not
 * placed, refused outright): no task ran, and the report says so, so that a human reading "exit code
 * none" does not look for a half-done downgrade.
 */
function taskErrorLine(taskError: RollbackState['downgrade']['taskError']): string | null {
  return taskError ? `${taskError.Error}: ${oneLine(taskError.Cause ?? '')}`.slice(0, 300) : null;
}

/**
 * A downgrade task may still run: the migration task state ended in an error, a task may have been
 * started (not one of the errors of a RunTask that started none), and no task seen stopped says it
 * ended. ECS.ServerException is ECS failing (a 5xx) on RunTask, which ECS documents can come after
 * the task was created (not tried again: see RunMigrationDowngrade). States.Timeout is a task that
 * outlasted TimeoutSeconds (900 s): Step Functions stops waiting, not necessarily the task, and a
 * `flask db downgrade` that long is still at work. The report keeps the lock, as `rollback migration`
 * does when RunTask goes unanswered, so that no second downgrade starts on the same database.
 */
function downgradeMayRun(state: RollbackState): boolean {
  if (!state.downgrade.taskError || state.downgrade.task || downgradeNotStarted(state)) return false;
  const get = syncTaskField(state);
  const containers = (get('Containers') ?? []) as Record<string, unknown>[];
  const stopped = get('LastStatus') === 'STOPPED' || Boolean(get('StoppedAt')) || containers.some((c) => typeof (c.ExitCode ?? c.exitCode) === 'number');
  return !stopped;
}

function tryJson(text: string | undefined): Record<string, unknown> | undefined {
  try {
    return text ? (JSON.parse(text) as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

export async function finishDowngradeStep(deps: BackoutDeps, settings: BackoutSettings, state: RollbackState): Promise<RollbackState> {
  const task = migrationTaskFromSync(state, settings.api.containerName);
  // Maintenance stays through the rollout: until the service is steady on the target, the failing
  // release serves, and it does not run on the schema just downgraded (checkSteady lifts it).
  const keep = `kept in maintenance until ${state.service} is steady on ${state.to?.taskDefinitionArn}`;
  const result = await finishDowngrade(
    deps,
    settings,
    state.downgrade.preparation as DowngradePreparation,
    task,
    { group: state.from?.logGroup ?? null, prefix: state.from?.logStreamPrefix ?? null },
    keep,
  );
  return { ...state, downgrade: { ...state.downgrade, result } };
}

/**
 * UpdateService to the target, then the pin the deploy pipeline reads. Once UpdateService is
 * accepted the service IS rolling back: a pin that cannot be written must not turn that into
 * "nothing was done" (a thrown error would lose the rollout), so it is recorded and the rollback
 * is followed to its end, the report paging about the missing pin.
 */
export async function rollOut(deps: BackoutDeps, settings: BackoutSettings, input: RollbackState): Promise<RollbackState> {
  const now = nowOf(deps);
  const { state, images, unpinned } = await pinImages(deps, settings, input);
  const to = state.to as NonNullable<RollbackState['to']>;
  // The target's own revision runs (retaggedRelease): without the pinned copy, UpdateService names
  // the revision that runs, ECS starts nothing, the steady wait finds it steady at once and the
  // report would say "rolled back" while the moved tag's image keeps serving. Nothing is sent.
  if (state.retagged && unpinned) throw new RollbackNotStarted(notPinnedLine(state, unpinned, settings.environmentName), 1);
  const { deploymentId } = await updateServiceTo(deps.ecs, settings, state.service, to.taskDefinitionArn);
  const pin = pinParameterName(settings, state.service);
  const started = { startedAt: now.toISOString(), deploymentId, pin, ...(images && { images }) };
  try {
    await writePin(deps, pin, state, to, now);
  } catch (error) {
    const pinError = namedLine(error);
    deps.logger.error('rollback deployment started but the pin was not written', { service: state.service, pin, error: pinError });
    return { ...state, rollout: { ...started, pinError } };
  }
  deps.logger.info('rollback deployment started', { service: state.service, to: to.taskDefinitionArn, deploymentId });
  return { ...state, rollout: started };
}

/**
 * RollOut as the workflow runs it. Step Functions runs it again after a Lambda service error
 * (Lambda.ServiceException, ClientExecutionTimeoutException: retryOnServiceExceptions), which may
 * come after an earlier attempt's UpdateService was accepted; this attempt's RollbackNotStarted (a
 * 4xx, a second pinned copy refused) then says nothing of that one, and the report would give the
 * claim back and page "before changing the service" while ECS rolls back. The refusal stands only
 * while the service's primary deployment still runs the release the guards found (state.from);
 * otherwise, or when ECS cannot say, whether the rollback started is unknown and the claim is kept.
 */
export async function rollOutStep(deps: BackoutDeps, settings: BackoutSettings, state: RollbackState): Promise<RollbackState> {
  try {
    return await rollOut(deps, settings, state);
  } catch (error) {
    if (!(error instanceof RollbackNotStarted)) throw error;
    const found = state.from?.taskDefinitionArn;
    const runs = await describeService(deps.ecs, settings, state.service)
      .then(currentTaskDefinition)
      .catch((describeError: unknown) => `an unknown task definition (${namedLine(describeError)})`);
    if (runs === found) throw error;
    throw new OperatorError(
      `backout: ${state.service} may be rolling back: its primary deployment runs ${runs}, not ${found}, although this attempt was refused (${error.message}); an earlier attempt of RollOut may have started it`,
      error.exitCode,
    );
  }
}

/**
 * A release deployed under the last known good's own revision (update-service --force-new-deployment,
 * or a new deployment of that revision, after the tag it names was moved to another build) is not
 * the last known good: its tasks pulled other digests than those the bake recorded. A rollback to
 * the last known good then helps, the rollout pinning it to the recorded digests (pinImages); the
 * pinned copy then runs the recorded digests, so an alarm on it still finds "a rollback cannot help".
 * Null (the ARN says what runs) when the target is not the recorded release, or when either side's
 * digests are unknown: none recorded, or none reported by the running tasks.
 * `newest`: the newest record when the caller has read it (one query fewer, and the same record).
 */
async function retaggedRelease(
  deps: Pick<BackoutDeps, 'ecs' | 'doc'>,
  settings: BackoutSettings,
  serviceName: string,
  taskDefinitionArn: string,
  newest?: LastKnownGood,
): Promise<{ readonly line: string; readonly moved: string[] } | null> {
  const lkg = newest ?? (await latestLastKnownGood(deps.doc, settings.tableName, serviceName));
  if (lkg?.taskDefinitionArn !== taskDefinitionArn) return null;
  const recorded = lkg.images.filter(isDigestReference);
  if (!recorded.length) return null;
  const running = await runningImageDigests(deps.ecs, settings, serviceName, taskDefinitionArn);
  // Only a repository with a recorded digest can show a moved tag: of another, what ran is unknown.
  const sameRepository = (a: string) => (b: string) => imageRepository(a) === imageRepository(b);
  const moved = running.filter((digest) => !recorded.includes(digest) && recorded.some(sameRepository(digest)));
  if (!moved.length) return null;
  const ran = recorded.filter((digest) => moved.some(sameRepository(digest)));
  return { line: `the running tasks of ${taskDefinitionArn} run ${moved.join(', ')} while its last known good ran ${ran.join(', ')}`, moved };
}

/**
 * The target's images as the last known good ran them (pinToRecordedDigests): `to` becomes the
 * pinned revision, which the steady wait, the checks, the pin and the history then name. Pinning
 * that fails (RegisterTaskDefinition refused) does not stop the rollback: the recorded revision
 * often still names the good image (a tag that did not move), and the report says the doubt.
 */
/** The end of a rollback whose target's own revision runs (retagged) and which got no pinned copy: why, and what a human does. */
function notPinnedLine(state: RollbackState, why: string, environmentName: string): string {
  // Short: the report keeps 500 characters of an error, and the To line already lists the digests.
  const to = state.to?.taskDefinitionArn as string;
  return `the tag moved (the running tasks of ${to} pulled other digests than its last known good), the pinned copy could not be registered (${why}): nothing rolled back; by hand: register a revision of ${taskDefinitionFamily(to)} naming the digests of the To line and run "${rollbackServiceCommand(state.service, environmentName, '<that revision>')}"`;
}

/** `unpinned`: why no pinned copy was registered, when the target names some image by tag (or, retagged, at all). */
async function pinImages(
  deps: BackoutDeps,
  settings: BackoutSettings,
  state: RollbackState,
): Promise<{ state: RollbackState; images?: NonNullable<RollbackState['rollout']>['images']; unpinned?: string }> {
  const to = state.to as NonNullable<RollbackState['to']>;
  const mayDiffer = `ECS pulls what the tags name now, which may not be the image that ran (name images by digest or by immutable tags)`;
  // The last known good's own revision ran another image (retaggedRelease): the copy is the rollback.
  const retaggedPrefix = state.retagged ? `${state.retagged}: ` : '';
  try {
    // The CLI names its target (--to, or the last known good it showed): the digests are the record's
    // when the target was a last known good, whichever way it was named, the newest or an earlier
    // one (the "last known good before it" a page names).
    const record = await lastKnownGoodOf(deps.doc, settings.tableName, state.service, to.taskDefinitionArn);
    const pinned = await pinToRecordedDigests(deps.ecs, to.taskDefinitionArn, record?.images ?? to.images, state.owner);
    if (pinned.kind === 'by-digest') return { state, unpinned: `${to.taskDefinitionArn} names its images by digest` };
    if (pinned.kind === 'no-digests') {
      return {
        state,
        images: { line: `Warning: ${to.taskDefinitionArn} names ${pinned.tagged.join(', ')} by tag and no digest of them is recorded: ${mayDiffer}` },
        unpinned: `no single recorded digest for ${pinned.tagged.join(', ')}`,
      };
    }
    const revision = pinned.taskDefinitionArn.split('/').pop();
    const partly = pinned.unpinned.length ? `; ${pinned.unpinned.join(', ')} left by tag (no single digest recorded): ${mayDiffer}` : '';
    deps.logger.info('rollback target pinned to the recorded digests', { service: state.service, from: to.taskDefinitionArn, pinned: pinned.taskDefinitionArn });
    return {
      state: { ...state, to: { ...to, taskDefinitionArn: pinned.taskDefinitionArn, images: pinned.images } },
      images: { pinnedFrom: to.taskDefinitionArn, line: `${retaggedPrefix && `${retaggedPrefix}rolled back to a copy pinned to the last known good's digests; `}Pinned ${revision} to the digests the last known good ran (${taskDefinitionFamily(to.taskDefinitionArn)}:${to.taskDefinitionArn.split(':').pop()} names its images by tag)${partly}` },
    };
  } catch (error) {
    deps.logger.error('rollback target not pinned to its digests', { service: state.service, error: namedLine(error) });
    return { state, images: { line: `Warning: could not pin ${to.taskDefinitionArn} to the recorded digests (${namedLine(error)}): rolled back to it as it is; ${mayDiffer}` }, unpinned: namedLine(error) };
  }
}

/** The pin of a service's last rollback, as writePin writes it, and its parameter's name. */
export interface RollbackPin {
  readonly name: string;
  readonly rolledBackFrom?: string | null;
  readonly badImages?: string[];
  readonly pinnedImages?: string[];
  readonly at?: string;
}

/** The service's pin, or null when no rollback wrote one. Any other SSM error propagates. */
export async function readPin(deps: Pick<BackoutDeps, 'ssm'>, settings: BackoutSettings, serviceName: string): Promise<RollbackPin | null> {
  const name = pinParameterName(settings, serviceName);
  let value: string | undefined;
  try {
    value = (await deps.ssm.send(new GetParameterCommand({ Name: name }))).Parameter?.Value;
  } catch (error) {
    if (error instanceof ParameterNotFound || (error as { name?: string }).name === 'ParameterNotFound') return null;
    throw error;
  }
  return { ...(JSON.parse(value ?? '{}') as Omit<RollbackPin, 'name'>), name };
}

/**
 * Why the pin of the last rollback forbids `to` (it was rolled back from, or runs an image rolled
 * back from), or null: "<arn> is the release ...". Not an image that rollback kept (a sidecar both
 * releases run: pinnedImages), and nothing once `to` baked after that rollback (`recordedAt`, its
 * last-known-good record: a human redeployed it, fixed, and it passed its bake since): a pin is
 * never expired, and without these an old one would refuse every later rollback. The automatic
 * target and the default target of `rollback service` both go through it.
 */
export function pinRefusal(pin: RollbackPin | null, serviceName: string, to: { readonly taskDefinitionArn: string; readonly images: readonly string[] }, recordedAt: string | undefined): string | null {
  if (!pin) return null;
  if (recordedAt !== undefined && pin.at !== undefined && Date.parse(recordedAt) > Date.parse(pin.at)) return null;
  const since = `(pin ${pin.name}, written ${pin.at ?? 'at an unknown time'})`;
  if (pin.rolledBackFrom === to.taskDefinitionArn) return `${to.taskDefinitionArn} is the release the last rollback of ${serviceName} rolled away from ${since}`;
  const bad = to.images.filter((image) => pin.badImages?.includes(image) && !pin.pinnedImages?.includes(image));
  if (bad.length) return `${to.taskDefinitionArn} runs ${bad.join(', ')}, an image the last rollback of ${serviceName} rolled away from ${since}`;
  return null;
}

/**
 * The records "the last known good before it" may name (lastKnownGoodBefore's `offered`): the page,
 * the plan and `rollback status` hand it out as a target, so never one the pin refuses. Per record:
 * one of the refused release baked again after the pin counts.
 */
const unpinned = (pin: RollbackPin | null, serviceName: string) => (record: LastKnownGood) => !pinRefusal(pin, serviceName, record, record.recordedAt);

/**
 * The default target of `rollback service` (the newest record the pin does not refuse) and why
 * each newer record is refused, newest first: the plan and `rollback status` read the same one.
 */
function unrefusedTarget(history: readonly LastKnownGood[], pin: RollbackPin | null, serviceName: string): { target: LastKnownGood | undefined; refused: Map<string, string> } {
  const refused = new Map<string, string>();
  const target = history.find((record) => {
    const why = pinRefusal(pin, serviceName, record, record.recordedAt);
    if (why) refused.set(record.taskDefinitionArn, why);
    return !why;
  });
  return { target, refused };
}

async function writePin(deps: BackoutDeps, pin: string, state: RollbackState, to: NonNullable<RollbackState['to']>, now: Date): Promise<void> {
  await deps.ssm.send(
    new PutParameterCommand({
      Name: pin,
      Type: 'String',
      Overwrite: true,
      Value: JSON.stringify({
        pinnedTaskDefinition: to.taskDefinitionArn,
        pinnedImages: to.images,
        rolledBackFrom: state.from?.taskDefinitionArn ?? null,
        // A moved tag: the revision's own images name the good build's tag, the bad build is its digests.
        badImages: state.badDigests ?? state.from?.images ?? [],
        reason: state.reason.slice(0, 500),
        at: now.toISOString(),
      }),
    }),
  );
}

export async function checkSteady(deps: BackoutDeps, settings: BackoutSettings, state: RollbackState): Promise<RollbackState> {
  const now = nowOf(deps);
  const service = await describeService(deps.ecs, settings, state.service);
  const { status, detail } = deploymentStatus(service, state.to?.taskDefinitionArn as string, state.rollout?.deploymentId ?? null);
  const started = Date.parse(state.rollout?.startedAt as string);
  if (status === 'in-progress' && now.getTime() - started > settings.steadyTimeoutSeconds * 1000) {
    return { ...state, steady: { status: 'timeout', detail: `not steady after ${settings.steadyTimeoutSeconds} s: ${detail}`, at: now.toISOString() } };
  }
  const steady = { ...state, steady: { status, detail, at: now.toISOString() } };
  return status === 'steady' ? liftMaintenance(deps, settings, steady) : steady;
}

/** Maintenance the downgrade set and kept through the rollout, held by atmr-dr alone: nothing else restores it. */
function maintenanceKept(state: RollbackState): boolean {
  return Boolean(state.downgrade.preparation?.killswitchSet && state.downgrade.result?.ok);
}

/**
 * Steady on the target: the failing release no longer serves, so the maintenance set for the
 * downgrade is lifted by the same rule as after the downgrade (only if the value is still the one
 * atmr-dr wrote). Before the post-checks, which then measure the traffic of the last known good.
 * A refusal is reported (and pages), not thrown: the rollback itself is done.
 */
async function liftMaintenance(deps: BackoutDeps, settings: BackoutSettings, state: RollbackState): Promise<RollbackState> {
  const set = state.downgrade.preparation?.killswitchSet;
  if (!set || !maintenanceKept(state) || state.downgrade.lifted) return state;
  const to = state.to?.taskDefinitionArn;
  let lifted: NonNullable<RollbackState['downgrade']['lifted']>;
  try {
    lifted = { ok: true, line: `${await restoreKillswitch(deps, settings, set)} once ${state.service} was steady on ${to}` };
  } catch (error) {
    deps.logger.error('the killswitch could not be restored after the rollback', { service: state.service, error: namedLine(error) });
    lifted = { ok: false, line: `still in maintenance though ${state.service} is steady on ${to}: the restore failed (${namedLine(error)}); restore it: ${restoreKillswitchCommand(set.previous, nowOf(deps), settings.environmentName)}` };
  }
  return { ...state, downgrade: { ...state.downgrade, lifted } };
}

/** The report's killswitch line after a downgrade that worked, and whether it needs a human. */
function killswitchAfterDowngrade(state: RollbackState, now: Date, environmentName: string): { line: string; page: boolean } | null {
  const d = state.downgrade;
  if (d.lifted) return { line: d.lifted.line, page: !d.lifted.ok };
  if (!maintenanceKept(state)) return null;
  // Any end before steady state (UpdateService refused, a timeout, ECS's circuit breaker, an
  // error): the failing release may still serve, and not on the schema it was downgraded from.
  return {
    line: `still in maintenance (set by atmr-dr for the downgrade): ${state.service} is not steady on ${state.to?.taskDefinitionArn}, and ${state.from?.taskDefinitionArn} must not serve on the schema at ${d.revision}; once "${rollbackStatusCommand(state.service, environmentName)}" shows it runs ${state.to?.taskDefinitionArn}, restore it: ${restoreKillswitchCommand(d.preparation?.killswitchSet?.previous ?? null, now, environmentName)}`,
    page: true,
  };
}

/** The runbook's post-rollback checklist: /health and /ready answer 200, 5xx under the threshold, no task stopping. */
export async function postChecks(deps: BackoutDeps, settings: BackoutSettings, state: RollbackState): Promise<RollbackState> {
  const now = nowOf(deps);
  const doFetch = deps.fetch ?? fetch;
  const lines: string[] = [];
  let ok = true;
  for (const url of [settings.healthUrl, settings.readyUrl]) {
    try {
      const response = await doFetch(url, { signal: AbortSignal.timeout(5000) });
      if (response.status !== 200) ok = false;
      lines.push(`${response.status === 200 ? 'OK' : 'FAIL'} GET ${url}: ${response.status}`);
    } catch (error) {
      ok = false;
      lines.push(`FAIL GET ${url}: ${oneLine(error)}`);
    }
  }
  // Only what the last known good served: from steady state on (the draining release's errors are not its own).
  const since = new Date(state.steady?.at ?? now.toISOString());
  const signals = await readApiSignals(deps.cloudwatch, settings, since, now);
  const ratioBad = signals.errorRatePercent !== null && signals.errorRatePercent > settings.errorRatePercent;
  // No datapoint yet (ALB metrics land about a minute late) is no evidence of health: it pages as a
  // failed check does, for a human to look at the API.
  if (signals.landedMinutes === 0) {
    ok = false;
    lines.push(`UNVERIFIED 5xx not verified yet (no datapoint since steady state; threshold ${settings.errorRatePercent}%)`);
  } else if (signals.errorRatePercent === null) {
    // Minutes landed, none with enough requests to judge: the maintenance killswitch (only the load
    // balancer's probes reach the API) or a quiet hour. No evidence either: it pages, so that
    // nobody lifts the maintenance on the word "healthy" of a release no user has reached yet.
    ok = false;
    lines.push(
      `UNVERIFIED 5xx not verified: ${signals.requests} requests since steady state, too few to judge (under ${settings.minRequestsPerMinute} a minute: maintenance on, or a quiet hour); once users reach the API, watch its 5xx (alarm ${settings.alarmNames.errorRate})`,
    );
  } else {
    if (ratioBad) ok = false;
    lines.push(`${ratioBad ? 'FAIL' : 'OK'} 5xx ${signals.errorRatePercent.toFixed(1)}% since steady state (threshold ${settings.errorRatePercent}%)`);
  }
  const stopped = await stoppedTasksSince(deps.ecs, settings, state.service, state.to?.taskDefinitionArn as string, new Date(state.rollout?.startedAt as string));
  if (stopped.length) ok = false;
  lines.push(stopped.length ? `FAIL ${stopped.length} task(s) of the target stopped: ${stopped.join('; ')}` : 'OK no task of the target stopped');
  return { ...state, checks: { ok, lines } };
}

/** A rollout steady on its target whose post-rollback checks were not run (the CLI interrupted in the wait before them): what the human must check instead. */
export function checksNotRunLine(settings: BackoutSettings, state: RollbackState): string {
  return `steady on ${state.to?.taskDefinitionArn} at ${state.steady?.at}; the post-rollback checks were NOT run (interrupted): check ${settings.healthUrl}, ${settings.readyUrl} and the 5xx (alarm ${settings.alarmNames.errorRate}) by hand`;
}

export interface RollbackReport {
  readonly outcome: Outcome;
  readonly summary: string;
  readonly page: boolean;
  readonly seconds: number | null;
  /** The lock stays held: its release failed (why), and only `rollback unlock` or its expiry ends it. */
  readonly lockNotReleased?: string;
}

/** The report could not be published to the incidents topic: `report` holds what the rollback did, for the CLI to say it. */
export class ReportNotPublished extends Error {
  override readonly name = 'ReportNotPublished';
  constructor(
    readonly report: RollbackReport,
    cause: unknown,
  ) {
    super(namedLine(cause));
  }
}

function outcomeOf(state: RollbackState): Outcome {
  if (state.error) return 'error';
  if (state.downgrade.result && !state.downgrade.result.ok) return 'migration-failed';
  if (state.steady?.status === 'timeout') return 'steady-timeout';
  if (state.steady?.status === 'failed') return 'deployment-failed';
  if (state.checks) return state.checks.ok ? 'rolled-back' : 'rolled-back-checks-failed';
  // The workflow runs the checks once steady: only the CLI stopped in the wait before them ends here.
  if (state.steady?.status === 'steady') return 'rolled-back-unchecked';
  if (state.rollout) return 'rollout-started';
  if (state.dryRun && state.decision === 'notify' && state.lockHeld) return 'dry-run';
  if (state.decision === 'notify' && !state.page) return 'not-needed';
  return 'refused';
}

function actedAndSeconds(state: RollbackState): { acted: boolean; seconds: number | null } {
  return {
    acted: Boolean(state.rollout || state.downgrade.preparation),
    seconds: state.steady?.status === 'steady' ? Math.round((Date.parse(state.steady.at) - Date.parse(state.trigger.at)) / 1000) : null,
  };
}

/** The RollbackSeconds / RollbackOutcome datapoints the report publishes for this state (the CLI publishes the same). */
export function finishedRollbackMetrics(input: RollbackState, now: Date, environmentName: string): RollbackMetric[] {
  const state = normaliseState(input, now, environmentName);
  return rollbackMetrics({ ...actedAndSeconds(state), outcome: outcomeOf(state) });
}

/** The guards produced a state; else the report got the raw trigger plus the Catch's error. */
const guardsReturned = (input: RollbackState) => Boolean(input.owner && input.trigger && input.downgrade);

/**
 * The Guards step failed (threw before deciding, timed out, was killed) and handed the report the raw
 * trigger plus the error: fill in what is unknown so that the report still pages. The owner is the
 * execution's name when known (what the guards may have taken carries it), else none.
 */
function normaliseState(input: RollbackState, now: Date, environmentName: string, execution?: string): RollbackState {
  if (guardsReturned(input)) return input;
  const raw = input as unknown as { service?: string; error?: RollbackState['error'] };
  const service = typeof raw.service === 'string' ? raw.service : 'unknown';
  return {
    ...base(service, { kind: 'alarm', name: 'unknown (stopped before the guards finished)', at: now.toISOString() }, false),
    owner: execution ?? '',
    decision: 'notify',
    reason: `stopped before the guards finished, nothing rolled back; the alarm does not fire again while it stays in ALARM: if the API still fails, run "${rollbackServiceCommand(service, environmentName)}"`,
    page: true,
    error: raw.error,
  };
}

/**
 * The report's (and the CLI's) line about the pin: written, or what the humans must do without it.
 * The release not to bring back is the revision rolled back from, or, after a moved tag (that
 * revision is the last known good's own), the digests its tasks ran.
 */
export function pinLine(state: RollbackState, rollout: NonNullable<RollbackState['rollout']>): string {
  const from = state.from?.taskDefinitionArn;
  const bad = state.badDigests?.length ? `${state.badDigests.join(', ')} (run under ${from})` : from;
  if (!rollout.pinError) return `Pinned in ${rollout.pin}: the next deploy must not bring ${bad} back`;
  return `Pin NOT written in ${rollout.pin} (${rollout.pinError}): hold the deploys of ${state.service}, nothing stops a pipeline from bringing ${bad} back; write the pin by hand (README, "The pin")`;
}

/**
 * The way back to the release line once it is fixed, for the report of a rollback that worked.
 * atmr-dr only rolls back: going forward is the application's own deploy. The pin is what a deploy
 * pipeline checks (README, "The pin"); the guards do not refuse a release baked after it.
 */
export function goForwardLine(rollout: NonNullable<RollbackState['rollout']>): string {
  const deploy = 'To go forward once the release is fixed: deploy the fix as any release (the application\'s CDK or ECS deploy; atmr-dr has no command for it)';
  if (rollout.pinError) return `${deploy}.`;
  return `${deploy}; a pipeline that checks the pin refuses the images rolled back from until it is cleared: aws ssm delete-parameter --name ${rollout.pin} (once the fix is deployed, or to bring those images back on purpose; README, "The pin").`;
}

const handChecks = (environmentName: string) => `Check by hand: the schema's revision (${operatorCommand(environmentName, 'db revision')}, or flask db current), the API's error logs, one critical request (GET /api/bookings).`;

/**
 * The end of every path: one message to the incidents topic (what, from which release to which,
 * how long, what to check by hand), one atmr-dr event, the metrics, the history; then the lock is
 * released and, when something was changed, the cooldown starts.
 * `execution`: the workflow's execution name, the guards' owner (see guards), for the report of
 * guards that returned no state.
 */
export async function report(deps: BackoutDeps, settings: BackoutSettings, input: RollbackState, execution?: string): Promise<RollbackReport> {
  const now = nowOf(deps);
  const returned = guardsReturned(input);
  const state = normaliseState(input, now, settings.environmentName, execution);
  const outcome = outcomeOf(state);
  const { acted, seconds } = actedAndSeconds(state);
  const d = state.downgrade;
  // Rolled back without the downgrade: the schema is ahead of the code that now runs, and only a
  // human can run the downgrade (in the failing release's image, d.command).
  const schemaAhead = Boolean(state.rollout) && d.needed && !d.result?.ok;
  // Rolled back with a release that declares no Alembic head: the schema may be ahead too, unseen.
  const schemaUnknown = Boolean(state.rollout) && Boolean(d.unknownHead);
  const killswitchLine = killswitchAfterDowngrade(state, now, settings.environmentName);
  // PrepareDowngrade stopped on a maintenance write SSM gave no clear answer to: its error says what
  // the killswitch is now (put back, untouched, or maybe in maintenance, with the command).
  const unansweredWrite = state.error?.Error === KILLSWITCH_WRITE_UNANSWERED ? String(tryJson(state.error.Cause)?.errorMessage ?? state.error.Cause ?? '') : null;
  const preparationStopped = preparationStoppedLine(settings, state, now);
  const page = state.page || schemaAhead || schemaUnknown || Boolean(state.rollout?.pinError) || Boolean(killswitchLine?.page) || ['rolled-back-checks-failed', 'rolled-back-unchecked', 'steady-timeout', 'deployment-failed', 'migration-failed', 'error'].includes(outcome);

  const lines: string[] = [];
  const head: Record<Outcome, string> = {
    'rolled-back': `${state.service} rolled back and healthy`,
    'rolled-back-checks-failed': `${state.service} rolled back but the post-rollback checks FAILED or could not be verified yet`,
    'rolled-back-unchecked': `${state.service} rolled back, ${checksNotRunLine(settings, state)}`,
    'steady-timeout': `${state.service} rollback did NOT reach steady state in time (no second rollback)`,
    'deployment-failed': `${state.service} rollback deployment FAILED`,
    'migration-failed': `${state.service}: migration downgrade FAILED, service NOT rolled back`,
    // "Nothing was done" only when it is true: an error while following a rollout that ECS goes on
    // with, or after the downgrade's preparation, leaves the service or the killswitch changed.
    error: `${state.service}: backout stopped on an error ${acted ? 'after acting: what it did is below' : rollOutUnknown(state) ? `without knowing whether ECS accepted the rollback to ${state.to?.taskDefinitionArn}: "${rollbackStatusCommand(state.service, settings.environmentName)}" shows what it runs` : 'before changing the service'}`,
    'dry-run': `${state.service}: backout dry run`,
    'not-needed': `${state.service}: no backout needed`,
    refused: `${state.service}: backout did not act, a human must decide`,
    'rollout-started': `${state.service}: rollback deployment started by hand (not awaited)`,
  };
  lines.push(`${head[outcome]}: ${state.reason}`);
  lines.push(`Trigger: ${state.trigger.kind} ${state.trigger.name} at ${state.trigger.at}`);
  if (state.from) lines.push(`From: ${state.from.taskDefinitionArn} (${state.from.images.join(', ')}; alembic ${state.from.alembicHead ?? 'n/a'})`);
  if (state.to) lines.push(`To (last known good): ${state.to.taskDefinitionArn} (${state.to.images.join(', ')}; alembic ${state.to.alembicHead ?? 'n/a'})`);
  if (d.preparation) {
    lines.push(d.preparation.snapshotId ? `Snapshot before downgrade: ${d.preparation.snapshotId}` : `PITR restore point before downgrade: ${d.preparation.pitr?.restoreTo} (latest restorable ${d.preparation.pitr?.latestRestorableTime})`);
  }
  if (d.result) lines.push(`Migration: ${d.result.detail}; duration ${d.result.durationSeconds} s; logs ${d.result.logStream ?? 'n/a'}; killswitch ${d.result.killswitch}`);
  // A failed downgrade leaves the API in maintenance (503 to every user): the way out, not only checks.
  if (d.result && !d.result.ok && d.preparation && d.revision && state.from) {
    const failed = failedDowngradeNextSteps(settings, state.service, d.revision, state.from.taskDefinitionArn, d.preparation, now);
    if (downgradeMayRun(state)) {
      // Still running, the downgrade may yet work: no retry before it has stopped (a second one on
      // the same database), and the service still runs the failing release, so the rollback is a step of its own.
      const cluster = settings.clusterName;
      const rollBack = state.to ? `roll ${state.service} back (it still runs ${state.from.taskDefinitionArn}): ${rollbackServiceCommand(state.service, settings.environmentName, state.to.taskDefinitionArn)} --wait` : `roll ${state.service} back: ${rollbackServiceCommand(state.service, settings.environmentName)} --wait`;
      lines.push(
        `Next: first see whether the downgrade task still runs: "aws ecs list-tasks --cluster ${cluster} --started-by ${MIGRATION_STARTED_BY}" (then "aws ecs describe-tasks --cluster ${cluster} --tasks ARN" for its status and exit code, with --desired-status STOPPED on list-tasks once it ended); the lock stays held so that no second downgrade starts. Once it has STOPPED, release the lock with ${unlockCommandLine(state.service, state.owner, settings.environmentName, true)}; then, if it exited 0 (the schema is at ${d.revision}), ${rollBack}, and once it runs ${state.to?.taskDefinitionArn ?? 'a release of that revision'}, lift maintenance with ${d.preparation.killswitchSet ? restoreKillswitchCommand(d.preparation.killswitchSet.previous, now, settings.environmentName) : 'the command of whoever set it'}; if it failed: ${failed}`,
      );
    } else lines.push(`Next: ${failed}`);
  }
  if (killswitchLine) lines.push(`Killswitch: ${killswitchLine.line}`);
  else if (d.needed && !d.run) lines.push(`Schema: still at ${state.from?.alembicHead}, ahead of the last known good (Alembic ${d.revision}); atmr-dr did not downgrade it. If the previous release cannot run on the new schema: ${d.command} (${DOWNGRADE_DROPS})`);
  if (unansweredWrite) lines.push(`Killswitch: ${unansweredWrite}`);
  if (preparationStopped) lines.push(`Killswitch: ${preparationStopped}`);
  if (d.unknownHead) lines.push(`Schema: ${d.unknownHead}`);
  if (state.steady) lines.push(`Deployment: ${state.steady.status}: ${state.steady.detail}`);
  if (seconds !== null) lines.push(`Alarm to steady: ${seconds} s (runbook objective < ${ROLLBACK_OBJECTIVE_SECONDS} s)`);
  for (const line of state.checks?.lines ?? []) lines.push(`Check: ${line}`);
  if (state.rollout) lines.push(pinLine(state, state.rollout));
  if (state.rollout?.images) lines.push(state.rollout.images.line);
  if (outcome === 'rolled-back' && state.rollout) lines.push(goForwardLine(state.rollout));
  // The Killswitch line above names that error, whole: not a second time, cut to 500 characters.
  if (state.error && !unansweredWrite) lines.push(`Error: ${state.error.Error}: ${oneLine(state.error.Cause ?? '').slice(0, 500)}`);
  if (acted) lines.push(handChecks(settings.environmentName));
  const summary = lines[0];

  // Best effort: a report that cannot write its history or release its lock still pages.
  const problems: string[] = [];
  const attempt = async (what: string, fn: () => Promise<unknown>): Promise<string | undefined> => {
    try {
      await fn();
      return undefined;
    } catch (error) {
      problems.push(`${what}: ${oneLine(error)}`);
      deps.logger.error(`report: ${what} failed`, { error: oneLine(error) });
      return namedLine(error);
    }
  };
  if (acted) await attempt('cooldown', () => startCooldown(deps.doc, settings.tableName, state.service, now, settings.cooldownSeconds));
  const keepLock = state.lockHeld && downgradeMayRun(state);
  // Before the lock: released first, the next alarm's run could meet the claim of a run that changed nothing.
  const claimLine = returned && state.claimed ? await settleClaim(deps, settings, state, state.claimed, attempt) : undefined;
  // The guards returned no state (their Lambda timed out or was killed after taking the lock): the
  // lock, and the release claim, carry this execution's name as owner; left held, every later alarm
  // of the service would skip quietly as "another alarm's run" for the lock's life while the API fails.
  let released: Awaited<ReturnType<typeof releaseOwnedBy>> | undefined;
  const leftNotReleased =
    !returned && state.owner ? await attempt('lock release', async () => (released = await releaseOwnedBy(deps.doc, settings.tableName, state.service, state.owner))) : undefined;
  const lockNotReleased = (state.lockHeld && !keepLock ? await attempt('lock release', () => releaseLock(deps.doc, settings.tableName, state.service, state.owner)) : undefined) ?? leftNotReleased;
  await attempt('history', () =>
    recordRollback(deps.doc, settings.tableName, {
      service: state.service,
      owner: state.owner,
      at: now.toISOString(),
      outcome,
      summary,
      fromTaskDefinition: state.from?.taskDefinitionArn ?? null,
      toTaskDefinition: state.to?.taskDefinitionArn ?? null,
      trigger: `${state.trigger.kind}: ${state.trigger.name}`,
      seconds,
    }),
  );
  if (released?.lock || released?.claims.length) {
    const what = [released.lock && `the lock of ${state.service}`, ...released.claims.map((arn) => `the once-per-release claim of ${arn}`)].filter(Boolean).join(' and ');
    lines.push(`Released what the guards of this run took before they stopped: ${what}`);
  }
  for (const problem of problems) lines.push(`Warning: ${problem}`);
  if (claimLine) lines.push(claimLine);
  // Held until it expires otherwise, refusing every rollback of the service, the automatic one included.
  if (lockNotReleased) {
    const taken = returned ? '' : ', if the guards of this run took it,';
    // A lock a downgrade task may run under (the guards took it as such: d.run, or unknown when they
    // returned no state) is released only with --force (rollback unlock refuses it otherwise, exit 2):
    // printed as waitOrUnlock prints it, with the task to check first.
    const cluster = settings.clusterName;
    const taskArn = d.run ? migrationTaskFromSync(state, settings.api.containerName).taskArn : null;
    const force = d.run || (!returned && state.service === settings.api.serviceName && settings.autoDowngradeMigrations && state.trigger.kind === 'alarm');
    const check = !force
      ? ''
      : taskArn
        ? ` once its migration task ${taskArn} has stopped ("aws ecs describe-tasks --cluster ${cluster} --tasks ${taskArn}" shows it STOPPED),`
        : ` once no migration task runs ("aws ecs list-tasks --cluster ${cluster} --started-by ${MIGRATION_STARTED_BY}" lists none),`;
    lines.push(`The lock of ${state.service}${taken} stays held until it expires, blocking every rollback of ${state.service}:${check} release it with ${unlockCommandLine(state.service, state.owner, settings.environmentName, force)}`);
  }
  if (keepLock) {
    lines.push(
      `A migration task may ${d.taskError?.Error === 'ECS.ServerException' ? 'have been started (RunTask got no answer)' : `still be running (${d.taskError?.Error}: no stopped task seen)`}: ${lookForTask(settings.clusterName)}. The lock of ${state.service} stays held until it expires so that no second downgrade starts; once no migration task runs, release it with ${unlockCommandLine(state.service, state.owner, settings.environmentName, true)}`,
    );
  }
  // The commands above run from the checkout only (OPERATOR_CLI's `--no`): say where, once.
  if (lines.some((line) => line.includes(OPERATOR_CLI))) lines.push("Run the atmr-dr commands above from the atmr-dr checkout.");
  const told = { outcome, summary, page, seconds, ...(lockNotReleased && { lockNotReleased }) };

  const subject = `[atmr-dr] ${page ? 'ACTION NEEDED: ' : ''}backout ${settings.environmentName} ${state.service}: ${outcome}`.slice(0, 100);
  try {
    await deps.sns.send(new PublishCommand({ TopicArn: settings.topicArn, Subject: subject, Message: lines.join('\n') }));
  } catch (error) {
    // Still a failure (the workflow's Report fails, its alarm pages), but one that keeps what was done.
    throw new ReportNotPublished(told, error);
  }
  await attempt('event', () =>
    deps.events.send(
      new PutEventsCommand({
        Entries: [
          {
            Source: EVENT_SOURCE,
            DetailType: ROLLBACK_FINISHED_DETAIL_TYPE,
            Detail: JSON.stringify({
              summary,
              at: now.toISOString(),
              environment: settings.environmentName,
              service: state.service,
              outcome,
              page,
              from: state.from?.taskDefinitionArn ?? null,
              to: state.to?.taskDefinitionArn ?? null,
              seconds,
              migration: d.result ?? null,
            }),
          },
        ],
      }),
    ),
  );
  addRollbackMetrics(deps.metrics, rollbackMetrics({ acted, outcome, seconds }));
  deps.logger.info('backout finished', { service: state.service, outcome, page, seconds });
  return told;
}

/**
 * PrepareDowngrade's Lambda stopped without an error of its own (timed out, killed, Lambda failing:
 * Step Functions names those States.*, Lambda.*, Sandbox.*). A silent SSM does that: the SDK's
 * attempts at the maintenance write outlast the function's timeout, so the write's outcome is
 * unknown and prepareDowngrade never read it back. The report cannot put it back (the value before
 * it died with the function): it says that maintenance may be on, and how to give it back.
 * PrepareDowngrade failed when the state has a downgrade to run, no preparation and an error.
 */
function preparationStoppedLine(settings: BackoutSettings, state: RollbackState, now: Date): string | null {
  const d = state.downgrade;
  const error = state.error?.Error ?? '';
  if (!d.run || d.preparation || !/^(States|Lambda|Sandbox)\./.test(error)) return null;
  return `PrepareDowngrade stopped (${error}) before saying whether it had set it to maintenance: ${mayBeInMaintenance(settings, valueBeforeCommand(settings, now))}`;
}

/**
 * Why this run's once-per-release claim stays, or null when the run is known to have changed nothing
 * on ECS: no UpdateService accepted and no migration task started. Unknown counts as changed (a
 * timeout or a 5xx on UpdateService or RunTask, a step's Lambda timed out or killed): one release is
 * never rolled back automatically twice. The paths of the workflow (lib/constructs/rollback.ts) that
 * end in the report without a rollout:
 *  - the guards decided not to proceed (a hold, or an error once the claim was being written): they only read ECS;
 *  - PrepareDowngrade failed: it calls RDS and SSM, never ECS (no task or task error is then recorded).
 *    Also when SSM left its maintenance write unanswered and it could not be put back
 *    (KILLSWITCH_WRITE_UNANSWERED), or the step's Lambda stopped during it (preparationStoppedLine): the killswitch hold that maintenance puts on the next alarm comes
 *    before the claim in the guards, so keeping the claim would stop nothing while maintenance stays
 *    on, and once a human has put the killswitch back (the page's command) the release, still failing
 *    and never rolled back, may be rolled back automatically again;
 *  - the downgrade task was not started (downgradeNotStarted), whatever FinishDowngrade then did;
 *  - RollOut failed with RollbackNotStarted: UpdateService never sent, or refused outright by ECS.
 */
function claimKeptBecause(state: RollbackState): string | null {
  const d = state.downgrade;
  if (state.rollout) return 'ECS accepted the rollback deployment';
  if (d.task || (d.taskError && !downgradeNotStarted(state))) return 'a migration downgrade task was started, or may have been';
  if (rollOutUnknown(state)) return `RollOut stopped on ${state.error?.Error ?? 'an unknown error'}: whether ECS accepted the UpdateService is unknown`;
  return null;
}

/**
 * The run reached RollOut (the guards proceeded, and the downgrade, if any, worked) and has no rollout
 * recorded, without RollbackNotStarted to say that ECS took nothing: a timeout or a 5xx on
 * UpdateService, a throttle after earlier attempts, RollOut's Lambda timed out or killed.
 */
function rollOutUnknown(state: RollbackState): boolean {
  const d = state.downgrade;
  return state.decision === 'proceed' && !state.rollout && state.error?.Error !== ROLLBACK_NOT_STARTED && (!d.run || Boolean(d.result?.ok));
}

/**
 * Gives this run's claim of `release` back (owner-conditional: never another run's) when the run
 * changed nothing on ECS (claimKeptBecause), so that the next alarm of the release, which still
 * fails, may roll it back; the page's line says which, and why.
 */
async function settleClaim(
  deps: BackoutDeps,
  settings: BackoutSettings,
  state: RollbackState,
  release: string,
  attempt: (what: string, fn: () => Promise<unknown>) => Promise<string | undefined>,
): Promise<string> {
  const head = `Once-per-release claim of ${release}`;
  const kept = claimKeptBecause(state);
  if (kept) return `${head} kept (${kept}): no second automatic rollback of this release`;
  let deleted = false;
  const failed = await attempt('claim release', async () => {
    deleted = await releaseClaim(deps.doc, settings.tableName, { service: state.service, taskDefinitionArn: release, owner: state.owner });
  });
  if (failed) {
    return `${head} NOT released (${failed}) although this run changed nothing on ECS: the next alarm of this release pages "already rolled back automatically once" instead of rolling back; roll back by hand: "${rollbackServiceCommand(state.service, settings.environmentName)}"`;
  }
  const gone = deleted ? 'released' : 'not held by this run (never written, or released already)';
  return `${head} ${gone}: this run changed nothing on ECS (no UpdateService accepted, no migration task started), so the next alarm of this release may roll it back automatically again`;
}

export interface RollbackPlan {
  readonly service: string;
  readonly current: ReleaseInfo;
  readonly target: { readonly taskDefinitionArn: string; readonly alembicHead: string | null; readonly images: readonly string[] };
  /** The target came from the last-known-good record (else from the operator's --to). */
  readonly fromLastKnownGood: boolean;
  /** The schema's revision (schemaHead): the current release's head, or the revision a downgrade since reached. */
  readonly schema: string | null;
  /** The command to run when the schema must go back too (atmr-dr never does it in a manual service rollback). */
  readonly downgradeCommand: string | null;
  /** A deployment ECS still rolls out beside another release than the target (only with --to: without it the plan is refused). */
  readonly underway: UnderwayDeployment | null;
  /** The target's own revision runs other images than its bake recorded (retaggedRelease): why a rollback to it helps. */
  readonly retagged: string | null;
  /** Why each newer last known good is not the default target (pinRefusal: the last rollback rolled away from it). */
  readonly skipped: readonly string[];
  /** Why the automatic path would refuse the --to target (pinRefusal), which the rollback still goes to, or that the pin could not be read. */
  readonly pinned: string | null;
}

/** The AWS CLI command that lists a family's revisions, newest first: where a TASK_DEF_ARN for --to comes from. */
export function listRevisionsCommand(family: string): string {
  return `aws ecs list-task-definitions --family-prefix ${family} --sort DESC`;
}

/**
 * The read-only part of a manual rollback, for the CLI to show and confirm before anything changes:
 * refuses (one line, nothing written) an unknown service, a target of another family, no last
 * known good, or a target that is already running.
 */
export async function planRollback(deps: Pick<BackoutDeps, 'ecs' | 'doc' | 'ssm' | 'now'>, settings: BackoutSettings, serviceName: string, targetOverride?: string): Promise<RollbackPlan> {
  const service = findService(settings, serviceName);
  if (targetOverride) assertFamily(service, targetOverride);
  const containerName = serviceName === settings.api.serviceName ? settings.api.containerName : '';
  const ecsService = await describeService(deps.ecs, settings, serviceName);
  const current = await describeRelease(deps.ecs, settings, currentTaskDefinition(ecsService), containerName);
  let target: RollbackPlan['target'];
  let newest: LastKnownGood | undefined;
  let skipped = new Map<string, string>();
  let pinned: string | null = null;
  let pin: RollbackPin | null = null;
  let targetRelease: ReleaseInfo | undefined;
  if (targetOverride) {
    const release = await describeRelease(deps.ecs, settings, targetOverride, containerName);
    targetRelease = release;
    target = { taskDefinitionArn: release.taskDefinitionArn, alembicHead: release.alembicHead, images: release.images };
    // A warning only: --to goes where it is told, so a pin that cannot be read does not stop it.
    // Its own last-known-good record, as the automatic path passes: baked after the pin, not refused.
    const record = await lastKnownGoodOf(deps.doc, settings.tableName, serviceName, target.taskDefinitionArn);
    pinned = await readPin(deps, settings, serviceName).then(
      (pin) => {
        const refused = pinRefusal(pin, serviceName, target, record?.recordedAt);
        return refused && `${refused}; the automatic rollback would refuse this target, --to goes there as told`;
      },
      (error: unknown) => `the pin ${pinParameterName(settings, serviceName)} could not be read (${namedLine(error)}): whether ${target.taskDefinitionArn} is what the last rollback rolled away from is unknown`,
    );
  } else {
    const history = await lastKnownGoodHistory(deps.doc, settings.tableName, serviceName);
    if (!history.length) {
      throw new OperatorError(
        `backout: no last known good is recorded for ${serviceName} (a release becomes one after a clean bake): pass --to TASK_DEF_ARN (a revision of ${service.taskFamily}: ${listRevisionsCommand(service.taskFamily)}) to choose the target yourself`,
        2,
      );
    }
    // The newest record can be the release the last rollback rolled away from (it passed its bake,
    // then failed): the on-call confirms what the plan proposes, so the default skips what the
    // automatic path refuses, and the plan says why.
    // Unread, the default could be the very release rolled away from: refused, --to still goes as told.
    pin = await readPin(deps, settings, serviceName).catch((error: unknown) => {
      throw new OperatorError(
        `backout: the pin of the last rollback of ${serviceName} (${pinParameterName(settings, serviceName)}) could not be read (${namedLine(error)}), and without it the default target could be the release that rollback rolled away from: let the role read it (ssm:GetParameter), or pass --to TASK_DEF_ARN (a revision of ${service.taskFamily}), which goes without it`,
        2,
        { cause: error },
      );
    });
    const { target: lkg, refused } = unrefusedTarget(history, pin, serviceName);
    skipped = refused;
    if (!lkg) {
      throw new OperatorError(`backout: no last known good of ${serviceName} is left once the pin of its last rollback is applied (${[...skipped.values()].join('; ')}): pass --to TASK_DEF_ARN (a revision of ${service.taskFamily}: ${listRevisionsCommand(service.taskFamily)})`, 2);
    }
    assertFamily(service, lkg.taskDefinitionArn);
    target = { taskDefinitionArn: lkg.taskDefinitionArn, alembicHead: lkg.alembicHead, images: lkg.images };
    newest = lkg;
  }
  // The primary may be a fix rolling out over the bad release: the operator names the target.
  const underway = deploymentUnderway(ecsService, target.taskDefinitionArn, null);
  if (underway && !targetOverride) {
    // The deployment under way may be the rollback just recorded (a "rollback service" without --wait,
    // run again to follow it): a conflict with a rollback in progress, not a decision to make.
    const last = underway.inProgress ? (await rollbackHistory(deps.doc, settings.tableName, serviceName, 1))[0] : undefined;
    if (last?.toTaskDefinition === underway.taskDefinitionArn && last.toTaskDefinition === target.taskDefinitionArn) {
      const ago = formatAge(Math.max(0, Math.round((nowOf(deps).getTime() - Date.parse(last.at)) / 1000)));
      throw new OperatorError(
        `backout: the rollback ${last.owner} of ${serviceName} to ${target.taskDefinitionArn} (${last.trigger}, ${ago} ago) is under way: follow it with "${rollbackStatusCommand(serviceName, settings.environmentName)}"; nothing changed`,
        3,
      );
    }
    const chosen = underway.taskDefinitionArn === target.taskDefinitionArn ? '' : ` (a rollback replaces ${underway.taskDefinitionArn} and pins it as the bad release: --to says you chose it)`;
    throw new OperatorError(`backout: ${underwayLine(serviceName, underway, target.taskDefinitionArn, settings.environmentName)}${chosen}`, 2);
  }
  const retagged = target.taskDefinitionArn === current.taskDefinitionArn ? await retaggedRelease(deps, settings, serviceName, current.taskDefinitionArn, newest) : null;
  if (!retagged && (target.taskDefinitionArn === current.taskDefinitionArn || current.pinnedFrom === target.taskDefinitionArn)) {
    const copy = current.pinnedFrom === target.taskDefinitionArn ? ` (a copy of ${target.taskDefinitionArn} pinned to its digests)` : '';
    // Nor one the pin refuses: the skipped ones, newer, and an older record of the release rolled away from.
    const before = targetOverride ? null : await lastKnownGoodBefore(deps.doc, settings.tableName, serviceName, target.taskDefinitionArn, [current.taskDefinitionArn, current.pinnedFrom], unpinned(pin, serviceName));
    const skippedNote = [...skipped.values()].map((why) => `skipped ${why}; `).join('');
    if (before) throw new OperatorError(`backout: ${skippedNote}${wentBadAfterBake(serviceName, current.taskDefinitionArn, before)}: pass --to ${before.taskDefinitionArn}`, 2);
    throw new OperatorError(`backout: ${skippedNote}${serviceName} already runs ${current.taskDefinitionArn}${copy}: nothing to roll back (investigate by hand, or pass --to another revision)`, 2);
  }
  // ECS refuses to deploy a deregistered revision: said before the confirmation, as the workflow's guards do.
  const inactive = inactiveTargetLine(targetRelease ?? (await describeRelease(deps.ecs, settings, target.taskDefinitionArn, containerName)), serviceName, settings.environmentName);
  if (inactive) throw new OperatorError(`backout: ${inactive}`, 2);
  const schema = containerName ? schemaHead(ecsService, current, await lastSchemaDowngrade(deps.doc, settings.tableName, serviceName)) : current.alembicHead;
  const needsDowngrade = Boolean(target.alembicHead && schema && target.alembicHead !== schema);
  return {
    service: serviceName,
    current,
    schema,
    target,
    fromLastKnownGood: !targetOverride,
    downgradeCommand: needsDowngrade ? downgradeCommandLine(target.alembicHead as string, current.taskDefinitionArn, settings.environmentName) : null,
    underway,
    retagged: retagged?.line ?? null,
    skipped: [...skipped.values()],
    pinned,
  };
}

export interface ServiceBackoutStatus {
  readonly service: string;
  /** The release of the primary deployment: the one the service is set to run (`rollout`: not yet everywhere). */
  readonly currentTaskDefinition: string;
  /** The primary deployment while ECS rolls it out (or marked it FAILED), and what still serves beside it; null once COMPLETED. */
  readonly rollout: PrimaryRollout | null;
  readonly lastKnownGood: (LastKnownGood & { readonly ageSeconds: number }) | null;
  /** Why the pin of the last rollback refuses the newest last known good (pinRefusal), or null: the automatic path then pages instead of rolling back. */
  readonly lastKnownGoodRefused: string | null;
  /** When it is refused: the newest record the pin does not refuse, the default target of `rollback service` (null: none left, --to only). */
  readonly rollbackTarget: (LastKnownGood & { readonly ageSeconds: number }) | null;
  /** Why whether the pin refuses the newest last known good is unknown: the pin could not be read. */
  readonly pinUnread: string | null;
  /** Why the rollback target (the newest last known good the pin does not refuse) cannot be deployed: deregistered (inactiveTargetLine); null when it can, or could not be read. */
  readonly targetInactive: string | null;
  /** When the service runs its rollback target (the newest last known good the pin does not refuse): the one before it (the target if that release went bad after its bake). */
  readonly lastKnownGoodBefore: (LastKnownGood & { readonly ageSeconds: number }) | null;
  /** Why no release before it is named: the pin, which says which one not to offer, could not be read. */
  readonly lastKnownGoodBeforeUnknown: string | null;
  readonly lock: LockRecord | null;
  readonly cooldownUntil: string | null;
  readonly rollbacks: RollbackHistoryEntry[];
  /** The API's last migration downgrade that worked (the revision it reached); null for a worker or none recorded. */
  readonly lastDowngrade: SchemaDowngrade | null;
}

export async function backoutStatus(deps: Pick<BackoutDeps, 'ecs' | 'doc' | 'ssm' | 'now'>, settings: BackoutSettings, serviceName: string): Promise<ServiceBackoutStatus> {
  const now = nowOf(deps);
  findService(settings, serviceName);
  const ecsService = await describeService(deps.ecs, settings, serviceName);
  const current = currentTaskDefinition(ecsService);
  const history = await lastKnownGoodHistory(deps.doc, settings.tableName, serviceName);
  const lkg = history[0] ?? null;
  // Status is read in an outage: a pin it cannot read costs the lines that need it, not the lock and history.
  let pinUnread: string | null = null;
  const pin = lkg
    ? await readPin(deps, settings, serviceName).catch((error: unknown) => {
        pinUnread = `the pin ${pinParameterName(settings, serviceName)} could not be read (${namedLine(error)})`;
        return undefined;
      })
    : null;
  // The newest record can be the release the last rollback rolled away from: both paths refuse it
  // (the automatic one pages, `rollback service` goes to the newest one the pin does not refuse),
  // so status must not hand it out as the one to go back to.
  const { target, refused } = pin === undefined ? { target: lkg, refused: new Map<string, string>() } : unrefusedTarget(history, pin, serviceName);
  const lkgRefused = lkg ? (refused.get(lkg.taskDefinitionArn) ?? null) : null;
  let before: LastKnownGood | null = null;
  if (target?.taskDefinitionArn === current && pin !== undefined) before = await lastKnownGoodBefore(deps.doc, settings.tableName, serviceName, current, [], unpinned(pin, serviceName));
  // Both paths refuse a deregistered target before acting; status says so before anyone pages. Unread
  // (throttled), the line is left out rather than the status failing in an outage.
  const containerName = serviceName === settings.api.serviceName ? settings.api.containerName : '';
  const targetInactive = target && target.taskDefinitionArn !== current
    ? await describeRelease(deps.ecs, settings, target.taskDefinitionArn, containerName).then((release) => inactiveTargetLine(release, serviceName, settings.environmentName), () => null)
    : null;
  const aged = (record: LastKnownGood) => ({ ...record, ageSeconds: Math.round((now.getTime() - Date.parse(record.recordedAt)) / 1000) });
  return {
    service: serviceName,
    currentTaskDefinition: current,
    rollout: primaryRollout(ecsService),
    lastKnownGood: lkg ? aged(lkg) : null,
    lastKnownGoodRefused: lkgRefused,
    rollbackTarget: lkgRefused && target ? aged(target) : null,
    pinUnread,
    targetInactive,
    lastKnownGoodBefore: before ? aged(before) : null,
    lastKnownGoodBeforeUnknown: lkg?.taskDefinitionArn === current ? pinUnread : null,
    lock: await readLock(deps.doc, settings.tableName, serviceName, now),
    cooldownUntil: await cooldownUntil(deps.doc, settings.tableName, serviceName, now),
    rollbacks: await rollbackHistory(deps.doc, settings.tableName, serviceName, 5),
    lastDowngrade: serviceName === settings.api.serviceName ? await lastSchemaDowngrade(deps.doc, settings.tableName, serviceName) : null,
  };
}
