import { CreateDBSnapshotCommand, type DBSnapshot, DescribeDBInstancesCommand, DescribeDBSnapshotsCommand, RDSClient, type Tag } from '@aws-sdk/client-rds';
import { DeleteObjectCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { Context } from 'aws-lambda';
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { mockClient } from 'aws-sdk-client-mock';
import 'aws-sdk-client-mock-jest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { runBackup } from '../../lambdas/backup/backup';
import { snapshotIdentifier } from '../../lambdas/backup/rds';
import { loadRunnerSettings, runScheduledBackup } from '../../lambdas/backup/scheduled-run';
import { REPORTED_FAILURE_EXIT_CODE } from '../../lambdas/backup/runner-contract';
import { main, tierFromCommandLine } from '../../lambdas/backup/task';
import { createS3Client } from '../../lambdas/shared/aws';
import { OperatorError } from '../../lambdas/shared/errors';
import { backupObjectKeys, latestDatabaseTierPointerKey } from '../../lambdas/shared/s3-layout';
import { testClient, testCluster, uniqueDatabaseName } from '../support/cluster';
import { heldPgDump, truncateBeforePgDump } from '../support/held-pg-dump';
import { psql } from '../support/postgres';
import { LocalS3, startLocalS3 } from '../support/s3';
import { startConditionalS3 } from '../support/conditional-s3';
import { startRefusingS3 } from '../support/refusing-s3';
import { lambdaContext } from '../support/lambda-context';

// The Lambda adapter and the ECS task entry around the real backup core: real PostgreSQL (the
// test cluster) and the real S3 protocol (s3rver); Secrets Manager and RDS mocked at the SDK.

const PASSWORD = 'Never-Logged-7f3a9c'; // the test cluster trusts any password: it must still never be printed
const SECRET_ARN = 'arn:aws:secretsmanager:eu-west-3:111111111111:secret:rds!db-atmr-test-AbCdEf';
const secretsMock = mockClient(SecretsManagerClient);
const rdsMock = mockClient(RDSClient);

type Handler = (event: unknown, context: Context) => Promise<{ tier: string; manifestKey: string; snapshot?: string; pitrEnabled?: boolean }>;
let handler: Handler;
let s3: LocalS3;
let database: string;
const savedEnv = { ...process.env };
/** The runner's own: 15 minutes left, 2 GiB, as its function is deployed. */
const runnerContext = () => lambdaContext('atmr-dr-backup-runner', 900_000, '2048');


/** The environment the backups construct gives the runner, pointing at the test cluster and s3rver. */
function runnerEnv(): Record<string, string> {
  const cluster = testCluster();
  return {
    ...s3.env,
    BACKUP_BUCKET: s3.bucket,
    DATABASE_SECRET_ARN: SECRET_ARN,
    DATABASE_HOST: cluster.host,
    DATABASE_PORT: String(cluster.port),
    DATABASE_NAME: database,
    DATABASE_INSTANCE_IDENTIFIER: 'atmr-test',
    BACKUP_COMPRESSION_LEVEL: '1',
    SNAPSHOT_RETENTION_WEEKLY: '4',
    SNAPSHOT_RETENTION_MONTHLY: '12',
    MIN_PITR_RETENTION_DAYS: '7',
    POWERTOOLS_SERVICE_NAME: 'backup-runner',
    POWERTOOLS_METRICS_NAMESPACE: 'AtmrDr/example',
    POWERTOOLS_TRACE_ENABLED: 'false',
    POWERTOOLS_LOGGER_LOG_EVENT: 'false',
  };
}

/** Runs fn with stdout and stderr captured (Powertools logs and EMF metrics go there). */
async function captureStdout<T>(fn: () => Promise<T>): Promise<{ result?: T; error?: unknown; out: string }> {
  const chunks: string[] = [];
  const capture = (chunk: string | Uint8Array) => {
    chunks.push(String(chunk));
    return true;
  };
  const spies = [jest.spyOn(process.stdout, 'write').mockImplementation(capture), jest.spyOn(process.stderr, 'write').mockImplementation(capture)];
  try {
    return { result: await fn(), out: chunks.join('') };
  } catch (error) {
    return { error, out: chunks.join('') };
  } finally {
    for (const spy of spies) spy.mockRestore();
  }
}

/**
 * RDS as it answers CreateDBSnapshot: a second snapshot of one name is refused
 * (DBSnapshotAlreadyExistsFault), and DescribeDBSnapshots of that name shows the one taken.
 */
function refuseSecondSnapshotOfAName(): void {
  const taken = new Map<string, DBSnapshot>();
  rdsMock.on(CreateDBSnapshotCommand).callsFake((input: { DBSnapshotIdentifier: string; DBInstanceIdentifier: string; Tags: Tag[] }) => {
    if (taken.has(input.DBSnapshotIdentifier)) throw Object.assign(new Error('DBSnapshot already exists'), { name: 'DBSnapshotAlreadyExistsFault' });
    taken.set(input.DBSnapshotIdentifier, { DBSnapshotIdentifier: input.DBSnapshotIdentifier, DBInstanceIdentifier: input.DBInstanceIdentifier, TagList: input.Tags, SnapshotType: 'manual', Status: 'creating' });
    return {};
  });
  rdsMock.on(DescribeDBSnapshotsCommand).callsFake((input: { DBSnapshotIdentifier?: string }) => {
    if (input.DBSnapshotIdentifier === undefined) return { DBSnapshots: [] };
    const snapshot = taken.get(input.DBSnapshotIdentifier);
    if (!snapshot) throw Object.assign(new Error('DBSnapshot not found'), { name: 'DBSnapshotNotFoundFault' });
    return { DBSnapshots: [snapshot] };
  });
}

function emfDocs(out: string): Record<string, unknown>[] {
  return out
    .split('\n')
    .filter((l) => l.includes('"_aws"'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** The dimension set of a metric in EMF output, as the alarms must name it. */
function dimensionsOf(docs: Record<string, unknown>[], metric: string): Record<string, unknown> | undefined {
  const doc = docs.find((d) => metric in d);
  if (!doc) return undefined;
  const [names] = (doc._aws as { CloudWatchMetrics: { Dimensions: string[][] }[] }).CloudWatchMetrics[0].Dimensions;
  return Object.fromEntries(names.map((n) => [n, doc[n]]));
}

async function listKeys(): Promise<string[]> {
  const out = await createS3Client(s3.env).send(new ListObjectsV2Command({ Bucket: s3.bucket }));
  return (out.Contents ?? []).map((o) => o.Key as string).sort();
}

beforeAll(async () => {
  s3 = await startLocalS3('atmr-dr-runner-test');
  database = uniqueDatabaseName('runner');
  const cluster = testCluster();
  psql(cluster, 'postgres', `CREATE DATABASE ${database};`);
  psql(cluster, database, `CREATE TABLE company (id serial PRIMARY KEY, name text NOT NULL); INSERT INTO company (name) VALUES ('ATMR'), ('Acme');`);
  Object.assign(process.env, runnerEnv());
  ({ handler } = (await import('../../lambdas/backup/handler')) as unknown as { handler: Handler });
});

afterAll(async () => {
  await s3.stop();
  psql(testCluster(), 'postgres', `DROP DATABASE IF EXISTS ${database};`);
  for (const key of Object.keys(process.env)) if (!(key in savedEnv)) delete process.env[key];
  Object.assign(process.env, savedEnv);
});

beforeEach(() => {
  secretsMock.reset();
  rdsMock.reset();
  secretsMock.on(GetSecretValueCommand, { SecretId: SECRET_ARN }).resolves({ SecretString: JSON.stringify({ username: testCluster().user, password: PASSWORD }) });
  // A healthy instance: PITR on, its point a minute behind (no PITR warning in the runs' logs).
  rdsMock.on(DescribeDBInstancesCommand).callsFake(() => ({ DBInstances: [{ DBInstanceIdentifier: 'atmr-test', BackupRetentionPeriod: 7, LatestRestorableTime: new Date(Date.now() - 60_000) }] }));
  Object.assign(process.env, runnerEnv());
});


/**
 * Waits into the next second of the clock (each test's scheduled time is a second of its own, after
 * the backups of the tests before). 20 ms past the boundary: a timer may fire a millisecond before
 * Date.now() reaches it, and the "next" second would then be the one a test before used.
 */
function nextSecond(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 1000 - (Date.now() % 1000) + 20));
}

describe('backup runner handler: event validation', () => {
  it.each([
    [{ tier: 'yearly' }, '"yearly"'],
    [{}, '(none)'],
    [null, '(none)'],
  ])('rejects %j with one line naming the valid tiers, touching nothing', async (event, shown) => {
    const before = await listKeys();

    const { error } = await captureStdout(() => handler(event, runnerContext()));

    expect(error).toBeInstanceOf(OperatorError);
    expect((error as Error).message).toBe(`backup event: invalid backup tier ${shown}: use one of hourly, daily, weekly, monthly`);
    expect(await listKeys()).toEqual(before);
    expect(secretsMock).not.toHaveReceivedCommand(GetSecretValueCommand);
    expect(rdsMock.calls()).toHaveLength(0);
  });

  it.each([['yesterday', '"yesterday"'], ['2026-13-01T02:00:00Z', '"2026-13-01T02:00:00Z"'], ['2026-12-01T02:00:00+01:00', '"2026-12-01T02:00:00+01:00"'], [1764554400000, '1764554400000'], [null, 'null']])(
    'refuses the scheduled time %j with one line naming the format, touching nothing',
    async (scheduledTime, shown) => {
      const before = await listKeys();

      const { error } = await captureStdout(() => handler({ tier: 'daily', scheduledTime }, runnerContext()));

      expect(error).toBeInstanceOf(OperatorError);
      expect((error as Error).message).toBe(
        `backup event: scheduledTime: invalid time ${shown}: give an ISO 8601 UTC time such as 2026-12-01T02:00:00Z (the schedules pass <aws.scheduler.scheduled-time>)`,
      );
      expect(await listKeys()).toEqual(before);
      expect(secretsMock).not.toHaveReceivedCommand(GetSecretValueCommand);
      expect(rdsMock.calls()).toHaveLength(0);
    },
  );

  it('fails with one line naming a missing setting (a deployment defect), touching nothing', async () => {
    delete process.env.DATABASE_HOST;
    const before = await listKeys();

    const { error } = await captureStdout(() => handler({ tier: 'hourly' }, runnerContext()));

    expect((error as Error).message).toBe('runner environment: DATABASE_HOST is not set; it is set by the backups construct: redeploy the stack');
    expect(await listKeys()).toEqual(before);
  });
});

describe('backup runner handler: scheduled runs', () => {
  it('hourly: backs up with the secret read at run time, publishes the manifest, checks PITR, never prints the password', async () => {
    const { result, error, out } = await captureStdout(() => handler({ tier: 'hourly' }, runnerContext()));

    expect(error).toBeUndefined();
    expect(result).toMatchObject({ tier: 'hourly', manifestKey: expect.stringMatching(new RegExp(`^hourly/${database}_backup_\\d{8}_\\d{6}\\.manifest\\.json$`)), pitrEnabled: true });
    const keys = await listKeys();
    expect(keys).toEqual(expect.arrayContaining([result!.manifestKey, 'latest.json', 'latest/hourly.json']));
    const manifest = JSON.parse(
      (await (await createS3Client(s3.env).send(new GetObjectCommand({ Bucket: s3.bucket, Key: result!.manifestKey }))).Body!.transformToString()) as string,
    ) as { tables: { name: string; rows: number }[] };
    expect(manifest.tables).toContainEqual(expect.objectContaining({ name: 'company', rows: 2 }));
    expect(secretsMock).toHaveReceivedCommandWith(GetSecretValueCommand, { SecretId: SECRET_ARN });
    expect(rdsMock).not.toHaveReceivedCommand(CreateDBSnapshotCommand);
    expect(out).not.toContain(PASSWORD);
    expect(JSON.stringify(result)).not.toContain(PASSWORD);
  });

  it('emits the metrics with exactly the dimensions the alarms read', async () => {
    const { out } = await captureStdout(() => handler({ tier: 'hourly' }, runnerContext()));
    const docs = emfDocs(out);

    expect(dimensionsOf(docs, 'BackupSuccess')).toEqual({ service: 'backup-runner', Tier: 'hourly' });
    expect(dimensionsOf(docs, 'PitrEnabled')).toEqual({ service: 'backup-runner', DBInstanceIdentifier: 'atmr-test' });
    expect(dimensionsOf(docs, 'LatestBackupAgeSeconds')).toEqual({ service: 'backup-runner' });
    expect(docs.find((d) => 'LatestBackupAgeSeconds' in d)?.LatestBackupAgeSeconds).toBeLessThan(120);
    expect(dimensionsOf(docs, 'ScheduledRunFailure')).toBeUndefined();
  });

  it('reports the age of each tier\'s newest good backup on every run, so that the hourly runs see a daily, weekly or monthly tier that stopped', async () => {
    // A daily tier whose last good backup finished 30 hours ago (its schedule disabled, or its
    // Fargate task never started since): a manifest and the database's daily pointer, as the core writes them.
    const client = createS3Client(s3.env);
    const hourly = await captureStdout(() => handler({ tier: 'hourly' }, runnerContext()));
    const text = await (await client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: hourly.result!.manifestKey }))).Body!.transformToString();
    const startedAt = new Date(Date.now() - 30 * 3600_000);
    const daily = backupObjectKeys('daily', database, startedAt).manifest;
    const manifest = { ...JSON.parse(text), tier: 'daily', startedAt: startedAt.toISOString(), finishedAt: new Date(startedAt.getTime() + 60_000).toISOString() };
    await client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: daily, Body: JSON.stringify(manifest) }));
    await client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: latestDatabaseTierPointerKey(database, 'daily'), Body: JSON.stringify({ manifest: daily }) }));

    const { error, out } = await captureStdout(() => handler({ tier: 'hourly' }, runnerContext()));

    expect(error).toBeUndefined();
    const ages = Object.fromEntries(
      emfDocs(out)
        .filter((d) => 'LatestBackupAgeSeconds' in d && 'Tier' in d)
        .map((d) => [d.Tier as string, { age: d.LatestBackupAgeSeconds as number, dimensions: (d._aws as { CloudWatchMetrics: { Dimensions: string[][] }[] }).CloudWatchMetrics[0].Dimensions[0].slice().sort() }]),
    );
    expect(ages.daily.dimensions).toEqual(['Tier', 'service']);
    expect(ages.daily.age).toBeGreaterThan(30 * 3600 - 120);
    expect(ages.daily.age).toBeLessThan(30 * 3600);
    expect(ages.hourly.age).toBeLessThan(120);
    // A tier with no backup yet (no pointer) reports the time since its age baseline, written by
    // the first run of this bucket that found none: a tier that never succeeds pages too.
    expect(ages.monthly.dimensions).toEqual(['Tier', 'service']);
    expect(ages.monthly.age).toBeLessThan(120);
  });

  it("reports no age for a tier whose newest backup is dated ahead of now (a machine whose clock ran fast), naming it, so that the tier's alarm pages instead of reading 0", async () => {
    // A monthly backup stamped and finished a year ahead, and the database's monthly pointer on it.
    const client = createS3Client(s3.env);
    const hourly = await captureStdout(() => handler({ tier: 'hourly' }, runnerContext()));
    const text = await (await client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: hourly.result!.manifestKey }))).Body!.transformToString();
    const startedAt = new Date(Date.now() + 365 * 86_400_000);
    const ahead = backupObjectKeys('monthly', database, startedAt).manifest;
    const manifest = { ...JSON.parse(text), tier: 'monthly', startedAt: startedAt.toISOString(), finishedAt: new Date(startedAt.getTime() + 60_000).toISOString() };
    const pointerKey = latestDatabaseTierPointerKey(database, 'monthly');
    await client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: ahead, Body: JSON.stringify(manifest) }));
    await client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: pointerKey, Body: JSON.stringify({ manifest: ahead }) }));

    try {
      const { error, out } = await captureStdout(() => handler({ tier: 'hourly' }, runnerContext()));

      expect(error).toBeUndefined();
      const tiers = emfDocs(out)
        .filter((d) => 'LatestBackupAgeSeconds' in d && 'Tier' in d)
        .map((d) => d.Tier);
      expect(tiers.sort()).toEqual(['daily', 'hourly', 'weekly']);
      const warnings = out
        .split('\n')
        .filter((l) => l.includes('"level":"WARN"'))
        .map((l) => JSON.parse(l) as { message: string; tier?: string; error?: string });
      expect(warnings).toContainEqual(
        expect.objectContaining({
          tier: 'monthly',
          error: expect.stringMatching(new RegExp(`^${ahead} is dated \\S+, 3153\\d{4} s ahead of now: written by a machine whose clock ran fast`)),
        }),
      );
    } finally {
      await client.send(new DeleteObjectCommand({ Bucket: s3.bucket, Key: pointerKey }));
    }
  });

  it('with IAM database authentication: signs a token instead of reading the secret, and never prints it', async () => {
    delete process.env.DATABASE_SECRET_ARN;
    process.env.DATABASE_IAM_AUTH_USER = testCluster().user;
    process.env.PGSSLMODE = 'disable'; // the test cluster has no TLS; in the image PGSSLMODE is verify-full

    try {
      const { result, error, out } = await captureStdout(() => handler({ tier: 'hourly' }, runnerContext()));

      expect(error).toBeUndefined();
      expect(result?.manifestKey).toMatch(/^hourly\//);
      expect(secretsMock).not.toHaveReceivedCommand(GetSecretValueCommand);
      expect(out).not.toMatch(/X-Amz-Signature|X-Amz-Credential/);
    } finally {
      delete process.env.DATABASE_IAM_AUTH_USER;
      delete process.env.PGSSLMODE;
    }
  });

  it('weekly: also takes the tagged RDS snapshot and prunes', async () => {
    rdsMock.on(CreateDBSnapshotCommand).resolves({});
    rdsMock.on(DescribeDBSnapshotsCommand).resolves({ DBSnapshots: [] });

    const { result, error } = await captureStdout(() => handler({ tier: 'weekly' }, runnerContext()));

    expect(error).toBeUndefined();
    expect(result?.snapshot).toMatch(/^atmr-dr-weekly-atmr-test-\d{8}-\d{6}$/);
    expect(rdsMock).toHaveReceivedCommandWith(CreateDBSnapshotCommand, { DBInstanceIdentifier: 'atmr-test', DBSnapshotIdentifier: result!.snapshot });
    expect(result?.manifestKey).toMatch(/^weekly\//);
  });

  it('fails the invocation when the secret cannot be read: no new manifest, pointers untouched, failure metric, PITR still checked', async () => {
    secretsMock.on(GetSecretValueCommand).rejects(Object.assign(new Error('denied'), { name: 'AccessDeniedException' }));
    const pointer = async () =>
      createS3Client(s3.env)
        .send(new GetObjectCommand({ Bucket: s3.bucket, Key: 'latest.json' }))
        .then((out) => out.Body!.transformToString())
        .catch((error: { name?: string }) => (error.name === 'NoSuchKey' ? null : Promise.reject(error)));
    const keysBefore = await listKeys();
    const pointerBefore = await pointer();

    const { error, out } = await captureStdout(() => handler({ tier: 'daily' }, runnerContext()));

    expect(error).toBeInstanceOf(OperatorError);
    expect((error as Error).message).toMatch(/^daily backup run failed: backup: cannot read database secret arn:aws:secretsmanager:.*AccessDeniedException/);
    expect((error as Error).message).not.toContain('\n');
    expect(await listKeys()).toEqual(keysBefore);
    expect(await pointer()).toBe(pointerBefore);
    const docs = emfDocs(out);
    expect(dimensionsOf(docs, 'ScheduledRunFailure')).toEqual({ service: 'backup-runner' });
    expect(dimensionsOf(docs, 'PitrEnabled')).toBeDefined();
    expect(rdsMock).toHaveReceivedCommand(DescribeDBInstancesCommand);
  });

  it('the weekly run delivered twice, both started in the same second: one publishes, the other ends well with one line; both ask for the snapshot named after that second, and the one told it exists says it is taken; no failure reported', async () => {
    // Arrange: S3 with real first-writer-wins writes; RDS refuses a second snapshot of one name, as it does
    const conditional = await startConditionalS3(s3);
    refuseSecondSnapshotOfAName();
    // The next second: the weekly test above may have published a backup in this one.
    const start = new Date(Math.floor(Date.now() / 1000) * 1000 + 1000);
    // Both runs check the manifest key before either writes (the dump of this small database is
    // over in a moment): each tier write waits for the second run's key check.
    const client = createS3Client(conditional.env);
    let checked = 0;
    let bothChecked = (): void => undefined;
    const checks = new Promise<void>((resolve) => (bothChecked = resolve));
    client.middlewareStack.add(
      (next, context) => async (args) => {
        const key = (args.input as { Key?: string }).Key ?? '';
        if (context.commandName === 'GetObjectCommand' && key.endsWith('.manifest.json') && ++checked === 2) bothChecked();
        if (['PutObjectCommand', 'CompleteMultipartUploadCommand'].includes(String(context.commandName)) && key.startsWith('weekly/')) await checks;
        return next(args);
      },
      { step: 'initialize', name: 'bothRunsCheckFirst' },
    );
    const run = () =>
      runScheduledBackup(
        {
          settings: loadRunnerSettings(runnerEnv()),
          s3: client,
          rds: new RDSClient({ region: 'eu-west-3' }),
          secretsManager: new SecretsManagerClient({ region: 'eu-west-3' }),
          metrics: new Metrics({ namespace: 'AtmrDr/example', serviceName: 'backup-runner' }),
          logger: new Logger({ serviceName: 'backup-runner' }),
          now: () => start,
        },
        'weekly',
      );

    try {
      // Act
      const { result, error, out } = await captureStdout(() => Promise.all([run(), run()]));

      // Assert
      expect(error).toBeUndefined();
      const manifestKey = backupObjectKeys('weekly', database, start).manifest;
      expect(result?.map((r) => r.manifestKey)).toEqual([manifestKey, manifestKey]);
      const snapshot = snapshotIdentifier('weekly', 'atmr-test', start);
      expect(result?.map((r) => r.snapshot?.created)).toEqual([snapshot, snapshot]);
      expect(result?.map((r) => r.snapshot?.alreadyTaken).sort()).toEqual([true, undefined]);
      expect(out.split('\n').filter((l) => l.includes(`snapshot ${snapshot} already taken (another run of this second took it)`))).toHaveLength(1);
      const said = out.split('\n').filter((l) => l.includes('another run of the'));
      expect(said).toHaveLength(1);
      expect((JSON.parse(said[0]) as { message: string }).message).toBe(`another run of the weekly backup took ${start.toISOString().replace('.000Z', 'Z')} (${manifestKey}); nothing to do`);
      expect(dimensionsOf(emfDocs(out), 'ScheduledRunFailure')).toBeUndefined();
      expect(dimensionsOf(emfDocs(out), 'BackupFailure')).toBeUndefined();
    } finally {
      await conditional.stop();
    }
  });

  it('a scheduled weekly run that loses its second to a manual weekly backup (which takes no snapshot) still takes the snapshot of that second', async () => {
    // Arrange: S3 with real first-writer-wins writes. The scheduled run checks its key first, then
    // its writes wait for the manual run's manifest; the manual run's writes wait for that check.
    const conditional = await startConditionalS3(s3);
    refuseSecondSnapshotOfAName();
    // A second of its own (the tests above take seconds around now).
    const start = new Date('2026-09-06T02:00:00.000Z');
    const keys = backupObjectKeys('weekly', database, start);
    let checked = (): void => undefined;
    const scheduledChecked = new Promise<void>((resolve) => (checked = resolve));
    let published = (): void => undefined;
    const manualPublished = new Promise<void>((resolve) => (published = resolve));
    const isTierWrite = (command: string, key: string): boolean => ['PutObjectCommand', 'CompleteMultipartUploadCommand'].includes(command) && key.startsWith('weekly/');
    const scheduledClient = createS3Client(conditional.env);
    scheduledClient.middlewareStack.add(
      (next, context) => async (args) => {
        const key = (args.input as { Key?: string }).Key ?? '';
        if (isTierWrite(String(context.commandName), key)) await manualPublished;
        try {
          return await next(args);
        } finally {
          // Answered, found or not (NoSuchKey is thrown): the key check is over.
          if (context.commandName === 'GetObjectCommand' && key === keys.manifest) checked();
        }
      },
      { step: 'initialize', name: 'afterTheManualRun' },
    );
    const manualClient = createS3Client(conditional.env);
    manualClient.middlewareStack.add(
      (next, context) => async (args) => {
        const key = (args.input as { Key?: string }).Key ?? '';
        if (isTierWrite(String(context.commandName), key)) await scheduledChecked;
        const answer = await next(args);
        if (context.commandName === 'PutObjectCommand' && key === keys.manifest) published();
        return answer;
      },
      { step: 'initialize', name: 'afterTheScheduledCheck' },
    );
    const cluster = testCluster();

    try {
      // Act
      const { result, error, out } = await captureStdout(() =>
        Promise.all([
          runScheduledBackup(
            {
              settings: loadRunnerSettings(runnerEnv()),
              s3: scheduledClient,
              rds: new RDSClient({ region: 'eu-west-3' }),
              secretsManager: new SecretsManagerClient({ region: 'eu-west-3' }),
              logger: new Logger({ serviceName: 'backup-runner' }),
              now: () => start,
            },
            'weekly',
          ),
          runBackup({ s3: manualClient, bucket: s3.bucket, connection: { host: cluster.host, port: cluster.port, user: cluster.user, database }, now: () => start }, { tier: 'weekly' }),
        ]),
      );

      // Assert: the scheduled run lost the second, and took the week's snapshot, named after it
      expect(error).toBeUndefined();
      expect(result?.[1].skipped).toBeUndefined();
      expect(out).toContain(`another run of the weekly backup took ${start.toISOString().replace('.000Z', 'Z')} (${keys.manifest}); nothing to do`);
      expect(result?.[0].snapshot).toEqual({ created: snapshotIdentifier('weekly', 'atmr-test', start), deleted: [] });
      expect(rdsMock).toHaveReceivedCommandWith(CreateDBSnapshotCommand, { DBInstanceIdentifier: 'atmr-test', DBSnapshotIdentifier: snapshotIdentifier('weekly', 'atmr-test', start) });
    } finally {
      await conditional.stop();
    }
  });

  it('fails the invocation when the RDS side fails even though the dump succeeded', async () => {
    rdsMock.on(DescribeDBInstancesCommand).rejects(Object.assign(new Error('no such instance'), { name: 'DBInstanceNotFoundFault' }));

    const { error } = await captureStdout(() => handler({ tier: 'hourly' }, runnerContext()));

    expect((error as Error).message).toMatch(/^hourly backup run failed: rds: cannot describe RDS instance atmr-test: DBInstanceNotFoundFault: .*database\.instanceIdentifier/);
  });
});

describe('backup runner: a scheduled run delivered again after its other delivery published (Scheduler delivers at least once)', () => {
  // A database of its own: the tests above publish backups of every tier, at seconds around now.
  let own: string;
  beforeAll(() => {
    own = uniqueDatabaseName('runner_again');
    psql(testCluster(), 'postgres', `CREATE DATABASE ${own};`);
    psql(testCluster(), own, 'CREATE TABLE t (id int); INSERT INTO t VALUES (1);');
  });
  afterAll(() => psql(testCluster(), 'postgres', `DROP DATABASE IF EXISTS ${own} WITH (FORCE);`));

  const ownEnv = () => ({ ...runnerEnv(), DATABASE_NAME: own });
  const clients = () => ({ s3: createS3Client(s3.env), rds: new RDSClient({ region: 'eu-west-3' }), secretsManager: new SecretsManagerClient({ region: 'eu-west-3' }) });
  const ownManifests = async (tier: string) => {
    const out = await createS3Client(s3.env).send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: `${tier}/${own}_backup_` }));
    return (out.Contents ?? []).map((o) => o.Key as string).filter((k) => k.endsWith('.manifest.json')).sort();
  };
  /** One delivery of a daily run, on a clock stopped at `now`; its stored metrics flushed, as the entries do. */
  const delivery = (now: string, scheduledTime?: string) => {
    const metrics = new Metrics({ namespace: 'AtmrDr/example', serviceName: 'backup-runner' });
    return runScheduledBackup(
      {
        settings: loadRunnerSettings(ownEnv()),
        ...clients(),
        metrics,
        logger: new Logger({ serviceName: 'backup-runner' }),
        now: () => new Date(now),
        ...(scheduledTime !== undefined && { scheduledTime: new Date(scheduledTime) }),
      },
      'daily',
    ).finally(() => metrics.publishStoredMetrics());
  };
  const said = (out: string) => out.split('\n').filter((l) => l.includes('another run of the'));

  it('the ECS task delivered again one second after the first delivery published: ends 0 with one line naming the backup, takes no second backup, counts neither success nor failure', async () => {
    const scheduled = new Date(Math.floor(Date.now() / 1000) * 1000).toISOString().replace('.000Z', 'Z');
    const task = (lines: string[]) => main(['--tier', 'daily', '--scheduled-time', scheduled], ownEnv(), { stderr: { write: (l: string) => lines.push(l) }, clients: clients() });
    const first = await captureStdout(() => task([]));
    expect(first.result).toBe(0);
    const published = await ownManifests('daily');
    expect(published).toHaveLength(1);
    const lines: string[] = [];

    const { result, out } = await captureStdout(() => task(lines));

    expect(result).toBe(0);
    expect(lines).toEqual([]);
    expect(await ownManifests('daily')).toEqual(published);
    const [, day, time] = /_(\d{8})_(\d{6})\./.exec(published[0])!;
    const second = `${day.slice(0, 4)}-${day.slice(4, 6)}-${day.slice(6)}T${time.slice(0, 2)}:${time.slice(2, 4)}:${time.slice(4)}Z`;
    expect(said(out).map((l) => (JSON.parse(l) as { message: string }).message)).toEqual([
      `another run of the daily backup scheduled at ${scheduled} already took ${second} (${published[0]}); nothing to do`,
    ]);
    for (const metric of ['BackupSuccess', 'BackupFailure', 'ScheduledRunFailure']) expect(dimensionsOf(emfDocs(out), metric)).toBeUndefined();
  });

  it('the Lambda runner delivered again after the first delivery published (its event carries the scheduled time): ends well with one line naming the backup, takes no second backup, counts neither success nor failure', async () => {
    process.env.DATABASE_NAME = own;
    // The ECS task's test above published a daily backup of this second or the one before: this
    // run is scheduled at the next second, after it.
    await nextSecond();
    const scheduledTime = new Date(Math.floor(Date.now() / 1000) * 1000).toISOString().replace('.000Z', 'Z');
    const earlier = await ownManifests('daily');
    const first = await captureStdout(() => handler({ tier: 'daily', scheduledTime }, runnerContext()));
    expect(first.error).toBeUndefined();
    const published = (await ownManifests('daily')).filter((k) => !earlier.includes(k));
    expect(published).toEqual([first.result?.manifestKey]);

    const { result, error, out } = await captureStdout(() => handler({ tier: 'daily', scheduledTime }, runnerContext()));

    expect(error).toBeUndefined();
    expect(result?.manifestKey).toBe(published[0]);
    expect(await ownManifests('daily')).toEqual([...earlier, ...published].sort());
    const [, day, time] = /_(\d{8})_(\d{6})\./.exec(published[0])!;
    const second = `${day.slice(0, 4)}-${day.slice(4, 6)}-${day.slice(6)}T${time.slice(0, 2)}:${time.slice(2, 4)}:${time.slice(4)}Z`;
    expect(said(out).map((l) => (JSON.parse(l) as { message: string }).message)).toEqual([
      `another run of the daily backup scheduled at ${scheduledTime} already took ${second} (${published[0]}); nothing to do`,
    ]);
    for (const metric of ['BackupSuccess', 'BackupFailure', 'ScheduledRunFailure']) expect(dimensionsOf(emfDocs(out), metric)).toBeUndefined();

    // A manual invoke (the tier only) is a manual run: it backs up.
    const manual = await captureStdout(() => handler({ tier: 'daily' }, runnerContext()));

    expect(manual.error).toBeUndefined();
    expect(said(manual.out)).toEqual([]);
    expect((await ownManifests('daily')).filter((k) => !earlier.includes(k))).toEqual([...published, manual.result?.manifestKey].sort());
  });

  it('the delivery again after a first one that published everything writes no pointer again: S3 refusing those writes (500) pages for nothing', async () => {
    // A second of its own: the test before published a daily backup of this database in an earlier one.
    await nextSecond();
    const scheduled = new Date(Math.floor(Date.now() / 1000) * 1000).toISOString().replace('.000Z', 'Z');
    const first = await captureStdout(() => main(['--tier', 'daily', '--scheduled-time', scheduled], ownEnv(), { stderr: { write: () => undefined }, clients: clients() }));
    expect(first.result).toBe(0);
    const refusing = await startRefusingS3(s3, (method, url) => method === 'PUT' && url.pathname.includes('/latest'), 500, 'InternalError');
    try {
      const lines: string[] = [];
      const viaRefusing = { ...clients(), s3: createS3Client({ ...s3.env, AWS_ENDPOINT_URL_S3: refusing.endpoint }) };

      const { result, out } = await captureStdout(() => main(['--tier', 'daily', '--scheduled-time', scheduled], ownEnv(), { stderr: { write: (l: string) => lines.push(l) }, clients: viaRefusing }));

      expect(result).toBe(0);
      expect(lines).toEqual([]);
      expect(said(out)).toHaveLength(1);
      for (const metric of ['BackupSuccess', 'BackupFailure', 'ScheduledRunFailure']) expect(dimensionsOf(emfDocs(out), metric)).toBeUndefined();
    } finally {
      await refusing.stop();
    }
  });

  it("a first delivery that wrote the database's tier pointer and then failed on the next: the delivery again, failing on that one too, says the tier pointer names the backup, not that no pointer was updated", async () => {
    await nextSecond();
    const scheduled = new Date(Math.floor(Date.now() / 1000) * 1000).toISOString().replace('.000Z', 'Z');
    const refused = `latest/${own}.json`;
    const refusing = await startRefusingS3(s3, (method, url) => method === 'PUT' && decodeURIComponent(url.pathname) === `/${s3.bucket}/${refused}`, 403, 'AccessDenied');
    try {
      const viaRefusing = () => ({ ...clients(), s3: createS3Client({ ...s3.env, AWS_ENDPOINT_URL_S3: refusing.endpoint }) });
      const delivered = async () => {
        const lines: string[] = [];
        const { result } = await captureStdout(() => main(['--tier', 'daily', '--scheduled-time', scheduled], ownEnv(), { stderr: { write: (l: string) => lines.push(l) }, clients: viaRefusing() }));
        return { result, lines };
      };
      const first = await delivered();
      expect(first.result).not.toBe(0);

      const again = await delivered();

      expect(again.result).not.toBe(0);
      expect(again.lines.join('')).toMatch(new RegExp(`is complete but latest/${own}/daily\\.json names it now, latest/${own}\\.json, latest/daily\\.json, latest\\.json were not updated: `));
    } finally {
      await refusing.stop();
    }
  });

  it('a run scheduled just before midnight UTC whose first delivery took a second after it: the next delivery finds that backup on the next day and has nothing to do', async () => {
    const first = await captureStdout(() => delivery('2026-09-08T00:00:01.000Z', '2026-09-07T23:59:59Z'));
    expect(first.error).toBeUndefined();
    const published = backupObjectKeys('daily', own, new Date('2026-09-08T00:00:01Z')).manifest;

    const { result, error, out } = await captureStdout(() => delivery('2026-09-08T00:00:40.000Z', '2026-09-07T23:59:59Z'));

    expect(error).toBeUndefined();
    expect(result?.manifestKey).toBe(published);
    expect(said(out).map((l) => (JSON.parse(l) as { message: string }).message)).toEqual([
      `another run of the daily backup scheduled at 2026-09-07T23:59:59Z already took 2026-09-08T00:00:01Z (${published}); nothing to do`,
    ]);
    expect((await ownManifests('daily')).filter((k) => k.includes('_20260908_'))).toEqual([published]);
    for (const metric of ['BackupSuccess', 'BackupFailure', 'ScheduledRunFailure']) expect(dimensionsOf(emfDocs(out), metric)).toBeUndefined();
  });

  it("neither yesterday's backup (older than the scheduled time) nor one stamped a year ahead (a fast clock's) stops a scheduled run", async () => {
    const yesterday = await captureStdout(() => delivery('2026-10-11T23:59:59.000Z', '2026-10-11T23:59:58Z'));
    expect(yesterday.error).toBeUndefined();
    const text = await (await createS3Client(s3.env).send(new GetObjectCommand({ Bucket: s3.bucket, Key: yesterday.result!.manifestKey }))).Body!.transformToString();
    const ahead = backupObjectKeys('daily', own, new Date('2027-10-12T00:00:05Z')).manifest;
    await createS3Client(s3.env).send(new PutObjectCommand({ Bucket: s3.bucket, Key: ahead, Body: text }));

    const { result, error, out } = await captureStdout(() => delivery('2026-10-12T00:00:02.000Z', '2026-10-12T00:00:00Z'));

    expect(error).toBeUndefined();
    expect(result?.manifestKey).toBe(backupObjectKeys('daily', own, new Date('2026-10-12T00:00:02Z')).manifest);
    expect(said(out)).toEqual([]);
    expect(dimensionsOf(emfDocs(out), 'BackupSuccess')).toEqual({ service: 'backup-runner', Tier: 'daily' });
  });

  it('a manual run (no scheduled time) still backs up after a scheduled one published', async () => {
    const scheduledRun = await captureStdout(() => delivery('2026-11-02T02:00:03.000Z', '2026-11-02T02:00:00Z'));
    expect(scheduledRun.error).toBeUndefined();

    const { result, error, out } = await captureStdout(() => delivery('2026-11-02T02:00:30.000Z'));

    expect(error).toBeUndefined();
    expect(result?.manifestKey).toBe(backupObjectKeys('daily', own, new Date('2026-11-02T02:00:30Z')).manifest);
    expect(said(out)).toEqual([]);
    expect((await ownManifests('daily')).filter((k) => k.includes('_20261102_'))).toHaveLength(2);
  });

  /** A published daily manifest's text, stored again under the daily key of `second` (no .dump, no pointer), as another delivery left it. */
  const publishedAt = async (second: string, edit: (manifest: Record<string, unknown>) => unknown = (m) => m) => {
    const source = (await ownManifests('daily'))[0];
    const text = await (await createS3Client(s3.env).send(new GetObjectCommand({ Bucket: s3.bucket, Key: source }))).Body!.transformToString();
    const key = backupObjectKeys('daily', own, new Date(second)).manifest;
    await createS3Client(s3.env).send(new PutObjectCommand({ Bucket: s3.bucket, Key: key, Body: JSON.stringify(edit(JSON.parse(text) as Record<string, unknown>)) }));
    return key;
  };
  const pointerOf = async () =>
    JSON.parse(await (await createS3Client(s3.env).send(new GetObjectCommand({ Bucket: s3.bucket, Key: latestDatabaseTierPointerKey(own, 'daily') }))).Body!.transformToString()) as { manifest: string };

  it("a delivery that finds the other delivery's backup, published but its latest pointers never written (that run failed after its manifest), points latest at it", async () => {
    const other = await publishedAt('2027-01-05T01:00:40Z');
    expect((await pointerOf()).manifest).not.toBe(other);

    const { result, error, out } = await captureStdout(() => delivery('2027-01-05T01:01:30.000Z', '2027-01-05T01:00:00Z'));

    expect(error).toBeUndefined();
    expect(result?.manifestKey).toBe(other);
    expect(said(out)).toHaveLength(1);
    expect((await pointerOf()).manifest).toBe(other);
  });

  it.each([
    ['a manifest without the .sql.gz this run takes (a manual --formats custom run)', '2027-02-03', (m: Record<string, unknown>) => ({ ...m, objects: (m.objects as { format: string }[]).filter((o) => o.format === 'custom') })],
    ['a manifest that does not parse as one', '2027-02-04', () => ({ schema: 1 })],
  ])('%s stamped after the scheduled time does not stop the scheduled run', async (_what, day, edit) => {
    await publishedAt(`${day}T01:00:10Z`, edit);

    const { result, error, out } = await captureStdout(() => delivery(`${day}T01:00:20.000Z`, `${day}T01:00:00Z`));

    expect(error).toBeUndefined();
    expect(result?.manifestKey).toBe(backupObjectKeys('daily', own, new Date(`${day}T01:00:20Z`)).manifest);
    expect(said(out)).toEqual([]);
  });
});

describe('runner settings', () => {
  it('requires a secret or an IAM auth user', () => {
    const env = { ...runnerEnv(), DATABASE_SECRET_ARN: '' };

    expect(() => loadRunnerSettings(env)).toThrow(/^runner environment: neither DATABASE_SECRET_ARN nor DATABASE_IAM_AUTH_USER is set/);
  });

  it('rejects a malformed number, naming the variable', () => {
    expect(() => loadRunnerSettings({ ...runnerEnv(), SNAPSHOT_RETENTION_WEEKLY: 'four' })).toThrow(/^runner environment: SNAPSHOT_RETENTION_WEEKLY is invalid \("four": .*\); it is set by the backups construct/);
  });

  it('reads the settings the construct sets', () => {
    expect(loadRunnerSettings({ ...runnerEnv(), SNAPSHOT_RETENTION_MONTHLY: '6', BACKUP_PART_SIZE_MIB: '16' })).toMatchObject({
      bucket: 'atmr-dr-runner-test',
      secretArn: SECRET_ARN,
      instanceIdentifier: 'atmr-test',
      compressionLevel: 1,
      partSizeMiB: 16,
      snapshotRetention: { weekly: 4, monthly: 6 },
      minPitrRetentionDays: 7,
    });
  });
});

describe('ECS task entry (task.ts)', () => {
  it.each([
    [['--tier', 'monthly'], {}, 'monthly'],
    [['--tier=daily'], {}, 'daily'],
    [[], { BACKUP_TIER: 'weekly' }, 'weekly'],
    [['--tier', 'hourly'], { BACKUP_TIER: 'weekly' }, 'hourly'],
  ])('takes the tier from %j / %j', (argv, env, tier) => {
    expect(tierFromCommandLine(argv, env)).toBe(tier);
  });

  it('exits 2 with one stderr line on a bad or missing tier', async () => {
    const lines: string[] = [];
    const io = { stderr: { write: (l: string) => lines.push(l) } };

    const bad = await captureStdout(() => main(['--tier', 'yearly'], runnerEnv(), io));
    const missing = await captureStdout(() => main([], runnerEnv(), io));

    expect([bad.result, missing.result]).toEqual([2, 2]);
    expect(lines).toEqual([
      'atmr-dr backup task: --tier: invalid backup tier "yearly": use one of hourly, daily, weekly, monthly\n',
      'atmr-dr backup task: no backup tier: pass --tier hourly|daily|weekly|monthly or set BACKUP_TIER\n',
    ]);
  });

  it('runs the same scheduled backup as the handler, exits 0 and flushes its metrics', async () => {
    const lines: string[] = [];
    const clients = { s3: createS3Client(s3.env), rds: new RDSClient({ region: 'eu-west-3' }), secretsManager: new SecretsManagerClient({ region: 'eu-west-3' }) };

    const { result, out } = await captureStdout(() => main(['--tier', 'daily'], runnerEnv(), { stderr: { write: (l: string) => lines.push(l) }, clients }));

    expect(lines).toEqual([]);
    expect(result).toBe(0);
    expect((await listKeys()).some((k) => k.startsWith('daily/') && k.endsWith('.manifest.json'))).toBe(true);
    expect(dimensionsOf(emfDocs(out), 'BackupSuccess')).toEqual({ service: 'backup-runner', Tier: 'daily' });
    expect(out).not.toContain(PASSWORD);
  });

  it("logs one warning naming the statement when it takes a new snapshot for the application's TRUNCATE caught between its locks and pg_dump's", async () => {
    // Arrange: a database of its own, pg_dump held at each start, the application's session
    const standoff = uniqueDatabaseName('runner_standoff');
    const cluster = testCluster();
    psql(cluster, 'postgres', `CREATE DATABASE ${standoff};`);
    psql(cluster, standoff, 'CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 100);');
    const dir = heldPgDump(fs.mkdtempSync(path.join(os.tmpdir(), 'atmr-dr-runner-')));
    const connect = async (applicationName: string) => {
      const client = testClient({ host: cluster.host, port: cluster.port, user: cluster.user, database: standoff, application_name: applicationName });
      await client.connect();
      return client;
    };
    const [app, watcher] = [await connect('app'), await connect('watcher')];
    const lines: string[] = [];
    const clients = { s3: createS3Client(s3.env), rds: new RDSClient({ region: 'eu-west-3' }), secretsManager: new SecretsManagerClient({ region: 'eu-west-3' }) };
    try {
      fs.writeFileSync(path.join(dir, 'go-2'), '');

      // Act: the application truncates t once the first attempt's snapshot holds it
      const task = captureStdout(() => main(['--tier', 'hourly'], { ...runnerEnv(), DATABASE_NAME: standoff }, { stderr: { write: (l: string) => lines.push(l) }, clients, pgBinDir: dir }));
      await truncateBeforePgDump(dir, 1, app, watcher);
      const { result, out } = await task;

      // Assert: the second attempt published, and the log says why there was one
      expect(lines).toEqual([]);
      expect(result).toBe(0);
      const warnings = out
        .split('\n')
        .filter((l) => l.startsWith('{') && !l.includes('"_aws"'))
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .filter((doc) => doc.level === 'WARN');
      expect(warnings).toEqual([
        expect.objectContaining({
          message: expect.stringMatching(
            /^backup: pg_dump's lock on public\.t queued behind pid \d+ \(TRUNCATE t\), which waits for this run's own lock on it: ended this attempt so that it can run; starting again \(attempt 2 of 3\)$/,
          ),
          tier: 'hourly',
        }),
      ]);
    } finally {
      await Promise.all([app.end(), watcher.end()]);
      psql(cluster, 'postgres', `DROP DATABASE IF EXISTS ${standoff} WITH (FORCE);`);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  // A run Scheduler starts late (RunTask retried, Fargate capacity, image pull) gets the rest of its
  // limit counted from its scheduled time: 31 s left here (the least it starts with), so it is
  // stopped after 1 s, as the 2 s one, and given up on at its limit.
  const SCHEDULED = '2026-12-01T02:00:00.000Z';
  const LATE_START = Date.parse(SCHEDULED) + 3269_000;
  it.each([
    ['its deadline', '2', [], undefined, `time limit reached: stopped 30 s before the task's limit of 2 s; raise backups.fargateTimeoutMinutes in cdk.json (55 at most) or give the task more CPU (backups.fargateCpu) if the dump needs longer`],
    ['its deadline counted from its scheduled time (started 54 min 29 s late)', '3300', ['--scheduled-time', SCHEDULED], undefined, `time limit reached: stopped 30 s before the task's limit of 55 min after its scheduled time ${SCHEDULED}; give the task more CPU (backups.fargateCpu) if the dump needs longer`],
    ['SIGTERM', '3300', [], 'task stopped (SIGTERM)', 'task stopped (SIGTERM)'],
  ])('gives up on a run that does not end within 30 s of %s (Secrets Manager never answers): exits 3 (failure reported) with one line, reports the failed run', async (_stop, limitSeconds, scheduledTime, sigterm, reason) => {
    // Arrange: a step the stop signal cannot interrupt; fake clocks stand in for the minutes.
    jest.useFakeTimers({ now: LATE_START, doNotFake: ['nextTick', 'setImmediate', 'queueMicrotask'] });
    try {
      secretsMock.on(GetSecretValueCommand).callsFake(() => new Promise(() => undefined));
      const lines: string[] = [];
      const clients = { s3: createS3Client(s3.env), rds: new RDSClient({ region: 'eu-west-3' }), secretsManager: new SecretsManagerClient({ region: 'eu-west-3' }) };
      const ecs = new AbortController();
      let exitCode: number | undefined;

      // Act
      const task = captureStdout(async () => {
        const code = await main(['--tier', 'hourly', ...scheduledTime], { ...runnerEnv(), BACKUP_TASK_TIMEOUT_SECONDS: limitSeconds }, { stderr: { write: (l: string) => lines.push(l) }, clients, signal: ecs.signal });
        exitCode = code;
        return code;
      });
      await jest.advanceTimersByTimeAsync(1_000);
      if (sigterm) ecs.abort(new Error(sigterm));
      await jest.advanceTimersByTimeAsync(29_000);
      const stillRunning29sAfterTheStop = exitCode === undefined;
      await jest.advanceTimersByTimeAsync(1_500);
      const endedAt31s = exitCode !== undefined;

      // Assert
      expect(stillRunning29sAfterTheStop).toBe(true);
      expect(endedAt31s).toBe(true);
      const { result, out } = await task;
      expect(result).toBe(REPORTED_FAILURE_EXIT_CODE);
      expect(lines).toEqual([`atmr-dr backup task: hourly backup run abandoned: still running 30 s after it was stopped (${reason})\n`]);
      expect(dimensionsOf(emfDocs(out), 'ScheduledRunFailure')).toEqual({ service: 'backup-runner' });
    } finally {
      jest.useRealTimers();
    }
  });

  it.each([
    ['2026-12-01T02:58:00.000Z', '58 min'],
    // 1 ms less than the 31 s a run needs to be stopped and end by its limit (the case above).
    ['2026-12-01T02:54:29.001Z', '54 min 29 s'],
  ])('skips a run that starts too late to end within its limit counted from its scheduled time (it could only run into the next run of its tier), at %s: exits 3 (failure reported) with one line, reports the failed run, touches nothing', async (startedAt, late) => {
    // Arrange: an hourly run scheduled at 02:00 that Scheduler delivered late; the default limit is 55 minutes.
    const keysBefore = await listKeys();
    const lines: string[] = [];
    jest.useFakeTimers({ now: Date.parse(startedAt), doNotFake: ['nextTick', 'setImmediate', 'queueMicrotask'] });
    let run: Awaited<ReturnType<typeof captureStdout<number>>>;
    try {
      // Act
      run = await captureStdout(() => main(['--tier', 'hourly', '--scheduled-time', '2026-12-01T02:00:00Z'], runnerEnv(), { stderr: { write: (l: string) => lines.push(l) } }));
    } finally {
      jest.useRealTimers();
    }

    // Assert
    const { result, out } = run;
    expect(result).toBe(REPORTED_FAILURE_EXIT_CODE);
    expect(lines).toEqual([
      `atmr-dr backup task: hourly backup run skipped: it started ${late} after its scheduled time 2026-12-01T02:00:00.000Z, too late to end within its limit of 55 min counted from then (backups.fargateTimeoutMinutes), so it could only run into the next hourly run; find why the task started late (RunTask retried by Scheduler, Fargate capacity, the image pull)\n`,
    ]);
    expect(dimensionsOf(emfDocs(out), 'ScheduledRunFailure')).toEqual({ service: 'backup-runner' });
    expect(secretsMock).not.toHaveReceivedCommand(GetSecretValueCommand);
    expect(rdsMock).not.toHaveReceivedAnyCommand();
    expect(await listKeys()).toEqual(keysBefore);
  });

  it.each([['yesterday'], ['2026-12-01 02:00'], ['2026-13-01T02:00:00Z']])('exits 2 with one line when --scheduled-time is not an ISO 8601 UTC time (%s), touching nothing', async (given) => {
    const lines: string[] = [];

    const { result } = await captureStdout(() => main(['--tier', 'hourly', '--scheduled-time', given], runnerEnv(), { stderr: { write: (l: string) => lines.push(l) } }));

    expect(result).toBe(2);
    expect(lines).toEqual([
      `atmr-dr backup task: --scheduled-time: invalid time "${given}": give an ISO 8601 UTC time such as 2026-12-01T02:00:00Z (the schedules pass <aws.scheduler.scheduled-time>)\n`,
    ]);
    expect(secretsMock).not.toHaveReceivedCommand(GetSecretValueCommand);
  });

  it('exits 2 with one line naming BACKUP_TASK_TIMEOUT_SECONDS when it is not a whole number of seconds, touching nothing', async () => {
    const lines: string[] = [];

    const { result } = await captureStdout(() => main(['--tier', 'hourly'], { ...runnerEnv(), BACKUP_TASK_TIMEOUT_SECONDS: '55m' }, { stderr: { write: (l: string) => lines.push(l) } }));

    expect(result).toBe(2);
    expect(lines).toEqual([expect.stringMatching(/^atmr-dr backup task: runner environment: BACKUP_TASK_TIMEOUT_SECONDS is invalid \("55m": .*\); it is set by the backups construct: redeploy the stack\n$/)]);
    expect(secretsMock).not.toHaveReceivedCommand(GetSecretValueCommand);
  });

  it('exits 3 (failure reported, so the ECS stop event does not page it again) with one stderr line and ScheduledRunFailure when the run fails', async () => {
    secretsMock.on(GetSecretValueCommand).rejects(Object.assign(new Error('denied'), { name: 'AccessDeniedException' }));
    const lines: string[] = [];
    const clients = { s3: createS3Client(s3.env), rds: new RDSClient({ region: 'eu-west-3' }), secretsManager: new SecretsManagerClient({ region: 'eu-west-3' }) };

    const { result } = await captureStdout(() => main(['--tier', 'hourly'], runnerEnv(), { stderr: { write: (l: string) => lines.push(l) }, clients }));

    expect(result).toBe(REPORTED_FAILURE_EXIT_CODE);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^atmr-dr backup task: hourly backup run failed: backup: cannot read database secret .*\n$/);
  });
});
