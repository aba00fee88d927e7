import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as sns from 'aws-cdk-lib/aws-sns';
import type { DatabaseConfig } from '../config';

/**
 * What every construct that runs the PostgreSQL tools against the backups shares (the backup runner,
 * the restore test): where it runs, what it reads and writes, with which keys, and where its alarms go.
 */
export interface BackupWorkloadProps {
  /** VPC of the database. */
  readonly vpc: ec2.IVpc;
  /** Private subnets with routes to S3 and the AWS APIs. */
  readonly subnets: ec2.SubnetSelection;
  /** Security group of the backed-up database. */
  readonly databaseSecurityGroup: ec2.ISecurityGroup;
  /** Backup bucket (`<tier>/`, `latest/`, `restore-tests/`). */
  readonly bucket: s3.IBucket;
  /** The bucket's key: backups only (decrypt and data keys for the objects). */
  readonly backupKey: kms.IKey;
  /** Key of the construct's queues (the operations key): never the backup key. */
  readonly opsKey: kms.IKey;
  /** Topic every alarm notifies (the incidents topic). */
  readonly alarmTopic: sns.ITopic;
}

/** The backed-up database, as the runners need it (connection and instance, never a password). */
export type BackupDatabase = Pick<
  DatabaseConfig,
  'instanceIdentifier' | 'host' | 'port' | 'name' | 'secretArn' | 'secretKmsKeyArn' | 'iamAuthUser' | 'securityGroupId' | 'engineMajorVersion'
>;
