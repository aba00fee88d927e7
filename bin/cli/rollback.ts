import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { EventBridgeClient, PutEventsCommand } from '@aws-sdk/client-eventbridge';
import { PublishCommand } from '@aws-sdk/client-sns';
import { Command } from 'commander';
import { EnvironmentConfig } from '../../lib/config';
import { runbookAlarmName } from '../../lib/alarm-names';
import { backoutClients } from '../../lambdas/backout/clients';
import { assertFamily, currentTaskDefinition, describeRelease, describeService, PrimaryRollout } from '../../lambdas/backout/ecs';
import {
  BACKOUT_ACTOR,
  downgradeMaintenanceRun,
  cliRunId,
  DOWNGRADE_DROPS,
  downgradeArgs,
  DowngradePreparation,
  failedDowngradeNextSteps,
  finishDowngrade,
  lockExpiry,
  lookForTask,
  mayCoverDowngrade,
  MIGRATION_LOCK_REASON,
  MIGRATION_STARTED_BY,
  MigrationTaskResult,
  MigrationTaskStage,
  parseRevision,
  prepareDowngrade,
  restoreKillswitchCommand,
  runMigrationTask,
  waitOrUnlock,
} from '../../lambdas/backout/migration';
import { rollbackServiceCommand, rollbackStatusCommand } from '../../lambdas/backout/revision';
import { BackoutSettings, DOWNGRADE_OBJECTIVE_SECONDS, findService, METRICS_SETTLE_SECONDS, pinParameterPrefix, ROLLBACK_OBJECTIVE_SECONDS } from '../../lambdas/backout/settings';
import { acquireLock, LockRecord, readLock, recordLockTask, recordRollback, recordSchemaDowngrade, releaseLock, rollbackHistory, unlockCommandLine } from '../../lambdas/backout/state';
import { putRollbackMetrics } from '../../lambdas/backout/metrics';
import {
  backoutStatus,
  BackoutDeps,
  checkSteady,
  checksNotRunLine,
  finishedRollbackMetrics,
  guards,
  listRevisionsCommand,
  pinLine,
  planRollback,
  postChecks,
  report,
  ReportNotPublished,
  RollbackReport,
  RollbackState,
  rollOut,
} from '../../lambdas/backout/workflow';
import { asOperatorError } from '../../lambdas/shared/aws-errors';
import { EVENT_SOURCE, metricsNamespace, OPERATOR_CLI } from '../../lambdas/shared/constants';
import { namedLine, NotFoundError, OperatorError, oneLine } from '../../lambdas/shared/errors';
import { MISSING_PARAMETER_FIX, readKillswitch } from '../../lambdas/killswitch/core';
import { formatAge, formatSeconds } from '../../lambdas/shared/format';
import { nowOf } from '../../lambdas/shared/clock';
import { serviceNow } from '../../lambdas/shared/clock-offset';
import { confirmer } from './confirm';
import { interruptibly } from './interrupt';
import { killswitchDisableCommand, killswitchStatusJson, killswitchStatusLines, resolveCliActor } from './killswitch';
import { DEPLOYED_NAMES, defaultEnvironmentName, deployedNameValue, ENV_DEFAULT, envNameValue, isServiceNotFound, namedValue, nonEmpty, notFoundHint, packageRoot, resolveDeployedName, resolveDeployedNameFrom } from './resolve';
import { loadCliConfig } from './cli-config';

interface GlobalOptions {
  env?: string;
  cluster?: string;
  table?: string;
  topic?: string;
  parameter?: string;
}

/** Everything the CLI needs to run the backout core: names resolved, settings from the environment's config. */
export interface RollbackCliContext {
  readonly settings: BackoutSettings;
  readonly deps: BackoutDeps;
  readonly actor: () => Promise<string>;
  readonly confirm: (question: string) => Promise<boolean>;
  readonly print: (line: string) => void;
  /** A line on stderr: why the command is silent for a while (stdout keeps what was done). */
  readonly note: (line: string) => void;
  readonly sleep: (ms: number) => Promise<void>;
  /** Aborted by the first Ctrl-C / SIGTERM / SIGHUP once the command may change something (interruptibly()). */
  readonly signal?: AbortSignal;
}

/** `ctx.sleep`, cut short by Ctrl-C: true when the command was interrupted. */
async function pause(ctx: RollbackCliContext, ms: number): Promise<boolean> {
  const signal = ctx.signal;
  if (signal?.aborted) return true;
  await new Promise<void>((resolve) => {
    // Removed when the sleep wins: one listener per poll would pile up on the signal, and past 10
    // Node prints a MaxListenersExceededWarning on stderr in the middle of a rollback.
    const onAbort = () => resolve();
    signal?.addEventListener('abort', onAbort, { once: true });
    void ctx.sleep(ms).then(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    });
  });
  return Boolean(signal?.aborted);
}

/** Settings as the deployed construct builds them, from the config and the resolved names. */
export function settingsFromConfig(
  config: EnvironmentConfig,
  names: { clusterName: string; apiServiceName: string; tableName: string; topicArn: string; killswitchParameterName: string },
): BackoutSettings {
  const backout = config.backout;
  if (!backout) throw new OperatorError(`backout is not configured for environment ${config.name}: add a "backout" block to cdk.json (context.environments.${config.name})`, 2);
  return {
    environmentName: config.name,
    region: config.region,
    account: config.account,
    dryRun: backout.dryRun,
    clusterName: names.clusterName,
    api: { ...backout.api, serviceName: names.apiServiceName },
    workers: backout.workers,
    tableName: names.tableName,
    topicArn: names.topicArn,
    killswitchParameterName: names.killswitchParameterName,
    pinParameterPrefix: pinParameterPrefix(config.name),
    alarmNames: { errorRate: runbookAlarmName(config.name, 'Backout', 'ApiErrorRate'), noHealthyHosts: runbookAlarmName(config.name, 'Backout', 'ApiNoHealthyHosts') },
    // Holding applies to automatic rollbacks only: by hand, the operator is the root-cause check.
    holdAlarmNames: [],
    // The name the detection gives it (only the deployed bake reads it).
    readinessAlarmName: config.detection?.probe.api ? runbookAlarmName(config.name, 'Health', 'ApiNotReady') : null,
    probeSilenceAlarmNames: [],
    targetGroupFullName: backout.targetGroupFullName,
    loadBalancerFullName: backout.loadBalancerFullName,
    healthUrl: backout.healthUrl,
    readyUrl: backout.readyUrl,
    bakeSeconds: backout.bakeMinutes * 60,
    errorRatePercent: backout.errorRatePercent,
    minRequestsPerMinute: backout.minRequestsPerMinute,
    evaluationMinutes: backout.evaluationMinutes,
    cooldownSeconds: backout.cooldownMinutes * 60,
    steadyTimeoutSeconds: backout.steadyTimeoutMinutes * 60,
    autoDowngradeMigrations: backout.autoDowngradeMigrations,
    alembicHead: backout.alembicHead,
    beforeDowngrade: backout.beforeDowngrade,
    databaseInstanceIdentifier: config.database.instanceIdentifier,
    downgradeLockTimeoutSeconds: backout.downgradeLockTimeoutSeconds,
    subnetIds: config.network.privateSubnetIds,
    securityGroupIds: backout.taskSecurityGroupIds,
  };
}

/**
 * `readOnly` (rollback status, unlock): the incidents topic and the killswitch parameter are not resolved,
 * only the commands that publish a report or set the killswitch need them; status reads ECS, the
 * ops-state table and the pins (named from the environment), unlock the table only, and must answer where they are not deployed or named (a laptop with --table).
 */
async function defaultContext(globals: GlobalOptions, apiServiceFlag?: string, readOnly = false): Promise<RollbackCliContext & { serviceName: string; cluster?: { value: string; from: string } }> {
  const root = packageRoot();
  const envName = globals.env ?? defaultEnvironmentName(root);
  const config = loadCliConfig(envName, root);
  // --env as given, not envName: a name not found without --env then says it was looked for in the default environment (otherEnvironmentHint).
  const resolve = (name: (typeof DEPLOYED_NAMES)[keyof typeof DEPLOYED_NAMES], flagValue?: string) => resolveDeployedName(name, { flagValue, envName: globals.env, root });
  // The table first: its lookup, which has no fallback, gets CloudFormation's full attempts, and a
  // CloudFormation that did not answer them is not asked again for the cluster and the service
  // (names the config fixes, whose lookups get one attempt: readStackOutputs).
  const tableName = await resolve(DEPLOYED_NAMES.opsTable, globals.table);
  const cluster = await resolveDeployedNameFrom(DEPLOYED_NAMES.ecsCluster, { flagValue: globals.cluster, envName: globals.env, root });
  const clusterName = cluster.value;
  const apiServiceName = await resolve(DEPLOYED_NAMES.apiService);
  // Read-only: an empty name, which no AWS call of status sends (backoutStatus reads ECS, the table and the pin).
  const topicArn = readOnly ? '' : await resolve(DEPLOYED_NAMES.incidentsTopic, globals.topic);
  const killswitchParameterName = readOnly ? '' : await resolve(DEPLOYED_NAMES.killswitchParameter, globals.parameter);
  const settings = settingsFromConfig(config, { clusterName, apiServiceName, tableName, topicArn, killswitchParameterName });
  const logger = new Logger({ serviceName: 'backout-cli', logLevel: 'SILENT' });
  const metrics = new Metrics({ namespace: metricsNamespace(envName), serviceName: 'backout-cli' });
  return {
    settings,
    serviceName: nonEmpty(apiServiceFlag, '--service', 'give the ECS service name, or leave --service out to roll back the API') ?? apiServiceName,
    // Where the cluster's name came from, for ECS's "Cluster not found." (ecsNotFoundHint).
    cluster,
    deps: { ...backoutClients(), logger, metrics },
    actor: () => resolveCliActor(),
    confirm: confirmer(undefined),
    print: (line) => process.stdout.write(`${line}\n`),
    note: (line) => process.stderr.write(`${line}\n`),
    sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
  };
}

/** The end of a command's last line when its lock could not be released: why, and what releases it. */
const lockNotReleasedLine = (service: string, owner: string, why: string, environmentName: string, force = false) =>
  `the lock of ${service} could not be released (${why}): ${unlockCommandLine(service, owner, environmentName, force)}`;

/** What the lock is held for, as its item records it (nothing for a lock of a version that did not). */
function heldFor(lock: LockRecord): string {
  if (!lock.holder) return '';
  if (lock.holder.kind === 'service-rollback') return ', for a service rollback';
  return lock.holder.taskArn ? `, for the migration downgrade task ${lock.holder.taskArn}` : ', for a migration downgrade (task ARN not recorded)';
}

/**
 * Why another rollback's lock refuses `rollback service|migration`, and what to do: the core of the
 * exit-3 line, and the line a dry run prints as the refusal it would meet now.
 */
const lockHeldLine = (settings: BackoutSettings, service: string, lock: LockRecord) =>
  `another rollback of ${service} holds the lock (${lock.reason}, held by ${lock.owner} since ${lock.acquiredAt}): ${waitOrUnlock(settings, service, lock)}`;

/**
 * The exit-3 line of `rollback service|migration` refused by another rollback's lock: `held`, the
 * lock as already read, else read again for its owner.
 */
async function lockHeldError(ctx: RollbackCliContext, service: string, held?: LockRecord): Promise<OperatorError> {
  let lock: LockRecord | null;
  try {
    lock = held ?? (await readLock(ctx.deps.doc, ctx.settings.tableName, service, nowOf(ctx.deps)));
  } catch (error) {
    return new OperatorError(`rollback: another rollback of ${service} holds the lock (its owner could not be read: ${namedLine(error)}); see "${rollbackStatusCommand(service, ctx.settings.environmentName)}", nothing changed`, 3);
  }
  if (!lock) return new OperatorError(`rollback: another rollback of ${service} held the lock, and it is gone since (released or expired): run the command again; nothing changed`, 3);
  return new OperatorError(`rollback: ${lockHeldLine(ctx.settings, service, lock)}; nothing changed`, 3);
}

/** A primary deployment not COMPLETED: what ECS is doing with it, and what still serves meanwhile. */
function rolloutLine(taskDefinition: string, rollout: PrimaryRollout): string {
  const counts = [rollout.reason, `${rollout.running}/${rollout.desired} running`, ...rollout.serving.map((d) => `${d.taskDefinition} still serving ${d.running}`)].filter(Boolean).join('; ');
  return rollout.state === 'IN_PROGRESS' ? `rolling out ${taskDefinition} (${counts})` : `rollout of ${taskDefinition} ${rollout.state} (${counts})`;
}

/**
 * The killswitch parameter `rollback status` reads: its name (`flag`: named by --parameter, which
 * the disable command it prints then names too), or why none could be resolved.
 */
export type StatusKillswitch = { readonly parameterName: string; readonly flag?: boolean } | { readonly unresolved: string };

/**
 * The killswitch as `killswitch status` says it, for `rollback status`: whether the API is in
 * maintenance during a backout. A killswitch that cannot be read is one line saying so, never the
 * status's failure (what the status reads of ECS and the table still matters).
 */
async function killswitchStatus(ctx: RollbackCliContext, source: StatusKillswitch): Promise<{ lines: string[]; json: object }> {
  const unread = (parameter: string, why: string) => ({
    lines: [`killswitch${parameter && ` ${parameter}`}: not read (${why}): whether the API is in maintenance is unknown`],
    json: { parameterName: parameter || null, unread: why },
  });
  if ('unresolved' in source) return unread('', source.unresolved);
  const { parameterName } = source;
  const disable = killswitchDisableCommand(source.flag ? parameterName : undefined, ctx.settings.environmentName);
  try {
    const reading = await readKillswitch(ctx.deps.ssm, parameterName, MISSING_PARAMETER_FIX.cli);
    const now = serviceNow(ctx.deps.ssm).getTime();
    return { lines: killswitchStatusLines(parameterName, reading, now, disable), json: killswitchStatusJson(parameterName, reading, now) };
  } catch (error) {
    return unread(parameterName, error instanceof OperatorError ? oneLine(error) : namedLine(error));
  }
}

export async function statusCommand(ctx: RollbackCliContext, services: string[], json: boolean, killswitch: StatusKillswitch = { parameterName: ctx.settings.killswitchParameterName }): Promise<void> {
  const statuses = [];
  for (const service of services) statuses.push(await backoutStatus(ctx.deps, ctx.settings, service));
  const switchStatus = await killswitchStatus(ctx, killswitch);
  if (json) {
    // In each service's entry: the output stays the array of services it has always been.
    ctx.print(JSON.stringify(statuses.map((s) => ({ ...s, killswitch: switchStatus.json }))));
    return;
  }
  for (const s of statuses) {
    ctx.print(`${s.service}: ${s.rollout ? rolloutLine(s.currentTaskDefinition, s.rollout) : `running ${s.currentTaskDefinition}`}`);
    const recorded = (record: { ageSeconds: number; alembicHead: string | null }) => `(recorded ${formatAge(record.ageSeconds)} ago, alembic ${record.alembicHead ?? 'n/a'})`;
    // Refused by the pin, the newest record is no target of either path: said on its line, and the one "rollback service" takes named.
    const flag = s.lastKnownGoodRefused
      ? `, refused by the last rollback's pin: ${s.lastKnownGoodRefused}`
      : s.pinUnread && s.lastKnownGood?.taskDefinitionArn !== s.currentTaskDefinition
        ? `; whether the last rollback's pin refuses it is unknown: ${s.pinUnread}`
        : '';
    ctx.print(s.lastKnownGood ? `  last known good: ${s.lastKnownGood.taskDefinitionArn} ${recorded(s.lastKnownGood)}${flag}` : '  last known good: none recorded');
    if (s.lastKnownGoodRefused) {
      ctx.print(
        s.rollbackTarget
          ? `  rollback target: ${s.rollbackTarget.taskDefinitionArn} ${recorded(s.rollbackTarget)}, the newest last known good the pin does not refuse: "${rollbackServiceCommand(s.service, ctx.settings.environmentName)}" goes there without --to; an alarm pages instead of rolling back`
          : `  rollback target: none, the pin refuses every recorded last known good: an alarm pages instead of rolling back; pass --to TASK_DEF_ARN to "${rollbackServiceCommand(s.service, ctx.settings.environmentName)}"`,
      );
    }
    if (s.targetInactive) ctx.print(`  rollback target refused: ${s.targetInactive}`);
    // Running its rollback target, the service has no default target: the one before it, ready to paste.
    if (s.lastKnownGoodBefore) {
      const before = s.lastKnownGoodBefore;
      const runs = s.lastKnownGoodRefused ? 'its rollback target' : 'its newest last known good';
      ctx.print(`  last known good before it: ${before.taskDefinitionArn} ${recorded(before)}; ${s.service} runs ${runs}: if it went bad after its bake, ${rollbackServiceCommand(s.service, ctx.settings.environmentName, before.taskDefinitionArn)}`);
    }
    if (s.lastKnownGoodBeforeUnknown) ctx.print(`  last known good before it: not named, ${s.lastKnownGoodBeforeUnknown}: it could be the release the last rollback rolled away from; read the pin before any --to`);
    // The owner is what `rollback unlock --owner` takes; the expiry, how long the lock blocks if nobody releases it.
    ctx.print(s.lock ? `  lock: held by ${s.lock.owner} since ${s.lock.acquiredAt}, expires ${lockExpiry(s.lock)} (${s.lock.reason})${heldFor(s.lock)}` : '  lock: free');
    if (s.cooldownUntil) ctx.print(`  cooldown until ${s.cooldownUntil}`);
    const d = s.lastDowngrade;
    if (d) ctx.print(`  last migration downgrade: to ${d.revision} at ${d.at} by ${d.by} (${d.run}, in ${d.taskDefinition}, while ${s.service} ran ${d.servedBy})`);
    for (const r of s.rollbacks) ctx.print(`  ${r.at} ${r.outcome}: ${r.summary}`);
    // A rollout with no rollback recorded may be ECS's own (its circuit breaker rolling back) or a deploy.
    if (!s.rollbacks.length) ctx.print(s.rollout ? '  no rollback recorded by atmr-dr; a rollout is in progress (above): a deploy, or ECS rolling the service back itself (its circuit breaker)' : '  no rollback recorded');
  }  for (const line of switchStatus.lines) ctx.print(line);
}

export interface ServiceRollbackOptions {
  readonly service: string;
  readonly to?: string;
  readonly dryRun?: boolean;
  readonly yes?: boolean;
  readonly wait?: boolean;
}

/** The automatic path's code, by hand: plan (read-only), the lock's holder (read), confirm, then guards (lock), UpdateService, [steady, checks], report. */
export async function serviceCommand(ctx: RollbackCliContext, options: ServiceRollbackOptions): Promise<void> {
  // A plan refused while another rollback holds the service's lock (the automatic one under way: the
  // service already runs its target, or ECS is rolling it there) is answered by the lock, which names
  // that rollback: the plan's own advice (pass --to another revision) steered the on-call away from it.
  const plan = await planRollback(ctx.deps, ctx.settings, options.service, options.to).catch(async (error: unknown) => {
    if (!(error instanceof OperatorError) || error.exitCode !== 2) throw error;
    const held = await readLock(ctx.deps.doc, ctx.settings.tableName, options.service, nowOf(ctx.deps)).catch(() => null);
    throw held ? await lockHeldError(ctx, options.service, held) : error;
  });
  // A lock already held refuses the command before its plan: the on-call must not read and confirm
  // a rollback that will not run. The guards' conditional put still decides (the lock may be taken meanwhile).
  // A dry run changes nothing and takes no lock: it prints its plan, and the refusal it would meet now.
  const held = await readLock(ctx.deps.doc, ctx.settings.tableName, plan.service, nowOf(ctx.deps));
  if (held && !options.dryRun) throw await lockHeldError(ctx, plan.service, held);
  ctx.print(`rollback ${plan.service}: ${plan.current.taskDefinitionArn} -> ${plan.target.taskDefinitionArn}${plan.fromLastKnownGood ? ' (last known good)' : ' (--to)'}`);
  for (const why of plan.skipped) ctx.print(`  skipped a newer last known good: ${why}`);
  if (plan.pinned) ctx.print(`  warning: ${plan.pinned}`);
  if (plan.underway) {
    const others = plan.underway.replacing.join(', ') || 'the release it replaced';
    ctx.print(`  a deployment of ${plan.underway.taskDefinitionArn} is in progress (started ${plan.underway.createdAt ?? 'unknown time'}) beside ${others}: this rollback replaces both, and its pin names ${plan.underway.taskDefinitionArn} as the release not to deploy again`);
  }
  if (plan.retagged) ctx.print(`  ${plan.retagged}: the rollback registers a copy of it pinned to the last known good's digests`);
  if (plan.downgradeCommand) {
    ctx.print(`  the schema stays at ${plan.schema} (the target expects Alembic ${plan.target.alembicHead}): this command does not touch it; if the previous release cannot run on the new schema, downgrade it with: ${plan.downgradeCommand} (${DOWNGRADE_DROPS})`);
  }
  if (options.dryRun) {
    if (held) ctx.print(`  without --dry-run, refused now: ${lockHeldLine(ctx.settings, plan.service, held)}`);
    ctx.print('dry run: nothing changed');
    return;
  }
  if (!options.yes && !(await ctx.confirm(`rollback: roll ${plan.service} back to ${plan.target.taskDefinitionArn}`))) {
    throw new OperatorError('rollback: not confirmed, nothing changed', 1);
  }
  if (ctx.signal?.aborted) throw new OperatorError('rollback: interrupted before anything changed', 1);
  let state = await guards(ctx.deps, ctx.settings, { service: plan.service, manual: { actor: await ctx.actor(), targetTaskDefinition: plan.target.taskDefinitionArn, dryRun: false } });
  if (state.decision === 'skip') throw await lockHeldError(ctx, plan.service);
  if (state.decision !== 'proceed') {
    const { result, notTold } = await reportOrSay(ctx, state);
    await publishMetrics(ctx, state);
    const lockLeft = result.lockNotReleased ? `; ${lockNotReleasedLine(plan.service, state.owner, result.lockNotReleased, ctx.settings.environmentName)}` : '';
    throw new OperatorError(`rollback: ${state.reason}${notTold}${lockLeft}`, 1);
  }
  // Ctrl-C during the guards (the actor lookup, the lock): nothing was sent to ECS yet, and nothing
  // is; the lock the guards took is released so that the next rollback is not refused.
  if (ctx.signal?.aborted) {
    const owner = state.owner;
    const released = await releaseLock(ctx.deps.doc, ctx.settings.tableName, plan.service, owner).then(
      () => 'the lock is released',
      (error: unknown) => lockNotReleasedLine(plan.service, owner, namedLine(error), ctx.settings.environmentName),
    );
    throw new OperatorError(`rollback: interrupted before UpdateService: nothing changed; ${released}`, 1);
  }
  // What the rollout threw, for the last line: its fix and exit code (an expired login is exit 2).
  let caught: unknown;
  try {
    state = await rollOut(ctx.deps, ctx.settings, state);
    if (state.rollout) ctx.print(`UpdateService sent; ${pinLine(state, state.rollout)}`);
    if (state.rollout?.images) ctx.print(state.rollout.images.line);
    // Ctrl-C while following the rollout stops following it, not the rollout: the report below
    // says it was not awaited (or, once steady, that the checks were not run) and releases the lock (else the operator's next command, and the
    // automatic path, would find it held until it expires).
    if (options.wait) {
      for (;;) {
        if (await pause(ctx, 10_000)) break;
        state = await checkSteady(ctx.deps, ctx.settings, state);
        ctx.print(`  ${state.steady?.status}: ${state.steady?.detail}`);
        if (state.steady?.status !== 'in-progress') break;
      }
      // As the workflow does: let the ALB metrics of the last known good's first minute come in.
      // Said first: two minutes without a line after "steady" look like a hung command.
      if (state.steady?.status === 'steady') {
        ctx.note(`waiting ${METRICS_SETTLE_SECONDS} s before the post-rollback checks: they read the load balancer's metrics of the first minute of steady state, which land about a minute after that minute ends`);
        if (!(await pause(ctx, METRICS_SETTLE_SECONDS * 1000))) state = await postChecks(ctx.deps, ctx.settings, state);
      }
    }
  } catch (error) {
    caught = error;
    state = { ...state, error: { Error: (error as Error).name, Cause: oneLine(error) } };
  }
  const { result, notTold } = await reportOrSay(ctx, state);
  await publishMetrics(ctx, state);
  for (const line of state.checks?.lines ?? []) ctx.print(`  ${line}`);
  // The monthly staging drill reads its time here: from the confirmed command to the service steady
  // on the target (the report's RollbackSeconds), before the 120 s the checks wait for.
  if (result.seconds !== null) ctx.print(`rolled back in ${formatSeconds(result.seconds)} (runbook objective: ${formatSeconds(ROLLBACK_OBJECTIVE_SECONDS)})`);
  ctx.print(`${result.outcome}: ${result.summary}`);
  // Nobody else was told: the pin advice must not be lost with the topic.
  const pinAdvice = state.rollout?.pinError ? `; the pin ${state.rollout.pin} was not written either (${state.rollout.pinError}): hold the deploys of ${plan.service} and write the pin by hand` : '';
  // The report's release of the lock failed: the outcome stays the line's first word, and the line
  // ends with the command that releases the lock (else every rollback of the service, the automatic
  // one included, is refused until it expires).
  const lockLeft = result.lockNotReleased ? lockNotReleasedLine(plan.service, state.owner, result.lockNotReleased, ctx.settings.environmentName) : '';
  const andLockLeft = lockLeft && `; ${lockLeft}`;
  if (notTold) throw new OperatorError(`rollback: ${result.outcome}${notTold}${pinAdvice}${andLockLeft}`, 1);
  if (ctx.signal?.aborted && result.outcome === 'rolled-back-unchecked') {
    throw new OperatorError(`rollback: interrupted before the post-rollback checks: ${plan.service} ${checksNotRunLine(ctx.settings, state)}; ${lockLeft || 'the lock is released'}`, 1);
  }
  if (ctx.signal?.aborted && state.rollout) {
    throw new OperatorError(
      `rollback: interrupted while following the rollout: UpdateService was sent and ECS goes on with it; ${lockLeft || 'the lock is released'}; follow it with "${rollbackStatusCommand(plan.service, ctx.settings.environmentName)}"`,
      1,
    );
  }
  if (!['rolled-back', 'rollout-started'].includes(result.outcome)) {
    // The report's summary went to the topic; the operator's line says what failed and what fixes it.
    const said = caught === undefined ? undefined : asOperatorError(caught);
    throw new OperatorError(`rollback: ${result.outcome}: ${said ? `${said.message}; ` : ''}see the incidents topic and "rollback status"${andLockLeft}`, said?.exitCode ?? 1);
  }
  // The service is rolled back, but nothing stops a pipeline from redeploying the bad release.
  if (state.rollout?.pinError) {
    throw new OperatorError(`rollback: ${result.outcome} but the pin ${state.rollout.pin} was not written (${state.rollout.pinError}): hold the deploys of ${plan.service} and write the pin by hand (README, "The pin")${andLockLeft}`, 1);
  }
  if (lockLeft) throw new OperatorError(`rollback: ${result.outcome}, but ${lockLeft}`, 1);
}

/** What an incidents topic that refused a message means for the operator, after what was done. */
const notToldLine = (error: unknown) => `, but the incidents topic was not told (${error instanceof ReportNotPublished ? error.message : namedLine(error)}): tell the on-call by hand`;

/**
 * The workflow's report; when SNS refuses it, what was done is still said (the SDK's error alone
 * would hide a rollback that happened), with `notTold` for the command's last line.
 */
async function reportOrSay(ctx: RollbackCliContext, state: RollbackState): Promise<{ result: RollbackReport; notTold: string }> {
  try {
    return { result: await report(ctx.deps, ctx.settings, state), notTold: '' };
  } catch (error) {
    if (!(error instanceof ReportNotPublished)) throw error;
    return { result: error.report, notTold: notToldLine(error) };
  }
}

/**
 * The workflow's RollbackSeconds / RollbackOutcome for the same state (the report decides which:
 * a refusal or a rollout not waited for publishes none). The rollback has happened by then, so a
 * metric that cannot be written is a warning, not a failure of the command.
 */
async function publishMetrics(ctx: RollbackCliContext, state: RollbackState): Promise<void> {
  const now = nowOf(ctx.deps);
  try {
    await putRollbackMetrics(ctx.deps.cloudwatch, metricsNamespace(ctx.settings.environmentName), finishedRollbackMetrics(state, now, ctx.settings.environmentName), now);
  } catch (error) {
    ctx.print(`warning: RollbackSeconds/RollbackOutcome not published: ${oneLine(error)}`);
  }
}

export interface MigrationOptions {
  readonly to: string;
  /** The release whose image runs the downgrade (default: the API's current task definition). */
  readonly taskDefinition?: string;
  readonly yes?: boolean;
  /** Print the plan and change nothing: no lock, no snapshot, no killswitch, no task. */
  readonly dryRun?: boolean;
}

/** The lock of a manual downgrade: longer than the task's follow-up (900 s) and its StopTask wait. */
const MIGRATION_LOCK_SECONDS = 3600;

/**
 * What `rollback migration` has changed so far, kept as it goes: a second Ctrl-C quits at once,
 * without the command's own ending (its report, the lock's release), and its one line
 * (migrationLeft) can only say what this records. Each step is recorded before its request is
 * sent: a request on its way when the process quits may still be carried out.
 */
export interface MigrationProgress {
  /** The lock's conditional put: `requested` until DynamoDB answered, `releasing` until the delete did. */
  lock?: { readonly service: string; readonly owner: string; readonly until: string; state: 'requested' | 'held' | 'releasing' | 'released' };
  /** The snapshot and the killswitch: `preparing` until prepareDowngrade returned. */
  preparing?: boolean;
  preparation?: DowngradePreparation;
  /** The task as runMigrationTask reported it, then its result once it returned. */
  task?: MigrationTaskStage | { readonly stage: 'ended'; readonly result: MigrationTaskResult };
}

/**
 * After a downgrade that worked, with the service on a release of the target head: a killswitch
 * still in maintenance written by an earlier downgrade of atmr-dr (one run before `rollback
 * service`, which keeps it) is no longer needed, and this run, which did not set it, leaves it: said
 * with the command that lifts it, never hidden behind "left as it was". Null for anything else.
 */
async function staleDowngradeMaintenance(ctx: RollbackCliContext, current: string, revision: string): Promise<string | null> {
  const reading = await readKillswitch(ctx.deps.ssm, ctx.settings.killswitchParameterName).catch(() => null);
  const value = reading?.value;
  const run = downgradeMaintenanceRun(value);
  if (!value || !run) return null;
  const lift = restoreKillswitchCommand(null, nowOf(ctx.deps), ctx.settings.environmentName);
  return `still in maintenance, set by downgrade ${run} at ${value.updatedAt}; ${ctx.settings.api.serviceName} now runs ${current} (Alembic ${revision}), the schema's revision: lift it with ${lift}`;
}

/** How to follow a downgrade task atmr-dr may have left running. */
const followTask = (cluster: string, arn: string) => `follow it with "aws ecs describe-tasks --cluster ${cluster} --tasks ${arn}"`;

/** The one line of a second Ctrl-C during `rollback migration`: the task, the killswitch and the lock, as far as `progress` knows them. */
export function migrationLeft(progress: MigrationProgress, settings: BackoutSettings): string {
  const { lock, preparation, task } = progress;
  if (!lock || (lock.state === 'released' && !progress.preparing)) return 'nothing changed: no lock held, no snapshot, the killswitch untouched, no migration task';
  const cluster = settings.clusterName;
  const follow = (arn: string) => followTask(cluster, arn);
  const mayHaveStarted = `a migration task may have been started (RunTask was sent, ECS had not answered): ${lookForTask(cluster)}`;
  const parts: string[] = [];
  if (!task) {
    parts.push('no migration task was started: the schema is unchanged');
  } else if (task.stage === 'requested') {
    parts.push(mayHaveStarted);
  } else if (task.stage === 'ended') {
    const { taskArn, abandoned, stoppedReason, exitCode } = task.result;
    if (task.result.unanswered) parts.push(mayHaveStarted);
    else if (taskArn === null) parts.push('no migration task was started: the schema is unchanged');
    else if (abandoned?.stopped === false) parts.push(`the migration task ${taskArn} may still be running (${stoppedReason}): ${follow(taskArn)}`);
    else parts.push(`the migration task ${taskArn} has stopped (exit code ${exitCode ?? 'none'})`);
  } else if (task.stage === 'running') {
    parts.push(`the migration task ${task.taskArn} may still be running (atmr-dr had not sent StopTask): ${follow(task.taskArn)}`);
  } else {
    parts.push(`the migration task ${task.taskArn} may still be running (atmr-dr was stopping it, StopTask, and had not seen it stopped): ${follow(task.taskArn)}`);
  }
  if (!preparation) {
    parts.push(progress.preparing ? 'the killswitch may have been set to maintenance by this command' : 'the killswitch untouched');
  } else if (!preparation.killswitchSet) {
    parts.push('the killswitch stays as it was, in maintenance before this command');
  } else if (task?.stage === 'ended' && task.result.exitCode === 0) {
    // finishDowngrade restores the killswitch after a downgrade that worked, and may have done so.
    parts.push('the killswitch, set to maintenance by this command, stays in maintenance unless it was being restored (the downgrade exited 0)');
  } else {
    parts.push('the killswitch stays in maintenance, set by this command');
  }
  if (lock.state === 'released') {
    parts.push('the lock is released');
  } else {
    const held = lock.state === 'held' ? 'stays held' : lock.state === 'requested' ? 'may be held (its write was under way)' : 'may stay held (its release was under way)';
    // Nothing releases it any more; --force: this line has just said which task to check first.
    parts.push(
      `the lock of ${lock.service} ${held} until ${lock.until}, blocking rollback service, rollback migration and the automatic backout of ${lock.service} until then: "${rollbackStatusCommand(lock.service, settings.environmentName)}" shows it; once no migration task runs, ${unlockCommandLine(lock.service, lock.owner, settings.environmentName, true)} releases it`,
    );
  }
  return parts.join('; ');
}

/**
 * `flask db downgrade <revision>` in the failing release's image (only it holds the downgrade
 * script): `--task-definition`, or the API's current task definition when the service has not been
 * rolled back yet; with the same snapshot and killswitch steps as the workflow.
 */
export async function migrationCommand(ctx: RollbackCliContext, options: MigrationOptions, progress: MigrationProgress = {}): Promise<void> {
  const revision = parseRevision(options.to);
  const service = findService(ctx.settings, ctx.settings.api.serviceName);
  if (options.taskDefinition) assertFamily(service, options.taskDefinition);
  const current = currentTaskDefinition(await describeService(ctx.deps.ecs, ctx.settings, service.serviceName));
  const release = await describeRelease(ctx.deps.ecs, ctx.settings, options.taskDefinition ?? current, ctx.settings.api.containerName);
  // `family:revision` as ECS answers it, a full ARN: what RunTask, the lock and every line name.
  const taskDefinition = release.taskDefinitionArn;
  // A release that declares the target revision as its own head does not know the newer revision
  // the schema is at: the downgrade would fail with maintenance on. It is the last known good the
  // service runs after `rollback service`; the release rolled back from is in the rollback history.
  if (release.alembicHead === revision) {
    // A lock released by hand is in the history too, and rolled nothing back.
    const last = (await rollbackHistory(ctx.deps.doc, ctx.settings.tableName, service.serviceName, 5)).find((entry) => entry.outcome !== UNLOCKED_OUTCOME);
    const from = last?.toTaskDefinition === taskDefinition ? last.fromTaskDefinition : null;
    throw new OperatorError(
      `rollback: ${taskDefinition} declares Alembic ${revision} itself, so its image does not hold the downgrade from a newer schema (the service runs it after a rollback): pass --task-definition ${from ? `${from} (the release ${service.serviceName} was rolled back from)` : `TASK_DEF_ARN of the release rolled back from (no rollback recorded names it: ECS's circuit breaker or a deploy may have rolled ${service.serviceName} back; "${listRevisionsCommand(service.taskFamily)}" lists the revisions, newest first: the failing release is one newer than ${taskDefinition})`}; nothing changed`,
      2,
    );
  }
  // A lock already held refuses the command before its plan: the on-call must not read a downgrade
  // that will not run. The conditional put below still decides (the lock may be taken meanwhile).
  const held = await readLock(ctx.deps.doc, ctx.settings.tableName, service.serviceName, nowOf(ctx.deps));
  if (held && !options.dryRun) throw await lockHeldError(ctx, service.serviceName, held);
  // What the release declares, not a reading of the schema (a downgrade by hand or a failed
  // migration can leave them apart): the command that reads the schema is named beside it.
  const declared = release.alembicHead ? `the release declares Alembic ${release.alembicHead}` : `the release declares no ${ctx.settings.alembicHead.name}`;
  ctx.print(
    `migration downgrade: "${downgradeArgs(revision).join(' ')}" in ${taskDefinition}${taskDefinition === current ? '' : `, the service runs ${current}`} (${declared}; the schema's own revision: ${OPERATOR_CLI} db revision --env ${ctx.settings.environmentName})`,
  );
  ctx.print(`  it ${DOWNGRADE_DROPS}`);
  // Maintenance is lifted after the downgrade only when what the service RUNS declares the target
  // revision as its head: --task-definition names the image the downgrade runs in, not what serves,
  // and a wrong one must not let the failing release serve on a schema downgraded under it. Run
  // before `rollback service` (or with a release whose head is unknown), maintenance stays until the
  // service runs a release of that head (nothing here follows that rollback, so the operator lifts it).
  const runningHead = taskDefinition === current ? release.alembicHead : (await describeRelease(ctx.deps.ecs, ctx.settings, current, ctx.settings.api.containerName)).alembicHead;
  const stillServed = runningHead !== revision;
  const rollbackFirst = rollbackServiceCommand(service.serviceName, ctx.settings.environmentName);
  const maintenance = stillServed
    ? `the killswitch is in maintenance while it runs, and stays so after it: ${service.serviceName} runs ${current} (Alembic ${runningHead ?? 'unknown'}), which must not serve on the downgraded schema; lift it once "${rollbackFirst}" is done`
    : 'the killswitch is in maintenance while it runs';
  ctx.print(`  before it: ${ctx.settings.beforeDowngrade === 'snapshot' ? `a snapshot of ${ctx.settings.databaseInstanceIdentifier}` : 'the PITR restore point is recorded'}; ${maintenance}`);
  // The downgrade's preparation sets maintenance after its snapshot: a killswitch parameter that
  // does not exist (a wrong --parameter / KILLSWITCH_PARAMETER, another environment's name) is
  // refused now, before the confirmation, the lock and the snapshot, with the CLI's fix, not the
  // deployed function's setting that readKillswitch names by default.
  const killswitch = await readKillswitch(ctx.deps.ssm, ctx.settings.killswitchParameterName, MISSING_PARAMETER_FIX.cli).catch((error: unknown) => {
    if (error instanceof NotFoundError) throw new NotFoundError(`rollback migration: ${error.subject}`, `${error.fix}; nothing changed`, { cause: error.cause });
    // Refused or throttled: the command and the read it stopped at, and that nothing was changed yet.
    const said = asOperatorError(error);
    throw new OperatorError(`rollback migration: reading the killswitch parameter ${ctx.settings.killswitchParameterName}: ${said.message}; nothing changed`, said.exitCode, { cause: error });
  });
  if (options.dryRun) {
    const maintenance = killswitch.value?.mode === 'maintenance' ? `leave the killswitch ${ctx.settings.killswitchParameterName} in maintenance (it is already)` : `set the killswitch ${ctx.settings.killswitchParameterName} to maintenance`;
    ctx.print(`  without --dry-run: take the lock of ${service.serviceName}, ${ctx.settings.beforeDowngrade === 'snapshot' ? `snapshot ${ctx.settings.databaseInstanceIdentifier}` : 'record the PITR restore point'}, ${maintenance}, then run the task`);
    if (held) ctx.print(`  without --dry-run, refused now: ${lockHeldLine(ctx.settings, service.serviceName, held)}`);
    ctx.print('dry run: nothing changed');
    return;
  }
  if (!options.yes && !(await ctx.confirm(`rollback: downgrade the schema of ${ctx.settings.databaseInstanceIdentifier} to ${revision}`))) {
    throw new OperatorError('rollback: not confirmed, nothing changed', 1);
  }
  if (ctx.signal?.aborted) throw new OperatorError('rollback: interrupted before anything changed', 1);
  const actor = await ctx.actor();
  const owner = `cli:${actor}:${Date.now()}`;
  // Released by hand only with --force (unlockCommand): a downgrade task may run under this lock.
  const unlock = unlockCommandLine(service.serviceName, owner, ctx.settings.environmentName, true);
  const now = nowOf(ctx.deps);
  const until = new Date(now.getTime() + MIGRATION_LOCK_SECONDS * 1000).toISOString();
  const lock: NonNullable<MigrationProgress['lock']> = { service: service.serviceName, owner, until, state: 'requested' };
  progress.lock = lock;
  if (!(await acquireLock(ctx.deps.doc, ctx.settings.tableName, { service: service.serviceName, owner, now, ttlSeconds: MIGRATION_LOCK_SECONDS, reason: `${MIGRATION_LOCK_REASON} ${actor}`, holder: { kind: 'migration-downgrade' } }))) {
    lock.state = 'released';
    throw await lockHeldError(ctx, service.serviceName);
  }
  lock.state = 'held';
  // Kept only while a downgrade task may still run: a retry must not start a second one on the same database.
  let keepLock = false;
  // The command's own ending, kept while the lock is released: a release that fails must not hide it.
  let failure: { readonly error: unknown } | undefined;
  try {
    // Ctrl-C during the actor lookup or the lock: nothing was prepared; the lock is released below.
    if (ctx.signal?.aborted) throw new OperatorError('rollback: interrupted before the snapshot and the killswitch: nothing changed; the lock is released', 1);
    progress.preparing = true;
    // This command's id, as the workflow's execution name: a CreateDBSnapshot the SDK sends again
    // after a lost answer finds the snapshot by it, and takes it as this command's.
    const run = cliRunId(now);
    const preparation = await prepareDowngrade(ctx.deps, ctx.settings, revision, `manual downgrade by ${actor}`, run);
    progress.preparation = preparation;
    ctx.print(preparation.snapshotId ? `  snapshot ${preparation.snapshotId} started` : `  PITR restore point ${preparation.pitr?.restoreTo}`);
    // A task ECS refuses to run (a revision gone, its failures) is a failed downgrade like the
    // workflow's (its Catch goes to FinishDowngrade): reported, maintenance kept. A RunTask left
    // without an answer may have started one (unanswered), and so may a task followed but not seen
    // stopped (abandoned): both keep the lock.
    let taskRecorded: Promise<void> = Promise.resolve();
    const following = {
      sleep: (ms: number) => pause(ctx, ms).then(() => undefined),
      sleepThrough: ctx.sleep,
      stopped: () => Boolean(ctx.signal?.aborted),
      note: ctx.note,
      onStage: (stage: MigrationTaskStage) => {
        progress.task = stage;
        if (stage.stage !== 'running') return;
        // Its ARN is what the operator follows it by, if this command cannot any more.
        ctx.print(`  migration task ${stage.taskArn} started`);
        // And what the lock records while the task is followed (not awaited: the follow-up starts
        // at once): "rollback status" and a refused command name the task to check before unlock --force.
        taskRecorded = recordLockTask(ctx.deps.doc, ctx.settings.tableName, service.serviceName, owner, stage.taskArn).then(
          () => undefined,
          (error: unknown) => ctx.print(`warning: the lock of ${service.serviceName} does not record the migration task (${namedLine(error)}): the task to check before "rollback unlock --force" is ${stage.taskArn}`),
        );
      },
    };
    // Why no task could be run, for the last line's exit code: a missing or expired login is 2.
    let notRun: OperatorError | undefined;
    const task = await runMigrationTask({ ...ctx.deps, ...following }, ctx.settings, taskDefinition, revision).catch((error: unknown): MigrationTaskResult => {
      notRun = asOperatorError(error);
      return { taskArn: null, exitCode: null, stoppedReason: `could not run or follow the migration task: ${oneLine(error)}`, startedAt: null, stoppedAt: null };
    });
    await taskRecorded;
    progress.task = { stage: 'ended', result: task };
    keepLock = task.abandoned?.stopped === false || Boolean(task.unanswered);
    const keep = stillServed
      ? `kept in maintenance: ${service.serviceName} still runs ${current}, which must not serve on the schema at ${revision}; once "${rollbackFirst}" has rolled it back, restore it: ${restoreKillswitchCommand(preparation.killswitchSet?.previous ?? null, nowOf(ctx.deps), ctx.settings.environmentName)}`
      : undefined;
    const result = await finishDowngrade(ctx.deps, ctx.settings, preparation, task, { group: release.logGroup, prefix: release.logStreamPrefix }, keep);
    const summary = `${service.serviceName}: migration downgrade to ${revision} by ${actor}: ${result.detail}`;
    // Where the schema now is, for what "rollback service" and its page say of it (schemaHead).
    if (result.ok) {
      const record = { service: service.serviceName, revision, at: nowOf(ctx.deps).toISOString(), by: actor, run, taskDefinition, servedBy: current };
      await recordSchemaDowngrade(ctx.deps.doc, ctx.settings.tableName, record).catch((error: unknown) =>
        ctx.print(`warning: the schema's revision (${revision}) was not recorded (${namedLine(error)}): "rollback service" will take it to be its release's head`),
      );
    }
    const killswitchLine = result.ok && !stillServed && !preparation.killswitchSet ? ((await staleDowngradeMaintenance(ctx, current, revision)) ?? result.killswitch) : result.killswitch;
    const lines = [summary, `Logs: ${result.logStream ?? 'n/a'}`, `Killswitch: ${killswitchLine}`, preparation.snapshotId ? `Snapshot: ${preparation.snapshotId}` : `PITR point: ${preparation.pitr?.restoreTo}`];
    // The monthly staging drill reads its time here: the task's own run, from its start to its stop.
    if (result.ok) lines.push(`downgraded in ${formatSeconds(result.durationSeconds)} (runbook objective: ${formatSeconds(DOWNGRADE_OBJECTIVE_SECONDS)})`);
    // What was done is printed before anything else can fail.
    for (const line of lines) ctx.print(line);
    const notTold = await ctx.deps.sns
      .send(new PublishCommand({ TopicArn: ctx.settings.topicArn, Subject: `[atmr-dr] ${result.ok ? '' : 'ACTION NEEDED: '}migration downgrade ${ctx.settings.environmentName}`.slice(0, 100), Message: lines.join('\n') }))
      .then(() => '', notToldLine);
    // The event feeds the timeline; its failure is a warning, never the command's last line (which
    // says whether the downgrade worked and the killswitch stays in maintenance).
    await (ctx.deps.events as EventBridgeClient)
      .send(
        new PutEventsCommand({ Entries: [{ Source: EVENT_SOURCE, DetailType: 'Migration Downgrade Finished', Detail: JSON.stringify({ summary, at: new Date().toISOString(), actor: actor || BACKOUT_ACTOR, revision, ...result }) }] }),
      )
      .catch((error: unknown) => ctx.print(`warning: the Migration Downgrade Finished event was not sent: ${namedLine(error)}`));
    if (result.ok && notTold) throw new OperatorError(`rollback: migration downgrade done${notTold}`, 1);
    if (task.unanswered) {
      throw new OperatorError(
        `rollback: a migration task may have been started (RunTask got no answer: ${task.unanswered.why}): ${lookForTask(ctx.settings.clusterName)}; the killswitch stays in maintenance; the lock stays held until ${until} so that no second downgrade starts; once no migration task runs, ${unlock} releases it${notTold}`,
        1,
      );
    }
    if (keepLock) {
      throw new OperatorError(
        `rollback: the migration task ${task.taskArn} may still be running (${task.stoppedReason}): ${followTask(ctx.settings.clusterName, String(task.taskArn))}; the killswitch stays in maintenance; the lock stays held until ${until} so that no second downgrade starts; once the task has stopped, ${unlock} releases it${notTold}`,
        1,
      );
    }
    if (ctx.signal?.aborted && !result.ok && task.taskArn === null) {
      throw new OperatorError(`rollback: interrupted before the migration task started: the schema is unchanged; the killswitch stays in maintenance (\`${killswitchDisableCommand(undefined, ctx.settings.environmentName)}\` once the API may serve again); the lock is released${notTold}`, 1);
    }
    const stopped = `(StopTask; exit code ${result.exitCode ?? 'none'})`;
    // A downgrade that did not end well: what the on-call does next, in order, ready to paste.
    const nextSteps = `; next: ${failedDowngradeNextSteps(ctx.settings, service.serviceName, revision, taskDefinition, preparation, nowOf(ctx.deps))}`;
    if (ctx.signal?.aborted && !result.ok && task.abandoned) {
      throw new OperatorError(
        `rollback: interrupted while following the migration task ${task.taskArn}: atmr-dr stopped it ${stopped} so that no downgrade runs unattended; the schema may be between two releases: the killswitch stays in maintenance; the lock is released${nextSteps}${notTold}`,
        1,
      );
    }
    if (!result.ok && task.abandoned) {
      throw new OperatorError(
        `rollback: migration downgrade ${task.abandoned.why}: atmr-dr stopped its task ${task.taskArn} ${stopped}; the schema may be between two releases: the killswitch stays in maintenance; read ${result.logStream ?? 'the task logs'}; the lock is released${nextSteps}${notTold}`,
        1,
      );
    }
    // No task (ECS refused it, or RunTask was never sent): there are no task logs, and the reason is what to fix.
    if (!result.ok && task.taskArn === null) {
      throw new OperatorError(
        `rollback: migration downgrade failed (exit code none): the killswitch stays in maintenance; no migration task was started (${task.stoppedReason ?? 'no reason given'}), the schema is unchanged; the lock is released${notTold}`,
        notRun?.exitCode ?? 1,
      );
    }
    if (!result.ok) throw new OperatorError(`rollback: migration downgrade failed (exit code ${result.exitCode ?? 'none'}${result.stopReason ? `: ${result.stopReason}` : ''}): the killswitch stays in maintenance; read ${result.logStream ?? 'the task logs'}; the lock is released${nextSteps}${notTold}`, 1);
  } catch (error) {
    failure = { error };
  }
  if (!keepLock) {
    lock.state = 'releasing';
    try {
      await releaseLock(ctx.deps.doc, ctx.settings.tableName, service.serviceName, owner);
      lock.state = 'released';
    } catch (error) {
      // The lock is held until it expires: the last line keeps the command's outcome and ends with
      // the command that releases the lock (--force: no downgrade task runs, it stopped or never started).
      throw withLockLeft(failure, lockNotReleasedLine(service.serviceName, owner, namedLine(error), ctx.settings.environmentName, true));
    }
  }
  if (failure) throw failure.error;
}

/**
 * The command's outcome (its error, or none: the downgrade is done) with `lockLeft` in its one line.
 * A line that said the lock is released says instead that it could not be.
 */
function withLockLeft(failure: { readonly error: unknown } | undefined, lockLeft: string): OperatorError {
  if (!failure) return new OperatorError(`rollback: migration downgrade done, but ${lockLeft}`, 1);
  const original = failure.error;
  // An SDK error keeps what the CLI would have said of it alone: its fix and its exit code (a
  // missing or expired login is 2, as without the lock).
  if (!(original instanceof OperatorError)) {
    const said = asOperatorError(original);
    return new OperatorError(`rollback: ${said.message}; ${lockLeft}`, said.exitCode);
  }
  const said = original.message.includes('the lock is released') ? original.message.replace('the lock is released', lockLeft) : `${original.message}; ${lockLeft}`;
  return new OperatorError(said, original.exitCode);
}

/** The rollback history's outcome of a lock released by `rollback unlock`. */
const UNLOCKED_OUTCOME = 'unlocked';

export interface UnlockOptions {
  readonly service: string;
  /** The owner of the lock as `rollback status` shows it: the lock the operator means, and no other. */
  readonly owner: string;
  readonly force?: boolean;
}


/**
 * Releases a rollback lock that nothing else will release before it expires (a command killed, a
 * release that failed), which until then refuses every rollback of the service, the automatic one
 * included. Only the lock of `--owner`, by a conditional delete: a lock taken again since the
 * operator read its owner is never released by mistake.
 */
export async function unlockCommand(ctx: RollbackCliContext, options: UnlockOptions): Promise<void> {
  const service = findService(ctx.settings, options.service).serviceName;
  const { doc } = ctx.deps;
  const table = ctx.settings.tableName;
  const now = nowOf(ctx.deps);
  const lock = await readLock(doc, table, service, now);
  if (!lock) {
    ctx.print(`${service}: no rollback lock is held: nothing to do`);
    return;
  }
  if (lock.owner !== options.owner) {
    throw new OperatorError(`rollback unlock: the lock of ${service} is held by ${lock.owner} (${lock.reason}, since ${lock.acquiredAt}), not by ${options.owner}: ${waitOrUnlock(ctx.settings, service, lock)}; nothing changed`, 3);
  }
  if (!options.force && mayCoverDowngrade(lock, ctx.settings, service)) {
    const cluster = ctx.settings.clusterName;
    const taskArn = lock.holder?.kind === 'migration-downgrade' ? lock.holder.taskArn : undefined;
    if (taskArn) {
      throw new OperatorError(
        `rollback unlock: the lock of ${service} (${lock.reason}, since ${lock.acquiredAt}) covers the migration downgrade task ${taskArn}, which may still be running, and releasing it lets a second "flask db downgrade" start: check that "aws ecs describe-tasks --cluster ${cluster} --tasks ${taskArn}" shows it STOPPED, then pass --force; nothing changed`,
        2,
      );
    }
    throw new OperatorError(
      `rollback unlock: the lock of ${service} (${lock.reason}, since ${lock.acquiredAt}) may cover a migration downgrade task still running, and releasing it lets a second "flask db downgrade" start: check that "aws ecs list-tasks --cluster ${cluster} --started-by ${MIGRATION_STARTED_BY}" lists no task and that none listed with --desired-status STOPPED is still RUNNING ("aws ecs describe-tasks --cluster ${cluster} --tasks ARN"), then pass --force; nothing changed`,
      2,
    );
  }
  const actor = await ctx.actor();
  if (!(await releaseLock(doc, table, service, lock.owner))) {
    // Refused: another rollback took the lock since it was read, or it is gone (expired, released).
    const again = await readLock(doc, table, service, nowOf(ctx.deps));
    if (again) throw new OperatorError(`rollback unlock: the lock of ${service} was taken again by ${again.owner} (${again.reason}, since ${again.acquiredAt}): ${waitOrUnlock(ctx.settings, service, again)}; nothing changed`, 3);
    ctx.print(`${service}: the lock of ${lock.owner} is gone (it expired or was released meanwhile): nothing to do`);
    return;
  }
  const summary = `${service}: lock of ${lock.owner} (${lock.reason}, since ${lock.acquiredAt}) released by hand by ${actor}`;
  ctx.print(summary);
  // Who released it, beside the rollbacks in "rollback status"; the lock is released whatever this does.
  await recordRollback(doc, table, {
    service,
    owner: lock.owner,
    at: now.toISOString(),
    outcome: UNLOCKED_OUTCOME,
    summary,
    fromTaskDefinition: null,
    toTaskDefinition: null,
    trigger: `manual: ${actor}`,
    seconds: null,
  }).catch((error: unknown) => ctx.print(`warning: the release was not recorded in the rollback history: ${namedLine(error)}`));
}

/**
 * ECS's answer that the cluster or the service does not exist: without --env, the line says it was
 * looked for in cdk.json's default environment, and which others there are (notFoundHint), unless
 * the operator named what was not found. A service is looked for in a cluster, and either name may be
 * the default environment's: no hint only when both were named, the cluster by --cluster or
 * ATMR_ECS_CLUSTER, the service by --service, or by ATMR_API_SERVICE when it is the API (a worker's
 * name always comes from cdk.json; ECS's failure names the service in its ARN, and the variable may
 * hold a name or an ARN). ECS's "Cluster not found." names no cluster: `cluster`, the name used and
 * where it came from (defaultContext), makes it a line naming both and the flag that fixes it.
 */
function ecsNotFoundHint(error: unknown, globals: GlobalOptions, cluster: { value: string; from: string } | undefined, serviceFlag?: string): unknown {
  const cause = error instanceof OperatorError ? error.cause : error;
  const apiVariable = process.env.ATMR_API_SERVICE;
  const missing = (cause as { arn?: unknown } | undefined)?.arn;
  // No ARN (ServiceNotFoundException): the command's own service, the API without --service.
  const serviceNamed = Boolean(serviceFlag) || (Boolean(apiVariable) && (typeof missing !== 'string' || missing.split('/').pop() === apiVariable?.split('/').pop()));
  // A service no flag nor variable named: the hint whatever named the cluster (no variable read).
  const options = isServiceNotFound(cause) && !serviceNamed ? { env: {} } : { flagValue: globals.cluster };
  const resolved = (cause as { name?: unknown } | undefined)?.name === 'ClusterNotFoundException' ? cluster : undefined;
  return notFoundHint(error, DEPLOYED_NAMES.ecsCluster, { ...options, envName: globals.env, resolved });
}

/**
 * The API service as every rollback subcommand's help names it: each resolves its name
 * (defaultContext), the default service of `service`, one of those `status` and `unlock` accept, and
 * the release `migration` runs its downgrade from; a variable left set from another environment
 * changes all four.
 */
const API_SERVICE_HELP = `the API, named by $${DEPLOYED_NAMES.apiService.envVar}, else the Ops stack output, else the config`;

/** `atmr-dr rollback status|service|migration|unlock`. */
export function registerRollbackCommands(program: Command, makeContext: typeof defaultContext = defaultContext): void {
  const rollback = program
    .command('rollback')
    .description('the backout: last known good, rollbacks and migration downgrades (same code as the automatic path)')
    .option('--env <name>', `cdk.json environment (default: ${ENV_DEFAULT})`, envNameValue)
    .option('--cluster <name>', 'ECS cluster (default: $ATMR_ECS_CLUSTER, the Ops stack output, the config)', deployedNameValue(DEPLOYED_NAMES.ecsCluster))
    .option('--table <name>', 'ops-state table (default: $ATMR_OPS_TABLE, the Data stack output)', deployedNameValue(DEPLOYED_NAMES.opsTable))
    .option('--topic <arn>', 'incidents topic (default: $ATMR_INCIDENTS_TOPIC, the Ops stack output)', deployedNameValue(DEPLOYED_NAMES.incidentsTopic))
    .option('--parameter <name>', 'killswitch parameter (default: $KILLSWITCH_PARAMETER, the Data stack output, the config)', deployedNameValue(DEPLOYED_NAMES.killswitchParameter));
  const globals = () => rollback.opts<GlobalOptions>();

  rollback
    .command('status')
    .description('current task definition, last known good and its age, lock, last rollbacks')
    .option('--service <name>', `one service (default: every configured service: ${API_SERVICE_HELP}; the workers, by the config)`, namedValue('--service', 'give the ECS service name, or leave --service out for every configured service'))
    .option('--json', 'print JSON')
    .action(async (opts: { service?: string; json?: boolean }) => {
      const ctx = await makeContext(globals(), opts.service, true);
      const services = opts.service ? [findService(ctx.settings, opts.service).serviceName] : [ctx.settings.api.serviceName, ...ctx.settings.workers.map((w) => w.serviceName)];
      // Not a context's name: a killswitch parameter that cannot be named costs the status one line.
      const killswitch = await resolveDeployedName(DEPLOYED_NAMES.killswitchParameter, { flagValue: globals().parameter, envName: globals().env }).then(
        (parameterName): StatusKillswitch => ({ parameterName, flag: globals().parameter !== undefined }),
        (error: unknown): StatusKillswitch => ({ unresolved: oneLine(error) }),
      );
      await statusCommand(ctx, services, Boolean(opts.json), killswitch).catch((error: unknown) => {
        throw ecsNotFoundHint(error, globals(), ctx.cluster, opts.service);
      });
    });

  rollback
    .command('service')
    .description('roll a service back to its last known good (or --to), with the same lock as the automatic path')
    .option('--service <name>', `service (default: ${API_SERVICE_HELP})`, namedValue('--service', 'give the ECS service name, or leave --service out to roll back the API'))
    .option('--to <taskDefinitionArn>', 'target task definition (default: the last known good)', namedValue('--to', 'give the task definition ARN to roll back to, or leave --to out to roll back to the last known good'))
    .option('--dry-run', 'print what would be done, change nothing')
    .option('--yes', 'do not ask for confirmation')
    .option('--wait', 'wait for steady state and run the post-rollback checks')
    .action(async (opts: { service?: string; to?: string; dryRun?: boolean; yes?: boolean; wait?: boolean }) => {
      // A dry run changes nothing: --yes (confirm a change) or --wait (follow it) with it means the
      // operator meant one of the two, and the command cannot tell which.
      const withDryRun = [opts.yes && '--yes', opts.wait && '--wait'].filter(Boolean);
      if (opts.dryRun && withDryRun.length) {
        throw new OperatorError(`rollback service: --dry-run changes nothing, so ${withDryRun.join(' and ')} cannot apply: drop --dry-run to roll back, or drop ${withDryRun.join(' and ')} to see the plan`, 2);
      }
      const ctx = await makeContext(globals(), opts.service);
      await interruptibly((signal) => serviceCommand({ ...ctx, signal }, { service: ctx.serviceName, to: opts.to, dryRun: opts.dryRun, yes: opts.yes, wait: opts.wait })).catch((error: unknown) => {
        throw ecsNotFoundHint(error, globals(), ctx.cluster, opts.service);
      });
    });

  rollback
    .command('migration')
    .description(
      "flask db downgrade REVISION in the failing release's image (snapshot or PITR point first); maintenance while it runs, kept after it while the service still runs that release (run rollback service first)",
    )
    .requiredOption('--to <revision>', 'Alembic revision to go back to, never a relative step like -1')
    .option('--task-definition <taskDefinitionArn>', `the release whose image runs the downgrade: the one rolled back from, as the rollback advises (default: the current task definition of ${API_SERVICE_HELP})`, namedValue('--task-definition', 'give the task definition ARN of the release rolled back from, or leave --task-definition out to use the one the API runs'))
    .option('--dry-run', 'print what would be done, change nothing')
    .option('--yes', 'do not ask for confirmation')
    .action(async (opts: { to: string; taskDefinition?: string; yes?: boolean; dryRun?: boolean }) => {
      parseRevision(opts.to);
      // As rollback service: --yes confirms a change that a dry run does not make.
      if (opts.dryRun && opts.yes) throw new OperatorError('rollback migration: --dry-run changes nothing, so --yes cannot apply: drop --dry-run to downgrade, or drop --yes to see the plan', 2);
      const ctx = await makeContext(globals());
      // A second Ctrl-C while the first one stops the task (up to 150 s): what is left, as far as it got.
      const progress: MigrationProgress = {};
      await interruptibly(
        (signal) => migrationCommand({ ...ctx, signal }, opts, progress),
        () => migrationLeft(progress, ctx.settings),
      ).catch((error: unknown) => {
        throw ecsNotFoundHint(error, globals(), ctx.cluster);
      });
    });

  rollback
    .command('unlock')
    .description('release a rollback lock that nothing else will release before it expires (a command killed, a release that failed)')
    // Both required: an unlock must name the lock it releases, never fall back to the API's.
    .option('--service <name>', `(required) ECS service whose lock to release, as "rollback status" names it (${API_SERVICE_HELP}; a worker, by the config)`)
    .option('--owner <id>', '(required) owner of the lock, as "rollback status --service NAME" shows it (lock: held by ID)')
    .option('--force', 'release a migration downgrade\'s lock once its task has stopped')
    .action(async (opts: { service?: string; owner?: string; force?: boolean }) => {
      // Checked before anything is resolved: the fix names where the owner is read.
      for (const [flag, value] of [['--service', opts.service], ['--owner', opts.owner]] as const) {
        if (!value?.trim()) {
          throw new OperatorError(`rollback unlock: ${flag} is missing: pass --service NAME --owner ID, the owner as "${OPERATOR_CLI} rollback status --service NAME" shows it (lock: held by ID)`, 2);
        }
      }
      // Reads and deletes in the ops-state table only; like status, it needs no topic nor killswitch.
      const ctx = await makeContext(globals(), opts.service, true);
      await unlockCommand(ctx, { service: ctx.serviceName, owner: String(opts.owner).trim(), force: opts.force });
    });
}
