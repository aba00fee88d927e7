import { CloudWatchClient, PutMetricDataCommand } from '@aws-sdk/client-cloudwatch';
import { mockClient } from 'aws-sdk-client-mock';
import { addRollbackMetrics, BACKOUT_METRICS_SERVICE, putRollbackMetrics, rollbackMetrics } from '../../../lambdas/backout/metrics';
import { metricsNamespace } from '../../../lambdas/shared/constants';
import { observability } from '../../../lambdas/shared/observability';

describe('rollback metrics: one decision, two transports', () => {
  it.each([
    ['rolled back and healthy', { acted: true, outcome: 'rolled-back', seconds: 140 }, [['RollbackOutcome', 1], ['RollbackSeconds', 140]]],
    ['rolled back, checks failed', { acted: true, outcome: 'rolled-back-checks-failed', seconds: 150 }, [['RollbackOutcome', 0], ['RollbackSeconds', 150]]],
    ['never steady', { acted: true, outcome: 'steady-timeout', seconds: null }, [['RollbackOutcome', 0]]],
    ['migration failed before the rollout', { acted: true, outcome: 'migration-failed', seconds: null }, [['RollbackOutcome', 0]]],
    ['rollout not awaited', { acted: true, outcome: 'rollout-started', seconds: null }, []],
    ['refused, nothing changed', { acted: false, outcome: 'refused', seconds: null }, []],
    ['stopped on an error before acting', { acted: false, outcome: 'error', seconds: null }, []],
  ])('%s', (_name, finished, expected) => {
    expect(rollbackMetrics(finished).map((m) => [m.name, m.value])).toEqual(expected);
  });

  it('the CLI\'s PutMetricData and the function\'s embedded metrics share the environment\'s namespace and the service dimension', async () => {
    const data = rollbackMetrics({ acted: true, outcome: 'rolled-back', seconds: 140 });
    // The function: the handler's Powertools instance, in the namespace its construct sets in its
    // environment, serialized as it flushes (embedded metric format).
    const saved = process.env.POWERTOOLS_METRICS_NAMESPACE;
    process.env.POWERTOOLS_METRICS_NAMESPACE = metricsNamespace('drill');
    const { metrics } = observability(BACKOUT_METRICS_SERVICE);
    if (saved === undefined) delete process.env.POWERTOOLS_METRICS_NAMESPACE;
    else process.env.POWERTOOLS_METRICS_NAMESPACE = saved;
    addRollbackMetrics(metrics, data);
    const emf = metrics.serializeMetrics() as unknown as { _aws: { CloudWatchMetrics: { Namespace: string; Dimensions: string[][]; Metrics: { Name: string; Unit: string }[] }[] } } & Record<string, unknown>;
    metrics.clearMetrics();
    // The CLI, with --env drill.
    const cloudwatch = mockClient(CloudWatchClient);
    cloudwatch.on(PutMetricDataCommand).resolves({});
    await putRollbackMetrics(new CloudWatchClient({ region: 'eu-west-3' }), metricsNamespace('drill'), data, new Date('2026-06-01T10:02:20.000Z'));
    const put = cloudwatch.commandCalls(PutMetricDataCommand)[0].args[0].input;
    cloudwatch.restore();

    const directive = emf._aws.CloudWatchMetrics[0];
    expect(directive.Namespace).toBe('AtmrDr/drill');
    expect(put.Namespace).toBe(directive.Namespace);
    expect(directive.Dimensions).toEqual([['service']]);
    expect(emf.service).toBe('backout');
    for (const datum of put.MetricData ?? []) expect(datum.Dimensions).toEqual([{ Name: 'service', Value: emf.service }]);
    expect(put.MetricData?.map((d) => [d.MetricName, d.Unit, d.Value])).toEqual(directive.Metrics.map((m) => [m.Name, m.Unit, emf[m.Name]]));
  });

  it('sends nothing when there is nothing to publish', async () => {
    const cloudwatch = mockClient(CloudWatchClient);

    await putRollbackMetrics(new CloudWatchClient({ region: 'eu-west-3' }), metricsNamespace('drill'), [], new Date());

    expect(cloudwatch.calls()).toHaveLength(0);
    cloudwatch.restore();
  });
});
