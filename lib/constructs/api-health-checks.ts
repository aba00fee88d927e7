import { Duration } from 'aws-cdk-lib';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as elbv2 from 'aws-cdk-lib/aws-elasticloadbalancingv2';
import { Construct } from 'constructs';

/**
 * The runbook's Kubernetes probes ("Healthchecks Kubernetes"), as numbers: readiness on /ready every
 * 5 s, 3 s timeout, 2 failures; liveness on /health every 10 s, 5 s timeout, 3 failures, 30 s initial delay.
 * On ECS only the liveness probe becomes a per-task check (see ApiServiceHealthChecks); readiness
 * is the health probe's (Health-ApiNotReady) and the backout's and cutover's /ready checks.
 */
export const RUNBOOK_PROBES = {
  readiness: { path: '/ready', intervalSeconds: 5, timeoutSeconds: 3, failureThreshold: 2, successThreshold: 1 },
  liveness: { path: '/health', intervalSeconds: 10, timeoutSeconds: 5, failureThreshold: 3, initialDelaySeconds: 30 },
} as const;

export interface ApiServiceHealthChecksProps {
  /** Port the Flask API listens on inside the container. @default 5000 */
  readonly port?: number;
  /**
   * Container health check command. The default uses the image's Python (the API is Flask), so the
   * image needs no curl. @default python urllib GET http://localhost:<port>/health with a 4 s timeout
   */
  readonly command?: string[];
  /** Target group of the API on its ALB: its health check becomes the liveness probe (/health). @default - none configured */
  readonly targetGroup?: elbv2.ApplicationTargetGroup;
}

/**
 * For teams that define the API's ECS service in CDK: the runbook's probes translated to ECS and ALB.
 * - liveness (/health) -> the container health check AND the ALB target group health check: ECS
 *   stops and replaces a task that fails either ("Task failed ELB health checks"), so on ECS the
 *   load balancer's check is a liveness probe, not a readiness one. On /ready (which checks
 *   PostgreSQL and Redis) a database or Redis outage would fail every task within seconds and ECS
 *   would replace them all in a loop: a partial outage made total, and Backout-ApiNoHealthyHosts
 *   rolling back a good release. The runbook keeps /health simple for that reason.
 * - readiness (/ready) -> no per-task setting (ECS has no check that only withdraws traffic): the
 *   health probe pages Health-ApiNotReady on it, and the backout and cutover check it;
 * - the deployment circuit breaker with rollback, so a release whose tasks never turn healthy is
 *   rolled back by ECS itself.
 * Pass `containerHealthCheck` to `addContainer`, spread `serviceProps` into the service's props, and
 * give the target group (or call `configureTargetGroup`).
 */
export class ApiServiceHealthChecks extends Construct {
  /** For `taskDefinition.addContainer(..., { healthCheck })`. */
  readonly containerHealthCheck: ecs.HealthCheck;
  /** For `targetGroup.configureHealthCheck(...)` or the target group's `healthCheck` prop. */
  readonly targetGroupHealthCheck: elbv2.HealthCheck;
  /** Spread into `new ecs.FargateService(..., { ...serviceProps })`. */
  readonly serviceProps: Required<Pick<ecs.FargateServiceProps, 'circuitBreaker' | 'healthCheckGracePeriod'>>;

  constructor(scope: Construct, id: string, props: ApiServiceHealthChecksProps = {}) {
    super(scope, id);
    const port = props.port ?? 5000;
    const { liveness } = RUNBOOK_PROBES;
    this.containerHealthCheck = {
      command: props.command ?? [
        'CMD-SHELL',
        `python -c "import urllib.request; urllib.request.urlopen('http://localhost:${port}${liveness.path}', timeout=${liveness.timeoutSeconds - 1})" || exit 1`,
      ],
      interval: Duration.seconds(liveness.intervalSeconds),
      timeout: Duration.seconds(liveness.timeoutSeconds),
      retries: liveness.failureThreshold,
      startPeriod: Duration.seconds(liveness.initialDelaySeconds),
    };
    // The liveness probe, not readiness: a task failing this check is replaced by ECS (see above).
    this.targetGroupHealthCheck = {
      enabled: true,
      path: liveness.path,
      healthyHttpCodes: '200',
      interval: Duration.seconds(liveness.intervalSeconds),
      timeout: Duration.seconds(liveness.timeoutSeconds),
      unhealthyThresholdCount: liveness.failureThreshold,
      // Kubernetes' liveness has no success threshold (1); an ALB's minimum healthy threshold is 2.
      healthyThresholdCount: 2,
    };
    this.serviceProps = {
      circuitBreaker: { enable: true, rollback: true },
      // The liveness probe's initial delay: ALB failures in the first 30 s do not kill a starting task.
      healthCheckGracePeriod: Duration.seconds(liveness.initialDelaySeconds),
    };
    if (props.targetGroup) this.configureTargetGroup(props.targetGroup);
  }

  configureTargetGroup(targetGroup: elbv2.ApplicationTargetGroup): void {
    targetGroup.configureHealthCheck(this.targetGroupHealthCheck);
  }
}
