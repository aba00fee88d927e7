import { Arn, ArnFormat, CfnOutput, Duration, RemovalPolicy, Stack, Validations } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import * as tasks from 'aws-cdk-lib/aws-stepfunctions-tasks';
import { Construct } from 'constructs';
import { COPY_BUSY_ERROR, LOGIN_REFUSED_ERROR, PASSWORD_RESET_MAX_SECONDS, RECOVERY_ENV, RECOVERY_PURPOSE_TAG, RECOVERY_SERVICE } from '../../lambdas/recovery/contract';
import { metricsNamespace, operatorCommand } from '../../lambdas/shared/constants';
import { nagRender } from '../nag';
import { decryptSecretStatement, readAndWriteSecretStatement, restoreEncryptedStorageStatement } from './database-statements';
import { putEventsOnDefaultBus } from './event-bus-statements';
import { HouseFunction, VPC_MANAGED_POLICY_ACKNOWLEDGEMENTS } from './house-function';
import { RunbookAlarm, sumOfCounts } from './runbook-alarm';

/** Output key (and CLI deployed name) of the workflow's ARN. */
export const RECOVERY_STATE_MACHINE_OUTPUT = 'RecoveryStateMachineArn';

/** The step function's own timeout: counting the critical tables on both sides can take minutes on a large database. */
const STEP_TIMEOUT = Duration.minutes(15);
/**
 * A password reset asked of a busy copy (its first backup right after the restore) is tried again
 * every 30 s for 30 minutes: room for a first backup of the example's 100 GiB, an estimate to
 * confirm with a staging drill.
 */
const RESET_RETRY = { interval: Duration.seconds(30), maxAttempts: 60 };
/** Poll interval of the wait for RDS to apply the copy's new password. */
const PASSWORD_POLL = Duration.seconds(30);
/**
 * Room the budgets below leave out: the short steps (the describes, the reset call, the page) and
 * Step Functions running a step again after Lambda lost its answer (two runs of a 15 min step).
 */
const WORKFLOW_MARGIN = Duration.minutes(30);

/**
 * The workflow's time limit: the sum of the budgets of its longest path, from the states' own
 * settings so that they cannot drift apart, plus a margin. A timed-out execution runs no cleanup
 * (the record stays `verifying`, the lock held, no page but the WorkflowFailed alarm), so the limit
 * must never end a recovery on a path it allows. The longest: a copy ready at the end of the wait
 * (`maxWait` from the request, plus the poll that sees it), verified, refused for its password, the
 * reset retried while the copy is busy, then applied at the end of its own limit, verified again,
 * then reported (or cleaned up).
 */
export function recoveryWorkflowTimeout(maxWait: Duration, pollInterval: Duration): Duration {
  const budgets = [
    maxWait,
    pollInterval,
    STEP_TIMEOUT, // Verify
    Duration.seconds(RESET_RETRY.interval.toSeconds() * RESET_RETRY.maxAttempts), // ResetCopyPassword while the copy is busy
    Duration.seconds(PASSWORD_RESET_MAX_SECONDS), // DescribeCopyPassword until the reset's own limit
    PASSWORD_POLL, // the poll that sees it
    STEP_TIMEOUT, // VerifyAfterPasswordReset
    STEP_TIMEOUT, // Report, or CleanUp
    WORKFLOW_MARGIN,
  ];
  return Duration.seconds(budgets.reduce((sum, budget) => sum + budget.toSeconds(), 0));
}

export interface RecoveryProps {
  readonly environmentName: string;
  /** The production instance restored from (read only; never modified by the workflow). */
  readonly sourceInstanceIdentifier: string;
  /** Recovered instances are named `<prefix>...`: IAM is scoped to that name pattern. */
  readonly newInstancePrefix: string;
  /** Subnet group of the source (IAM scope of the restore). @default - any subnet group of the account (acknowledged) */
  readonly subnetGroupName?: string;
  /** Parameter group of the source (IAM scope of the restore). @default - any parameter group of the account (acknowledged) */
  readonly parameterGroupName?: string;
  /** Customer-managed key of the instance's storage: the restore creates a grant on it. @default - AWS-managed key, no grant */
  readonly storageKmsKeyArn?: string;
  /** Tags added to recovered instances. @default {} */
  readonly tags?: Readonly<Record<string, string>>;
  readonly database: {
    readonly name: string;
    readonly host: string;
    readonly port: number;
    /** Secret with the master credentials (also valid on the copy: it is restored with them). */
    readonly secretArn: string;
    readonly secretKmsKeyArn?: string;
  };
  readonly criticalTables: readonly string[];
  readonly criticalQueries: readonly string[];
  /** @default 'alembic_version' */
  readonly alembicVersionTable?: string;
  /** Past this, a copy that is not available is deleted and a human paged. @default Duration.hours(4) */
  readonly maxWait?: Duration;
  /** Poll interval of the wait loop. @default Duration.minutes(1) */
  readonly pollInterval?: Duration;
  /** Ops-state table (records and lock under `RECOVERY#`) and its key. */
  readonly opsTable: dynamodb.ITable;
  readonly opsTableKey: kms.IKey;
  /** Incidents topic (paged on failure) and its key. */
  readonly incidentsTopic: sns.ITopic;
  readonly incidentsTopicKey: kms.IKey;
  readonly vpc: ec2.IVpc;
  readonly subnets: ec2.SubnetSelection;
  /** The database's security group: it admits the workflow's function on the port (the copy keeps the source's groups). */
  readonly databaseSecurityGroup: ec2.ISecurityGroup;
  /**
   * Concurrent executions reserved for the workflow's function, so that a recovery runs on the
   * worst day even when the account's pool is used up. One recovery at a time (the CLI's lock), one
   * step at a time; the second leaves room for the cleanup of a recovery abandoned while it runs.
   * @default 2
   */
  readonly reservedConcurrency?: number;
}

/**
 * Point-in-time recovery of the production instance to a new instance, as a Standard Step
 * Functions workflow (it outlives the operator's laptop): restore -> wait until available (Wait +
 * describe loop) -> verify against production -> report. A copy that fails or never becomes
 * available is deleted and the incidents topic paged. The cutover is the operator's, from the CLI.
 */
export class Recovery extends Construct {
  readonly function: HouseFunction;
  readonly stateMachine: sfn.StateMachine;
  readonly securityGroup: ec2.SecurityGroup;
  readonly alarms: { readonly failed: cloudwatch.Alarm };
  private readonly props: RecoveryProps;

  constructor(scope: Construct, id: string, props: RecoveryProps) {
    super(scope, id);
    this.props = props;
    const stack = Stack.of(this);
    const maxWait = props.maxWait ?? Duration.hours(4);

    this.securityGroup = new ec2.SecurityGroup(this, 'SecurityGroup', {
      vpc: props.vpc,
      description: `atmr-dr ${props.environmentName} recovery: HTTPS to AWS APIs, PostgreSQL to the database and its recovered copies`,
      allowAllOutbound: false,
    });
    this.securityGroup.addEgressRule(ec2.Peer.anyIpv4(), ec2.Port.tcp(443), 'AWS APIs (RDS, Secrets Manager, DynamoDB, EventBridge, CloudWatch) over HTTPS');
    this.securityGroup.connections.allowTo(props.databaseSecurityGroup, ec2.Port.tcp(props.database.port), 'atmr-dr recovery verification to PostgreSQL');

    this.function = new HouseFunction(this, 'Steps', {
      entry: 'lambdas/recovery/handler.ts',
      environmentName: props.environmentName,
      serviceName: RECOVERY_SERVICE,
      timeout: STEP_TIMEOUT,
      memorySize: 512,
      reservedConcurrentExecutions: props.reservedConcurrency ?? 2,
      // The recovery's audit record (what was restored, verified, cut over): outlives the stack.
      logRetention: logs.RetentionDays.ONE_YEAR,
      logRemovalPolicy: RemovalPolicy.RETAIN,
      vpcPlacement: { vpc: props.vpc, subnets: props.subnets, securityGroups: [this.securityGroup] },
      environment: {
        [RECOVERY_ENV.environmentName]: props.environmentName,
        [RECOVERY_ENV.sourceInstance]: props.sourceInstanceIdentifier,
        [RECOVERY_ENV.newInstancePrefix]: props.newInstancePrefix,
        ...(props.subnetGroupName && { [RECOVERY_ENV.subnetGroupName]: props.subnetGroupName }),
        [RECOVERY_ENV.tags]: JSON.stringify(props.tags ?? {}),
        [RECOVERY_ENV.opsTable]: props.opsTable.tableName,
        [RECOVERY_ENV.databaseName]: props.database.name,
        [RECOVERY_ENV.productionHost]: props.database.host,
        [RECOVERY_ENV.productionPort]: String(props.database.port),
        [RECOVERY_ENV.secretArn]: props.database.secretArn,
        [RECOVERY_ENV.criticalTables]: JSON.stringify(props.criticalTables),
        [RECOVERY_ENV.criticalQueries]: JSON.stringify(props.criticalQueries),
        [RECOVERY_ENV.alembicVersionTable]: props.alembicVersionTable ?? 'alembic_version',
        [RECOVERY_ENV.maxWaitSeconds]: String(maxWait.toSeconds()),
        [RECOVERY_ENV.sslMode]: 'require',
      },
    });
    const fn = this.function.function;
    const statements = recoveryStatements(stack, props);
    for (const statement of statements) fn.addToRolePolicy(statement);

    this.stateMachine = this.workflow(props, maxWait);
    this.alarms = {
      failed: new RunbookAlarm(this, 'FailedAlarm', {
        environmentName: props.environmentName,
        concern: 'Recovery',
        what: 'WorkflowFailed',
        runbookSection: 'Plan de backout - Base de données corrompue',
        summary: 'a point-in-time recovery failed, timed out or did not pass verification (the copy is deleted only when it failed or was not available in time).',
        // Failed and timed-out executions only: an aborted one was stopped by a human (`recover
        // abandon` of a wrong --to-time, a console stop), who knows, and whose page would climb to
        // the CTO as an event alarm until someone resolved it by hand.
        signalsEvent: true,
        firstActions: `${operatorCommand(props.environmentName, 'recover status')} ; une copie gardée tient le verrou, la supprimer avant de relancer avec une autre heure (--to-time) : ${operatorCommand(props.environmentName, 'recover abandon <id>')} ; ou restaurer un dump (${operatorCommand(props.environmentName, 'restore latest')}).`,
        metric: sumOfCounts(
          {
            failed: this.stateMachine.metricFailed({ statistic: 'Sum', period: Duration.minutes(5) }),
            timedOut: this.stateMachine.metricTimedOut({ statistic: 'Sum', period: Duration.minutes(5) }),
          },
          Duration.minutes(5),
        ),
        threshold: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        evaluationPeriods: 1,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        topic: props.incidentsTopic,
      }),
    };

    // The CLI finds the workflow through this output (bin/cli/resolve.ts DEPLOYED_NAMES.recoveryStateMachine).
    new CfnOutput(stack, RECOVERY_STATE_MACHINE_OUTPUT, { value: this.stateMachine.stateMachineArn });

    const render = (value: string) => nagRender(stack, value);
    const wildcardResources = [...new Set(statements.flatMap((s) => s.resources).filter((arn) => render(arn).includes('*')))];
    Validations.of(fn).acknowledge(
      ...VPC_MANAGED_POLICY_ACKNOWLEDGEMENTS,
      { id: 'AwsSolutions-IAM5[Resource::*]', reason: 'X-Ray, cloudwatch:PutMetricData (limited to the environment\'s AtmrDr/<env> namespace by condition) and the VPC network interface actions have no resource-level permissions.' },
      ...wildcardResources
        .filter((arn) => render(arn) !== '*')
        .map((arn) => ({
          id: `AwsSolutions-IAM5[Resource::${render(arn)}]`,
          reason: wildcardReason(render(arn), props.newInstancePrefix),
        })),
      { id: 'AwsSolutions-L1', reason: 'Node.js 22 is the house runtime: the CLI, the tests and the bench run the same code on Node 22.' },
      { id: 'Serverless-LambdaLatestVersion', reason: 'Node.js 22 is the house runtime: the CLI, the tests and the bench run the same code on Node 22.' },
      { id: 'Serverless-LambdaDLQ', reason: 'Invoked synchronously by the recovery workflow, whose Catch states handle every failure (cleanup, page); there is no async event to dead-letter.' },
    );
  }

  /**
   * Lets the on-call roles run `recover`, `recover status|cutover|abandon` with their own credentials
   * (docs/operator-permissions.md): the workflow function's own statements that the CLI's calls
   * need (chosen by Sid, not copied), the workflow's executions, and the cutover's targets. RDS
   * changes are scoped as the function's are: delete (final snapshot included) only of a `<prefix>*`
   * copy tagged atmr-dr:purpose=recovery, tag removal only of that tag's copy, and the one modify
   * (deletion protection, which the cutover turns on before it removes the purpose tag) only of such a
   * copy: once production runs on the untagged copy, nothing here can modify or delete it. Nothing
   * changes `sourceInstanceIdentifier`, the production instance this protects:
   * the cutover's rename and tags of the old instance are refused (its step prints the command for
   * someone allowed, and the cutover goes on).
   */
  grantOperator(roles: readonly iam.IRole[], cutover: RecoveryCutoverTargets): void {
    if (!roles.length) return;
    const stack = Stack.of(this);
    const props = this.props;
    const recovered = stack.formatArn({ service: 'rds', resource: 'db', resourceName: `${props.newInstancePrefix}*`, arnFormat: ArnFormat.COLON_RESOURCE_NAME });
    const finalSnapshots = stack.formatArn({ service: 'rds', resource: 'snapshot', resourceName: `${props.newInstancePrefix}*`, arnFormat: ArnFormat.COLON_RESOURCE_NAME });
    const executions = stack.formatArn({ service: 'states', resource: 'execution', resourceName: `${this.stateMachine.stateMachineName}:*`, arnFormat: ArnFormat.COLON_RESOURCE_NAME });
    const purposeTagged = { StringEquals: { [`aws:ResourceTag/${RECOVERY_PURPOSE_TAG.Key}`]: RECOVERY_PURPOSE_TAG.Value } };
    const shared = recoveryStatements(stack, props).filter((statement) => statement.sid && OPERATOR_SHARED_SIDS.includes(statement.sid));
    const cluster = Arn.split(cutover.ecs.clusterArn, ArnFormat.SLASH_RESOURCE_NAME);
    const endpoint =
      cutover.endpoint.kind === 'ssmParameter'
        ? new iam.PolicyStatement({
            sid: 'SwitchTheEndpointParameter',
            actions: ['ssm:GetParameter', 'ssm:PutParameter'],
            resources: [stack.formatArn({ service: 'ssm', resource: 'parameter', resourceName: cutover.endpoint.parameterName.replace(/^\//, '') })],
          })
        : new iam.PolicyStatement({ sid: 'SwitchTheEndpointSecret', actions: ['secretsmanager:GetSecretValue', 'secretsmanager:PutSecretValue'], resources: [cutover.endpoint.secretArn ?? props.database.secretArn] });
    // Secrets Manager reads and writes a secret under a customer-managed key with the caller's KMS
    // rights: without them the switch ends AccessDenied half-way through the cutover. The workflow's
    // function never touches the endpoint (the cutover is the on-call's alone): it gets none of this.
    const endpointKey = cutover.endpoint.kind === 'secretHost' && cutover.endpoint.secretKmsKeyArn;
    const statements = [
      ...shared,
      new iam.PolicyStatement({ sid: 'StartRecoveries', actions: ['states:StartExecution'], resources: [this.stateMachine.stateMachineArn] }),
      new iam.PolicyStatement({ sid: 'FollowAndAbandonRecoveries', actions: ['states:DescribeExecution', 'states:StopExecution'], resources: [executions] }),
      new iam.PolicyStatement({ sid: 'AbandonTheCopy', actions: ['rds:DeleteDBInstance', 'rds:CreateDBSnapshot'], resources: [recovered], conditions: purposeTagged }),
      new iam.PolicyStatement({ sid: 'KeepTheCopysFinalSnapshot', actions: ['rds:CreateDBSnapshot'], resources: [finalSnapshots] }),
      new iam.PolicyStatement({ sid: 'TakeTheNewProductionOutOfTheWorkflowsReach', actions: ['rds:RemoveTagsFromResource'], resources: [recovered], conditions: purposeTagged }),
      // The cutover turns deletion protection on while the copy still carries the purpose tag, then
      // removes it: production running on the untagged copy is out of this role's reach (a
      // ModifyDBInstance cannot be limited to DeletionProtection: it could turn it off, or set the
      // backup retention to 0, which deletes the instance's automated backups).
      new iam.PolicyStatement({ sid: 'ProtectTheNewProduction', actions: ['rds:ModifyDBInstance'], resources: [recovered], conditions: purposeTagged }),
      endpoint,
      ...(endpointKey ? [readAndWriteSecretStatement(stack, endpointKey, 'SwitchTheEndpointSecretKey')] : []),
      new iam.PolicyStatement({
        sid: 'RedeployTheServices',
        actions: ['ecs:DescribeServices', 'ecs:UpdateService'],
        resources: cutover.ecs.serviceNames.map((name) => stack.formatArn({ service: 'ecs', resource: 'service', resourceName: `${cluster.resourceName}/${name}`, account: cluster.account, region: cluster.region })),
      }),
    ];
    // A managed policy: the role's inline policies share one 10,240-character budget with those its
    // owners attached (the role is not this app's), and this one alone takes several thousand.
    const policy = new iam.ManagedPolicy(this, 'OperatorPolicy', { roles: [...roles], statements });
    const render = (value: string) => nagRender(stack, value);
    Validations.of(policy).acknowledge(
      { id: 'AwsSolutions-IAM5[Resource::*]', reason: "cloudwatch:PutMetricData has no resource-level permission: limited to the environment's AtmrDr/<env> namespace by condition." },
      ...[...new Set([...shared.flatMap((statement) => statement.resources), recovered, finalSnapshots].filter((arn) => render(arn).includes('*') && render(arn) !== '*'))].map((arn) => ({
        id: `AwsSolutions-IAM5[Resource::${render(arn)}]`,
        // The function's reason speaks of its own rights (create, tag); the on-call's on the copies are these.
        reason:
          arn === recovered
            ? `Recovered instances get a name chosen at run time under the configured prefix "${props.newInstancePrefix}": the on-call describes them, and deletes (abandon, with its final snapshot), modifies (the cutover's deletion protection) and untags only a copy tagged ${RECOVERY_PURPOSE_TAG.Key}=${RECOVERY_PURPOSE_TAG.Value}, which production, once cut over, no longer carries; it may add no tag.`
            : wildcardReason(render(arn), props.newInstancePrefix),
      })),
      { id: `AwsSolutions-IAM5[Resource::${render(executions)}]`, reason: 'Execution names carry the recovery id, chosen at run time: DescribeExecution/StopExecution on the executions of this recovery workflow only.' },
    );
  }

  private workflow(props: RecoveryProps, maxWait: Duration): sfn.StateMachine {
    const pollInterval = props.pollInterval ?? Duration.minutes(1);
    const request = sfn.JsonPath.objectAt('$$.Execution.Input');
    const step = (id: string, payload: Record<string, unknown>, resultPath: string) =>
      new tasks.LambdaInvoke(this, id, {
        lambdaFunction: this.function.function,
        payload: sfn.TaskInput.fromObject({ request, ...payload }),
        payloadResponseOnly: true,
        resultPath,
        // Lambda service errors (throttling, 5xx) are retried here; RDS throttling inside a step is
        // retried by the SDK's standard retry strategy.
        retryOnServiceExceptions: true,
      });
    const catchAll = { resultPath: '$.error' };

    const page = new tasks.SnsPublish(this, 'PageOnCall', {
      topic: props.incidentsTopic,
      subject: `[atmr-dr] ${props.environmentName}: point-in-time recovery FAILED`,
      message: sfn.TaskInput.fromJsonPathAt('$.cleanup.message'),
      resultPath: sfn.JsonPath.DISCARD,
    });
    const failed = new sfn.Fail(this, 'RecoveryFailed', { error: 'RecoveryFailed', causePath: '$.cleanup.message' });
    page.next(failed);
    const cleanup = step('CleanUp', { step: 'cleanup', error: sfn.JsonPath.objectAt('$.error') }, '$.cleanup');
    // Even when the cleanup itself fails, a human is paged with what is known.
    cleanup.addCatch(
      new sfn.Pass(this, 'CleanupFailed', {
        parameters: { message: sfn.JsonPath.format('Recovery {} FAILED and its cleanup failed too ({}): check instance {} by hand', sfn.JsonPath.stringAt('$$.Execution.Input.recoveryId'), sfn.JsonPath.stringAt('$.cleanupError.Cause'), sfn.JsonPath.stringAt('$$.Execution.Input.newInstance')) },
        resultPath: '$.cleanup',
      }).next(page),
      { resultPath: '$.cleanupError' },
    );
    cleanup.next(page);

    const restore = step('Restore', { step: 'restore' }, '$.restore');
    const wait = new sfn.Wait(this, 'WaitForNewInstance', { time: sfn.WaitTime.duration(pollInterval) });
    const status = step('DescribeNewInstance', { step: 'status' }, '$.instance');
    const notInTime = new sfn.Pass(this, 'NotAvailableInTime', {
      parameters: { Error: 'RecoveryInstanceTimeout', Cause: `the new instance did not become available within ${maxWait.toMinutes()} minutes` },
      resultPath: '$.error',
    });
    const verify = step('Verify', { step: 'verify', instance: sfn.JsonPath.objectAt('$.instance') }, '$.verification');
    const report = step('Report', { step: 'report', verification: sfn.JsonPath.objectAt('$.verification') }, '$.report');

    // The copy refused the secret's password: it was rotated after the target time, and the copy
    // holds the old one. Set the copy's password to the secret's current one, wait until RDS applied
    // it, and verify once more; a second refusal, or any error here, takes the failure path (the
    // copy is kept: it became available).
    const resetPassword = step(
      'ResetCopyPassword',
      { step: 'reset-password', instance: sfn.JsonPath.objectAt('$.instance'), loginError: sfn.JsonPath.objectAt('$.loginError') },
      '$.passwordReset',
    );
    // A copy just restored runs its first automated backup (`backing-up`) right after the restore, and
    // the verification does not wait for it (the copy accepts connections). RDS documents
    // modifications of an `available` instance only: the step does not ask for the reset before
    // (RecoveryCopyBusy), and RDS may refuse it meanwhile too (InvalidDBInstanceState, another change
    // under way). Tried again (RESET_RETRY) before the failure path.
    resetPassword.addRetry({ errors: ['InvalidDBInstanceStateFault', COPY_BUSY_ERROR], interval: RESET_RETRY.interval, maxAttempts: RESET_RETRY.maxAttempts, backoffRate: 1 });
    const waitForPassword = new sfn.Wait(this, 'WaitForPasswordReset', { time: sfn.WaitTime.duration(PASSWORD_POLL) });
    const passwordStatus = step('DescribeCopyPassword', { step: 'password-status', reset: sfn.JsonPath.objectAt('$.passwordReset') }, '$.passwordStatus');
    const verifyAgain = step('VerifyAfterPasswordReset', { step: 'verify', instance: sfn.JsonPath.objectAt('$.instance') }, '$.verification');
    // First match wins: this Catch comes before the verification's catch-all.
    verify.addCatch(resetPassword, { errors: [LOGIN_REFUSED_ERROR], resultPath: '$.loginError' });
    for (const task of [restore, status, verify, report, resetPassword, passwordStatus, verifyAgain]) task.addCatch(cleanup, catchAll);
    resetPassword
      .next(waitForPassword)
      .next(passwordStatus)
      .next(new sfn.Choice(this, 'PasswordResetApplied').when(sfn.Condition.booleanEquals('$.passwordStatus.applied', true), verifyAgain.next(report)).otherwise(waitForPassword));

    const verificationFailed = new tasks.SnsPublish(this, 'PageVerificationFailed', {
      topic: props.incidentsTopic,
      subject: `[atmr-dr] ${props.environmentName}: recovered copy failed verification`,
      message: sfn.TaskInput.fromText(
        sfn.JsonPath.format(`Recovery {} restored {} but it FAILED verification; it is kept for inspection: ${operatorCommand(props.environmentName, 'recover status {}')} ; ${operatorCommand(props.environmentName, 'recover abandon {}')}`, sfn.JsonPath.stringAt('$$.Execution.Input.recoveryId'), sfn.JsonPath.stringAt('$$.Execution.Input.newInstance'), sfn.JsonPath.stringAt('$$.Execution.Input.recoveryId'), sfn.JsonPath.stringAt('$$.Execution.Input.recoveryId')),
      ),
      resultPath: sfn.JsonPath.DISCARD,
    }).next(new sfn.Fail(this, 'VerificationFailed', { error: 'RecoveryVerificationFailed', cause: 'the recovered copy is missing tables, queries or its Alembic revision (see recover status)' }));

    // No data read of the copy ended in time (the statement timeout, the verification's budget, or
    // both: the report step's unreadCause says which): nothing failed, nothing verified.
    // Paged (a human decides: check by hand, cut over with --unverified, or abandon), never deleted.
    const notReadInTime = new tasks.SnsPublish(this, 'PageCopyNotReadInTime', {
      topic: props.incidentsTopic,
      subject: `[atmr-dr] ${props.environmentName}: recovered copy NOT verified (data not read in time)`,
      message: sfn.TaskInput.fromText(
        sfn.JsonPath.format(
          `Recovery {} restored {} but {} (a fresh copy loads its blocks from S3): it is NOT verified and kept. ${operatorCommand(props.environmentName, 'recover status {}')} says what to do: check it by hand, then ${operatorCommand(props.environmentName, 'recover cutover {} --unverified --yes')}, or ${operatorCommand(props.environmentName, 'recover abandon {}')}`,
          sfn.JsonPath.stringAt('$$.Execution.Input.recoveryId'),
          sfn.JsonPath.stringAt('$$.Execution.Input.newInstance'),
          sfn.JsonPath.stringAt('$.report.unreadCause'),
          sfn.JsonPath.stringAt('$$.Execution.Input.recoveryId'),
          sfn.JsonPath.stringAt('$$.Execution.Input.recoveryId'),
          sfn.JsonPath.stringAt('$$.Execution.Input.recoveryId'),
        ),
      ),
      resultPath: sfn.JsonPath.DISCARD,
    }).next(new sfn.Fail(this, 'CopyNotVerified', { error: 'RecoveryNotVerified', cause: 'no count or critical query of the recovered copy was read in time: the statement timeout, the verification\'s budget, or both (see recover status)' }));

    const definition = restore
      .next(wait)
      .next(status)
      .next(
        new sfn.Choice(this, 'NewInstanceAvailable')
          .when(
            sfn.Condition.booleanEquals('$.instance.ready', true),
            verify.next(report).next(
              new sfn.Choice(this, 'Verified')
                .when(sfn.Condition.booleanEquals('$.report.ok', true), new sfn.Succeed(this, 'ReadyForCutover'))
                .when(sfn.Condition.stringEquals('$.report.status', 'unverified'), notReadInTime)
                .otherwise(verificationFailed),
            ),
          )
          .when(sfn.Condition.booleanEquals('$.instance.expired', true), notInTime.next(cleanup))
          .otherwise(wait),
      );

    // Audit record of every recovery: a `cdk destroy` of the Ops stack must not take it along.
    const logGroup = new logs.LogGroup(this, 'WorkflowLogs', { retention: logs.RetentionDays.ONE_YEAR, removalPolicy: RemovalPolicy.RETAIN });
    const machine = new sfn.StateMachine(this, 'Workflow', {
      comment: `atmr-dr ${props.environmentName}: point-in-time recovery of ${props.sourceInstanceIdentifier} to a new instance, verified`,
      stateMachineType: sfn.StateMachineType.STANDARD,
      definitionBody: sfn.DefinitionBody.fromChainable(definition),
      timeout: recoveryWorkflowTimeout(maxWait, pollInterval),
      tracingEnabled: true,
      logs: { destination: logGroup, level: sfn.LogLevel.ALL, includeExecutionData: false },
    });
    // The incidents topic is encrypted: publishing needs its key.
    props.incidentsTopicKey.grant(machine, 'kms:Decrypt', 'kms:GenerateDataKey');
    Validations.of(machine).acknowledge(
      {
        id: `AwsSolutions-IAM5[Resource::${nagRender(Stack.of(this), this.function.function.functionArn)}:*]`,
        reason: 'Granted by the LambdaInvoke tasks: invoke the recovery function and its versions, nothing else.',
      },
      { id: 'AwsSolutions-IAM5[Resource::*]', reason: 'CloudWatch Logs delivery and X-Ray actions of Step Functions have no resource-level permissions.' },
    );
    return machine;
  }
}

/** Where the cutover switches the API's database endpoint and which services it redeploys (the resolved `recovery` config). */
export interface RecoveryCutoverTargets {
  /**
   * `secretHost`: its `secretArn` (@default the database secret, `database.secretArn`) and the
   * secret's customer-managed key, if any; `ssmParameter`: its parameter.
   */
  readonly endpoint: { readonly kind: 'secretHost'; readonly secretArn?: string; readonly secretKmsKeyArn?: string } | { readonly kind: 'ssmParameter'; readonly parameterName: string };
  readonly ecs: { readonly clusterArn: string; readonly serviceNames: readonly string[] };
}

/**
 * The workflow function's statements the CLI's recover commands need as well: describe the source
 * and the copy, the restore window, the RECOVERY# records and their key, the events and metrics,
 * the database secret (the cutover's write check connects to the copy with it: the credentials the
 * API writes with). Where that secret is RDS's master secret (rds!, the example's), the on-call can
 * read the master password: the recovery needs it, and it goes to a person on call, never to one of
 * this app's functions (a probe or runner with it is refused at synth, lib/config.ts).
 */
const OPERATOR_SHARED_SIDS = ['DescribeSourceAndRecovered', 'ReadRestoreWindow', 'ReadDatabaseSecret', 'DecryptDatabaseSecret', 'RecoveryRecords', 'OpsTableKey', 'AnnounceRecovery', 'PublishRecoverySeconds'];

function wildcardReason(arn: string, prefix: string): string {
  if (arn.includes(`:snapshot:${prefix}*`)) return `The final snapshot of an abandoned copy is named after it (<copy>-final-<time>), under the configured prefix "${prefix}".`;
  if (arn.includes(`:db:${prefix}*`)) return `Recovered instances get a name chosen at run time under the configured prefix "${prefix}": create, describe, tag (with the purpose tag; IAM cannot limit it to the restore request, the code tags nothing else) and (only when tagged ${RECOVERY_PURPOSE_TAG.Key}=${RECOVERY_PURPOSE_TAG.Value}) reset the master password of and delete are scoped to that prefix.`;
  if (arn.includes(':auto-backup:')) return 'Automated-backup ARNs carry a generated id: DescribeDBInstanceAutomatedBackups (read-only) reads the restore window of the source.';
  if (arn.includes(':subgrp:') || arn.includes(':pg:')) return 'The subnet or parameter group of the source is read at run time (not in the config): the restore may use it; the created instance is still limited to the prefix.';
  if (arn.includes('/index/')) return 'Indexes of the ops-state table, read-only, with the RECOVERY# leading-key condition.';
  return 'Scoped by name pattern to the recovery resources only.';
}

/** Least privilege: the source (read + restore from), the new instance's name pattern, the ops-state `RECOVERY#` keys. */
export function recoveryStatements(stack: Stack, props: RecoveryProps): iam.PolicyStatement[] {
  const rds = (resource: string, name: string) => stack.formatArn({ service: 'rds', resource, resourceName: name, arnFormat: ArnFormat.COLON_RESOURCE_NAME });
  const source = rds('db', props.sourceInstanceIdentifier);
  const recovered = rds('db', `${props.newInstancePrefix}*`);
  const statements = [
    new iam.PolicyStatement({ sid: 'DescribeSourceAndRecovered', actions: ['rds:DescribeDBInstances', 'rds:ListTagsForResource'], resources: [source, recovered] }),
    new iam.PolicyStatement({ sid: 'ReadRestoreWindow', actions: ['rds:DescribeDBInstanceAutomatedBackups'], resources: [source, rds('auto-backup', '*')] }),
    new iam.PolicyStatement({
      sid: 'RestoreToNewInstance',
      actions: ['rds:RestoreDBInstanceToPointInTime'],
      resources: [source, recovered, rds('subgrp', props.subnetGroupName ?? '*'), rds('pg', props.parameterGroupName ?? '*')],
    }),
    // RDS authorizes the tags of a restore as AddTagsToResource on the new instance (RDS User Guide,
    // "Grant permission to tag Amazon RDS resources during creation"): without this right no restore
    // starts. IAM cannot limit it to that restore: RDS defines no condition key naming the calling
    // action (the Service Authorization Reference lists, for AddTagsToResource, only
    // aws:RequestTag/${TagKey}, aws:TagKeys and rds:req-tag/${TagKey}; an ec2:CreateAction-like
    // `rds:CreateAction` is not defined, is absent from every request, and a StringEquals on it
    // denied every restore). Nor can the tag keys be a fixed list: the restore copies the source's
    // tags and `recovery.tags`. So IAM limits the names (`<prefix>*`) and requires the purpose
    // tag in the request (every restore sets it); it does NOT stop a standalone AddTagsToResource
    // from putting the purpose tag back on a `<prefix>*` copy made production (cutover step 9 removes
    // it), which would reopen it to the Modify and Delete below. Only the code stands there: the
    // workflow tags within its restore request only, never afterwards (the cutover's tagging runs
    // with the operator's rights); step 12's deletion protection still refuses a delete, unless a
    // ModifyDBInstance turns it off first (the workflow's only modify sets the master password).
    new iam.PolicyStatement({
      sid: 'TagNewInstance',
      actions: ['rds:AddTagsToResource'],
      resources: [recovered],
      conditions: { StringEquals: { [`aws:RequestTag/${RECOVERY_PURPOSE_TAG.Key}`]: RECOVERY_PURPOSE_TAG.Value } },
    }),
    // Setting the copy's master password after a rotation (the code also checks the recovery id tag
    // and refuses the source by name): under the prefix and tagged only, never the production instance.
    new iam.PolicyStatement({
      sid: 'ResetRecoveredPassword',
      actions: ['rds:ModifyDBInstance'],
      resources: [recovered],
      conditions: { StringEquals: { [`aws:ResourceTag/${RECOVERY_PURPOSE_TAG.Key}`]: RECOVERY_PURPOSE_TAG.Value } },
    }),
    new iam.PolicyStatement({
      sid: 'DeleteFailedNewInstance',
      actions: ['rds:DeleteDBInstance'],
      resources: [recovered],
      conditions: { StringEquals: { [`aws:ResourceTag/${RECOVERY_PURPOSE_TAG.Key}`]: RECOVERY_PURPOSE_TAG.Value } },
    }),
    new iam.PolicyStatement({ sid: 'ReadDatabaseSecret', actions: ['secretsmanager:GetSecretValue'], resources: [props.database.secretArn] }),
    new iam.PolicyStatement({
      sid: 'RecoveryRecords',
      actions: ['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem', 'dynamodb:DeleteItem', 'dynamodb:Query'],
      resources: [props.opsTable.tableArn],
      conditions: { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': ['RECOVERY#*'] } },
    }),
    // The table's key, only through DynamoDB (as the escalation and rollback roles): not a general-purpose KMS grant.
    new iam.PolicyStatement({
      sid: 'OpsTableKey',
      actions: ['kms:Decrypt', 'kms:Encrypt', 'kms:GenerateDataKey'],
      resources: [props.opsTableKey.keyArn],
      conditions: { StringEquals: { 'kms:ViaService': `dynamodb.${stack.region}.amazonaws.com` } },
    }),
    putEventsOnDefaultBus(stack, 'AnnounceRecovery'),
    new iam.PolicyStatement({
      sid: 'PublishRecoverySeconds',
      actions: ['cloudwatch:PutMetricData'],
      resources: ['*'],
      conditions: { StringEquals: { 'cloudwatch:namespace': metricsNamespace(props.environmentName) } },
    }),
  ];
  if (props.storageKmsKeyArn) {
    statements.push(restoreEncryptedStorageStatement(stack, props.storageKmsKeyArn));
  }
  if (props.database.secretKmsKeyArn) {
    statements.push(decryptSecretStatement(stack, props.database.secretKmsKeyArn, 'DecryptDatabaseSecret'));
  }
  return statements;
}
