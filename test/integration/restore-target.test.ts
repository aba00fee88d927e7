import type { Client } from 'pg';
import { operatorErrorOf } from '../support/refusal';
import { type PgConnection, connectTo } from '../../lambdas/shared/pg-connection';
import { checkTarget } from '../../lambdas/restore/guards';
import { checkLeftovers, stagingName } from '../../lambdas/restore/leftovers';
import { GUARD_READ_BOUND_MS, NoAnswer, RESTORE_LOCK_KEY, SessionNotBack, Unsettled, boundedQuery, createDatabase, dropDatabase, openAdminSession, runOrUnsettled } from '../../lambdas/restore/session';
import { type OperatorError, oneLine } from '../../lambdas/shared/errors';
import { swapIn } from '../../lambdas/restore/swap';
import { startCuttingProxy } from '../support/cutting-proxy';
import { testClient, testCluster, uniqueDatabaseName } from '../support/cluster';
import { waitFor } from '../support/held-pg-dump';
import { type PostgresCluster, psql, startPostgres, stopPostgres } from '../support/postgres';


/** Drops the target and every database named after it (its staging and set-aside siblings). */
function dropNamedAfter(cluster: PostgresCluster, target: string): void {
  for (const name of psql(cluster, 'postgres', `SELECT datname FROM pg_database WHERE datname LIKE '${target}%'`).split('\n').filter(Boolean)) {
    psql(cluster, 'postgres', `DROP DATABASE "${name}" WITH (FORCE)`);
  }
}

// The guards a restore runs before its download (and again at swap time): what the role may do.
describe('restore target guards: the role can do what the restore will do, checked before the download', () => {
  const cluster = testCluster();
  const as = (user: string): PgConnection => ({ host: cluster.host, port: cluster.port, user, database: 'postgres' });
  const roles: string[] = [];
  const databases: string[] = [];
  let admin: Client | undefined;

  afterEach(async () => {
    await admin?.end();
    admin = undefined;
    for (const db of databases.splice(0)) psql(cluster, 'postgres', `DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
    for (const role of roles.splice(0)) psql(cluster, 'postgres', `DROP ROLE IF EXISTS ${role}`);
  });

  it('refuses a role without CREATEDB in one line with the ALTER ROLE that fixes it, exit 2', async () => {
    // Arrange
    const role = uniqueDatabaseName('weak');
    roles.push(role);
    psql(cluster, 'postgres', `CREATE ROLE ${role} LOGIN`);
    admin = await connectTo(as(role));

    // Act
    const error = await operatorErrorOf(checkTarget(admin, as(role), uniqueDatabaseName('t_new'), {}));

    // Assert
    expect(error.message).toBe(
      `role "${role}" cannot create databases, and a restore loads into a new staging database before it swaps it in: have an admin run ALTER ROLE "${role}" CREATEDB, or connect as a role that has it (on RDS, the master user)`,
    );
    expect(error.exitCode).toBe(2);
  });

  it("refuses to replace a target the role does not own, naming the owner and the GRANT; passes once the role owns it", async () => {
    // Arrange: a target owned by the cluster's superuser; a role that may create databases
    const role = uniqueDatabaseName('creator');
    const target = uniqueDatabaseName('t_owned');
    roles.push(role);
    databases.push(target);
    psql(cluster, 'postgres', `CREATE ROLE ${role} LOGIN CREATEDB; CREATE DATABASE ${target};`);
    admin = await connectTo(as(role));

    // Act
    const error = await operatorErrorOf(checkTarget(admin, as(role), target, { force: true }));

    // Assert
    expect(error.message).toBe(
      `role "${role}" does not own target database "${target}" (owner "${cluster.user}"), and replacing it means renaming it aside and dropping it: connect as "${cluster.user}", have an admin run GRANT "${cluster.user}" TO "${role}", or restore into a new name`,
    );
    expect(error.exitCode).toBe(2);
    psql(cluster, 'postgres', `ALTER DATABASE ${target} OWNER TO ${role}`);
    await expect(checkTarget(admin, as(role), target, { force: true })).resolves.toEqual(expect.objectContaining({ exists: true }));
  });

  it.each([
    ['may log in but not create databases (an application role)', 'LOGIN', /^role "[^"]+" cannot create databases/],
    ['may not log in (a group role)', 'NOLOGIN CREATEDB', /role "[^"]+" is not permitted to log in/],
  ])("does not advise connecting as the target's owner when the owner %s: it could not rename the target either", async (_what, attributes, asOwner) => {
    // Arrange: a target owned by such a role; a role that may create databases
    const role = uniqueDatabaseName('creator');
    const owner = uniqueDatabaseName('owner');
    const target = uniqueDatabaseName('t_app_owned');
    roles.push(role, owner);
    databases.push(target);
    psql(cluster, 'postgres', `CREATE ROLE ${role} LOGIN CREATEDB; CREATE ROLE ${owner} ${attributes}; CREATE DATABASE ${target} OWNER ${owner};`);
    admin = await connectTo(as(role));

    // Act
    const error = await operatorErrorOf(checkTarget(admin, as(role), target, { force: true }));

    // Assert
    expect(error.message).toBe(
      `role "${role}" does not own target database "${target}" (owner "${owner}"), and replacing it means renaming it aside and dropping it: have an admin run GRANT "${owner}" TO "${role}", or restore into a new name`,
    );
    expect(error.exitCode).toBe(2);
    // What connecting as the owner meets.
    const ownerAdmin = await connectTo(as(owner)).catch((e: unknown) => e as Error);
    const refusal = ownerAdmin instanceof Error ? ownerAdmin : await operatorErrorOf(checkTarget(ownerAdmin, as(owner), target, { force: true })).finally(() => ownerAdmin.end());
    expect(refusal.message).toMatch(asOwner);
  });

  it('without --terminate-connections, does not offer it for a session this role may not end: it would be refused in turn', async () => {
    // Arrange: a role that owns the target, may create databases, and has no right to end another role's session
    const role = uniqueDatabaseName('owner');
    const app = uniqueDatabaseName('app');
    const target = uniqueDatabaseName('t_watched');
    roles.push(role, app);
    databases.push(target);
    psql(cluster, 'postgres', `CREATE ROLE ${app} LOGIN; CREATE ROLE ${role} LOGIN CREATEDB; CREATE DATABASE ${target} OWNER ${role};`);
    const session = testClient({ host: cluster.host, port: cluster.port, user: app, database: target, application_name: 'atmr-api' });
    await session.connect();
    admin = await connectTo(as(role));
    try {
      // Act
      const error = await operatorErrorOf(checkTarget(admin, as(role), target, { force: true }));
      const withFlag = await operatorErrorOf(checkTarget(admin, as(role), target, { force: true, terminateConnections: true }));

      // Assert
      expect(error.message).toMatch(
        new RegExp(
          `^target database "${target}" has 1 open connection\\(s\\) \\(pid \\d+ atmr-api as ${app}( from [^)]+)?\\): stop its clients \\(killswitch maintenance, scale the API/workers to 0\\); --terminate-connections would not end them all: this role may not end those of role\\(s\\) ${app}$`,
        ),
      );
      expect(error.exitCode).toBe(2);
      // What the flag meets: the refusal of the sessions this role may not end.
      expect(withFlag.message).toMatch(new RegExp(`^target database "${target}" has 1 open connection\\(s\\) of role\\(s\\) ${app} that role "${role}" may not end`));
    } finally {
      await session.end();
    }
  });

  it.each([
    ['pg_signal_backend', 'ALTER ROLE "%s" INHERIT (it is a member of pg_signal_backend, but NOINHERIT: the membership gives it no rights)'],
    ["the session's role", 'GRANT pg_signal_backend TO "%s"'],
  ])(
    "with --terminate-connections, refuses before the download a NOINHERIT member of %s (a member without its rights, which pg_terminate_backend refuses), naming the fix",
    async (grantedRole, fix) => {
      // Arrange: a NOINHERIT role that owns the target, a member of pg_signal_backend or of the role of the session in the target
      const role = uniqueDatabaseName('noinherit');
      const app = uniqueDatabaseName('app');
      const target = uniqueDatabaseName('t_guarded');
      roles.push(role, app);
      databases.push(target);
      psql(
        cluster,
        'postgres',
        `CREATE ROLE ${app} LOGIN; CREATE ROLE ${role} LOGIN CREATEDB NOINHERIT; CREATE DATABASE ${target} OWNER ${role};
         GRANT ${grantedRole === 'pg_signal_backend' ? 'pg_signal_backend' : app} TO ${role};`,
      );
      const session = await connectTo(as(app), target);
      admin = await connectTo(as(role));
      try {
        // What the swap would meet: PostgreSQL refuses this role the session's end.
        const pid = (await session.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0].pid;
        await expect(admin.query('SELECT pg_terminate_backend($1)', [pid])).rejects.toThrow(/permission denied to terminate process|must be a member of the role/);

        // Act
        const error = await operatorErrorOf(checkTarget(admin, as(role), target, { force: true, terminateConnections: true }));

        // Assert
        expect(error.message).toBe(
          `target database "${target}" has 1 open connection(s) of role(s) ${app} that role "${role}" may not end (pg_terminate_backend): stop those clients first (killswitch maintenance, scale the API/workers to 0), connect as a role that may end them (a superuser; on RDS, the master user), or have an admin run ${fix.replace('%s', role)}`,
        );
        expect(error.exitCode).toBe(2);
        // The application's session was not ended. Counted by its pid: a count of every session in the target
        // also met an autovacuum worker visiting the new database (CI saw 2).
        expect(psql(cluster, 'postgres', `SELECT count(*) FROM pg_stat_activity WHERE pid = ${pid}`)).toBe('1');
      } finally {
        await session.end();
      }
    },
  );
});

describe('an autovacuum worker in the target is not a client', () => {
  // A cluster of its own, whose autovacuum wakes every second: the shared one's default minute would make the test slow.
  let own: PostgresCluster;
  beforeAll(async () => {
    own = await startPostgres({ extraSettings: ['-c autovacuum_naptime=1'] });
  }, 120_000);
  afterAll(() => {
    if (own) stopPostgres(own);
  });

  it('lets a --force restore replace a target that autovacuum is working on (PostgreSQL ends the worker at the rename)', async () => {
    // Arrange: a target with a table autovacuum will crawl through (cost limit 1: a pause after nearly every page)
    const target = 'av_target';
    const staging = 'av_target_restore_test';
    psql(own, 'postgres', `CREATE DATABASE ${target}; CREATE DATABASE ${staging};`);
    psql(
      own,
      target,
      `CREATE TABLE churn (id int, pad text) WITH (autovacuum_vacuum_threshold = 0, autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_cost_delay = 100, autovacuum_vacuum_cost_limit = 1);
       INSERT INTO churn SELECT i, repeat('x', 200) FROM generate_series(1, 100000) i; DELETE FROM churn;`,
    );
    psql(own, staging, 'CREATE TABLE restored (id int); INSERT INTO restored VALUES (1);');
    const connection: PgConnection = { host: own.host, port: own.port, user: own.user, database: 'postgres' };
    const admin = await connectTo(connection);
    try {
      const deadline = Date.now() + 60_000;
      const working = async () =>
        (await admin.query("SELECT 1 FROM pg_stat_activity WHERE datname = $1 AND backend_type = 'autovacuum worker'", [target])).rowCount === 1;
      while (!(await working())) {
        if (Date.now() > deadline) throw new Error('autovacuum never started on the target');
        await new Promise((resolve) => setTimeout(resolve, 200));
      }

      // Act
      const checked = await checkTarget(admin, connection, target, { force: true });
      const session = await openAdminSession(connection, 'postgres', target);
      const swapped = await swapIn(session, connection, staging, target, { force: true, dropReplaced: true }, () => undefined).finally(() => session.end());

      // Assert
      expect(checked.exists).toBe(true);
      expect(swapped).toEqual({ replaced: true, kept: undefined, dropped: true });
      expect(psql(own, target, 'SELECT count(*) FROM restored')).toBe('1');
    } finally {
      await admin.end();
    }
  }, 120_000);
});

describe('the swap is bounded: a lock held elsewhere or a server that stops answering ends them with one line', () => {
  const cluster = testCluster();
  const connection: PgConnection = { host: cluster.host, port: cluster.port, user: cluster.user, database: 'postgres' };

  /** A target with a row and a staging database beside it, as a load leaves them. */
  function targetAndStaging(prefix: string): { target: string; staging: string } {
    const target = uniqueDatabaseName(prefix);
    const staging = `${target}_restore_test`;
    psql(cluster, 'postgres', `CREATE DATABASE ${target}; CREATE DATABASE ${staging}`);
    psql(cluster, target, 'CREATE TABLE keep_me (id int); INSERT INTO keep_me VALUES (7)');
    return { target, staging };
  }

  const dropAll = (target: string): void => dropNamedAfter(cluster, target);

  it('a rename aside that waits for the lock another session holds on the target is refused at the lock bound (10 s): one line, the target untouched and open, the staging database kept', async () => {
    // Arrange: another session holds the target's database lock (a COMMENT in an open transaction)
    const { target, staging } = targetAndStaging('t_locked');
    const holder = testClient(connection);
    await holder.connect();
    const session = await openAdminSession(connection, 'postgres', target);
    try {
      await holder.query(`BEGIN; COMMENT ON DATABASE ${target} IS 'held by a test'`);
      const started = Date.now();

      // Act
      const error = await operatorErrorOf(swapIn(session, connection, staging, target, { force: true }, () => undefined));
      const seconds = (Date.now() - started) / 1000;

      // Assert
      expect(error.message).toBe(`cannot take "${target}" out of the way (canceling statement due to lock timeout); target "${target}" untouched: stop its clients and retry`);
      expect(error).not.toBeInstanceOf(Unsettled);
      expect(seconds).toBeGreaterThanOrEqual(9);
      expect(seconds).toBeLessThan(30);
      await holder.query('ROLLBACK');
      expect(psql(cluster, target, 'SELECT id FROM keep_me')).toBe('7');
      expect(psql(cluster, 'postgres', `SELECT datname FROM pg_database WHERE datname LIKE '${target}%' ORDER BY datname`)).toBe(`${target}\n${staging}`);
    } finally {
      await session.end();
      await holder.end();
      dropAll(target);
    }
  }, 60_000);

  it("a rename in refused and the way back refused too (sessions in the restored copy and in what the target was): Unsettled, saying where the target's data is and the ALTER DATABASE ... RENAME that puts it back, which does; nothing dropped", async () => {
    // Arrange: a session in the staging database makes the rename in fail; a client that connects to
    // the target's data under its set-aside name, once renamed, makes the way back fail too
    const { target, staging } = targetAndStaging('t_noway');
    const session = await openAdminSession(connection, 'postgres', target);
    const inStaging = testClient({ ...connection, database: staging });
    await inStaging.connect();
    let aside = '';
    let inAside: Client | undefined;
    let connecting: Promise<void> | undefined;
    const onAside = (previous: string): void => {
      aside = previous;
      connecting = (async () => {
        for (const until = Date.now() + 15_000; Date.now() < until; await new Promise((resolve) => setTimeout(resolve, 50))) {
          const client = testClient({ ...connection, database: previous });
          if (await client.connect().then(() => true, () => false)) {
            inAside = client;
            return;
          }
        }
      })();
    };
    try {
      // Act
      const error = await operatorErrorOf(swapIn(session, connection, staging, target, { force: true }, () => undefined, { onAside }));
      await connecting;

      // Assert
      expect(inAside).toBeDefined();
      expect(error).toBeInstanceOf(Unsettled);
      expect(error.exitCode).toBe(1);
      expect(error.message).toBe(
        `cannot rename the restored database to "${target}" (database "${staging}" is being accessed by other users), nor put the previous one back (database "${aside}" is being accessed by other users): ` +
          `"${target}" is missing and its data is in "${aside}": ALTER DATABASE "${aside}" RENAME TO "${target}"; the restored copy "${staging}" was kept: ALTER DATABASE "${staging}" RENAME TO "${target}" puts it in instead`,
      );
      // Nothing dropped: the target's data under its set-aside name, the restored copy beside it.
      expect(psql(cluster, 'postgres', `SELECT datname FROM pg_database WHERE datname LIKE '${target}%' ORDER BY datname`)).toBe(`${aside}\n${staging}`);
      expect(psql(cluster, aside, 'SELECT id FROM keep_me')).toBe('7');
      // The statement the line gives puts the target back, once its clients are gone.
      await inAside?.end();
      psql(cluster, 'postgres', `ALTER DATABASE "${aside}" RENAME TO "${target}"`);
      expect(psql(cluster, target, 'SELECT id FROM keep_me')).toBe('7');
    } finally {
      await inAside?.end().catch(() => undefined);
      await inStaging.end();
      await session.end();
      dropAll(target);
    }
  }, 60_000);

  it('with --terminate-connections, a rename aside refused (a lock held on the target) reopens the target it had closed, and the line says so: one line, the target untouched and open, its ended session named', async () => {
    // Arrange: an application session in the target, which the swap ends; another session holds
    // the target's database lock (a COMMENT in an open transaction), so that the rename aside is refused
    const { target, staging } = targetAndStaging('t_closedlock');
    const app = testClient({ ...connection, database: target, application_name: 'atmr-api' });
    await app.connect();
    const holder = testClient(connection);
    await holder.connect();
    const session = await openAdminSession(connection, 'postgres', target);
    const warnings: string[] = [];
    const closed: boolean[] = [];
    try {
      await holder.query(`BEGIN; COMMENT ON DATABASE ${target} IS 'held by a test'`);

      // Act
      const error = await operatorErrorOf(swapIn(session, connection, staging, target, { force: true, terminateConnections: true }, (line) => warnings.push(line), { onClosed: (c) => closed.push(c) }));

      // Assert
      expect(error).not.toBeInstanceOf(Unsettled);
      expect(error.exitCode).toBe(1);
      expect(error.message).toBe(`cannot take "${target}" out of the way (canceling statement due to lock timeout); target "${target}" untouched, open to connections again: stop its clients and retry`);
      expect(warnings).toEqual([expect.stringMatching(new RegExp(`^swap: ending 1 session in ${target} \\(--terminate-connections\\): pid \\d+ atmr-api as `))]);
      expect(closed).toEqual([true, false]);
      expect(psql(cluster, 'postgres', `SELECT datname || ':' || datallowconn FROM pg_database WHERE datname LIKE '${target}%' ORDER BY datname`)).toBe(`${target}:true\n${staging}:true`);
      await holder.query('ROLLBACK');
      expect(psql(cluster, target, 'SELECT id FROM keep_me')).toBe('7');
    } finally {
      await session.end();
      await holder.end();
      await app.end().catch(() => undefined);
      psql(cluster, 'postgres', `ALTER DATABASE ${target} ALLOW_CONNECTIONS true`);
      dropAll(target);
    }
  }, 60_000);

  it.each([
    ["its first read, on the restore's session", /FROM pg_database WHERE datname = \$1/, () => 'SELECT 1 FROM pg_database WHERE datname = $1', true],
    ['the read of what it holds, on a connection to it', /WITH ns AS/, (target: string) => `the read of what "${target}" holds (its catalogs, on a connection to it)`, false],
  ])("the guards' reads before the download are bounded: a server that accepts the connection but never answers %s ends the check with one line naming it, the target untouched", async (_where, statement, what, onSession) => {
    // Arrange: a target with a row; the proxy lets the reads through until the statement, which
    // and everything after it on that connection never reach the server
    const target = uniqueDatabaseName('t_unanswered');
    psql(cluster, 'postgres', `CREATE DATABASE ${target}`);
    psql(cluster, target, 'CREATE TABLE keep_me (id int); INSERT INTO keep_me VALUES (7)');
    const proxy = await startCuttingProxy({ host: cluster.host, port: cluster.port }, statement, { silence: true });
    const through: PgConnection = { ...connection, port: proxy.port };
    const admin = await connectTo(through, 'postgres');
    const ended = new Promise<void>((resolve) => admin.on('end', () => resolve()));
    try {
      const started = Date.now();

      // Act
      const error = await operatorErrorOf(checkTarget(admin, through, target, { force: true }));
      const seconds = (Date.now() - started) / 1000;

      // Assert
      expect(proxy.cut).toBeDefined();
      expect(error.message).toBe(
        `cannot check target database "${target}": ${what(target)} got no answer within ${GUARD_READ_BOUND_MS / 1000} s (the server accepts connections but does not answer: a failover in progress, a network that drops the packets, a server overloaded): check that it answers (psql -c 'SELECT 1'), then rerun the restore; the check creates nothing: "${target}" untouched`,
      );
      expect(error.exitCode).toBe(1);
      expect(seconds).toBeGreaterThanOrEqual(GUARD_READ_BOUND_MS / 1000 - 1);
      expect(seconds).toBeLessThan(GUARD_READ_BOUND_MS / 1000 + 15);
      // The session's connection ended when its read went unanswered, so that it connects again
      // before its next statement; when the read was on the connection to the target, it answers.
      if (onSession) await ended;
      else expect((await admin.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
      expect(psql(cluster, target, 'SELECT id FROM keep_me')).toBe('7');
    } finally {
      await admin.end().catch(() => undefined);
      await proxy.stop();
      dropAll(target);
    }
  }, 90_000);

  it('a CREATE DATABASE that the server never answers is given up at its bound: Unsettled at once, saying it may still be running in the restore\'s session, with the look and the DROP for once it has ended', async () => {
    // Arrange: the proxy swallows the CREATE DATABASE and keeps its connection open
    const target = uniqueDatabaseName('t_create');
    const staging = `${target}_restore_test`;
    const proxy = await startCuttingProxy({ host: cluster.host, port: cluster.port }, new RegExp(`CREATE DATABASE "${staging}"`), { silence: true });
    const through: PgConnection = { ...connection, port: proxy.port };
    const session = await openAdminSession(through, 'postgres', target);
    try {
      const sql = `CREATE DATABASE "${staging}"`;
      const started = Date.now();

      // Act
      const error = await operatorErrorOf(runOrUnsettled(session, sql, (lost) => `unknown: ${lost}`, (client) => createDatabase(client, staging, undefined, 2_000)));
      const seconds = (Date.now() - started) / 1000;

      // Assert
      expect(proxy.cut).toBe(`${sql} TEMPLATE template0`);
      expect(error).toBeInstanceOf(Unsettled);
      expect(error.exitCode).toBe(1);
      expect(error.message).toBe(`unknown: ${sql} TEMPLATE template0 got no answer within 2 s; the server may still be running it, in the restore's session (application_name 'atmr-dr' in pg_stat_activity)`);
      expect(seconds).toBeLessThan(5);
    } finally {
      await session.end();
      await proxy.stop();
      dropAll(target);
    }
  }, 60_000);

  it("a reopening of the target that the server never answers (--terminate-connections, after the rename back) ends the session's connection: the caller's drop of the staging database runs at once, not behind it", async () => {
    // Arrange: a session in the staging database makes the rename in fail (the target is put back),
    // and the proxy swallows the target's reopening and keeps its connection open
    const { target, staging } = targetAndStaging('t_reopen');
    const proxy = await startCuttingProxy({ host: cluster.host, port: cluster.port }, new RegExp(`"${target}" ALLOW_CONNECTIONS true`), { silence: true });
    const through: PgConnection = { ...connection, port: proxy.port };
    const session = await openAdminSession(through, 'postgres', target);
    const inStaging = testClient({ ...connection, database: staging });
    inStaging.on('error', () => undefined);
    await inStaging.connect();
    try {
      const error = await operatorErrorOf(swapIn(session, through, staging, target, { force: true, terminateConnections: true }, () => undefined));
      const started = Date.now();

      // Act: what restore.ts does after a failed swap
      await dropDatabase(await session.client(), staging);
      const seconds = (Date.now() - started) / 1000;

      // Assert
      expect(error.message).toMatch(new RegExp(`; the previous database was put back, target "${target}" untouched; it could not be reopened \\(.+ got no answer within 17 s\\): run ALTER DATABASE "${target}" ALLOW_CONNECTIONS true$`));
      expect(seconds).toBeLessThan(10);
      expect(psql(cluster, 'postgres', `SELECT count(*) FROM pg_database WHERE datname = '${staging}'`)).toBe('0');
    } finally {
      await inStaging.end().catch(() => undefined);
      await session.end();
      await proxy.stop();
      psql(cluster, 'postgres', `ALTER DATABASE ${target} ALLOW_CONNECTIONS true`);
      dropAll(target);
    }
  }, 120_000);

  it("a wait for the target's ended sessions that the server never answers (--terminate-connections) ends the session's connection: Unsettled, and the caller's next statement runs at once, not behind it", async () => {
    // Arrange: the proxy swallows the wait's poll of pg_stat_activity and keeps its connection open
    const { target, staging } = targetAndStaging('t_waitsess');
    const proxy = await startCuttingProxy({ host: cluster.host, port: cluster.port }, /SELECT 1 FROM pg_stat_activity/, { silence: true });
    const through: PgConnection = { ...connection, port: proxy.port };
    const session = await openAdminSession(through, 'postgres', target);
    try {
      const error = await operatorErrorOf(swapIn(session, through, staging, target, { force: true, terminateConnections: true }, () => undefined));
      const started = Date.now();

      // Act: the caller's next statement on the session
      const next = await boundedQuery(await session.client(), 'SELECT 1 AS one', 5_000);
      const seconds = (Date.now() - started) / 1000;

      // Assert
      expect(proxy.cut).toMatch(/^SELECT 1 FROM pg_stat_activity/);
      expect(error).toBeInstanceOf(Unsettled);
      expect(error.message).toMatch(new RegExp(`^cannot take "${target}" out of the way: SELECT 1 FROM pg_stat_activity .+ got no answer within [\\d.]+ s \\(the server may still be running it\\); "${target}" was not renamed: `));
      expect(next.rows).toEqual([{ one: 1 }]);
      expect(seconds).toBeLessThan(3);
    } finally {
      await session.end();
      await proxy.stop();
      psql(cluster, 'postgres', `ALTER DATABASE ${target} ALLOW_CONNECTIONS true`);
      dropAll(target);
    }
  }, 60_000);

  it('a stop (Ctrl-C, the deadline) that came while the guards ran again is heard before the first change: the swap does not start, the target untouched, the restored copy kept for the caller to drop', async () => {
    // Arrange
    const { target, staging } = targetAndStaging('t_stopped');
    const session = await openAdminSession(connection, 'postgres', target);
    const stop = new AbortController();
    stop.abort(new Error('received SIGINT'));
    try {
      // Act
      const error = await swapIn(session, connection, staging, target, { force: true, terminateConnections: true, signal: stop.signal }, () => undefined).then(
        () => undefined,
        (e: unknown) => e as Error,
      );

      // Assert
      expect(error?.message).toBe('received SIGINT');
      expect(psql(cluster, 'postgres', `SELECT datname || ':' || datallowconn FROM pg_database WHERE datname LIKE '${target}%' ORDER BY datname`)).toBe(`${target}:true\n${staging}:true`);
      expect(psql(cluster, target, 'SELECT id FROM keep_me')).toBe('7');
    } finally {
      await session.end();
      dropAll(target);
    }
  }, 60_000);

  it("a drop of the replaced database (dropReplaced) whose answer is lost: the swap is done, the warning says it may have been dropped and how to look, and no copy is reported kept", async () => {
    // Arrange: the proxy lets the server drop what the target was and cuts the answer
    const { target, staging } = targetAndStaging('t_dropcut');
    const proxy = await startCuttingProxy({ host: cluster.host, port: cluster.port }, new RegExp(`DROP DATABASE IF EXISTS "${target}_old_`));
    const through: PgConnection = { ...connection, port: proxy.port };
    const session = await openAdminSession(through, 'postgres', target);
    const warnings: string[] = [];
    const lines: string[] = [];
    try {
      // Act
      const swapped = await swapIn(session, through, staging, target, { force: true, dropReplaced: true }, (line) => warnings.push(line), { log: (line) => lines.push(line) });

      // Assert
      expect(proxy.cut).toMatch(new RegExp(`^DROP DATABASE IF EXISTS "${target}_old_\\w+" WITH \\(FORCE\\)$`));
      expect(swapped).toEqual({ replaced: true });
      expect(warnings).toEqual([
        expect.stringMatching(new RegExp(`^the drop of "${target}_old_\\w+", what "${target}" was before this restore, got no answer \\(.+\\): it may have been dropped; look with SELECT datname FROM pg_database WHERE datname = '${target}_old_\\w+', and if it is there and not needed, DROP DATABASE "${target}_old_\\w+"`)),
      ]);
      // The copy in place is said before the drop, whose end never came.
      expect(lines).toEqual([`swap: the restored copy is in place as ${target}`, expect.stringMatching(new RegExp(`^swap: dropping ${target}_old_\\w+, what ${target} was before this restore \\(if no "swap: dropped" line follows, it may have been dropped`))]);
      expect(psql(cluster, 'postgres', `SELECT count(*) FROM pg_database WHERE datname LIKE '${target}_old_%'`)).toBe('0');
    } finally {
      await session.end();
      await proxy.stop();
      dropAll(target);
    }
  }, 60_000);

  it('a rename aside whose answer is lost with --terminate-connections: the line says that what the target was keeps its closed flag, and how to reopen it', async () => {
    // Arrange: the proxy cuts the rename's answer (the server renamed the closed target aside)
    const { target, staging } = targetAndStaging('t_closedaside');
    const proxy = await startCuttingProxy({ host: cluster.host, port: cluster.port }, new RegExp(`RENAME TO "${target}_old_`));
    const through: PgConnection = { ...connection, port: proxy.port };
    const session = await openAdminSession(through, 'postgres', target);
    try {
      // Act
      const error = await operatorErrorOf(swapIn(session, through, staging, target, { force: true, terminateConnections: true }, () => undefined));

      // Assert
      const aside = psql(cluster, 'postgres', `SELECT datname FROM pg_database WHERE datname LIKE '${target}_old_%'`);
      expect(error).toBeInstanceOf(Unsettled);
      expect(psql(cluster, 'postgres', `SELECT datallowconn FROM pg_database WHERE datname = '${aside}'`)).toBe('f');
      expect(error.message).toContain(`; "${aside}" keeps the target's closed flag: ALTER DATABASE "${aside}" ALLOW_CONNECTIONS true reopens it to be read; nothing was dropped`);
    } finally {
      await session.end();
      await proxy.stop();
      for (const name of psql(cluster, 'postgres', `SELECT datname FROM pg_database WHERE datname LIKE '${target}%'`).split('\n').filter(Boolean)) psql(cluster, 'postgres', `ALTER DATABASE "${name}" ALLOW_CONNECTIONS true`);
      dropAll(target);
    }
  }, 60_000);

  it('a rename aside whose answer is lost, with a server that then accepts connections but never answers: Unsettled at once (no new connection waited for), naming where each copy may be, nothing dropped', async () => {
    // Arrange: the proxy cuts the rename's answer (the server renamed the target aside), then lets
    // new connections log in and swallows their statements
    const { target, staging } = targetAndStaging('t_silent');
    const proxy = await startCuttingProxy({ host: cluster.host, port: cluster.port }, new RegExp(`RENAME TO "${target}_old_`), { silentAfterCut: true });
    const through: PgConnection = { ...connection, port: proxy.port };
    const session = await openAdminSession(through, 'postgres', target);
    try {
      const started = Date.now();

      // Act
      const error = await operatorErrorOf(swapIn(session, through, staging, target, { force: true }, () => undefined));
      const seconds = (Date.now() - started) / 1000;

      // Assert
      const aside = psql(cluster, 'postgres', `SELECT datname FROM pg_database WHERE datname LIKE '${target}_old_%'`);
      expect(aside).toMatch(new RegExp(`^${target}_old_\\w+$`));
      expect(error).toBeInstanceOf(Unsettled);
      expect(error.message).toMatch(
        new RegExp(
          `^the connection was lost before the server answered ALTER DATABASE "${target}" RENAME TO "${aside}" \\(Connection terminated unexpectedly\\); ` +
            `the server may still be running it, in the restore's session \\(application_name 'atmr-dr' in pg_stat_activity\\): ` +
            `once it has ended there, look with SELECT datname FROM pg_database WHERE datname IN \\('${target}', '${aside}', '${staging}'\\): if "${target}" is missing, its data is in "${aside}": .*; nothing was dropped$`,
        ),
      );
      expect(seconds).toBeLessThan(5);
      expect(psql(cluster, aside, 'SELECT id FROM keep_me')).toBe('7');
      expect(psql(cluster, staging, 'SELECT 1')).toBe('1');
    } finally {
      await session.end();
      await proxy.stop();
      dropAll(target);
    }
  }, 60_000);
});

describe("the session's lock and the leftovers' reads are bounded: a server that accepts the connection but never answers them stops the restore with one line", () => {
  const cluster = testCluster();
  const connection: PgConnection = { host: cluster.host, port: cluster.port, user: cluster.user, database: 'postgres' };
  // The tests' bound, shorter than the restore's (GUARD_READ_BOUND_MS): the same code path, seconds saved.
  const BOUND_MS = 2_000;
  const noAnswer = `got no answer within ${BOUND_MS / 1000} s (the server accepts connections but does not answer: a failover in progress, a network that drops the packets, a server overloaded): check that it answers (psql -c 'SELECT 1')`;

  /** A target with a row, as a restore finds it. */
  function aTarget(prefix: string): string {
    const target = uniqueDatabaseName(prefix);
    psql(cluster, 'postgres', `CREATE DATABASE ${target}`);
    psql(cluster, target, 'CREATE TABLE keep_me (id int); INSERT INTO keep_me VALUES (7)');
    return target;
  }

  const dropAll = (target: string): void => dropNamedAfter(cluster, target);

  it.each([
    ['the lock on the target', /pg_try_advisory_lock/, false, (target: string) => `the lock on "${target}" that keeps a second restore out (pg_try_advisory_lock)`],
    ['the read of the role', /rolsuper AS superuser/, false, () => 'the read of whether the role is a superuser (pg_roles)'],
    ['the read of the restore that holds the lock', /FROM pg_locks l JOIN pg_stat_activity/, true, (target: string) => `the read of the restore that holds the lock on "${target}" (pg_locks, pg_stat_activity)`],
  ])("opening the restore's session: %s unanswered ends it with one line, exit 1, nothing created", async (_what, statement, held, what) => {
    // Arrange: a target; for the holder's read, another restore's session holds the target's lock
    const target = aTarget('t_lock');
    const other = held ? await openAdminSession(connection, 'postgres', target) : undefined;
    const proxy = await startCuttingProxy({ host: cluster.host, port: cluster.port }, statement, { silence: true });
    const through: PgConnection = { ...connection, port: proxy.port };
    try {
      const started = Date.now();

      // Act
      const error = await operatorErrorOf(openAdminSession(through, 'postgres', target, BOUND_MS));
      const seconds = (Date.now() - started) / 1000;

      // Assert
      expect(proxy.cut).toBeDefined();
      expect(error.message).toBe(`cannot open the restore's session to "postgres": ${what(target)} ${noAnswer}, then rerun the restore; nothing was created: "${target}" untouched`);
      expect(error.exitCode).toBe(1);
      expect(seconds).toBeGreaterThanOrEqual(BOUND_MS / 1000 - 0.5);
      expect(seconds).toBeLessThan(15);
      expect(psql(cluster, 'postgres', `SELECT datname FROM pg_database WHERE datname LIKE '${target}%'`)).toBe(target);
      expect(psql(cluster, target, 'SELECT id FROM keep_me')).toBe('7');
    } finally {
      await other?.end();
      await proxy.stop();
      dropAll(target);
    }
  }, 60_000);

  it("a statement that got no answer within its bound ends its connection, whoever ran it: the next statement on it fails at once instead of waiting behind it, and the session connects again and takes the lock again", async () => {
    // Arrange: the session's statement outlasts its bound on a server that answers (pg_sleep)
    const target = aTarget('t_ended');
    const session = await openAdminSession(connection, 'postgres', target, BOUND_MS);
    try {
      const first = await session.client();
      const pid = (await first.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0].pid;

      // Act
      const error = await boundedQuery(first, 'SELECT pg_sleep(2)', 500).then(
        () => undefined,
        (e: unknown) => e,
      );
      const started = Date.now();
      const after = await first.query('SELECT 1').then(
        () => 'answered',
        (e: unknown) => oneLine(e),
      );
      const seconds = (Date.now() - started) / 1000;

      // Assert
      expect(error).toBeInstanceOf(NoAnswer);
      expect(oneLine(error)).toBe('SELECT pg_sleep(2) got no answer within 0.5 s');
      expect(after).toBe('Client was closed and is not queryable');
      expect(seconds).toBeLessThan(0.5);
      // The server ends that session once its statement is over (it holds the lock until then).
      await waitFor(`session ${pid} to end`, () => psql(cluster, 'postgres', `SELECT count(*) FROM pg_stat_activity WHERE pid = ${pid}`) === '0', 10_000);
      const next = await session.client();
      const newPid = (await boundedQuery<{ pid: number }>(next, 'SELECT pg_backend_pid() AS pid', BOUND_MS)).rows[0].pid;
      expect(next).not.toBe(first);
      expect(newPid).not.toBe(pid);
      expect(psql(cluster, 'postgres', `SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objid = hashtext('${target}')::oid AND objsubid = 2`)).toBe(String(newPid));
    } finally {
      await session.end();
      dropAll(target);
    }
  }, 60_000);

  it("connecting the restore's session again at once after a statement that got no answer, while the server still runs it: the previous connection's server process is ended and its lock taken over, not refused as another restore's", async () => {
    // Arrange: the session's statement outlasts its bound on a server that answers (pg_sleep)
    const target = aTarget('t_ghost');
    const session = await openAdminSession(connection, 'postgres', target, BOUND_MS);
    try {
      const first = await session.client();
      const pid = (await first.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0].pid;
      await expect(boundedQuery(first, 'SELECT pg_sleep(30)', 500)).rejects.toBeInstanceOf(NoAnswer);
      const started = Date.now();

      // Act
      const next = await session.client();
      const seconds = (Date.now() - started) / 1000;

      // Assert
      const newPid = (await boundedQuery<{ pid: number }>(next, 'SELECT pg_backend_pid() AS pid', BOUND_MS)).rows[0].pid;
      expect(newPid).not.toBe(pid);
      expect(seconds).toBeLessThan(5);
      expect(psql(cluster, 'postgres', `SELECT count(*) FROM pg_stat_activity WHERE pid = ${pid}`)).toBe('0');
      expect(psql(cluster, 'postgres', `SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objid = hashtext('${target}')::oid AND objsubid = 2`)).toBe(String(newPid));
    } finally {
      await session.end();
      dropAll(target);
    }
  }, 60_000);

  it("connecting the restore's session again while its previous server process does not go when ended (stuck): one line naming that process and where to look, not a lock timeout", async () => {
    // Arrange: the previous connection's statement outlasts its bound, then its server process is
    // stopped (SIGSTOP: a process stuck in I/O does not act on pg_terminate_backend either)
    const target = aTarget('t_stuck');
    // The production bound of the lock's answer, which outlasts lock_timeout (10 s): the server answers
    const session = await openAdminSession(connection, 'postgres', target, GUARD_READ_BOUND_MS);
    let pid = 0;
    try {
      const first = await session.client();
      pid = (await first.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0].pid;
      await expect(boundedQuery(first, 'SELECT pg_sleep(60)', 500)).rejects.toBeInstanceOf(NoAnswer);
      process.kill(pid, 'SIGSTOP');

      // Act
      const error = await session.client().then(
        () => undefined,
        (e: unknown) => e as Error,
      );

      // Assert
      expect(error?.constructor.name).toBe('SessionNotBack');
      expect(oneLine(error)).toMatch(new RegExp(`^the restore's previous session ${pid} \\(started .+\\) still holds the lock on "${target}" 10 s after it was ended \\(pg_terminate_backend\\): look with SELECT pid, state, query FROM pg_stat_activity WHERE pid = ${pid}$`));
    } finally {
      if (pid) process.kill(pid, 'SIGCONT');
      await session.end();
      dropAll(target);
    }
  }, 60_000);

  it("connecting the restore's session again while another restore takes the lock between the end of its previous server process and its wait for the lock: that restore is named (its session, client, start), exit 3, not the previous process", async () => {
    // Arrange: the previous connection's statement outlasts its bound; another restore's session
    // asks for the lock as the previous process is ended, and has it before this session's wait
    const target = aTarget('t_raced');
    // The production bound of the lock's answer, which outlasts lock_timeout (10 s): the server answers
    const session = await openAdminSession(connection, 'postgres', target, GUARD_READ_BOUND_MS);
    const rival = testClient(connection);
    await rival.connect();
    const rivalPid = (await rival.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0].pid;
    const first = await session.client();
    const pid = (await first.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0].pid;
    await expect(boundedQuery(first, 'SELECT pg_sleep(60)', 500)).rejects.toBeInstanceOf(NoAnswer);
    const { Client: PgClient } = await import('pg');
    const query = PgClient.prototype.query as (...a: unknown[]) => Promise<unknown>;
    const spy = jest.spyOn(PgClient.prototype, 'query').mockImplementation(function (this: Client, ...args: unknown[]) {
      const text = (args[0] as { text?: string })?.text ?? '';
      if (this === rival || !text.startsWith('SELECT pg_advisory_lock(')) return query.apply(this, args) as never;
      // Granted once the ended process is gone, before this session's wait is sent.
      return query.call(rival, 'SELECT pg_advisory_lock($1, hashtext($2))', [RESTORE_LOCK_KEY, target]).then(() => query.apply(this, args)) as never;
    });
    try {
      // Act
      const error = await session.client().then(
        () => undefined,
        (e: unknown) => e as OperatorError,
      );
      spy.mockRestore();

      // Assert
      expect(error).toBeInstanceOf(SessionNotBack);
      expect(oneLine(error)).toMatch(
        new RegExp(`^another restore into "${target}" is running \\(its session ${rivalPid} from 127\\.0\\.0\\.1, since [^)]+\\): wait for it to end \\(or stop it\\), then check "${target}" before restoring again$`),
      );
      expect(error?.exitCode).toBe(3);
      expect(psql(cluster, 'postgres', `SELECT count(*) FROM pg_stat_activity WHERE pid = ${pid}`)).toBe('0');
      expect(psql(cluster, 'postgres', `SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objid = hashtext('${target}')::oid AND objsubid = 2`)).toBe(String(rivalPid));
    } finally {
      spy.mockRestore();
      await rival.end();
      await session.end();
      dropAll(target);
    }
  }, 60_000);

  it("connecting the restore's session again as its previous server process leaves on its own (after the first try of the lock, before it is ended): the lock is taken, not refused as another restore's", async () => {
    // Arrange: the previous process still holds the lock at the first try, and is gone by the time
    // the session would end it (its statement over, its closed connection seen)
    const target = aTarget('t_left');
    const session = await openAdminSession(connection, 'postgres', target, BOUND_MS);
    const first = await session.client();
    const pid = (await first.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0].pid;
    await expect(boundedQuery(first, 'SELECT pg_sleep(30)', 500)).rejects.toBeInstanceOf(NoAnswer);
    const { Client: PgClient } = await import('pg');
    const query = PgClient.prototype.query;
    const spy = jest.spyOn(PgClient.prototype, 'query').mockImplementation(function (this: Client, ...args: unknown[]) {
      const text = (args[0] as { text?: string })?.text ?? '';
      if (text.includes('pg_terminate_backend')) psql(cluster, 'postgres', `SELECT pg_terminate_backend(${pid}, 5000)`);
      return (query as (...a: unknown[]) => unknown).apply(this, args) as never;
    });
    try {
      // Act
      const next = await session.client().finally(() => spy.mockRestore());

      // Assert
      const newPid = (await boundedQuery<{ pid: number }>(next, 'SELECT pg_backend_pid() AS pid', BOUND_MS)).rows[0].pid;
      expect(psql(cluster, 'postgres', `SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objid = hashtext('${target}')::oid AND objsubid = 2`)).toBe(String(newPid));
    } finally {
      spy.mockRestore();
      await session.end();
      dropAll(target);
    }
  }, 60_000);

  it("connecting the restore's session again after its connection was lost: the lock unanswered ends it with one line naming it", async () => {
    // Arrange: the session opens (its lock goes through), then the server ends it; the lock of the
    // new connection never reaches the server
    const target = aTarget('t_relock');
    const proxy = await startCuttingProxy({ host: cluster.host, port: cluster.port }, /pg_try_advisory_lock/, { silence: true, pass: 1 });
    const through: PgConnection = { ...connection, port: proxy.port };
    const session = await openAdminSession(through, 'postgres', target, BOUND_MS);
    try {
      const first = await session.client();
      const ended = new Promise<void>((resolve) => first.on('end', () => resolve()));
      psql(cluster, 'postgres', `SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND objid = hashtext('${target}')::oid AND objsubid = 2`);
      await ended;
      const started = Date.now();

      // Act
      const error = await operatorErrorOf(session.client());
      const seconds = (Date.now() - started) / 1000;

      // Assert
      expect(proxy.cut).toBeDefined();
      expect(error.message).toBe(`cannot connect the restore's session to "postgres" again (its connection was lost): the lock on "${target}" that keeps a second restore out (pg_try_advisory_lock) ${noAnswer}`);
      expect(error.exitCode).toBe(1);
      expect(seconds).toBeGreaterThanOrEqual(BOUND_MS / 1000 - 0.5);
      expect(seconds).toBeLessThan(15);
      expect(psql(cluster, target, 'SELECT id FROM keep_me')).toBe('7');
    } finally {
      await session.end();
      await proxy.stop();
      dropAll(target);
    }
  }, 60_000);

  it.each([
    ['its first read', /LIKE ANY/, (target: string) => `the read of the databases named after "${target}" (pg_database, pg_stat_activity)`],
    ['the read of the sessions in a leftover', /application_name AS application FROM pg_stat_activity/, (_target: string, leftover: string) => `the read of the sessions in "${leftover}" (pg_stat_activity)`],
    ['the read of the role for the DROP it advises', /rolsuper AS superuser/, () => 'the read of whether the role is a superuser (pg_roles)'],
  ])('the look for leftovers of a killed restore: %s unanswered ends it with one line, exit 1, nothing created or dropped', async (_what, statement, what) => {
    // Arrange: a target, and an earlier restore's staging database that another client is in
    const target = aTarget('t_left');
    const leftover = stagingName(target);
    psql(cluster, 'postgres', `CREATE DATABASE "${leftover}"`);
    const inside = testClient({ ...connection, database: leftover, application_name: 'somebody' });
    await inside.connect();
    const proxy = await startCuttingProxy({ host: cluster.host, port: cluster.port }, statement, { silence: true });
    const admin = await connectTo({ ...connection, port: proxy.port }, 'postgres');
    const ended = new Promise<void>((resolve) => admin.on('end', () => resolve()));
    const warnings: string[] = [];
    try {
      const started = Date.now();

      // Act
      const error = await operatorErrorOf(checkLeftovers(admin, target, (line) => warnings.push(line), BOUND_MS));
      const seconds = (Date.now() - started) / 1000;

      // Assert
      expect(proxy.cut).toBeDefined();
      expect(error.message).toBe(
        `cannot look for what an earlier restore into "${target}" left behind: ${what(target, leftover)} ${noAnswer}, then rerun the restore; nothing was created: "${target}" untouched`,
      );
      expect(error.exitCode).toBe(1);
      expect(warnings).toEqual([]);
      expect(seconds).toBeGreaterThanOrEqual(BOUND_MS / 1000 - 0.5);
      expect(seconds).toBeLessThan(15);
      // Ended, so that the restore's session connects again before its next statement.
      await ended;
      expect(psql(cluster, 'postgres', `SELECT datname FROM pg_database WHERE datname LIKE '${target}%' ORDER BY datname`)).toBe(`${target}\n${leftover}`);
      expect(psql(cluster, target, 'SELECT id FROM keep_me')).toBe('7');
    } finally {
      await admin.end().catch(() => undefined);
      await inside.end();
      await proxy.stop();
      dropAll(target);
    }
  }, 60_000);
});
