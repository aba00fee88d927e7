import { CloudWatchClient, DescribeAlarmsCommand } from '@aws-sdk/client-cloudwatch';

/**
 * The state of an incident's alarm now (`ALARM`, `OK`, `INSUFFICIENT_DATA`), metric or composite;
 * undefined when the alarm no longer exists. Read by the workflow before each climb and by
 * `incident resolve`, which warns before closing an incident whose alarm still breaches.
 */
export async function alarmStateNow(cloudwatch: CloudWatchClient, alarmName: string): Promise<string | undefined> {
  const result = await cloudwatch.send(new DescribeAlarmsCommand({ AlarmNames: [alarmName], AlarmTypes: ['MetricAlarm', 'CompositeAlarm'] }));
  return result.MetricAlarms?.[0]?.StateValue ?? result.CompositeAlarms?.[0]?.StateValue;
}
