import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { mockClient } from 'aws-sdk-client-mock';
import type { ProbeReport } from '../../lambdas/detection/probe';
import { PROBE_METRICS, runProbe } from '../../lambdas/detection/probe';
import { parseProbeEnvironment } from '../../lambdas/detection/settings';
import { captureProbeOutput, metricValue } from '../lambdas/detection/fixtures';
import { psql, startPostgres, stopPostgres, type PostgresCluster } from '../support/postgres';
import { startRedis, type LocalRedis } from '../support/redis';

// The probe's credentials across a rotation: the password (or AUTH token) changes on the server and
// in its secret, while a warm probe still holds the one it read before. A real PostgreSQL with a
// SCRAM role and real redis-servers with requirepass; Secrets Manager mocked at the SDK (under
// Powertools Parameters' cache), answering what the secret holds at the time of the call.

const M = PROBE_METRICS;
const secrets = mockClient(SecretsManagerClient);
/** What each mocked secret holds now, by ARN (an error: what the call throws). */
const secretValues = new Map<string, string | Error>();
const saved = { ...process.env };
let cluster: PostgresCluster;

beforeAll(async () => {
  process.env.AWS_REGION = 'eu-west-3';
  cluster = await startPostgres({ hba: 'local all all trust\nhost all postgres 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n' });
  secrets.on(GetSecretValueCommand).callsFake((input: { SecretId: string }) => {
    const value = secretValues.get(input.SecretId);
    if (value instanceof Error) throw value;
    return { SecretString: value };
  });
});
afterAll(async () => {
  stopPostgres(cluster);
  process.env = saved;
});

const reads = (arn: string) => secrets.commandCalls(GetSecretValueCommand).filter((c) => c.args[0].input.SecretId === arn).length;

/** One run of the probe through the handler's clients (its secrets cache lives in the module, as in a warm Lambda). */
async function run(settings: unknown) {
  const { probeDeps } = await import('../../lambdas/detection/handler');
  const parsed = parseProbeEnvironment(JSON.stringify(settings));
  return captureProbeOutput(({ metrics, logger }) => runProbe(parsed, probeDeps(parsed, { metrics, logger })));
}
const target = (report: ProbeReport, name: string) => report.targets.filter((t) => t.target === name);

describe('health probe: the database password rotated', () => {
  // One role (and secret) per case: the handler keeps its credentials per secret across the file.
  let role: string;
  let arn: string;
  let settings: unknown;
  beforeEach(() => {
    role = `probe_${Math.random().toString(36).slice(2, 8)}`;
    arn = `arn:aws:secretsmanager:eu-west-3:111111111111:secret:rds!db-${role}`;
    psql(cluster, 'postgres', `CREATE ROLE ${role} LOGIN PASSWORD 'before-rotation'`);
    secretValues.set(arn, JSON.stringify({ username: role, password: 'before-rotation' }));
    settings = { database: { host: '127.0.0.1', port: cluster.port, name: 'postgres', secretArn: arn, sslMode: 'disable', timeoutMs: 2000 } };
  });
  const rotate = (password: string, inSecretToo: boolean) => {
    psql(cluster, 'postgres', `ALTER ROLE ${role} PASSWORD '${password}'`);
    if (inSecretToo) secretValues.set(arn, JSON.stringify({ username: role, password }));
  };

  it('reads the secret again when the kept password is refused, and stays up (no DatabaseUp 0 for Database-Down)', async () => {
    // Arrange: a first run reads and keeps the password; then a rotation changes it on both sides
    expect(metricValue((await run(settings)).metrics, M.databaseUp)).toBe(1);
    rotate('after-rotation', true);

    // Act
    const { result, metrics, logs } = await run(settings);

    // Assert: one read more, in the same run, and the session made with what it holds now
    expect(result.down).toEqual([]);
    expect([metricValue(metrics, M.databaseUp), metricValue(metrics, M.dbReadOnly)]).toEqual([1, 0]);
    expect(reads(arn)).toBe(2);
    expect(logs.find((l) => String(l.message).startsWith('credentials refused'))).toMatchObject({ target: 'database', secretArn: arn, reason: 'auth' });
    expect(JSON.stringify(logs)).not.toContain('after-rotation');
    // The new password is kept: the next run reads nothing
    expect(metricValue((await run(settings)).metrics, M.databaseUp)).toBe(1);
    expect(reads(arn)).toBe(2);
  });

  it('reports a password the secret does not hold as down for "auth", reading the secret once a run', async () => {
    // Arrange: changed on the server only (a rotation that failed half-way, a password set by hand)
    await run(settings);
    rotate('set-by-hand', false);

    // Act
    const first = await run(settings);
    const second = await run(settings);

    // Assert
    for (const { result, metrics } of [first, second]) {
      expect(target(result, 'database')).toEqual([expect.objectContaining({ up: false, reason: 'auth', detail: expect.stringMatching(/password authentication failed/) })]);
      expect(result.down).toEqual(['database:auth']);
      expect(metricValue(metrics, M.databaseUp)).toBe(0);
    }
    // The fix named: the secret the probe reads, by its setting and its ARN.
    expect(target(first.result, 'database')[0].detail).toMatch(
      new RegExp(
        `^the database refused the probe's login \\(.*password authentication failed for user "${role}".*\\): ` +
          `the probe's secret \\(detection\\.probe\\.database\\.secretArn, else database\\.secretArn: ${arn.replace(/[.!$]/g, '\\$&')}\\) does not hold its role's password ` +
          "\\(or names a role that does not exist: PostgreSQL answers both alike\\): put the role's password in that secret; if the API's /ready says database ok, only the probe's login is wrong$",
      ),
    );
    // 1 (first run) + 1 a run after (the password kept, or read again in the run before, refused: read again)
    expect(reads(arn)).toBe(3);
  });
});

describe('health probe: the Redis AUTH token rotated', () => {
  // A redis-server and a secret per case: the handler keeps its token per secret across the file.
  let redis: LocalRedis;
  let arn: string;
  let settings: unknown;
  beforeEach(async () => {
    redis = await startRedis(['--requirepass', 'token-before']);
    arn = `arn:aws:secretsmanager:eu-west-3:111111111111:secret:redis-auth-${redis.port}`;
    secretValues.set(arn, JSON.stringify({ password: 'token-before' }));
    settings = { redis: { host: '127.0.0.1', port: redis.port, tls: false, timeoutMs: 2000, queues: ['celery'], authSecretArn: arn } };
  });
  afterEach(async () => redis.stop());
  const rotate = (token: string, inSecretToo: boolean) => {
    redis.cli('-a', 'token-before', '--no-auth-warning', 'CONFIG', 'SET', 'requirepass', token);
    if (inSecretToo) secretValues.set(arn, JSON.stringify({ password: token }));
  };

  it('reads the token again when the kept one is refused (WRONGPASS), and stays up', async () => {
    // Arrange
    expect(metricValue((await run(settings)).metrics, M.redisUp)).toBe(1);
    rotate('token-after', true);

    // Act
    const { result, metrics, logs } = await run(settings);

    // Assert
    expect(result.down).toEqual([]);
    expect([metricValue(metrics, M.redisUp), metricValue(metrics, M.celeryQueueDepthTotal)]).toEqual([1, 0]);
    expect(reads(arn)).toBe(2);
    expect(logs.find((l) => String(l.message).startsWith('credentials refused'))).toMatchObject({ target: 'redis', secretArn: arn, reason: 'auth', detail: expect.stringMatching(/WRONGPASS/) });
  });

  it('reports a token the secret does not hold as down for "auth"', async () => {
    // Arrange: changed on the server only
    await run(settings);
    rotate('token-by-hand', false);

    // Act
    const { result, metrics } = await run(settings);

    // Assert
    expect(target(result, 'redis')).toEqual([expect.objectContaining({ up: false, reason: 'auth', detail: expect.stringMatching(/WRONGPASS/) })]);
    expect(result.down).toEqual(['redis:auth']);
    // Redis down (Health-RedisDown holds the rollbacks: a Redis that lost its AUTH refuses the app
    // too), the detail saying how to tell that from the probe's own token.
    expect(metricValue(metrics, M.redisUp)).toBe(0);
    expect(target(result, 'redis')[0].detail).toMatch(/^redis refused the probe's login \(.*WRONGPASS.*\): either the probe's token \(detection\.probe\.redis\.authSecretArn\) is wrong or Redis lost its AUTH\/ACL; if the API's \/ready says redis ok, fix the probe's token$/);
    expect(reads(arn)).toBe(2);
  });
});

describe('health probe: the database secret cannot be read', () => {
  it('reports the database down naming the Secrets Manager error and what to check, reading the secret once', async () => {
    // Arrange: the probe's role may not read the secret (a policy or a key policy changed)
    const arn = 'arn:aws:secretsmanager:eu-west-3:111111111111:secret:rds!db-denied';
    secretValues.set(arn, Object.assign(new Error('User: probe is not authorized to perform: secretsmanager:GetSecretValue'), { name: 'AccessDeniedException' }));
    const settings = { database: { host: '127.0.0.1', port: cluster.port, name: 'postgres', secretArn: arn, sslMode: 'disable', timeoutMs: 2000 } };

    // Act
    const { result } = await run(settings);

    // Assert: the SDK's error name (not Powertools' GetParameterError around it), one read only
    expect(target(result, 'database')).toEqual([
      expect.objectContaining({ up: false, detail: expect.stringContaining(`cannot read database secret ${arn}: AccessDeniedException; check the ARN and that this role may call secretsmanager:GetSecretValue on it`) }),
    ]);
    expect(reads(arn)).toBe(1);
  });
});
