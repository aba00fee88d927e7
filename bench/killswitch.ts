/**
 * npm run bench:killswitch — the killswitch reader's costs, measured side by side in one run:
 *  1. per-request overhead of the middy middleware with a warm cache, against the same middy
 *     handler without it (p50/p99; target p99 <= 20 µs);
 *  2. SSM calls per process per minute, counted at the SDK boundary by a fake SSM endpoint on
 *     127.0.0.1 (AWS JSON 1.1 protocol, real SDK client, real HTTP) (target <= 60 / maxAge);
 *  3. propagation from a write (the CLI's core) to readers polling like busy API processes
 *     (target <= maxAge + 1 s).
 * Env: BENCH_RATE_SECONDS (default 60), BENCH_ITERATIONS (default 200000), BENCH_TRIALS (default 4).
 */
import { SSMClient } from '@aws-sdk/client-ssm';
import type { Context } from 'aws-lambda';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { writeKillswitch } from '../lambdas/killswitch/core';
import { DEFAULT_MAX_AGE_SECONDS, killswitchMiddleware, KillswitchReader } from '../lambdas/killswitch/reader';
import { INITIAL_VALUE } from '../lambdas/killswitch/value';

const PARAMETER = '/atmr/bench/killswitch';
const MAX_AGE = DEFAULT_MAX_AGE_SECONDS;
const RATE_SECONDS = Number(process.env.BENCH_RATE_SECONDS ?? 60);
const ITERATIONS = Number(process.env.BENCH_ITERATIONS ?? 200_000);
const TRIALS = Number(process.env.BENCH_TRIALS ?? 4);

/** A minimal SSM endpoint (GetParameter / PutParameter) that counts the calls it serves. */
async function startFakeSsm() {
  const state = { raw: JSON.stringify(INITIAL_VALUE), version: 1, gets: 0, puts: 0, getTimes: [] as number[] };
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk.toString()));
    req.on('end', () => {
      const target = String(req.headers['x-amz-target'] ?? '');
      const input = JSON.parse(body || '{}') as { Name?: string; Value?: string };
      let status = 200;
      let out: unknown;
      if (target === 'AmazonSSM.GetParameter' && input.Name === PARAMETER) {
        state.gets += 1;
        state.getTimes.push(performance.now());
        out = { Parameter: { Name: PARAMETER, Type: 'String', Value: state.raw, Version: state.version, DataType: 'text' } };
      } else if (target === 'AmazonSSM.PutParameter' && input.Name === PARAMETER) {
        state.puts += 1;
        state.raw = input.Value ?? '';
        state.version += 1;
        out = { Version: state.version, Tier: 'Standard' };
      } else {
        status = 400;
        out = { __type: 'ParameterNotFound', message: `unsupported ${target} ${input.Name}` };
      }
      res.writeHead(status, { 'content-type': 'application/x-amz-json-1.1' });
      res.end(JSON.stringify(out));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { state, endpoint, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

function ssmClient(endpoint: string): SSMClient {
  return new SSMClient({ endpoint, region: 'eu-west-3', credentials: { accessKeyId: 'bench', secretAccessKey: 'bench' }, maxAttempts: 1 });
}

function newReader(endpoint: string): KillswitchReader {
  return new KillswitchReader({ parameterName: PARAMETER, ssm: ssmClient(endpoint), maxAgeSeconds: MAX_AGE });
}

function percentile(sorted: Float64Array, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/** Per-call latency in µs of `fn`, interleaving the variants in blocks so drift hits both alike. */
async function measure(variants: Record<string, () => Promise<unknown>>, iterations: number) {
  const names = Object.keys(variants);
  const samples = Object.fromEntries(names.map((n) => [n, new Float64Array(iterations)]));
  const block = 1000;
  for (let i = 0; i < 20_000; i++) for (const n of names) await variants[n](); // warm-up (JIT, cache)
  for (let start = 0; start < iterations; start += block) {
    for (const n of names) {
      const fn = variants[n];
      const out = samples[n];
      for (let i = start; i < Math.min(start + block, iterations); i++) {
        const t0 = process.hrtime.bigint();
        await fn();
        out[i] = Number(process.hrtime.bigint() - t0) / 1000;
      }
    }
  }
  return Object.fromEntries(names.map((n) => [n, samples[n].sort()]));
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function main(): Promise<void> {
  // @middy/core exports ESM only ("import" condition): load it the way tsx's CJS output can.
  const { default: middy } = await import('@middy/core');
  const ssm = await startFakeSsm();
  const rows: { metric: string; measured: string; reference: string; target: string; ok: string }[] = [];
  const context = {} as Context;
  const event = { rawPath: '/api/bookings', requestContext: { http: { path: '/api/bookings' } } };

  // 1. Overhead with a warm cache.
  const raw = async () => ({ statusCode: 200, body: 'ok' });
  const bare = middy(raw);
  const guarded = middy(raw).use(killswitchMiddleware(newReader(ssm.endpoint)));
  const lat = await measure({ bare: () => bare(event, context), guarded: () => guarded(event, context) }, ITERATIONS);
  const p50 = percentile(lat.guarded, 50) - percentile(lat.bare, 50);
  const p99 = percentile(lat.guarded, 99) - percentile(lat.bare, 99);
  rows.push({
    metric: 'middleware overhead p50 (warm cache)',
    measured: `${p50.toFixed(2)} µs`,
    reference: `bare middy handler p50 ${percentile(lat.bare, 50).toFixed(2)} µs, with middleware ${percentile(lat.guarded, 50).toFixed(2)} µs`,
    target: '-',
    ok: '-',
  });
  rows.push({
    metric: 'middleware overhead p99 (warm cache)',
    measured: `${p99.toFixed(2)} µs`,
    reference: `bare middy handler p99 ${percentile(lat.bare, 99).toFixed(2)} µs, with middleware ${percentile(lat.guarded, 99).toFixed(2)} µs`,
    target: '<= 20 µs',
    ok: p99 <= 20 ? 'yes' : 'NO',
  });

  // 2. SSM calls per process per minute, one busy process (a request every ~1 ms plus bursts of 20 concurrent).
  const rateReader = newReader(ssm.endpoint);
  const rateHandler = middy(raw).use(killswitchMiddleware(rateReader));
  const getsBefore = ssm.state.gets;
  const rateStart = Date.now();
  let requests = 0;
  while (Date.now() - rateStart < RATE_SECONDS * 1000) {
    await Promise.all(Array.from({ length: 20 }, () => rateHandler(event, context)));
    requests += 20;
    await sleep(1);
  }
  const elapsed = (Date.now() - rateStart) / 1000;
  const calls = ssm.state.gets - getsBefore;
  const times = ssm.state.getTimes.slice(getsBefore);
  // Steady state: the mean interval between consecutive calls (the window's first call is a cold start).
  const meanInterval = times.length > 1 ? (times[times.length - 1] - times[0]) / (times.length - 1) / 1000 : Infinity;
  const steadyPerMinute = 60 / meanInterval;
  rows.push({
    metric: 'SSM GetParameter calls in one process',
    measured: `${calls} in ${elapsed.toFixed(1)} s`,
    reference: `${requests} requests (bursts of 20 concurrent every ~1 ms), fake SSM on 127.0.0.1`,
    target: `<= ${Math.ceil((elapsed * 1000) / (MAX_AGE * 1000 + 1))} (cold fetch + one per maxAge)`,
    ok: calls <= Math.ceil((elapsed * 1000) / (MAX_AGE * 1000 + 1)) ? 'yes' : 'NO',
  });
  rows.push({
    metric: 'SSM calls per process per minute (steady)',
    measured: steadyPerMinute.toFixed(2),
    reference: `mean interval between calls ${meanInterval.toFixed(3)} s`,
    target: `<= ${60 / MAX_AGE} (60 / maxAge ${MAX_AGE} s)`,
    ok: steadyPerMinute <= 60 / MAX_AGE ? 'yes' : 'NO',
  });

  // 3. Propagation from a write to 4 reader processes, each polling every 10 ms with its own cache phase.
  const writer = ssmClient(ssm.endpoint);
  const readers = Array.from({ length: 4 }, () => newReader(ssm.endpoint));
  for (const [i, r] of readers.entries()) {
    await r.read();
    await sleep(((MAX_AGE * 1000) / readers.length) * (i === readers.length - 1 ? 0.5 : 1));
  }
  const propagation: number[] = [];
  let mode: 'maintenance' | 'normal' = 'maintenance';
  for (let trial = 0; trial < TRIALS; trial++) {
    await sleep(Math.random() * MAX_AGE * 1000);
    await writeKillswitch({ ssm: writer }, { parameterName: PARAMETER, mode, reason: `bench trial ${trial}`, actor: 'bench', expiresAt: null });
    const written = Date.now();
    const seen = await Promise.all(
      readers.map(async (r) => {
        for (;;) {
          if ((await r.read()).mode === mode) return Date.now() - written;
          await sleep(10);
        }
      }),
    );
    propagation.push(...seen);
    mode = mode === 'maintenance' ? 'normal' : 'maintenance';
  }
  propagation.sort((a, b) => a - b);
  const worst = propagation[propagation.length - 1] / 1000;
  rows.push({
    metric: 'propagation write -> readers (max)',
    measured: `${worst.toFixed(2)} s`,
    reference: `${TRIALS} writes x ${readers.length} readers; median ${(propagation[Math.floor(propagation.length / 2)] / 1000).toFixed(2)} s`,
    target: `<= ${MAX_AGE + 1} s (cache age + 1 s)`,
    ok: worst <= MAX_AGE + 1 ? 'yes' : 'NO',
  });

  await ssm.close();
  console.log(`killswitch reader bench (Node ${process.version}, maxAge ${MAX_AGE} s, ${ITERATIONS} requests per variant)`);
  console.table(rows);
  if (rows.some((r) => r.ok === 'NO')) process.exitCode = 1;
}

void main();
