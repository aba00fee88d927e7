import * as fs from 'node:fs';
import * as path from 'node:path';
import type { S3Client } from '@aws-sdk/client-s3';
import { runBackup } from '../../lambdas/backup/backup';
import { openDatabaseSession } from '../../lambdas/detection/clients';
import { PROBE_METRICS, runProbe } from '../../lambdas/detection/probe';
import { restoreBackup } from '../../lambdas/restore/restore';
import { createS3Client } from '../../lambdas/shared/aws';
import { captureProbeOutput, metricValue } from '../lambdas/detection/fixtures';
import { testClient } from '../support/cluster';
import { PostgresCluster, psql, startPostgres, stopPostgres } from '../support/postgres';
import { LocalS3, startLocalS3 } from '../support/s3';
import { DIGEST_SQL, FIXTURE_SQL } from './backup-fixture';
import { listKeys, REPO_ROOT } from './backup-support';

/**
 * The probe's and the backup runner's database roles, created with exactly the SQL the docs give
 * (docs/detection.md, docs/backup-runner.md), on a real PostgreSQL: what the probe and the runner do
 * works as those roles, and neither role can write. A cluster of its own: roles are cluster-wide.
 */

jest.setTimeout(120_000);

/** The fenced `sql` blocks of the section `heading` of a docs page, in order. */
function documentedSql(page: string, heading: string): string[] {
  const text = fs.readFileSync(path.join(REPO_ROOT, 'docs', page), 'utf8');
  const start = text.indexOf(`\n${heading}\n`);
  if (start < 0) throw new Error(`no section "${heading}" in docs/${page}`);
  const end = text.indexOf('\n## ', start + heading.length + 2);
  const section = text.slice(start, end < 0 ? undefined : end);
  return [...section.matchAll(/```sql\n([\s\S]*?)```/g)].map((m) => m[1].replaceAll('<password>', 'not-used-with-trust'));
}

const [RUNNER_ROLE_SQL, LARGE_OBJECT_GRANT_SQL] = documentedSql('backup-runner.md', "## The runner's database role");
const [PROBE_ROLE_SQL] = documentedSql('detection.md', "## The probe's database role");
const DATABASE = 'atmr';

let cluster: PostgresCluster;
let localS3: LocalS3;
let s3: S3Client;

/**
 * A statement run as `user` in the database: the server's error message, or '' when it was accepted.
 * `readWrite`: in a session that first turned its role's read-only default off (any role may), so
 * that what answers is the role's privileges, not the setting.
 */
async function refusalAs(user: string, sql: string, readWrite = true): Promise<string> {
  const client = testClient({ host: cluster.host, port: cluster.port, user, database: DATABASE });
  await client.connect();
  try {
    if (readWrite) await client.query('SET default_transaction_read_only = off');
    await client.query(sql);
    return '';
  } catch (error) {
    return (error as Error).message;
  } finally {
    await client.end();
  }
}

/** One probe run with the database check only, as the probe's role. */
function probeAsItsRole() {
  const connection = { host: cluster.host, port: cluster.port, user: 'atmr_probe', database: DATABASE, sslMode: 'disable' };
  return captureProbeOutput(({ metrics, logger }) => runProbe({ database: { timeoutMs: 5000 } }, { metrics, logger, openDatabase: () => openDatabaseSession(connection, 5000) }));
}

function backupAs(user: string) {
  const connection = { host: cluster.host, port: cluster.port, user, database: DATABASE };
  return runBackup({ s3, bucket: localS3.bucket, connection }, { tier: 'hourly', lockWaitTimeoutMs: 30_000 });
}

beforeAll(async () => {
  cluster = await startPostgres();
  psql(cluster, 'postgres', `CREATE DATABASE ${DATABASE}`);
  // The application's data, owned by the master user (postgres here), a large object among it.
  psql(cluster, DATABASE, FIXTURE_SQL);
  psql(cluster, 'postgres', RUNNER_ROLE_SQL);
  psql(cluster, 'postgres', PROBE_ROLE_SQL);
  localS3 = await startLocalS3();
  s3 = createS3Client(localS3.env);
}, 120_000);

afterAll(async () => {
  await localS3?.stop();
  if (cluster) stopPostgres(cluster);
});

describe("the backup runner's role (docs/backup-runner.md)", () => {
  it('backs up everything, the large object once granted as documented, and the backup restores the same rows', async () => {
    // Arrange: the documented grant on the large objects there are
    psql(cluster, DATABASE, LARGE_OBJECT_GRANT_SQL);

    // Act
    const { manifestKey, manifest } = await backupAs('atmr_backup');
    await restoreBackup(
      { s3, bucket: localS3.bucket, connection: { host: cluster.host, port: cluster.port, user: 'postgres', database: 'postgres' }, jobs: 2 },
      { ref: manifestKey, targetDb: 'atmr_restored' },
    );

    // Assert
    const digest = (database: string) => psql(cluster, database, DIGEST_SQL);
    expect(digest('atmr_restored')).toBe(digest(DATABASE));
    expect(digest(DATABASE)).toContain('lo|');
    expect(manifest.tables.find((t) => t.name === 'rides')?.rows).toBe(2000);
  });

  it('fails, naming it, on a large object created after the grant (no default privileges for them), and publishes no manifest', async () => {
    // Arrange: the application creates one more large object
    const oid = psql(cluster, DATABASE, "SELECT lo_from_bytea(0, 'nouveau contrat')");
    const manifestsBefore = (await listKeys(s3, localS3.bucket)).filter((k) => k.endsWith('.manifest.json'));

    // Act
    const error = await backupAs('atmr_backup').then(
      () => undefined,
      (e: unknown) => e as Error,
    );

    // Assert
    expect(error?.message).toContain(`permission denied for large object ${oid}`);
    expect(error?.message).toMatch(/; the backup role may not read that large object \(pg_read_all_data does not cover large objects\): as its owner, GRANT SELECT ON LARGE OBJECT <oid> TO the backup role, .*\(docs\/backup-runner\.md, "The runner's database role"\), then run the backup again$/);
    expect((await listKeys(s3, localS3.bucket)).filter((k) => k.endsWith('.manifest.json'))).toEqual(manifestsBefore);
    psql(cluster, DATABASE, LARGE_OBJECT_GRANT_SQL);
    await expect(backupAs('atmr_backup')).resolves.toMatchObject({ manifestKey: expect.stringContaining('hourly/') });
  });

  it('cannot write: an INSERT, an UPDATE, a CREATE TABLE and a large object write are refused, even out of its read-only default', async () => {
    expect(await refusalAs('atmr_backup', "INSERT INTO public.rides (status, payload, created_at) VALUES ('done', '{}', now())", false)).toBe(
      'cannot execute INSERT in a read-only transaction',
    );
    expect(await refusalAs('atmr_backup', `INSERT INTO public.rides (status, payload, created_at) VALUES ('done', '{}', now())`)).toBe(
      'permission denied for table rides',
    );
    expect(await refusalAs('atmr_backup', `UPDATE billing.invoices SET amount = 0`)).toBe('permission denied for table invoices');
    expect(await refusalAs('atmr_backup', `CREATE TABLE public.intruder (id int)`)).toBe('permission denied for schema public');
    expect(await refusalAs('atmr_backup', `SELECT lo_put(blob, 0, 'x') FROM public.documents`)).toMatch(/^permission denied for large object \d+$/);
  });
});

describe("the probe's role (docs/detection.md)", () => {
  it("passes the probe's database check: DatabaseUp 1, DbReadOnly 0, the role carrying no read-only default of its own", async () => {
    // Act
    const run = await probeAsItsRole();

    // Assert
    expect(metricValue(run.metrics, PROBE_METRICS.databaseUp)).toBe(1);
    expect(metricValue(run.metrics, PROBE_METRICS.dbReadOnly)).toBe(0);
    expect(run.result.database).toMatchObject({ readOnly: false, transactionReadOnly: false, defaultSource: 'default' });
    expect(run.logs.filter((l) => l.level === 'WARN')).toEqual([]);
  });

  it("reads its state in a transaction declared READ ONLY, which does not hide the database's read-write default", async () => {
    // Arrange: the probe's session as it is, its statements recorded on their way to the server
    const sent: string[] = [];
    const connection = { host: cluster.host, port: cluster.port, user: 'atmr_probe', database: DATABASE, sslMode: 'disable' };
    const openRecording = async () => {
      const session = await openDatabaseSession(connection, 5000);
      return { ...session, client: { query: (sql: string) => (sent.push(sql.split('\n')[0]), session.client.query(sql)) } };
    };

    // Act
    const run = await captureProbeOutput(({ metrics, logger }) => runProbe({ database: { timeoutMs: 5000 } }, { metrics, logger, openDatabase: openRecording }));

    // Assert
    expect(sent[0]).toBe('BEGIN READ ONLY');
    expect(sent[sent.length - 1]).toBe('COMMIT');
    expect(metricValue(run.metrics, PROBE_METRICS.dbReadOnly)).toBe(0);
  });

  describe('with the server read-only as a whole (ALTER SYSTEM, as a parameter group does, and a reload)', () => {
    // The master user's statements while the server defaults to read-only: out of it for the session.
    const asMaster = (sql: string) => psql(cluster, 'postgres', `SET default_transaction_read_only = off; ${sql}`);
    beforeEach(() => {
      asMaster('ALTER SYSTEM SET default_transaction_read_only = on');
      asMaster('SELECT pg_reload_conf()');
    });
    afterEach(() => {
      // The server read-write again first, whatever the role's reset does: the other tests share it.
      try {
        asMaster('ALTER SYSTEM RESET default_transaction_read_only');
        asMaster('SELECT pg_reload_conf()');
      } finally {
        asMaster('ALTER ROLE atmr_probe RESET default_transaction_read_only');
      }
    });

    it('reports DbReadOnly 1 as the documented role', async () => {
      // Act
      const run = await probeAsItsRole();

      // Assert
      expect(metricValue(run.metrics, PROBE_METRICS.dbReadOnly)).toBe(1);
      expect(run.result.database).toMatchObject({ readOnly: true, transactionReadOnly: true, defaultSource: 'configuration file' });
    });

    it('warns, with the statement that removes it, when the role carries a read-only default of its own (which hides it), and sees it once that statement ran', async () => {
      // Arrange: the role default the docs used to give
      asMaster('ALTER ROLE atmr_probe SET default_transaction_read_only = on');

      // Act
      const hidden = await probeAsItsRole();
      const fix = hidden.logs.find((l) => l.level === 'WARN' && typeof l.fix === 'string')?.fix as string;
      asMaster(fix);
      const seen = await probeAsItsRole();

      // Assert
      expect(metricValue(hidden.metrics, PROBE_METRICS.dbReadOnly)).toBe(0);
      expect(hidden.logs).toContainEqual(
        expect.objectContaining({ level: 'WARN', message: expect.stringContaining("the probe's own role defaults to read-only"), fix: 'ALTER ROLE "atmr_probe" RESET default_transaction_read_only' }),
      );
      expect(hidden.logs.find((l) => l.level === 'INFO' && String(l.message).includes('defaults to read-only'))).toBeUndefined();
      expect(metricValue(seen.metrics, PROBE_METRICS.dbReadOnly)).toBe(1);
    });
  });

  it('still sees the database set read-only (the setting it watches), as that role', async () => {
    // Arrange
    psql(cluster, 'postgres', `ALTER DATABASE ${DATABASE} SET default_transaction_read_only = on`);
    try {
      // Act
      const run = await probeAsItsRole();

      // Assert
      expect(metricValue(run.metrics, PROBE_METRICS.dbReadOnly)).toBe(1);
      expect(run.result.database).toMatchObject({ readOnly: true, databaseSetting: 'on' });
    } finally {
      psql(cluster, 'postgres', `ALTER DATABASE ${DATABASE} RESET default_transaction_read_only`);
    }
  });

  it('cannot write: an INSERT, a CREATE TABLE and reading the data are refused (no grant: its safety)', async () => {
    expect(await refusalAs('atmr_probe', `INSERT INTO public.empty_table VALUES (1)`)).toBe('permission denied for table empty_table');
    expect(await refusalAs('atmr_probe', `CREATE TABLE public.intruder (id int)`)).toBe('permission denied for schema public');
    expect(await refusalAs('atmr_probe', 'SELECT count(*) FROM public.rides')).toBe('permission denied for table rides');
  });
});
