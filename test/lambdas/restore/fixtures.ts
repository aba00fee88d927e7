import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { gzipSync } from 'node:zlib';
import type { Template } from 'aws-cdk-lib/assertions';
import { Client } from 'pg';
import { utcMinute } from '../../../lambdas/shared/format';
import { readBackupRoles } from '../../../lambdas/shared/backup-roles';
import { readDatabaseProperties } from '../../../lambdas/shared/database-properties';
import { BackupManifest, BackupManifestSchema } from '../../../lambdas/shared/manifest';
import { BackupTier, LATEST_POINTER_KEY, backupObjectKeys, latestDatabasePointerKey, latestDatabaseTierPointerKey, latestTierPointerKey } from '../../../lambdas/shared/s3-layout';
import { writeFakePgRestore } from '../../support/fake-pg-restore';
import { PostgresCluster, psql, startPostgres, stopPostgres } from '../../support/postgres';
import { DIGEST_SQL } from '../../integration/backup-fixture';

/** The roles `database`'s objects name, read as the backup reads them (backup.ts), on a session connected to it. */
async function readRoles(cluster: PostgresCluster, database: string): ReturnType<typeof readBackupRoles> {
  const reader = new Client({ host: cluster.host, port: cluster.port, user: cluster.user, database });
  await reader.connect();
  try {
    return await readBackupRoles((sql) => reader.query(sql));
  } finally {
    await reader.end();
  }
}

async function readProperties(cluster: PostgresCluster, database: string): ReturnType<typeof readDatabaseProperties> {
  const reader = new Client({ host: cluster.host, port: cluster.port, user: cluster.user, database: 'postgres' });
  await reader.connect();
  try {
    return await readDatabaseProperties((sql, params) => reader.query(sql, params), database);
  } finally {
    await reader.end();
  }
}

/**
 * A backup written exactly as docs/contracts.md lays it out (objects, schema-1 manifest, then pointers),
 * made with pg_dump directly: the read path's tests build their fault cases (flipped byte,
 * truncated object, missing object) on it without depending on the write path.
 */
export async function writeFixtureBackup(
  s3: S3Client,
  bucket: string,
  cluster: PostgresCluster,
  database: string,
  /**
   * pointers: which latest pointers to write (default both the per-database and the bucket-wide ones).
   * databaseProperties: false writes a manifest without them, as backups taken before they were recorded.
   * roles: true records the roles the objects name, as backups do now; by default the manifest has none,
   * as backups taken before they were recorded, whose missing roles the load names.
   */
  options: { tier?: BackupTier; startedAt?: Date; pointers?: 'all' | 'legacy' | 'none'; databaseProperties?: boolean; roles?: boolean } = {},
): Promise<{ manifestKey: string; manifest: BackupManifest }> {
  const tier = options.tier ?? 'daily';
  const startedAt = options.startedAt ?? new Date();
  const keys = backupObjectKeys(tier, database, startedAt);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'atmr-dr-fixture-'));
  try {
    const env = { ...process.env, ...cluster.env };
    const dump = path.join(dir, 'db.dump');
    execFileSync('pg_dump', ['-Fc', '-Z', '6', '-f', dump, '-d', database], { env });
    const plain = gzipSync(execFileSync('pg_restore', ['-f', '-', dump], { env, maxBuffer: 1 << 30 }));
    const tables = psql(
      cluster,
      database,
      `SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog','information_schema') AND n.nspname NOT LIKE 'pg_toast%'
        ORDER BY 1, 2`,
    )
      .split('\n')
      .filter((l) => l !== '')
      .map((line) => {
        const [schema, name] = line.split('|');
        const rows = Number(psql(cluster, database, `SELECT count(*) FROM ONLY "${schema.replaceAll('"', '""')}"."${name.replaceAll('"', '""')}"`));
        return { schema, name, rows };
      });
    const dumpBytes = fs.readFileSync(dump);
    // Read as the backup reads them (backup.ts), from the catalogs.
    const databaseProperties = options.databaseProperties === false ? undefined : await readProperties(cluster, database);
    const roles = options.roles ? await readRoles(cluster, database) : undefined;
    const objects = [
      { key: keys.custom, format: 'custom' as const, body: dumpBytes },
      { key: keys.plain, format: 'plain' as const, body: plain },
    ];
    for (const o of objects) await s3.send(new PutObjectCommand({ Bucket: bucket, Key: o.key, Body: o.body }));
    const manifest = BackupManifestSchema.parse({
      schema: 1,
      database,
      tier,
      startedAt: startedAt.toISOString(),
      finishedAt: new Date().toISOString(),
      durationMs: Math.max(0, Date.now() - startedAt.getTime()),
      serverVersion: psql(cluster, database, 'SHOW server_version'),
      pgDumpVersion: execFileSync('pg_dump', ['--version'], { encoding: 'utf8' }).trim(),
      objects: objects.map((o) => ({ key: o.key, format: o.format, bytes: o.body.length, sha256: createHash('sha256').update(o.body).digest('hex') })),
      tables,
      databaseProperties,
      roles,
    });
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: keys.manifest, Body: JSON.stringify(manifest) }));
    const pointer = JSON.stringify({ manifest: keys.manifest });
    const which = options.pointers ?? 'all';
    const pointerKeys = [
      ...(which === 'all' ? [latestDatabaseTierPointerKey(database, tier), latestDatabasePointerKey(database)] : []),
      ...(which === 'none' ? [] : [latestTierPointerKey(tier), LATEST_POINTER_KEY]),
    ];
    for (const key of pointerKeys) await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: pointer }));
    return { manifestKey: keys.manifest, manifest };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Content digest of every table, sequence, materialized view and large object of a database. */
export function databaseDigest(cluster: PostgresCluster, database: string): string {
  return psql(cluster, database, DIGEST_SQL);
}

export function databaseExists(cluster: PostgresCluster, database: string): boolean {
  return psql(cluster, 'postgres', `SELECT count(*) FROM pg_database WHERE datname = '${database}'`) === '1';
}

/** Databases whose name starts with a prefix (leftover scratch/staging databases). */
/** When a kept copy was set aside, as the lines naming it say: the first 8 base-36 digits of its id are the time. */
export function setAside(name: string): string {
  return utcMinute(parseInt(name.slice(-10, -2), 36));
}

export function databasesLike(cluster: PostgresCluster, prefix: string): string[] {
  return psql(cluster, 'postgres', `SELECT datname FROM pg_database WHERE datname LIKE '${prefix}%' ORDER BY 1`)
    .split('\n')
    .filter((l) => l !== '');
}

const ROOT = path.join(__dirname, '..', '..', '..');

/**
 * The CLI as an operator runs it: a child process with an explicit environment. Asynchronous:
 * s3rver runs in this process and must keep answering while the child runs.
 */
export function atmrDr(args: string[], env: Record<string, string>): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return runTsx('bin/atmr-dr.ts', args, env);
}

/** A script of the repository (the CLI, or a test's harness) run so, under tsx. */
export function runTsx(script: string, args: string[], env: Record<string, string>): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(path.join(ROOT, 'node_modules', '.bin', 'tsx'), [script, ...args], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}


/**
 * A state machine's ASL from a template, with every CloudFormation token (function ARN, partition)
 * replaced by a fixed placeholder, ready for aws-local-stepfunctions.
 */
export function stateMachineDefinition(template: Template): Record<string, unknown> & { TimeoutSeconds?: number; States: Record<string, unknown> } {
  const machines = Object.values(template.findResources('AWS::StepFunctions::StateMachine')) as { Properties: { DefinitionString: unknown } }[];
  if (machines.length !== 1) throw new Error(`expected one state machine, got ${machines.length}`);
  const definition = machines[0].Properties.DefinitionString as string | { 'Fn::Join': [string, unknown[]] };
  const text =
    typeof definition === 'string'
      ? definition
      : definition['Fn::Join'][1]
          .map((part) => (typeof part === 'string' ? part : 'arn:aws:lambda:eu-west-3:111111111111:function:restore-test'))
          .join(definition['Fn::Join'][0]);
  return JSON.parse(text);
}

/**
 * What a tool that "never changes the source database" must leave equal: its schemas, relations
 * and columns, the content digest (every table's rows, sequences, large objects), and its settings
 * (per-database and per-role-in-database settings, connection limits, ACL).
 */
export function databaseFingerprint(cluster: PostgresCluster, database: string): Record<string, string> {
  const literal = `'${database.replaceAll("'", "''")}'`;
  return {
    // Temporary schemas come and go with sessions (the digest below uses a temporary table itself).
    schemas: psql(cluster, database, "SELECT string_agg(nspname, ',' ORDER BY nspname) FROM pg_namespace WHERE nspname !~ '^pg_(toast_)?temp_'"),
    relations: psql(
      cluster,
      database,
      `SELECT string_agg(n.nspname || '.' || c.relname || ':' || c.relkind::text, ',' ORDER BY n.nspname, c.relname)
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname NOT LIKE 'pg_%' AND n.nspname <> 'information_schema'`,
    ),
    columns: psql(
      cluster,
      database,
      `SELECT md5(string_agg(table_schema || '.' || table_name || '.' || column_name || ':' || data_type, ',' ORDER BY table_schema, table_name, ordinal_position))
         FROM information_schema.columns WHERE table_schema NOT IN ('pg_catalog', 'information_schema')`,
    ),
    content: databaseDigest(cluster, database),
    settings: psql(
      cluster,
      'postgres',
      `SELECT coalesce(string_agg(array_to_string(s.setconfig, ';'), '|' ORDER BY s.setrole), '')
         FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase WHERE d.datname = ${literal}`,
    ),
    database: psql(cluster, 'postgres', `SELECT datallowconn::text || ':' || datconnlimit::text || ':' || coalesce(datacl::text, '') FROM pg_database WHERE datname = ${literal}`),
  };
}

/**
 * A PostgreSQL cluster of the test's own holding `database` (one small table), and a bin directory
 * whose pg_restore stops that server (fast shutdown) and fails as pg_restore does when its server
 * goes away mid-load (the load's run: the read of the archive's roles before it is the real one). `cleanup` removes both; the server is already stopped by then, which is fine.
 */
export async function serverThatGoesAway(database: string): Promise<{ cluster: PostgresCluster; pgBinDir: string; cleanup(): void }> {
  const cluster = await startPostgres();
  psql(cluster, 'postgres', `CREATE DATABASE ${database}`);
  psql(cluster, database, 'CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 100);');
  const pgBinDir = writeFakePgRestore(
    fs.mkdtempSync(path.join(os.tmpdir(), 'atmr-dr-server-gone-')),
    `kill -INT "$(head -1 '${cluster.dataDir}/postmaster.pid')"\nsleep 1\necho "pg_restore: error: connection to server lost" >&2\nexit 1\n`,
  );
  return {
    cluster,
    pgBinDir,
    cleanup() {
      fs.rmSync(pgBinDir, { recursive: true, force: true });
      try {
        stopPostgres(cluster);
      } catch {
        // pg_ctl stop answers that no server runs; the data directory goes anyway
      }
    },
  };
}
