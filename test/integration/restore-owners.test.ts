import { S3Client } from '@aws-sdk/client-s3';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createS3Client } from '../../lambdas/shared/aws';
import type { OperatorError } from '../../lambdas/shared/errors';
import { restoreBackup } from '../../lambdas/restore/restore';
import { runRestoreTest } from '../../lambdas/restore/restore-test';
import { writeFakePgRestore } from '../support/fake-pg-restore';
import { PostgresCluster, psql, startPostgres, stopPostgres } from '../support/postgres';
import { LocalS3, startLocalS3 } from '../support/s3';
import { atmrDr, databasesLike, writeFixtureBackup } from '../lambdas/restore/fixtures';

/**
 * Who owns what after a restore. The application's role `app` owns its database and its tables,
 * as in production; a superuser (RDS's master user) or a CREATEDB role (`restorer`, not a member of
 * `app`) restores. A cluster of its own: roles are the server's, not a database's.
 */
let cluster: PostgresCluster;
let localS3: LocalS3;
let s3: S3Client;
/** A backup of `app`'s database (its tables `app`'s). */
let appBackup: string;
/** A backup whose tables' owner, `ghost`, no longer exists on the server (a new server's case). */
let ghostBackup: string;
/** A backup of `app`'s 50 tables with GRANTs to roles the server no longer has: `readonly` and `Weird "Role"`. */
let grantBackup: string;
/**
 * A backup whose function body and table comment hold lines shaped like pg_dump's own GRANT and
 * ALTER ... OWNER TO (to `ghost`, a role the server lacks), and one real GRANT to `auditor`, also missing.
 */
let bodyBackup: string;
/**
 * A backup with large objects: one of app's (a column's document), one owned by `lobowner` with
 * privileges for `lobreader`, both roles gone from the server. pg_dump keeps a large object's
 * owner and privileges with its data, not its schema.
 */
let largeObjectBackup: string;
const WEIRD = '"Weird ""Role"""';

/**
 * A backup of a big table (some 40 MB) granted to `reporter`, a small one granted to `auditor2`,
 * and a third table owned by `keeper`, the three gone from the server (a new server's case).
 */
let missingBackup: string;
/** A backup whose only mention of `defreader`, gone from the server, is in app's default privileges. */
let defaultsBackup: string;
/** The same three backups (missingsrc, defaultssrc, ghostsrc), their manifests listing the roles they name, as backups record them now. */
let missingListed: string;
let defaultsListed: string;
let ghostListed: string;

/** What the load's roles line adds to pg_dumpall: it brings every role at once. */
const ROLES_DUMP = ', which also brings the roles of a grant that names several: PostgreSQL names the first missing one only';

/**
 * What the roles line says gives the server `names`: a copy of the source's roles first, then each
 * CREATE ROLE, said to make NOLOGIN roles without a password, and the LOGIN and password a role the
 * application logs in as needs (`login`'s, as an example): run as it was printed, a bare CREATE ROLE
 * of the application's role left the application unable to connect after the swap.
 */
function createRoles(names: string[], login: string, dumpAdds = ''): string {
  const one = names.length === 1;
  return (
    `copy the source server's roles (pg_dumpall --roles-only there, run here${dumpAdds}; from RDS add --no-role-passwords, then set the passwords), ` +
    `or create ${one ? 'it' : 'them'}: ${names.map((n) => `CREATE ROLE "${n}"`).join('; ')} makes ${one ? 'a NOLOGIN role' : 'NOLOGIN roles'} without a password, which can own objects and be granted privileges, ` +
    `while a role the application logs in as needs LOGIN and its password (CREATE ROLE "${login}" LOGIN PASSWORD '...')`
  );
}

/** psql as another role. */
const as = (user: string) => ({ env: { ...cluster.env, PGUSER: user } });
const connection = (user: string) => ({ host: cluster.host, port: cluster.port, user, database: 'postgres' });

function owners(database: string): string {
  return psql(cluster, database, "SELECT string_agg(relname || ':' || pg_get_userbyid(relowner), ',' ORDER BY relname) FROM pg_class WHERE relname IN ('booking', 'rider')");
}

function databaseOwner(database: string): string {
  return psql(cluster, 'postgres', `SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '${database}'`);
}

/** The application's database as production has it: owned by `app`, a table of `app`'s in it. */
function appTarget(name: string): string {
  psql(cluster, 'postgres', `CREATE DATABASE ${name} OWNER app`);
  psql(cluster, name, 'SET ROLE app; CREATE TABLE old_stuff (id int); INSERT INTO old_stuff VALUES (1);');
  return name;
}

function env(user: string): Record<string, string> {
  return { ...localS3.env, PGHOST: cluster.host, PGPORT: String(cluster.port), PGUSER: user };
}

beforeAll(async () => {
  cluster = await startPostgres();
  psql(
    cluster,
    'postgres',
    `CREATE ROLE app LOGIN; CREATE ROLE restorer LOGIN CREATEDB; CREATE ROLE member LOGIN CREATEDB; GRANT app TO member; CREATE ROLE ghost LOGIN;
     CREATE DATABASE appsrc OWNER app; CREATE DATABASE ghostsrc OWNER ghost`,
  );
  const tables = `CREATE TABLE booking (id int PRIMARY KEY, note text); INSERT INTO booking SELECT i, 'b' || i FROM generate_series(1, 300) i;
                  CREATE TABLE rider (id int PRIMARY KEY); INSERT INTO rider SELECT generate_series(1, 20);`;
  psql(cluster, 'appsrc', `SET ROLE app; ${tables}`);
  psql(cluster, 'ghostsrc', `SET ROLE ghost; ${tables}`);
  localS3 = await startLocalS3();
  s3 = createS3Client(localS3.env);
  ({ manifestKey: appBackup } = await writeFixtureBackup(s3, localS3.bucket, cluster, 'appsrc', { tier: 'daily' }));
  ({ manifestKey: ghostBackup } = await writeFixtureBackup(s3, localS3.bucket, cluster, 'ghostsrc', { tier: 'daily' }));
  ({ manifestKey: ghostListed } = await writeFixtureBackup(s3, localS3.bucket, cluster, 'ghostsrc', { tier: 'weekly', roles: true }));
  psql(cluster, 'postgres', 'DROP DATABASE ghostsrc; DROP ROLE ghost');
  // A reporting role and one whose name needs quoting, granted to in the ways pg_dump writes down.
  psql(cluster, 'postgres', `CREATE ROLE readonly; CREATE ROLE ${WEIRD}; CREATE DATABASE grantsrc OWNER app`);
  const more = Array.from({ length: 48 }, (_, i) => `CREATE TABLE t${i} (id int PRIMARY KEY, note text);`).join(' ');
  psql(
    cluster,
    'grantsrc',
    `SET ROLE app; ${tables} ${more}
     GRANT SELECT ON ALL TABLES IN SCHEMA public TO readonly; GRANT UPDATE ON booking TO ${WEIRD} WITH GRANT OPTION;
     ALTER DEFAULT PRIVILEGES FOR ROLE app IN SCHEMA public GRANT SELECT ON TABLES TO ${WEIRD};`,
  );
  ({ manifestKey: grantBackup } = await writeFixtureBackup(s3, localS3.bucket, cluster, 'grantsrc', { tier: 'daily' }));
  psql(cluster, 'postgres', `DROP DATABASE grantsrc; DROP ROLE readonly; DROP ROLE ${WEIRD}`);
  psql(cluster, 'postgres', 'CREATE ROLE auditor; CREATE DATABASE bodysrc OWNER app');
  psql(
    cluster,
    'bodysrc',
    `SET ROLE app; ${tables} GRANT SELECT ON booking TO auditor;
     CREATE FUNCTION hand_over() RETURNS void LANGUAGE plpgsql AS $body$
BEGIN
  EXECUTE '
GRANT SELECT ON booking TO ghost;
ALTER TABLE booking OWNER TO ghost;
';
END $body$;
     COMMENT ON TABLE rider IS '
REVOKE ALL ON rider FROM ghost;
';`,
  );
  ({ manifestKey: bodyBackup } = await writeFixtureBackup(s3, localS3.bucket, cluster, 'bodysrc', { tier: 'daily' }));
  psql(cluster, 'postgres', 'DROP DATABASE bodysrc; DROP ROLE auditor');
  psql(cluster, 'postgres', 'CREATE ROLE lobowner; CREATE ROLE lobreader; CREATE DATABASE lobsrc OWNER app');
  psql(
    cluster,
    'lobsrc',
    `SET ROLE app; ${tables} CREATE TABLE document (id int PRIMARY KEY, body oid); INSERT INTO document VALUES (1, lo_from_bytea(0, 'app''s'));
     RESET ROLE; SELECT lo_from_bytea(424242, 'scanned licence'); ALTER LARGE OBJECT 424242 OWNER TO lobowner; GRANT SELECT ON LARGE OBJECT 424242 TO lobreader;`,
  );
  ({ manifestKey: largeObjectBackup } = await writeFixtureBackup(s3, localS3.bucket, cluster, 'lobsrc', { tier: 'daily' }));
  psql(cluster, 'postgres', 'DROP DATABASE lobsrc; DROP ROLE lobowner; DROP ROLE lobreader');
  psql(cluster, 'postgres', 'CREATE ROLE reporter; CREATE ROLE auditor2; CREATE ROLE keeper; CREATE DATABASE missingsrc OWNER app');
  psql(
    cluster,
    'missingsrc',
    `SET ROLE app; ${tables} CREATE TABLE big (id int PRIMARY KEY, note text); INSERT INTO big SELECT i, repeat('x', 100) FROM generate_series(1, 300000) i;
     GRANT SELECT ON big TO reporter; GRANT SELECT ON rider TO auditor2;
     RESET ROLE; CREATE TABLE kept (id int); ALTER TABLE kept OWNER TO keeper;`,
  );
  ({ manifestKey: missingBackup } = await writeFixtureBackup(s3, localS3.bucket, cluster, 'missingsrc', { tier: 'daily' }));
  ({ manifestKey: missingListed } = await writeFixtureBackup(s3, localS3.bucket, cluster, 'missingsrc', { tier: 'weekly', roles: true }));
  psql(cluster, 'postgres', 'DROP DATABASE missingsrc; DROP ROLE reporter; DROP ROLE auditor2; DROP ROLE keeper');
  psql(cluster, 'postgres', 'CREATE ROLE defreader; CREATE DATABASE defaultssrc OWNER app');
  psql(cluster, 'defaultssrc', `SET ROLE app; ${tables} ALTER DEFAULT PRIVILEGES FOR ROLE app IN SCHEMA public GRANT SELECT ON TABLES TO defreader;`);
  ({ manifestKey: defaultsBackup } = await writeFixtureBackup(s3, localS3.bucket, cluster, 'defaultssrc', { tier: 'daily' }));
  ({ manifestKey: defaultsListed } = await writeFixtureBackup(s3, localS3.bucket, cluster, 'defaultssrc', { tier: 'weekly', roles: true }));
  psql(cluster, 'postgres', 'DROP DATABASE defaultssrc; DROP OWNED BY defreader; DROP ROLE defreader');
}, 180_000);

afterAll(async () => {
  await localS3?.stop();
  if (cluster) stopPostgres(cluster);
});

describe('a restore keeps the owners of the backup', () => {
  it.each([['custom'], ['plain']] as const)(
    'as a superuser over the application\'s database (%s): the database stays app\'s, and app can read its tables and create one in public',
    async (format) => {
      // Arrange
      const target = appTarget(`app_${format}`);

      // Act
      const result = await restoreBackup({ s3, bucket: localS3.bucket, connection: connection('postgres'), jobs: 2 }, { ref: appBackup, targetDb: target, force: true, format });

      // Assert
      expect(psql(as('app'), target, 'SELECT count(*) FROM booking')).toBe('300');
      expect(psql(as('app'), target, 'CREATE TABLE public.migration_0042 (id int); SELECT count(*) FROM migration_0042')).toBe('0');
      expect(owners(target)).toBe('booking:app,rider:app');
      expect(databaseOwner(target)).toBe('app');
      expect(result.replaced).toBe(true);
      expect(result.owner).toBe('app');
      expect(databasesLike(cluster, `${target}_`)).toStrictEqual([result.replacedKeptAs]);
    },
    60_000,
  );

  it("as a CREATEDB role that is a member of app (not a superuser), with dropReplaced: creates the staging database app's, swaps it in and drops the old one", async () => {
    // Arrange
    const target = appTarget('app_member');

    // Act
    const result = await restoreBackup({ s3, bucket: localS3.bucket, connection: connection('member'), jobs: 2 }, { ref: appBackup, targetDb: target, force: true, dropReplaced: true });

    // Assert
    expect(result.replaced).toBe(true);
    expect(databaseOwner(target)).toBe('app');
    expect(owners(target)).toBe('booking:app,rider:app');
    expect(psql(as('app'), target, "SELECT count(*) FROM pg_class WHERE relname = 'old_stuff'")).toBe('0');
    expect(databasesLike(cluster, `${target}_`)).toEqual([]);
  }, 60_000);

  it('as a CREATEDB role that is a member of app (not a superuser) into a new name (custom): the database is app\'s, as the backed-up one was, and app creates in public', async () => {
    // Act
    const result = await restoreBackup({ s3, bucket: localS3.bucket, connection: connection('member'), jobs: 2 }, { ref: appBackup, targetDb: 'app_member_new_custom' });

    // Assert: a database of member's would have refused to give app its tables (permission denied for schema public)
    expect(result.replaced).toBe(false);
    expect(result.owner).toBe('app');
    expect(databaseOwner('app_member_new_custom')).toBe('app');
    expect(owners('app_member_new_custom')).toBe('booking:app,rider:app');
    expect(psql(as('app'), 'app_member_new_custom', 'CREATE TABLE public.migration_0042 (id int); SELECT count(*) FROM booking')).toBe('300');
    expect(databasesLike(cluster, 'app_member_new_custom_')).toEqual([]);
  }, 60_000);

  it('as a CREATEDB role that is a member of app (not a superuser) into a new name (plain): the database is app\'s, the manifest\'s database owner, and app creates in public', async () => {
    // Act
    const result = await restoreBackup({ s3, bucket: localS3.bucket, connection: connection('member'), jobs: 2 }, { ref: appBackup, targetDb: 'app_member_new_plain', format: 'plain' });

    // Assert: a database of member's would have refused to give app its tables (permission denied for schema public)
    expect(result.object.format).toBe('plain');
    expect(result.owner).toBe('app');
    expect(databaseOwner('app_member_new_plain')).toBe('app');
    expect(owners('app_member_new_plain')).toBe('booking:app,rider:app');
    expect(psql(as('app'), 'app_member_new_plain', 'CREATE TABLE public.migration_0042 (id int); SELECT count(*) FROM booking')).toBe('300');
    expect(databasesLike(cluster, 'app_member_new_plain_')).toEqual([]);
  }, 60_000);

  it.each([
    ['custom', /^pg_restore failed \(exit 1\): .*ERROR: permission denied for schema public/, 'OWNER "Old Owner custom") and restore into it, restore as a superuser, or pass --no-owner'],
    // psql's error names no owner, and the manifest does not either; the plain SQL cannot leave the
    // owners out: --no-owner is refused with it, so not offered.
    ['plain', /^psql failed \(exit 3\): psql:<stdin>:\d+: ERROR: permission denied for schema public/, "OWNER <the backup's owner>) and restore into it, or restore as a superuser"],
  ] as const)(
    'as a CREATEDB role that is a member of the owner into a new name, from a backup that does not record its database\'s owner (%s): the load stops with the fix (naming the owner when pg_restore\'s error does), and a database created for that owner first then restores',
    async (format, failure, fix) => {
      // Arrange: a backup taken before manifests recorded the database's owner, of a database and
      // tables owned by a role whose name pg_dump quotes
      const role = `Old Owner ${format}`;
      psql(cluster, 'postgres', `CREATE ROLE "${role}"; GRANT "${role}" TO member; CREATE DATABASE old_${format}_src OWNER "${role}"`);
      psql(cluster, `old_${format}_src`, `SET ROLE "${role}"; CREATE TABLE booking (id int PRIMARY KEY); INSERT INTO booking SELECT generate_series(1, 5);`);
      const { manifestKey } = await writeFixtureBackup(s3, localS3.bucket, cluster, `old_${format}_src`, { tier: 'daily', pointers: 'none', databaseProperties: false });
      psql(cluster, 'postgres', `DROP DATABASE old_${format}_src`);
      const target = `old_member_new_${format}`;

      // Act
      const error = await restoreBackup({ s3, bucket: localS3.bucket, connection: connection('member'), jobs: 2 }, { ref: manifestKey, targetDb: target, format }).then(
        () => undefined,
        (e: unknown) => e as OperatorError,
      );
      const left = databasesLike(cluster, target);
      psql(cluster, 'postgres', `CREATE DATABASE ${target} OWNER "${role}"`);
      const result = await restoreBackup({ s3, bucket: localS3.bucket, connection: connection('member'), jobs: 2 }, { ref: manifestKey, targetDb: target, format });

      // Assert
      expect(error?.exitCode).toBe(1);
      expect(error?.message).toMatch(failure);
      expect(error?.message).toContain(
        `(the new database is owned by "member", and only its owner may create in its schema public, so "member", not a superuser, cannot give the backup's objects to their owner: create the database empty for that owner first (CREATE DATABASE "${target}" ${fix}); the target was not touched`,
      );
      expect(left).toEqual([]);
      expect(result.rowsRestored).toBe(5);
      expect(databaseOwner(target)).toBe(role);
    },
    60_000,
  );

  it("as a CREATEDB member of app into a new name, from a database a superuser owns whose tables it gave to app: the load's line names app as the owner to create the database for, and that restores", async () => {
    // Arrange: member may not create a database for postgres, the backed-up database's owner
    psql(cluster, 'postgres', 'CREATE DATABASE superownedsrc');
    psql(cluster, 'superownedsrc', 'CREATE TABLE booking (id int PRIMARY KEY); INSERT INTO booking SELECT generate_series(1, 7); ALTER TABLE booking OWNER TO app;');
    const { manifestKey } = await writeFixtureBackup(s3, localS3.bucket, cluster, 'superownedsrc', { tier: 'monthly', pointers: 'none' });
    const target = 'superowned_new';

    // Act
    const error = (await restoreBackup({ s3, bucket: localS3.bucket, connection: connection('member'), jobs: 2 }, { ref: manifestKey, targetDb: target }).catch((e: unknown) => e)) as OperatorError;
    psql(cluster, 'postgres', `CREATE DATABASE ${target} OWNER app`);
    const result = await restoreBackup({ s3, bucket: localS3.bucket, connection: connection('member'), jobs: 2 }, { ref: manifestKey, targetDb: target });

    // Assert
    expect(error.exitCode).toBe(1);
    expect(error.message).toContain(`create the database empty for that owner first (CREATE DATABASE "${target}" OWNER "app") and restore into it`);
    expect(result.rowsRestored).toBe(7);
    expect(owners(target)).toBe('booking:app');
  }, 60_000);

  it('as a superuser into a new name: the database is the backed-up database\'s owner\'s (app), the result says so, and the tables are app\'s', async () => {
    // Act
    const run = await atmrDr(['restore', appBackup, '--target-db', 'app_new'], env('postgres'));

    // Assert
    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(/^database app_new is new and owned by "app": if the application connects as another role, ALTER DATABASE "app_new" OWNER TO <its role>$/m);
    // The next step for a copy restored beside production, which only the docs describe, is named.
    expect(run.stdout).toMatch(/^to put app_new in place of another database once checked: docs\/restore.md, "Putting a checked copy in place"$/m);
    expect(databaseOwner('app_new')).toBe('app');
    expect(owners('app_new')).toBe('booking:app,rider:app');
  }, 60_000);
});

describe("a database of the restoring role's whose tables app owns through GRANT CREATE ON SCHEMA public TO app (PostgreSQL 15's usual setup under RDS's master user)", () => {
  let grantedBackup: string;
  // Each entry of public's ACL, in a set order: a REVOKE and a GRANT again may reorder them.
  const publicGrants = (database: string): string => psql(cluster, database, "SELECT string_agg(a::text, ',' ORDER BY a::text) FROM pg_namespace, unnest(nspacl) a WHERE nspname = 'public'");
  const deps = () => ({ s3, bucket: localS3.bucket, connection: connection('member'), jobs: 2 });

  beforeAll(async () => {
    // public is the database owner's; app creates in it by a grant, not by owning the database
    psql(cluster, 'postgres', 'CREATE DATABASE grantedsrc OWNER member');
    psql(cluster, 'grantedsrc', 'GRANT CREATE ON SCHEMA public TO app; SET ROLE app; CREATE TABLE booking (id int PRIMARY KEY); CREATE TABLE rider (id int); INSERT INTO booking SELECT generate_series(1, 30);');
    ({ manifestKey: grantedBackup } = await writeFixtureBackup(s3, localS3.bucket, cluster, 'grantedsrc', { tier: 'monthly', pointers: 'none' }));
  });

  it('restores as that owner (not a superuser, a member of app) over it and into a new name: tables app\'s, public\'s grants as backed up', async () => {
    // Arrange
    psql(cluster, 'postgres', 'CREATE DATABASE granted_over OWNER member');
    psql(cluster, 'granted_over', 'CREATE TABLE old_stuff (id int); INSERT INTO old_stuff VALUES (1);');

    // Act
    const over = await restoreBackup(deps(), { ref: grantedBackup, targetDb: 'granted_over', force: true });
    const fresh = await restoreBackup(deps(), { ref: grantedBackup, targetDb: 'granted_new' });

    // Assert
    expect([over.replaced, fresh.replaced]).toEqual([true, false]);
    for (const target of ['granted_over', 'granted_new']) {
      expect(owners(target)).toBe('booking:app,rider:app');
      expect(databaseOwner(target)).toBe('member');
      expect(publicGrants(target)).toBe(publicGrants('grantedsrc'));
      expect(psql(as('app'), target, 'CREATE TABLE public.migration_0042 (id int); SELECT count(*) FROM booking')).toBe('30');
    }
  }, 60_000);

  it("a backup whose database owner revoked its own CREATE on public after making its tables: restored by a member of that owner, public's grants as backed up", async () => {
    // Arrange: the revoke, run before the tables, would refuse them to the restoring role (no index:
    // the load's post-data run, after pre-data's grants, would need CREATE on public for one)
    psql(cluster, 'postgres', 'CREATE DATABASE selfrevokedsrc OWNER app');
    psql(cluster, 'selfrevokedsrc', 'SET ROLE app; CREATE TABLE booking (id int); INSERT INTO booking SELECT generate_series(1, 4); CREATE TABLE rider (id int); REVOKE CREATE ON SCHEMA public FROM pg_database_owner;');
    const { manifestKey } = await writeFixtureBackup(s3, localS3.bucket, cluster, 'selfrevokedsrc', { tier: 'monthly', pointers: 'none' });

    // Act
    const result = await restoreBackup(deps(), { ref: manifestKey, targetDb: 'selfrevoked_new' });

    // Assert
    expect(result.rowsRestored).toBe(4);
    expect(owners('selfrevoked_new')).toBe('booking:app,rider:app');
    expect(publicGrants('selfrevoked_new')).toBe(publicGrants('selfrevokedsrc'));
  }, 60_000);

  it('with --format plain, whose SQL grants on public only at its end: fails the load, one line naming the custom format as the way; staging dropped, the target untouched', async () => {
    // Arrange
    psql(cluster, 'postgres', 'CREATE DATABASE granted_plain OWNER member');
    psql(cluster, 'granted_plain', 'CREATE TABLE old_stuff (id int); INSERT INTO old_stuff VALUES (1);');

    // Act
    const error = (await restoreBackup(deps(), { ref: grantedBackup, targetDb: 'granted_plain', force: true, format: 'plain' }).catch((e: unknown) => e)) as OperatorError;

    // Assert
    expect(error.message).toMatch(/^psql failed \(exit 3\): .*permission denied for schema public \(.*restore the custom format \(without --format plain\), whose load gives those grants first, or restore as a superuser\); the target was not touched/);
    expect(error.exitCode).toBe(1);
    expect(psql(cluster, 'granted_plain', 'SELECT count(*) FROM old_stuff')).toBe('1');
    expect(databasesLike(cluster, 'granted_plain_')).toEqual([]);
  }, 60_000);
});

describe('a role that may not give the objects to their owners', () => {
  it.each([
    ['custom', /^atmr-dr: pg_restore failed \(exit 1\): pg_restore: error: could not execute query: ERROR: must be member of role "app" /m, ', or pass --no-owner to have them owned by "restorer"'],
    // The plain SQL cannot leave the owners out: --no-owner is refused with it, so not offered.
    ['plain', /^atmr-dr: psql failed \(exit 3\): psql:<stdin>:\d+: ERROR: must be member of role "app" /m, ''],
  ] as const)('fails at the start of the load (%s), exit 1, naming the GRANT (and --no-owner where it can be passed); staging dropped, nothing left', async (format, line, noOwner) => {
    // Act
    const run = await atmrDr(['restore', appBackup, '--target-db', `refused_${format}`, '--format', format, '--progress'], env('restorer'));

    // Assert
    expect(run.status).toBe(1);
    expect(run.stderr).toMatch(line);
    expect(run.stderr).toContain(
      `(the backup's objects are owned by role "app", and role "restorer" may not give them to it: restore as "app" or as a member of it (have an admin run GRANT "app" TO "restorer")${noOwner}); the target was not touched\n`,
    );
    // The load stopped on its first owner: no row count was checked, and nothing is left.
    const phases = run.stderr.split('\n').map((l) => l.split(':')[0]);
    expect(phases).toContain('load');
    expect(phases).not.toContain('check');
    expect(run.stderr).toMatch(new RegExp(`^staging database refused_${format}_restore_\\w+ dropped$`, 'm'));
    expect(databasesLike(cluster, `refused_${format}`)).toEqual([]);
  }, 60_000);

  it('objects of two owners (custom): one line naming both in one GRANT, which then unblocks the restore', async () => {
    // Arrange: a superuser's database, tables given to two roles the restoring role is a member of neither
    psql(cluster, 'postgres', 'CREATE ROLE billing; CREATE ROLE dispatch; CREATE DATABASE twoownerssrc');
    psql(
      cluster,
      'twoownerssrc',
      'GRANT CREATE ON SCHEMA public TO billing, dispatch; CREATE TABLE invoice (id int); ALTER TABLE invoice OWNER TO billing; CREATE TABLE ride (id int); ALTER TABLE ride OWNER TO dispatch;',
    );
    const { manifestKey } = await writeFixtureBackup(s3, localS3.bucket, cluster, 'twoownerssrc', { tier: 'monthly', pointers: 'none' });

    // Act
    const refused = await atmrDr(['restore', manifestKey, '--target-db', 'two_owners'], env('restorer'));
    psql(cluster, 'postgres', 'GRANT billing, dispatch TO restorer');
    const restored = await atmrDr(['restore', manifestKey, '--target-db', 'two_owners'], env('restorer'));
    psql(cluster, 'postgres', 'REVOKE billing, dispatch FROM restorer');

    // Assert
    expect(refused.status).toBe(1);
    expect(refused.stderr).toContain(
      `(the backup's objects are owned by roles "billing", "dispatch", and role "restorer" may not give them to them: restore as a member of them all (have an admin run GRANT "billing", "dispatch" TO "restorer"), or pass --no-owner to have them owned by "restorer"); the target was not touched\n`,
    );
    expect(restored.status).toBe(0);
    expect(psql(cluster, 'two_owners', "SELECT string_agg(relname || ':' || pg_get_userbyid(relowner), ',' ORDER BY relname) FROM pg_class WHERE relname IN ('invoice', 'ride')")).toBe('invoice:billing,ride:dispatch');
  }, 60_000);

  it('the restore test, which cannot leave the owners out, offers only the GRANT; the Lambda restore offers its event field', async () => {
    // Act
    const report = await runRestoreTest(
      { s3, bucket: localS3.bucket, target: connection('restorer'), jobs: 2 },
      { takeBackup: false, tier: 'daily', database: 'appsrc', criticalQueries: [], rtoObjectiveSeconds: 1800, rpoObjectiveSeconds: 900 },
    );
    const lambda = await restoreBackup(
      { s3, bucket: localS3.bucket, connection: connection('restorer'), jobs: 2 },
      { ref: appBackup, targetDb: 'refused_lambda', noOwnerOption: '"noOwner": true in the event' },
    ).then(
      () => undefined,
      (e: unknown) => e as OperatorError,
    );

    // Assert
    expect(report.ok).toBe(false);
    expect(report.error).toContain('may not give them to it: restore as "app" or as a member of it (have an admin run GRANT "app" TO "restorer")); the target was not touched');
    expect(report.scratchDropped).toBe(true);
    expect(lambda?.message).toContain('(have an admin run GRANT "app" TO "restorer"), or pass "noOwner": true in the event to have them owned by "restorer"); the target was not touched');
    expect(databasesLike(cluster, 'refused_lambda')).toEqual([]);
  }, 60_000);

  it('with --no-owner, restores with every object owned by the restoring role', async () => {
    // Act
    const run = await atmrDr(['restore', appBackup, '--target-db', 'app_no_owner', '--no-owner'], env('restorer'));

    // Assert: a success that locks the application out of its tables says so
    expect(run.stderr).toBe(
      'atmr-dr: warning: --no-owner: every object restored into "app_no_owner" is owned by "restorer", not by its owner in the backup: any other role (the application\'s) cannot read or change them until each is given back (ALTER TABLE ... OWNER TO <its owner>, and so for each object; not REASSIGN OWNED BY "restorer", which also gives away every database "restorer" owns)\n',
    );
    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(/^restored daily\/\S+ \(custom, taken \S+, [^)]+ ago\) into app_no_owner: 2 tables, 320 rows, row counts match the manifest$/m);
    expect(databaseOwner('app_no_owner')).toBe('restorer');
    expect(owners('app_no_owner')).toBe('booking:restorer,rider:restorer');
  }, 60_000);

  it('refuses --no-owner with the plain format before the download, exit 2, one line', async () => {
    // Act
    const run = await atmrDr(['restore', appBackup, '--target-db', 'app_plain_no_owner', '--format', 'plain', '--no-owner', '--progress'], env('restorer'));

    // Assert
    expect(run.status).toBe(2);
    expect(run.stderr).toBe(
      `atmr-dr: --no-owner works with the custom format only (pg_restore --no-owner): the plain SQL of ${appBackup} gives each object to its owner itself; drop --format plain; nothing was done\n`,
    );
    expect(databasesLike(cluster, 'app_plain_no_owner')).toEqual([]);
  }, 60_000);
});

describe('a backup whose owner revoked a privilege from itself (the grants are given before the data)', () => {
  it('as a CREATEDB member of the owner: fails the load, exit 1, one line saying why and the two ways; with --no-owner, restores', async () => {
    // Arrange
    psql(cluster, 'postgres', 'CREATE DATABASE revokesrc OWNER app');
    psql(cluster, 'revokesrc', 'SET ROLE app; CREATE TABLE ledger (id int PRIMARY KEY); INSERT INTO ledger SELECT generate_series(1, 10); REVOKE INSERT ON ledger FROM app;');
    const { manifestKey } = await writeFixtureBackup(s3, localS3.bucket, cluster, 'revokesrc', { tier: 'daily', pointers: 'none' });
    psql(cluster, 'postgres', 'DROP DATABASE revokesrc');

    // Act
    const error = await restoreBackup({ s3, bucket: localS3.bucket, connection: connection('member'), jobs: 2 }, { ref: manifestKey, targetDb: 'revoke_copy' }).then(
      () => undefined,
      (e: unknown) => e as OperatorError,
    );
    const result = await restoreBackup({ s3, bucket: localS3.bucket, connection: connection('member'), jobs: 2 }, { ref: manifestKey, targetDb: 'revoke_no_owner', noOwner: true });

    // Assert
    expect(error?.exitCode).toBe(1);
    expect(error?.message).toMatch(
      /^pg_restore failed \(exit 1\): .*permission denied for table ledger.* \(the backup's grants revoke a privilege from the objects' owner, which "member", not a superuser, loads the data as, or "member" is NOINHERIT and does not use the owner's rights: restore as a superuser, or pass --no-owner to have them owned by "member"\); the target was not touched$/,
    );
    expect(databasesLike(cluster, 'revoke_copy')).toEqual([]);
    expect(result.rowsRestored).toBe(10);
  }, 60_000);

  it('restored with --no-owner by that owner itself (not a superuser): fails the load, one line offering a superuser, not --no-owner again', async () => {
    // Arrange: with --no-owner the restoring role owns the objects, and the backup's REVOKE names
    // it when it is the owner's own name, so it loses the privilege it needs for its data
    psql(cluster, 'postgres', 'CREATE ROLE selfrevoker LOGIN CREATEDB; CREATE DATABASE selfrevokesrc OWNER selfrevoker');
    psql(cluster, 'selfrevokesrc', 'SET ROLE selfrevoker; CREATE TABLE ledger (id int PRIMARY KEY); INSERT INTO ledger SELECT generate_series(1, 10); REVOKE INSERT ON ledger FROM selfrevoker;');
    const { manifestKey } = await writeFixtureBackup(s3, localS3.bucket, cluster, 'selfrevokesrc', { tier: 'daily', pointers: 'none' });
    psql(cluster, 'postgres', 'DROP DATABASE selfrevokesrc');

    // Act
    const error = await restoreBackup({ s3, bucket: localS3.bucket, connection: connection('selfrevoker'), jobs: 2 }, { ref: manifestKey, targetDb: 'self_revoke_copy', noOwner: true }).then(
      () => undefined,
      (e: unknown) => e as OperatorError,
    );

    // Assert
    expect(error?.exitCode).toBe(1);
    expect(error?.message).toMatch(
      /^pg_restore failed \(exit 1\): .*permission denied for table ledger.* \(the backup's grants revoke a privilege from the objects' owner, which "selfrevoker", not a superuser, loads the data as, or "selfrevoker" is NOINHERIT and does not use the owner's rights: restore as a superuser\); the target was not touched$/,
    );
    expect(databasesLike(cluster, 'self_revoke_copy')).toEqual([]);
  }, 60_000);
});

describe('a server without the owner role (a new server: roles are not in a pg_dump)', () => {
  it('fails the load before its data (custom), exit 2, naming the role to create and --no-owner; staging dropped', async () => {
    // Arrange
    const lines: string[] = [];
    const staged: string[] = [];

    // Act
    const error = await restoreBackup(
      { s3, bucket: localS3.bucket, connection: connection('postgres'), jobs: 2, log: (line) => lines.push(line), onStaging: (name) => staged.push(name) },
      { ref: ghostBackup, targetDb: 'ghost_custom' },
    ).then(
      () => undefined,
      (e: unknown) => e as OperatorError,
    );

    // Assert
    expect(error?.exitCode).toBe(2);
    expect(error?.message).toBe(
      `pg_restore stopped before the data: the backup names a role this server does not have: "ghost" (owner); roles are not in a pg_dump: ${createRoles(['ghost'], 'ghost', ROLES_DUMP)}, or pass --no-owner to have the objects owned by "postgres", then restore again; the target was not touched`,
    );
    expect(staged).toEqual([expect.stringMatching(/^ghost_custom_restore_/)]);
    expect(lines).toContainEqual(expect.stringMatching(/^staging database ghost_custom_restore_\w+ dropped$/));
    expect(databasesLike(cluster, 'ghost_custom')).toEqual([]);
  }, 60_000);

  it('fails at the start of the load (plain: not checked before it), naming the role to create, not --no-owner (refused with plain); staging dropped', async () => {
    // Arrange
    const format = 'plain';

    // Act
    const error = await restoreBackup({ s3, bucket: localS3.bucket, connection: connection('postgres'), jobs: 2 }, { ref: ghostBackup, targetDb: `ghost_${format}`, format }).then(
      () => undefined,
      (e: unknown) => e as OperatorError,
    );

    // Assert
    expect(error?.exitCode).toBe(1);
    expect(error?.message).toMatch(/ERROR: role "ghost" does not exist \(/);
    expect(error?.message.endsWith(` (the backup names role "ghost", which this server does not have: roles are not in a pg_dump: ${createRoles(['ghost'], 'ghost')}); the target was not touched`)).toBe(true);
    expect(databasesLike(cluster, `ghost_${format}`)).toEqual([]);
  }, 60_000);

  it('with --no-owner, restores it (custom)', async () => {
    // Act
    const result = await restoreBackup({ s3, bucket: localS3.bucket, connection: connection('postgres'), jobs: 2 }, { ref: ghostBackup, targetDb: 'ghost_no_owner', noOwner: true });

    // Assert
    expect(result.rowsRestored).toBe(320);
    expect(owners('ghost_no_owner')).toBe('booking:postgres,rider:postgres');
  }, 60_000);
});

describe('a server without a role the backup GRANTs to (a new server: roles are not in a pg_dump)', () => {
  it('fails before any data is loaded, exit 2, one line naming the two grantees and the owner; staging dropped, the target untouched', async () => {
    // Arrange
    const target = appTarget('missing_target');
    const lines: string[] = [];
    // The real pg_restore, each run's arguments written down: which of the load's runs happened.
    const bin = fs.mkdtempSync(path.join(os.tmpdir(), 'atmr-dr-logged-pg-restore-'));
    const runs = path.join(bin, 'runs.log');
    writeFakePgRestore(bin, `echo "$*" >> '${runs}'\nexec "$real" "$@"\n`);

    // Act
    const error = await restoreBackup(
      { s3, bucket: localS3.bucket, connection: connection('postgres'), jobs: 2, pgBinDir: bin, log: (line) => lines.push(line) },
      { ref: missingBackup, targetDb: target, force: true },
    ).then(
      () => undefined,
      (e: unknown) => e as OperatorError,
    );
    const ran = fs.readFileSync(runs, 'utf8').trim().split('\n');
    fs.rmSync(bin, { recursive: true, force: true });

    // Assert: the pre-data run only; the data run, which loads big's 300,000 rows, never started
    expect(ran).toEqual([expect.stringMatching(/^--section=pre-data -d /)]);
    expect(error?.exitCode).toBe(2);
    expect(error?.message).toBe(
      `pg_restore stopped before the data: the backup names 3 roles this server does not have: "auditor2" (grants), "keeper" (owner), "reporter" (grants); roles are not in a pg_dump: ${createRoles(['auditor2', 'keeper', 'reporter'], 'keeper', ROLES_DUMP)}, then restore again; the target was not touched`,
    );
    expect(lines).toContainEqual(expect.stringMatching(/^load: pg_restore pre-data, then data and post-data -j 2, into staging database missing_target_restore_\w+$/));
    expect(lines).toContainEqual(expect.stringMatching(/^staging database missing_target_restore_\w+ dropped$/));
    expect(databasesLike(cluster, `${target}_`)).toEqual([]);
    expect(psql(as('app'), target, 'SELECT count(*) FROM old_stuff')).toBe('1');
    expect(databaseOwner(target)).toBe('app');
  }, 60_000);

  it("two grantees in one table's grants: PostgreSQL names the first, exit 2, one line with pg_dumpall --roles-only; once it exists, the second; staging dropped, the target untouched", async () => {
    // Arrange
    const target = appTarget('grant_target');
    const restore = () => atmrDr(['restore', grantBackup, '--target-db', target, '--force', '--progress'], env('postgres'));

    // Act
    const first = await restore();
    psql(cluster, 'postgres', 'CREATE ROLE readonly');
    const second = await restore();
    psql(cluster, 'postgres', 'DROP ROLE readonly');

    // Assert: booking's grants are one command, which stops at its first missing role
    expect(first.status).toBe(2);
    expect(first.stderr.split('\n').filter((l) => l.startsWith('atmr-dr:'))).toEqual([
      `atmr-dr: pg_restore stopped before the data: the backup names a role this server does not have: "readonly" (grants); roles are not in a pg_dump: ${createRoles(['readonly'], 'readonly', ROLES_DUMP)}, then restore again; the target was not touched`,
    ]);
    expect(second.status).toBe(2);
    expect(second.stderr).toMatch(/^atmr-dr: pg_restore stopped before the data: the backup names a role this server does not have: "Weird "Role"" \(grants\); /m);
    for (const run of [first, second]) {
      expect(run.stderr).toMatch(/^staging database grant_target_restore_\w+ dropped$/m);
      expect(run.stderr).not.toMatch(/^check/m);
    }
    expect(databasesLike(cluster, `${target}_`)).toEqual([]);
    expect(psql(as('app'), target, 'SELECT count(*) FROM old_stuff')).toBe('1');
    expect(databaseOwner(target)).toBe('app');
  }, 60_000);

  it('with --no-owner, refuses the same way, without offering --no-owner: it leaves the GRANTs in', async () => {
    // Act
    const error = await restoreBackup({ s3, bucket: localS3.bucket, connection: connection('postgres'), jobs: 2 }, { ref: grantBackup, targetDb: 'grant_no_owner', noOwner: true }).then(
      () => undefined,
      (e: unknown) => e as OperatorError,
    );

    // Assert
    expect(error?.exitCode).toBe(2);
    expect(error?.message).toMatch(/^pg_restore stopped before the data: the backup names a role this server does not have: "readonly" \(grants\); /);
    expect(error?.message).not.toContain('--no-owner');
    expect(databasesLike(cluster, 'grant_no_owner')).toEqual([]);
  }, 60_000);

  it('restores it once the roles exist, with its GRANTs and default privileges', async () => {
    // Arrange
    psql(cluster, 'postgres', `CREATE ROLE readonly; CREATE ROLE ${WEIRD}`);
    const lines: string[] = [];

    // Act
    const result = await restoreBackup({ s3, bucket: localS3.bucket, connection: connection('postgres'), jobs: 2, log: (line) => lines.push(line) }, { ref: grantBackup, targetDb: 'grant_restored' });

    // Assert
    expect(result.tablesRestored).toBe(50);
    expect(psql(cluster, 'grant_restored', `SELECT has_table_privilege('readonly', 't47', 'SELECT'), has_table_privilege('Weird "Role"', 'booking', 'UPDATE WITH GRANT OPTION')`)).toBe('t|t');
    // A new name is the backed-up database's owner's (app's): app creates in public, with its default privileges.
    expect(databaseOwner('grant_restored')).toBe('app');
    psql(cluster, 'grant_restored', 'SET ROLE app; CREATE TABLE after_restore (id int)');
    expect(psql(cluster, 'grant_restored', `SELECT has_table_privilege('Weird "Role"', 'after_restore', 'SELECT')`)).toBe('t');
  }, 60_000);
});

describe('a server without a role only default privileges name (pg_restore restores them last)', () => {
  it('fails after the data, exit 2, one line naming it, without --no-owner; staging dropped', async () => {
    // Act
    const error = await restoreBackup({ s3, bucket: localS3.bucket, connection: connection('postgres'), jobs: 2 }, { ref: defaultsBackup, targetDb: 'defaults_refused' }).then(
      () => undefined,
      (e: unknown) => e as OperatorError,
    );

    // Assert
    expect(error?.exitCode).toBe(2);
    expect(error?.message).toBe(
      `pg_restore stopped after the data: the backup names a role this server does not have: "defreader" (grants); roles are not in a pg_dump: ${createRoles(['defreader'], 'defreader', ROLES_DUMP)}, then restore again; the target was not touched`,
    );
    expect(databasesLike(cluster, 'defaults_refused')).toEqual([]);
  }, 60_000);
});

describe('a manifest that lists the roles the backup names (a new server without them: refused before the download)', () => {
  /** A restore that writes down the keys it GETs and the staging database it would create. */
  async function watchedRestore(ref: string, targetDb: string, options: { noOwner?: boolean; force?: boolean } = {}) {
    const gets: string[] = [];
    const staged: string[] = [];
    const lines: string[] = [];
    const watched = createS3Client(localS3.env);
    watched.middlewareStack.add(
      (next, context) => async (args) => {
        if (context.commandName === 'GetObjectCommand') gets.push((args.input as { Key: string }).Key);
        return next(args);
      },
      { step: 'initialize' },
    );
    const outcome = await restoreBackup(
      { s3: watched, bucket: localS3.bucket, connection: connection('postgres'), jobs: 2, log: (line) => lines.push(line), onStaging: (name) => staged.push(name) },
      { ref, targetDb, ...options },
    ).then(
      (result) => ({ result, error: undefined }),
      (e: unknown) => ({ result: undefined, error: e as OperatorError }),
    );
    watched.destroy();
    return { ...outcome, gets, staged, lines };
  }
  const dumpsOf = (manifestKey: string): string[] => [manifestKey.replace(/\.manifest\.json$/, '.dump'), manifestKey.replace(/\.manifest\.json$/, '.sql.gz')];

  it('a missing owner and grantees: exit 2, one line naming each with its use, before any GET of the dump and any staging database; the target untouched', async () => {
    // Arrange
    const target = appTarget('listed_target');

    // Act
    const run = await watchedRestore(missingListed, target, { force: true });

    // Assert
    expect(run.error?.exitCode).toBe(2);
    expect(run.error?.message).toBe(
      `cannot restore ${missingListed} here: the backup names 3 roles this server does not have: "auditor2" (grants), "keeper" (owner), "reporter" (grants); roles are not in a pg_dump: ${createRoles(['auditor2', 'keeper', 'reporter'], 'keeper')}, then restore again; nothing was downloaded or created; target "${target}" untouched`,
    );
    expect(run.gets).toEqual([missingListed]);
    expect(run.staged).toEqual([]);
    expect(run.lines.filter((l) => /^(backup|download|load):/.test(l))).toEqual([]);
    expect(databasesLike(cluster, `${target}_`)).toEqual([]);
    expect(psql(as('app'), target, 'SELECT count(*) FROM old_stuff')).toBe('1');
  }, 60_000);

  it('a grantee only default privileges name (which the load refused only after all the data): refused the same way, before the download', async () => {
    // Act
    const run = await watchedRestore(defaultsListed, 'listed_defaults');

    // Assert
    expect(run.error?.exitCode).toBe(2);
    expect(run.error?.message).toBe(
      `cannot restore ${defaultsListed} here: the backup names a role this server does not have: "defreader" (grants); roles are not in a pg_dump: ${createRoles(['defreader'], 'defreader')}, then restore again; nothing was downloaded or created; target "listed_defaults" untouched`,
    );
    expect(run.gets).toEqual([defaultsListed]);
    expect(run.staged).toEqual([]);
    expect(databasesLike(cluster, 'listed_defaults')).toEqual([]);
  }, 60_000);

  it('only an owner missing: refused offering --no-owner; with --no-owner, not refused: restored, owned by the restoring role', async () => {
    // Act
    const refused = await watchedRestore(ghostListed, 'listed_ghost');
    const noOwner = await watchedRestore(ghostListed, 'listed_ghost', { noOwner: true });

    // Assert
    expect(refused.error?.exitCode).toBe(2);
    expect(refused.error?.message).toBe(
      `cannot restore ${ghostListed} here: the backup names a role this server does not have: "ghost" (owner); roles are not in a pg_dump: ${createRoles(['ghost'], 'ghost')}, or pass --no-owner to have the objects owned by "postgres", then restore again; nothing was downloaded or created; target "listed_ghost" untouched`,
    );
    expect(refused.gets).toEqual([ghostListed]);
    expect(noOwner.error).toBeUndefined();
    expect(noOwner.result?.rowsRestored).toBe(320);
    expect(noOwner.gets).toContain(dumpsOf(ghostListed)[0]);
    expect(owners('listed_ghost')).toBe('booking:postgres,rider:postgres');
  }, 60_000);

  it('an extension whose creator the server lacks (another master user): not refused, restored, the extension the restoring role\'s', async () => {
    // Arrange: the creator owns the extension and its functions, nothing else, and is gone
    psql(cluster, 'postgres', 'CREATE ROLE extmaker SUPERUSER; CREATE DATABASE extsrc OWNER app');
    psql(cluster, 'extsrc', "SET ROLE extmaker; CREATE EXTENSION pgcrypto; SET ROLE app; CREATE TABLE secret (id int, hash bytea); INSERT INTO secret VALUES (1, digest('a', 'sha256'));");
    const { manifestKey } = await writeFixtureBackup(s3, localS3.bucket, cluster, 'extsrc', { tier: 'weekly', roles: true });
    psql(cluster, 'postgres', 'DROP DATABASE extsrc; DROP ROLE extmaker');

    // Act
    const run = await watchedRestore(manifestKey, 'listed_ext');

    // Assert
    expect(run.error).toBeUndefined();
    expect(psql(cluster, 'listed_ext', "SELECT hash = digest('a', 'sha256') FROM secret")).toBe('t');
    expect(psql(cluster, 'listed_ext', "SELECT pg_get_userbyid(extowner) FROM pg_extension WHERE extname = 'pgcrypto'")).toBe('postgres');
  }, 60_000);

  it('a manifest without the list (taken before backups recorded it) is not checked: downloaded, then refused by the load as before', async () => {
    // Act
    const run = await watchedRestore(missingBackup, 'unlisted_target');

    // Assert
    expect(run.error?.exitCode).toBe(2);
    expect(run.error?.message).toMatch(/^pg_restore stopped before the data: the backup names 3 roles this server does not have: /);
    expect(run.gets).toContain(dumpsOf(missingBackup)[0]);
    expect(run.staged).toEqual([expect.stringMatching(/^unlisted_target_restore_/)]);
    expect(databasesLike(cluster, 'unlisted_target')).toEqual([]);
  }, 60_000);
});

describe('a backup whose function bodies and comments hold lines shaped like GRANT or ALTER ... OWNER TO', () => {
  it('refuses only for the role of a real GRANT, not for the roles those lines name, and restores once that role exists', async () => {
    // Act
    const refused = await restoreBackup({ s3, bucket: localS3.bucket, connection: connection('postgres'), jobs: 2 }, { ref: bodyBackup, targetDb: 'body_refused' }).then(
      () => undefined,
      (e: unknown) => e as OperatorError,
    );
    psql(cluster, 'postgres', 'CREATE ROLE auditor');
    const lines: string[] = [];
    const result = await restoreBackup({ s3, bucket: localS3.bucket, connection: connection('postgres'), jobs: 2, log: (line) => lines.push(line) }, { ref: bodyBackup, targetDb: 'body_restored' });

    // Assert
    expect(refused?.exitCode).toBe(2);
    expect(refused?.message).toMatch(/^pg_restore stopped before the data: the backup names a role this server does not have: "auditor" \(grants\); /);
    expect(result.rowsRestored).toBe(320);
    expect(psql(cluster, 'body_restored', "SELECT has_table_privilege('auditor', 'booking', 'SELECT'), has_table_privilege('auditor', 'rider', 'SELECT')")).toBe('t|f');
    expect(psql(cluster, 'body_restored', "SELECT prosrc LIKE '%OWNER TO ghost;%' FROM pg_proc WHERE proname = 'hand_over'")).toBe('t');
    expect(databasesLike(cluster, 'body_refused')).toEqual([]);
  }, 60_000);
});

describe('a backup with large objects whose owner and grantee the server lacks (their owners and privileges are among its data)', () => {
  it('fails before the data, exit 2, naming both roles; with --no-owner, the grantee alone; restores once they exist, the large object its owner\'s and readable by the grantee', async () => {
    // Arrange
    const lines: string[] = [];
    const staged: string[] = [];
    const restore = (targetDb: string, noOwner = false) =>
      restoreBackup({ s3, bucket: localS3.bucket, connection: connection('postgres'), jobs: 2, log: (line) => lines.push(line), onStaging: (name) => staged.push(name) }, { ref: largeObjectBackup, targetDb, noOwner }).then(
        () => undefined,
        (e: unknown) => e as OperatorError,
      );

    // Act
    const refused = await restore('lob_refused');
    const refusedNoOwner = await restore('lob_refused_no_owner', true);
    const dropped = lines.filter((l) => l.startsWith('staging database'));
    psql(cluster, 'postgres', 'CREATE ROLE lobowner; CREATE ROLE lobreader');
    const restored = await restore('lob_restored');

    // Assert: a single pg_restore run failed the owner in its schema, and the grant (with
    // --no-owner) at its very end, after all the data; the pre-data run fails both
    expect(refused?.exitCode).toBe(2);
    expect(refused?.message).toBe(
      `pg_restore stopped before the data: the backup names 2 roles this server does not have: "lobowner" (owner), "lobreader" (grants); roles are not in a pg_dump: ${createRoles(['lobowner', 'lobreader'], 'lobowner', ROLES_DUMP)}, then restore again; the target was not touched`,
    );
    expect(refusedNoOwner?.exitCode).toBe(2);
    expect(refusedNoOwner?.message).toMatch(/^pg_restore stopped before the data: the backup names a role this server does not have: "lobreader" \(grants\); /);
    expect(dropped).toEqual([expect.stringMatching(/^staging database lob_refused_restore_\w+ dropped$/), expect.stringMatching(/^staging database lob_refused_no_owner_restore_\w+ dropped$/)]);
    expect(staged).toHaveLength(3);
    expect(databasesLike(cluster, 'lob_refused')).toEqual([]);
    expect(restored).toBeUndefined();
    expect(psql(cluster, 'lob_restored', "SELECT pg_get_userbyid(lomowner) || ' ' || lomacl::text FROM pg_largeobject_metadata WHERE oid = 424242")).toBe('lobowner {lobowner=rw/lobowner,lobreader=r/lobowner}');
    expect(psql(cluster, 'lob_restored', "SELECT convert_from(lo_get(body), 'UTF8') FROM document")).toBe("app's");
  }, 90_000);
});
