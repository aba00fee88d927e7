import { CreateBucketCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { mockClient } from 'aws-sdk-client-mock';
import type { Context } from 'aws-lambda';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Metrics } from '@aws-lambda-powertools/metrics';
import { emitRestoreTestReportAge, loadRunnerSettings } from '../../../lambdas/backup/scheduled-run';
import { RESTORE_TEST_ENV } from '../../../lambdas/restore/contract';
import { handler, RESTORE_DEADLINE_MARGIN_MS } from '../../../lambdas/restore/handler';
import { RECONNECT_BOUND_MS, SWAP_STATEMENT_BOUND_MS } from '../../../lambdas/restore/session';
import { stagingName } from '../../../lambdas/restore/restore';
import { MetricsSink, loadRestoreTestSettings, loadTemporaryInstanceSettings, runScheduledRestoreTest } from '../../../lambdas/restore/scheduled';
import { createS3Client } from '../../../lambdas/shared/aws';
import { DEADLINE_MARGIN_MS } from '../../../lambdas/shared/deadline';
import { RESTORE_TEST_AGE_BASELINE_KEY } from '../../../lambdas/shared/s3-layout';
import { testCluster, uniqueDatabaseName } from '../../support/cluster';
import { writeFakePgRestore } from '../../support/fake-pg-restore';
import { psql, waitForNoSessions } from '../../support/postgres';
import { LocalS3, startLocalS3 } from '../../support/s3';
import { databaseExists, databasesLike, writeFixtureBackup } from './fixtures';

const cluster = testCluster();
const SECRET_ARN = 'arn:aws:secretsmanager:eu-west-3:111111111111:secret:atmr/staging-db-AbCdEf';
const secretsManager = mockClient(SecretsManagerClient);
let localS3: LocalS3;
let s3: S3Client;
let database: string;

function settingsEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return {
    [RESTORE_TEST_ENV.bucket]: localS3.bucket,
    [RESTORE_TEST_ENV.targetHost]: cluster.host,
    [RESTORE_TEST_ENV.targetPort]: String(cluster.port),
    [RESTORE_TEST_ENV.targetSecretArn]: SECRET_ARN,
    [RESTORE_TEST_ENV.tier]: 'daily',
    [RESTORE_TEST_ENV.database]: database,
    [RESTORE_TEST_ENV.criticalQueries]: JSON.stringify(['SELECT COUNT(*) FROM company', 'SELECT COUNT(*) FROM booking']),
    [RESTORE_TEST_ENV.rtoObjectiveSeconds]: '1800',
    [RESTORE_TEST_ENV.rpoObjectiveSeconds]: '900',
    ...extra,
  };
}

function recordingMetrics(): MetricsSink & { recorded: Record<string, number> } {
  const recorded: Record<string, number> = {};
  return { recorded, addMetric: (name, _unit, value) => (recorded[name] = value) };
}

/** Runs `fn` with stdout and stderr captured (the logger writes its JSON records to both, console.warn to stderr): its result and what was written. */
async function capturingOutput<T>(fn: () => Promise<T>): Promise<{ result: T; written: string[] }> {
  const written: string[] = [];
  const capture = (chunk: string | Uint8Array) => {
    written.push(String(chunk));
    return true;
  };
  const stdout = jest.spyOn(process.stdout, 'write').mockImplementation(capture);
  const stderr = jest.spyOn(process.stderr, 'write').mockImplementation(capture);
  try {
    return { result: await fn(), written };
  } finally {
    stdout.mockRestore();
    stderr.mockRestore();
  }
}

async function readJson(key: string): Promise<Record<string, unknown>> {
  const response = await s3.send(new GetObjectCommand({ Bucket: localS3.bucket, Key: key }));
  return JSON.parse(await response.Body!.transformToString());
}

beforeAll(async () => {
  localS3 = await startLocalS3();
  s3 = createS3Client(localS3.env);
  database = uniqueDatabaseName('sched_src');
  psql(cluster, 'postgres', `CREATE DATABASE ${database}`);
  psql(cluster, database, "CREATE TABLE company (id int PRIMARY KEY, name text); INSERT INTO company SELECT i, 'c' || i FROM generate_series(1, 42) i;");
}, 60_000);

afterAll(async () => {
  await localS3?.stop();
});

beforeEach(() => {
  secretsManager.reset();
  // An RDS secret: the host in it is the production one; the configured target host must win.
  secretsManager.on(GetSecretValueCommand, { SecretId: SECRET_ARN }).resolves({
    SecretString: JSON.stringify({ username: cluster.user, password: 'unused-with-trust-auth', host: 'atmr-prod.invalid', port: 5432, dbname: 'atmr' }),
  });
});

describe('restore-test settings', () => {
  it('loads and validates the function environment', () => {
    const settings = loadRestoreTestSettings(settingsEnv({ [RESTORE_TEST_ENV.tier]: 'weekly' }));

    expect(settings.RESTORE_TEST_TIER).toBe('weekly');
    expect(settings.RESTORE_TEST_CRITICAL_QUERIES).toEqual(['SELECT COUNT(*) FROM company', 'SELECT COUNT(*) FROM booking']);
    expect(settings.RESTORE_TEST_TARGET_PORT).toBe(cluster.port);
  });

  it.each([
    [{ [RESTORE_TEST_ENV.bucket]: '' }, /^restore-test function: BACKUP_BUCKET is not set; it is set by the restore-test construct/],
    [{ [RESTORE_TEST_ENV.criticalQueries]: 'SELECT 1' }, /RESTORE_TEST_CRITICAL_QUERIES is invalid .*must be a JSON array of SQL strings/],
    [{ [RESTORE_TEST_ENV.tier]: 'yearly' }, /RESTORE_TEST_TIER/],
    [{ [RESTORE_TEST_ENV.targetPort]: 'abc' }, /RESTORE_TEST_TARGET_PORT/],
    [{ [RESTORE_TEST_ENV.targetSecretArn]: undefined as unknown as string }, /needs RESTORE_TEST_TARGET_SECRET_ARN or RESTORE_TEST_IAM_AUTH_USER/],
  ])('refuses a broken environment %o with one line', (extra, message) => {
    const env = settingsEnv(extra);
    for (const [k, v] of Object.entries(env)) if (v === undefined) delete env[k];

    expect(() => loadRestoreTestSettings(env)).toThrow(message);
  });
});

describe('temporary-instance settings', () => {
  const temporaryEnv = (extra: Record<string, string> = {}): NodeJS.ProcessEnv => ({
    [RESTORE_TEST_ENV.sourceInstance]: 'atmr-prod',
    [RESTORE_TEST_ENV.temporaryInstance]: 'atmr-dr-example-restore-test',
    [RESTORE_TEST_ENV.temporaryInstanceClass]: 'db.t4g.medium',
    [RESTORE_TEST_ENV.temporaryInstanceSubnetGroup]: 'atmr-private',
    [RESTORE_TEST_ENV.temporaryInstanceSecurityGroups]: '["sg-0123456789abcdef0"]',
    ...extra,
  });

  it('loads the temporary instance the function restores to', () => {
    const settings = loadTemporaryInstanceSettings(temporaryEnv());

    expect(settings).toEqual({
      sourceInstanceIdentifier: 'atmr-prod',
      temporaryInstanceIdentifier: 'atmr-dr-example-restore-test',
      instanceClass: 'db.t4g.medium',
      subnetGroupName: 'atmr-private',
      securityGroupIds: ['sg-0123456789abcdef0'],
    });
    const key = 'arn:aws:kms:eu-west-3:111111111111:key/11111111-2222-3333-4444-555555555555';
    expect(loadTemporaryInstanceSettings(temporaryEnv({ [RESTORE_TEST_ENV.temporaryInstanceStorageKmsKey]: key })).storageKmsKeyArn).toBe(key);
  });

  it.each([
    [{ [RESTORE_TEST_ENV.temporaryInstanceClass]: '' }, /^restore-test temporary instance: RESTORE_TEST_TEMPORARY_INSTANCE_CLASS is not set; this function is not configured for restoreTest.useTemporaryInstance/],
    [{ [RESTORE_TEST_ENV.temporaryInstanceSecurityGroups]: 'sg-1' }, /RESTORE_TEST_TEMPORARY_INSTANCE_SECURITY_GROUPS is invalid \("sg-1": must be a JSON array of security group ids\)/],
  ])('refuses a function not configured for it %o with one line', (extra, message) => {
    expect(() => loadTemporaryInstanceSettings(temporaryEnv(extra))).toThrow(message);
  });
});

describe('scheduled restore test', () => {
  it('restores the latest daily backup on the target from the secret, publishes the metrics and writes the report', async () => {
    const backup = await writeFixtureBackup(s3, localS3.bucket, cluster, database, { tier: 'daily', startedAt: new Date(Date.now() - 7200_000) });
    const metrics = recordingMetrics();

    const { report, reportKey } = await runScheduledRestoreTest({ s3, secretsManager: new SecretsManagerClient({ region: 'eu-west-3' }), metrics }, loadRestoreTestSettings(settingsEnv()));

    expect(report.ok).toBe(true);
    expect(report.manifestKey).toBe(backup.manifestKey);
    expect(reportKey).toMatch(/^restore-tests\/\d{4}-\d{2}-\d{2}T\d{6}Z\.json$/);
    expect(await readJson(reportKey)).toEqual(expect.objectContaining({ ok: true, manifestKey: backup.manifestKey, tablesRestored: 1, rowsRestored: 42 }));
    expect(metrics.recorded.RestoreTestSuccess).toBe(1);
    expect(metrics.recorded.RtoSeconds).toBeGreaterThan(0);
    expect(metrics.recorded.RpoSeconds).toBeGreaterThanOrEqual(7200);
    expect(report.criticalQueries.map((q) => q.status)).toEqual(['ok', 'skipped']);
    expect(databaseExists(cluster, report.scratchDatabase)).toBe(false);
    expect(secretsManager.commandCalls(GetSecretValueCommand)).toHaveLength(1);
  });

  it('reports a failed test (metric 0, no RTO) when the latest backup is corrupt, and still writes the report', async () => {
    const backup = await writeFixtureBackup(s3, localS3.bucket, cluster, database, { tier: 'weekly' });
    const custom = backup.manifest.objects.find((o) => o.format === 'custom')!.key;
    await s3.send(new PutObjectCommand({ Bucket: localS3.bucket, Key: custom, Body: 'not the dump' }));
    const metrics = recordingMetrics();

    const { report, reportKey } = await runScheduledRestoreTest(
      { s3, secretsManager: new SecretsManagerClient({ region: 'eu-west-3' }), metrics },
      loadRestoreTestSettings(settingsEnv({ [RESTORE_TEST_ENV.tier]: 'weekly' })),
    );

    expect(report.ok).toBe(false);
    expect(report.error).toMatch(/is 12 bytes, the manifest says \d+/);
    expect(metrics.recorded).toEqual({ RestoreTestSuccess: 0, RpoSeconds: expect.any(Number) });
    expect((await readJson(reportKey)).ok).toBe(false);
  });

  it('reports a failed test (metric 0, so its alarm pages) when the backup of the configured database holds no table', async () => {
    const empty = uniqueDatabaseName('sched_empty');
    psql(cluster, 'postgres', `CREATE DATABASE ${empty}`);
    await writeFixtureBackup(s3, localS3.bucket, cluster, empty, { tier: 'daily' });
    const metrics = recordingMetrics();

    const { report, reportKey } = await runScheduledRestoreTest(
      { s3, secretsManager: new SecretsManagerClient({ region: 'eu-west-3' }), metrics },
      loadRestoreTestSettings(settingsEnv({ [RESTORE_TEST_ENV.database]: empty })),
    );

    expect(report.ok).toBe(false);
    expect(report.error).toBe(`the backup of ${empty} holds no table: the test is pointed at an empty or wrong database; check PGDATABASE / the configured database`);
    expect(metrics.recorded.RestoreTestSuccess).toBe(0);
    expect((await readJson(reportKey)).ok).toBe(false);
    expect(databaseExists(cluster, report.scratchDatabase)).toBe(false);
  });

  // The page of a failed scheduled test is its line: the catalog's own fixes (name a manifest key,
  // check PGDATABASE) are the CLI's, which neither the function nor the on-call can give it.
  it('with no backup of its tier published, the line says so and names what an on-call runs, with --env: list, back up, run again', async () => {
    const none = uniqueDatabaseName('sched_none');

    const { report } = await runScheduledRestoreTest(
      { s3, secretsManager: new SecretsManagerClient({ region: 'eu-west-3' }), metrics: recordingMetrics(), environmentName: 'staging' },
      loadRestoreTestSettings(settingsEnv({ [RESTORE_TEST_ENV.database]: none })),
    );

    expect(report.ok).toBe(false);
    expect(report.error).toBe(
      `no backup of database "${none}" in tier daily in s3://${localS3.bucket} (no latest/${none}/daily.json): the scheduled test restores the newest daily backup and none is published: ` +
        `see the daily backups with npx --no atmr-dr backups list --tier daily --database ${none} --env staging (alarms Backups-*), take one by hand with npx --no atmr-dr backup --tier daily --database ${none} --env staging (it becomes the newest), then run the scheduled test again`,
    );
    expect(report.errorExitCode).toBe(2);
  });

  it('with the newest backup\'s manifest corrupt, the line names it and what an on-call runs, with --env, not "choose another backup"', async () => {
    const corrupt = uniqueDatabaseName('sched_corrupt');
    psql(cluster, 'postgres', `CREATE DATABASE ${corrupt}`);
    psql(cluster, corrupt, 'CREATE TABLE company (id int PRIMARY KEY)');
    const backup = await writeFixtureBackup(s3, localS3.bucket, cluster, corrupt, { tier: 'monthly' });
    await s3.send(new PutObjectCommand({ Bucket: localS3.bucket, Key: backup.manifestKey, Body: '<html>Service Unavailable</html>' }));
    const metrics = recordingMetrics();

    const { report } = await runScheduledRestoreTest(
      { s3, secretsManager: new SecretsManagerClient({ region: 'eu-west-3' }), metrics, environmentName: 'staging' },
      loadRestoreTestSettings(settingsEnv({ [RESTORE_TEST_ENV.database]: corrupt, [RESTORE_TEST_ENV.tier]: 'monthly' })),
    );

    expect(report.ok).toBe(false);
    expect(report.error).toBe(
      `manifest ${backup.manifestKey} is not valid JSON (it starts with "<html>Service Unavailable</html>"): the scheduled test restores the newest monthly backup, this one, and no other: ` +
        `see the monthly backups with npx --no atmr-dr backups list --tier monthly --database ${corrupt} --env staging (alarms Backups-*), take one by hand with npx --no atmr-dr backup --tier monthly --database ${corrupt} --env staging (it becomes the newest), then run the scheduled test again`,
    );
    expect(metrics.recorded.RestoreTestSuccess).toBe(0);
  });

  it('fails clearly when the target secret cannot be read', async () => {
    secretsManager.reset();
    secretsManager.on(GetSecretValueCommand).rejects(Object.assign(new Error('denied'), { name: 'AccessDeniedException' }));

    await expect(
      runScheduledRestoreTest({ s3, secretsManager: new SecretsManagerClient({ region: 'eu-west-3' }), metrics: recordingMetrics() }, loadRestoreTestSettings(settingsEnv())),
    ).rejects.toThrow(/cannot read database secret .*AccessDeniedException/);
  });
});

describe('restore-test Lambda handler', () => {
  const saved = { ...process.env };
  const context = { functionName: 'restore-test', awsRequestId: 'req-1', getRemainingTimeInMillis: () => 900_000 } as unknown as Context;

  beforeEach(() => {
    Object.assign(process.env, localS3.env, settingsEnv());
  });
  afterEach(() => {
    process.env = { ...saved };
  });

  it('runs the test from its environment and returns ok and the report key', async () => {
    await writeFixtureBackup(s3, localS3.bucket, cluster, database, { tier: 'daily' });
    const written: string[] = [];
    const stdout = jest.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
      written.push(String(chunk));
      return true;
    });
    let result: { ok: boolean; reportKey: string };
    try {
      result = (await handler({ tier: 'daily' }, context)) as { ok: boolean; reportKey: string };
    } finally {
      stdout.mockRestore();
    }

    expect(result.ok).toBe(true);
    // Powertools flushes the metrics as one EMF record on stdout at the end of the invocation.
    const emf = written.map((line) => line.trim()).filter((line) => line.includes('"_aws"')).map((line) => JSON.parse(line));
    const names = emf.flatMap((record) => record._aws.CloudWatchMetrics[0].Metrics.map((m: { Name: string }) => m.Name));
    expect(names).toEqual(expect.arrayContaining(['RestoreTestSuccess', 'RtoSeconds', 'RpoSeconds']));
    expect(emf.find((record) => 'RestoreTestSuccess' in record)).toEqual(expect.objectContaining({ RestoreTestSuccess: 1, service: 'restore-test' }));
    const listed = await s3.send(new ListObjectsV2Command({ Bucket: localS3.bucket, Prefix: 'restore-tests/' }));
    expect(listed.Contents?.map((o) => o.Key)).toContain(result.reportKey);
  });

  // RestoreTest-NotRun's first action is to start the scheduled test by hand (the CLI restore-test
  // writes no report): the report it writes is what the backup runner measures from then on.
  it('a run started by hand, as RestoreTest-NotRun says, clears it: the runner then reports the age of its report, not of the 40-day-old baseline', async () => {
    // A bucket of its own, with no report yet, on the server the handler's client already talks to.
    const bucket = 'atmr-dr-not-run';
    await s3.send(new CreateBucketCommand({ Bucket: bucket }));
    const startedAt = new Date();
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: RESTORE_TEST_AGE_BASELINE_KEY, Body: JSON.stringify({ schema: 1, since: new Date(Date.now() - 40 * 86_400_000).toISOString() }) }));
    await writeFixtureBackup(s3, bucket, cluster, database, { tier: 'daily' });
    const runner = loadRunnerSettings({ BACKUP_BUCKET: bucket, DATABASE_SECRET_ARN: SECRET_ARN, DATABASE_HOST: 'db.internal', DATABASE_NAME: database, DATABASE_INSTANCE_IDENTIFIER: 'atmr-prod', RESTORE_TEST_REPORT_PREFIX: 'restore-tests/' });
    const reportedAge = async () => {
      const ages: number[] = [];
      const metrics = { singleMetric: () => ({ addMetric: (_name: string, _unit: string, value: number) => ages.push(value) }) } as unknown as Metrics;
      await emitRestoreTestReportAge({ s3, settings: runner, metrics }, new Date());
      return ages;
    };
    const [before] = await reportedAge();
    expect(before).toBeGreaterThan(36 * 86_400);

    process.env[RESTORE_TEST_ENV.bucket] = bucket;
    const jsonLines = jest.spyOn(process.stdout, 'write').mockImplementation(() => true);
    try {
      await handler({ tier: 'daily' }, context);
    } finally {
      jsonLines.mockRestore();
    }

    const [after] = await reportedAge();
    expect(after).toBeLessThan((Date.now() - startedAt.getTime()) / 1000 + 5);
  });

  it("removes the download directories of runs whose process was ended (kill -9, the time limit) from /tmp first, one WARN line each, keeps a live process's, and leaves none of its own", async () => {
    // Arrange: a private TMPDIR with what an ended process left (another pid, gone; this very pid,
    // which Lambda gives the next process as often as not), a live process's, and a stranger
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'handler-tmp-'));
    // The handler's os.tmpdir() reads the real process's TMPDIR, which jest's process.env is a copy of.
    const tmpdir = jest.spyOn(jest.requireActual<typeof os>('node:os'), 'tmpdir').mockReturnValue(tmp);
    const host = os.hostname().replace(/[^A-Za-z0-9.]/g, '_');
    const deadPid = Number(execFileSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }));
    const ended = [path.join(tmp, `atmr-dr-${host}-${deadPid}-aB3dE9`), path.join(tmp, `atmr-dr-${host}-${process.pid}-Zz9yX8`)];
    const kept = [path.join(tmp, `atmr-dr-${host}-${process.ppid}-Qq1wE2`), path.join(tmp, 'atmr-dr-resolve-Q8XV0l')];
    for (const dir of [...ended, ...kept]) {
      fs.mkdirSync(path.join(dir, 'atmr-dr-restore-x1Y2z3'), { recursive: true });
      fs.writeFileSync(path.join(dir, 'atmr-dr-restore-x1Y2z3', 'atmr_backup.dump'), 'x'.repeat(1000));
    }
    await writeFixtureBackup(s3, localS3.bucket, cluster, database, { tier: 'daily' });
    // The logger writes WARN to stderr, and INFO and the metrics to stdout.
    const written: string[] = [];
    const capture = (stream: NodeJS.WriteStream) =>
      jest.spyOn(stream, 'write').mockImplementation((chunk: string | Uint8Array) => {
        written.push(String(chunk));
        return true;
      });
    const outputs = [capture(process.stdout), capture(process.stderr)];

    try {
      // Act
      let result: { ok: boolean };
      try {
        result = (await handler({ restore: { ref: 'latest', tier: 'daily', targetDb: uniqueDatabaseName('lambda_tmp') } }, context)) as { ok: boolean };
      } finally {
        outputs.forEach((output) => output.mockRestore());
      }

      // Assert
      expect(result.ok).toBe(true);
      for (const dir of ended) expect(fs.existsSync(dir)).toBe(false);
      for (const dir of kept) expect(fs.existsSync(dir)).toBe(true);
      expect(fs.readdirSync(tmp).sort()).toEqual(kept.map((dir) => path.basename(dir)).sort());
      const warnings = written.flatMap((line) => line.split('\n')).filter((line) => line.includes('"level":"WARN"')).map((line) => JSON.parse(line).message);
      expect(warnings.sort()).toEqual(ended.map((dir) => `removed temp directory ${dir}, left by an earlier run that was killed`).sort());
    } finally {
      tmpdir.mockRestore();
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });

  it('rejects a malformed event', async () => {
    await expect(handler({ tier: 'yearly' }, context)).rejects.toThrow(/restore event must be/);
    await expect(handler({ restore: { ref: 'latest' } }, context)).rejects.toThrow(/restore event must be/);
  });

  it('restores on request ({"restore": ...}) into a new database on the configured target', async () => {
    await writeFixtureBackup(s3, localS3.bucket, cluster, database, { tier: 'daily' });
    const targetDb = uniqueDatabaseName('lambda_restore');

    const result = (await handler({ restore: { ref: 'latest', tier: 'daily', targetDb } }, context)) as { ok: boolean; targetDb: string; rowsRestored: number };

    expect(result).toEqual(expect.objectContaining({ ok: true, targetDb, rowsRestored: 42 }));
    expect(psql(cluster, targetDb, 'SELECT count(*) FROM company')).toBe('42');
  });

  it('names its environment, from the variable its construct sets, with --env in the commands a refusal prints', async () => {
    process.env[RESTORE_TEST_ENV.environmentName] = 'staging';
    const missing = `daily/${database}_backup_20200101_000000.manifest.json`;

    // (Other tests' backups of the database are the nearest keys the line may suggest in between.)
    await expect(handler({ restore: { ref: missing, targetDb: uniqueDatabaseName('lambda_env') } }, context)).rejects.toThrow(
      new RegExp(`^manifest s3://${localS3.bucket}/${missing.replace(/\./g, '\\.')} does not exist; .*list backups with: npx --no atmr-dr backups list --env staging; `),
    );
  });

  it('over an existing database ({"force": true}) keeps what it held and names it (replacedKeptAs); with "dropReplaced": true it drops it', async () => {
    // Arrange: two existing databases holding a row of their own
    await writeFixtureBackup(s3, localS3.bucket, cluster, database, { tier: 'daily' });
    const [keeping, dropping] = [uniqueDatabaseName('lambda_keep'), uniqueDatabaseName('lambda_drop')];
    for (const db of [keeping, dropping]) {
      psql(cluster, 'postgres', `CREATE DATABASE ${db}`);
      psql(cluster, db, 'CREATE TABLE mine (id int); INSERT INTO mine VALUES (1);');
    }

    // Act
    const kept = (await handler({ restore: { ref: 'latest', tier: 'daily', targetDb: keeping, force: true } }, context)) as { replaced: boolean; replacedKeptAs: string | null };
    const dropped = (await handler({ restore: { ref: 'latest', tier: 'daily', targetDb: dropping, force: true, dropReplaced: true } }, context)) as { replaced: boolean; replacedKeptAs: string | null };

    // Assert
    expect(kept.replacedKeptAs).toMatch(new RegExp(`^${keeping}_old_`));
    expect(kept).toEqual(expect.objectContaining({ replaced: true, replacedKeptAs: databasesLike(cluster, `${keeping}_old_`)[0] }));
    expect(psql(cluster, kept.replacedKeptAs!, 'SELECT count(*) FROM mine')).toBe('1');
    expect(dropped).toEqual(expect.objectContaining({ replaced: true, replacedKeptAs: null }));
    expect(databasesLike(cluster, `${dropping}_`)).toEqual([]);
  });

  it('passes noOwner ({"restore": {..., "noOwner": true}}) to the restore: the tables are the restoring role\'s, not their owner\'s in the backup', async () => {
    // Arrange: a backup whose table belongs to a role other than the one the function connects as
    const owner = uniqueDatabaseName('lambda_owner');
    const source = uniqueDatabaseName('lambda_owned_src');
    const [kept, given] = [uniqueDatabaseName('lambda_kept'), uniqueDatabaseName('lambda_given')];
    psql(cluster, 'postgres', `CREATE ROLE ${owner}; CREATE DATABASE ${source}`);
    try {
      psql(cluster, source, `CREATE TABLE company (id int PRIMARY KEY); INSERT INTO company SELECT generate_series(1, 3); ALTER TABLE company OWNER TO ${owner};`);
      const { manifestKey } = await writeFixtureBackup(s3, localS3.bucket, cluster, source, { tier: 'daily', pointers: 'none' });
      const tableOwner = (db: string) => psql(cluster, db, "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = 'company'");

      // Act
      await handler({ restore: { ref: manifestKey, targetDb: kept } }, context);
      await handler({ restore: { ref: manifestKey, targetDb: given, noOwner: true } }, context);

      // Assert
      expect([tableOwner(kept), tableOwner(given)]).toEqual([owner, cluster.user]);
      expect(psql(cluster, given, 'SELECT count(*) FROM company')).toBe('3');
    } finally {
      for (const db of [source, kept, given]) psql(cluster, 'postgres', `DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
      psql(cluster, 'postgres', `DROP ROLE IF EXISTS ${owner}`);
    }
  });

  it('refuses a noOwner that is not a boolean with one line naming the field, before touching anything', async () => {
    const targetDb = uniqueDatabaseName('lambda_no_owner');

    const error = await handler({ restore: { ref: 'latest', targetDb, noOwner: 'yes' } }, context).catch((e: unknown) => e as Error);

    expect((error as Error).message).toBe(
      'restore event must be {} or {"tier": "hourly|daily|weekly|monthly"} (restore test), or {"restore": {"ref": "latest", "targetDb": "<name>", "tier"?, "force"?, "format"?, "terminateConnections"?, "dropReplaced"?, "noOwner"?}} (restore.noOwner: Invalid input: expected boolean, received string)',
    );
    expect(databasesLike(cluster, targetDb)).toEqual([]);
  });

  // The default daily tier restored at 04:00 is a 2-hour-old dump: with an objective under that,
  // RestoreTest-Rpo pages, and the function's log must not say only "passed" beside the page.
  it('logs a passed test that missed the RPO objective at WARN, naming the objective and the age measured; one within it at INFO', async () => {
    const logRecords = async (event: unknown) => {
      const { result: answer, written } = await capturingOutput(() => handler(event, context));
      const result = answer as { ok: boolean; rpoSeconds?: number };
      const records = written.flatMap((chunk) => chunk.split('\n')).filter((line) => line.startsWith('{') && !line.includes('"_aws"'));
      return { result, records: records.map((line) => JSON.parse(line) as { level: string; message: string }).filter((r) => r.message.startsWith('restore test ')) };
    };

    await writeFixtureBackup(s3, localS3.bucket, cluster, database, { tier: 'daily', startedAt: new Date(Date.now() - 2 * 3600_000) });
    const late = await logRecords({ tier: 'daily' });

    expect(late.result.ok).toBe(true);
    expect(late.result.rpoSeconds).toBeGreaterThanOrEqual(7200);
    expect(late.records).toEqual([
      expect.objectContaining({ level: 'WARN', message: `restore test passed, objective missed: the restored backup was ${late.result.rpoSeconds} s old, over the RPO objective of 900 s` }),
    ]);

    await writeFixtureBackup(s3, localS3.bucket, cluster, database, { tier: 'daily' });
    const onTime = await logRecords({ tier: 'daily' });

    expect(onTime.records).toEqual([expect.objectContaining({ level: 'INFO', message: 'restore test passed' })]);
  });

  it('logs the leftovers of a killed restore at WARN level, not as info lines', async () => {
    await writeFixtureBackup(s3, localS3.bucket, cluster, database, { tier: 'daily' });
    const targetDb = uniqueDatabaseName('lambda_left');
    const staging = stagingName(targetDb);
    psql(cluster, 'postgres', `CREATE DATABASE "${staging}"`);
    const { written } = await capturingOutput(() => handler({ restore: { ref: 'latest', tier: 'daily', targetDb } }, context));

    const records = written.flatMap((chunk) => chunk.split('\n')).filter((line) => line.startsWith('{')).map((line) => JSON.parse(line) as { level: string; message: string });
    const aboutStaging = records.filter((r) => r.message.includes(staging));
    expect(aboutStaging).toEqual([expect.objectContaining({ level: 'WARN', message: expect.stringMatching(/^"[^"]*" is the staging database of an earlier restore/) })]);
  });

  // The counts' statement_timeout is an hour; in the function, its deadline ends them much sooner,
  // and the operator reading the log of a run stopped during the counts must be told that.
  it('says on the check line that the function\'s deadline, 8 min away, bounds the counts, not only the hour each table has; without a deadline, the hour alone', async () => {
    // Arrange: 8 min 50 s left before the restore's stop (said rounded down: 8 min, unless reaching the counts takes 50 s)
    await writeFixtureBackup(s3, localS3.bucket, cluster, database, { tier: 'daily' });
    const eightMinutesLeft = { ...context, getRemainingTimeInMillis: () => 8 * 60_000 + 50_000 + RESTORE_DEADLINE_MARGIN_MS } as unknown as Context;
    const targetDb = uniqueDatabaseName('lambda_bound');
    const written: string[] = [];
    const jsonLines = jest.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
      written.push(String(chunk));
      return true;
    });
    const untimed: string[] = [];
    try {
      // Act: a restore and a restore test in the function, and a restore test with no deadline
      await handler({ restore: { ref: 'latest', tier: 'daily', targetDb } }, eightMinutesLeft);
      await handler({ tier: 'daily' }, eightMinutesLeft);
      await runScheduledRestoreTest({ s3, secretsManager: new SecretsManagerClient({ region: 'eu-west-3' }), log: (line) => untimed.push(line) }, loadRestoreTestSettings(settingsEnv()));
    } finally {
      jsonLines.mockRestore();
    }

    // Assert
    const checkLines = (messages: string[]) => messages.filter((message) => message.startsWith('check: '));
    // The metrics' EMF records on stdout have no message.
    const messages = written.flatMap((chunk) => chunk.split('\n')).filter((line) => line.startsWith('{')).flatMap((line) => (JSON.parse(line) as { message?: string }).message ?? []);
    expect(checkLines(messages)).toEqual(Array(2).fill("check: row counts against the manifest (each table's count bounded to 60 min, and by the function's deadline in 8 min)"));
    expect(checkLines(untimed)).toEqual(["check: row counts against the manifest (each table's count bounded to 60 min)"]);
  });

  let slowBin: string | undefined;
  afterEach(() => {
    if (slowBin) fs.rmSync(slowBin, { recursive: true, force: true });
    slowBin = undefined;
  });
  /**
   * A restore that does not fit: pg_restore, on PATH, never ends; the context leaves the restore 6 s
   * past the handler's margin: room for the download and the staging database on a loaded machine
   * (under 1 s idle), far less than the stuck pg_restore.
   */
  function restoreThatDoesNotFit(): { deadlineAt: number; context: Context } {
    slowBin = writeFakePgRestore(fs.mkdtempSync(path.join(os.tmpdir(), 'atmr-dr-slow-pg-restore-')), 'exec sleep 300\n');
    process.env.PATH = `${slowBin}:${saved.PATH ?? ''}`;
    const deadlineAt = Date.now() + RESTORE_DEADLINE_MARGIN_MS + 6_000;
    return { deadlineAt, context: { functionName: 'restore-test', awsRequestId: 'req-deadline', getRemainingTimeInMillis: () => deadlineAt - Date.now() } as unknown as Context };
  }

  it('stops a restore ({"restore": ...}) that would outlast the function before Lambda kills it: staging dropped, the target it was to replace untouched', async () => {
    await writeFixtureBackup(s3, localS3.bucket, cluster, database, { tier: 'daily' });
    const targetDb = uniqueDatabaseName('lambda_deadline');
    psql(cluster, 'postgres', `CREATE DATABASE ${targetDb}`);
    psql(cluster, targetDb, 'CREATE TABLE precious (id int); INSERT INTO precious VALUES (7);');
    waitForNoSessions(cluster, targetDb);
    const { deadlineAt, context: nearTheLimit } = restoreThatDoesNotFit();

    await expect(handler({ restore: { ref: 'latest', tier: 'daily', targetDb, force: true } }, nearTheLimit)).rejects.toThrow(
      new RegExp(`^restore interrupted \\(stopped 204 s before the function's time limit.*\\): staging database \\S+ dropped; target "${targetDb}" untouched$`),
    );

    // Back with the time a swap started at the stop may still take: seven statements that wait for their answer (with --terminate-connections), and the session back once between two.
    expect(RESTORE_DEADLINE_MARGIN_MS).toBe(DEADLINE_MARGIN_MS + 7 * SWAP_STATEMENT_BOUND_MS + RECONNECT_BOUND_MS);
    expect(Date.now()).toBeLessThan(deadlineAt - 3 * SWAP_STATEMENT_BOUND_MS);
    expect(psql(cluster, targetDb, 'SELECT id FROM precious')).toBe('7');
    expect(databaseExists(cluster, stagingName(targetDb))).toBe(false);
  }, 60_000);

  it('stops a restore test that would outlast the function before Lambda kills it: scratch and staging dropped, failed report written, failure metric, and the time it ran published as RtoSeconds (RTO > N s)', async () => {
    await writeFixtureBackup(s3, localS3.bucket, cluster, database, { tier: 'daily' });
    // An objective shorter than the time the restore runs before the stop (about 6 s): the lower
    // bound is over it, as a 20-minute restore would be over a 10-minute objective.
    process.env[RESTORE_TEST_ENV.rtoObjectiveSeconds] = '2';
    const { deadlineAt, context: nearTheLimit } = restoreThatDoesNotFit();
    const leftoversBefore = databasesLike(cluster, 'atmr_dr_restore_test_');
    const written: string[] = [];
    const capture = (chunk: string | Uint8Array) => {
      written.push(String(chunk));
      return true;
    };
    const spies = [jest.spyOn(process.stdout, 'write').mockImplementation(capture), jest.spyOn(process.stderr, 'write').mockImplementation(capture)];
    let result: { ok: boolean; reportKey: string; error?: string };
    try {
      result = (await handler({ tier: 'daily' }, nearTheLimit)) as typeof result;
    } finally {
      for (const spy of spies) spy.mockRestore();
    }

    // Back well before Lambda's limit, with the time to write the report and flush the metrics.
    expect(Date.now()).toBeLessThan(deadlineAt - 3 * SWAP_STATEMENT_BOUND_MS);
    expect(result.ok).toBe(false);
    // Stopped during the load: the staging database existed, and was dropped.
    const stopped = /^stopped after (\d+(?:\.\d+)?) s: RTO > \1 s \(objective 2 s\); restore interrupted \(stopped 204 s before the function's time limit.*\): staging database atmr_dr_restore_test_\S+ dropped/.exec(result.error ?? '');
    expect(stopped).not.toBeNull();
    const atLeast = Number(stopped![1]);
    expect(atLeast).toBeGreaterThan(2);
    expect(result.error).not.toContain('\n');
    expect(databasesLike(cluster, 'atmr_dr_restore_test_')).toEqual(leftoversBefore);
    const report = await readJson(result.reportKey);
    expect(report).toEqual(expect.objectContaining({ ok: false, scratchDropped: true, error: result.error, rtoAtLeastSeconds: atLeast, rtoMet: false }));
    expect(report.rtoSeconds).toBeUndefined();
    const emf = written.flatMap((chunk) => chunk.split('\n')).filter((line) => line.includes('"_aws"')).map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(emf.find((record) => 'RestoreTestSuccess' in record)).toEqual(expect.objectContaining({ RestoreTestSuccess: 0 }));
    // What RestoreTest-Rto watches (Maximum over the objective): the lower bound, so it fires.
    expect(emf.find((record) => 'RtoSeconds' in record)).toEqual(expect.objectContaining({ RtoSeconds: atLeast }));
  }, 60_000);

  it('never restores over a protected (production) database from an event, even with force', async () => {
    const protectedDb = uniqueDatabaseName('lambda_prod');
    psql(cluster, 'postgres', `CREATE DATABASE ${protectedDb}`);
    psql(cluster, protectedDb, 'CREATE TABLE precious (id int); INSERT INTO precious VALUES (7);');
    process.env[RESTORE_TEST_ENV.protectedDatabases] = JSON.stringify([protectedDb]);

    await expect(handler({ restore: { ref: 'latest', targetDb: protectedDb, force: true } }, context)).rejects.toThrow(/refusing to restore into .*production/);
    expect(psql(cluster, protectedDb, 'SELECT id FROM precious')).toBe('7');
  });
});
