import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { S3Client } from '@aws-sdk/client-s3';
import { Client } from 'pg';
import { createS3Client } from '../../lambdas/shared/aws';
import type { OperatorError } from '../../lambdas/shared/errors';
import { restoreBackup, stagingName } from '../../lambdas/restore/restore';
import { dropDatabase } from '../../lambdas/restore/session';
import { dropDatabaseStatement } from '../../lambdas/shared/postgres';
import { writeFakePgRestore } from '../support/fake-pg-restore';
import { PostgresCluster, psql, startPostgres, stopPostgres } from '../support/postgres';
import { LocalS3, startLocalS3 } from '../support/s3';
import { FIXTURE_SQL } from './backup-fixture';
import { databasesLike, writeFixtureBackup } from '../lambdas/restore/fixtures';
import { testClient } from '../support/cluster';

/**
 * The staging, scratch and replaced databases are dropped by the role the operator restores with:
 * on RDS, or with a CREATEDB role, not a superuser. A freshly restored database is where autovacuum
 * works, and DROP ... WITH (FORCE) is refused to such a role while an autovacuum worker is inside.
 * A cluster of its own: autovacuum wakes every second here, not every minute.
 */
let cluster: PostgresCluster;
const restorer = { user: 'restorer' };
let localS3: LocalS3;
let s3: S3Client;
let manifestKey: string;

function restorerClient(database: string, application?: string): Client {
  const client = testClient({ host: cluster.host, port: cluster.port, user: restorer.user, database, application_name: application });
  client.on('error', () => undefined);
  return client;
}

/** A database owned by the restorer in which an autovacuum worker is busy (slowly) when this returns. */
async function databaseWithAutovacuumInside(name: string): Promise<void> {
  psql(cluster, 'postgres', `CREATE DATABASE ${name} OWNER ${restorer.user}`);
  await autovacuumInside(name);
}

/** Gives an autovacuum worker slow work in an existing database, and waits until it is inside. */
async function autovacuumInside(name: string): Promise<void> {
  psql(
    cluster,
    name,
    `CREATE TABLE dead (id int, pad text) WITH (autovacuum_vacuum_cost_delay = 100, autovacuum_vacuum_cost_limit = 1,
                                             autovacuum_vacuum_threshold = 0, autovacuum_vacuum_scale_factor = 0);
     INSERT INTO dead SELECT i, repeat('x', 200) FROM generate_series(1, 50000) i;
     DELETE FROM dead;`,
  );
  const deadline = Date.now() + 30_000;
  while (psql(cluster, 'postgres', `SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker' AND datname = '${name}'`) === '0') {
    if (Date.now() > deadline) throw new Error(`no autovacuum worker came into ${name} within 30 s`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/**
 * Runs, as `client`, a DROP an operator is told to run (dropDatabaseStatement), the way the line
 * says: for a role that is not a superuser, the SELECT that ends its own sessions, then the DROP.
 */
async function runAsOperator(client: Client, statement: string): Promise<void> {
  const parts = /^(DROP DATABASE "[^"]+") once no session is in it \(end this role's with (SELECT .+)\)$/.exec(statement);
  if (parts === null) {
    await client.query(statement);
    return;
  }
  await client.query(parts[2]);
  await client.query(parts[1]);
}

/** A restore of the fixture backup into `target`, as the restorer; the lines it logged. */
async function restoreAsRestorer(
  target: string,
  guards: { force?: boolean; terminateConnections?: boolean },
  pgBinDir?: string,
): Promise<{ error?: OperatorError; lines: string[] }> {
  const lines: string[] = [];
  const connection = { host: cluster.host, port: cluster.port, user: restorer.user, database: 'postgres' };
  const error = await restoreBackup({ s3, bucket: localS3.bucket, connection, jobs: 2, pgBinDir, log: (line) => lines.push(line) }, { ref: manifestKey, targetDb: target, ...guards }).then(
    () => undefined,
    (e: unknown) => e as OperatorError,
  );
  return { error, lines };
}

beforeAll(async () => {
  cluster = await startPostgres({ extraSettings: ['-c autovacuum_naptime=1'] });
  psql(cluster, 'postgres', `CREATE ROLE ${restorer.user} LOGIN CREATEDB; CREATE ROLE app LOGIN; CREATE DATABASE source OWNER ${restorer.user}`);
  // The backup's objects are the restorer's: a restore gives each object its owner in the backup,
  // which a role that is not a superuser may do only for roles it is a member of (restore-owners.test.ts).
  psql(cluster, 'source', `SET ROLE ${restorer.user};\n${FIXTURE_SQL}`);
  localS3 = await startLocalS3();
  s3 = createS3Client(localS3.env);
  ({ manifestKey } = await writeFixtureBackup(s3, localS3.bucket, cluster, 'source', { tier: 'daily' }));
}, 120_000);

afterAll(async () => {
  await localS3?.stop();
  if (cluster) stopPostgres(cluster);
});

describe('dropping a database as a role that is not a superuser', () => {
  it('drops it while an autovacuum worker and one of its own sessions (a killed load) are inside', async () => {
    // Arrange
    await databaseWithAutovacuumInside('busy');
    const ownSession = restorerClient('busy');
    await ownSession.connect();
    const admin = restorerClient('postgres');
    await admin.connect();

    try {
      // Act
      await dropDatabase(admin, 'busy');

      // Assert
      expect(psql(cluster, 'postgres', "SELECT count(*) FROM pg_database WHERE datname = 'busy'")).toBe('0');
    } finally {
      await ownSession.end().catch(() => undefined);
      await admin.end();
    }
  }, 60_000);

  it("still refuses while another role's session is connected, saying so, and leaves the database", async () => {
    // Arrange: autovacuum inside too, so that FORCE is refused and the plain DROP is what answers
    await databaseWithAutovacuumInside('shared');
    const someoneElse = testClient({ host: cluster.host, port: cluster.port, user: 'postgres', database: 'shared' });
    await someoneElse.connect();
    const admin = restorerClient('postgres');
    await admin.connect();

    try {
      // Act
      const error = await dropDatabase(admin, 'shared').then(
        () => undefined,
        (e: unknown) => e as Error,
      );

      // Assert
      expect(error?.message).toBe('database "shared" is being accessed by other users');
      expect(psql(cluster, 'postgres', "SELECT count(*) FROM pg_database WHERE datname = 'shared'")).toBe('1');
    } finally {
      await someoneElse.end();
      await admin.end();
    }
  }, 60_000);
});

describe('the DROP DATABASE an operator is told to run, as a role that is not a superuser', () => {
  it('drops a database an autovacuum worker and one of its own sessions are in, where DROP ... WITH (FORCE) is refused', async () => {
    // Arrange
    await databaseWithAutovacuumInside('told');
    const ownSession = restorerClient('told');
    await ownSession.connect();
    const operator = restorerClient('postgres');
    await operator.connect();

    try {
      // Act
      const forced = await operator.query('DROP DATABASE told WITH (FORCE)').then(
        () => undefined,
        (e: unknown) => e as Error,
      );
      await runAsOperator(operator, dropDatabaseStatement('told', false));

      // Assert
      expect(forced?.message).toBe('must be a member of the role whose process is being terminated or member of pg_signal_backend');
      expect(psql(cluster, 'postgres', "SELECT count(*) FROM pg_database WHERE datname = 'told'")).toBe('0');
      expect(dropDatabaseStatement('told', true)).toBe('DROP DATABASE "told" WITH (FORCE)');
    } finally {
      await ownSession.end().catch(() => undefined);
      await operator.end();
    }
  }, 60_000);

  it('a restore whose staging database it could not drop names the DROP that drops it once the other session is gone, an autovacuum worker inside', async () => {
    // Arrange: a pg_restore that fails once the test has put another role's session and dead rows
    // in the staging database, so that the restore's own cleanup cannot drop it.
    const bin = fs.mkdtempSync(path.join(os.tmpdir(), 'atmr-dr-createdb-role-'));
    const ready = path.join(bin, 'ready');
    writeFakePgRestore(bin, `for i in $(seq 300); do [ -f '${ready}' ] && break; sleep 0.1; done\necho "pg_restore: error: stopped by the test" >&2\nexit 1\n`);
    let app: Client | undefined;
    const restoring = restoreAsRestorer('told_e2e', {}, bin);
    const operator = restorerClient('postgres');

    try {
      let staging = '';
      for (let i = 0; staging === ''; i += 1) {
        if (i === 300) throw new Error('no staging database within 30 s');
        await new Promise((resolve) => setTimeout(resolve, 100));
        staging = psql(cluster, 'postgres', "SELECT datname FROM pg_database WHERE datname LIKE 'told_e2e_restore_%'");
      }
      app = testClient({ host: cluster.host, port: cluster.port, user: 'app', database: staging });
      app.on('error', () => undefined);
      await app.connect();
      fs.writeFileSync(ready, '');
      const { error } = await restoring;
      const told = /: drop it with (.+)$/.exec(error?.message ?? '')?.[1];
      await app.end();
      await autovacuumInside(staging);
      await operator.connect();

      // Act
      const forced = await operator.query(`DROP DATABASE "${staging}" WITH (FORCE)`).then(
        () => undefined,
        (e: unknown) => e as Error,
      );
      await runAsOperator(operator, told ?? 'no statement in the line');

      // Assert
      expect(error?.message).toMatch(/could not drop staging database \S+ \(database "\S+" is being accessed by other users\): drop it with DROP DATABASE /);
      expect(told).toBe(dropDatabaseStatement(staging, false));
      expect(forced?.message).toBe('must be a member of the role whose process is being terminated or member of pg_signal_backend');
      expect(psql(cluster, 'postgres', `SELECT count(*) FROM pg_database WHERE datname = '${staging}'`)).toBe('0');
    } finally {
      fs.writeFileSync(ready, '');
      await restoring;
      await app?.end().catch(() => undefined);
      await operator.end().catch(() => undefined);
      fs.rmSync(bin, { recursive: true, force: true });
      for (const name of psql(cluster, 'postgres', "SELECT datname FROM pg_database WHERE datname LIKE 'told_e2e%'").split('\n').filter(Boolean)) {
        psql(cluster, 'postgres', `DROP DATABASE "${name}" WITH (FORCE)`);
      }
    }
  }, 90_000);

  it('a staging database left by an earlier restore, with a session of its own and an autovacuum worker in it, is named with a DROP that drops it', async () => {
    // Arrange
    const left = stagingName('left_e2e');
    await databaseWithAutovacuumInside(left);
    const own = restorerClient(left, 'psql');
    await own.connect();
    const operator = restorerClient('postgres');

    try {
      const { error, lines } = await restoreAsRestorer('left_e2e', {});
      const told = lines.map((l) => /; left in place: to stop them and drop it, (.+)$/.exec(l)?.[1]).find((t) => t !== undefined);
      // At least one: autovacuum may send a second worker (to a catalog table) while the restore runs
      expect(Number(psql(cluster, 'postgres', `SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker' AND datname = '${left}'`))).toBeGreaterThanOrEqual(1);
      await operator.connect();

      // Act
      const forced = await operator.query(`DROP DATABASE "${left}" WITH (FORCE)`).then(
        () => undefined,
        (e: unknown) => e as Error,
      );
      await runAsOperator(operator, told ?? 'no statement in the lines');

      // Assert
      expect(error).toBeUndefined();
      expect(told).toBe(dropDatabaseStatement(left, false));
      expect(forced?.message).toBe('must be a member of the role whose process is being terminated or member of pg_signal_backend');
      expect(psql(cluster, 'postgres', `SELECT count(*) FROM pg_database WHERE datname = '${left}'`)).toBe('0');
    } finally {
      await own.end().catch(() => undefined);
      await operator.end().catch(() => undefined);
      for (const name of psql(cluster, 'postgres', "SELECT datname FROM pg_database WHERE datname LIKE 'left_e2e%'").split('\n').filter(Boolean)) {
        psql(cluster, 'postgres', `DROP DATABASE "${name}" WITH (FORCE)`);
      }
    }
  }, 90_000);

  it("a staging database a killed restore's load is still in, an autovacuum worker inside, is dropped with a plain DROP, and the line says that, not WITH (FORCE)", async () => {
    // Arrange: the sessions of a killed CLI's pg_restore (the restorer's, PGAPPNAME atmr-dr), and autovacuum at work
    const left = stagingName('left_killed');
    await databaseWithAutovacuumInside(left);
    const loader = restorerClient(left, 'atmr-dr');
    await loader.connect();
    const pid = (await loader.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0].pid;

    try {
      // Act
      const { error, lines } = await restoreAsRestorer('left_killed', {});

      // Assert
      expect(error).toBeUndefined();
      expect(lines.filter((l) => l.startsWith(`"${left}"`))).toEqual([
        `"${left}" is the staging database of an earlier restore into "left_killed" that was killed, and its load was still running (session(s) ${pid}): ended its sessions (pg_terminate_backend) and dropped it with a plain DROP DATABASE (WITH (FORCE) is refused to this role while an autovacuum worker is inside), which ended that load`,
      ]);
      expect(psql(cluster, 'postgres', `SELECT count(*) FROM pg_database WHERE datname = '${left}'`)).toBe('0');
    } finally {
      await loader.end().catch(() => undefined);
      for (const name of psql(cluster, 'postgres', "SELECT datname FROM pg_database WHERE datname LIKE 'left_killed%'").split('\n').filter(Boolean)) {
        psql(cluster, 'postgres', `DROP DATABASE "${name}" WITH (FORCE)`);
      }
    }
  }, 90_000);
});

describe('restoring over a target as a role that is not a superuser', () => {
  it("sees another role's session on the target (whose backend_type it cannot read) and refuses before the download, exit 2", async () => {
    // Arrange
    psql(cluster, 'postgres', `CREATE DATABASE watched OWNER ${restorer.user}`);
    const app = testClient({ host: cluster.host, port: cluster.port, user: 'app', database: 'watched', application_name: 'atmr-api' });
    await app.connect();

    try {
      // Act
      const { error, lines } = await restoreAsRestorer('watched', { force: true });

      // Assert
      expect(error?.exitCode).toBe(2);
      expect(error?.message).toMatch(/^target database "watched" has 1 open connection\(s\) \(pid \d+ atmr-api as app\): stop its clients/);
      expect(lines.filter((l) => l.startsWith('download:'))).toEqual([]);
    } finally {
      await app.end();
    }
  }, 60_000);

  it('with --terminate-connections, refuses before the download when a session is of a role it may not end, naming the GRANT', async () => {
    // Arrange
    psql(cluster, 'postgres', `CREATE DATABASE guarded OWNER ${restorer.user}`);
    const app = testClient({ host: cluster.host, port: cluster.port, user: 'app', database: 'guarded' });
    await app.connect();

    try {
      // Act
      const { error, lines } = await restoreAsRestorer('guarded', { force: true, terminateConnections: true });

      // Assert
      expect(error?.exitCode).toBe(2);
      expect(error?.message).toBe(
        'target database "guarded" has 1 open connection(s) of role(s) app that role "restorer" may not end (pg_terminate_backend): stop those clients first (killswitch maintenance, scale the API/workers to 0), connect as a role that may end them (a superuser; on RDS, the master user), or have an admin run GRANT pg_signal_backend TO "restorer"',
      );
      expect(lines.filter((l) => l.startsWith('download:'))).toEqual([]);
      expect(psql(cluster, 'postgres', "SELECT count(*) FROM pg_stat_activity WHERE datname = 'guarded' AND usename = 'app'")).toBe('1');
    } finally {
      await app.end();
    }
  }, 60_000);

  it("with --terminate-connections, refuses a superuser's session on the target without the GRANT advice, even with pg_signal_backend", async () => {
    // Arrange: what an admin did on the advice of the earlier line, and a superuser's session
    psql(cluster, 'postgres', `CREATE DATABASE superguarded OWNER ${restorer.user}; GRANT pg_signal_backend TO ${restorer.user}`);
    const superuser = testClient({ host: cluster.host, port: cluster.port, user: 'postgres', database: 'superguarded' });
    await superuser.connect();

    try {
      // Act
      const { error, lines } = await restoreAsRestorer('superguarded', { force: true, terminateConnections: true });

      // Assert
      expect(error?.exitCode).toBe(2);
      expect(error?.message).toBe(
        'target database "superguarded" has 1 open connection(s) of role(s) postgres that role "restorer" may not end (pg_terminate_backend): stop those clients first (killswitch maintenance, scale the API/workers to 0), or connect as a superuser (postgres is one, and only a superuser may end a superuser\'s session; on RDS no role you can connect as is one, the master user included)',
      );
      expect(lines.filter((l) => l.startsWith('download:'))).toEqual([]);
    } finally {
      await superuser.end();
      psql(cluster, 'postgres', `REVOKE pg_signal_backend FROM ${restorer.user}`);
    }
  }, 60_000);

  it('with --terminate-connections, swaps in while an autovacuum worker and a session of its own are in the target: ends its session, leaves the worker to the rename', async () => {
    // Arrange
    await databaseWithAutovacuumInside('vacuumed');
    const own = restorerClient('vacuumed');
    await own.connect();

    try {
      // Act
      const { error } = await restoreAsRestorer('vacuumed', { force: true, terminateConnections: true });

      // Assert: the backup's tables under the target's name; the old one kept beside it, reopened
      // by this role (the swap closed it to connections) and readable
      expect(error).toBeUndefined();
      expect(psql(cluster, 'vacuumed', "SELECT count(*) FROM pg_class WHERE relname = 'dead'")).toBe('0');
      expect(psql(cluster, 'vacuumed', 'SELECT count(*) > 0 FROM public.rides')).toBe('t');
      const [kept] = databasesLike(cluster, 'vacuumed_old_');
      expect(psql(cluster, kept, "SELECT count(*) FROM pg_class WHERE relname = 'dead'")).toBe('1');
    } finally {
      await own.end().catch(() => undefined);
    }
  }, 60_000);
});
