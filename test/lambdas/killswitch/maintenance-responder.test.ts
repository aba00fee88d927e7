import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { GetParameterCommand, SSMClient } from '@aws-sdk/client-ssm';
import { mockClient } from 'aws-sdk-client-mock';
import 'aws-sdk-client-mock-jest';
import { ANSWERED_OUTSIDE_MAINTENANCE_METRIC, MAINTENANCE_RULE_REMOVAL_GRACE_SECONDS, MaintenanceResponder } from '../../../lambdas/killswitch/maintenance-responder';
import { writeKillswitch } from '../../../lambdas/killswitch/core';
import { KillswitchReader } from '../../../lambdas/killswitch/reader';
import { MAINTENANCE_BODY } from '../../../lambdas/killswitch/value';
import { MAINTENANCE_TARGET_GROUP_ARN } from './elbv2-fake';
import { PARAMETER, advance, fakeParameter, getParameterOutput, resetEachTest, value } from './fixtures';

const ssmMock = mockClient(SSMClient);
const START = Date.parse('2026-06-01T10:00:00.000Z');
/** The exact bytes of the 503 body (the runbook's maintenance message, docs/contracts.md). */
const RUNBOOK_BODY = '{"error":"Service en maintenance - Merci de réessayer plus tard"}';

/** A request as an ALB hands it to a Lambda target (multi-value headers off: the default). */
function albRequest(path = '/api/bookings') {
  return {
    requestContext: { elb: { targetGroupArn: MAINTENANCE_TARGET_GROUP_ARN } },
    httpMethod: 'GET',
    path,
    queryStringParameters: { page: '2' },
    headers: { accept: 'application/json', host: 'api.atmr.example', 'x-forwarded-for': '203.0.113.7' },
    body: '',
    isBase64Encoded: false,
  };
}

/** The same request with the target group attribute lambda.multi_value_headers.enabled = true. */
function albMultiValueRequest() {
  return {
    requestContext: { elb: { targetGroupArn: MAINTENANCE_TARGET_GROUP_ARN } },
    httpMethod: 'POST',
    path: '/api/bookings',
    multiValueQueryStringParameters: { tag: ['a', 'b'] },
    multiValueHeaders: { accept: ['application/json'], cookie: ['a=1', 'b=2'] },
    body: 'eyJ4IjoxfQ==',
    isBase64Encoded: true,
  };
}

function setup(options: { defaultRetryAfterSeconds?: number; removalGraceSeconds?: number } = {}) {
  const logger = new Logger({ serviceName: 'responder-test', logLevel: 'SILENT' });
  const metrics = new Metrics({ namespace: 'AtmrDr/example', serviceName: 'responder-test' });
  const warnings = jest.spyOn(logger, 'warn');
  const errors = jest.spyOn(logger, 'error');
  const reader = new KillswitchReader({ parameterName: PARAMETER, logger, metrics });
  const addMetric = jest.spyOn(metrics, 'addMetric');
  const responder = new MaintenanceResponder({ reader, logger, metrics, ...options });
  return { responder, warnings, errors, addMetric };
}

resetEachTest(ssmMock, START);

describe('maintenance responder (ALB Lambda target)', () => {
  it('answers 503 with the runbook body, JSON content type and Retry-After up to expiresAt', async () => {
    fakeParameter(ssmMock, value({ mode: 'maintenance', reason: 'OSRM down', expiresAt: '2026-06-01T10:30:00.000Z' }));
    const { responder } = setup();

    const response = await responder.answer(albRequest());

    expect(response).toEqual({
      statusCode: 503,
      statusDescription: '503 Service Unavailable',
      isBase64Encoded: false,
      headers: { 'Content-Type': 'application/json; charset=utf-8', 'Retry-After': '1800', 'Cache-Control': 'no-store' },
      body: RUNBOOK_BODY,
    });
    expect(MAINTENANCE_BODY).toBe(RUNBOOK_BODY);
    expect(JSON.parse(response.body)).toEqual({ error: 'Service en maintenance - Merci de réessayer plus tard' });
  });

  it('rounds the seconds left up; once the expiry has passed the value counts as normal (default Retry-After)', async () => {
    const store = fakeParameter(ssmMock, value({ mode: 'maintenance', expiresAt: '2026-06-01T10:01:30.200Z' }));
    const { responder } = setup();

    const before = await responder.answer(albRequest());
    store.raw = JSON.stringify(value({ mode: 'maintenance', expiresAt: '2026-06-01T09:59:00.000Z' }));
    advance(6_000);
    const after = await responder.answer(albRequest());

    expect(before).toMatchObject({ headers: { 'Retry-After': '91' } });
    expect(after).toMatchObject({ statusCode: 503, headers: { 'Retry-After': '120' } });
  });

  it('uses the configured default Retry-After when the value has no expiry (120 s unless configured)', async () => {
    fakeParameter(ssmMock, value({ mode: 'maintenance', reason: 'pic de charge', expiresAt: null }));
    const configured = setup({ defaultRetryAfterSeconds: 300 });
    const unconfigured = setup();

    const configuredAnswer = await configured.responder.answer(albRequest());
    const unconfiguredAnswer = await unconfigured.responder.answer(albRequest());

    expect(configuredAnswer).toMatchObject({ statusCode: 503, headers: { 'Retry-After': '300' }, body: RUNBOOK_BODY });
    expect(unconfiguredAnswer).toMatchObject({ statusCode: 503, headers: { 'Retry-After': '120' }, body: RUNBOOK_BODY });
  });

  it('answers with multiValueHeaders when the ALB sends multi-value headers (and no single-value headers)', async () => {
    fakeParameter(ssmMock, value({ mode: 'maintenance', expiresAt: '2026-06-01T10:02:00.000Z' }));
    const { responder } = setup();

    const response = await responder.answer(albMultiValueRequest());

    expect(response).toEqual({
      statusCode: 503,
      statusDescription: '503 Service Unavailable',
      isBase64Encoded: false,
      multiValueHeaders: { 'Content-Type': ['application/json; charset=utf-8'], 'Retry-After': ['120'], 'Cache-Control': ['no-store'] },
      body: RUNBOOK_BODY,
    });
    expect(response).not.toHaveProperty('headers');
  });

  it.each(['normal', 'degraded'] as const)(
    'still answers 503 with the default Retry-After if the value reads %s while the rule exists, and warns once',
    async (mode) => {
      // Even with an expiry on a degraded value: only a maintenance expiry says when to come back.
      fakeParameter(ssmMock, value({ mode, expiresAt: mode === 'degraded' ? '2026-06-01T10:10:00.000Z' : null }));
      const { responder, warnings } = setup({ defaultRetryAfterSeconds: 60 });

      const first = await responder.answer(albRequest());
      const second = await responder.answer(albRequest('/api/other'));

      for (const response of [first, second]) {
        expect(response).toMatchObject({ statusCode: 503, headers: { 'Retry-After': '60' }, body: RUNBOOK_BODY });
      }
      expect(warnings).toHaveBeenCalledTimes(1);
      expect(warnings).toHaveBeenCalledWith(expect.stringMatching(/not in maintenance/), expect.objectContaining({ mode, source: 'ssm' }));
    },
  );

  const counted = (addMetric: jest.SpyInstance) => addMetric.mock.calls.filter(([name]) => name === ANSWERED_OUTSIDE_MAINTENANCE_METRIC);
  const at = (ms: number) => jest.setSystemTime(ms);

  it('does not count the answers of the removal grace after an expiry (the rule outlives it until the reverter and enforcer run), counts them after', async () => {
    const expiresAt = START + 10_000;
    const store = fakeParameter(ssmMock, value({ mode: 'maintenance', updatedAt: '2026-06-01T09:00:00.000Z', expiresAt: new Date(expiresAt).toISOString() }));
    const { responder, addMetric } = setup();
    expect(MAINTENANCE_RULE_REMOVAL_GRACE_SECONDS).toBe(120);

    const before = await responder.answer(albRequest());
    at(expiresAt + 1_000); // the client is back as its Retry-After said; the value in SSM is unchanged
    await responder.answer(albRequest());
    const countedAfterOneSecond = counted(addMetric).length;
    // The reverter writes normal 20 s after the expiry: a new updatedAt does not restart the grace.
    store.raw = JSON.stringify(value({ mode: 'normal', reason: 'expired', updatedAt: new Date(expiresAt + 20_000).toISOString() }));
    at(expiresAt + 119_000);
    await responder.answer(albRequest());
    const countedWithinGrace = counted(addMetric).length;
    at(expiresAt + 121_000); // the rule is still there past the grace: it must page
    await responder.answer(albRequest());

    expect(before).toMatchObject({ headers: { 'Retry-After': '10' } });
    expect(countedAfterOneSecond).toBe(0);
    expect(countedWithinGrace).toBe(0);
    expect(counted(addMetric)).toEqual([[ANSWERED_OUTSIDE_MAINTENANCE_METRIC, 'Count', 1]]);
  });

  it('does not count the answers of the removal grace after a disable (from its updatedAt), and counts every answer after', async () => {
    const store = fakeParameter(ssmMock, value({ mode: 'maintenance', expiresAt: null }));
    const { responder, addMetric } = setup();
    await responder.answer(albRequest());
    const disabledAt = START + 30_000;
    store.raw = JSON.stringify(value({ mode: 'normal', reason: 'fini', updatedAt: new Date(disabledAt).toISOString() }));

    at(disabledAt + 1_000); // still inside the reader's 5 s cache: maintenance
    await responder.answer(albRequest());
    at(disabledAt + 6_000);
    await responder.answer(albRequest());
    at(disabledAt + 120_000);
    await responder.answer(albRequest());
    const countedWithinGrace = counted(addMetric).length;
    at(disabledAt + 120_001);
    await responder.answer(albRequest());
    await responder.answer(albRequest('/api/other'));

    expect(countedWithinGrace).toBe(0);
    expect(counted(addMetric)).toEqual([
      [ANSWERED_OUTSIDE_MAINTENANCE_METRIC, 'Count', 1],
      [ANSWERED_OUTSIDE_MAINTENANCE_METRIC, 'Count', 1],
    ]);
  });

  it('counts at once on a rule left behind long after the value left maintenance, even in a fresh execution', async () => {
    fakeParameter(ssmMock, value({ mode: 'normal', updatedAt: new Date(START - 121_000).toISOString() }));
    const { responder, addMetric } = setup();

    await responder.answer(albRequest());

    expect(counted(addMetric)).toEqual([[ANSWERED_OUTSIDE_MAINTENANCE_METRIC, 'Count', 1]]);
  });

  it('counts at once when the reader failed open (malformed value): there is no time to measure a grace from', async () => {
    fakeParameter(ssmMock, '{"mode": "maint');
    const { responder, addMetric } = setup();

    await responder.answer(albRequest());

    expect(counted(addMetric)).toEqual([[ANSWERED_OUTSIDE_MAINTENANCE_METRIC, 'Count', 1]]);
  });

  /** Answers at the last millisecond of a grace started at `left` (not counted), then one past it (counted once). */
  const expectPagedOnlyAfterGrace = async (responder: MaintenanceResponder, addMetric: jest.SpyInstance, left: number) => {
    at(left + MAINTENANCE_RULE_REMOVAL_GRACE_SECONDS * 1000);
    await responder.answer(albRequest());
    const countedWithinGrace = counted(addMetric).length;
    at(left + MAINTENANCE_RULE_REMOVAL_GRACE_SECONDS * 1000 + 1);
    await responder.answer(albRequest());

    expect(countedWithinGrace).toBe(0);
    expect(counted(addMetric)).toEqual([[ANSWERED_OUTSIDE_MAINTENANCE_METRIC, 'Count', 1]]);
  };

  it("starts the grace no later than its first read out of maintenance (a writer's clock an hour ahead still pages)", async () => {
    fakeParameter(ssmMock, value({ mode: 'normal', updatedAt: new Date(START + 3_600_000).toISOString() }));
    const { responder, addMetric } = setup();

    await responder.answer(albRequest());

    await expectPagedOnlyAfterGrace(responder, addMetric, START);
  });

  /** `atmr-dr killswitch ...` from a laptop whose clock is 10 minutes behind: SSM stamps LastModifiedDate with its own time. */
  const LAPTOP_BEHIND_MS = 600_000;
  const laptopWrite = (mode: 'normal' | 'maintenance', expiresInMs: number | null) => {
    const laptopNow = new Date(Date.now() - LAPTOP_BEHIND_MS);
    return writeKillswitch(
      { ssm: new SSMClient({ region: 'eu-west-3' }), now: () => laptopNow },
      { parameterName: PARAMETER, mode, reason: 'fini', actor: 'alice', expiresAt: expiresInMs === null ? null : new Date(laptopNow.getTime() + expiresInMs) },
    );
  };

  /** A responder that answered in maintenance (the rule in place), and the clock 30 s later, when the laptop writes. */
  const answeredInMaintenance = async () => {
    fakeParameter(ssmMock, value({ mode: 'maintenance', expiresAt: null }));
    const { responder, addMetric } = setup();
    await responder.answer(albRequest());
    const writtenAt = START + 30_000;
    at(writtenAt);
    return { responder, addMetric, writtenAt };
  };

  it("times the grace of a disable from SSM's LastModifiedDate, not from updatedAt (the writer's clock 10 minutes behind)", async () => {
    const { responder, addMetric, writtenAt: disabledAt } = await answeredInMaintenance();
    const { written } = await laptopWrite('normal', null);
    expect(Date.parse(written.updatedAt)).toBe(disabledAt - LAPTOP_BEHIND_MS);

    at(disabledAt + 6_000); // past the reader's cache: the rule is still being removed
    await responder.answer(albRequest());

    await expectPagedOnlyAfterGrace(responder, addMetric, disabledAt);
  });

  it('times the grace of a value that expired when it was written (clock behind by more than --expires) from its LastModifiedDate', async () => {
    const { responder, addMetric, writtenAt } = await answeredInMaintenance();
    // `enable --expires 5m`: expiresAt = the laptop's now + 5 min, 5 minutes before SSM's now.
    const { written } = await laptopWrite('maintenance', 300_000);
    expect(Date.parse(written.expiresAt ?? '')).toBe(writtenAt - 300_000);

    at(writtenAt + 6_000);
    const first = await responder.answer(albRequest());
    expect(first).toMatchObject({ statusCode: 503, headers: { 'Retry-After': '120' } }); // read as expired, not maintenance

    await expectPagedOnlyAfterGrace(responder, addMetric, writtenAt);
  });

  it('takes the grace it is given (the construct lowers it to a shorter reconcile interval)', async () => {
    fakeParameter(ssmMock, value({ mode: 'normal', updatedAt: new Date(START - 61_000).toISOString() }));
    const shorter = setup({ removalGraceSeconds: 60 });
    const standard = setup();

    await shorter.responder.answer(albRequest());
    await standard.responder.answer(albRequest());

    expect(counted(shorter.addMetric)).toHaveLength(1);
    expect(counted(standard.addMetric)).toHaveLength(0);
  });

  it('reads through the shared reader: one GetParameter per 5 s cache age, however many requests', async () => {
    fakeParameter(ssmMock, value({ mode: 'maintenance', expiresAt: '2026-06-01T10:30:00.000Z' }));
    const { responder } = setup();

    const answers = [];
    for (let i = 0; i < 40; i++) {
      answers.push(await responder.answer(albRequest()));
      advance(100); // 40 requests over 4 s
    }

    expect(ssmMock).toHaveReceivedCommandTimes(GetParameterCommand, 1);
    // The Retry-After still counts down with the clock, from the cached value.
    expect(answers[0]).toMatchObject({ headers: { 'Retry-After': '1800' } });
    expect(answers[39]).toMatchObject({ headers: { 'Retry-After': '1797' } });
  });

  it('fails safe: an SSM throttle keeps the last known maintenance value and its expiry', async () => {
    ssmMock
      .on(GetParameterCommand)
      .resolvesOnce(getParameterOutput(value({ mode: 'maintenance', expiresAt: '2026-06-01T10:30:00.000Z' }), 4))
      .rejects(Object.assign(new Error('Rate exceeded'), { name: 'ThrottlingException', $metadata: { httpStatusCode: 400 } }));
    const { responder, warnings } = setup();

    await responder.answer(albRequest());
    advance(10_000);
    const duringThrottle = await responder.answer(albRequest());

    expect(duringThrottle).toMatchObject({ statusCode: 503, headers: { 'Retry-After': '1790' }, body: RUNBOOK_BODY });
    expect(warnings).toHaveBeenCalledWith('killswitch read failed; keeping the last known value', expect.objectContaining({ mode: 'maintenance' }));
  });

  it('still answers the maintenance 503 when SSM fails before any read (default Retry-After)', async () => {
    ssmMock.on(GetParameterCommand).rejects(Object.assign(new Error('AccessDenied'), { name: 'AccessDeniedException', $metadata: { httpStatusCode: 400 } }));
    const { responder } = setup({ defaultRetryAfterSeconds: 90 });

    const response = await responder.answer(albRequest());

    expect(response).toMatchObject({ statusCode: 503, headers: { 'Retry-After': '90' }, body: RUNBOOK_BODY });
  });

  it('answers the maintenance 503 to an event that is not an ALB request, and logs it as an error', async () => {
    fakeParameter(ssmMock, value({ mode: 'maintenance' }));
    const { responder, errors } = setup();

    const response = await responder.answer({ rawPath: '/api', requestContext: { http: { method: 'GET' } } });

    expect(response).toMatchObject({ statusCode: 503, headers: { 'Retry-After': '120' }, body: RUNBOOK_BODY });
    expect(errors).toHaveBeenCalledWith(expect.stringMatching(/not an ALB request/), expect.anything());
  });
});

describe('maintenance responder handler', () => {
  const ENV = { KILLSWITCH_PARAMETER: PARAMETER, DEFAULT_RETRY_AFTER_SECONDS: '45', REMOVAL_GRACE_SECONDS: '120', AWS_REGION: 'eu-west-3', POWERTOOLS_TRACE_ENABLED: 'false' };
  type HandlerModule = { respond: (event: unknown) => Promise<unknown> };
  let respond: HandlerModule['respond'];
  beforeAll(() => {
    Object.assign(process.env, ENV);
    // Same module registry as the test, so the mocked SSMClient is the one the handler uses.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    respond = (require('../../../lambdas/killswitch/maintenance-responder-handler') as HandlerModule).respond;
  });

  it('reads the parameter and the default Retry-After from its environment', async () => {
    fakeParameter(ssmMock, value({ mode: 'maintenance', expiresAt: null }));

    const response = await respond(albRequest());

    expect(response).toMatchObject({ statusCode: 503, headers: { 'Retry-After': '45' }, body: RUNBOOK_BODY });
    expect(ssmMock).toHaveReceivedCommandWith(GetParameterCommand, { Name: PARAMETER });
  });

  it('publishes KillswitchInvalid when the value is malformed, and still answers 503', async () => {
    fakeParameter(ssmMock, '{"mode": "maint');
    advance(60_000); // past the cache age of the module's reader (the clock restarts at START per test)
    const stdout = jest.spyOn(process.stdout, 'write').mockImplementation(() => true);

    const response = await respond(albRequest());

    const emitted = stdout.mock.calls.map(([chunk]) => String(chunk)).join('');
    stdout.mockRestore();
    expect(response).toMatchObject({ statusCode: 503, headers: { 'Retry-After': '45' } });
    expect(emitted).toContain('"KillswitchInvalid"');
  });

  it('refuses to start without its configuration, naming the variable', () => {
    const saved = process.env.DEFAULT_RETRY_AFTER_SECONDS;
    delete process.env.DEFAULT_RETRY_AFTER_SECONDS;
    try {
      expect(() =>
        jest.isolateModules(() => {
          // eslint-disable-next-line @typescript-eslint/no-require-imports
          require('../../../lambdas/killswitch/maintenance-responder-handler');
        }),
      ).toThrow(/^maintenance responder: DEFAULT_RETRY_AFTER_SECONDS is not set; it is set by the killswitch construct/);
    } finally {
      process.env.DEFAULT_RETRY_AFTER_SECONDS = saved;
    }
  });
});
