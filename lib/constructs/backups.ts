import { Arn, ArnFormat, CfnOutput, Duration, RemovalPolicy, Size, Stack, TimeZone, Token, Validations } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as events from 'aws-cdk-lib/aws-events';
import * as eventTargets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as destinations from 'aws-cdk-lib/aws-lambda-destinations';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as scheduler from 'aws-cdk-lib/aws-scheduler';
import * as targets from 'aws-cdk-lib/aws-scheduler-targets';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { connectWithIamAuthStatement, decryptSecretStatement } from './database-statements';
import { deadLetterQueue, deadLettersAlarm, EMPTY_THE_QUEUE } from './dead-letters';
import { acknowledgeHouseFunctionFindings, HouseFunction, VPC_MANAGED_POLICY_ACKNOWLEDGEMENTS } from './house-function';
import { ruleInbox } from './key-guard';
import { RunbookAlarm, sumOfCounts } from './runbook-alarm';
import {
  BACKUP_RUNNER_SERVICE,
  type BackupRunnerEvent,
  CORE_METRICS,
  MANAGED_TAG_KEY,
  PITR_WATCH_SERVICE,
  REPORTED_FAILURE_EXIT_CODE,
  RUNNER_CONTAINER_NAME,
  RUNNER_ENV,
  RUNNER_METRICS,
  SCHEDULED_TIME_ARG,
  SNAPSHOT_PREFIX,
  TIER_TAG_KEY,
} from '../../lambdas/backup/runner-contract';
import { metricsNamespace, OPERATOR_CLI, operatorCommand } from '../../lambdas/shared/constants';
import {
  BACKUP_TIERS,
  LATEST_POINTER_KEY,
  RESTORE_TEST_AGE_BASELINE_KEY,
  RESTORE_TEST_REPORT_PREFIX,
  anyStampKey,
  backupAgeBaselineKey,
  backupObjectKeys,
  type BackupTier,
} from '../../lambdas/shared/s3-layout';
import { SNAPSHOT_TIERS } from '../../lambdas/shared/tiers';
import { ConfigError, fargatePairProblem, type BackupsConfig, type EnvironmentConfig } from '../config';
import { nagRender } from '../nag';
import type { BackupDatabase, BackupWorkloadProps } from './backup-workload';
import { RUNNER_TASK_ENTRY_POINT, runnerContainerImage, runnerImageCode } from './runner-image';

/**
 * When each tier runs, in the configured time zone (EventBridge Scheduler cron syntax).
 * Hourly on the hour and daily at 02:00 as in the runbook's crontab; weekly and monthly at half past
 * so that they do not queue behind the hourly run of the same hour.
 */
export const BACKUP_SCHEDULE_EXPRESSIONS: Readonly<Record<BackupTier, string>> = {
  hourly: 'cron(0 * * * ? *)',
  daily: 'cron(0 2 * * ? *)',
  weekly: 'cron(30 3 ? * SUN *)',
  monthly: 'cron(30 4 1 * ? *)',
};

/**
 * The runbook's RPO (< 15 minutes), reachable only through PITR: the point RDS can restore to
 * (latest restorable time) must not fall further behind than this.
 */
export const PITR_RPO_SECONDS = 15 * 60;

/**
 * How often the PITR watch reads the latest restorable time, independent of the backup runs: a third
 * of the RPO, so that a lag crossing PITR_RPO_SECONDS is read within 5 minutes and pages within about
 * 10 (docs/backup-runner.md, "PITR watch"). The PitrLag, PitrOff and PitrUnread alarms use it as their period.
 */
export const PITR_WATCH_INTERVAL = Duration.minutes(5);

/**
 * Each tier's cadence, the one place it is written: the Backups-NoRecent<Tier> alarms and the
 * restore test's RPO objective and its check (lib/constructs/restore-test.ts) read it.
 * - intervalSeconds: how far apart the tier's backups are (monthly: the longest month), the age its
 *   newest dump reaches on a healthy deployment before the next one replaces it.
 * - maxNewestAgeHours: how old the newest good backup may get before it is overdue, in hours: the
 *   longest gap between two runs of its schedule, plus 3 hours for a run in progress. Daily: 2 days,
 *   since Scheduler skips the 02:00 run on the day 02:00 does not exist (last Sunday of March, see
 *   docs/backup-runner.md); weekly and monthly: 7 and 31 days plus the hour daylight saving adds;
 *   hourly: 1 hour. Hourly has no age alarm of its own (Backups-NoRecentHourly counts its runs).
 */
export const TIER_CADENCE: Readonly<Record<BackupTier, { readonly intervalSeconds: number; readonly maxNewestAgeHours: number }>> = {
  hourly: { intervalSeconds: 3600, maxNewestAgeHours: 1 + 3 },
  daily: { intervalSeconds: 86_400, maxNewestAgeHours: 48 + 3 },
  weekly: { intervalSeconds: 7 * 86_400, maxNewestAgeHours: 7 * 24 + 1 + 3 },
  monthly: { intervalSeconds: 31 * 86_400, maxNewestAgeHours: 31 * 24 + 1 + 3 },
};

/**
 * Ops stack outputs of the Fargate runner: what a manual `aws ecs run-task` of a tier needs
 * (docs/backup-runner.md, "Manual run"), the same cluster, task definition and network the
 * schedules pass.
 */
export const BACKUP_RUNNER_OUTPUTS = {
  clusterArn: 'BackupRunnerClusterArn',
  taskFamily: 'BackupRunnerTaskFamily',
  securityGroupId: 'BackupRunnerSecurityGroupId',
  subnetIds: 'BackupRunnerSubnetIds',
} as const;

export interface BackupsProps extends BackupWorkloadProps {
  /** Environment name (resource descriptions, alarm names, config paths in errors). */
  readonly environmentName: string;
  /** IANA time zone of the schedules. */
  readonly timeZone: string;
  /** The database to back up (the runner connects to it and snapshots its instance). */
  readonly database: BackupDatabase;
  /** Runner placement and sizing, compression, retention and lock settings (config `backups`). */
  readonly settings: BackupsConfig;
  /**
   * Prefix of the restore-test reports, when the restore test is deployed: every run then reports
   * the newest report's age (`RestoreTestReportAgeSeconds`), the heartbeat of the monthly test.
   * @default - no report age
   */
  readonly restoreTestReportPrefix?: string;
  /**
   * Retries of EventBridge Scheduler when it cannot deliver a run (throttling, target unavailable).
   * @default 3
   */
  readonly scheduleRetryAttempts?: number;
  /**
   * How long Scheduler keeps trying to deliver one run before it goes to the dead-letter queue.
   * @default Duration.hours(1)
   */
  readonly scheduleMaxEventAge?: Duration;
  /**
   * Lambda runner: retries of a failed asynchronous run (a new, complete backup).
   * @default 1
   */
  readonly asyncRetryAttempts?: number;
}

/**
 * Scheduled PostgreSQL backups (runbook "Sauvegarde", sections 4 and 6): four EventBridge Scheduler schedules in the configured
 * time zone invoke the runner image (Lambda, or an ECS Fargate task when `backups.runner` is
 * `fargate`) with their tier. The runner dumps to the backup bucket, snapshots RDS for weekly and
 * monthly, checks PITR, and its failures, silences and PITR state raise alarms to the incidents topic.
 */
export class Backups extends Construct {
  /** Security group of the runner (443 out, PostgreSQL to the database group). */
  readonly securityGroup: ec2.SecurityGroup;
  /** Runs Scheduler could not deliver and Lambda runs that failed after their retries. */
  readonly deadLetterQueue: sqs.Queue;
  readonly schedules: Readonly<Record<BackupTier, scheduler.Schedule>>;
  /** The role the runner code runs with (Lambda execution role or ECS task role). */
  readonly runnerRole: iam.IRole;
  /** Reads the PITR point every PITR_WATCH_INTERVAL (both runners), and its schedule. */
  readonly pitrWatch: { readonly function: HouseFunction; readonly schedule: scheduler.Schedule };
  /** The Lambda runner (`runner: lambda`). */
  readonly function?: lambda.DockerImageFunction;
  /** The Fargate runner (`runner: fargate`). */
  readonly taskDefinition?: ecs.FargateTaskDefinition;
  readonly cluster?: ecs.ICluster;
  /**
   * Fargate runner only: ECS's events of its tasks that stopped without reporting their failure
   * (never started, killed, crashed), and the schedules' RunTask calls that started no task, kept 14
   * days for the investigation, and the rules that send them.
   */
  readonly stoppedRuns?: { readonly rule: events.Rule; readonly unplacedRule: events.Rule; readonly events: sqs.Queue; readonly undelivered: sqs.Queue };
  readonly alarms: {
    readonly failedRun: cloudwatch.Alarm;
    readonly noRecentHourlyBackup: cloudwatch.Alarm;
    /** The newest good backup of the daily, weekly or monthly tier is too old (as every run reports it). */
    readonly noRecentDaily: cloudwatch.Alarm;
    readonly noRecentWeekly: cloudwatch.Alarm;
    readonly noRecentMonthly: cloudwatch.Alarm;
    readonly pitrOff: cloudwatch.Alarm;
    readonly pitrLag: cloudwatch.Alarm;
    /** Automated backups on, but RDS reports no latest restorable time (PitrLag has nothing to read). */
    readonly pitrNoRestorableTime: cloudwatch.Alarm;
    /** The PITR watch has published no reading for 15 minutes: PitrLag and PitrOff could not page. */
    readonly pitrUnread: cloudwatch.Alarm;
    readonly deadLetters: cloudwatch.Alarm;
    /** Lambda runner only: crashes and timeouts that never reach the runner's own failure metric. */
    readonly runnerErrors?: cloudwatch.Alarm;
    /** Fargate runner only: a task that never started, or stopped without reporting its failure. */
    readonly runnerStopped?: cloudwatch.Alarm;
  };

  constructor(scope: Construct, id: string, props: BackupsProps) {
    super(scope, id);
    const { bucket, backupKey, vpc, database, environmentName } = props;
    const stack = Stack.of(this);

    // --- network: HTTPS to the AWS APIs, PostgreSQL to the database, nothing else ---
    this.securityGroup = new ec2.SecurityGroup(this, 'RunnerSecurityGroup', {
      vpc,
      description: `atmr-dr ${environmentName} backup runner: HTTPS to AWS APIs, PostgreSQL to the database`,
      allowAllOutbound: false,
    });
    // The APIs the runner code calls (lambdas/backup: S3, Secrets Manager unless it logs in with IAM
    // auth, RDS). Its metrics are EMF lines in its logs; KMS is called by S3 and Secrets Manager, not
    // by the runner. A Fargate task also pulls its image (ECR, layers from S3) and ships its logs
    // (CloudWatch Logs) through its own network interface; Lambda does both itself.
    const awsApis = props.settings.runner === 'fargate' ? 'S3, Secrets Manager, RDS, ECR, CloudWatch Logs' : 'S3, Secrets Manager, RDS';
    this.securityGroup.addEgressRule(ec2.Peer.anyIpv4(), ec2.Port.tcp(443), `AWS APIs (${awsApis}) over HTTPS`);
    this.securityGroup.connections.allowTo(props.databaseSecurityGroup, ec2.Port.tcp(database.port), 'atmr-dr backup runner to PostgreSQL');

    // --- dead letters: undeliverable schedules and failed async runs ---
    this.deadLetterQueue = deadLetterQueue(this, {
      key: props.opsKey,
      isTheDeadLetterQueue: 'This queue is itself the dead-letter queue of the backup schedules and the runner\'s on-failure destination.',
    });

    // A named export for the bucket ARN (when the bucket lives in the data stack): the IAM5
    // acknowledgements below name the exact object-prefix ARNs, so they need a stable name.
    const bucketStack = Stack.of(bucket);
    const bucketArn =
      bucketStack !== stack && Token.isUnresolved(bucket.bucketArn)
        ? bucketStack.exportValue(bucket.bucketArn, { name: `${bucketStack.stackName}:BackupBucketArn` })
        : bucket.bucketArn;
    const runner: RunnerInputs = {
      environment: runnerEnvironment(props, bucket.bucketName),
      statements: runnerPolicyStatements(stack, props, bucketArn, backupKey),
      logGroup: new logs.LogGroup(this, 'RunnerLogs', { retention: logs.RetentionDays.THREE_MONTHS, removalPolicy: RemovalPolicy.DESTROY }),
      scheduleRetry: {
        deadLetterQueue: this.deadLetterQueue,
        retryAttempts: props.scheduleRetryAttempts ?? 3,
        maxEventAge: props.scheduleMaxEventAge ?? Duration.hours(1),
      },
      schedulerRole: new iam.Role(this, 'SchedulerRole', {
        description: `atmr-dr ${environmentName}: EventBridge Scheduler starts the backup runner`,
        assumedBy: new iam.ServicePrincipal('scheduler.amazonaws.com', {
          conditions: { StringEquals: { 'aws:SourceAccount': stack.account } },
        }),
      }),
    };
    // The dead-letter queue is KMS-encrypted (operations key): Scheduler must encrypt with it to send.
    runner.schedulerRole.addToPrincipalPolicy(
      new iam.PolicyStatement({ actions: ['kms:GenerateDataKey', 'kms:Decrypt'], resources: [props.opsKey.keyArn] }),
    );
    const built = props.settings.runner === 'lambda' ? this.lambdaRunner(props, runner) : this.fargateRunner(props, runner);
    this.runnerRole = built.role;
    this.function = built.function;
    this.taskDefinition = built.taskDefinition;
    this.cluster = built.cluster;
    const targetFor = built.targetFor;

    const timeZone = TimeZone.of(props.timeZone);
    const schedules = {} as Record<BackupTier, scheduler.Schedule>;
    for (const tier of BACKUP_TIERS) {
      schedules[tier] = new scheduler.Schedule(this, `${capitalize(tier)}Schedule`, {
        description: `atmr-dr ${environmentName}: ${tier} PostgreSQL backup (${BACKUP_SCHEDULE_EXPRESSIONS[tier]} ${props.timeZone})`,
        schedule: scheduler.ScheduleExpression.expression(BACKUP_SCHEDULE_EXPRESSIONS[tier], timeZone),
        target: targetFor(tier),
        timeWindow: scheduler.TimeWindow.off(),
      });
    }
    this.schedules = schedules;
    this.pitrWatch = this.createPitrWatch(props, runner.schedulerRole);

    if (this.taskDefinition && this.cluster) this.stoppedRuns = this.watchStoppedRuns(this.cluster, this.taskDefinition);
    this.alarms = this.createAlarms(props, runner.logGroup);
  }

  /** The Lambda runner (15-minute cap): one run at a time, failed async runs to the dead-letter queue. */
  private lambdaRunner(props: BackupsProps, runner: RunnerInputs): RunnerTarget {
    const { database, settings, environmentName } = props;
    const stack = Stack.of(this);
    const fn = new lambda.DockerImageFunction(this, 'Runner', {
      description: `atmr-dr ${environmentName}: scheduled PostgreSQL backup runner`,
      code: runnerImageCode('backup.handler', { pgMajorVersion: database.engineMajorVersion }),
      architecture: lambda.Architecture.ARM_64,
      memorySize: settings.memoryMiB,
      ephemeralStorageSize: Size.mebibytes(settings.ephemeralStorageMiB),
      timeout: Duration.minutes(15),
      // One run at a time: a run that fires while another is running waits (async throttling retries).
      reservedConcurrentExecutions: 1,
      vpc: props.vpc,
      vpcSubnets: props.subnets,
      securityGroups: [this.securityGroup],
      tracing: lambda.Tracing.ACTIVE,
      logGroup: runner.logGroup,
      loggingFormat: lambda.LoggingFormat.JSON,
      environment: runner.environment,
      retryAttempts: props.asyncRetryAttempts ?? 1,
      maxEventAge: Duration.hours(6),
      onFailure: new destinations.SqsDestination(this.deadLetterQueue),
    });
    for (const statement of runner.statements) fn.addToRolePolicy(statement);
    Validations.of(fn).acknowledge(
      ...VPC_MANAGED_POLICY_ACKNOWLEDGEMENTS,
      ...wildcardFindings(stack, runner.statements).map(({ finding, reason }) => ({ id: `AwsSolutions-IAM5[${finding}]`, reason })),
      {
        id: 'AwsSolutions-IAM5[Resource::*]',
        reason: 'X-Ray PutTraceSegments/PutTelemetryRecords (active tracing) have no resource-level permissions.',
      },
      ...['kms:GenerateDataKey*', 'kms:ReEncrypt*'].map((action) => ({
        id: `AwsSolutions-IAM5[Action::${action}]`,
        reason: "Granted by CDK for sending the failed-run record to the dead-letter queue: on the queue's key (the operations key) only, which encrypts no backup.",
      })),
      {
        id: 'Serverless-LambdaDLQ',
        reason:
          'Failed asynchronous runs go to the on-failure destination (the dead-letter queue, alarmed), which records the error context; the legacy DeadLetterConfig would only duplicate it.',
      },
    );
    Validations.of(runner.schedulerRole).acknowledge({
      id: `AwsSolutions-IAM5[Resource::${nagRender(stack, fn.functionArn)}:*]`,
      reason: 'Granted by the LambdaInvoke schedule target: invoke the runner function and its versions, nothing else.',
    });
    return {
      function: fn,
      role: fn.role as iam.IRole,
      // The scheduled time, the same on every delivery, lets a delivery that finds the run's backup
      // already taken (Scheduler delivers at least once) end with nothing to do.
      targetFor: (tier) =>
        new targets.LambdaInvoke(fn, {
          input: scheduler.ScheduleTargetInput.fromObject({ tier, scheduledTime: scheduler.ContextAttribute.scheduledTime } satisfies BackupRunnerEvent),
          role: runner.schedulerRole,
          ...runner.scheduleRetry,
        }),
    };
  }

  /**
   * The PITR watch: a small house function (outside the VPC: it calls the RDS API only) that
   * Scheduler invokes every PITR_WATCH_INTERVAL. Not the runner with another event: the Lambda
   * runner runs one at a time for up to 15 minutes (a read would wait behind each backup), and the
   * Fargate runner would start a task every 5 minutes.
   */
  private createPitrWatch(props: BackupsProps, schedulerRole: iam.Role): Backups['pitrWatch'] {
    const { environmentName, database } = props;
    const stack = Stack.of(this);
    const fn = new HouseFunction(this, 'PitrWatch', {
      entry: 'lambdas/backup/pitr-watch.ts',
      serviceName: PITR_WATCH_SERVICE,
      environmentName,
      // One read at a time: a read takes a second, the next is 5 minutes later.
      reservedConcurrentExecutions: 1,
      environment: {
        [RUNNER_ENV.instanceIdentifier]: database.instanceIdentifier,
        [RUNNER_ENV.minPitrRetentionDays]: String(props.settings.minPitrRetentionDays),
      },
    });
    fn.function.addToRolePolicy(pitrCheckStatement(stack, database.instanceIdentifier));
    // A failed read is retried by Lambda (twice, within minutes), never later than its successor:
    // nothing is worth replaying, and PitrUnread pages when no read has succeeded for 15 minutes.
    fn.function.configureAsyncInvoke({ retryAttempts: 2, maxEventAge: PITR_WATCH_INTERVAL });
    acknowledgeHouseFunctionFindings(fn);
    const dropped = 'A failed PITR read has nothing to replay (the next read is 5 minutes later): it is dropped on purpose, and reads that stop succeeding page through Backups-PitrUnread, not a queue.';
    Validations.of(fn).acknowledge({ id: 'Serverless-LambdaDLQ', reason: dropped }, { id: 'Serverless-LambdaAsyncFailureDestination', reason: dropped });
    const schedule = new scheduler.Schedule(this, 'PitrWatchSchedule', {
      description: `atmr-dr ${environmentName}: read the PITR point (latest restorable time) of ${database.instanceIdentifier} every ${PITR_WATCH_INTERVAL.toMinutes()} minutes`,
      schedule: scheduler.ScheduleExpression.rate(PITR_WATCH_INTERVAL),
      // A read delivered later than the next one measures nothing new: undelivered reads page as PitrUnread.
      target: new targets.LambdaInvoke(fn.function, { role: schedulerRole, retryAttempts: 2, maxEventAge: Duration.minutes(4) }),
      timeWindow: scheduler.TimeWindow.off(),
    });
    Validations.of(schedulerRole).acknowledge({
      id: `AwsSolutions-IAM5[Resource::${nagRender(stack, fn.function.functionArn)}:*]`,
      reason: 'Granted by the LambdaInvoke schedule target: invoke the PITR watch function and its versions, nothing else.',
    });
    return { function: fn, schedule };
  }

  /** The ECS Fargate runner (no time cap): Scheduler runs the task with the tier as its command. */
  private fargateRunner(props: BackupsProps, runner: RunnerInputs): RunnerTarget {
    const { database, settings, environmentName, vpc } = props;
    const stack = Stack.of(this);
    const cpu = settings.fargateCpu;
    const pairProblem = fargatePairProblem(cpu, settings.memoryMiB);
    if (pairProblem) throw new ConfigError(`config: environments.${environmentName}.backups.memoryMiB: ${pairProblem}`);
    const cluster = settings.ecsClusterArn
      ? ecs.Cluster.fromClusterAttributes(this, 'Cluster', {
          clusterName: Arn.split(settings.ecsClusterArn, ArnFormat.SLASH_RESOURCE_NAME).resourceName ?? settings.ecsClusterArn,
          clusterArn: settings.ecsClusterArn,
          vpc,
        })
      : new ecs.Cluster(this, 'Cluster', { vpc, containerInsightsV2: ecs.ContainerInsights.ENABLED });
    const taskDefinition = new ecs.FargateTaskDefinition(this, 'RunnerTask', {
      cpu,
      memoryLimitMiB: settings.memoryMiB,
      // Fargate's minimum is 21 GiB; the dump streams, this is scratch space for pg tools.
      ephemeralStorageGiB: Math.max(21, Math.ceil(settings.ephemeralStorageMiB / 1024)),
      runtimePlatform: { cpuArchitecture: ecs.CpuArchitecture.ARM64, operatingSystemFamily: ecs.OperatingSystemFamily.LINUX },
    });
    taskDefinition.addContainer(RUNNER_CONTAINER_NAME, {
      image: runnerContainerImage({ pgMajorVersion: database.engineMajorVersion }),
      entryPoint: RUNNER_TASK_ENTRY_POINT,
      // The schedule overrides the command with its tier and scheduled time; this default makes a
      // manual RunTask explicit (its limit then counts from its start).
      command: ['--tier', 'daily'],
      // The task stops its run itself before this limit (lambdas/backup/task.ts): ECS has none.
      environment: { ...runner.environment, [RUNNER_ENV.taskTimeoutSeconds]: String(settings.fargateTimeoutMinutes * 60) },
      logging: ecs.LogDrivers.awsLogs({ streamPrefix: 'backup', logGroup: runner.logGroup }),
      // From SIGTERM to SIGKILL. A stopped run gets DEADLINE_MARGIN_MS (30 s) to abort and report
      // its failure before the task gives up on it: the Fargate maximum, 120 s, leaves room for that.
      stopTimeout: Duration.seconds(120),
    });
    for (const statement of runner.statements) taskDefinition.addToTaskRolePolicy(statement);
    Validations.of(taskDefinition).acknowledge(
      {
        id: 'AwsSolutions-ECS2',
        reason: 'The environment holds only non-secret settings (bucket, host, secret ARN, retention); credentials are read at run time from Secrets Manager.',
      },
      ...wildcardFindings(stack, runner.statements).map(({ finding, reason }) => ({ id: `AwsSolutions-IAM5[${finding}]`, reason })),
      {
        id: 'AwsSolutions-IAM5[Resource::*]',
        reason: 'ecr:GetAuthorizationToken (the execution role pulling the runner image) has no resource-level permissions.',
      },
    );
    const subnetIds = vpc.selectSubnets(props.subnets).subnetIds;
    const passRoles = [taskDefinition.taskRole.roleArn, taskDefinition.obtainExecutionRole().roleArn];
    // PropagateTags copies the task definition's tags (stack tags, at deploy) onto the task: ECS then
    // authorizes ecs:TagResource at RunTask, and refuses the run without it.
    const clusterTasks = stack.formatArn({ service: 'ecs', resource: 'task', resourceName: `${cluster.clusterName}/*`, arnFormat: ArnFormat.SLASH_RESOURCE_NAME });
    Validations.of(runner.schedulerRole).acknowledge({
      id: `AwsSolutions-IAM5[Resource::${nagRender(stack, clusterTasks)}]`,
      reason: 'Task ids are made at RunTask: ecs:TagResource on the tasks of the runner cluster, only as part of RunTask (ecs:CreateAction), for the tags it propagates.',
    });
    new CfnOutput(stack, BACKUP_RUNNER_OUTPUTS.clusterArn, { value: cluster.clusterArn, description: 'Cluster of the backup runner task (aws ecs run-task --cluster)' });
    new CfnOutput(stack, BACKUP_RUNNER_OUTPUTS.taskFamily, { value: taskDefinition.family, description: 'Task definition family of the backup runner (aws ecs run-task --task-definition: its latest revision)' });
    new CfnOutput(stack, BACKUP_RUNNER_OUTPUTS.securityGroupId, { value: this.securityGroup.securityGroupId, description: 'Security group of the backup runner task (awsvpcConfiguration securityGroups)' });
    new CfnOutput(stack, BACKUP_RUNNER_OUTPUTS.subnetIds, { value: subnetIds.join(','), description: 'Subnets of the backup runner task, comma-separated (awsvpcConfiguration subnets)' });
    // A run delivered after its limit (counted from its scheduled time) could only be refused by the
    // task: Scheduler stops retrying by then, and the run goes to the dead-letter queue (which pages).
    const limit = Duration.minutes(settings.fargateTimeoutMinutes);
    const scheduleRetry = {
      ...runner.scheduleRetry,
      maxEventAge: runner.scheduleRetry.maxEventAge.toSeconds() > limit.toSeconds() ? limit : runner.scheduleRetry.maxEventAge,
    };
    return {
      taskDefinition,
      cluster,
      role: taskDefinition.taskRole,
      targetFor: (tier) =>
        // Universal target: its input is the verbatim RunTask request, so the tier override is explicit.
        new targets.Universal({
          service: 'ecs',
          action: 'runTask',
          role: runner.schedulerRole,
          ...scheduleRetry,
          input: scheduler.ScheduleTargetInput.fromObject({
            Cluster: cluster.clusterArn,
            TaskDefinition: taskDefinition.taskDefinitionArn,
            LaunchType: 'FARGATE',
            Count: 1,
            NetworkConfiguration: {
              AwsvpcConfiguration: { Subnets: subnetIds, SecurityGroups: [this.securityGroup.securityGroupId], AssignPublicIp: 'DISABLED' },
            },
            // The scheduled time (the same on every retry) starts the task's clock: a run that
            // starts late ends no later, so it never runs into the next run of its tier.
            Overrides: { ContainerOverrides: [{ Name: RUNNER_CONTAINER_NAME, Command: ['--tier', tier, SCHEDULED_TIME_ARG, scheduler.ContextAttribute.scheduledTime] }] },
            PropagateTags: 'TASK_DEFINITION',
          }),
          policyStatements: [
            new iam.PolicyStatement({
              actions: ['ecs:RunTask'],
              resources: [taskDefinition.taskDefinitionArn],
              conditions: { ArnEquals: { 'ecs:cluster': cluster.clusterArn } },
            }),
            new iam.PolicyStatement({
              actions: ['iam:PassRole'],
              resources: passRoles,
              conditions: { StringEquals: { 'iam:PassedToService': 'ecs-tasks.amazonaws.com' } },
            }),
            new iam.PolicyStatement({
              actions: ['ecs:TagResource'],
              resources: [clusterTasks],
              conditions: { StringEquals: { 'ecs:CreateAction': 'RunTask' } },
            }),
          ],
        }),
    };
  }

  /**
   * A Fargate run that dies before it can report (out of memory: exit 137; its image not pulled,
   * its network interface or secret not set up: TaskFailedToStart; stopped while still pending, by
   * hand or with its capacity: no exit code; a crash: exit 1; a bad configuration: exit 2) emits no
   * failure metric, and Scheduler's RunTask succeeded, so its dead-letter queue stays empty: only
   * the tier's age alarm would page, 2 hours (hourly) to a month (monthly) later, and for one missed
   * daily run never (its age, 48 hours, stays under the alarm's 51). ECS's own stop event says it at once. A run that failed and reported it exits
   * REPORTED_FAILURE_EXIT_CODE (FailedRun pages for it) and is left out here: one failure, one page.
   * A run ECS never placed has no stop event: CloudTrail's record of its RunTask goes to the same queue.
   */
  private watchStoppedRuns(cluster: ecs.ICluster, taskDefinition: ecs.FargateTaskDefinition): NonNullable<Backups['stoppedRuns']> {
    const scope = new Construct(this, 'StoppedRuns');
    const [inbox, undelivered] = ruleInbox(
      scope,
      'This queue keeps the stop events of backup tasks that did not report their failure, and the scheduled RunTask calls that started no task (or those EventBridge could not deliver), for the investigation: nothing consumes it, the RunnerStopped alarm counts what arrives, messages expire after 14 days.',
    );
    // Every revision of the runner's task definition (a deploy registers a new one), on its cluster.
    const family = Stack.of(this).formatArn({ service: 'ecs', resource: 'task-definition', resourceName: `${taskDefinition.family}:`, arnFormat: ArnFormat.SLASH_RESOURCE_NAME });
    const rule = new events.Rule(scope, 'Rule', {
      description: 'atmr-dr: a backup runner task never started, or stopped without reporting its failure',
      eventPattern: {
        source: ['aws.ecs'],
        detailType: ['ECS Task State Change'],
        detail: {
          clusterArn: [cluster.clusterArn],
          taskDefinitionArn: [{ prefix: family }],
          lastStatus: ['STOPPED'],
          // A container that never ran has no exit code: the task failed to start (TaskFailedToStart,
          // named too: its documented event lists no container at all), or was stopped while still
          // pending (UserInitiated, TerminationNotice, SpotInterruption). Either way no backup was
          // made, and nothing else would say so in time.
          $or: [
            { stopCode: ['TaskFailedToStart'] },
            { containers: { exitCode: [{ exists: false }] } },
            { containers: { exitCode: [{ 'anything-but': [0, REPORTED_FAILURE_EXIT_CODE] }] } },
          ],
        },
      },
      targets: [new eventTargets.SqsQueue(inbox, { deadLetterQueue: undelivered, retryAttempts: 185, maxEventAge: Duration.hours(24) })],
    });
    // A RunTask answered 200 with `failures` (no Fargate capacity) started no task: Scheduler counts
    // the call a success (no retry, no dead-letter queue), ECS sends no task event, and only the
    // tier's age alarm would say so, hours or days later or, for one missed daily run, never. (An
    // inactive task definition or a cluster gone is an error answer instead: Scheduler retries it,
    // then its dead-letter queue pages.) CloudTrail records the call with its answer (this needs a
    // trail logging management events, as KeyGuard). The pattern is the call's, not its caller's
    // (CloudTrail's caller fields are not verified here): a manual run-task naming the cluster and
    // task definition by ARN, as the schedules do (targetFor), is sent and pages too.
    const unplacedRule = new events.Rule(scope, 'UnplacedRule', {
      description: 'atmr-dr: a scheduled backup RunTask started no task (answered with failures)',
      eventPattern: {
        source: ['aws.ecs'],
        detailType: ['AWS API Call via CloudTrail'],
        detail: {
          eventSource: ['ecs.amazonaws.com'],
          eventName: ['RunTask'],
          requestParameters: { cluster: [cluster.clusterArn], taskDefinition: [{ prefix: family }] },
          responseElements: { failures: { reason: [{ exists: true }] } },
        },
      },
      targets: [new eventTargets.SqsQueue(inbox, { deadLetterQueue: undelivered, retryAttempts: 185, maxEventAge: Duration.hours(24) })],
    });
    return { rule, unplacedRule, events: inbox, undelivered };
  }

  private createAlarms(props: BackupsProps, runnerLogs: logs.ILogGroup): Backups['alarms'] {
    const topic = props.alarmTopic;
    // The first commands of a page, with what this construct knows filled in: its environment (the
    // CLI's default is the checkout's cdk.json env, maybe another), the runner's log group (both
    // runners write there), the instance. The dump runs from a machine that reaches the database.
    const env = props.environmentName;
    const instance = props.database.instanceIdentifier;
    const readLogs = (since: string) => `aws logs tail ${runnerLogs.logGroupName} --since ${since}`;
    const list = (tier: BackupTier) => operatorCommand(env, `backups list --tier ${tier}`);
    const backUp = (tier: string) => `${OPERATOR_CLI} backup --tier ${tier} --env ${env} (PG* de la base)`;
    const common = { environmentName: props.environmentName, concern: 'Backups', runbookSection: 'Sauvegarde - 4. Backup automatisé', topic };
    const metric = (metricName: string, dimensionsMap: Record<string, string>, statistic: string, period: Duration) =>
      new cloudwatch.Metric({ namespace: metricsNamespace(props.environmentName), metricName, dimensionsMap: { service: BACKUP_RUNNER_SERVICE, ...dimensionsMap }, statistic, period });
    const fiveMinutes = Duration.minutes(5);
    // The PITR watch's own metrics (service pitr-watch): the hourly run publishes the same names
    // under backup-runner, which would fill one period an hour of a silent watch.
    const pitrWatchMetric = (metricName: string, statistic: string) =>
      new cloudwatch.Metric({
        namespace: metricsNamespace(props.environmentName),
        metricName,
        dimensionsMap: { service: PITR_WATCH_SERVICE, DBInstanceIdentifier: instance },
        statistic,
        period: PITR_WATCH_INTERVAL,
      });

    // Any failed run: the core's BackupFailure (per tier) or the runner's own failure metric.
    const failures: Record<string, cloudwatch.IMetric> = { runFailure: metric(RUNNER_METRICS.scheduledRunFailure, {}, 'Sum', fiveMinutes) };
    for (const tier of BACKUP_TIERS) failures[`${tier}Failure`] = metric(CORE_METRICS.failure, { Tier: tier }, 'Sum', fiveMinutes);
    const failedRun = new RunbookAlarm(this, 'FailedRunAlarm', {
      ...common,
      what: 'FailedRun',
      summary: `a scheduled PostgreSQL backup run failed (see the backup-runner logs)`,
      firstActions: `lire l'erreur et le niveau : ${readLogs('1h')} ; ${list('hourly')} ; corrigé, refaire ce niveau : ${backUp('<tier>')}`,
      // One failed run; the next 5 minutes without another one turn it OK, nothing fixed.
      signalsEvent: true,
      metric: sumOfCounts(failures, fiveMinutes, 'Failed backup runs'),
      threshold: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: 1,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });

    // Silence is a failure too: no successful hourly backup in two consecutive hours.
    const noRecentHourlyBackup = new RunbookAlarm(this, 'NoRecentHourlyBackupAlarm', {
      ...common,
      what: 'NoRecentHourly',
      summary: `no successful hourly PostgreSQL backup for 2 hours`,
      firstActions: `${list('hourly')} ; ${readLogs('3h')} (aucune ligne : le runner ne démarre plus, voir Backups-DeadLetters) ; ${backUp('hourly')}`,
      metric: metric(CORE_METRICS.success, { Tier: 'hourly' }, 'Sum', Duration.hours(1)),
      threshold: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
      evaluationPeriods: 2,
      datapointsToAlarm: 2,
      treatMissingData: cloudwatch.TreatMissingData.BREACHING,
    });

    // The other tiers' runs can fail with no metric at all (their schedule disabled, a Fargate task
    // that never started, crashed or hangs): every run, hourly ones included, reports the age of
    // each tier's newest good backup, and, while a tier has none yet, the time since its age
    // baseline (lambdas/backup/age-baseline.ts): a tier that never succeeded since the deploy pages
    // after the same age as one that stopped. So every hourly run reports every tier, and a tier's
    // age missing 3 hours running means nothing reports it: the runner is silent (NoRecentHourly
    // pages too) or it cannot read that tier's pointer, manifest or baseline (nothing else would
    // page for that). Breaching, 3 hours out of 3: one late or skipped hourly run neither pages nor
    // turns an alarm OK.
    const noRecentTier = (tier: Exclude<BackupTier, 'hourly'>) =>
      new RunbookAlarm(this, `NoRecent${capitalize(tier)}Alarm`, {
        ...common,
        what: `NoRecent${capitalize(tier)}`,
        summary: `the newest good ${tier} PostgreSQL backup is more than ${TIER_CADENCE[tier].maxNewestAgeHours} hours old (or, with none yet, the first ${tier} run after the deploy is that late), or its age has not been reported for 3 hours (backup-runner logs: "cannot report the age")`,
        firstActions: `${list(tier)} ; ${readLogs('3h')} --filter-pattern '"${tier}"' ; ${backUp(tier)}`,
        metric: metric(RUNNER_METRICS.latestBackupAgeSeconds, { Tier: tier }, 'Maximum', Duration.hours(1)),
        threshold: TIER_CADENCE[tier].maxNewestAgeHours * 3600,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluationPeriods: 3,
        datapointsToAlarm: 3,
        treatMissingData: cloudwatch.TreatMissingData.BREACHING,
      });
    const noRecentDaily = noRecentTier('daily');
    const noRecentWeekly = noRecentTier('weekly');
    const noRecentMonthly = noRecentTier('monthly');

    const pitrOff = new RunbookAlarm(this, 'PitrOffAlarm', {
      ...common,
      what: 'PitrOff',
      summary: `automated backups (PITR) of ${props.database.instanceIdentifier} are off or kept less than ${props.settings.minPitrRetentionDays} days: the 15-minute RPO is not reachable`,
      // From 0 days RDS turns backups on with a brief I/O suspension: the on-call says so first.
      firstActions: `aws rds modify-db-instance --db-instance-identifier ${instance} --backup-retention-period ${props.settings.minPitrRetentionDays} --apply-immediately (depuis 0 jour : brève suspension des I/O, prévenir) ; puis un dump : ${backUp('hourly')}`,
      metric: pitrWatchMetric(RUNNER_METRICS.pitrEnabled, 'Minimum'),
      threshold: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
      evaluationPeriods: 1,
      // Read by the watch every 5 minutes; a silent watch is PitrUnread's business.
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });

    // PITR on is not enough: archiving can stall (storage full, a stuck instance) while the setting
    // stays on, and the point a recovery can reach stops moving.
    const pitrLag = new RunbookAlarm(this, 'PitrLagAlarm', {
      ...common,
      what: 'PitrLag',
      summary: `the latest point-in-time RDS can restore ${props.database.instanceIdentifier} to is more than ${PITR_RPO_SECONDS / 60} minutes old: a recovery now would lose more than the runbook's RPO`,
      firstActions: `aws rds describe-db-instances --db-instance-identifier ${instance} --query 'DBInstances[0].[DBInstanceStatus,LatestRestorableTime]' (stockage plein, instance bloquée : FreeStorageSpace, événements RDS) ; tant que le point ne bouge pas, un dump : ${backUp('hourly')}`,
      metric: pitrWatchMetric(RUNNER_METRICS.pitrLagSeconds, 'Maximum'),
      threshold: PITR_RPO_SECONDS,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      // One reading over the RPO pages: the watch reads every 5 minutes, so a lag crossing it pages
      // within about 10 (one read, one period), not up to an hour later as with the backup runs.
      evaluationPeriods: 1,
      // A period without a lag is either a watch that did not read (errors, timeouts, throttles, a
      // schedule disabled or undelivered: PitrUnread pages after 15 minutes of it), or a read of an
      // instance with no restorable time (automated backups off: PitrOff pages at that read). Breaching
      // here would page twice for either, and once for one late read.
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });

    // Automated backups on, yet RDS reports no latest restorable time (an instance before its first
    // automated backup, including one whose backups PitrOff's fix just turned on: RDS takes that first
    // backup then, and this pages until it ends; or one RDS cannot back up): no point to recover to, so no lag either, and
    // PitrLag reads nothing. The watch publishes PitrRestorable only while backups are on, so an
    // instance with them off pages once, as PitrOff.
    const pitrNoRestorableTime = new RunbookAlarm(this, 'PitrNoRestorableTimeAlarm', {
      ...common,
      what: 'PitrNoRestorableTime',
      summary: `automated backups of ${props.database.instanceIdentifier} are on but RDS reports no latest restorable time: a point-in-time recovery now has no point to recover to`,
      firstActions: `aws rds describe-db-instances --db-instance-identifier ${instance} --query 'DBInstances[0].[DBInstanceStatus,BackupRetentionPeriod,LatestRestorableTime]' ; aws rds describe-events --source-identifier ${instance} --source-type db-instance --duration 1440 (instance neuve, ou sauvegardes automatiques tout juste activées, la correction de Backups-PitrOff : la première sauvegarde est en cours, l'alarme repasse OK quand elle finit ; sinon stockage plein, instance bloquée) ; en attendant, un dump : ${backUp('hourly')}`,
      metric: pitrWatchMetric(RUNNER_METRICS.pitrRestorable, 'Minimum'),
      threshold: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
      // One reading without a point pages, as one reading over the RPO does (PitrLag).
      evaluationPeriods: 1,
      // No reading: the watch did not read (PitrUnread) or automated backups are off (PitrOff).
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });

    // The watch's failure, whatever it is: a read that fails publishes nothing (the invocation fails,
    // lambdas/backup/pitr-watch.ts), and neither does a read that never runs. Every successful read
    // publishes PitrRetentionDays, PITR off included. 3 periods of 3: a read that fails or comes late
    // once does not page, 15 minutes without one does.
    const watchLogs = this.pitrWatch.function.logGroup.logGroupName;
    const pitrUnread = new RunbookAlarm(this, 'PitrUnreadAlarm', {
      ...common,
      what: 'PitrUnread',
      summary: `the PITR watch has not read the latest restorable time of ${instance} for 15 minutes: PitrLag and PitrOff cannot page`,
      firstActions: `aws logs tail ${watchLogs} --since 1h (erreur RDS, « Task timed out ») ; aws scheduler get-schedule --name ${this.pitrWatch.schedule.scheduleName} --query State ; en attendant, lire le point à la main : aws rds describe-db-instances --db-instance-identifier ${instance} --query 'DBInstances[0].LatestRestorableTime'`,
      metric: pitrWatchMetric(RUNNER_METRICS.pitrRetentionDays, 'SampleCount'),
      threshold: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
      evaluationPeriods: 3,
      datapointsToAlarm: 3,
      treatMissingData: cloudwatch.TreatMissingData.BREACHING,
    });

    const deadLetters = deadLettersAlarm(this, this.deadLetterQueue, {
      ...common,
      summary: `a backup run was never delivered or failed after its retries (dead-letter queue not empty)`,
    });

    const runnerErrors = this.function
      ? new RunbookAlarm(this, 'RunnerErrorsAlarm', {
          ...common,
      what: 'RunnerErrors',
          summary: `the backup runner Lambda failed (error, timeout or out of memory)`,
          firstActions: `${readLogs('1h')} (erreur, « Task timed out », mémoire) ; ${list('hourly')} ; refaire le niveau en échec : ${backUp('<tier>')}`,
          signalsEvent: true,
          metric: this.function.metricErrors({ statistic: 'Sum', period: fiveMinutes }),
          threshold: 1,
          comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
          evaluationPeriods: 1,
          treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        })
      : undefined;

    // Reads the messages waiting (visible), as KeyGuard does, not those sent in the last period: SQS
    // stops publishing the metrics of a queue idle for hours and may resume them minutes after a
    // message arrives, so a one-period count of sent messages could miss the only stop of the month.
    // A waiting message keeps the alarm in ALARM until the on-call has read and deleted it; the first
    // actions say so, so that the next stop pages again. One by one, by receipt handle (EMPTY_THE_QUEUE),
    // not a purge: that would also delete a stop that arrived since, unread, and nobody would be paged.
    const stopped = this.stoppedRuns;
    const runnerStopped = stopped
      ? new RunbookAlarm(this, 'RunnerStoppedAlarm', {
          ...common,
          what: 'RunnerStopped',
          summary: `a backup task not placed, not started or stopped unreported: no backup made; the age alarm pages hours or days late, or never`,
          signalsEvent: true,
          // Terse: the queue URL is a token here, which RunbookAlarm counts at its longest deployed
          // value against CloudWatch's 1024 characters; the causes (stop code, exit code) and what
          // each calls for are in docs/backup-runner.md, which the actions point to.
          firstActions: `lire les événements (aws sqs receive-message --queue-url ${stopped.events.queueUrl} --max-number-of-messages 10 ; champs et causes : docs/backup-runner.md) ; 137 : augmenter backups.memoryMiB ; relancer ce niveau (aws ecs run-task) ; ${EMPTY_THE_QUEUE}`,
          metric: sumOfCounts(
            {
              events: stopped.events.metricApproximateNumberOfMessagesVisible({ statistic: 'Maximum', period: fiveMinutes }),
              undelivered: stopped.undelivered.metricApproximateNumberOfMessagesVisible({ statistic: 'Maximum', period: fiveMinutes }),
            },
            fiveMinutes,
            'Backup tasks not placed, not started or stopped unreported',
          ),
          threshold: 1,
          comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
          evaluationPeriods: 1,
          treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        })
      : undefined;

    return {
      failedRun,
      noRecentHourlyBackup,
      noRecentDaily,
      noRecentWeekly,
      noRecentMonthly,
      pitrOff,
      pitrLag,
      pitrNoRestorableTime,
      pitrUnread,
      deadLetters,
      ...(runnerErrors && { runnerErrors }),
      ...(runnerStopped && { runnerStopped }),
    };
  }
}

/** What both runners are built from. */
interface RunnerInputs {
  readonly environment: Record<string, string>;
  readonly statements: iam.PolicyStatement[];
  readonly logGroup: logs.LogGroup;
  readonly schedulerRole: iam.Role;
  readonly scheduleRetry: { deadLetterQueue: sqs.IQueue; retryAttempts: number; maxEventAge: Duration };
}

/** What a runner gives back: the role its code runs with, and the schedule target of a tier. */
interface RunnerTarget {
  readonly role: iam.IRole;
  readonly function?: lambda.DockerImageFunction;
  readonly taskDefinition?: ecs.FargateTaskDefinition;
  readonly cluster?: ecs.ICluster;
  readonly targetFor: (tier: BackupTier) => scheduler.IScheduleTarget;
}

/** Non-secret settings only: the credentials are read at run time (Secrets Manager or IAM auth). */
function runnerEnvironment(props: BackupsProps, bucketName: string): Record<string, string> {
  const { database, settings: backups } = props;
  const login = runnerLogin(props);
  return {
    POWERTOOLS_SERVICE_NAME: BACKUP_RUNNER_SERVICE,
    POWERTOOLS_METRICS_NAMESPACE: metricsNamespace(props.environmentName),
    [RUNNER_ENV.bucket]: bucketName,
    ...(login.kind === 'iam' ? { [RUNNER_ENV.iamAuthUser]: login.user } : { [RUNNER_ENV.secretArn]: login.secretArn }),
    [RUNNER_ENV.host]: database.host,
    [RUNNER_ENV.port]: String(database.port),
    [RUNNER_ENV.database]: database.name,
    [RUNNER_ENV.instanceIdentifier]: database.instanceIdentifier,
    [RUNNER_ENV.compressionLevel]: String(backups.compressionLevel),
    [RUNNER_ENV.partSizeMiB]: String(backups.partSizeMiB),
    [RUNNER_ENV.weeklySnapshotRetention]: String(backups.snapshotRetention.weekly),
    [RUNNER_ENV.monthlySnapshotRetention]: String(backups.snapshotRetention.monthly),
    [RUNNER_ENV.minPitrRetentionDays]: String(backups.minPitrRetentionDays),
    ...(backups.monthlyComplianceLockDays !== undefined && { [RUNNER_ENV.monthlyComplianceLockDays]: String(backups.monthlyComplianceLockDays) }),
    ...(props.restoreTestReportPrefix !== undefined && { [RUNNER_ENV.restoreTestReportPrefix]: props.restoreTestReportPrefix }),
  };
}

/**
 * What the backup core (lambdas/backup) needs of the bucket and its key to write one backup: its
 * tier objects (write-once: the bucket policy refuses a write there without If-None-Match), the
 * latest pointers, the manifests and pointers read back, ListBucket, and the backup key; no delete.
 * The runner and the on-call's `backup` (DataStack) share them.
 */
export function backupWriteStatements(bucketArn: string, backupKeyArn: string): iam.PolicyStatement[] {
  const objects = (pattern: string) => `${bucketArn}/${pattern}`;
  const pointers = [objects('latest/*'), objects(LATEST_POINTER_KEY)];
  return [
    new iam.PolicyStatement({ sid: 'WriteBackups', actions: ['s3:PutObject', 's3:AbortMultipartUpload'], resources: BACKUP_TIERS.map((tier) => objects(`${tier}/*`)) }),
    new iam.PolicyStatement({ sid: 'RewritePointers', actions: ['s3:PutObject'], resources: pointers }),
    // Without ListBucket, S3 answers 403 instead of 404 for a missing key: the core's "key is free"
    // check (GetObject on the new manifest key) needs the 404. A scheduled run also lists its tier's
    // keys from its scheduled time (a backup another delivery of it took). Listing reveals names only.
    new iam.PolicyStatement({ sid: 'TellMissingKeysApart', actions: ['s3:ListBucket'], resources: [bucketArn] }),
    new iam.PolicyStatement({
      sid: 'ReadPointersAndManifests',
      actions: ['s3:GetObject'],
      resources: [...pointers, ...BACKUP_TIERS.map((tier) => objects(`${tier}/*.manifest.json`))],
    }),
    new iam.PolicyStatement({ sid: 'UseTheBackupKey', actions: ['kms:GenerateDataKey', 'kms:Decrypt'], resources: [backupKeyArn] }),
  ];
}

/**
 * With `backups.monthlyComplianceLockDays`, every monthly object is uploaded under a compliance
 * retention (S3 authorizes the retention headers of a PutObject as s3:PutObjectRetention): the
 * runner's right, and the on-call's for `backup --tier monthly` (DataStack), one statement for both.
 * `bounded` (the on-call's): compliance mode only, retained at most the configured days (one more for
 * the clocks), so that a human's typo or a stolen session cannot put on an object, or extend on an
 * existing one, a retention that nobody, not the account's root, can shorten.
 */
export function monthlyLockStatements(bucketArn: string, monthlyComplianceLockDays: number | undefined, bounded = false): iam.PolicyStatement[] {
  if (monthlyComplianceLockDays === undefined) return [];
  return [
    new iam.PolicyStatement({
      sid: 'LockMonthlyBackups',
      actions: ['s3:PutObjectRetention'],
      resources: [`${bucketArn}/monthly/*`],
      ...(bounded && {
        conditions: {
          StringEquals: { 's3:object-lock-mode': 'COMPLIANCE' },
          NumericLessThanEquals: { 's3:object-lock-remaining-retention-days': String(monthlyComplianceLockDays + 1) },
        },
      }),
    }),
  ];
}

/** Least privilege for the runner code: the bucket's backup prefixes, the key, the secret, the instance and its snapshots. */
function runnerPolicyStatements(stack: Stack, props: BackupsProps, bucketArn: string, key: kms.IKey): iam.PolicyStatement[] {
  const { database } = props;
  const rdsArn = (resource: string, name: string) => stack.formatArn({ service: 'rds', resource, resourceName: name, arnFormat: ArnFormat.COLON_RESOURCE_NAME });
  const instanceArn = rdsArn('db', database.instanceIdentifier);
  const ourSnapshots = SNAPSHOT_TIERS.map((tier) => rdsArn('snapshot', `${SNAPSHOT_PREFIX}${tier}-*`));
  const objects = (pattern: string) => `${bucketArn}/${pattern}`;
  // The age baselines this runner keeps (lambdas/backup/age-baseline.ts): its database's tiers, and
  // the restore test's reports when the restore test is deployed. Exact keys, no wildcard.
  const ageBaselines = [
    ...BACKUP_TIERS.map((tier) => objects(backupAgeBaselineKey(database.name, tier))),
    ...(props.restoreTestReportPrefix !== undefined ? [objects(RESTORE_TEST_AGE_BASELINE_KEY)] : []),
  ];

  const statements = [
    ...backupWriteStatements(bucketArn, key.keyArn),
    // A dump object whose write (PutObject, or CompleteMultipartUpload) landed but whose answer was
    // lost meets its own object on the SDK's retry (412, or NoSuchUpload): the core looks at it
    // (HeadObject, which takes s3:GetObject) to tell it from another run's by its run token and size
    // (lambdas/backup/backup.ts, ownDumpWrite). Without this right that look is refused and the run
    // blames another run. Only this database's dump keys: the runner never writes another database's.
    new iam.PolicyStatement({
      sid: 'ReadBackDumps',
      actions: ['s3:GetObject'],
      resources: BACKUP_TIERS.flatMap((tier) => {
        const keys = backupObjectKeys(tier, database.name, new Date(0));
        return [keys.custom, keys.plain].map((key) => objects(anyStampKey(key)));
      }),
    }),
    ...monthlyLockStatements(bucketArn, props.settings.monthlyComplianceLockDays),
    // Read, and written once (If-None-Match) the first time a run finds nothing to measure an age from.
    new iam.PolicyStatement({
      sid: 'KeepAgeBaselines',
      actions: ['s3:GetObject', 's3:PutObject'],
      resources: ageBaselines,
    }),
    pitrCheckStatement(stack, database.instanceIdentifier),
    new iam.PolicyStatement({
      sid: 'TakeTierSnapshots',
      actions: ['rds:CreateDBSnapshot'],
      resources: [instanceArn, ...ourSnapshots],
    }),
    // RDS checks the tags of a CreateDBSnapshot as AddTagsToResource on the new snapshot (RDS User
    // Guide, "Grant permission to tag Amazon RDS resources during creation"), so the runner needs
    // this right to create its snapshots at all. IAM cannot limit it to that create: RDS defines no
    // condition key naming the calling action (the Service Authorization Reference lists, for
    // AddTagsToResource, only aws:RequestTag/${TagKey}, aws:TagKeys and rds:req-tag/${TagKey}; an
    // ec2:CreateAction-like `rds:CreateAction` is not defined, is absent from every request, and a
    // StringEquals on it denied every snapshot). What IAM does limit: the snapshot name prefixes,
    // and exactly the two tags the runner sets, with their values. What it does not: a standalone
    // AddTagsToResource of those tags on an existing snapshot under these prefixes (one whose
    // managed tag an operator removed to keep it) is allowed, and would open it to the delete below.
    // Only the code stands there: the runner tags within CreateDBSnapshot only, never afterwards.
    new iam.PolicyStatement({
      sid: 'TagTierSnapshots',
      actions: ['rds:AddTagsToResource'],
      resources: ourSnapshots,
      conditions: {
        'ForAllValues:StringEquals': { 'aws:TagKeys': [MANAGED_TAG_KEY, TIER_TAG_KEY] },
        StringEquals: { [`aws:RequestTag/${MANAGED_TAG_KEY}`]: 'true', [`aws:RequestTag/${TIER_TAG_KEY}`]: [...SNAPSHOT_TIERS] },
      },
    }),
    new iam.PolicyStatement({
      sid: 'ListSnapshots',
      actions: ['rds:DescribeDBSnapshots'],
      resources: [instanceArn, rdsArn('snapshot', '*')],
    }),
    new iam.PolicyStatement({
      sid: 'PruneOwnSnapshots',
      actions: ['rds:DeleteDBSnapshot'],
      resources: ourSnapshots,
      conditions: { StringEquals: { [`rds:snapshot-tag/${MANAGED_TAG_KEY}`]: 'true' } },
    }),
  ];
  const login = runnerLogin(props);
  if (login.kind === 'iam') {
    statements.push(connectWithIamAuthStatement(stack, login.user));
  } else {
    statements.push(new iam.PolicyStatement({ sid: 'ReadDatabaseSecret', actions: ['secretsmanager:GetSecretValue'], resources: [login.secretArn] }));
    if (login.secretKmsKeyArn) {
      statements.push(decryptSecretStatement(stack, login.secretKmsKeyArn, 'DecryptDatabaseSecret'));
    }
  }
  return statements;
}

/** The PITR check (checkPitr) of the runner and of the PITR watch: DescribeDBInstances on the named instance only. */
function pitrCheckStatement(stack: Stack, instanceIdentifier: string): iam.PolicyStatement {
  return new iam.PolicyStatement({
    sid: 'CheckPitr',
    actions: ['rds:DescribeDBInstances'],
    resources: [stack.formatArn({ service: 'rds', resource: 'db', resourceName: instanceIdentifier, arnFormat: ArnFormat.COLON_RESOURCE_NAME })],
  });
}

/**
 * How the runner logs in: the backup role's own secret (backups.secretArn), else IAM authentication
 * (database.iamAuthUser), else the database secret. Its own secret is on the AWS-managed key, as the
 * probe's is; database.secretKmsKeyArn is the database secret's key.
 */
function runnerLogin(props: BackupsProps): { kind: 'iam'; user: string } | { kind: 'secret'; secretArn: string; secretKmsKeyArn?: string } {
  const { database, settings } = props;
  if (settings.secretArn) return { kind: 'secret', secretArn: settings.secretArn };
  if (database.iamAuthUser) return { kind: 'iam', user: database.iamAuthUser };
  return { kind: 'secret', secretArn: database.secretArn, secretKmsKeyArn: database.secretKmsKeyArn };
}


function capitalize(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

/** What each of the runner's statements allows on its wildcard resources (keyed by statement sid). */
const WILDCARD_REASONS: Record<string, string> = {
  WriteBackups:
    'Backup object keys carry their timestamp: PutObject/AbortMultipartUpload on the tier prefixes only, and the bucket policy refuses any write there without If-None-Match or under another key (write-once).',
  RewritePointers: 'PutObject on the latest pointers (rewritten after each manifest exists), not on the bucket.',
  LockMonthlyBackups: 'PutObjectRetention on the monthly prefix only: sets the compliance retention of the monthly objects at upload.',
  ReadPointersAndManifests:
    'GetObject on the latest pointers and the manifests only (the core checks the new manifest key is free; the backup-age metric reads the newest).',
  ReadBackDumps:
    "GetObject on the runner's own database's dump keys per tier (<tier>/<db>_backup_*.dump and <tier>/<db>_backup_*.sql.gz), nothing of another database: a dump write (PutObject or CompleteMultipartUpload) whose answer was lost is looked at with HeadObject (its run token and size) to tell the run's own write from another run's.",
  TakeTierSnapshots: "Snapshot names carry their timestamp: CreateDBSnapshot scoped to this tool's weekly/monthly snapshot name prefixes.",
  TagTierSnapshots:
    "AddTagsToResource on this tool's weekly/monthly snapshot name prefixes, with exactly the two tags the runner sets at CreateDBSnapshot (atmr-dr:managed=true, atmr-dr:tier=weekly|monthly). RDS defines no condition key for 'within the create', so IAM does not stop the same tags on an existing snapshot under these prefixes: the runner never tags one.",
  ListSnapshots: "DescribeDBSnapshots is a read-only listing; the code filters on the instance and on this tool's tags.",
  PruneOwnSnapshots:
    "DeleteDBSnapshot on this tool's weekly/monthly snapshot name prefixes, tagged atmr-dr:managed=true. The runner sets that tag only within its own CreateDBSnapshot, so a snapshot under these prefixes without the tag (named alike by someone else, or untagged to keep it) is out of the prune's reach; IAM alone would let the role tag it (TagTierSnapshots), so a snapshot copied under another name is the one out of its reach in IAM too.",
  ConnectWithIamAuth: 'The instance resource id is not in the config: rds-db:connect scoped to the configured IAM database user.',
};

/**
 * The IAM5 findings cdk-nag reports for the runner's statements, one per resource, with one reason
 * that states everything granted on it (a resource in two statements gets both grants named).
 */
function wildcardFindings(stack: Stack, statements: iam.PolicyStatement[]): { finding: string; reason: string }[] {
  const findings = new Map<string, string[]>();
  for (const statement of statements) {
    for (const resource of statement.resources) {
      const rendered = nagRender(stack, resource);
      if (!rendered.includes('*')) continue;
      const reason = WILDCARD_REASONS[statement.sid ?? ''];
      if (!reason) throw new Error(`backups: no reason for the wildcard resource of statement ${statement.sid ?? '(no sid)'}`);
      const reasons = findings.get(`Resource::${rendered}`) ?? [];
      if (!reasons.includes(reason)) reasons.push(reason);
      findings.set(`Resource::${rendered}`, reasons);
    }
  }
  return [...findings].map(([finding, reasons]) => ({ finding, reason: reasons.join(' ') }));
}

/** The construct's props from the environment's config, around the shared workload props. */
export function backupsPropsFromConfig(config: EnvironmentConfig, workload: BackupWorkloadProps): BackupsProps {
  return {
    ...workload,
    environmentName: config.name,
    timeZone: config.timeZone,
    database: config.database,
    settings: config.backups,
    ...(config.restoreTest.enabled && { restoreTestReportPrefix: RESTORE_TEST_REPORT_PREFIX }),
  };
}
