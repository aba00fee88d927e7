import { Duration, RemovalPolicy, Validations } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';

import { RunbookAlarm, RunbookAlarmProps } from './runbook-alarm';

export interface DeadLetterQueueProps {
  /**
   * Customer key that encrypts the queue (data keys reused for an hour); every sender then needs
   * kms:GenerateDataKey and kms:Decrypt on it.
   * @default - SQS-managed encryption
   */
  readonly key?: kms.IKey;
  /** Why the queue has no dead-letter queue of its own (cdk-nag AwsSolutions-SQS3). */
  readonly isTheDeadLetterQueue: string;
  /** Why nothing redrives it (cdk-nag Serverless-SQSRedrivePolicy). @default - `isTheDeadLetterQueue` */
  readonly nothingConsumesIt?: string;
}

/**
 * The `DeadLetters` queue of a concern: what its schedules, rules and asynchronous functions could
 * not deliver, or gave up on after their retries. Kept 14 days (the SQS maximum) for an operator to
 * read, TLS only. The id is fixed: it is part of the queue's logical ID in every stack.
 */
export function deadLetterQueue(scope: Construct, props: DeadLetterQueueProps): sqs.Queue {
  const queue = new sqs.Queue(scope, 'DeadLetters', {
    ...(props.key
      ? { encryption: sqs.QueueEncryption.KMS, encryptionMasterKey: props.key, dataKeyReuse: Duration.hours(1) }
      : { encryption: sqs.QueueEncryption.SQS_MANAGED }),
    enforceSSL: true,
    retentionPeriod: Duration.days(14),
    removalPolicy: RemovalPolicy.DESTROY,
  });
  Validations.of(queue).acknowledge(
    { id: 'AwsSolutions-SQS3', reason: props.isTheDeadLetterQueue },
    { id: 'Serverless-SQSRedrivePolicy', reason: props.nothingConsumesIt ?? props.isTheDeadLetterQueue },
  );
  return queue;
}

export type DeadLettersAlarmProps = Pick<
  RunbookAlarmProps,
  'environmentName' | 'concern' | 'runbookSection' | 'summary' | 'firstActions' | 'link' | 'topic' | 'notifyOnOk'
>;

/**
 * Delete each message once read, by its receipt handle: a purge would also delete those that arrived
 * since, unread (each is a run, change or page that never happened). The handle must be the one from
 * the latest receive: a message read again (its visibility timeout ran out) gets a new handle, and
 * SQS accepts a delete by the old one without deleting anything.
 */
const DELETE_EACH_MESSAGE =
  'supprimer chaque message une fois lu et traité (aws sqs delete-message --queue-url <URL> --receipt-handle <ReceiptHandle de la dernière réception : relu, un message change de handle et l’ancien est accepté sans rien supprimer>, pas purge-queue qui effacerait aussi les non lus)';

/**
 * What the alarms that watch how many messages wait (KeyGuard, RunnerStopped) say last: such an alarm
 * stays in ALARM while one is left, and a later message then changes no state and pages nobody.
 */
export const EMPTY_THE_QUEUE = `${DELETE_EACH_MESSAGE} : tant qu’il en reste un, l’alarme reste en ALARM et un nouvel échec ne pagine personne`;

/** What every DeadLetters alarm says last: it pages on arrivals (deadLettersAlarm), not while one waits. */
const DEAD_LETTERS_LAST = `${DELETE_EACH_MESSAGE}, puis résoudre l’incident : l’alarme repasse OK seule (son OK ne résout rien) et pagine à chaque nouvelle arrivée`;

/** Periods of 5 minutes an arrival keeps `<Concern>-DeadLetters` in ALARM (see deadLettersAlarm). */
export const DEAD_LETTERS_WINDOW_PERIODS = 3;

/**
 * `<Concern>-DeadLetters`: pages on each message that arrives in the dead-letter queue, since each
 * one is a run, change or page that never happened, also while older ones wait unread.
 *
 * It counts arrivals, not the messages waiting: a count of waiting messages kept the alarm in ALARM
 * while one unread message was left, and CloudWatch notifies only on a state change, so the next lost
 * run or page (the CTO's included) paged nobody. An arrival is a message sent (NumberOfMessagesSent:
 * SNS, Lambda, EventBridge and the scheduler send their failures) or a rise of the waiting count
 * (DIFF of ApproximateNumberOfMessagesVisible, gaps filled with 0: it also sees a message SQS moves
 * there itself, which NumberOfMessagesSent leaves out, and a message whose metrics SQS publishes late
 * after hours of an idle queue, against the zeros before). The alarm breaches on any 5-minute period
 * of the last DEAD_LETTERS_WINDOW_PERIODS with one, so a datapoint that comes late still counts; then
 * it returns to OK by itself, waiting messages or not, and the next arrival pages again (arrivals
 * within that window join the page already out).
 *
 * So it is an event alarm: its OK says nothing of the messages left, and resolves nothing; its
 * incident stays open, and climbs until acknowledged, until a human resolves it. One alarm per queue,
 * its name unchanged. An empty, idle queue sends no data: not breaching. `notifyOnOk` is ignored (an
 * event alarm's OK is no all-clear).
 */
export function deadLettersAlarm(scope: Construct, queue: sqs.IQueue, props: DeadLettersAlarmProps): RunbookAlarm {
  // Only the naming and paging fields: the condition below is the same for every concern.
  const { environmentName, concern, runbookSection, summary, firstActions, link, topic } = props;
  const period = Duration.minutes(5);
  return new RunbookAlarm(scope, 'DeadLettersAlarm', {
    environmentName,
    concern,
    runbookSection,
    summary,
    firstActions: firstActions ? `${firstActions} ; ${DEAD_LETTERS_LAST}` : DEAD_LETTERS_LAST,
    link,
    topic,
    signalsEvent: true,
    what: 'DeadLetters',
    metric: new cloudwatch.MathExpression({
      expression: 'MAX([FILL(sent, 0), DIFF(FILL(waiting, 0))])',
      usingMetrics: {
        sent: queue.metricNumberOfMessagesSent({ statistic: 'Sum', period }),
        waiting: queue.metricApproximateNumberOfMessagesVisible({ statistic: 'Maximum', period }),
      },
      period,
      label: 'Dead letters arrived',
    }),
    threshold: 1,
    comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
    evaluationPeriods: DEAD_LETTERS_WINDOW_PERIODS,
    datapointsToAlarm: 1,
    treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
  });
}
