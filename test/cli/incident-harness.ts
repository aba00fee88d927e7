/**
 * Runs the real `atmr-dr` CLI (bin/atmr-dr.ts main) in a child process: DynamoDB is the dynalite
 * server of the test (AWS_ENDPOINT_URL_DYNAMODB), SFN and STS are mocked at the SDK boundary
 * (commander 15 is ESM-only and cannot load inside jest). DescribeExecution answers the status in
 * INCIDENT_WORKFLOW_STATUS; the SFN calls made are written to INCIDENT_RESULT as JSON. CloudWatch is
 * mocked there too: DescribeAlarms answers the state in INCIDENT_ALARM_STATE (default OK; a word that
 * is no state is refused as that error, e.g. AccessDenied), and the alarms read are written beside
 * the SFN calls (`alarmsRead`). SendTaskSuccess is refused as the error named in INCIDENT_WAKE_ERROR
 * when set (e.g. ExpiredToken, AccessDeniedException), else accepted. SNS's ListSubscriptionsByTopic
 * answers, in one page, the subscriptions INCIDENT_SNS_SUBSCRIPTIONS (JSON) gives for the topic, and
 * the topics listed are written beside the SFN calls (`topicsListed`). GetSMSSandboxAccountStatus
 * answers IsInSandbox INCIDENT_SMS_SANDBOX ('true', default 'false'; another word is refused as that
 * error, e.g. AuthorizationErrorException), and its calls are counted (`sandboxChecks`). With
 * INCIDENT_SNS_UNMOCKED=1, the CLI's SNS clients are the real SDK's (a mock of another instance).
 * CloudTrail's DescribeTrails answers the trails of INCIDENT_TRAILS (JSON: each trail's fields and
 * `logging`, its GetTrailStatus IsLogging; default one logging multi-region trail of eu-west-3; a
 * JSON string is refused as that error, e.g. "AccessDeniedException"); the calls made, with the
 * region of the client that made them, are written as `trailCalls`.
 */
import { CloudTrailClient, DescribeTrailsCommand, GetTrailStatusCommand, type Trail } from '@aws-sdk/client-cloudtrail';
import { CloudWatchClient, DescribeAlarmsCommand, StateValue } from '@aws-sdk/client-cloudwatch';
import { DescribeExecutionCommand, SendTaskSuccessCommand, SFNClient } from '@aws-sdk/client-sfn';
import { GetSMSSandboxAccountStatusCommand, ListSubscriptionsByTopicCommand, SNSClient, type Subscription } from '@aws-sdk/client-sns';
import { GetCallerIdentityCommand, STSClient } from '@aws-sdk/client-sts';
import { mockClient } from 'aws-sdk-client-mock';
import * as fs from 'node:fs';
import { main } from '../../bin/atmr-dr';

async function run(): Promise<void> {
  const sfn = mockClient(SFNClient);
  const sts = mockClient(STSClient);
  sts.on(GetCallerIdentityCommand).resolves({ Arn: 'arn:aws:sts::111111111111:assumed-role/atmr-oncall/alice' });
  const wakeError = process.env.INCIDENT_WAKE_ERROR;
  if (wakeError) sfn.on(SendTaskSuccessCommand).rejects(Object.assign(new Error('The security token included in the request is expired'), { name: wakeError }));
  else sfn.on(SendTaskSuccessCommand).resolves({});
  sfn.on(DescribeExecutionCommand).resolves({ status: (process.env.INCIDENT_WORKFLOW_STATUS ?? 'RUNNING') as 'RUNNING' });
  const cloudwatch = mockClient(CloudWatchClient);
  const alarmState = process.env.INCIDENT_ALARM_STATE ?? 'OK';
  if (['OK', 'ALARM', 'INSUFFICIENT_DATA'].includes(alarmState)) {
    cloudwatch.on(DescribeAlarmsCommand).callsFake((input: { AlarmNames?: string[] }) => ({ MetricAlarms: (input.AlarmNames ?? []).map((AlarmName) => ({ AlarmName, StateValue: alarmState as StateValue })) }));
  } else {
    cloudwatch.on(DescribeAlarmsCommand).rejects(Object.assign(new Error(`User is not authorized to perform: cloudwatch:DescribeAlarms`), { name: alarmState }));
  }
  // INCIDENT_SNS_UNMOCKED=1: SNS is the real SDK's, which needs the credentials the test gives it, or none.
  const sns = mockClient(process.env.INCIDENT_SNS_UNMOCKED === '1' ? new SNSClient({}) : SNSClient);
  const subscriptions = JSON.parse(process.env.INCIDENT_SNS_SUBSCRIPTIONS ?? '{}') as Record<string, Subscription[]>;
  sns.on(ListSubscriptionsByTopicCommand).callsFake((input: { TopicArn: string }) => ({ Subscriptions: subscriptions[input.TopicArn] ?? [] }));
  const sandbox = process.env.INCIDENT_SMS_SANDBOX ?? 'false';
  if (sandbox === 'true' || sandbox === 'false') sns.on(GetSMSSandboxAccountStatusCommand).resolves({ IsInSandbox: sandbox === 'true' });
  else sns.on(GetSMSSandboxAccountStatusCommand).rejects(Object.assign(new Error('User: arn:aws:sts::111111111111:assumed-role/atmr-oncall/alice is not authorized to perform: SNS:GetSMSSandboxAccountStatus'), { name: sandbox }));
  const cloudtrail = mockClient(CloudTrailClient);
  const trails = JSON.parse(process.env.INCIDENT_TRAILS ?? '[{"Name":"org-trail","TrailARN":"arn:aws:cloudtrail:eu-west-3:111111111111:trail/org-trail","HomeRegion":"eu-west-3","IsMultiRegionTrail":true,"logging":true}]') as
    | string
    | (Trail & { logging: boolean })[];
  if (typeof trails === 'string') {
    cloudtrail.on(DescribeTrailsCommand).rejects(Object.assign(new Error('User: arn:aws:sts::111111111111:assumed-role/atmr-oncall/alice is not authorized to perform: cloudtrail:DescribeTrails'), { name: trails }));
  } else {
    cloudtrail.on(DescribeTrailsCommand).resolves({ trailList: trails.map(({ logging: _logging, ...trail }) => trail) });
    cloudtrail.on(GetTrailStatusCommand).callsFake((input: { Name: string }) => ({ IsLogging: trails.find((t) => t.TrailARN === input.Name)?.logging ?? false }));
  }
  const trailCalls: { command: string; input: unknown; region: string }[] = [];
  const code = await main(['node', 'atmr-dr', ...process.argv.slice(2)]);
  for (const call of cloudtrail.calls()) {
    const command = call.args[0];
    trailCalls.push({ command: command.constructor.name, input: command.input, region: await (call.thisValue as CloudTrailClient).config.region() });
  }
  const calls = sfn.calls().map((call) => ({ command: call.args[0].constructor.name, input: call.args[0].input }));
  const alarmsRead = cloudwatch.calls().flatMap((call) => (call.args[0].input as { AlarmNames?: string[] }).AlarmNames ?? []);
  const topicsListed = sns.commandCalls(ListSubscriptionsByTopicCommand).map((call) => call.args[0].input.TopicArn);
  const sandboxChecks = sns.commandCalls(GetSMSSandboxAccountStatusCommand).length;
  fs.writeFileSync(process.env.INCIDENT_RESULT as string, JSON.stringify({ code, calls, alarmsRead, topicsListed, sandboxChecks, trailCalls }));
  process.exitCode = code;
}

void run();
