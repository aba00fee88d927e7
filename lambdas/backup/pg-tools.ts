import { spawn } from 'node:child_process';
import * as path from 'node:path';
import { OperatorError } from '../shared/errors';
import { libpqEnv, type PgConnection } from '../shared/pg-connection';
import { quoteIdent } from '../shared/postgres';

/**
 * The pure parts of driving pg_dump / pg_restore: version parsing and compatibility, child
 * environment, stderr classification, and the exact row-count queries.
 */

export interface PgVersion {
  readonly major: number;
  /** As printed, e.g. "15.18". */
  readonly text: string;
}

/** `SHOW server_version_num` (e.g. "150018", "90624") to a version. */
export function parseServerVersionNum(value: string): PgVersion {
  const num = Number(value.trim());
  if (!Number.isInteger(num) || num < 90000) throw new OperatorError(`unexpected server_version_num "${value}" from the database server`);
  if (num >= 100000) {
    const major = Math.floor(num / 10000);
    return { major, text: `${major}.${num % 10000}` };
  }
  // 9.x: the major version is the first two parts (90624 = 9.6.24).
  const minorPart = Math.floor(num / 100) % 100;
  return { major: Number(`9.${minorPart}`), text: `9.${minorPart}.${num % 100}` };
}

/** `pg_dump --version` ("pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)") to a version. */
export function parseToolVersion(output: string, tool = 'pg_dump'): PgVersion {
  const match = /\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?(?:\.(\d+))?/.exec(output) ?? /\b(\d+)\.(\d+)(?:\.(\d+))?\b/.exec(output);
  if (!match) throw new OperatorError(`cannot read the version of ${tool} from "${output.trim().slice(0, 80)}": install the PostgreSQL client tools`);
  const first = Number(match[1]);
  if (first >= 10) return { major: first, text: match[2] !== undefined ? `${first}.${match[2]}` : String(first) };
  const minor = Number(match[2] ?? 0);
  return { major: Number(`${first}.${minor}`), text: [match[1], match[2], match[3]].filter((p) => p !== undefined).join('.') };
}

/** pg_dump can dump servers of its own major version or older, never newer ones. */
export function assertPgDumpCanDump(server: PgVersion, pgDump: PgVersion): void {
  if (pgDump.major < server.major) {
    throw new OperatorError(
      `pg_dump ${pgDump.text} is older than the database server ${server.text}: install the PostgreSQL ${server.major} client tools (pg_dump/pg_restore ${server.major} or newer) in the runner`,
      2,
    );
  }
}

/**
 * What any child process may inherit from the parent: where programs and libraries are, locale,
 * time zone and scratch space. Never credentials (AWS keys and session tokens, database passwords)
 * nor anything else the runner happens to hold.
 */
const INHERITED_VARIABLES = ['PATH', 'HOME', 'LANG', 'LANGUAGE', 'TZ', 'TMPDIR', 'LD_LIBRARY_PATH'];

/** The minimal environment of a child that needs no connection (pg_restore converting a dump, igzip). */
export function baseChildEnv(parent: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  return Object.fromEntries(
    Object.entries(parent).filter(([name, value]) => value !== undefined && (INHERITED_VARIABLES.includes(name) || name.startsWith('LC_'))),
  );
}

/**
 * Environment of a child that connects (pg_dump): the minimal one plus the connection's own libpq
 * variables (the password travels only here, never on a command line or in a log).
 */
export function childEnv(connection: PgConnection, parent: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  return { ...baseChildEnv(parent), ...libpqEnv(connection) };
}

/** Runs `<tool> --version` and parses it. */
export async function toolVersion(toolPath: string, env: NodeJS.ProcessEnv): Promise<PgVersion> {
  const tool = path.basename(toolPath);
  const output = await new Promise<string>((resolve, reject) => {
    const child = spawn(toolPath, ['--version'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
    child.stderr.resume();
    // A tool missing or broken is the runner's setup, not a state that passes: exit 2, as any setting.
    child.on('error', (error: NodeJS.ErrnoException) =>
      reject(
        new OperatorError(
          error.code === 'ENOENT'
            ? `${tool} not found (${toolPath}): install the PostgreSQL client tools or put them on PATH`
            : `cannot run ${toolPath}: ${error.message}`,
          2,
        ),
      ),
    );
    child.on('close', (code) => (code === 0 ? resolve(out) : reject(new OperatorError(`${toolPath} --version exited with code ${code}: install a working ${tool}`, 2))));
  });
  return parseToolVersion(output, tool);
}

export interface TableRef {
  readonly schema: string;
  readonly name: string;
}

/**
 * Tables whose rows are counted: ordinary tables and leaf partitions (relkind 'r'; a partitioned
 * parent holds no rows itself), every schema but the catalogs, no temporary tables.
 */
export const LIST_COUNTED_TABLES_SQL = `
SELECT n.nspname AS schema, c.relname AS name
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r'
  AND c.relpersistence <> 't'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname !~ '^pg_toast'
  AND n.nspname !~ '^pg_temp_'
ORDER BY n.nspname, c.relname`;

/**
 * Exact row counts, `batchSize` tables per statement (one round trip per batch; ONLY, so that
 * inheritance children are not counted twice). Each row of a batch's result is (idx, rows) where
 * idx indexes `tables`.
 */
export function buildRowCountQueries(tables: readonly TableRef[], batchSize = 200): string[] {
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new Error(`batchSize must be a positive integer, got ${batchSize}`);
  const queries: string[] = [];
  for (let start = 0; start < tables.length; start += batchSize) {
    const parts = tables
      .slice(start, start + batchSize)
      .map((t, i) => `SELECT ${start + i} AS idx, count(*) AS rows FROM ONLY ${quoteIdent(t.schema)}.${quoteIdent(t.name)}`);
    queries.push(parts.join('\nUNION ALL\n'));
  }
  return queries;
}

/**
 * One statement that takes ACCESS SHARE on exactly these tables (ONLY: not again on inheritance
 * children, which are listed on their own), in their order. LOCK TABLE needs no snapshot: in a
 * REPEATABLE READ transaction it leaves the snapshot to the first query after it.
 */
export function buildLockTablesSql(tables: readonly TableRef[]): string {
  if (tables.length === 0) throw new Error('no table to lock');
  return `LOCK TABLE ${tables.map((t) => `ONLY ${quoteIdent(t.schema)}.${quoteIdent(t.name)}`).join(', ')} IN ACCESS SHARE MODE`;
}

/**
 * After a LOCK TABLE of tables $1 (schemas) / $2 (names) gave up at lock_timeout, which one it
 * waited for: the server's message names none. ACCESS SHARE conflicts only with ACCESS EXCLUSIVE,
 * granted (a migration) or queued (a TRUNCATE behind a long reader); the locks are taken in list
 * order, so the first such table is the one waited for.
 */
export const LOCKED_TABLE_SQL = `
SELECT quote_ident(t.schema) || '.' || quote_ident(t.name) AS table
FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS t(schema, name, ord)
JOIN pg_catalog.pg_namespace n ON n.nspname = t.schema
JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = t.name
WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_locks l
               WHERE l.locktype = 'relation' AND l.relation = c.oid AND l.mode = 'AccessExclusiveLock'
                 AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
                 AND l.pid <> pg_backend_pid())
ORDER BY t.ord
LIMIT 1`;
