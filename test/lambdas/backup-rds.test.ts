import {
  CreateDBSnapshotCommand,
  DBSnapshot,
  DeleteDBSnapshotCommand,
  DescribeDBInstancesCommand,
  DescribeDBSnapshotsCommand,
  RDSClient,
} from '@aws-sdk/client-rds';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { mockClient } from 'aws-sdk-client-mock';
import 'aws-sdk-client-mock-jest';
import {
  checkPitr,
  createTierSnapshot,
  pruneTierSnapshots,
  runRdsSide,
  snapshotIdentifier,
  type RdsSideOptions,
} from '../../lambdas/backup/rds';
import { OperatorError } from '../../lambdas/shared/errors';
import { captureEmf, metricValue } from '../support/emf';

const rdsMock = mockClient(RDSClient);
const rds = new RDSClient({ region: 'eu-west-3' });
const NOW = new Date('2026-11-22T02:30:00.000Z');
const INSTANCE = 'atmr-prod';

function ours(tier: 'weekly' | 'monthly', created: string | undefined, status = 'available', id?: string): DBSnapshot {
  return {
    DBSnapshotIdentifier: id ?? `atmr-dr-${tier}-atmr-prod-${(created ?? 'creating').replace(/[^0-9]/g, '').slice(0, 14)}`,
    SnapshotCreateTime: created ? new Date(created) : undefined,
    Status: status,
    SnapshotType: 'manual',
    TagList: [
      { Key: 'atmr-dr:managed', Value: 'true' },
      { Key: 'atmr-dr:tier', Value: tier },
    ],
  };
}

const baseOptions: RdsSideOptions = {
  instanceIdentifier: INSTANCE,
  tier: 'hourly',
  minPitrRetentionDays: 7,
  snapshotRetention: { weekly: 4, monthly: 12 },
};

beforeEach(() => {
  rdsMock.reset();
});

describe('snapshotIdentifier', () => {
  it('names a snapshot after this tool, the tier, the instance and the UTC time, as RDS accepts it', () => {
    const id = snapshotIdentifier('weekly', 'ATMR-Prod', NOW);

    expect(id).toBe('atmr-dr-weekly-atmr-prod-20261122-023000');
    expect(id).toMatch(/^[a-z][a-z0-9-]{0,254}$/);
    expect(id).not.toMatch(/--|-$/);
  });
});

describe('createTierSnapshot', () => {
  it('takes a manual snapshot of the instance tagged with the tier and as managed by atmr-dr', async () => {
    rdsMock.on(CreateDBSnapshotCommand).resolves({});

    const { identifier: id, alreadyTaken } = await createTierSnapshot(rds, INSTANCE, 'monthly', NOW);

    expect([id, alreadyTaken]).toEqual(['atmr-dr-monthly-atmr-prod-20261122-023000', false]);
    expect(rdsMock).toHaveReceivedCommandWith(CreateDBSnapshotCommand, {
      DBInstanceIdentifier: INSTANCE,
      DBSnapshotIdentifier: id,
      Tags: [
        { Key: 'atmr-dr:managed', Value: 'true' },
        { Key: 'atmr-dr:tier', Value: 'monthly' },
      ],
    });
  });

  it('fails with one line naming the instance state problem', async () => {
    rdsMock.on(CreateDBSnapshotCommand).rejects(Object.assign(new Error('Instance atmr-prod is not in available state.'), { name: 'InvalidDBInstanceStateFault' }));

    const error = await createTierSnapshot(rds, INSTANCE, 'weekly', NOW).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(OperatorError);
    expect((error as Error).message).toMatch(/^cannot create weekly snapshot atmr-dr-weekly-atmr-prod-20261122-023000 of atmr-prod: InvalidDBInstanceStateFault: .*the next run retries$/);
    expect((error as Error).message).not.toContain('\n');
  });
});

describe('createTierSnapshot: a snapshot of its name already there', () => {
  const ID = 'atmr-dr-weekly-atmr-prod-20261122-023000';
  const alreadyExists = () => rdsMock.on(CreateDBSnapshotCommand).rejects(Object.assign(new Error('Cannot create the snapshot because a snapshot with the identifier already exists.'), { name: 'DBSnapshotAlreadyExistsFault' }));

  it("counts it as taken when RDS shows it is this tool's weekly snapshot of this instance (another run of that second took it)", async () => {
    alreadyExists();
    rdsMock.on(DescribeDBSnapshotsCommand, { DBSnapshotIdentifier: ID }).resolves({ DBSnapshots: [{ ...ours('weekly', undefined, 'creating', ID), DBInstanceIdentifier: INSTANCE }] });

    const result = await createTierSnapshot(rds, INSTANCE, 'weekly', NOW);

    expect(result).toEqual({ identifier: ID, alreadyTaken: true });
    expect(rdsMock).toHaveReceivedCommandWith(DescribeDBSnapshotsCommand, { DBSnapshotIdentifier: ID });
  });

  it.each([
    ['of another instance', { ...ours('weekly', '2026-11-22T02:30:05Z', 'available', ID), DBInstanceIdentifier: 'atmr-staging' }, 'of instance atmr-staging'],
    ["of this instance without this tool's tags (an operator's)", { DBSnapshotIdentifier: ID, DBInstanceIdentifier: INSTANCE, SnapshotType: 'manual', TagList: [] }, "without this tool's tags (atmr-dr:managed=true, atmr-dr:tier=weekly)"],
    ["of this instance tagged for the other tier", { ...ours('monthly', '2026-11-22T02:30:05Z', 'available', ID), DBInstanceIdentifier: INSTANCE }, "without this tool's tags (atmr-dr:managed=true, atmr-dr:tier=weekly)"],
  ])('fails with one line naming the snapshot, whose it is and what to do, when it is %s', async (_case, snapshot, whose) => {
    alreadyExists();
    rdsMock.on(DescribeDBSnapshotsCommand, { DBSnapshotIdentifier: ID }).resolves({ DBSnapshots: [snapshot] });

    const error = await createTierSnapshot(rds, INSTANCE, 'weekly', NOW).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(OperatorError);
    expect((error as Error).message).toBe(
      `cannot create weekly snapshot ${ID} of ${INSTANCE}: this run took none: a snapshot of that name already exists, ${whose}, so not this run's: find who created it (names starting atmr-dr-weekly- are this tool's), rename or delete it, and take this weekly snapshot by hand under a new name (aws rds create-db-snapshot --db-instance-identifier ${INSTANCE} --db-snapshot-identifier <name>)`,
    );
  });

  it('fails with one line when RDS then lists no snapshot of that name (deleted meanwhile)', async () => {
    alreadyExists();
    rdsMock.on(DescribeDBSnapshotsCommand).rejects(Object.assign(new Error('DBSnapshot not found'), { name: 'DBSnapshotNotFoundFault' }));

    const error = await createTierSnapshot(rds, INSTANCE, 'weekly', NOW).catch((e: unknown) => e);

    expect((error as Error).message).toMatch(new RegExp(`^cannot create weekly snapshot ${ID} of ${INSTANCE}: this run took none: RDS said a snapshot of that name exists, then listed none \\(deleted meanwhile\\); take this weekly snapshot by hand`));
  });
});

describe('pruneTierSnapshots', () => {
  it('keeps the newest N of this tool\'s snapshots of the tier (the one being created counts) and deletes the older ones, oldest first', async () => {
    rdsMock.on(DescribeDBSnapshotsCommand).resolves({
      DBSnapshots: [
        ours('weekly', '2026-10-18T02:30:00Z'),
        ours('weekly', '2026-11-15T02:30:00Z'),
        ours('weekly', '2026-10-25T02:30:00Z'),
        ours('weekly', undefined, 'creating', 'atmr-dr-weekly-atmr-prod-20261122-023000'),
        ours('weekly', '2026-11-08T02:30:00Z'),
        ours('weekly', '2026-11-01T02:30:00Z'),
      ],
    });
    rdsMock.on(DeleteDBSnapshotCommand).resolves({});

    const deleted = await pruneTierSnapshots(rds, INSTANCE, 'weekly', 4);

    expect(deleted).toEqual(['atmr-dr-weekly-atmr-prod-20261018023000', 'atmr-dr-weekly-atmr-prod-20261025023000']);
    expect(rdsMock).toHaveReceivedCommandTimes(DeleteDBSnapshotCommand, 2);
    expect(rdsMock).toHaveReceivedCommandWith(DescribeDBSnapshotsCommand, { DBInstanceIdentifier: INSTANCE, SnapshotType: 'manual' });
  });

  it('never touches an operator\'s snapshot, another tier\'s, or one missing the managed tag, however old', async () => {
    const untaggedWithOurPrefix = { ...ours('weekly', '2020-01-05T00:00:00Z', 'available', 'atmr-dr-weekly-atmr-prod-old'), TagList: [] };
    rdsMock.on(DescribeDBSnapshotsCommand).resolves({
      DBSnapshots: [
        { DBSnapshotIdentifier: 'before-migration-2019', SnapshotCreateTime: new Date('2019-01-01T00:00:00Z'), Status: 'available', TagList: [] },
        untaggedWithOurPrefix,
        ours('monthly', '2020-02-01T04:30:00Z'),
        ours('weekly', '2026-11-15T02:30:00Z'),
      ],
    });
    rdsMock.on(DeleteDBSnapshotCommand).resolves({});

    const deleted = await pruneTierSnapshots(rds, INSTANCE, 'weekly', 1);

    expect(deleted).toEqual([]);
    expect(rdsMock).not.toHaveReceivedCommand(DeleteDBSnapshotCommand);
  });

  it('takes a snapshot another run is deleting, or has deleted, as pruned: two runs delivered together do not page', async () => {
    // Arrange: two expired snapshots; the twin run deletes the first (now "deleting"), the second is gone
    rdsMock.on(DescribeDBSnapshotsCommand).resolves({
      DBSnapshots: [ours('weekly', '2026-11-15T02:30:00Z'), ours('weekly', '2026-10-01T02:30:00Z'), ours('weekly', '2026-09-01T02:30:00Z')],
    });
    rdsMock
      .on(DeleteDBSnapshotCommand)
      .rejectsOnce(Object.assign(new Error('Cannot delete the snapshot because it is not in available state.'), { name: 'InvalidDBSnapshotStateFault' }))
      .rejectsOnce(Object.assign(new Error('DBSnapshot not found.'), { name: 'DBSnapshotNotFoundFault' }));

    // Act
    const deleted = await pruneTierSnapshots(rds, INSTANCE, 'weekly', 1);

    // Assert: no failure; neither is reported as deleted by this run
    expect(deleted).toEqual([]);
    expect(rdsMock).toHaveReceivedCommandTimes(DeleteDBSnapshotCommand, 2);
  });

  it('reads every page of the listing before choosing', async () => {
    rdsMock
      .on(DescribeDBSnapshotsCommand)
      .resolvesOnce({ DBSnapshots: [ours('monthly', '2025-10-01T02:30:00Z'), ours('monthly', '2026-11-01T02:30:00Z')], Marker: 'page-2' })
      .resolvesOnce({ DBSnapshots: [ours('monthly', '2026-10-01T02:30:00Z')] });
    rdsMock.on(DeleteDBSnapshotCommand).resolves({});

    const deleted = await pruneTierSnapshots(rds, INSTANCE, 'monthly', 2);

    expect(deleted).toEqual(['atmr-dr-monthly-atmr-prod-20251001023000']);
    expect(rdsMock).toHaveReceivedNthCommandWith(2, DescribeDBSnapshotsCommand, { Marker: 'page-2' });
  });

  it('does not delete an expired snapshot that is not available (e.g. still being copied)', async () => {
    rdsMock.on(DescribeDBSnapshotsCommand).resolves({
      DBSnapshots: [ours('weekly', '2026-11-15T02:30:00Z'), ours('weekly', '2026-10-01T02:30:00Z', 'copying')],
    });

    const deleted = await pruneTierSnapshots(rds, INSTANCE, 'weekly', 1);

    expect(deleted).toEqual([]);
    expect(rdsMock).not.toHaveReceivedCommand(DeleteDBSnapshotCommand);
  });
});

describe('checkPitr', () => {
  it('reports PITR on with the retention and the lag behind the latest restorable time', async () => {
    rdsMock.on(DescribeDBInstancesCommand).resolves({
      DBInstances: [{ DBInstanceIdentifier: INSTANCE, BackupRetentionPeriod: 7, LatestRestorableTime: new Date('2026-11-22T02:25:00Z') }],
    });

    const status = await checkPitr(rds, INSTANCE, 7, NOW);

    expect(status).toEqual({ enabled: true, retentionDays: 7, minRetentionDays: 7, lagSeconds: 300 });
  });

  it('reports automated backups on with no restorable time when RDS gives none (no lag to measure)', async () => {
    rdsMock.on(DescribeDBInstancesCommand).resolves({ DBInstances: [{ DBInstanceIdentifier: INSTANCE, BackupRetentionPeriod: 7 }] });

    const status = await checkPitr(rds, INSTANCE, 7, NOW);

    expect(status).toEqual({ enabled: true, retentionDays: 7, minRetentionDays: 7, noRestorableTime: true });
  });

  it.each([
    ['automated backups off', 0],
    ['retention below the minimum', 3],
  ])('reports PITR off when %s', async (_case, retention) => {
    rdsMock.on(DescribeDBInstancesCommand).resolves({ DBInstances: [{ DBInstanceIdentifier: INSTANCE, BackupRetentionPeriod: retention }] });

    const status = await checkPitr(rds, INSTANCE, 7, NOW);

    expect(status).toMatchObject({ enabled: false, retentionDays: retention });
    expect(status.lagSeconds).toBeUndefined();
  });

  it('fails naming the config field when the instance does not exist', async () => {
    rdsMock.on(DescribeDBInstancesCommand).rejects(Object.assign(new Error('DBInstance atmr-prod not found.'), { name: 'DBInstanceNotFoundFault' }));

    await expect(checkPitr(rds, INSTANCE, 7, NOW)).rejects.toThrow(/^cannot describe RDS instance atmr-prod: DBInstanceNotFoundFault: .*check database\.instanceIdentifier \(atmr-prod\) in cdk\.json$/);
  });
});

describe('runRdsSide', () => {
  const pitrOn = { DBInstances: [{ DBInstanceIdentifier: INSTANCE, BackupRetentionPeriod: 14, LatestRestorableTime: new Date('2026-11-22T02:26:40Z') }] };

  it('hourly: checks PITR and emits PitrEnabled=1, PitrRetentionDays and PitrLagSeconds per instance, takes no snapshot', async () => {
    rdsMock.on(DescribeDBInstancesCommand).resolves(pitrOn);
    const metrics = new Metrics({ namespace: 'AtmrDr/example', serviceName: 'backup-runner' });
    metrics.addDimension('Tier', 'hourly'); // as the core may have done: must not leak into the instance metrics

    const { result, emf } = await captureEmf(() => runRdsSide({ rds, metrics, now: () => NOW }, baseOptions));

    expect(result).toEqual({ pitr: { enabled: true, retentionDays: 14, minRetentionDays: 7, lagSeconds: 200 }, snapshot: undefined, errors: [] });
    expect(rdsMock).not.toHaveReceivedCommand(CreateDBSnapshotCommand);
    const enabled = metricValue(emf, 'PitrEnabled');
    expect(enabled?.value).toBe(1);
    expect(enabled?.dimensions).toEqual([['service', 'DBInstanceIdentifier']]);
    expect(enabled?.doc).toMatchObject({ service: 'backup-runner', DBInstanceIdentifier: INSTANCE });
    expect(metricValue(emf, 'PitrRetentionDays')?.value).toBe(14);
    expect(metricValue(emf, 'PitrLagSeconds')?.value).toBe(200);
    expect((emf[0]._aws as { CloudWatchMetrics: { Namespace: string }[] }).CloudWatchMetrics[0].Namespace).toBe('AtmrDr/example');
  });

  it('emits PitrEnabled=0 when automated backups are off, without failing the run', async () => {
    rdsMock.on(DescribeDBInstancesCommand).resolves({ DBInstances: [{ DBInstanceIdentifier: INSTANCE, BackupRetentionPeriod: 0 }] });
    const metrics = new Metrics({ namespace: 'AtmrDr/example', serviceName: 'backup-runner' });

    const { result, emf } = await captureEmf(() => runRdsSide({ rds, metrics, now: () => NOW }, baseOptions));

    expect(result.errors).toEqual([]);
    expect(metricValue(emf, 'PitrEnabled')?.value).toBe(0);
    expect(metricValue(emf, 'PitrRetentionDays')?.value).toBe(0);
  });

  it('weekly: snapshots then prunes to the weekly retention', async () => {
    rdsMock.on(DescribeDBInstancesCommand).resolves(pitrOn);
    rdsMock.on(CreateDBSnapshotCommand).resolves({});
    rdsMock.on(DescribeDBSnapshotsCommand).resolves({
      DBSnapshots: [ours('weekly', undefined, 'creating', 'atmr-dr-weekly-atmr-prod-20261122-023000'), ours('weekly', '2026-11-15T02:30:00Z'), ours('weekly', '2026-11-08T02:30:00Z')],
    });
    rdsMock.on(DeleteDBSnapshotCommand).resolves({});

    const result = await runRdsSide({ rds, now: () => NOW }, { ...baseOptions, tier: 'weekly', snapshotRetention: { weekly: 2, monthly: 12 } });

    expect(result.errors).toEqual([]);
    expect(result.snapshot).toEqual({ created: 'atmr-dr-weekly-atmr-prod-20261122-023000', deleted: ['atmr-dr-weekly-atmr-prod-20261108023000'] });
    expect(rdsMock).toHaveReceivedCommandWith(DeleteDBSnapshotCommand, { DBSnapshotIdentifier: 'atmr-dr-weekly-atmr-prod-20261108023000' });
  });

  it('names the snapshot after the backup\'s start second, not now; one of that name already there is taken (another run of that second), not a failure, and the prune still runs', async () => {
    rdsMock.on(DescribeDBInstancesCommand).resolves(pitrOn);
    rdsMock.on(CreateDBSnapshotCommand).rejects(Object.assign(new Error('Cannot create the snapshot because a snapshot with the identifier already exists.'), { name: 'DBSnapshotAlreadyExistsFault' }));
    rdsMock.on(DescribeDBSnapshotsCommand).resolves({ DBSnapshots: [] });
    const taken = 'atmr-dr-weekly-atmr-prod-20261122-020007';
    rdsMock.on(DescribeDBSnapshotsCommand, { DBSnapshotIdentifier: taken }).resolves({ DBSnapshots: [{ ...ours('weekly', undefined, 'creating', taken), DBInstanceIdentifier: INSTANCE }] });
    const backupStart = new Date('2026-11-22T02:00:07.412Z');

    const result = await runRdsSide({ rds, now: () => NOW }, { ...baseOptions, tier: 'weekly', snapshotAt: backupStart });

    expect(result.errors).toEqual([]);
    expect(result.snapshot).toEqual({ created: 'atmr-dr-weekly-atmr-prod-20261122-020007', alreadyTaken: true, deleted: [] });
    expect(rdsMock).toHaveReceivedCommandWith(CreateDBSnapshotCommand, { DBSnapshotIdentifier: 'atmr-dr-weekly-atmr-prod-20261122-020007' });
    expect(rdsMock).toHaveReceivedCommand(DescribeDBSnapshotsCommand);
  });

  it('reports a failed snapshot without pruning, and still checks PITR', async () => {
    rdsMock.on(DescribeDBInstancesCommand).resolves(pitrOn);
    rdsMock.on(CreateDBSnapshotCommand).rejects(Object.assign(new Error('quota'), { name: 'SnapshotQuotaExceededFault' }));

    const result = await runRdsSide({ rds, now: () => NOW }, { ...baseOptions, tier: 'monthly' });

    expect(result.pitr?.enabled).toBe(true);
    expect(result.errors).toEqual([expect.stringMatching(/^cannot create monthly snapshot .*SnapshotQuotaExceededFault.*backups\.snapshotRetention/)]);
    expect(rdsMock).not.toHaveReceivedCommand(DescribeDBSnapshotsCommand);
    expect(rdsMock).not.toHaveReceivedCommand(DeleteDBSnapshotCommand);
  });

  it('reports a failed PITR check (no PITR metric) and still takes the monthly snapshot', async () => {
    rdsMock.on(DescribeDBInstancesCommand).rejects(Object.assign(new Error('denied'), { name: 'AccessDeniedException' }));
    rdsMock.on(CreateDBSnapshotCommand).resolves({});
    rdsMock.on(DescribeDBSnapshotsCommand).resolves({ DBSnapshots: [] });
    const metrics = new Metrics({ namespace: 'AtmrDr/example', serviceName: 'backup-runner' });

    const { result, emf } = await captureEmf(() => runRdsSide({ rds, metrics, now: () => NOW }, { ...baseOptions, tier: 'monthly' }));

    expect(result.pitr).toBeUndefined();
    expect(result.errors).toEqual([expect.stringMatching(/^cannot describe RDS instance atmr-prod: AccessDeniedException: .*redeploy the stack$/)]);
    expect(result.snapshot?.created).toBe('atmr-dr-monthly-atmr-prod-20261122-023000');
    expect(metricValue(emf, 'PitrEnabled')).toBeUndefined();
  });
});
