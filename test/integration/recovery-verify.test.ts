import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import type { ClientConfig } from 'pg';
import { formatVerification, verificationStatus, verifyRecovery } from '../../lambdas/recovery/verify';
import { writeCheck } from '../../lambdas/recovery/cutover';
import { holdTableLock, testCluster, uniqueDatabaseName, testClient } from '../support/cluster';
import { psql } from '../support/postgres';

/**
 * Two real databases on the test cluster: "production" and the "recovered copy" (as of an earlier
 * time: rows missing, one table absent, an older Alembic revision).
 */
describe('verification of a recovered copy against production (real PostgreSQL)', () => {
  const cluster = testCluster();
  const production = uniqueDatabaseName('rec_prod');
  const recovered = uniqueDatabaseName('rec_copy');
  const connection = (database: string): ClientConfig => ({ host: cluster.host, port: cluster.port, user: cluster.user, database });
  const checks = {
    criticalTables: ['company', 'booking'],
    criticalQueries: ['SELECT COUNT(*) FROM company', "SELECT max(id) FROM booking WHERE status = 'confirmed'"],
    alembicVersionTable: 'alembic_version',
  };

  beforeAll(() => {
    const schema = `CREATE TABLE company (id int PRIMARY KEY);
      CREATE TABLE booking (id int PRIMARY KEY, status text);
      CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY);`;
    psql(cluster, 'postgres', `CREATE DATABASE ${production}`);
    psql(cluster, 'postgres', `CREATE DATABASE ${recovered}`);
    psql(cluster, production, `${schema} INSERT INTO company SELECT generate_series(1, 5);
      INSERT INTO booking SELECT g, 'confirmed' FROM generate_series(1, 120) g; INSERT INTO alembic_version VALUES ('4f2a9c1d');`);
    psql(cluster, recovered, `${schema} INSERT INTO company SELECT generate_series(1, 5);
      INSERT INTO booking SELECT g, 'confirmed' FROM generate_series(1, 100) g; INSERT INTO alembic_version VALUES ('3e1b8a0c');`);
  });

  afterAll(() => {
    psql(cluster, 'postgres', `DROP DATABASE IF EXISTS ${production} WITH (FORCE); DROP DATABASE IF EXISTS ${recovered} WITH (FORCE);`);
  });

  it('shows counts, queries and Alembic revisions side by side, with the rows missing on the copy', async () => {
    const report = await verifyRecovery({ recovered: connection(recovered), production: connection(production) }, checks);

    expect(report.ok).toBe(true);
    expect(report.rows).toEqual([
      { check: 'rows in company', production: '5', recovered: '5', outcome: 'same' },
      { check: 'rows in booking', production: '120', recovered: '100 (-20)', outcome: 'differs' },
      { check: 'SELECT COUNT(*) FROM company', production: '5', recovered: '5', outcome: 'same' },
      { check: "SELECT max(id) FROM booking WHERE status = 'confirmed'", production: '120', recovered: '100', outcome: 'differs' },
      { check: 'Alembic revision', production: '4f2a9c1d', recovered: '3e1b8a0c', outcome: 'differs' },
    ]);
    expect(formatVerification(report)).toMatch(/rows in booking\s+120\s+100 \(-20\)\s+differs/);
  });

  it('fails when a critical table is absent from the copy, naming it', async () => {
    psql(cluster, recovered, 'ALTER TABLE booking RENAME TO booking_old');
    try {
      const report = await verifyRecovery({ recovered: connection(recovered), production: connection(production) }, checks);

      expect(report.ok).toBe(false);
      expect(report.problems[0]).toMatch(/^table booking cannot be counted on the recovered copy: relation "booking" does not exist/);
      expect(report.rows.find((r) => r.check === 'rows in booking')).toEqual({ check: 'rows in booking', production: '120', recovered: 'missing', outcome: 'missing' });
    } finally {
      psql(cluster, recovered, 'ALTER TABLE booking_old RENAME TO booking');
    }
  });

  it('shows a table the copy cannot count within the statement timeout as slow, not missing: the cutover is not blocked by lazy loading', async () => {
    // A fresh RDS copy reads each block from S3 the first time; here a held lock makes the copy's
    // reads of booking outlast a short statement timeout, as a long first scan would.
    const holder = await holdTableLock(recovered, 'booking');
    try {
      const report = await verifyRecovery({ recovered: connection(recovered), production: connection(production) }, { ...checks, statementTimeoutMs: 300 });

      expect(report.ok).toBe(true);
      expect(report.problems).toEqual([]);
      expect(verificationStatus(report)).toBe('verified');
      const notReadInTime = 'not read within 0.3 s (first reads of a fresh copy come from S3)';
      expect(report.rows.find((r) => r.check === 'rows in booking')).toEqual({ check: 'rows in booking', production: '120', recovered: notReadInTime, outcome: 'slow' });
      expect(report.rows.find((r) => r.check === checks.criticalQueries[1])).toEqual({ check: checks.criticalQueries[1], production: '120', recovered: notReadInTime, outcome: 'slow' });
      expect(report.rows.find((r) => r.check === 'rows in company')).toEqual({ check: 'rows in company', production: '5', recovered: '5', outcome: 'same' });
    } finally {
      await holder.release();
    }
  });

  it('does not verify a copy none of whose data could be read in time (every count and query slow, only the Alembic revision read): unverified, not failed', async () => {
    // Arrange: every critical table locked on the copy, so each count and query outlasts the timeout.
    const holder = await holdTableLock(recovered, 'company, booking');
    try {
      // Act
      const report = await verifyRecovery({ recovered: connection(recovered), production: connection(production) }, { ...checks, statementTimeoutMs: 300 });

      // Assert
      expect(report.rows.filter((r) => r.outcome === 'slow').map((r) => r.check)).toEqual(['rows in company', 'rows in booking', ...checks.criticalQueries]);
      expect(report.rows.find((r) => r.check === 'Alembic revision')).toMatchObject({ recovered: '3e1b8a0c' });
      expect(report).toMatchObject({ ok: false, unread: true, unreadBy: { statementTimeoutMs: 300 }, problems: [] });
      expect(verificationStatus(report)).toBe('unverified');
      expect(formatVerification(report).split('\n').at(-1)).toBe(
        'verification: NOT VERIFIED: no count or critical query of the copy finished within the 0.3 s statement timeout (a fresh copy reads each block from S3 the first time): nothing about its data was checked',
      );
    } finally {
      await holder.release();
    }
  });

  it('starts no check that could outlast its budget (the Lambda function is stopped at 15 minutes): the checks left are slow, the copy unverified, not a killed run', async () => {
    // Arrange: every critical table locked on the copy, so each count and query takes the whole
    // statement timeout (300 ms); a budget of 1 s leaves room for the first few only.
    const holder = await holdTableLock(recovered, 'company, booking');
    try {
      // Act
      const started = Date.now();
      const report = await verifyRecovery({ recovered: connection(recovered), production: connection(production) }, { ...checks, statementTimeoutMs: 300, budgetMs: 1000 });
      const elapsed = Date.now() - started;

      // Assert: within the budget (every statement started could end before it), the last check
      // not started, each data check slow for one reason or the other, the Alembic revision read first.
      expect(elapsed).toBeLessThan(1000 + 600);
      const timedOut = 'not read within 0.3 s (first reads of a fresh copy come from S3)';
      const notStarted = "not read: the verification's 1 s were spent on slower checks (first reads of a fresh copy come from S3)";
      const slow = report.rows.filter((r) => r.outcome === 'slow');
      expect(slow.map((r) => r.check)).toEqual(['rows in company', 'rows in booking', ...checks.criticalQueries]);
      expect(slow.every((r) => r.recovered === timedOut || r.recovered === notStarted)).toBe(true);
      expect(slow.at(-1)?.recovered).toBe(notStarted);
      expect(report.rows.find((r) => r.check === 'Alembic revision')).toMatchObject({ recovered: '3e1b8a0c', production: '4f2a9c1d' });
      expect(verificationStatus(report)).toBe('unverified');
      // Both causes, named: the checks started ran into the statement timeout, the budget left none for the rest.
      expect(report.unreadBy).toEqual({ statementTimeoutMs: 300, budgetMs: 1000 });
      expect(formatVerification(report).split('\n').at(-1)).toBe(
        "verification: NOT VERIFIED: no count or critical query of the copy was read: those started outlasted the 0.3 s statement timeout, and the verification's 1 s budget left no time to start the others (a fresh copy reads each block from S3 the first time): nothing about its data was checked",
      );
    } finally {
      await holder.release();
    }
  });

  it('still verifies the copy when production is down, showing production as unavailable', async () => {
    const report = await verifyRecovery({ recovered: connection(recovered), production: { ...connection(production), port: 1 } }, checks);

    expect(report.ok).toBe(true);
    expect(report.rows[0]).toEqual({ check: 'rows in company', production: 'unavailable', recovered: '5', outcome: 'differs' });
  });

  describe('a session the server ends mid-read (production restarting or failing over, an administrator ending it)', () => {
    const repo = path.resolve(__dirname, '..', '..');
    let dir: string;
    beforeAll(() => (dir = mkdtempSync(path.join(tmpdir(), 'atmr-verify-'))));
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    /**
     * Runs `body` (TypeScript, `verify` and `cutover` imported) in a process of its own, as the
     * Lambda function runs it: an unhandled 'error' event kills that process, which the test reads
     * as its exit code, instead of killing the test run.
     */
    function runInOwnProcess(body: string): Promise<{ status: number | null; stdout: string; stderr: string }> {
      const file = path.join(dir, `run-${Date.now()}.ts`);
      writeFileSync(
        file,
        `import { verifyRecovery } from ${JSON.stringify(path.join(repo, 'lambdas/recovery/verify'))};
import { writeCheck } from ${JSON.stringify(path.join(repo, 'lambdas/recovery/cutover'))};
void verifyRecovery; void writeCheck;
(async () => { ${body} })().catch((error) => { console.log('rejected: ' + String(error?.message ?? error)); });
setTimeout(() => undefined, 300);
`,
      );
      const child = spawn(path.join(repo, 'node_modules', '.bin', 'tsx'), [file], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      return new Promise((resolve) => child.on('close', (status) => resolve({ status, stdout, stderr })));
    }

    /** Ends, as an administrator or a restarting server would, the session named `application` once it waits for a lock. */
    async function endWhenWaiting(database: string, application: string): Promise<void> {
      for (let i = 0; i < 300; i += 1) {
        const ended = psql(
          cluster,
          'postgres',
          `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '${database}' AND application_name = '${application}' AND wait_event_type = 'Lock'`,
        );
        if (ended !== '0') return;
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error(`no session ${application} waited for a lock on ${database} within 30 s`);
    }

    it("verification: production's session ended while it reads shows production unavailable and the copy verified; the process goes on (it crashed on the driver's unhandled 'error' event)", async () => {
      // Arrange: production's booking held, so its read is in progress when its session is ended.
      const holder = await holdTableLock(production, 'booking');
      try {
        const sides = { recovered: connection(recovered), production: { ...connection(production), application_name: 'verify-ended' } };
        const running = runInOwnProcess(
          `const report = await verifyRecovery(${JSON.stringify(sides)}, ${JSON.stringify({ ...checks, statementTimeoutMs: 30_000 })});
           console.log(JSON.stringify(report));`,
        );

        // Act
        await endWhenWaiting(production, 'verify-ended');
        const { status, stdout, stderr } = await running;

        // Assert
        expect(stderr).not.toMatch(/Unhandled 'error' event/);
        expect(status).toBe(0);
        const report = JSON.parse(stdout) as { ok: boolean; rows: { check: string; production: string; recovered: string }[] };
        expect(report.ok).toBe(true);
        expect(report.rows.find((r) => r.check === 'rows in booking')).toMatchObject({ recovered: '100', production: expect.stringMatching(/^unavailable \(terminating connection due to administrator command/) });
        expect(report.rows.find((r) => r.check === 'Alembic revision')).toMatchObject({ recovered: '3e1b8a0c' });
      } finally {
        await holder.release();
      }
    });

    it('cutover write check: its session ended during the write fails the check in one line; the process goes on', async () => {
      // Arrange: the check's table is temporary, its session's own, so no other session's table
      // can make it wait; an event trigger on CREATE TABLE makes it wait for an advisory lock
      // another session holds, so its write is in progress when its session is ended.
      const holder = testClient(connection(recovered));
      await holder.connect();
      psql(
        cluster,
        recovered,
        `CREATE FUNCTION wait_for_holder() RETURNS event_trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_advisory_xact_lock(4242); END $$;
         CREATE EVENT TRIGGER write_waits ON ddl_command_start WHEN TAG IN ('CREATE TABLE') EXECUTE FUNCTION wait_for_holder();`,
      );
      try {
        await holder.query('SELECT pg_advisory_lock(4242)');
        const running = runInOwnProcess(`await writeCheck(${JSON.stringify({ ...connection(recovered), application_name: 'write-ended' })}); console.log('passed');`);

        // Act
        await endWhenWaiting(recovered, 'write-ended');
        const { status, stdout, stderr } = await running;

        // Assert
        expect(stderr).not.toMatch(/Unhandled 'error' event/);
        expect(status).toBe(0);
        expect(stdout.trim()).toBe('rejected: the recovered database refused a write: terminating connection due to administrator command');
      } finally {
        await holder.end();
        psql(cluster, recovered, 'DROP EVENT TRIGGER write_waits; DROP FUNCTION wait_for_holder()');
      }
    });
  });

  it("a copy that cannot be reached stops production's read at once: the error is thrown with no production session left open", async () => {
    // Arrange: production's booking held, so its read would wait out the statement timeout (30 s).
    const holder = await holdTableLock(production, 'booking');
    try {
      const sides = { recovered: { ...connection(recovered), port: 1 }, production: { ...connection(production), application_name: 'verify-stopped' } };

      // Act
      const started = Date.now();
      const verifying = verifyRecovery(sides, { ...checks, statementTimeoutMs: 30_000 });

      // Assert
      await expect(verifying).rejects.toThrow(/ECONNREFUSED/);
      expect(Date.now() - started).toBeLessThan(5_000);
      // A read left running would be waiting on the lock by now.
      await new Promise((r) => setTimeout(r, 500));
      expect(psql(cluster, 'postgres', "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'verify-stopped'")).toBe('0');
    } finally {
      await holder.release();
    }
  });

  it('never changes production: every read runs in a read-only transaction', async () => {
    const before = psql(cluster, production, 'SELECT count(*) FROM booking');
    const report = await verifyRecovery(
      { recovered: connection(recovered), production: connection(production) },
      { ...checks, criticalQueries: ['DELETE FROM booking RETURNING id'] },
    );

    expect(psql(cluster, production, 'SELECT count(*) FROM booking')).toBe(before);
    expect(report.ok).toBe(false);
    expect(report.problems.join()).toMatch(/cannot execute DELETE in a read-only transaction/);
  });

  it('never changes production, even when a critical query ends the read-only transaction itself (several statements)', async () => {
    const before = psql(cluster, production, 'SELECT count(*) FROM booking');
    const report = await verifyRecovery(
      { recovered: connection(recovered), production: connection(production) },
      { ...checks, criticalQueries: ['SELECT 1; COMMIT; DELETE FROM booking RETURNING id', 'SELECT COUNT(*) FROM company;'] },
    );

    expect(psql(cluster, production, 'SELECT count(*) FROM booking')).toBe(before);
    expect(report.ok).toBe(false);
    expect(report.problems).toEqual(['critical query fails on the recovered copy: SELECT 1; COMMIT; DELETE FROM booking RETURNING id: cannot insert multiple commands into a prepared statement']);
    // One statement with its trailing semicolon still runs.
    expect(report.rows.find((r) => r.check === 'SELECT COUNT(*) FROM company;')).toMatchObject({ production: '5', recovered: '5', outcome: 'same' });
  });

  it('the cutover write check passes on a writable primary and leaves nothing behind', async () => {
    await writeCheck(connection(recovered));
    expect(psql(cluster, recovered, "SELECT count(*) FROM pg_class WHERE relname = 'atmr_dr_write_check'")).toBe('0');
  });

  describe('connected as a role that does not own the database (an RDS master user; the database owned by the application\'s role)', () => {
    // PostgreSQL 15+: `public` belongs to pg_database_owner and grants CREATE to no one else, while
    // PUBLIC keeps TEMP on the database.
    const master = `atmr_master_${process.pid}`;
    const asMaster = (): ClientConfig => ({ ...connection(recovered), user: master });
    beforeAll(() => psql(cluster, 'postgres', `DROP ROLE IF EXISTS ${master}; CREATE ROLE ${master} LOGIN`));
    afterAll(() => psql(cluster, 'postgres', `DROP ROLE IF EXISTS ${master}`));

    it('the cutover write check passes on a writable primary (it was refused: permission denied for schema public) and leaves nothing behind', async () => {
      expect(psql(cluster, recovered, `SELECT has_schema_privilege('${master}', 'public', 'CREATE'), has_database_privilege('${master}', current_database(), 'TEMP'), pg_get_userbyid(datdba) = '${master}' FROM pg_database WHERE datname = current_database()`)).toBe('f|t|f');

      await writeCheck(asMaster());

      expect(psql(cluster, recovered, "SELECT count(*) FROM pg_class WHERE relname = 'atmr_dr_write_check'")).toBe('0');
    });

    it('the cutover write check fails, naming TEMP, when TEMP was revoked from PUBLIC (docs: grant TEMP to the secret\'s role)', async () => {
      psql(cluster, 'postgres', `REVOKE TEMP ON DATABASE ${recovered} FROM PUBLIC`);
      try {
        await expect(writeCheck(asMaster())).rejects.toThrow(`the recovered database refused a write: permission denied to create temporary tables in database "${recovered}"`);
      } finally {
        psql(cluster, 'postgres', `GRANT TEMP ON DATABASE ${recovered} TO PUBLIC`);
      }
    });

    it('the cutover write check still fails on a read-only database, with the same line', async () => {
      psql(cluster, 'postgres', `ALTER DATABASE ${recovered} SET default_transaction_read_only = on`);
      try {
        await expect(writeCheck(asMaster())).rejects.toThrow(/^the recovered database refused a write: cannot execute CREATE TABLE in a read-only transaction$/);
      } finally {
        psql(cluster, 'postgres', `ALTER DATABASE ${recovered} SET default_transaction_read_only = off`);
      }
    });
  });

  it('the cutover write check fails on a read-only database', async () => {
    psql(cluster, 'postgres', `ALTER DATABASE ${recovered} SET default_transaction_read_only = on`);
    try {
      await expect(writeCheck(connection(recovered))).rejects.toThrow(/^the recovered database refused a write: cannot execute CREATE TABLE in a read-only transaction$/);
    } finally {
      psql(cluster, 'postgres', `ALTER DATABASE ${recovered} SET default_transaction_read_only = off`);
    }
  });
});
