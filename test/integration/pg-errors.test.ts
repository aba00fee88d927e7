import { Client, type QueryConfig } from 'pg';
import { isQueryReadTimeout, isRefusedStatement, sqlState } from '../../lambdas/shared/pg-errors';
import { testCluster } from '../support/cluster';

/** The server's own answer against a connection that went away, told from real node-postgres errors. */
const cluster = testCluster();

function connect(): Promise<Client> {
  const client = new Client({ host: cluster.host, port: cluster.port, user: cluster.user, database: 'postgres' });
  client.on('error', () => undefined);
  return client.connect().then(() => client);
}

describe('isRefusedStatement', () => {
  it("is true for the server's refusal of a statement (a database that does not exist, 3D000; a syntax error, 42601)", async () => {
    const client = await connect();
    try {
      const missing = await client.query('ALTER DATABASE "no_such_database" RENAME TO "still_none"').catch((e: unknown) => e);
      const syntax = await client.query('SELEC 1').catch((e: unknown) => e);
      expect([isRefusedStatement(missing), isRefusedStatement(syntax)]).toEqual([true, true]);
      expect([sqlState(missing), sqlState(syntax)]).toEqual(['3D000', '42601']);
    } finally {
      await client.end();
    }
  });

  it('is true for a statement the server cancelled (57014: a statement_timeout, or pg_cancel_backend): it answered that it rolled it back, and the session goes on', async () => {
    const client = await connect();
    const admin = await connect();
    try {
      const timedOut = await client.query("SET statement_timeout = '100ms'; SELECT pg_sleep(30)").catch((e: unknown) => e);
      await client.query('SET statement_timeout = 0');
      const pid = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0].pid;
      const sleeping = client.query('SELECT pg_sleep(30)').catch((e: unknown) => e);
      while ((await admin.query("SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event = 'PgSleep'", [pid])).rowCount === 0) await new Promise((r) => setTimeout(r, 20));
      await admin.query('SELECT pg_cancel_backend($1)', [pid]);
      const cancelled = await sleeping;

      expect([(timedOut as { code?: string }).code, (cancelled as { code?: string }).code]).toEqual(['57014', '57014']);
      expect([isRefusedStatement(timedOut), isRefusedStatement(cancelled)]).toEqual([true, true]);
      expect((await client.query<{ one: number }>('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
    } finally {
      await client.end();
      await admin.end();
    }
  });

  it('is false for a session the server ended (57P01) and for a connection that is gone (no SQLSTATE)', async () => {
    const victim = await connect();
    const admin = await connect();
    try {
      const pid = (await victim.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0].pid;
      const sleeping = victim.query('SELECT pg_sleep(30)').catch((e: unknown) => e);
      await admin.query('SELECT pg_terminate_backend($1)', [pid]);
      const terminated = await sleeping;
      const gone = await victim.query('SELECT 1').catch((e: unknown) => e);
      expect((terminated as { code?: string }).code).toBe('57P01');
      expect([isRefusedStatement(terminated), isRefusedStatement(gone), isRefusedStatement(undefined)]).toEqual([false, false, false]);
      expect([sqlState(terminated), sqlState(gone), sqlState(undefined)]).toEqual(['57P01', undefined, undefined]);
      // A socket error carries a code too, but the server sent none.
      expect(sqlState(Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }))).toBeUndefined();
    } finally {
      await victim.end().catch(() => undefined);
      await admin.end();
    }
  });
});

describe('isQueryReadTimeout', () => {
  it("is true for node-postgres giving up on an answer (query_timeout shorter than the statement), false for the server's own cancel and for a connection that is gone", async () => {
    const client = await connect();
    const admin = await connect();
    try {
      const pid = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0].pid;
      // query_timeout is node-postgres' own per-query setting, which its types do not declare.
      const config: QueryConfig & { query_timeout: number } = { text: 'SELECT pg_sleep(30)', query_timeout: 200 };
      const unanswered = await client.query(config).catch((e: unknown) => e);
      const timedOut = await admin.query("SET statement_timeout = '100ms'; SELECT pg_sleep(30)").catch((e: unknown) => e);
      // The server still runs the abandoned pg_sleep: end that session.
      await admin.query('SET statement_timeout = 0');
      await admin.query('SELECT pg_terminate_backend($1)', [pid]);
      const gone = await client.query('SELECT 1').catch((e: unknown) => e);

      expect(gone).toBeInstanceOf(Error);
      expect(isQueryReadTimeout(unanswered)).toBe(true);
      expect(sqlState(timedOut)).toBe('57014');
      expect([isQueryReadTimeout(timedOut), isQueryReadTimeout(gone), isQueryReadTimeout(undefined)]).toEqual([false, false, false]);
    } finally {
      await client.end().catch(() => undefined);
      await admin.end();
    }
  });
});
