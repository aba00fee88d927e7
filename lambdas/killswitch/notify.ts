import { nowOf } from '../shared/clock';
import type { Logger } from '@aws-lambda-powertools/logger';
import { MetricUnit, type Metrics } from '@aws-lambda-powertools/metrics';
import { EventBridgeClient, PutEventsCommand } from '@aws-sdk/client-eventbridge';
import { CreateScheduleCommand, DeleteScheduleCommand, SchedulerClient } from '@aws-sdk/client-scheduler';
import { PublishCommand, SNSClient } from '@aws-sdk/client-sns';
import { SSMClient } from '@aws-sdk/client-ssm';
import { EVENT_SOURCE, operatorCommand } from '../shared/constants';
import { describeValue, readKillswitch, RevertRequest } from './core';
import { MODE_METRIC_VALUE } from './value';

/** `detail-type` of the atmr-dr event emitted on every killswitch change. */
export const KILLSWITCH_CHANGED_DETAIL_TYPE = 'Killswitch Changed';
export const KILLSWITCH_MODE_METRIC = 'KillswitchMode';
export const KILLSWITCH_INVALID_METRIC = 'KillswitchInvalid';

export interface ExpiryScheduleSettings {
  readonly groupName: string;
  /** One pending expiry per parameter: a new change replaces it. */
  readonly scheduleName: string;
  /** The revert function and the role Scheduler assumes to invoke it. */
  readonly targetArn: string;
  readonly roleArn: string;
  /** Where Scheduler sends the invocation when it cannot deliver it. */
  readonly deadLetterArn?: string;
}

export interface NotifyDeps {
  readonly ssm: SSMClient;
  readonly events: EventBridgeClient;
  readonly sns: SNSClient;
  readonly scheduler: SchedulerClient;
  readonly metrics: Metrics;
  readonly logger: Logger;
  readonly now?: () => Date;
}

export interface NotifySettings {
  readonly parameterName: string;
  /** The environment of the parameter: the commands of the malformed-value message name it (--env). */
  readonly environmentName: string;
  readonly topicArn: string;
  readonly expiry: ExpiryScheduleSettings;
}

export interface NotifyResult {
  readonly mode: string;
  readonly version: number;
  readonly expiryScheduledAt: string | null;
}

/**
 * Runs on every "Parameter Store Change" of the parameter, whoever wrote it (CLI, Slack, expiry,
 * console): one place emits the atmr-dr event, the incidents message, the metric, and (re)arms the
 * expiry schedule.
 */
export async function notifyKillswitchChange(deps: NotifyDeps, settings: NotifySettings): Promise<NotifyResult> {
  const now = nowOf(deps);
  const reading = await readKillswitch(deps.ssm, settings.parameterName);

  if (!reading.value) {
    deps.logger.error('killswitch value is malformed; readers treat it as normal', { parameterName: settings.parameterName, reason: reading.invalidReason });
    deps.metrics.addMetric(KILLSWITCH_INVALID_METRIC, MetricUnit.Count, 1);
    deps.metrics.addMetric(KILLSWITCH_MODE_METRIC, MetricUnit.Count, MODE_METRIC_VALUE.normal);
    await deps.sns.send(
      new PublishCommand({
        TopicArn: settings.topicArn,
        Subject: '[atmr-dr] killswitch value MALFORMED',
        Message: `Killswitch ${settings.parameterName} v${reading.version} holds a malformed value (${reading.invalidReason}); readers treat it as normal. Fix it with "${operatorCommand(settings.environmentName, 'killswitch disable --reason <why>')}" (normal mode) or "${operatorCommand(settings.environmentName, 'killswitch enable --mode <mode> --reason <why>')}" (maintenance or degraded), from the atmr-dr checkout. Raw value: ${reading.raw}`,
      }),
    );
    return { mode: 'invalid', version: reading.version, expiryScheduledAt: null };
  }

  const value = reading.value;
  // The expiry first: if the event or the message below fails, maintenance still ends on time.
  const expiryScheduledAt = await armExpirySchedule(deps, settings, value.mode === 'normal' ? null : value.expiresAt, value.updatedAt, now);
  deps.metrics.addMetric(KILLSWITCH_MODE_METRIC, MetricUnit.Count, MODE_METRIC_VALUE[value.mode]);
  await deps.events.send(
    new PutEventsCommand({
      Entries: [
        {
          Source: EVENT_SOURCE,
          DetailType: KILLSWITCH_CHANGED_DETAIL_TYPE,
          Detail: JSON.stringify({ parameterName: settings.parameterName, version: reading.version, ...value }),
        },
      ],
    }),
  );
  await deps.sns.send(
    new PublishCommand({
      TopicArn: settings.topicArn,
      Subject: `[atmr-dr] killswitch ${value.mode}`.slice(0, 100),
      Message: `Killswitch ${settings.parameterName} v${reading.version} is now ${describeValue(value, now.getTime())}`,
    }),
  );
  return { mode: value.mode, version: reading.version, expiryScheduledAt };
}

/** Replaces the pending expiry (if any) with one for this value, when it expires in the future. */
async function armExpirySchedule(
  deps: NotifyDeps,
  settings: NotifySettings,
  expiresAt: string | null,
  updatedAt: string,
  now: Date,
): Promise<string | null> {
  const { expiry } = settings;
  try {
    await deps.scheduler.send(new DeleteScheduleCommand({ Name: expiry.scheduleName, GroupName: expiry.groupName }));
  } catch (error) {
    if ((error as { name?: string }).name !== 'ResourceNotFoundException') throw error;
  }
  if (!expiresAt) return null;
  // A time already past would never fire: fire in a minute instead (the revert still checks updatedAt).
  const at = new Date(Math.max(Date.parse(expiresAt), now.getTime() + 60_000));
  const input: RevertRequest = { parameterName: settings.parameterName, expectedUpdatedAt: updatedAt };
  await deps.scheduler.send(
    new CreateScheduleCommand({
      Name: expiry.scheduleName,
      GroupName: expiry.groupName,
      ScheduleExpression: `at(${at.toISOString().slice(0, 19)})`,
      ScheduleExpressionTimezone: 'UTC',
      FlexibleTimeWindow: { Mode: 'OFF' },
      ActionAfterCompletion: 'DELETE',
      Description: `atmr-dr: revert ${settings.parameterName} to normal unless it changed since ${updatedAt}`,
      Target: {
        Arn: expiry.targetArn,
        RoleArn: expiry.roleArn,
        Input: JSON.stringify(input),
        RetryPolicy: { MaximumRetryAttempts: 10 },
        ...(expiry.deadLetterArn && { DeadLetterConfig: { Arn: expiry.deadLetterArn } }),
      },
    }),
  );
  return at.toISOString();
}
