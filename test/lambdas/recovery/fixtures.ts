import { DBInstance } from '@aws-sdk/client-rds';

export const SOURCE = 'atmr-prod';
export const PREFIX = 'atmr-prod-pitr-';
export const NOW = new Date('2026-11-30T14:30:00Z');
export const EARLIEST = new Date('2026-11-23T03:00:00Z');
export const LATEST = new Date('2026-11-30T14:25:00Z');
/** The production instance's DbiResourceId: stable across renames, unlike its name. */
export const SOURCE_RESOURCE_ID = 'db-ABCDEFGHIJKLMNOPQRSTUVWXY0';

/** The production instance as DescribeDBInstances shows it. */
export function sourceInstance(overrides: Partial<DBInstance> = {}): DBInstance {
  return {
    DBInstanceIdentifier: SOURCE,
    DBInstanceArn: `arn:aws:rds:eu-west-3:111111111111:db:${SOURCE}`,
    DbiResourceId: SOURCE_RESOURCE_ID,
    DBInstanceStatus: 'available',
    DBInstanceClass: 'db.r6g.large',
    BackupRetentionPeriod: 7,
    LatestRestorableTime: LATEST,
    DBSubnetGroup: { DBSubnetGroupName: 'atmr-private' },
    VpcSecurityGroups: [{ VpcSecurityGroupId: 'sg-0a1b2c3d4e5f60db0', Status: 'active' }],
    DBParameterGroups: [{ DBParameterGroupName: 'atmr-postgres15', ParameterApplyStatus: 'in-sync' }],
    MultiAZ: true,
    StorageType: 'gp3',
    // 100 GiB of gp3: DescribeDBInstances reports its baseline performance (3000 IOPS, 125 MiB/s).
    AllocatedStorage: 100,
    Iops: 3000,
    StorageThroughput: 125,
    StorageEncrypted: true,
    KmsKeyId: 'arn:aws:kms:eu-west-3:111111111111:key/11111111-2222-3333-4444-555555555555',
    Endpoint: { Address: 'atmr-prod.abcdefghijkl.eu-west-3.rds.amazonaws.com', Port: 5432 },
    PubliclyAccessible: false,
    IAMDatabaseAuthenticationEnabled: false,
    CopyTagsToSnapshot: true,
    TagList: [
      { Key: 'project', Value: 'atmr' },
      { Key: 'aws:cloudformation:stack-name', Value: 'db' },
    ],
    ...overrides,
  };
}

export const notFound = () => Object.assign(new Error('DBInstance not found'), { name: 'DBInstanceNotFoundFault' });
