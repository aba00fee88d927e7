import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { EventBridgeClient, PutEventsCommand } from '@aws-sdk/client-eventbridge';
import { CreateScheduleCommand, DeleteScheduleCommand, ResourceNotFoundException, SchedulerClient } from '@aws-sdk/client-scheduler';
import { PublishCommand, SNSClient } from '@aws-sdk/client-sns';
import { SSMClient } from '@aws-sdk/client-ssm';
import { mockClient } from 'aws-sdk-client-mock';
import 'aws-sdk-client-mock-jest';
import { notifyKillswitchChange } from '../../../lambdas/killswitch/notify';
import { fakeParameter, PARAMETER, value } from './fixtures';

const ssmMock = mockClient(SSMClient);
const eventsMock = mockClient(EventBridgeClient);
const snsMock = mockClient(SNSClient);
const schedulerMock = mockClient(SchedulerClient);
const TOPIC = 'arn:aws:sns:eu-west-3:111111111111:incidents';
const settings = {
  parameterName: PARAMETER,
  environmentName: 'staging',
  topicArn: TOPIC,
  expiry: {
    groupName: 'atmr-dr-test-killswitch',
    scheduleName: 'killswitch-expiry',
    targetArn: 'arn:aws:lambda:eu-west-3:111111111111:function:revert',
    roleArn: 'arn:aws:iam::111111111111:role/scheduler',
    deadLetterArn: 'arn:aws:sqs:eu-west-3:111111111111:dlq',
  },
};
const now = () => new Date('2026-06-01T10:00:00.000Z');

function deps() {
  const metrics = new Metrics({ namespace: 'AtmrDr/example', serviceName: 'killswitch-notifier' });
  const addMetric = jest.spyOn(metrics, 'addMetric');
  const logger = new Logger({ serviceName: 'killswitch-notifier', logLevel: 'SILENT' });
  const clients = { ssm: new SSMClient({}), events: new EventBridgeClient({}), sns: new SNSClient({}), scheduler: new SchedulerClient({}) };
  return { deps: { ...clients, metrics, logger, now }, addMetric };
}

beforeEach(() => {
  for (const mock of [ssmMock, eventsMock, snsMock, schedulerMock]) mock.reset();
  schedulerMock.on(DeleteScheduleCommand).rejects(new ResourceNotFoundException({ message: 'none', $metadata: {} } as ConstructorParameters<typeof ResourceNotFoundException>[0]));
});

describe('notifyKillswitchChange (every change, whoever wrote it)', () => {
  it('emits the atmr-dr event, the incidents message and KillswitchMode=2 for maintenance, and arms the expiry', async () => {
    const enabled = value({ mode: 'maintenance', reason: 'OSRM down', actor: 'alice', updatedAt: '2026-06-01T09:59:59.000Z', expiresAt: '2026-06-01T12:00:00.000Z' });
    fakeParameter(ssmMock, enabled, { version: 7 });
    const { deps: d, addMetric } = deps();

    const result = await notifyKillswitchChange(d, settings);

    expect(result).toEqual({ mode: 'maintenance', version: 7, expiryScheduledAt: '2026-06-01T12:00:00.000Z' });
    expect(addMetric).toHaveBeenCalledWith('KillswitchMode', 'Count', 2);
    const entry = eventsMock.commandCalls(PutEventsCommand)[0].args[0].input.Entries?.[0];
    expect(entry).toMatchObject({ Source: 'atmr-dr', DetailType: 'Killswitch Changed' });
    expect(JSON.parse(entry?.Detail as string)).toEqual({ parameterName: PARAMETER, version: 7, ...enabled });
    expect(snsMock).toHaveReceivedCommandWith(PublishCommand, {
      TopicArn: TOPIC,
      Subject: '[atmr-dr] killswitch maintenance',
      Message: expect.stringMatching(/is now maintenance \(by alice at 2026-06-01 09:59 UTC, until 2026-06-01 12:00 UTC\): OSRM down/),
    });
    const schedule = schedulerMock.commandCalls(CreateScheduleCommand)[0].args[0].input;
    expect(schedule).toMatchObject({
      Name: 'killswitch-expiry',
      GroupName: 'atmr-dr-test-killswitch',
      ScheduleExpression: 'at(2026-06-01T12:00:00)',
      ScheduleExpressionTimezone: 'UTC',
      ActionAfterCompletion: 'DELETE',
      Target: { Arn: settings.expiry.targetArn, RoleArn: settings.expiry.roleArn, DeadLetterConfig: { Arn: settings.expiry.deadLetterArn } },
    });
    expect(JSON.parse(schedule.Target?.Input as string)).toEqual({ parameterName: PARAMETER, expectedUpdatedAt: '2026-06-01T09:59:59.000Z' });
  });

  it.each([
    ['normal', 0],
    ['degraded', 1],
  ] as const)('emits KillswitchMode for %s and, without expiry, only removes a pending schedule', async (mode, metric) => {
    fakeParameter(ssmMock, value({ mode }));
    schedulerMock.on(DeleteScheduleCommand).resolves({});
    const { deps: d, addMetric } = deps();

    const result = await notifyKillswitchChange(d, settings);

    expect(addMetric).toHaveBeenCalledWith('KillswitchMode', 'Count', metric);
    expect(result.expiryScheduledAt).toBeNull();
    expect(schedulerMock).toHaveReceivedCommandWith(DeleteScheduleCommand, { Name: 'killswitch-expiry', GroupName: 'atmr-dr-test-killswitch' });
    expect(schedulerMock).not.toHaveReceivedCommand(CreateScheduleCommand);
  });

  it.each([
    ['the atmr-dr event', () => eventsMock.on(PutEventsCommand).rejects(new Error('events down'))],
    ['the incidents message', () => snsMock.on(PublishCommand).rejects(new Error('sns down'))],
  ])('arms the expiry before %s, so maintenance still ends when that call fails', async (_what, breakIt) => {
    fakeParameter(ssmMock, value({ mode: 'maintenance', expiresAt: '2026-06-01T12:00:00.000Z' }));
    breakIt();
    const { deps: d } = deps();

    await expect(notifyKillswitchChange(d, settings)).rejects.toThrow(/down/);
    expect(schedulerMock).toHaveReceivedCommandWith(CreateScheduleCommand, { ScheduleExpression: 'at(2026-06-01T12:00:00)' });
  });

  it('schedules an expiry already in the past one minute ahead (the revert still checks updatedAt)', async () => {
    fakeParameter(ssmMock, value({ mode: 'degraded', expiresAt: '2026-06-01T09:00:00.000Z' }));
    const { deps: d } = deps();

    const result = await notifyKillswitchChange(d, settings);

    expect(result.expiryScheduledAt).toBe('2026-06-01T10:01:00.000Z');
  });

  it('alerts on a malformed value (KillswitchInvalid, mode counted as normal) and emits no change event', async () => {
    fakeParameter(ssmMock, '{"mode":"maintenance"}');
    const { deps: d, addMetric } = deps();

    const result = await notifyKillswitchChange(d, settings);

    expect(result.mode).toBe('invalid');
    expect(addMetric).toHaveBeenCalledWith('KillswitchInvalid', 'Count', 1);
    expect(addMetric).toHaveBeenCalledWith('KillswitchMode', 'Count', 0);
    expect(snsMock).toHaveReceivedCommandWith(PublishCommand, { Subject: '[atmr-dr] killswitch value MALFORMED' });
    // The fix as two commands the CLI accepts, run from the checkout (`enable|disable` is neither).
    expect(snsMock).toHaveReceivedCommandWith(PublishCommand, {
      Message: expect.stringContaining(
        'Fix it with "npx --no atmr-dr killswitch disable --reason <why> --env staging" (normal mode) or "npx --no atmr-dr killswitch enable --mode <mode> --reason <why> --env staging" (maintenance or degraded), from the atmr-dr checkout.',
      ),
    });
    expect(eventsMock).not.toHaveReceivedCommand(PutEventsCommand);
  });

  it('fails (so EventBridge retries) when the pending schedule cannot be removed for another reason', async () => {
    fakeParameter(ssmMock, value({ mode: 'maintenance', expiresAt: '2026-06-01T12:00:00.000Z' }));
    schedulerMock.on(DeleteScheduleCommand).rejects(Object.assign(new Error('denied'), { name: 'AccessDeniedException' }));
    const { deps: d } = deps();

    await expect(notifyKillswitchChange(d, settings)).rejects.toThrow('denied');
    expect(schedulerMock).not.toHaveReceivedCommand(CreateScheduleCommand);
  });
});
