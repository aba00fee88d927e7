import { utcMinute } from '../../../lambdas/shared/format';
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { GetParameterCommand, PutParameterCommand, SSMClient } from '@aws-sdk/client-ssm';
import { mockClient } from 'aws-sdk-client-mock';
import 'aws-sdk-client-mock-jest';
import { handleSlackCommand, parseSlackText, slackFailed, SLACK_OUTCOME_UNKNOWN, slackSignature, verifySlackSignature } from '../../../lambdas/killswitch/slack';
import { parseExpires } from '../../../lambdas/killswitch/value';
import { SLACK_COMMAND_SDK } from '../../../lambdas/shared/sdk-retry';
import { fakeParameter, getParameterOutput, PARAMETER, silentSsm, timed, value } from './fixtures';

const SECRET = '8f742231b10e8888abcd99yyyzzz85a5';
const SECRET_ARN = 'arn:aws:secretsmanager:eu-west-3:111111111111:secret:atmr/slack-signing-AbCdEf';
const ssmMock = mockClient(SSMClient);
const secretsMock = mockClient(SecretsManagerClient);

process.env.KILLSWITCH_PARAMETER = PARAMETER;
process.env.ENVIRONMENT_NAME = 'staging';
process.env.SLACK_SIGNING_SECRET_ARN = SECRET_ARN;
process.env.SLACK_ALLOWED_USER_IDS = 'U0123ONCALL,U0456LEADOPS';
process.env.SLACK_TEAM_ID = 'T1';
process.env.SLACK_API_APP_ID = 'A1';
process.env.AWS_REGION = 'eu-west-3';
process.env.POWERTOOLS_TRACE_ENABLED = 'false';
process.env.POWERTOOLS_LOG_LEVEL = 'SILENT';
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { slack } = require('../../../lambdas/killswitch/slack-handler') as typeof import('../../../lambdas/killswitch/slack-handler');

function form(fields: Record<string, string>): string {
  return new URLSearchParams({ token: 'legacy', team_id: 'T1', api_app_id: 'A1', channel_id: 'C1', command: '/killswitch', user_name: 'alice', ...fields }).toString();
}

/** A Function URL event as Slack's request arrives: signed with `secret` at `timestamp`. */
function slackEvent(body: string, options: { secret?: string; timestamp?: number; base64?: boolean } = {}) {
  const timestamp = String(options.timestamp ?? Math.floor(Date.now() / 1000));
  return {
    version: '2.0',
    rawPath: '/',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      'x-slack-request-timestamp': timestamp,
      'x-slack-signature': slackSignature(options.secret ?? SECRET, timestamp, body),
    },
    body: options.base64 ? Buffer.from(body).toString('base64') : body,
    isBase64Encoded: Boolean(options.base64),
  };
}

async function call(event: unknown) {
  const response = (await slack(event)) as { statusCode: number; body: string };
  return { statusCode: response.statusCode, ...(JSON.parse(response.body) as { response_type: string; text: string }) };
}

beforeEach(() => {
  ssmMock.reset();
  secretsMock.reset();
  secretsMock.on(GetSecretValueCommand).resolves({ SecretString: SECRET });
});

describe('Slack /killswitch', () => {
  it('enables maintenance for an allowed user with a valid signature, and answers in the channel with who/what/why', async () => {
    const store = fakeParameter(ssmMock, value());

    const reply = await call(slackEvent(form({ user_id: 'U0123ONCALL', text: 'enable maintenance OSRM down' }), { base64: true }));

    expect(reply).toEqual({
      statusCode: 200,
      response_type: 'in_channel',
      text: '<@U0123ONCALL> enabled *maintenance*: OSRM down\nno end set: `/killswitch disable` lifts it; every request but /health and /ready answered 503',
    });
    expect(JSON.parse(store.raw)).toMatchObject({ mode: 'maintenance', reason: 'OSRM down', actor: 'slack:U0123ONCALL (alice)', expiresAt: null });
    expect(secretsMock).toHaveReceivedCommandWith(GetSecretValueCommand, { SecretId: SECRET_ARN });
  });

  it('enables a reason naming a duration past its start as typed (no expiry), and gives the command that sets it as the expiry', async () => {
    const store = fakeParameter(ssmMock, value());

    const reply = await call(slackEvent(form({ user_id: 'U0123ONCALL', text: 'enable maintenance migration pendant 2h' })));

    expect(reply).toEqual({
      statusCode: 200,
      response_type: 'in_channel',
      text:
        '<@U0123ONCALL> enabled *maintenance*: migration pendant 2h\nno end set: `/killswitch disable` lifts it; every request but /health and /ready answered 503' +
        '\n:warning: the reason names a duration but --expires was not given: to end it by itself, `/killswitch enable maintenance --expires 2h migration pendant 2h`',
    });
    expect(JSON.parse(store.raw)).toMatchObject({ mode: 'maintenance', reason: 'migration pendant 2h', expiresAt: null });
    // The command given parses as that expiry and the same reason.
    expect(parseSlackText('enable maintenance --expires 2h migration pendant 2h')).toEqual({ action: 'enable', mode: 'maintenance', reason: 'migration pendant 2h', expires: '2h' });
  });

  it('supports --expires, disable and status with the same core as the CLI', async () => {
    const store = fakeParameter(ssmMock, value());

    const enabled = await call(slackEvent(form({ user_id: 'U0456LEADOPS', text: 'enable degraded --expires 30m peak load' })));
    const status = await call(slackEvent(form({ user_id: 'U0456LEADOPS', text: 'status' })));
    const disabled = await call(slackEvent(form({ user_id: 'U0456LEADOPS', text: 'disable load is back to normal' })));

    expect(enabled.text).toMatch(/^<@U0456LEADOPS> enabled \*degraded\* until \d{4}-\d\d-\d\d \d\d:\d\d UTC: peak load$/);
    expect(status).toMatchObject({ statusCode: 200, response_type: 'ephemeral', text: expect.stringMatching(/^Killswitch: degraded \(by slack:U0456LEADOPS \(alice\)/) });
    expect(disabled).toMatchObject({ response_type: 'in_channel', text: '<@U0456LEADOPS> returned to *normal*: load is back to normal' });
    expect(JSON.parse(store.raw)).toMatchObject({ mode: 'normal', expiresAt: null });
  });

  it('says until when in the channel as times are said to operators, to the minute and in UTC', async () => {
    fakeParameter(ssmMock, value(), { ssmClock: () => Date.parse('2026-12-06T04:32:10.183Z') });

    const reply = await call(slackEvent(form({ user_id: 'U0123ONCALL', text: 'enable maintenance --expires 2h migration' })));

    expect(reply).toMatchObject({ response_type: 'in_channel', text: '<@U0123ONCALL> enabled *maintenance* until 2026-12-06 06:32 UTC: migration' });
  });

  it('enable of the mode on with another reason and no --expires keeps the expiry, and says until when', async () => {
    const store = fakeParameter(ssmMock, value());

    await call(slackEvent(form({ user_id: 'U0456LEADOPS', text: 'enable maintenance --expires 30m OSRM down' })));
    const { expiresAt } = JSON.parse(store.raw) as { expiresAt: string };
    const reply = await call(slackEvent(form({ user_id: 'U0456LEADOPS', text: 'enable maintenance OSRM down, provider paged' })));

    expect(reply.text).toBe(`<@U0456LEADOPS> enabled *maintenance* until ${utcMinute(Date.parse(expiresAt))}: OSRM down, provider paged`);
    expect(JSON.parse(store.raw)).toMatchObject({ reason: 'OSRM down, provider paged', expiresAt });
  });

  it('disable when already normal writes nothing and tells only the caller, in the CLI\'s line', async () => {
    const store = fakeParameter(ssmMock, value(), { version: 3 });

    const reply = await call(slackEvent(form({ user_id: 'U0456LEADOPS', text: 'disable OSRM back' })));

    expect(reply).toEqual({ statusCode: 200, response_type: 'ephemeral', text: 'killswitch already normal (since 2026-01-01 00:00 UTC, by atmr-dr deploy): nothing changed' });
    expect(ssmMock).not.toHaveReceivedCommand(PutParameterCommand);
    expect(store.version).toBe(3);
  });

  it('takes --expires=2h (the CLI\'s other form) as the expiry, not as the reason', async () => {
    const store = fakeParameter(ssmMock, value());

    const reply = await call(slackEvent(form({ user_id: 'U0123ONCALL', text: 'enable maintenance --expires=2h migration' })));

    const written = JSON.parse(store.raw) as { mode: string; reason: string; updatedAt: string; expiresAt: string | null };
    expect(reply).toMatchObject({ statusCode: 200, response_type: 'in_channel', text: expect.stringMatching(/^<@U0123ONCALL> enabled \*maintenance\* until \d{4}-\d\d-\d\d \d\d:\d\d UTC: migration$/) });
    expect(written).toMatchObject({ mode: 'maintenance', reason: 'migration' });
    expect(Date.parse(written.expiresAt ?? '') - Date.parse(written.updatedAt)).toBe(2 * 3600 * 1000);
  });

  it('takes a quoted --expires "2h" as the expiry, the reason after it as the reason', async () => {
    const store = fakeParameter(ssmMock, value());

    const reply = await call(slackEvent(form({ user_id: 'U0123ONCALL', text: 'enable maintenance --expires "2h" migration' })));

    const written = JSON.parse(store.raw) as { mode: string; reason: string; updatedAt: string; expiresAt: string | null };
    expect(reply).toMatchObject({ statusCode: 200, response_type: 'in_channel' });
    expect(written).toMatchObject({ mode: 'maintenance', reason: 'migration' });
    expect(Date.parse(written.expiresAt ?? '') - Date.parse(written.updatedAt)).toBe(2 * 3600 * 1000);
  });

  it.each(['enable maintenance --EXPIRES 2h migration', 'enable maintenance migration --expire=2h', 'enable maintenance --yes migration'])(
    'refuses any other option (%s) in one line naming it and the accepted form, and writes nothing',
    async (text) => {
      fakeParameter(ssmMock, value());

      const reply = await call(slackEvent(form({ user_id: 'U0123ONCALL', text })));

      const word = text.split(' ').find((w) => w.startsWith('--'));
      expect(reply).toEqual({
        statusCode: 200,
        response_type: 'ephemeral',
        text: `killswitch: unknown option "${word}": the only option is --expires 2h or --expires=2h (lower case)`,
      });
      expect(ssmMock).not.toHaveReceivedCommand(PutParameterCommand);
    },
  );

  // A reason that starts with a duration and no --expires would never expire; a missing mode or
  // reason is answered with the Slack command that gives it, not the CLI's flags.
  it.each([
    ['enable maintenance 30m deploy cassé', '"30m" looks like a duration: write /killswitch enable maintenance --expires 30m deploy cassé; nothing changed'],
    ['enable degraded 2h30m migration', '"2h30m" looks like a duration: write /killswitch enable degraded --expires 2h30m migration; nothing changed'],
    ['enable maintenance 1d', '"1d" looks like a duration: write /killswitch enable maintenance --expires 1d <reason>; nothing changed'],
    // "for 2h" at the reason's start means the expiry too, in the team's French as in English.
    ['enable maintenance pendant 2h migration', '"pendant 2h" looks like a duration: write /killswitch enable maintenance --expires 2h migration; nothing changed'],
    ['enable maintenance Pendant 2 heures migration', '"Pendant 2 heures" looks like a duration: write /killswitch enable maintenance --expires 2h migration; nothing changed'],
    ['enable degraded for 30m peak', '"for 30m" looks like a duration: write /killswitch enable degraded --expires 30m peak; nothing changed'],
    // A worded duration after --expires, quoted or not, gets the same refusal.
    ['enable maintenance --expires 2 heures migration', '--expires "2 heures" is not a duration --expires takes: write --expires 2h; nothing changed'],
    ['enable maintenance --expires "2 heures" migration', '--expires "2 heures" is not a duration --expires takes: write --expires 2h; nothing changed'],
    ['enable maintenance --expires \u201c2 heures\u201d migration', '--expires "2 heures" is not a duration --expires takes: write --expires 2h; nothing changed'],
    ['enable maintenance --expires="30 min" migration', '--expires "30 min" is not a duration --expires takes: write --expires 30m; nothing changed'],
    // A quote never closed after --expires: named, whatever follows it (nothing, a reason, a unit).
    ['enable --expires "2', 'the quote opened by --expires "2 is never closed: close it, or write the duration without quotes, as --expires 2h or --expires=2h; nothing changed'],
    ['enable maintenance --expires "2h migration', 'the quote opened by --expires "2h is never closed: close it, or write the duration without quotes, as --expires 2h or --expires=2h; nothing changed'],
    ['enable maintenance --expires \u201c2 heures migration', 'the quote opened by --expires \u201c2 is never closed: close it, or write the duration without quotes, as --expires 2h or --expires=2h; nothing changed'],
    ['enable maintenance migration --expires="2', 'the quote opened by --expires="2 is never closed: close it, or write the duration without quotes, as --expires 2h or --expires=2h; nothing changed'],
    ['enable maintenance', 'a reason is required: /killswitch enable maintenance OSRM down'],
    ['enable degraded --expires 2h', 'a reason is required: /killswitch enable degraded --expires 2h OSRM down'],
    ['enable', 'a mode is required: /killswitch enable maintenance|degraded <reason>'],
    ['enable --expires=2h', 'a mode is required: /killswitch enable maintenance|degraded <reason>'],
  ])('refuses %s privately with the Slack command to write instead, writing nothing', async (text, line) => {
    fakeParameter(ssmMock, value());

    const reply = await call(slackEvent(form({ user_id: 'U0123ONCALL', text })));

    expect(reply).toEqual({ statusCode: 200, response_type: 'ephemeral', text: `killswitch: ${line}` });
    expect(ssmMock).not.toHaveReceivedCommand(PutParameterCommand);
  });

  it.each([
    ['enable maintenance', 'enable maintenance '],
    ['disable', 'disable '],
  ])('refuses a reason over 500 characters (%s) naming "the reason", not the CLI\'s --reason, writing nothing', async (_what, command) => {
    fakeParameter(ssmMock, value({ mode: 'maintenance' }));

    const reply = await call(slackEvent(form({ user_id: 'U0123ONCALL', text: `${command}${'x'.repeat(501)}` })));

    expect(reply).toEqual({ statusCode: 200, response_type: 'ephemeral', text: 'killswitch: the reason is 501 characters: shorten it to 500 or fewer' });
    expect(ssmMock).not.toHaveReceivedCommand(PutParameterCommand);
  });

  it('enables when the on-call types the command a missing reason was answered with', async () => {
    const store = fakeParameter(ssmMock, value());
    const refused = await call(slackEvent(form({ user_id: 'U0123ONCALL', text: 'enable degraded --expires 2h' })));
    const suggested = /: \/killswitch (.*)$/.exec(refused.text)?.[1] ?? refused.text;

    const reply = await call(slackEvent(form({ user_id: 'U0123ONCALL', text: suggested })));

    expect(reply).toMatchObject({ response_type: 'in_channel', text: expect.stringMatching(/^<@U0123ONCALL> enabled \*degraded\* until .*: OSRM down$/) });
    expect(JSON.parse(store.raw)).toMatchObject({ mode: 'degraded', reason: 'OSRM down' });
  });

  it.each([
    ['help', 'usage: /killswitch status | enable maintenance|degraded [--expires 30m] <reason> | disable [reason] | help'],
    ['HELP', 'usage: /killswitch status | enable maintenance|degraded [--expires 30m] <reason> | disable [reason] | help'],
    ['off', 'killswitch: unknown command "off": to return to normal, write /killswitch disable <reason>'],
    ['on maintenance', 'killswitch: unknown command "on": to enable, write /killswitch enable maintenance|degraded [--expires 30m] <reason>'],
    ['stop', 'killswitch: unknown command "stop": to stop the API, write /killswitch enable maintenance <reason>; to end a maintenance, /killswitch disable <reason>'],
    ['reboot', 'killswitch: unknown command "reboot": use /killswitch status | enable maintenance|degraded [--expires 30m] <reason> | disable [reason] | help'],
    ['constructor', 'killswitch: unknown command "constructor": use /killswitch status | enable maintenance|degraded [--expires 30m] <reason> | disable [reason] | help'],
  ])('answers %s with the usage, --expires included, or the command meant, privately, reading nothing', async (text, line) => {
    const reply = await call(slackEvent(form({ user_id: 'U0123ONCALL', text })));

    expect(reply).toEqual({ statusCode: 200, response_type: 'ephemeral', text: line });
    expect(ssmMock.calls()).toHaveLength(0);
  });

  it.each([
    ['enable Maintenance OSRM down', 'maintenance'],
    ['ENABLE DEGRADED OSRM down', 'degraded'],
  ])('takes the mode in any case, as the commands (%s)', async (text, mode) => {
    const store = fakeParameter(ssmMock, value());

    const reply = await call(slackEvent(form({ user_id: 'U0123ONCALL', text })));

    expect(reply.response_type).toBe('in_channel');
    expect(reply.text.split('\n')[0]).toBe(`<@U0123ONCALL> enabled *${mode}*: OSRM down`);
    expect(JSON.parse(store.raw)).toMatchObject({ mode, reason: 'OSRM down' });
  });

  it('stores a quoted reason without its quotes, as the CLI\'s shell would', async () => {
    const store = fakeParameter(ssmMock, value());

    const reply = await call(slackEvent(form({ user_id: 'U0123ONCALL', text: 'enable maintenance --expires 30m \u201cdeploy cass\u00e9\u201d' })));

    expect(reply).toMatchObject({ response_type: 'in_channel', text: expect.stringMatching(/: deploy cassé$/) });
    expect(JSON.parse(store.raw)).toMatchObject({ mode: 'maintenance', reason: 'deploy cassé' });
  });

  it('rejects a forged signature (wrong secret) with 401 and writes nothing', async () => {
    fakeParameter(ssmMock, value());

    const reply = await call(slackEvent(form({ user_id: 'U0123ONCALL', text: 'enable maintenance x' }), { secret: 'not-the-secret' }));

    expect(reply).toMatchObject({ statusCode: 401, text: 'refused' });
    expect(ssmMock).not.toHaveReceivedCommand(PutParameterCommand);
  });

  it('rejects a body altered after signing', async () => {
    fakeParameter(ssmMock, value());
    const event = slackEvent(form({ user_id: 'U0123ONCALL', text: 'status' }));
    event.body = form({ user_id: 'U0123ONCALL', text: 'enable maintenance pwned' });

    expect((await call(event)).statusCode).toBe(401);
    expect(ssmMock).not.toHaveReceivedCommand(PutParameterCommand);
  });

  it('rejects a replayed request older than 5 minutes, even correctly signed', async () => {
    fakeParameter(ssmMock, value());

    const reply = await call(slackEvent(form({ user_id: 'U0123ONCALL', text: 'enable maintenance x' }), { timestamp: Math.floor(Date.now() / 1000) - 301 }));

    expect(reply).toMatchObject({ statusCode: 401, text: 'refused' });
    expect(ssmMock).not.toHaveReceivedCommand(PutParameterCommand);
  });

  it('refuses an unknown user (valid signature) and says how to get access, writing nothing', async () => {
    fakeParameter(ssmMock, value());

    const reply = await call(slackEvent(form({ user_id: 'U0999INTRUDER', text: 'enable maintenance x' })));

    expect(reply).toMatchObject({ statusCode: 200, response_type: 'ephemeral', text: expect.stringMatching(/is not allowed .* killswitch\.slack\.allowedUserIds/) });
    expect(ssmMock).not.toHaveReceivedCommand(PutParameterCommand);
  });

  it.each([
    ['no body', { headers: {} }],
    ['not an object', 'hello'],
  ])('answers 400 to a malformed event (%s)', async (_label, event) => {
    expect((await call(event)).statusCode).toBe(400);
  });

  it('answers 400 to a signed body that is not a slash command, writing nothing', async () => {
    const reply = await call(slackEvent('{"json": "not a form"}'));

    expect(reply.statusCode).toBe(400);
    expect(ssmMock).not.toHaveReceivedCommand(PutParameterCommand);
  });

  it("acknowledges Slack's signed ssl_check with 200, writing nothing", async () => {
    const reply = await call(slackEvent('ssl_check=1&token=legacy'));

    expect(reply.statusCode).toBe(200);
    expect(ssmMock).not.toHaveReceivedCommand(PutParameterCommand);
  });

  it('answers an invalid mode with the valid values, privately, writing nothing', async () => {
    fakeParameter(ssmMock, value());

    const reply = await call(slackEvent(form({ user_id: 'U0123ONCALL', text: 'enable panic now' })));

    expect(reply).toMatchObject({ response_type: 'ephemeral', text: expect.stringMatching(/invalid mode "panic": use one of maintenance, degraded/) });
    expect(ssmMock).not.toHaveReceivedCommand(PutParameterCommand);
  });

  it('caches the signing secret: no Secrets Manager call once the first test of this file fetched it', async () => {
    fakeParameter(ssmMock, value());

    const first = await call(slackEvent(form({ user_id: 'U0123ONCALL', text: 'status' })));
    const second = await call(slackEvent(form({ user_id: 'U0123ONCALL', text: 'status' })));

    expect([first.statusCode, second.statusCode]).toEqual([200, 200]);
    expect(secretsMock).not.toHaveReceivedCommand(GetSecretValueCommand);
  });
});

describe('handleSlackCommand: cheap checks first, generic answers, details in the log', () => {
  const NOW = 1_780_000_000;
  function setup(options: { ssmFails?: boolean } = {}) {
    const signingSecret = jest.fn(async () => SECRET);
    const logger = { warn: jest.fn(), error: jest.fn() };
    const ssm = new SSMClient({ region: 'eu-west-3' });
    if (options.ssmFails) ssmMock.onAnyCommand().rejects(Object.assign(new Error('User: arn:aws:sts::111111111111:assumed-role/x is not authorized to perform ssm:GetParameter'), { name: 'AccessDeniedException' }));
    const deps = { ssm, parameterName: PARAMETER, environmentName: 'staging', signingSecret, allowedUserIds: ['U0123ONCALL'], teamId: 'T1', apiAppId: 'A1', logger, nowSeconds: () => NOW };
    const signed = (body: string, timestamp = NOW) => ({
      headers: { 'x-slack-request-timestamp': String(timestamp), 'x-slack-signature': slackSignature(SECRET, String(timestamp), body) },
      rawBody: body,
    });
    return { deps, signingSecret, logger, signed };
  }

  it.each([
    ['no signature headers', { headers: {}, rawBody: 'text=status' }],
    ['a malformed signature', { headers: { 'x-slack-request-timestamp': String(NOW), 'x-slack-signature': 'nope' }, rawBody: 'text=status' }],
    ['a timestamp outside the window', { headers: { 'x-slack-request-timestamp': String(NOW - 301), 'x-slack-signature': `v0=${'a'.repeat(64)}` }, rawBody: 'x' }],
  ])('refuses %s without reading the signing secret, and logs why', async (_label, request) => {
    const { deps, signingSecret, logger } = setup();

    const reply = await handleSlackCommand(deps, request);

    expect(reply).toEqual({ statusCode: 401, body: { response_type: 'ephemeral', text: 'refused' } });
    expect(signingSecret).not.toHaveBeenCalled();
    expect(logger.warn).toHaveBeenCalledWith('slack request refused', expect.objectContaining({ why: expect.any(String) }));
  });

  it.each([
    ['another workspace', { team_id: 'T999', api_app_id: 'A1' }],
    ['another app', { team_id: 'T1', api_app_id: 'A999' }],
    ['no team or app', {}],
  ])('refuses a correctly signed command from %s, writing nothing', async (_label, ids) => {
    fakeParameter(ssmMock, value());
    const { deps, signed } = setup();
    const body = new URLSearchParams({ command: '/killswitch', user_id: 'U0123ONCALL', text: 'enable maintenance x', ...ids }).toString();

    const reply = await handleSlackCommand(deps, signed(body));

    expect(reply).toEqual({ statusCode: 403, body: { response_type: 'ephemeral', text: 'refused' } });
    expect(ssmMock).not.toHaveReceivedCommand(PutParameterCommand);
  });

  it.each([
    ['/incident', 'U0999STRANGER', 'ack 20261130T101500Z-0badc0de', '<@U0999STRANGER> is not allowed to use /incident: ask the lead DevOps to add your Slack user id to killswitch.slack.allowedUserIds'],
    ['/killswitch', 'U0999STRANGER', 'status', '<@U0999STRANGER> is not allowed to use /killswitch: ask the lead DevOps to add your Slack user id to killswitch.slack.allowedUserIds'],
    ['/incident', 'U0123ONCALL', 'ack 20261130T101500Z-0badc0de', '/incident is not set up on this endpoint (no OPS_TABLE): acknowledge with the link in the page or `npx --no atmr-dr incident ack <id> --env staging`'],
    ['/foo', 'U0123ONCALL', 'enable maintenance x', 'unknown command /foo: this endpoint answers /killswitch and /incident'],
  ])('answers %s from %s (text %s) in one line naming the command typed, never as a killswitch command', async (command, userId, text, line) => {
    fakeParameter(ssmMock, value());
    const { deps, signed } = setup();
    const body = new URLSearchParams({ command, user_id: userId, text, team_id: 'T1', api_app_id: 'A1' }).toString();

    const reply = await handleSlackCommand(deps, signed(body));

    expect(reply).toEqual({ statusCode: 200, body: { response_type: 'ephemeral', text: line } });
    expect(ssmMock).not.toHaveReceivedCommand(PutParameterCommand);
  });

  it('answers a generic message when AWS fails, and logs the AWS error instead of showing it', async () => {
    const { deps, signed, logger } = setup({ ssmFails: true });
    const body = new URLSearchParams({ command: '/killswitch', user_id: 'U0123ONCALL', text: 'status', team_id: 'T1', api_app_id: 'A1' }).toString();

    const reply = await handleSlackCommand(deps, signed(body));

    expect(reply.body.text).toBe(slackFailed('staging'));
    expect(reply.body.text).toBe('killswitch failed: an internal error was logged; retry, or run from a terminal: `npx --no atmr-dr killswitch status --env staging`');
    expect(reply.body.text).not.toMatch(/arn:|not authorized|AccessDenied/);
    expect(logger.error).toHaveBeenCalledWith('slack killswitch command failed', expect.objectContaining({ name: 'AccessDeniedException' }));
  });

  const enableBody = new URLSearchParams({ command: '/killswitch', user_id: 'U0123ONCALL', text: 'enable maintenance --expires 2h OSRM down', team_id: 'T1', api_app_id: 'A1' }).toString();
  /** What the SDK throws when SSM answered an AccessDeniedException (HTTP 400) to `action`. */
  const deniedBySsm = (action: string) =>
    Object.assign(
      new Error(`User: arn:aws:sts::111111111111:assumed-role/atmr-slack/fn is not authorized to perform: ${action} on resource: arn:aws:ssm:eu-west-3:111111111111:parameter${PARAMETER} because no identity-based policy allows the ${action} action`),
      { name: 'AccessDeniedException', $fault: 'client', $metadata: { httpStatusCode: 400, attempts: 1 } },
    );

  it('says SSM refused the write and nothing changed, with the permission the role lacks, when SSM answers PutParameter with AccessDeniedException', async () => {
    const { deps, signed, logger } = setup();
    ssmMock.on(GetParameterCommand).resolves(getParameterOutput(value(), 3));
    const denied = deniedBySsm('ssm:PutParameter');
    ssmMock.on(PutParameterCommand).rejects(denied);

    const reply = await handleSlackCommand(deps, signed(enableBody));

    expect(reply).toEqual({
      statusCode: 200,
      body: {
        response_type: 'ephemeral',
        text:
          `killswitch: SSM refused (AccessDeniedException: ${denied.message}); nothing changed: this function's role lacks ssm:PutParameter on ${PARAMETER} ` +
          "(the Ops stack grants it: redeploy it); meanwhile, from a terminal: `npx --no atmr-dr killswitch enable --mode maintenance --reason 'OSRM down' --expires 2h --env staging`",
      },
    });
    expect(logger.error).toHaveBeenCalledWith('slack killswitch command refused by AWS', expect.objectContaining({ name: 'AccessDeniedException' }));
  });

  it('says the change may have been written when the PutParameter got no answer in time (a timeout)', async () => {
    const { deps, signed } = setup();
    ssmMock.on(GetParameterCommand).resolves(getParameterOutput(value(), 3));
    ssmMock.on(PutParameterCommand).rejects(Object.assign(new Error('Connection timed out after 800 ms'), { name: 'TimeoutError' }));

    const reply = await handleSlackCommand(deps, signed(enableBody));

    expect(reply).toEqual({ statusCode: 200, body: { response_type: 'ephemeral', text: SLACK_OUTCOME_UNKNOWN } });
  });

  it('says the change may have been written when the write was answered but its re-read was refused (the write stands)', async () => {
    const { deps, signed } = setup();
    ssmMock.on(GetParameterCommand).resolvesOnce(getParameterOutput(value(), 3)).rejects(deniedBySsm('ssm:GetParameter'));
    ssmMock.on(PutParameterCommand).resolves({ Version: 4 });

    const reply = await handleSlackCommand(deps, signed(enableBody));

    expect(reply).toEqual({ statusCode: 200, body: { response_type: 'ephemeral', text: SLACK_OUTCOME_UNKNOWN } });
  });

  it("a parameter that does not exist is answered with the function's fix (the Data stack, its KILLSWITCH_PARAMETER), not the CLI's flags", async () => {
    // Arrange: SSM's answer for a name that does not exist in this region.
    const { deps, signed } = setup();
    ssmMock.onAnyCommand().rejects(Object.assign(new Error('ParameterNotFound'), { name: 'ParameterNotFound' }));
    const body = new URLSearchParams({ command: '/killswitch', user_id: 'U0123ONCALL', text: 'enable maintenance OSRM down', team_id: 'T1', api_app_id: 'A1' }).toString();

    // Act
    const reply = await handleSlackCommand(deps, signed(body));

    // Assert
    expect(reply).toEqual({
      statusCode: 200,
      body: {
        response_type: 'ephemeral',
        text: `killswitch: parameter ${PARAMETER} does not exist: the Data stack creates it: check that it is deployed in this function's region and the function's KILLSWITCH_PARAMETER setting`,
      },
    });
    expect(ssmMock).not.toHaveReceivedCommand(PutParameterCommand);
  });

  it('answers a generic 503 when the signing secret cannot be read', async () => {
    const { deps, signed, logger } = setup();
    deps.signingSecret.mockRejectedValue(new Error('ResourceNotFoundException: secret arn:aws:secretsmanager:... not found'));

    const reply = await handleSlackCommand(deps, signed('text=status'));

    expect(reply).toEqual({ statusCode: 503, body: { response_type: 'ephemeral', text: slackFailed('staging') } });
    expect(logger.error).toHaveBeenCalledWith('cannot read the Slack signing secret', expect.objectContaining({ error: expect.stringMatching(/not found/) }));
  });
});

describe('verifySlackSignature', () => {
  // Slack's documented example request (api.slack.com/authentication/verifying-requests-from-slack).
  const body =
    'token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c';
  const headers = { 'X-Slack-Request-Timestamp': '1531420618', 'X-Slack-Signature': 'v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503' };

  it("accepts Slack's documented example", () => {
    expect(verifySlackSignature({ headers, rawBody: body }, SECRET, 1531420618 + 10)).toEqual({ ok: true });
  });

  it('rejects missing headers, a malformed timestamp and a timestamp from the future', () => {
    expect(verifySlackSignature({ headers: {}, rawBody: body }, SECRET, 1531420618)).toEqual({ ok: false, why: 'missing Slack signature headers' });
    expect(verifySlackSignature({ headers: { ...headers, 'X-Slack-Request-Timestamp': 'x' }, rawBody: body }, SECRET, 1531420618).ok).toBe(false);
    expect(verifySlackSignature({ headers, rawBody: body }, SECRET, 1531420618 - 301).ok).toBe(false);
  });
});

describe('parseSlackText', () => {
  it('parses enable/disable/status, with --expires anywhere', () => {
    expect(parseSlackText('enable maintenance OSRM down')).toEqual({ action: 'enable', mode: 'maintenance', reason: 'OSRM down', expires: undefined });
    expect(parseSlackText('enable degraded peak --expires 2h')).toEqual({ action: 'enable', mode: 'degraded', reason: 'peak', expires: '2h' });
    expect(parseSlackText('')).toEqual({ action: 'status' });
    expect(parseSlackText('disable')).toEqual({ action: 'disable', reason: undefined });
    expect(() => parseSlackText('reboot')).toThrow(/unknown command "reboot"/);
    expect(() => parseSlackText('enable maintenance x --expires')).toThrow(/--expires needs a duration/);
  });

  it('takes --expires=V anywhere, as the CLI does, and refuses what the CLI would not take', () => {
    expect(parseSlackText('enable maintenance --expires=2h migration OSRM')).toEqual({ action: 'enable', mode: 'maintenance', reason: 'migration OSRM', expires: '2h' });
    expect(parseSlackText('enable --expires=1h30m degraded peak')).toEqual({ action: 'enable', mode: 'degraded', reason: 'peak', expires: '1h30m' });
    expect(() => parseSlackText('enable maintenance migration --EXPIRES 2h')).toThrow(/^killswitch: unknown option "--EXPIRES": the only option is --expires 2h or --expires=2h \(lower case\)$/);
    expect(() => parseSlackText('enable maintenance migration --Expires=2h')).toThrow(/^killswitch: unknown option "--Expires=2h"/);
    expect(() => parseSlackText('enable maintenance x --expires=')).toThrow(/^killswitch: --expires needs a duration such as 30m, 2h or 1d: --expires 2h or --expires=2h$/);
    expect(() => parseSlackText('enable maintenance x --expires 2h --expires=3h')).toThrow(/^killswitch: --expires is given twice \("--expires=3h"\)/);
    expect(() => parseSlackText('disable --expires 2h back')).toThrow(/^killswitch: --expires applies only to enable \(disable takes none\): remove it$/);
    expect(() => parseSlackText('reboot --force')).toThrow(/unknown command "reboot"/);
  });

  it('suggests, for a reason starting with a duration, a command it takes as that expiry and the rest as the reason', () => {
    const refusal = (() => {
      try {
        parseSlackText('enable maintenance 30m deploy cassé');
      } catch (error) {
        return (error as Error).message;
      }
      return 'accepted';
    })();
    const suggested = /write \/killswitch (.*); nothing changed$/.exec(refusal)?.[1] ?? refusal;

    expect(parseSlackText(suggested)).toEqual({ action: 'enable', mode: 'maintenance', reason: 'deploy cassé', expires: '30m' });
    // A duration after --expires, a word that is not one, or a quoted one is the reason.
    expect(parseSlackText('enable maintenance --expires 2h 30m of tests')).toMatchObject({ reason: '30m of tests', expires: '2h' });
    expect(parseSlackText('enable maintenance 500 errors')).toMatchObject({ reason: '500 errors', expires: undefined });
    // "pendant"/"for" before anything but a duration, or after --expires, is the reason's.
    expect(parseSlackText('enable maintenance for 500 errors')).toMatchObject({ reason: 'for 500 errors', expires: undefined });
    expect(parseSlackText('enable maintenance pendant la migration')).toMatchObject({ reason: 'pendant la migration', expires: undefined });
    expect(parseSlackText('enable maintenance --expires 1h pendant 2h de tests')).toMatchObject({ reason: 'pendant 2h de tests', expires: '1h' });
    expect(() => parseSlackText('enable panic 30m x')).toThrow(/^killswitch: invalid mode "panic"/);
  });

  it.each([
    ['enable maintenance 2H deploy', '2H', 'enable maintenance --expires 2h deploy'],
    ['enable maintenance 2H30M deploy', '2H30M', 'enable maintenance --expires 2h30m deploy'],
    ['enable maintenance 30 min deploy', '30 min', 'enable maintenance --expires 30m deploy'],
    ['enable maintenance 30min deploy', '30min', 'enable maintenance --expires 30m deploy'],
    ['enable degraded 1 h peak', '1 h', 'enable degraded --expires 1h peak'],
    ['enable degraded 2 hours peak', '2 hours', 'enable degraded --expires 2h peak'],
    ['enable maintenance 90 Minutes migration', '90 Minutes', 'enable maintenance --expires 90m migration'],
    ['enable maintenance 2 hours', '2 hours', 'enable maintenance --expires 2h <reason>'],
    // The team writes French: the same durations in its words.
    ['enable maintenance 2 heures migration', '2 heures', 'enable maintenance --expires 2h migration'],
    ['enable maintenance 1 Heure migration', '1 Heure', 'enable maintenance --expires 1h migration'],
    ['enable maintenance 90 secondes test', '90 secondes', 'enable maintenance --expires 90s test'],
    ['enable maintenance 1 jour migration', '1 jour', 'enable maintenance --expires 1d migration'],
    ['enable maintenance 2 jours migration', '2 jours', 'enable maintenance --expires 2d migration'],
    ['enable maintenance 2 j migration', '2 j', 'enable maintenance --expires 2d migration'],
    ['enable maintenance 2j migration', '2j', 'enable maintenance --expires 2d migration'],
  ])('refuses a duration typed in another spelling where the reason goes (%s), suggesting the --expires the CLI takes', (text, typed, suggested) => {
    const refusal = `killswitch: "${typed}" looks like a duration: write /killswitch ${suggested}; nothing changed`;

    expect(() => parseSlackText(text)).toThrow(refusal);
    const expires = suggested.split(' ')[3];
    expect(parseExpires(expires)).toBeGreaterThan(0);
    if (!suggested.endsWith('<reason>')) expect(parseSlackText(suggested)).toMatchObject({ action: 'enable', expires });
  });

  it('refuses a duration in words after --expires quoting all it typed, with the spelling --expires takes', () => {
    expect(() => parseSlackText('enable maintenance --expires 2 heures migration')).toThrow(
      'killswitch: --expires "2 heures" is not a duration --expires takes: write --expires 2h; nothing changed',
    );
    expect(() => parseSlackText('enable maintenance --expires 30 min migration')).toThrow('write --expires 30m; nothing changed');
    // A number alone followed by a word that is no unit is left to the duration's own refusal.
    expect(parseSlackText('enable maintenance --expires 2 pods down')).toMatchObject({ expires: '2', reason: 'pods down' });
  });

  it('suggests 1h30m for 1h30, the spelling --expires takes', () => {
    expect(() => parseExpires('1h30')).toThrow(/^killswitch: malformed duration "1h30": .*; write 1h30m$/);
    expect(parseExpires('1h30m')).toBe(5400);
  });

  it.each([
    ['3 pods down', '3 pods down'],
    ['2 replicas lost', '2 replicas lost'],
    ['500 errors', '500 errors'],
    ['1 disk full', '1 disk full'],
    ['"30 min" of tests', '"30 min" of tests'],
  ])('keeps a reason that starts with a number and no duration (%s)', (typed, reason) => {
    expect(parseSlackText(`enable maintenance ${typed}`)).toEqual({ action: 'enable', mode: 'maintenance', reason, expires: undefined });
  });

  it.each([
    ['"deploy cassé"', 'deploy cassé'],
    ['\u201cdeploy cass\u00e9\u201d', 'deploy cassé'],
    ["'l'API est down'", "'l'API est down'"],
    ['"30m of tests"', '30m of tests'],
    ['"OSRM" down "again"', '"OSRM" down "again"'],
    ["'a' and 'b'", "'a' and 'b'"],
    ["l'API \"down\"", "l'API \"down\""],
  ])('takes one pair of double quotes off a reason around it all, single quotes left (%s)', (typed, reason) => {
    expect(parseSlackText(`enable maintenance ${typed}`)).toEqual({ action: 'enable', mode: 'maintenance', reason, expires: undefined });
    expect(parseSlackText(`disable ${typed}`)).toEqual({ action: 'disable', reason });
  });

  it('refuses a reason that is only quotes as a missing reason', () => {
    expect(() => parseSlackText('enable maintenance ""')).toThrow(/^killswitch: a reason is required: \/killswitch enable maintenance OSRM down$/);
  });

  it('reads a -- that smart punctuation made an em or en dash as the option, not as part of the reason', () => {
    expect(parseSlackText('enable maintenance \u2014expires 2h migration')).toEqual({ action: 'enable', mode: 'maintenance', reason: 'migration', expires: '2h' });
    expect(parseSlackText('enable maintenance \u2013expires=2h migration')).toEqual({ action: 'enable', mode: 'maintenance', reason: 'migration', expires: '2h' });
    expect(() => parseSlackText('enable maintenance \u2014yes migration')).toThrow(/^killswitch: unknown option "--yes"/);
    expect(parseSlackText('enable maintenance OSRM \u2013 migration')).toEqual({ action: 'enable', mode: 'maintenance', reason: 'OSRM -- migration'.replace('--', '\u2013'), expires: undefined });
  });
});

// Last in the file: it restores the real SSMClient (the mock stubs every client's send).
describe("Slack /killswitch when SSM does not answer (the handler's client settings, a real SDK client)", () => {
  const NOW = 1_780_000_000;
  let answersReads = true;
  let ssm: Awaited<ReturnType<typeof silentSsm>>;
  beforeAll(async () => {
    // Reads are answered while `answersReads`; a PutParameter never is (throttled, or lost on the way back).
    ssm = await silentSsm((operation) => (operation === 'GetParameter' && answersReads ? getParameterOutput(value(), 3) : undefined));
  });
  afterAll(() => ssm.close());
  beforeEach(() => ssmMock.restore()); // after the file's beforeEach, whose reset() stubs send again

  async function command(text: string) {
    const logger = { warn: jest.fn(), error: jest.fn() };
    const client = new SSMClient({ ...SLACK_COMMAND_SDK, endpoint: ssm.endpoint, region: 'eu-west-3', credentials: { accessKeyId: 'test', secretAccessKey: 'test' } });
    const body = new URLSearchParams({ command: '/killswitch', user_id: 'U0123ONCALL', text, team_id: 'T1', api_app_id: 'A1' }).toString();
    const request = { headers: { 'x-slack-request-timestamp': String(NOW), 'x-slack-signature': slackSignature(SECRET, String(NOW), body) }, rawBody: body };
    const deps = { ssm: client, parameterName: PARAMETER, environmentName: 'staging', signingSecret: async () => SECRET, allowedUserIds: ['U0123ONCALL'], teamId: 'T1', apiAppId: 'A1', logger, nowSeconds: () => NOW };
    return { reply: await timed(handleSlackCommand(deps, request), 10_000), logger };
  }

  it('says the change may have been written, within Slack\'s 3 s, when the write is not answered', async () => {
    answersReads = true;
    const { reply, logger } = await command('enable maintenance OSRM down');

    expect(reply.ms).toBeLessThan(2_500);
    expect(reply.value).toEqual({ statusCode: 200, body: { response_type: 'ephemeral', text: SLACK_OUTCOME_UNKNOWN } });
    expect(SLACK_OUTCOME_UNKNOWN).toMatch(/may have been written.*`\/killswitch status`/);
    expect(logger.error).toHaveBeenCalledWith('slack killswitch write not confirmed', expect.objectContaining({ name: 'TimeoutError' }));
  }, 15_000);

  it('says it failed (nothing written), within 3 s, when the first read is not answered', async () => {
    answersReads = false;
    const { reply } = await command('enable maintenance OSRM down');

    expect(reply.ms).toBeLessThan(2_500);
    expect(reply.value?.body.text).toBe("killswitch failed: an internal error was logged; retry, or run from a terminal: `npx --no atmr-dr killswitch enable --mode maintenance --reason 'OSRM down' --env staging`");
  }, 15_000);
});
