import { OperatorError } from '../../lambdas/shared/errors';
import { PgConnection, connectTo } from '../../lambdas/shared/pg-connection';
import { testCluster } from '../support/cluster';
import { freePort } from '../support/postgres';

// connectTo is the one way backup, restore and the restore test open a node-postgres connection.
describe('connectTo', () => {
  const cluster = testCluster();
  const connection: PgConnection = { host: cluster.host, port: cluster.port, user: cluster.user, database: 'postgres' };

  it("connects to the connection's own database by default, or to the one named", async () => {
    const own = await connectTo(connection);
    const named = await connectTo(connection, 'template1');
    try {
      expect((await own.query<{ db: string }>('SELECT current_database() AS db')).rows[0].db).toBe('postgres');
      expect((await named.query<{ db: string }>('SELECT current_database() AS db')).rows[0].db).toBe('template1');
    } finally {
      await own.end();
      await named.end();
    }
  });

  it('fails in one line naming the connection (with the database asked for) and the settings to check', async () => {
    const closed = await freePort();

    const attempt = connectTo({ ...connection, port: closed }, 'atmr_restored');

    await expect(attempt).rejects.toThrow(OperatorError);
    await expect(attempt).rejects.toThrow(
      new RegExp(`^cannot connect to ${cluster.user}@${cluster.host}:${closed}/atmr_restored: .*ECONNREFUSED.*; check PGHOST/PGPORT/PGUSER/PGPASSWORD/PGDATABASE \\(or --database-secret\\)$`),
    );
  });
});
