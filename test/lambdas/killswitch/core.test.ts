import { GetParameterCommand, ParameterNotFound, ParameterVersionNotFound, PutParameterCommand, SSMClient } from '@aws-sdk/client-ssm';
import { mockClient } from 'aws-sdk-client-mock';
import 'aws-sdk-client-mock-jest';
import { describeValue, EXPIRY_ACTOR, readKillswitch, revertExpired, writeKillswitch } from '../../../lambdas/killswitch/core';
import { OperatorError } from '../../../lambdas/shared/errors';
import { fakeParameter, firstAttemptApplied, PARAMETER, value } from './fixtures';

const ssmMock = mockClient(SSMClient);
const ssm = new SSMClient({ region: 'eu-west-3' });
const now = () => new Date('2026-06-01T10:00:00.000Z');

beforeEach(() => ssmMock.reset());

describe('writeKillswitch', () => {
  it('writes the full JSON value with actor, reason, updatedAt and expiresAt, and reports no conflict', async () => {
    const store = fakeParameter(ssmMock, value(), { version: 4 });

    const result = await writeKillswitch(
      { ssm, now },
      { parameterName: PARAMETER, mode: 'maintenance', reason: 'OSRM down', actor: 'arn:aws:sts::1:assumed-role/oncall/alice', expiresAt: new Date('2026-06-01T12:00:00Z') },
    );

    expect(JSON.parse(store.raw)).toEqual({
      mode: 'maintenance',
      reason: 'OSRM down',
      actor: 'arn:aws:sts::1:assumed-role/oncall/alice',
      updatedAt: '2026-06-01T10:00:00.000Z',
      expiresAt: '2026-06-01T12:00:00.000Z',
    });
    expect(result.version).toBe(5);
    expect(result.conflict).toBeUndefined();
    expect(ssmMock).toHaveReceivedCommandWith(PutParameterCommand, { Name: PARAMETER, Type: 'String', Overwrite: true });
  });

  it('reports a conflict when another write landed between the read and the write', async () => {
    fakeParameter(ssmMock, value(), {
      version: 4,
      // Bob's write lands after Alice's read (v4), just before her PutParameter.
      beforePut: (index, store) => {
        if (index === 0) {
          store.raw = JSON.stringify(value({ mode: 'degraded', actor: 'bob', reason: 'peak' }));
          store.version += 1;
        }
      },
    });

    const result = await writeKillswitch({ ssm, now }, { parameterName: PARAMETER, mode: 'maintenance', reason: 'OSRM down', actor: 'alice', expiresAt: null });

    expect(result.conflict?.kind).toBe('before');
    expect(result.conflict?.message).toMatch(/1 other write\(s\) landed between your read \(v4\) and your write \(v6\)/);
    expect(result.conflict?.current.value?.actor).toBe('alice');
  });

  it("reports a conflict naming the other writer when a write landed after ours (theirs is in effect)", async () => {
    fakeParameter(ssmMock, value(), {
      version: 7,
      beforeGet: (index, store) => {
        // get #1 is the re-read: Bob's write lands just before it.
        if (index === 1) {
          store.raw = JSON.stringify(value({ mode: 'degraded', actor: 'bob', reason: 'peak load' }));
          store.version += 1;
        }
      },
    });

    const result = await writeKillswitch({ ssm, now }, { parameterName: PARAMETER, mode: 'maintenance', reason: 'OSRM down', actor: 'alice', expiresAt: null });

    expect(result.conflict?.kind).toBe('after');
    expect(result.conflict?.message).toMatch(/v9 by bob: degraded, "peak load"/);
    expect(result.conflict?.current.value?.mode).toBe('degraded');
  });

  it('takes its own write retried by the SDK (first attempt applied, answer lost) for a plain success, not a write between', async () => {
    const store = fakeParameter(ssmMock, value(), { version: 4, beforePut: firstAttemptApplied });

    const result = await writeKillswitch({ ssm, now }, { parameterName: PARAMETER, mode: 'maintenance', reason: 'OSRM down', actor: 'alice', expiresAt: null });

    expect(store.version).toBe(6);
    expect(result.version).toBe(6);
    expect(result.conflict).toBeUndefined();
    expect(ssmMock).toHaveReceivedCommandWith(GetParameterCommand, { Name: `${PARAMETER}:5` });
  });

  it('takes its own late first attempt, landing after the retry answered, for a plain success, not a write after', async () => {
    let ours = '';
    const store = fakeParameter(ssmMock, value(), {
      version: 4,
      beforePut: (_index, _store, input) => {
        ours = input.Value;
      },
      // The first attempt timed out on the client, the retry was answered (v5), then SSM applied the first (v6).
      beforeGet: (index, current) => {
        if (index === 1) {
          current.raw = ours;
          current.version += 1;
        }
      },
    });

    const result = await writeKillswitch({ ssm, now }, { parameterName: PARAMETER, mode: 'maintenance', reason: 'OSRM down', actor: 'alice', expiresAt: null });

    expect(store.version).toBe(6);
    expect(result.version).toBe(6);
    expect(result.conflict).toBeUndefined();
  });

  it("still reports another writer's write between, when its own retried write is there too", async () => {
    fakeParameter(ssmMock, value(), {
      version: 4,
      beforePut: (index, current, input) => {
        current.raw = JSON.stringify(value({ mode: 'degraded', actor: 'bob', reason: 'peak' }));
        current.version += 1;
        if (index === 0) firstAttemptApplied(index, current, input);
      },
    });

    const result = await writeKillswitch({ ssm, now }, { parameterName: PARAMETER, mode: 'maintenance', reason: 'OSRM down', actor: 'alice', expiresAt: null });

    expect(result.conflict?.kind).toBe('before');
    expect(result.conflict?.message).toMatch(/1 other write\(s\) landed between your read \(v4\) and your write \(v7\)/);
  });

  it('counts a version SSM no longer has as another write (it cannot be shown to be ours)', async () => {
    fakeParameter(ssmMock, value(), { version: 4, beforePut: firstAttemptApplied });
    ssmMock.on(GetParameterCommand, { Name: `${PARAMETER}:5` }).rejects(new ParameterVersionNotFound({ message: 'gone', $metadata: {} }));

    const result = await writeKillswitch({ ssm, now }, { parameterName: PARAMETER, mode: 'maintenance', reason: 'OSRM down', actor: 'alice', expiresAt: null });

    expect(result.conflict?.kind).toBe('before');
    expect(result.conflict?.message).toMatch(/1 other write\(s\) landed between your read \(v4\) and your write \(v6\)/);
  });

  it('fails with a one-line operator error when the parameter does not exist', async () => {
    ssmMock.on(GetParameterCommand).rejects(new ParameterNotFound({ message: 'not found', $metadata: {} }));

    const write = writeKillswitch({ ssm, now }, { parameterName: PARAMETER, mode: 'maintenance', reason: 'x', actor: 'a', expiresAt: null });

    await expect(write).rejects.toThrow(OperatorError);
    await expect(write).rejects.toThrow(/does not exist: the Data stack creates it: check that it is deployed in this function's region and the function's KILLSWITCH_PARAMETER setting$/);
    expect(ssmMock).not.toHaveReceivedCommand(PutParameterCommand);
  });
});

describe('readKillswitch', () => {
  it('returns a malformed value as null with the reason, instead of throwing', async () => {
    fakeParameter(ssmMock, '{"mode":"panic"}', { version: 3 });

    const reading = await readKillswitch(ssm, PARAMETER);

    expect(reading.value).toBeNull();
    expect(reading.version).toBe(3);
    expect(reading.invalidReason).toMatch(/mode/);
  });
});

describe('revertExpired (the --expires schedule target)', () => {
  const enabled = value({ mode: 'maintenance', reason: 'OSRM down', actor: 'alice', updatedAt: '2026-06-01T08:00:00.000Z', expiresAt: '2026-06-01T10:00:00.000Z' });

  it('reverts to normal when the value is still the one the schedule was armed for', async () => {
    const store = fakeParameter(ssmMock, enabled);

    const outcome = await revertExpired({ ssm, now }, { parameterName: PARAMETER, expectedUpdatedAt: enabled.updatedAt });

    expect(outcome.reverted).toBe(true);
    const after = JSON.parse(store.raw);
    expect(after).toMatchObject({ mode: 'normal', actor: EXPIRY_ACTOR, expiresAt: null, updatedAt: '2026-06-01T10:00:00.000Z' });
    expect(after.reason).toMatch(/expired: maintenance set by alice \("OSRM down"\)/);
  });

  it('does not revert when the value changed since (a newer enable wins)', async () => {
    const newer = { ...enabled, mode: 'degraded' as const, actor: 'bob', updatedAt: '2026-06-01T09:30:00.000Z' };
    const store = fakeParameter(ssmMock, newer);

    const outcome = await revertExpired({ ssm, now }, { parameterName: PARAMETER, expectedUpdatedAt: enabled.updatedAt });

    expect(outcome).toEqual({ reverted: false, why: expect.stringMatching(/changed since/) });
    expect(JSON.parse(store.raw)).toEqual(newer);
    expect(ssmMock).not.toHaveReceivedCommand(PutParameterCommand);
  });

  // Bob extends the maintenance (until 12:00) just as Alice's expires (10:00).
  const bobs = { ...enabled, actor: 'bob', reason: 'still down, extending', updatedAt: '2026-06-01T10:00:00.010Z', expiresAt: '2026-06-01T12:00:00.000Z' };

  it("fails (to page) instead of reverting silently when an on-call's change lands right after the check read", async () => {
    // get #0 is the check; Bob's write lands right after it, before the next call to SSM (a get or the put).
    let landed = false;
    const bobLands = (s: { raw: string; version: number }) => {
      if (landed) return;
      landed = true;
      s.raw = JSON.stringify(bobs);
      s.version += 1;
    };
    const store = fakeParameter(ssmMock, enabled, {
      version: 5,
      beforeGet: (index, s) => index === 1 && bobLands(s),
      beforePut: (_index, s) => bobLands(s),
    });

    await expect(revertExpired({ ssm, now }, { parameterName: PARAMETER, expectedUpdatedAt: enabled.updatedAt })).rejects.toThrow(
      /^killswitch expiry: conflict: 1 other write\(s\) landed between your read \(v5\) and your write \(v7\)/,
    );
    // The write was conditioned on the reading that was checked (v5), not on a second read.
    expect(ssmMock).toHaveReceivedCommandTimes(PutParameterCommand, 1);
    expect(JSON.parse(store.raw).actor).toBe(EXPIRY_ACTOR);
  });

  it("fails (to page) when an on-call's change lands between the write and the re-read, leaving theirs in effect", async () => {
    const store = fakeParameter(ssmMock, enabled, {
      version: 5,
      beforePut: (index, s) => {
        if (index === 0) {
          s.raw = JSON.stringify(bobs);
          s.version += 1;
        }
      },
    });

    await expect(revertExpired({ ssm, now }, { parameterName: PARAMETER, expectedUpdatedAt: enabled.updatedAt })).rejects.toThrow(
      /^killswitch expiry: conflict: 1 other write\(s\) landed between your read \(v5\) and your write \(v7\)/,
    );
    expect(JSON.parse(store.raw).mode).toBe('normal');
  });

  it("fails (to page) when an on-call's change lands after the write: theirs is in effect", async () => {
    fakeParameter(ssmMock, enabled, {
      version: 5,
      beforeGet: (index, s) => {
        // get #1 is the write's re-read.
        if (index === 1) {
          s.raw = JSON.stringify(bobs);
          s.version += 1;
        }
      },
    });

    await expect(revertExpired({ ssm, now }, { parameterName: PARAMETER, expectedUpdatedAt: enabled.updatedAt })).rejects.toThrow(
      /^killswitch expiry: conflict: another write \(v7 by bob: maintenance, "still down, extending"\) landed right after yours \(v6\)/,
    );
  });

  it('does not touch a malformed value', async () => {
    fakeParameter(ssmMock, 'not json');

    const outcome = await revertExpired({ ssm, now }, { parameterName: PARAMETER, expectedUpdatedAt: enabled.updatedAt });

    expect(outcome.reverted).toBe(false);
    expect(ssmMock).not.toHaveReceivedCommand(PutParameterCommand);
  });
});

describe('describeValue (status lines of the CLI, Slack and the incidents message)', () => {
  it('says a value whose expiresAt has passed counts as normal', () => {
    const expired = value({ mode: 'maintenance', reason: 'OSRM down', actor: 'alice', expiresAt: '2026-06-01T10:00:00.000Z' });

    expect(describeValue(expired, Date.parse('2026-06-01T10:00:01.000Z'))).toMatch(/^normal: maintenance by alice .* expired at 2026-06-01 10:00 UTC \(readers treat it as normal/);
    expect(describeValue(expired, Date.parse('2026-06-01T09:00:00.000Z'))).toMatch(/^maintenance \(by alice .*until 2026-06-01 10:00 UTC\): OSRM down$/);
  });
});
