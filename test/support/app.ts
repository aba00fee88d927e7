import { App, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { buildApp } from '../../bin/app';
import { EnvironmentConfig, parseEnvironmentConfig } from '../../lib/config';
import type { BackupWorkloadProps } from '../../lib/constructs/backup-workload';
import { DataStack } from '../../lib/data-stack';

/**
 * The `context` of cdk.json, as `cdk synth` sees it, plus one test-only setting: no stack is
 * bundled (`aws:cdk:bundling-stacks: []`, what `cdk synth --exclusively` uses), since template
 * assertions never read the bundled code and esbuild per synth would dominate the suite's time.
 */
export function cdkJsonContext(): Record<string, unknown> {
  const cdkJson = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'cdk.json'), 'utf8')) as { context: Record<string, unknown> };
  return { ...structuredClone(cdkJson.context), 'aws:cdk:bundling-stacks': [] };
}

/** The embedded `example` environment's raw config, to derive variants from. */
export function exampleEnvironment(): Record<string, unknown> {
  return (cdkJsonContext().environments as Record<string, Record<string, unknown>>).example;
}

/**
 * The `example` environment as a deployer fills in their copy of it: synth refuses the sample
 * escalation (addresses at example.com, Slack ids of no workspace) and the killswitch's sample Slack
 * ids in any environment but `example`, so a test of another environment derives its variants from
 * this one.
 */
export function filledInEnvironment(): Record<string, unknown> {
  const environment = structuredClone(exampleEnvironment());
  environment.escalation = {
    ...(environment.escalation as Record<string, unknown>),
    onCallEmail: 'oncall@atmr.ch',
    leadDevOpsEmail: 'lead-devops@atmr.ch',
    ctoEmail: 'cto@atmr.ch',
    slack: { workspaceId: 'T07ATMR01', channelId: 'C07INCIDENTS' },
  };
  const killswitch = environment.killswitch as Record<string, unknown>;
  killswitch.slack = { ...(killswitch.slack as Record<string, unknown>), teamId: 'T07ATMR01', apiAppId: 'A07KILLSW01', allowedUserIds: ['U07ONCALL01', 'U07LEADOPS1'] };
  return environment;
}

/**
 * The `example` environment as an older version shipped it in cdk.json (commit a1976b2), before
 * synth compared the copies of a shared resource: its copies disagree (a backout and detection
 * target group other than the killswitch's, a backout worker neither detection nor recovery knows,
 * backout URLs on another host than the probe's, a recovery cluster other than the backout's).
 * Such a cdk.json may be deployed: the CLI must still read it.
 */
export function disagreeingExampleEnvironment(): Record<string, unknown> {
  const environment = structuredClone(exampleEnvironment()) as Record<string, Record<string, unknown>>;
  const { backout, detection, recovery } = environment;
  const olderTargetGroup = 'targetgroup/atmr-api/0123456789abcdef';
  backout.targetGroupFullName = olderTargetGroup;
  backout.workers = [{ serviceName: 'atmr-celery', taskFamily: 'atmr-celery' }];
  backout.healthUrl = 'http://internal-atmr-api.eu-west-3.elb.amazonaws.com/health';
  backout.readyUrl = 'http://internal-atmr-api.eu-west-3.elb.amazonaws.com/ready';
  (detection.alb as Record<string, unknown>).targetGroupFullName = olderTargetGroup;
  (recovery.ecs as Record<string, unknown>).clusterArn = 'arn:aws:ecs:eu-west-3:111111111111:cluster/atmr';
  return environment;
}

export interface SynthesizedApp {
  readonly app: App;
  readonly data: Stack;
  readonly ops: Stack;
  readonly dataTemplate: Template;
  readonly opsTemplate: Template;
}

/**
 * Builds the app as `cdk synth -c env=<name>` would, from cdk.json context, optionally with an
 * environment config replaced (`environments.<name>`). Templates are synthesized lazily by callers.
 */
export function synthesizeApp(options: { environment?: Record<string, unknown>; envName?: string } = {}): SynthesizedApp {
  const context = cdkJsonContext();
  const envName = options.envName ?? 'example';
  if (options.environment) {
    (context.environments as Record<string, unknown>)[envName] = options.environment;
  }
  context.env = envName;
  const app = buildApp(new App({ context }));
  const stacks = app.node.children.filter((c): c is Stack => c instanceof Stack);
  const data = stacks.find((s) => s.stackName.endsWith('-Data'));
  const ops = stacks.find((s) => s.stackName.endsWith('-Ops'));
  if (!data || !ops) throw new Error(`expected a Data and an Ops stack, got ${stacks.map((s) => s.stackName).join(', ')}`);
  return {
    app,
    data,
    ops,
    get dataTemplate() {
      return Template.fromStack(data);
    },
    get opsTemplate() {
      return Template.fromStack(ops);
    },
  };
}

/** What a construct-level test needs around the construct under test, wired as the ops stack wires it. */
export interface ConstructHarness {
  readonly app: App;
  readonly config: EnvironmentConfig;
  readonly data: DataStack;
  /** The stack that receives the construct under test. */
  readonly stack: Stack;
  readonly topic: sns.Topic;
  readonly vpc: ec2.IVpc;
  readonly subnets: ec2.SubnetSelection;
  readonly databaseSecurityGroup: ec2.ISecurityGroup;
  /** The shared props of the backup runner and the restore test, wired as the ops stack wires them. */
  readonly workload: BackupWorkloadProps;
}

/**
 * The data stack plus an empty stack `stackId` with the imported VPC, the database security group
 * and an incidents topic, for one environment config (raw, as in cdk.json).
 */
export function constructHarness(raw: Record<string, unknown>, stackId: string): ConstructHarness {
  const config = parseEnvironmentConfig('example', raw);
  const app = new App({ context: cdkJsonContext() });
  const env = { account: config.account, region: config.region };
  const data = new DataStack(app, 'Data', { env, config });
  const stack = new Stack(app, stackId, { env });
  const vpc = ec2.Vpc.fromVpcAttributes(stack, 'Vpc', {
    vpcId: config.network.vpcId,
    availabilityZones: config.network.availabilityZones,
    privateSubnetIds: config.network.privateSubnetIds,
  });
  const topic = new sns.Topic(stack, 'Incidents', { masterKey: data.opsKey, enforceSSL: true });
  const databaseSecurityGroup = ec2.SecurityGroup.fromSecurityGroupId(stack, 'DbSg', config.database.securityGroupId, { mutable: true });
  const subnets = { subnets: vpc.privateSubnets };
  const workload: BackupWorkloadProps = {
    vpc,
    subnets,
    databaseSecurityGroup,
    bucket: data.backupBucket,
    backupKey: data.backupKey,
    opsKey: data.opsKey,
    alarmTopic: topic,
  };
  return { app, config, data, stack, topic, vpc, subnets, databaseSecurityGroup, workload };
}

/**
 * Renders a CloudFormation string value (Fn::Join of strings, Ref, Fn::GetAtt) as text, references
 * as `<LogicalId>` / `<LogicalId.Attribute>`: to read a state machine definition or match an ARN.
 */
/** Whether `value` (an action, an ARN) matches an IAM `pattern` as IAM matches it: `*` any run of characters, `?` one. */
export function iamWildcardMatches(pattern: string, value: string): boolean {
  return new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`).test(value);
}

/** An IAM policy statement as a synthesized template holds it. */
export interface Statement {
  Sid?: string;
  Effect: string;
  Action: string | string[];
  Resource: unknown;
  Condition?: Record<string, unknown>;
}

export function renderCfn(value: unknown): string {
  if (typeof value === 'string') return value;
  const v = value as Record<string, unknown>;
  if (v.Ref !== undefined) return `<${String(v.Ref)}>`;
  if (v['Fn::GetAtt']) return `<${(v['Fn::GetAtt'] as string[]).join('.')}>`;
  // A name the Ops stack imports from the Data stack (the ops-state table's, in a state machine's definition).
  if (v['Fn::ImportValue'] !== undefined) return `<import:${renderCfn(v['Fn::ImportValue'])}>`;
  if (v['Fn::Join']) {
    const [separator, parts] = v['Fn::Join'] as [string, unknown[]];
    return parts.map(renderCfn).join(separator);
  }
  return JSON.stringify(value);
}

/**
 * What an `Fn::ImportValue` of the Ops template points at in the Data template: the Data output
 * exported under that name, its value rendered (`<OpsKey.Arn>`). Undefined for anything else.
 */
export function importedFromData(dataTemplate: Template, value: unknown): string | undefined {
  const name = (value as Record<string, unknown> | undefined)?.['Fn::ImportValue'];
  if (typeof name !== 'string') return undefined;
  const outputs = dataTemplate.toJSON().Outputs as Record<string, { Value: unknown; Export?: { Name: string } }>;
  const output = Object.values(outputs).find((o) => o.Export?.Name === name);
  return output && renderCfn(output.Value);
}
