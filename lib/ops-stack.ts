import { Duration, Stack, StackProps, Validations } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as sns from 'aws-cdk-lib/aws-sns';
import { Construct } from 'constructs';
import { EnvironmentConfig, escalationLevels } from './config';
import { DataStack } from './data-stack';
import { Backups } from './constructs/backups';
import { Escalation } from './constructs/escalation';
import { DashboardGraph, OpsDashboard } from './constructs/dashboard';
import { Killswitch } from './constructs/killswitch';
import { RestoreTest } from './constructs/restore-test';

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

    // Escalation owns the incidents topic (its level 1: on-call) and the topics of the levels above.
    const escalation = new Escalation(this, 'Escalation', {
      environmentName: config.name,
      key: data.key,
      opsTable: data.opsStateTable,
      levels: escalationLevels(config.escalation).map((level) => ({
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

    // Runbook constructs are wired below (one per concern, lib/constructs/<concern>.ts).
    const killswitch = new Killswitch(this, 'Killswitch', {
      environmentName: config.name,
      parameterName: data.killswitchParameter.parameterName,
      listenerArn: config.killswitch.listenerArn,
      listenerRulePriority: config.killswitch.listenerRulePriority,
      apiTaskRoleArn: config.killswitch.apiTaskRoleArn,
      operatorRoleArns: config.killswitch.operatorRoleArns,
      slack: config.killswitch.slack,
      incidentsTopic: this.incidentsTopic,
    });
    escalation.incidentsTopic.allowPublisher(killswitch.notifier.function.role as iam.IRole, 'KillswitchNotifier');
    if (killswitch.slackCommand) escalation.handleSlackCommands(killswitch.slackCommand.function);
    const backups = new Backups(this, 'Backups', {
      config,
      bucket: data.backupBucket,
      key: data.key,
      vpc,
      subnets: privateSubnets,
      databaseSecurityGroup,
      alarmTopic: this.incidentsTopic,
    });
    const restoreTest = config.restoreTest.enabled
      ? new RestoreTest(this, 'RestoreTest', {
          config,
          bucket: data.backupBucket,
          key: data.key,
          vpc,
          subnets: privateSubnets,
          databaseSecurityGroup,
          alarmTopic: this.incidentsTopic,
        })
      : undefined;

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
          { value: config.restoreTest.rpoObjectiveSeconds, label: 'RPO objective' },
        ],
      });
    }
    new OpsDashboard(this, 'Dashboard', {
      environmentName: config.name,
      alarms: [...Object.values(backups.alarms), ...(restoreTest ? Object.values(restoreTest.alarms) : [])].filter(
        (alarm): alarm is NonNullable<typeof alarm> => alarm !== undefined,
      ),
      graphs,
    });
  }
}
