import { openDatabaseSession, openRedisSession } from '../../../lambdas/detection/clients';
import { runProbe, type ProbeDeps } from '../../../lambdas/detection/probe';
import { checkHttp, noAnswerDetail } from '../../../lambdas/detection/targets';
import { startSilentEndpoint, type LocalEndpoint } from '../../support/aws-endpoints';
import { freePort } from '../../support/postgres';
import { captureProbeOutput } from './fixtures';

// A check that times out says how far it went: a server that accepted the TCP connection and never
// answered (a hung process: look at it) reads otherwise than no connection at all (a security
// group or a network rule dropping the packets: look at the path to it). The accepted-but-silent
// server is real (127.0.0.1); a host dropping SYNs cannot be made deterministic on 127.0.0.1, so the
// "no connection" side is a port where nothing listens under a request or session that never ends.

const TIMEOUT_MS = 300;
const neverAnswers = (() => new Promise<Response>(() => undefined)) as typeof fetch;
const neverOpens = () => new Promise<never>(() => undefined);

let silent: LocalEndpoint;
let silentPort: number;
beforeAll(async () => {
  silent = await startSilentEndpoint();
  silentPort = Number(new URL(silent.url).port);
});
afterAll(async () => silent.stop());

describe('noAnswerDetail', () => {
  it('words a connection made and none made apart, with the deadline', () => {
    expect(noAnswerDetail(true, 3000)).toBe('connected, no answer within 3 s');
    expect(noAnswerDetail(true, 300, 'HTTP answer')).toBe('connected, no HTTP answer within 0.3 s');
    expect(noAnswerDetail(false, 3000)).toBe('no TCP connection within 3 s');
    expect(noAnswerDetail(false, 300, 'HTTP answer')).toBe('no TCP connection within 0.3 s');
  });
});

describe('checkHttp that times out', () => {
  it('a server that accepts and never answers: reason timeout, "connected, no HTTP answer within 0.3 s"', async () => {
    const result = await checkHttp(`${silent.url}/ready`, TIMEOUT_MS);

    expect(result).toMatchObject({ up: false, reason: 'timeout', detail: 'connected, no HTTP answer within 0.3 s' });
    // The connection is tried alongside the request: no second deadline on top of the first.
    expect(result.latencyMs).toBeLessThan(2 * TIMEOUT_MS);
  });

  it('no connection accepted either: reason timeout, "no TCP connection within 0.3 s"', async () => {
    const result = await checkHttp(`http://127.0.0.1:${await freePort()}/ready`, TIMEOUT_MS, neverAnswers);

    expect(result).toMatchObject({ up: false, reason: 'timeout', detail: 'no TCP connection within 0.3 s' });
  });
});

describe('the probe\'s Redis and PostgreSQL sessions that time out', () => {
  const probe = (port: number, deps: Pick<ProbeDeps, 'openRedis' | 'openDatabase'> = {}) =>
    captureProbeOutput(({ metrics, logger }) =>
      runProbe(
        { redis: { host: '127.0.0.1', port, timeoutMs: TIMEOUT_MS, queues: ['celery'] }, database: { host: '127.0.0.1', port, timeoutMs: TIMEOUT_MS } },
        {
          metrics,
          logger,
          openRedis: deps.openRedis ?? (() => openRedisSession({ host: '127.0.0.1', port, tls: false, timeoutMs: TIMEOUT_MS })),
          openDatabase: deps.openDatabase ?? (() => openDatabaseSession({ host: '127.0.0.1', port, user: 'probe', database: 'atmr', sslMode: 'disable' }, TIMEOUT_MS)),
        },
      ),
    );

  it('a server that accepts and never answers (real ioredis and node-postgres clients): "connected, no answer within 0.3 s", in the report and the log line', async () => {
    const { result, logs } = await probe(silentPort);

    for (const target of ['redis', 'database']) {
      // Both attempts (no answer: tried again) say so.
      expect(result.targets.filter((t) => t.target === target).map((t) => [t.reason, t.detail])).toEqual([
        ['timeout', 'connected, no answer within 0.3 s'],
        ['timeout', 'connected, no answer within 0.3 s'],
      ]);
      expect(logs).toContainEqual(expect.objectContaining({ message: 'probe target down', target, reason: 'timeout', detail: 'connected, no answer within 0.3 s' }));
    }
  });

  it('no connection accepted at the host and port: "no TCP connection within 0.3 s"', async () => {
    const { result } = await probe(await freePort(), { openRedis: neverOpens, openDatabase: neverOpens });

    for (const target of ['redis', 'database']) {
      expect(result.targets.filter((t) => t.target === target).map((t) => [t.reason, t.detail])).toEqual([
        ['timeout', 'no TCP connection within 0.3 s'],
        ['timeout', 'no TCP connection within 0.3 s'],
      ]);
    }
  });
});
