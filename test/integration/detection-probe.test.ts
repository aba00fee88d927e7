import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import * as net from 'node:net';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import Redis from 'ioredis';
import { openDatabaseSession, openRedisSession } from '../../lambdas/detection/clients';
import { PROBE_METRICS, ProbeSettings, probeTargetNames, REDIS_WRITE_CHECK_BYTES, REDIS_WRITE_CHECK_KEY, REDIS_WRITE_CHECK_TTL_SECONDS, RETRY_PAUSE_MS, runProbe } from '../../lambdas/detection/probe';
import { EvictedKeysCounter } from '../../lambdas/detection/redis-memory';
import { OPERATOR_CLI } from '../../lambdas/shared/constants';
import { captureProbeOutput, metricValue, startHttpServer } from '../lambdas/detection/fixtures';
import { testClient, testCluster, uniqueDatabaseName } from '../support/cluster';
import { startDroppingProxy, type DroppingProxy } from '../support/dropping-proxy';
import { freePort, psql, selfSignedCertificate, startPostgres, stopPostgres } from '../support/postgres';
import { LocalRedis, startRedis } from '../support/redis';

// The health probe against real servers on 127.0.0.1: an HTTP server (200, 503, slow, refused),
// redis-server and the suite's PostgreSQL. Each case asserts the EMF metrics CloudWatch would get.

const M = PROBE_METRICS;
// Below the production 3 s to keep the suite fast, but with room for a loaded CI machine.
const TIMEOUT_MS = 2000;
/** What the runbook's /ready answers when the API is ready ("Healthchecks Kubernetes"). */
const READY_BODY = '{"status": "ready", "checks": {"database": "ok", "redis": "ok"}}';
let redis: LocalRedis;
let database: string;
let closedPort: number;
const servers: { close(): Promise<void> }[] = [];

beforeAll(async () => {
  redis = await startRedis();
  database = uniqueDatabaseName('probe');
  psql(testCluster(), 'postgres', `CREATE DATABASE ${database}`);
  closedPort = await freePort();
});
afterAll(async () => {
  await Promise.all(servers.map((s) => s.close()));
  await redis.stop();
  psql(testCluster(), 'postgres', `DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
});
beforeEach(() => {
  redis.cli('DEL', 'celery', 'dispatch');
});

async function server(routes: Parameters<typeof startHttpServer>[0]) {
  const s = await startHttpServer(routes);
  servers.push(s);
  return s;
}

function connection(port = testCluster().port, user = testCluster().user) {
  const { host } = testCluster();
  return { host, port, user, database, sslMode: 'disable' };
}

async function probeWith(settings: Partial<ProbeSettings> & { redisPort?: number; databasePort?: number; databaseUser?: string; killswitch?: () => Promise<'normal' | 'degraded' | 'maintenance'> }) {
  const full: ProbeSettings = {
    environmentName: settings.environmentName,
    api: settings.api,
    osrm: settings.osrm,
    // Where the probe's PROBE_SETTINGS say they are: a timeout tries a TCP connection there.
    redis: { timeoutMs: TIMEOUT_MS, queues: ['celery', 'dispatch'], host: '127.0.0.1', port: settings.redisPort ?? redis.port },
    database: { timeoutMs: 2000, host: testCluster().host, port: settings.databasePort ?? testCluster().port },
  };
  return captureProbeOutput(({ metrics, logger }) =>
    runProbe(full, {
      metrics,
      logger,
      openRedis: () => openRedisSession({ host: '127.0.0.1', port: settings.redisPort ?? redis.port, tls: false, timeoutMs: TIMEOUT_MS }),
      openDatabase: () => openDatabaseSession(connection(settings.databasePort, settings.databaseUser), 2000),
      ...(settings.killswitch && { readKillswitchMode: settings.killswitch }),
    }),
  );
}

describe('health probe against real servers', () => {
  it('reports every target up with its metrics when all answer', async () => {
    const api = await server({ '/health': { status: 200 }, '/ready': { status: 200, body: READY_BODY } });
    const osrm = await server({ '/health': { status: 200 } });
    redis.cli('RPUSH', 'celery', 'a', 'b', 'c');

    const settings = {
      api: { baseUrl: api.url, timeoutMs: TIMEOUT_MS },
      osrm: { healthUrl: `${osrm.url}/health`, timeoutMs: TIMEOUT_MS, attempts: 3, attemptSpacingMs: 10 },
    };
    const { result, metrics } = await probeWith(settings);

    expect(result.checksFailed).toBe(0);
    expect(metricValue(metrics, M.apiLive)).toBe(1);
    expect(metricValue(metrics, M.apiReady)).toBe(1);
    expect(metricValue(metrics, M.osrmAvailability)).toBe(100);
    expect(metricValue(metrics, M.redisUp)).toBe(1);
    expect(metricValue(metrics, M.celeryQueueDepth, { Queue: 'celery' })).toBe(3);
    expect(metricValue(metrics, M.celeryQueueDepth, { Queue: 'dispatch' })).toBe(0);
    expect(metricValue(metrics, M.celeryQueueDepthTotal)).toBe(3);
    expect(metricValue(metrics, M.databaseUp)).toBe(1);
    expect(metricValue(metrics, M.dbReadOnly)).toBe(0);
    expect(metricValue(metrics, M.checksMade)).toBe(7); // health, ready, 3 OSRM attempts, redis, database
    expect(metricValue(metrics, M.checksFailed)).toBe(0);
    for (const target of ['api-health', 'api-ready', 'osrm#1', 'redis', 'database']) {
      expect(metricValue(metrics, M.latency, { Target: target, service: 'detection-probe' })).toBeGreaterThanOrEqual(0);
    }
    expect(metrics.find((m) => m.name === M.apiLive)?.dimensions).toEqual({ service: 'detection-probe' });
    expect(osrm.hits['/health']).toBe(3);
    // The dashboard graphs each target's latency by the names probeTargetNames gives (detection.ts):
    // a run reports exactly those, or a line of the graph stays empty.
    const reported = metrics.filter((m) => m.name === M.latency).map((m) => m.dimensions?.Target);
    expect(reported.sort()).toEqual(probeTargetNames({ ...settings, redis: { timeoutMs: TIMEOUT_MS, queues: [] }, database: { timeoutMs: 2000 } }).sort());
  });

  it('reports ApiReady 0 with reason http-503 when /ready answers 503, ApiLive still 1', async () => {
    const api = await server({ '/health': { status: 200 }, '/ready': { status: 503, body: '{"status":"not ready","checks":{"database":"error"}}' } });

    const { metrics, logs } = await probeWith({ api: { baseUrl: api.url, timeoutMs: TIMEOUT_MS } });

    expect(metricValue(metrics, M.apiLive)).toBe(1);
    expect(metricValue(metrics, M.apiReady)).toBe(0);
    expect(logs).toContainEqual(
      expect.objectContaining({ level: 'WARN', message: 'probe target down', target: 'api-ready', reason: 'http-503', detail: expect.stringContaining('database') }),
    );
  });

  it('reports a target that answers past the timeout as down (timeout) without delaying or hiding the others', async () => {
    const api = await server({ '/health': { status: 200, delayMs: 8000 }, '/ready': { status: 200, delayMs: 8000 } });
    const osrm = await server({ '/health': { status: 200 } });

    const started = Date.now();
    const { result, metrics, logs } = await probeWith({
      api: { baseUrl: api.url, timeoutMs: TIMEOUT_MS },
      osrm: { healthUrl: `${osrm.url}/health`, timeoutMs: TIMEOUT_MS, attempts: 1 },
    });

    // /ready got no answer: a second attempt after the pause, the run's longest path.
    expect(Date.now() - started).toBeLessThan(2 * TIMEOUT_MS + RETRY_PAUSE_MS + 1500);
    expect(metricValue(metrics, M.apiLive)).toBe(0);
    expect(metricValue(metrics, M.apiReady)).toBe(0);
    expect(metricValue(metrics, M.osrmAvailability)).toBe(100);
    expect(metricValue(metrics, M.redisUp)).toBe(1);
    expect(metricValue(metrics, M.dbReadOnly)).toBe(0);
    expect(metricValue(metrics, M.checksFailed)).toBe(2); // /health, /ready (its second attempt is not counted)
    expect(result.targets.find((t) => t.target === 'api-health')).toMatchObject({ up: false, reason: 'timeout' });
    expect(logs.filter((l) => l.message === 'probe target down').map((l) => [l.target, l.reason])).toEqual(
      expect.arrayContaining([['api-health', 'timeout'], ['api-ready', 'timeout']]),
    );
  });

  it('reports a refused connection as OSRM availability 0 with reason refused', async () => {
    const { result, metrics } = await probeWith({
      osrm: { healthUrl: `http://127.0.0.1:${closedPort}/health`, timeoutMs: TIMEOUT_MS, attempts: 2, attemptSpacingMs: 10 },
    });

    expect(metricValue(metrics, M.osrmAvailability)).toBe(0);
    expect(result.targets.filter((t) => t.target.startsWith('osrm')).map((t) => t.reason)).toEqual(['refused', 'refused']);
  });

  it('measures OSRM availability as the percent of the minute\'s attempts that succeed', async () => {
    const osrm = await server({ '/health': (n) => ({ status: n % 2 === 1 ? 200 : 503 }) });

    const { metrics } = await probeWith({
      osrm: { healthUrl: `${osrm.url}/health`, timeoutMs: TIMEOUT_MS, attempts: 4, attemptSpacingMs: 20 },
    });

    expect(metricValue(metrics, M.osrmAvailability)).toBe(50);
    expect(metricValue(metrics, M.checksFailed)).toBe(2);
  });

  it('reports a host name that does not resolve as down with reason dns', async () => {
    const { result } = await probeWith({ api: { baseUrl: 'http://atmr-dr-probe.invalid', timeoutMs: 3000 } });

    expect(result.targets.find((t) => t.target === 'api-health')).toMatchObject({ up: false, reason: 'dns' });
  });

  it('reports Redis down (RedisUp 0, no queue depth) when nothing listens, and still reports the database', async () => {
    const { result, metrics } = await probeWith({ redisPort: closedPort });

    expect(metricValue(metrics, M.redisUp)).toBe(0);
    expect(metrics.filter((m) => m.name === M.celeryQueueDepth)).toEqual([]);
    expect(result.targets.find((t) => t.target === 'redis')).toMatchObject({ up: false, reason: 'refused' });
    expect(metricValue(metrics, M.databaseUp)).toBe(1);
  });

  it('reports DbReadOnly 1 once the database defaults to read-only, and 0 again after it is set back', async () => {
    const cluster = testCluster();
    psql(cluster, 'postgres', `ALTER DATABASE ${database} SET default_transaction_read_only = on`);
    try {
      const readOnly = await probeWith({ environmentName: 'staging' });
      expect(metricValue(readOnly.metrics, M.dbReadOnly)).toBe(1);
      expect(readOnly.result.database).toEqual({ readOnly: true, transactionReadOnly: true, inRecovery: false, defaultSource: 'database', databaseSetting: 'on' });
      // The runbook's first check ("DB Read-Only": the database's state), as the command that makes it, in the environment probed.
      expect(readOnly.logs).toContainEqual(
        expect.objectContaining({
          level: 'WARN',
          message: `database is read-only (the application's writes are refused): check why first with "${OPERATOR_CLI} db read-write --env staging" (it shows the cause and asks before changing anything; log in as the database's owner: PG* variables or --database-secret <arn>)`,
          transactionReadOnly: true,
        }),
      );
    } finally {
      psql(cluster, 'postgres', `ALTER DATABASE ${database} SET default_transaction_read_only = off`);
    }
    const readWrite = await probeWith({});
    expect(metricValue(readWrite.metrics, M.dbReadOnly)).toBe(0);
  });

  it("does not count a read-only default of the probe's own role (ALTER ROLE ... SET), which the application's role does not have, and still sees the database-level setting under it", async () => {
    // Arrange: the probe's user made read-only the common way, at the role level
    const cluster = testCluster();
    const role = `${database}_ro`;
    psql(cluster, 'postgres', `CREATE ROLE ${role} LOGIN; GRANT CONNECT ON DATABASE ${database} TO ${role}; ALTER ROLE ${role} SET default_transaction_read_only = on;`);
    try {
      // Act
      const roleOnly = await probeWith({ databaseUser: role });
      psql(cluster, 'postgres', `ALTER DATABASE ${database} SET default_transaction_read_only = on`);
      const databaseToo = await probeWith({ databaseUser: role }).finally(() => psql(cluster, 'postgres', `ALTER DATABASE ${database} RESET default_transaction_read_only`));

      // Assert: the role's setting alone is not an outage; the database's is, even under the role's
      expect(metricValue(roleOnly.metrics, M.databaseUp)).toBe(1);
      expect(metricValue(roleOnly.metrics, M.dbReadOnly)).toBe(0);
      expect(roleOnly.result.database).toMatchObject({ readOnly: false, transactionReadOnly: true, inRecovery: false, defaultSource: 'user' });
      expect(roleOnly.logs).not.toContainEqual(expect.objectContaining({ message: expect.stringMatching(/^database is read-only/) }));
      expect(metricValue(databaseToo.metrics, M.dbReadOnly)).toBe(1);
      expect(databaseToo.result.database).toMatchObject({ readOnly: true, defaultSource: 'user', databaseSetting: 'on' });
    } finally {
      psql(cluster, 'postgres', `DROP OWNED BY ${role}; DROP ROLE ${role};`);
    }
  });

  it('reports the database down (DatabaseUp 0, no DbReadOnly) when it cannot be reached', async () => {
    const { result, metrics } = await probeWith({ databasePort: closedPort });

    expect(metricValue(metrics, M.databaseUp)).toBe(0);
    expect(metrics.filter((m) => m.name === M.dbReadOnly)).toEqual([]);
    expect(result.targets.find((t) => t.target === 'database')).toMatchObject({ up: false, reason: 'refused' });
  });

  it('publishes no DbReadOnly when the server refuses the probe\'s role (auth): only the read-only check says read-only', async () => {
    const { result, metrics } = await probeWith({ databaseUser: 'atmr_probe_no_such_role' });

    expect(metricValue(metrics, M.databaseUp)).toBe(0);
    expect(metrics.filter((m) => m.name === M.dbReadOnly)).toEqual([]);
    expect(result.targets.find((t) => t.target === 'database')).toMatchObject({ up: false, reason: 'auth', detail: expect.stringMatching(/role "atmr_probe_no_such_role" does not exist/) });
    // SQLSTATE 28000 (no such role, no pg_hba.conf line): the fix named, the probe's secret and its role.
    expect(result.targets.find((t) => t.target === 'database')?.detail).toMatch(
      /^the database refused the probe's login \(.*\): the role in the probe's secret \(detection\.probe\.database\.secretArn, else database\.secretArn\) may not connect \(no pg_hba\.conf line for it, a role that does not exist or has no LOGIN\): create it as docs\/detection\.md says \("The probe's database role"\) or fix the secret's username; if the API's \/ready says database ok, only the probe's login is wrong$/,
    );
  });

  it('publishes the killswitch mode, and an unreadable killswitch hides no target metric', async () => {
    const maintenance = await probeWith({ killswitch: async () => 'maintenance' });
    expect(metricValue(maintenance.metrics, M.killswitchMode)).toBe(2);

    const unreadable = await probeWith({
      killswitch: async () => {
        throw Object.assign(new Error('AccessDeniedException'), { name: 'AccessDeniedException' });
      },
    });
    expect(unreadable.metrics.filter((m) => m.name === M.killswitchMode)).toEqual([]);
    expect(metricValue(unreadable.metrics, M.redisUp)).toBe(1);
    expect(unreadable.logs).toContainEqual(expect.objectContaining({ level: 'ERROR', message: 'killswitch mode unreadable' }));
  });
});

describe('health probe: a Celery queue key that is not a list', () => {
  it.each([
    { kind: 'a string', setup: ['SET', 'dispatch', 'notalist'] },
    { kind: 'a hash', setup: ['HSET', 'dispatch', 'field', 'value'] },
  ])('reports Redis down for wrongtype, naming the queue key, when the dispatch key is $kind: Celery can queue no task there', async ({ setup }) => {
    // Arrange
    redis.cli(...setup);

    // Act
    const { result, metrics } = await probeWith({});

    // Assert
    expect(result.targets.find((t) => t.target === 'redis')).toMatchObject({ up: false, reason: 'wrongtype', detail: expect.stringContaining('the Celery queue key "dispatch" is not a list') });
    expect(metricValue(metrics, M.redisUp)).toBe(0);
  });
});

describe('health probe: a database whose connection slots are full', () => {
  it('names the refusal connections-full (SQLSTATE 53300), the server\'s words in the detail, instead of the generic error', async () => {
    // Arrange: a cluster of its own with 3 slots for non-superusers, all held by the application's role
    const full = await startPostgres({ extraSettings: ['-c max_connections=4', '-c superuser_reserved_connections=1'] });
    const holders = Array.from({ length: 3 }, () => testClient({ host: full.host, port: full.port, user: 'app', database: 'postgres' }));
    try {
      psql(full, 'postgres', 'CREATE ROLE app LOGIN; CREATE ROLE atmr_probe LOGIN;');
      for (const holder of holders) await holder.connect();

      // Act
      const { result, metrics, logs } = await captureProbeOutput(({ metrics, logger }) =>
        runProbe(
          { database: { timeoutMs: TIMEOUT_MS } },
          { metrics, logger, openDatabase: () => openDatabaseSession({ host: full.host, port: full.port, user: 'atmr_probe', database: 'postgres', sslMode: 'disable' }, TIMEOUT_MS) },
        ),
      );

      // Assert: which alarm pages is unchanged (DatabaseUp 0, no DbReadOnly); the reason says why
      expect(result.targets.find((t) => t.target === 'database')).toMatchObject({ up: false, reason: 'connections-full', detail: expect.stringContaining('remaining connection slots are reserved') });
      expect(metricValue(metrics, M.databaseUp)).toBe(0);
      expect(metrics.filter((m) => m.name === M.dbReadOnly)).toEqual([]);
      expect(logs.find((l) => l.message === 'probe run')).toMatchObject({ down: ['database:connections-full'], retried: [] });
    } finally {
      await Promise.all(holders.map((h) => h.end().catch(() => undefined)));
      stopPostgres(full);
    }
  });
});

describe('health probe: TLS', () => {
  it('reports a certificate the probe cannot trust as down with reason tls', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'probe-tls-'));
    const { key, cert } = selfSignedCertificate(dir);
    const server = https.createServer({ key: fs.readFileSync(key), cert: fs.readFileSync(cert) }, (_req, res) => res.end('ok'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = server.address() as AddressInfo;
      const { result, metrics } = await probeWith({ osrm: { healthUrl: `https://127.0.0.1:${port}/health`, timeoutMs: 2000, attempts: 1 } });

      expect(result.targets.find((t) => t.target === 'osrm')).toMatchObject({ up: false, reason: 'tls' });
      expect(metricValue(metrics, M.osrmAvailability)).toBe(0);
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('health probe: hung Redis and PostgreSQL', () => {
  it('reports a Redis and a database that accept but never answer as down (timeout) within their deadlines', async () => {
    const sockets: net.Socket[] = [];
    const blackhole = net.createServer((socket) => sockets.push(socket));
    await new Promise<void>((resolve) => blackhole.listen(0, '127.0.0.1', resolve));
    const { port } = blackhole.address() as AddressInfo;
    try {
      const started = Date.now();
      const { result, metrics } = await probeWith({ redisPort: port, databasePort: port });

      // Two attempts each (no answer): twice the deadline (2 s) and the pause, + margin.
      expect(Date.now() - started).toBeLessThan(2 * 2000 + RETRY_PAUSE_MS + 1500);
      expect(result.targets.filter((t) => ['redis', 'database'].includes(t.target)).map((t) => [t.target, t.reason])).toEqual(
        expect.arrayContaining([['redis', 'timeout'], ['database', 'timeout']]),
      );
      // The server took the connection: hung, not a network dropping the packets.
      for (const target of ['redis', 'database']) expect(result.targets.find((t) => t.target === target)?.detail).toBe('connected, no answer within 2 s');
      expect([metricValue(metrics, M.redisUp), metricValue(metrics, M.databaseUp)]).toEqual([0, 0]);
    } finally {
      sockets.forEach((s) => s.destroy());
      await new Promise((resolve) => blackhole.close(resolve));
    }
  });

  it('counts a hung database with /ready timing out as 2 failed checks of 7, as before the second attempts: Network-ProbeFailures does not page on top of the database alarm', async () => {
    // Arrange: the default targets (/health, /ready, 3 OSRM attempts, Redis, the database); the
    // database accepts and never answers, /ready (which asks the database) hangs with it. Counting
    // both attempts of each made it 4 of 9: 4 such runs of 10 were 16 of 78 checks, 20.5 %, over
    // the 20 % of "Réseau flaky"; first attempts only, 8 of 70, 11.4 %.
    const sockets: net.Socket[] = [];
    const blackhole = net.createServer((socket) => sockets.push(socket));
    await new Promise<void>((resolve) => blackhole.listen(0, '127.0.0.1', resolve));
    const api = await server({ '/health': { status: 200 }, '/ready': { status: 200, delayMs: 8000 } });
    try {
      // Act
      const { result, metrics } = await probeWith({
        api: { baseUrl: api.url, timeoutMs: TIMEOUT_MS },
        osrm: { healthUrl: `${api.url}/health`, timeoutMs: TIMEOUT_MS, attempts: 3, attemptSpacingMs: 10 },
        databasePort: (blackhole.address() as AddressInfo).port,
      });

      // Assert: both were tried twice, the second attempts decide the outcome and are not counted
      expect([metricValue(metrics, M.databaseUp), metricValue(metrics, M.apiReady), metricValue(metrics, M.redisUp)]).toEqual([0, 0, 1]);
      expect([metricValue(metrics, M.checksMade), metricValue(metrics, M.checksFailed)]).toEqual([7, 2]);
      expect([result.checksMade, result.checksFailed]).toEqual([7, 2]);
      expect(result.targets.filter((t) => t.secondAttempt).map((t) => [t.target, t.reason]).sort()).toEqual([['api-ready', 'timeout'], ['database', 'timeout']]);
    } finally {
      sockets.forEach((s) => s.destroy());
      await new Promise((resolve) => blackhole.close(resolve));
    }
  });
});

describe('health probe: a health URL that streams an endless body', () => {
  it.each([
    { status: 200, up: true, reason: undefined, outcome: 'up' },
    { status: 503, up: false, reason: 'http-503', outcome: 'down with reason http-503' },
  ])('reports an endless $status answer as $outcome at once, reading only the start of the body, instead of a timeout', async ({ status, up, reason }) => {
    // Arrange: headers at once, then megabytes for as long as the client reads (a misrouted URL, a
    // debug dump). Reading it all filled the probe's memory until the deadline called it "timeout".
    const chunk = Buffer.alloc(1 << 20, 'x');
    let sent = 0;
    const endless = http.createServer((_req, res) => {
      res.writeHead(status, { 'content-type': 'text/plain' });
      const pump = () => {
        while (!res.destroyed && res.write(chunk)) sent += chunk.length;
      };
      res.on('drain', pump);
      pump();
    });
    await new Promise<void>((resolve) => endless.listen(0, '127.0.0.1', resolve));
    const { port } = endless.address() as AddressInfo;
    try {
      // Act
      const { result, metrics } = await probeWith({ osrm: { healthUrl: `http://127.0.0.1:${port}/health`, timeoutMs: TIMEOUT_MS, attempts: 1 } });

      // Assert
      expect(result.targets.find((t) => t.target === 'osrm')).toMatchObject({ up, ...(reason && { reason }) });
      expect(result.targets.find((t) => t.target === 'osrm')?.latencyMs).toBeLessThan(TIMEOUT_MS);
      expect(metricValue(metrics, M.osrmAvailability)).toBe(up ? 100 : 0);
      expect(sent).toBeLessThan(64 << 20);
    } finally {
      endless.closeAllConnections();
      await new Promise((resolve) => endless.close(resolve));
    }
  });
});

describe('health probe: a Redis that requires AUTH', () => {
  let locked: LocalRedis;
  beforeAll(async () => {
    locked = await startRedis(['--requirepass', 'probe-token-7f3a']);
  });
  afterAll(async () => locked.stop());

  const probeLocked = (password?: string) =>
    captureProbeOutput(({ metrics, logger }) =>
      runProbe(
        { redis: { timeoutMs: TIMEOUT_MS, queues: ['celery'] } },
        { metrics, logger, openRedis: () => openRedisSession({ host: '127.0.0.1', port: locked.port, tls: false, timeoutMs: TIMEOUT_MS, password }) },
      ),
    );

  it.each([
    ['no token (NOAUTH)', undefined, /NOAUTH/],
    ['a token the server does not hold (WRONGPASS)', 'not-the-token', /WRONGPASS/],
  ])('with %s, is Redis down (RedisUp 0: a Redis that lost its AUTH/ACL refuses the app too), its detail naming both causes', async (_what, password, refusal) => {
    // Act
    const { result, metrics, logs } = await probeLocked(password);

    // Assert: Health-RedisDown is fed a 0 (it holds the automatic rollbacks), and Network-ProbeFailures
    // its usual inputs (one check made, one failed, RedisUp 0: the window left out, Redis's own alarm pages).
    const detail = new RegExp(
      `^redis refused the probe's login \\(.*${refusal.source}.*\\): either the probe's token \\(detection\\.probe\\.redis\\.authSecretArn\\) is wrong or Redis lost its AUTH/ACL; if the API's /ready says redis ok, fix the probe's token$`,
    );
    expect(result.targets.find((t) => t.target === 'redis')).toMatchObject({ up: false, reason: 'auth', detail: expect.stringMatching(detail) });
    expect([metricValue(metrics, M.redisUp), metricValue(metrics, M.checksMade), metricValue(metrics, M.checksFailed)]).toEqual([0, 1, 1]);
    expect(logs).toContainEqual(expect.objectContaining({ message: 'probe target down', target: 'redis', reason: 'auth', detail: expect.stringMatching(detail) }));
  });

  it("gives the server's words once in the detail, though ioredis' error is its own cause", async () => {
    // Act
    const { result } = await probeLocked('not-the-token');

    // Assert
    const detail = result.targets.find((t) => t.target === 'redis')?.detail ?? '';
    expect(detail.match(/WRONGPASS/g)).toEqual(['WRONGPASS']);
    expect(detail).toMatch(/^redis refused the probe's login \(ReplyError: WRONGPASS invalid username-password pair or user is disabled\.\): either/);
  });

  it('is up, with its queue depth, once the probe sends the AUTH token', async () => {
    // Act
    const { result, metrics } = await probeLocked('probe-token-7f3a');

    // Assert
    expect(result.targets.find((t) => t.target === 'redis')).toMatchObject({ up: true });
    expect(metricValue(metrics, M.redisUp)).toBe(1);
    expect(metricValue(metrics, M.celeryQueueDepthTotal)).toBe(0);
  });
});

/** The probe with Redis alone (queue `celery`), against the redis-server on `port`. */
const probeRedis = (port: number, redisEvictions?: EvictedKeysCounter) =>
  captureProbeOutput(({ metrics, logger }) =>
    runProbe(
      { redis: { timeoutMs: TIMEOUT_MS, queues: ['celery'] } },
      { metrics, logger, openRedis: () => openRedisSession({ host: '127.0.0.1', port, tls: false, timeoutMs: TIMEOUT_MS }), ...(redisEvictions && { redisEvictions }) },
    ),
  );

describe('health probe: a Redis that answers reads but refuses writes', () => {
  const started: LocalRedis[] = [];
  const start = async (args: string[]) => {
    const r = await startRedis(args);
    started.push(r);
    return r;
  };
  afterAll(async () => {
    await Promise.all(started.map((r) => r.stop()));
  });

  it('reports a read-only replica (a failover, a stale endpoint) down as readonly, with its queue depth', async () => {
    // Arrange: a replica of a primary that is gone, as an endpoint left on the old node is
    const replica = await start(['--replicaof', '127.0.0.1', String(closedPort)]);
    expect(replica.cli('LPUSH', 'celery', 'x')).toMatch(/^READONLY/);

    // Act
    const { result, metrics, logs } = await probeRedis(replica.port);

    // Assert
    expect(result.targets.find((t) => t.target === 'redis')).toMatchObject({ up: false, reason: 'readonly', detail: expect.stringContaining('READONLY') });
    expect(metricValue(metrics, M.redisUp)).toBe(0);
    expect(metricValue(metrics, M.celeryQueueDepthTotal)).toBe(0);
    expect(logs).toContainEqual(expect.objectContaining({ message: 'probe target down', target: 'redis', reason: 'readonly' }));
  });

  it('reports a Redis at maxmemory with noeviction down as oom and still publishes its memory', async () => {
    // Arrange: maxmemory 1 byte: every write is refused at once
    const full = await start(['--maxmemory', '1', '--maxmemory-policy', 'noeviction']);

    // Act
    const { result, metrics } = await probeRedis(full.port);

    // Assert
    expect(result.targets.find((t) => t.target === 'redis')).toMatchObject({ up: false, reason: 'oom', detail: expect.stringContaining('OOM command not allowed') });
    expect(metricValue(metrics, M.redisUp)).toBe(0);
    expect(metricValue(metrics, M.redisMemoryUsedPercent)).toBeGreaterThan(100);
  });

  it('reports a Redis that stopped writes after a failed background save down as misconf', async () => {
    // Arrange: save points and a dir no one can write to (/proc, even for root): BGSAVE fails, and
    // stop-writes-on-bgsave-error (the default) refuses writes and PING
    const stopped = await start(['--dir', '/proc', '--save', '3600 1']);
    try {
      stopped.cli('BGSAVE');
      for (let i = 0; i < 100 && !stopped.cli('INFO', 'persistence').includes('rdb_last_bgsave_status:err'); i++) await new Promise((r) => setTimeout(r, 50));

      // Act
      const { result, metrics } = await probeRedis(stopped.port);

      // Assert
      expect(result.targets.find((t) => t.target === 'redis')).toMatchObject({ up: false, reason: 'misconf', detail: expect.stringContaining('MISCONF') });
      expect(metricValue(metrics, M.redisUp)).toBe(0);
    } finally {
      // Without save points again, or SIGTERM's save to /proc fails and Redis refuses to stop.
      stopped.cli('CONFIG', 'SET', 'save', '');
    }
  });

  it('reports a Redis with room for a few bytes but not for a Celery task down as oom, though a 13-byte write still passes', async () => {
    // Arrange: the probe's key already there (it is written every minute; a first key with an expiry
    // costs Redis a few KB of its own), 1500-byte tasks pushed until Redis refuses one (maxmemory
    // 1200000, noeviction), then the limit raised in 256-byte steps only until a fresh connection
    // overwrites the key with a 13-byte timestamp: a Redis where a probe writing that alone saw
    // "up" while a task pushed by a fresh connection is refused.
    const full = await start(['--maxmemory', '1200000', '--maxmemory-policy', 'noeviction']);
    full.cli('SET', REDIS_WRITE_CHECK_KEY, String(Date.now()), 'EX', '120');
    const task = 'x'.repeat(1500);
    const writer = new Redis({ host: '127.0.0.1', port: full.port, maxRetriesPerRequest: 0 });
    const fresh = async <T>(use: (client: Redis) => Promise<T>) => {
      const client = new Redis({ host: '127.0.0.1', port: full.port, maxRetriesPerRequest: 0 });
      try {
        return await use(client);
      } finally {
        // QUIT, answered once the server has freed the connection: the next one meets the same memory.
        await client.quit();
      }
    };
    const refusalOf = (write: Promise<unknown>) => write.then(() => undefined, (error: Error) => error.message);
    const taskRefusal = () => fresh((c) => refusalOf(c.lpush('celery', task)));
    try {
      let refusal: string | undefined;
      for (let i = 0; i < 2000 && !refusal; i++) refusal = await refusalOf(writer.lpush('celery', task));
      expect(refusal).toMatch(/^OOM command not allowed when used memory > 'maxmemory'/);
      // Gone before the search: Redis frees an idle connection's buffers after 2 s, which would
      // change the memory in the middle of it.
      await writer.quit();
      // The smallest limit (to 256 bytes) at which the timestamp is written: 8 KB steps, then 256-byte
      // ones from the last refused. Overwriting the key with as many bytes leaves the memory as it is.
      const timestampWritten = async (limit: number) => {
        full.cli('CONFIG', 'SET', 'maxmemory', String(limit));
        return !(await fresh(async (c) => {
          await c.ping();
          await c.llen('celery');
          return refusalOf(c.set(REDIS_WRITE_CHECK_KEY, String(Date.now()), 'EX', 120));
        }));
      };
      let limit = 1_200_000;
      while (limit < 1_500_000 && !(await timestampWritten(limit + 8192))) limit += 8192;
      while (limit < 1_500_000 && !(await timestampWritten(limit + 256))) limit += 256;
      expect(limit).toBeLessThan(1_500_000);
      expect(await taskRefusal()).toMatch(/^OOM/);

      // Act
      const { result, metrics } = await probeRedis(full.port);

      // Assert
      expect(result.targets.find((t) => t.target === 'redis')).toMatchObject({ up: false, reason: 'oom', detail: expect.stringContaining('OOM command not allowed') });
      expect(metricValue(metrics, M.redisUp)).toBe(0);
      expect(await taskRefusal()).toMatch(/^OOM/);
    } finally {
      writer.disconnect();
    }
  });

  it('writes its check key with a short expiry, so its few KB are gone seconds after a run', async () => {
    // Act
    const { result } = await probeRedis(redis.port);

    // Assert
    expect(result.targets.find((t) => t.target === 'redis')).toMatchObject({ up: true });
    expect(Number(redis.cli('STRLEN', REDIS_WRITE_CHECK_KEY))).toBe(REDIS_WRITE_CHECK_BYTES);
    const ttl = Number(redis.cli('TTL', REDIS_WRITE_CHECK_KEY));
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(REDIS_WRITE_CHECK_TTL_SECONDS);
  });
});

describe('health probe: Redis memory (INFO memory)', () => {

  describe('a full Redis (maxmemory reached, noeviction)', () => {
    let full: LocalRedis;
    beforeAll(async () => {
      full = await startRedis(['--maxmemory', '2mb', '--maxmemory-policy', 'noeviction']);
    });
    afterAll(async () => full.stop());

    it('is down (oom: its write check refused, though PING and LLEN still answer) and still reports RedisMemoryUsedPercent >= 90 with its eviction policy', async () => {
      // Arrange: a writer (what Celery does with every task) fills a list until Redis refuses the write.
      const writer = new Redis({ host: '127.0.0.1', port: full.port, maxRetriesPerRequest: 0, lazyConnect: true });
      await writer.connect();
      const task = 'x'.repeat(16 * 1024);
      let refusal: Error | undefined;
      try {
        for (let i = 0; i < 1000 && !refusal; i++) await writer.rpush('celery', task).catch((error: Error) => (refusal = error));
      } finally {
        writer.disconnect();
      }
      expect(refusal?.message).toMatch(/^OOM command not allowed when used memory > 'maxmemory'/);

      // Act
      const { result, metrics } = await probeRedis(full.port);

      // Assert
      expect(result.targets.find((t) => t.target === 'redis')).toMatchObject({ up: false, reason: 'oom' });
      expect(metricValue(metrics, M.redisUp)).toBe(0);
      expect(metricValue(metrics, M.celeryQueueDepthTotal)).toBeGreaterThan(0);
      expect(metricValue(metrics, M.redisMemoryUsedPercent)).toBeGreaterThanOrEqual(90);
      expect(metrics.find((m) => m.name === M.redisMemoryUsedPercent)).toMatchObject({ unit: 'Percent', dimensions: { service: 'detection-probe' } });
      expect(result.redisMemory).toMatchObject({ maxmemoryBytes: 2 * 1024 * 1024, policy: 'noeviction' });
    });
  });

  describe('a Redis with INFO disabled (rename-command INFO "")', () => {
    let noInfo: LocalRedis;
    beforeAll(async () => {
      noInfo = await startRedis(['--maxmemory', '2mb', '--rename-command', 'INFO', '']);
    });
    afterAll(async () => noInfo.stop());

    it('is still up with its queue depth, publishes no RedisMemoryUsedPercent and logs a warning', async () => {
      // Arrange: a managed Redis that refuses INFO still answers PING and LLEN
      noInfo.cli('RPUSH', 'celery', 'a');

      // Act
      const { result, metrics, logs } = await probeRedis(noInfo.port);

      // Assert
      expect(result.targets.find((t) => t.target === 'redis')).toMatchObject({ up: true });
      expect(metricValue(metrics, M.redisUp)).toBe(1);
      expect(metricValue(metrics, M.celeryQueueDepthTotal)).toBe(1);
      expect(metrics.filter((m) => m.name === M.redisMemoryUsedPercent)).toEqual([]);
      expect(logs).toContainEqual(expect.objectContaining({ level: 'WARN', message: expect.stringContaining('INFO memory'), detail: expect.stringMatching(/unknown command/i) }));
    });
  });

  it('stays up when INFO never answers (a Redis busy with it, a proxy that drops it): the memory figure is given up, not RedisUp', async () => {
    // Arrange: a TCP proxy to the suite's Redis that forwards everything but INFO, which it swallows
    const proxy = net.createServer((client) => {
      const upstream = net.connect(redis.port, '127.0.0.1');
      upstream.pipe(client);
      client.on('data', (chunk: Buffer) => {
        if (!/\binfo\b/i.test(chunk.toString('latin1'))) upstream.write(chunk);
      });
      const end = () => (client.destroy(), upstream.destroy());
      client.on('close', end).on('error', end);
      upstream.on('close', end).on('error', end);
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    try {
      // Act
      const { result, metrics, logs } = await probeRedis((proxy.address() as AddressInfo).port);

      // Assert
      expect(result.targets.find((t) => t.target === 'redis')).toMatchObject({ up: true });
      expect(metricValue(metrics, M.redisUp)).toBe(1);
      expect(metrics.filter((m) => m.name === M.redisMemoryUsedPercent)).toEqual([]);
      expect(logs).toContainEqual(expect.objectContaining({ level: 'WARN', message: expect.stringContaining('INFO memory'), reason: 'timeout' }));
    } finally {
      proxy.close();
    }
  });

  it('publishes no RedisMemoryUsedPercent for a Redis without maxmemory (0: no limit), and still reports its eviction policy', async () => {
    // Act: the suite's Redis runs with the default maxmemory 0
    const { result, metrics } = await probeRedis(redis.port);

    // Assert
    expect(metricValue(metrics, M.redisUp)).toBe(1);
    expect(metrics.filter((m) => m.name === M.redisMemoryUsedPercent)).toEqual([]);
    expect(result.redisMemory).toMatchObject({ maxmemoryBytes: 0, policy: 'noeviction' });
    expect(result.redisMemory?.usedBytes).toBeGreaterThan(0);
  });
});

describe('health probe: a Redis that evicts keys (INFO stats evicted_keys)', () => {
  let evicting: LocalRedis;
  beforeAll(async () => {
    evicting = await startRedis(['--maxmemory', '2mb', '--maxmemory-policy', 'allkeys-lru']);
  });
  afterAll(async () => evicting.stop());
  const evictedKeys = () => Number(/evicted_keys:(\d+)/.exec(evicting.cli('INFO', 'stats'))![1]);
  const published = (metrics: { name: string }[], name: string) => metrics.filter((m) => m.name === name);

  it('publishes the keys evicted since its previous reading (none at the first), the allkeys-* policy as 1, 0 when nothing more was evicted, and the policy 0 once noeviction', async () => {
    // Arrange: one probe container (its counter), a Celery queue with tasks queued, as kombu pushes them.
    const counter = new EvictedKeysCounter();
    const message = (id: number) => JSON.stringify({ body: 'x'.repeat(1024), headers: { id: `task-${id}`, task: 'dispatch.assign' }, properties: { delivery_tag: `tag-${id}` } });
    for (let i = 0; i < 20; i++) evicting.cli('LPUSH', 'celery', message(i));

    // Act: a first reading, then task results written until a full Redis evicts, then room made
    // (the limit doubled, the policy unchanged) so that nothing more is evicted, and two readings.
    const first = await probeRedis(evicting.port, counter);
    const before = evictedKeys();
    const writer = new Redis({ host: '127.0.0.1', port: evicting.port, maxRetriesPerRequest: 0 });
    try {
      // allkeys-lru refuses nothing: every write succeeds, and older keys (the queue among them) go.
      for (let i = 0; i < 2000 && evictedKeys() === before; i++) await writer.set(`celery-task-meta-${i}`, 'r'.repeat(16 * 1024));
    } finally {
      await writer.quit();
    }
    // A full Redis evicts before any command (INFO and CONFIG included) when a new connection's
    // buffers take it over the limit: the counter is read once the room is made, and stands still after.
    evicting.cli('CONFIG', 'SET', 'maxmemory', '4mb');
    const evicted = evictedKeys();
    const second = await probeRedis(evicting.port, counter);
    const third = await probeRedis(evicting.port, counter);

    // Assert: the first reading has no base (the counter counts since Redis started), so no delta.
    const firstTotal = first.result.redisEvictions!.total;
    expect(firstTotal).toBeLessThanOrEqual(before);
    expect(evicted).toBeGreaterThan(before);
    expect(published(first.metrics, M.redisEvictedKeys)).toEqual([]);
    expect(first.result.redisEvictions).toEqual({ total: firstTotal });
    expect(metricValue(first.metrics, M.redisPolicyEvictsKeys)).toBe(1);
    expect(metricValue(first.metrics, M.redisUp)).toBe(1);
    // The second: every key evicted since the first, the policy still 1, Redis up (it refused nothing).
    expect(second.result.redisEvictions).toEqual({ total: evicted, sincePrevious: evicted - firstTotal });
    expect(metricValue(second.metrics, M.redisEvictedKeys)).toBe(evicted - firstTotal);
    expect(second.metrics.find((m) => m.name === M.redisEvictedKeys)).toMatchObject({ unit: 'Count', dimensions: { service: 'detection-probe' } });
    expect(metricValue(second.metrics, M.redisPolicyEvictsKeys)).toBe(1);
    expect(metricValue(second.metrics, M.redisUp)).toBe(1);
    expect(second.logs).toContainEqual(
      expect.objectContaining({ level: 'ERROR', message: expect.stringMatching(/^redis evicted \d+ key\(s\) since the previous run \(maxmemory_policy allkeys-lru\): queued Celery tasks .* noeviction/), evictedKeys: evicted - firstTotal }),
    );
    // The third, nothing evicted since the second: 0 (a datapoint, not silence), no line; the policy still 1.
    expect(evictedKeys()).toBe(evicted);
    expect(metricValue(third.metrics, M.redisEvictedKeys)).toBe(0);
    expect(metricValue(third.metrics, M.redisPolicyEvictsKeys)).toBe(1);
    expect(third.logs.filter((l) => /^redis evicted/.test(String(l.message)))).toEqual([]);

    // Arrange: the fix the alarm asks for.
    evicting.cli('CONFIG', 'SET', 'maxmemory-policy', 'noeviction');

    // Act
    const fixed = await probeRedis(evicting.port, counter);

    // Assert
    expect(metricValue(fixed.metrics, M.redisPolicyEvictsKeys)).toBe(0);
    expect(metricValue(fixed.metrics, M.redisEvictedKeys)).toBe(0);
  });

  it('takes a reset counter (CONFIG RESETSTAT, as after a restart) as the keys evicted since, not a negative count', async () => {
    // Arrange: a counter that read a higher total, then the server's counter reset and a few evictions.
    evicting.cli('CONFIG', 'SET', 'maxmemory-policy', 'allkeys-lru');
    evicting.cli('CONFIG', 'SET', 'maxmemory', '2mb');
    const counter = new EvictedKeysCounter();
    counter.next(1_000_000);
    evicting.cli('CONFIG', 'RESETSTAT');
    const writer = new Redis({ host: '127.0.0.1', port: evicting.port, maxRetriesPerRequest: 0 });
    try {
      for (let i = 0; i < 2000 && evictedKeys() === 0; i++) await writer.set(`celery-task-meta-reset-${i}`, 'r'.repeat(16 * 1024));
    } finally {
      await writer.quit();
    }

    // Act
    const { result, metrics } = await probeRedis(evicting.port, counter);

    // Assert: the reset counter's whole value, what the probe read (the Redis is full: its own connection may evict more).
    const total = result.redisEvictions!.total;
    expect(total).toBeGreaterThan(0);
    expect(total).toBeLessThan(1_000_000);
    expect(metricValue(metrics, M.redisEvictedKeys)).toBe(total);
  });

  it('publishes the policy as 0 and no eviction delta without a counter for a noeviction Redis', async () => {
    // Act: the suite's Redis (noeviction, the default), a probe with no counter
    const { result, metrics } = await probeRedis(redis.port);

    // Assert
    expect(metricValue(metrics, M.redisPolicyEvictsKeys)).toBe(0);
    expect(published(metrics, M.redisEvictedKeys)).toEqual([]);
    expect(result.redisEvictions).toEqual({ total: 0 });
  });
});

describe('health probe: a second attempt when Redis, the database or /ready gets no answer', () => {
  // One lost connection (refused, reset, DNS, timeout) no longer makes a bad minute: the check is
  // made again after a short pause and the run's outcome is the last attempt's. Only the first
  // attempt is a check made (and failed), so ProbeChecksFailed / ProbeChecksMade reads a flaky
  // network's failure rate exactly and a hung dependency fails no more checks than before the
  // second attempt. An answer that says the dependency is bad is its state: one attempt.
  const runLine = (logs: Record<string, unknown>[]) => logs.find((l) => l.message === 'probe run');
  const counts = (metrics: Parameters<typeof metricValue>[0]) => [metricValue(metrics, M.checksMade), metricValue(metrics, M.checksFailed)];

  describe('Redis', () => {
    let proxy: DroppingProxy;
    beforeAll(async () => {
      proxy = await startDroppingProxy(redis.port);
    });
    afterAll(async () => proxy.stop());

    it('is up (RedisUp 1) with 1 check made and 1 failed (its first attempt) when only the first connection of the run is dropped, the retried reason in the run line', async () => {
      // Arrange
      proxy.drop(1);

      // Act
      const { result, metrics, logs } = await probeRedis(proxy.port);

      // Assert
      expect(metricValue(metrics, M.redisUp)).toBe(1);
      expect(counts(metrics)).toEqual([1, 1]);
      expect(result.targets.map((t) => [t.target, t.up, t.retried, t.secondAttempt])).toEqual([['redis', false, true, undefined], ['redis', true, undefined, true]]);
      // ioredis says "Connection is closed" (refused) or ECONNRESET, depending on when it sees the close.
      expect(runLine(logs)).toMatchObject({ checksMade: 1, checksFailed: 1, down: [], retried: [expect.stringMatching(/^redis:(refused|reset)$/)] });
      expect(metricValue(metrics, M.celeryQueueDepthTotal)).toBe(0);
    });

    it('is down (RedisUp 0) with 1 check made and 1 failed when both connections are dropped', async () => {
      // Arrange
      proxy.drop(2);

      // Act
      const { metrics, logs } = await probeRedis(proxy.port);

      // Assert
      expect(metricValue(metrics, M.redisUp)).toBe(0);
      expect(counts(metrics)).toEqual([1, 1]);
      expect(runLine(logs)).toMatchObject({ down: [expect.stringMatching(/^redis:(refused|reset)$/)], retried: [expect.stringMatching(/^redis:(refused|reset)$/)] });
    });

    it('makes one attempt when a replica refuses the write check (an answer: its state), RedisUp 0', async () => {
      // Arrange
      const replica = await startRedis(['--replicaof', '127.0.0.1', String(closedPort)]);
      try {
        // Act
        const { metrics, logs } = await probeRedis(replica.port);

        // Assert
        expect(metricValue(metrics, M.redisUp)).toBe(0);
        expect(counts(metrics)).toEqual([1, 1]);
        expect(runLine(logs)).toMatchObject({ down: ['redis:readonly'], retried: [] });
      } finally {
        await replica.stop();
      }
    });
  });

  describe('the database', () => {
    let proxy: DroppingProxy;
    beforeAll(async () => {
      proxy = await startDroppingProxy(testCluster().port);
    });
    afterAll(async () => proxy.stop());
    const probeDatabase = () =>
      captureProbeOutput(({ metrics, logger }) =>
        runProbe({ database: { timeoutMs: TIMEOUT_MS } }, { metrics, logger, openDatabase: () => openDatabaseSession(connection(proxy.port), TIMEOUT_MS) }),
      );

    it('is up (DatabaseUp 1, DbReadOnly 0) with 1 check made and 1 failed (its first attempt) when only the first connection of the run is dropped', async () => {
      // Arrange
      proxy.drop(1);

      // Act
      const { metrics, logs } = await probeDatabase();

      // Assert
      expect([metricValue(metrics, M.databaseUp), metricValue(metrics, M.dbReadOnly)]).toEqual([1, 0]);
      expect(counts(metrics)).toEqual([1, 1]);
      expect(runLine(logs)).toMatchObject({ down: [], retried: ['database:reset'] });
      expect(proxy.connections).toBeGreaterThanOrEqual(2);
    });

    it('is down (DatabaseUp 0) with 1 check made and 1 failed when both connections are dropped', async () => {
      // Arrange
      proxy.drop(2);

      // Act
      const { metrics, logs } = await probeDatabase();

      // Assert
      expect(metricValue(metrics, M.databaseUp)).toBe(0);
      expect(counts(metrics)).toEqual([1, 1]);
      expect(runLine(logs)).toMatchObject({ down: ['database:reset'], retried: ['database:reset'] });
    });

    it('makes one attempt when the database answers read-only (its state): DbReadOnly 1', async () => {
      // Arrange
      proxy.drop(0);
      psql(testCluster(), 'postgres', `ALTER DATABASE ${database} SET default_transaction_read_only = on`);
      try {
        // Act
        const { metrics, logs } = await probeDatabase();

        // Assert
        expect([metricValue(metrics, M.databaseUp), metricValue(metrics, M.dbReadOnly)]).toEqual([1, 1]);
        expect(counts(metrics)).toEqual([1, 0]);
        expect(runLine(logs)).toMatchObject({ retried: [] });
      } finally {
        psql(testCluster(), 'postgres', `ALTER DATABASE ${database} RESET default_transaction_read_only`);
      }
    });
  });

  describe("the API's /ready", () => {
    // /ready closes the connection without answering for its first `dropped` requests, then answers `status`.
    const readyServer = async (dropped: number, status: number) => {
      let requests = 0;
      const api = http.createServer((req, res) => {
        if (req.url === '/ready' && ++requests <= dropped) {
          req.socket.destroy();
          return;
        }
        res.writeHead(status).end(status !== 200 ? '' : req.url === '/ready' ? READY_BODY : '{"status": "ok"}');
      });
      await new Promise<void>((resolve) => api.listen(0, '127.0.0.1', resolve));
      servers.push({ close: () => new Promise<void>((resolve) => (api.closeAllConnections(), api.close(() => resolve()))) });
      return { url: `http://127.0.0.1:${(api.address() as AddressInfo).port}`, requests: () => requests };
    };
    // /ready alone: the API settings also check /health, whose single check is counted here too.
    const probeReady = (url: string) => captureProbeOutput(({ metrics, logger }) => runProbe({ api: { baseUrl: url, timeoutMs: TIMEOUT_MS } }, { metrics, logger }));

    it('is ready (ApiReady 1) with 1 of 2 checks failed (/health, the first /ready attempt) when only the first /ready request is dropped', async () => {
      // Arrange
      const api = await readyServer(1, 200);

      // Act
      const { metrics, logs } = await probeReady(api.url);

      // Assert
      expect([metricValue(metrics, M.apiLive), metricValue(metrics, M.apiReady)]).toEqual([1, 1]);
      expect(counts(metrics)).toEqual([2, 1]);
      expect(runLine(logs)).toMatchObject({ down: [], retried: ['api-ready:reset'] });
      expect(api.requests()).toBe(2);
    });

    it('is not ready (ApiReady 0) with 1 of 2 checks failed when both /ready requests are dropped', async () => {
      // Arrange
      const api = await readyServer(2, 200);

      // Act
      const { metrics, logs } = await probeReady(api.url);

      // Assert
      expect(metricValue(metrics, M.apiReady)).toBe(0);
      expect(counts(metrics)).toEqual([2, 1]);
      expect(runLine(logs)).toMatchObject({ down: ['api-ready:reset'], retried: ['api-ready:reset'] });
    });

    it.each([
      ['a status other than ready', '{"status": "not ready", "checks": {"database": "error", "redis": "ok"}}'],
      ['a check not ok', '{"status": "ready", "checks": {"database": "ok", "redis": "not_configured"}}'],
      ['an error object', '{"error": "Internal Server Error"}'],
      ['an HTML page', '<html><body>Service unavailable</body></html>'],
      ['no body', ''],
    ])('is not ready (ApiReady 0, reason not-ready, asked once) when /ready answers 200 with %s, not the runbook\'s {"status": "ready", ...}', async (_what, body) => {
      // Arrange
      const api = await server({ '/health': { status: 200 }, '/ready': { status: 200, body } });

      // Act
      const { metrics, logs } = await probeReady(api.url);

      // Assert: an answer, the API's state: not tried again.
      expect([metricValue(metrics, M.apiLive), metricValue(metrics, M.apiReady)]).toEqual([1, 0]);
      expect(counts(metrics)).toEqual([2, 1]);
      expect(runLine(logs)).toMatchObject({ down: ['api-ready:not-ready'], retried: [] });
      expect(logs).toContainEqual(expect.objectContaining({ message: 'probe target down', target: 'api-ready', reason: 'not-ready', detail: `HTTP 200: ${body}` }));
      expect(api.hits['/ready']).toBe(1);
    });

    it('is ready (ApiReady 1) when /ready answers 200 with the runbook\'s body, and with its status alone', async () => {
      for (const body of [READY_BODY, '{"status":"ready"}']) {
        // Arrange
        const api = await server({ '/health': { status: 200 }, '/ready': { status: 200, body } });

        // Act
        const { metrics } = await probeReady(api.url);

        // Assert
        expect([body, metricValue(metrics, M.apiReady)]).toEqual([body, 1]);
      }
    });

    it('asks /ready once when it answers 503 (the API says it is not ready)', async () => {
      // Arrange
      const api = await readyServer(0, 503);

      // Act
      const { metrics, logs } = await probeReady(api.url);

      // Assert: /health answers 503 too here; each once
      expect(metricValue(metrics, M.apiReady)).toBe(0);
      expect(counts(metrics)).toEqual([2, 2]);
      expect(runLine(logs)).toMatchObject({ retried: [] });
      expect(api.requests()).toBe(1);
    });
  });
});

describe('health probe: /health answers 200 with a body that is not the runbook\'s {"status": "ok"}', () => {
  const probeApi = (url: string) => captureProbeOutput(({ metrics, logger }) => runProbe({ api: { baseUrl: url, timeoutMs: TIMEOUT_MS } }, { metrics, logger }));
  const NGINX_WELCOME = '<!DOCTYPE html><html><head><title>Welcome to nginx!</title></head><body><h1>Welcome to nginx!</h1></body></html>';

  it.each([
    ['a proxy\'s default page (nginx welcome)', NGINX_WELCOME],
    ['another status', '{"status": "error"}'],
    ['an error object', '{"error": "Internal Server Error"}'],
    ['no body', ''],
  ])('is not live (ApiLive 0, reason not-live, the body in the detail) with %s', async (_what, body) => {
    // Arrange
    const api = await server({ '/health': { status: 200, body }, '/ready': { status: 200, body: READY_BODY } });

    // Act
    const { result, metrics, logs } = await probeApi(api.url);

    // Assert
    expect([metricValue(metrics, M.apiLive), metricValue(metrics, M.apiReady)]).toEqual([0, 1]);
    expect(result.targets.find((t) => t.target === 'api-health')).toMatchObject({ up: false, reason: 'not-live', detail: `HTTP 200: ${body}` });
    expect(logs).toContainEqual(expect.objectContaining({ message: 'probe target down', target: 'api-health', reason: 'not-live' }));
  });

  it('is live (ApiLive 1) with the runbook\'s body', async () => {
    // Arrange
    const api = await server({ '/health': { status: 200, body: '{"status": "ok"}' }, '/ready': { status: 200, body: READY_BODY } });

    // Act
    const { metrics } = await probeApi(api.url);

    // Assert
    expect(metricValue(metrics, M.apiLive)).toBe(1);
  });
});

describe('health probe: /health and /ready bodies that start with a UTF-8 byte order mark', () => {
  it('reads them as the runbook\'s JSON (ApiLive 1, ApiReady 1): a BOM some frameworks and proxies write is not a body that says down', async () => {
    // Arrange: the bytes EF BB BF, then the runbook's answers
    const BOM = '\uFEFF';
    const api = await server({ '/health': { status: 200, body: `${BOM}{"status": "ok"}` }, '/ready': { status: 200, body: `${BOM}${READY_BODY}` } });

    // Act
    const { result, metrics } = await captureProbeOutput(({ metrics, logger }) => runProbe({ api: { baseUrl: api.url, timeoutMs: TIMEOUT_MS } }, { metrics, logger }));

    // Assert
    expect([metricValue(metrics, M.apiLive), metricValue(metrics, M.apiReady)]).toEqual([1, 1]);
    expect(result.down).toEqual([]);
  });
});
