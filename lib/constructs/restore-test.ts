import { Annotations, ArnFormat, Duration, Fn, RemovalPolicy, Size, Stack, TimeZone, Token, Validations } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as scheduler from 'aws-cdk-lib/aws-scheduler';
import * as targets from 'aws-cdk-lib/aws-scheduler-targets';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import * as tasks from 'aws-cdk-lib/aws-stepfunctions-tasks';
import { Construct } from 'constructs';
import { RunbookAlarm } from './runbook-alarm';
import { RESTORE_TEST_ENV, RESTORE_TEST_METRICS, RESTORE_TEST_SERVICE, temporaryInstanceIdentifier } from '../../lambdas/restore/contract';
import { METRICS_NAMESPACE } from '../../lambdas/shared/constants';
import { BACKUP_TIERS, LATEST_POINTER_KEY, RESTORE_TEST_REPORT_PREFIX } from '../../lambdas/shared/s3-layout';
import { ConfigError, type EnvironmentConfig } from '../config';
import { nagRender } from '../nag';
import { runnerImageCode } from './runner-image';

/** Runbook section 7: "le premier mercredi de chaque mois", after the 02:00 daily backup. */
export const RESTORE_TEST_SCHEDULE_EXPRESSION = 'cron(0 4 ? * WED#1 *)';

export interface RestoreTestProps {
  /** The environment's config: restoreTest, database, timeZone and name are read. */
  readonly config: EnvironmentConfig;
  /** Backup bucket (read-only, except the `restore-tests/` report prefix). */
  readonly bucket: s3.IBucket;
  /** Key of the bucket: decrypt backups, encrypt the report. */
  readonly key: kms.IKey;
  readonly vpc: ec2.IVpc;
  /** Private subnets with routes to S3 and the AWS APIs. */
  readonly subnets: ec2.SubnetSelection;
  /**
   * Security group of the backed-up database: receives ingress from the test's group on the port,
   * unless `restoreTest.targetSecurityGroupId` names the target instance's own group.
   */
  readonly databaseSecurityGroup: ec2.ISecurityGroup;
  /** Topic every alarm notifies (the ops stack's incidents topic). */
  readonly alarmTopic: sns.ITopic;
  /** @default RESTORE_TEST_SCHEDULE_EXPRESSION (first Wednesday of the month, 04:00 in config.timeZone) */
  readonly scheduleExpression?: string;
}

/**
 * The monthly restore test (issue 3): EventBridge Scheduler invokes the runner image's
 * `restore.handler` in the VPC; it restores the latest backup of the configured tier into a
 * scratch database on the target instance, publishes RestoreTestSuccess / RtoSeconds / RpoSeconds,
 * writes its JSON report under `restore-tests/`, and alarms go to the incidents topic on failure,
 * on RTO over the objective and on RPO over the objective.
 */
export class RestoreTest extends Construct {
  readonly function: lambda.DockerImageFunction;
  readonly securityGroup: ec2.SecurityGroup;
  readonly schedule: scheduler.Schedule;
  readonly alarms: {
    readonly failed: cloudwatch.Alarm;
    readonly errors: cloudwatch.Alarm;
    readonly rto: cloudwatch.Alarm;
    readonly rpo: cloudwatch.Alarm;
    /** useTemporaryInstance: the state machine failed or timed out. */
    readonly executions?: cloudwatch.Alarm;
  };
  /** useTemporaryInstance: create the instance, wait, run the test on it, delete it whatever happens. */
  readonly stateMachine?: { readonly machine: sfn.StateMachine };

  constructor(scope: Construct, id: string, props: RestoreTestProps) {
    super(scope, id);
    const { config, bucket, key } = props;
    const { database, restoreTest } = config;
    const stack = Stack.of(this);
    if (restoreTest.useTemporaryInstance && !restoreTest.temporaryInstanceSubnetGroupName) {
      throw new ConfigError(
        `config: environments.${config.name}.restoreTest.temporaryInstanceSubnetGroupName: is required with useTemporaryInstance (the DB subnet group of the temporary instance); set it, or set useTemporaryInstance to false`,
      );
    }
    const temporaryInstance = restoreTest.useTemporaryInstance ? temporaryInstanceIdentifier(config.name) : undefined;
    if (config.production && !restoreTest.targetHost && !temporaryInstance) {
      // Runbook section 7: "Environnement : Staging uniquement". Allowed, but said at every synth.
      Annotations.of(this).addWarningV2(
        'atmr-dr:restore-test-on-production-instance',
        `restoreTest in production environment "${config.name}" creates its scratch database on the production instance ${database.host}; the runbook says staging only: set restoreTest.targetHost (a staging instance) or restoreTest.useTemporaryInstance`,
      );
    }
    const targetPort = restoreTest.targetPort ?? database.port;

    this.securityGroup = new ec2.SecurityGroup(this, 'SecurityGroup', {
      vpc: props.vpc,
      description: `atmr-dr ${config.name} restore test: HTTPS to AWS APIs, PostgreSQL to the target instance`,
      allowAllOutbound: false,
    });
    this.securityGroup.addEgressRule(ec2.Peer.anyIpv4(), ec2.Port.tcp(443), 'AWS APIs (S3, Secrets Manager, KMS, CloudWatch) over HTTPS');
    const targetSecurityGroup = restoreTest.targetSecurityGroupId
      ? ec2.SecurityGroup.fromSecurityGroupId(this, 'TargetSecurityGroup', restoreTest.targetSecurityGroupId, { mutable: true })
      : props.databaseSecurityGroup;
    this.securityGroup.connections.allowTo(targetSecurityGroup, ec2.Port.tcp(targetPort), 'atmr-dr restore test to PostgreSQL');

    const logGroup = new logs.LogGroup(this, 'Logs', { retention: logs.RetentionDays.ONE_YEAR, removalPolicy: RemovalPolicy.DESTROY });
    const secretArn = restoreTest.targetSecretArn ?? database.secretArn;
    this.function = new lambda.DockerImageFunction(this, 'Function', {
      description: `atmr-dr ${config.name}: monthly restore test (RTO/RPO)`,
      code: runnerImageCode('restore.handler', { pgMajorVersion: database.engineMajorVersion }),
      architecture: lambda.Architecture.ARM_64,
      memorySize: restoreTest.memoryMiB,
      ephemeralStorageSize: Size.mebibytes(restoreTest.ephemeralStorageMiB),
      timeout: Duration.minutes(15),
      reservedConcurrentExecutions: 1,
      // A failed test is a finding, reported and alarmed; running it again changes nothing.
      retryAttempts: 0,
      vpc: props.vpc,
      vpcSubnets: props.subnets,
      securityGroups: [this.securityGroup],
      tracing: lambda.Tracing.ACTIVE,
      logGroup,
      loggingFormat: lambda.LoggingFormat.JSON,
      environment: {
        POWERTOOLS_SERVICE_NAME: RESTORE_TEST_SERVICE,
        POWERTOOLS_METRICS_NAMESPACE: METRICS_NAMESPACE,
        [RESTORE_TEST_ENV.bucket]: bucket.bucketName,
        [RESTORE_TEST_ENV.targetHost]: restoreTest.targetHost ?? database.host,
        [RESTORE_TEST_ENV.targetPort]: String(targetPort),
        ...(database.iamAuthUser && !restoreTest.targetSecretArn
          ? { [RESTORE_TEST_ENV.iamAuthUser]: database.iamAuthUser }
          : { [RESTORE_TEST_ENV.targetSecretArn]: secretArn }),
        [RESTORE_TEST_ENV.tier]: restoreTest.tier,
        [RESTORE_TEST_ENV.criticalQueries]: JSON.stringify(restoreTest.criticalQueries),
        [RESTORE_TEST_ENV.rtoObjectiveSeconds]: String(restoreTest.rtoObjectiveSeconds),
        [RESTORE_TEST_ENV.rpoObjectiveSeconds]: String(restoreTest.rpoObjectiveSeconds),
        // A restore asked of this function never targets the backed-up (production) database.
        [RESTORE_TEST_ENV.protectedDatabases]: JSON.stringify([database.name]),
        ...(temporaryInstance && {
          [RESTORE_TEST_ENV.sourceInstance]: database.instanceIdentifier,
          [RESTORE_TEST_ENV.temporaryInstance]: temporaryInstance,
          [RESTORE_TEST_ENV.temporaryInstanceClass]: restoreTest.temporaryInstanceClass,
          [RESTORE_TEST_ENV.temporaryInstanceSubnetGroup]: restoreTest.temporaryInstanceSubnetGroupName!,
          // The database's own group: it already admits this function on the database port.
          [RESTORE_TEST_ENV.temporaryInstanceSecurityGroups]: JSON.stringify([database.securityGroupId]),
        }),
      },
    });

    // Read-only on backups: the tier objects and the pointers; write only the reports.
    const bucketStack = Stack.of(bucket);
    // A named export (shared with the backups construct when it made it first): the IAM5
    // acknowledgements below name the exact prefix ARNs, so they need a stable name.
    const exportName = `${bucketStack.stackName}:BackupBucketArn`;
    const bucketArn =
      bucketStack !== stack && Token.isUnresolved(bucket.bucketArn)
        ? bucketStack.node.tryFindChild(`Export${exportName}`)
          ? Fn.importValue(exportName)
          : bucketStack.exportValue(bucket.bucketArn, { name: exportName })
        : bucket.bucketArn;
    const objects = (pattern: string) => `${bucketArn}/${pattern}`;
    const readable = [...BACKUP_TIERS.map((tier) => objects(`${tier}/*`)), objects('latest/*'), objects(LATEST_POINTER_KEY)];
    const statements = [
      new iam.PolicyStatement({ sid: 'ReadBackups', actions: ['s3:GetObject'], resources: readable }),
      // Without ListBucket a missing object answers 403, not 404: the "missing object" error needs it.
      new iam.PolicyStatement({ sid: 'ListBackups', actions: ['s3:ListBucket'], resources: [bucketArn] }),
      new iam.PolicyStatement({ sid: 'WriteReports', actions: ['s3:PutObject'], resources: [objects(`${RESTORE_TEST_REPORT_PREFIX}*`)] }),
      new iam.PolicyStatement({ sid: 'UseTheBackupKey', actions: ['kms:Decrypt', 'kms:GenerateDataKey'], resources: [key.keyArn] }),
    ];
    if (database.iamAuthUser && !restoreTest.targetSecretArn) {
      statements.push(
        new iam.PolicyStatement({
          sid: 'ConnectWithIamAuth',
          actions: ['rds-db:connect'],
          resources: [stack.formatArn({ service: 'rds-db', resource: 'dbuser', resourceName: `*/${database.iamAuthUser}`, arnFormat: ArnFormat.COLON_RESOURCE_NAME })],
        }),
      );
    } else {
      statements.push(new iam.PolicyStatement({ sid: 'ReadTargetSecret', actions: ['secretsmanager:GetSecretValue'], resources: [secretArn] }));
      if (database.secretKmsKeyArn && !restoreTest.targetSecretArn) {
        statements.push(
          new iam.PolicyStatement({
            sid: 'DecryptTargetSecret',
            actions: ['kms:Decrypt'],
            resources: [database.secretKmsKeyArn],
            conditions: { StringEquals: { 'kms:ViaService': `secretsmanager.${stack.region}.amazonaws.com` } },
          }),
        );
      }
    }
    if (temporaryInstance) statements.push(...temporaryInstanceStatements(stack, config, temporaryInstance));
    for (const statement of statements) this.function.addToRolePolicy(statement);

    const schedulerRole = new iam.Role(this, 'SchedulerRole', {
      description: `atmr-dr ${config.name}: EventBridge Scheduler starts the monthly restore test`,
      assumedBy: new iam.ServicePrincipal('scheduler.amazonaws.com', { conditions: { StringEquals: { 'aws:SourceAccount': stack.account } } }),
    });
    const expression = props.scheduleExpression ?? RESTORE_TEST_SCHEDULE_EXPRESSION;
    const input = scheduler.ScheduleTargetInput.fromObject({ tier: restoreTest.tier });
    const retry = { retryAttempts: 2, maxEventAge: Duration.hours(2) };
    if (temporaryInstance) {
      this.stateMachine = this.temporaryInstanceStateMachine(config);
    }
    this.schedule = new scheduler.Schedule(this, 'Schedule', {
      description: `atmr-dr ${config.name}: monthly restore test (${expression} ${config.timeZone})`,
      schedule: scheduler.ScheduleExpression.expression(expression, TimeZone.of(config.timeZone)),
      target: this.stateMachine
        ? new targets.StepFunctionsStartExecution(this.stateMachine.machine, { input, role: schedulerRole, ...retry })
        : new targets.LambdaInvoke(this.function, { input, role: schedulerRole, ...retry }),
      timeWindow: scheduler.TimeWindow.off(),
    });

    this.alarms = this.createAlarms(config, props.alarmTopic);

    const render = (value: string) => nagRender(stack, value);
    Validations.of(this.function).acknowledge(
      ...['AWSLambdaBasicExecutionRole', 'AWSLambdaVPCAccessExecutionRole'].map((policy) => ({
        id: `AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/${policy}]`,
        reason: 'AWS-maintained minimum for a VPC function: log writes and the management of its own network interfaces.',
      })),
      ...readable
        .filter((arn) => render(arn).includes('*'))
        .map((arn) => ({
          id: `AwsSolutions-IAM5[Resource::${render(arn)}]`,
          reason: 'Backup keys carry their timestamp: read-only GetObject scoped to the tier prefixes and the latest pointers.',
        })),
      {
        id: `AwsSolutions-IAM5[Resource::${render(objects(`${RESTORE_TEST_REPORT_PREFIX}*`))}]`,
        reason: 'Report keys carry their timestamp: writes are scoped to the restore-tests/ prefix only.',
      },
      { id: 'AwsSolutions-IAM5[Resource::*]', reason: 'X-Ray PutTraceSegments/PutTelemetryRecords (active tracing) have no resource-level permissions.' },
      ...(database.iamAuthUser && !restoreTest.targetSecretArn
        ? [
            {
              id: `AwsSolutions-IAM5[Resource::${render(statements.find((s) => s.sid === 'ConnectWithIamAuth')!.resources[0])}]`,
              reason: 'The instance resource id is not in the config: scoped to the configured IAM database user.',
            },
          ]
        : []),
      {
        id: 'Serverless-LambdaDLQ',
        reason: 'A scheduled test that fails is reported (metric, report, alarm) and not retried; an invocation that never ran shows as a missing report and a Lambda error alarm.',
      },
      {
        id: 'Serverless-LambdaAsyncFailureDestination',
        reason: 'Failures of the restore test are reported through its own metric, JSON report and alarms; no retry or replay is wanted.',
      },
    );
    if (!this.stateMachine) {
      Validations.of(schedulerRole).acknowledge({
        id: `AwsSolutions-IAM5[Resource::${render(this.function.functionArn)}:*]`,
        reason: 'Granted by the LambdaInvoke schedule target: invoke the restore-test function and its versions, nothing else.',
      });
    }
  }

  /**
   * Create the temporary instance (point-in-time restore to the latest restorable time), poll it
   * every minute until available, run the restore test against it, and delete it on every path.
   * Every step is the restore-test function (SDK calls with exact parameter names, unit tested).
   */
  private temporaryInstanceStateMachine(config: EnvironmentConfig): { machine: sfn.StateMachine } {
    const invoke = (id: string, payload: Record<string, unknown>, resultPath: string) =>
      new tasks.LambdaInvoke(this, id, {
        lambdaFunction: this.function,
        payload: sfn.TaskInput.fromObject(payload),
        payloadResponseOnly: true,
        resultPath,
        retryOnServiceExceptions: true,
      });
    const create = invoke('CreateTemporaryInstance', { temporaryInstance: 'create' }, '$.instance');
    const wait = new sfn.Wait(this, 'WaitForTemporaryInstance', { time: sfn.WaitTime.duration(Duration.minutes(1)) });
    const status = invoke('TemporaryInstanceStatus', { temporaryInstance: 'status' }, '$.instance');
    const runTest = invoke('RunRestoreTest', { 'tier.$': '$.tier', 'targetHost.$': '$.instance.host', 'targetPort.$': '$.instance.port' }, '$.test');
    const deleteInstance = invoke('DeleteTemporaryInstance', { temporaryInstance: 'delete' }, sfn.JsonPath.DISCARD);
    const deleteAfterError = invoke('DeleteTemporaryInstanceAfterError', { temporaryInstance: 'delete' }, sfn.JsonPath.DISCARD);
    const errored = new sfn.Fail(this, 'RestoreTestErrored', { error: 'RestoreTestErrored', causePath: '$.error.Cause' });
    const failed = new sfn.Fail(this, 'RestoreTestFailed', { error: 'RestoreTestFailed', causePath: '$.test.error' });
    const passed = new sfn.Succeed(this, 'RestoreTestPassed');
    const catchAll = { resultPath: '$.error' };
    create.addCatch(new sfn.Fail(this, 'TemporaryInstanceNotCreated', { error: 'TemporaryInstanceNotCreated', causePath: '$.error.Cause' }), catchAll);
    status.addCatch(deleteAfterError, catchAll);
    runTest.addCatch(deleteAfterError, catchAll);
    deleteAfterError.next(errored);

    const definition = create
      .next(wait)
      .next(status)
      .next(
        new sfn.Choice(this, 'TemporaryInstanceAvailable')
          .when(
            sfn.Condition.booleanEquals('$.instance.ready', true),
            runTest.next(deleteInstance).next(new sfn.Choice(this, 'RestoreTestOk').when(sfn.Condition.booleanEquals('$.test.ok', true), passed).otherwise(failed)),
          )
          .otherwise(wait),
      );
    const logGroup = new logs.LogGroup(this, 'StateMachineLogs', { retention: logs.RetentionDays.ONE_YEAR, removalPolicy: RemovalPolicy.DESTROY });
    const machine = new sfn.StateMachine(this, 'TemporaryInstanceStateMachine', {
      comment: `atmr-dr ${config.name}: restore test on a temporary RDS instance`,
      definitionBody: sfn.DefinitionBody.fromChainable(definition),
      // An instance restore takes from minutes to hours; past this, the test is a failure.
      timeout: Duration.hours(4),
      tracingEnabled: true,
      logs: { destination: logGroup, level: sfn.LogLevel.ALL, includeExecutionData: false },
    });
    Validations.of(machine).acknowledge(
      {
        id: `AwsSolutions-IAM5[Resource::${nagRender(Stack.of(this), this.function.functionArn)}:*]`,
        reason: 'Granted by the LambdaInvoke tasks: invoke the restore-test function and its versions, nothing else.',
      },
      {
        id: 'AwsSolutions-IAM5[Resource::*]',
        reason: 'CloudWatch Logs delivery and X-Ray actions of Step Functions have no resource-level permissions.',
      },
    );
    return { machine };
  }

  private createAlarms(config: EnvironmentConfig, topic: sns.ITopic): RestoreTest['alarms'] {
    const { rtoObjectiveSeconds, rpoObjectiveSeconds } = config.restoreTest;
    const metric = (metricName: string, statistic: string) =>
      new cloudwatch.Metric({ namespace: METRICS_NAMESPACE, metricName, dimensionsMap: { service: RESTORE_TEST_SERVICE }, statistic, period: Duration.hours(1) });
    const common = {
      environmentName: config.name,
      concern: 'RestoreTest',
      runbookSection: 'Sauvegarde - 7. Tests mensuels',
      topic,
      evaluationPeriods: 1,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    };

    const failed = new RunbookAlarm(this, 'FailedAlarm', {
      what: 'Failed',
      summary: `the monthly restore test failed (see its report under ${RESTORE_TEST_REPORT_PREFIX} and the function logs)`,
      metric: metric(RESTORE_TEST_METRICS.success, 'Minimum'),
      threshold: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
      ...common,
    });
    const errors = new RunbookAlarm(this, 'ErrorsAlarm', {
      what: 'Errors',
      summary: `the restore test function crashed or timed out before reporting`,
      metric: this.function.metricErrors({ statistic: 'Sum', period: Duration.hours(1) }),
      threshold: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      ...common,
    });
    const rto = new RunbookAlarm(this, 'RtoAlarm', {
      what: 'Rto',
      summary: `restore took longer than the RTO objective (${rtoObjectiveSeconds} s)`,
      metric: metric(RESTORE_TEST_METRICS.rtoSeconds, 'Maximum'),
      threshold: rtoObjectiveSeconds,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      ...common,
    });
    const rpo = new RunbookAlarm(this, 'RpoAlarm', {
      what: 'Rpo',
      summary: `the restored backup was older than the RPO objective (${rpoObjectiveSeconds} s)`,
      metric: metric(RESTORE_TEST_METRICS.rpoSeconds, 'Maximum'),
      threshold: rpoObjectiveSeconds,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      ...common,
    });
    const executions = this.stateMachine
      ? new RunbookAlarm(this, 'ExecutionsAlarm', {
          what: 'Executions',
          summary: `the restore test on a temporary instance failed or timed out (the instance is deleted on every path; check it is gone)`,
          metric: new cloudwatch.MathExpression({
            expression: 'failed + timedOut',
            usingMetrics: {
              failed: this.stateMachine.machine.metricFailed({ statistic: 'Sum', period: Duration.hours(1) }),
              timedOut: this.stateMachine.machine.metricTimedOut({ statistic: 'Sum', period: Duration.hours(1) }),
            },
            period: Duration.hours(1),
          }),
          threshold: 1,
          comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
          ...common,
        })
      : undefined;
    return { failed, errors, rto, rpo, ...(executions && { executions }) };
  }
}

/** The temporary instance's lifecycle, scoped to its fixed name (and the source instance to restore from). */
function temporaryInstanceStatements(stack: Stack, config: EnvironmentConfig, identifier: string): iam.PolicyStatement[] {
  const rds = (resource: string, name: string) => stack.formatArn({ service: 'rds', resource, resourceName: name, arnFormat: ArnFormat.COLON_RESOURCE_NAME });
  const temporary = rds('db', identifier);
  return [
    new iam.PolicyStatement({
      sid: 'RestoreTemporaryInstance',
      actions: ['rds:RestoreDBInstanceToPointInTime'],
      resources: [rds('db', config.database.instanceIdentifier), temporary, rds('subgrp', config.restoreTest.temporaryInstanceSubnetGroupName!)],
    }),
    new iam.PolicyStatement({ sid: 'TagTemporaryInstance', actions: ['rds:AddTagsToResource'], resources: [temporary] }),
    new iam.PolicyStatement({ sid: 'WatchTemporaryInstance', actions: ['rds:DescribeDBInstances'], resources: [temporary] }),
    new iam.PolicyStatement({ sid: 'DeleteTemporaryInstance', actions: ['rds:DeleteDBInstance'], resources: [temporary] }),
  ];
}
