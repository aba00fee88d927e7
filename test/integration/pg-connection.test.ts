import * as net from 'node:net';
import * as path from 'node:path';
import { OperatorError } from '../../lambdas/shared/errors';
import { operatorErrorOf } from '../support/refusal';
import { readOnlyState } from '../../lambdas/detection/db-read-write';
import { PgConnection, connectTo } from '../../lambdas/shared/pg-connection';
import { testCluster, uniqueDatabaseName } from '../support/cluster';
import { PostgresCluster, freePort, psql, startPostgres, stopPostgres } from '../support/postgres';

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

  it('a server that is down is a failure to retry (exit 1), not a bad setting', async () => {
    const closed = await freePort();

    const error = await operatorErrorOf(connectTo({ ...connection, port: closed }));

    expect(error.message).toMatch(/ECONNREFUSED/);
    expect(error.exitCode).toBe(1);
  });

  it.each([
    ['a database that does not exist (3D000)', { database: 'atmr_no_such_database' }, /database "atmr_no_such_database" does not exist/],
    ['a role that does not exist (28000)', { user: 'atmr_no_such_role' }, /role "atmr_no_such_role" does not exist/],
  ])('%s is a bad setting: exit 2, with the settings to check', async (_case, setting, reason) => {
    const error = await operatorErrorOf(connectTo({ ...connection, ...setting }));

    expect(error.message).toMatch(reason);
    expect(error.message).toMatch(/; check PGHOST\/PGPORT\/PGUSER\/PGPASSWORD\/PGDATABASE \(or --database-secret\)$/);
    expect(error.exitCode).toBe(2);
  });

  it('a role without the CONNECT privilege on the database is a grant to fix: exit 2, with the GRANT that fixes it', async () => {
    // Arrange: a role that may log in, and a database closed to PUBLIC (RDS grants CONNECT to PUBLIC by default)
    const role = uniqueDatabaseName('conn_role');
    const database = uniqueDatabaseName('conn_private');
    psql(cluster, 'postgres', `CREATE ROLE ${role} LOGIN; CREATE DATABASE ${database}; REVOKE CONNECT ON DATABASE ${database} FROM PUBLIC;`);
    try {
      // Act
      const error = await operatorErrorOf(connectTo({ ...connection, user: role, database }));

      // Assert
      expect(error.message).toBe(
        `cannot connect to ${role}@${cluster.host}:${cluster.port}/${database}: permission denied for database "${database}"; the role has no CONNECT privilege on this database: have its owner run GRANT CONNECT ON DATABASE "${database}" TO "${role}", or connect as a role that has it`,
      );
      expect(error.exitCode).toBe(2);
      // The statement it gives is the fix.
      psql(cluster, database, `GRANT CONNECT ON DATABASE "${database}" TO "${role}"`);
      await (await connectTo({ ...connection, user: role, database })).end();
    } finally {
      psql(cluster, 'postgres', `DROP DATABASE IF EXISTS ${database}; DROP ROLE IF EXISTS ${role};`);
    }
  });

  it("sends startup options only when asked for its own timeouts (RDS Proxy and PgBouncer refuse a connection that sends them); then the database's statement_timeout is not the session's", async () => {
    // Arrange: a database whose settings hold a statement_timeout (a copy given production's)
    const database = uniqueDatabaseName('conn_timeouts');
    psql(cluster, 'postgres', `CREATE DATABASE ${database}; ALTER DATABASE ${database} SET statement_timeout = '200ms';`);
    // A server that records the startup packet's parameters, then closes (a stand-in for a pooler's first read).
    const seen: Array<Record<string, string>> = [];
    const recorder = net.createServer((socket) =>
      socket.once('data', (packet: Buffer) => {
        const fields = packet.subarray(8).toString('utf8').split('\0');
        const params: Record<string, string> = {};
        for (let i = 0; i + 1 < fields.length && fields[i] !== ''; i += 2) params[fields[i]] = fields[i + 1];
        seen.push(params);
        socket.destroy();
      }),
    );
    await new Promise<void>((resolve) => recorder.listen(0, '127.0.0.1', resolve));
    const recorderPort = (recorder.address() as net.AddressInfo).port;
    try {
      // Act
      const plain = await connectTo({ ...connection, database });
      const own = await connectTo({ ...connection, database }, database, {}, { ownTimeouts: true });
      for (const ownTimeouts of [false, true]) {
        await connectTo({ ...connection, host: '127.0.0.1', port: recorderPort, sslMode: 'disable' }, database, {}, { ownTimeouts }).catch(() => undefined);
      }

      // Assert
      try {
        expect((await plain.query<{ statement_timeout: string }>('SHOW statement_timeout')).rows[0].statement_timeout).toBe('200ms');
        expect((await own.query<{ statement_timeout: string }>('SHOW statement_timeout')).rows[0].statement_timeout).toBe('0');
      } finally {
        await plain.end();
        await own.end();
      }
      expect(seen).toHaveLength(2);
      expect(seen[0]).not.toHaveProperty('options');
      expect(seen[1].options).toBe('-c statement_timeout=0 -c lock_timeout=0 -c idle_in_transaction_session_timeout=0');
    } finally {
      recorder.close();
      psql(cluster, 'postgres', `DROP DATABASE IF EXISTS ${database}`);
    }
  });

  describe('a server that wants a password (SCRAM)', () => {
    let secured: PostgresCluster;
    const role = 'atmr_dr_pw';

    beforeAll(async () => {
      // A cluster of its own: the shared one trusts everyone. Its superuser stays trusted to set up the role.
      secured = await startPostgres({ hba: `local all all trust\nhost all postgres 127.0.0.1/32 trust\nhost postgres ${role} 127.0.0.1/32 scram-sha-256\n` });
      psql(secured, 'postgres', `CREATE ROLE ${role} LOGIN PASSWORD 'right-password'`);
    }, 120_000);

    afterAll(() => {
      if (secured) stopPostgres(secured);
    });

    const as = (extra: Partial<PgConnection>): PgConnection => ({ host: secured.host, port: secured.port, user: role, database: 'postgres', ...extra });

    it('accepts the right password (the cases below fail for their setting alone)', async () => {
      await (await connectTo(as({ password: 'right-password' }))).end();
    });

    it.each([
      ['PGPASSWORD or ~/.pgpass', undefined],
      ['the password file PGPASSFILE names', '/home/op/.pgpass-prod'],
    ])('a wrong password (28P01) is a bad setting: exit 2, naming the user and where its password comes from (%s), not PGHOST/PGPORT', async (_case, passFile) => {
      const error = await operatorErrorOf(connectTo(as({ password: 'wrong-password', passFile })));

      expect(error.message).toBe(
        `cannot connect to ${role}@${secured.host}:${secured.port}/postgres: password authentication failed for user "${role}"; check the password of user "${role}" (and that the role exists: the server refuses both alike): PGPASSWORD, or its line in ${passFile ?? '~/.pgpass'} (or --database-secret)`,
      );
      expect(error.exitCode).toBe(2);
    });

    it.each([
      ['no password set', {}, /: the server asks for a password and none is set;/],
      ['no pg_hba.conf entry for the database (28000)', { password: 'right-password', database: 'template1' }, /no pg_hba\.conf entry for host "127\.0\.0\.1", user "atmr_dr_pw", database "template1"/],
    ])('%s is a bad setting: exit 2, with the settings to check', async (_case, setting, reason) => {
      const error = await operatorErrorOf(connectTo(as(setting)));

      expect(error.message).toMatch(reason);
      expect(error.message).toMatch(/; check PGHOST\/PGPORT\/PGUSER\/PGPASSWORD\/PGDATABASE \(or --database-secret\)$/);
      expect(error.exitCode).toBe(2);
    });
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
    // The statement it gives reopens it. A closed database is a state to fix, not a bad setting.
    expect((error as OperatorError).exitCode).toBe(1);
    psql(cluster, 'postgres', `ALTER DATABASE "${closed}" ALLOW_CONNECTIONS true`);
    await (await connectTo(connection, closed)).end();
  });

  it('for a closed database whose name needs quoting, the ALTER DATABASE it gives is valid and reopens it', async () => {
    // Arrange: a name with a double quote, which a hand-written "<name>" would not escape.
    const closed = `${uniqueDatabaseName('conn_closed')}_"q"`;
    const quoted = `"${closed.replaceAll('"', '""')}"`;
    psql(cluster, 'postgres', `CREATE DATABASE ${quoted}; ALTER DATABASE ${quoted} ALLOW_CONNECTIONS false;`);

    // Act
    const error = await operatorErrorOf(connectTo(connection, closed));

    // Assert: the statement between psql's quotes runs as given and reopens the database.
    const statement = /psql -d postgres -c '(.*)'$/.exec(error.message)?.[1];
    expect(statement).toBe(`ALTER DATABASE ${quoted} ALLOW_CONNECTIONS true`);
    psql(cluster, 'postgres', statement!);
    await (await connectTo(connection, closed)).end();
    psql(cluster, 'postgres', `DROP DATABASE ${quoted}`);
  });

  describe('TLS as libpq does it: PGSSLMODE unset is prefer (TLS first, plain when TLS fails)', () => {
    let tlsOnly: PostgresCluster;
    /** The shape of RDS with rds.force_ssl=1: a connection without TLS is rejected by name. */
    const rdsLikeRole = 'atmr_dr_rds_like';

    beforeAll(async () => {
      // TCP connections with TLS only: hostssl lines, and for one role the explicit rejection of
      // those without TLS that RDS's pg_hba.conf has ("pg_hba.conf rejects connection").
      tlsOnly = await startPostgres({
        tls: true,
        hba: `local all all trust\nhostnossl all ${rdsLikeRole} 127.0.0.1/32 reject\nhostssl all all 127.0.0.1/32 trust\n`,
      });
      psql(tlsOnly, 'postgres', `CREATE ROLE ${rdsLikeRole} LOGIN`);
    }, 120_000);

    afterAll(() => {
      if (tlsOnly) stopPostgres(tlsOnly);
    });

    const on = (server: Pick<PostgresCluster, 'host' | 'port'>, extra: Partial<PgConnection> = {}): PgConnection => ({
      host: server.host,
      port: server.port,
      user: 'postgres',
      database: 'postgres',
      ...extra,
    });
    /** Whether the session connectTo opens is encrypted, as the server sees it. */
    async function sessionUsesTls(connection: PgConnection): Promise<boolean> {
      const client = await connectTo(connection);
      try {
        return (await client.query<{ ssl: boolean }>('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()')).rows[0].ssl;
      } finally {
        await client.end();
      }
    }

    /** The modes that try TLS first and connect without it to a server that has none. */
    const preferringTls: [string, string | undefined][] = [
      ['unset', undefined],
      ['prefer', 'prefer'],
      ['allow (taken as prefer)', 'allow'],
    ];

    it.each([...preferringTls, ['require', 'require']])('PGSSLMODE %s connects to a server that takes TLS connections only (as psql does), over TLS', async (_case, sslMode) => {
      await expect(sessionUsesTls(on(tlsOnly, { sslMode }))).resolves.toBe(true);
    });

    it('the same without PGSSLMODE for `db read-write` (a session opened from its own config)', async () => {
      await expect(readOnlyState(on(tlsOnly))).resolves.toMatchObject({ database: 'postgres', transactionReadOnly: false });
    });

    it.each([...preferringTls, ['disable', 'disable']])('PGSSLMODE %s still connects to a server without TLS (ssl off), without it', async (_case, sslMode) => {
      await expect(sessionUsesTls(on(cluster, { sslMode }))).resolves.toBe(false);
    });

    it('PGSSLMODE=verify-full with PGSSLROOTCERT the CA of the server checks its certificate and connects over TLS; without it, refuses', async () => {
      const sslRootCert = path.join(path.dirname(tlsOnly.dataDir), 'cert.pem');
      // The certificate names localhost, not 127.0.0.1: verify-full checks the name too.
      const byName = { ...on(tlsOnly, { sslMode: 'verify-full' }), host: 'localhost' };

      await expect(sessionUsesTls({ ...byName, sslRootCert })).resolves.toBe(true);
      await expect(connectTo(byName)).rejects.toThrow(/self-signed certificate/);
    });

    it.each([
      ['no pg_hba.conf line takes it', 'postgres', /: no pg_hba\.conf entry for host "127\.0\.0\.1", user "postgres", database "postgres", no encryption; /],
      ['pg_hba.conf rejects it, as on RDS with rds.force_ssl', rdsLikeRole, /: pg_hba\.conf rejects connection for host "127\.0\.0\.1", user "atmr_dr_rds_like", database "postgres", no encryption; /],
    ])('PGSSLMODE=disable against a server that takes TLS connections only (%s): exit 2, the line names PGSSLMODE and what to set it to', async (_case, user, reason) => {
      const error = await operatorErrorOf(connectTo(on(tlsOnly, { user, sslMode: 'disable' })));

      expect(error.message).toMatch(reason);
      expect(error.message).toMatch(
        /; check PGHOST\/PGPORT\/PGUSER\/PGPASSWORD\/PGDATABASE \(or --database-secret\); PGSSLMODE=disable connects without TLS, and a server that takes TLS connections only \(RDS's rds\.force_ssl\) refuses it: unset PGSSLMODE \(TLS first, as psql\) or set it to require, or verify-full with PGSSLROOTCERT to check the certificate$/,
      );
      expect(error.exitCode).toBe(2);
    });

    it('PGSSLMODE=require against a server without TLS: exit 2, the line names PGSSLMODE', async () => {
      const error = await operatorErrorOf(connectTo(on(cluster, { sslMode: 'require' })));

      expect(error.message).toBe(
        `cannot connect to postgres@${cluster.host}:${cluster.port}/postgres: the server does not take TLS connections (ssl is off on it); PGSSLMODE=require asks for TLS: turn ssl on on the server, or unset PGSSLMODE (TLS where the server has it, as psql) or set it to disable`,
      );
      expect(error.exitCode).toBe(2);
    });

    describe('a server with TLS that takes the role without TLS only (hostnossl in pg_hba.conf)', () => {
      let plainOnly: PostgresCluster;

      beforeAll(async () => {
        plainOnly = await startPostgres({ tls: true, hba: 'local all all trust\nhostnossl all all 127.0.0.1/32 trust\n' });
      }, 120_000);

      afterAll(() => {
        if (plainOnly) stopPostgres(plainOnly);
      });

      it.each(preferringTls)('PGSSLMODE %s connects, without TLS, as psql does (pg_hba.conf refuses the TLS attempt)', async (_case, sslMode) => {
        await expect(sessionUsesTls(on(plainOnly, { sslMode }))).resolves.toBe(false);
      });

      it("when the plain attempt fails too, its error is the one reported (as libpq's), not the TLS refusal", async () => {
        const error = await operatorErrorOf(connectTo(on(plainOnly, { database: 'atmr_dr_no_such_db' })));

        expect(error.message).toMatch(/: database "atmr_dr_no_such_db" does not exist; check PGHOST/);
        expect(error.exitCode).toBe(2);
      });

      it('PGSSLMODE=require is refused, and the line names PGSSLMODE=disable', async () => {
        const error = await operatorErrorOf(connectTo(on(plainOnly, { sslMode: 'require' })));

        expect(error.message).toMatch(/: no pg_hba\.conf entry for host "127\.0\.0\.1", user "postgres", database "postgres", SSL encryption; check PGHOST.*; the connection used TLS, .*: PGSSLMODE=disable connects without$/);
        expect(error.exitCode).toBe(2);
        await expect(sessionUsesTls(on(plainOnly, { sslMode: 'disable' }))).resolves.toBe(false);
      });
    });

    describe('a server (or a proxy before it) that answers the TLS request but does not set TLS up', () => {
      /**
       * In front of the test cluster (ssl off): a TLS request (SSLRequest: length 8, code 80877103)
       * gets `breakTls`, a plain startup packet is passed on to the cluster, so only a plain
       * attempt connects.
       */
      async function brokenTlsProxy(breakTls: (socket: net.Socket) => void): Promise<{ port: number; close: () => Promise<void> }> {
        const isSslRequest = (packet: Buffer) => packet.length === 8 && packet.readInt32BE(0) === 8 && packet.readInt32BE(4) === 80877103;
        const sockets = new Set<net.Socket>();
        const server = net.createServer((socket) => {
          sockets.add(socket);
          socket.on('error', () => undefined);
          socket.once('data', (packet: Buffer) => {
            if (isSslRequest(packet)) return breakTls(socket);
            const upstream = net.connect(cluster.port, cluster.host, () => upstream.write(packet));
            sockets.add(upstream);
            upstream.on('error', () => socket.destroy());
            socket.pipe(upstream).pipe(socket);
          });
        });
        await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
        return {
          port: (server.address() as net.AddressInfo).port,
          close: () => {
            for (const socket of sockets) socket.destroy();
            return new Promise((resolve) => server.close(() => resolve()));
          },
        };
      }

      const brokenTls: [string, (socket: net.Socket) => void][] = [
        // node-postgres: "There was an error establishing an SSL connection".
        ['an answer neither S (TLS) nor N (no TLS)', (socket) => socket.write('H')],
        // OpenSSL: EPROTO, "wrong version number".
        ['S, then something other than TLS', (socket) => {
          socket.write('S');
          socket.once('data', () => socket.write('HTTP/1.1 400 Bad Request\r\n\r\n'));
        }],
        // ECONNRESET, "socket disconnected before secure TLS connection was established".
        ['S, then the connection closed', (socket) => {
          socket.write('S');
          socket.once('data', () => socket.end());
        }],
      ];

      it.each(brokenTls)('%s: PGSSLMODE unset connects again without TLS', async (_case, breakTls) => {
        const proxy = await brokenTlsProxy(breakTls);
        try {
          await expect(sessionUsesTls(on({ host: '127.0.0.1', port: proxy.port }, { user: cluster.user }))).resolves.toBe(false);
        } finally {
          await proxy.close();
        }
      });

      it('PGSSLMODE=require does not: the TLS failure is reported', async () => {
        const proxy = await brokenTlsProxy(brokenTls[1][1]);
        try {
          await expect(connectTo(on({ host: '127.0.0.1', port: proxy.port }, { user: cluster.user, sslMode: 'require' }))).rejects.toThrow(/EPROTO/);
        } finally {
          await proxy.close();
        }
      });
    });
  });

  describe('a server that answers it cannot take connections now (SQLSTATE 57P03): the settings are right, the advice is to wait', () => {
    /**
     * A server that answers every startup packet with this FATAL error, as PostgreSQL does while it
     * starts, stops or recovers. A TLS request (SSLRequest: length 8, code 80877103) comes first: it
     * answers 'N' (no TLS), as a PostgreSQL with ssl off does before it reads the startup packet.
     */
    async function refusingServer(message: string): Promise<{ port: number; close: () => Promise<void> }> {
      const field = (type: string, value: string) => Buffer.concat([Buffer.from(type), Buffer.from(`${value}\0`)]);
      const body = Buffer.concat([field('S', 'FATAL'), field('V', 'FATAL'), field('C', '57P03'), field('M', message), Buffer.from([0])]);
      const length = Buffer.alloc(4);
      length.writeInt32BE(body.length + 4);
      const answer = Buffer.concat([Buffer.from('E'), length, body]);
      const isSslRequest = (packet: Buffer) => packet.length === 8 && packet.readInt32BE(0) === 8 && packet.readInt32BE(4) === 80877103;
      const server = net.createServer((socket) => {
        socket.on('error', () => undefined);
        socket.on('data', (packet: Buffer) => (isSslRequest(packet) ? socket.write('N') : socket.end(answer)));
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
        // The same command works once the server is back: a failure to retry, not a bad setting.
        expect((error as OperatorError).exitCode).toBe(1);
      } finally {
        await server.close();
      }
    });
  });
});
