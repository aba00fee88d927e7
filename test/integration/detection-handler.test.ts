import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { GetParameterCommand, SSMClient } from '@aws-sdk/client-ssm';
import type { Context } from 'aws-lambda';
import { mockClient } from 'aws-sdk-client-mock';
import { parseProbeEnvironment } from '../../lambdas/detection/settings';
import { EmittedMetric, startHttpServer } from '../lambdas/detection/fixtures';
import { testCluster, uniqueDatabaseName } from '../support/cluster';
import { psql } from '../support/postgres';
import { LocalRedis, startRedis } from '../support/redis';
import { lambdaContext } from '../support/lambda-context';

// The Lambda adapter around the probe core: settings from PROBE_SETTINGS, the database password from
// Secrets Manager and the killswitch from SSM (both mocked at the SDK), real servers for the targets,
// metrics flushed by the Powertools middleware as EMF on stdout.

const SECRET_ARN = 'arn:aws:secretsmanager:eu-west-3:111111111111:secret:rds!db-probe-AbCdEf';
const PASSWORD = 'Never-Logged-probe-91c2';
const secrets = mockClient(SecretsManagerClient);
const ssm = mockClient(SSMClient);
let redis: LocalRedis;
let database: string;
const saved = { ...process.env };

const context = lambdaContext('probe');

beforeAll(async () => {
  redis = await startRedis();
  database = uniqueDatabaseName('probe_handler');
  psql(testCluster(), 'postgres', `CREATE DATABASE ${database}`);
});
afterAll(async () => {
  await redis.stop();
  psql(testCluster(), 'postgres', `DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
  process.env = saved;
});

function parseEmf(out: string): EmittedMetric[] {
  const metrics: EmittedMetric[] = [];
  for (const line of out.split('\n').filter((l) => l.startsWith('{'))) {
    const doc = JSON.parse(line) as Record<string, unknown> & { _aws?: { CloudWatchMetrics: { Dimensions: string[][]; Metrics: { Name: string; Unit: string }[] }[] } };
    for (const d of doc._aws?.CloudWatchMetrics ?? []) {
      const dimensions = Object.fromEntries(d.Dimensions.flat().map((k) => [k, String(doc[k])]));
      for (const m of d.Metrics) metrics.push({ name: m.Name, unit: m.Unit, value: doc[m.Name] as number, dimensions });
    }
  }
  return metrics;
}

/** The Lambda's environment (as the construct sets it) with these probe settings. */
function setProbeEnvironment(probeSettings: unknown): void {
  process.env = {
    ...saved,
    AWS_REGION: 'eu-west-3',
    POWERTOOLS_SERVICE_NAME: 'detection-probe',
    POWERTOOLS_METRICS_NAMESPACE: 'AtmrDr/example',
    POWERTOOLS_METRICS_DISABLED: 'false',
    POWERTOOLS_TRACE_ENABLED: 'false',
    PROBE_SETTINGS: JSON.stringify(probeSettings),
  };
  delete process.env.POWERTOOLS_DEV;
}

describe('health probe Lambda handler', () => {
  it('probes the configured targets and flushes their metrics as EMF, the password never in the output', async () => {
    const api = await startHttpServer({ '/health': { status: 200 }, '/ready': { status: 503 } });
    const cluster = testCluster();
    secrets.on(GetSecretValueCommand).resolves({ SecretString: JSON.stringify({ username: cluster.user, password: PASSWORD }) });
    ssm.on(GetParameterCommand).resolves({
      Parameter: { Value: JSON.stringify({ mode: 'maintenance', reason: 'osrm', actor: 'alice', updatedAt: '2026-11-30T10:00:00Z', expiresAt: null }) },
    });
    setProbeEnvironment({
      api: { baseUrl: api.url, timeoutMs: 1000 },
      redis: { host: '127.0.0.1', port: redis.port, tls: false, timeoutMs: 1000, queues: ['celery'] },
      database: { host: cluster.host, port: cluster.port, name: database, secretArn: SECRET_ARN, sslMode: 'disable', timeoutMs: 2000 },
      killswitchParameter: '/atmr/test/killswitch',
    });
    const chunks: string[] = [];
    const capture = (chunk: string | Uint8Array) => (chunks.push(String(chunk)), true);
    const spies = [jest.spyOn(process.stdout, 'write').mockImplementation(capture), jest.spyOn(process.stderr, 'write').mockImplementation(capture)];
    let result: { checksMade: number; checksFailed: number; down: string[] };
    try {
      // Loaded once the environment is set (the handler reads it at cold start), in this module
      // registry so that the SDK clients it builds are the mocked ones.
      const { handler } = (await import('../../lambdas/detection/handler')) as { handler: (event: unknown, context: Context) => Promise<typeof result> };
      result = await handler({}, context);
    } finally {
      spies.forEach((s) => s.mockRestore());
      await api.close();
    }
    const out = chunks.join('');
    const metrics = parseEmf(out);
    const value = (name: string) => metrics.find((m) => m.name === name)?.value;

    expect(result).toMatchObject({ checksMade: 4, checksFailed: 1, down: ['api-ready:http-503'] });
    expect([value('ApiLive'), value('ApiReady'), value('RedisUp'), value('DatabaseUp'), value('DbReadOnly'), value('KillswitchMode')]).toEqual([1, 0, 1, 1, 0, 2]);
    expect(metrics.find((m) => m.name === 'ApiReady')?.dimensions).toEqual({ service: 'detection-probe' });
    expect(out).not.toContain(PASSWORD);
    expect(ssm.commandCalls(GetParameterCommand)[0].args[0].input).toEqual({ Name: '/atmr/test/killswitch' });
  });

  it('reports Redis refusing the probe\'s login as Redis down (RedisUp 0), not a failed run, its log line saying both causes', async () => {
    // Arrange: a redis-server with requirepass, and no authSecretArn in the probe's settings (NOAUTH)
    const locked = await startRedis(['--requirepass', 'handler-token-5b1e']);
    setProbeEnvironment({ redis: { host: '127.0.0.1', port: locked.port, tls: false, timeoutMs: 1000, queues: ['celery'] } });
    const chunks: string[] = [];
    const capture = (chunk: string | Uint8Array) => (chunks.push(String(chunk)), true);
    const spies = [jest.spyOn(process.stdout, 'write').mockImplementation(capture), jest.spyOn(process.stderr, 'write').mockImplementation(capture)];
    let result: unknown;
    try {
      const { handler } = (await import('../../lambdas/detection/handler')) as { handler: (event: unknown, context: Context) => Promise<unknown> };
      result = await handler({}, context);
    } finally {
      spies.forEach((s) => s.mockRestore());
      await locked.stop();
    }

    // Assert: no Lambda error (Probe-Errors' "its metrics are missing" would be wrong); RedisUp 0
    // (Health-RedisDown, which holds rollbacks), and the check counted failed as before.
    expect(result).toMatchObject({ checksMade: 1, checksFailed: 1, down: ['redis:auth'] });
    const out = chunks.join('');
    const metrics = parseEmf(out);
    expect(['RedisUp', 'ProbeChecksMade', 'ProbeChecksFailed'].map((name) => metrics.find((m) => m.name === name)?.value)).toEqual([0, 1, 1]);
    const lines = out.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines).toContainEqual(
      expect.objectContaining({
        message: 'probe target down',
        target: 'redis',
        reason: 'auth',
        detail: expect.stringMatching(/^redis refused the probe's login \(.*NOAUTH.*\): either the probe's token \(detection\.probe\.redis\.authSecretArn\) is wrong or Redis lost its AUTH\/ACL; if the API's \/ready says redis ok, fix the probe's token$/),
      }),
    );
  });

  it('publishes the mode in effect: an expired maintenance is normal, as the API and the responder apply it', async () => {
    const value = (expiresAt: string) => JSON.stringify({ mode: 'maintenance', reason: 'osrm', actor: 'alice', updatedAt: '2026-11-30T10:00:00Z', expiresAt });
    process.env = { ...saved, AWS_REGION: 'eu-west-3' };
    const { probeDeps } = await import('../../lambdas/detection/handler');
    const deps = probeDeps({ killswitchParameter: '/atmr/test/killswitch' });
    // The expiry schedule has not run (late or failed): the parameter still says maintenance.
    ssm.on(GetParameterCommand).resolves({ Parameter: { Value: value(new Date(Date.now() - 60_000).toISOString()) } });
    await expect(deps.readKillswitchMode!()).resolves.toBe('normal');
    ssm.on(GetParameterCommand).resolves({ Parameter: { Value: value(new Date(Date.now() + 3_600_000).toISOString()) } });
    await expect(deps.readKillswitchMode!()).resolves.toBe('maintenance');
  });

  it("reads the environment's name the construct puts in PROBE_SETTINGS (the --env of the commands the probe prints)", () => {
    expect(parseProbeEnvironment('{"environmentName":"staging","api":{"baseUrl":"http://127.0.0.1:1","timeoutMs":3000}}').environmentName).toBe('staging');
    expect(() => parseProbeEnvironment('{"environmentName":""}')).toThrow(/^health probe: PROBE_SETTINGS\.environmentName: /);
  });

  it('names the bad field of PROBE_SETTINGS in one line', () => {
    expect(() => parseProbeEnvironment('{"api":{"baseUrl":"not a url","timeoutMs":3000}}')).toThrow(/^health probe: PROBE_SETTINGS\.api\.baseUrl: /);
    expect(() => parseProbeEnvironment(undefined)).toThrow('health probe: PROBE_SETTINGS is not set (the detection construct sets it)');
  });
});
