import { CfnOutput, Duration, Stack, Validations } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as scheduler from 'aws-cdk-lib/aws-scheduler';
import * as targets from 'aws-cdk-lib/aws-scheduler-targets';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { PROBE_METRICS, PROBE_SERVICE, probeRunWorstCaseMs } from '../../lambdas/detection/probe';
import type { ProbeEnvironment } from '../../lambdas/detection/settings';
import { metricsNamespace } from '../../lambdas/shared/constants';
import { decryptSecretStatement, grantSecretValueRead } from './database-statements';
import { deadLetterQueue } from './dead-letters';
import { HouseFunction, VPC_MANAGED_POLICY_ACKNOWLEDGEMENTS } from './house-function';
import { KillswitchParameter } from './killswitch-parameter';
import { nagRender } from '../nag';

export interface HealthProbeProps {
  /** The environment probed: the probe publishes in its metrics namespace, and its metrics are read there. */
  readonly environmentName: string;
  /** What to check (each target optional), passed to the function as PROBE_SETTINGS. */
  readonly settings: ProbeEnvironment;
  readonly vpc: ec2.IVpc;
  /** Private subnets with routes to the targets and to the AWS APIs (Secrets Manager, SSM). */
  readonly subnets: ec2.SubnetSelection;
  /** Security group of the database: receives ingress from the probe on the database port. @default - none */
  readonly databaseSecurityGroup?: ec2.ISecurityGroup;
  /** Customer KMS key of the database secret, when it is not the AWS-managed one. @default - AWS-managed key */
  readonly databaseSecretKmsKeyArn?: string;
  /** Security group of Redis: receives ingress from the probe on the Redis port. @default - none */
  readonly redisSecurityGroupId?: string;
  /** How often the probe runs. @default Duration.minutes(1) */
  readonly interval?: Duration;
  /**
   * Concurrent executions reserved for the probe, so that detection keeps running when the
   * account's pool is used up. One run a minute that ends within its 30 s timeout, plus a run
   * Lambda retries after a failure. A throttled run shows as missing probe data, which the
   * detection alarms treat as breaching; Detection's Probe-Errors alarm (Errors + Throttles of
   * this function) names the probe as the cause.
   * @default 2
   */
  readonly reservedConcurrency?: number;
}

/** Room left between the longest probe run and the function's timeout (cold start, secrets, EMF flush). */
const PROBE_TIMEOUT_MARGIN_MS = 5000;

/** Port of an http(s) URL (explicit, else 80/443). */
export function urlPort(url: string): number {
  const parsed = new URL(url);
  return parsed.port ? Number(parsed.port) : parsed.protocol === 'https:' ? 443 : 80;
}

/**
 * The health probe: a function in the VPC run every minute by EventBridge Scheduler. It checks the
 * API (/health, /ready), OSRM, Redis (PING, Celery queue lengths, a write check, INFO memory) and PostgreSQL (read-only state),
 * and publishes one EMF datapoint per metric per run (lambdas/detection/probe.ts).
 */
export class HealthProbe extends Construct {
  readonly function: HouseFunction;
  readonly securityGroup: ec2.SecurityGroup;
  readonly schedule: scheduler.Schedule;
  /** Runs the scheduler could not deliver (the function throttled, deleted, or its permission gone). */
  readonly deadLetterQueue: sqs.Queue;
  private readonly environmentName: string;

  constructor(scope: Construct, id: string, props: HealthProbeProps) {
    super(scope, id);
    this.environmentName = props.environmentName;
    const { settings } = props;
    const stack = Stack.of(this);

    this.securityGroup = new ec2.SecurityGroup(this, 'SecurityGroup', {
      vpc: props.vpc,
      description: 'atmr-dr health probe: HTTP(S) to the API and OSRM, Redis, PostgreSQL, HTTPS to AWS APIs',
      allowAllOutbound: false,
    });
    const egress = new Map<number, string>([[443, 'AWS APIs (Secrets Manager, SSM) and https targets']]);
    if (settings.api) egress.set(urlPort(settings.api.baseUrl), 'API /health and /ready');
    if (settings.osrm) egress.set(urlPort(settings.osrm.healthUrl), 'OSRM health URL');
    if (settings.redis) egress.set(settings.redis.port, 'Redis PING, LLEN, SET and INFO');
    for (const [port, what] of egress) this.securityGroup.addEgressRule(ec2.Peer.anyIpv4(), ec2.Port.tcp(port), what);
    // The API's load balancer and OSRM are not this app's to change (no group ID of theirs in the
    // config): their inbound side is opened by hand, from this output (docs/detection.md, "Letting
    // the probe in"). Without it every run times out and Osrm-Down and Health-ApiNotReady page from
    // the deploy on, for a network rule, not an outage.
    if (settings.api || settings.osrm) {
      new CfnOutput(this, 'SecurityGroupId', {
        key: 'HealthProbeSecurityGroupId',
        value: this.securityGroup.securityGroupId,
        description: 'Security group of the health probe: allow it inbound on the API load balancer and OSRM (docs/detection.md)',
      });
    }
    if (settings.database && props.databaseSecurityGroup) {
      this.securityGroup.connections.allowTo(props.databaseSecurityGroup, ec2.Port.tcp(settings.database.port), 'atmr-dr health probe to PostgreSQL');
    }
    if (settings.redis && props.redisSecurityGroupId) {
      const redisGroup = ec2.SecurityGroup.fromSecurityGroupId(this, 'RedisSecurityGroup', props.redisSecurityGroupId, { mutable: true });
      this.securityGroup.connections.allowTo(redisGroup, ec2.Port.tcp(settings.redis.port), 'atmr-dr health probe to Redis');
    }

    // Every check has its own deadline (3 s by default) and they run at the same time; Redis, the
    // database and /ready are tried a second time when they got no answer. The longest run (every
    // target hung) is 6.3 s with the defaults and 24 s at the config's maxima (10 OSRM attempts 1 s
    // apart, 15 s timeouts; a second attempt only when it ends within 20 s of the start): a run that
    // outlives the timeout publishes nothing, and every probe alarm would read that as an outage.
    const timeout = Duration.seconds(30);
    const worstCaseMs = probeRunWorstCaseMs(settings);
    if (worstCaseMs > timeout.toMilliseconds() - PROBE_TIMEOUT_MARGIN_MS) {
      throw new Error(
        `HealthProbe: a probe run can last ${worstCaseMs} ms with these settings, within ${PROBE_TIMEOUT_MARGIN_MS} ms of the function's ${timeout.toSeconds()} s timeout: lower the targets' timeoutMs or OSRM's attempts`,
      );
    }
    this.function = new HouseFunction(this, 'Function', {
      entry: 'lambdas/detection/handler.ts',
      environmentName: props.environmentName,
      serviceName: PROBE_SERVICE,
      timeout,
      reservedConcurrentExecutions: props.reservedConcurrency ?? 2,
      // The environment's name too: the commands the probe's lines print name it with --env.
      environment: { PROBE_SETTINGS: JSON.stringify({ ...settings, environmentName: props.environmentName }) },
      vpcPlacement: { vpc: props.vpc, subnets: props.subnets, securityGroups: [this.securityGroup] },
    });
    // Scheduler invokes the probe asynchronously, and Lambda would run a failed run again 1 and 2
    // minutes later, into minutes that have their own run: twice the ProbeChecksMade and
    // ProbeChecksFailed there, and each failure counted again by Probe-Errors. The next minute's
    // run is the retry. A throttled run waits in Lambda's queue no longer than a minute, for the
    // same reason (Probe-Errors pages on Throttles).
    this.function.function.configureAsyncInvoke({ retryAttempts: 0, maxEventAge: Duration.minutes(1) });
    const role = this.function.function.role as iam.IRole;
    if (settings.database) {
      grantSecretValueRead(role, secretsmanager.Secret.fromSecretCompleteArn(this, 'DatabaseSecret', settings.database.secretArn));
      if (props.databaseSecretKmsKeyArn) {
        role.addToPrincipalPolicy(decryptSecretStatement(stack, props.databaseSecretKmsKeyArn));
      }
    }
    if (settings.redis?.authSecretArn) {
      grantSecretValueRead(role, secretsmanager.Secret.fromSecretCompleteArn(this, 'RedisAuthSecret', settings.redis.authSecretArn));
    }
    if (settings.killswitchParameter) {
      role.addToPrincipalPolicy(
        new iam.PolicyStatement({ actions: ['ssm:GetParameter'], resources: [KillswitchParameter.arn(this, settings.killswitchParameter)] }),
      );
    }

    const schedulerRole = new iam.Role(this, 'SchedulerRole', {
      description: 'EventBridge Scheduler invokes the atmr-dr health probe',
      assumedBy: new iam.ServicePrincipal('scheduler.amazonaws.com', { conditions: { StringEquals: { 'aws:SourceAccount': stack.account } } }),
    });
    const interval = props.interval ?? Duration.minutes(1);
    // A run the scheduler cannot deliver lands here, so that "the probe is not running" pages as
    // itself (Detection's Probe-DeadLetters alarm) and not only as every target looking down.
    this.deadLetterQueue = deadLetterQueue(this, {
      isTheDeadLetterQueue: 'This queue is itself the dead-letter queue of the health probe schedule; the Probe-DeadLetters alarm pages as soon as it holds a message.',
    });
    this.schedule = new scheduler.Schedule(this, 'Schedule', {
      description: `atmr-dr health probe, every ${interval.toHumanString()}`,
      schedule: scheduler.ScheduleExpression.rate(interval),
      // A missed run is not retried: the next one is a minute away, and the alarms read silence as an outage.
      target: new targets.LambdaInvoke(this.function.function, {
        role: schedulerRole,
        retryAttempts: 0,
        maxEventAge: Duration.minutes(1),
        deadLetterQueue: this.deadLetterQueue,
      }),
      timeWindow: scheduler.TimeWindow.off(),
    });

    Validations.of(schedulerRole).acknowledge({
      id: `AwsSolutions-IAM5[Resource::${nagRender(stack, this.function.function.functionArn)}:*]`,
      reason: 'Granted by the LambdaInvoke schedule target: invoke the probe function and its versions, nothing else.',
    });
    Validations.of(this.function).acknowledge(
      ...VPC_MANAGED_POLICY_ACKNOWLEDGEMENTS,
      { id: 'AwsSolutions-IAM5[Resource::*]', reason: 'X-Ray PutTraceSegments/PutTelemetryRecords (active tracing) have no resource-level permissions.' },
      { id: 'AwsSolutions-L1', reason: 'Node.js 22 is the house runtime: the CLI, the tests and the bench run the same code on Node 22.' },
      { id: 'Serverless-LambdaLatestVersion', reason: 'Node.js 22 is the house runtime: the CLI, the tests and the bench run the same code on Node 22.' },
      {
        id: 'Serverless-LambdaDLQ',
        reason: 'A failed run is replaced by the next one a minute later (nothing to redrive); the Probe-Errors alarm pages on the function\'s Errors and Throttles.',
      },
      {
        id: 'Serverless-LambdaAsyncFailureDestination',
        reason: 'A failed or throttled run is dropped on purpose, not retried nor kept: the next run a minute later replaces it; the Probe-Errors alarm pages on the function\'s Errors and Throttles.',
      },
    );
  }

  /** A probe metric (its environment's namespace, dimension service=detection-probe, plus `dimensions`). */
  metric(metricName: string, props: { statistic: string; period: Duration; dimensions?: Record<string, string>; label?: string }): cloudwatch.Metric {
    return probeMetric(this.environmentName, metricName, props);
  }
}

/** A probe metric of `environmentName`'s probe, for constructs that read the probe without holding it. */
export function probeMetric(
  environmentName: string,
  metricName: string,
  props: { statistic: string; period: Duration; dimensions?: Record<string, string>; label?: string },
): cloudwatch.Metric {
  return new cloudwatch.Metric({
    namespace: metricsNamespace(environmentName),
    metricName,
    dimensionsMap: { service: PROBE_SERVICE, ...props.dimensions },
    statistic: props.statistic,
    period: props.period,
    label: props.label,
  });
}

export { PROBE_METRICS };
