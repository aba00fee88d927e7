import { RecoveryRequest } from '../../../lambdas/recovery/contract';
import { activeRecoveryId, beginRecovery, getRecovery, listRecoveryIds, updateRecovery } from '../../../lambdas/recovery/store';
import { LocalDynamo, startLocalDynamo } from '../../support/dynamodb';

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
      'recover: recovery r20261130143000-aaaa is in progress: follow it (atmr-dr recover status r20261130143000-aaaa), cut it over or abandon it before starting another',
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
