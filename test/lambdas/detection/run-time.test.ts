import { RETRY_BUDGET_MS, probeRunWorstCaseMs } from '../../../lambdas/detection/probe';

// The longest probe run (every target hung), which the construct keeps inside the function's timeout.

describe('probeRunWorstCaseMs', () => {
  it('is 6.3 s with the defaults: a binary check tried twice (3 s, 300 ms pause, 3 s) outlasts the OSRM attempts (2 s spread + 3 s)', () => {
    expect(
      probeRunWorstCaseMs({
        api: { baseUrl: 'http://api', timeoutMs: 3000 },
        osrm: { healthUrl: 'http://osrm/health', timeoutMs: 3000, attempts: 3 },
        redis: { timeoutMs: 3000, queues: ['celery'] },
        database: { timeoutMs: 3000 },
      }),
    ).toBe(6300);
  });

  it('bounds a second attempt by the retry budget (20 s) when the timeout is long, and is 24 s at the config maxima (10 OSRM attempts, 15 s timeouts)', () => {
    expect(probeRunWorstCaseMs({ redis: { timeoutMs: 15_000, queues: [] } })).toBe(RETRY_BUDGET_MS);
    expect(probeRunWorstCaseMs({ database: { timeoutMs: 15_000 }, osrm: { healthUrl: 'http://osrm/health', timeoutMs: 15_000, attempts: 10 } })).toBe(24_000);
  });
});
