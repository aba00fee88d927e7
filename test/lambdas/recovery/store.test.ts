import { RecoveryRequest } from '../../../lambdas/recovery/contract';
import { LeaseLostError, activeRecoveryId, beginRecovery, getRecovery, listRecoveryIds, releaseLock, takeCutoverLease, updateRecovery } from '../../../lambdas/recovery/store';
import { LocalDynamo, loseFirstAnswer, startLocalDynamo } from '../../support/dynamodb';

/** The ops-state table is dynalite: conditional writes fail for real. */
let dynamo: LocalDynamo;
beforeAll(async () => {
  dynamo = await startLocalDynamo();
});
afterAll(async () => dynamo.stop());

const request = (id: string): RecoveryRequest & { sourceInstance: string } => ({
  recoveryId: id,
  toTime: '2026-11-30T14:02:00.000Z',
  newInstance: `atmr-prod-pitr-${id.slice(1, 13)}`,
  actor: 'arn:aws:sts::111111111111:assumed-role/atmr-oncall/alice',
  reason: 'bookings deleted by a migration',
  requestedAt: '2026-11-30T14:30:00.000Z',
  sourceInstance: 'atmr-prod',
});

describe('recovery records and the one-at-a-time lock', () => {
  const deps = () => ({ ddb: dynamo.ddb, tableName: dynamo.tableName });

  it('records who asked and why, and refuses a second recovery while one runs', async () => {
    await beginRecovery(deps(), request('r20261130143000-aaaa'));

    await expect(beginRecovery(deps(), request('r20261130143100-bbbb'))).rejects.toThrow(
      'recover: recovery r20261130143000-aaaa is in progress: follow it (npx --no atmr-dr recover status r20261130143000-aaaa), cut it over or abandon it before starting another',
    );
    const record = await getRecovery(deps(), 'r20261130143000-aaaa');
    expect(record).toMatchObject({ status: 'restoring', actor: 'arn:aws:sts::111111111111:assumed-role/atmr-oncall/alice', reason: 'bookings deleted by a migration' });
    await expect(getRecovery(deps(), 'r20261130143100-bbbb')).rejects.toThrow(/no recovery r20261130143100-bbbb/);
  });

  it('guards status changes: a cutover asked of an unverified recovery is refused', async () => {
    await expect(updateRecovery(deps(), 'r20261130143000-aaaa', { status: 'cutting-over' }, ['verified'])).rejects.toThrow(
      'recover: recovery r20261130143000-aaaa is "restoring", expected verified',
    );
  });

  it('frees the lock when the recovery ends, so the next one can start', async () => {
    await updateRecovery(deps(), 'r20261130143000-aaaa', { status: 'failed', error: 'instance failed' });
    expect(await activeRecoveryId(deps())).toBeUndefined();

    await beginRecovery(deps(), request('r20261130150000-cccc'));

    expect(await activeRecoveryId(deps())).toBe('r20261130150000-cccc');
    expect(await listRecoveryIds(deps())).toEqual(['r20261130150000-cccc', 'r20261130143000-aaaa']);
  });

  it('lets exactly one of two simultaneous starts win', async () => {
    await updateRecovery(deps(), 'r20261130150000-cccc', { status: 'abandoned' });
    const results = await Promise.allSettled([beginRecovery(deps(), request('r20261130160000-dddd')), beginRecovery(deps(), request('r20261130160000-eeee'))]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    expect(results.filter((r) => r.status === 'rejected')).toHaveLength(1);
  });
});

describe('the cutover lease (one operator at a time, stale after its last renewal)', () => {
  const deps = (at?: number) => ({ ddb: dynamo.ddb, tableName: dynamo.tableName, ...(at !== undefined && { now: () => new Date(at) }) });
  const T0 = Date.parse('2026-11-30T15:00:00.000Z');
  const ID = 'r20261130170000-ffff';

  beforeAll(async () => {
    const active = await activeRecoveryId(deps());
    if (active) await updateRecovery(deps(), active, { status: 'abandoned' });
    await beginRecovery(deps(), request(ID));
    await updateRecovery(deps(), ID, { status: 'cutting-over' });
  });

  it('is taken by one conditional write, refused to a second operator while live, and taken over once stale (strictly after its expiry)', async () => {
    const first = await takeCutoverLease(deps(T0), ID, { from: ['cutting-over'], owner: 'alice', token: 'token-a', leaseSeconds: 120 });
    expect('record' in first && first.record).toMatchObject({ leaseOwner: 'alice', leaseToken: 'token-a', leaseExpiresAt: T0 + 120_000 });

    const atExpiry = await takeCutoverLease(deps(T0 + 120_000), ID, { from: ['cutting-over'], owner: 'bob', token: 'token-b', leaseSeconds: 120 });
    expect(atExpiry).toMatchObject({ refused: { kind: 'held', record: { leaseOwner: 'alice' } } });

    const after = await takeCutoverLease(deps(T0 + 120_001), ID, { from: ['cutting-over'], owner: 'bob', token: 'token-b', leaseSeconds: 120 });
    expect('record' in after && after.record.leaseOwner).toBe('bob');
  });

  it("refuses the old holder's writes once taken over, and frees the lease when released", async () => {
    await expect(updateRecovery(deps(), ID, { error: 'late' }, undefined, { leaseToken: 'token-a' })).rejects.toThrow(
      new LeaseLostError(`recover cutover: recovery ${ID} was taken over by bob: this process stops here and changes nothing more (see "npx --no atmr-dr recover status ${ID}")`),
    );

    const released = await updateRecovery(deps(), ID, { error: 'stopped' }, undefined, { leaseToken: 'token-b', release: true });

    expect(released).not.toHaveProperty('leaseToken');
    const next = await takeCutoverLease(deps(T0), ID, { from: ['cutting-over'], owner: 'carol', token: 'token-c', leaseSeconds: 120 });
    expect('record' in next && next.record.leaseOwner).toBe('carol');
  });

  it('is refused when the recovery is in another status, saying so', async () => {
    const refused = await takeCutoverLease(deps(T0 + 10 * 60_000), ID, { from: ['verified'], owner: 'dave', token: 'token-d', leaseSeconds: 120 });
    expect(refused).toMatchObject({ refused: { kind: 'status', record: { status: 'cutting-over' } } });
  });

  it('is refused, keeping the undo data, when a cutover failed between the decision to start and the lease', async () => {
    // Arrange: a second recovery, verified; an operator reads it to decide on a fresh cutover...
    const raceId = 'r20261130180000-eeee';
    await updateRecovery(deps(), ID, { status: 'abandoned' });
    await beginRecovery(deps(), request(raceId));
    await updateRecovery(deps(T0), raceId, { status: 'verified' });
    const read = await getRecovery(deps(), raceId);
    // ...meanwhile another operator's cutover fails half-way, leaving a change to undo.
    const undoData = [{ step: 'killswitch-maintenance', state: 'done' as const, startedAt: new Date(T0 + 1000).toISOString(), by: 'erin' }];
    await updateRecovery(deps(T0 + 2000), raceId, { status: 'cutover-failed', journal: undoData });

    // Act: the first operator's fresh cutover takes the lease on what it read.
    const taken = await takeCutoverLease(deps(T0 + 3000), raceId, {
      from: ['verified', 'cutover-failed'],
      owner: 'frank',
      token: 'token-f',
      leaseSeconds: 120,
      changes: { status: 'cutting-over', journal: [] },
      expectUpdatedAt: read.updatedAt,
    });

    // Assert: refused as "changed", and the failed cutover's journal is still there to undo.
    expect(taken).toMatchObject({ refused: { kind: 'changed', record: { status: 'cutover-failed' } } });
    expect((await getRecovery(deps(), raceId)).journal).toEqual(undoData);
  });
});

describe('a write that landed but whose answer was lost, retried by the SDK, meets its own write and succeeds', () => {
  const deps = (at?: number) => ({ ddb: dynamo.ddb, tableName: dynamo.tableName, ...(at !== undefined && { now: () => new Date(at) }) });
  const T0 = Date.parse('2026-11-30T19:00:00.000Z');
  /** Frees the lock, whoever holds it, so that each case starts its own recovery. */
  const freeLock = async () => {
    const active = await activeRecoveryId(deps());
    if (active) await releaseLock(deps(), active);
  };
  /** Runs `act` with a client whose first write matching `lose` is stored and its answer lost; checks that the retry happened. */
  const withLostAnswer = async <T>(lose: (command: string, input: string) => boolean, act: (ddb: LocalDynamo['ddb']) => Promise<T>): Promise<T> => {
    const losing = loseFirstAnswer(dynamo, (command, input) => lose(command, JSON.stringify(input)));
    try {
      const result = await act(losing.ddb);
      expect(losing.lost()).toBe(1);
      return result;
    } finally {
      losing.destroy();
    }
  };

  it('start: the lock put is retried, finds its own lock, and the recovery starts (record, history, lock held)', async () => {
    await freeLock();
    const id = 'r20261130190000-a1a1';

    const record = await withLostAnswer(
      (command, input) => command === 'PutItemCommand' && input.includes('RECOVERY#ACTIVE'),
      (ddb) => beginRecovery({ ddb, tableName: dynamo.tableName, now: () => new Date(T0) }, request(id)),
    );

    expect(record).toMatchObject({ recoveryId: id, status: 'restoring' });
    expect(await activeRecoveryId(deps())).toBe(id);
    expect(await getRecovery(deps(), id)).toMatchObject({ status: 'restoring', requestedAt: request(id).requestedAt });
    expect((await listRecoveryIds(deps()))[0]).toBe(id);
  });

  it('start: another request under the same id (not this one retried) is still refused', async () => {
    const id = 'r20261130190000-a1a1';

    await expect(beginRecovery(deps(T0 + 1), request(id))).rejects.toThrow(`recover: recovery ${id} is in progress`);
    await expect(beginRecovery(deps(T0), { ...request(id), requestedAt: '2026-11-30T19:00:00.001Z' })).rejects.toThrow(`recover: recovery ${id} is in progress`);
  });

  it('start: the record put is retried, finds its own record, and the recovery starts with its lock', async () => {
    await freeLock();
    const id = 'r20261130190100-b2b2';

    const record = await withLostAnswer(
      (command, input) => command === 'PutItemCommand' && input.includes(`RECOVERY#${id}`),
      (ddb) => beginRecovery({ ddb, tableName: dynamo.tableName, now: () => new Date(T0) }, request(id)),
    );

    expect(record).toMatchObject({ recoveryId: id, status: 'restoring' });
    expect(await activeRecoveryId(deps())).toBe(id);
    expect((await listRecoveryIds(deps()))[0]).toBe(id);
  });

  it("cutover: the lease take is retried and finds this command's own token: taken, not refused as held", async () => {
    await freeLock();
    const id = 'r20261130190200-d4d4';
    await beginRecovery(deps(T0), request(id));
    await updateRecovery(deps(), id, { status: 'verified' });

    const taken = await withLostAnswer(
      (command, input) => command === 'UpdateItemCommand' && input.includes('token-own'),
      (ddb) => takeCutoverLease({ ddb, tableName: dynamo.tableName, now: () => new Date(T0) }, id, { from: ['verified'], owner: 'alice', token: 'token-own', leaseSeconds: 120, changes: { status: 'cutting-over', journal: [] } }),
    );

    expect(taken).toMatchObject({ record: { status: 'cutting-over', leaseOwner: 'alice', leaseToken: 'token-own' } });
  });

  it('cutover: the final write (cut-over, lease removed) is retried: success, and the one-recovery lock is freed', async () => {
    const id = 'r20261130190200-d4d4';
    const journal = [{ step: 'killswitch-maintenance', state: 'done' as const, startedAt: new Date(T0).toISOString(), finishedAt: new Date(T0 + 1000).toISOString(), by: 'alice' }];

    const record = await withLostAnswer(
      (command, input) => command === 'UpdateItemCommand' && input.includes('cut-over'),
      (ddb) => updateRecovery({ ddb, tableName: dynamo.tableName, now: () => new Date(T0 + 2000) }, id, { status: 'cut-over', journal, recoverySeconds: 42 }, undefined, { leaseToken: 'token-own', release: true }),
    );

    expect(record).toMatchObject({ status: 'cut-over', journal, recoverySeconds: 42 });
    expect(record).not.toHaveProperty('leaseToken');
    expect(await activeRecoveryId(deps())).toBeUndefined();
  });

  it('workflow: "failed" (only over a status the workflow writes) is retried: written, not refused, and the one-recovery lock is freed', async () => {
    await freeLock();
    const id = 'r20261130190400-e5e5';
    await beginRecovery(deps(T0), request(id));

    const record = await withLostAnswer(
      (command, input) => command === 'UpdateItemCommand' && input.includes('"failed"'),
      (ddb) => updateRecovery({ ddb, tableName: dynamo.tableName, now: () => new Date(T0 + 1000) }, id, { status: 'failed', error: 'instance failed' }, ['restoring', 'verifying']),
    );

    expect(record).toMatchObject({ status: 'failed', error: 'instance failed' });
    expect(record).not.toHaveProperty('writeId');
    expect(await activeRecoveryId(deps())).toBeUndefined();
  });

  it('cutover: a final write that did not land is still refused once another operator took the lease over', async () => {
    await freeLock();
    const id = 'r20261130190300-c3c3';
    await beginRecovery(deps(T0), request(id));
    await updateRecovery(deps(), id, { status: 'cutting-over' });
    await takeCutoverLease(deps(T0), id, { from: ['cutting-over'], owner: 'bob', token: 'token-bob', leaseSeconds: 120 });

    await expect(updateRecovery(deps(T0 + 1000), id, { status: 'cut-over' }, undefined, { leaseToken: 'token-own', release: true })).rejects.toThrow(LeaseLostError);
    expect(await activeRecoveryId(deps())).toBe(id);
  });
});
