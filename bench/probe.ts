/**
 * npm run bench:probe — run time of one health-probe run (the Lambda's core, real clients) against
 * real servers on 127.0.0.1, three data shapes measured side by side (round robin, same process):
 *  - healthy:  HTTP 200 for the API and OSRM, a real redis-server, a real PostgreSQL;
 *  - refused:  every target's port closed (connection refused at once);
 *  - timeout:  every target accepts the connection and never answers (HTTP, Redis and PostgreSQL alike),
 *              so every check runs into its timeout.
 * The production settings: 3 s timeouts, 3 OSRM attempts 1 s apart. Target: p99 <= 10 s with every
 * target down (the probe runs every minute and must finish well inside it).
 * Env: BENCH_RUNS (default 12 per shape).
 */
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import * as http from 'node:http';
import * as net from 'node:net';
import { openDatabaseSession, openRedisSession } from '../lambdas/detection/clients';
import { ProbeDeps, ProbeSettings, runProbe } from '../lambdas/detection/probe';
import { freePort, psql, startPostgres, stopPostgres } from '../test/support/postgres';
import { startRedis } from '../test/support/redis';

const RUNS = Number(process.env.BENCH_RUNS ?? 12);
const TIMEOUT_MS = 3000;

interface Shape {
  readonly name: string;
  readonly settings: ProbeSettings;
  readonly deps: ProbeDeps;
  readonly times: number[];
  failed: number[];
  /** Checks made: 7 a run, second attempts included (only a check's first attempt is counted). */
  made: number[];
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

async function listen(server: net.Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as net.AddressInfo).port;
}

async function main(): Promise<void> {
  process.env.POWERTOOLS_METRICS_DISABLED = 'true';
  const metrics = new Metrics({ namespace: 'AtmrDrBench', serviceName: 'detection-probe' });
  const logger = new Logger({ serviceName: 'detection-probe', logLevel: 'SILENT' });

  // healthy targets
  // /ready answers the runbook's ready body, which the probe checks; the other paths {"status":"ok"}.
  const healthyHttp = http.createServer((req, res) => res.end(req.url === '/ready' ? '{"status": "ready", "checks": {"database": "ok", "redis": "ok"}}' : '{"status":"ok"}'));
  const httpPort = await listen(healthyHttp);
  const redis = await startRedis();
  redis.cli('RPUSH', 'celery', 'a', 'b');
  const pg = await startPostgres();
  psql(pg, 'postgres', 'CREATE DATABASE atmr');
  // silent targets: accept, never answer
  const sockets: net.Socket[] = [];
  const blackhole = net.createServer((socket) => sockets.push(socket));
  const silentPort = await listen(blackhole);
  const closedPort = await freePort();

  const settingsFor = (httpBase: string): ProbeSettings => ({
    api: { baseUrl: httpBase, timeoutMs: TIMEOUT_MS },
    osrm: { healthUrl: `${httpBase}/health`, timeoutMs: TIMEOUT_MS, attempts: 3, attemptSpacingMs: 1000 },
    redis: { timeoutMs: TIMEOUT_MS, queues: ['celery', 'dispatch'] },
    database: { timeoutMs: TIMEOUT_MS },
  });
  const depsFor = (redisPort: number, pgPort: number): ProbeDeps => ({
    metrics,
    logger,
    openRedis: () => openRedisSession({ host: '127.0.0.1', port: redisPort, tls: false, timeoutMs: TIMEOUT_MS }),
    openDatabase: () => openDatabaseSession({ host: '127.0.0.1', port: pgPort, user: 'postgres', database: 'atmr', sslMode: 'disable' }, TIMEOUT_MS),
  });
  const shapes: Shape[] = [
    { name: 'healthy', settings: settingsFor(`http://127.0.0.1:${httpPort}`), deps: depsFor(redis.port, pg.port), times: [], failed: [], made: [] },
    { name: 'all refused', settings: settingsFor(`http://127.0.0.1:${closedPort}`), deps: depsFor(closedPort, closedPort), times: [], failed: [], made: [] },
    { name: 'all timing out', settings: settingsFor(`http://127.0.0.1:${silentPort}`), deps: depsFor(silentPort, silentPort), times: [], failed: [], made: [] },
  ];

  try {
    for (let run = 0; run < RUNS; run += 1) {
      for (const shape of shapes) {
        const started = performance.now();
        const report = await runProbe(shape.settings, shape.deps);
        shape.times.push(performance.now() - started);
        shape.failed.push(report.checksFailed);
        shape.made.push(report.checksMade);
      }
    }
  } finally {
    sockets.forEach((s) => s.destroy());
    blackhole.close();
    healthyHttp.close();
    await redis.stop();
    stopPostgres(pg);
  }

  const reference = percentile(shapes[0].times, 50);
  console.log(`health probe bench (Node ${process.version}, ${RUNS} runs per shape, round robin; 3 s timeouts, 3 OSRM attempts 1 s apart)`);
  console.table(
    shapes.map((s) => ({
      shape: s.name,
      'checks failed / made': `${Math.min(...s.failed)}-${Math.max(...s.failed)} / ${Math.min(...s.made)}-${Math.max(...s.made)}`,
      'p50 ms': Math.round(percentile(s.times, 50)),
      'p99 ms': Math.round(percentile(s.times, 99)),
      'max ms': Math.round(Math.max(...s.times)),
      'p50 / healthy p50': (percentile(s.times, 50) / reference).toFixed(1),
      'target p99 <= 10 s': s.name === 'healthy' ? '-' : percentile(s.times, 99) <= 10_000 ? 'met' : 'MISSED',
    })),
  );
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
