import { execFileSync } from 'node:child_process';
import { S3Client } from '@aws-sdk/client-s3';
import { Client } from 'pg';
import { createS3Client } from '../../lambdas/shared/aws';
import { restoreBackup } from '../../lambdas/restore/restore';
import type { OperatorError } from '../../lambdas/shared/errors';
import { warnIfReadOnly } from '../../lambdas/restore/properties';
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

/** What `default_transaction_read_only` a new session of `user` on `database` starts with. */
function readOnlyOf(user: string, database: string): string {
  return psql({ env: { ...cluster.env, PGUSER: user } }, database, 'SHOW default_transaction_read_only');
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
        const loading = /^load: .+ into staging database (\S+)$/.exec(line);
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

  it("fails before the swap when the server refuses one of the target's grants to the copy (a lock another session holds on it): one line naming the statement, the target as it was, the staging database dropped", async () => {
    // Arrange: a target locked down by its grants alone (no connection limit, no comment: the first
    // statement the restore gives the copy is the REVOKE ... FROM PUBLIC of its grants); as soon as
    // the staging database exists, a test session updates its pg_database row in an open
    // transaction, so that the REVOKE waits for it until the session's lock_timeout refuses it; the
    // test session lets go once the restore has gone on to drop the staging database
    const target = appTarget('atmr_grant_refused');
    psql(cluster, 'postgres', `REVOKE CONNECT, TEMPORARY ON DATABASE ${target} FROM PUBLIC; GRANT CONNECT ON DATABASE ${target} TO reader;`);
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
        const loading = /^load: .+ into staging database (\S+)$/.exec(line);
        if (loading) {
          staging = loading[1];
          held = holder.query(`BEGIN; ALTER DATABASE "${staging}" CONNECTION LIMIT 7`);
        }
      };
      const waiting = async (statement: string): Promise<boolean> =>
        (await looker.query("SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE $1", [statement])).rows.length > 0;

      // Act
      let settled = false;
      const restoring = restoreBackup({ s3, bucket: localS3.bucket, connection: connection('postgres'), jobs: 2, log }, { ref: backup, targetDb: target, force: true }).then(
        () => undefined,
        (error: unknown) => error as Error,
      ).finally(() => (settled = true));
      let revokeWaited = false;
      for (let waited = 0; waited < 45_000 && !settled; waited += 50) {
        revokeWaited ||= held !== undefined && (await waiting('REVOKE ALL ON DATABASE%FROM PUBLIC'));
        if (revokeWaited && (await waiting('DROP DATABASE%'))) break;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      await held;
      await holder.query('ROLLBACK');
      const error = await restoring;

      // Assert
      expect(revokeWaited).toBe(true);
      expect(error?.message).toBe(
        `cannot give the restored copy what "${target}" has set on itself: REVOKE ALL ON DATABASE "${staging}" FROM PUBLIC failed (canceling statement due to lock timeout): rerun the restore; target "${target}" untouched`,
      );
      expect((error as OperatorError | undefined)?.exitCode).toBe(1);
      expect(lines).toContain(`staging database ${staging} dropped`);
      expect(databasesLike(cluster, `${target}_`)).toEqual([]);
      expect(properties(target)).toBe(before);
      expect(sessionOf('outsider', target)).toBe('refused');
      expect(psql(cluster, target, 'SELECT count(*) FROM old_stuff')).toBe('1');
    } finally {
      await holder.end();
      await looker.end();
    }
  }, 90_000);

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

  it('over a database the application may only read (default_transaction_read_only = on on it): keeps it so, and says so in one warning with the statement that lifts it', async () => {
    // Arrange
    const target = appTarget('atmr_ro');
    psql(cluster, 'postgres', `ALTER DATABASE ${target} SET default_transaction_read_only = on`);
    const warnings: string[] = [];

    // Act
    const result = await restoreBackup({ s3, bucket: localS3.bucket, connection: connection('member'), jobs: 2, warn: (line) => warnings.push(line) }, { ref: backup, targetDb: target, force: true });

    // Assert
    const line = `"${target}" is read-only for the application: it carries default_transaction_read_only = on at database level, as the database it was given its settings from had it, so every session on it refuses writes; to let the application write: ALTER DATABASE "${target}" RESET default_transaction_read_only`;
    expect(warnings).toEqual([line]);
    expect(result.warnings).toEqual([line]);
    expect(properties(target)).toBe('-1 | default | no comment | {default_transaction_read_only=on}');
  }, 60_000);

  it("a role read-only in every database (ALTER ROLE ... SET: the cluster's, as the backup runner's role is on purpose) is not named: the restore neither gives nor changes it", async () => {
    // Arrange
    const target = appTarget('atmr_role_global');
    psql(cluster, 'postgres', 'ALTER ROLE app SET default_transaction_read_only = on');
    const warnings: string[] = [];
    try {
      // Act
      const result = await restoreBackup({ s3, bucket: localS3.bucket, connection: connection('member'), jobs: 2, warn: (line) => warnings.push(line) }, { ref: backup, targetDb: target, force: true });

      // Assert
      expect(result.warnings).toEqual([]);
      expect(warnings).toEqual([]);
    } finally {
      psql(cluster, 'postgres', 'ALTER ROLE app RESET default_transaction_read_only');
    }
  }, 60_000);

  it('into a new name, from a backup of a database that has none of them set, gives it nothing and warns of nothing', async () => {
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

describe("a restore into a new name gives it the backed-up database's own settings, role settings, comment and grants", () => {
  /** A backup of `shop`, which has all of them set, as the h105 trial's production had. */
  let shop: string;

  /** The role settings in a database, as the catalogs hold them. */
  const roleSettings = (database: string): string =>
    psql(
      cluster,
      'postgres',
      `SELECT string_agg(pg_get_userbyid(s.setrole) || ' ' || s.setconfig::text, '; ' ORDER BY 1) FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase WHERE d.datname = '${database}' AND s.setrole <> 0`,
    );

  beforeAll(async () => {
    psql(
      cluster,
      'postgres',
      `CREATE ROLE "WRITER" LOGIN; CREATE ROLE gone; CREATE DATABASE shop OWNER app;
       ALTER DATABASE shop SET search_path = "Sales ""EU""", public;
       ALTER DATABASE shop SET timezone = 'Pacific/Chatham';
       ALTER ROLE "WRITER" IN DATABASE shop SET work_mem = '64MB';
       COMMENT ON DATABASE shop IS 'the shop''s production';
       REVOKE CONNECT, TEMPORARY ON DATABASE shop FROM PUBLIC;
       GRANT CONNECT ON DATABASE shop TO reader, "WRITER";
       ALTER DATABASE shop CONNECTION LIMIT 40;`,
    );
    psql(cluster, 'shop', 'SET ROLE app; CREATE TABLE orders (id int PRIMARY KEY); INSERT INTO orders SELECT generate_series(1, 50);');
    ({ manifestKey: shop } = await writeFixtureBackup(s3, localS3.bucket, cluster, 'shop', { tier: 'daily', pointers: 'none' }));
  }, 60_000);

  it('as a superuser: the copy has each of them, and the sessions they make', async () => {
    // Arrange
    const warnings: string[] = [];

    // Act
    const result = await restoreBackup({ s3, bucket: localS3.bucket, connection: connection('postgres'), jobs: 2, warn: (line) => warnings.push(line) }, { ref: shop, targetDb: 'shop_copy' });

    // Assert
    expect(result.replaced).toBe(false);
    expect(warnings).toEqual([]);
    expect(properties('shop_copy')).toBe(properties('shop'));
    expect(properties('shop_copy')).toBe(`40 | {app=CTc/app,reader=c/app,WRITER=c/app} | the shop's production | {"search_path=\\"Sales \\"\\"EU\\"\\"\\", public",TimeZone=Pacific/Chatham}`);
    expect(roleSettings('shop_copy')).toBe('WRITER {work_mem=64MB}');
    expect(sessionOf('outsider', 'shop_copy')).toBe('refused');
    expect(sessionOf('reader', 'shop_copy')).toBe('Pacific/Chatham / "Sales ""EU""", public');
  }, 60_000);

  it('when a role the grants and role settings name is not on this server: restored, locked down, the statements naming it in the warning', async () => {
    // Arrange: a backup granting to a role that this server then lost (a restore on another instance)
    psql(cluster, 'postgres', 'GRANT CONNECT ON DATABASE shop TO gone; ALTER ROLE gone IN DATABASE shop SET work_mem = \'8MB\'');
    const { manifestKey } = await writeFixtureBackup(s3, localS3.bucket, cluster, 'shop', { tier: 'daily', pointers: 'none', startedAt: new Date(Date.now() + 60_000) });
    psql(cluster, 'postgres', 'REVOKE CONNECT ON DATABASE shop FROM gone; ALTER ROLE gone IN DATABASE shop RESET ALL; DROP ROLE gone');
    const warnings: string[] = [];

    // Act
    const result = await restoreBackup({ s3, bucket: localS3.bucket, connection: connection('postgres'), jobs: 2, warn: (line) => warnings.push(line) }, { ref: manifestKey, targetDb: 'shop_lost' });

    // Assert
    expect(result.replaced).toBe(false);
    expect(warnings).toEqual([
      `not carried over from the backed-up "shop" to its restored copy "shop_lost": GRANT CONNECT ON DATABASE "shop_lost" TO "gone" (refused: role "gone" does not exist); ALTER ROLE "gone" IN DATABASE "shop_lost" SET "work_mem" TO '8MB' (refused: role "gone" does not exist): set again by hand what is still needed`,
    ]);
    expect(properties('shop_lost')).toBe(properties('shop'));
    expect(sessionOf('outsider', 'shop_lost')).toBe('refused');
  }, 60_000);

  it("when the backed-up database's owner is not on this server: the copy is still locked down (REVOKE ... FROM PUBLIC given), the owner's own statements named", async () => {
    // Arrange: a database whose owner this server then lost (a restore on another instance)
    psql(cluster, 'postgres', 'CREATE ROLE ghost_owner; CREATE DATABASE ghostly OWNER ghost_owner; REVOKE CONNECT, TEMPORARY ON DATABASE ghostly FROM PUBLIC; GRANT CONNECT ON DATABASE ghostly TO reader');
    psql(cluster, 'ghostly', 'CREATE TABLE kept (id int); INSERT INTO kept VALUES (1)');
    const { manifestKey } = await writeFixtureBackup(s3, localS3.bucket, cluster, 'ghostly', { tier: 'daily', pointers: 'none' });
    psql(cluster, 'postgres', 'ALTER DATABASE ghostly OWNER TO postgres; REVOKE ALL ON DATABASE ghostly FROM ghost_owner; DROP ROLE ghost_owner');
    const warnings: string[] = [];

    // Act
    await restoreBackup({ s3, bucket: localS3.bucket, connection: connection('postgres'), jobs: 2, warn: (line) => warnings.push(line) }, { ref: manifestKey, targetDb: 'ghostly_copy' });

    // Assert
    expect(sessionOf('outsider', 'ghostly_copy')).toBe('refused');
    expect(sessionOf('reader', 'ghostly_copy')).not.toBe('refused');
    expect(warnings).toEqual([expect.stringMatching(/^not carried over from the backed-up "ghostly" to its restored copy "ghostly_copy": REVOKE ALL ON DATABASE "ghostly_copy" FROM "ghost_owner" \(refused: role "ghost_owner" does not exist\); /)]);
  }, 60_000);

  it("as a CREATEDB member of the owner: a setting it may not set, and a role's it may not alter, are named in the warning with the statement; the rest is given", async () => {
    // Arrange: a superuser's setting on the backed-up database
    psql(cluster, 'postgres', 'ALTER DATABASE shop SET log_min_duration_statement = 250');
    const { manifestKey } = await writeFixtureBackup(s3, localS3.bucket, cluster, 'shop', { tier: 'daily', pointers: 'none', startedAt: new Date(Date.now() + 120_000) });
    psql(cluster, 'postgres', 'ALTER DATABASE shop RESET log_min_duration_statement');
    const warnings: string[] = [];

    // Act
    const result = await restoreBackup({ s3, bucket: localS3.bucket, connection: connection('member'), jobs: 2, warn: (line) => warnings.push(line) }, { ref: manifestKey, targetDb: 'shop_member' });

    // Assert
    expect(result.owner).toBe('app');
    expect(warnings).toEqual([
      `not carried over from the backed-up "shop" to its restored copy "shop_member": ALTER DATABASE "shop_member" SET "log_min_duration_statement" TO '250' (refused: permission denied to set parameter "log_min_duration_statement"); ALTER ROLE "WRITER" IN DATABASE "shop_member" SET "work_mem" TO '64MB' (refused: permission denied): set again by hand what is still needed`,
    ]);
    expect(properties('shop_member')).toBe(properties('shop'));
    expect(sessionOf('outsider', 'shop_member')).toBe('refused');
    expect(sessionOf('reader', 'shop_member')).toBe('Pacific/Chatham / "Sales ""EU""", public');
  }, 60_000);

  it('of a database whose name pg_dump quotes (the trial\'s "Atmr Prod"), with a comment of many lines holding semicolons: the copy has each of them', async () => {
    // Arrange
    const source = 'Atmr "EU" Prod';
    const quoted = '"Atmr ""EU"" Prod"';
    psql(
      cluster,
      'postgres',
      `CREATE DATABASE ${quoted} OWNER app;
       ALTER DATABASE ${quoted} SET timezone = 'Pacific/Chatham';
       COMMENT ON DATABASE ${quoted} IS 'line one;
-- line two; "not a name"';
       REVOKE CONNECT, TEMPORARY ON DATABASE ${quoted} FROM PUBLIC;`,
    );
    psql(cluster, source, 'SET ROLE app; CREATE TABLE orders (id int); INSERT INTO orders VALUES (1);');
    const { manifestKey } = await writeFixtureBackup(s3, localS3.bucket, cluster, source, { tier: 'daily', pointers: 'none' });
    const warnings: string[] = [];

    // Act
    await restoreBackup({ s3, bucket: localS3.bucket, connection: connection('postgres'), jobs: 2, warn: (line) => warnings.push(line) }, { ref: manifestKey, targetDb: 'atmr_eu' });

    // Assert
    expect(warnings).toEqual([]);
    expect(properties('atmr_eu')).toBe(properties(source.replaceAll("'", "''")));
    expect(properties('atmr_eu')).toBe(`-1 | {app=CTc/app} | line one;\n-- line two; "not a name" | {TimeZone=Pacific/Chatham}`);
    expect(sessionOf('outsider', 'atmr_eu')).toBe('refused');
  }, 60_000);

  it("runs a comment's text as nothing but a comment, for a restoring role whose sessions have standard_conforming_strings off: no statement hidden in it runs", async () => {
    // Arrange: the owner's comment ends pg_dump's literal early for a session reading backslashes as
    // escapes, and the role that restores has them read that way (its own setting)
    psql(
      cluster,
      'postgres',
      `CREATE DATABASE shop_note OWNER app;
       COMMENT ON DATABASE shop_note IS 'x\\''; CREATE ROLE pwned SUPERUSER LOGIN; --';
       CREATE ROLE oldstyle SUPERUSER LOGIN; ALTER ROLE oldstyle SET standard_conforming_strings = off;`,
    );
    psql(cluster, 'shop_note', 'SET ROLE app; CREATE TABLE orders (id int); INSERT INTO orders VALUES (1);');
    const { manifestKey } = await writeFixtureBackup(s3, localS3.bucket, cluster, 'shop_note', { tier: 'daily', pointers: 'none' });
    const warnings: string[] = [];

    try {
      // Act
      await restoreBackup({ s3, bucket: localS3.bucket, connection: connection('oldstyle'), jobs: 2, warn: (line) => warnings.push(line) }, { ref: manifestKey, targetDb: 'shop_note_copy' });

      // Assert
      expect(psql(cluster, 'postgres', "SELECT count(*) FROM pg_roles WHERE rolname = 'pwned'")).toBe('0');
      expect(warnings).toEqual([]);
      expect(psql(cluster, 'postgres', "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = 'shop_note_copy'")).toBe("x\\'; CREATE ROLE pwned SUPERUSER LOGIN; --");
    } finally {
      psql(cluster, 'postgres', 'DROP ROLE IF EXISTS pwned; DROP ROLE oldstyle');
    }
  }, 60_000);

  it('from a backup pg_dump wrote with standard_conforming_strings off: reads its literals that way, and the copy has its comment, its setting and its lockdown', async () => {
    // Arrange: pg_dump writes its literals for the setting its session has, here the database's
    psql(
      cluster,
      'postgres',
      `CREATE DATABASE shop_off OWNER app; ALTER DATABASE shop_off SET standard_conforming_strings = off;
       COMMENT ON DATABASE shop_off IS 'back\\slash; it''s'; REVOKE CONNECT, TEMPORARY ON DATABASE shop_off FROM PUBLIC;`,
    );
    psql(cluster, 'shop_off', 'SET ROLE app; CREATE TABLE orders (id int); INSERT INTO orders VALUES (1);');
    const { manifestKey } = await writeFixtureBackup(s3, localS3.bucket, cluster, 'shop_off', { tier: 'daily', pointers: 'none' });
    const warnings: string[] = [];

    // Act
    await restoreBackup({ s3, bucket: localS3.bucket, connection: connection('postgres'), jobs: 2, warn: (line) => warnings.push(line) }, { ref: manifestKey, targetDb: 'shop_off_copy' });

    // Assert
    expect(warnings).toEqual([]);
    expect(properties('shop_off_copy')).toBe(properties('shop_off'));
    expect(properties('shop_off_copy')).toBe("-1 | {app=CTc/app} | back\\slash; it's | {standard_conforming_strings=off}");
    expect(sessionOf('outsider', 'shop_off_copy')).toBe('refused');
  }, 60_000);

  it('of a database whose comment holds many apostrophes before a line end (French text): the copy has it, read at once', async () => {
    // Arrange: 40 apostrophes then a line end; a reader with two ways to match each doubled quote
    // took days on this, the event loop blocked (no Ctrl-C, no deadline)
    const comment = `${"l'application d'ATMR ".repeat(20)}\nsecond line`;
    psql(cluster, 'postgres', `CREATE DATABASE shop_fr OWNER app; COMMENT ON DATABASE shop_fr IS '${comment.replaceAll("'", "''")}';`);
    psql(cluster, 'shop_fr', 'SET ROLE app; CREATE TABLE orders (id int); INSERT INTO orders VALUES (1);');
    const { manifestKey } = await writeFixtureBackup(s3, localS3.bucket, cluster, 'shop_fr', { tier: 'daily', pointers: 'none' });

    // Act
    await restoreBackup({ s3, bucket: localS3.bucket, connection: connection('postgres'), jobs: 2, warn: () => undefined }, { ref: manifestKey, targetDb: 'shop_fr_copy' });

    // Assert
    expect(psql(cluster, 'postgres', "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = 'shop_fr_copy'")).toBe(comment);
  }, 60_000);

  it('of a database the application may only read (default_transaction_read_only = on on it): one warning naming the statement that lifts it, on stderr and in --json', async () => {
    // Arrange
    psql(cluster, 'postgres', 'CREATE DATABASE shop_ro OWNER app');
    psql(cluster, 'shop_ro', 'SET ROLE app; CREATE TABLE orders (id int); INSERT INTO orders VALUES (1);');
    psql(cluster, 'postgres', 'ALTER DATABASE shop_ro SET default_transaction_read_only = on');
    const { manifestKey } = await writeFixtureBackup(s3, localS3.bucket, cluster, 'shop_ro', { tier: 'daily', pointers: 'none' });
    const env = { ...localS3.env, PGHOST: cluster.host, PGPORT: String(cluster.port), PGUSER: 'postgres', PGDATABASE: 'postgres' };
    const line = '"shop_ro_copy" is read-only for the application: it carries default_transaction_read_only = on at database level, as the database it was given its settings from had it, so every session on it refuses writes; to let the application write: ALTER DATABASE "shop_ro_copy" RESET default_transaction_read_only';

    // Act
    const run = await atmrDr(['restore', manifestKey, '--target-db', 'shop_ro_copy', '--json'], env);

    // Assert: said, and what it says is so, and undone by the statement it names
    expect(run.status).toBe(0);
    expect(run.stderr).toContain(`atmr-dr: warning: ${line}\n`);
    expect((JSON.parse(run.stdout) as { warnings: string[] }).warnings).toEqual([line]);
    expect(() => psql(cluster, 'shop_ro_copy', 'INSERT INTO orders VALUES (2)')).toThrow(/read-only transaction/);
    psql(cluster, 'postgres', 'ALTER DATABASE "shop_ro_copy" RESET default_transaction_read_only');
    psql(cluster, 'shop_ro_copy', 'INSERT INTO orders VALUES (2)');
  }, 60_000);

  it("names every setting in the copy that makes it read-only, the database's and each role's in it, each with the statement that lifts it; not a role's that turns it off, nor a role's for every database", async () => {
    // Arrange: the copy under its own name (the statements name the target)
    psql(cluster, 'postgres', 'CREATE DATABASE shop_ro_roles OWNER app');
    const admin = new Client({ host: cluster.host, port: cluster.port, user: cluster.user, database: 'postgres' });
    admin.on('error', () => undefined);
    await admin.connect();
    const warnings: string[] = [];
    try {
      psql(
        cluster,
        'postgres',
        `ALTER DATABASE shop_ro_roles SET default_transaction_read_only = on;
         ALTER ROLE reader IN DATABASE shop_ro_roles SET default_transaction_read_only = on;
         ALTER ROLE outsider IN DATABASE shop_ro_roles SET default_transaction_read_only = off;
         ALTER ROLE app SET default_transaction_read_only = on;`,
      );

      // Act
      await warnIfReadOnly(admin, 'shop_ro_roles', 'shop_ro_roles', (line) => warnings.push(line));

      // Assert: one line; what it says is so, and undone by the statements it names
      const resets = ['ALTER DATABASE "shop_ro_roles" RESET default_transaction_read_only', 'ALTER ROLE "reader" IN DATABASE "shop_ro_roles" RESET default_transaction_read_only'];
      expect(warnings).toEqual([
        `"shop_ro_roles" is read-only for the application: it carries default_transaction_read_only = on at database level, as the database it was given its settings from had it, and role "reader" carries default_transaction_read_only = on in it (ALTER ROLE ... IN DATABASE), as the database it was given its settings from had it, so every session on it refuses writes; to let the application write: ${resets.join('; ')}`,
      ]);
      expect(readOnlyOf('reader', 'shop_ro_roles')).toBe('on');
      psql(cluster, 'postgres', resets.join('; '));
      expect(readOnlyOf('reader', 'shop_ro_roles')).toBe('off');
    } finally {
      await admin.end();
      psql(cluster, 'postgres', 'ALTER ROLE app RESET default_transaction_read_only; DROP DATABASE shop_ro_roles');
    }
  });

  it('a read of whether the copy is read-only that fails is a warning with the query to run, not the end of the restore', async () => {
    // Arrange: a session the server no longer answers on (ended)
    const admin = new Client({ host: cluster.host, port: cluster.port, user: cluster.user, database: 'postgres' });
    admin.on('error', () => undefined);
    await admin.connect();
    await admin.end();
    const warnings: string[] = [];

    // Act
    await warnIfReadOnly(admin, 'shop_ro_staging', 'shop_ro', (line) => warnings.push(line));

    // Assert
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/^could not read whether "shop_ro" will be read-only for the application \(.+\): once the restore is done, look with SELECT setrole::regrole AS role, setconfig FROM pg_db_role_setting WHERE setdatabase = \(SELECT oid FROM pg_database WHERE datname = 'shop_ro'\); default_transaction_read_only=on there means every write is refused in it for that role \(every role when "-"\)$/);
  });

  it('from a backup whose manifest does not record them (taken before backups did): restored, and one warning says they were not given and how to get them', async () => {
    // Arrange
    const { manifestKey } = await writeFixtureBackup(s3, localS3.bucket, cluster, 'shop', { tier: 'daily', pointers: 'none', startedAt: new Date(Date.now() + 180_000), databaseProperties: false });
    const warnings: string[] = [];

    // Act
    const result = await restoreBackup({ s3, bucket: localS3.bucket, connection: connection('postgres'), jobs: 2, warn: (line) => warnings.push(line) }, { ref: manifestKey, targetDb: 'shop_unrecorded' });

    // Assert
    expect(result.replaced).toBe(false);
    expect(psql(cluster, 'shop_unrecorded', 'SELECT count(*) FROM orders')).toBe('50');
    expect(warnings).toEqual([
      `backup ${manifestKey} does not record the backed-up "shop"'s owner, own settings, role settings, comment and grants (taken before backups recorded them): "shop_unrecorded" has none of them, and is owned by "${cluster.user}" (the restoring role), not by the backed-up database's owner; restore a newer backup to get them, or set them by hand (ALTER DATABASE "shop_unrecorded" OWNER TO <its owner>, ...)`,
    ]);
    expect(properties('shop_unrecorded')).toBe('-1 | default | no comment | no settings');
  }, 60_000);

  it('from the plain format, as from the custom one: the copy has each of them, its lockdown too, from the manifest', async () => {
    // Arrange
    const warnings: string[] = [];

    // Act
    const result = await restoreBackup({ s3, bucket: localS3.bucket, connection: connection('postgres'), jobs: 2, warn: (line) => warnings.push(line) }, { ref: shop, targetDb: 'shop_plain', format: 'plain' });

    // Assert
    expect(result.object.format).toBe('plain');
    expect(warnings).toEqual([]);
    expect(result.owner).toBe('app');
    expect(properties('shop_plain')).toBe(properties('shop'));
    expect(roleSettings('shop_plain')).toBe('WRITER {work_mem=64MB}');
    expect(sessionOf('outsider', 'shop_plain')).toBe('refused');
    expect(sessionOf('reader', 'shop_plain')).toBe('Pacific/Chatham / "Sales ""EU""", public');
  }, 60_000);
});
