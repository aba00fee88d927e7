import { ArnFormat, CfnOutput, Duration, RemovalPolicy, Stack, Validations } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import * as tasks from 'aws-cdk-lib/aws-stepfunctions-tasks';
import { Construct } from 'constructs';
import { BACKOUT_METRICS_SERVICE } from '../../lambdas/backout/metrics';
import { metricsNamespace, operatorCommand } from '../../lambdas/shared/constants';
import { downgradeEnvironment, RUN_TASK_NOT_STARTED_ERRORS } from '../../lambdas/backout/migration';
import { BACKOUT_SETTINGS_ENV, BackoutSettings, METRICS_SETTLE_SECONDS, pinParameterPrefix } from '../../lambdas/backout/settings';
import { lkgKey, rollbackKey } from '../../lambdas/backout/state';
import { deadLetterQueue, deadLettersAlarm } from './dead-letters';
import { putEventsOnDefaultBus } from './event-bus-statements';
import { urlPort } from './health-probe';
import { HouseFunction, retryWhenThrottled, VPC_MANAGED_POLICY_ACKNOWLEDGEMENTS } from './house-function';
import { RunbookAlarm, sumOfCounts } from './runbook-alarm';
import { nagRender } from '../nag';

export interface RollbackServiceProps {
  readonly serviceName: string;
  /** The only task-definition family the service may be rolled back to. */
  readonly taskFamily: string;
}

export interface RollbackProps {
  readonly environmentName: string;
  /** Record and notify what would be done, change nothing. @default false */
  readonly dryRun?: boolean;
  readonly clusterName: string;
  /** The API service; migrations run in `containerName` of its current task definition. */
  readonly api: RollbackServiceProps & { readonly containerName: string };
  /** Celery workers, rolled back to their own last known good. @default - none */
  readonly workers?: readonly RollbackServiceProps[];
  /** Task and execution roles of the API task definition: the only roles the migration task may pass. */
  readonly taskRoleArns: readonly string[];
  readonly vpc: ec2.IVpc;
  /** Subnets of the step function (it probes /health and /ready) and of the migration task. */
  readonly subnets: ec2.SubnetSelection;
  /** Security groups of the migration task (it must reach the database). */
  readonly taskSecurityGroupIds: readonly string[];
  /** `targetgroup/<name>/<id>` and `app/<name>/<id>` (the ALB metric dimensions). */
  readonly targetGroupFullName: string;
  readonly loadBalancerFullName: string;
  readonly healthUrl: string;
  readonly readyUrl: string;
  /** @default Duration.minutes(10) */
  readonly bakeTime?: Duration;
  /** @default 10 */
  readonly errorRatePercent?: number;
  /** @default 50 */
  readonly minRequestsPerMinute?: number;
  /** Consecutive breaching one-minute datapoints (all of them) before a backout alarm fires. @default 2 */
  readonly evaluationMinutes?: number;
  /** @default Duration.minutes(30) */
  readonly cooldown?: Duration;
  /** @default Duration.minutes(10) */
  readonly steadyTimeout?: Duration;
  /** @default false */
  readonly autoDowngradeMigrations?: boolean;
  /** @default {from: 'environment', name: 'ALEMBIC_HEAD'} */
  readonly alembicHead?: { readonly from: 'environment' | 'tag'; readonly name: string };
  /** @default 'snapshot' */
  readonly beforeDowngrade?: 'snapshot' | 'pitr';
  /**
   * How long each statement of the downgrade may wait for a table lock (lock_timeout, through the
   * task's PGOPTIONS); zero sends no PGOPTIONS. @default Duration.seconds(30)
   */
  readonly downgradeLockTimeout?: Duration;
  readonly databaseInstanceIdentifier: string;
  /** Ops-state table (LKG#, ROLLBACK# items). */
  readonly table: dynamodb.ITable;
  readonly killswitchParameterName: string;
  readonly incidentsTopic: sns.ITopic;
  /**
   * Alarms saying that a dependency of the API is down, checked directly rather than through the API
   * (the health probe's OSRM, Redis and database read-only alarms), or that the probe checking them is
   * silent (Probe-Silent, Probe-Errors: those alarms then keep their state). While one is in ALARM, an
   * automatic rollback is held and its report pages instead: the runbook allows no backout without a
   * confirmed root cause, and the last known good would fail the same way.
   * @default - none: every automatic rollback whose condition holds proceeds
   */
  readonly holdWhileInAlarm?: readonly cloudwatch.IAlarm[];
  /**
   * The health probe's readiness alarm (Health-ApiNotReady): a release during whose bake it was in
   * ALARM is not recorded as the last known good (the load balancer checks /health only).
   * @default - none: the bake GETs readyUrl once at its end instead
   */
  readonly readinessAlarm?: cloudwatch.IAlarm;
  /**
   * The probe's silence alarms (Probe-Silent, Probe-Errors): the readiness alarm ignores the probe's
   * missing minutes, so a bake during which one was in ALARM saw no /ready reading, and the release
   * is not recorded either.
   * @default - none
   */
  readonly probeSilenceAlarms?: readonly cloudwatch.IAlarm[];
  /**
   * Concurrent executions reserved for the step function, so that a rollback runs on the worst day
   * even when the account's pool is used up. Each workflow execution runs one step at a time; at
   * most one rollback per backout alarm and service (2 alarms) and one bake per service run at once.
   * A step Lambda throttles is retried by the workflow, then ends in the report (which pages) or a
   * failed execution (WorkflowFailed alarm): no throttle alarm of its own.
   * @default 3 x the number of services (API + workers)
   */
  readonly reservedConcurrency?: number;
}

/** The function's service name, which is also the `service` dimension of RollbackSeconds / RollbackOutcome. */
export const BACKOUT_SERVICE = BACKOUT_METRICS_SERVICE;
const RUNBOOK_SECTION = 'Plan de backout';
/** Seconds between two steady-state polls of the rollback workflow (the RTO budget counts it). */
export const STEADY_POLL_SECONDS = 10;
const LINK = 'https://github.com/atmr/atmr-dr#backout';

/**
 * The runbook's "Plan de backout": the two backout alarms, the last-known-good recorder (ECS
 * deployment events, then a bake), the rollback workflow started by those alarms (guards, optional
 * migration downgrade, UpdateService, steady wait, checks, report) and the rights it needs, no more.
 */
export class Rollback extends Construct {
  readonly errorRateAlarm: RunbookAlarm;
  readonly noHealthyHostsAlarm: RunbookAlarm;
  readonly workflowFailedAlarm: RunbookAlarm;
  readonly deadLettersAlarm: RunbookAlarm;
  readonly steps: HouseFunction;
  readonly rollbackMachine: sfn.StateMachine;
  readonly bakeMachine: sfn.StateMachine;
  readonly alarmRule: events.Rule;
  readonly deploymentRule: events.Rule;
  readonly deadLetterQueue: sqs.Queue;
  readonly settings: BackoutSettings;
  /** The rights of the CLI's rollback commands (grantOperator). */
  private readonly operatorStatements: iam.PolicyStatement[];
  private readonly wildcardArns: { tasksOfCluster: string; snapshotArns: string; familyArns: string[]; apiFamily: string };

  constructor(scope: Construct, id: string, props: RollbackProps) {
    super(scope, id);
    const stack = Stack.of(this);
    const env = props.environmentName;
    const workers = props.workers ?? [];
    const services = [props.api, ...workers];
    const errorRatePercent = props.errorRatePercent ?? 10;
    const minRequestsPerMinute = props.minRequestsPerMinute ?? 50;
    const evaluationMinutes = props.evaluationMinutes ?? 2;
    const steadyTimeout = props.steadyTimeout ?? Duration.minutes(10);
    const clusterArn = stack.formatArn({ service: 'ecs', resource: 'cluster', resourceName: props.clusterName });
    const serviceArn = (name: string) => stack.formatArn({ service: 'ecs', resource: 'service', resourceName: `${props.clusterName}/${name}` });
    const pinPrefix = pinParameterPrefix(env);

    // Alarms: the runbook's two automatic triggers, on the API target group.
    const dimensionsMap = { LoadBalancer: props.loadBalancerFullName, TargetGroup: props.targetGroupFullName };
    const albMetric = (metricName: string, statistic: string) =>
      new cloudwatch.Metric({ namespace: 'AWS/ApplicationELB', metricName, dimensionsMap, statistic, period: Duration.minutes(1) });
    const common = { environmentName: env, concern: 'Backout', runbookSection: RUNBOOK_SECTION, topic: props.incidentsTopic, link: LINK };
    // The guards' deployment hold (docs/backout.md, Guards 3): with another release rolling out the
    // culprit is uncertain, and the workflow neither waits for that deployment nor rolls back.
    const unlessDeploying =
      'unless a deployment is under way (started after the errors began, or rolling out beside a release other than the last known good): then it rolls nothing back and pages, naming both releases, for a human to decide';
    this.errorRateAlarm = new RunbookAlarm(this, 'ErrorRateAlarm', {
      ...common,
      what: 'ApiErrorRate',
      summary: `5xx above ${errorRatePercent}% of the API requests (at least ${minRequestsPerMinute} requests/min) for ${evaluationMinutes} min: atmr-dr rolls the API back to its last known good, ${unlessDeploying}.`,
      firstActions: `suivre le message "backout" sur le topic incidents, puis ${operatorCommand(env, 'rollback status')}.`,
      // Below the minimum request count the expression is 0: a handful of requests never triggers.
      metric: new cloudwatch.MathExpression({
        expression: `IF(requests >= ${minRequestsPerMinute}, 100 * errors / requests, 0)`,
        usingMetrics: { requests: albMetric('RequestCount', 'Sum'), errors: albMetric('HTTPCode_Target_5XX_Count', 'Sum') },
        period: Duration.minutes(1),
        label: 'API 5xx %',
      }),
      threshold: errorRatePercent,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      // Every datapoint of the window must breach (N of N): one bad minute alone never rolls back.
      evaluationPeriods: evaluationMinutes,
      datapointsToAlarm: evaluationMinutes,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
    this.noHealthyHostsAlarm = new RunbookAlarm(this, 'NoHealthyHostsAlarm', {
      ...common,
      what: 'ApiNoHealthyHosts',
      summary: `no healthy API target for ${evaluationMinutes} min (service inaccessible): atmr-dr rolls the API back to its last known good, ${unlessDeploying}.`,
      firstActions: `suivre le message "backout" sur le topic incidents, puis ${operatorCommand(env, 'rollback status')}.`,
      metric: albMetric('HealthyHostCount', 'Minimum'),
      threshold: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
      evaluationPeriods: evaluationMinutes,
      datapointsToAlarm: evaluationMinutes,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });

    this.settings = {
      environmentName: env,
      region: stack.region,
      account: stack.account,
      dryRun: props.dryRun ?? false,
      clusterName: props.clusterName,
      api: { serviceName: props.api.serviceName, taskFamily: props.api.taskFamily, containerName: props.api.containerName },
      workers: workers.map((w) => ({ serviceName: w.serviceName, taskFamily: w.taskFamily })),
      tableName: props.table.tableName,
      topicArn: props.incidentsTopic.topicArn,
      killswitchParameterName: props.killswitchParameterName,
      pinParameterPrefix: pinPrefix,
      alarmNames: { errorRate: this.errorRateAlarm.alarmName, noHealthyHosts: this.noHealthyHostsAlarm.alarmName },
      holdAlarmNames: (props.holdWhileInAlarm ?? []).map((a) => a.alarmName),
      readinessAlarmName: props.readinessAlarm?.alarmName ?? null,
      probeSilenceAlarmNames: props.readinessAlarm ? (props.probeSilenceAlarms ?? []).map((a) => a.alarmName) : [],
      targetGroupFullName: props.targetGroupFullName,
      loadBalancerFullName: props.loadBalancerFullName,
      healthUrl: props.healthUrl,
      readyUrl: props.readyUrl,
      bakeSeconds: (props.bakeTime ?? Duration.minutes(10)).toSeconds(),
      errorRatePercent,
      minRequestsPerMinute,
      evaluationMinutes,
      cooldownSeconds: (props.cooldown ?? Duration.minutes(30)).toSeconds(),
      steadyTimeoutSeconds: steadyTimeout.toSeconds(),
      autoDowngradeMigrations: props.autoDowngradeMigrations ?? false,
      alembicHead: props.alembicHead ?? { from: 'environment', name: 'ALEMBIC_HEAD' },
      beforeDowngrade: props.beforeDowngrade ?? 'snapshot',
      databaseInstanceIdentifier: props.databaseInstanceIdentifier,
      downgradeLockTimeoutSeconds: (props.downgradeLockTimeout ?? Duration.seconds(30)).toSeconds(),
      subnetIds: props.vpc.selectSubnets(props.subnets).subnetIds,
      securityGroupIds: [...props.taskSecurityGroupIds],
    };

    // One function runs every step; it sits in the VPC because the checks probe the internal URLs.
    const securityGroup = new ec2.SecurityGroup(this, 'StepsSecurityGroup', {
      vpc: props.vpc,
      description: 'atmr-dr backout steps: HTTPS to AWS APIs, HTTP(S) to the API health URLs',
      allowAllOutbound: false,
    });
    // What the steps reach themselves: AWS APIs and the two URLs (the downgrade task runs with the
    // API's own security groups, not this one, so no database port here).
    const egress = new Map<number, string>([[443, 'AWS APIs (ECS, CloudWatch, SSM, DynamoDB, RDS, SNS) and https health URLs']]);
    for (const url of [props.healthUrl, props.readyUrl]) if (!egress.has(urlPort(url))) egress.set(urlPort(url), 'API /health and /ready');
    for (const [port, what] of egress) securityGroup.addEgressRule(ec2.Peer.anyIpv4(), ec2.Port.tcp(port), what);
    this.steps = new HouseFunction(this, 'Steps', {
      entry: 'lambdas/backout/handler.ts',
      environmentName: props.environmentName,
      serviceName: BACKOUT_SERVICE,
      timeout: Duration.seconds(60),
      // Each rollback's and each bake's record (what was decided, rolled back, recorded, and why):
      // an incident's audit trail, kept a year like the recovery's, and it outlives the stack.
      logRetention: logs.RetentionDays.ONE_YEAR,
      logRemovalPolicy: RemovalPolicy.RETAIN,
      reservedConcurrentExecutions: props.reservedConcurrency ?? 3 * services.length,
      environment: { [BACKOUT_SETTINGS_ENV]: stack.toJsonString(this.settings) },
      vpcPlacement: { vpc: props.vpc, subnets: props.subnets, securityGroups: [securityGroup] },
    });
    const role = this.steps.function.role as iam.IRole;
    const serviceArns = services.map((s) => serviceArn(s.serviceName));
    const alarmArns = [this.errorRateAlarm.alarmArn, this.noHealthyHostsAlarm.alarmArn];
    const killswitchArn = stack.formatArn({ service: 'ssm', resource: 'parameter', resourceName: props.killswitchParameterName.replace(/^\//, '') });
    // One pin per configured service, named: no wildcard.
    const pinArns = services.map((svc) => stack.formatArn({ service: 'ssm', resource: 'parameter', resourceName: `${pinPrefix.replace(/^\//, '')}/${svc.serviceName}` }));
    const tasksOfCluster = stack.formatArn({ service: 'ecs', resource: 'task', resourceName: `${props.clusterName}/*` });
    const dbArn = stack.formatArn({ service: 'rds', resource: 'db', resourceName: props.databaseInstanceIdentifier, arnFormat: ArnFormat.COLON_RESOURCE_NAME });
    const snapshotArns = stack.formatArn({ service: 'rds', resource: 'snapshot', resourceName: `atmr-dr-backout-${env}-*`, arnFormat: ArnFormat.COLON_RESOURCE_NAME });
    const familyArns = [...new Set(services.map((s) => s.taskFamily))].map((family) => stack.formatArn({ service: 'ecs', resource: 'task-definition', resourceName: `${family}:*` }));
    // The rights of the rollback path, shared by the steps function and the on-call's CLI
    // (grantOperator): `rollback service|migration` run the same code with the operator's credentials.
    const rollBackServices = new iam.PolicyStatement({ sid: 'RollBackTheConfiguredServices', actions: ['ecs:DescribeServices', 'ecs:UpdateService'], resources: serviceArns });
    // DescribeTaskDefinition has no resource-level permission; ListTasks is scoped by the cluster condition.
    const readTaskDefinitions = new iam.PolicyStatement({ sid: 'ReadTaskDefinitions', actions: ['ecs:DescribeTaskDefinition'], resources: ['*'] });
    const listTasks = new iam.PolicyStatement({ sid: 'ListTasksOfTheCluster', actions: ['ecs:ListTasks'], resources: ['*'], conditions: { ArnEquals: { 'ecs:cluster': clusterArn } } });
    const readBackoutAlarms = new iam.PolicyStatement({ sid: 'ReadTheBackoutAlarms', actions: ['cloudwatch:DescribeAlarms', 'cloudwatch:DescribeAlarmHistory'], resources: alarmArns });
    const readAlbMetrics = new iam.PolicyStatement({ sid: 'ReadAlbMetrics', actions: ['cloudwatch:GetMetricData'], resources: ['*'] });
    // Read too: the guards refuse an automatic target that the last rollback rolled away from.
    const pinReleases = new iam.PolicyStatement({ sid: 'PinRolledBackReleases', actions: ['ssm:GetParameter', 'ssm:PutParameter'], resources: pinArns });
    // A target that names its images by tag is rolled back to a copy pinned to the digests the last
    // known good ran (pinToRecordedDigests): a new revision of a configured family only (RegisterTaskDefinition
    // takes the task-definition resource), tagged only as it is registered (its own tags and
    // atmr-dr:pinned-from, ecs:CreateAction), passing the API task's roles only.
    const pinToDigests = [
      new iam.PolicyStatement({ sid: 'PinRollbackTargetsToDigests', actions: ['ecs:RegisterTaskDefinition'], resources: familyArns }),
      new iam.PolicyStatement({ sid: 'TagThePinnedRevisions', actions: ['ecs:TagResource'], resources: familyArns, conditions: { StringEquals: { 'ecs:CreateAction': 'RegisterTaskDefinition' } } }),
      passTaskRoles('PassTheApiTaskRolesToPinnedRevisions', props.taskRoleArns),
    ];
    const announce = putEventsOnDefaultBus(stack, 'AnnounceOnTheDefaultBus');
    // A CreateDBSnapshot that meets a snapshot of its name (Step Functions running PrepareDowngrade
    // again, or the SDK resending it after a lost answer) reads that snapshot's tags before taking
    // it as this run's (the workflow's execution, the CLI's id).
    const snapshotBeforeDowngrade = [
      new iam.PolicyStatement({ sid: 'SnapshotBeforeDowngrade', actions: ['rds:CreateDBSnapshot', 'rds:DescribeDBInstances'], resources: [dbArn] }),
      new iam.PolicyStatement({ sid: 'NameTheSnapshot', actions: ['rds:CreateDBSnapshot', 'rds:AddTagsToResource'], resources: [snapshotArns] }),
      new iam.PolicyStatement({ sid: 'RecogniseTheRunsSnapshot', actions: ['rds:DescribeDBSnapshots'], resources: [snapshotArns] }),
    ];
    // The ops-state table holds every concern's records (incidents, recoveries...): only the calls of
    // lambdas/backout/state.ts, on the LKG#/ROLLBACK# partitions of the configured services (no Scan,
    // no batch writes), and the table's key through DynamoDB only.
    const backoutRecords = (actions: string[]) =>
      new iam.PolicyStatement({
        sid: 'BackoutRecordsOnly',
        actions,
        resources: [props.table.tableArn],
        conditions: { 'ForAllValues:StringEquals': { 'dynamodb:LeadingKeys': services.flatMap((s) => [lkgKey(s.serviceName), rollbackKey(s.serviceName)]) } },
      });
    const tableKey = props.table.encryptionKey;
    const opsTableKey = tableKey
      ? [
          new iam.PolicyStatement({
            sid: 'OpsTableKey',
            actions: ['kms:Decrypt', 'kms:Encrypt', 'kms:GenerateDataKey', 'kms:DescribeKey'],
            resources: [tableKey.keyArn],
            conditions: { StringEquals: { 'kms:ViaService': `dynamodb.${stack.region}.amazonaws.com` } },
          }),
        ]
      : [];
    const statements = [
      rollBackServices,
      readTaskDefinitions,
      listTasks,
      new iam.PolicyStatement({ sid: 'DescribeTasksOfTheCluster', actions: ['ecs:DescribeTasks'], resources: [tasksOfCluster] }),
      readBackoutAlarms,
      ...(props.holdWhileInAlarm?.length
        ? [new iam.PolicyStatement({ sid: 'ReadTheDependencyAlarms', actions: ['cloudwatch:DescribeAlarms'], resources: props.holdWhileInAlarm.map((a) => a.alarmArn) })]
        : []),
      // The bake reads its state and history like the backout alarms' (alarmFiredSince).
      ...(props.readinessAlarm
        ? [
            new iam.PolicyStatement({
              sid: 'ReadTheReadinessAlarm',
              actions: ['cloudwatch:DescribeAlarms', 'cloudwatch:DescribeAlarmHistory'],
              resources: [props.readinessAlarm, ...(props.probeSilenceAlarms ?? [])].map((a) => a.alarmArn),
            }),
          ]
        : []),
      readAlbMetrics,
      pinReleases,
      // The guards hold an automatic rollback while maintenance is on (its 503s are target 5xx that
      // the ErrorRate alarm counts). A String parameter, under no KMS key (KillswitchParameter): no kms:Decrypt.
      new iam.PolicyStatement({ sid: 'ReadTheKillswitch', actions: ['ssm:GetParameter'], resources: [killswitchArn] }),
      ...pinToDigests,
      announce,
    ];
    // The downgrade's rights exist only when the automatic path may downgrade (operators run the
    // CLI's downgrade with their own credentials: grantOperator).
    const autoDowngrade = props.autoDowngradeMigrations ?? false;
    if (autoDowngrade) {
      statements.push(
        new iam.PolicyStatement({ sid: 'KillswitchDuringDowngrade', actions: ['ssm:PutParameter'], resources: [killswitchArn] }),
        ...snapshotBeforeDowngrade,
      );
    }
    statements.push(backoutRecords(['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:DeleteItem', 'dynamodb:Query']), ...opsTableKey);

    // `rollback status|service|migration|unlock` by hand (bin/cli/rollback.ts): the steps'
    // statements above, plus what only the CLI sends: the migration task (RunTask, DescribeTasks,
    // StopTask, the same rights as the workflow's ecs:runTask.sync), the lock's task ARN (UpdateItem),
    // the CLI's RollbackSeconds/RollbackOutcome datapoints (PutMetricData: no Lambda log pipeline).
    // The killswitch (GetParameter, PutParameter) is granted by Killswitch, the report's topic by
    // the incidents topic (allowPublisher, lib/ops-stack.ts).
    this.operatorStatements = [
      rollBackServices,
      readTaskDefinitions,
      listTasks,
      readBackoutAlarms,
      readAlbMetrics,
      pinReleases,
      ...pinToDigests,
      announce,
      ...migrationTaskStatements(stack, props, clusterArn, tasksOfCluster),
      ...snapshotBeforeDowngrade,
      backoutRecords(['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem', 'dynamodb:DeleteItem', 'dynamodb:Query']),
      ...opsTableKey,
      new iam.PolicyStatement({
        sid: 'PublishRollbackMetrics',
        actions: ['cloudwatch:PutMetricData'],
        resources: ['*'],
        conditions: { StringEquals: { 'cloudwatch:namespace': metricsNamespace(env) } },
      }),
    ];
    this.wildcardArns = { tasksOfCluster, snapshotArns, familyArns, apiFamily: stack.formatArn({ service: 'ecs', resource: 'task-definition', resourceName: `${props.api.taskFamily}:*` }) };
    for (const statement of statements) role.addToPrincipalPolicy(statement);
    props.incidentsTopic.grantPublish(role);

    this.deadLetterQueue = deadLetterQueue(this, {
      isTheDeadLetterQueue: 'This queue is itself the dead-letter queue of the backout alarm and deployment rules.',
      nothingConsumesIt: 'This queue is the last stop (a dead-letter queue): the DeadLetters alarm pages the incidents topic as soon as it holds a message; operators inspect it, nothing consumes it.',
    });
    // Each message is an alarm or a completed deployment whose workflow never started: an automatic
    // rollback that did not happen, or a release never recorded as last known good.
    this.deadLettersAlarm = deadLettersAlarm(this, this.deadLetterQueue, {
      ...common,
      summary: 'a backout alarm or ECS deployment event could not start its workflow (dead-letter queue not empty): the automatic rollback or the last-known-good record did not happen.',
      firstActions: `lire le message de la file DeadLetters du backout, puis ${operatorCommand(props.environmentName, 'rollback status')} ; au besoin ${operatorCommand(props.environmentName, 'rollback service')}.`,
    });

    this.rollbackMachine = this.rollbackWorkflow(props, steadyTimeout, clusterArn, tasksOfCluster, opsTableKey);
    this.bakeMachine = this.bakeWorkflow();

    this.alarmRule = new events.Rule(this, 'AlarmRule', {
      description: `atmr-dr ${env}: a backout alarm went to ALARM: start the rollback workflow per service`,
      eventPattern: {
        source: ['aws.cloudwatch'],
        detailType: ['CloudWatch Alarm State Change'],
        resources: alarmArns,
        detail: { state: { value: ['ALARM'] } },
      },
      targets: services.map(
        (s) =>
          new targets.SfnStateMachine(this.rollbackMachine, {
            input: events.RuleTargetInput.fromObject({ service: s.serviceName, event: events.EventField.fromPath('$') }),
            retryAttempts: 4,
            maxEventAge: Duration.hours(1),
            deadLetterQueue: this.deadLetterQueue,
          }),
      ),
    });
    this.deploymentRule = new events.Rule(this, 'DeploymentRule', {
      description: `atmr-dr ${env}: an ECS deployment of a watched service completed: bake, then record it as last known good`,
      eventPattern: {
        source: ['aws.ecs'],
        detailType: ['ECS Deployment State Change'],
        resources: serviceArns,
        detail: { eventName: ['SERVICE_DEPLOYMENT_COMPLETED'] },
      },
      targets: [new targets.SfnStateMachine(this.bakeMachine, { retryAttempts: 4, maxEventAge: Duration.hours(1), deadLetterQueue: this.deadLetterQueue })],
    });

    // A workflow that fails (its own report could not run) must still reach a human.
    const failed = (machine: sfn.StateMachine) => machine.metricFailed({ period: Duration.minutes(1), statistic: 'Sum' });
    this.workflowFailedAlarm = new RunbookAlarm(this, 'WorkflowFailedAlarm', {
      ...common,
      what: 'WorkflowFailed',
      summary: 'a backout or last-known-good workflow execution failed or timed out: the automatic rollback may not have run or reported.',
      signalsEvent: true,
      firstActions: `ouvrir la console Step Functions (exécutions en échec), puis ${operatorCommand(props.environmentName, 'rollback status')}.`,
      metric: sumOfCounts(
        {
          rollback: failed(this.rollbackMachine),
          bake: failed(this.bakeMachine),
          rollbackTimedOut: this.rollbackMachine.metricTimedOut({ period: Duration.minutes(1), statistic: 'Sum' }),
          bakeTimedOut: this.bakeMachine.metricTimedOut({ period: Duration.minutes(1), statistic: 'Sum' }),
        },
        Duration.minutes(1),
      ),
      threshold: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: 1,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });

    // The CLI resolves these (bin/cli/resolve.ts).
    new CfnOutput(stack, 'EcsClusterName', { value: props.clusterName });
    new CfnOutput(stack, 'ApiServiceName', { value: props.api.serviceName });
    new CfnOutput(stack, 'BackoutTopicArn', { value: props.incidentsTopic.topicArn });

    this.acknowledge(stack, this.wildcardArns, autoDowngrade);
  }

  /**
   * Lets the on-call roles run `rollback status|service|migration|unlock` with their own
   * credentials (docs/operator-permissions.md): one managed policy attached to each, on the cluster,
   * services, task-definition families, alarms, pin parameters and backout records this construct
   * names, nothing else.
   */
  grantOperator(roles: readonly iam.IRole[]): void {
    if (!roles.length) return;
    // A managed policy: the role's inline policies share one 10,240-character budget with those its
    // owners attached (the role is not this app's), and this one alone takes several thousand.
    const policy = new iam.ManagedPolicy(this, 'OperatorPolicy', { roles: [...roles], statements: this.operatorStatements });
    const render = (value: string) => nagRender(Stack.of(this), value);
    const { tasksOfCluster, snapshotArns, familyArns, apiFamily } = this.wildcardArns;
    Validations.of(policy).acknowledge(
      {
        id: 'AwsSolutions-IAM5[Resource::*]',
        reason:
          'ecs:DescribeTaskDefinition and cloudwatch:GetMetricData have no resource-level permissions (both read-only); ecs:ListTasks is limited to the cluster by the ecs:cluster condition; cloudwatch:PutMetricData to the AtmrDr/<env> namespace by the cloudwatch:namespace condition.',
      },
      { id: `AwsSolutions-IAM5[Resource::${render(tasksOfCluster)}]`, reason: 'Task ids are generated by ECS: DescribeTasks/StopTask are limited to the tasks of the configured cluster.' },
      ...[...new Set([...familyArns, apiFamily])].map((familyArn) => ({
        id: `AwsSolutions-IAM5[Resource::${render(familyArn)}]`,
        reason: 'Revision numbers are chosen by ECS: RegisterTaskDefinition (TagResource at registration only) of a rolled-back service\'s family, RunTask of the API family on the configured cluster (ecs:cluster condition).',
      })),
      { id: `AwsSolutions-IAM5[Resource::${render(snapshotArns)}]`, reason: 'Snapshot names carry the command\'s id (its time and a random part): CreateDBSnapshot/AddTagsToResource/DescribeDBSnapshots are limited to the backout snapshot prefix of this environment.' },
    );
  }

  /** Guards -> (downgrade) -> UpdateService -> wait for steady -> checks -> report; every failure ends in the report. */
  private rollbackWorkflow(props: RollbackProps, steadyTimeout: Duration, clusterArn: string, tasksOfCluster: string, opsTableKey: iam.PolicyStatement[]): sfn.StateMachine {
    const stack = Stack.of(this);
    const step = (id: string, payload: Record<string, unknown>) =>
      retryWhenThrottled(new tasks.LambdaInvoke(this, id, { lambdaFunction: this.steps.function, payload: sfn.TaskInput.fromObject(payload), payloadResponseOnly: true, retryOnServiceExceptions: true }));
    // The steps that only read (DescribeServices, GetMetricData, ListTasks, the /ready probe): a
    // throttle or a blip that outlasts the SDK's own retries is tried again, so that it does not end
    // the follow-up of a rollback that is under way (about 35 s more before the report at worst).
    // CheckSteady's one write (the killswitch given back once steady) reports a refusal, never throws.
    const readOnly = (task: sfn.TaskStateBase) => task.addRetry({ errors: [sfn.Errors.TASKS_FAILED], interval: Duration.seconds(5), maxAttempts: 3, backoffRate: 2 });
    const withState = (action: string) => ({ action, state: sfn.JsonPath.entirePayload });

    // The execution's name is the owner of what the guards take (lock, release claim): a Guards Lambda
    // that times out or is killed returns no state, and the Report releases what that name still owns.
    const execution = sfn.JsonPath.stringAt('$$.Execution.Name');
    const report = step('Report', { ...withState('report'), execution });
    const reportFailed = new sfn.Fail(this, 'ReportFailed', { error: 'BackoutReportFailed', causePath: '$.reportError.Cause' });
    // A Report that fails itself (times out, is killed, throws past its retries) released nothing: the
    // lock this execution owns would stay for its life (steady timeout + 30 min), every alarm of the
    // service skipping quietly as "another alarm's run", only the WorkflowFailed alarm paging. The
    // state machine deletes it itself, with no Lambda (the one that just failed), before failing.
    const lockRelease = this.releaseLockOfFailedReport(props, opsTableKey, reportFailed);
    report.addCatch(lockRelease.start, { resultPath: '$.reportError' });
    // Paging is the report's job (incidents topic): the execution succeeds either way, so that the
    // "workflow failed" alarm means only that the report itself could not run.
    const paged = new sfn.Succeed(this, 'PagedAHuman', { comment: 'the report paged the incidents topic: a human decides' });
    const done = new sfn.Succeed(this, 'Done');
    report.next(new sfn.Choice(this, 'Paged').when(sfn.Condition.booleanEquals('$.page', true), paged).otherwise(done));
    const toReport = { resultPath: '$.error' };

    const guards = step('Guards', { action: 'guards', input: sfn.JsonPath.entirePayload, execution });
    guards.addCatch(report, toReport);
    const prepare = step('PrepareDowngrade', withState('prepare-downgrade'));
    prepare.addCatch(report, toReport);
    const finish = step('FinishDowngrade', withState('finish-downgrade'));
    finish.addCatch(report, toReport);
    const rollOut = step('RollOut', withState('roll-out'));
    rollOut.addCatch(report, toReport);
    const checkSteady = readOnly(step('CheckSteady', withState('check-steady')));
    checkSteady.addCatch(report, toReport);
    const postChecks = readOnly(step('PostChecks', withState('post-checks')));
    postChecks.addCatch(report, toReport);

    // The downgrade runs in the CURRENT release's image (only it has the downgrade script); ECS's
    // .sync integration waits for the task to stop.
    const environment = downgradeEnvironment(this.settings);
    const runMigration = new sfn.CustomState(this, 'RunMigrationDowngrade', {
      stateJson: {
        Type: 'Task',
        Resource: `arn:${stack.partition}:states:::ecs:runTask.sync`,
        Parameters: {
          Cluster: clusterArn,
          'TaskDefinition.$': '$.from.taskDefinitionArn',
          LaunchType: 'FARGATE',
          StartedBy: 'atmr-dr-backout',
          NetworkConfiguration: {
            AwsvpcConfiguration: { Subnets: this.settings.subnetIds, SecurityGroups: this.settings.securityGroupIds, AssignPublicIp: 'DISABLED' },
          },
          // The lock wait bound (downgradeEnvironment, as the CLI's RunTask): static, from the settings.
          Overrides: {
            ContainerOverrides: [
              { Name: props.api.containerName, 'Command.$': '$.downgrade.args', ...(environment.length > 0 && { Environment: environment.map((e) => ({ Name: e.name, Value: e.value })) }) },
            ],
          },
        },
        ResultPath: '$.downgrade.task',
        // The runbook's objective is 30 s; 15 min is the point where something is clearly wrong.
        TimeoutSeconds: 900,
      },
    });
    // RunTask that started no task: the task could not be placed (no Fargate capacity, no ENI,
    // memory: a RunTask answered with `failures`, which Step Functions' guide says fails the state
    // as AmazonECS.Unknown) or ECS refused the request (throttled: ECS.AmazonECSException). No task
    // was started, so trying again cannot run the downgrade twice; without it a refusal of a few seconds
    // went straight to the report, paging a human with the service not rolled back. A task that ran
    // and failed (States.TaskFailed) or outlasted TimeoutSeconds (States.Timeout) is not tried again:
    // the command is `flask db downgrade <absolute revision>` (never a relative step, see
    // parseRevision), but whether a migration that stopped half-way can simply run again is the
    // application's to say, and a human looks first. 3 retries after 1, 2 and 4 s: at most 7 s more
    // of the runbook's 30 s for a migration rollback, enough for a throttle (ECS refills its RunTask
    // rate every second); a capacity shortage that lasts longer pages as before.
    // ECS.ServerException (ECS failing, a 5xx) is NOT tried again: ECS documents that a server error
    // can come after the task was created, and each retry of this state is a new RunTask (the SDK
    // fills a new clientToken per call). RunTask's own idempotency (a ClientToken per execution)
    // would make the retry safe, but no Step Functions document says that its ECS integration
    // passes ClientToken on, and a field it does not accept is refused ("not supported by Step
    // Functions"), possibly only when the state runs, on the worst day (docs/backout.md). Until that
    // is checked on a real account, the report keeps the lock instead: a downgrade may be running.
    // A RunTask ECS refused outright (RUN_TASK_REFUSED_ERRORS: AccessDenied for a missing
    // iam:PassRole, InvalidParameter, ClusterNotFound...) started no task either, but would be refused
    // again: not tried again, it goes to the report, which releases the lock (ReleaseTheLock too).
    runMigration.addRetry({ errors: [...RUN_TASK_NOT_STARTED_ERRORS], interval: Duration.seconds(1), backoffRate: 2, maxAttempts: 3 });
    runMigration.addCatch(finish, { resultPath: '$.downgrade.taskError' });
    runMigration.next(finish);
    prepare.next(runMigration);

    // 10 s between steady-state polls: at most 10 s between ECS reaching steady state and the report
    // (RollbackSeconds); a poll is one state transition and one DescribeServices call.
    const waitForDeployment = new sfn.Wait(this, 'WaitForDeployment', { time: sfn.WaitTime.duration(Duration.seconds(STEADY_POLL_SECONDS)) });
    // The post-checks read the ALB's metrics since steady state, which land about a minute after
    // their minute ends: 120 s lets the minute of steady state land (60 s often read nothing, and a
    // clean rollback then paged as "not verified yet"); HealthyHostCount lands every minute, traffic or not.
    const letMetricsSettle = new sfn.Wait(this, 'LetMetricsSettle', { time: sfn.WaitTime.duration(Duration.seconds(METRICS_SETTLE_SECONDS)) });
    rollOut.next(waitForDeployment).next(checkSteady).next(
      new sfn.Choice(this, 'Steady')
        .when(sfn.Condition.stringEquals('$.steady.status', 'steady'), letMetricsSettle.next(postChecks).next(report))
        .when(sfn.Condition.stringEquals('$.steady.status', 'in-progress'), waitForDeployment)
        .otherwise(report),
    );
    finish.next(new sfn.Choice(this, 'MigrationOk').when(sfn.Condition.booleanEquals('$.downgrade.result.ok', true), rollOut).otherwise(report));

    const definition = guards.next(
      new sfn.Choice(this, 'Decision')
        .when(
          sfn.Condition.stringEquals('$.decision', 'proceed'),
          new sfn.Choice(this, 'DowngradeFirst').when(sfn.Condition.booleanEquals('$.downgrade.run', true), prepare).otherwise(rollOut),
        )
        .when(sfn.Condition.stringEquals('$.decision', 'notify'), report)
        .otherwise(new sfn.Succeed(this, 'NothingToDo', { comment: 'ignored (foreign or malformed trigger) or another rollback holds the lock' })),
    );

    // The workflow's record of each rollback (an incident's audit trail) outlives the stack.
    const logGroup = new logs.LogGroup(this, 'RollbackLogs', { retention: logs.RetentionDays.ONE_YEAR, removalPolicy: RemovalPolicy.RETAIN });
    const machine = new sfn.StateMachine(this, 'RollbackWorkflow', {
      comment: `atmr-dr ${props.environmentName}: alarm-triggered rollback to the last known good`,
      stateMachineType: sfn.StateMachineType.STANDARD,
      definitionBody: sfn.DefinitionBody.fromChainable(definition),
      timeout: steadyTimeout.plus(Duration.minutes(30)),
      tracingEnabled: true,
      logs: { destination: logGroup, level: sfn.LogLevel.ALL, includeExecutionData: false },
    });
    for (const statement of lockRelease.statements) machine.addToRolePolicy(statement);
    if (props.autoDowngradeMigrations ?? false) {
      for (const statement of migrationTaskStatements(stack, props, clusterArn, tasksOfCluster)) machine.addToRolePolicy(statement);
      machine.addToRolePolicy(
        new iam.PolicyStatement({
          sid: 'EcsSyncIntegration',
          actions: ['events:PutTargets', 'events:PutRule', 'events:DescribeRule'],
          resources: [stack.formatArn({ service: 'events', resource: 'rule', resourceName: 'StepFunctionsGetEventsForECSTaskRule' })],
        }),
      );
      machine.addToRolePolicy(passTaskRoles('PassTheApiTaskRoles', props.taskRoleArns));
    }
    return machine;
  }

  /**
   * The lock of a run whose Report failed, deleted by DynamoDB's direct integration if this execution
   * still owns it (a condition on its owner, `$$.Execution.Name`: never another run's, nor a lock the
   * Report released and another run took since), then ReportFailed whatever the delete answers
   * (ConditionalCheckFailed: not ours, or already released). It mirrors the Report's rule:
   *  - the lock is kept when a downgrade task may run (the migration task's error is
   *    ECS.ServerException: RunTask may have started a task it never named; or States.Timeout: the
   *    task outlasted 900 s and may still be downgrading), so that no second downgrade starts; the
   *    Report keeps it then too (downgradeMayRun, which also reads the error's Cause and the task:
   *    ASL cannot parse the Cause, so this keeps it on every ECS.ServerException and States.Timeout);
   *  - the release claims are not touched. Whether a run changed anything on ECS, which decides
   *    whether its claim may go, is the Report's reading of its state (claimKeptBecause), and the claim
   *    of Guards that stopped after claiming and before returning takes a Query and a delete per item
   *    (releaseOwnedBy): a Lambda's work. Left over after a run that changed nothing, such a claim
   *    makes the next alarm of that release page ("already rolled back automatically once"), never
   *    skip quietly.
   * The delete needs the service: an input without one (no alarm rule sends such) goes straight to ReportFailed.
   */
  private releaseLockOfFailedReport(props: RollbackProps, opsTableKey: iam.PolicyStatement[], reportFailed: sfn.Fail): { start: sfn.IChainable; statements: iam.PolicyStatement[] } {
    const stack = Stack.of(this);
    const release = new sfn.CustomState(this, 'ReleaseLockOfFailedReport', {
      stateJson: {
        Type: 'Task',
        Resource: `arn:${stack.partition}:states:::dynamodb:deleteItem`,
        Parameters: {
          TableName: props.table.tableName,
          // rollbackKey's own format, with the service filled in by Step Functions.
          Key: { pk: { 'S.$': `States.Format('${rollbackKey('{}')}', $.service)` }, sk: { S: 'LOCK' } },
          ConditionExpression: '#owner = :owner',
          ExpressionAttributeNames: { '#owner': 'owner' },
          ExpressionAttributeValues: { ':owner': { 'S.$': '$$.Execution.Name' } },
        },
        ResultPath: null,
        // One throttle or 5xx must not leave the lock for its life: tried again (about 7 s in all);
        // a delete refused on its condition (not ours, or released already) is final.
        Retry: [
          { ErrorEquals: ['DynamoDB.ConditionalCheckFailedException'], MaxAttempts: 0 },
          { ErrorEquals: ['States.ALL'], IntervalSeconds: 1, MaxAttempts: 3, BackoffRate: 2 },
        ],
      },
    });
    release.addCatch(reportFailed, { resultPath: '$.lockReleaseError' });
    release.next(reportFailed);
    const services = [props.api, ...(props.workers ?? [])];
    const statements = [
      // DeleteItem of the ROLLBACK# partitions of the configured services only (LeadingKeys), not their LKG# history.
      new iam.PolicyStatement({
        sid: 'ReleaseTheLockOfAFailedReport',
        actions: ['dynamodb:DeleteItem'],
        resources: [props.table.tableArn],
        conditions: { 'ForAllValues:StringEquals': { 'dynamodb:LeadingKeys': services.map((s) => rollbackKey(s.serviceName)) } },
      }),
      ...opsTableKey,
    ];
    const downgradeMayRun = '$.downgrade.taskError.Error';
    // Choice rules are tried in order: the comparison is reached only when the error is present.
    const start = new sfn.Choice(this, 'ReleaseTheLock')
      .when(sfn.Condition.not(sfn.Condition.isPresent('$.service')), reportFailed)
      .when(sfn.Condition.not(sfn.Condition.isPresent(downgradeMayRun)), release)
      .when(sfn.Condition.stringEquals(downgradeMayRun, 'ECS.ServerException'), reportFailed)
      .when(sfn.Condition.stringEquals(downgradeMayRun, 'States.Timeout'), reportFailed)
      .otherwise(release);
    return { start, statements };
  }

  /** Wait the bake time (a Wait state, not a sleeping function), then record the release if it stayed clean. */
  private bakeWorkflow(): sfn.StateMachine {
    const record = retryWhenThrottled(
      new tasks.LambdaInvoke(this, 'RecordLastKnownGood', {
        lambdaFunction: this.steps.function,
        payload: sfn.TaskInput.fromObject({ action: 'record-lkg', event: sfn.JsonPath.entirePayload }),
        payloadResponseOnly: true,
        retryOnServiceExceptions: true,
      }),
    );
    const definition = new sfn.Wait(this, 'Bake', { time: sfn.WaitTime.duration(Duration.seconds(this.settings.bakeSeconds)) }).next(record);
    // Why each release was or was not recorded as last known good: kept with the rollbacks' record.
    const logGroup = new logs.LogGroup(this, 'BakeLogs', { retention: logs.RetentionDays.ONE_YEAR, removalPolicy: RemovalPolicy.RETAIN });
    return new sfn.StateMachine(this, 'BakeWorkflow', {
      comment: `atmr-dr ${this.settings.environmentName}: bake a completed deployment, then record it as last known good`,
      stateMachineType: sfn.StateMachineType.STANDARD,
      definitionBody: sfn.DefinitionBody.fromChainable(definition),
      timeout: Duration.seconds(this.settings.bakeSeconds).plus(Duration.minutes(15)),
      tracingEnabled: true,
      logs: { destination: logGroup, level: sfn.LogLevel.ALL, includeExecutionData: false },
    });
  }

  private acknowledge(stack: Stack, arns: { tasksOfCluster: string; snapshotArns: string; familyArns: string[]; apiFamily: string }, autoDowngrade: boolean): void {
    const render = (value: string) => nagRender(stack, value);
    Validations.of(this.steps).acknowledge(
      ...VPC_MANAGED_POLICY_ACKNOWLEDGEMENTS,
      {
        id: 'AwsSolutions-IAM5[Resource::*]',
        reason:
          'ecs:DescribeTaskDefinition and cloudwatch:GetMetricData have no resource-level permissions (both read-only); ecs:ListTasks is limited to the cluster by the ecs:cluster condition; X-Ray has none either.',
      },
      { id: `AwsSolutions-IAM5[Resource::${render(arns.tasksOfCluster)}]`, reason: 'Task ids are generated by ECS: DescribeTasks is limited to the tasks of the configured cluster.' },
      ...arns.familyArns.map((familyArn) => ({
        id: `AwsSolutions-IAM5[Resource::${render(familyArn)}]`,
        reason: 'The revision number of a registered task definition is chosen by ECS: RegisterTaskDefinition (and TagResource at registration only) are limited to the family of a rolled-back service.',
      })),
      ...(autoDowngrade
        ? [{ id: `AwsSolutions-IAM5[Resource::${render(arns.snapshotArns)}]`, reason: 'Snapshot names carry the execution\'s name: CreateDBSnapshot/AddTagsToResource/DescribeDBSnapshots are limited to the backout snapshot prefix of this environment.' }]
        : []),
      { id: 'AwsSolutions-IAM5[Action::kms:GenerateDataKey*]', reason: "Granted by topic.grantPublish: data keys of the incidents topic's own key (the operations key, which does not encrypt backups)." },
      { id: 'AwsSolutions-L1', reason: 'Node.js 22 is the house runtime: the CLI, the tests and the bench run the same code on Node 22.' },
      { id: 'Serverless-LambdaLatestVersion', reason: 'Node.js 22 is the house runtime: the CLI, the tests and the bench run the same code on Node 22.' },
      { id: 'Serverless-LambdaDLQ', reason: 'Invoked synchronously by Step Functions only: a failed step is caught by the workflow and reported, there is no async event to dead-letter.' },
    );
    for (const machine of [this.rollbackMachine, this.bakeMachine]) {
      Validations.of(machine).acknowledge(
        { id: `AwsSolutions-IAM5[Resource::${render(this.steps.function.functionArn)}:*]`, reason: 'Granted by the LambdaInvoke tasks: invoke the backout step function and its versions, nothing else.' },
        { id: 'AwsSolutions-IAM5[Resource::*]', reason: 'CloudWatch Logs delivery and X-Ray actions of Step Functions have no resource-level permissions.' },
      );
    }
    if (autoDowngrade) {
      Validations.of(this.rollbackMachine).acknowledge(
        { id: `AwsSolutions-IAM5[Resource::${render(arns.apiFamily)}]`, reason: 'RunTask of any revision of the API task family only (the migration runs the CURRENT revision), on the configured cluster only (ecs:cluster condition).' },
        { id: `AwsSolutions-IAM5[Resource::${render(arns.tasksOfCluster)}]`, reason: 'The migration task id is generated by ECS: StopTask/DescribeTasks are limited to tasks of the configured cluster.' },
      );
    }
  }
}

/** RunTask of the API family's downgrade task on the cluster, and its follow-up: the workflow's and the CLI's `rollback migration`. */
function migrationTaskStatements(stack: Stack, props: RollbackProps, clusterArn: string, tasksOfCluster: string): iam.PolicyStatement[] {
  const apiFamily = stack.formatArn({ service: 'ecs', resource: 'task-definition', resourceName: `${props.api.taskFamily}:*` });
  return [
    new iam.PolicyStatement({ sid: 'RunTheMigrationTask', actions: ['ecs:RunTask'], resources: [apiFamily], conditions: { ArnEquals: { 'ecs:cluster': clusterArn } } }),
    new iam.PolicyStatement({ sid: 'FollowTheMigrationTask', actions: ['ecs:StopTask', 'ecs:DescribeTasks'], resources: [tasksOfCluster] }),
  ];
}

/** iam:PassRole of the API task's roles, to ECS tasks only: the migration task runs with them, a pinned revision names them. */
function passTaskRoles(sid: string, roleArns: readonly string[]): iam.PolicyStatement {
  return new iam.PolicyStatement({ sid, actions: ['iam:PassRole'], resources: [...roleArns], conditions: { StringEquals: { 'iam:PassedToService': 'ecs-tasks.amazonaws.com' } } });
}
