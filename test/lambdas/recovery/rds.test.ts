import {
  AddTagsToResourceCommand,
  DeleteDBInstanceCommand,
  DescribeDBInstanceAutomatedBackupsCommand,
  DescribeDBInstancesCommand,
  ModifyDBInstanceCommand,
  RDSClient,
  RestoreDBInstanceToPointInTimeCommand,
} from '@aws-sdk/client-rds';
import { mockClient } from 'aws-sdk-client-mock';
import { OperatorError } from '../../../lambdas/shared/errors';
import {
  InstanceBusyError,
  RecoveryTarget,
  checkInstanceName,
  defaultInstanceName,
  deleteRecoveredInstance,
  instanceState,
  markReplacedInstance,
  passwordResetApplied,
  replacedInstanceName,
  resetRecoveredPassword,
  startRestore,
  validateRecovery,
} from '../../../lambdas/recovery/rds';
import { EARLIEST, LATEST, PREFIX, SOURCE, SOURCE_RESOURCE_ID, notFound, sourceInstance } from './fixtures';

const rds = mockClient(RDSClient);
const client = new RDSClient({ region: 'eu-west-3' });
const target = (overrides: Partial<RecoveryTarget> = {}): RecoveryTarget => ({
  sourceInstance: SOURCE,
  newInstance: `${PREFIX}202611301402`,
  newInstancePrefix: PREFIX,
  toTime: new Date('2026-11-30T14:02:00Z'),
  ...overrides,
});

function givenSource(overrides = {}) {
  rds.on(DescribeDBInstancesCommand, { DBInstanceIdentifier: SOURCE }).resolves({ DBInstances: [sourceInstance(overrides)] });
  rds.on(DescribeDBInstancesCommand, { DBInstanceIdentifier: `${PREFIX}202611301402` }).rejects(notFound());
  rds.on(DescribeDBInstanceAutomatedBackupsCommand).resolves({
    DBInstanceAutomatedBackups: [{ Status: 'active', RestoreWindow: { EarliestTime: EARLIEST, LatestTime: LATEST } }],
  });
}

beforeEach(() => rds.reset());

describe('validating a recovery request', () => {
  it('accepts a time inside the restore window and returns the window', async () => {
    givenSource();
    const result = await validateRecovery(client, target());
    expect(result.window).toEqual({ earliest: EARLIEST, latest: LATEST });
  });

  it('refuses a time after the latest restorable time (in the future), showing both limits', async () => {
    givenSource();
    await expect(validateRecovery(client, target({ toTime: new Date('2026-11-30T15:00:00Z') }))).rejects.toThrow(
      'recover: --to-time 2026-11-30T15:00:00.000Z is after the latest restorable time 2026-11-30T14:25:00.000Z (earliest 2026-11-23T03:00:00.000Z): pick a time between them',
    );
  });

  it('refuses a time before the earliest restorable time, showing both limits and the fallback', async () => {
    givenSource();
    await expect(validateRecovery(client, target({ toTime: new Date('2026-11-01T00:00:00Z') }))).rejects.toThrow(
      /before the earliest restorable time 2026-11-23T03:00:00.000Z \(latest 2026-11-30T14:25:00.000Z\).*npx --no atmr-dr backups list/,
    );
  });

  it('refuses when point-in-time recovery is off, before asking for the window', async () => {
    givenSource({ BackupRetentionPeriod: 0 });
    await expect(validateRecovery(client, target())).rejects.toThrow(/point-in-time recovery is off on atmr-prod \(automated backup retention 0\)/);
    expect(rds.commandCalls(DescribeDBInstanceAutomatedBackupsCommand)).toHaveLength(0);
  });

  it('refuses a new-instance name that already exists', async () => {
    givenSource();
    rds.on(DescribeDBInstancesCommand, { DBInstanceIdentifier: `${PREFIX}202611301402` }).resolves({ DBInstances: [{ DBInstanceIdentifier: `${PREFIX}202611301402` }] });
    await expect(validateRecovery(client, target())).rejects.toThrow('recover: an instance named atmr-prod-pitr-202611301402 already exists: pass --new-instance with another name (it is never overwritten)');
  });

  it('refuses a name outside the prefix the workflow may create, before any AWS call', async () => {
    await expect(validateRecovery(client, target({ newInstance: 'atmr-prod' }))).rejects.toThrow(/must start with "atmr-prod-pitr-"/);
    await expect(validateRecovery(client, target({ newInstance: `${PREFIX}bad--name` }))).rejects.toThrow(/not a valid RDS instance name/);
    expect(rds.calls()).toHaveLength(0);
  });

  it('names the new instance after the time restored to', () => {
    expect(defaultInstanceName(PREFIX, new Date('2026-11-30T14:02:31Z'))).toBe('atmr-prod-pitr-202611301402');
  });
});

describe('restoring', () => {
  it("restores to the time with the source's class, subnet group, security groups, parameter group, Multi-AZ, storage and tags", async () => {
    givenSource();
    rds.on(RestoreDBInstanceToPointInTimeCommand).resolves({ DBInstance: { DBInstanceStatus: 'creating' } });
    const validated = await validateRecovery(client, target());

    await startRestore(client, validated, target(), { expectedSubnetGroup: 'atmr-private', extraTags: { team: 'atmr-sre' }, recoveryId: 'r20261130143000-abcd' });

    const input = rds.commandCalls(RestoreDBInstanceToPointInTimeCommand)[0].args[0].input;
    expect(input).toMatchObject({
      SourceDBInstanceIdentifier: 'atmr-prod',
      TargetDBInstanceIdentifier: 'atmr-prod-pitr-202611301402',
      RestoreTime: new Date('2026-11-30T14:02:00Z'),
      DBInstanceClass: 'db.r6g.large',
      DBSubnetGroupName: 'atmr-private',
      VpcSecurityGroupIds: ['sg-0a1b2c3d4e5f60db0'],
      DBParameterGroupName: 'atmr-postgres15',
      MultiAZ: true,
      StorageType: 'gp3',
      Port: 5432,
      PubliclyAccessible: false,
      DeletionProtection: false,
    });
    expect(input.UseLatestRestorableTime).toBeUndefined();
    expect(input.Tags).toEqual(
      expect.arrayContaining([
        { Key: 'project', Value: 'atmr' },
        { Key: 'team', Value: 'atmr-sre' },
        { Key: 'atmr-dr:purpose', Value: 'recovery' },
        { Key: 'atmr-dr:recovery-id', Value: 'r20261130143000-abcd' },
        { Key: 'atmr-dr:restored-to-time', Value: '2026-11-30T14:02:00.000Z' },
      ]),
    );
    // aws: tags are reserved: copying them would make the restore fail.
    expect(input.Tags!.some((t) => t.Key!.startsWith('aws:'))).toBe(false);
  });

  /** RDS's own rule for PostgreSQL on gp3: IOPS and throughput are set only from 400 GiB up, below they are the baseline. */
  function restoreAsRdsDoes(allocatedStorage: number) {
    rds.on(RestoreDBInstanceToPointInTimeCommand).callsFake((input: { StorageType?: string; Iops?: number; StorageThroughput?: number }) => {
      if (input.StorageType === 'gp3' && allocatedStorage < 400 && (input.Iops !== undefined || input.StorageThroughput !== undefined)) {
        throw Object.assign(new Error("You can't specify IOPS or storage throughput for engine postgres and a storage size less than 400."), { name: 'InvalidParameterCombination' });
      }
      return { DBInstance: { DBInstanceStatus: 'creating' } };
    });
  }

  it('restores a gp3 source under 400 GiB without the baseline IOPS and throughput it reports (RDS refuses them)', async () => {
    givenSource();
    restoreAsRdsDoes(100);
    const validated = await validateRecovery(client, target());

    await expect(startRestore(client, validated, target(), { extraTags: {}, recoveryId: 'r20261130143000-abcd' })).resolves.toEqual({ status: 'creating' });

    const input = rds.commandCalls(RestoreDBInstanceToPointInTimeCommand)[0].args[0].input;
    expect(input).toMatchObject({ StorageType: 'gp3' });
    expect(input).not.toHaveProperty('Iops');
    expect(input).not.toHaveProperty('StorageThroughput');
  });

  it('keeps the provisioned IOPS and throughput of a gp3 source from 400 GiB up', async () => {
    givenSource({ AllocatedStorage: 500, Iops: 12000, StorageThroughput: 500 });
    restoreAsRdsDoes(500);
    const validated = await validateRecovery(client, target());

    await startRestore(client, validated, target(), { extraTags: {}, recoveryId: 'r20261130143000-abcd' });

    expect(rds.commandCalls(RestoreDBInstanceToPointInTimeCommand)[0].args[0].input).toMatchObject({ StorageType: 'gp3', Iops: 12000, StorageThroughput: 500 });
  });

  it('refuses when the source moved to another subnet group than the configured one (IAM scope)', async () => {
    givenSource({ DBSubnetGroup: { DBSubnetGroupName: 'other' } });
    const validated = await validateRecovery(client, target());
    await expect(startRestore(client, validated, target(), { expectedSubnetGroup: 'atmr-private', extraTags: {}, recoveryId: 'r1' })).rejects.toThrow(
      /subnet group "other", the config says "atmr-private": fix recovery.subnetGroupName/,
    );
    expect(rds.commandCalls(RestoreDBInstanceToPointInTimeCommand)).toHaveLength(0);
  });
});

describe('a restore whose first answer was lost (the SDK sent it again, RDS refused the name the first one took)', () => {
  const NEW = `${PREFIX}202611301402`;
  const ID = 'r20261130143000-abcd';
  const alreadyExists = () => Object.assign(new Error('DB instance already exists'), { name: 'DBInstanceAlreadyExistsFault', $metadata: { httpStatusCode: 400 } });

  /** RDS created the copy on the first request (tagged as the request said); what the caller sees is the retry's refusal. */
  function firstRequestAccepted(recoveryIdOfTheCopy: string) {
    givenSource();
    let created = false;
    rds.on(RestoreDBInstanceToPointInTimeCommand).callsFake(() => {
      created = true;
      throw alreadyExists();
    });
    rds.on(DescribeDBInstancesCommand, { DBInstanceIdentifier: NEW }).callsFake(() => {
      if (!created) throw notFound();
      return { DBInstances: [{ DBInstanceIdentifier: NEW, DBInstanceStatus: 'creating', TagList: [{ Key: 'atmr-dr:purpose', Value: 'recovery' }, { Key: 'atmr-dr:recovery-id', Value: recoveryIdOfTheCopy }] }] };
    });
  }

  it('goes on with the copy when it carries this recovery\'s id', async () => {
    firstRequestAccepted(ID);
    const validated = await validateRecovery(client, target());

    await expect(startRestore(client, validated, target(), { extraTags: {}, recoveryId: ID })).resolves.toEqual({ status: 'creating' });
  });

  it("still refuses an instance of that name another recovery created, naming --new-instance", async () => {
    firstRequestAccepted('r20261129090000-ffff');
    const validated = await validateRecovery(client, target());

    await expect(startRestore(client, validated, target(), { extraTags: {}, recoveryId: ID })).rejects.toThrow(
      `recover: an instance named ${NEW} already exists: pass --new-instance with another name`,
    );
  });

  it('says the copy may be this recovery\'s when its tags cannot be read', async () => {
    givenSource();
    rds.on(RestoreDBInstanceToPointInTimeCommand).rejects(alreadyExists());
    const validated = await validateRecovery(client, target());
    rds.on(DescribeDBInstancesCommand, { DBInstanceIdentifier: NEW }).rejects(Object.assign(new Error('Rate exceeded'), { name: 'Throttling' }));

    await expect(startRestore(client, validated, target(), { extraTags: {}, recoveryId: ID })).rejects.toThrow(
      `recover: RDS says an instance named ${NEW} already exists, and whether this recovery created it (tag atmr-dr:recovery-id=${ID}) could not be read: Rate exceeded; look at its tags before deleting it`,
    );
  });
});

describe('instance state', () => {
  it('is ready with its endpoint once available, failed on a failed restore', async () => {
    rds
      .on(DescribeDBInstancesCommand)
      .resolvesOnce({ DBInstances: [{ DBInstanceStatus: 'creating' }] })
      .resolvesOnce({ DBInstances: [{ DBInstanceStatus: 'available', Endpoint: { Address: 'new.rds', Port: 5432 } }] })
      .resolvesOnce({ DBInstances: [{ DBInstanceStatus: 'incompatible-restore' }] });

    expect(await instanceState(client, 'x')).toMatchObject({ status: 'creating', ready: false, failed: false });
    expect(await instanceState(client, 'x')).toMatchObject({ status: 'available', ready: true, host: 'new.rds', port: 5432 });
    expect(await instanceState(client, 'x')).toMatchObject({ status: 'incompatible-restore', ready: false, failed: true });
  });

  it('is ready with its endpoint while RDS takes its first backup ("backing-up": it accepts connections)', async () => {
    rds.on(DescribeDBInstancesCommand).resolves({ DBInstances: [{ DBInstanceStatus: 'backing-up', Endpoint: { Address: 'new.rds', Port: 5432 } }] });

    expect(await instanceState(client, 'x')).toEqual({ status: 'backing-up', ready: true, failed: false, host: 'new.rds', port: 5432 });
  });
});

describe('deleting a recovered copy', () => {
  const tagged = (id: string) => ({
    DBInstances: [
      {
        DBInstanceIdentifier: `${PREFIX}1`,
        DBInstanceStatus: 'available',
        TagList: [
          { Key: 'atmr-dr:purpose', Value: 'recovery' },
          { Key: 'atmr-dr:recovery-id', Value: id },
        ],
      },
    ],
  });

  it('deletes it with a final snapshot when asked', async () => {
    rds.on(DescribeDBInstancesCommand).resolves(tagged('r1'));
    const result = await deleteRecoveredInstance(client, `${PREFIX}1`, { protectedInstance: SOURCE, recoveryId: 'r1', finalSnapshotIdentifier: 'snap' });
    expect(result.deleted).toBe(true);
    expect(rds.commandCalls(DeleteDBInstanceCommand)[0].args[0].input).toEqual({
      DBInstanceIdentifier: `${PREFIX}1`,
      FinalDBSnapshotIdentifier: 'snap',
      SkipFinalSnapshot: false,
      DeleteAutomatedBackups: true,
    });
  });

  it('never deletes the production instance nor an instance another recovery created', async () => {
    await expect(deleteRecoveredInstance(client, SOURCE, { protectedInstance: SOURCE, recoveryId: 'r1' })).rejects.toThrow(/it is the configured production instance/);
    rds.on(DescribeDBInstancesCommand).resolves(tagged('r-other'));
    await expect(deleteRecoveredInstance(client, `${PREFIX}1`, { protectedInstance: SOURCE, recoveryId: 'r1' })).rejects.toThrow(/not tagged atmr-dr:recovery-id=r1/);
    expect(rds.commandCalls(DeleteDBInstanceCommand)).toHaveLength(0);
  });

  it('is fine with an instance that was never created', async () => {
    rds.on(DescribeDBInstancesCommand).rejects(notFound());
    expect(await deleteRecoveredInstance(client, `${PREFIX}1`, { protectedInstance: SOURCE, recoveryId: 'r1' })).toEqual({ deleted: false, detail: `${PREFIX}1 does not exist (already deleted)` });
  });
});

describe("resetting a recovered copy's master password (the secret was rotated after the target time)", () => {
  const COPY = `${PREFIX}202611301402`;
  const options = { protectedInstance: SOURCE, newInstancePrefix: PREFIX, recoveryId: 'r1' };
  const copy = (overrides: Record<string, unknown> = {}) => ({
    DBInstances: [
      {
        DBInstanceIdentifier: COPY,
        DBInstanceStatus: 'available',
        TagList: [
          { Key: 'atmr-dr:purpose', Value: 'recovery' },
          { Key: 'atmr-dr:recovery-id', Value: 'r1' },
        ],
        ...overrides,
      },
    ],
  });

  it("sets this recovery's copy's password at once, and nothing else", async () => {
    // Arrange
    rds.on(DescribeDBInstancesCommand, { DBInstanceIdentifier: COPY }).resolves(copy());
    rds.on(ModifyDBInstanceCommand).resolves({});

    // Act
    await resetRecoveredPassword(client, COPY, 'current-secret-password', options);

    // Assert
    expect(rds.commandCalls(ModifyDBInstanceCommand).map((c) => c.args[0].input)).toEqual([{ DBInstanceIdentifier: COPY, MasterUserPassword: 'current-secret-password', ApplyImmediately: true }]);
  });

  it.each([
    ['the production instance', SOURCE, copy(), /refusing to reset the password of atmr-prod: it is the configured production instance/],
    ['a name outside the recovery prefix', 'atmr-staging', copy(), /refusing to reset the password of atmr-staging: its name does not start with the recovery prefix "atmr-prod-pitr-"/],
    ["another recovery's copy", COPY, copy({ TagList: [{ Key: 'atmr-dr:purpose', Value: 'recovery' }, { Key: 'atmr-dr:recovery-id', Value: 'r-other' }] }), /not tagged atmr-dr:recovery-id=r1 \(not created by this recovery\)/],
    ['an instance without the recovery tags', COPY, copy({ TagList: [] }), /not tagged atmr-dr:recovery-id=r1/],
    [
      'a copy whose password RDS manages in a secret of its own',
      COPY,
      copy({ MasterUserSecret: { SecretArn: 'arn:aws:secretsmanager:eu-west-3:111111111111:secret:rds!db-1234', SecretStatus: 'active' } }),
      /has an RDS-managed master password \(secret arn:aws:secretsmanager:eu-west-3:111111111111:secret:rds!db-1234\): RDS refuses to set it.*, or "npx --no atmr-dr recover abandon r1"$/,
    ],
  ])('refuses %s in one line, changing nothing', async (_case, identifier, described, reason) => {
    // Arrange: every instance describes as given, as if tags could be faked on any name
    rds.on(DescribeDBInstancesCommand).resolves(described);
    rds.on(ModifyDBInstanceCommand).resolves({});

    // Act
    const error = await resetRecoveredPassword(client, identifier, 'current-secret-password', options).catch((e: unknown) => e as OperatorError);

    // Assert
    expect(error).toBeInstanceOf(OperatorError);
    expect((error as OperatorError).message).toMatch(reason);
    expect((error as OperatorError).message).not.toContain('\n');
    expect((error as OperatorError).exitCode).toBe(2);
    expect(rds.commandCalls(ModifyDBInstanceCommand)).toHaveLength(0);
  });

  it('is applied only once the copy is available with no password pending', async () => {
    rds.on(DescribeDBInstancesCommand, { DBInstanceIdentifier: COPY })
      .resolvesOnce(copy({ PendingModifiedValues: { MasterUserPassword: '****' } }))
      .resolvesOnce(copy({ DBInstanceStatus: 'resetting-master-credentials' }))
      .resolves(copy());

    expect(await passwordResetApplied(client, COPY)).toEqual({ applied: false, status: 'available' });
    expect(await passwordResetApplied(client, COPY)).toEqual({ applied: false, status: 'resetting-master-credentials' });
    expect(await passwordResetApplied(client, COPY)).toEqual({ applied: true, status: 'available' });
  });

  it('is applied once no password is pending while the copy takes a backup ("backing-up": it accepts connections)', async () => {
    rds.on(DescribeDBInstancesCommand, { DBInstanceIdentifier: COPY })
      .resolvesOnce(copy({ DBInstanceStatus: 'backing-up', PendingModifiedValues: { MasterUserPassword: '****' } }))
      .resolves(copy({ DBInstanceStatus: 'backing-up' }));

    expect(await passwordResetApplied(client, COPY)).toEqual({ applied: false, status: 'backing-up' });
    expect(await passwordResetApplied(client, COPY)).toEqual({ applied: true, status: 'backing-up' });
  });

  it('is not asked of RDS while the copy is not available (its first backup): RDS documents modifications for "available" only; a busy error the workflow retries', async () => {
    // Arrange
    rds.on(DescribeDBInstancesCommand, { DBInstanceIdentifier: COPY }).resolves(copy({ DBInstanceStatus: 'backing-up' }));
    rds.on(ModifyDBInstanceCommand).resolves({});

    // Act
    const error = (await resetRecoveredPassword(client, COPY, 'current-secret-password', options).catch((e: unknown) => e)) as Error;

    // Assert
    expect(error.name).toBe('RecoveryCopyBusy');
    expect(error.message).toBe(`${COPY} is "backing-up": RDS documents modifications of an available instance only; the password reset waits until it is available`);
    expect(rds.commandCalls(ModifyDBInstanceCommand)).toHaveLength(0);
  });
});

describe('the replaced instance', () => {
  it('gets a name RDS accepts even when its name is long and cut at a hyphen', () => {
    const old = 'atmr-production-primary-db-eu-west-3-az-a-2026';
    expect(old.slice(0, 40).endsWith('-')).toBe(true);

    const renamed = replacedInstanceName(old, new Date('2026-11-30T15:10:00Z'));

    expect(renamed).toBe('atmr-production-primary-db-eu-west-3-az-replaced-202611301510');
    expect(() => checkInstanceName(renamed, '')).not.toThrow();
  });


  it('is neither tagged nor renamed while RDS backs it up ("backing-up"): a busy error the cutover waits on', async () => {
    rds.on(DescribeDBInstancesCommand).rejects(notFound());
    rds.on(DescribeDBInstancesCommand, { DBInstanceIdentifier: SOURCE }).resolves({ DBInstances: [sourceInstance({ DBInstanceStatus: 'backing-up' })] });

    const error = await markReplacedInstance(client, SOURCE, 'r1', `${PREFIX}1`, new Date('2026-11-30T15:10:00Z'), undefined, SOURCE_RESOURCE_ID).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(InstanceBusyError);
    expect(error).toMatchObject({ status: 'backing-up' });
    expect(rds.commandCalls(AddTagsToResourceCommand)).toHaveLength(0);
    expect(rds.commandCalls(ModifyDBInstanceCommand)).toHaveLength(0);
  });

  it('is tagged then renamed, never deleted', async () => {
    rds.on(DescribeDBInstancesCommand).rejects(notFound());
    rds.on(DescribeDBInstancesCommand, { DBInstanceIdentifier: SOURCE }).resolves({ DBInstances: [sourceInstance()] });
    const renamed = await markReplacedInstance(client, SOURCE, 'r1', `${PREFIX}1`, new Date('2026-11-30T15:10:00Z'), undefined, SOURCE_RESOURCE_ID);
    expect(renamed).toBe('atmr-prod-replaced-202611301510');
    expect(rds.commandCalls(AddTagsToResourceCommand)[0].args[0].input.Tags).toContainEqual({ Key: 'atmr-dr:replaced-by', Value: `${PREFIX}1` });
    expect(rds.commandCalls(ModifyDBInstanceCommand)[0].args[0].input).toEqual({ DBInstanceIdentifier: SOURCE, NewDBInstanceIdentifier: renamed, ApplyImmediately: true });
    expect(rds.commandCalls(DeleteDBInstanceCommand)).toHaveLength(0);
  });
});

it('OperatorError is what refusals throw (one line, non-zero exit)', async () => {
  givenSource({ BackupRetentionPeriod: 0 });
  const error = await validateRecovery(client, target()).catch((e: unknown) => e);
  expect(error).toBeInstanceOf(OperatorError);
  expect((error as OperatorError).exitCode).toBe(2);
});
