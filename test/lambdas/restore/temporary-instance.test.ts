import {
  DBInstance,
  DeleteDBInstanceCommand,
  DescribeDBInstancesCommand,
  ModifyDBInstanceCommand,
  RDSClient,
  RestoreDBInstanceToPointInTimeCommand,
  Tag,
} from '@aws-sdk/client-rds';
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { App, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as sns from 'aws-cdk-lib/aws-sns';
import type { Context } from 'aws-lambda';
import { ExecutionError, StateMachine } from 'aws-local-stepfunctions';
import { mockClient } from 'aws-sdk-client-mock';
import { parseEnvironmentConfig } from '../../../lib/config';
import { DELETE_TEMPORARY_INSTANCE_RETRY, RDS_CALL_RETRY, RestoreTest, restoreTestPropsFromConfig } from '../../../lib/constructs/restore-test';
import { DataStack } from '../../../lib/data-stack';
import { RESTORE_TEST_ENV, TEMPORARY_INSTANCE_TRANSIENT_ERROR } from '../../../lambdas/restore/contract';
import { handler } from '../../../lambdas/restore/handler';
import {
  EXECUTION_TAG,
  TemporaryInstanceSettings,
  createTemporaryInstance,
  deleteOwnTemporaryInstance,
  deleteTemporaryInstance,
  executionTagValue,
  temporaryInstanceStatus,
} from '../../../lambdas/restore/temporary-instance';
import { createS3Client } from '../../../lambdas/shared/aws';
import { cdkJsonContext, exampleEnvironment } from '../../support/app';
import { testCluster, uniqueDatabaseName } from '../../support/cluster';
import { psql } from '../../support/postgres';
import { LocalS3, startLocalS3 } from '../../support/s3';
import { stateMachineDefinition, writeFixtureBackup } from './fixtures';

const rds = mockClient(RDSClient);
const secretsManager = mockClient(SecretsManagerClient);
const SETTINGS: TemporaryInstanceSettings = {
  sourceInstanceIdentifier: 'atmr-staging',
  temporaryInstanceIdentifier: 'atmr-dr-restore-test-staging',
  instanceClass: 'db.t4g.medium',
  subnetGroupName: 'atmr-private',
  securityGroupIds: ['sg-0a1b2c3d4e5f60db0'],
};

beforeEach(() => {
  rds.reset();
  secretsManager.reset();
});

/**
 * RDS as it answers a create of the one temporary name: the first request creates the instance with
 * the tags it carries, every later one is refused (DBInstanceAlreadyExists); describe shows the
 * instance (`instance`, with those tags).
 */
function rdsKeepsTheName(instance: () => DBInstance = () => ({ DBInstanceIdentifier: SETTINGS.temporaryInstanceIdentifier, DBInstanceStatus: 'creating' })) {
  let tags: Tag[] | undefined;
  rds.on(RestoreDBInstanceToPointInTimeCommand).callsFake((input: { Tags?: Tag[] }) => {
    if (tags) throw Object.assign(new Error('DB instance already exists'), { name: 'DBInstanceAlreadyExistsFault', $metadata: { httpStatusCode: 400 } });
    tags = input.Tags ?? [];
    return { DBInstance: { DBInstanceStatus: 'creating' } };
  });
  rds.on(DescribeDBInstancesCommand).callsFake(() => {
    if (!tags) throw Object.assign(new Error('DBInstance not found'), { name: 'DBInstanceNotFoundFault' });
    return { DBInstances: [{ ...instance(), TagList: tags }] };
  });
}

describe('temporary instance steps (RDS SDK)', () => {
  const client = new RDSClient({ region: 'eu-west-3' });

  it('creates it by point-in-time restore to the latest restorable time, private, tagged, deletable, with no automated backups (no "backing-up" state to refuse its deletion)', async () => {
    rds.on(RestoreDBInstanceToPointInTimeCommand).resolves({ DBInstance: { DBInstanceStatus: 'creating' } });

    const result = await createTemporaryInstance(client, SETTINGS);

    expect(result).toEqual({ identifier: 'atmr-dr-restore-test-staging', status: 'creating', ready: false });
    expect(rds.commandCalls(RestoreDBInstanceToPointInTimeCommand)[0].args[0].input).toEqual({
      SourceDBInstanceIdentifier: 'atmr-staging',
      TargetDBInstanceIdentifier: 'atmr-dr-restore-test-staging',
      UseLatestRestorableTime: true,
      DBInstanceClass: 'db.t4g.medium',
      DBSubnetGroupName: 'atmr-private',
      VpcSecurityGroupIds: ['sg-0a1b2c3d4e5f60db0'],
      PubliclyAccessible: false,
      MultiAZ: false,
      DeletionProtection: false,
      AutoMinorVersionUpgrade: false,
      CopyTagsToSnapshot: false,
      BackupRetentionPeriod: 0,
      Tags: [
        { Key: 'atmr-dr:managed', Value: 'true' },
        { Key: 'atmr-dr:purpose', Value: 'restore-test' },
      ],
    });
  });

  it('refuses clearly when a temporary instance is left over', async () => {
    rds.on(RestoreDBInstanceToPointInTimeCommand).rejects(Object.assign(new Error('exists'), { name: 'DBInstanceAlreadyExistsFault' }));

    await expect(createTemporaryInstance(client, SETTINGS)).rejects.toThrow(/temporary instance atmr-dr-restore-test-staging already exists .*delete it, then retry/);
  });

  describe('a source whose storage is encrypted with a customer-managed key', () => {
    const KEY = 'arn:aws:kms:eu-west-3:111111111111:key/11111111-2222-3333-4444-555555555555';
    // What RDS answers when it cannot create the grant on the key with the caller's rights.
    const refusedForTheKey = Object.assign(new Error(`The specified KMS key [${KEY}] does not exist, is not enabled or you do not have permissions to access it.`), {
      name: 'KMSKeyNotAccessibleFault',
    });

    it('names the key, not PITR and the subnet group, when RDS cannot use it', async () => {
      rds.on(RestoreDBInstanceToPointInTimeCommand).rejects(refusedForTheKey);

      const error = (await createTemporaryInstance(client, { ...SETTINGS, storageKmsKeyArn: KEY }).catch((e: Error) => e)) as Error;

      expect(error.message).toMatch(new RegExp(`^cannot restore atmr-staging to a temporary instance: RDS could not use its storage key ${KEY} \\(.*\\); check that recovery.storageKmsKeyArn is the key`));
      expect(error.message).not.toMatch(/PITR|subnet group/);
      expect(error.message).not.toContain('\n');
    });

    it('says to configure the key when none is (the role then has no grant on it)', async () => {
      rds.on(RestoreDBInstanceToPointInTimeCommand).rejects(refusedForTheKey);

      await expect(createTemporaryInstance(client, SETTINGS)).rejects.toThrow(
        /^cannot restore atmr-staging to a temporary instance: RDS could not use its storage key \(.*\); .*set recovery.storageKmsKeyArn to that key's ARN in cdk.json and redeploy/,
      );
    });

    it('still blames PITR and the subnet group for another refusal', async () => {
      rds.on(RestoreDBInstanceToPointInTimeCommand).rejects(Object.assign(new Error('no automated backups'), { name: 'PointInTimeRestoreNotEnabledFault' }));

      await expect(createTemporaryInstance(client, { ...SETTINGS, storageKmsKeyArn: KEY })).rejects.toThrow(/no automated backups; check PITR \(automated backups\) and the subnet group$/);
    });
  });

  it('tags the instance with the execution that creates it, and a retry of that create (its answer lost) carries on with it', async () => {
    rdsKeepsTheName();

    await expect(createTemporaryInstance(client, SETTINGS, 'monthly-2026-12-02')).resolves.toEqual({ identifier: SETTINGS.temporaryInstanceIdentifier, status: 'creating', ready: false });
    await expect(createTemporaryInstance(client, SETTINGS, 'monthly-2026-12-02')).resolves.toEqual({ identifier: SETTINGS.temporaryInstanceIdentifier, status: 'creating', ready: false });

    expect(rds.commandCalls(RestoreDBInstanceToPointInTimeCommand)[0].args[0].input.Tags).toContainEqual({ Key: EXECUTION_TAG, Value: 'monthly-2026-12-02' });
    expect(rds.commandCalls(RestoreDBInstanceToPointInTimeCommand)).toHaveLength(2);
  });

  it("still refuses an instance another execution created, naming it, and one created without an execution", async () => {
    rdsKeepsTheName();
    await createTemporaryInstance(client, SETTINGS, 'monthly-2026-11-04');

    await expect(createTemporaryInstance(client, SETTINGS, 'monthly-2026-12-02')).rejects.toThrow(
      /^temporary instance atmr-dr-restore-test-staging already exists \(a previous restore test did not clean up, or one is running: created by restore-test execution monthly-2026-11-04\): wait for it or delete it, then retry$/,
    );
    await expect(createTemporaryInstance(client, SETTINGS)).rejects.toThrow(/already exists .*monthly-2026-11-04/);
  });

  it("tags an execution name RDS would refuse as a tag value (parentheses, !) by its hash, and recognizes it on the retry", async () => {
    rdsKeepsTheName();
    const name = "manual(rerun)!";

    await createTemporaryInstance(client, SETTINGS, name);
    await expect(createTemporaryInstance(client, SETTINGS, name)).resolves.toMatchObject({ status: 'creating' });

    const tag = rds.commandCalls(RestoreDBInstanceToPointInTimeCommand)[0].args[0].input.Tags!.find((t) => t.Key === EXECUTION_TAG)!;
    expect(tag.Value).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(tag.Value).toBe(executionTagValue(name));
    expect(executionTagValue('0f0e0d0c-1a2b-4c3d-9e8f-a1b2c3d4e5f6')).toBe('0f0e0d0c-1a2b-4c3d-9e8f-a1b2c3d4e5f6');
  });

  it('after a failed create, deletes the instance only when it is this execution\'s', async () => {
    rdsKeepsTheName();
    rds.on(DeleteDBInstanceCommand).resolves({});

    await expect(deleteOwnTemporaryInstance(client, SETTINGS, 'monthly-2026-12-02')).resolves.toMatchObject({ deleted: false, detail: 'not created' });
    await createTemporaryInstance(client, SETTINGS, 'monthly-2026-11-04');
    await expect(deleteOwnTemporaryInstance(client, SETTINGS, 'monthly-2026-12-02')).resolves.toMatchObject({
      deleted: false,
      detail: `not this execution's (${EXECUTION_TAG}=monthly-2026-11-04): left as it is`,
    });
    expect(rds.commandCalls(DeleteDBInstanceCommand)).toHaveLength(0);
    await expect(deleteOwnTemporaryInstance(client, SETTINGS, 'monthly-2026-11-04')).resolves.toMatchObject({ deleted: true });
    expect(rds.commandCalls(DeleteDBInstanceCommand)).toHaveLength(1);
  });

  it("after a failed create, names an RDS 5xx or throttling (describe or delete) for the state machine's Retry, and lets a refusal through unchanged", async () => {
    const serverError = Object.assign(new Error('An internal error has occurred'), { name: 'InternalFailure', $fault: 'server', $metadata: { httpStatusCode: 500 } });
    rds.on(DescribeDBInstancesCommand).rejectsOnce(serverError);
    await expect(deleteOwnTemporaryInstance(client, SETTINGS, 'monthly-2026-12-02')).rejects.toMatchObject({
      name: TEMPORARY_INSTANCE_TRANSIENT_ERROR,
      message: "temporary instance atmr-dr-restore-test-staging: RDS failed transiently (InternalFailure: An internal error has occurred); this run's instance, if any, may still exist",
    });

    rdsKeepsTheName();
    await createTemporaryInstance(client, SETTINGS, 'monthly-2026-12-02');
    rds.on(DeleteDBInstanceCommand).rejectsOnce(serverError);
    await expect(deleteOwnTemporaryInstance(client, SETTINGS, 'monthly-2026-12-02')).rejects.toMatchObject({ name: TEMPORARY_INSTANCE_TRANSIENT_ERROR });

    rds.on(DeleteDBInstanceCommand).rejects(Object.assign(new Error('not authorized'), { name: 'AccessDenied', $metadata: { httpStatusCode: 403 } }));
    await expect(deleteOwnTemporaryInstance(client, SETTINGS, 'monthly-2026-12-02')).rejects.toMatchObject({
      name: 'OperatorError',
      message: 'cannot delete temporary instance atmr-dr-restore-test-staging: not authorized; delete it by hand (it costs money)',
    });
  });

  it('reports not ready while creating, the endpoint once available, and fails on a failed restore', async () => {
    rds
      .on(DescribeDBInstancesCommand)
      .resolvesOnce({ DBInstances: [{ DBInstanceStatus: 'creating' }] })
      .resolvesOnce({ DBInstances: [{ DBInstanceStatus: 'available', Endpoint: { Address: 'tmp.abc.eu-west-3.rds.amazonaws.com', Port: 5432 } }] })
      .resolvesOnce({ DBInstances: [{ DBInstanceStatus: 'incompatible-restore' }] });

    await expect(temporaryInstanceStatus(client, SETTINGS)).resolves.toEqual({ identifier: SETTINGS.temporaryInstanceIdentifier, status: 'creating', ready: false });
    await expect(temporaryInstanceStatus(client, SETTINGS)).resolves.toEqual({
      identifier: SETTINGS.temporaryInstanceIdentifier,
      status: 'available',
      ready: true,
      host: 'tmp.abc.eu-west-3.rds.amazonaws.com',
      port: 5432,
    });
    await expect(temporaryInstanceStatus(client, SETTINGS)).rejects.toThrow(/is "incompatible-restore": the point-in-time restore failed/);
  });

  it('deletes without a final snapshot, and treats an instance already gone as deleted', async () => {
    rds.on(DeleteDBInstanceCommand).resolvesOnce({}).rejectsOnce(Object.assign(new Error('gone'), { name: 'DBInstanceNotFoundFault' }));

    await expect(deleteTemporaryInstance(client, SETTINGS)).resolves.toEqual({ identifier: SETTINGS.temporaryInstanceIdentifier, deleted: true });
    await expect(deleteTemporaryInstance(client, SETTINGS)).resolves.toEqual({ identifier: SETTINGS.temporaryInstanceIdentifier, deleted: false });
    expect(rds.commandCalls(DeleteDBInstanceCommand)[0].args[0].input).toEqual({
      DBInstanceIdentifier: SETTINGS.temporaryInstanceIdentifier,
      SkipFinalSnapshot: true,
      DeleteAutomatedBackups: true,
    });
  });

  it('treats a refusal because the instance is already being deleted as done, any other refusal as a failure naming the state', async () => {
    const refused = () => Object.assign(new Error('Instance cannot be deleted in its current state'), { name: 'InvalidDBInstanceStateFault' });
    rds.on(DeleteDBInstanceCommand).rejects(refused());
    rds.on(DescribeDBInstancesCommand).resolvesOnce({ DBInstances: [{ DBInstanceStatus: 'deleting' }] }).resolves({ DBInstances: [{ DBInstanceStatus: 'backing-up' }] });

    await expect(deleteTemporaryInstance(client, SETTINGS)).resolves.toEqual({ identifier: SETTINGS.temporaryInstanceIdentifier, deleted: false });
    await expect(deleteTemporaryInstance(client, SETTINGS)).rejects.toThrow(
      /^cannot delete temporary instance atmr-dr-restore-test-staging: it is "backing-up" \(Instance cannot be deleted in its current state\); delete it by hand once it is available \(it costs money\)$/,
    );
  });

  it('treats an instance whose deletion ended between the refusal and the look at its state as deleted, and an unreadable state as a failure', async () => {
    rds.on(DeleteDBInstanceCommand).rejects(Object.assign(new Error('Instance is already being deleted.'), { name: 'InvalidDBInstanceStateFault' }));
    rds
      .on(DescribeDBInstancesCommand)
      .rejectsOnce(Object.assign(new Error('DBInstance atmr-dr-restore-test-staging not found.'), { name: 'DBInstanceNotFoundFault' }))
      .rejects(Object.assign(new Error('not authorized to perform: rds:DescribeDBInstances'), { name: 'AccessDenied', $metadata: { httpStatusCode: 403 } }));

    await expect(deleteTemporaryInstance(client, SETTINGS)).resolves.toEqual({ identifier: SETTINGS.temporaryInstanceIdentifier, deleted: false });
    await expect(deleteTemporaryInstance(client, SETTINGS)).rejects.toThrow(/^cannot delete temporary instance atmr-dr-restore-test-staging: it is "unknown"/);
  });

  it("names an RDS 5xx or throttling of the deletion (or of the look at the state it refused in) for the state machine's Retry, and lets a refusal through unchanged", async () => {
    const serverError = Object.assign(new Error('An internal error has occurred'), { name: 'InternalFailure', $fault: 'server', $metadata: { httpStatusCode: 500 } });
    rds.on(DeleteDBInstanceCommand).rejectsOnce(serverError);
    await expect(deleteTemporaryInstance(client, SETTINGS)).rejects.toMatchObject({
      name: TEMPORARY_INSTANCE_TRANSIENT_ERROR,
      message: 'temporary instance atmr-dr-restore-test-staging: RDS failed transiently (InternalFailure: An internal error has occurred); the instance may still exist',
    });

    rds.on(DeleteDBInstanceCommand).rejects(Object.assign(new Error('Instance cannot be deleted in its current state'), { name: 'InvalidDBInstanceStateFault' }));
    rds.on(DescribeDBInstancesCommand).rejectsOnce(Object.assign(new Error('Rate exceeded'), { name: 'Throttling', $metadata: { httpStatusCode: 400 } }));
    await expect(deleteTemporaryInstance(client, SETTINGS)).rejects.toMatchObject({
      name: TEMPORARY_INSTANCE_TRANSIENT_ERROR,
      message: 'temporary instance atmr-dr-restore-test-staging: RDS failed transiently (Throttling: Rate exceeded); the instance may still exist',
    });

    rds.on(DeleteDBInstanceCommand).rejects(Object.assign(new Error('not authorized'), { name: 'AccessDenied', $metadata: { httpStatusCode: 403 } }));
    await expect(deleteTemporaryInstance(client, SETTINGS)).rejects.toMatchObject({
      name: 'OperatorError',
      message: 'cannot delete temporary instance atmr-dr-restore-test-staging: not authorized; delete it by hand (it costs money)',
    });
  });

  it('reports a poll whose describe RDS throttled or failed with a 5xx as not ready (polled again), and still fails on a refusal', async () => {
    rds
      .on(DescribeDBInstancesCommand)
      .rejectsOnce(Object.assign(new Error('Rate exceeded'), { name: 'ThrottlingException', $metadata: { httpStatusCode: 400 } }))
      .rejectsOnce(Object.assign(new Error('Service unavailable'), { name: 'ServiceUnavailable', $fault: 'server', $metadata: { httpStatusCode: 503 } }))
      .rejects(Object.assign(new Error('not authorized to perform: rds:DescribeDBInstances'), { name: 'AccessDenied', $metadata: { httpStatusCode: 403 } }));

    await expect(temporaryInstanceStatus(client, SETTINGS)).resolves.toEqual({
      identifier: SETTINGS.temporaryInstanceIdentifier,
      status: 'unknown (describe failed, to be asked again: Rate exceeded)',
      ready: false,
    });
    await expect(temporaryInstanceStatus(client, SETTINGS)).resolves.toMatchObject({ status: 'unknown (describe failed, to be asked again: Service unavailable)', ready: false });
    await expect(temporaryInstanceStatus(client, SETTINGS)).rejects.toThrow(/not authorized to perform: rds:DescribeDBInstances/);
  });
});

/**
 * The synthesized state machine, executed with aws-local-stepfunctions: every Task runs the real
 * Lambda handler (RDS mocked at the SDK; the "temporary instance" is the test PostgreSQL cluster,
 * the bucket is s3rver).
 */
describe('restore test on a temporary instance (state machine)', () => {
  const cluster = testCluster();
  const SECRET_ARN = 'arn:aws:secretsmanager:eu-west-3:111111111111:secret:rds!db-atmr-prod-AbCdEf';
  const TEMPORARY_SECRET_ARN = 'arn:aws:secretsmanager:eu-west-3:111111111111:secret:rds!db-0f0e0d0c-temporary-AbCdEf';
  /** The temporary instance once available, with the master secret of its own the state machine gave it. */
  const availableInstance = () => ({
    DBInstanceStatus: 'available',
    Endpoint: { Address: cluster.host, Port: cluster.port },
    MasterUserSecret: { SecretArn: TEMPORARY_SECRET_ARN, SecretStatus: 'active' },
  });
  const context = { functionName: 'restore-test', awsRequestId: 'req-sfn', getRemainingTimeInMillis: () => 900_000 } as unknown as Context;
  const saved = { ...process.env };
  let localS3: LocalS3;
  let definition: ReturnType<typeof stateMachineDefinition>;
  let source: string;

  function synthesizeDefinition() {
    const raw = structuredClone(exampleEnvironment()) as Record<string, unknown>;
    raw.restoreTest = { enabled: true, useTemporaryInstance: true, temporaryInstanceSubnetGroupName: 'atmr-private' };
    const config = parseEnvironmentConfig('example', raw);
    const app = new App({ context: cdkJsonContext() });
    const env = { account: config.account, region: config.region };
    const data = new DataStack(app, 'Data', { env, config });
    const stack = new Stack(app, 'RestoreTestOnly', { env });
    const vpc = ec2.Vpc.fromVpcAttributes(stack, 'Vpc', {
      vpcId: config.network.vpcId,
      availabilityZones: config.network.availabilityZones,
      privateSubnetIds: config.network.privateSubnetIds,
    });
    new RestoreTest(
      stack,
      'RestoreTest',
      restoreTestPropsFromConfig(config, {
        bucket: data.backupBucket,
        backupKey: data.backupKey,
        opsKey: data.opsKey,
        vpc,
        subnets: { subnets: vpc.privateSubnets },
        databaseSecurityGroup: ec2.SecurityGroup.fromSecurityGroupId(stack, 'DbSg', config.database.securityGroupId),
        alarmTopic: new sns.Topic(stack, 'Incidents'),
      }),
    );
    return stateMachineDefinition(Template.fromStack(stack));
  }

  /**
   * Every Lambda Task of the definition runs the real handler with the state's input; the state
   * machine's own RDS calls (aws-sdk integrations) go to the mocked RDS client, answered in the
   * integration's shape (DbInstances, DbInstanceStatus).
   */
  function localHandlers(lostAnswers: (state: string) => boolean = () => false): Record<string, (input: unknown) => Promise<never>> {
    const tasks = Object.entries(definition.States).filter(([, state]) => (state as { Type: string }).Type === 'Task') as [string, { Resource: string; Parameters?: Record<string, unknown> }][];
    const rdsClient = new RDSClient({ region: 'eu-west-3' });
    const sdk: Record<string, () => Promise<unknown>> = {
      ':states:::aws-sdk:rds:modifyDBInstance': async () => {
        await rdsIntegrationCall(() => rdsClient.send(new ModifyDBInstanceCommand({ DBInstanceIdentifier: 'atmr-dr-restore-test-example', ManageMasterUserPassword: true, ApplyImmediately: true })));
        return {};
      },
      ':states:::aws-sdk:rds:describeDBInstances': async () => {
        const instance = (await rdsIntegrationCall(() => rdsClient.send(new DescribeDBInstancesCommand({ DBInstanceIdentifier: 'atmr-dr-restore-test-example' })))).DBInstances?.[0];
        return { DbInstances: [{ DbInstanceStatus: instance?.DBInstanceStatus, ...(instance?.MasterUserSecret && { MasterUserSecret: instance.MasterUserSecret }) }] };
      },
    };
    return Object.fromEntries(
      tasks.map(([name, state]) => {
        // The partition is a token in the synthesized ARN: the integration is known by its suffix.
        const integration = Object.keys(sdk).find((suffix) => state.Resource.endsWith(suffix));
        return [
          name,
          (async (input: unknown) => {
            const output = integration ? await sdk[integration]() : await handler(input, context);
            // The function ran, Lambda lost its answer: Step Functions sees Lambda.ServiceException (and retries).
            if (lostAnswers(name)) throw Object.assign(new Error(`${name}: the function ran, its answer was lost`), { name: 'Lambda.ServiceException' });
            return output;
          }) as (input: unknown) => Promise<never>,
        ];
      }),
    );
  }

  /**
   * An RDS error as the aws-sdk integration fails the Task with it: `Rds.` and the AWS SDK for Java's
   * class. An exception RDS's model lists (the JS SDK's `...Fault`) is its class
   * (InvalidDBInstanceStateFault: Rds.InvalidDbInstanceStateException); any other error RDS answered
   * (throttling, a 5xx) is Rds.RdsException; a call that got no answer, Rds.SdkClientException.
   */
  async function rdsIntegrationCall<T>(call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (caught) {
      const error = caught as { name: string; message: string; $metadata?: { httpStatusCode?: number } };
      const status = error.$metadata?.httpStatusCode;
      const name = error.name.endsWith('Fault') ? `${error.name.slice(0, -'Fault'.length).replace(/DB/g, 'Db')}Exception` : status ? 'RdsException' : 'SdkClientException';
      throw Object.assign(new Error(`${error.message} (Service: Rds, Status Code: ${status ?? 'none'})`), { name: `Rds.${name}` });
    }
  }

  const EXECUTION = '0f0e0d0c-1a2b-4c3d-9e8f-a1b2c3d4e5f6';

  /** `lostAnswers`: whether the answer of this call of that Task state is lost (after the function ran). */
  async function execute(lostAnswers?: (state: string) => boolean): Promise<{ output?: unknown; error?: Error }> {
    const machine = new StateMachine(definition as never, { validationOptions: { checkArn: false } });
    const retryIntervalOverrides = Object.fromEntries(Object.keys(definition.States).map((name) => [name, 0]));
    const execution = machine.run(
      { tier: 'daily' },
      {
        // Step Functions names every execution (the Scheduler's get a generated one): the context object carries it.
        context: { Execution: { Name: EXECUTION } },
        overrides: { taskResourceLocalHandlers: localHandlers(lostAnswers), waitTimeOverrides: { WaitForTemporaryInstance: 0, WaitForTemporaryInstanceSecret: 0 }, retryIntervalOverrides },
      },
    );
    try {
      return { output: await execution.result };
    } catch (error) {
      return { error: error as Error };
    }
  }

  beforeAll(async () => {
    definition = synthesizeDefinition();
    localS3 = await startLocalS3();
    source = uniqueDatabaseName('sfn_src');
    psql(cluster, 'postgres', `CREATE DATABASE ${source}`);
    psql(cluster, source, 'CREATE TABLE company (id int PRIMARY KEY); INSERT INTO company SELECT generate_series(1, 7);');
    await writeFixtureBackup(createS3Client(localS3.env), localS3.bucket, cluster, source, { tier: 'daily' });
    // A synth and a dump: minutes on a busy 2-core machine.
  }, 240_000);

  afterAll(async () => {
    await localS3?.stop();
  });

  beforeEach(() => {
    Object.assign(process.env, localS3.env, {
      [RESTORE_TEST_ENV.bucket]: localS3.bucket,
      // The configured target is unreachable on purpose: the test must use the temporary instance's endpoint.
      [RESTORE_TEST_ENV.targetHost]: 'atmr-prod.invalid',
      [RESTORE_TEST_ENV.targetPort]: '5432',
      [RESTORE_TEST_ENV.targetSecretArn]: SECRET_ARN,
      [RESTORE_TEST_ENV.criticalQueries]: JSON.stringify(['SELECT COUNT(*) FROM company']),
      // latest is per database: the backed-up one.
      [RESTORE_TEST_ENV.database]: source,
      [RESTORE_TEST_ENV.sourceInstance]: 'atmr-prod',
      [RESTORE_TEST_ENV.temporaryInstance]: 'atmr-dr-restore-test-example',
      [RESTORE_TEST_ENV.temporaryInstanceClass]: 'db.t4g.medium',
      [RESTORE_TEST_ENV.temporaryInstanceSubnetGroup]: 'atmr-private',
      [RESTORE_TEST_ENV.temporaryInstanceSecurityGroups]: '["sg-0a1b2c3d4e5f60db0"]',
    });
    secretsManager.on(GetSecretValueCommand).resolves({ SecretString: JSON.stringify({ username: cluster.user, password: 'unused', host: 'atmr-prod.invalid' }) });
    rds.on(RestoreDBInstanceToPointInTimeCommand).resolves({ DBInstance: { DBInstanceStatus: 'creating' } });
    rds.on(DeleteDBInstanceCommand).resolves({});
    rds.on(ModifyDBInstanceCommand).resolves({});
    jest.spyOn(process.stdout, 'write').mockImplementation(() => true);
  });

  afterEach(() => {
    jest.restoreAllMocks();
    process.env = { ...saved };
  });

  it('creates the instance, waits until available, runs the test on its endpoint, deletes it, succeeds', async () => {
    rds
      .on(DescribeDBInstancesCommand)
      .resolvesOnce({ DBInstances: [{ DBInstanceStatus: 'creating' }] })
      .resolves({ DBInstances: [availableInstance()] });

    const { output, error } = await execute();

    expect(error).toBeUndefined();
    const test = (output as { test: { ok: boolean; reportKey: string } }).test;
    expect(test.ok).toBe(true);
    expect(test.reportKey).toMatch(/^restore-tests\//);
    expect(rds.commandCalls(RestoreDBInstanceToPointInTimeCommand)).toHaveLength(1);
    // status (creating), status (available), the state machine's secret check, the test's own lookup.
    expect(rds.commandCalls(DescribeDBInstancesCommand)).toHaveLength(4);
    expect(rds.commandCalls(ModifyDBInstanceCommand)[0].args[0].input).toMatchObject({ ManageMasterUserPassword: true });
    expect(rds.commandCalls(DeleteDBInstanceCommand)).toHaveLength(1);
    // The test read the temporary instance's own secret, never the production one.
    expect(secretsManager.commandCalls(GetSecretValueCommand).map((call) => call.args[0].input.SecretId)).toEqual([TEMPORARY_SECRET_ARN]);
  });

  it('fails the execution (the Executions alarm) when a passed test leaves an instance RDS refuses to delete in its state', async () => {
    // Available until the delete: then RDS refuses it (InvalidDBInstanceState) in the middle of a backup.
    rds.on(DescribeDBInstancesCommand).callsFake(() => ({
      DBInstances: [rds.commandCalls(DeleteDBInstanceCommand).length > 0 ? { DBInstanceStatus: 'backing-up' } : availableInstance()],
    }));
    rds.on(DeleteDBInstanceCommand).rejects(Object.assign(new Error('Instance cannot be deleted in its current state'), { name: 'InvalidDBInstanceStateFault' }));

    const { error } = await execute();

    expect(error).toBeInstanceOf(ExecutionError);
    expect((error?.cause as Error).name).toBe('TemporaryInstanceNotDeleted');
    expect(error?.message).toMatch(/following error: the restore test passed \(report restore-tests\/.*cannot delete temporary instance atmr-dr-restore-test-example: it is "backing-up"/);
  });

  it("refuses, in temporary-instance mode, any event that names a target (host, port, database), before touching anything", async () => {
    for (const event of [{ tier: 'daily', targetHost: 'atmr-prod.abcdefghijkl.eu-west-3.rds.amazonaws.com' }, { targetPort: 5432 }, { restore: { ref: 'latest', targetDb: 'atmr_copy' } }]) {
      await expect(handler(event, context)).rejects.toThrow(/runs on a temporary instance: its event is \{\} or \{"tier".*names no target/);
    }
    expect(rds.commandCalls(DescribeDBInstancesCommand)).toHaveLength(0);
    expect(secretsManager.commandCalls(GetSecretValueCommand)).toHaveLength(0);
  });

  it('deletes the instance and fails the execution when the restore test fails', async () => {
    process.env[RESTORE_TEST_ENV.criticalQueries] = JSON.stringify(['SELECT 1 / (COUNT(*) - COUNT(*)) FROM company']);
    rds.on(DescribeDBInstancesCommand).resolves({ DBInstances: [availableInstance()] });

    const { error } = await execute();

    expect(error).toBeInstanceOf(ExecutionError);
    // The Fail state reached names the outcome; its cause is the test's own one-line error.
    expect((error?.cause as Error).name).toBe('RestoreTestFailed');
    expect(error?.message).toMatch(/critical query failed on the restored copy: .*division by zero/);
    expect(rds.commandCalls(DeleteDBInstanceCommand)).toHaveLength(1);
  });

  it('deletes the instance and fails the execution when the instance restore fails', async () => {
    rds.on(DescribeDBInstancesCommand).resolves({ DBInstances: [{ DBInstanceStatus: 'incompatible-restore' }] });

    const { error } = await execute();

    expect(error).toBeInstanceOf(ExecutionError);
    expect((error?.cause as Error).name).toBe('RestoreTestErrored');
    expect(error?.message).toMatch(/is "incompatible-restore": the point-in-time restore failed/);
    expect(rds.commandCalls(DeleteDBInstanceCommand)).toHaveLength(1);
  });

  it('fails without deleting anything when the instance cannot be created', async () => {
    rds.on(RestoreDBInstanceToPointInTimeCommand).rejects(Object.assign(new Error('exists'), { name: 'DBInstanceAlreadyExistsFault' }));
    // A left-over instance of that name with no execution tag (created by hand, or before the tag).
    rds.on(DescribeDBInstancesCommand).resolves({ DBInstances: [{ ...availableInstance(), TagList: [{ Key: 'atmr-dr:purpose', Value: 'restore-test' }] }] });

    const { error } = await execute();

    expect(error).toBeInstanceOf(ExecutionError);
    expect((error?.cause as Error).name).toBe('TemporaryInstanceNotCreated');
    expect(error?.message).toMatch(/already exists/);
    expect(rds.commandCalls(DeleteDBInstanceCommand)).toHaveLength(0);
  });

  it("carries on when Lambda lost the create's answer: the retried create finds the instance tagged with this execution, the test runs on it, it is deleted once, the execution succeeds", async () => {
    rdsKeepsTheName(availableInstance);
    let creates = 0;

    const { output, error } = await execute((state) => state === 'CreateTemporaryInstance' && ++creates === 1);

    expect(error).toBeUndefined();
    expect((output as { test: { ok: boolean } }).test.ok).toBe(true);
    expect(rds.commandCalls(RestoreDBInstanceToPointInTimeCommand)).toHaveLength(2);
    expect(rds.commandCalls(RestoreDBInstanceToPointInTimeCommand)[0].args[0].input.Tags).toContainEqual({ Key: EXECUTION_TAG, Value: EXECUTION });
    expect(rds.commandCalls(DeleteDBInstanceCommand)).toHaveLength(1);
  });

  it("deletes this execution's instance when the create step fails after RDS accepted it (every answer lost), then fails as not created", async () => {
    rdsKeepsTheName(availableInstance);

    const { error } = await execute((state) => state === 'CreateTemporaryInstance');

    expect(error).toBeInstanceOf(ExecutionError);
    expect((error?.cause as Error).name).toBe('TemporaryInstanceNotCreated');
    expect(rds.commandCalls(DeleteDBInstanceCommand).map((call) => call.args[0].input.DBInstanceIdentifier)).toEqual(['atmr-dr-restore-test-example']);
  });

  /** An SDK error as RDS throttling answers it, after the SDK's own attempts. */
  const throttled = () => Object.assign(new Error('Rate exceeded'), { name: 'ThrottlingException', $metadata: { httpStatusCode: 400, attempts: 5 } });
  /** The line of the failure path when this run's instance could not be deleted (`deletion`: which deletion failed). */
  const mayRemainAfter = (deletion: string) =>
    new RegExp(
      `; and temporary instance atmr-dr-restore-test-example may still exist, ${deletion} \\(.*\\): if its atmr-dr:restore-test-execution tag names this execution \\(${EXECUTION}\\), delete it: aws rds delete-db-instance --db-instance-identifier atmr-dr-restore-test-example --skip-final-snapshot$`,
    );
  const mayRemain = mayRemainAfter('its deletion after the failed create failed too');

  it("asks RDS again when its look for this run's instance after a failed create is throttled, then fails as not created with the create's own error", async () => {
    rds.on(RestoreDBInstanceToPointInTimeCommand).rejects(Object.assign(new Error('Cannot create a db.t4g.medium instance in eu-west-3a'), { name: 'InsufficientDBInstanceCapacityFault' }));
    rds.on(DescribeDBInstancesCommand).rejectsOnce(throttled()).rejects(Object.assign(new Error('DBInstance not found'), { name: 'DBInstanceNotFoundFault' }));

    const { error } = await execute();

    expect(error).toBeInstanceOf(ExecutionError);
    expect((error?.cause as Error).name).toBe('TemporaryInstanceNotCreated');
    expect(error?.message).toMatch(/following error: cannot restore atmr-prod to a temporary instance: Cannot create a db.t4g.medium instance in eu-west-3a; check PITR/);
    expect(error?.message).not.toMatch(/may still exist/);
    expect(rds.commandCalls(DescribeDBInstancesCommand)).toHaveLength(2);
    expect(rds.commandCalls(DeleteDBInstanceCommand)).toHaveLength(0);
  });

  it("asks RDS again when the deletion of this run's instance after a failed create is throttled, deletes it, and fails as not created", async () => {
    rdsKeepsTheName(availableInstance);
    rds.on(DeleteDBInstanceCommand).rejectsOnce(throttled()).resolves({});

    const { error } = await execute((state) => state === 'CreateTemporaryInstance');

    expect(error).toBeInstanceOf(ExecutionError);
    expect((error?.cause as Error).name).toBe('TemporaryInstanceNotCreated');
    expect(error?.message).toMatch(/following error: CreateTemporaryInstance: the function ran, its answer was lost$/);
    expect(rds.commandCalls(DeleteDBInstanceCommand)).toHaveLength(2);
  });

  it("fails as not created, the create's error first, naming the instance that may remain and how to delete it, when RDS refuses the deletion of this run's instance (no retry)", async () => {
    rdsKeepsTheName(availableInstance);
    rds.on(DeleteDBInstanceCommand).rejects(Object.assign(new Error('not authorized to perform: rds:DeleteDBInstance'), { name: 'AccessDenied', $metadata: { httpStatusCode: 403 } }));

    const { error } = await execute((state) => state === 'CreateTemporaryInstance');

    expect(error).toBeInstanceOf(ExecutionError);
    expect((error?.cause as Error).name).toBe('TemporaryInstanceNotCreated');
    expect(error?.message).toMatch(/following error: CreateTemporaryInstance: the function ran, its answer was lost; and temporary instance/);
    expect(error?.message).toMatch(/failed too \(cannot delete temporary instance atmr-dr-restore-test-example: not authorized to perform: rds:DeleteDBInstance; delete it by hand \(it costs money\)\)/);
    expect(error?.message).toMatch(mayRemain);
    expect(rds.commandCalls(DeleteDBInstanceCommand)).toHaveLength(1);
  });

  it("stops asking after a bounded number of throttled deletions, and fails as not created with the same line", async () => {
    rdsKeepsTheName(availableInstance);
    rds.on(DeleteDBInstanceCommand).rejects(throttled());

    const { error } = await execute((state) => state === 'CreateTemporaryInstance');

    expect(error).toBeInstanceOf(ExecutionError);
    expect((error?.cause as Error).name).toBe('TemporaryInstanceNotCreated');
    expect(error?.message).toMatch(/following error: CreateTemporaryInstance: the function ran, its answer was lost; and temporary instance/);
    expect(error?.message).toMatch(/failed too \(temporary instance atmr-dr-restore-test-example: RDS failed transiently \(ThrottlingException: Rate exceeded\)/);
    expect(error?.message).toMatch(mayRemain);
    // The first attempt and the Retry's.
    expect(rds.commandCalls(DeleteDBInstanceCommand)).toHaveLength(1 + DELETE_TEMPORARY_INSTANCE_RETRY.maxAttempts);
  });

  it('polls again when RDS throttles a look at the instance being restored, then runs the test on it and succeeds', async () => {
    rds
      .on(DescribeDBInstancesCommand)
      .rejectsOnce(throttled())
      .resolves({ DBInstances: [availableInstance()] });

    const { output, error } = await execute();

    expect(error).toBeUndefined();
    expect((output as { test: { ok: boolean } }).test.ok).toBe(true);
    // status (throttled), status (available), the state machine's secret check, the test's own lookup.
    expect(rds.commandCalls(DescribeDBInstancesCommand)).toHaveLength(4);
    expect(rds.commandCalls(DeleteDBInstanceCommand)).toHaveLength(1);
  });

  /** RDS refuses a modification while the instance is still busy (e.g. a backup right after the restore). */
  const busy = () => Object.assign(new Error('Database instance is not in available state.'), { name: 'InvalidDBInstanceStateFault', $metadata: { httpStatusCode: 400 } });

  it("asks RDS again when the state machine's own password call is throttled, then refused while the instance is busy, then runs the test and succeeds", async () => {
    rds.on(DescribeDBInstancesCommand).resolves({ DBInstances: [availableInstance()] });
    rds.on(ModifyDBInstanceCommand).rejectsOnce(throttled()).rejectsOnce(busy()).resolves({});

    const { output, error } = await execute();

    expect(error).toBeUndefined();
    expect((output as { test: { ok: boolean } }).test.ok).toBe(true);
    expect(rds.commandCalls(ModifyDBInstanceCommand)).toHaveLength(3);
    expect(rds.commandCalls(DeleteDBInstanceCommand)).toHaveLength(1);
  });

  it("asks RDS again when the state machine's poll of the instance's secret is throttled or gets no answer, then runs the test and succeeds", async () => {
    const noAnswer = Object.assign(new Error('socket hang up'), { name: 'TimeoutError', code: 'ECONNRESET' });
    // status (available), the state machine's secret check (throttled, no answer, active), the test's own lookup.
    rds
      .on(DescribeDBInstancesCommand)
      .resolvesOnce({ DBInstances: [availableInstance()] })
      .rejectsOnce(throttled())
      .rejectsOnce(noAnswer)
      .resolves({ DBInstances: [availableInstance()] });

    const { output, error } = await execute();

    expect(error).toBeUndefined();
    expect((output as { test: { ok: boolean } }).test.ok).toBe(true);
    expect(rds.commandCalls(DescribeDBInstancesCommand)).toHaveLength(5);
    expect(rds.commandCalls(DeleteDBInstanceCommand)).toHaveLength(1);
  });

  it("still ends RestoreTestErrored at once, the instance deleted, when RDS refuses the password call for another reason", async () => {
    rds.on(DescribeDBInstancesCommand).resolves({ DBInstances: [availableInstance()] });
    rds.on(ModifyDBInstanceCommand).rejects(Object.assign(new Error('DBInstance atmr-dr-restore-test-example not found.'), { name: 'DBInstanceNotFoundFault', $metadata: { httpStatusCode: 404 } }));

    const { error } = await execute();

    expect(error).toBeInstanceOf(ExecutionError);
    expect((error?.cause as Error).name).toBe('RestoreTestErrored');
    expect(error?.message).toMatch(/DBInstance atmr-dr-restore-test-example not found/);
    // A refusal: not asked again.
    expect(rds.commandCalls(ModifyDBInstanceCommand)).toHaveLength(1);
    expect(rds.commandCalls(DeleteDBInstanceCommand)).toHaveLength(1);
  });

  it('stops asking after a bounded number of throttled password calls, and ends RestoreTestErrored, the instance deleted', async () => {
    rds.on(DescribeDBInstancesCommand).resolves({ DBInstances: [availableInstance()] });
    rds.on(ModifyDBInstanceCommand).rejects(throttled());

    const { error } = await execute();

    expect(error).toBeInstanceOf(ExecutionError);
    expect((error?.cause as Error).name).toBe('RestoreTestErrored');
    expect(error?.message).toMatch(/Rate exceeded/);
    expect(rds.commandCalls(ModifyDBInstanceCommand)).toHaveLength(1 + RDS_CALL_RETRY.maxAttempts);
    expect(rds.commandCalls(DeleteDBInstanceCommand)).toHaveLength(1);
  });

  it('asks RDS again when the deletion after a passed test is throttled, deletes the instance, and succeeds', async () => {
    rds.on(DescribeDBInstancesCommand).resolves({ DBInstances: [availableInstance()] });
    rds.on(DeleteDBInstanceCommand).rejectsOnce(throttled()).resolves({});

    const { output, error } = await execute();

    expect(error).toBeUndefined();
    expect((output as { test: { ok: boolean } }).test.ok).toBe(true);
    expect(rds.commandCalls(DeleteDBInstanceCommand)).toHaveLength(2);
  });

  it('fails the execution after a passed test whose instance RDS throttles past the retries, the result first, naming the instance and how to delete it', async () => {
    rds.on(DescribeDBInstancesCommand).resolves({ DBInstances: [availableInstance()] });
    rds.on(DeleteDBInstanceCommand).rejects(throttled());

    const { error } = await execute();

    expect(error).toBeInstanceOf(ExecutionError);
    expect((error?.cause as Error).name).toBe('TemporaryInstanceNotDeleted');
    expect(error?.message).toMatch(/following error: the restore test passed \(report restore-tests\/[^)]+\.json\); and temporary instance/);
    expect(error?.message).toMatch(/its deletion failed \(temporary instance atmr-dr-restore-test-example: RDS failed transiently \(ThrottlingException: Rate exceeded\)/);
    expect(error?.message).toMatch(mayRemainAfter('its deletion failed'));
    expect(rds.commandCalls(DeleteDBInstanceCommand)).toHaveLength(1 + DELETE_TEMPORARY_INSTANCE_RETRY.maxAttempts);
  });

  it("fails a failed test as failed, the test's error first, then the instance that may remain, when RDS refuses its deletion", async () => {
    process.env[RESTORE_TEST_ENV.criticalQueries] = JSON.stringify(['SELECT 1 / (COUNT(*) - COUNT(*)) FROM company']);
    rds.on(DescribeDBInstancesCommand).resolves({ DBInstances: [availableInstance()] });
    rds.on(DeleteDBInstanceCommand).rejects(Object.assign(new Error('not authorized to perform: rds:DeleteDBInstance'), { name: 'AccessDenied', $metadata: { httpStatusCode: 403 } }));

    const { error } = await execute();

    expect(error).toBeInstanceOf(ExecutionError);
    expect((error?.cause as Error).name).toBe('RestoreTestFailed');
    expect(error?.message).toMatch(/following error: critical query failed on the restored copy: [^;]*division by zero.*; and temporary instance/);
    expect(error?.message).toMatch(/after the test failed too \(cannot delete temporary instance atmr-dr-restore-test-example: not authorized to perform: rds:DeleteDBInstance; delete it by hand \(it costs money\)\)/);
    expect(error?.message).toMatch(mayRemainAfter('its deletion after the test failed too'));
    // A refusal: not asked again.
    expect(rds.commandCalls(DeleteDBInstanceCommand)).toHaveLength(1);
  });

  it('asks RDS again when the deletion after an error is throttled, and fails with that error once deleted', async () => {
    rds.on(DescribeDBInstancesCommand).resolves({ DBInstances: [{ DBInstanceStatus: 'incompatible-restore' }] });
    rds.on(DeleteDBInstanceCommand).rejectsOnce(throttled()).resolves({});

    const { error } = await execute();

    expect(error).toBeInstanceOf(ExecutionError);
    expect((error?.cause as Error).name).toBe('RestoreTestErrored');
    expect(error?.message).toMatch(/is "incompatible-restore": the point-in-time restore failed; see the RDS events of the instance$/);
    expect(rds.commandCalls(DeleteDBInstanceCommand)).toHaveLength(2);
  });

  it('fails with the error first, then the instance that may remain, when the deletion after an error is throttled past the retries', async () => {
    rds.on(DescribeDBInstancesCommand).resolves({ DBInstances: [{ DBInstanceStatus: 'incompatible-restore' }] });
    rds.on(DeleteDBInstanceCommand).rejects(throttled());

    const { error } = await execute();

    expect(error).toBeInstanceOf(ExecutionError);
    expect((error?.cause as Error).name).toBe('RestoreTestErrored');
    expect(error?.message).toMatch(/following error: temporary instance atmr-dr-restore-test-example is "incompatible-restore": the point-in-time restore failed; see the RDS events of the instance; and temporary instance/);
    expect(error?.message).toMatch(mayRemainAfter('its deletion after the error failed too'));
    expect(rds.commandCalls(DeleteDBInstanceCommand)).toHaveLength(1 + DELETE_TEMPORARY_INSTANCE_RETRY.maxAttempts);
  });

  it("leaves alone, and names, an instance another execution created: refused as today, not deleted", async () => {
    rds.on(RestoreDBInstanceToPointInTimeCommand).rejects(Object.assign(new Error('DB instance already exists'), { name: 'DBInstanceAlreadyExistsFault' }));
    rds.on(DescribeDBInstancesCommand).resolves({ DBInstances: [{ ...availableInstance(), TagList: [{ Key: EXECUTION_TAG, Value: 'previous-month-run' }] }] });

    const { error } = await execute();

    expect(error).toBeInstanceOf(ExecutionError);
    expect((error?.cause as Error).name).toBe('TemporaryInstanceNotCreated');
    expect(error?.message).toMatch(/already exists \(a previous restore test did not clean up, or one is running: created by restore-test execution previous-month-run\)/);
    expect(rds.commandCalls(DeleteDBInstanceCommand)).toHaveLength(0);
  });
});
