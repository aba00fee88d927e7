import { parseEnvironmentConfig } from '../../lib/config';
import { exampleEnvironment, synthesizeApp } from '../support/app';

const withDetection = (detection: unknown) => ({ ...exampleEnvironment(), detection });

describe('detection config', () => {
  it('fills the runbook\'s thresholds and the probe defaults from an empty block', () => {
    const config = parseEnvironmentConfig('example', withDetection({}));

    expect(config.detection?.thresholds).toMatchObject({
      osrmDownMinutes: 2,
      apiNotReadyMinutes: 2,
      unhealthyHostsMinutes: 3,
      p95LatencySeconds: 5,
      errorRatePercent: 5,
      cpuPercent: 90,
      memoryPercent: 90,
      redisMemoryPercent: 90,
      probeFailurePercent: 20,
      probeFailureWindowMinutes: 10,
      freeStoragePercent: 10,
      maintenanceMaxMinutes: 60,
    });
    expect(config.detection?.probe).toEqual({ celeryQueues: ['celery'], killswitch: true });
    expect(config.detection?.celeryAutoscaling).toEqual({ enabled: false, targetQueueDepth: 50 });
  });

  it('gives each probe target the runbook\'s 3 s timeout by default', () => {
    // The example's API host: the backout's health URLs must be on the host the probe reaches.
    const baseUrl = 'http://internal-atmr-api-123456789.eu-west-3.elb.amazonaws.com';
    const config = parseEnvironmentConfig('example', withDetection({ probe: { api: { baseUrl }, osrm: { healthUrl: 'http://osrm:5000/health' } } }));

    expect(config.detection?.probe.api).toEqual({ baseUrl, timeoutMs: 3000 });
    expect(config.detection?.probe.osrm).toEqual({ healthUrl: 'http://osrm:5000/health', timeoutMs: 3000, attempts: 3 });
  });

  it('still parses an environment without a detection block', () => {
    const { detection: _omit, ...raw } = exampleEnvironment();
    expect(parseEnvironmentConfig('example', raw).detection).toBeUndefined();
  });

  it.each([
    [{ probe: { osrm: { healthUrl: 'osrm:5000/health' } } }, /environments\.example\.detection\.probe\.osrm\.healthUrl: must be an http\(s\) URL/],
    [{ ecs: { clusterName: 'c', services: { celery: { serviceName: 'w', minCount: 5, maxCount: 2 } } } }, /detection\.ecs\.services\.celery\.minCount: minCount must be <= maxCount/],
    [{ thresholds: { p95Seconds: 5 } }, /detection\.thresholds: unknown field\(s\) p95Seconds/],
    [{ thresholds: { redisMemoryPercent: 150 } }, /^config: environments\.example\.detection\.thresholds\.redisMemoryPercent: must be at most 100, not 150; fix it[^\n]*$/],
    [{ thresholds: { redisMemoryPercent: 0 } }, /^config: environments\.example\.detection\.thresholds\.redisMemoryPercent: must be greater than 0, not 0; fix it[^\n]*$/],
    [{ alb: { loadBalancerFullName: 'atmr-api', targetGroupFullName: 'targetgroup/a/0123abcd' } }, /detection\.alb\.loadBalancerFullName: must be app\/<name>\/<id>/],
    [
      { probe: { redis: { host: 'r' } }, ecs: { clusterName: 'c', services: { worker: { serviceName: 'w' } } }, celeryAutoscaling: { enabled: true } },
      /^config: environments\.example\.detection\.ecs\.services: has no Celery service "celery" \(ecs\.celeryServiceKey\), which celeryAutoscaling scales: add it \(serviceName, minCount, maxCount\), or set celeryAutoscaling\.enabled to false; fix it in cdk\.json/,
    ],
    [
      { celeryAutoscaling: { enabled: true } },
      /^config: environments\.example\.detection\.ecs: has no Celery service "celery"/,
    ],
    [
      { ecs: { clusterName: 'c', services: { celery: { serviceName: 'w' } } }, celeryAutoscaling: { enabled: true } },
      /^config: environments\.example\.detection\.probe\.redis: is required with celeryAutoscaling \(it scales on CeleryQueueDepth, which the probe reads from Redis\): add it, or set celeryAutoscaling\.enabled to false/,
    ],
  ])('rejects %j with one line naming the field', (detection, message) => {
    expect(() => parseEnvironmentConfig('example', withDetection(detection))).toThrow(message);
  });

  it('fails `cdk synth` with the one line, not a stack trace, when celeryAutoscaling has no Celery service to scale', () => {
    const detection = structuredClone(exampleEnvironment().detection) as { ecs: { celeryServiceKey?: string } };
    detection.ecs.celeryServiceKey = 'workers';

    expect(() => synthesizeApp({ environment: withDetection(detection) })).toThrow(
      /^config: environments\.example\.detection\.ecs\.services: has no Celery service "workers"/,
    );
  });
});
