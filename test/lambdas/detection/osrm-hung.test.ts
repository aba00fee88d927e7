import { runProbe } from '../../../lambdas/detection/probe';
import { startSilentEndpoint } from '../../support/aws-endpoints';
import { freePort } from '../../support/postgres';
import { captureProbeOutput } from './fixtures';

// A hung OSRM (accepts the connection, never answers) as the probe reports it: the same reason and
// words as `atmr-dr osrm restart` (checkHttpNamingHung), not a plain timeout, which is also what a
// network rule dropping the packets gives.

const TIMEOUT_MS = 300;

async function probeOsrm(healthUrl: string, fetchImpl?: typeof fetch) {
  return captureProbeOutput(({ metrics, logger }) => runProbe({ osrm: { healthUrl, timeoutMs: TIMEOUT_MS, attempts: 1 } }, { metrics, logger, ...(fetchImpl && { fetch: fetchImpl }) }));
}

describe('the probe against OSRM that gets no HTTP answer', () => {
  it('a server on 127.0.0.1 that accepts and never answers: reason hung, "connected, no HTTP answer within 0.3 s", in the report and the log line, within the check\'s deadline', async () => {
    const silent = await startSilentEndpoint();
    try {
      const { result, logs } = await probeOsrm(`${silent.url}/health`);

      const osrm = result.targets.find((t) => t.target === 'osrm');
      expect(osrm).toMatchObject({ up: false, reason: 'hung', detail: 'connected, no HTTP answer within 0.3 s' });
      expect(result.down).toEqual(['osrm:hung']);
      expect(logs.find((l) => l.message === 'probe target down')).toMatchObject({ target: 'osrm', reason: 'hung', detail: 'connected, no HTTP answer within 0.3 s' });
      // The connection is tried alongside the request: no second deadline on top of the first.
      expect(osrm?.latencyMs).toBeLessThan(2 * TIMEOUT_MS);
    } finally {
      await silent.stop();
    }
  });

  it('a request that times out where no connection is accepted either (packets dropped): still a plain timeout', async () => {
    const neverAnswers = (() => new Promise<Response>(() => undefined)) as typeof fetch;

    const { result } = await probeOsrm(`http://127.0.0.1:${await freePort()}/health`, neverAnswers);

    expect(result.targets.find((t) => t.target === 'osrm')).toMatchObject({ up: false, reason: 'timeout' });
  });
});
