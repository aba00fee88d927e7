import { OperatorError } from '../../../lambdas/shared/errors';
import { resolveConnection } from '../../../lambdas/shared/pg-connection';
import {
  assertPgDumpCanDump,
  baseChildEnv,
  buildLockTablesSql,
  buildRowCountQueries,
  childEnv,
  parseServerVersionNum,
  parseToolVersion,
} from '../../../lambdas/backup/pg-tools';
import { isErrorLine, pgToolPath, quoteIdent, quoteQualifiedName } from '../../../lambdas/shared/postgres';

describe('version parsing', () => {
  it.each([
    ['150018', 15, '15.18'],
    ['170002', 17, '17.2'],
    ['100023', 10, '10.23'],
    [' 160004\n', 16, '16.4'],
  ])('server_version_num %j is major %d (%s)', (value, major, text) => {
    expect(parseServerVersionNum(value)).toEqual({ major, text });
  });

  it('reads a 9.x server_version_num as a two-part major version', () => {
    expect(parseServerVersionNum('90624')).toEqual({ major: 9.6, text: '9.6.24' });
  });

  it('rejects a server_version_num that is not one', () => {
    expect(() => parseServerVersionNum('fifteen')).toThrow(OperatorError);
  });

  it.each([
    ['pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)', 15, '15.18'],
    ['pg_dump (PostgreSQL) 16.4', 16, '16.4'],
    ['pg_dump (PostgreSQL) 17beta1', 17, '17'],
    ['pg_dump (PostgreSQL) 9.6.24', 9.6, '9.6.24'],
  ])('pg_dump --version %j is major %d (%s)', (output, major, text) => {
    expect(parseToolVersion(output)).toEqual({ major, text });
  });

  it('rejects unreadable --version output with the fix', () => {
    expect(() => parseToolVersion('command not found')).toThrow(/cannot read the version of pg_dump .*install the PostgreSQL client tools/);
  });
});

describe('assertPgDumpCanDump', () => {
  it('accepts a pg_dump of the same or a newer major version', () => {
    expect(() => assertPgDumpCanDump({ major: 15, text: '15.4' }, { major: 15, text: '15.18' })).not.toThrow();
    expect(() => assertPgDumpCanDump({ major: 15, text: '15.4' }, { major: 17, text: '17.2' })).not.toThrow();
    // Minor versions do not matter: 15.2 dumps a 15.18 server.
    expect(() => assertPgDumpCanDump({ major: 15, text: '15.18' }, { major: 15, text: '15.2' })).not.toThrow();
  });

  it('refuses an older pg_dump with one line naming both versions and the fix', () => {
    let error: unknown;
    try {
      assertPgDumpCanDump({ major: 16, text: '16.4' }, { major: 15, text: '15.18' });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(OperatorError);
    expect((error as Error).message).toBe(
      'pg_dump 15.18 is older than the database server 16.4: install the PostgreSQL 16 client tools (pg_dump/pg_restore 16 or newer) in the runner',
    );
  });
});

describe('quoteIdent and buildRowCountQueries', () => {
  it('quotes identifiers as PostgreSQL does, doubling inner quotes', () => {
    expect(quoteIdent('rides')).toBe('"rides"');
    expect(quoteIdent('Incidents Été')).toBe('"Incidents Été"');
    expect(quoteIdent('a"b')).toBe('"a""b"');
  });

  it('quotes each part of a schema-qualified name on its own (the recovery checks name tables as schema.table)', () => {
    expect(quoteQualifiedName('rides')).toBe('"rides"');
    expect(quoteQualifiedName('public.alembic_version')).toBe('"public"."alembic_version"');
    expect(quoteQualifiedName('Ops.a"b')).toBe('"Ops"."a""b"');
  });

  it('builds one UNION ALL per batch, counting ONLY each table, indexed into the input', () => {
    const tables = [
      { schema: 'public', name: 'rides' },
      { schema: 'Ops Réseau', name: 'Incidents "Été"' },
      { schema: 'billing', name: 'invoices_2026_h1' },
    ];
    const queries = buildRowCountQueries(tables, 2);
    expect(queries).toEqual([
      'SELECT 0 AS idx, count(*) AS rows FROM ONLY "public"."rides"\nUNION ALL\nSELECT 1 AS idx, count(*) AS rows FROM ONLY "Ops Réseau"."Incidents ""Été"""',
      'SELECT 2 AS idx, count(*) AS rows FROM ONLY "billing"."invoices_2026_h1"',
    ]);
  });

  it('builds no query for a database without tables, and rejects a bad batch size', () => {
    expect(buildRowCountQueries([])).toEqual([]);
    expect(() => buildRowCountQueries([{ schema: 'a', name: 'b' }], 0)).toThrow(/batchSize/);
  });

  it('locks exactly the listed tables (ONLY), quoted, in one ACCESS SHARE statement', () => {
    expect(buildLockTablesSql([{ schema: 'public', name: 'rides' }, { schema: 'Ops Réseau', name: 'Incidents "Été"' }])).toBe(
      'LOCK TABLE ONLY "public"."rides", ONLY "Ops Réseau"."Incidents ""Été""" IN ACCESS SHARE MODE',
    );
    expect(() => buildLockTablesSql([])).toThrow(/no table/);
  });
});

describe('child processes', () => {
  it('gives the child only the connection libpq variables; the password is in the env, nowhere else', () => {
    const env = childEnv(
      { host: 'db.internal', port: 5433, user: 'backup', password: 's3cret', database: 'atmr', sslMode: 'verify-full', sslRootCert: '/ca.pem' },
      { PATH: '/usr/bin', PGSERVICE: 'other', PGPASSWORD: 'stale', PGDATABASE: 'wrong', HOME: '/root' },
    );
    expect(env).toEqual({
      PATH: '/usr/bin',
      HOME: '/root',
      PGHOST: 'db.internal',
      PGPORT: '5433',
      PGUSER: 'backup',
      PGPASSWORD: 's3cret',
      PGDATABASE: 'atmr',
      PGAPPNAME: 'atmr-dr',
      PGCONNECT_TIMEOUT: '15',
      PGSSLMODE: 'verify-full',
      PGSSLROOTCERT: '/ca.pem',
    });
  });

  it("lets pg_dump read the operator's PGPASSFILE, as the node-postgres connection does, when no PGPASSWORD is set", async () => {
    // Arrange
    const operatorEnv = { PATH: '/usr/bin', PGHOST: 'db.internal', PGUSER: 'backup', PGDATABASE: 'atmr', PGPASSFILE: '/home/oncall/.pgpass-prod' };

    // Act
    const env = childEnv(await resolveConnection({ env: operatorEnv }), operatorEnv);

    // Assert
    expect(env.PGPASSFILE).toBe('/home/oncall/.pgpass-prod');
    expect(env.PGPASSWORD).toBeUndefined();
  });

  it('passes a connecting child no AWS credential nor any other variable of the runner', () => {
    const env = childEnv(
      { host: 'db.internal', port: 5432, user: 'backup', password: 's3cret', database: 'atmr' },
      { PATH: '/usr/bin', LC_ALL: 'C.UTF-8', AWS_ACCESS_KEY_ID: 'AKIA', AWS_SECRET_ACCESS_KEY: 'k', AWS_SESSION_TOKEN: 't', BACKUP_BUCKET: 'b', DB_SECRET_ARN: 'arn' },
    );
    expect(Object.keys(env).filter((name) => !name.startsWith('PG')).sort()).toEqual(['LC_ALL', 'PATH']);
  });

  it('gives a child that never connects (pg_restore converting a dump) no libpq variable and no credential at all', () => {
    const env = baseChildEnv({ PATH: '/usr/bin', TZ: 'UTC', PGPASSWORD: 'p', PGHOST: 'db', AWS_SECRET_ACCESS_KEY: 'k', AWS_SESSION_TOKEN: 't' });
    expect(env).toEqual({ PATH: '/usr/bin', TZ: 'UTC' });
  });

  it('finds the tools in pgBinDir, else on PATH', () => {
    expect(pgToolPath('pg_dump', '/usr/lib/postgresql/16/bin')).toBe('/usr/lib/postgresql/16/bin/pg_dump');
    expect(pgToolPath('pg_restore')).toBe('pg_restore');
  });

  it.each([
    ['pg_dump: error: Dumping the contents of table "trips" failed: PQgetResult() failed.', true],
    ['pg_restore: error: could not read from input file: end of file', true],
    ['pg_dump: detail: Error message from server: FATAL:  terminating connection due to administrator command', true],
    ['ERROR:  permission denied for table rides', true],
    ['pg_dump: warning: there are circular foreign-key constraints on this table:', false],
    ['pg_dump: last built-in OID is 16383', false],
  ])('stderr line %j is an error: %s', (line, expected) => {
    expect(isErrorLine(line)).toBe(expected);
  });
});
