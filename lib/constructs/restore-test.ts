import { Annotations, ArnFormat, CfnOutput, Duration, Fn, RemovalPolicy, Size, Stack, TimeZone, Token, Validations } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as destinations from 'aws-cdk-lib/aws-lambda-destinations';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as scheduler from 'aws-cdk-lib/aws-scheduler';
import * as targets from 'aws-cdk-lib/aws-scheduler-targets';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import * as tasks from 'aws-cdk-lib/aws-stepfunctions-tasks';
import { Construct } from 'constructs';
import { connectWithIamAuthStatement, decryptSecretStatement, restoreEncryptedStorageStatement } from './database-statements';
import { deadLetterQueue, deadLettersAlarm } from './dead-letters';
import { VPC_MANAGED_POLICY_ACKNOWLEDGEMENTS } from './house-function';
import { RunbookAlarm, sumOfCounts } from './runbook-alarm';
import { BACKUP_RUNNER_SERVICE, RUNNER_METRICS } from '../../lambdas/backup/runner-contract';
import { RESTORE_TEST_ENV, RESTORE_TEST_METRICS, RESTORE_TEST_SERVICE, EXECUTION_TAG, TEMPORARY_INSTANCE_TRANSIENT_ERROR, temporaryInstanceIdentifier } from '../../lambdas/restore/contract';
import { MEASURABLE_RTO_SECONDS, RESTORE_DEADLINE_MARGIN_MS, RESTORE_FUNCTION_TIMEOUT_SECONDS } from '../../lambdas/restore/deadline';
import { metricsNamespace, operatorCommand } from '../../lambdas/shared/constants';
import { BACKUP_TIERS, LATEST_POINTER_KEY, RESTORE_TEST_REPORT_PREFIX } from '../../lambdas/shared/s3-layout';
import { ConfigError, type EnvironmentConfig, type RestoreTestConfig } from '../config';
import { nagRender } from '../nag';
import type { BackupDatabase, BackupWorkloadProps } from './backup-workload';
import { TIER_CADENCE } from './backups';
import { runnerImageCode } from './runner-image';

/** Stack outputs: what RestoreTest-NotRun's first action starts, for a script or a person without the console. */
export const RESTORE_TEST_OUTPUTS = { functionName: 'RestoreTestFunctionName', stateMachineArn: 'RestoreTestStateMachineArn' } as const;

/**
 * Each deletion of the temporary instance (after the test, after an error, after a failed create),
 * tried again on RDS throttling or a 5xx: 4 more attempts over 5 + 10 + 20 + 40 s, each with the
 * SDK's own attempts, before the failure path names the instance to delete by hand.
 */
export const DELETE_TEMPORARY_INSTANCE_RETRY = { interval: Duration.seconds(5), maxAttempts: 4, backoffRate: 2 } as const;

/**
 * The errors of the state machine's own RDS calls (the temporary instance's own password, the poll of
 * its secret) that say nothing about the instance, as Step Functions names an aws-sdk integration's
 * errors: `Rds.` and the AWS SDK for Java's exception class. An error code RDS's API model does not
 * list as an exception of its own (throttling, a 5xx such as InternalFailure or ServiceUnavailable) is
 * the generic `Rds.RdsException`; a call that got no answer (reset, timeout) is
 * `Rds.SdkClientException`; `Rds.ThrottlingException` is the name the Step Functions guide's rule
 * gives (the error code with the Exception suffix), kept should throttling ever be named so.
 * `Rds.RdsException` also carries the refusals the model does not list (InvalidParameterCombination):
 * those are asked again as well, then fail the run as before, the retries' minute later.
 * Never `States.TaskFailed`: that would retry every refusal, a missing instance included.
 */
export const RDS_CALL_TRANSIENT_ERRORS = ['Rds.ThrottlingException', 'Rds.RdsException', 'Rds.SdkClientException'] as const;
/** Each of those calls, tried again on those errors with the deletions' bound: 4 more attempts over 5 + 10 + 20 + 40 s. */
export const RDS_CALL_RETRY = DELETE_TEMPORARY_INSTANCE_RETRY;

/**
 * ModifyDBInstance refused because the instance is busy (InvalidDBInstanceState: RDS may still be
 * finishing work of its own on it right after reporting it `available`). Step Functions names it after
 * the SDK for Java's class, `Db` and not `DB` (`Rds.InvalidDbInstanceStateException`); the spelling
 * from the API's error code is listed too: a name never thrown costs nothing, a misspelt one would
 * silently never match.
 */
export const INSTANCE_BUSY_ERRORS = ['Rds.InvalidDbInstanceStateException', 'Rds.InvalidDBInstanceStateException'] as const;
/** Asked again every 30 s for 5 minutes, then the run fails as before (deleting the instance). */
export const INSTANCE_BUSY_RETRY = { interval: Duration.seconds(30), maxAttempts: 10, backoffRate: 1 } as const;

/** The longest gap between two first Wednesdays is 35 days: one day more before "it did not run". */
const MAX_REPORT_AGE_DAYS = 36;

/** Runbook section 7: "le premier mercredi de chaque mois", after the 02:00 daily backup. */
export const RESTORE_TEST_SCHEDULE_EXPRESSION = 'cron(0 4 ? * WED#1 *)';

/**
 * The scheduled test's RPO objective: restoreTest.rpoObjectiveSeconds, else the age past which the
 * tier's newest backup is overdue, as the Backups-NoRecent<Tier> alarms bound it (the longest gap
 * between two runs of its schedule plus 3 h for a run in progress: TIER_CADENCE). A dump tier's
 * freshness is bounded by its schedule, not by the runbook's 15 minutes (point-in-time recovery's):
 * on a healthy deployment the restored dump is within this bound whenever the test runs (the daily
 * dump at 04:00 is 2 h old; a temporary instance's creation adds at most the state machine's
 * 4 hours), and a tier whose backups stopped pages.
 */
export function restoreTestRpoObjectiveSeconds(settings: Pick<RestoreTestConfig, 'tier' | 'rpoObjectiveSeconds'>): number {
  if (settings.rpoObjectiveSeconds !== undefined) return settings.rpoObjectiveSeconds;
  return TIER_CADENCE[settings.tier].maxNewestAgeHours * 3600;
}

export interface RestoreTestProps extends BackupWorkloadProps {
  /** Environment name (descriptions, the temporary instance's name, alarm names). */
  readonly environmentName: string;
  /** IANA time zone of the schedule. */
  readonly timeZone: string;
  /** Production environment: a scratch database on the production instance is then warned about. */
  readonly production: boolean;
  /**
   * The backed-up database. Its security group (`databaseSecurityGroup`) receives ingress from the
   * test's group, unless `settings.targetSecurityGroupId` names the target instance's own group or
   * the test runs on a temporary instance (then it gets nothing of production).
   */
  readonly database: BackupDatabase;
  /** Target, objectives, schedule tier, sizing (config `restoreTest`). */
  readonly settings: RestoreTestConfig;
  /**
   * Customer-managed key of the backed-up instance's storage (config `recovery.storageKmsKeyArn`):
   * with useTemporaryInstance, the restore of the temporary instance creates a grant on it, through
   * RDS only. @default - AWS-managed key, no grant
   */
  readonly storageKmsKeyArn?: string;
  /** @default RESTORE_TEST_SCHEDULE_EXPRESSION (first Wednesday of the month, 04:00 in config.timeZone) */
  readonly scheduleExpression?: string;
}

/**
 * The monthly restore test (runbook "Sauvegarde", sections 3 and 7): EventBridge Scheduler invokes the runner image's
 * `restore.handler` in the VPC; it restores the latest backup of the configured tier into a
 * scratch database on the target instance, publishes RestoreTestSuccess / RtoSeconds / RpoSeconds,
 * writes its JSON report under `restore-tests/`, and alarms go to the incidents topic on failure,
 * on RTO over the objective and on RPO over the objective.
 */
export class RestoreTest extends Construct {
  readonly function: lambda.DockerImageFunction;
  readonly securityGroup: ec2.SecurityGroup;
  /** useTemporaryInstance: the temporary instance's own group (PostgreSQL from this test only). */
  readonly temporaryInstanceSecurityGroup?: ec2.SecurityGroup;
  readonly schedule: scheduler.Schedule;
  /** Schedule runs that could not be delivered. */
  readonly deadLetterQueue: sqs.Queue;
  readonly alarms: {
    readonly failed: cloudwatch.Alarm;
    readonly errors: cloudwatch.Alarm;
    readonly rto: cloudwatch.Alarm;
    readonly rpo: cloudwatch.Alarm;
    readonly deadLetters: cloudwatch.Alarm;
    /**
     * No restore-test report newer than 36 days (before the first one: 36 days since the age
     * baseline), or no report age at all ("it ran" alarm).
     */
    readonly notRun: cloudwatch.Alarm;
    /** useTemporaryInstance: the state machine failed or timed out. */
    readonly executions?: cloudwatch.Alarm;
  };
  /** useTemporaryInstance: create the instance, wait, run the test on it, delete it whatever happens. */
  readonly stateMachine?: { readonly machine: sfn.StateMachine };
  /** The RPO objective the function judges and RestoreTest-Rpo pages on (restoreTestRpoObjectiveSeconds). */
  readonly rpoObjectiveSeconds: number;

  constructor(scope: Construct, id: string, props: RestoreTestProps) {
    super(scope, id);
    const { bucket, backupKey, database, settings: restoreTest, environmentName } = props;
    const stack = Stack.of(this);
    if (restoreTest.useTemporaryInstance && !restoreTest.temporaryInstanceSubnetGroupName) {
      throw new ConfigError(
        `config: environments.${environmentName}.restoreTest.temporaryInstanceSubnetGroupName: is required with useTemporaryInstance (the DB subnet group of the temporary instance); set it, or set useTemporaryInstance to false`,
      );
    }
    const temporaryInstance = restoreTest.useTemporaryInstance ? temporaryInstanceIdentifier(environmentName) : undefined;
    if (props.production && !restoreTest.targetHost && !temporaryInstance) {
      // Runbook section 7: "Environnement : Staging uniquement". Allowed, but said at every synth.
      Annotations.of(this).addWarningV2(
        'atmr-dr:restore-test-on-production-instance',
        `restoreTest in production environment "${environmentName}" creates its scratch database on the production instance ${database.host}; the runbook says staging only: set restoreTest.targetHost (a staging instance) or restoreTest.useTemporaryInstance`,
      );
    }
    if (restoreTest.rtoObjectiveSeconds > MEASURABLE_RTO_SECONDS) {
      // Both runners (the function alone, or the function on the temporary instance) restore within
      // one Lambda run: a restore still going at its stop is reported as "RTO > N s" with N at most
      // this, published as RtoSeconds, which cannot reach a longer objective.
      Annotations.of(this).addWarningV2(
        'atmr-dr:restore-test-rto-not-measurable',
        `restoreTest.rtoObjectiveSeconds ${restoreTest.rtoObjectiveSeconds} s is longer than the restore test can measure (${MEASURABLE_RTO_SECONDS} s: its ${RESTORE_FUNCTION_TIMEOUT_SECONDS} s Lambda limit less ${RESTORE_DEADLINE_MARGIN_MS / 1000} s to stop cleanly): a restore that takes longer is stopped and pages as RestoreTest-Failed ("RTO > N s"), never as RestoreTest-Rto, even one within ${restoreTest.rtoObjectiveSeconds} s. To keep this objective, on such a page time the restore without a limit from the checkout: ${operatorCommand(environmentName, `restore-test --rto-objective ${restoreTest.rtoObjectiveSeconds}`)} (docs/restore.md, "The restore test"); for the scheduled test to judge the RTO itself, set environments.${environmentName}.restoreTest.rtoObjectiveSeconds to ${MEASURABLE_RTO_SECONDS} or less in cdk.json (stricter than ${restoreTest.rtoObjectiveSeconds} s)`,
      );
    }
    this.rpoObjectiveSeconds = restoreTestRpoObjectiveSeconds(restoreTest);
    const tierInterval = TIER_CADENCE[restoreTest.tier].intervalSeconds;
    if (this.rpoObjectiveSeconds < tierInterval) {
      // Set by hand below the tier's cadence: RestoreTest-Rpo pages with the backups on time, and a
      // page every month teaches the on-call to ignore it.
      Annotations.of(this).addWarningV2(
        'atmr-dr:restore-test-rpo-below-tier-interval',
        `restoreTest.rpoObjectiveSeconds ${this.rpoObjectiveSeconds} s is shorter than the ${restoreTest.tier} tier's backup interval (${tierInterval} s): the ${restoreTest.tier} dump the test restores can be that old with every backup on time, so RestoreTest-Rpo would page on a healthy deployment. The runbook's 15-minute RPO is point-in-time recovery's (the recover command, watched by Backups-PitrLag), not a dump tier's: remove environments.${environmentName}.restoreTest.rpoObjectiveSeconds from cdk.json (the objective is then ${restoreTestRpoObjectiveSeconds({ tier: restoreTest.tier })} s, past which the ${restoreTest.tier} backups are overdue), set it to ${tierInterval} or more, or set restoreTest.tier to a more frequent tier`,
      );
    }
    const targetPort = restoreTest.targetPort ?? database.port;

    this.securityGroup = new ec2.SecurityGroup(this, 'SecurityGroup', {
      vpc: props.vpc,
      description: `atmr-dr ${environmentName} restore test: HTTPS to AWS APIs, PostgreSQL to the target instance`,
      allowAllOutbound: false,
    });
    this.securityGroup.addEgressRule(ec2.Peer.anyIpv4(), ec2.Port.tcp(443), 'AWS APIs (S3, Secrets Manager, KMS, CloudWatch) over HTTPS');
    let targetSecurityGroup: ec2.ISecurityGroup;
    if (temporaryInstance) {
      // The temporary instance gets a group of its own that admits this function only: the test
      // never gets a path to the production database.
      this.temporaryInstanceSecurityGroup = new ec2.SecurityGroup(this, 'TemporaryInstanceSecurityGroup', {
        vpc: props.vpc,
        description: `atmr-dr ${environmentName} restore test temporary instance: PostgreSQL from the restore test only`,
        allowAllOutbound: false,
      });
      targetSecurityGroup = this.temporaryInstanceSecurityGroup;
    } else {
      targetSecurityGroup = restoreTest.targetSecurityGroupId
        ? ec2.SecurityGroup.fromSecurityGroupId(this, 'TargetSecurityGroup', restoreTest.targetSecurityGroupId, { mutable: true })
        : props.databaseSecurityGroup;
    }
    this.securityGroup.connections.allowTo(targetSecurityGroup, ec2.Port.tcp(targetPort), 'atmr-dr restore test to PostgreSQL');

    // Runs Scheduler could not deliver, and runs Lambda accepted but never completed (a crash, or an
    // event throttled or expired before it ran): kept, and alarmed (a monthly test that never ran is loud).
    this.deadLetterQueue = deadLetterQueue(this, {
      key: props.opsKey,
      isTheDeadLetterQueue:
        "This queue is itself the dead-letter queue of the restore-test schedule and the function's on-failure destination; the DeadLetters alarm pages as soon as it holds a message.",
    });
    // The restore tests' audit record (RTO/RPO evidence for a year): a `cdk destroy` must not take it along.
    const logGroup = new logs.LogGroup(this, 'Logs', { retention: logs.RetentionDays.ONE_YEAR, removalPolicy: RemovalPolicy.RETAIN });
    const secretArn = restoreTest.targetSecretArn ?? database.secretArn;
    const useIamAuth = Boolean(database.iamAuthUser && !restoreTest.targetSecretArn);
    this.function = new lambda.DockerImageFunction(this, 'Function', {
      description: `atmr-dr ${environmentName}: monthly restore test (RTO/RPO)`,
      code: runnerImageCode('restore.handler', { pgMajorVersion: database.engineMajorVersion }),
      architecture: lambda.Architecture.ARM_64,
      memorySize: restoreTest.memoryMiB,
      ephemeralStorageSize: Size.mebibytes(restoreTest.ephemeralStorageMiB),
      timeout: Duration.seconds(RESTORE_FUNCTION_TIMEOUT_SECONDS),
      reservedConcurrentExecutions: 1,
      // A failed test is a finding, reported and alarmed; running it again changes nothing.
      retryAttempts: 0,
      onFailure: new destinations.SqsDestination(this.deadLetterQueue),
      vpc: props.vpc,
      vpcSubnets: props.subnets,
      securityGroups: [this.securityGroup],
      tracing: lambda.Tracing.ACTIVE,
      logGroup,
      loggingFormat: lambda.LoggingFormat.JSON,
      environment: {
        POWERTOOLS_SERVICE_NAME: RESTORE_TEST_SERVICE,
        POWERTOOLS_METRICS_NAMESPACE: metricsNamespace(environmentName),
        [RESTORE_TEST_ENV.environmentName]: environmentName,
        [RESTORE_TEST_ENV.bucket]: bucket.bucketName,
        [RESTORE_TEST_ENV.tier]: restoreTest.tier,
        [RESTORE_TEST_ENV.criticalQueries]: JSON.stringify(restoreTest.criticalQueries),
        [RESTORE_TEST_ENV.rtoObjectiveSeconds]: String(restoreTest.rtoObjectiveSeconds),
        [RESTORE_TEST_ENV.rpoObjectiveSeconds]: String(this.rpoObjectiveSeconds),
        // A restore asked of this function never targets the backed-up (production) database.
        [RESTORE_TEST_ENV.protectedDatabases]: JSON.stringify([database.name]),
        ...(temporaryInstance
          ? {
              // No production host, port or secret: the target is found from the temporary instance itself.
              [RESTORE_TEST_ENV.sourceInstance]: database.instanceIdentifier,
              [RESTORE_TEST_ENV.temporaryInstance]: temporaryInstance,
              [RESTORE_TEST_ENV.temporaryInstanceClass]: restoreTest.temporaryInstanceClass,
              [RESTORE_TEST_ENV.temporaryInstanceSubnetGroup]: restoreTest.temporaryInstanceSubnetGroupName!,
              [RESTORE_TEST_ENV.temporaryInstanceSecurityGroups]: JSON.stringify([this.temporaryInstanceSecurityGroup!.securityGroupId]),
              // Named in the line of a restore RDS refuses for the key's sake.
              ...(props.storageKmsKeyArn && { [RESTORE_TEST_ENV.temporaryInstanceStorageKmsKey]: props.storageKmsKeyArn }),
            }
          : {
              [RESTORE_TEST_ENV.targetHost]: restoreTest.targetHost ?? database.host,
              [RESTORE_TEST_ENV.targetPort]: String(targetPort),
              ...(useIamAuth ? { [RESTORE_TEST_ENV.iamAuthUser]: database.iamAuthUser! } : { [RESTORE_TEST_ENV.targetSecretArn]: secretArn }),
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
    const readable = restoreReadableObjects(bucketArn);
    const statements = restoreTestBucketStatements(bucketArn, backupKey.keyArn);
    if (temporaryInstance) {
      statements.push(...temporaryInstanceStatements(stack, props, temporaryInstance));
    } else if (useIamAuth) {
      statements.push(connectWithIamAuthStatement(stack, database.iamAuthUser!));
    } else {
      statements.push(new iam.PolicyStatement({ sid: 'ReadTargetSecret', actions: ['secretsmanager:GetSecretValue'], resources: [secretArn] }));
      if (database.secretKmsKeyArn && !restoreTest.targetSecretArn) {
        statements.push(decryptSecretStatement(stack, database.secretKmsKeyArn, 'DecryptTargetSecret'));
      }
    }
    for (const statement of statements) this.function.addToRolePolicy(statement);

    const schedulerRole = new iam.Role(this, 'SchedulerRole', {
      description: `atmr-dr ${environmentName}: EventBridge Scheduler starts the monthly restore test`,
      assumedBy: new iam.ServicePrincipal('scheduler.amazonaws.com', { conditions: { StringEquals: { 'aws:SourceAccount': stack.account } } }),
    });
    // The dead-letter queue is KMS-encrypted (operations key): Scheduler encrypts with it to send.
    schedulerRole.addToPrincipalPolicy(new iam.PolicyStatement({ actions: ['kms:GenerateDataKey', 'kms:Decrypt'], resources: [props.opsKey.keyArn] }));
    const expression = props.scheduleExpression ?? RESTORE_TEST_SCHEDULE_EXPRESSION;
    const input = scheduler.ScheduleTargetInput.fromObject({ tier: restoreTest.tier });
    const retry = { retryAttempts: 2, maxEventAge: Duration.hours(2), deadLetterQueue: this.deadLetterQueue };
    if (temporaryInstance) {
      this.stateMachine = this.temporaryInstanceStateMachine(props, temporaryInstance);
    }
    this.schedule = new scheduler.Schedule(this, 'Schedule', {
      description: `atmr-dr ${environmentName}: monthly restore test (${expression} ${props.timeZone})`,
      schedule: scheduler.ScheduleExpression.expression(expression, TimeZone.of(props.timeZone)),
      target: this.stateMachine
        ? new targets.StepFunctionsStartExecution(this.stateMachine.machine, { input, role: schedulerRole, ...retry })
        : new targets.LambdaInvoke(this.function, { input, role: schedulerRole, ...retry }),
      timeWindow: scheduler.TimeWindow.off(),
    });

    this.alarms = this.createAlarms(props);
    new CfnOutput(stack, RESTORE_TEST_OUTPUTS.functionName, { value: this.function.functionName, description: 'The restore-test function (invoked with {"tier"} by the schedule)' });
    if (this.stateMachine) {
      new CfnOutput(stack, RESTORE_TEST_OUTPUTS.stateMachineArn, { value: this.stateMachine.machine.stateMachineArn, description: 'The restore test on a temporary instance (started with {"tier"} by the schedule)' });
    }

    const render = (value: string) => nagRender(stack, value);
    Validations.of(this.function).acknowledge(
      ...VPC_MANAGED_POLICY_ACKNOWLEDGEMENTS,
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
      ...(useIamAuth && !temporaryInstance
        ? [
            {
              id: `AwsSolutions-IAM5[Resource::${render(statements.find((s) => s.sid === 'ConnectWithIamAuth')!.resources[0])}]`,
              reason: 'The instance resource id is not in the config: scoped to the configured IAM database user.',
            },
          ]
        : []),
      ...(temporaryInstance
        ? [
            {
              id: `AwsSolutions-IAM5[Resource::${render(TEMPORARY_INSTANCE_SECRETS(stack))}]`,
              reason:
                "The temporary instance's RDS-managed secret gets its name at creation: GetSecretValue only on RDS-managed secrets tagged as the temporary instance's (aws:rds:primaryDBInstanceArn).",
            },
          ]
        : []),
      {
        id: 'Serverless-LambdaDLQ',
        reason:
          'Failed asynchronous runs go to the on-failure destination (the dead-letter queue, alarmed), which records the error context; the legacy DeadLetterConfig would only duplicate it. A test that ran and failed is reported (metric, report, Failed alarm) and not retried.',
      },
      ...['kms:GenerateDataKey*', 'kms:ReEncrypt*'].map((action) => ({
        id: `AwsSolutions-IAM5[Action::${action}]`,
        reason: "Granted by CDK for sending the failed-run record to the dead-letter queue: on the queue's key (the operations key) only, which encrypts no backup.",
      })),
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
   * every minute until available, give it a master password of its own (RDS-managed secret, so the
   * test never needs production's), wait for that secret, run the restore test against it, and
   * delete it on every path. The instance steps are the restore-test function (unit tested); the
   * password step and its polling are RDS calls of the state machine itself.
   */
  private temporaryInstanceStateMachine(props: RestoreTestProps, identifier: string): { machine: sfn.StateMachine } {
    const stack = Stack.of(this);
    const invoke = (id: string, payload: Record<string, unknown>, resultPath: string) =>
      new tasks.LambdaInvoke(this, id, {
        lambdaFunction: this.function,
        payload: sfn.TaskInput.fromObject(payload),
        payloadResponseOnly: true,
        resultPath,
        retryOnServiceExceptions: true,
      });
    const temporaryArn = stack.formatArn({ service: 'rds', resource: 'db', resourceName: identifier, arnFormat: ArnFormat.COLON_RESOURCE_NAME });
    // The execution's name tags the instance as this run's: a retried create (its answer lost) then
    // recognizes its own instance instead of refusing it as another run's.
    const execution = sfn.JsonPath.stringAt('$$.Execution.Name');
    const create = invoke('CreateTemporaryInstance', { temporaryInstance: 'create', execution }, '$.instance');
    const wait = new sfn.Wait(this, 'WaitForTemporaryInstance', { time: sfn.WaitTime.duration(Duration.minutes(1)) });
    const status = invoke('TemporaryInstanceStatus', { temporaryInstance: 'status' }, '$.instance');
    const ownPassword = new tasks.CallAwsService(this, 'GiveTemporaryInstanceItsOwnPassword', {
      service: 'rds',
      action: 'modifyDBInstance',
      parameters: { DbInstanceIdentifier: identifier, ManageMasterUserPassword: true, ApplyImmediately: true },
      iamResources: [temporaryArn],
      resultPath: sfn.JsonPath.DISCARD,
    });
    const waitForSecret = new sfn.Wait(this, 'WaitForTemporaryInstanceSecret', { time: sfn.WaitTime.duration(Duration.minutes(1)) });
    const describe = new tasks.CallAwsService(this, 'TemporaryInstanceSecretStatus', {
      service: 'rds',
      action: 'describeDBInstances',
      parameters: { DbInstanceIdentifier: identifier },
      iamResources: [temporaryArn],
      resultSelector: { 'instance.$': '$.DbInstances[0]' },
      resultPath: '$.secret',
    });
    // One throttled call (RDS throttles per account: another tool's burst is enough) would otherwise
    // end the month's test as RestoreTestErrored, its RTO/RPO measurement lost, and page for nothing.
    for (const step of [ownPassword, describe]) step.addRetry({ errors: [...RDS_CALL_TRANSIENT_ERRORS], ...RDS_CALL_RETRY });
    ownPassword.addRetry({ errors: [...INSTANCE_BUSY_ERRORS], ...INSTANCE_BUSY_RETRY });
    // Only the test's tier: the function finds the temporary instance's endpoint and secret itself.
    const runTest = invoke('RunRestoreTest', { 'tier.$': '$.tier' }, '$.test');
    const deleteInstance = invoke('DeleteTemporaryInstance', { temporaryInstance: 'delete' }, sfn.JsonPath.DISCARD);
    const deleteAfterError = invoke('DeleteTemporaryInstanceAfterError', { temporaryInstance: 'delete' }, sfn.JsonPath.DISCARD);
    const errored = new sfn.Fail(this, 'RestoreTestErrored', { error: 'RestoreTestErrored', causePath: '$.error.Cause' });
    const failed = new sfn.Fail(this, 'RestoreTestFailed', { error: 'RestoreTestFailed', causePath: '$.test.error' });
    const passed = new sfn.Succeed(this, 'RestoreTestPassed');
    const catchAll = { resultPath: '$.error' };
    // Every deletion: RDS throttling or a 5xx outlasting the SDK's attempts (the function names it)
    // is asked again; a deletion that still fails (a refusal, or RDS degraded past the retries) goes
    // to its catch, which must neither replace the run's own outcome nor leave the instance unsaid
    // (billed until someone deletes it): the execution fails with that outcome first, then this line.
    const retryDeletion = (step: tasks.LambdaInvoke) => {
      step.addRetry({ errors: [TEMPORARY_INSTANCE_TRANSIENT_ERROR], ...DELETE_TEMPORARY_INSTANCE_RETRY });
      return step;
    };
    const cleanupError = { resultPath: '$.cleanupError' };
    /** `outcome`: the line's beginning (a States.Format template and its arguments); `field`: where the line goes (with `resultPath`). */
    const mayRemain = (id: string, outcome: { template: string; args: string[] }, deletionFailed: string, field: string, resultPath: string, keep: Record<string, string> = {}) =>
      new sfn.Pass(this, id, {
        parameters: {
          ...keep,
          [field]: sfn.JsonPath.format(
            `${outcome.template}; and temporary instance ${identifier} may still exist, ${deletionFailed} ({}): if its ${EXECUTION_TAG} tag names this execution ({}), delete it: aws rds delete-db-instance --db-instance-identifier ${identifier} --skip-final-snapshot`,
            ...outcome.args,
            sfn.JsonPath.stringAt('$.cleanupError.Cause'),
            sfn.JsonPath.stringAt('$$.Execution.Name'),
          ),
        },
        resultPath,
      });
    // The error that led to the deletion first, kept as the execution's error ($.error, read by the Fail state).
    const mayRemainAfterError = (id: string, deletionFailed: string) =>
      mayRemain(id, { template: '{}', args: [sfn.JsonPath.stringAt('$.error.Cause')] }, deletionFailed, 'Cause', '$.error', { 'Error.$': '$.error.Error' });

    // A failed create may still have been accepted by RDS (its answer lost until the retries were
    // spent, or the step failing after the call): this run's instance, if any, is deleted before the
    // failure; an instance of that name that is another run's is left alone.
    const deleteOwnAfterFailedCreate = retryDeletion(invoke('DeleteOwnTemporaryInstanceAfterFailedCreate', { temporaryInstance: 'deleteIfOwn', execution }, sfn.JsonPath.DISCARD));
    create.addCatch(deleteOwnAfterFailedCreate, catchAll);
    const notCreated = new sfn.Fail(this, 'TemporaryInstanceNotCreated', { error: 'TemporaryInstanceNotCreated', causePath: '$.error.Cause' });
    deleteOwnAfterFailedCreate.next(notCreated);
    deleteOwnAfterFailedCreate.addCatch(mayRemainAfterError('OwnTemporaryInstanceMayRemain', 'its deletion after the failed create failed too').next(notCreated), cleanupError);

    for (const step of [status, ownPassword, describe, runTest]) step.addCatch(deleteAfterError, catchAll);
    retryDeletion(deleteAfterError).next(errored);
    deleteAfterError.addCatch(mayRemainAfterError('TemporaryInstanceMayRemainAfterError', 'its deletion after the error failed too').next(errored), cleanupError);

    // After the test, its result first: a failed test stays RestoreTestFailed, its error first; a
    // passed one fails the execution all the same (TemporaryInstanceNotDeleted), so that the
    // Executions alarm tells someone the instance is billed.
    retryDeletion(deleteInstance).addCatch(
      new sfn.Choice(this, 'RestoreTestOkButInstanceNotDeleted')
        .when(
          sfn.Condition.booleanEquals('$.test.ok', true),
          mayRemain(
            'TemporaryInstanceMayRemainAfterPassedTest',
            { template: 'the restore test passed (report {})', args: [sfn.JsonPath.stringAt('$.test.reportKey')] },
            'its deletion failed',
            'Cause',
            '$.error',
          ).next(new sfn.Fail(this, 'TemporaryInstanceNotDeleted', { error: 'TemporaryInstanceNotDeleted', causePath: '$.error.Cause' })),
        )
        .otherwise(
          mayRemain('TemporaryInstanceMayRemainAfterFailedTest', { template: '{}', args: [sfn.JsonPath.stringAt('$.test.error')] }, 'its deletion after the test failed too', 'error', '$.test').next(failed),
        ),
      cleanupError,
    );

    const secretReady = sfn.Condition.and(
      sfn.Condition.stringEquals('$.secret.instance.DbInstanceStatus', 'available'),
      sfn.Condition.isPresent('$.secret.instance.MasterUserSecret.SecretStatus'),
      sfn.Condition.stringEquals('$.secret.instance.MasterUserSecret.SecretStatus', 'active'),
    );
    const testAndCleanUp = runTest
      .next(deleteInstance)
      .next(new sfn.Choice(this, 'RestoreTestOk').when(sfn.Condition.booleanEquals('$.test.ok', true), passed).otherwise(failed));
    const definition = create
      .next(wait)
      .next(status)
      .next(
        new sfn.Choice(this, 'TemporaryInstanceAvailable')
          .when(
            sfn.Condition.booleanEquals('$.instance.ready', true),
            ownPassword
              .next(waitForSecret)
              .next(describe)
              .next(new sfn.Choice(this, 'TemporaryInstanceSecretReady').when(secretReady, testAndCleanUp).otherwise(waitForSecret)),
          )
          .otherwise(wait),
      );
    const logGroup = new logs.LogGroup(this, 'StateMachineLogs', { retention: logs.RetentionDays.ONE_YEAR, removalPolicy: RemovalPolicy.RETAIN });
    const machine = new sfn.StateMachine(this, 'TemporaryInstanceStateMachine', {
      comment: `atmr-dr ${props.environmentName}: restore test on a temporary RDS instance`,
      definitionBody: sfn.DefinitionBody.fromChainable(definition),
      // An instance restore takes from minutes to hours; past this, the test is a failure.
      timeout: Duration.hours(4),
      tracingEnabled: true,
      logs: { destination: logGroup, level: sfn.LogLevel.ALL, includeExecutionData: false },
    });
    // RDS creates the temporary instance's managed secret with the caller's permissions.
    machine.addToRolePolicy(
      new iam.PolicyStatement({
        sid: 'CreateTheTemporaryInstanceSecret',
        actions: ['secretsmanager:CreateSecret', 'secretsmanager:TagResource'],
        resources: [TEMPORARY_INSTANCE_SECRETS(stack)],
      }),
    );
    Validations.of(machine).acknowledge(
      {
        id: `AwsSolutions-IAM5[Resource::${nagRender(stack, this.function.functionArn)}:*]`,
        reason: 'Granted by the LambdaInvoke tasks: invoke the restore-test function and its versions, nothing else.',
      },
      {
        id: `AwsSolutions-IAM5[Resource::${nagRender(stack, TEMPORARY_INSTANCE_SECRETS(stack))}]`,
        reason: "RDS names the temporary instance's managed secret at creation (rds!db-<id>): CreateSecret/TagResource on RDS-managed secret names only, for ModifyDBInstance ManageMasterUserPassword.",
      },
      {
        id: 'AwsSolutions-IAM5[Resource::*]',
        reason: 'CloudWatch Logs delivery and X-Ray actions of Step Functions have no resource-level permissions.',
      },
    );
    return { machine };
  }

  private createAlarms(props: RestoreTestProps): RestoreTest['alarms'] {
    const { rtoObjectiveSeconds } = props.settings;
    const rpoObjectiveSeconds = this.rpoObjectiveSeconds;
    const topic = props.alarmTopic;
    const metric = (metricName: string, statistic: string) =>
      new cloudwatch.Metric({ namespace: metricsNamespace(props.environmentName), metricName, dimensionsMap: { service: RESTORE_TEST_SERVICE }, statistic, period: Duration.hours(1) });
    const common = {
      environmentName: props.environmentName,
      concern: 'RestoreTest',
      runbookSection: 'Sauvegarde - 7. Tests mensuels',
      topic,
      evaluationPeriods: 1,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    };
    // The first commands of a page, with what this construct knows filled in: the reports' place, the
    // function's log group, the environment (the CLI's default is the checkout's cdk.json env).
    const reports = `aws s3 ls s3://${props.bucket.bucketName}/${RESTORE_TEST_REPORT_PREFIX}`;
    const readLogs = `aws logs tail ${this.function.logGroup.logGroupName} --since 6h`;
    // Running the failed test again is running the scheduled one: the same run the schedule starts,
    // on the newest backup of the same tier. The function, or with useTemporaryInstance the state
    // machine, is read from this stack's output, so the text holds no deploy-time name (the NotRun
    // description below must stay a plain string, test/infra/alarm-naming.test.ts).
    const testInput = JSON.stringify({ tier: props.settings.tier });
    const output = (key: string) =>
      `"$(aws cloudformation describe-stacks --stack-name ${Stack.of(this).stackName} --query 'Stacks[0].Outputs[?OutputKey==\`${key}\`].OutputValue' --output text)"`;
    const startNow = this.stateMachine
      ? `aws stepfunctions start-execution --state-machine-arn ${output(RESTORE_TEST_OUTPUTS.stateMachineArn)} --input '${testInput}'`
      : `aws lambda invoke --function-name ${output(RESTORE_TEST_OUTPUTS.functionName)} --invocation-type Event --cli-binary-format raw-in-base64-out --payload '${testInput}' /dev/null`;
    // The backup the scheduled test restored, checked on its own (sizes, sha256, archives readable
    // to the end): a corrupt newest dump fails here as it failed the test.
    const verifyLatest = operatorCommand(props.environmentName, `backups verify latest --tier ${props.settings.tier} --database ${props.database.name}`);
    // The CLI's own test takes a fresh backup and restores that, on PGDATABASE's server with no time
    // limit: it measures a restore, it never repeats a check of the scheduled test's backup (a corrupt
    // newest dump passes it).
    const freshTest = `${operatorCommand(props.environmentName, 'restore-test --json')} (PG* de la base de staging ; teste une sauvegarde neuve, pas celle du test planifié)`;

    const failed = new RunbookAlarm(this, 'FailedAlarm', {
      what: 'Failed',
      // A restore the function stopped is a failed test, not RestoreTest-Rto: with an objective it
      // cannot measure, the page says that "RTO > N s" need not be over the objective.
      summary:
        `the monthly restore test failed` +
        (rtoObjectiveSeconds > MEASURABLE_RTO_SECONDS
          ? `; "RTO > N s": over the ${MEASURABLE_RTO_SECONDS} s one run measures, not necessarily the ${rtoObjectiveSeconds} s objective: time it with restore-test --rto-objective ${rtoObjectiveSeconds}`
          : ''),
      // Why it failed is in the function's log (as in the report): the page has no room for both
      // within CloudWatch's 1024 characters, with a bucket's and a log group's names at their longest.
      firstActions: `${readLogs} (pourquoi) ; vérifier la sauvegarde testée : ${verifyLatest} ; corrigé, rejouer le test planifié : ${startNow}`,
      // Each run reports once a month: the alarm is OK again an hour later, the failure unexamined.
      signalsEvent: true,
      metric: metric(RESTORE_TEST_METRICS.success, 'Minimum'),
      threshold: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
      ...common,
    });
    const errors = new RunbookAlarm(this, 'ErrorsAlarm', {
      what: 'Errors',
      summary: `the restore test function crashed or timed out before reporting`,
      firstActions: `${readLogs} (erreur, « Task timed out », mémoire) ; corrigé, rejouer le test planifié : ${startNow}`,
      signalsEvent: true,
      metric: this.function.metricErrors({ statistic: 'Sum', period: Duration.hours(1) }),
      threshold: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      ...common,
    });
    const rto = new RunbookAlarm(this, 'RtoAlarm', {
      what: 'Rto',
      summary: `restore took longer than the RTO objective (${rtoObjectiveSeconds} s)`,
      firstActions: `lire la durée de chaque étape dans le dernier rapport (${reports}) ; mesurer sans limite de temps : ${freshTest}`,
      // Measured once per monthly run, like the RPO below: OK an hour later, nothing faster.
      signalsEvent: true,
      metric: metric(RESTORE_TEST_METRICS.rtoSeconds, 'Maximum'),
      threshold: rtoObjectiveSeconds,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      ...common,
    });
    const rpo = new RunbookAlarm(this, 'RpoAlarm', {
      what: 'Rpo',
      summary: `the restored ${props.settings.tier} backup was older than the RPO objective (${rpoObjectiveSeconds} s): the ${props.settings.tier} backups are late or stopped`,
      firstActions: `${operatorCommand(props.environmentName, `backups list --tier ${props.settings.tier}`)} (âge de la plus récente ; alarmes Backups-*) ; les sauvegardes reparties, rejouer le test planifié : ${startNow}`,
      signalsEvent: true,
      metric: metric(RESTORE_TEST_METRICS.rpoSeconds, 'Maximum'),
      threshold: rpoObjectiveSeconds,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      ...common,
    });
    const executions = this.stateMachine
      ? new RunbookAlarm(this, 'ExecutionsAlarm', {
          what: 'Executions',
          // Aborted too: a run stopped by hand, like one that timed out, runs no step after that, so
          // its temporary instance stays (billed, and next month's run refuses to start beside it).
          summary: `the restore test on a temporary instance failed, timed out or was stopped (a run that timed out or was stopped leaves its instance: check it is gone)`,
          firstActions: `aws stepfunctions list-executions --state-machine-arn ${this.stateMachine.machine.stateMachineArn} --max-results 3 (étape en échec) ; aws rds describe-db-instances --db-instance-identifier ${temporaryInstanceIdentifier(props.environmentName)} (si son tag ${EXECUTION_TAG} nomme cette exécution : aws rds delete-db-instance --db-instance-identifier ${temporaryInstanceIdentifier(props.environmentName)} --skip-final-snapshot)`,
          signalsEvent: true,
          metric: sumOfCounts(
            {
              failed: this.stateMachine.machine.metricFailed({ statistic: 'Sum', period: Duration.hours(1) }),
              timedOut: this.stateMachine.machine.metricTimedOut({ statistic: 'Sum', period: Duration.hours(1) }),
              aborted: this.stateMachine.machine.metricAborted({ statistic: 'Sum', period: Duration.hours(1) }),
            },
            Duration.hours(1),
          ),
          threshold: 1,
          comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
          ...common,
        })
      : undefined;
    const deadLetters = deadLettersAlarm(this, this.deadLetterQueue, {
      ...common,
      summary: 'the monthly restore test never ran to its end: its schedule could not deliver the run, or Lambda could not run it or it crashed (dead-letter queue not empty)',
    });
    // The "it ran" alarm. The outcome alarms above treat missing data as fine (a month without a run
    // has no failure to report); this one does not: the backup runner reports the age of the newest
    // report every hour, and before the first report the time since its age baseline (written by
    // its first run after the deploy, lambdas/backup/age-baseline.ts), so a new environment is not
    // paged before its first scheduled test is as overdue as any later one. A missing age is then
    // only a runner that cannot report it (silent, or its S3 reads failing): breaching.
    // The first action starts the same run the schedule starts (the CLI restore-test writes no
    // report, so it would not clear this alarm); the next hourly backup run then reports the new
    // report's age, and the alarm turns OK.
    // Its first action is startNow (above), with no deploy-time name in the description.
    const notRun = new RunbookAlarm(this, 'NotRunAlarm', {
      ...common,
      what: 'NotRun',
      summary: `no restore-test report for more than ${MAX_REPORT_AGE_DAYS} days (the test is monthly; a new environment's ${MAX_REPORT_AGE_DAYS} days count from the first backup run after the deploy), or the backup runner has not reported the report's age for 3 hours`,
      firstActions: `lancer le test maintenant : ${startNow} ; son rapport sous ${RESTORE_TEST_REPORT_PREFIX} remet l'alarme à OK au run de sauvegarde horaire suivant (le restore-test du CLI n'écrit pas de rapport). Si un rapport récent existe déjà : logs du backup runner ("cannot report the age")`,
      metric: new cloudwatch.Metric({
        namespace: metricsNamespace(props.environmentName),
        metricName: RUNNER_METRICS.restoreTestReportAgeSeconds,
        dimensionsMap: { service: BACKUP_RUNNER_SERVICE },
        statistic: 'Maximum',
        period: Duration.hours(1),
      }),
      threshold: MAX_REPORT_AGE_DAYS * 86_400,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 3,
      datapointsToAlarm: 3,
      treatMissingData: cloudwatch.TreatMissingData.BREACHING,
    });
    return { failed, errors, rto, rpo, deadLetters, notRun, ...(executions && { executions }) };
  }
}

/** RDS-managed secrets (`rds!db-<uuid>`): the temporary instance's own master secret is one of them. */
function TEMPORARY_INSTANCE_SECRETS(stack: Stack): string {
  return stack.formatArn({ service: 'secretsmanager', resource: 'secret', resourceName: 'rds!db-*', arnFormat: ArnFormat.COLON_RESOURCE_NAME });
}

/**
 * The temporary instance's lifecycle, scoped to its fixed name (restored from the source instance's
 * automated backups: an RDS control-plane call, with no access to the production database itself),
 * and the read of its own managed secret, never production's.
 */
function temporaryInstanceStatements(stack: Stack, props: RestoreTestProps, identifier: string): iam.PolicyStatement[] {
  const rds = (resource: string, name: string) => stack.formatArn({ service: 'rds', resource, resourceName: name, arnFormat: ArnFormat.COLON_RESOURCE_NAME });
  const temporary = rds('db', identifier);
  return [
    new iam.PolicyStatement({
      sid: 'RestoreTemporaryInstance',
      actions: ['rds:RestoreDBInstanceToPointInTime'],
      resources: [rds('db', props.database.instanceIdentifier), temporary, rds('subgrp', props.settings.temporaryInstanceSubnetGroupName!)],
    }),
    new iam.PolicyStatement({ sid: 'TagTemporaryInstance', actions: ['rds:AddTagsToResource'], resources: [temporary] }),
    new iam.PolicyStatement({ sid: 'WatchTemporaryInstance', actions: ['rds:DescribeDBInstances'], resources: [temporary] }),
    new iam.PolicyStatement({ sid: 'DeleteTemporaryInstance', actions: ['rds:DeleteDBInstance'], resources: [temporary] }),
    new iam.PolicyStatement({
      sid: 'ReadTemporaryInstanceSecret',
      actions: ['secretsmanager:GetSecretValue'],
      resources: [TEMPORARY_INSTANCE_SECRETS(stack)],
      conditions: { StringEquals: { 'secretsmanager:ResourceTag/aws:rds:primaryDBInstanceArn': temporary } },
    }),
    // The source's storage key, as the recovery gets it: the same restore of the same instance.
    ...(props.storageKmsKeyArn ? [restoreEncryptedStorageStatement(stack, props.storageKmsKeyArn)] : []),
  ];
}

/** What a restore reads: the tier objects and the pointers (the reports are not backups). */
function restoreReadableObjects(bucketArn: string): string[] {
  const objects = (pattern: string) => `${bucketArn}/${pattern}`;
  return [...BACKUP_TIERS.map((tier) => objects(`${tier}/*`)), objects('latest/*'), objects(LATEST_POINTER_KEY)];
}

/**
 * A restore test's rights on the backup bucket and its key: read-only on the backups (tier objects
 * and pointers), write only the reports (`restore-tests/`), no delete. The restore test's function
 * and the on-call's `restore`, `restore-test`, `backups` (DataStack) share them.
 */
export function restoreTestBucketStatements(bucketArn: string, backupKeyArn: string): iam.PolicyStatement[] {
  return [
    new iam.PolicyStatement({ sid: 'ReadBackups', actions: ['s3:GetObject'], resources: restoreReadableObjects(bucketArn) }),
    // Without ListBucket a missing object answers 403, not 404: the "missing object" error needs it.
    new iam.PolicyStatement({ sid: 'ListBackups', actions: ['s3:ListBucket'], resources: [bucketArn] }),
    new iam.PolicyStatement({ sid: 'WriteReports', actions: ['s3:PutObject'], resources: [`${bucketArn}/${RESTORE_TEST_REPORT_PREFIX}*`] }),
    new iam.PolicyStatement({ sid: 'UseTheBackupKey', actions: ['kms:Decrypt', 'kms:GenerateDataKey'], resources: [backupKeyArn] }),
  ];
}

/** The construct's props from the environment's config, around the shared workload props. */
export function restoreTestPropsFromConfig(config: EnvironmentConfig, workload: BackupWorkloadProps): RestoreTestProps {
  return {
    ...workload,
    environmentName: config.name,
    timeZone: config.timeZone,
    production: config.production,
    database: config.database,
    settings: config.restoreTest,
    // The key of the instance both restore (the recovery's config names it).
    storageKmsKeyArn: config.recovery.storageKmsKeyArn,
  };
}
