import { DescribeDBInstancesCommand, RDSClient } from '@aws-sdk/client-rds';
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { mockClient } from 'aws-sdk-client-mock';
import { Client } from 'pg';
import { main } from '../../lambdas/backup/task';
import { REPORTED_FAILURE_EXIT_CODE } from '../../lambdas/backup/runner-contract';
import { createS3Client } from '../../lambdas/shared/aws';
import { STATE_PREFIX } from '../../lambdas/shared/s3-layout';
import { testCluster, uniqueDatabaseName, testClient } from '../support/cluster';
import { startHoldingProxy, type LocalS3, startLocalS3 } from '../support/s3';
import { createDatabase, dropDatabase, listKeys, runBackends, type RunBackend } from './backup-support';
import { holdTableLock, type HeldLock } from '../support/cluster';

// The Fargate task entry at its time limit, against the real PostgreSQL test cluster and the real S3
// protocol (s3rver); Secrets Manager and RDS are mocked at the SDK. A limit of 40 s stops the run
// at 10 s (the 30 s margin the Lambda runner keeps before its own limit).

jest.setTimeout(120_000);

const SECRET_ARN = 'arn:aws:secretsmanager:eu-west-3:111111111111:secret:rds!db-atmr-test-AbCdEf';
const TIME_LIMIT_SECONDS = 40;
const STOP_AFTER_MS = 10_000;
const STOP_LINE =
  /^atmr-dr backup task: hourly backup run failed: backup: backup failed, nothing published \(no manifest, latest pointers unchanged\): backup aborted \(time limit reached: stopped 30 s before the task's limit of 40 s; raise backups\.fargateTimeoutMinutes in cdk\.json \(55 at most\) or give the task more CPU \(backups\.fargateCpu\) if the dump needs longer\)\n$/;
const secretsMock = mockClient(SecretsManagerClient);
const rdsMock = mockClient(RDSClient);

describe('backup task: its time limit (integration)', () => {
  let s3: LocalS3;
  let watcher: Client;

  /** The environment the backups construct gives the task, with a short time limit. */
  const taskEnv = (database: string): Record<string, string> => {
    const cluster = testCluster();
    return {
      ...s3.env,
      DATABASE_SECRET_ARN: SECRET_ARN,
      DATABASE_HOST: cluster.host,
      DATABASE_PORT: String(cluster.port),
      DATABASE_NAME: database,
      DATABASE_INSTANCE_IDENTIFIER: 'atmr-test',
      BACKUP_TASK_TIMEOUT_SECONDS: String(TIME_LIMIT_SECONDS),
    };
  };

  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

  /** Runs the task with stdout and stderr captured (Powertools logs and EMF metrics go to stdout). */
  const runTask = async (env: Record<string, string>, s3Endpoint: string, extraArgs: string[] = []) => {
    const lines: string[] = [];
    const chunks: string[] = [];
    const capture = (chunk: string | Uint8Array) => {
      chunks.push(String(chunk));
      return true;
    };
    // The run's own warnings (no latest pointer yet) go to stderr: kept out of the test's output.
    const spies = [jest.spyOn(process.stdout, 'write').mockImplementation(capture), jest.spyOn(process.stderr, 'write').mockImplementation(() => true)];
    try {
      const clients = {
        s3: createS3Client({ ...s3.env, AWS_ENDPOINT_URL_S3: s3Endpoint }),
        rds: new RDSClient({ region: 'eu-west-3' }),
        secretsManager: new SecretsManagerClient({ region: 'eu-west-3' }),
      };
      const code = await main(['--tier', 'hourly', ...extraArgs], env, { stderr: { write: (l: string) => lines.push(l) }, clients });
      return { code, lines, metrics: metricNames(chunks.join('')) };
    } finally {
      for (const spy of spies) spy.mockRestore();
    }
  };

  /** The task's outcome, or undefined when it is still running at its time limit. */
  const untilLimit = <T>(task: Promise<T>, started: number): Promise<T | undefined> =>
    Promise.race([task, sleep(started + TIME_LIMIT_SECONDS * 1000 - Date.now()).then(() => undefined)]);

  /** What a stopped run must leave: no backup object under the tier, no latest pointer. */
  const expectNothingPublished = async (database: string): Promise<void> => {
    const keys = await listKeys(createS3Client(s3.env), s3.bucket);
    expect(keys.filter((k) => k.startsWith('hourly/') || k.startsWith('latest'))).toEqual([]);
    // The age baselines that the run's age report starts (state/, lambdas/backup/age-baseline.ts) are not backups.
    expect(keys.filter((k) => k.includes(database) && !k.startsWith(STATE_PREFIX))).toEqual([]);
  };

  /** Polls until the run's sessions are gone (a backend ends just after its client leaves). */
  const backendsLeft = async (database: string): Promise<RunBackend[]> => {
    const until = Date.now() + 10_000;
    let left = await runBackends(watcher, database);
    while (left.length > 0 && Date.now() < until) {
      await sleep(100);
      left = await runBackends(watcher, database);
    }
    return left;
  };

  beforeAll(async () => {
    s3 = await startLocalS3('atmr-dr-task-deadline');
    const cluster = testCluster();
    watcher = testClient({ host: cluster.host, port: cluster.port, user: cluster.user, database: 'postgres' });
    await watcher.connect();
  });
  afterAll(async () => {
    await watcher.end();
    await s3.stop();
  });
  beforeEach(() => {
    secretsMock.reset();
    rdsMock.reset();
    secretsMock.on(GetSecretValueCommand, { SecretId: SECRET_ARN }).resolves({ SecretString: JSON.stringify({ username: testCluster().user, password: 'unused' }) });
    rdsMock.on(DescribeDBInstancesCommand).resolves({ DBInstances: [{ DBInstanceIdentifier: 'atmr-test', BackupRetentionPeriod: 7 }] });
  });

  it('a dump waiting behind a lock at the deadline: stops itself, closes its transaction, publishes nothing, reports the failed run, exits 3 (failure reported)', async () => {
    // Arrange: a migration holds a table ACCESS EXCLUSIVE for longer than the task's limit.
    const database = uniqueDatabaseName('task_lock');
    createDatabase(database, 'CREATE TABLE held (id int); INSERT INTO held VALUES (1);');
    let lock: HeldLock | undefined;
    try {
      lock = await holdTableLock(database, 'held');
      const started = Date.now();

      // Act
      const task = runTask(taskEnv(database), s3.endpoint);
      let waitingAt: number | undefined;
      while (waitingAt === undefined && Date.now() - started < STOP_AFTER_MS) {
        if ((await runBackends(watcher, database)).some((b) => b.wait === 'Lock' && b.inTransaction)) waitingAt = Date.now();
        else await sleep(50);
      }
      const outcome = await untilLimit(task, started);
      const ended = Date.now();

      // Assert: the run was waiting on the lock, in its transaction, when the deadline stopped it
      expect(waitingAt).toBeDefined();
      expect(outcome).toBeDefined();
      const { code, lines, metrics } = outcome!;
      expect(code).toBe(REPORTED_FAILURE_EXIT_CODE);
      expect(lines).toEqual([expect.stringMatching(STOP_LINE)]);
      expect(ended - started).toBeGreaterThanOrEqual(STOP_AFTER_MS - 100);
      expect(ended - started).toBeLessThan(TIME_LIMIT_SECONDS * 1000);
      expect(metrics).toEqual(expect.arrayContaining(['BackupFailure', 'ScheduledRunFailure']));
      expect(metrics).not.toContain('BackupSuccess');
      // The lock is still held: the run's sessions ended because the run closed them.
      expect(await backendsLeft(database)).toEqual([]);
      await expectNothingPublished(database);
    } finally {
      await lock?.release();
      dropDatabase(database);
    }
  });

  it('a run that started late behind the same lock: stopped at its limit counted from its scheduled time, sooner than a punctual run, with the same cleanup', async () => {
    // Arrange: the run starts 5 s after its scheduled time (a retried RunTask, a slow image pull).
    const database = uniqueDatabaseName('task_late');
    createDatabase(database, 'CREATE TABLE held (id int); INSERT INTO held VALUES (1);');
    let lock: HeldLock | undefined;
    try {
      lock = await holdTableLock(database, 'held');
      const started = Date.now();
      const scheduled = started - 5_000;
      const scheduledTime = new Date(scheduled).toISOString();

      // Act
      const outcome = await untilLimit(runTask(taskEnv(database), s3.endpoint, ['--scheduled-time', scheduledTime]), started);
      const ended = Date.now();

      // Assert: stopped 10 s after its scheduled time (30 s before its 40 s limit), 5 s after its start
      expect(outcome).toBeDefined();
      const { code, lines, metrics } = outcome!;
      expect(code).toBe(REPORTED_FAILURE_EXIT_CODE);
      expect(lines).toEqual([expect.stringContaining(`backup aborted (time limit reached: stopped 30 s before the task's limit of 40 s after its scheduled time ${scheduledTime}; `)]);
      expect(ended - scheduled).toBeGreaterThanOrEqual(STOP_AFTER_MS - 100);
      expect(ended - started).toBeLessThan(STOP_AFTER_MS);
      expect(metrics).toEqual(expect.arrayContaining(['BackupFailure', 'ScheduledRunFailure']));
      expect(await backendsLeft(database)).toEqual([]);
      await expectNothingPublished(database);
    } finally {
      await lock?.release();
      dropDatabase(database);
    }
  });

  it('an S3 upload that never gets its answer at the deadline: stops itself, kills pg_dump, closes its transaction, publishes nothing, exits 3 (failure reported)', async () => {
    // Arrange: enough data for multipart uploads; S3 then keeps back its answer to every part upload
    // (a stalled upload), so pg_dump, held by back-pressure, keeps the snapshot open.
    const database = uniqueDatabaseName('task_s3');
    createDatabase(database, 'CREATE TABLE trips AS SELECT i AS id, md5(i::text) || md5((i * 7)::text) AS note FROM generate_series(1, 400000) AS i;');
    const proxy = await startHoldingProxy(s3.endpoint, /^PUT .*uploadId=/);
    let heldAt: number | undefined;
    void proxy.holding.then(() => (heldAt = Date.now()));
    try {
      const started = Date.now();

      // Act
      const task = runTask(taskEnv(database), proxy.endpoint);
      await Promise.race([proxy.holding, sleep(STOP_AFTER_MS)]);
      const duringHold = await runBackends(watcher, database);
      const outcome = await untilLimit(task, started);
      const ended = Date.now();

      // Assert: the upload was held and the snapshot open when the deadline stopped the run
      expect(heldAt! - started).toBeLessThan(STOP_AFTER_MS);
      expect(duringHold.some((b) => b.inTransaction)).toBe(true);
      expect(outcome).toBeDefined();
      const { code, lines, metrics } = outcome!;
      expect(code).toBe(REPORTED_FAILURE_EXIT_CODE);
      expect(lines).toEqual([expect.stringMatching(STOP_LINE)]);
      expect(ended - started).toBeLessThan(TIME_LIMIT_SECONDS * 1000);
      expect(metrics).toEqual(expect.arrayContaining(['BackupFailure', 'ScheduledRunFailure']));
      expect(await backendsLeft(database)).toEqual([]);
      await expectNothingPublished(database);
    } finally {
      proxy.release();
      await proxy.stop();
      dropDatabase(database);
    }
  });
});

/** Names of the metrics in the EMF documents of the output. */
function metricNames(out: string): string[] {
  return out
    .split('\n')
    .filter((line) => line.includes('"_aws"'))
    .flatMap((line) => (JSON.parse(line) as { _aws: { CloudWatchMetrics: { Metrics: { Name: string }[] }[] } })._aws.CloudWatchMetrics[0].Metrics.map((m) => m.Name));
}
