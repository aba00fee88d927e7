import { Duration, Stack, StackProps, Validations } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as sns from 'aws-cdk-lib/aws-sns';
import { Construct } from 'constructs';
import { nagRender } from './nag';
import { EnvironmentConfig, resolveRecoveryConfig, escalationLevels, subscriptionKey } from './config';
import { DataStack } from './data-stack';
import { Backups, backupsPropsFromConfig } from './constructs/backups';
import { Escalation } from './constructs/escalation';
import type { HumanSubscription } from './constructs/incident-topic';
import type { BackupWorkloadProps } from './constructs/backup-workload';
import { DashboardGraph, OpsDashboard } from './constructs/dashboard';
import { Detection, detectionPropsFromConfig, warnOfUnwatchedScenarios } from './constructs/detection';
import { Killswitch } from './constructs/killswitch';
import { KeyGuard } from './constructs/key-guard';
import { RestoreTest, restoreTestPropsFromConfig } from './constructs/restore-test';
import { Rollback } from './constructs/rollback';
import { Recovery } from './constructs/recovery';

export interface OpsStackProps extends StackProps {
  readonly config: EnvironmentConfig;
  /** The stateful resources this stack acts on. */
  readonly data: DataStack;
}

/**
 * Stateless: functions, schedules, alarms. Wires the runbook constructs together and nothing else;
 * everything here can be destroyed and redeployed without losing data.
 */
export class OpsStack extends Stack {
  /** Every alarm of every runbook scenario notifies this topic; escalation subscribes to it. */
  readonly incidentsTopic: sns.Topic;

  constructor(scope: Construct, id: string, props: OpsStackProps) {
    super(scope, id, props);
    const { config, data } = props;

    const vpc = ec2.Vpc.fromVpcAttributes(this, 'Vpc', {
      vpcId: config.network.vpcId,
      availabilityZones: config.network.availabilityZones,
      privateSubnetIds: config.network.privateSubnetIds,
    });
    Validations.of(vpc).acknowledge({
      id: 'Annotation::@aws-cdk/aws-ec2:noSubnetRouteTableId',
      reason: 'atmr-dr only places functions and tasks in the existing subnets; it never reads or adds routes.',
    });
    const privateSubnets: ec2.SubnetSelection = { subnets: vpc.privateSubnets };
    const databaseSecurityGroup = ec2.SecurityGroup.fromSecurityGroupId(this, 'DatabaseSecurityGroup', config.database.securityGroupId, {
      mutable: true,
    });

    const levels = escalationLevels(config.escalation);
    // Escalation owns the incidents topic (its level 1: on-call) and the topics of the levels above.
    const escalation = new Escalation(this, 'Escalation', {
      environmentName: config.name,
      key: data.opsKey,
      opsTable: data.opsStateTable,
      levels: levels.map((level) => ({
        name: level.name,
        ackTimeout: Duration.seconds(level.ackTimeoutSeconds),
        subscriptions: level.subscriptions,
      })),
      reminderInterval: Duration.seconds(config.escalation.reminderIntervalSeconds),
      ackLinkValidity: Duration.seconds(config.escalation.ackLinkValiditySeconds),
      runbookUrl: config.escalation.runbookUrl,
      slack: config.escalation.slack,
      operatorRoleArns: config.killswitch.operatorRoleArns,
    });
    this.incidentsTopic = escalation.incidentsTopic.topic;

    // The on-call roles (killswitch.operatorRoleArns), imported once for the rights of the CLI
    // commands they run on the worst day (docs/operator-permissions.md). Each concern's construct
    // grants them its own commands' rights (grantOperator), beside the statements of its own
    // functions, whose ARNs and helpers it already holds: one construct gathering every concern's
    // names would repeat them. Killswitch and Escalation grant theirs from the ARNs themselves.
    const operators = config.killswitch.operatorRoleArns.map((arn, index) => iam.Role.fromRoleArn(this, `OperatorRole${index}`, arn, { mutable: true }));
    if (operators.length) grantStackOutputs(this, operators, [this, data]);

    // Runbook constructs are wired below (one per concern, lib/constructs/<concern>.ts).
    const killswitch = new Killswitch(this, 'Killswitch', {
      environmentName: config.name,
      parameterName: data.killswitchParameter.parameterName,
      listenerArn: config.killswitch.listenerArn,
      listenerRulePriority: config.killswitch.listenerRulePriority,
      apiTargetGroupArn: config.killswitch.apiTargetGroupArn,
      apiTaskRoleArn: config.killswitch.apiTaskRoleArn,
      operatorRoleArns: config.killswitch.operatorRoleArns,
      slack: config.killswitch.slack,
      incidentsTopic: this.incidentsTopic,
    });
    escalation.incidentsTopic.allowPublisher(killswitch.notifier.function.role as iam.IRole, 'KillswitchNotifier');
    if (killswitch.slackCommand) escalation.handleSlackCommands(killswitch.slackCommand.function);
    const workload: BackupWorkloadProps = {
      vpc,
      subnets: privateSubnets,
      databaseSecurityGroup,
      bucket: data.backupBucket,
      backupKey: data.backupKey,
      opsKey: data.opsKey,
      alarmTopic: this.incidentsTopic,
    };
    const backups = new Backups(this, 'Backups', backupsPropsFromConfig(config, workload));
    const restoreTest = config.restoreTest.enabled ? new RestoreTest(this, 'RestoreTest', restoreTestPropsFromConfig(config, workload)) : undefined;
    // The on-call and the lead DevOps: a disabled operations key also stops the escalation (its
    // topics and table use that key), so the alarm's own topic reaches both levels at once.
    const keyGuardSubscriptions = uniqueSubscriptions(levels.slice(0, 2).flatMap((level) => level.subscriptions));
    const keyGuard = new KeyGuard(this, 'KeyGuard', {
      environmentName: config.name,
      keys: [data.backupKey, data.opsKey],
      alarmTopic: this.incidentsTopic,
      subscriptions: keyGuardSubscriptions,
      // SSE-SQS: no watched key can stop a failed delivery from landing there.
      deadLetterQueue: escalation.deadLetterQueue,
    });
    // Its e-mail subscriptions need confirming like the levels': the one page that survives a
    // disabled operations key must not reach nobody unseen.
    escalation.checkSubscriptionsOf(keyGuard.topic, 'KeyGuardTopic (alarm Backups-KeyDeletionOrDisable, levels 1 and 2)', keyGuardSubscriptions, 'ListKeyGuardSubscriptions');
    // `incident subscriptions` also checks that a CloudTrail trail logs the region: without one,
    // EventBridge gets no KMS call and the key guard never fires. Read-only; trails have no name to
    // know in advance (an organization's, another region's multi-region one). Added here, to the
    // escalation's operator policy (absent when no operator role is configured).
    (escalation.node.tryFindChild('OperatorSubscriptionsPolicy') as iam.ManagedPolicy | undefined)?.addStatements(
      new iam.PolicyStatement({ sid: 'ReadTrailStatus', actions: ['cloudtrail:DescribeTrails', 'cloudtrail:GetTrailStatus'], resources: ['*'] }),
    );

    const detectionProps = detectionPropsFromConfig(config, {
      topic: this.incidentsTopic,
      vpc,
      subnets: privateSubnets,
      databaseSecurityGroup,
      killswitchParameterName: data.killswitchParameter.parameterName,
      maintenanceResponder: killswitch.maintenanceResponder.function,
    });
    const detection = detectionProps ? new Detection(this, 'Detection', detectionProps) : undefined;
    warnOfUnwatchedScenarios(this, config);
    // `scale`, `osrm restart` and `db read-write` by hand, the runbook's first actions.
    detection?.grantOperator(operators);
    const backout = config.backout;
    let rollback: Rollback | undefined;
    if (backout?.enabled) {
      rollback = new Rollback(this, 'Rollback', {
        environmentName: config.name,
        dryRun: backout.dryRun,
        clusterName: backout.clusterName,
        api: backout.api,
        workers: backout.workers,
        taskRoleArns: backout.taskRoleArns,
        vpc,
        subnets: privateSubnets,
        taskSecurityGroupIds: backout.taskSecurityGroupIds,
        targetGroupFullName: backout.targetGroupFullName,
        loadBalancerFullName: backout.loadBalancerFullName,
        healthUrl: backout.healthUrl,
        readyUrl: backout.readyUrl,
        bakeTime: Duration.minutes(backout.bakeMinutes),
        errorRatePercent: backout.errorRatePercent,
        minRequestsPerMinute: backout.minRequestsPerMinute,
        evaluationMinutes: backout.evaluationMinutes,
        cooldown: Duration.minutes(backout.cooldownMinutes),
        steadyTimeout: Duration.minutes(backout.steadyTimeoutMinutes),
        autoDowngradeMigrations: backout.autoDowngradeMigrations,
        alembicHead: backout.alembicHead,
        beforeDowngrade: backout.beforeDowngrade,
        downgradeLockTimeout: Duration.seconds(backout.downgradeLockTimeoutSeconds),
        databaseInstanceIdentifier: config.database.instanceIdentifier,
        table: data.opsStateTable,
        killswitchParameterName: data.killswitchParameter.parameterName,
        incidentsTopic: this.incidentsTopic,
        // The probe's silence too: its target alarms then keep their state without checking anything,
        // so a dependency may be down with none of them in ALARM (the cause is unknown).
        holdWhileInAlarm: [...(detection?.dependencyDownAlarms ?? []), ...(detection?.probeSilenceAlarms ?? [])],
        readinessAlarm: detection?.apiNotReadyAlarm,
        probeSilenceAlarms: detection?.probeSilenceAlarms,
      });
      // Its report is how a rollback reaches a human: named in the topic policy like every publisher.
      escalation.incidentsTopic.allowPublisher(rollback.steps.function.role as iam.IRole, 'BackoutSteps');
      // `rollback service|migration` by hand: the same report, from the on-call's credentials.
      rollback.grantOperator(operators);
      operators.forEach((role, index) => {
        escalation.incidentsTopic.allowPublisher(role, `OperatorRollbackReports${index}`);
        Validations.of(role).acknowledge({
          id: 'AwsSolutions-IAM5[Action::kms:GenerateDataKey*]',
          reason: "Granted by topic.grantPublish: data keys of the incidents topic's own key (the operations key, which does not encrypt backups).",
        });
      });
    }
    const recovery = resolveRecoveryConfig(config);
    let recoveryWorkflow: Recovery | undefined;
    if (recovery.enabled) {
      recoveryWorkflow = new Recovery(this, 'Recovery', {
        environmentName: config.name,
        sourceInstanceIdentifier: config.database.instanceIdentifier,
        newInstancePrefix: recovery.newInstancePrefix,
        subnetGroupName: recovery.subnetGroupName,
        parameterGroupName: recovery.parameterGroupName,
        storageKmsKeyArn: recovery.storageKmsKeyArn,
        tags: recovery.tags,
        database: { name: config.database.name, host: config.database.host, port: config.database.port, secretArn: config.database.secretArn, secretKmsKeyArn: config.database.secretKmsKeyArn },
        criticalTables: recovery.criticalTables,
        criticalQueries: recovery.criticalQueries,
        alembicVersionTable: recovery.alembicVersionTable,
        maxWait: Duration.minutes(recovery.maxWaitMinutes),
        opsTable: data.opsStateTable,
        opsTableKey: data.opsKey,
        incidentsTopic: this.incidentsTopic,
        incidentsTopicKey: data.opsKey,
        vpc,
        subnets: privateSubnets,
        databaseSecurityGroup,
      });
      // Its PageOnCall and PageVerificationFailed steps publish to the incidents topic: named in its
      // policy like every publisher.
      escalation.incidentsTopic.namePublisher(recoveryWorkflow.stateMachine.role, 'RecoveryWorkflow');
      // `recover` and its cutover by hand (synth refuses an enabled recovery without recovery.ecs).
      if (recovery.ecs) recoveryWorkflow.grantOperator(operators, { endpoint: recovery.endpoint, ecs: recovery.ecs });
    }

    const graphs: DashboardGraph[] = [
      {
        title: 'Killswitch mode (0 normal, 1 degraded, 2 maintenance)',
        metrics: [killswitch.modeMetric],
        annotations: [{ value: 1, label: 'degraded' }, { value: 2, label: 'maintenance' }],
      },
      { title: 'Successful hourly backups', metrics: [backups.alarms.noRecentHourlyBackup.metric] },
      { title: 'PITR (automated backups) enabled', metrics: [backups.alarms.pitrOff.metric] },
    ];
    if (restoreTest) {
      graphs.push({
        title: 'Restore test RTO / RPO (seconds)',
        metrics: [restoreTest.alarms.rto.metric, restoreTest.alarms.rpo.metric],
        annotations: [
          { value: config.restoreTest.rtoObjectiveSeconds, label: 'RTO objective' },
          { value: restoreTest.rpoObjectiveSeconds, label: 'RPO objective' },
        ],
      });
    }
    if (detection) graphs.push(...detection.dashboardGraphs);
    new OpsDashboard(this, 'Dashboard', {
      environmentName: config.name,
      alarms: [
        ...Object.values(backups.alarms),
        ...(restoreTest ? Object.values(restoreTest.alarms) : []),
        ...Object.values(killswitch.alarms),
        keyGuard.alarm,
        ...Object.values(detection?.alarms ?? {}),
        // Every alarm of the stack: the on-call reads one status board, backout, escalation and recovery included.
        ...(rollback ? [rollback.errorRateAlarm, rollback.noHealthyHostsAlarm, rollback.workflowFailedAlarm, rollback.deadLettersAlarm] : []),
        ...Object.values(escalation.alarms),
        ...Object.values(recoveryWorkflow?.alarms ?? {}),
      ].filter(
        (alarm): alarm is NonNullable<typeof alarm> => alarm !== undefined,
      ),
      graphs,
    });
  }
}

/**
 * Every CLI command resolves deployed names from the stack outputs (bin/cli/resolve.ts): without
 * cloudformation:DescribeStacks on the environment's two stacks, each needs its flags or variables.
 */
function grantStackOutputs(scope: Stack, operators: iam.IRole[], stacks: Stack[]): void {
  const stackArns = stacks.map((stack) => scope.formatArn({ service: 'cloudformation', resource: 'stack', resourceName: `${stack.stackName}/*` }));
  const policy = new iam.Policy(scope, 'OperatorStackOutputs', {
    roles: operators,
    statements: [new iam.PolicyStatement({ sid: 'ReadTheStackOutputs', actions: ['cloudformation:DescribeStacks'], resources: stackArns })],
  });
  Validations.of(policy).acknowledge(
    ...stackArns.map((arn) => ({
      id: `AwsSolutions-IAM5[Resource::${nagRender(scope, arn)}]`,
      reason: 'The stack id after the name is generated by CloudFormation at creation: DescribeStacks (read-only) on the two stacks of this environment only.',
    })),
  );
}

/** Each subscription once: a person on two levels (an address written in two cases too) gets one message, not two. */
function uniqueSubscriptions(subscriptions: readonly HumanSubscription[]): HumanSubscription[] {
  const seen = new Set<string>();
  return subscriptions.filter((s) => {
    const key = subscriptionKey(s);
    return !seen.has(key) && !!seen.add(key);
  });
}
