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
 * What every DeadLetters alarm says last: the alarm watches how many messages wait, so it stays in
 * ALARM while one is left, and a later failure of any sender on that queue then changes no state and
 * pages nobody. Delete each message once read, by its receipt handle: a purge would also delete those
 * that arrived since, unread (each is a run, change or page that never happened). The handle must be
 * the one from the latest receive: a message read again (its visibility timeout ran out) gets a new
 * handle, and SQS accepts a delete by the old one without deleting anything, so the alarm stays on.
 */
export const EMPTY_THE_QUEUE =
  'supprimer chaque message une fois lu et traité (aws sqs delete-message --queue-url <URL> --receipt-handle <ReceiptHandle de la dernière réception : relu, un message change de handle et l’ancien est accepté sans rien supprimer>, pas purge-queue qui effacerait aussi les non lus) : tant qu’il en reste un, l’alarme reste en ALARM et un nouvel échec ne pagine personne';

/**
 * `<Concern>-DeadLetters`: pages as soon as the dead-letter queue holds one message, since each one
 * is a run, change or page that never happened. An empty queue sends no data: that is fine.
 */
export function deadLettersAlarm(scope: Construct, queue: sqs.IQueue, props: DeadLettersAlarmProps): RunbookAlarm {
  // Only the naming and paging fields: the condition below is the same for every concern.
  const { environmentName, concern, runbookSection, summary, firstActions, link, topic, notifyOnOk } = props;
  return new RunbookAlarm(scope, 'DeadLettersAlarm', {
    environmentName,
    concern,
    runbookSection,
    summary,
    firstActions: firstActions ? `${firstActions} ; ${EMPTY_THE_QUEUE}` : EMPTY_THE_QUEUE,
    link,
    topic,
    notifyOnOk,
    what: 'DeadLetters',
    metric: queue.metricApproximateNumberOfMessagesVisible({ statistic: 'Maximum', period: Duration.minutes(5) }),
    threshold: 1,
    comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
    evaluationPeriods: 1,
    treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
  });
}
