import { nowOf } from '../shared/clock';
import type { Logger } from '@aws-lambda-powertools/logger';
import { CloudWatchClient } from '@aws-sdk/client-cloudwatch';
import { ECSClient } from '@aws-sdk/client-ecs';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { z } from 'zod';
import { oneLine } from '../shared/errors';
import { currentTaskDefinition, describeRelease, describeService, runningImageDigests } from './ecs';
import { configuredServices, BackoutSettings } from './settings';
import { alarmFiredSince } from './signals';
import { LastKnownGood, latestLastKnownGood, putLastKnownGood } from './state';

export interface LkgDeps {
  readonly ecs: ECSClient;
  readonly cloudwatch: CloudWatchClient;
  readonly doc: DynamoDBDocumentClient;
  readonly logger: Logger;
  readonly now?: () => Date;
  /** GET of readyUrl when the readiness alarm is not deployed. @default the global fetch */
  readonly fetch?: typeof fetch;
}

/** The ECS "deployment completed" event, as EventBridge delivers it. */
const DeploymentCompletedSchema = z.looseObject({
  source: z.literal('aws.ecs'),
  'detail-type': z.literal('ECS Deployment State Change'),
  time: z.iso.datetime({ offset: true }),
  resources: z.array(z.string()).min(1),
  detail: z.looseObject({ eventName: z.literal('SERVICE_DEPLOYMENT_COMPLETED'), deploymentId: z.string().min(1) }),
});

export type LkgOutcome =
  | { readonly recorded: true; readonly record: LastKnownGood }
  | { readonly recorded: false; readonly why: string };

/**
 * Runs after the bake (the workflow waits the bake time after ECS reported the deployment complete):
 * the release becomes the last known good when it is still the one deployed, steady, and no backout
 * alarm nor the API's readiness alarm went to ALARM since it completed. Foreign or malformed events
 * are logged and ignored.
 */
export async function recordAfterBake(deps: LkgDeps, settings: BackoutSettings, event: unknown): Promise<LkgOutcome> {
  const now = nowOf(deps);
  const parsed = DeploymentCompletedSchema.safeParse(event);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    deps.logger.warn('ignored: not an ECS deployment-completed event', { path: issue.path.join('.'), problem: issue.message });
    return { recorded: false, why: `not an ECS deployment-completed event (${issue.path.join('.')}: ${issue.message})` };
  }
  const serviceArn = parsed.data.resources[0];
  const serviceName = serviceArn.split('/').pop() ?? '';
  const clusterName = serviceArn.split('/').slice(-2, -1)[0];
  const service = configuredServices(settings).find((s) => s.serviceName === serviceName);
  if (!service || clusterName !== settings.clusterName) {
    deps.logger.warn('ignored: deployment of a service the backout does not watch', { serviceArn });
    return { recorded: false, why: `service ${serviceArn} is not configured for backout` };
  }

  const completedAt = new Date(parsed.data.time);
  const ecsService = await describeService(deps.ecs, settings, serviceName);
  const primary = ecsService.deployments?.find((d) => d.status === 'PRIMARY');
  if (!primary || primary.id !== parsed.data.detail.deploymentId) {
    return skip(deps, `deployment ${parsed.data.detail.deploymentId} is no longer the primary one (now ${primary?.id ?? 'none'})`);
  }
  if ((ecsService.deployments ?? []).length !== 1 || primary.rolloutState === 'FAILED') {
    return skip(deps, `service ${serviceName} is not steady (${ecsService.deployments?.length} deployments, rollout ${primary.rolloutState})`);
  }
  // The load balancer and ECS's circuit breaker check /health only, which a release that cannot
  // reach PostgreSQL or Redis still answers; with too few requests for the error-rate alarm (a night
  // deploy) only the readiness alarm sees it, and a rollback would then go to that release.
  // The readiness alarm keeps its state while the probe is silent (missing data ignored): a bake
  // during which the probe's silence alarms fired saw no /ready reading, and proves nothing.
  const readiness = settings.readinessAlarmName;
  const silence = readiness ? settings.probeSilenceAlarmNames : [];
  const watched = [settings.alarmNames.errorRate, settings.alarmNames.noHealthyHosts, ...(readiness ? [readiness] : []), ...silence];
  const fired = await alarmFiredSince(deps.cloudwatch, watched, completedAt, now);
  if (fired) {
    const why =
      readiness && fired.startsWith(readiness)
        ? ' (the API failed /ready: PostgreSQL or Redis unreachable)'
        : silence.some((name) => fired.startsWith(name))
          ? ' (the probe was silent: /ready went unchecked during the bake)'
          : '';
    return skip(deps, `bake failed: ${fired}${why}`);
  }
  if (!readiness) {
    const notReady = await readyAtEndOfBake(deps, settings.readyUrl);
    if (notReady) return skip(deps, `bake failed: ${notReady} at the end of the bake (no Health-ApiNotReady alarm to watch the whole bake: detection.probe.api is not configured)`);
  }

  const taskDefinitionArn = currentTaskDefinition(ecsService);
  const containerName = serviceName === settings.api.serviceName ? settings.api.containerName : '';
  const release = await describeRelease(deps.ecs, settings, taskDefinitionArn, containerName);
  const digests = await runningImageDigests(deps.ecs, settings, serviceName, taskDefinitionArn);
  const latest = await latestLastKnownGood(deps.doc, settings.tableName, serviceName);
  if (latest?.taskDefinitionArn === taskDefinitionArn) return skip(deps, `${taskDefinitionArn} is already the last known good`);

  const record: LastKnownGood = {
    service: serviceName,
    taskDefinitionArn,
    images: digests.length ? digests : release.images,
    alembicHead: release.alembicHead,
    deploymentId: primary.id ?? null,
    deployedAt: completedAt.toISOString(),
    recordedAt: now.toISOString(),
    // A rollback's pinned copy that baked: the page's "last known good before it" must skip its original.
    ...(release.pinnedFrom && { pinnedFrom: release.pinnedFrom }),
  };
  await putLastKnownGood(deps.doc, settings.tableName, record);
  deps.logger.info('last known good recorded', { ...record });
  return { recorded: true, record };
}

/** Why /ready is not 200 now, or null when it is. */
async function readyAtEndOfBake(deps: LkgDeps, readyUrl: string): Promise<string | null> {
  try {
    const response = await (deps.fetch ?? fetch)(readyUrl, { signal: AbortSignal.timeout(5000) });
    return response.status === 200 ? null : `GET ${readyUrl} answered ${response.status}`;
  } catch (error) {
    return `GET ${readyUrl} failed (${oneLine(error)})`;
  }
}

function skip(deps: LkgDeps, why: string): LkgOutcome {
  deps.logger.info('not recorded as last known good', { why });
  return { recorded: false, why };
}
