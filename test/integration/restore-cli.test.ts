import { S3Client } from '@aws-sdk/client-s3';
import { createS3Client } from '../../lambdas/shared/aws';
import { testCluster, uniqueDatabaseName } from '../support/cluster';
import { psql } from '../support/postgres';
import { LocalS3, startLocalS3 } from '../support/s3';
import { atmrDr, databaseDigest, databaseExists, databasesLike, writeFixtureBackup } from '../lambdas/restore/fixtures';

const cluster = testCluster();
let localS3: LocalS3;
let s3: S3Client;
let source: string;
let sourceDigest: string;
let manifestKey: string;

/** Operator environment: the S3 endpoint and bucket, and libpq settings of the test cluster. */
function env(extra: Record<string, string> = {}): Record<string, string> {
  return { ...localS3.env, PGHOST: cluster.host, PGPORT: String(cluster.port), PGUSER: cluster.user, ...extra };
}

function makeTarget(): string {
  const name = uniqueDatabaseName('rcli_target');
  psql(cluster, 'postgres', `CREATE DATABASE ${name}`);
  psql(cluster, name, 'CREATE TABLE keep_me (id int); INSERT INTO keep_me VALUES (1), (2), (3);');
  return name;
}

beforeAll(async () => {
  localS3 = await startLocalS3();
  s3 = createS3Client(localS3.env);
  source = uniqueDatabaseName('rcli_src');
  psql(cluster, 'postgres', `CREATE DATABASE ${source}`);
  psql(cluster, source, "CREATE TABLE company (id int PRIMARY KEY, name text); INSERT INTO company SELECT i, 'société ' || i FROM generate_series(1, 500) i;");
  sourceDigest = databaseDigest(cluster, source);
  manifestKey = (await writeFixtureBackup(s3, localS3.bucket, cluster, source, { tier: 'daily' })).manifestKey;
}, 120_000);

afterAll(async () => {
  await localS3?.stop();
});

describe('atmr-dr restore', () => {
  it('restores latest into a new database and prints the timings and the RTO', async () => {
    const target = uniqueDatabaseName('rcli_new');

    const run = await atmrDr(['restore', 'latest', '--target-db', target], env());

    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(new RegExp(`^restored ${manifestKey} \\(custom\\) into ${target}: 1 tables, 500 rows, row counts match the manifest$`, 'm'));
    expect(run.stdout).toMatch(/^download \d+\.\d s, restore \d+\.\d s, verify \d+\.\d s, swap \d+\.\d s; RTO \d+\.\d s$/m);
    expect(databaseDigest(cluster, target)).toBe(sourceDigest);
  });

  it('--format plain --json restores the SQL file and prints one JSON object', async () => {
    const target = uniqueDatabaseName('rcli_plain');

    const run = await atmrDr(['restore', manifestKey, '--target-db', target, '--format', 'plain', '--json'], env());

    expect(run.status).toBe(0);
    const result = JSON.parse(run.stdout);
    expect(result).toEqual(expect.objectContaining({ ok: true, targetDb: target, tablesRestored: 1, rowsRestored: 500, replaced: false }));
    expect(result.object.format).toBe('plain');
    expect(result.rtoSeconds).toBeGreaterThan(0);
    expect(databaseDigest(cluster, target)).toBe(sourceDigest);
  });

  it('--no-parallel-copy restores the custom archive through pg_restore alone, to the same content', async () => {
    const target = uniqueDatabaseName('rcli_nopc');

    const run = await atmrDr(['restore', manifestKey, '--target-db', target, '--no-parallel-copy', '--json'], env());

    expect(run.status).toBe(0);
    expect(JSON.parse(run.stdout)).toEqual(expect.objectContaining({ ok: true, targetDb: target, rowsRestored: 500 }));
    expect(databaseDigest(cluster, target)).toBe(sourceDigest);
  });

  it('refuses a non-empty target without --force, one line, exit 2, target untouched', async () => {
    const target = makeTarget();
    const before = databaseDigest(cluster, target);

    const run = await atmrDr(['restore', 'latest', '--target-db', target], env());

    expect(run.status).toBe(2);
    expect(run.stderr).toBe(`atmr-dr: target database "${target}" exists and is not empty (1 relations): pass --force to replace it, or restore into a new name\n`);
    expect(run.stdout).toBe('');
    expect(databaseDigest(cluster, target)).toBe(before);
  });

  it('refuses PGDATABASE (production) even with --force; the guard flag lets it through', async () => {
    const target = makeTarget();
    const before = databaseDigest(cluster, target);

    const refused = await atmrDr(['restore', 'latest', '--target-db', target, '--force'], env({ PGDATABASE: target }));
    expect(refused.status).toBe(2);
    expect(refused.stderr).toMatch(/^atmr-dr: refusing to restore over ".*", the production\/source database: .*--i-understand-this-overwrites-production with --force\n$/);
    expect(databaseDigest(cluster, target)).toBe(before);

    const allowed = await atmrDr(['restore', 'latest', '--target-db', target, '--force', '--i-understand-this-overwrites-production'], env({ PGDATABASE: target }));
    expect(allowed.stderr).toBe('');
    expect(allowed.status).toBe(0);
    expect(databaseDigest(cluster, target)).toBe(sourceDigest);
  });

  it('fails with one line when the server is unreachable, creating nothing', async () => {
    const target = uniqueDatabaseName('rcli_nohost');

    const run = await atmrDr(['restore', 'latest', '--target-db', target], env({ PGPORT: '1' }));

    expect(run.status).toBe(1);
    expect(run.stderr).toMatch(/^atmr-dr: cannot connect to postgres@127\.0\.0\.1:1\/postgres: .*check PGHOST\/PGPORT\/PGUSER\/PGPASSWORD.*\n$/);
    expect(databaseExists(cluster, target)).toBe(false);
  });

  it('requires --target-db', async () => {
    const run = await atmrDr(['restore', 'latest'], env());

    expect(run.status).not.toBe(0);
    expect(run.stderr).toMatch(/required option '--target-db <name>' not specified/);
  });
});

describe('atmr-dr restore-test', () => {
  it('--json prints one object with ok, rtoSeconds, rpoSeconds, tablesRestored and step timings, and drops the scratch database', async () => {
    const run = await atmrDr(['restore-test', '--json'], env({ PGDATABASE: source }));

    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    const report = JSON.parse(run.stdout);
    expect(report).toEqual(
      expect.objectContaining({ ok: true, tablesRestored: 2, canaryAbsent: true, scratchDropped: true, rtoObjectiveSeconds: 1800, rpoObjectiveSeconds: 900 }),
    );
    expect(report.rtoSeconds).toBeGreaterThan(0);
    expect(report.rpoSeconds).toBeGreaterThanOrEqual(0);
    expect(report.steps).toEqual(expect.objectContaining({ backupSeconds: expect.any(Number), restoreSeconds: expect.any(Number), cleanupSeconds: expect.any(Number) }));
    expect(report.criticalQueries.map((q: { status: string }) => q.status)).toEqual(['ok', 'skipped']);
    expect(databaseExists(cluster, report.scratchDatabase)).toBe(false);
  });

  it('exits 1 with the report and one line on stderr when a critical query fails; no scratch database left', async () => {
    const run = await atmrDr(['restore-test', '--json', '--critical-query', 'SELECT count(*) FROM company WHERE 1/0 = 1'], env({ PGDATABASE: source }));

    expect(run.status).toBe(1);
    expect(run.stderr).toMatch(/^atmr-dr: restore test failed: critical query failed on the restored copy: .*division by zero\n$/);
    const report = JSON.parse(run.stdout);
    expect(report.ok).toBe(false);
    expect(databaseExists(cluster, report.scratchDatabase)).toBe(false);
    expect(databasesLike(cluster, report.scratchDatabase)).toEqual([]);
  });
});
