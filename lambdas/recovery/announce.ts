import { CloudWatchClient, PutMetricDataCommand, StandardUnit } from '@aws-sdk/client-cloudwatch';
import { EventBridgeClient, PutEventsCommand } from '@aws-sdk/client-eventbridge';
import { EVENT_SOURCE } from '../shared/constants';
import { RECOVERY_SECONDS_METRIC, RECOVERY_SERVICE } from './contract';

/** Every recovery action announces itself on the default bus (escalation adds it to open incidents' timelines). */
export async function announce(events: EventBridgeClient, detailType: string, detail: { summary: string; at: string; recoveryId: string } & Record<string, unknown>): Promise<void> {
  const result = await events.send(new PutEventsCommand({ Entries: [{ Source: EVENT_SOURCE, DetailType: detailType, Detail: JSON.stringify(detail) }] }));
  if (result.FailedEntryCount) throw new Error(`EventBridge refused the "${detailType}" event: ${result.Entries?.[0]?.ErrorMessage ?? 'unknown error'}`);
}

/**
 * `RecoverySeconds` by stage: `verified` (request to a verified copy) and `cutover` (request to
 * production on the copy), in `namespace`, the environment's (the function's
 * POWERTOOLS_METRICS_NAMESPACE, or `metricsNamespace(<env>)` in the CLI).
 */
export async function publishRecoverySeconds(cloudwatch: CloudWatchClient, namespace: string, stage: 'verified' | 'cutover', seconds: number, at: Date): Promise<void> {
  await cloudwatch.send(
    new PutMetricDataCommand({
      Namespace: namespace,
      MetricData: [
        {
          MetricName: RECOVERY_SECONDS_METRIC,
          Dimensions: [
            { Name: 'service', Value: RECOVERY_SERVICE },
            { Name: 'stage', Value: stage },
          ],
          Unit: StandardUnit.Seconds,
          Value: seconds,
          Timestamp: at,
        },
      ],
    }),
  );
}

export function secondsBetween(from: string | Date, to: Date): number {
  return Math.round((to.getTime() - new Date(from).getTime()) / 1000);
}
