import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { mockClient } from 'aws-sdk-client-mock';
import type { Context } from 'aws-lambda';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { RESTORE_TEST_ENV } from '../../../lambdas/restore/contract';
import { handler } from '../../../lambdas/restore/handler';
import { createS3Client } from '../../../lambdas/shared/aws';
import { testCluster, uniqueDatabaseName } from '../../support/cluster';
import { psql } from '../../support/postgres';
import { LocalS3, startLocalS3 } from '../../support/s3';
import { databasesLike, writeFixtureBackup } from './fixtures';

// The scheduled restore test against Lambda's hard time limit: a restore longer than the function's
// 15 minutes. Real PostgreSQL and s3rver; pg_restore is replaced, on PATH, by one that never ends (a
// restore that does not fit). In its own file: the handler caches its SDK clients per module.

const cluster = testCluster();
const SECRET_ARN = 'arn:aws:secretsmanager:eu-west-3:111111111111:secret:atmr/staging-db-AbCdEf';
const secretsManager = mockClient(SecretsManagerClient);
const saved = { ...process.env };
let localS3: LocalS3;
let s3: S3Client;
let database: string;
let slowBin: string;

beforeAll(async () => {
  localS3 = await startLocalS3();
  s3 = createS3Client(localS3.env);
  database = uniqueDatabaseName('deadline_src');
  psql(cluster, 'postgres', `CREATE DATABASE ${database}`);
  psql(cluster, database, "CREATE TABLE company (id int PRIMARY KEY, name text); INSERT INTO company SELECT i, 'c' || i FROM generate_series(1, 42) i;");
  await writeFixtureBackup(s3, localS3.bucket, cluster, database, { tier: 'daily' });
  slowBin = fs.mkdtempSync(path.join(os.tmpdir(), 'atmr-dr-slow-pg-restore-'));
  fs.writeFileSync(path.join(slowBin, 'pg_restore'), '#!/bin/sh\nexec sleep 300\n', { mode: 0o755 });
}, 60_000);

afterAll(async () => {
  process.env = { ...saved };
  fs.rmSync(slowBin, { recursive: true, force: true });
  await localS3?.stop();
  psql(cluster, 'postgres', `DROP DATABASE IF EXISTS ${database}`);
});

it('stops a restore test that would outlast the function before Lambda kills it: scratch and staging dropped, failed report written, failure metric', async () => {
  secretsManager.on(GetSecretValueCommand, { SecretId: SECRET_ARN }).resolves({ SecretString: JSON.stringify({ username: cluster.user, password: 'unused-with-trust-auth' }) });
  Object.assign(process.env, localS3.env, {
    [RESTORE_TEST_ENV.bucket]: localS3.bucket,
    [RESTORE_TEST_ENV.targetHost]: cluster.host,
    [RESTORE_TEST_ENV.targetPort]: String(cluster.port),
    [RESTORE_TEST_ENV.targetSecretArn]: SECRET_ARN,
    [RESTORE_TEST_ENV.tier]: 'daily',
    [RESTORE_TEST_ENV.database]: database,
    [RESTORE_TEST_ENV.criticalQueries]: JSON.stringify(['SELECT COUNT(*) FROM company']),
    [RESTORE_TEST_ENV.rtoObjectiveSeconds]: '1800',
    [RESTORE_TEST_ENV.rpoObjectiveSeconds]: '900',
    PATH: `${slowBin}:${saved.PATH ?? ''}`,
  });
  // 32 s left: the handler's 30-s margin leaves the restore 2 s, far less than the stuck pg_restore.
  const deadlineAt = Date.now() + 32_000;
  const context = { functionName: 'restore-test', awsRequestId: 'req-deadline', getRemainingTimeInMillis: () => deadlineAt - Date.now() } as unknown as Context;
  const leftoversBefore = databasesLike(cluster, 'atmr_dr_restore_test_');
  const written: string[] = [];
  const capture = (chunk: string | Uint8Array) => {
    written.push(String(chunk));
    return true;
  };
  const spies = [jest.spyOn(process.stdout, 'write').mockImplementation(capture), jest.spyOn(process.stderr, 'write').mockImplementation(capture)];
  let result: { ok: boolean; reportKey: string; error?: string };
  try {
    result = (await handler({ tier: 'daily' }, context)) as typeof result;
  } finally {
    for (const spy of spies) spy.mockRestore();
  }

  // Back before Lambda's limit, with the time to write the report and flush the metrics.
  expect(Date.now()).toBeLessThan(deadlineAt - 20_000);
  expect(result.ok).toBe(false);
  // Stopped during the load: the staging database existed, and was dropped.
  expect(result.error).toMatch(/^restore interrupted \(stopped 30 s before the function's time limit.*\): staging database atmr_dr_restore_test_\S+ dropped/);
  expect(result.error).not.toContain('\n');
  expect(databasesLike(cluster, 'atmr_dr_restore_test_')).toEqual(leftoversBefore);
  const report = JSON.parse(await (await s3.send(new GetObjectCommand({ Bucket: localS3.bucket, Key: result.reportKey }))).Body!.transformToString()) as Record<string, unknown>;
  expect(report).toEqual(expect.objectContaining({ ok: false, scratchDropped: true, error: result.error }));
  const emf = written.flatMap((chunk) => chunk.split('\n')).filter((line) => line.includes('"_aws"')).map((line) => JSON.parse(line) as Record<string, unknown>);
  expect(emf.find((record) => 'RestoreTestSuccess' in record)).toEqual(expect.objectContaining({ RestoreTestSuccess: 0 }));
}, 60_000);
