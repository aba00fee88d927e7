import type { Metrics } from '@aws-lambda-powertools/metrics';
import type { MetricUnit } from '@aws-lambda-powertools/metrics/types';

/**
 * One metric in an EMF document of its own, flushed at once: the default {service} dimension and
 * `dimensions`, never the dimensions the caller's `metrics` carries (e.g. the backup core's Tier).
 * An alarm on it names exactly these.
 */
export function emitSingleMetric(
  metrics: Pick<Metrics, 'singleMetric'> | undefined,
  name: string,
  unit: MetricUnit,
  value: number,
  dimensions: Readonly<Record<string, string>> = {},
): void {
  if (!metrics) return;
  const single = metrics.singleMetric();
  for (const [key, dimensionValue] of Object.entries(dimensions)) single.addDimension(key, dimensionValue);
  single.addMetric(name, unit, value);
}
