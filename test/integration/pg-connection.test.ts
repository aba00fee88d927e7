import * as net from 'node:net';
import { OperatorError } from '../../lambdas/shared/errors';
import { PgConnection, connectTo } from '../../lambdas/shared/pg-connection';
import { testCluster, uniqueDatabaseName } from '../support/cluster';
import { freePort, psql } from '../support/postgres';

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

  it('for a database closed to connections, gives the ALTER DATABASE that reopens it instead of the settings to check', async () => {
    // Arrange: what a restore killed during a --terminate-connections swap leaves
    const closed = uniqueDatabaseName('conn_closed');
    psql(cluster, 'postgres', `CREATE DATABASE ${closed}; ALTER DATABASE ${closed} ALLOW_CONNECTIONS false;`);

    // Act
    const error = await connectTo(connection, closed).then(
      () => undefined,
      (e: unknown) => e as Error,
    );

    // Assert
    expect(error?.message).toBe(
      `cannot connect to ${cluster.user}@${cluster.host}:${cluster.port}/${closed}: database "${closed}" is not currently accepting connections; the database is closed to connections (ALLOW_CONNECTIONS false): reopen it from another database, e.g. psql -d postgres -c 'ALTER DATABASE "${closed}" ALLOW_CONNECTIONS true'`,
    );
    // The statement it gives reopens it.
    psql(cluster, 'postgres', `ALTER DATABASE "${closed}" ALLOW_CONNECTIONS true`);
    await (await connectTo(connection, closed)).end();
  });

  describe('a server that answers it cannot take connections now (SQLSTATE 57P03): the settings are right, the advice is to wait', () => {
    /** A server that answers every startup packet with this FATAL error, as PostgreSQL does while it starts, stops or recovers. */
    async function refusingServer(message: string): Promise<{ port: number; close: () => Promise<void> }> {
      const field = (type: string, value: string) => Buffer.concat([Buffer.from(type), Buffer.from(`${value}\0`)]);
      const body = Buffer.concat([field('S', 'FATAL'), field('V', 'FATAL'), field('C', '57P03'), field('M', message), Buffer.from([0])]);
      const length = Buffer.alloc(4);
      length.writeInt32BE(body.length + 4);
      const answer = Buffer.concat([Buffer.from('E'), length, body]);
      const server = net.createServer((socket) => {
        socket.on('error', () => undefined);
        socket.once('data', () => socket.end(answer));
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      return { port: (server.address() as net.AddressInfo).port, close: () => new Promise((resolve) => server.close(() => resolve())) };
    }

    it.each([
      ['the database system is starting up', 'the server is starting up: wait a minute and retry'],
      ['the database system is shutting down', 'the server is shutting down (a stop, a restart or a failover): wait until it is back (on RDS, its status and events say when), then retry'],
      ['the database system is in recovery mode', 'the server is recovering after a crash (replaying its log): wait and retry, it can take minutes'],
    ])('"%s": %s', async (message, advice) => {
      const server = await refusingServer(message);
      try {
        const error = await connectTo({ ...connection, host: '127.0.0.1', port: server.port }).then(
          () => undefined,
          (e: unknown) => e as Error,
        );

        expect(error).toBeInstanceOf(OperatorError);
        expect(error?.message).toBe(`cannot connect to ${cluster.user}@127.0.0.1:${server.port}/postgres: ${message}; ${advice}`);
      } finally {
        await server.close();
      }
    });
  });
});
