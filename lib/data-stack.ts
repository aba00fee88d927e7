import { CfnOutput, CfnResource, Duration, RemovalPolicy, Stack, StackProps, Validations } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { EnvironmentConfig } from './config';
import { TIER_RETENTION_DAYS, BACKUP_TIERS, RESTORE_TEST_BACKUP_PREFIX, RESTORE_TEST_RETENTION_DAYS } from '../lambdas/shared/s3-layout';
import { KillswitchParameter } from './constructs/killswitch-parameter';
import { backupWriteStatements, monthlyLockStatements } from './constructs/backups';
import { restoreTestBucketStatements } from './constructs/restore-test';
import { nagRender } from './nag';

export interface DataStackProps extends StackProps {
  readonly config: EnvironmentConfig;
}

/**
 * Stateful resources: everything here is RETAINed and has a pinned logical ID, so that a refactor
 * of the construct tree never replaces (and so deletes) a backup bucket, a key or a table.
 */
export class DataStack extends Stack {
  /**
   * Key of the backups only: the bucket's objects. Used by the backup runner and the restore paths,
   * nothing else, so that no other role's grant can read (or re-encrypt) a backup.
   */
  readonly backupKey: kms.Key;
  /** Key of everything else the app encrypts: ops-state table, topics, queues. */
  readonly opsKey: kms.Key;
  /** @deprecated The operations key: use `opsKey` (never backups) or `backupKey` (backup objects only) by name. */
  get key(): kms.Key {
    return this.opsKey;
  }
  /** Backup bucket: `<tier>/...` objects, `latest/` pointers, `restore-tests/` reports. */
  readonly backupBucket: s3.Bucket;
  /** Ops state (incidents, idempotency records): pk/sk, with TTL on `expiresAt`. */
  readonly opsStateTable: dynamodb.Table;
  /** Killswitch SSM parameter: created once with `normal`, never reset by a deploy (an operator's setting survives). */
  readonly killswitchParameter: KillswitchParameter;

  constructor(scope: Construct, id: string, props: DataStackProps) {
    super(scope, id, props);
    const { config } = props;

    this.backupKey = new kms.Key(this, 'Key', {
      alias: `alias/atmr-dr/${config.name}`,
      description: `atmr-dr ${config.name}: backups only (bucket objects)`,
      enableKeyRotation: true,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    pin(this.backupKey, 'BackupKey');
    this.opsKey = new kms.Key(this, 'OpsKey', {
      alias: `alias/atmr-dr/${config.name}/ops`,
      description: `atmr-dr ${config.name}: ops state, incident notifications, queues (never backups)`,
      enableKeyRotation: true,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    pin(this.opsKey, 'OpsKey');
    // CloudWatch alarms publish to the KMS-encrypted incidents topic: they need its key.
    this.opsKey.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'AllowCloudWatchAlarmsToPublishToEncryptedTopics',
        principals: [new iam.ServicePrincipal('cloudwatch.amazonaws.com')],
        actions: ['kms:Decrypt', 'kms:GenerateDataKey*'],
        resources: ['*'], // in a key policy, "*" means this key
        conditions: { StringEquals: { 'aws:SourceAccount': this.account } },
      }),
    );
    // EventBridge delivers to the same topics (the escalation-failure rule): it needs the key too.
    // With no source condition: the SNS developer guide (Key management, compatibility with AWS
    // services) says aws:SourceAccount and aws:SourceArn in a key policy are not supported for
    // EventBridge to encrypted topics; with one, every delivery of "ESCALATION FAILED: nobody is
    // being paged" would fail unseen. Who may publish stays bounded by each topic's own policy,
    // which names this account's rule.
    this.opsKey.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'AllowEventBridgeToPublishToEncryptedTopics',
        principals: [new iam.ServicePrincipal('events.amazonaws.com')],
        actions: ['kms:Decrypt', 'kms:GenerateDataKey*'],
        resources: ['*'], // in a key policy, "*" means this key
      }),
    );
    for (const key of [this.backupKey, this.opsKey]) key.addToResourcePolicy(keyDeletionGuard(config.breakGlassRoleArn));

    // Server access logs cannot be delivered to a KMS-encrypted bucket: SSE-S3 here.
    const accessLogs = new s3.Bucket(this, 'AccessLogs', {
      encryption: s3.BucketEncryption.S3_MANAGED,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      versioned: true,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      removalPolicy: RemovalPolicy.RETAIN,
      lifecycleRules: [{ id: 'expire-access-logs', expiration: Duration.days(365), noncurrentVersionExpiration: Duration.days(30) }],
    });
    // No access logs of its own (logging it into itself would loop): cdk-nag's S1 already exempts a
    // bucket that is a server access log target, so there is nothing to acknowledge.
    pin(accessLogs, 'AccessLogsBucket');

    this.backupBucket = new s3.Bucket(this, 'Backups', {
      encryption: s3.BucketEncryption.KMS,
      encryptionKey: this.backupKey,
      bucketKeyEnabled: true,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      minimumTLSVersion: 1.2,
      versioned: true,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      serverAccessLogsBucket: accessLogs,
      serverAccessLogsPrefix: 'backups/',
      removalPolicy: RemovalPolicy.RETAIN,
      lifecycleRules: [
        // One rule per tier prefix. S3 rounds every expiry up to the next midnight UTC, so an
        // hourly dump is listed between 24 and 48 hours: "the last 24 hourly backups" always exist.
        // A backup made noncurrent (deleted by hand or by a compromised role: overwrites are refused)
        // stays recoverable as long as its tier's retention; so does an expired one (the expiry only
        // adds a delete marker): the data is gone after about twice the retention (docs/backup-runner.md).
        ...BACKUP_TIERS.map((tier) => ({
          id: `expire-${tier}`,
          prefix: `${tier}/`,
          expiration: Duration.days(TIER_RETENTION_DAYS[tier]),
          noncurrentVersionExpiration: Duration.days(TIER_RETENTION_DAYS[tier]),
        })),
        { id: 'expire-restore-test-reports', prefix: 'restore-tests/', expiration: Duration.days(RESTORE_TEST_RETENTION_DAYS), noncurrentVersionExpiration: Duration.days(1) },
        // The pointers (latest.json, latest/<tier>.json) are rewritten every run: keep their history a day.
        { id: 'expire-old-pointer-versions', prefix: 'latest', noncurrentVersionExpiration: Duration.days(1) },
        { id: 'abort-incomplete-uploads', abortIncompleteMultipartUploadAfter: Duration.days(1) },
        { id: 'remove-expired-delete-markers', expiredObjectDeleteMarker: true },
      ],
    });
    pin(this.backupBucket, 'BackupBucket');
    for (const statement of writeOnceStatements(this.backupBucket, this.backupKey)) this.backupBucket.addToResourcePolicy(statement);
    this.backupBucket.addToResourcePolicy(versionDeletionGuard(this.backupBucket, config.breakGlassRoleArn));
    const objectLock = objectLockConfiguration(config.backups);
    if (objectLock) (this.backupBucket.node.defaultChild as s3.CfnBucket).objectLockConfiguration = objectLock;

    this.opsStateTable = new dynamodb.Table(this, 'OpsState', {
      partitionKey: { name: 'pk', type: dynamodb.AttributeType.STRING },
      sortKey: { name: 'sk', type: dynamodb.AttributeType.STRING },
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      encryption: dynamodb.TableEncryption.CUSTOMER_MANAGED,
      encryptionKey: this.opsKey,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      timeToLiveAttribute: 'expiresAt',
      deletionProtection: true,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    pin(this.opsStateTable, 'OpsStateTable');

    this.killswitchParameter = new KillswitchParameter(this, 'Killswitch', { parameterName: config.killswitch.parameterName });
    this.killswitchParameter.resource.overrideLogicalId('KillswitchParameter');

    this.grantBackupOperator(config.killswitch.operatorRoleArns, config.backups.monthlyComplianceLockDays);

    // The CLI resolves deployed names from these outputs (bin/cli/resolve.ts): an operator with
    // credentials needs no flags.
    new CfnOutput(this, 'BackupBucketName', { value: this.backupBucket.bucketName });
    new CfnOutput(this, 'KillswitchParameterName', { value: config.killswitch.parameterName });
    new CfnOutput(this, 'OpsStateTableName', { value: this.opsStateTable.tableName });
  }

  /**
   * Lets the on-call roles (killswitch.operatorRoleArns) run `backup`, `backups list|verify`,
   * `restore` and `restore-test` with their own credentials (docs/operator-permissions.md): the
   * backup core's rights (the runner's statements: tier objects write-once, pointers, ListBucket,
   * the key) and the restore test's reads and report writes (its statements), on this bucket and
   * key only. No delete; the bucket policy's denials (TLS only, write-once under the backup key,
   * version deletion and governance bypass by the break-glass role only) bind them as they bind the
   * runner. Granted here, beside the bucket and the key, whose ARNs the Ops stack would import. The
   * key policy (CDK's default, the account's IAM policies decide) needs no statement. The database
   * login stays the operator's own (--database-secret, rds-db:connect): no production secret here.
   */
  private grantBackupOperator(operatorRoleArns: readonly string[], monthlyComplianceLockDays: number | undefined): void {
    if (!operatorRoleArns.length) return;
    const roles = operatorRoleArns.map((arn, index) => iam.Role.fromRoleArn(this, `OperatorRole${index}`, arn, { mutable: true }));
    const bucketArn = this.backupBucket.bucketArn;
    const keyArn = this.backupKey.keyArn;
    // Each shared statement once (chosen by Sid): ListBucket and the key's use are in both sets,
    // the runner's manifest, pointer and dump reads within the restore's reads.
    const statements = [
      ...backupWriteStatements(bucketArn, keyArn).filter((statement) => statement.sid !== 'ReadPointersAndManifests'),
      ...restoreTestBucketStatements(bucketArn, keyArn).filter((statement) => statement.sid === 'ReadBackups' || statement.sid === 'WriteReports'),
      // `restore-test` from the CLI takes its own backup under RESTORE_TEST_BACKUP_PREFIX (written
      // through WriteReports): the backup core's key check reads its manifest key there (a 404
      // needs GetObject), a failed upload is aborted, and the restore reads the manifest and .dump.
      new iam.PolicyStatement({
        sid: 'RestoreTestOwnBackups',
        actions: ['s3:GetObject', 's3:AbortMultipartUpload'],
        resources: [`${bucketArn}/${RESTORE_TEST_BACKUP_PREFIX}*`],
      }),
      // A monthly backup by hand is locked as the scheduled ones are (bin/cli/backup.ts), and no longer.
      ...monthlyLockStatements(bucketArn, monthlyComplianceLockDays, true),
    ];
    // A managed policy: the role's inline policies share one 10,240-character budget with those its
    // owners attached (the role is not this app's).
    const policy = new iam.ManagedPolicy(this, 'BackupOperatorPolicy', { roles, statements });
    const wildcards = [...new Set(statements.flatMap((statement) => statement.resources).map((arn) => nagRender(this, arn)).filter((arn) => arn.includes('*')))];
    Validations.of(policy).acknowledge(
      ...wildcards.map((arn) => ({
        id: `AwsSolutions-IAM5[Resource::${arn}]`,
        reason:
          'Backup and report keys carry their timestamp: GetObject on the tier and latest prefixes of the backup bucket, PutObject/AbortMultipartUpload on the tier prefixes (write-once under the backup key, enforced by the bucket policy), PutObject on the latest pointers and under restore-tests/ only, GetObject/AbortMultipartUpload under restore-tests/backups/ (the backup the CLI restore-test takes and restores); with backups.monthlyComplianceLockDays, PutObjectRetention on the monthly prefix (the compliance lock of a monthly backup by hand, as the runner sets it); no delete.',
      })),
    );
  }
}

/**
 * Key policy statement: nobody but the break-glass role may schedule the key's deletion or disable it
 * (an explicit deny beats any IAM grant, administrators included). Both calls also raise an alarm
 * (KeyGuard in the ops stack).
 */
function keyDeletionGuard(breakGlassRoleArn: string | undefined): iam.PolicyStatement {
  return new iam.PolicyStatement({
    sid: 'DenyKeyDeletionOrDisableExceptBreakGlass',
    effect: iam.Effect.DENY,
    principals: [new iam.AnyPrincipal()],
    actions: ['kms:ScheduleKeyDeletion', 'kms:DisableKey'],
    resources: ['*'],
    ...exceptBreakGlass(breakGlassRoleArn),
  });
}

/**
 * Bucket policy statement: nobody but the break-glass role may delete an object version (a backup's
 * data, for good) or bypass a governance retention. No role of this app deletes versions: old ones
 * go through the lifecycle rules, which S3 runs itself, not as a principal, so no bucket policy
 * applies to them. CloudFormation never needs either action: the bucket is retained, never emptied.
 * The bucket's own settings (versioning, lifecycle, Object Lock configuration) are not denied here:
 * CloudFormation sets them on every deploy under a principal this app does not know (the bootstrap's
 * execution role, or the deployer's own credentials), and a wrong guess would lock the deploy, and
 * its rollback, out of the bucket (docs/backup-runner.md "Object Lock").
 */
function versionDeletionGuard(bucket: s3.IBucket, breakGlassRoleArn: string | undefined): iam.PolicyStatement {
  return new iam.PolicyStatement({
    sid: 'DenyVersionDeletionExceptBreakGlass',
    effect: iam.Effect.DENY,
    principals: [new iam.AnyPrincipal()],
    actions: ['s3:DeleteObjectVersion', 's3:BypassGovernanceRetention'],
    resources: [bucket.arnForObjects('*')],
    ...exceptBreakGlass(breakGlassRoleArn),
  });
}

/** The condition that spares the break-glass role from a deny; none (everyone denied) without one. */
function exceptBreakGlass(breakGlassRoleArn: string | undefined): Pick<iam.PolicyStatementProps, 'conditions'> {
  return breakGlassRoleArn ? { conditions: { ArnNotEquals: { 'aws:PrincipalArn': breakGlassRoleArn } } } : {};
}

/**
 * Backups are written once: under a tier prefix S3 refuses any object creation without
 * `If-None-Match` (so an existing backup is never overwritten, whoever holds s3:PutObject), and any
 * encryption but the backup key (so nobody re-encrypts backups under a key they control). The
 * multipart steps that cannot carry the header (CreateMultipartUpload, UploadPart) are told apart
 * by `s3:ObjectCreationOperation`; the encryption headers, when sent, are on CreateMultipartUpload
 * and PutObject. Absent encryption headers mean the bucket default: the backup key.
 */
export function writeOnceStatements(bucket: s3.IBucket, backupKey: kms.IKey): iam.PolicyStatement[] {
  const tierObjects = BACKUP_TIERS.map((tier) => bucket.arnForObjects(`${tier}/*`));
  const deny = (sid: string, conditions: Record<string, unknown>) =>
    new iam.PolicyStatement({ sid, effect: iam.Effect.DENY, principals: [new iam.AnyPrincipal()], actions: ['s3:PutObject'], resources: tierObjects, conditions });
  return [
    deny('DenyBackupOverwrites', { Null: { 's3:if-none-match': 'true' }, Bool: { 's3:ObjectCreationOperation': 'true' } }),
    deny('DenyBackupsUnderAnotherKey', { StringNotEqualsIfExists: { 's3:x-amz-server-side-encryption-aws-kms-key-id': backupKey.keyArn } }),
    deny('DenyBackupsWithoutKms', { StringNotEqualsIfExists: { 's3:x-amz-server-side-encryption': 'aws:kms' } }),
  ];
}

/**
 * The backup bucket's Object Lock, always through `ObjectLockConfiguration`: CloudFormation applies it
 * to an existing bucket in place, while the top-level `ObjectLockEnabled` property (what the L2
 * `objectLockEnabled` sets) replaces the bucket: a new, empty bucket behind the stack outputs, the
 * backups left in the retained old one. With `objectLockGovernanceDays`, every new object version
 * gets that governance retention by default; with `monthlyComplianceLockDays` alone, Object Lock is
 * on without a default (only the runner's monthly objects carry a retention, compliance mode).
 */
function objectLockConfiguration(backups: EnvironmentConfig['backups']): s3.CfnBucket.ObjectLockConfigurationProperty | undefined {
  if (backups.objectLockGovernanceDays !== undefined) {
    return { objectLockEnabled: 'Enabled', rule: { defaultRetention: { mode: 'GOVERNANCE', days: backups.objectLockGovernanceDays } } };
  }
  return backups.monthlyComplianceLockDays !== undefined ? { objectLockEnabled: 'Enabled' } : undefined;
}

/** Pins the CloudFormation logical ID of a stateful resource so tree refactors never replace it. */
function pin(construct: Construct, logicalId: string): void {
  (construct.node.defaultChild as CfnResource).overrideLogicalId(logicalId);
}
