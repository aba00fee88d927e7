import { PutObjectCommand } from '@aws-sdk/client-s3';
import { Client } from 'pg';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { runBackup, type BackupProgress } from '../../lambdas/backup/backup';
import { createS3Client } from '../../lambdas/shared/aws';
import { BackupManifestSchema, LatestPointerSchema } from '../../lambdas/shared/manifest';
import { backupObjectKeys } from '../../lambdas/shared/s3-layout';
import { testCluster, uniqueDatabaseName } from '../support/cluster';
import { psql } from '../support/postgres';
import { clockShiftEnv } from '../support/clock-shift';
import { startConditionalS3 } from '../support/conditional-s3';
import { startCuttingProxy } from '../support/cutting-proxy';
import { installedCopy, type InstalledCopy } from '../support/installed-copy';
import { LocalS3, startLocalS3 } from '../support/s3';
import { TEST_HOLD_AFTER_RESULT } from '../../bin/cli/interrupt';
import { FIXTURE_SQL } from './backup-fixture';
import {
  cliEnv,
  contentDigest,
  createDatabase,
  dropDatabase,
  getBytes,
  getJson,
  listKeys,
  operatorLines,
  runCli,
  sha256,
  startCli,
  writeTempFile,
} from './backup-support';

jest.setTimeout(180_000);

// Round trip through the real tools: the CLI backs up a database holding every object kind of the
// fixture to s3rver; both formats are then loaded into fresh databases and compared with the source.
describe('atmr-dr backup (integration)', () => {
  let s3: LocalS3;
  let workDir: string;
  const source = uniqueDatabaseName('bk_src');
  const created: string[] = [source];

  beforeAll(async () => {
    s3 = await startLocalS3();
    workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'atmr-dr-backup-it-'));
    createDatabase(source, FIXTURE_SQL);
  });
  afterAll(async () => {
    for (const db of created) dropDatabase(db);
    await s3.stop();
    fs.rmSync(workDir, { recursive: true, force: true });
  });

  it('writes both formats, a truthful manifest and the pointers; both formats restore to identical content', async () => {
    // Arrange
    const client = createS3Client(s3.env);
    const sourceDigest = contentDigest(source);
    const sourceCounts = psql(
      testCluster(),
      source,
      `SELECT n.nspname || '|' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1`,
    )
      .split('\n')
      .map((qualified) => {
        const [schema, name] = qualified.split('|');
        const rows = Number(psql(testCluster(), source, `SELECT count(*) FROM ONLY "${schema}"."${name}"`));
        return { schema, name, rows };
      });

    // Act
    const run = await runCli(['backup', '--tier', 'daily'], cliEnv(source, s3.env));

    // Assert: the CLI's contract
    expect(run.stderr).not.toMatch(/atmr-dr:/);
    expect(run.status).toBe(0);
    const manifestKey = run.stdout.trim();
    expect(manifestKey).toMatch(new RegExp(`^daily/${source}_backup_\\d{8}_\\d{6}\\.manifest\\.json$`));

    // Assert: the manifest (schema 1) tells the truth about the stored bytes and the rows
    const manifest = BackupManifestSchema.parse(await getJson(client, s3.bucket, manifestKey));
    const stem = manifestKey.replace(/\.manifest\.json$/, '');
    expect(manifest).toMatchObject({ schema: 1, database: source, tier: 'daily' });
    expect(manifest.serverVersion).toMatch(/^1\d\.\d+$/);
    expect(manifest.pgDumpVersion).toMatch(/^1\d\.\d+$/);
    expect(Date.parse(manifest.finishedAt) - Date.parse(manifest.startedAt)).toBe(manifest.durationMs);
    expect(manifest.objects.map((o) => [o.format, o.key])).toEqual([
      ['custom', `${stem}.dump`],
      ['plain', `${stem}.sql.gz`],
    ]);
    const stored: Record<string, Buffer> = {};
    for (const object of manifest.objects) {
      stored[object.format] = await getBytes(client, s3.bucket, object.key);
      expect(object.bytes).toBe(stored[object.format].length);
      expect(object.sha256).toBe(sha256(stored[object.format]));
    }
    expect(stored.custom.subarray(0, 5).toString('latin1')).toBe('PGDMP');
    expect(stored.plain.subarray(0, 2)).toEqual(Buffer.from([0x1f, 0x8b]));
    expect(manifest.tables).toEqual(sourceCounts);
    expect(manifest.tables).toContainEqual({ schema: 'Ops Réseau', name: 'Incidents Été', rows: 3 });
    expect(manifest.tables.find((t) => t.name === 'invoices')).toBeUndefined(); // partitioned parent: its leaves are counted

    // Assert: the pointers name the manifest, and only the written tier changed
    expect(LatestPointerSchema.parse(await getJson(client, s3.bucket, 'latest.json'))).toEqual({ manifest: manifestKey });
    expect(LatestPointerSchema.parse(await getJson(client, s3.bucket, 'latest/daily.json'))).toEqual({ manifest: manifestKey });
    expect(LatestPointerSchema.parse(await getJson(client, s3.bucket, `latest/${manifest.database}.json`))).toEqual({ manifest: manifestKey });
    expect(LatestPointerSchema.parse(await getJson(client, s3.bucket, `latest/${manifest.database}/daily.json`))).toEqual({ manifest: manifestKey });
    expect(await listKeys(client, s3.bucket, 'latest/')).toEqual(['latest/daily.json', `latest/${manifest.database}.json`, `latest/${manifest.database}/daily.json`].sort());
    expect(manifest.snapshot).toMatch(/^\d+:\d+:/);

    // Assert: the custom archive restores with pg_restore, the plain SQL with psql, to the same content
    const fromDump = uniqueDatabaseName('bk_dump');
    const fromSql = uniqueDatabaseName('bk_sql');
    created.push(fromDump, fromSql);
    createDatabase(fromDump);
    createDatabase(fromSql);
    const env = { ...process.env, ...testCluster().env };
    const dumpFile = writeTempFile(workDir, 'backup.dump', stored.custom);
    execFileSync('pg_restore', ['--exit-on-error', '-d', fromDump, dumpFile], { env, stdio: 'pipe' });
    const sqlFile = writeTempFile(workDir, 'backup.sql.gz', stored.plain);
    execFileSync('sh', ['-c', `gunzip -c "${sqlFile}" | psql -X -q -v ON_ERROR_STOP=1 -d "${fromSql}" > /dev/null`], { env, stdio: 'pipe' });

    expect(sourceDigest.length).toBeGreaterThan(15);
    expect(sourceDigest.some((l) => l.startsWith('lo|'))).toBe(true);
    expect(sourceDigest).toContain('S|billing.invoice_number|4242,true');
    expect(contentDigest(fromDump)).toEqual(sourceDigest);
    expect(contentDigest(fromSql)).toEqual(sourceDigest);
  });

  it('runs in-process with --formats custom: one object, progress reported, success metrics emitted', async () => {
    // Arrange
    const client = createS3Client(s3.env);
    const metrics = new Metrics({ namespace: 'AtmrDr/example', serviceName: 'backup' });
    const progress: BackupProgress[] = [];
    const cluster = testCluster();
    const startedAt = new Date('2026-03-01T04:05:06.789Z');

    // Act
    const result = await runBackup(
      {
        s3: client,
        bucket: s3.bucket,
        connection: { host: cluster.host, port: cluster.port, user: cluster.user, database: source },
        metrics,
        now: () => startedAt,
        onProgress: (p) => progress.push(p),
      },
      { tier: 'weekly', formats: ['custom'], compressionLevel: 3 },
    );

    // Assert
    expect(result.manifestKey).toBe(`weekly/${source}_backup_20260301_040506.manifest.json`);
    expect(result.manifest.objects).toHaveLength(1);
    expect(result.manifest.objects[0]).toMatchObject({ format: 'custom', key: `weekly/${source}_backup_20260301_040506.dump` });
    const keys = await listKeys(client, s3.bucket, 'weekly/');
    expect(keys).toEqual([`weekly/${source}_backup_20260301_040506.dump`, result.manifestKey]);
    expect(BackupManifestSchema.parse(await getJson(client, s3.bucket, result.manifestKey))).toEqual(result.manifest);
    expect(progress.at(-1)?.bytes).toBe(result.manifest.objects[0].bytes);
    const emf = metrics.serializeMetrics();
    const names = emf._aws.CloudWatchMetrics[0].Metrics.map((m) => m.Name).sort();
    expect(names).toEqual(['BackupBytes', 'BackupDurationSeconds', 'BackupSuccess']);
    expect(emf._aws.CloudWatchMetrics[0].Dimensions[0]).toContain('Tier');
    expect((emf as unknown as Record<string, unknown>).Tier).toBe('weekly');
    expect((emf as unknown as Record<string, unknown>).BackupBytes).toBe(result.manifest.objects[0].bytes);
  });

  it.each(['igzip', 'zlib'] as const)('the plain SQL gzipped by %s loads with psql to the same content as the source', async (compressor) => {
    // Arrange
    const client = createS3Client(s3.env);
    const cluster = testCluster();
    const target = uniqueDatabaseName(`bk_${compressor}`);
    created.push(target);
    createDatabase(target);

    // Act: forced, so that a missing igzip fails the run instead of silently falling back to zlib
    const result = await runBackup(
      {
        s3: client,
        bucket: s3.bucket,
        connection: { host: cluster.host, port: cluster.port, user: cluster.user, database: source },
        plainCompressor: compressor,
        now: () => new Date(compressor === 'igzip' ? '2026-03-04T00:00:00Z' : '2026-03-05T00:00:00Z'),
      },
      { tier: 'weekly', formats: ['plain'], compressionLevel: 2 },
    );

    // Assert
    expect(result.manifest.objects.map((o) => o.format)).toEqual(['plain']);
    const gz = await getBytes(client, s3.bucket, result.manifest.objects[0].key);
    expect(sha256(gz)).toBe(result.manifest.objects[0].sha256);
    const sqlFile = writeTempFile(workDir, `${compressor}.sql.gz`, gz);
    execFileSync('sh', ['-c', `gunzip -c "${sqlFile}" | psql -X -q -v ON_ERROR_STOP=1 -d "${target}" > /dev/null`], {
      env: { ...process.env, ...cluster.env },
      stdio: 'pipe',
    });
    expect(contentDigest(target)).toEqual(contentDigest(source));
  });

  it("records in the manifest what the database has set on itself, read as the runner's role of docs/backup-runner.md (not a superuser), leaving it as it was", async () => {
    // Arrange: a database with every property a restore into a new name must give back
    const cluster = testCluster();
    const client = createS3Client(s3.env);
    const db = uniqueDatabaseName('bk_props');
    const runner = `${db}_runner`;
    const app = `${db}_app`;
    created.push(db);
    createDatabase(db, 'CREATE TABLE orders (id int); INSERT INTO orders VALUES (1);');
    psql(
      cluster,
      'postgres',
      `CREATE ROLE ${runner} LOGIN; GRANT pg_read_all_data TO ${runner}; CREATE ROLE ${app};
       ALTER DATABASE ${db} SET search_path = "$user", public; ALTER DATABASE ${db} SET timezone = 'Europe/Paris';
       ALTER ROLE ${app} IN DATABASE ${db} SET work_mem = '64MB'; COMMENT ON DATABASE ${db} IS 'the shop''s production';
       REVOKE CONNECT, TEMPORARY ON DATABASE ${db} FROM PUBLIC; GRANT CONNECT ON DATABASE ${db} TO ${runner}, ${app}; ALTER DATABASE ${db} CONNECTION LIMIT 40;`,
    );
    const catalogs = (): string =>
      psql(cluster, 'postgres', `SELECT d.datacl::text || ' ' || d.datconnlimit || ' ' || (SELECT string_agg(setrole || ':' || setconfig::text, ';' ORDER BY setrole) FROM pg_db_role_setting WHERE setdatabase = d.oid) FROM pg_database d WHERE datname = '${db}'`);
    const before = catalogs();

    try {
      // Act
      const result = await runBackup({ s3: client, bucket: s3.bucket, connection: { host: cluster.host, port: cluster.port, user: runner, database: db } }, { tier: 'hourly', formats: ['custom'] });

      // Assert
      const expected = {
        owner: cluster.user,
        connectionLimit: 40,
        comment: "the shop's production",
        acl: [
          { privilege: 'CREATE', grantee: cluster.user, grantable: false },
          { privilege: 'TEMPORARY', grantee: cluster.user, grantable: false },
          { privilege: 'CONNECT', grantee: cluster.user, grantable: false },
          { privilege: 'CONNECT', grantee: runner, grantable: false },
          { privilege: 'CONNECT', grantee: app, grantable: false },
        ],
        settings: ['search_path="$user", public', 'TimeZone=Europe/Paris'],
        roleSettings: [{ role: app, entry: 'work_mem=64MB' }],
      };
      expect(result.manifest.databaseProperties).toEqual(expected);
      expect(BackupManifestSchema.parse(await getJson(client, s3.bucket, result.manifestKey)).databaseProperties).toEqual(expected);
      expect(catalogs()).toBe(before);
    } finally {
      dropDatabase(db);
      psql(cluster, 'postgres', `DROP ROLE ${runner}; DROP ROLE ${app}`);
    }
  });

  it("records in the manifest the roles the database's objects name and how, read as the runner's role (not a superuser): an owner, a grantee, a policy's role, a role only default privileges name and their FOR ROLE", async () => {
    // Arrange: roles a new server must have before the restore; the tables the superuser (the
    // bootstrap one, which any server of the kind has) owns name no other
    const cluster = testCluster();
    const client = createS3Client(s3.env);
    const db = uniqueDatabaseName('bk_roles');
    const [runner, owner, reader, policy, forRole, defaults] = ['runner', 'owner', 'reader', 'policy', 'forrole', 'defaults'].map((r) => `${db}_${r}`);
    created.push(db);
    createDatabase(db, 'CREATE TABLE orders (id int); INSERT INTO orders VALUES (1);');
    psql(cluster, 'postgres', `CREATE ROLE ${runner} LOGIN; GRANT pg_read_all_data TO ${runner}; CREATE ROLE ${owner}; CREATE ROLE ${reader}; CREATE ROLE ${policy}; CREATE ROLE ${forRole}; CREATE ROLE ${defaults};`);
    psql(
      cluster,
      db,
      `CREATE TABLE invoices (id int); ALTER TABLE invoices OWNER TO ${owner};
       GRANT SELECT ON orders TO ${reader}; CREATE POLICY mine ON orders TO ${policy} USING (true);
       ALTER DEFAULT PRIVILEGES FOR ROLE ${forRole} IN SCHEMA public GRANT SELECT ON TABLES TO ${defaults};`,
    );

    try {
      // Act
      const result = await runBackup({ s3: client, bucket: s3.bucket, connection: { host: cluster.host, port: cluster.port, user: runner, database: db } }, { tier: 'hourly', formats: ['custom'] });

      // Assert: --no-owner leaves out the owner only; it still writes the FOR ROLE of a default privilege
      const expected = [
        { name: defaults, use: 'grants' },
        { name: forRole, use: 'grants' },
        { name: owner, use: 'owner' },
        { name: policy, use: 'grants' },
        { name: reader, use: 'grants' },
      ];
      expect(result.manifest.roles).toEqual(expected);
      expect(BackupManifestSchema.parse(await getJson(client, s3.bucket, result.manifestKey)).roles).toEqual(expected);
    } finally {
      dropDatabase(db);
      psql(cluster, 'postgres', [runner, owner, reader, policy, forRole, defaults].map((r) => `DROP ROLE ${r};`).join(' '));
    }
  });

  it('leaves out the owner of extensions and of their member objects (pg_dump writes no owner for them), and lists the grantees of their members (pg_dump writes those grants)', async () => {
    // Arrange: a superuser other than the bootstrap one (a master user) creates the extensions, so
    // that it owns them and each of their functions and views, and nothing else
    const cluster = testCluster();
    const client = createS3Client(s3.env);
    const db = uniqueDatabaseName('bk_ext');
    const [runner, creator, caller, viewer] = ['runner', 'creator', 'caller', 'viewer'].map((r) => `${db}_${r}`);
    created.push(db);
    createDatabase(db, 'CREATE TABLE orders (id int); INSERT INTO orders VALUES (1);');
    psql(cluster, 'postgres', `CREATE ROLE ${runner} LOGIN; GRANT pg_read_all_data TO ${runner}; CREATE ROLE ${creator} SUPERUSER; CREATE ROLE ${caller}; CREATE ROLE ${viewer};`);
    psql(
      cluster,
      db,
      `SET ROLE ${creator}; CREATE EXTENSION pgcrypto; CREATE EXTENSION pg_buffercache; RESET ROLE;
       GRANT EXECUTE ON FUNCTION digest(text, text) TO ${caller}; GRANT SELECT ON pg_buffercache TO ${viewer};`,
    );

    try {
      // Act
      const result = await runBackup({ s3: client, bucket: s3.bucket, connection: { host: cluster.host, port: cluster.port, user: runner, database: db } }, { tier: 'hourly', formats: ['custom'] });

      // Assert
      const expected = [
        { name: caller, use: 'grants' },
        { name: viewer, use: 'grants' },
      ];
      expect(result.manifest.roles).toEqual(expected);
      expect(BackupManifestSchema.parse(await getJson(client, s3.bucket, result.manifestKey)).roles).toEqual(expected);
    } finally {
      dropDatabase(db);
      psql(cluster, 'postgres', [runner, creator, caller, viewer].map((r) => `DROP ROLE ${r};`).join(' '));
    }
  });

  it("leaves out the roles of another session's temporary objects held while the backup runs, a table, a function, types and a grant on one (pg_dump never dumps them)", async () => {
    // Arrange: a session holds, in its temporary schema, a table, a function it grants to another role, an enum and a domain
    const cluster = testCluster();
    const client = createS3Client(s3.env);
    const db = uniqueDatabaseName('bk_temp');
    const [runner, reporting, caller] = ['runner', 'reporting', 'caller'].map((r) => `${db}_${r}`);
    created.push(db);
    createDatabase(db, 'CREATE TABLE orders (id int); INSERT INTO orders VALUES (1);');
    psql(cluster, 'postgres', `CREATE ROLE ${runner} LOGIN; GRANT pg_read_all_data TO ${runner}; CREATE ROLE ${reporting} LOGIN; CREATE ROLE ${caller};`);
    const session = new Client({ host: cluster.host, port: cluster.port, user: reporting, database: db });
    await session.connect();

    try {
      await session.query(
        `CREATE TEMPORARY TABLE scratch (id serial, note text);
         CREATE FUNCTION pg_temp.shift(int) RETURNS int LANGUAGE sql AS 'SELECT $1 + 1';
         GRANT EXECUTE ON FUNCTION pg_temp.shift(int) TO ${caller};
         CREATE TYPE pg_temp.mood AS ENUM ('ok'); CREATE DOMAIN pg_temp.positive AS int CHECK (VALUE > 0);`,
      );
      const dump = execFileSync('pg_dump', ['-d', db], { env: { ...process.env, ...cluster.env }, encoding: 'utf8' });

      // Act
      const result = await runBackup({ s3: client, bucket: s3.bucket, connection: { host: cluster.host, port: cluster.port, user: runner, database: db } }, { tier: 'hourly', formats: ['custom'] });

      // Assert: neither role is in the dump, so a server without them restores it
      expect(dump).not.toContain(reporting);
      expect(dump).not.toContain(caller);
      expect(result.manifest.roles).toEqual([]);
    } finally {
      await session.end();
      dropDatabase(db);
      psql(cluster, 'postgres', `DROP ROLE ${runner}; DROP ROLE ${reporting}; DROP ROLE ${caller};`);
    }
  });

  it('never moves a latest pointer back: a backup that started earlier but finished later leaves the newer one in place', async () => {
    // Arrange: the per-database pointers already name a backup that started later than this run
    // (a manual run beside the scheduled one, finished first); the tier's own pointer is older
    const client = createS3Client(s3.env);
    const cluster = testCluster();
    const database = uniqueDatabaseName('bk_ptr');
    created.push(database);
    createDatabase(database, 'CREATE TABLE t (id int); INSERT INTO t VALUES (1);');
    const newer = `weekly/${database}_backup_20260302_000000.manifest.json`;
    const older = `weekly/${database}_backup_20260228_000000.manifest.json`;
    for (const [key, manifest] of [[`latest/${database}.json`, newer], [`latest/${database}/weekly.json`, older]]) {
      await client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: key, Body: JSON.stringify({ manifest }) }));
    }
    // The newer backup is published: its manifest exists (a pointer to a missing one protects nothing, see below).
    await client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: newer, Body: '{}' }));
    const lines: string[] = [];

    // Act: a run that started on 2026-03-01
    const result = await runBackup(
      { s3: client, bucket: s3.bucket, connection: { host: cluster.host, port: cluster.port, user: cluster.user, database }, now: () => new Date('2026-03-01T12:00:00Z'), log: (line) => lines.push(line) },
      { tier: 'weekly', formats: ['custom'] },
    );

    // Assert: the newer pointer stays, the older one moves to this run, and the log says which was kept
    expect(LatestPointerSchema.parse(await getJson(client, s3.bucket, `latest/${database}.json`))).toEqual({ manifest: newer });
    expect(LatestPointerSchema.parse(await getJson(client, s3.bucket, `latest/${database}/weekly.json`))).toEqual({ manifest: result.manifestKey });
    expect(lines).toContain(`upload: latest/${database}.json kept on ${newer}, a backup that started later than this one`);
  });

  it.each([
    ['names an older backup (If-Match)', true],
    ['does not exist yet (If-None-Match)', false],
  ])('a latest pointer that another run moves to a later backup between this run\'s read and its write stays on that backup (the pointer %s)', async (_case, existedBefore) => {
    // Arrange: S3's conditional writes (a proxy adds them to s3rver); another run publishes a backup
    // that started later, in the moment between this run's read of the pointer and its write
    const direct = createS3Client(s3.env);
    const cluster = testCluster();
    const database = uniqueDatabaseName('bk_race');
    created.push(database);
    createDatabase(database, 'CREATE TABLE t (id int); INSERT INTO t VALUES (1);');
    const pointerKey = `latest/${database}.json`;
    const older = `daily/${database}_backup_20260228_000000.manifest.json`;
    const later = `hourly/${database}_backup_20260301_130000.manifest.json`;
    await direct.send(new PutObjectCommand({ Bucket: s3.bucket, Key: later, Body: '{}' }));
    if (existedBefore) await direct.send(new PutObjectCommand({ Bucket: s3.bucket, Key: pointerKey, Body: JSON.stringify({ manifest: older }) }));
    let raced = false;
    const conditional = await startConditionalS3(s3, async (key) => {
      if (key !== pointerKey || raced) return;
      raced = true;
      await direct.send(new PutObjectCommand({ Bucket: s3.bucket, Key: pointerKey, Body: JSON.stringify({ manifest: later }) }));
    });
    const lines: string[] = [];

    try {
      // Act: a run that started at 12:00, finishing as the 13:00 one publishes
      const result = await runBackup(
        {
          s3: createS3Client(conditional.env),
          bucket: s3.bucket,
          connection: { host: cluster.host, port: cluster.port, user: cluster.user, database },
          now: () => new Date('2026-03-01T12:00:00Z'),
          log: (line) => lines.push(line),
        },
        { tier: 'daily', formats: ['custom'] },
      );

      // Assert: `latest` stays on the later backup; the pointers nobody raced for name this run
      expect(raced).toBe(true);
      expect(LatestPointerSchema.parse(await getJson(direct, s3.bucket, pointerKey))).toEqual({ manifest: later });
      expect(LatestPointerSchema.parse(await getJson(direct, s3.bucket, `latest/${database}/daily.json`))).toEqual({ manifest: result.manifestKey });
      expect(lines).toContain(`upload: ${pointerKey} kept on ${later}, a backup that started later than this one`);
      expect(conditional.refused).toEqual([pointerKey]);
    } finally {
      await conditional.stop();
    }
  });

  it.each([
    ['does not exist (its backup deleted)', false],
    ['is stamped a day ahead of now (by a machine whose clock ran fast), its backup there', true],
  ])('a latest pointer on a later-stamped manifest that %s is moved to this run', async (_case, ahead) => {
    // Arrange: the pointers name a backup stamped a day after this run's start: a run of 2026-03-01
    // and a manifest that is gone, or a run starting now and a manifest that exists
    const client = createS3Client(s3.env);
    const cluster = testCluster();
    const database = uniqueDatabaseName(ahead ? 'bk_ahead' : 'bk_ghost');
    created.push(database);
    createDatabase(database, 'CREATE TABLE t (id int); INSERT INTO t VALUES (1);');
    const start = ahead ? new Date() : new Date('2026-03-01T12:00:00Z');
    const later = backupObjectKeys('daily', database, new Date(start.getTime() + 86_400_000)).manifest;
    if (ahead) await client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: later, Body: '{}' }));
    for (const key of [`latest/${database}.json`, `latest/${database}/daily.json`]) {
      await client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: key, Body: JSON.stringify({ manifest: later }) }));
    }
    const lines: { line: string; level?: string }[] = [];

    // Act
    const result = await runBackup(
      {
        s3: client,
        bucket: s3.bucket,
        connection: { host: cluster.host, port: cluster.port, user: cluster.user, database },
        now: () => start,
        log: (line, level) => lines.push({ line, level }),
      },
      { tier: 'daily', formats: ['custom'] },
    );

    // Assert: `latest` is this backup, not a manifest that restore cannot read, nor one that would
    // stay `latest` until its date; a warning says which pointer left the future-stamped one
    for (const key of [`latest/${database}.json`, `latest/${database}/daily.json`]) {
      expect(LatestPointerSchema.parse(await getJson(client, s3.bucket, key))).toEqual({ manifest: result.manifestKey });
    }
    const warnings = [`latest/${database}/daily.json`, `latest/${database}.json`].map((key) => ({
      line: expect.stringMatching(new RegExp(`^upload: ${key} named ${later}, stamped 86[34]\\d\\d s ahead of now \\(a machine whose clock ran fast\\): moved to this backup$`)),
      level: 'warn',
    }));
    expect(lines.filter((l) => l.line.includes(later))).toEqual(ahead ? warnings : []);
  });

  it.each([
    ['ahead of', 86_400_000],
    ['behind', -86_400_000],
  ])("refuses to start on a clock a day %s S3's: one line, exit 2, nothing written (the SDK would correct its signatures, and the backup be stamped a day off)", async (direction, shiftMs) => {
    // Arrange
    const client = createS3Client(s3.env);
    const database = uniqueDatabaseName('bk_clock');
    created.push(database);
    createDatabase(database, 'CREATE TABLE t (id int); INSERT INTO t VALUES (1);');
    const before = await listKeys(client, s3.bucket);

    // Act
    const run = await runCli(['backup', '--tier', 'monthly'], cliEnv(database, s3.env, clockShiftEnv(workDir, shiftMs)));

    // Assert
    expect(run.stderr.trim().split('\n')).toEqual([
      expect.stringMatching(new RegExp(`^atmr-dr: this machine's clock is 86[34]\\d\\d s ${direction} S3's \\(more than 300 s\\).*nothing was dumped; fix the clock \\(NTP\\) and run again$`)),
    ]);
    expect(run.status).toBe(2);
    expect(await listKeys(client, s3.bucket)).toEqual(before);
  });

  it('refuses to overwrite a published backup with the same key (same tier, same second)', async () => {
    // Arrange
    const client = createS3Client(s3.env);
    const cluster = testCluster();
    const at = new Date('2026-03-02T00:00:00.000Z');
    const deps = {
      s3: client,
      bucket: s3.bucket,
      connection: { host: cluster.host, port: cluster.port, user: cluster.user, database: source },
      now: () => at,
    };
    const first = await runBackup(deps, { tier: 'monthly', formats: ['custom'] });
    const before = await getBytes(client, s3.bucket, first.manifestKey);

    // Act / Assert: a clock stuck on that second (after the bounded waits) is refused, nothing overwritten
    await expect(runBackup(deps, { tier: 'monthly', formats: ['custom'] })).rejects.toThrow(/already exists.*retry in a second/);
    expect(await getBytes(client, s3.bucket, first.manifestKey)).toEqual(before);
  });

  it('a second run starting in the same second waits for the next one instead of overwriting', async () => {
    // Arrange: the first run starts at T; the second starts at T too, and its clock moves on after that.
    const client = createS3Client(s3.env);
    const cluster = testCluster();
    const connection = { host: cluster.host, port: cluster.port, user: cluster.user, database: source };
    const at = new Date('2026-03-03T10:00:00.250Z');
    const first = await runBackup({ s3: client, bucket: s3.bucket, connection, now: () => at }, { tier: 'hourly', formats: ['custom'] });
    let calls = 0;
    const movingClock = (): Date => (++calls === 1 ? at : new Date(at.getTime() + 1000));

    // Act
    const second = await runBackup({ s3: client, bucket: s3.bucket, connection, now: movingClock }, { tier: 'hourly', formats: ['custom'] });

    // Assert
    expect(first.manifestKey).toBe(`hourly/${source}_backup_20260303_100000.manifest.json`);
    expect(second.manifestKey).toBe(`hourly/${source}_backup_20260303_100001.manifest.json`);
    expect(second.manifest.startedAt).toBe('2026-03-03T10:00:01.250Z');
    expect(BackupManifestSchema.parse(await getJson(client, s3.bucket, first.manifestKey))).toEqual(first.manifest);
  });

  it('once pg_dump has ended, the count stops and the phase lines say what is left: the uploads, then the manifest and the pointers', async () => {
    // Arrange
    const cluster = testCluster();
    const events: string[] = [];

    // Act
    const result = await runBackup(
      {
        s3: createS3Client(s3.env),
        bucket: s3.bucket,
        connection: { host: cluster.host, port: cluster.port, user: cluster.user, database: source },
        now: () => new Date('2026-03-07T00:00:00Z'),
        onProgress: (p) => events.push(`progress ${p.bytes}`),
        log: (line) => events.push(line),
      },
      { tier: 'daily' },
    );

    // Assert: the final count (every byte of the .dump), then only the phase lines (this run's clock
    // is older than the earlier tests' backups: the pointers they published are kept, and said so)
    const firstPhase = events.findIndex((e) => e.startsWith('upload: '));
    expect(events[firstPhase - 1]).toBe(`progress ${result.manifest.objects.find((o) => o.format === 'custom')?.bytes}`);
    expect(events.slice(firstPhase).filter((e) => !/^upload: latest\S* kept on /.test(e))).toEqual([
      expect.stringMatching(/^upload: pg_dump finished \(\d+(\.\d)? (B|KiB|MiB) dumped\); finishing the uploads: \d+(\.\d)? (B|KiB|MiB) of \d+(\.\d)? (B|KiB|MiB) stored so far$/),
      'upload: publishing the manifest and the latest pointers',
    ]);
  });

  it('--progress: the dump\'s count, then what is left once pg_dump has ended, on stderr; stdout stays the manifest key', async () => {
    // Act: stderr is a pipe here, so without --progress nothing would show
    const run = await runCli(['backup', '--tier', 'daily', '--formats', 'custom', '--progress'], cliEnv(source, s3.env));

    // Assert
    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(new RegExp(`^daily/${source}_backup_\\d{8}_\\d{6}\\.manifest\\.json\n$`));
    const lines = run.stderr.split('\n').filter((l) => /^(backup|upload): /.test(l));
    const firstPhase = lines.findIndex((l) => l.startsWith('upload: '));
    expect(firstPhase).toBeGreaterThan(0);
    expect(lines.slice(0, firstPhase)).toEqual(
      Array(firstPhase).fill(expect.stringMatching(/^backup: \d+(\.\d)? (B|KiB|MiB) dumped \(compressed\) from a \d+(\.\d)? MiB database, \d+(\.\d)? (B|KiB|MiB)\/s$/)),
    );
    expect(lines.slice(firstPhase)).toEqual([
      expect.stringMatching(/^upload: pg_dump finished \(.* dumped\); finishing the uploads: .* stored so far$/),
      'upload: publishing the manifest and the latest pointers',
    ]);
  });

  it("--progress on a server that never answers the read of the database's size: that read is given up at its bound with one line naming the server, and the backup goes on and succeeds without the size", async () => {
    // Arrange: the size read's statement, and everything after it on its connection, never reaches
    // the server, whose connection stays open (a hung backend); the backup's own connections go through
    const cluster = testCluster();
    const proxy = await startCuttingProxy({ host: cluster.host, port: cluster.port }, /pg_database_size/, { silence: true });
    try {
      const started = Date.now();

      // Act
      const run = await runCli(['backup', '--tier', 'daily', '--formats', 'custom', '--progress'], cliEnv(source, s3.env, { PGPORT: String(proxy.port) }));

      // Assert
      expect(run.status).toBe(0);
      expect(proxy.cut).toBe('SELECT pg_database_size(current_database()) AS bytes');
      expect(run.stderr.split('\n')).toContain(
        `backup: the read of "${source}"'s size (pg_database_size) on ${cluster.user}@${cluster.host}:${proxy.port}/${source} got no answer within 20 s (the server accepts connections but does not answer): check that the server answers (psql -c 'SELECT 1') and which session holds a lock or runs long there (SELECT pid, state, wait_event_type, query FROM pg_stat_activity WHERE state <> 'idle'); the backup goes on without the database's size`,
      );
      expect(run.stderr).toMatch(/^backup: \d+(\.\d)? (B|KiB|MiB) dumped, /m);
      expect((Date.now() - started) / 1000).toBeLessThan(90);
    } finally {
      await proxy.stop();
    }
  });

  it("--progress behind a pooler that refuses the startup parameters statement_timeout and lock_timeout (a default PgBouncer): the size read sets its bounds in its transaction, and the progress has the database's size", async () => {
    // Arrange: every connection that sends either as a startup parameter is refused, as PgBouncer does
    const cluster = testCluster();
    const proxy = await startCuttingProxy({ host: cluster.host, port: cluster.port }, /^$/, { refuseStartupParameters: ['statement_timeout', 'lock_timeout'] });
    try {
      // Act
      const run = await runCli(['backup', '--tier', 'daily', '--formats', 'custom', '--progress'], cliEnv(source, s3.env, { PGPORT: String(proxy.port) }));

      // Assert
      expect(run.stderr).not.toMatch(/size/);
      expect(run.status).toBe(0);
      expect(run.stderr).toMatch(/^backup: \d+(\.\d)? (B|KiB|MiB) dumped \(compressed\) from a \d+(\.\d)? MiB database, /m);
    } finally {
      await proxy.stop();
    }
  });

  it("--progress when the read of the database's size fails (its connection cut): one line saying why, and the backup goes on and succeeds without the size", async () => {
    // Arrange: the size read's statement never reaches the server, its connection cut; the backup's own connections go through
    const cluster = testCluster();
    const proxy = await startCuttingProxy({ host: cluster.host, port: cluster.port }, /pg_database_size/, { deliver: false });
    try {
      // Act
      const run = await runCli(['backup', '--tier', 'daily', '--formats', 'custom', '--progress'], cliEnv(source, s3.env, { PGPORT: String(proxy.port) }));

      // Assert
      expect(run.status).toBe(0);
      expect(proxy.cut).toBe('SELECT pg_database_size(current_database()) AS bytes');
      expect(run.stderr.split('\n').filter((l) => /size/.test(l))).toEqual([
        expect.stringMatching(new RegExp(`^backup: cannot read "${source}"'s size \\(pg_database_size\\): .*Connection terminated.*; the backup goes on without the database's size$`)),
      ]);
      expect(run.stderr).toMatch(/^backup: \d+(\.\d)? (B|KiB|MiB) dumped, /m);
    } finally {
      await proxy.stop();
    }
  });

  it("--progress on a database that does not exist: the connection's refusal is said once, as the command's failure, with no line about the size", async () => {
    // Arrange: a database name the server does not have
    const missing = `${source}_missing`;

    // Act
    const run = await runCli(['backup', '--tier', 'daily', '--formats', 'custom', '--progress'], cliEnv(missing, s3.env));

    // Assert
    expect(run.status).not.toBe(0);
    const lines = run.stderr.trimEnd().split('\n');
    expect(lines.filter((l) => l.includes(`database "${missing}" does not exist`))).toHaveLength(1);
    expect(lines.filter((l) => /size/.test(l))).toEqual([]);
  });

  it('--database backs up the database it names, over PGDATABASE, as backups list, verify and restore take it; an empty one is refused in one line, exit 2, nothing written', async () => {
    // Arrange: PGDATABASE names another database than --database
    const named = uniqueDatabaseName('bk_named');
    created.push(named);
    createDatabase(named, 'CREATE TABLE t (id int); INSERT INTO t VALUES (1), (2);');
    const env = cliEnv(source, s3.env, { NODE_NO_WARNINGS: '1' });

    // Act
    const run = await runCli(['backup', '--tier', 'hourly', '--formats', 'custom', '--database', named], env);
    const empty = await runCli(['backup', '--tier', 'hourly', '--formats', 'custom', '--database', ''], env);

    // Assert
    expect(operatorLines(run.stderr)).toEqual([]);
    expect(run.status).toBe(0);
    const manifestKey = run.stdout.trim();
    expect(manifestKey).toMatch(new RegExp(`^hourly/${named}_backup_\\d{8}_\\d{6}\\.manifest\\.json$`));
    const manifest = BackupManifestSchema.parse(await getJson(createS3Client(s3.env), s3.bucket, manifestKey));
    expect(manifest.database).toBe(named);
    expect(manifest.tables).toEqual([{ schema: 'public', name: 't', rows: 2 }]);
    expect(operatorLines(empty.stderr)).toEqual(['atmr-dr: --database is empty: name the database to back up, or drop --database to back up PGDATABASE']);
    expect(empty.status).toBe(2);
    expect(await listKeys(createS3Client(s3.env), s3.bucket, `hourly/${named}_`)).toEqual([manifestKey.replace(/\.manifest\.json$/, '.dump'), manifestKey]);
  });

  it('SIGTERM once the manifest key is printed (the backup done, the process ending): exit 0, not 143, the key on stdout and one line saying there was nothing left to stop', async () => {
    // Arrange: the process held after its result (a test-only setting), so that the signal, sent
    // once the key is read, surely reaches it alive: a process that ended first proves nothing.
    const run = startCli(['backup', '--tier', 'hourly', '--formats', 'custom'], cliEnv(source, s3.env, { [TEST_HOLD_AFTER_RESULT]: '20000' }));
    let ended = false;
    void run.result.then(() => (ended = true));
    while (!ended && !run.stdout().endsWith('\n')) await new Promise((resolve) => setTimeout(resolve, 20));

    // Act: as `timeout` or a process manager stopping a run that has just finished
    const signalled = Date.now();
    run.signalCli('SIGTERM');
    const result = await run.result;

    // Assert: ended by the signal (well before the hold's end), with the backup's own code
    expect(result.stdout).toMatch(new RegExp(`^hourly/${source}_backup_\\d{8}_\\d{6}\\.manifest\\.json\n$`));
    expect(operatorLines(result.stderr)).toEqual(['atmr-dr: received SIGTERM after the command had finished its work: nothing left to stop']);
    expect(result.status).toBe(0);
    expect(Date.now() - signalled).toBeLessThan(10_000);
  });
});

// A monthly backup by hand must be locked as the scheduled runner locks its own
// (backups.monthlyComplianceLockDays): the CLI reads the lock from the environment's cdk.json.
describe('atmr-dr backup --tier monthly, with the monthly tier locked in cdk.json (integration, the bundle as installed)', () => {
  let s3: LocalS3;
  const database = uniqueDatabaseName('bk_lock');
  const installs: InstalledCopy[] = [];
  const install = (lockDays: number): InstalledCopy => {
    const copy = installedCopy('atmr-dr-monthly-lock-', (environments) => {
      environments.example.backups = { ...(environments.example.backups as Record<string, unknown>), monthlyComplianceLockDays: lockDays };
    });
    installs.push(copy);
    return copy;
  };

  beforeAll(async () => {
    s3 = await startLocalS3();
    createDatabase(database, 'CREATE TABLE t (id int); INSERT INTO t VALUES (1), (2);');
  });
  afterAll(async () => {
    dropDatabase(database);
    await s3.stop();
    for (const copy of installs) fs.rmSync(copy.root, { recursive: true, force: true });
  });

  it('uploads every monthly object in compliance mode, retained the configured days from the start; a daily backup of the same install is not locked', async () => {
    // Arrange: S3 behind a proxy that reads the headers of each write the CLI sends
    const writes: { key: string; mode?: string; until?: string }[] = [];
    const proxy = await startConditionalS3(s3, async (key, headers) => {
      writes.push({ key, mode: headers['x-amz-object-lock-mode'] as string | undefined, until: headers['x-amz-object-lock-retain-until-date'] as string | undefined });
    });
    const copy = install(400);
    const started = Date.now();
    try {
      // Act
      const monthly = await runCli(['backup', '--tier', 'monthly', '--formats', 'custom', '--env', 'example'], cliEnv(database, proxy.env), copy);
      const daily = await runCli(['backup', '--tier', 'daily', '--formats', 'custom'], cliEnv(database, proxy.env), copy);

      // Assert
      // The bucket is BACKUP_BUCKET's, which --env does not override: said, and the backup goes on.
      expect([monthly.status, monthly.stderr]).toEqual([0, `atmr-dr: backup bucket ${s3.bucket} from BACKUP_BUCKET, not looked up for --env example (unset BACKUP_BUCKET to use that environment's)\n`]);
      expect(daily.status).toBe(0);
      const monthlyWrites = writes.filter((w) => w.key.startsWith('monthly/'));
      expect(monthlyWrites.map((w) => w.key)).toEqual(expect.arrayContaining([monthly.stdout.trim()]));
      for (const write of monthlyWrites) {
        expect(write.mode).toBe('COMPLIANCE');
        const days = (Date.parse(write.until ?? '') - started) / 86_400_000;
        expect(days).toBeGreaterThan(399.99);
        expect(days).toBeLessThan(400.01);
      }
      const dailyWrites = writes.filter((w) => w.key.startsWith('daily/'));
      expect(dailyWrites.length).toBeGreaterThan(0);
      expect(dailyWrites.filter((w) => w.mode !== undefined || w.until !== undefined)).toEqual([]);
    } finally {
      await proxy.stop();
    }
  });

  it("refuses a monthly backup to a bucket named by BACKUP_BUCKET without --env when cdk.json's default environment locks monthly objects (the bucket may be another environment's, without Object Lock): one line, exit 2, nothing written", async () => {
    // Arrange
    const client = createS3Client(s3.env);
    const copy = install(400);
    const before = await listKeys(client, s3.bucket);

    // Act
    const monthly = await runCli(['backup', '--tier', 'monthly', '--formats', 'custom'], cliEnv(database, s3.env), copy);

    // Assert
    expect(monthly.stderr).toBe(
      "atmr-dr: a monthly backup is compliance-locked as its environment says, and environment example (cdk.json's default) locks monthly objects 400 days: pass --env with the environment of the bucket given by BACKUP_BUCKET (--env example if it is that one's); nothing was dumped\n",
    );
    expect(monthly.status).toBe(2);
    expect(await listKeys(client, s3.bucket)).toEqual(before);
  });

  it('refuses a monthly backup in one line when cdk.json cannot say the lock (exit 2, nothing written); the other tiers do not read it', async () => {
    // Arrange: a lock shorter than the monthly retention, which the config refuses
    const client = createS3Client(s3.env);
    const copy = install(30);
    const before = await listKeys(client, s3.bucket);

    // Act
    const monthly = await runCli(['backup', '--tier', 'monthly', '--formats', 'custom'], cliEnv(database, s3.env), copy);

    // Assert
    expect(monthly.stderr).toMatch(/^atmr-dr: cannot read backups\.monthlyComplianceLockDays \(the monthly tier's compliance lock\) from cdk\.json, nothing was dumped: config: environments\.example\.backups\.monthlyComplianceLockDays: .*\n$/);
    expect(monthly.status).toBe(2);
    expect(await listKeys(client, s3.bucket)).toEqual(before);
    const hourly = await runCli(['backup', '--tier', 'hourly', '--formats', 'custom'], cliEnv(database, s3.env), copy);
    expect(hourly.status).toBe(0);
  });
});
