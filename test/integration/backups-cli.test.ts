import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { createS3Client } from '../../lambdas/shared/aws';
import { testCluster, uniqueDatabaseName } from '../support/cluster';
import { psql } from '../support/postgres';
import { LocalS3, startLocalS3 } from '../support/s3';
import { atmrDr, writeFixtureBackup } from '../lambdas/restore/fixtures';

const cluster = testCluster();
let localS3: LocalS3;
let s3: S3Client;
let database: string;
let olderKey: string;
let newerKey: string;

beforeAll(async () => {
  localS3 = await startLocalS3();
  s3 = createS3Client(localS3.env);
  database = uniqueDatabaseName('bcli');
  psql(cluster, 'postgres', `CREATE DATABASE ${database}`);
  psql(cluster, database, 'CREATE TABLE company (id int PRIMARY KEY, name text); INSERT INTO company SELECT i, md5(i::text) FROM generate_series(1, 300) i;');
  olderKey = (await writeFixtureBackup(s3, localS3.bucket, cluster, database, { tier: 'daily', startedAt: new Date('2026-11-20T02:00:00Z') })).manifestKey;
  newerKey = (await writeFixtureBackup(s3, localS3.bucket, cluster, database, { tier: 'hourly', startedAt: new Date('2026-11-21T10:00:00Z') })).manifestKey;
}, 120_000);

afterAll(async () => {
  await localS3?.stop();
});

describe('atmr-dr backups', () => {
  it('list prints the catalog newest first, one backup a line', async () => {
    const run = await atmrDr(['backups', 'list'], localS3.env);

    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    const lines = run.stdout.trim().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(new RegExp(`^${newerKey} +hourly +2026-11-21T10:00:00.000Z .*custom\\+plain +1 tables +300 rows$`));
    expect(lines[1]).toMatch(new RegExp(`^${olderKey} +daily`));
  });

  it('list --tier --json prints that tier only, as JSON', async () => {
    const run = await atmrDr(['backups', 'list', '--tier', 'daily', '--json'], localS3.env);

    expect(run.status).toBe(0);
    const entries = JSON.parse(run.stdout) as { manifestKey: string; tier: string; tables: number; rows: number }[];
    expect(entries).toEqual([expect.objectContaining({ manifestKey: olderKey, tier: 'daily', tables: 1, rows: 300 })]);
  });

  it('list --database shows that database only', async () => {
    const other = await atmrDr(['backups', 'list', '--database', 'someone_else'], localS3.env);
    const ours = await atmrDr(['backups', 'list', '--database', database, '--json'], localS3.env);

    expect(other.status).toBe(0);
    expect(other.stdout).toMatch(/^no backups in s3:\/\/\S+ of database someone_else\n$/);
    expect((JSON.parse(ours.stdout) as { manifestKey: string }[]).map((e) => e.manifestKey)).toEqual([newerKey, olderKey]);
  });

  it('list refuses an unknown tier and a missing BACKUP_BUCKET with one line and a non-zero exit', async () => {
    const badTier = await atmrDr(['backups', 'list', '--tier', 'yearly'], localS3.env);
    const { BACKUP_BUCKET: _unused, ...noBucket } = localS3.env;
    const missing = await atmrDr(['backups', 'list'], { ...noBucket, AWS_ENDPOINT_URL_CLOUDFORMATION: 'http://127.0.0.1:9' });

    expect(badTier.status).toBe(2);
    expect(badTier.stderr).toBe('atmr-dr: invalid backup tier "yearly": use one of hourly, daily, weekly, monthly\n');
    expect(missing.status).toBe(2);
    expect(missing.stderr).toMatch(/^atmr-dr: no backup bucket \(.*\): pass --bucket NAME or set BACKUP_BUCKET\n$/);
    expect(missing.stdout).toBe('');
  });

  it('verify latest checks both objects of that database without any database server', async () => {
    // No PG* variable at all: verify must not need a server.
    const run = await atmrDr(['backups', 'verify', 'latest', '--database', database], localS3.env);

    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(/^ok {2}hourly\/.*\.dump .* archive entries$/m);
    expect(run.stdout).toMatch(/^ok {2}hourly\/.*\.sql\.gz .* of SQL$/m);
    expect(run.stdout).toMatch(new RegExp(`verified ${newerKey}`));
  });

  it('verify refuses a corrupted object and a non-manifest key with one line', async () => {
    const backup = await writeFixtureBackup(s3, localS3.bucket, cluster, database, { tier: 'weekly' });
    const key = backup.manifest.objects.find((o) => o.format === 'custom')!.key;
    const bytes = Buffer.from(await (await s3.send(new GetObjectCommand({ Bucket: localS3.bucket, Key: key }))).Body!.transformToByteArray());
    bytes[bytes.length - 1] ^= 0x01;
    await s3.send(new PutObjectCommand({ Bucket: localS3.bucket, Key: key, Body: bytes }));

    const corrupt = await atmrDr(['backups', 'verify', backup.manifestKey], localS3.env);
    const notAKey = await atmrDr(['backups', 'verify', 'daily/whatever.dump'], localS3.env);

    expect(corrupt.status).toBe(1);
    expect(corrupt.stderr).toMatch(/^atmr-dr: object weekly\/.*\.dump has sha256 .*corrupt; do not restore it, pick another backup\n$/);
    expect(notAKey.status).toBe(2);
    expect(notAKey.stderr).toMatch(/^atmr-dr: "daily\/whatever.dump" is neither "latest" nor a manifest key .*\n$/);
  });
});
