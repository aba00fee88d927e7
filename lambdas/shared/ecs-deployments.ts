import { DescribeServicesCommand, ECSClient, UpdateServiceCommand, type UpdateServiceCommandOutput } from '@aws-sdk/client-ecs';
import { retryMiddlewareOptions } from '@smithy/core/retry';
import { isTransientAwsError } from './aws-errors';
import { OperatorError, oneLine } from './errors';

export interface ForceNewDeploymentRequest {
  readonly cluster: string;
  readonly service: string;
  /** Requests sent at most, the first included (3, as the SDK's own default, not atmr-dr's 5 for other calls). @default 3 */
  readonly attempts?: number;
  /** Wait before looking again after the first failure; doubled after each further one. @default 1000 */
  readonly retryDelayMs?: number;
  readonly sleep?: (ms: number) => Promise<void>;
}

export interface ForceNewDeploymentResult {
  /** The deployment the request started (the PRIMARY one in ECS's answer, or the new one found). */
  readonly deploymentId?: string;
  /** Requests sent: 1 unless an attempt failed without starting a deployment. */
  readonly attempts: number;
  /** True when an attempt failed but ECS had started its deployment (the answer was lost). */
  readonly recovered: boolean;
}

/**
 * Forces a new deployment of an ECS service, starting at most one. UpdateService with
 * forceNewDeployment is not idempotent: every request that reaches ECS starts another rolling
 * deployment. The SDK's retry strategy sends it again on throttling, 5xx and network errors
 * (a timeout, a reset socket) even when the first request took effect and only its answer was lost,
 * and a second deployment in the middle of an incident replaces the tasks twice and lengthens the
 * outage. So, as lambdas/shared/conditional-write.ts does for DynamoDB writes, the request is sent
 * once and its outcome read back:
 *  - the service's deployment ids are read first (DescribeServices);
 *  - UpdateService is sent without the SDK's automatic retry (for this one request only: the
 *    client keeps its retry strategy for every other call);
 *  - after an error whose outcome is unknown (throttling, 5xx, network, timeout), the deployments
 *    are read again: an id that was not there before means the request took effect, and that
 *    deployment is returned without sending again; otherwise the request is sent again, at most
 *    `attempts` in all, and then one line names the service and the last error. A client error
 *    (ServiceNotFoundException, AccessDeniedException, InvalidParameterException...) is thrown at
 *    once, unchanged: sending it again would fail the same way.
 * Limit: a deployment that someone else starts between the two reads is taken for this one. The
 * effect is the one asked for (the tasks are replaced), so no second deployment is started.
 */
export async function forceNewDeploymentOnce(ecs: ECSClient, request: ForceNewDeploymentRequest): Promise<ForceNewDeploymentResult> {
  const { cluster, service } = request;
  const attempts = request.attempts ?? 3;
  const sleep = request.sleep ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
  const before = new Set(await deploymentIds(ecs, cluster, service));
  let delay = request.retryDelayMs ?? 1000;
  for (let attempt = 1; ; attempt += 1) {
    let lastError: unknown;
    try {
      const { service: updated } = await sendOnce(ecs, new UpdateServiceCommand({ cluster, service, forceNewDeployment: true }));
      return { deploymentId: updated?.deployments?.find((d) => d.status === 'PRIMARY')?.id, attempts: attempt, recovered: false };
    } catch (error) {
      // Throttling, transient and server errors: their request may have taken effect; anything else is a client error.
      if (!isTransientAwsError(error)) throw error;
      lastError = error;
    }
    // ECS reads are eventually consistent, and a timed-out request may still be on its way: the
    // deployment it started shows only a moment later.
    await sleep(delay);
    delay *= 2;
    let now: string[];
    try {
      now = await deploymentIds(ecs, cluster, service);
    } catch (readError) {
      // Sending again without knowing could start a second deployment: the operator decides.
      throw new OperatorError(
        `ECS service ${service} in cluster ${cluster}: cannot tell whether the forced deployment started (UpdateService: ${oneLine(lastError)}; DescribeServices: ${oneLine(readError)}); look at the service's deployments before forcing another one`,
        1,
      );
    }
    const started = now.find((id) => !before.has(id));
    if (started) return { deploymentId: started, attempts: attempt, recovered: true };
    if (attempt >= attempts) {
      throw new OperatorError(
        `ECS service ${service} in cluster ${cluster}: no new deployment after ${attempts} attempt${attempts === 1 ? '' : 's'} to force one (last error: ${oneLine(lastError)}); ECS shows no deployment started by them: run the command again once ECS answers`,
        1,
      );
    }
  }
}

/** The ids of the service's deployments, PRIMARY first (as ECS lists them). */
async function deploymentIds(ecs: ECSClient, cluster: string, service: string): Promise<string[]> {
  const { services } = await ecs.send(new DescribeServicesCommand({ cluster, services: [service] }));
  // ECS answers with the one service asked for; a name or an ARN may have been given.
  const found = services?.find((s) => s.serviceName === service || s.serviceArn === service) ?? services?.[0];
  return (found?.deployments ?? []).flatMap((d) => (d.id ? [d.id] : []));
}

/**
 * Sends UpdateService once, whatever the client's retry settings. The SDK's retry middleware sits in
 * the client's stack, not the command's (removing it from `command.middlewareStack` changes
 * nothing), so this request is resolved on a copy of the client's stack in which a pass-through
 * takes its place: same name, step and priority (the SDK's own options, `override`), so that the
 * middleware placed relative to it (request signing) still finds it. The client itself is not
 * changed. Options are passed so that a client with cacheMiddleware never keeps this handler for
 * later UpdateService calls.
 */
function sendOnce(ecs: ECSClient, command: UpdateServiceCommand): Promise<UpdateServiceCommandOutput> {
  const resolve = command.resolveMiddleware.bind(command);
  command.resolveMiddleware = (clientStack, configuration, options) => {
    const stack = clientStack.clone();
    stack.add((next) => (args) => next(args), retryMiddlewareOptions);
    return resolve(stack, configuration, options);
  };
  return ecs.send(command, {});
}
