import { Match } from 'aws-cdk-lib/assertions';
import { synthesizeApp } from '../support/app';

describe('stateful stack', () => {
  const { dataTemplate } = synthesizeApp();

  it.each([
    ['BackupBucket', 'AWS::S3::Bucket'],
    ['BackupKey', 'AWS::KMS::Key'],
    ['OpsStateTable', 'AWS::DynamoDB::Table'],
    ['AccessLogsBucket', 'AWS::S3::Bucket'],
  ])('pins the logical ID %s and retains it on stack deletion and replacement', (logicalId, type) => {
    const resource = dataTemplate.toJSON().Resources[logicalId];

    expect(resource?.Type).toBe(type);
    expect(resource.DeletionPolicy).toBe('Retain');
    expect(resource.UpdateReplacePolicy).toBe('Retain');
  });

  it('rotates the customer-managed key', () => {
    dataTemplate.hasResourceProperties('AWS::KMS::Key', { EnableKeyRotation: true });
  });

  it('lets CloudWatch alarms use the key only from this account (encrypted incidents topic)', () => {
    dataTemplate.hasResourceProperties('AWS::KMS::Key', {
      KeyPolicy: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Sid: 'AllowCloudWatchAlarmsToPublishToEncryptedTopics',
            Principal: { Service: 'cloudwatch.amazonaws.com' },
            Condition: { StringEquals: { 'aws:SourceAccount': '111111111111' } },
          }),
        ]),
      },
    });
  });

  it('encrypts the ops-state table with the CMK, with PITR, TTL and deletion protection', () => {
    dataTemplate.hasResourceProperties('AWS::DynamoDB::Table', {
      SSESpecification: { SSEEnabled: true, SSEType: 'KMS', KMSMasterKeyId: Match.anyValue() },
      PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
      TimeToLiveSpecification: { AttributeName: 'expiresAt', Enabled: true },
      DeletionProtectionEnabled: true,
      BillingMode: 'PAY_PER_REQUEST',
    });
  });
});

describe('stateless stack', () => {
  const { opsTemplate } = synthesizeApp();

  it('has nothing retained: it can be destroyed and redeployed without data loss', () => {
    const resources = Object.values(opsTemplate.toJSON().Resources) as { Type: string; DeletionPolicy?: string }[];
    const retained = resources.filter((r) => r.DeletionPolicy === 'Retain' && r.Type !== 'AWS::Logs::LogGroup');
    expect(retained.map((r) => r.Type)).toEqual([]);
  });

  it('encrypts the incidents topic with the CMK and enforces TLS on it', () => {
    opsTemplate.hasResourceProperties('AWS::SNS::Topic', { KmsMasterKeyId: Match.anyValue() });
    opsTemplate.hasResourceProperties('AWS::SNS::TopicPolicy', {
      PolicyDocument: {
        Statement: Match.arrayWith([Match.objectLike({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } })]),
      },
    });
  });
});
