import { CfnOutput, CfnResource, Duration, RemovalPolicy, Stack, StackProps, Validations } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { EnvironmentConfig } from './config';
import { TIER_RETENTION_DAYS, BACKUP_TIERS } from '../lambdas/shared/s3-layout';
import { KillswitchParameter } from './constructs/killswitch-parameter';

export interface DataStackProps extends StackProps {
  readonly config: EnvironmentConfig;
}

/**
 * Stateful resources: everything here is RETAINed and has a pinned logical ID, so that a refactor
 * of the construct tree never replaces (and so deletes) a backup bucket, a key or a table.
 */
export class DataStack extends Stack {
  /** Customer-managed key for backups, the ops-state table and the incidents topic. */
  readonly key: kms.Key;
  /** Backup bucket: `<tier>/...` objects, `latest/` pointers, `restore-tests/` reports. */
  readonly backupBucket: s3.Bucket;
  /** Ops state (incidents, idempotency records): pk/sk, with TTL on `expiresAt`. */
  readonly opsStateTable: dynamodb.Table;
  /** Killswitch SSM parameter: created once with `normal`, never reset by a deploy (issue 4). */
  readonly killswitchParameter: KillswitchParameter;

  constructor(scope: Construct, id: string, props: DataStackProps) {
    super(scope, id, props);
    const { config } = props;

    this.key = new kms.Key(this, 'Key', {
      alias: `alias/atmr-dr/${config.name}`,
      description: `atmr-dr ${config.name}: backups, ops state, incident notifications`,
      enableKeyRotation: true,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    // CloudWatch alarms publish to the KMS-encrypted incidents topic: they need the key.
    this.key.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'AllowCloudWatchAlarmsToPublishToEncryptedTopics',
        principals: [new iam.ServicePrincipal('cloudwatch.amazonaws.com')],
        actions: ['kms:Decrypt', 'kms:GenerateDataKey*'],
        resources: ['*'], // in a key policy, "*" means this key
        conditions: { StringEquals: { 'aws:SourceAccount': this.account } },
      }),
    );
    // EventBridge delivers to the same topics (the escalation-failure rule): it needs the key too.
    this.key.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'AllowEventBridgeToPublishToEncryptedTopics',
        principals: [new iam.ServicePrincipal('events.amazonaws.com')],
        actions: ['kms:Decrypt', 'kms:GenerateDataKey*'],
        resources: ['*'], // in a key policy, "*" means this key
        conditions: { StringEquals: { 'aws:SourceAccount': this.account } },
      }),
    );
    pin(this.key, 'BackupKey');

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
    pin(accessLogs, 'AccessLogsBucket');
    Validations.of(accessLogs).acknowledge({
      id: 'AwsSolutions-S1',
      reason: 'This is the server access log target of the backup bucket; logging it into itself would loop.',
    });

    const lockDays = config.backups.objectLockGovernanceDays;
    this.backupBucket = new s3.Bucket(this, 'Backups', {
      encryption: s3.BucketEncryption.KMS,
      encryptionKey: this.key,
      bucketKeyEnabled: true,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      minimumTLSVersion: 1.2,
      versioned: true,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      serverAccessLogsBucket: accessLogs,
      serverAccessLogsPrefix: 'backups/',
      removalPolicy: RemovalPolicy.RETAIN,
      ...(lockDays !== undefined && {
        objectLockEnabled: true,
        objectLockDefaultRetention: s3.ObjectLockRetention.governance(Duration.days(lockDays)),
      }),
      lifecycleRules: [
        // One rule per tier prefix. S3 rounds every expiry up to the next midnight UTC, so an
        // hourly dump lives between 24 and 48 hours: "the last 24 hourly backups" always exist.
        ...BACKUP_TIERS.map((tier) => ({
          id: `expire-${tier}`,
          prefix: `${tier}/`,
          expiration: Duration.days(TIER_RETENTION_DAYS[tier]),
          noncurrentVersionExpiration: Duration.days(1),
        })),
        { id: 'expire-restore-test-reports', prefix: 'restore-tests/', expiration: Duration.days(400), noncurrentVersionExpiration: Duration.days(1) },
        // The pointers (latest.json, latest/<tier>.json) are rewritten every run: keep their history a day.
        { id: 'expire-old-pointer-versions', prefix: 'latest', noncurrentVersionExpiration: Duration.days(1) },
        { id: 'abort-incomplete-uploads', abortIncompleteMultipartUploadAfter: Duration.days(1) },
        { id: 'remove-expired-delete-markers', expiredObjectDeleteMarker: true },
      ],
    });
    pin(this.backupBucket, 'BackupBucket');

    this.opsStateTable = new dynamodb.Table(this, 'OpsState', {
      partitionKey: { name: 'pk', type: dynamodb.AttributeType.STRING },
      sortKey: { name: 'sk', type: dynamodb.AttributeType.STRING },
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      encryption: dynamodb.TableEncryption.CUSTOMER_MANAGED,
      encryptionKey: this.key,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      timeToLiveAttribute: 'expiresAt',
      deletionProtection: true,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    pin(this.opsStateTable, 'OpsStateTable');

    this.killswitchParameter = new KillswitchParameter(this, 'Killswitch', { parameterName: config.killswitch.parameterName });
    this.killswitchParameter.resource.overrideLogicalId('KillswitchParameter');

    // The CLI resolves deployed names from these outputs (bin/cli/resolve.ts): an operator with
    // credentials needs no flags.
    new CfnOutput(this, 'BackupBucketName', { value: this.backupBucket.bucketName });
    new CfnOutput(this, 'KillswitchParameterName', { value: config.killswitch.parameterName });
    new CfnOutput(this, 'OpsStateTableName', { value: this.opsStateTable.tableName });
  }
}

/** Pins the CloudFormation logical ID of a stateful resource so tree refactors never replace it. */
function pin(construct: Construct, logicalId: string): void {
  (construct.node.defaultChild as CfnResource).overrideLogicalId(logicalId);
}
