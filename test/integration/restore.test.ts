import { DeleteObjectCommand, GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Client } from 'pg';
import { gunzipSync, gzipSync } from 'node:zlib';
import { runBackup } from '../../lambdas/backup/backup';
import { createS3Client } from '../../lambdas/shared/aws';
import type { OperatorError } from '../../lambdas/shared/errors';
import { formatBytes } from '../../lambdas/shared/format';
import { GUARD_READ_BOUND_MS, RESTORE_LOCK_KEY, Unsettled } from '../../lambdas/restore/session';
import { PgConnection } from '../../lambdas/shared/pg-connection';
import { listBackups, NoBackupError, resolveBackup } from '../../lambdas/restore/catalog';
import { RestoreDeps, restoreBackup, stagingName } from '../../lambdas/restore/restore';
import { GoodObject, verifyBackup } from '../../lambdas/restore/verify';
import { testCluster, uniqueDatabaseName, testClient } from '../support/cluster';
import { startCuttingProxy } from '../support/cutting-proxy';
import { startRefusingS3 } from '../support/refusing-s3';
import { writeFakePgRestore } from '../support/fake-pg-restore';
import { psql, startAgain, startPostgres, stopFast, stopPostgres } from '../support/postgres';
import { startResettingS3 } from '../support/resetting-s3';
import { LocalS3, startLocalS3 } from '../support/s3';
import { FIXTURE_SQL } from './backup-fixture';
import { databaseDigest, databaseExists, databasesLike, serverThatGoesAway, setAside, writeFixtureBackup } from '../lambdas/restore/fixtures';

const cluster = testCluster();
const connection: PgConnection = { host: cluster.host, port: cluster.port, user: cluster.user, database: 'postgres' };
let localS3: LocalS3;
let s3: S3Client;
let source: string;
let sourceDigest: string;
let manifestKey: string;

function deps(overrides: Partial<RestoreDeps> = {}): RestoreDeps {
  return { s3, bucket: localS3.bucket, connection, jobs: 2, ...overrides };
}

async function objectBytes(key: string): Promise<Buffer> {
  const response = await s3.send(new GetObjectCommand({ Bucket: localS3.bucket, Key: key }));
  return Buffer.from(await response.Body!.transformToByteArray());
}

async function putObject(key: string, body: Buffer | string): Promise<void> {
  await s3.send(new PutObjectCommand({ Bucket: localS3.bucket, Key: key, Body: body }));
}

/** `text` matched literally inside a RegExp. */
function literal(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** An existing, non-empty database that a refused restore must leave exactly as it was. */
function makeTarget(): string {
  const name = uniqueDatabaseName('restore_target');
  psql(cluster, 'postgres', `CREATE DATABASE ${name}`);
  psql(cluster, name, "CREATE TABLE keep_me (id int PRIMARY KEY, note text); INSERT INTO keep_me SELECT i, 'row ' || i FROM generate_series(1, 50) i;");
  return name;
}

/** A fresh backup of the source whose objects a test may damage without affecting the others. */
async function freshBackup(): Promise<{ manifestKey: string; custom: string; plain: string }> {
  const backup = await writeFixtureBackup(s3, localS3.bucket, cluster, source, { tier: 'hourly', startedAt: new Date(Date.now() - 1000 * Math.floor(Math.random() * 100000)) });
  const custom = backup.manifest.objects.find((o) => o.format === 'custom')!.key;
  const plain = backup.manifest.objects.find((o) => o.format === 'plain')!.key;
  return { manifestKey: backup.manifestKey, custom, plain };
}

/**
 * A fresh backup whose custom archive a newer pg_dump than any pg_restore made: its header's format
 * version (the bytes after "PGDMP": major, minor, revision) raised to 1.99, which no pg_restore
 * reads yet (pg_dump 17 writes 1.16, which pg_restore 16 and older refuse the same way), and its
 * manifest naming pg_dump 99.1, as the backup writes it. `local`: this machine's pg_restore version.
 */
async function newerPgDumpBackup(): Promise<{ backup: { manifestKey: string; custom: string; plain: string }; local: string }> {
  const backup = await freshBackup();
  const manifest = JSON.parse((await objectBytes(backup.manifestKey)).toString('utf8'));
  const archive = await objectBytes(backup.custom);
  expect(archive.subarray(0, 6).toString('latin1')).toBe('PGDMP\x01');
  archive[6] = 99;
  manifest.pgDumpVersion = '99.1';
  manifest.objects = manifest.objects.map((o: { format: string }) =>
    o.format === 'custom' ? { ...o, bytes: archive.length, sha256: createHash('sha256').update(archive).digest('hex') } : o,
  );
  await putObject(backup.custom, archive);
  await putObject(backup.manifestKey, JSON.stringify(manifest));
  const local = execFileSync('pg_restore', ['--version'], { encoding: 'utf8' }).match(/\(PostgreSQL\) (\d+\.\d+)/)![1];
  return { backup, local };
}

beforeAll(async () => {
  localS3 = await startLocalS3();
  s3 = createS3Client(localS3.env);
  source = uniqueDatabaseName('restore_src');
  psql(cluster, 'postgres', `CREATE DATABASE ${source}`);
  psql(cluster, source, FIXTURE_SQL);
  sourceDigest = databaseDigest(cluster, source);
  manifestKey = (await writeFixtureBackup(s3, localS3.bucket, cluster, source, { tier: 'daily' })).manifestKey;
}, 120_000);

afterAll(async () => {
  await localS3?.stop();
});

describe('restore round trip', () => {
  it('restores the custom dump into a new database with the same content digest and reports timings', async () => {
    const target = uniqueDatabaseName('restore_rt_custom');

    const result = await restoreBackup(deps(), { ref: manifestKey, targetDb: target });

    expect(result.object.format).toBe('custom');
    expect(result.replaced).toBe(false);
    expect(databaseDigest(cluster, target)).toBe(sourceDigest);
    expect(result.tablesRestored).toBeGreaterThanOrEqual(7); // leaf tables (a partitioned parent holds no rows)
    expect(result.rowsRestored).toBeGreaterThan(3000);
    expect(result.timings.downloadSeconds).toBeGreaterThan(0);
    expect(result.timings.restoreSeconds).toBeGreaterThan(0);
    // One step after the other: the RTO covers them all.
    const t = result.timings;
    expect(result.rtoSeconds).toBeGreaterThanOrEqual(t.downloadSeconds + t.restoreSeconds + t.verifySeconds + t.swapSeconds);
  });

  it("leaves the operator's time at the confirmation prompt out of the RTO", async () => {
    // Arrange: an operator who takes 3 s to type the database's name
    const target = uniqueDatabaseName('restore_rt_prompt');
    const confirm = () => new Promise<void>((resolve) => setTimeout(resolve, 3_000));
    const started = performance.now();

    // Act
    const result = await restoreBackup({ ...deps(), confirm }, { ref: manifestKey, targetDb: target });
    const wallSeconds = (performance.now() - started) / 1000;

    // Assert
    expect(wallSeconds - result.rtoSeconds).toBeGreaterThanOrEqual(2.9);
    const t = result.timings;
    expect(result.rtoSeconds).toBeGreaterThanOrEqual(t.downloadSeconds + t.restoreSeconds + t.verifySeconds + t.swapSeconds);
  });

  it('restores the plain .sql.gz with --format plain, through latest/<tier>.json, with the same digest', async () => {
    const target = uniqueDatabaseName('restore_rt_plain');

    const result = await restoreBackup(deps(), { ref: 'latest', tier: 'daily', database: source, targetDb: target, format: 'plain' });

    expect(result.manifestKey).toBe(manifestKey);
    expect(result.object.format).toBe('plain');
    expect(databaseDigest(cluster, target)).toBe(sourceDigest);
  });

  it('round-trips both formats of a backup made by the real write path (runBackup), digests equal', async () => {
    const backup = await runBackup({ s3, bucket: localS3.bucket, connection: { ...connection, database: source } }, { tier: 'monthly' });
    const customTarget = uniqueDatabaseName('restore_rb_custom');
    const plainTarget = uniqueDatabaseName('restore_rb_plain');

    const custom = await restoreBackup(deps(), { ref: backup.manifestKey, targetDb: customTarget });
    const plain = await restoreBackup(deps(), { ref: backup.manifestKey, targetDb: plainTarget, format: 'plain' });

    expect([custom.object.format, plain.object.format]).toEqual(['custom', 'plain']);
    expect(databaseDigest(cluster, customTarget)).toBe(sourceDigest);
    expect(databaseDigest(cluster, plainTarget)).toBe(sourceDigest);
    expect(custom.tablesRestored).toBe(backup.manifest.tables.length);
  });

  it('downloads in many small ranged parts, in parallel, reports progress, and still restores the same content', async () => {
    const target = uniqueDatabaseName('restore_rt_parts');
    const progress: number[] = [];
    const lines: string[] = [];

    const result = await restoreBackup(deps({ partBytes: 4096, downloadConcurrency: 3, onDownloadProgress: (bytes) => progress.push(bytes), log: (l) => lines.push(l) }), {
      ref: manifestKey,
      targetDb: target,
    });

    expect(progress.length).toBeGreaterThan(10);
    expect(progress.at(-1)).toBe(result.object.bytes);
    expect([...progress].sort((a, b) => a - b)).toEqual(progress);
    expect(lines.map((l) => l.split(':')[0])).toEqual(expect.arrayContaining(['download', 'load', 'check', 'swap']));
    // Its size as the progress meter shows it, not a raw byte count.
    expect(lines).toContain(`download: ${result.object.key} (${formatBytes(result.object.bytes)})`);
    expect(result.object.bytes).toBeGreaterThan(10 * 4096);
    expect(databaseDigest(cluster, target)).toBe(sourceDigest);
  });

  it('replaces a non-empty target with force and keeps what it held, rows written after the backup included, under the _old_ name it returns; DROP DATABASE of that name drops it', async () => {
    // Arrange: a row the backup does not hold (written after it), only in the target
    const target = makeTarget();
    psql(cluster, target, "INSERT INTO keep_me VALUES (51, 'written after the backup')");

    // Act
    const result = await restoreBackup(deps(), { ref: manifestKey, targetDb: target, force: true });

    // Assert: the restored copy in place, and beside it only the database it replaced, readable
    expect(result.replaced).toBe(true);
    expect(databaseDigest(cluster, target)).toBe(sourceDigest);
    expect(result.replacedKeptAs).toMatch(new RegExp(`^${target}_old_[0-9a-f]{8}_[0-9a-z]{10}$`));
    expect(databasesLike(cluster, `${target}_`)).toStrictEqual([result.replacedKeptAs]);
    expect(psql(cluster, result.replacedKeptAs!, 'SELECT note FROM keep_me WHERE id = 51')).toBe('written after the backup');
    psql(cluster, 'postgres', `DROP DATABASE "${result.replacedKeptAs}"`);
    expect(databasesLike(cluster, `${target}_`)).toEqual([]);
  });

  it('with dropReplaced, replaces a non-empty target and drops what it held, leaving nothing beside it; the copy in place is said before the drop', async () => {
    const target = makeTarget();
    const lines: string[] = [];

    const result = await restoreBackup(deps({ log: (line) => lines.push(line) }), { ref: manifestKey, targetDb: target, force: true, dropReplaced: true });

    // A run killed during the drop (minutes on a large database) has said the restored copy is in place.
    const old = `${target}_old_\\w+`;
    expect(lines.slice(lines.findIndex((line) => line.startsWith('swap: ')) + 1)).toEqual([
      `swap: the restored copy is in place as ${target}`,
      expect.stringMatching(new RegExp(`^swap: dropping (${old}), what ${target} was before this restore \\(if no "swap: dropped" line follows, it may have been dropped: look with SELECT datname FROM pg_database WHERE datname = '\\1'\\)$`)),
      expect.stringMatching(new RegExp(`^swap: dropped ${old}$`)),
      `restored ${manifestKey} into ${target}`,
    ]);
    expect(result.replaced).toBe(true);
    expect(result.replacedKeptAs).toBeNull();
    expect(result.replacedDropped).toBe(true);
    expect(databaseDigest(cluster, target)).toBe(sourceDigest);
    expect(databasesLike(cluster, `${target}_`)).toEqual([]);
  });

  it('a restore into a new name keeps nothing: replacedKeptAs is null', async () => {
    const target = uniqueDatabaseName('restore_rt_new');

    const result = await restoreBackup(deps(), { ref: manifestKey, targetDb: target });

    expect([result.replaced, result.replacedKeptAs]).toEqual([false, null]);
    expect(databasesLike(cluster, `${target}_`)).toEqual([]);
  });

  it('the next restore into the target names the copy an earlier one kept, as what the target was before that restore, with its DROP, and keeps it', async () => {
    // Arrange: a first restore over the target keeps what it held
    const target = makeTarget();
    const first = await restoreBackup(deps(), { ref: manifestKey, targetDb: target, force: true });
    const warnings: string[] = [];

    // Act
    const second = await restoreBackup(deps({ warn: (l) => warnings.push(l) }), { ref: manifestKey, targetDb: target, force: true });

    // Assert
    expect(warnings).toEqual([`"${first.replacedKeptAs}" holds what "${target}" was before an earlier restore replaced it (set aside ${setAside(first.replacedKeptAs!)}); left in place: when it is not needed, DROP DATABASE "${first.replacedKeptAs}"`]);
    expect(databasesLike(cluster, `${target}_`)).toStrictEqual([first.replacedKeptAs, second.replacedKeptAs]);
    expect(psql(cluster, first.replacedKeptAs!, 'SELECT count(*) FROM keep_me')).toBe('50');
  });

  it('terminates open sessions on the target when asked to, names them on one warning (kept in the result), and replaces it', async () => {
    const target = makeTarget();
    const session = testClient({ host: cluster.host, port: cluster.port, user: cluster.user, database: target, application_name: 'flask-api' });
    session.on('error', () => undefined);
    await session.connect();
    const { pid, address } = (await session.query<{ pid: number; address: string }>("SELECT pg_backend_pid() AS pid, CASE WHEN inet_client_port() IS NULL THEN 'local socket' ELSE host(inet_client_addr()) END AS address")).rows[0];
    const [lines, warned]: string[][] = [[], []];

    const result = await restoreBackup(deps({ log: (l) => lines.push(l), warn: (l) => warned.push(l) }), { ref: manifestKey, targetDb: target, force: true, terminateConnections: true });

    // A warning, not a progress line: who was cut off is said and kept whether or not the progress is shown.
    const ending = `swap: ending 1 session in ${target} (--terminate-connections): pid ${pid} flask-api as ${cluster.user} from ${address}`;
    expect(warned.filter((l) => l.includes('ending'))).toEqual([ending]);
    expect(result.warnings.filter((l) => l.includes('ending'))).toEqual([ending]);
    expect(lines.filter((l) => l.includes('ending'))).toEqual([]);
    expect(result.replaced).toBe(true);
    expect(databaseDigest(cluster, target)).toBe(sourceDigest);
    await expect(session.query('SELECT 1')).rejects.toThrow();
    await session.end().catch(() => undefined);
    // The swap closed the target before it renamed it aside: the copy kept is open again, to be read.
    expect(psql(cluster, 'postgres', `SELECT datallowconn FROM pg_database WHERE datname = '${result.replacedKeptAs}'`)).toBe('t');
    expect(psql(cluster, result.replacedKeptAs!, 'SELECT count(*) FROM keep_me')).toBe('50');
  });
});

describe('restore refusals leave the target untouched', () => {
  async function expectRefused(target: string, run: () => Promise<unknown>, message: RegExp): Promise<void> {
    const before = databaseDigest(cluster, target);

    const error = await run().then(
      () => undefined,
      (e: unknown) => e as Error,
    );

    expect(error?.name).toBe('OperatorError');
    expect(error?.message).toMatch(message);
    expect(error?.message).not.toMatch(/\n/);
    expect(databaseDigest(cluster, target)).toBe(before);
    expect(databasesLike(cluster, `${target}_`)).toEqual([]);
  }

  it('refuses a byte flipped in the stored object (sha256)', async () => {
    const backup = await freshBackup();
    const bytes = await objectBytes(backup.custom);
    bytes[Math.floor(bytes.length / 2)] ^= 0xff;
    await putObject(backup.custom, bytes);
    const target = makeTarget();

    const untouched = new RegExp(`sha256 .*corrupt.*; target "${target}" untouched$`);
    await expectRefused(target, () => restoreBackup(deps(), { ref: backup.manifestKey, targetDb: target, force: true }), untouched);
    await expectRefused(target, () => restoreBackup(deps({ partBytes: 4096 }), { ref: backup.manifestKey, targetDb: target, force: true }), untouched);
  }, 180_000);

  it('refuses a truncated object (size)', async () => {
    const backup = await freshBackup();
    const bytes = await objectBytes(backup.plain);
    await putObject(backup.plain, bytes.subarray(0, bytes.length - 100));
    const target = makeTarget();

    await expectRefused(
      target,
      () => restoreBackup(deps(), { ref: backup.manifestKey, targetDb: target, force: true, format: 'plain' }),
      /is \d+ bytes, the manifest says \d+: .*truncated/,
    );
    await expectRefused(
      target,
      () => restoreBackup(deps({ partBytes: 4096 }), { ref: backup.manifestKey, targetDb: target, force: true, format: 'plain' }),
      /is \d+ bytes, the manifest says \d+: .*truncated/,
    );
  });

  it('refuses a truncated custom archive before loading anything (size, from the ranged GETs)', async () => {
    const backup = await freshBackup();
    const bytes = await objectBytes(backup.custom);
    await putObject(backup.custom, bytes.subarray(0, bytes.length - 100));
    const target = makeTarget();

    await expectRefused(target, () => restoreBackup(deps(), { ref: backup.manifestKey, targetDb: target, force: true }), /is \d+ bytes, the manifest says \d+: .*truncated/);
  });

  it('refuses an object stored empty that the manifest says is not (its ranged GET answered 416, as S3 answers any range of an empty object) in one line saying it is 0 bytes, naming the key and the other copy; nothing left in the download directory', async () => {
    // Arrange: the custom archive stored as 0 bytes, its manifest unchanged; S3 answers a range of
    // an empty object 416 InvalidRange (s3rver answers 206 "bytes 0-0/0"), which the proxy does for
    // it; a download directory of the test's own
    const backup = await freshBackup();
    const manifest = JSON.parse((await objectBytes(backup.manifestKey)).toString('utf8')) as { objects: { key: string; bytes: number }[] };
    const bytes = manifest.objects.find((o) => o.key === backup.custom)!.bytes;
    await putObject(backup.custom, Buffer.alloc(0));
    const proxy = await startRefusingS3(localS3, (method, url) => method === 'GET' && decodeURIComponent(url.pathname) === `/${localS3.bucket}/${backup.custom}`, 416, 'InvalidRange');
    const target = makeTarget();
    const tempDir = fs.mkdtempSync(path.join(os.tmpdir(), 'atmr-dr-empty-object-'));
    const before = databaseDigest(cluster, target);

    try {
      // Act
      const error = await restoreBackup(deps({ s3: createS3Client({ ...localS3.env, AWS_ENDPOINT_URL_S3: proxy.endpoint }), tempDir }), { ref: backup.manifestKey, targetDb: target, force: true }).then(
        () => undefined,
        (e: unknown) => e as OperatorError,
      );

      // Assert
      expect(bytes).toBeGreaterThan(0);
      expect(error?.message).toBe(
        `object ${backup.custom} is 0 bytes, the manifest says ${bytes}: the stored object is truncated or altered; restore this backup only with --format plain, or choose another backup (npx --no atmr-dr backups list); target "${target}" untouched`,
      );
      expect(error?.exitCode).toBe(1);
      expect(fs.readdirSync(tempDir)).toEqual([]);
      expect(databaseDigest(cluster, target)).toBe(before);
      expect(databasesLike(cluster, `${target}_`)).toEqual([]);
    } finally {
      await proxy.stop();
      fs.rmSync(tempDir, { recursive: true, force: true });
    }
  });

  it('reports pg_restore failing during the load (object intact), and drops the staging database', async () => {
    // Arrange: a pg_restore whose pre-data run loads the schema, and whose data run dies with an error
    const binDir = writeFakePgRestore(
      fs.mkdtempSync(path.join(os.tmpdir(), 'atmr-dr-failing-pg-restore-')),
      'case " $* " in *" --section=pre-data "*) exec "$real" "$@";; esac\necho "pg_restore: error: simulated load failure" >&2\nexit 1\n',
    );
    const target = makeTarget();

    // Act / Assert
    await expectRefused(
      target,
      () => restoreBackup(deps({ pgBinDir: binDir }), { ref: manifestKey, targetDb: target, force: true }),
      /^pg_restore failed \(exit 1\): pg_restore: error: simulated load failure; the target was not touched$/,
    );
    expect(psql(cluster, 'postgres', `SELECT count(*) FROM pg_stat_activity WHERE datname LIKE '${target}_%'`)).toBe('0');
    fs.rmSync(binDir, { recursive: true, force: true });
  });

  it('a connection the server refuses for a password mid-load is quoted as the load\'s failure, not called the server gone', async () => {
    // Arrange: a pg_restore whose pre-data run loads the schema, and whose data run's connection is
    // refused as libpq words a wrong password (the test cluster trusts every connection)
    const binDir = writeFakePgRestore(
      fs.mkdtempSync(path.join(os.tmpdir(), 'atmr-dr-password-pg-restore-')),
      'case " $* " in *" --section=pre-data "*) exec "$real" "$@";; esac\necho "pg_restore: error: connection to server at \\"$PGHOST\\", port $PGPORT failed: FATAL:  password authentication failed for user \\"$PGUSER\\"" >&2\nexit 1\n',
    );
    const target = makeTarget();

    try {
      // Act / Assert
      await expectRefused(
        target,
        () => restoreBackup(deps({ pgBinDir: binDir }), { ref: manifestKey, targetDb: target, force: true }),
        new RegExp(`^pg_restore failed \\(exit 1\\): pg_restore: error: connection to server at "127\\.0\\.0\\.1", port ${cluster.port} failed: FATAL: password authentication failed for user "${cluster.user}"; the target was not touched$`),
      );
    } finally {
      fs.rmSync(binDir, { recursive: true, force: true });
    }
  });

  it('a staging database dropped mid-load is quoted as the load\'s failure (the database does not exist), not called the server gone', async () => {
    // Arrange: a pg_restore whose pre-data run loads the schema, and whose data run drops its staging
    // database, then runs the real pg_restore against it: libpq's own refusal
    const binDir = writeFakePgRestore(
      fs.mkdtempSync(path.join(os.tmpdir(), 'atmr-dr-dropped-pg-restore-')),
      [
        'case " $* " in *" --section=pre-data "*) exec "$real" "$@";; esac',
        'prev=; for a in "$@"; do [ "$prev" = -d ] && db="$a"; prev="$a"; done',
        '"$(dirname "$real")/psql" -X -q -d postgres -c "DROP DATABASE \\"$db\\" WITH (FORCE)" >/dev/null || exit 3',
        'exec "$real" "$@"',
        '',
      ].join('\n'),
    );
    const target = makeTarget();

    try {
      // Act / Assert
      await expectRefused(
        target,
        () => restoreBackup(deps({ pgBinDir: binDir }), { ref: manifestKey, targetDb: target, force: true }),
        new RegExp(`^pg_restore failed \\(exit 1\\): pg_restore: error: connection to server at "127\\.0\\.0\\.1", port ${cluster.port} failed: FATAL: database "${target}_restore_\\w+" does not exist; the target was not touched$`),
      );
    } finally {
      fs.rmSync(binDir, { recursive: true, force: true });
    }
  });

  it('refuses a manifest naming a missing object', async () => {
    const backup = await freshBackup();
    await s3.send(new DeleteObjectCommand({ Bucket: localS3.bucket, Key: backup.custom }));
    const target = makeTarget();

    await expectRefused(target, () => restoreBackup(deps(), { ref: backup.manifestKey, targetDb: target, force: true }), /named by the manifest is missing/);
  });

  it('refuses a second restore into a target that another restore holds, exit 3, naming its session; nothing created', async () => {
    // Arrange: another operator's restore into the same target holds its lock
    const target = makeTarget();
    const other = testClient({ host: cluster.host, port: cluster.port, user: cluster.user, database: 'postgres' });
    await other.connect();
    try {
      await other.query('SELECT pg_advisory_lock($1, hashtext($2))', [RESTORE_LOCK_KEY, target]);
      const otherPid = (await other.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0].pid;

      // Act / Assert
      await expectRefused(
        target,
        () => restoreBackup(deps(), { ref: manifestKey, targetDb: target, force: true }),
        new RegExp(`^another restore into "${target}" is running \\(its session ${otherPid} from 127\\.0\\.0\\.1, since [^)]+\\): wait for it to end \\(or stop it\\), then check "${target}" before restoring again; nothing was done$`),
      );
      const error = await restoreBackup(deps(), { ref: manifestKey, targetDb: target, force: true }).catch((e: unknown) => e as OperatorError);
      expect((error as OperatorError).exitCode).toBe(3);

      // Once the other restore ends, this one goes through.
      await other.query('SELECT pg_advisory_unlock_all()');
      await restoreBackup(deps(), { ref: manifestKey, targetDb: target, force: true });
      expect(databaseDigest(cluster, target)).toBe(sourceDigest);
    } finally {
      await other.end();
    }
  });

  it('goes on when the server drops its session during the download (a restart, a failover): reconnects, takes the lock again, restores', async () => {
    // Arrange: kill the restore's own session (the holder of the target's lock) as the download begins
    // (its free-space check), and let the download go on once the server has ended it
    const target = uniqueDatabaseName('restore_reconnect');
    const watcher = testClient({ host: cluster.host, port: cluster.port, user: cluster.user, database: 'postgres' });
    await watcher.connect();
    let killed: Promise<number> | undefined;
    const killRestoreSession = (): Promise<number> =>
      watcher
        .query<{ n: number }>(
          `SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_locks
            WHERE locktype = 'advisory' AND granted AND classid = $1::int::oid AND objid = hashtext($2)::oid AND objsubid = 2`,
          [RESTORE_LOCK_KEY, target],
        )
        .then((r) => r.rows[0].n);
    try {
      // Act
      const statfs = async (dir: string) => {
        killed = killRestoreSession();
        await killed;
        while ((await watcher.query("SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND classid = $1::int::oid AND objid = hashtext($2)::oid", [RESTORE_LOCK_KEY, target])).rowCount !== 0) {
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        return fs.promises.statfs(dir);
      };
      const result = await restoreBackup(deps({ statfs }), { ref: manifestKey, targetDb: target });

      // Assert: the session was killed, and the restore still ended with the right data
      expect(await killed).toBe(1);
      expect(result.targetDb).toBe(target);
      expect(databaseDigest(cluster, target)).toBe(sourceDigest);
    } finally {
      await watcher.end();
    }
  });

  it('a session that cannot connect again after its connection was lost (its lock unanswered), before the load: the line says nothing was created and the target is untouched', async () => {
    // Arrange: the lock of the session's second connection never reaches the server; the restore's
    // session is killed as the download begins (its free-space check), so the next read reconnects
    const target = makeTarget();
    const proxy = await startCuttingProxy({ host: cluster.host, port: cluster.port }, /pg_try_advisory_lock/, { silence: true, pass: 1 });
    const watcher = testClient({ host: cluster.host, port: cluster.port, user: cluster.user, database: 'postgres' });
    await watcher.connect();
    const statfs = async (dir: string) => {
      await watcher.query(
        `SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = $1::int::oid AND objid = hashtext($2)::oid AND objsubid = 2`,
        [RESTORE_LOCK_KEY, target],
      );
      while ((await watcher.query("SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND classid = $1::int::oid AND objid = hashtext($2)::oid", [RESTORE_LOCK_KEY, target])).rowCount !== 0) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      return fs.promises.statfs(dir);
    };
    try {
      // Act
      const error = await restoreBackup(deps({ connection: { ...connection, port: proxy.port }, statfs }), { ref: manifestKey, targetDb: target, force: true }).then(
        () => undefined,
        (e: unknown) => e as OperatorError,
      );

      // Assert
      expect(proxy.cut).toMatch(/pg_try_advisory_lock/);
      expect(error?.message).toMatch(
        new RegExp(`^cannot connect the restore's session to "postgres" again \\(its connection was lost\\): .+; no staging database was created; target "${target}" untouched$`),
      );
      expect(error?.exitCode).toBe(1);
      expect(databasesLike(cluster, `${target}_`)).toEqual([]);
      expect(psql(cluster, target, 'SELECT count(*) FROM keep_me')).toBe('50');
    } finally {
      await watcher.end();
      await proxy.stop();
      psql(cluster, 'postgres', `DROP DATABASE IF EXISTS ${target} WITH (FORCE)`);
    }
  }, 60_000);

  it.each([
    ['who owns the target, over which the restore goes', true, /AS owner FROM pg_database/, (target: string) => `the read of who owns "${target}" (pg_database)`],
    ["whether the role may give a new name the backed-up database's owner", false, /AS may/, () => `the read of whether the role may give a database to "${cluster.user}" (pg_roles)`],
  ])('the read of %s, after the download and before the staging database is created, unanswered: one line naming it, nothing created, exit 1', async (_read, existing, statement, what) => {
    // Arrange: the proxy lets every statement through until that read, which and everything after
    // it on that connection never reach the server (a failover half done, a network that drops the packets)
    const target = existing ? makeTarget() : uniqueDatabaseName('owner_unanswered');
    const proxy = await startCuttingProxy({ host: cluster.host, port: cluster.port }, statement, { silence: true });
    try {
      const started = Date.now();

      // Act
      const error = await restoreBackup(deps({ connection: { ...connection, port: proxy.port } }), { ref: manifestKey, targetDb: target, force: true }).then(
        () => undefined,
        (e: unknown) => e as OperatorError,
      );
      const seconds = (Date.now() - started) / 1000;

      // Assert
      expect(proxy.cut).toMatch(statement);
      expect(error?.message).toMatch(
        new RegExp(
          `^cannot read which role is to own the staging database \\w+_restore_\\w+: ${literal(what(target))} got no answer within ${GUARD_READ_BOUND_MS / 1000} s ` +
            literal(`(the server accepts connections but does not answer: a failover in progress, a network that drops the packets, a server overloaded): check that it answers (psql -c 'SELECT 1'), then rerun the restore; nothing was created: target "${target}" untouched`) +
            '$',
        ),
      );
      expect(error?.exitCode).toBe(1);
      expect(seconds).toBeGreaterThanOrEqual(GUARD_READ_BOUND_MS / 1000 - 1);
      expect(seconds).toBeLessThan(GUARD_READ_BOUND_MS / 1000 + 30);
      expect(databasesLike(cluster, `${target}_`)).toEqual([]);
      if (existing) expect(psql(cluster, target, 'SELECT count(*) FROM keep_me')).toBe('50');
      else expect(databaseExists(cluster, target)).toBe(false);
    } finally {
      await proxy.stop();
      psql(cluster, 'postgres', `DROP DATABASE IF EXISTS ${target} WITH (FORCE)`);
    }
  }, 90_000);

  it('another restore that takes the lock while the session is lost after the staging database was created: the line names that restore, exit 3, and says the staging database is left with its DROP, not that nothing was done', async () => {
    // Arrange: as the load begins, the server ends the restore's session and another restore's
    // session takes the target's lock; the restore's next statement (the properties) connects again
    const target = makeTarget();
    const watcher = testClient(connection);
    const rival = testClient(connection);
    await watcher.connect();
    await rival.connect();
    const rivalPid = (await rival.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0].pid;
    let staged: { name: string; drop: string } | undefined;
    let raced: Promise<unknown> | undefined;
    const onLoad = (): (() => void) => {
      raced = watcher
        .query(`SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = $1::int::oid AND objid = hashtext($2)::oid AND objsubid = 2`, [RESTORE_LOCK_KEY, target])
        .then(() => rival.query('SELECT pg_advisory_lock($1, hashtext($2))', [RESTORE_LOCK_KEY, target]));
      return () => undefined;
    };
    // The session's lock, connecting again, is sent once the other restore holds it.
    const query = Client.prototype.query as (...a: unknown[]) => Promise<unknown>;
    const spy = jest.spyOn(Client.prototype, 'query').mockImplementation(function (this: Client, ...args: unknown[]) {
      const text = (args[0] as { text?: string })?.text ?? '';
      if (raced === undefined || !text.includes('pg_try_advisory_lock')) return query.apply(this, args) as never;
      return raced.then(() => query.apply(this, args)) as never;
    });
    try {
      // Act
      const error = await restoreBackup(deps({ onStaging: (name, drop) => (staged = { name, drop }), onLoad }), { ref: manifestKey, targetDb: target, force: true }).then(
        () => undefined,
        (e: unknown) => e as OperatorError,
      );
      spy.mockRestore();

      // Assert
      expect(staged).toBeDefined();
      expect(error?.message).toMatch(
        new RegExp(
          `^another restore into "${target}" is running \\(its session ${rivalPid} from 127\\.0\\.0\\.1, since [^)]+\\): wait for it to end \\(or stop it\\), then check "${target}" before restoring again; ` +
            literal(`could not drop staging database ${staged?.name} (the same error): drop it with ${staged?.drop}; target "${target}" untouched`) +
            '$',
        ),
      );
      expect(error?.exitCode).toBe(3);
      expect(databasesLike(cluster, `${target}_`)).toEqual([staged?.name]);
      expect(psql(cluster, target, 'SELECT count(*) FROM keep_me')).toBe('50');
    } finally {
      spy.mockRestore();
      await rival.end();
      await watcher.end();
      if (staged) psql(cluster, 'postgres', `DROP DATABASE IF EXISTS "${staged.name}" WITH (FORCE)`);
      psql(cluster, 'postgres', `DROP DATABASE IF EXISTS ${target} WITH (FORCE)`);
    }
  });

  it('refuses a target with open connections', async () => {
    const target = makeTarget();
    const session = testClient({ host: cluster.host, port: cluster.port, user: cluster.user, database: target, application_name: 'flask-api' });
    await session.connect();
    try {
      await expectRefused(target, () => restoreBackup(deps(), { ref: manifestKey, targetDb: target, force: true }), new RegExp(`has 1 open connection\\(s\\) \\(pid \\d+ flask-api as ${cluster.user} from \\S+( socket)?\\)`));
    } finally {
      await session.end();
    }
  });

  /**
   * A restore into a non-empty target that a worker connects to while the backup loads, refused at
   * the swap (answered no when `answer` is given): the error, the target's digest before, and the
   * restore's warnings.
   */
  async function refusedAtSwap(target: string, session: Client, answer?: boolean): Promise<{ error: OperatorError; asked: [string, number][] }> {
    let connecting: Promise<unknown> | undefined;
    const log = (line: string): void => {
      if (line.startsWith('load:')) connecting ??= session.connect();
    };
    const asked: [string, number][] = [];
    const askEndSessions =
      answer === undefined
        ? undefined
        : async (who: string, count: number): Promise<boolean> => {
            asked.push([who, count]);
            return answer;
          };
    const error = await restoreBackup(deps({ log, askEndSessions }), { ref: manifestKey, targetDb: target, force: true })
      .then(
        () => undefined,
        (e: unknown) => e as OperatorError,
      )
      .finally(() => connecting);
    return { error: error!, asked };
  }

  /** The refusal at the swap, with the staging database it kept and the statements that put it in place. */
  function keptAtSwap(target: string): RegExp {
    const t = literal(target);
    return new RegExp(
      `^target database "${t}" has 1 open connection\\(s\\) \\(pid \\d+ celery as \\S+ from \\S+( socket)?\\): .* \\(found at swap time, after the load: the restored copy, loaded and its row counts checked, is kept as "(${t}_restore_\\w+)", not swapped in: to put it in place, connected to another database \\(psql -d postgres\\), (ALTER DATABASE "${t}" ALLOW_CONNECTIONS false; .*; ALTER DATABASE "\\2" RENAME TO "${t}"; COMMENT ON DATABASE "${t}" IS NULL); or rerun with --terminate-connections \\(a new download and load\\); if it is not wanted, DROP DATABASE "\\2" WITH \\(FORCE\\)\\)$`,
    );
  }

  it('a session that connects during the load is refused at swap time (exit 3), the checked copy kept, not dropped, with the statements that put it in place; run, they do', async () => {
    // Arrange
    const target = makeTarget();
    const before = databaseDigest(cluster, target);
    const session = testClient({ host: cluster.host, port: cluster.port, user: cluster.user, database: target, application_name: 'celery' });
    try {
      // Act
      const { error } = await refusedAtSwap(target, session);

      // Assert: the target as it was, the copy kept under its staging name
      expect(error.name).toBe('OperatorError');
      expect(error.exitCode).toBe(3);
      const [, , staging, statements] = keptAtSwap(target).exec(error.message) ?? [];
      expect(error.message).toMatch(keptAtSwap(target));
      expect(databaseDigest(cluster, target)).toBe(before);
      expect(databasesLike(cluster, `${target}_`)).toEqual([staging]);
      expect(databaseDigest(cluster, staging)).toBe(sourceDigest);

      // Act: the statements as printed, one at a time
      for (const statement of statements.split('; ')) psql(cluster, 'postgres', `${statement};`);

      // Assert: the checked copy is the target, its comment as the target's was; the target's data aside
      expect(databaseDigest(cluster, target)).toBe(sourceDigest);
      expect(psql(cluster, 'postgres', `SELECT coalesce(shobj_description(oid, 'pg_database'), 'none') FROM pg_database WHERE datname = '${target}'`)).toBe('none');
      const aside = databasesLike(cluster, `${target}_`);
      expect(aside).toEqual([expect.stringContaining(`${target}_old_`)]);
      // Closed to connections, as the target was when set aside: reopened to be read.
      psql(cluster, 'postgres', `ALTER DATABASE "${aside[0]}" ALLOW_CONNECTIONS true`);
      expect(databaseDigest(cluster, aside[0])).toBe(before);
    } finally {
      // Ended by the statements' pg_terminate_backend when they ran.
      await session.end().catch(() => undefined);
    }
  }, 180_000);

  it('a session that connects during the load, asked about at the swap and answered no: refused as without the question (exit 3), the checked copy kept; the next restore names it as a checked copy of that backup, complete, not swapped in', async () => {
    // Arrange: a worker reconnects to the target while the backup loads
    const target = makeTarget();
    const before = databaseDigest(cluster, target);
    const session = testClient({ host: cluster.host, port: cluster.port, user: cluster.user, database: target, application_name: 'celery' });
    let staging: string | undefined;
    try {
      // Act
      const { error, asked } = await refusedAtSwap(target, session, false);

      // Assert
      expect(error.exitCode).toBe(3);
      expect(error.message).toMatch(keptAtSwap(target));
      staging = keptAtSwap(target).exec(error.message)?.[2];
      expect(asked).toEqual([[expect.stringMatching(/^pid \d+ celery as /), 1]]);
      await expect(session.query('SELECT 1')).resolves.toBeDefined();
      expect(databaseDigest(cluster, target)).toBe(before);
    } finally {
      await session.end();
    }
    const warnings: string[] = [];

    // Act: the next restore into the target, its client gone
    await restoreBackup(deps({ warn: (line) => warnings.push(line) }), { ref: manifestKey, targetDb: target, force: true });

    // Assert
    expect(warnings).toContain(
      `"${staging}" is a checked copy of backup ${manifestKey}, complete, not swapped in (kept by an earlier restore into "${target}" refused at its swap) (no session is connected to it); left in place: when it is not needed, DROP DATABASE "${staging}"`,
    );
  }, 180_000);

  it('a session that connects during the load, asked about at the swap and answered yes: ended, named on the warning, and the restored copy swapped in', async () => {
    // Arrange: a worker reconnects to the target while the backup loads
    const target = makeTarget();
    const session = testClient({ host: cluster.host, port: cluster.port, user: cluster.user, database: target, application_name: 'celery' });
    session.on('error', () => undefined);
    let connecting: Promise<unknown> | undefined;
    const log = (line: string): void => {
      if (line.startsWith('load:')) connecting ??= session.connect();
    };
    const asked: [string, number][] = [];
    const warned: string[] = [];
    const askEndSessions = async (who: string, count: number): Promise<boolean> => {
      asked.push([who, count]);
      return true;
    };

    // Act
    const result = await restoreBackup(deps({ log, warn: (l) => warned.push(l), askEndSessions }), { ref: manifestKey, targetDb: target, force: true }).finally(() => connecting);

    // Assert
    expect(asked).toEqual([[expect.stringMatching(/^pid \d+ celery as /), 1]]);
    expect(warned).toContain(`swap: ending 1 session in ${target} (answered yes at the question): ${asked[0][0]}`);
    expect(result.replaced).toBe(true);
    expect(databaseDigest(cluster, target)).toBe(sourceDigest);
    await expect(session.query('SELECT 1')).rejects.toThrow();
    await session.end().catch(() => undefined);
    // Closed for the swap, as with --terminate-connections: the copy kept is open again, to be read.
    expect(psql(cluster, 'postgres', `SELECT datallowconn FROM pg_database WHERE datname = '${result.replacedKeptAs}'`)).toBe('t');
  });

  it("leaves the operator's time at the swap question out of the RTO and of the swap's seconds", async () => {
    // Arrange: a worker reconnects to the target while the backup loads; the operator takes 3 s to answer yes
    const target = makeTarget();
    const session = testClient({ host: cluster.host, port: cluster.port, user: cluster.user, database: target, application_name: 'celery' });
    session.on('error', () => undefined);
    let connecting: Promise<unknown> | undefined;
    const log = (line: string): void => {
      if (line.startsWith('load:')) connecting ??= session.connect();
    };
    const askEndSessions = () => new Promise<boolean>((resolve) => setTimeout(() => resolve(true), 3_000));
    const started = performance.now();

    // Act
    const result = await restoreBackup(deps({ log, askEndSessions }), { ref: manifestKey, targetDb: target, force: true }).finally(() => connecting);
    const wallSeconds = (performance.now() - started) / 1000;

    // Assert
    await session.end().catch(() => undefined);
    expect(result.replaced).toBe(true);
    expect(wallSeconds - result.rtoSeconds).toBeGreaterThanOrEqual(2.9);
    expect(result.timings.swapSeconds).toBeLessThan(2.9);
    const t = result.timings;
    expect(result.rtoSeconds).toBeGreaterThanOrEqual(t.downloadSeconds + t.restoreSeconds + t.verifySeconds + t.swapSeconds);
  });

  it('a session that connects while the swap question waits for its answer is named on the warning too: the target is read again after the yes', async () => {
    // Arrange: a worker reconnects during the load; a second one while the operator reads the question
    const target = makeTarget();
    const worker = testClient({ host: cluster.host, port: cluster.port, user: cluster.user, database: target, application_name: 'celery' });
    const late = testClient({ host: cluster.host, port: cluster.port, user: cluster.user, database: target, application_name: 'atmr-api' });
    worker.on('error', () => undefined);
    late.on('error', () => undefined);
    let connecting: Promise<unknown> | undefined;
    const log = (line: string): void => {
      if (line.startsWith('load:')) connecting ??= worker.connect();
    };
    const warned: string[] = [];
    const askEndSessions = async (): Promise<boolean> => {
      await late.connect();
      return true;
    };

    // Act
    const result = await restoreBackup(deps({ log, warn: (l) => warned.push(l), askEndSessions }), { ref: manifestKey, targetDb: target, force: true }).finally(() => connecting);

    // Assert
    expect(warned).toContainEqual(expect.stringMatching(new RegExp(`^swap: ending 2 sessions in ${target} \\(answered yes at the question\\): pid \\d+ (celery|atmr-api) as .*, pid \\d+ (celery|atmr-api) as `)));
    expect(warned.join('\n')).toContain('atmr-api');
    expect(result.replaced).toBe(true);
    expect(databaseDigest(cluster, target)).toBe(sourceDigest);
    await worker.end().catch(() => undefined);
    await late.end().catch(() => undefined);
  });

  it('a target without sessions at the swap is not asked about', async () => {
    const target = makeTarget();
    const askEndSessions = (): Promise<boolean> => Promise.reject(new Error('asked with no session in the target'));

    const result = await restoreBackup(deps({ askEndSessions }), { ref: manifestKey, targetDb: target, force: true });

    expect(result.replaced).toBe(true);
  });

  it('a rename refused at swap time (exit 1) says the restored copy was not swapped in and the target is untouched, and logs the staging drop before it waits', async () => {
    // Arrange: a session in the staging database from the start of the load: the swap's rename refuses it
    const target = uniqueDatabaseName('swap_refused');
    let session: Client | undefined;
    let connecting: Promise<unknown> | undefined;
    const lines: string[] = [];
    const log = (line: string): void => {
      lines.push(line);
      const staging = /^load: .+ into staging database (\S+)$/.exec(line)?.[1];
      if (staging) {
        session = testClient({ host: cluster.host, port: cluster.port, user: cluster.user, database: staging });
        session.on('error', () => undefined);
        connecting = session.connect();
      }
    };

    // Act
    const error = await restoreBackup(deps({ log }), { ref: manifestKey, targetDb: target }).then(
      () => undefined,
      (e: unknown) => e as OperatorError,
    );
    await connecting;
    await session?.end().catch(() => undefined);

    // Assert
    expect(error?.exitCode).toBe(1);
    expect(error?.message).toMatch(
      new RegExp(`^swap failed after the load: cannot rename the restored database to "${target}" \\(.*being accessed by other users.*\\); target "${target}" untouched; the restored copy was not swapped in, staging database ${target}_restore_\\w+ dropped$`),
    );
    const dropping = lines.findIndex((l) => /^dropping staging database \S+ \.\.\.$/.test(l));
    expect(dropping).toBeGreaterThan(-1);
    expect(lines[dropping + 1]).toMatch(/^staging database \S+ dropped$/);
    expect(databaseExists(cluster, target)).toBe(false);
    expect(databasesLike(cluster, `${target}_`)).toEqual([]);
  });

  it('an interrupt that arrives while the swap fails reports the state the swap left the target in, not a blanket "untouched" (exit 130)', async () => {
    // Arrange: an existing target (renamed aside by the swap), a session in the staging database
    // that makes the swap's second rename fail, and Ctrl-C pressed as the swap renames the target
    // aside (one pressed before the swap's first change stops it there: the next test)
    const target = makeTarget();
    const interrupt = new AbortController();
    let session: Client | undefined;
    let connecting: Promise<unknown> | undefined;
    const log = (line: string): void => {
      const staging = /^load: .+ into staging database (\S+)$/.exec(line)?.[1];
      if (staging) {
        session = testClient({ host: cluster.host, port: cluster.port, user: cluster.user, database: staging });
        session.on('error', () => undefined);
        connecting = session.connect();
      }
    };

    // Act
    const error = await restoreBackup({ ...deps({ log }), onSwapAside: () => interrupt.abort(new Error('SIGINT')) }, { ref: manifestKey, targetDb: target, force: true, signal: interrupt.signal }).then(
      () => undefined,
      (e: unknown) => e as OperatorError,
    );
    await connecting;
    await session?.end().catch(() => undefined);

    // Assert: the swap's own account (the previous database put back), then the cleanup
    expect(error?.exitCode).toBe(130);
    expect(error?.message).toMatch(
      new RegExp(
        `^restore interrupted \\(SIGINT\\) during the swap, which failed: cannot rename the restored database to "${target}" \\(.*being accessed by other users.*\\); the previous database was put back, target "${target}" untouched; the restored copy was not swapped in, staging database ${target}_restore_\\w+ dropped$`,
      ),
    );
    expect(psql(cluster, target, 'SELECT count(*) FROM keep_me')).toBe('50');
    expect(databasesLike(cluster, `${target}_`)).toEqual([]);
  });

  it('an interrupt that arrives as the swap starts, before its first change, stops it there: staging dropped, the target untouched (exit 130)', async () => {
    // Arrange: Ctrl-C pressed as the swap starts (its guards run again first)
    const target = makeTarget();
    const interrupt = new AbortController();
    const log = (line: string): void => {
      if (line.startsWith('swap: ')) interrupt.abort(new Error('SIGINT'));
    };

    // Act
    const error = await restoreBackup(deps({ log }), { ref: manifestKey, targetDb: target, force: true, signal: interrupt.signal }).then(
      () => undefined,
      (e: unknown) => e as OperatorError,
    );

    // Assert
    expect(error?.exitCode).toBe(130);
    expect(error?.message).toMatch(new RegExp(`^restore interrupted \\(SIGINT\\): staging database ${target}_restore_\\w+ dropped; target "${target}" untouched$`));
    expect(psql(cluster, target, 'SELECT count(*) FROM keep_me')).toBe('50');
    expect(databasesLike(cluster, `${target}_`)).toEqual([]);
  });

  it('refuses when the temp directory has too little free space, before downloading', async () => {
    const target = makeTarget();
    const tinyDisk = async () => ({ bavail: 10, bsize: 4096 });

    await expectRefused(target, () => restoreBackup(deps({ statfs: tinyDisk }), { ref: manifestKey, targetDb: target, force: true }), /not enough space in .*40\.0 KiB free/);
  });

  it('refuses a non-empty target without force', async () => {
    const target = makeTarget();

    await expectRefused(target, () => restoreBackup(deps(), { ref: manifestKey, targetDb: target }), /exists and is not empty .*--force/);
  });

  it('refuses the production database name even with force, unless the guard flag is given', async () => {
    const target = makeTarget();

    await expectRefused(
      target,
      () => restoreBackup(deps(), { ref: manifestKey, targetDb: target, force: true, protectedDatabases: [target] }),
      /production\/source database.*--i-understand-this-overwrites-production/,
    );
    const allowed = await restoreBackup(deps(), { ref: manifestKey, targetDb: target, force: true, protectedDatabases: [target], allowProductionOverwrite: true });
    expect(allowed.replaced).toBe(true);
  });

  it('refuses the database the backup was taken from (the manifest database) without the guard', async () => {
    const before = databaseDigest(cluster, source);

    await expect(restoreBackup(deps(), { ref: manifestKey, targetDb: source, force: true })).rejects.toThrow(/production\/source database/);
    expect(databaseDigest(cluster, source)).toBe(before);
  });

  it('fails naming the table when restored row counts differ from the manifest', async () => {
    const backup = await freshBackup();
    const manifest = JSON.parse((await objectBytes(backup.manifestKey)).toString('utf8'));
    const rides = manifest.tables.find((t: { name: string }) => t.name === 'rides');
    rides.rows += 1;
    await putObject(backup.manifestKey, JSON.stringify(manifest));
    const target = makeTarget();

    await expectRefused(target, () => restoreBackup(deps(), { ref: backup.manifestKey, targetDb: target, force: true }), /public\.rides has 2000 rows, manifest 2001/);
  });

  it('refuses an archive pg_restore cannot read (its sha256 the manifest\'s) before the load, creating nothing, with the other format to restore', async () => {
    const backup = await freshBackup();
    const manifest = JSON.parse((await objectBytes(backup.manifestKey)).toString('utf8'));
    const garbage = Buffer.from('PGDMP this is not an archive');
    manifest.objects = manifest.objects.map((o: { format: string }) =>
      o.format === 'custom' ? { ...o, bytes: garbage.length, sha256: createHash('sha256').update(garbage).digest('hex') } : o,
    );
    await putObject(backup.custom, garbage);
    await putObject(backup.manifestKey, JSON.stringify(manifest));
    const target = makeTarget();

    await expectRefused(
      target,
      () => restoreBackup(deps(), { ref: backup.manifestKey, targetDb: target, force: true }),
      new RegExp(
        `^pg_restore cannot read \\S+\\.dump \\(exit 1\\): pg_restore: error: .+; nothing was created, target "${target}" untouched; restore this backup only with --format plain, or choose another backup \\(npx --no atmr-dr backups list\\)$`,
      ),
    );
  });

  it('refuses an archive of a newer pg_dump than the local pg_restore before the load, exit 2, naming both versions and the pg_restore to use, not the backup', async () => {
    // Arrange
    const { backup, local } = await newerPgDumpBackup();
    const target = makeTarget();
    const staged: string[] = [];
    let exitCode: number | undefined;

    // Act / Assert
    await expectRefused(
      target,
      () =>
        restoreBackup(deps({ onStaging: (name) => staged.push(name) }), { ref: backup.manifestKey, targetDb: target, force: true }).catch((error: unknown) => {
          exitCode = (error as OperatorError).exitCode;
          throw error;
        }),
      new RegExp(
        `^pg_restore ${literal(local)} is too old for ${literal(path.basename(backup.custom))}: its archive format is 1\\.99 \\(made by pg_dump 99\\.1\\), newer than this pg_restore reads; the backup is not at fault; nothing was created, target "${target}" untouched; restore with pg_restore 99 or newer \\(install the PostgreSQL 99 client tools in the runner image, or put them first on PATH\\)$`,
      ),
    );
    expect(exitCode).toBe(2);
    expect(staged).toEqual([]);
  });

  /** Replaces the plain object, and its size and sha256 in the manifest: as a backup that wrote these bytes would have. */
  async function replacePlainObject(backup: { manifestKey: string; plain: string }, body: Buffer): Promise<void> {
    const manifest = JSON.parse((await objectBytes(backup.manifestKey)).toString('utf8'));
    manifest.objects = manifest.objects.map((o: { format: string }) =>
      o.format === 'plain' ? { ...o, bytes: body.length, sha256: createHash('sha256').update(body).digest('hex') } : o,
    );
    await putObject(backup.plain, body);
    await putObject(backup.manifestKey, JSON.stringify(manifest));
  }

  it('refuses --format plain from a .sql.gz cut short before its constraints (sha256 as in the manifest), naming the gzip error: nothing committed, target untouched or not created', async () => {
    // Arrange: the SQL up to its first constraint (its data whole, its keys and indexes missing),
    // gzipped, the gzip trailer cut off
    const backup = await freshBackup();
    const sql = gunzipSync(await objectBytes(backup.plain)).toString('utf8');
    const cut = sql.search(/\n--\n-- Name: [^\n]*; Type: CONSTRAINT;/);
    expect(cut).toBeGreaterThan(0);
    const whole = gzipSync(sql.slice(0, cut + 1));
    await replacePlainObject(backup, whole.subarray(0, whole.length - 8));
    const existing = makeTarget();
    const fresh = uniqueDatabaseName('restore_gz_cut');
    const message = new RegExp(
      `^${literal(path.basename(backup.plain))} is not a readable gzip stream \\(unexpected end of file\\): psql was stopped before it committed; the target was not touched; restore this backup only with --format custom, or choose another backup \\(npx --no atmr-dr backups list\\)$`,
    );

    // Act / Assert
    await expectRefused(existing, () => restoreBackup(deps(), { ref: backup.manifestKey, targetDb: existing, force: true, format: 'plain' }), message);
    await expect(restoreBackup(deps(), { ref: backup.manifestKey, targetDb: fresh, format: 'plain' })).rejects.toThrow(message);
    expect(databaseExists(cluster, fresh)).toBe(false);
    expect(databasesLike(cluster, `${fresh}_`)).toEqual([]);
  });

  it('refuses --format plain from an object that is not gzip at all with that reason, not a table missing after the load', async () => {
    const backup = await freshBackup();
    await replacePlainObject(backup, Buffer.from('CREATE TABLE public.not_gzip (id int);\n'));
    const target = makeTarget();

    await expectRefused(
      target,
      () => restoreBackup(deps(), { ref: backup.manifestKey, targetDb: target, force: true, format: 'plain' }),
      new RegExp(`^${literal(path.basename(backup.plain))} is not a readable gzip stream \\(incorrect header check\\): psql was stopped before it committed; the target was not touched; `),
    );
  });

  it('refuses a missing target name and an unknown manifest key', async () => {
    await expect(restoreBackup(deps(), { ref: 'daily/nope_backup_20200101_000000.manifest.json', targetDb: 'x_new' })).rejects.toThrow(/does not exist; list backups/);
    await expect(restoreBackup(deps(), { ref: manifestKey, targetDb: 'bad-name;drop' })).rejects.toThrow(/invalid --target-db/);
    expect(databaseExists(cluster, 'x_new')).toBe(false);
  });

  it('advises restoring under an accepted name, then renaming, when the refused target is the database a manifest key names (as the Lambda restore takes it)', async () => {
    await expect(restoreBackup(deps(), { ref: 'daily/Atmr Prod_backup_20261204_010000.manifest.json', targetDb: 'Atmr Prod' })).rejects.toThrow(
      'invalid --target-db "Atmr Prod": use ASCII letters, digits and underscores (at most 63, not starting with a digit); to restore "Atmr Prod" under its own name, restore into an accepted one (e.g. --target-db atmr_prod), then ALTER DATABASE atmr_prod RENAME TO "Atmr Prod" by hand (docs/restore.md)',
    );
  });
});

describe('a connection reset during the download', () => {
  const partBytes = 8192;

  it('gets a part cut mid-body again from its start, and restores the same content with progress that never goes back', async () => {
    // Arrange: a proxy that cuts the first ranged GET of the custom object after 1000 bytes of its body
    const backup = await freshBackup();
    const ranges: string[] = [];
    const proxy = await startResettingS3(
      localS3,
      (key, range) => {
        if (key !== backup.custom || range === undefined) return false;
        ranges.push(range);
        return ranges.length === 1;
      },
      1000,
    );
    const client = createS3Client({ ...localS3.env, AWS_ENDPOINT_URL_S3: proxy.endpoint });
    const target = uniqueDatabaseName('restore_reset_once');
    const progress: number[] = [];
    try {
      // Act
      const result = await restoreBackup(deps({ s3: client, partBytes, downloadConcurrency: 3, onDownloadProgress: (bytes) => progress.push(bytes) }), { ref: backup.manifestKey, targetDb: target });

      // Assert
      expect(ranges.filter((r) => r === ranges[0])).toHaveLength(2);
      expect(ranges.length).toBe(Math.ceil(result.object.bytes / partBytes) + 1);
      expect(databaseDigest(cluster, target)).toBe(sourceDigest);
      expect([...progress].sort((a, b) => a - b)).toEqual(progress);
      expect(progress.at(-1)).toBe(result.object.bytes);
    } finally {
      client.destroy();
      await proxy.stop();
    }
  });

  it('fails naming the part and the reset when each of its 3 GETs is cut, the target untouched', async () => {
    // Arrange: every GET of the third part is cut mid-body
    const backup = await freshBackup();
    const parts = Math.ceil((await objectBytes(backup.custom)).length / partBytes);
    const third = `bytes=${2 * partBytes}-${3 * partBytes - 1}`;
    let cuts = 0;
    const proxy = await startResettingS3(
      localS3,
      (key, range) => {
        if (key !== backup.custom || range !== third) return false;
        cuts += 1;
        return true;
      },
      1000,
    );
    const client = createS3Client({ ...localS3.env, AWS_ENDPOINT_URL_S3: proxy.endpoint });
    const target = makeTarget();
    const before = databaseDigest(cluster, target);
    try {
      // Act
      const error = await restoreBackup(deps({ s3: client, partBytes, downloadConcurrency: 3 }), { ref: backup.manifestKey, targetDb: target, force: true }).then(
        () => undefined,
        (e: unknown) => e as OperatorError,
      );

      // Assert
      expect(error?.message).toBe(
        `cannot download s3://${localS3.bucket}/${backup.custom}: connection reset (ECONNRESET) during part 3 of ${parts} (bytes ${2 * partBytes}-${3 * partBytes - 1}) after 3 attempts; retry, and check the S3 endpoint and the network; target "${target}" untouched`,
      );
      expect(error?.exitCode).toBe(1);
      expect(cuts).toBe(3);
      expect(databaseDigest(cluster, target)).toBe(before);
      expect(databasesLike(cluster, `${target}_`)).toEqual([]);
    } finally {
      client.destroy();
      await proxy.stop();
    }
  });
});

describe('the restore\'s own session', () => {
  it('is ended when the download directory cannot be made: the target\'s lock is free for the next restore in the same process (a reused Lambda)', async () => {
    const target = uniqueDatabaseName('restore_no_tmp');

    await expect(restoreBackup(deps({ tempDir: path.join(os.tmpdir(), 'atmr-dr-no-such-dir', 'below') }), { ref: manifestKey, targetDb: target })).rejects.toThrow(/ENOENT/);
    await restoreBackup(deps(), { ref: manifestKey, targetDb: target });

    expect(databaseDigest(cluster, target)).toBe(sourceDigest);
  });
});

describe('leftovers of a killed restore (kill -9, a crashed runner)', () => {
  /** An empty database named as an earlier restore into `target` would have left it, at `at` if given. */
  function leftover(target: string, kind: 'restore' | 'old', at?: string): string {
    const name = stagingName(target, kind);
    const named = at === undefined ? name : `${name.slice(0, -10)}${Date.parse(at).toString(36)}00`;
    psql(cluster, 'postgres', `CREATE DATABASE "${named}"`);
    return named;
  }

  it('says when each kept copy was set aside, to the minute in UTC, so the one from before the damage can be told apart; a missing target\'s line names the newest and how many are kept', async () => {
    // Arrange: two copies kept by earlier restores, five days apart
    const target = makeTarget();
    const older = leftover(target, 'old', '2026-11-30T09:30:59Z');
    const newer = leftover(target, 'old', '2026-12-05T18:12:31Z');
    const missing = uniqueDatabaseName('left_kept_two');
    const missingOlder = leftover(missing, 'old', '2026-11-30T09:30:59Z');
    const missingNewer = leftover(missing, 'old', '2026-12-05T18:12:31Z');
    const warnings: string[] = [];

    // Act
    await restoreBackup(deps({ warn: (l) => warnings.push(l) }), { ref: manifestKey, targetDb: target, force: true });
    const error = await restoreBackup(deps(), { ref: manifestKey, targetDb: missing, force: true }).then(
      () => undefined,
      (e: unknown) => e as OperatorError,
    );

    // Assert
    expect(warnings).toEqual([
      `"${older}" holds what "${target}" was before an earlier restore replaced it (set aside 2026-11-30 09:30 UTC); left in place: when it is not needed, DROP DATABASE "${older}"`,
      `"${newer}" holds what "${target}" was before an earlier restore replaced it (set aside 2026-12-05 18:12 UTC); left in place: when it is not needed, DROP DATABASE "${newer}"`,
    ]);
    expect(error?.message).toMatch(
      new RegExp(`^target database "${missing}" is missing; the newest copy an earlier restore kept is "${missingNewer}" \\(set aside 2026-12-05 18:12 UTC; 2 kept copies\\), left by `),
    );
    expect(databasesLike(cluster, `${missing}_`)).toEqual([missingOlder, missingNewer]);
  });

  it('refuses a missing target whose data is under <target>_old_<id> (killed between the swap\'s renames): one line with the fix, exit 2, nothing downloaded or created', async () => {
    // Long enough that the sibling names cut it to fit 63 bytes.
    for (const target of [uniqueDatabaseName('left_swap'), uniqueDatabaseName(`left_swap_${'x'.repeat(30)}`)]) {
      // Arrange: the data, under the name the swap gave it before the kill
      const old = stagingName(target, 'old');
      // The new name the line suggests, the target cut to fit PostgreSQL's 63 characters.
      const restored = `${target.slice(0, 63 - '_restored'.length)}_restored`;
      psql(cluster, 'postgres', `CREATE DATABASE "${old}"`);
      psql(cluster, old, 'CREATE TABLE keep_me (id int); INSERT INTO keep_me VALUES (1), (2);');
      const before = databaseDigest(cluster, old);
      const lines: string[] = [];
      const downloaded: number[] = [];

      // Act
      const error = await restoreBackup(deps({ log: (l) => lines.push(l), onDownloadProgress: (b) => downloaded.push(b) }), { ref: manifestKey, targetDb: target, force: true }).then(
        () => undefined,
        (e: unknown) => e as OperatorError,
      );

      // Assert
      expect(error?.exitCode).toBe(2);
      expect(error?.message).toBe(
        `target database "${target}" is missing; the newest copy an earlier restore kept is "${old}" (set aside ${setAside(old)}), left by a restore stopped in the middle of its swap (or kept by a restore that replaced it, if "${target}" was dropped since): put it back with ALTER DATABASE "${old}" RENAME TO "${target}", or if it is not wanted DROP DATABASE "${old}"; then rerun the restore; or, to have the backup as "${target}" and leave "${old}" as it is, restore into a new name (e.g. --target-db ${restored}), then ALTER DATABASE "${restored}" RENAME TO "${target}"`,
      );
      expect(lines).toEqual([]);
      expect(downloaded).toEqual([]);
      // Nothing created: no staging database, no target; the sibling names of the long target keep 35
      // and 39 of its characters, its mark tells them from those of the other runs' targets.
      expect(databasesLike(cluster, stagingName(target).slice(0, -10))).toEqual([]);
      expect(databasesLike(cluster, old.slice(0, -10))).toEqual([old]);
      expect(databaseExists(cluster, target)).toBe(false);
      // The statement it gives puts the data back.
      psql(cluster, 'postgres', `ALTER DATABASE "${old}" RENAME TO "${target}"`);
      expect(databaseDigest(cluster, target)).toBe(before);
    }
  });

  it('when the swap had closed the target to connections (--terminate-connections), the fix reopens it too', async () => {
    const target = uniqueDatabaseName('left_closed');
    const old = leftover(target, 'old');
    psql(cluster, 'postgres', `ALTER DATABASE "${old}" ALLOW_CONNECTIONS false`);

    await expect(restoreBackup(deps(), { ref: manifestKey, targetDb: target })).rejects.toThrow(
      `put it back with ALTER DATABASE "${old}" RENAME TO "${target}" and ALTER DATABASE "${target}" ALLOW_CONNECTIONS true, or`,
    );
    psql(cluster, 'postgres', `ALTER DATABASE "${old}" RENAME TO "${target}"; ALTER DATABASE "${target}" ALLOW_CONNECTIONS true;`);
    expect(psql(cluster, target, 'SELECT 1')).toBe('1');
  });

  it('refuses a target left closed to connections (killed during a --terminate-connections swap): one line with the statement that reopens it, exit 2, nothing downloaded or created', async () => {
    // Arrange: the swap had set ALLOW_CONNECTIONS false, then the restore was killed before the rename
    const target = makeTarget();
    const before = databaseDigest(cluster, target);
    psql(cluster, 'postgres', `ALTER DATABASE "${target}" ALLOW_CONNECTIONS false`);
    const downloaded: number[] = [];

    // Act
    const error = await restoreBackup(deps({ onDownloadProgress: (b) => downloaded.push(b) }), { ref: manifestKey, targetDb: target, force: true, terminateConnections: true }).then(
      () => undefined,
      (e: unknown) => e as OperatorError,
    );

    // Assert
    expect(error?.exitCode).toBe(2);
    expect(error?.message).toBe(
      `target database "${target}" does not accept connections (ALLOW_CONNECTIONS false: a restore with --terminate-connections killed during its swap leaves it so, and its clients cannot connect either): reopen it with ALTER DATABASE "${target}" ALLOW_CONNECTIONS true, then rerun the restore`,
    );
    expect(downloaded).toEqual([]);
    expect(databasesLike(cluster, `${target}_`)).toEqual([]);
    // The statement it gives reopens the target, unchanged, and the rerun restores.
    psql(cluster, 'postgres', `ALTER DATABASE "${target}" ALLOW_CONNECTIONS true`);
    expect(databaseDigest(cluster, target)).toBe(before);
    await expect(restoreBackup(deps(), { ref: manifestKey, targetDb: target, force: true })).resolves.toMatchObject({ replaced: true });
  });

  it('names a stale staging database and an _old_ beside the target, through warn (not log), with the DROP to run, before the download, drops neither, and restores', async () => {
    // Arrange
    const target = makeTarget();
    const staging = leftover(target, 'restore');
    const old = leftover(target, 'old');
    const lines: string[] = [];
    const warnings: string[] = [];

    // Act
    const result = await restoreBackup(deps({ log: (l) => lines.push(l), warn: (l) => warnings.push(l) }), { ref: manifestKey, targetDb: target, force: true });

    // Assert
    expect(result.replaced).toBe(true);
    expect(databaseDigest(cluster, target)).toBe(sourceDigest);
    expect(warnings).toEqual([
      `"${old}" holds what "${target}" was before an earlier restore replaced it (set aside ${setAside(old)}); left in place: when it is not needed, DROP DATABASE "${old}"`,
      `"${staging}" is the staging database of an earlier restore into "${target}" (no session is connected to it): it may be incomplete, never verified (a load stopped by a crash or a kill, or whose cleanup failed); left in place: do not use it, DROP DATABASE "${staging}"`,
    ]);
    // Nothing of them in the log: it starts with the backup restored, then its download.
    expect(lines.slice(0, 2)).toEqual([expect.stringMatching(new RegExp(`^backup: ${manifestKey}, taken `)), expect.stringMatching(/^download: /)]);
    expect(databasesLike(cluster, `${target}_`)).toStrictEqual([old, result.replacedKeptAs, staging]);
  });

  it('drops a stale staging database still loaded by atmr-dr sessions only (a killed CLI\'s pg_restore), which ends those sessions and no other, and says so', async () => {
    // Arrange: the sessions of a killed restore's pg_restore (PGAPPNAME atmr-dr) in its staging
    // database, and a session of someone else in another database
    const target = uniqueDatabaseName('left_orphan');
    const staging = leftover(target, 'restore');
    const bystanderDb = leftover(uniqueDatabaseName('left_other'), 'restore');
    const connect = async (database: string, application: string) => {
      const client = testClient({ host: cluster.host, port: cluster.port, user: cluster.user, database, application_name: application });
      client.on('error', () => undefined);
      await client.connect();
      return client;
    };
    const loaders = [await connect(staging, 'atmr-dr'), await connect(staging, 'atmr-dr')];
    const bystander = await connect(bystanderDb, 'atmr-dr');
    const pids = (await Promise.all(loaders.map(async (c) => (await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0].pid))).sort((a, b) => a - b);
    const warnings: string[] = [];

    try {
      // Act
      const result = await restoreBackup(deps({ warn: (l) => warnings.push(l) }), { ref: manifestKey, targetDb: target });

      // Assert
      expect(result.replaced).toBe(false);
      expect(warnings).toEqual([
        `"${staging}" is the staging database of an earlier restore into "${target}" that was killed, and its load was still running (session(s) ${pids.join(', ')}): dropped it WITH (FORCE), which ended that load`,
      ]);
      expect(databaseExists(cluster, staging)).toBe(false);
      expect(psql(cluster, 'postgres', `SELECT count(*) FROM pg_stat_activity WHERE pid IN (${pids.join(', ')})`)).toBe('0');
      // Another database's session (even atmr-dr's) is not touched.
      expect((await bystander.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
      expect(databaseDigest(cluster, target)).toBe(sourceDigest);
    } finally {
      await Promise.all([...loaders, bystander].map((c) => c.end().catch(() => undefined)));
      psql(cluster, 'postgres', `DROP DATABASE IF EXISTS "${bystanderDb}"`);
    }
  });

  it('leaves a stale staging database that someone else is connected to, names who, and gives the DROP ... WITH (FORCE)', async () => {
    // Arrange: an operator's psql looking into the staging database, beside an atmr-dr session
    const target = uniqueDatabaseName('left_busy');
    const staging = leftover(target, 'restore');
    const sessions = [
      testClient({ host: cluster.host, port: cluster.port, user: cluster.user, database: staging, application_name: 'psql' }),
      testClient({ host: cluster.host, port: cluster.port, user: cluster.user, database: staging, application_name: 'atmr-dr' }),
    ];
    for (const c of sessions) {
      c.on('error', () => undefined);
      await c.connect();
    }
    const warnings: string[] = [];

    try {
      // Act
      await restoreBackup(deps({ warn: (l) => warnings.push(l) }), { ref: manifestKey, targetDb: target });

      // Assert
      expect(warnings).toEqual([
        `"${staging}" is the staging database of an earlier restore into "${target}" and 2 session(s) are connected to it (psql, atmr-dr: not only a killed restore's); left in place: to stop them and drop it, DROP DATABASE "${staging}" WITH (FORCE)`,
      ]);
      expect(databaseExists(cluster, staging)).toBe(true);
      // The statement it gives ends the sessions and drops the database.
      psql(cluster, 'postgres', `DROP DATABASE "${staging}" WITH (FORCE)`);
      expect(databaseExists(cluster, staging)).toBe(false);
    } finally {
      await Promise.all(sessions.map((c) => c.end().catch(() => undefined)));
    }
  });

  it('does not take for leftovers names that only look alike: `_` is not a wildcard, the id is base-36 digits, and the name has the mark', async () => {
    // Arrange: the target is missing; each of these would be refused as "its data is in ..." if taken for an `_old_`.
    // The last two are the unmarked names of versions before 2026-12-02, which only development servers hold.
    const target = uniqueDatabaseName('left_like');
    const lookalike = `${target.replaceAll('_', 'x')}_old_0123456789`;
    const named = `${target}_old_2024_11_30`;
    const unmarked = [`${target}_old_${Date.now().toString(36)}0a`, `${target}_restore_${Date.now().toString(36)}z`];
    for (const name of [lookalike, named, ...unmarked]) psql(cluster, 'postgres', `CREATE DATABASE "${name}"`);
    const warnings: string[] = [];

    // Act
    const result = await restoreBackup(deps({ warn: (l) => warnings.push(l) }), { ref: manifestKey, targetDb: target });

    // Assert
    expect(result.replaced).toBe(false);
    expect(warnings).toEqual([]);
    expect([lookalike, named, ...unmarked].every((name) => databaseExists(cluster, name))).toBe(true);
  });
});

describe('an answer lost on the network (the server carried the statement out, or not): the restore stops with exit 1, saying where each copy may be, and drops nothing', () => {
  /**
   * A restore through a proxy that cuts its connection as the server answers the first statement
   * matching `statement` (`deliver: false`: before the statement reaches the server). Returns the
   * result or the error, and the statement cut.
   */
  async function restoreThroughCut(target: string, statement: RegExp, cut: { deliver?: boolean } = {}, terminateConnections = false) {
    const proxy = await startCuttingProxy({ host: cluster.host, port: cluster.port }, statement, cut);
    try {
      const options = { ref: manifestKey, targetDb: target, force: true, terminateConnections };
      const outcome = await restoreBackup(deps({ connection: { ...connection, port: proxy.port } }), options).then(
        (result) => ({ result, error: undefined }),
        (error: unknown) => ({ result: undefined, error: error as OperatorError }),
      );
      return { ...outcome, cut: proxy.cut };
    } finally {
      await proxy.stop();
    }
  }

  function dropAll(target: string): void {
    for (const name of [target, ...databasesLike(cluster, `${target}_`)]) psql(cluster, 'postgres', `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
  }

  const q = (name: string): string => `"${name}"`;
  /** What the line says of the statement whose answer was lost, and of the session it may still be running in. */
  const lostAnswer = (sql: string): string =>
    `the connection was lost before the server answered ${sql.replace(/[()]/g, '\\$&')} \\(Connection terminated unexpectedly\\); the server may still be running it, in the restore's session \\(application_name 'atmr-dr' in pg_stat_activity\\): once it has ended there, `;

  it('the rename of the target aside, carried out: Unsettled, the line says where each copy is and the statements that put it right; the target\'s data intact in its _old_ copy, the restored copy kept', async () => {
    const target = makeTarget();
    const before = databaseDigest(cluster, target);
    try {
      // Act
      const { result, error, cut } = await restoreThroughCut(target, new RegExp(`ALTER DATABASE "${target}" RENAME TO "${target}_old_`));

      // Assert: the server renamed the target aside; the restored copy is still there beside it
      expect(result).toBeUndefined();
      expect(cut).toMatch(new RegExp(`^ALTER DATABASE "${target}" RENAME TO "${target}_old_\\w+"$`));
      const [aside] = databasesLike(cluster, `${target}_old_`);
      const [staging] = databasesLike(cluster, `${target}_restore_`);
      expect(error).toBeInstanceOf(Unsettled);
      expect(error?.exitCode).toBe(1);
      expect(error?.message).toMatch(
        new RegExp(
          `^swap stopped after the load: ${lostAnswer(`ALTER DATABASE ${q(target)} RENAME TO ${q(aside)}`)}` +
            `look with SELECT datname FROM pg_database WHERE datname IN \\('${target}', '${aside}', '${staging}'\\): ` +
            `if ${q(target)} is missing, its data is in ${q(aside)}: put it back with ALTER DATABASE ${q(aside)} RENAME TO ${q(target)}, or put the restored copy ${q(staging)} in its place with ALTER DATABASE ${q(staging)} RENAME TO ${q(target)}; ` +
            `if ${q(target)} exists and ${q(staging)} does not, the restored copy is in place and ${q(aside)} is what ${q(target)} was; ` +
            `if ${q(target)} and ${q(staging)} both exist, nothing was swapped: DROP DATABASE ${q(staging)} WITH \\(FORCE\\) removes the restored copy; nothing was dropped$`,
        ),
      );
      expect(databaseExists(cluster, target)).toBe(false);
      expect(databaseDigest(cluster, aside)).toBe(before);
      expect(databaseDigest(cluster, staging)).toBe(sourceDigest);
    } finally {
      dropAll(target);
    }
  });

  it('with --terminate-connections, the rename aside carried out: Unsettled, the line puts the target back and reopens it; its data intact in its _old_ copy, still closed, the restored copy kept', async () => {
    // Arrange: a worker connected to the target, which the swap ends after closing the target
    const target = makeTarget();
    const before = databaseDigest(cluster, target);
    const worker = testClient({ host: cluster.host, port: cluster.port, user: cluster.user, database: target, application_name: 'celery' });
    worker.on('error', () => undefined);
    await worker.connect();
    try {
      // Act
      const { error } = await restoreThroughCut(target, new RegExp(`RENAME TO "${target}_old_`), {}, true);

      // Assert
      const [aside] = databasesLike(cluster, `${target}_old_`);
      const [staging] = databasesLike(cluster, `${target}_restore_`);
      expect(error).toBeInstanceOf(Unsettled);
      expect(error?.exitCode).toBe(1);
      expect(error?.message).toContain(
        `if "${target}" is missing, its data is in "${aside}": put it back with ALTER DATABASE "${aside}" RENAME TO "${target}" and ALTER DATABASE "${target}" ALLOW_CONNECTIONS true, or put the restored copy "${staging}" in its place`,
      );
      expect(databaseExists(cluster, target)).toBe(false);
      expect(psql(cluster, 'postgres', `SELECT datallowconn FROM pg_database WHERE datname = '${aside}'`)).toBe('f');
      psql(cluster, 'postgres', `ALTER DATABASE "${aside}" ALLOW_CONNECTIONS true`);
      expect(databaseDigest(cluster, aside)).toBe(before);
      expect(databaseDigest(cluster, staging)).toBe(sourceDigest);
    } finally {
      await worker.end().catch(() => undefined);
      dropAll(target);
    }
  });

  it('with --terminate-connections, the rename aside cut before it reached the server: Unsettled, the line says how to reopen the target, closed to its clients; target intact, the restored copy kept', async () => {
    // Arrange
    const target = makeTarget();
    const before = databaseDigest(cluster, target);
    try {
      // Act
      const { error, cut } = await restoreThroughCut(target, new RegExp(`RENAME TO "${target}_old_`), { deliver: false }, true);

      // Assert: both still there, the target closed; the line names the reopen for that case
      expect(cut).toBeDefined();
      const [staging] = databasesLike(cluster, `${target}_restore_`);
      expect(error).toBeInstanceOf(Unsettled);
      expect(error?.exitCode).toBe(1);
      expect(error?.message).toContain(
        `if "${target}" and "${staging}" both exist, nothing was swapped: ALTER DATABASE "${target}" ALLOW_CONNECTIONS true reopens "${target}" to its clients, and DROP DATABASE "${staging}" WITH (FORCE) removes the restored copy; "${target}_old_`,
      );
      expect(error?.message).toMatch(new RegExp(`; "${target}_old_\\w+" keeps the target's closed flag: ALTER DATABASE "${target}_old_\\w+" ALLOW_CONNECTIONS true reopens it to be read; nothing was dropped$`));
      expect(psql(cluster, 'postgres', `SELECT datallowconn FROM pg_database WHERE datname = '${target}'`)).toBe('f');
      psql(cluster, 'postgres', `ALTER DATABASE "${target}" ALLOW_CONNECTIONS true`);
      expect(databaseDigest(cluster, target)).toBe(before);
      expect(databaseDigest(cluster, staging)).toBe(sourceDigest);
    } finally {
      psql(cluster, 'postgres', `ALTER DATABASE "${target}" ALLOW_CONNECTIONS true`);
      dropAll(target);
    }
  });

  it('the rename of the restored copy to the target, carried out: Unsettled, the line says the restored copy may be in place; it is, the previous database kept under its _old_ name', async () => {
    const target = makeTarget();
    const before = databaseDigest(cluster, target);
    try {
      // Act
      const { error, cut } = await restoreThroughCut(target, new RegExp(`_restore_\\w+" RENAME TO "${target}"`));

      // Assert
      expect(cut).toMatch(new RegExp(`^ALTER DATABASE "${target}_restore_\\w+" RENAME TO "${target}"$`));
      const [aside] = databasesLike(cluster, `${target}_old_`);
      expect(error).toBeInstanceOf(Unsettled);
      expect(error?.exitCode).toBe(1);
      expect(error?.message).toMatch(
        new RegExp(
          `^swap stopped after the load: ${lostAnswer(`ALTER DATABASE "${target}_restore_\\w+" RENAME TO ${q(target)}`)}` +
            `look with SELECT datname FROM pg_database WHERE datname IN \\('${target}', '${aside}', '${target}_restore_\\w+'\\): .*if ${q(target)} exists and "${target}_restore_\\w+" does not, the restored copy is in place and ${q(aside)} is what ${q(target)} was; .*; nothing was dropped$`,
        ),
      );
      expect(databaseDigest(cluster, target)).toBe(sourceDigest);
      expect(databaseDigest(cluster, aside)).toBe(before);
      expect(databasesLike(cluster, `${target}_`)).toStrictEqual([aside]);
    } finally {
      dropAll(target);
    }
  });

  it('the rename of the restored copy to a new target, carried out: Unsettled, the line says how to tell whether it is in place; it is, no staging database left', async () => {
    const target = uniqueDatabaseName('lost_new');
    try {
      // Act
      const { error, cut } = await restoreThroughCut(target, new RegExp(`_restore_\\w+" RENAME TO "${target}"`));

      // Assert
      expect(cut).toBeDefined();
      expect(error).toBeInstanceOf(Unsettled);
      expect(error?.exitCode).toBe(1);
      expect(error?.message).toMatch(
        new RegExp(
          `^swap stopped after the load: ${lostAnswer(`ALTER DATABASE "${target}_restore_\\w+" RENAME TO ${q(target)}`)}` +
            `look with SELECT datname FROM pg_database WHERE datname IN \\('${target}', '${target}_restore_\\w+'\\): if ${q(target)} exists and "${target}_restore_\\w+" does not, the restored copy is in place; ` +
            `if "${target}_restore_\\w+" still exists, it was not swapped in: ALTER DATABASE "${target}_restore_\\w+" RENAME TO ${q(target)} puts it in; nothing was dropped$`,
        ),
      );
      expect(databaseDigest(cluster, target)).toBe(sourceDigest);
      expect(databasesLike(cluster, `${target}_`)).toEqual([]);
    } finally {
      dropAll(target);
    }
  });

  it('the CREATE DATABASE of the staging database, carried out: Unsettled, the line says it cannot tell, with the look and the DROP; target untouched, the staging database not dropped', async () => {
    const target = makeTarget();
    const before = databaseDigest(cluster, target);
    try {
      // Act
      const { error, cut } = await restoreThroughCut(target, new RegExp(`CREATE DATABASE "${target}_restore_`));

      // Assert: the server created it; the line names it and does not claim it was not created
      expect(cut).toMatch(new RegExp(`^CREATE DATABASE "${target}_restore_\\w+" OWNER "${cluster.user}" TEMPLATE template0$`));
      const [staging] = databasesLike(cluster, `${target}_restore_`);
      expect(staging).toBeDefined();
      expect(error).toBeInstanceOf(Unsettled);
      expect(error?.exitCode).toBe(1);
      expect(error?.message).toMatch(
        new RegExp(
          `^cannot tell whether the staging database ${staging} was created: ${lostAnswer(`CREATE DATABASE "${staging}"`)}look with SELECT datname FROM pg_database WHERE datname = '${staging}', and if it is there DROP DATABASE "${staging}" WITH \\(FORCE\\); target "${target}" untouched$`,
        ),
      );
      expect(databaseDigest(cluster, target)).toBe(before);
    } finally {
      dropAll(target);
    }
  });
});

describe('a swap statement the server cancelled (57014: statement_timeout, pg_cancel_backend)', () => {
  it('is a refusal the server answered: the line gives its reason, with no look and no "connection was lost"; target untouched, staging dropped, exit 1', async () => {
    // Arrange: another session holds a lock on the target's database object (a COMMENT in an open
    // transaction), so the rename aside waits for it until an operator cancels it
    const target = makeTarget();
    const before = databaseDigest(cluster, target);
    const holder = testClient(connection);
    const canceller = testClient(connection);
    await holder.connect();
    await canceller.connect();
    const warnings: string[] = [];
    try {
      await holder.query(`BEGIN; COMMENT ON DATABASE "${target}" IS 'held by a test'`);
      const restoring = restoreBackup(deps({ warn: (line) => warnings.push(line) }), { ref: manifestKey, targetDb: target, force: true }).then(
        () => undefined,
        (error: unknown) => error as OperatorError,
      );
      const waiting = `SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'ALTER DATABASE "${target}" RENAME TO%'`;
      let rename: { pid: number } | undefined;
      for (let i = 0; i < 600 && rename === undefined; i += 1) {
        rename = (await canceller.query<{ pid: number }>(waiting)).rows[0];
        if (rename === undefined) await new Promise((resolve) => setTimeout(resolve, 50));
      }
      expect(rename).toBeDefined();

      // Act
      await canceller.query('SELECT pg_cancel_backend($1)', [rename?.pid]);
      const error = await restoring;

      // Assert
      expect(error?.exitCode).toBe(1);
      expect(error?.message).toMatch(
        new RegExp(
          `^swap failed after the load: cannot take "${target}" out of the way \\(canceling statement due to user request\\); target "${target}" untouched: stop its clients and retry; the restored copy was not swapped in, staging database ${target}_restore_\\w+ dropped$`,
        ),
      );
      expect(warnings).toEqual([]);
      await holder.query('ROLLBACK');
      expect(databaseDigest(cluster, target)).toBe(before);
      expect(databasesLike(cluster, `${target}_`)).toEqual([]);
    } finally {
      await holder.end();
      await canceller.end();
      for (const name of [target, ...databasesLike(cluster, `${target}_`)]) psql(cluster, 'postgres', `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    }
  });
});

describe('catalog', () => {
  it('lists manifests newest first and filters by tier', async () => {
    const older = await writeFixtureBackup(s3, localS3.bucket, cluster, source, { tier: 'weekly', startedAt: new Date('2026-01-04T01:00:00Z') });
    const newer = await writeFixtureBackup(s3, localS3.bucket, cluster, source, { tier: 'weekly', startedAt: new Date('2026-01-11T01:00:00Z') });

    await putObject('weekly/broken_backup_20260101_000000.manifest.json', '{"schema": 2}');
    const weekly = await listBackups({ s3, bucket: localS3.bucket }, { tier: 'weekly' });
    const all = await listBackups({ s3, bucket: localS3.bucket });

    expect(weekly.map((e) => e.manifestKey)).toEqual([newer.manifestKey, older.manifestKey, 'weekly/broken_backup_20260101_000000.manifest.json']);
    expect(weekly[2].invalid).toMatch(/is not a valid schema-1 manifest \(schema: /);
    expect(all.length).toBeGreaterThan(weekly.length);
    const times = all.filter((e) => e.manifest).map((e) => e.manifest!.startedAt);
    expect([...times].sort().reverse()).toEqual(times);
    await expect(listBackups({ s3, bucket: localS3.bucket }, { tier: 'yearly' })).rejects.toThrow(/invalid backup tier "yearly"/);
  });

  it('resolves latest through latest/<db>/<tier>.json', async () => {
    const newest = await writeFixtureBackup(s3, localS3.bucket, cluster, source, { tier: 'monthly' });

    const resolved = await resolveBackup({ s3, bucket: localS3.bucket }, 'latest', { tier: 'monthly', database: source });

    expect(resolved.manifestKey).toBe(newest.manifestKey);
    expect(resolved.manifest.tier).toBe('monthly');
  });

  it('latest is the newest backup of the database asked for, never of another one written after it', async () => {
    // Arrange: our database's backup, then a newer backup of another database (which moves the bucket-wide pointers)
    const other = uniqueDatabaseName('restore_other');
    psql(cluster, 'postgres', `CREATE DATABASE ${other}`);
    psql(cluster, other, 'CREATE TABLE t (id int); INSERT INTO t VALUES (1);');
    const ours = await writeFixtureBackup(s3, localS3.bucket, cluster, source, { tier: 'weekly', startedAt: new Date('2026-02-01T00:00:00Z') });
    const theirs = await writeFixtureBackup(s3, localS3.bucket, cluster, other, { tier: 'weekly', startedAt: new Date('2026-02-02T00:00:00Z') });

    // Act
    const any = await resolveBackup({ s3, bucket: localS3.bucket }, 'latest', { database: source });
    const weekly = await resolveBackup({ s3, bucket: localS3.bucket }, 'latest', { tier: 'weekly', database: source });
    const otherLatest = await resolveBackup({ s3, bucket: localS3.bucket }, 'latest', { database: other });

    // Assert
    expect(any.manifest.database).toBe(source);
    expect(weekly.manifestKey).toBe(ours.manifestKey);
    expect(otherLatest.manifestKey).toBe(theirs.manifestKey);
  });

  it('refuses latest for a database without a backup, and latest without a database, with one line', async () => {
    await expect(resolveBackup({ s3, bucket: localS3.bucket }, 'latest', { database: 'nobody_here' })).rejects.toThrow(
      /^no backup of database "nobody_here" in s3:\/\/.* \(no latest\/nobody_here\.json\); check PGDATABASE\/--database/,
    );
    // A type of its own: the restore test reads "none published" from it, not from these words.
    await expect(resolveBackup({ s3, bucket: localS3.bucket }, 'latest', { database: 'nobody_here' })).rejects.toBeInstanceOf(NoBackupError);
    await expect(resolveBackup({ s3, bucket: localS3.bucket }, 'latest', { tier: 'weekly', database: 'nobody_here' })).rejects.toBeInstanceOf(NoBackupError);
    await expect(resolveBackup({ s3, bucket: localS3.bucket }, 'latest', {})).rejects.toThrow(/^"latest" is per database and none was named: set PGDATABASE or pass --database NAME$/);
  });

  it('during the transition, reads the bucket-wide pointer only when it names a backup of that database', async () => {
    // Arrange: a bucket of its own, with only the old bucket-wide pointers
    const bucket = 'atmr-dr-transition';
    const { CreateBucketCommand } = await import('@aws-sdk/client-s3');
    await s3.send(new CreateBucketCommand({ Bucket: bucket }));
    const old = await writeFixtureBackup(s3, bucket, cluster, source, { tier: 'daily', pointers: 'legacy' });

    // Act / Assert
    expect((await resolveBackup({ s3, bucket }, 'latest', { database: source })).manifestKey).toBe(old.manifestKey);
    expect((await resolveBackup({ s3, bucket }, 'latest', { tier: 'daily', database: source })).manifestKey).toBe(old.manifestKey);
    await expect(resolveBackup({ s3, bucket }, 'latest', { database: 'another_db' })).rejects.toThrow(/^no backup of database "another_db"/);
  });

  it('lists the backups of one database only with a database filter', async () => {
    const all = await listBackups({ s3, bucket: localS3.bucket });
    const ours = await listBackups({ s3, bucket: localS3.bucket }, { database: source });

    expect(new Set(all.map((e) => e.manifest?.database)).size).toBeGreaterThan(1);
    expect(ours.length).toBeGreaterThan(0);
    expect(ours.every((e) => e.manifest?.database === source)).toBe(true);
  });

  it('verifies a backup without a database: checksums, pg_restore --list and the gzip stream', async () => {
    const result = await verifyBackup({ s3, bucket: localS3.bucket }, manifestKey);

    expect(result.ok).toBe(true);
    const good = result.objects.filter((o): o is GoodObject => o.ok);
    expect(good.map((o) => o.format).sort()).toEqual(['custom', 'plain']);
    expect(good.find((o) => o.format === 'custom')!.detail.tocEntries).toBeGreaterThan(20);
    expect(good.find((o) => o.format === 'plain')!.detail.sqlBytes).toBeGreaterThan(100_000);
    // Reported to the millisecond (--json), not as 0.09633967699999997.
    expect(Math.round(result.seconds * 1000)).toBeCloseTo(result.seconds * 1000, 6);
  });

  it('verify reports a corrupt object as bad and still checks the others', async () => {
    const backup = await freshBackup();
    const bytes = await objectBytes(backup.plain);
    bytes[bytes.length - 10] ^= 0x01;
    await putObject(backup.plain, bytes);

    const result = await verifyBackup({ s3, bucket: localS3.bucket }, backup.manifestKey);

    expect(result.ok).toBe(false);
    expect(result.objects).toEqual([
      expect.objectContaining({ key: backup.custom, ok: true, detail: { tocEntries: expect.any(Number) } }),
      expect.objectContaining({ key: backup.plain, ok: false, reason: 'sha256', problem: expect.stringMatching(/sha256 .*corrupt/) }),
    ]);
    expect(result.summary).toBe(
      `backup ${backup.manifestKey}: 1 of 2 objects bad (${backup.plain}: sha256); restore this backup only with --format custom, or choose another backup (npx --no atmr-dr backups list)`,
    );
  });

  it('verify stops on an archive of a newer pg_dump than the local pg_restore, exit 2, naming the tools, not calling the backup bad', async () => {
    // Arrange
    const { backup, local } = await newerPgDumpBackup();

    // Act
    const error = await verifyBackup({ s3, bucket: localS3.bucket }, backup.manifestKey).then(
      () => undefined,
      (e: unknown) => e as OperatorError,
    );

    // Assert
    expect(error?.message).toBe(
      `pg_restore ${local} is too old for ${path.basename(backup.custom)}: its archive format is 1.99 (made by pg_dump 99.1), newer than this pg_restore reads; the backup is not at fault, and was not checked further; check it with pg_restore 99 or newer (install the PostgreSQL 99 client tools in the runner image, or put them first on PATH)`,
    );
    expect(error?.exitCode).toBe(2);
  });

  it('restore refuses a manifest that is not JSON with one line naming the key and the fix, before touching the target', async () => {
    const key = 'daily/html_backup_20260101_000000.manifest.json';
    await putObject(key, '<!DOCTYPE html>\n<html><body>Service Unavailable</body></html>');
    const target = makeTarget();

    await expect(restoreBackup(deps(), { ref: key, targetDb: target, force: true })).rejects.toThrow(
      new RegExp(`^manifest daily/html_backup_20260101_000000\\.manifest\\.json is not valid JSON \\(it starts with "<!DOCTYPE html> <html><body>Service Unav"\\); do not restore it, choose another backup \\(npx --no atmr-dr backups list\\); target "${target}" untouched$`),
    );
    expect(psql(cluster, target, 'SELECT count(*) FROM keep_me')).toBe('50');
  });
});

describe('a download directory that cannot be made (TMPDIR missing, or a file): one line, exit 2, before anything is created', () => {
  const line = (dir: string, why: string) =>
    `cannot create the download directory in TMPDIR ${dir} (${why}): the backup is downloaded there; export TMPDIR=<an existing, writable directory with room for the backup> and retry; nothing was done`;
  let scratch: string;
  beforeEach(() => {
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'restore-tmpdir-'));
    fs.writeFileSync(path.join(scratch, 'a-file'), '');
  });
  afterEach(() => fs.rmSync(scratch, { recursive: true, force: true }));

  it('restore (the Lambda restore and the restore test call it with the default, TMPDIR): the target untouched, no staging database', async () => {
    // Arrange
    const target = makeTarget();
    const before = databaseDigest(cluster, target);
    const missing = path.join(scratch, 'missing');
    try {
      // Act
      const error = await restoreBackup(deps({ tempDir: missing }), { ref: manifestKey, targetDb: target, force: true }).catch((e: unknown) => e as OperatorError);

      // Assert
      expect(error).toEqual(expect.objectContaining({ message: line(missing, 'ENOENT: no such directory'), exitCode: 2 }));
      expect(databaseDigest(cluster, target)).toBe(before);
      expect(databasesLike(cluster, `${target}_`)).toEqual([]);
      expect(fs.readdirSync(scratch)).toEqual(['a-file']);
    } finally {
      psql(cluster, 'postgres', `DROP DATABASE IF EXISTS ${target} WITH (FORCE)`);
    }
  });

  it('backups verify: the backup is not called good or bad', async () => {
    const file = path.join(scratch, 'a-file');

    const error = await verifyBackup({ s3, bucket: localS3.bucket, tempDir: file }, manifestKey).catch((e: unknown) => e as OperatorError);

    expect(error).toEqual(expect.objectContaining({ message: line(file, 'ENOTDIR: not a directory'), exitCode: 2 }));
    expect(fs.readdirSync(scratch)).toEqual(['a-file']);
  });
});

describe('a server that goes away during the load', () => {
  it('says the server went away (its log, its disk) and when to rerun, not a pg_restore fault, and names the staging database it could not drop, with the DROP to run, once: in the last line', async () => {
    // Arrange: a backup of a database on a cluster of its own, and a pg_restore that stops that server and fails
    const gone = await serverThatGoesAway('gone_src');
    try {
      const backup = await writeFixtureBackup(s3, localS3.bucket, gone.cluster, 'gone_src', { tier: 'weekly', pointers: 'none' });
      const ownConnection: PgConnection = { host: gone.cluster.host, port: gone.cluster.port, user: gone.cluster.user, database: 'postgres' };

      const lines: string[] = [];

      // Act
      const error = await restoreBackup({ s3, bucket: localS3.bucket, connection: ownConnection, pgBinDir: gone.pgBinDir, log: (line) => lines.push(line) }, { ref: backup.manifestKey, targetDb: 'gone_target' }).then(
        () => undefined,
        (e: unknown) => e as OperatorError,
      );

      // Assert
      expect(error?.message).toMatch(
        /^the server went away during the load \(a crash, a restart, or its disk full: check the server's log, on RDS FreeStorageSpace\): pg_restore: error: connection to server lost; rerun once it answers \(psql -c 'SELECT 1'\); the target was not touched; could not drop staging database (gone_target_restore_\w+) \(cannot connect to .*\): drop it with DROP DATABASE "\1" WITH \(FORCE\)$/,
      );
      expect(error?.exitCode).toBe(1);
      expect(lines.filter((line) => line.includes('could not drop'))).toEqual([]);
    } finally {
      gone.cleanup();
    }
  }, 120_000);
});

describe('a server that goes away as the swap starts', () => {
  it('with --terminate-connections: the line says the restored copy was not swapped in, the staging database to drop, and that the target is untouched and still open to connections', async () => {
    // Arrange: a server of its own with a backup of one database and a non-empty target; the server
    // is stopped (pg_ctl stop -m fast) as the restore says it starts the swap
    const own = await startPostgres();
    try {
      psql(own, 'postgres', 'CREATE DATABASE swap_src; CREATE DATABASE swap_target;');
      psql(own, 'swap_src', 'CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 100);');
      psql(own, 'swap_target', 'CREATE TABLE keep_me (id int); INSERT INTO keep_me VALUES (1), (2), (3);');
      const before = databaseDigest(own, 'swap_target');
      const backup = await writeFixtureBackup(s3, localS3.bucket, own, 'swap_src', { tier: 'weekly', pointers: 'none' });
      const ownConnection: PgConnection = { host: own.host, port: own.port, user: own.user, database: 'postgres' };
      const log = (line: string) => {
        if (line.startsWith('swap: ')) stopFast(own);
      };

      // Act
      const error = await restoreBackup(deps({ connection: ownConnection, log }), { ref: backup.manifestKey, targetDb: 'swap_target', force: true, terminateConnections: true }).then(
        () => undefined,
        (e: unknown) => e as OperatorError,
      );
      startAgain(own);

      // Assert
      // The first words are the driver's, by when it saw the server go (its session terminated, or the connection refused).
      expect(error?.message).toMatch(
        /^swap failed after the load: .+; the restored copy was not swapped in, could not drop staging database (swap_target_restore_\w+) \(.+\): drop it with DROP DATABASE "\1" WITH \(FORCE\); target "swap_target" untouched, still open to connections \(the swap had not closed it\)$/,
      );
      expect(error?.exitCode).toBe(1);
      expect(databaseDigest(own, 'swap_target')).toBe(before);
      expect(psql(own, 'postgres', "SELECT datallowconn FROM pg_database WHERE datname = 'swap_target'")).toBe('t');
    } finally {
      stopPostgres(own);
    }
  }, 120_000);
});
