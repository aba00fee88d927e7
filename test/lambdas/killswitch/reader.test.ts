import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { GetParameterCommand, InternalServerError, SSMClient } from '@aws-sdk/client-ssm';
import middy from '@middy/core';
import type { Context } from 'aws-lambda';
import { mockClient } from 'aws-sdk-client-mock';
import 'aws-sdk-client-mock-jest';
import { checkKillswitch, eventPath, KillswitchContext, killswitchMiddleware, KillswitchReader } from '../../../lambdas/killswitch/reader';
import { MAINTENANCE_BODY } from '../../../lambdas/killswitch/value';
import { PARAMETER, advance, getParameterOutput, resetEachTest, silentSsm, timed, value } from './fixtures';

const ssmMock = mockClient(SSMClient);
const START = Date.parse('2026-06-01T10:00:00.000Z');
const maintenance = value({ mode: 'maintenance', reason: 'OSRM down', expiresAt: '2026-06-01T10:30:00.000Z' });

function throttled(): Error {
  return Object.assign(new Error('Rate exceeded'), { name: 'ThrottlingException', $metadata: { httpStatusCode: 400 } });
}

function setup() {
  const logger = new Logger({ serviceName: 'api-test', logLevel: 'SILENT' });
  const metrics = new Metrics({ namespace: 'AtmrDr/example', serviceName: 'api-test' });
  const errors = jest.spyOn(logger, 'error');
  const warnings = jest.spyOn(logger, 'warn');
  const addMetric = jest.spyOn(metrics, 'addMetric');
  const reader = new KillswitchReader({ parameterName: PARAMETER, logger, metrics });
  const handlerCalls: KillswitchContext[] = [];
  const handler = middy(async (_event: unknown, context: Context & KillswitchContext) => {
    handlerCalls.push({ killswitch: context.killswitch });
    return { statusCode: 200, body: 'ok' };
  }).use(killswitchMiddleware(reader));
  const request = (path: string) => handler({ rawPath: path, requestContext: { http: { path } } }, {} as Context);
  return { reader, request, handlerCalls, errors, warnings, addMetric };
}

resetEachTest(ssmMock, START);

describe('killswitch middleware', () => {
  it('treats a maintenance value whose expiresAt has passed as normal, even from its cache (the expiry schedule may be late)', async () => {
    ssmMock.on(GetParameterCommand).resolves(getParameterOutput(maintenance, 3));
    const { request, handlerCalls, reader } = setup();
    expect((await request('/api/bookings')).statusCode).toBe(503);

    jest.setSystemTime(Date.parse('2026-06-01T10:30:00.000Z'));
    const cached = await reader.read();
    const response = await request('/api/bookings');

    expect(cached).toMatchObject({ mode: 'normal', maintenance: false, source: 'expired' });
    expect(response).toEqual({ statusCode: 200, body: 'ok' });
    expect(handlerCalls).toHaveLength(1);
  });

  it('answers 503 with the runbook body and a Retry-After up to the expiry in maintenance, without calling the handler', async () => {
    ssmMock.on(GetParameterCommand).resolves(getParameterOutput(maintenance, 3));
    const { request, handlerCalls } = setup();

    const response = await request('/api/bookings');

    expect(response).toEqual({ statusCode: 503, headers: expect.objectContaining({ 'Retry-After': '1800' }), body: MAINTENANCE_BODY });
    expect(JSON.parse(MAINTENANCE_BODY)).toEqual({ error: 'Service en maintenance - Merci de réessayer plus tard' });
    expect(handlerCalls).toHaveLength(0);
  });

  it.each(['/health', '/ready', '/health/'])('lets %s through in maintenance, with the state in memory, without reading SSM', async (path) => {
    ssmMock.on(GetParameterCommand).resolves(getParameterOutput(maintenance, 3));
    const { request, handlerCalls } = setup();
    expect((await request('/api/bookings')).statusCode).toBe(503);
    advance(6_000); // the cache is stale: an /api request would read SSM again

    const response = await request(path);

    expect(response).toEqual({ statusCode: 200, body: 'ok' });
    expect(handlerCalls[0].killswitch?.maintenance).toBe(true);
    expect(ssmMock).toHaveReceivedCommandTimes(GetParameterCommand, 1);
  });

  it('exposes degraded to the handler and serves the request', async () => {
    ssmMock.on(GetParameterCommand).resolves(getParameterOutput(value({ mode: 'degraded' }), 3));
    const { request, handlerCalls } = setup();

    const response = await request('/api/bookings');

    expect(response).toEqual({ statusCode: 200, body: 'ok' });
    expect(handlerCalls[0].killswitch).toMatchObject({ mode: 'degraded', degraded: true, maintenance: false, source: 'ssm' });
  });

  it("exposes SSM's LastModifiedDate (the server's time of the write) as lastModified, kept when the value expires or SSM fails", async () => {
    const writtenBySsm = new Date('2026-06-01T09:59:00.000Z');
    ssmMock.on(GetParameterCommand).resolvesOnce(getParameterOutput(maintenance, 3, writtenBySsm)).rejects(throttled());
    const { reader } = setup();

    const fresh = await reader.read();
    advance(6_000);
    const lastKnown = await reader.read();
    jest.setSystemTime(Date.parse('2026-06-01T10:30:00.000Z'));
    const expired = await reader.read();

    expect(fresh).toMatchObject({ source: 'ssm', lastModified: writtenBySsm.getTime() });
    expect(lastKnown).toMatchObject({ source: 'last-known', lastModified: writtenBySsm.getTime() });
    expect(expired).toMatchObject({ source: 'expired', lastModified: writtenBySsm.getTime() });
  });

  it('reads SSM at most once per 5-second cache age', async () => {
    ssmMock.on(GetParameterCommand).resolves(getParameterOutput(value(), 3));
    const { request } = setup();

    for (let i = 0; i < 50; i++) {
      await request('/api/x');
      advance(90); // 50 requests over 4.5 s
    }
    expect(ssmMock).toHaveReceivedCommandTimes(GetParameterCommand, 1);
    advance(600);
    await request('/api/x');
    expect(ssmMock).toHaveReceivedCommandTimes(GetParameterCommand, 2);
  });

  it('refreshes right after the cache age, even when a request lands on the exact expiry millisecond', async () => {
    ssmMock.on(GetParameterCommand).resolvesOnce(getParameterOutput(value(), 3)).resolves(getParameterOutput(maintenance, 4));
    const { request } = setup();
    await request('/api/x');

    advance(5_000);
    await request('/api/x');
    advance(1);
    const after = await request('/api/x');

    expect(after.statusCode).toBe(503);
    expect(ssmMock).toHaveReceivedCommandTimes(GetParameterCommand, 2);
  });

  it('sees a change once the cache age has passed', async () => {
    ssmMock.on(GetParameterCommand).resolvesOnce(getParameterOutput(value(), 3)).resolves(getParameterOutput(maintenance, 4));
    const { request } = setup();

    expect((await request('/api/x')).statusCode).toBe(200);
    advance(4_000);
    expect((await request('/api/x')).statusCode).toBe(200);
    advance(1_100);
    expect((await request('/api/x')).statusCode).toBe(503);
  });

  it.each([
    ['an SSM error', () => new InternalServerError({ message: 'boom', $metadata: {} })],
    ['throttling', throttled],
  ])('keeps the last known value under %s, and waits one cache age before asking again', async (_label, failure) => {
    ssmMock.on(GetParameterCommand).resolvesOnce(getParameterOutput(maintenance, 3)).rejects(failure());
    const { request, warnings, handlerCalls } = setup();
    expect((await request('/api/x')).statusCode).toBe(503);
    advance(6_000);

    const duringOutage = await request('/api/x');
    for (let i = 0; i < 20; i++) await request('/api/x'); // same instant: no new SSM call
    const callsDuringBackoff = ssmMock.commandCalls(GetParameterCommand).length;
    const health = await request('/health');

    expect(duringOutage.statusCode).toBe(503);
    expect(callsDuringBackoff).toBe(2);
    expect(warnings).toHaveBeenCalledWith('killswitch read failed; keeping the last known value', expect.objectContaining({ mode: 'maintenance' }));
    expect(health.statusCode).toBe(200);
    expect(handlerCalls[0].killswitch?.source).toBe('last-known');
  });

  it('recovers once SSM answers again', async () => {
    ssmMock
      .on(GetParameterCommand)
      .resolvesOnce(getParameterOutput(maintenance, 3))
      .rejectsOnce(throttled())
      .resolves(getParameterOutput(value({ reason: 'OSRM back' }), 4));
    const { request } = setup();
    await request('/api/x');
    advance(6_000);
    await request('/api/x');
    advance(6_000);

    expect((await request('/api/x')).statusCode).toBe(200);
  });

  it('fails open (normal) when SSM fails before any value was ever read', async () => {
    ssmMock.on(GetParameterCommand).rejects(throttled());
    const { request, handlerCalls } = setup();

    expect((await request('/api/x')).statusCode).toBe(200);
    expect(handlerCalls[0].killswitch).toMatchObject({ mode: 'normal', source: 'default' });
  });

  it.each([
    ['not JSON', '{"mode":"maintenance"'],
    ['an unknown mode', JSON.stringify({ ...maintenance, mode: 'lockdown' })],
    ['a missing field', JSON.stringify({ mode: 'maintenance' })],
  ])('treats a malformed value (%s) as normal, logs an error and counts KillswitchInvalid once', async (_label, raw) => {
    ssmMock.on(GetParameterCommand).resolves(getParameterOutput(raw, 5));
    const { request, errors, addMetric, handlerCalls } = setup();

    const first = await request('/api/x');
    advance(6_000);
    await request('/api/x');

    expect(first.statusCode).toBe(200);
    expect(handlerCalls[0].killswitch).toMatchObject({ mode: 'normal', source: 'invalid' });
    expect(errors).toHaveBeenCalledTimes(1);
    expect(addMetric).toHaveBeenCalledTimes(1);
    expect(addMetric).toHaveBeenCalledWith('KillswitchInvalid', 'Count', 1);
  });
});

describe('checkKillswitch (plain function, for non-middy code)', () => {
  it('returns a 503 response in maintenance except on exempt paths (query string ignored), and the state always', async () => {
    ssmMock.on(GetParameterCommand).resolves(getParameterOutput({ ...maintenance, expiresAt: null }, 3));
    const reader = new KillswitchReader({ parameterName: PARAMETER });

    const blocked = await checkKillswitch(reader, '/api/bookings');
    const exempt = await checkKillswitch(reader, '/ready?verbose=1');

    expect(blocked.respond).toEqual({ statusCode: 503, headers: expect.objectContaining({ 'Retry-After': '120', 'Content-Type': 'application/json; charset=utf-8' }), body: MAINTENANCE_BODY });
    expect(exempt.respond).toBeUndefined();
    expect(exempt.state.maintenance).toBe(true);
  });
});

describe('eventPath', () => {
  it('finds the path of HTTP API / Function URL, REST API and ALB events', () => {
    expect(eventPath({ rawPath: '/a', requestContext: { http: { path: '/a' } } })).toBe('/a');
    expect(eventPath({ path: '/b', httpMethod: 'GET', requestContext: { stage: 'prod' } })).toBe('/b');
    expect(eventPath({ path: '/c', requestContext: { elb: { targetGroupArn: 'arn' } } })).toBe('/c');
    expect(eventPath(null)).toBeUndefined();
  });
});

describe('KillswitchReader under concurrency', () => {
  it('shares one SSM call between concurrent requests when the cache expires', async () => {
    ssmMock.on(GetParameterCommand).resolves(getParameterOutput(value(), 3));
    const { request } = setup();

    await Promise.all(Array.from({ length: 25 }, () => request('/api/x')));

    expect(ssmMock).toHaveReceivedCommandTimes(GetParameterCommand, 1);
  });
});

// Last in the file: it restores the real SSMClient (the mock stubs every client's send).
describe('KillswitchReader when SSM accepts connections and never answers (its default client)', () => {
  let ssm: Awaited<ReturnType<typeof silentSsm>>;
  const saved = { ...process.env };
  /** Answers left before SSM goes silent: each is a GetParameter answer with this value. */
  let answers: string[] = [];

  beforeAll(async () => {
    ssm = await silentSsm((operation) => {
      const raw = operation === 'GetParameter' ? answers.shift() : undefined;
      return raw === undefined ? undefined : getParameterOutput(raw, 3);
    });
    Object.assign(process.env, { AWS_ENDPOINT_URL_SSM: ssm.endpoint, AWS_REGION: 'eu-west-3', AWS_ACCESS_KEY_ID: 'test', AWS_SECRET_ACCESS_KEY: 'test' });
  });
  afterAll(async () => {
    process.env = saved;
    await ssm.close();
  });
  beforeEach(() => {
    ssmMock.restore(); // after the file's beforeEach, whose reset() stubs send again
    jest.useRealTimers();
    answers = [];
  });
  it('answers /health at once, and /api within seconds (failing open before any value is known)', async () => {
    const reader = new KillswitchReader({ parameterName: PARAMETER, maxAgeSeconds: 0 });

    const health = await timed(checkKillswitch(reader, '/health'), 1_000);
    const api = await timed(checkKillswitch(reader, '/api/bookings'), 8_000);

    expect(health.ms).toBeLessThan(1_000);
    expect(api.ms).toBeLessThan(6_000);
    expect(api.value).toMatchObject({ state: { mode: 'normal', source: 'default' } });
  }, 15_000);

  it('answers other requests from the last known state while one refresh waits on the silent SSM, and ends that refresh in seconds', async () => {
    answers = [JSON.stringify({ ...maintenance, expiresAt: null })];
    const reader = new KillswitchReader({ parameterName: PARAMETER, maxAgeSeconds: 0 });
    expect((await checkKillswitch(reader, '/api/a')).respond?.statusCode).toBe(503); // SSM answered, then goes silent

    const refreshing = timed(checkKillswitch(reader, '/api/a'), 8_000);
    const meanwhile = await timed(checkKillswitch(reader, '/api/b'), 1_000);
    const health = await timed(checkKillswitch(reader, '/health'), 1_000);
    const refreshed = await refreshing;

    expect(meanwhile.ms).toBeLessThan(1_000);
    expect(meanwhile.value?.respond?.statusCode).toBe(503);
    expect(health.ms).toBeLessThan(1_000);
    expect(health.value?.state.maintenance).toBe(true);
    expect(refreshed.ms).toBeLessThan(6_000);
    expect(refreshed.value).toMatchObject({ state: { mode: 'maintenance', source: 'last-known' }, respond: { statusCode: 503 } });
  }, 15_000);
});
