import { Client } from 'pg';
import { isRefusedStatement } from '../../lambdas/shared/pg-errors';
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
    } finally {
      await client.end();
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
    } finally {
      await victim.end().catch(() => undefined);
      await admin.end();
    }
  });
});
