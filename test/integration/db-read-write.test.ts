import { dbReadWrite, readOnlyState } from '../../lambdas/detection/db-read-write';
import { atmrDr, atmrDrAtTerminal } from '../lambdas/detection/cli-run';
import { atmrDr as realAtmrDr } from '../lambdas/restore/fixtures';
import { testClient, testCluster, uniqueDatabaseName } from '../support/cluster';
import { freePort, type PostgresCluster, psql, startPostgres, stopPostgres } from '../support/postgres';

// `atmr-dr db read-write` against the suite's real PostgreSQL, with a scratch database put in
// read-only mode the way the runbook's scenario does (ALTER DATABASE ... SET default_transaction_read_only = on).

const cluster = testCluster();
let database: string;
let closedPort: number;
const role = `atmr_ro_${process.pid}`;
/** The application's role: it may write the table, and has its own read-only default in some tests. */
const appRole = `atmr_app_${process.pid}`;

function connection(user = cluster.user) {
  return { host: cluster.host, port: cluster.port, user, database, sslMode: 'disable' };
}
function databaseSetting(): string {
  return psql(cluster, 'postgres', `SELECT coalesce((SELECT array_to_string(setconfig, ',') FROM pg_db_role_setting r JOIN pg_database d ON d.oid = r.setdatabase WHERE d.datname = '${database}' AND r.setrole = 0), 'none')`);
}
const confirmYes = async () => true;

beforeAll(async () => {
  closedPort = await freePort();
});
beforeEach(() => {
  database = uniqueDatabaseName('readonly');
  psql(cluster, 'postgres', `CREATE DATABASE ${database}`);
  psql(cluster, database, 'CREATE TABLE booking (id int PRIMARY KEY); INSERT INTO booking VALUES (1)');
});
afterEach(() => {
  psql(cluster, 'postgres', `DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
});
afterAll(() => {
  psql(cluster, 'postgres', `DROP ROLE IF EXISTS ${role}; DROP ROLE IF EXISTS ${appRole}`);
});

/** The line of an ALTER DATABASE refused to `role`, which does not own the database. */
function refusedLine() {
  return `user "${role}" may not ALTER DATABASE "${database}" (must be owner of database ${database}): its owner is "${cluster.user}"; nothing changed; rerun as the database's owner or the RDS master user: PGUSER=${cluster.user} npx --no atmr-dr db read-write (or --database-secret with that login)`;
}

/** The application's role, able to write booking, read-only by its own setting (for every database, or this one with ` IN DATABASE ...`). */
function readOnlyAppRole(where = '', grant = 'SELECT, INSERT, UPDATE, DELETE') {
  psql(cluster, 'postgres', `DROP ROLE IF EXISTS ${appRole}; CREATE ROLE ${appRole} LOGIN; ALTER ROLE ${appRole}${where} SET default_transaction_read_only = on`);
  psql(cluster, database, `GRANT ${grant} ON booking TO ${appRole}`);
}

describe('dbReadWrite', () => {
  it('sets the database-level default off when it is the cause, proves a write, and leaves no trace of the proof', async () => {
    psql(cluster, 'postgres', `ALTER DATABASE ${database} SET default_transaction_read_only = on`);
    const lines: string[] = [];
    // A pooled session of the application, opened while the database was read-only.
    const pooled = testClient({ host: cluster.host, port: cluster.port, user: cluster.user, database });
    await pooled.connect();

    const outcome = await dbReadWrite({
      connection: connection(),
      confirm: confirmYes,
      print: (l) => lines.push(l),
      storage: async () => ({ freeBytes: 50 * 1024 ** 3, allocatedBytes: 100 * 1024 ** 3 }),
    });
    // What the line says below: the pool's session still refuses writes after the fix.
    const pooledReadOnly = (await pooled.query<{ transaction_read_only: string }>('SHOW transaction_read_only')).rows[0].transaction_read_only;
    await pooled.end();
    expect(pooledReadOnly).toBe('on');

    expect(outcome.before).toMatchObject({ transactionReadOnly: true, databaseSetting: 'on', defaultSource: 'database', inRecovery: false });
    expect(outcome).toMatchObject({ result: 'fixed', writeProof: 'ok', after: { transactionReadOnly: false, databaseSetting: 'off' } });
    // Sessions opened before the fix (the API's and Celery's pools, as `pooled` above) keep the read-only default: the line says to recycle them.
    expect(outcome.finding).toBe(
      'the database-level setting was the cause; it is off and a write went through (rolled back); sessions opened before keep the old setting: recycle the API and Celery connection pools (aws ecs update-service --cluster <cluster> --service <service> --force-new-deployment for each), then test a POST/PUT on the API',
    );
    expect(databaseSetting()).toBe('default_transaction_read_only=off');
    expect(psql(cluster, database, "SELECT count(*) FROM pg_class WHERE relname = 'atmr_dr_write_check'")).toBe('0');
    expect(psql(cluster, database, 'SELECT count(*) FROM booking')).toBe('1');
    expect(lines).toEqual(expect.arrayContaining(['  transaction_read_only (new session): on', '  RDS free storage: 50.0 GiB (50.0 % of 100.0 GiB)']));
  });

  it('changes nothing when the operator declines', async () => {
    psql(cluster, 'postgres', `ALTER DATABASE ${database} SET default_transaction_read_only = on`);

    const outcome = await dbReadWrite({ connection: connection(), confirm: async () => false });

    expect(outcome.result).toBe('declined');
    expect(databaseSetting()).toBe('default_transaction_read_only=on');
  });

  it.each([
    ['in every database (ALTER ROLE ... SET)', '', ''],
    ['in this database (ALTER ROLE ... IN DATABASE ... SET)', ' IN DATABASE', ' in database'],
  ])('reports a setting of the role %s as the cause, changes nothing, and names the statement that lifts it as it must be run', async (_case, inDatabase, inDatabaseWords) => {
    // Arrange
    const where = inDatabase ? ` IN DATABASE ${database}` : '';
    psql(cluster, 'postgres', `DROP ROLE IF EXISTS ${role}; CREATE ROLE ${role} LOGIN; ALTER ROLE ${role}${where} SET default_transaction_read_only = on; GRANT ALL ON DATABASE ${database} TO ${role}`);
    const confirm = jest.fn(confirmYes);

    // Act
    const outcome = await dbReadWrite({ connection: connection(role), confirm });

    // Assert: nothing changed; the statement named, run as printed by the role itself (whose sessions refuse a plain ALTER ROLE), makes them read-write
    expect(outcome.result).toBe('not-a-database-setting');
    expect(confirm).not.toHaveBeenCalled();
    expect(databaseSetting()).toBe('none');
    const statement = `BEGIN READ WRITE; ALTER ROLE "${role}"${inDatabase ? ` IN DATABASE "${database}"` : ''} RESET default_transaction_read_only; COMMIT;`;
    expect(outcome.finding).toBe(
      `new sessions are read-only because of a setting of role "${role}"${inDatabaseWords ? `${inDatabaseWords} "${database}"` : ''} (ALTER ROLE ...${inDatabase ? ' IN DATABASE ...' : ''} SET default_transaction_read_only): as that role (or a superuser), run ${statement}`,
    );
    const asRole = { env: { ...cluster.env, PGUSER: role } };
    expect(() => psql(asRole, database, statement.replace('BEGIN READ WRITE; ', '').replace(' COMMIT;', ''))).toThrow(/cannot execute ALTER ROLE in a read-only transaction/);
    psql(asRole, database, statement);
    expect((await readOnlyState(connection(role))).transactionReadOnly).toBe(false);
  });

  it.each([
    ['for every database (ALTER ROLE ... SET)', false],
    ['in this database (ALTER ROLE ... IN DATABASE ... SET)', true],
  ])('connected as another role, names the application role read-only %s, with its RESET, and changes nothing', async (_case, inDatabase) => {
    readOnlyAppRole(inDatabase ? ` IN DATABASE ${database}` : '');
    const confirm = jest.fn(confirmYes);

    const outcome = await dbReadWrite({ connection: connection(), confirm });

    expect(outcome.result).toBe('not-a-database-setting');
    expect(outcome.finding).toBe(
      inDatabase
        ? `role "${appRole}" has default_transaction_read_only=on in database "${database}" (ALTER ROLE ... IN DATABASE ... SET): its sessions on it cannot write: ALTER ROLE "${appRole}" IN DATABASE "${database}" RESET default_transaction_read_only`
        : `role "${appRole}" has default_transaction_read_only=on (ALTER ROLE ... SET): its sessions cannot write: ALTER ROLE "${appRole}" RESET default_transaction_read_only`,
    );
    expect(confirm).not.toHaveBeenCalled();
    // The statement named, run as the connected role, makes the application's sessions read-write.
    psql(cluster, database, outcome.finding.slice(outcome.finding.lastIndexOf('ALTER ROLE')));
    expect((await readOnlyState(connection(appRole))).transactionReadOnly).toBe(false);
  });

  it('a role\'s per-database "off" wins over its "on" for every database: not named', async () => {
    readOnlyAppRole();
    psql(cluster, 'postgres', `ALTER ROLE ${appRole} IN DATABASE ${database} SET default_transaction_read_only = off`);

    expect(await dbReadWrite({ connection: connection(), confirm: confirmYes })).toMatchObject({ result: 'already-read-write', writeProof: 'ok' });
  });

  it('a read-only role with nothing to write here (a backup reader) is not named', async () => {
    readOnlyAppRole('', 'SELECT');

    expect(await dbReadWrite({ connection: connection(), confirm: confirmYes })).toMatchObject({ result: 'already-read-write', writeProof: 'ok' });
  });

  it('with the database-level setting on and a role read-only too, changes nothing and names both', async () => {
    readOnlyAppRole();
    psql(cluster, 'postgres', `ALTER DATABASE ${database} SET default_transaction_read_only = on`);
    const confirm = jest.fn(confirmYes);

    const outcome = await dbReadWrite({ connection: connection(), confirm });

    expect(outcome.result).toBe('not-a-database-setting');
    expect(outcome.finding).toMatch(new RegExp(`^role "${appRole}" has default_transaction_read_only=on .*; the database-level setting is on too: once they are reset, rerun npx --no atmr-dr db read-write$`));
    expect(confirm).not.toHaveBeenCalled();
    expect(databaseSetting()).toBe('default_transaction_read_only=on');
  });

  it('as a user that does not own the database: refused, names the owner and how to rerun, and changes nothing', async () => {
    psql(cluster, 'postgres', `DROP ROLE IF EXISTS ${role}; CREATE ROLE ${role} LOGIN`);
    psql(cluster, 'postgres', `ALTER DATABASE ${database} SET default_transaction_read_only = on`);

    const outcome = await dbReadWrite({ connection: connection(role), confirm: confirmYes });

    expect(outcome).toMatchObject({ result: 'refused' });
    expect(outcome.finding).toBe(refusedLine());
    expect(databaseSetting()).toBe('default_transaction_read_only=on');
  });

  it('an ALTER DATABASE held up by another session\'s lock gives up within seconds, names that session and how to end it, and leaves nothing queued', async () => {
    psql(cluster, 'postgres', `ALTER DATABASE ${database} SET default_transaction_read_only = on`);
    // Another session's uncommitted change of the same setting (an ALTER DATABASE left in an open transaction).
    const holder = testClient({ host: cluster.host, port: cluster.port, user: cluster.user, database: 'postgres', application_name: 'migration' });
    await holder.connect();
    await holder.query(`BEGIN; ALTER DATABASE ${database} SET default_transaction_read_only = on`);
    const { pid, query_start: since } = (await holder.query<{ pid: number; query_start: Date }>('SELECT pid, query_start FROM pg_stat_activity WHERE pid = pg_backend_pid()')).rows[0];

    let outcome: unknown;
    try {
      outcome = await Promise.race([
        dbReadWrite({ connection: connection(), confirm: confirmYes }).catch((error: unknown) => error),
        new Promise((resolve) => setTimeout(() => resolve('still waiting after 15 s'), 15_000)),
      ]);
    } finally {
      // The holder lets go: an ALTER still queued would take effect now.
      await holder.query('ROLLBACK');
      await holder.end();
    }

    expect(outcome).toMatchObject({
      exitCode: 1,
      message: `ALTER DATABASE "${database}" waited 5 s for a lock another session holds and gave up: nothing changed; it is held by pid ${pid} (user "${cluster.user}", application "migration", query started ${since.toISOString()}): end it with SELECT pg_terminate_backend(${pid}) (or let it finish), then rerun npx --no atmr-dr db read-write`,
    });
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(databaseSetting()).toBe('default_transaction_read_only=on');
  }, 30_000);

  it('says a full disk forces read-only too when free storage is below 10 %', async () => {
    psql(cluster, 'postgres', `DROP ROLE IF EXISTS ${role}; CREATE ROLE ${role} LOGIN; ALTER ROLE ${role} SET default_transaction_read_only = on`);

    const outcome = await dbReadWrite({
      connection: connection(role),
      confirm: confirmYes,
      storage: async () => ({ freeBytes: 5 * 1024 ** 3, allocatedBytes: 100 * 1024 ** 3 }),
    });

    expect(outcome.finding).toMatch(/free storage is below 10 %/);
  });

  it('proves a write and changes nothing when the database already accepts writes', async () => {
    const confirm = jest.fn(confirmYes);

    const outcome = await dbReadWrite({ connection: connection(), confirm });

    expect(outcome).toMatchObject({ result: 'already-read-write', writeProof: 'ok' });
    expect(confirm).not.toHaveBeenCalled();
    expect(databaseSetting()).toBe('none');
  });

  it('reads the state in a new session, where the database-level setting shows', async () => {
    psql(cluster, 'postgres', `ALTER DATABASE ${database} SET default_transaction_read_only = on`);

    expect(await readOnlyState(connection())).toEqual({
      database,
      role: connection().user,
      transactionReadOnly: true,
      databaseSetting: 'on',
      defaultSource: 'database',
      defaultValue: 'on',
      inRecovery: false,
    });
  });
});

describe('dbReadWrite with a setting for all roles (ALTER ROLE ALL ... SET)', () => {
  // On a cluster of its own: ALTER ROLE ALL reaches every database, and on the suite's shared
  // cluster it would make the sessions of the other test files read-only.
  let own: PostgresCluster;
  const ownConnection = () => ({ host: own.host, port: own.port, user: own.user, database: 'postgres', sslMode: 'disable' });
  const reset = 'BEGIN READ WRITE; ALTER ROLE ALL RESET default_transaction_read_only; COMMIT;';
  const allRolesLine = `default_transaction_read_only=on for all roles (ALTER ROLE ALL ...): the sessions of every role without its own setting cannot write: as a superuser, run ${reset}`;
  beforeAll(async () => {
    own = await startPostgres();
  });
  afterEach(() => {
    psql(own, 'postgres', `BEGIN READ WRITE; ALTER ROLE ALL RESET default_transaction_read_only; ALTER ROLE ${own.user} RESET default_transaction_read_only; ALTER DATABASE postgres RESET default_transaction_read_only; COMMIT;`);
  });
  afterAll(() => {
    stopPostgres(own);
  });

  it('connected as a role it makes read-only: names it and the statement that lifts it, as it must be run, and changes nothing', async () => {
    psql(own, 'postgres', 'ALTER ROLE ALL SET default_transaction_read_only = on');
    const confirm = jest.fn(confirmYes);

    const outcome = await dbReadWrite({ connection: ownConnection(), confirm });

    expect(outcome).toMatchObject({ result: 'not-a-database-setting', before: { transactionReadOnly: true, defaultSource: 'global' } });
    expect(outcome.finding).toBe(`new sessions are read-only because of ${allRolesLine}`);
    expect(confirm).not.toHaveBeenCalled();
    expect(() => psql(own, 'postgres', 'ALTER ROLE ALL RESET default_transaction_read_only')).toThrow(/read-only transaction/);
    psql(own, 'postgres', reset);
    expect((await readOnlyState(ownConnection())).transactionReadOnly).toBe(false);
  });

  it('connected as a role with its own "off": still names it (the application\'s role has none of its own)', async () => {
    psql(own, 'postgres', `ALTER ROLE ${own.user} SET default_transaction_read_only = off; ALTER ROLE ALL SET default_transaction_read_only = on`);

    const outcome = await dbReadWrite({ connection: ownConnection(), confirm: confirmYes });

    expect(outcome).toMatchObject({ result: 'not-a-database-setting', finding: allRolesLine });
  });

  it('under a database-level setting, which wins over it: not named, the database-level one is fixed', async () => {
    psql(own, 'postgres', 'ALTER ROLE ALL SET default_transaction_read_only = on; ALTER DATABASE postgres SET default_transaction_read_only = on');

    expect(await dbReadWrite({ connection: ownConnection(), confirm: confirmYes })).toMatchObject({ result: 'fixed', writeProof: 'ok' });
  });
});

describe('atmr-dr db read-write (CLI)', () => {
  const pgEnv = () => ({ PGHOST: cluster.host, PGPORT: String(cluster.port), PGUSER: cluster.user, PGDATABASE: database, ATMR_RDS_INSTANCE: 'atmr-test' });

  it('with --yes: shows the state and RDS free storage, fixes the setting, proves a write', () => {
    psql(cluster, 'postgres', `ALTER DATABASE ${database} SET default_transaction_read_only = on`);

    const run = atmrDr(['db', 'read-write', '--yes'], { allocatedGiB: 100, freeBytes: 8 * 1024 ** 3 }, pgEnv());

    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    expect(run.stdout).toContain(`database-level setting (ALTER DATABASE ${database} SET): on`);
    expect(run.stdout).toContain('RDS free storage: 8.0 GiB (8.0 % of 100.0 GiB)');
    expect(run.stdout).toMatch(/^fixed: the database-level setting was the cause/m);
    // The config's cluster, API and Celery services (cdk.json's backout block), one command each.
    expect(run.stdout).toContain(
      'recycle the API and Celery connection pools (aws ecs update-service --cluster atmr-prod --service atmr-api --force-new-deployment; aws ecs update-service --cluster atmr-prod --service atmr-celery-worker --force-new-deployment), then test a POST/PUT on the API',
    );
    expect(run.stdout).not.toContain('<cluster>');
    expect(run.calls).toContainEqual({ command: 'DescribeDBInstancesCommand', input: { DBInstanceIdentifier: 'atmr-test' } });
    expect(databaseSetting()).toBe('default_transaction_read_only=off');
  });

  it('connected as another role, a role read-only by its own setting: its line and RESET, exit 4, nothing changed', () => {
    readOnlyAppRole();

    const run = atmrDr(['db', 'read-write', '--yes'], {}, pgEnv());

    // One line, on stderr, as every outcome that ends non-zero (not also on stdout).
    expect(run.stderr).toBe(
      `atmr-dr: db read-write: role "${appRole}" has default_transaction_read_only=on (ALTER ROLE ... SET): its sessions cannot write: ALTER ROLE "${appRole}" RESET default_transaction_read_only\n`,
    );
    expect(run.stdout).not.toMatch(/already-read-write|its sessions cannot write/);
    expect(run.status).toBe(4);
  });

  it.each([
    ['text', []],
    ['--json', ['--json']],
  ])('an ALTER DATABASE refused to a user that does not own the database (%s): one line on stderr, exit 2, nothing changed', (_mode, flags) => {
    psql(cluster, 'postgres', `DROP ROLE IF EXISTS ${role}; CREATE ROLE ${role} LOGIN`);
    psql(cluster, 'postgres', `ALTER DATABASE ${database} SET default_transaction_read_only = on`);

    const run = atmrDr(['db', 'read-write', '--yes', ...flags], {}, { ...pgEnv(), PGUSER: role });

    expect(run.stderr).toBe(`atmr-dr: db read-write: ${refusedLine()}\n`);
    expect(run.status).toBe(2);
    // With --json, the outcome as every other result of the command gives it; in text, the one line above only.
    if (flags.length) expect(JSON.parse(run.stdout)).toMatchObject({ result: 'refused', finding: refusedLine(), before: { databaseSetting: 'on' } });
    else expect(run.stdout).not.toMatch(/refused|must be owner/);
    expect(databaseSetting()).toBe('default_transaction_read_only=on');
  });

  it('without AWS credentials, the free storage is unknown with the CLI\'s line (log in), not the SDK\'s words', async () => {
    // The real CLI (no SDK mock): no credentials anywhere the SDK looks.
    const noCredentials = { AWS_REGION: 'eu-west-3', AWS_CONFIG_FILE: '/nonexistent', AWS_SHARED_CREDENTIALS_FILE: '/nonexistent', AWS_EC2_METADATA_DISABLED: 'true' };
    const run = await realAtmrDr(['db', 'read-write', '--yes'], { ...pgEnv(), ...noCredentials });

    expect(run.stdout).toContain(
      '  RDS free storage: unknown (no AWS credentials found; log in (aws sso login, AWS_PROFILE) or export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)\n',
    );
    expect(run.status).toBe(0);
  });

  it('a database the server does not have is a bad setting: one line naming the settings to check, exit 2', () => {
    const run = atmrDr(['db', 'read-write', '--yes'], {}, { ...pgEnv(), PGDATABASE: `${database}_nope` });

    expect(run.stderr).toBe(
      `atmr-dr: cannot connect to ${cluster.user}@${cluster.host}:${cluster.port}/${database}_nope: database "${database}_nope" does not exist; check PGHOST/PGPORT/PGUSER/PGPASSWORD/PGDATABASE (or --database-secret)\n`,
    );
    expect(run.status).toBe(2);
    expect(run.stdout).toBe('');
  });

  // A failure that is not read-only is never reported as read-only: only the read-only check (a new
  // session's transaction_read_only, pg_is_in_recovery()) says so. A server that refuses the
  // connection is a failure to retry (exit 1), a refused role a setting to fix (exit 2); no state line.
  it.each([
    ['a server that refuses the connection', () => ({ PGPORT: String(closedPort) }), 1, /: connect ECONNREFUSED .*; check PGHOST/],
    ['a role the server refuses (auth)', () => ({ PGUSER: `${role}_nope` }), 2, new RegExp(`: role "${role}_nope" does not exist; check PGHOST`)],
  ])('%s: one line "cannot connect", never read-only', (_what, env, status, reason) => {
    const run = atmrDr(['db', 'read-write', '--yes'], {}, { ...pgEnv(), ...env() });

    expect(run.stderr).toMatch(/^atmr-dr: cannot connect to \S+: .*\n$/);
    expect(run.stderr).toMatch(reason);
    expect(run.stderr).not.toMatch(/read-only|read_only/i);
    expect(run.status).toBe(status);
    expect(run.stdout).toBe('');
  });

  it('without --yes and without a terminal: refuses in one line and changes nothing', () => {
    psql(cluster, 'postgres', `ALTER DATABASE ${database} SET default_transaction_read_only = on`);

    const run = atmrDr(['db', 'read-write'], {}, pgEnv());

    expect(run.status).toBe(2);
    expect(run.stderr.trim()).toMatch(/^atmr-dr: ALTER DATABASE .*\? refused: standard input is not a terminal, so nobody can answer; pass --yes to confirm \(nothing changed\)$/);
    expect(databaseSetting()).toBe('default_transaction_read_only=on');
  });

  it('at a terminal, an answer other than yes changes nothing and exits 1, as every "not confirmed" (3 is a conflict)', async () => {
    psql(cluster, 'postgres', `ALTER DATABASE ${database} SET default_transaction_read_only = on`);

    const run = await atmrDrAtTerminal(['db', 'read-write'], '[y/N] ', 'n', pgEnv());

    expect(run.output).toContain('atmr-dr: db read-write: not confirmed, nothing changed');
    // One line says so, as at every other confirmation (not a second "declined: nothing changed" on stdout).
    expect(run.output.match(/nothing changed/g)).toHaveLength(1);
    expect(run.status).toBe(1);
    expect(databaseSetting()).toBe('default_transaction_read_only=on');
  });
});
