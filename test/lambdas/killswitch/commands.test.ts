import { PutParameterCommand, SSMClient } from '@aws-sdk/client-ssm';
import { mockClient } from 'aws-sdk-client-mock';
import 'aws-sdk-client-mock-jest';
import { runKillswitchCommand } from '../../../lambdas/killswitch/commands';
import { fakeParameter, PARAMETER, value } from './fixtures';

/**
 * runKillswitchCommand, the core of `atmr-dr killswitch` and of Slack's /killswitch: with AWS silent,
 * the CLI's actor lookup (STS) and the SSM read each take seconds before they give up, and one after
 * the other they added up before the on-call's one line.
 */
const ssmMock = mockClient(SSMClient);
const ssm = new SSMClient({ region: 'eu-west-3' });

beforeEach(() => ssmMock.reset());

describe.each([
  ['enable', { action: 'enable', mode: 'maintenance', reason: 'OSRM down' }],
  ['disable', { action: 'disable', reason: 'OSRM back' }],
] as const)('killswitch %s', (_name, command) => {
  it('reads the parameter while the actor is being looked up, not after, and writes with that actor', async () => {
    // Arrange: an actor lookup that answers only after 200 ms; when SSM is first read is recorded
    const events: string[] = [];
    const store = fakeParameter(ssmMock, value({ mode: command.action === 'disable' ? 'maintenance' : 'normal' }), { version: 4, beforeGet: (index) => index === 0 && events.push('parameter read') });
    const resolveActor = () =>
      new Promise<string>((resolve) =>
        setTimeout(() => {
          events.push('actor known');
          resolve('arn:aws:sts::111111111111:assumed-role/oncall/alice');
        }, 200),
      );

    // Act
    const result = await runKillswitchCommand({ ssm, parameterName: PARAMETER, resolveActor }, command);

    // Assert
    expect(events).toEqual(['parameter read', 'actor known']);
    expect(JSON.parse(store.raw)).toMatchObject({ actor: 'arn:aws:sts::111111111111:assumed-role/oncall/alice' });
    expect(result).toMatchObject({ write: { version: 5, previous: { version: 4 }, conflict: undefined } });
  });
});

describe('a request for what the parameter already holds', () => {
  const actor = async () => 'arn:aws:sts::111111111111:assumed-role/oncall/alice';
  const MAINTENANCE = value({ mode: 'maintenance', reason: 'OSRM down', actor: 'bob', updatedAt: '2026-01-01T10:00:00.000Z' });

  it.each([
    ['disable on normal', value(), { action: 'disable', reason: 'OSRM back' }, 'killswitch already normal (since 2026-01-01 00:00 UTC, by atmr-dr deploy): nothing changed'],
    ['disable on normal, no reason', value(), { action: 'disable' }, 'killswitch already normal (since 2026-01-01 00:00 UTC, by atmr-dr deploy): nothing changed'],
    [
      'enable of the mode on, same reason, no expiry either side',
      MAINTENANCE,
      { action: 'enable', mode: 'maintenance', reason: 'OSRM down' },
      'killswitch already maintenance (since 2026-01-01 10:00 UTC, by bob): nothing changed',
    ],
  ] as const)('%s: writes nothing (no new version, so no notification) and says so in one line', async (_name, held, command, line) => {
    const store = fakeParameter(ssmMock, held, { version: 4 });

    const result = await runKillswitchCommand({ ssm, parameterName: PARAMETER, resolveActor: actor }, command);

    expect(result).toEqual({ action: command.action, unchanged: expect.objectContaining({ version: 4 }), line });
    expect(ssmMock).not.toHaveReceivedCommand(PutParameterCommand);
    expect(store.version).toBe(4);
  });

  it.each([
    ['disable of an expired maintenance (its edge rule stays until the value says normal)', value({ mode: 'maintenance', expiresAt: '2026-01-01T01:00:00.000Z' }), { action: 'disable' }],
    ['enable of the mode on with another reason', MAINTENANCE, { action: 'enable', mode: 'maintenance', reason: 'OSRM still down' }],
    ['enable of the other mode', MAINTENANCE, { action: 'enable', mode: 'degraded', reason: 'OSRM down' }],
    ['enable with an expiry of a mode on without one', MAINTENANCE, { action: 'enable', mode: 'maintenance', reason: 'OSRM down', expires: '30m' }],
    ['enable of an expired mode', value({ mode: 'maintenance', reason: 'OSRM down', expiresAt: '2026-01-01T01:00:00.000Z' }), { action: 'enable', mode: 'maintenance', reason: 'OSRM down' }],
    ['disable of a malformed value', '{"mode":', { action: 'disable' }],
  ] as const)('%s: writes', async (_name, held, command) => {
    const store = fakeParameter(ssmMock, held, { version: 4 });

    const result = await runKillswitchCommand({ ssm, parameterName: PARAMETER, resolveActor: actor }, command);

    expect(result).toMatchObject({ write: { version: 5 } });
    expect(store.version).toBe(5);
  });
});

describe('enable without --expires of the mode in effect (to change its reason)', () => {
  const actor = async () => 'arn:aws:sts::111111111111:assumed-role/oncall/alice';
  const AT = new Date('2026-01-01T10:10:00.000Z');
  const EXPIRY = '2026-01-01T10:30:00.000Z';
  const held = value({ mode: 'maintenance', reason: 'OSRM down', actor: 'bob', updatedAt: '2026-01-01T10:00:00.000Z', expiresAt: EXPIRY });

  it.each([
    ['no --expires: keeps the expiry set on purpose', held, { reason: 'OSRM down, provider paged' }, EXPIRY],
    ['--expires 1h: the new one', held, { reason: 'OSRM down', expires: '1h' }, '2026-01-01T11:10:00.000Z'],
    ['--expires never: removes it', held, { reason: 'OSRM down', expires: 'never' }, null],
    ['no --expires, from the other mode: none (the expiry was set for that mode)', { ...held, mode: 'degraded' as const }, { reason: 'OSRM down' }, null],
    ['no --expires, the mode expired: none', { ...held, expiresAt: '2026-01-01T10:05:00.000Z' }, { reason: 'OSRM down' }, null],
  ])('%s', async (_name, before, command, expiresAt) => {
    const store = fakeParameter(ssmMock, before, { version: 4 });

    const result = await runKillswitchCommand({ ssm, parameterName: PARAMETER, resolveActor: actor, now: () => AT }, { action: 'enable', mode: 'maintenance', ...command });

    expect(result).toMatchObject({ write: { version: 5 } });
    expect(JSON.parse(store.raw)).toMatchObject({ mode: 'maintenance', reason: command.reason, expiresAt });
  });

  it('no --expires and the same reason: the expiry kept is the same, so nothing is written', async () => {
    fakeParameter(ssmMock, held, { version: 4 });

    const result = await runKillswitchCommand({ ssm, parameterName: PARAMETER, resolveActor: actor, now: () => AT }, { action: 'enable', mode: 'maintenance', reason: 'OSRM down' });

    expect(result).toMatchObject({ line: 'killswitch already maintenance (since 2026-01-01 10:00 UTC, by bob, until 2026-01-01 10:30 UTC): nothing changed' });
    expect(ssmMock).not.toHaveReceivedCommand(PutParameterCommand);
  });
});

describe("the confirmation (the CLI's \"are you sure?\")", () => {
  const actor = async () => 'arn:aws:sts::111111111111:assumed-role/oncall/alice';
  const READ_AT = new Date('2026-01-01T10:10:00.000Z');
  /** Two minutes at the prompt. */
  const ANSWERED_AT = new Date('2026-01-01T10:12:00.000Z');

  it.each([
    ['disable on normal', value(), { action: 'disable', reason: 'OSRM back' }],
    ['enable of the mode on with its reason', value({ mode: 'maintenance', reason: 'OSRM down' }), { action: 'enable', mode: 'maintenance', reason: 'OSRM down' }],
  ] as const)('is not asked for a request that changes nothing (%s)', async (_name, held, command) => {
    fakeParameter(ssmMock, held, { version: 4 });
    const confirm = jest.fn(async () => undefined);

    const result = await runKillswitchCommand({ ssm, parameterName: PARAMETER, resolveActor: actor, confirm }, command);

    expect(result).toMatchObject({ line: expect.stringMatching(/: nothing changed$/) });
    expect(confirm).not.toHaveBeenCalled();
  });

  it('is asked after the read and before the write; refused, nothing is written', async () => {
    const events: string[] = [];
    const store = fakeParameter(ssmMock, value({ mode: 'maintenance' }), { version: 4, beforeGet: () => events.push('read') });
    const confirm = async () => {
      events.push('asked');
      throw new Error('not confirmed');
    };

    await expect(runKillswitchCommand({ ssm, parameterName: PARAMETER, resolveActor: actor, confirm }, { action: 'disable' })).rejects.toThrow('not confirmed');

    expect(events).toEqual(['read', 'asked']);
    expect(store.version).toBe(4);
    expect(ssmMock).not.toHaveReceivedCommand(PutParameterCommand);
  });

  it.each([
    ['--expires 30m counts from the answer', value(), { reason: 'OSRM down', expires: '30m' }, '2026-01-01T10:42:00.000Z'],
    ['a mode that expired at the prompt has no expiry left to keep', value({ mode: 'maintenance', reason: 'OSRM down', expiresAt: '2026-01-01T10:11:00.000Z' }), { reason: 'OSRM still down' }, null],
  ])('%s', async (_name, before, command, expiresAt) => {
    const store = fakeParameter(ssmMock, before, { version: 4 });
    let at = READ_AT;
    const confirm = async () => {
      at = ANSWERED_AT;
    };

    await runKillswitchCommand({ ssm, parameterName: PARAMETER, resolveActor: actor, now: () => at, confirm }, { action: 'enable', mode: 'maintenance', ...command });

    expect(JSON.parse(store.raw)).toMatchObject({ mode: 'maintenance', updatedAt: ANSWERED_AT.toISOString(), expiresAt });
  });
});
