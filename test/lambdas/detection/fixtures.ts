import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { metricsNamespace } from '../../../lambdas/shared/constants';
import { PROBE_SERVICE } from '../../../lambdas/detection/probe';

/** Behaviour of one path of the local HTTP server. */
export type Route = { status: number; body?: string; delayMs?: number } | ((count: number) => { status: number; body?: string; delayMs?: number });

/** An HTTP server on 127.0.0.1 whose paths answer as told (status, body, delay before answering). */
export async function startHttpServer(routes: Record<string, Route>): Promise<{ url: string; hits: Record<string, number>; close(): Promise<void> }> {
  const hits: Record<string, number> = {};
  const server = http.createServer((req, res) => {
    const path = req.url ?? '/';
    hits[path] = (hits[path] ?? 0) + 1;
    const route = routes[path];
    const answer = typeof route === 'function' ? route(hits[path]) : (route ?? { status: 404, body: 'no route' });
    const send = () => {
      if (res.destroyed) return;
      res.writeHead(answer.status, { 'content-type': 'application/json' });
      res.end(answer.body ?? JSON.stringify({ status: answer.status < 300 ? 'ok' : 'error' }));
    };
    if (answer.delayMs) setTimeout(send, answer.delayMs).unref();
    else send();
  });
  server.keepAliveTimeout = 1000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    hits,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** One metric value as found in an EMF document, with the document's dimensions. */
export interface EmittedMetric {
  readonly name: string;
  readonly value: number;
  readonly unit: string;
  readonly dimensions: Record<string, string>;
}

/**
 * Runs `fn` with real Powertools Metrics and Logger writing to a captured stdout, and returns what
 * CloudWatch would receive: the EMF metrics (name, value, unit, dimensions) and the JSON log lines.
 * `serviceName`: the Powertools service of the function under test (the probe's by default).
 */
export async function captureProbeOutput<T>(
  fn: (tools: { metrics: Metrics; logger: Logger }) => Promise<T>,
  serviceName: string = PROBE_SERVICE,
): Promise<{ result: T; metrics: EmittedMetric[]; logs: Record<string, unknown>[] }> {
  const saved = { ...process.env };
  process.env.POWERTOOLS_METRICS_DISABLED = 'false';
  delete process.env.POWERTOOLS_DEV;
  const chunks: string[] = [];
  const capture = (chunk: string | Uint8Array) => {
    chunks.push(String(chunk));
    return true;
  };
  const spies = [jest.spyOn(process.stdout, 'write').mockImplementation(capture), jest.spyOn(process.stderr, 'write').mockImplementation(capture)];
  let result: T;
  try {
    const metrics = new Metrics({ namespace: metricsNamespace('example'), serviceName });
    const logger = new Logger({ serviceName });
    result = await fn({ metrics, logger });
    metrics.publishStoredMetrics();
  } finally {
    spies.forEach((spy) => spy.mockRestore());
    process.env = saved;
  }
  const documents = chunks
    .join('')
    .split('\n')
    .filter((line) => line.trim().startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
  const metrics: EmittedMetric[] = [];
  const logs: Record<string, unknown>[] = [];
  for (const doc of documents) {
    const aws = doc._aws as { CloudWatchMetrics: { Namespace: string; Dimensions: string[][]; Metrics: { Name: string; Unit: string }[] }[] } | undefined;
    if (!aws) {
      logs.push(doc);
      continue;
    }
    for (const directive of aws.CloudWatchMetrics) {
      const dimensions = Object.fromEntries(directive.Dimensions.flat().map((d) => [d, String(doc[d])]));
      for (const m of directive.Metrics) metrics.push({ name: m.Name, unit: m.Unit, value: doc[m.Name] as number, dimensions });
    }
  }
  return { result, metrics, logs };
}

/** The single value of metric `name` (with `dimensions` among its dimensions); fails when absent or repeated. */
export function metricValue(metrics: readonly EmittedMetric[], name: string, dimensions: Record<string, string> = {}): number {
  const found = metrics.filter((m) => m.name === name && Object.entries(dimensions).every(([k, v]) => m.dimensions[k] === v));
  if (found.length !== 1) throw new Error(`expected one ${name} ${JSON.stringify(dimensions)}, got ${found.length}: ${JSON.stringify(metrics.map((m) => [m.name, m.value, m.dimensions]))}`);
  return found[0].value;
}
