import { synthesizeApp } from '../support/app';

/**
 * The condition keys Amazon RDS defines (Service Authorization Reference, "Actions, resources, and
 * condition keys for Amazon RDS", https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonrds.html).
 * A key outside this list is never in a request: StringEquals on it never matches, and the Allow
 * carrying it grants nothing (rds:CreateAction, borrowed from ec2:/ecs:CreateAction, did exactly
 * that to the snapshots and the recovery's restore).
 */
const RDS_CONDITION_KEYS = new Set([
  'rds:BackupTarget',
  'rds:CopyOptionGroup',
  'rds:DatabaseClass',
  'rds:DatabaseEngine',
  'rds:DatabaseName',
  'rds:EndpointType',
  'rds:ManageMasterUserPassword',
  'rds:MultiAz',
  'rds:Piops',
  'rds:PubliclyAccessible',
  'rds:StorageEncrypted',
  'rds:StorageSize',
  'rds:TenantDatabaseName',
  'rds:Vpc',
]);
const RDS_TAG_KEY = /^rds:(cluster-pg|cluster-snapshot|cluster|db|es|og|pg|req|ri|secgrp|snapshot|subgrp)-tag\/.+$/;

/** Every key of every Condition block in a template, whatever the resource (role, bucket, key policy...). */
function conditionKeys(node: unknown, keys: string[] = []): string[] {
  if (Array.isArray(node)) {
    for (const item of node) conditionKeys(item, keys);
  } else if (node && typeof node === 'object') {
    for (const [name, value] of Object.entries(node)) {
      if (name === 'Condition' && value && typeof value === 'object') {
        for (const operands of Object.values(value)) keys.push(...Object.keys(operands as object));
      }
      conditionKeys(value, keys);
    }
  }
  return keys;
}

describe('RDS condition keys in the templates', () => {
  it('uses only condition keys RDS defines, so no Allow of an RDS action is silently void', () => {
    // Arrange
    const { dataTemplate, opsTemplate } = synthesizeApp();

    // Act
    const rdsKeys = [...new Set([...conditionKeys(dataTemplate.toJSON()), ...conditionKeys(opsTemplate.toJSON())].filter((k) => k.startsWith('rds:')))];

    // Assert: the walk reaches the runner's and the recovery's tag conditions (else it checks nothing).
    expect(rdsKeys).toEqual(expect.arrayContaining(['rds:snapshot-tag/atmr-dr:managed']));
    expect(rdsKeys.filter((k) => !RDS_CONDITION_KEYS.has(k) && !RDS_TAG_KEY.test(k))).toEqual([]);
  });
});
