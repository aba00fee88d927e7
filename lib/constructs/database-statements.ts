import { ArnFormat, Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';

/**
 * `rds-db:connect` as the IAM database user `user`. The instance's DbiResourceId is not part of
 * the config, so the ARN names any instance and the user name is what scopes it.
 */
export function connectWithIamAuthStatement(stack: Stack, user: string): iam.PolicyStatement {
  return new iam.PolicyStatement({
    sid: 'ConnectWithIamAuth',
    actions: ['rds-db:connect'],
    resources: [stack.formatArn({ service: 'rds-db', resource: 'dbuser', resourceName: `*/${user}`, arnFormat: ArnFormat.COLON_RESOURCE_NAME })],
  });
}

/**
 * `kms:Decrypt` with the customer key of a database secret, only when Secrets Manager asks for it
 * (reading that secret): the key decrypts nothing else for this role.
 */
export function decryptSecretStatement(stack: Stack, keyArn: string, sid?: string): iam.PolicyStatement {
  return new iam.PolicyStatement({
    ...(sid && { sid }),
    actions: ['kms:Decrypt'],
    resources: [keyArn],
    conditions: { StringEquals: { 'kms:ViaService': `secretsmanager.${stack.region}.amazonaws.com` } },
  });
}

/**
 * `kms:Decrypt` and `kms:GenerateDataKey` with the customer key of a secret, only when Secrets
 * Manager asks for them: reading the secret decrypts its data key, writing a new value
 * (PutSecretValue) has Secrets Manager generate one, both with the caller's rights.
 */
export function readAndWriteSecretStatement(stack: Stack, keyArn: string, sid: string): iam.PolicyStatement {
  const statement = decryptSecretStatement(stack, keyArn, sid);
  statement.addActions('kms:GenerateDataKey');
  return statement;
}

/**
 * `kms:CreateGrant` and `kms:DescribeKey` on the customer-managed key of the instance's storage,
 * only when RDS asks for them: a point-in-time restore of an instance encrypted with that key
 * creates a grant on it for the new instance, with the caller's rights (without them RDS refuses
 * the restore). The recovery and the restore test's temporary instance restore the same instance.
 */
export function restoreEncryptedStorageStatement(stack: Stack, storageKmsKeyArn: string): iam.PolicyStatement {
  return new iam.PolicyStatement({
    sid: 'RestoreEncryptedStorage',
    actions: ['kms:CreateGrant', 'kms:DescribeKey'],
    resources: [storageKmsKeyArn],
    conditions: { StringEquals: { 'kms:ViaService': `rds.${stack.region}.amazonaws.com` } },
  });
}

/**
 * Lets `role` read the value of `secret` and nothing more: `secretsmanager:GetSecretValue` is the
 * only call the functions make (Powertools' getSecret, pg-connection). `secret.grantRead` would add
 * DescribeSecret, which no code sends. A customer key of the secret decrypts it through Secrets
 * Manager only.
 */
export function grantSecretValueRead(role: iam.IRole, secret: secretsmanager.ISecret): void {
  role.addToPrincipalPolicy(new iam.PolicyStatement({ actions: ['secretsmanager:GetSecretValue'], resources: [secret.secretArn] }));
  if (secret.encryptionKey) role.addToPrincipalPolicy(decryptSecretStatement(Stack.of(secret), secret.encryptionKey.keyArn));
}
