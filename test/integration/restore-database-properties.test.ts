import { execFileSync } from 'node:child_process';
import { S3Client } from '@aws-sdk/client-s3';
import { Client } from 'pg';
import { createS3Client } from '../../lambdas/shared/aws';
import { restoreBackup } from '../../lambdas/restore/restore';
import { PostgresCluster, psql, startPostgres, stopPostgres } from '../support/postgres';
import { LocalS3, startLocalS3 } from '../support/s3';
import { atmrDr, databasesLike, writeFixtureBackup } from '../lambdas/restore/fixtures';

/**
 * What the application's database has set on itself (ALTER DATABASE ... SET, its grants, its
 * connection limit, its comment) survives a restore over it, as its owner does: pg_restore without
 * --create does not load them, and the restored copy had none (the application's time zone gone, a
 * REVOKE CONNECT ... FROM PUBLIC undone), exit 0 and no word. A cluster of its own: roles and
 * database-level properties are the server's.
 */
let cluster: PostgresCluster;
let localS3: LocalS3;
let s3: S3Client;
/** A backup of `atmr`, `app`'s database, taken before any property was set. */
let backup: string;

const connection = (user: string) => ({ host: cluster.host, port: cluster.port, user, database: 'postgres' });

/** What the ATMR trial set on its database, in every shape the catalogs keep: list settings, quotes, a backslash, a grant option. */
function lockDown(database: string): void {
  psql(
    cluster,
    'postgres',
    `ALTER DATABASE ${database} SET timezone = 'Europe/Paris';
     ALTER DATABASE ${database} SET search_path = "$user", public, "odd, ""name""";
     ALTER DATABASE ${database} SET statement_timeout = '30s';
     REVOKE CONNECT, TEMPORARY ON DATABASE ${database} FROM PUBLIC;
     GRANT CONNECT ON DATABASE ${database} TO reader;
     GRANT CREATE ON DATABASE ${database} TO reader WITH GRANT OPTION;
     ALTER DATABASE ${database} CONNECTION LIMIT 50;
     COMMENT ON DATABASE ${database} IS 'ATMR production: don''t \\ drop';`,
  );
}

/** Every database-level property a restore must keep, as the catalogs hold them. */
function properties(database: string): string {
  return psql(
    cluster,
    'postgres',
    `SELECT d.datconnlimit || ' | ' || coalesce(d.datacl::text, 'default') || ' | ' || coalesce(shobj_description(d.oid, 'pg_database'), 'no comment')
            || ' | ' || coalesce((SELECT setconfig::text FROM pg_db_role_setting WHERE setdatabase = d.oid AND setrole = 0), 'no settings')
       FROM pg_database d WHERE datname = '${database}'`,
  );
}

/** Whether `user` may open a session on `database`, and what that session's settings are. */
function sessionOf(user: string, database: string): string {
  try {
    return execFileSync('psql', ['-X', '-At', '-d', database, '-c', "SELECT current_setting('TimeZone') || ' / ' || current_setting('search_path')"], {
      env: { ...process.env, ...cluster.env, PGUSER: user },
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    }).trim();
  } catch (error) {
    return /permission denied for database/.test(String((error as { stderr?: string }).stderr)) ? 'refused' : `failed: ${String(error)}`;
  }
}

/** A database as production has it: `app`'s, with a table of its own; `options` as CREATE DATABASE takes them. */
function appTarget(name: string, options = ''): string {
  psql(cluster, 'postgres', `CREATE DATABASE ${name} OWNER app ${options}`);
  psql(cluster, name, 'SET ROLE app; CREATE TABLE old_stuff (id int); INSERT INTO old_stuff VALUES (1);');
  return name;
}

beforeAll(async () => {
  cluster = await startPostgres();
  psql(cluster, 'postgres', 'CREATE ROLE app LOGIN; CREATE ROLE member LOGIN CREATEDB; GRANT app TO member; CREATE ROLE reader LOGIN; CREATE ROLE outsider LOGIN; CREATE DATABASE atmr OWNER app');
  psql(cluster, 'atmr', "SET ROLE app; CREATE TABLE booking (id int PRIMARY KEY, note text); INSERT INTO booking SELECT i, 'b' || i FROM generate_series(1, 300) i;");
  localS3 = await startLocalS3();
  s3 = createS3Client(localS3.env);
  ({ manifestKey: backup } = await writeFixtureBackup(s3, localS3.bucket, cluster, 'atmr', { tier: 'daily' }));
}, 120_000);

afterAll(async () => {
  await localS3?.stop();
  if (cluster) stopPostgres(cluster);
});

describe("a restore over an existing database keeps what that database has set on itself", () => {
  it('over production as the trial ran it (--force, the production flag, --yes, --terminate-connections): its settings, grants, connection limit and comment, and what they do', async () => {
    // Arrange
    lockDown('atmr');
    // A placeholder (a setting no module defines), a quote and a backslash: only a superuser may set one for a database.
    psql(cluster, 'postgres', "ALTER DATABASE atmr SET atmr.note = 'it''s C:\\atmr'");
    const before = properties('atmr');
    const env = { ...localS3.env, PGHOST: cluster.host, PGPORT: String(cluster.port), PGUSER: 'postgres', PGDATABASE: 'atmr' };

    // Act
    const run = await atmrDr(['restore', 'latest', '--target-db', 'atmr', '--force', '--i-understand-this-overwrites-production', '--yes', '--terminate-connections'], env);

    // Assert
    expect(run.stderr).not.toMatch(/^atmr-dr:/m);
    expect(run.status).toBe(0);
    expect(psql(cluster, 'atmr', 'SELECT count(*) FROM booking')).toBe('300');
    expect(properties('atmr')).toBe(before);
    expect(before).toBe(String.raw`50 | {app=CTc/app,reader=C*c/app} | ATMR production: don't \ drop | {TimeZone=Europe/Paris,"search_path=\"$user\", public, \"odd, \"\"name\"\"\"",statement_timeout=30s,"atmr.note=it's C:\\atmr"}`);
    expect(sessionOf('app', 'atmr')).toBe('Europe/Paris / "$user", public, "odd, ""name"""');
    expect(sessionOf('outsider', 'atmr')).toBe('refused');
    expect(sessionOf('reader', 'atmr')).toBe('Europe/Paris / "$user", public, "odd, ""name"""');
    // Only what atmr held before, kept beside it (the restore keeps the database it replaces)
    expect(databasesLike(cluster, 'atmr_')).toEqual([expect.stringMatching(/^atmr_old_/)]);
  }, 60_000);

  it('as a CREATEDB role that is a member of the owner, not a superuser (as on RDS)', async () => {
    // Arrange
    const target = appTarget('atmr_member');
    lockDown(target);
    const before = properties(target);

    // Act
    const result = await restoreBackup({ s3, bucket: localS3.bucket, connection: connection('member'), jobs: 2 }, { ref: backup, targetDb: target, force: true });

    // Assert
    expect(result.replaced).toBe(true);
    expect(psql(cluster, target, "SELECT count(*) FROM pg_class WHERE relname = 'old_stuff'")).toBe('0');
    expect(properties(target)).toBe(before);
    expect(sessionOf('outsider', target)).toBe('refused');
    expect(sessionOf('app', target)).toBe('Europe/Paris / "$user", public, "odd, ""name"""');
    expect(databasesLike(cluster, `${target}_`)).toEqual([expect.stringMatching(new RegExp(`^${target}_old_`))]);
  }, 60_000);

  it("restores all the same when the restoring role may not set one of them (a superuser's setting), naming it in the warning with the statement that sets it on the target", async () => {
    // Arrange
    const target = appTarget('atmr_refused');
    lockDown(target);
    const lockedDown = properties(target);
    psql(cluster, 'postgres', `ALTER DATABASE ${target} SET log_min_duration_statement = 250`);
    const warnings: string[] = [];

    // Act
    const result = await restoreBackup({ s3, bucket: localS3.bucket, connection: connection('member'), jobs: 2, warn: (line) => warnings.push(line) }, { ref: backup, targetDb: target, force: true });

    // Assert: the data and every other property are there; the refused setting is named, with the
    // statement that a superuser runs on the restored target, and that statement works
    expect(result.replaced).toBe(true);
    expect(psql(cluster, target, "SELECT count(*) FROM pg_class WHERE relname = 'old_stuff'")).toBe('0');
    expect(warnings).toEqual([
      `not carried over from the replaced "${target}" to its restored copy: ALTER DATABASE "${target}" SET "log_min_duration_statement" TO '250' (refused: permission denied to set parameter "log_min_duration_statement"): set again by hand what is still needed`,
    ]);
    expect(properties(target)).toBe(lockedDown);
    expect(sessionOf('outsider', target)).toBe('refused');
    psql(cluster, 'postgres', `ALTER DATABASE "${target}" SET "log_min_duration_statement" TO '250'`);
    expect(psql(cluster, 'postgres', `SELECT setconfig::text FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase WHERE d.datname = '${target}' AND s.setrole = 0`)).toContain('log_min_duration_statement=250');
    expect(databasesLike(cluster, `${target}_`)).toEqual([expect.stringMatching(new RegExp(`^${target}_old_`))]);
  }, 60_000);

  it("fails before the swap, dropping staging from a fresh session and leaving the target as it was, when its session is cut while it gives the copy the target's grants (a failover): no copy swapped in half locked down", async () => {
    // Arrange: as soon as the staging database exists, a test session updates its pg_database row in
    // an open transaction, so that the restore's first statement on it (CONNECTION LIMIT) waits;
    // the waiting session is then terminated, as a failover would cut it
    const target = appTarget('atmr_cut');
    lockDown(target);
    const before = properties(target);
    const holder = new Client({ host: cluster.host, port: cluster.port, user: cluster.user, database: 'postgres' });
    // pg_stat_activity is read once per transaction: the looks go through a session of their own.
    const looker = new Client({ host: cluster.host, port: cluster.port, user: cluster.user, database: 'postgres' });
    for (const client of [holder, looker]) client.on('error', () => undefined);
    await holder.connect();
    await looker.connect();
    let held: Promise<unknown> | undefined;
    let staging = '';
    try {
      const lines: string[] = [];
      const log = (line: string): void => {
        lines.push(line);
        const loading = /^load: \S+ into staging database (\S+)$/.exec(line);
        if (loading) {
          staging = loading[1];
          held = holder.query(`BEGIN; ALTER DATABASE "${staging}" CONNECTION LIMIT 7`);
        }
      };

      // Act
      const restoring = restoreBackup({ s3, bucket: localS3.bucket, connection: connection('postgres'), jobs: 2, log }, { ref: backup, targetDb: target, force: true }).then(
        () => undefined,
        (error: unknown) => error as Error,
      );
      for (let waited = 0; waited < 30_000; waited += 50) {
        const pids = held
          ? await looker.query<{ pid: number }>("SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'ALTER DATABASE%CONNECTION LIMIT 50'")
          : { rows: [] };
        if (pids.rows.length > 0) {
          await looker.query('SELECT pg_terminate_backend($1)', [pids.rows[0].pid]);
          break;
        }
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      await held;
      await holder.query('ROLLBACK');
      const error = await restoring;

      // Assert
      // Nothing swapped: the target as it was, and the copy given only part of its grants dropped,
      // from a fresh session: the cut one is gone, and the server still answers.
      expect(error?.message).toBe(`terminating connection due to administrator command; target "${target}" untouched`);
      expect(lines).toContain(`staging database ${staging} dropped`);
      expect(databasesLike(cluster, `${target}_`)).toEqual([]);
      expect(properties(target)).toBe(before);
      expect(psql(cluster, target, 'SELECT count(*) FROM old_stuff')).toBe('1');
    } finally {
      await holder.end();
      await looker.end();
    }
  }, 60_000);

  it("names in one warning what it cannot give the copy: a role's settings in that database (with the statement that sets each again) and what the database was created with", async () => {
    // Arrange: a database of another collation, a role's own setting in it
    const target = appTarget('atmr_roles', "TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'");
    psql(cluster, 'postgres', `ALTER ROLE app IN DATABASE ${target} SET work_mem = '64MB'; ALTER ROLE reader IN DATABASE ${target} SET search_path = reporting, public`);
    const warnings: string[] = [];

    // Act
    await restoreBackup({ s3, bucket: localS3.bucket, connection: connection('postgres'), jobs: 2, warn: (line) => warnings.push(line) }, { ref: backup, targetDb: target, force: true });

    // Assert
    expect(warnings).toEqual([
      `not carried over from the replaced "${target}" to its restored copy: ALTER ROLE "app" IN DATABASE "${target}" SET "work_mem" TO '64MB'; ALTER ROLE "reader" IN DATABASE "${target}" SET "search_path" TO 'reporting', 'public'; LC_COLLATE C, LC_CTYPE C: set again by hand what is still needed`,
    ]);
    expect(properties(target)).toBe('-1 | default | no comment | no settings');
  }, 60_000);

  it('into a new name gives it nothing and warns of nothing', async () => {
    // Arrange
    const warnings: string[] = [];

    // Act
    const result = await restoreBackup({ s3, bucket: localS3.bucket, connection: connection('member'), jobs: 2, warn: (line) => warnings.push(line) }, { ref: backup, targetDb: 'atmr_new' });

    // Assert
    expect(result.replaced).toBe(false);
    expect(warnings).toEqual([]);
    expect(properties('atmr_new')).toBe('-1 | default | no comment | no settings');
  }, 60_000);
});
