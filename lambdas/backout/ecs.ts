import {
  DescribeServicesCommand,
  DescribeTaskDefinitionCommand,
  DescribeTasksCommand,
  ECSClient,
  ListTasksCommand,
  paginateListTasks,
  RegisterTaskDefinitionCommand,
  RegisterTaskDefinitionCommandInput,
  Service,
  TaskDefinition,
  UpdateServiceCommand,
} from '@aws-sdk/client-ecs';
import { MISSING_SETTING_EXIT_CODE, missingAwsSetting, refusedWithoutEffect } from '../shared/aws-errors';
import { OperatorError } from '../shared/errors';
import { rollbackServiceCommand, rollbackStatusCommand } from './revision';
import { BackoutServiceSettings, BackoutSettings } from './settings';

/** What a release is, as far as a rollback cares. */
export interface ReleaseInfo {
  readonly taskDefinitionArn: string;
  readonly family: string;
  readonly images: string[];
  readonly alembicHead: string | null;
  /** awslogs settings of the API container (to name a migration task's log stream). */
  readonly logGroup: string | null;
  readonly logStreamPrefix: string | null;
  /** The task definition this one is a copy of, pinned to the digests that one ran (pinToRecordedDigests). */
  readonly pinnedFrom?: string;
  /** ECS's status of the revision: ACTIVE, or INACTIVE once deregistered (inactiveTargetLine). */
  readonly status?: string;
}

/**
 * `arn:aws:ecs:...:task-definition/<family>:<revision>`, or `<family>:<revision>` as ECS takes it
 * everywhere (describeRelease resolves it to the ARN) -> family. A family alone is refused: ECS
 * would take its newest revision, which may be the very release being rolled away from.
 */
export function taskDefinitionFamily(arn: string): string {
  const match = /task-definition\/([^:]+):\d+$/.exec(arn) ?? /^([A-Za-z0-9_-]{1,255}):\d+$/.exec(arn);
  if (!match) throw new OperatorError(`backout: "${arn}" is not a task definition: give its ARN (arn:aws:ecs:<region>:<account>:task-definition/<family>:<revision>) or <family>:<revision>`, 2);
  return match[1];
}

export async function describeService(ecs: ECSClient, settings: Pick<BackoutSettings, 'clusterName'>, serviceName: string): Promise<Service> {
  const output = await ecs.send(new DescribeServicesCommand({ cluster: settings.clusterName, services: [serviceName] }));
  const service = output.services?.[0];
  if (!service || service.status === 'INACTIVE') {
    // ECS's failure (MISSING: no such service in the cluster), or the deleted service it describes
    // (INACTIVE), is the cause, as an error would be: the CLI says which environment named it (notFoundHint).
    const failure = output.failures?.[0] ?? (service && { arn: service.serviceArn, reason: service.status });
    const reason = failure?.reason ?? 'not found';
    throw new OperatorError(`backout: ECS service ${serviceName} in cluster ${settings.clusterName}: ${reason}; check backout.clusterName and the service name`, 2, { cause: failure });
  }
  return service;
}

/** The task definition the service is set to run (its PRIMARY deployment). */
export function currentTaskDefinition(service: Service): string {
  const primary = service.deployments?.find((d) => d.status === 'PRIMARY');
  const arn = primary?.taskDefinition ?? service.taskDefinition;
  if (!arn) throw new OperatorError(`backout: ECS service ${service.serviceName} has no task definition`, 1);
  return arn;
}

/**
 * The primary deployment while ECS has not COMPLETED it (IN_PROGRESS, or FAILED with its reason),
 * and the releases of the other deployments still running tasks beside it: the service is set to run
 * the primary's release, but does not run it yet, or only in part.
 */
export interface PrimaryRollout {
  readonly state: string;
  readonly reason: string | null;
  readonly running: number;
  readonly desired: number;
  readonly serving: { readonly taskDefinition: string; readonly running: number }[];
}

/**
 * The schema's revision while `service` runs `release`: the one the last downgrade that worked
 * reached (`downgrade`) while the service ran that same release and no deployment of it was created
 * since (its own migrations would move the schema), else the head the release declares.
 */
export function schemaHead(service: Service, release: ReleaseInfo, downgrade: { readonly revision: string; readonly at: string; readonly servedBy: string } | null): string | null {
  const primary = service.deployments?.find((d) => d.status === 'PRIMARY');
  const redeployed = primary?.createdAt && downgrade && primary.createdAt.getTime() > Date.parse(downgrade.at);
  return downgrade && downgrade.servedBy === release.taskDefinitionArn && !redeployed ? downgrade.revision : release.alembicHead;
}

/** Null once ECS has COMPLETED the primary deployment, or when it reports no rollout state (a deployment controller other than ECS's). */
export function primaryRollout(service: Service): PrimaryRollout | null {
  const deployments = service.deployments ?? [];
  const primary = deployments.find((d) => d.status === 'PRIMARY');
  if (!primary?.rolloutState || primary.rolloutState === 'COMPLETED') return null;
  const serving = deployments.filter((d) => d !== primary && (d.runningCount ?? 0) > 0).map((d) => ({ taskDefinition: d.taskDefinition ?? 'unknown', running: d.runningCount ?? 0 }));
  const reason = primary.rolloutState === 'FAILED' ? (primary.rolloutStateReason ?? null) : null;
  return { state: primary.rolloutState, reason, running: primary.runningCount ?? 0, desired: primary.desiredCount ?? 0, serving };
}

/**
 * A PRIMARY deployment whose release may not be the one the alarm is about: ECS still rolls it out
 * while a release other than the rollback target runs beside it (a fix deployed while the bad release
 * fails, or ECS's circuit breaker rolling back to an unbaked release), or it was created after the
 * breach that raised the alarm began (the errors then began under the release it replaced). Rolling
 * back "from" the primary would claim and pin the wrong release. A rollout from the target itself
 * (the bad release replacing the last known good) is not one: the primary is then the only suspect.
 */
export interface UnderwayDeployment {
  readonly taskDefinitionArn: string;
  readonly createdAt: string | null;
  readonly inProgress: boolean;
  /** The releases of the service's other deployments, those the primary replaces. */
  readonly replacing: string[];
}

export function deploymentUnderway(service: Service, targetTaskDefinition: string, breachStart: Date | null): UnderwayDeployment | null {
  const deployments = service.deployments ?? [];
  const primary = deployments.find((d) => d.status === 'PRIMARY');
  if (!primary?.taskDefinition) return null;
  const replacing = [...new Set(deployments.filter((d) => d !== primary && d.taskDefinition && d.taskDefinition !== primary.taskDefinition).map((d) => d.taskDefinition as string))];
  const inProgress = primary.rolloutState === 'IN_PROGRESS' && replacing.some((arn) => arn !== targetTaskDefinition);
  const afterBreach = Boolean(breachStart && primary.createdAt && primary.createdAt.getTime() > breachStart.getTime());
  if (!inProgress && !afterBreach) return null;
  return { taskDefinitionArn: primary.taskDefinition, createdAt: primary.createdAt?.toISOString() ?? null, inProgress: primary.rolloutState === 'IN_PROGRESS', replacing };
}

/** What a rollback racing an underway deployment is told: which releases the alarm may be about, and the command that decides. */
export function underwayLine(serviceName: string, underway: UnderwayDeployment, target: string | null, environmentName: string): string {
  const started = underway.createdAt ?? 'unknown time';
  const what = underway.inProgress ? `a deployment of ${underway.taskDefinitionArn} is in progress (started ${started})` : `a deployment of ${underway.taskDefinitionArn} started at ${started}, after the breach that raised the alarm began`;
  const before = underway.replacing.length ? underway.replacing.join(', ') : 'the release it replaced';
  // The deployment under way IS the rollback target (ECS's circuit breaker rolling back to it, or a
  // redeploy of it): "--to" it would be refused as already running; waiting for ECS is the advice.
  if (underway.inProgress && underway.taskDefinitionArn === target) {
    return `${what}, replacing ${before}: ECS is already rolling ${serviceName} back to its rollback target (its circuit breaker, or a deploy of it): wait for that deployment to finish ("${rollbackStatusCommand(serviceName, environmentName)}" shows it running ${target}); if ECS marks it FAILED, it stays in progress, or the API still fails once it is done, ${target} fails too: decide by hand, with the last known good before it that rollback status then names, or "${rollbackServiceCommand(serviceName, environmentName, 'TASK_DEF_ARN')}"`;
  }
  return `${what}; the alarm may be about ${before} or ${underway.taskDefinitionArn}: decide by hand: ${rollbackServiceCommand(serviceName, environmentName, target ?? 'TASK_DEF_ARN')}`;
}

export async function describeRelease(ecs: ECSClient, settings: Pick<BackoutSettings, 'alembicHead'>, taskDefinitionArn: string, containerName: string): Promise<ReleaseInfo> {
  const output = await ecs.send(new DescribeTaskDefinitionCommand({ taskDefinition: taskDefinitionArn, include: ['TAGS'] }));
  const definition = output.taskDefinition as TaskDefinition;
  const containers = definition.containerDefinitions ?? [];
  const main = containers.find((c) => c.name === containerName) ?? containers[0];
  let alembicHead: string | null = null;
  if (settings.alembicHead.from === 'environment') {
    alembicHead = main?.environment?.find((e) => e.name === settings.alembicHead.name)?.value ?? null;
  } else {
    alembicHead = output.tags?.find((t) => t.key === settings.alembicHead.name)?.value ?? null;
  }
  const logOptions = main?.logConfiguration?.logDriver === 'awslogs' ? main.logConfiguration.options : undefined;
  return {
    taskDefinitionArn: definition.taskDefinitionArn ?? taskDefinitionArn,
    family: definition.family ?? taskDefinitionFamily(taskDefinitionArn),
    images: containers.map((c) => c.image ?? '').filter(Boolean),
    alembicHead,
    logGroup: logOptions?.['awslogs-group'] ?? null,
    logStreamPrefix: logOptions?.['awslogs-stream-prefix'] ?? null,
    ...pinnedFromTag(output.tags),
    ...(definition.status && { status: definition.status }),
  };
}

/**
 * Why a rollback cannot go to `release`, or null: ECS refuses UpdateService to a deregistered
 * (INACTIVE) revision ("TaskDefinition is inactive"). Found only at RollOut, after the snapshot, the
 * maintenance and the downgrade, that would leave the API in maintenance on a downgraded schema, so
 * both paths ask before they act. Not re-registered automatically: deregistering is a human's
 * decision (an image with a vulnerability, a leaked secret in its environment), and a rollback at
 * 3 a.m. must not undo it unseen; a by-digest release (what docs/backout.md advises) gets no pinned
 * copy either, so the copy pinToRecordedDigests makes is no way around it.
 */
export function inactiveTargetLine(release: Pick<ReleaseInfo, 'taskDefinitionArn' | 'family' | 'status'>, serviceName: string, environmentName: string): string | null {
  if (!release.status || release.status === 'ACTIVE') return null;
  return `the rollback target ${release.taskDefinitionArn} is ${release.status} (deregistered) and ECS refuses to deploy it: nothing was changed (no snapshot, no maintenance, no downgrade); re-register it (a new revision of ${release.family} with its containers) or choose an ACTIVE revision ("aws ecs list-task-definitions --family-prefix ${release.family} --status ACTIVE --sort DESC"), and run "${rollbackServiceCommand(serviceName, environmentName, 'TASK_DEF_ARN')}"`;
}

/** The tag a pinned copy carries: what it is a copy of, for the guards to see it as that release. */
export const PINNED_FROM_TAG = 'atmr-dr:pinned-from';
/** The tag naming the rollback (its lock owner) that registered a pinned copy: what a retry of its RollOut looks for. */
export const PINNED_BY_TAG = 'atmr-dr:pinned-by';

function pinnedFromTag(tags: { key?: string; value?: string }[] | undefined): { pinnedFrom?: string } {
  const value = tags?.find((t) => t.key === PINNED_FROM_TAG)?.value;
  return value ? { pinnedFrom: value } : {};
}

/** `host[:port]/path[:tag][@digest]` -> `host[:port]/path` (a tag's ':' comes after the last '/', a port's before). */
export function imageRepository(image: string): string {
  const name = image.split('@')[0];
  const colon = name.lastIndexOf(':');
  return colon > name.lastIndexOf('/') ? name.slice(0, colon) : name;
}

export const isDigestReference = (image: string) => /@sha256:[0-9a-f]+$/i.test(image);

export type ImagePin =
  /** A new revision of the family, its tag-named images replaced by the recorded digests (`unpinned`: those with no single digest recorded). */
  | { readonly kind: 'pinned'; readonly taskDefinitionArn: string; readonly images: string[]; readonly unpinned: string[] }
  /** Every image is already named by digest: ECS pulls exactly those. */
  | { readonly kind: 'by-digest' }
  /** Named by tag, and no digest of those repositories is recorded: ECS pulls what the tags name now. */
  | { readonly kind: 'no-digests'; readonly tagged: string[] };

/**
 * ECS resolves an image tag to a digest at each deployment, so a rollback to a task definition that
 * names `:latest` or `:prod` pulls what the tag names NOW, the bad image when the release retagged it:
 * the rollback would "succeed" and restore nothing. When the last-known-good record holds the digests
 * its tasks ran (runningImageDigests, at the bake), this registers a new revision of the family,
 * copied field for field (the registrable ones) with those digests, and tagged PINNED_FROM_TAG with
 * the original so that the guards treat the copy as that release, and PINNED_BY_TAG with `rollback`
 * (the rollback's lock owner): a retried step reuses the copy its first attempt registered.
 */
export async function pinToRecordedDigests(ecs: ECSClient, taskDefinitionArn: string, recorded: readonly string[], rollback: string): Promise<ImagePin> {
  const output = await ecs.send(new DescribeTaskDefinitionCommand({ taskDefinition: taskDefinitionArn, include: ['TAGS'] }));
  const definition = output.taskDefinition as TaskDefinition;
  const containers = definition.containerDefinitions ?? [];
  const tagged = containers.map((c) => c.image ?? '').filter((image) => image && !isDigestReference(image));
  if (!tagged.length) return { kind: 'by-digest' };
  const digestsOf = new Map<string, string[]>();
  for (const image of recorded.filter(isDigestReference)) digestsOf.set(imageRepository(image), [...(digestsOf.get(imageRepository(image)) ?? []), image]);
  const unpinned: string[] = [];
  const pinnedContainers = containers.map((container) => {
    const image = container.image ?? '';
    if (!image || isDigestReference(image)) return container;
    const digests = digestsOf.get(imageRepository(image)) ?? [];
    // Two digests for one repository (the tag moved while the tasks started, or two containers
    // of one repository): which one this container ran is unknown, so it is left as it is.
    if (digests.length !== 1) {
      unpinned.push(image);
      return container;
    }
    return { ...container, image: digests[0] };
  });
  if (unpinned.length === tagged.length) return { kind: 'no-digests', tagged };
  const family = definition.family ?? taskDefinitionFamily(taskDefinitionArn);
  // A RollOut retried after a Lambda timeout or a lost answer: the copy its first attempt registered
  // is the family's newest revision (DescribeTaskDefinition of a family names its latest ACTIVE one),
  // tagged with this rollback. Reused, the retry's UpdateService names the revision already being
  // deployed instead of starting another deployment to one more copy. A revision registered in between
  // (a pipeline) hides it, and one more identical copy is registered, as without this look-up.
  const newest = await ecs.send(new DescribeTaskDefinitionCommand({ taskDefinition: family, include: ['TAGS'] }));
  const newestTag = (key: string) => newest.tags?.find((t) => t.key === key)?.value;
  const newestArn = newest.taskDefinition?.taskDefinitionArn;
  if (newestArn && newestTag(PINNED_BY_TAG) === rollback && newestTag(PINNED_FROM_TAG) === taskDefinitionArn) {
    return { kind: 'pinned', taskDefinitionArn: newestArn, images: (newest.taskDefinition?.containerDefinitions ?? []).map((c) => c.image ?? '').filter(Boolean), unpinned };
  }
  const d = definition;
  const input: RegisterTaskDefinitionCommandInput = {
    family,
    taskRoleArn: d.taskRoleArn,
    executionRoleArn: d.executionRoleArn,
    networkMode: d.networkMode,
    containerDefinitions: pinnedContainers,
    volumes: d.volumes,
    placementConstraints: d.placementConstraints,
    requiresCompatibilities: d.requiresCompatibilities,
    cpu: d.cpu,
    memory: d.memory,
    pidMode: d.pidMode,
    ipcMode: d.ipcMode,
    proxyConfiguration: d.proxyConfiguration,
    inferenceAccelerators: d.inferenceAccelerators,
    ephemeralStorage: d.ephemeralStorage,
    runtimePlatform: d.runtimePlatform,
    enableFaultInjection: d.enableFaultInjection,
    // The release's own tags (an ALEMBIC_HEAD tag among them) except AWS's, which no caller may set.
    tags: [
      ...(output.tags ?? []).filter((t) => !t.key?.startsWith('aws:') && t.key !== PINNED_FROM_TAG && t.key !== PINNED_BY_TAG),
      { key: PINNED_FROM_TAG, value: taskDefinitionArn },
      { key: PINNED_BY_TAG, value: rollback },
    ],
  };
  const registered = await ecs.send(new RegisterTaskDefinitionCommand(input));
  const arn = registered.taskDefinition?.taskDefinitionArn;
  if (!arn) throw new Error(`RegisterTaskDefinition of ${input.family} returned no task definition ARN`);
  return { kind: 'pinned', taskDefinitionArn: arn, images: pinnedContainers.map((c) => c.image ?? '').filter(Boolean), unpinned };
}

/** Image digests the running tasks of a task definition actually pulled (the tag may have moved since). */
export async function runningImageDigests(ecs: ECSClient, settings: BackoutSettings, serviceName: string, taskDefinitionArn: string): Promise<string[]> {
  const { taskArns } = await ecs.send(new ListTasksCommand({ cluster: settings.clusterName, serviceName, desiredStatus: 'RUNNING' }));
  if (!taskArns?.length) return [];
  const { tasks } = await ecs.send(new DescribeTasksCommand({ cluster: settings.clusterName, tasks: taskArns.slice(0, 100) }));
  const digests = new Set<string>();
  for (const task of tasks ?? []) {
    if (task.taskDefinitionArn !== taskDefinitionArn) continue;
    for (const container of task.containers ?? []) if (container.imageDigest && container.image) digests.add(`${imageRepository(container.image)}@${container.imageDigest}`);
  }
  return [...digests].sort();
}

/** Refuses a target of another family: a rollback never swaps the API for another application. */
export function assertFamily(service: BackoutServiceSettings, taskDefinitionArn: string): void {
  const family = taskDefinitionFamily(taskDefinitionArn);
  if (family !== service.taskFamily) {
    throw new OperatorError(
      `backout: task definition ${taskDefinitionArn} is of family "${family}", service ${service.serviceName} runs "${service.taskFamily}": pass a revision of ${service.taskFamily}`,
      2,
    );
  }
}

export const ROLLBACK_NOT_STARTED = 'RollbackNotStarted';

/**
 * A rollback whose UpdateService ECS is known not to have accepted: never sent, or refused outright
 * (a 4xx such as AccessDenied, InvalidParameter, ClusterNotFound: refusedWithoutEffect). Its name is
 * the RollOut step's error as Step Functions reports it (a Lambda's error type is the error's name),
 * from which the report tells a rollout that changed nothing on ECS from one whose outcome is unknown
 * (a timeout or a 5xx on UpdateService, the Lambda timed out or killed): only the first gives the
 * release its once-per-release claim back.
 */
export class RollbackNotStarted extends OperatorError {
  override readonly name = ROLLBACK_NOT_STARTED;
}

export async function updateServiceTo(ecs: ECSClient, settings: BackoutSettings, serviceName: string, taskDefinitionArn: string): Promise<{ deploymentId: string | null }> {
  try {
    const { service } = await ecs.send(new UpdateServiceCommand({ cluster: settings.clusterName, service: serviceName, taskDefinition: taskDefinitionArn }));
    const primary = service?.deployments?.find((d) => d.status === 'PRIMARY');
    return { deploymentId: primary?.id ?? null };
  } catch (error) {
    const name = (error as { name?: string }).name ?? 'Error';
    // Refused for a missing or expired login (the CLI's credentials): a setting, exit 2, with its fix.
    const missing = missingAwsSetting(error);
    const what = `UpdateService of ${serviceName} to ${taskDefinitionArn} (${name}: ${(error as Error).message})${missing ? `: ${missing}` : ''}`;
    const exitCode = missing ? MISSING_SETTING_EXIT_CODE : 1;
    // A missing login never reaches ECS, and an expired one is refused by it: nothing was taken either way.
    if (missing || refusedWithoutEffect(error)) throw new RollbackNotStarted(`backout: ECS refused ${what}; nothing was rolled back`, exitCode);
    // A timeout, a 5xx, a throttle after earlier attempts: ECS may have taken one of them.
    throw new OperatorError(`backout: no answer says whether ECS accepted ${what}: ${serviceName} may be rolling back to ${taskDefinitionArn}`, exitCode);
  }
}

export type SteadyStatus = 'steady' | 'in-progress' | 'failed';

/** How ECS's deployment circuit breaker begins the reasons it gives (ECS guide, deployment state change events). */
const CIRCUIT_BREAKER = 'ECS deployment circuit breaker';

/**
 * Where the rollback deployment stands: steady when the primary deployment runs the target at the
 * desired count and is the only one; failed when ECS itself gave up (circuit breaker), or when
 * another deployment became primary. `deploymentId`, the rollback's own deployment (UpdateService's
 * answer), tells ECS's circuit breaker rolling the rollback back from someone else's deploy: ECS then
 * lists ours FAILED beside a new PRIMARY of the release it completed last (the failing one) whose
 * reason reads "ECS deployment circuit breaker: rolling back to deploymentId ...".
 */
export function deploymentStatus(service: Service, targetTaskDefinition: string, deploymentId: string | null = null): { status: SteadyStatus; detail: string } {
  const primary = service.deployments?.find((d) => d.status === 'PRIMARY');
  if (!primary || primary.taskDefinition !== targetTaskDefinition) {
    const runs = `the primary deployment runs ${primary?.taskDefinition ?? 'nothing'}, not ${targetTaskDefinition}`;
    const ours = deploymentId ? service.deployments?.find((d) => d.id === deploymentId) : undefined;
    const breaker = [ours?.rolloutState === 'FAILED' ? ours.rolloutStateReason : undefined, primary?.rolloutStateReason].filter((reason) => reason?.startsWith(CIRCUIT_BREAKER));
    if (breaker.length > 0) return { status: 'failed', detail: `ECS's circuit breaker rolled the rollback back: ${breaker.join('; ')}; ${runs}` };
    return { status: 'failed', detail: `${runs} (someone deployed meanwhile?)` };
  }
  if (primary.rolloutState === 'FAILED') return { status: 'failed', detail: `ECS marked the deployment FAILED: ${primary.rolloutStateReason ?? 'no reason given'}` };
  const others = (service.deployments ?? []).length - 1;
  const running = primary.runningCount ?? 0;
  const desired = primary.desiredCount ?? 0;
  if ((primary.rolloutState === 'COMPLETED' || primary.rolloutState === undefined) && others === 0 && running === desired) {
    return { status: 'steady', detail: `${running}/${desired} tasks running ${targetTaskDefinition}` };
  }
  return { status: 'in-progress', detail: `${running}/${desired} tasks running, ${others} older deployment(s) draining` };
}

/**
 * Tasks of the target release that stopped since the rollback began (a crash loop shows here).
 * Every page of ListTasks: ECS keeps stopped tasks for a while and documents no order, so the
 * target's could be past the first 100 after a crash loop of the release it replaced.
 */
export async function stoppedTasksSince(ecs: ECSClient, settings: BackoutSettings, serviceName: string, taskDefinitionArn: string, since: Date): Promise<string[]> {
  const taskArns: string[] = [];
  for await (const page of paginateListTasks({ client: ecs }, { cluster: settings.clusterName, serviceName, desiredStatus: 'STOPPED' })) taskArns.push(...(page.taskArns ?? []));
  const stopped: string[] = [];
  // DescribeTasks takes at most 100 tasks a call.
  for (let i = 0; i < taskArns.length; i += 100) {
    const { tasks } = await ecs.send(new DescribeTasksCommand({ cluster: settings.clusterName, tasks: taskArns.slice(i, i + 100) }));
    for (const t of tasks ?? []) {
      if (t.taskDefinitionArn === taskDefinitionArn && t.stoppingAt && t.stoppingAt.getTime() >= since.getTime()) stopped.push(`${t.taskArn?.split('/').pop()}: ${t.stoppedReason ?? 'stopped'}`);
    }
  }
  return stopped;
}
