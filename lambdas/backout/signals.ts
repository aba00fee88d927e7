import { CloudWatchClient, DescribeAlarmHistoryCommand, DescribeAlarmsCommand, GetMetricDataCommand, MetricDataQuery } from '@aws-sdk/client-cloudwatch';
import { BackoutSettings } from './settings';

/** What the ALB says about the API over a window: the runbook's backout conditions. */
export interface ApiSignals {
  readonly requests: number;
  readonly errors5xx: number;
  /** 5xx / requests in percent, or null when there were too few requests to judge. */
  readonly errorRatePercent: number | null;
  /** Lowest healthy host count seen, or null when CloudWatch has no data point. */
  readonly minHealthyHosts: number | null;
}

const sum = (values: number[] | undefined) => (values ?? []).reduce((a, b) => a + b, 0);

/**
 * Reads the same metrics as the backout alarms from `start` to `end`: the error ratio counts only
 * when the minimum request count (per minute of the window) is reached, like the alarm.
 */
export async function readApiSignals(cloudwatch: CloudWatchClient, settings: BackoutSettings, start: Date, end: Date): Promise<ApiSignals> {
  const minutes = Math.max(1, Math.ceil((end.getTime() - start.getTime()) / 60_000));
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
  const values = (id: string) => output.MetricDataResults?.find((r) => r.Id === id)?.Values;
  const requests = sum(values('requests'));
  const errors5xx = sum(values('errors'));
  const healthy = values('healthy') ?? [];
  const enough = requests >= settings.minRequestsPerMinute * minutes;
  return {
    requests,
    errors5xx,
    errorRatePercent: enough ? (100 * errors5xx) / requests : null,
    minHealthyHosts: healthy.length ? Math.min(...healthy) : null,
  };
}

/** Does a backout condition still hold (the runbook: no backout below the threshold, nor for a few users)? */
export function conditionHolds(settings: BackoutSettings, signals: ApiSignals): { holds: boolean; why: string; cause?: 'no-healthy-hosts' | 'error-rate' } {
  if (signals.minHealthyHosts === 0) return { holds: true, why: 'no healthy API target', cause: 'no-healthy-hosts' };
  if (signals.errorRatePercent !== null && signals.errorRatePercent > settings.errorRatePercent) {
    return { holds: true, cause: 'error-rate', why: `5xx at ${signals.errorRatePercent.toFixed(1)}% of ${signals.requests} requests (threshold ${settings.errorRatePercent}%)` };
  }
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
