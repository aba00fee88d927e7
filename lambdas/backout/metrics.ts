import { MetricUnit, type Metrics } from '@aws-lambda-powertools/metrics';
import { CloudWatchClient, PutMetricDataCommand, StandardUnit } from '@aws-sdk/client-cloudwatch';

/**
 * The `service` dimension of the backout's metrics. The workflow's function publishes with
 * Powertools (its environment's namespace, from POWERTOOLS_METRICS_NAMESPACE, dimension
 * service=<this>); the CLI publishes the same datapoints with PutMetricData under the same namespace
 * (`metricsNamespace(<env>)`) and dimension, so one dashboard widget and one alarm see both paths.
 */
export const BACKOUT_METRICS_SERVICE = 'backout';
/** Seconds from the trigger (alarm time, or the operator's request) to the target's steady state. */
export const ROLLBACK_SECONDS_METRIC = 'RollbackSeconds';
/** 1 when a rollback that acted ended healthy, 0 when it did not. */
export const ROLLBACK_OUTCOME_METRIC = 'RollbackOutcome';

export interface RollbackMetric {
  readonly name: typeof ROLLBACK_SECONDS_METRIC | typeof ROLLBACK_OUTCOME_METRIC;
  readonly unit: typeof MetricUnit.Seconds | typeof MetricUnit.Count;
  readonly value: number;
}

/**
 * The datapoints of a finished rollback. Only a rollback that acted (changed the service or the
 * schema) and was followed to its end counts: a refusal changed nothing, and a rollout nobody
 * waited for has no outcome yet. The outcome is 1 only for "rolled back and the checks passed".
 */
export function rollbackMetrics(finished: { readonly acted: boolean; readonly outcome: string; readonly seconds: number | null }): RollbackMetric[] {
  if (!finished.acted || finished.outcome === 'rollout-started') return [];
  const metrics: RollbackMetric[] = [{ name: ROLLBACK_OUTCOME_METRIC, unit: MetricUnit.Count, value: finished.outcome === 'rolled-back' ? 1 : 0 }];
  if (finished.seconds !== null) metrics.push({ name: ROLLBACK_SECONDS_METRIC, unit: MetricUnit.Seconds, value: finished.seconds });
  return metrics;
}

/** In the Lambda: Powertools writes them as embedded metric format when the handler flushes. */
export function addRollbackMetrics(metrics: Metrics, data: readonly RollbackMetric[]): void {
  for (const datum of data) metrics.addMetric(datum.name, datum.unit, datum.value);
}

/** From the CLI (no Lambda log pipeline to carry EMF): the same datapoints through PutMetricData, in `namespace` (the environment's). */
export async function putRollbackMetrics(cloudwatch: CloudWatchClient, namespace: string, data: readonly RollbackMetric[], at: Date): Promise<void> {
  if (!data.length) return;
  await cloudwatch.send(
    new PutMetricDataCommand({
      Namespace: namespace,
      MetricData: data.map((datum) => ({
        MetricName: datum.name,
        Dimensions: [{ Name: 'service', Value: BACKOUT_METRICS_SERVICE }],
        Unit: datum.unit === MetricUnit.Seconds ? StandardUnit.Seconds : StandardUnit.Count,
        Value: datum.value,
        Timestamp: at,
      })),
    }),
  );
}
