import { CloudWatchClient, DescribeAlarmHistoryCommand, DescribeAlarmsCommand, GetMetricDataCommand, MetricDataQuery } from '@aws-sdk/client-cloudwatch';
import { BackoutSettings } from './settings';

const sum = (values: number[]) => values.reduce((a, b) => a + b, 0);

/** What the ALB says about the API over a window: the runbook's backout conditions. */
export interface ApiSignals {
  readonly requests: number;
  readonly errors5xx: number;
  /**
   * 5xx / requests in percent over the minutes that had at least minRequestsPerMinute requests, or
   * null when none had (too few requests to judge, or no minute landed).
   */
  readonly errorRatePercent: number | null;
  /** Lowest healthy host count seen, or null when CloudWatch has no data point. */
  readonly minHealthyHosts: number | null;
  /** One-minute datapoints CloudWatch has published in the window, of any of the three metrics. */
  readonly landedMinutes: number;
  /** Minutes with a RequestCount datapoint (the ErrorRate alarm's metric) in the window. */
  readonly requestMinutes: number;
  /** Minutes with a HealthyHostCount datapoint (the NoHealthyHosts alarm's metric) in the window. */
  readonly healthyMinutes: number;
}

/**
 * Reads the same metrics as the backout alarms from `start` to `end`, and judges each one-minute
 * datapoint as the ErrorRate alarm does: a minute counts towards the ratio only with at least
 * minRequestsPerMinute requests of its own. ALB metrics land about a minute late, so the window
 * holds fewer minutes than it spans: a minimum per window would read a breach as too few requests.
 */
export async function readApiSignals(cloudwatch: CloudWatchClient, settings: BackoutSettings, start: Date, end: Date): Promise<ApiSignals> {
  const dimensions = [
    { Name: 'LoadBalancer', Value: settings.loadBalancerFullName },
    { Name: 'TargetGroup', Value: settings.targetGroupFullName },
  ];
  const query = (id: string, metricName: string, stat: string): MetricDataQuery => ({
    Id: id,
    MetricStat: { Metric: { Namespace: 'AWS/ApplicationELB', MetricName: metricName, Dimensions: dimensions }, Period: 60, Stat: stat },
    ReturnData: true,
  });
  const output = await cloudwatch.send(
    new GetMetricDataCommand({
      StartTime: start,
      EndTime: end,
      MetricDataQueries: [query('requests', 'RequestCount', 'Sum'), query('errors', 'HTTPCode_Target_5XX_Count', 'Sum'), query('healthy', 'HealthyHostCount', 'Minimum')],
    }),
  );
  // By minute: the ALB publishes no 5xx datapoint for a minute without 5xx, so the series differ in length.
  const byMinute = (id: string) => {
    const result = output.MetricDataResults?.find((r) => r.Id === id);
    return new Map((result?.Values ?? []).map((value, i) => [String(result?.Timestamps?.[i]?.getTime() ?? i), value]));
  };
  const requests = byMinute('requests');
  const errors = byMinute('errors');
  const healthyByMinute = byMinute('healthy');
  const healthy = [...healthyByMinute.values()];
  const judged = [...requests].filter(([, count]) => count >= settings.minRequestsPerMinute);
  const judgedRequests = sum(judged.map(([, count]) => count));
  const judgedErrors = sum(judged.map(([minute]) => errors.get(minute) ?? 0));
  return {
    requests: sum([...requests.values()]),
    errors5xx: sum([...errors.values()]),
    errorRatePercent: judged.length ? (100 * judgedErrors) / judgedRequests : null,
    minHealthyHosts: healthy.length ? Math.min(...healthy) : null,
    landedMinutes: new Set([...requests.keys(), ...errors.keys(), ...healthyByMinute.keys()]).size,
    requestMinutes: requests.size,
    healthyMinutes: healthyByMinute.size,
  };
}

export type BackoutCause = 'no-healthy-hosts' | 'error-rate';

/**
 * Does a backout condition still hold (the runbook: no backout below the threshold, nor for a few
 * users)? `fired`: the condition of the alarm that fired. No datapoint of that alarm's own metric
 * landed yet: its evaluation stands, a guard never silences a fresh ALARM for want of data.
 * CloudWatch evaluates an alarm on its latest real datapoints, skipping the minutes not landed yet,
 * so it stays in ALARM, and fires no more, while they land breaching: a minute of the other
 * metrics only (HealthyHostCount landed before RequestCount) must not read as "cleared", which
 * sends no page. A landed minute of its own metric under the threshold turns the alarm OK too,
 * so it fires again if the failure goes on.
 */
export function conditionHolds(settings: BackoutSettings, signals: ApiSignals, fired: BackoutCause): { holds: boolean; why: string; cause?: BackoutCause } {
  if (signals.minHealthyHosts === 0) return { holds: true, why: 'no healthy API target', cause: 'no-healthy-hosts' };
  if (signals.errorRatePercent !== null && signals.errorRatePercent > settings.errorRatePercent) {
    return { holds: true, cause: 'error-rate', why: `5xx at ${signals.errorRatePercent.toFixed(1)}% of ${signals.requests} requests (threshold ${settings.errorRatePercent}%)` };
  }
  if ((fired === 'error-rate' ? signals.requestMinutes : signals.healthyMinutes) === 0) return { holds: true, why: 'no datapoint landed yet in the window re-read (ALB metrics land about a minute late): the alarm\'s own evaluation stands' };
  const ratio = signals.errorRatePercent === null ? `too few requests (${signals.requests})` : `5xx at ${signals.errorRatePercent.toFixed(1)}%`;
  return { holds: false, why: `${ratio}, healthy hosts ${signals.minHealthyHosts ?? 'unknown'}: under the threshold of ${settings.errorRatePercent}%` };
}

/**
 * The alarms of `names` in ALARM now, metric and composite alike (DescribeAlarms returns metric
 * alarms only unless asked for both). A name that no alarm has is not in ALARM.
 */
export async function alarmsInAlarm(cloudwatch: CloudWatchClient, names: readonly string[]): Promise<string[]> {
  if (names.length === 0) return [];
  const { MetricAlarms, CompositeAlarms } = await cloudwatch.send(
    new DescribeAlarmsCommand({ AlarmNames: [...names], AlarmTypes: ['MetricAlarm', 'CompositeAlarm'], StateValue: 'ALARM' }),
  );
  return [...(MetricAlarms ?? []), ...(CompositeAlarms ?? [])]
    .filter((a) => a.StateValue === 'ALARM' && names.includes(a.AlarmName ?? ''))
    .map((a) => a.AlarmName as string);
}

/**
 * Was any alarm of `names` in ALARM between `since` and now (history) or is it now? A release only
 * becomes the last known good when neither is true for the alarms its bake watches.
 */
export async function alarmFiredSince(cloudwatch: CloudWatchClient, names: readonly string[], since: Date, now: Date): Promise<string | null> {
  const { MetricAlarms } = await cloudwatch.send(new DescribeAlarmsCommand({ AlarmNames: [...names] }));
  const firing = (MetricAlarms ?? []).find((a) => a.StateValue === 'ALARM');
  if (firing) return `${firing.AlarmName} is in ALARM`;
  for (const name of names) {
    const { AlarmHistoryItems } = await cloudwatch.send(
      new DescribeAlarmHistoryCommand({ AlarmName: name, HistoryItemType: 'StateUpdate', StartDate: since, EndDate: now, MaxRecords: 100 }),
    );
    for (const item of AlarmHistoryItems ?? []) {
      try {
        const data = JSON.parse(item.HistoryData ?? '{}') as { newState?: { stateValue?: string } };
        if (data.newState?.stateValue === 'ALARM') return `${name} went to ALARM at ${item.Timestamp?.toISOString()}`;
      } catch {
        if (/to ALARM/.test(item.HistorySummary ?? '')) return `${name}: ${item.HistorySummary}`;
      }
    }
  }
  return null;
}
