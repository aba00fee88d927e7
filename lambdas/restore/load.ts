import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { type Readable, pipeline } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { isErrorLine, pgToolPath, quoteIdent } from '../shared/postgres';
import { OperatorError, oneLine } from '../shared/errors';
import type { BackupObject } from '../shared/manifest';
import { libpqEnv, PgConnection } from '../shared/pg-connection';
import { badBackupFix } from './download';

/**
 * Loads a verified local file into a database: `pg_restore -j <cores>` for the custom archive,
 * `psql --single-transaction` for the plain SQL. The children get only PATH, a locale and the
 * libpq variables of the target (never the AWS credentials), and are killed when `signal` aborts.
 */
export interface LoadInput {
  readonly connection: PgConnection;
  readonly database: string;
  readonly file: string;
  readonly format: 'custom' | 'plain';
  /** pg_restore -j. @default os.availableParallelism() */
  readonly jobs?: number;
  /** Directory of pg_restore/psql; default: on PATH. */
  readonly pgBinDir?: string;
  /** pg_restore --no-owner: every object owned by the restoring role instead of its owner in the backup (custom only). */
  readonly noOwner?: boolean;
  readonly signal?: AbortSignal;
  /** The same backup in its other format, if its manifest has one: what a bad gzip stream's line advises. */
  readonly otherCopy?: Pick<BackupObject, 'format'>;
  /** The target's name when it is a new database (the staging database is then the restoring role's): what a refusal in public advises. */
  readonly newTarget?: string;
  /**
   * How the caller asks for noOwner, offered by a load that stopped on an owner (e.g. 'pass
   * --no-owner'); undefined: offered nowhere (the plain format, which cannot take it; the restore
   * test, which has no such option).
   */
  readonly noOwnerAdvice?: string;
}

export async function loadBackup(input: LoadInput): Promise<void> {
  const env = toolEnv(input.connection, input.database);
  if (input.format === 'custom') {
    const jobs = String(input.jobs ?? os.availableParallelism());
    const result = await runTool(pgToolPath('pg_restore', input.pgBinDir), [...(input.noOwner ? ['--no-owner'] : []), '--exit-on-error', '-j', jobs, '-d', input.database, input.file], { env, signal: input.signal });
    if (result.code !== 0) throw new OperatorError(`pg_restore failed (exit ${result.code}): ${errorLine(result.stderr)}${ownerFix(errorLine(result.stderr), input.connection.user, input.newTarget, input.noOwnerAdvice)}; the target was not touched`);
    return;
  }
  // pipeline, not pipe: a read error of the file reaches the gunzip stream, and so runTool.
  const sql = pipeline(fs.createReadStream(input.file), createGunzip(), () => undefined);
  const result = await runTool(
    pgToolPath('psql', input.pgBinDir),
    ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '--single-transaction', '-o', '/dev/null', '-d', input.database, '-f', '-'],
    { env, stdin: sql, signal: input.signal },
  ).catch((error: unknown) => {
    if (error instanceof OperatorError || input.signal?.aborted) throw error;
    // The file passed its sha256, so a gzip error is in the stored object: the backup wrote it so.
    const name = path.basename(input.file);
    // zlib's errors come from node's own realm: not `instanceof Error` under a test runner's.
    const reason = oneLine((error as Error).message);
    if ((error as NodeJS.ErrnoException).code?.startsWith('Z_')) {
      throw new OperatorError(`${name} is not a readable gzip stream (${reason}): psql was stopped before it committed; the target was not touched; ${badBackupFix(input.otherCopy)}`);
    }
    throw new OperatorError(`cannot read the downloaded ${name} (${reason}): psql was stopped before it committed; the target was not touched; retry, and check the local disk (TMPDIR)`);
  });
  if (result.code !== 0) throw new OperatorError(`psql failed (exit ${result.code}): ${errorLine(result.stderr)}${ownerFix(errorLine(result.stderr), input.connection.user, input.newTarget, input.noOwnerAdvice)}; the target was not touched`);
}

/**
 * What to do when the load stopped on an object's owner. pg_restore (without --no-owner) and the
 * plain SQL give each object to its owner in the backup right after creating it, so this comes
 * within seconds of the load's start: the restoring role is neither a superuser nor a member of
 * that role (PostgreSQL 16 says "must be able to SET ROLE"), or the server has no such role (a new
 * server: roles are not in a pg_dump). '' for any other failure.
 */
function ownerFix(line: string, restorer: string, newTarget?: string, noOwnerAdvice?: string): string {
  const you = quoteIdent(restorer);
  const orNoOwner = noOwnerAdvice ? `, or ${noOwnerAdvice} to have them owned by "${restorer}"` : '';
  // PostgreSQL 15: only the database's owner may create in public, and giving an object in public
  // to a role needs that role to be allowed to create there. A new name's database is the
  // restoring role's, so a role that is not a superuser cannot give the backup's objects back.
  if (newTarget !== undefined && /permission denied for schema public/.test(line)) {
    return ` (the new database is owned by "${restorer}", and only its owner may create in its schema public, so "${restorer}", not a superuser, cannot give the backup's objects to their owner: create the database empty for that owner first (CREATE DATABASE ${quoteIdent(newTarget)} OWNER <the backup's owner>) and restore into it${noOwnerAdvice ? `, restore as a superuser, or ${noOwnerAdvice}` : ', or restore as a superuser'})`;
  }
  const notMember = /must be (?:member of role|able to SET ROLE) "(.+?)"/.exec(line);
  if (notMember) {
    const owner = notMember[1];
    return ` (the backup's objects are owned by role "${owner}", and role "${restorer}" may not give them to it: restore as "${owner}" or as a member of it (have an admin run GRANT ${quoteIdent(owner)} TO ${you})${orNoOwner})`;
  }
  const missing = /role "(.+?)" does not exist/.exec(line);
  if (missing) {
    const owner = missing[1];
    return ` (the backup names role "${owner}", which this server does not have: roles are not in a pg_dump; create it first as on the source server (CREATE ROLE ${quoteIdent(owner)}, or pg_dumpall --roles-only there)${orNoOwner})`;
  }
  return '';
}

/** What a client program needs and nothing more: where programs are, a locale, and libpq's variables. */
export function toolEnv(connection: PgConnection | undefined, database?: string): Record<string, string> {
  return {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    ...(process.env.LANG && { LANG: process.env.LANG }),
    ...(connection && libpqEnv(connection, database)),
  };
}

export interface ToolResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs a client program to its end. `stdin` is piped in; an error of `stdin` (a gzip stream cut
 * short) kills the child and rejects with that error once the child has exited: ending the child's
 * input instead would read as the end of the SQL to psql, which commits what it has. An abort
 * kills the child and rejects with the signal's reason once the child has exited, so nothing
 * outlives the caller's cleanup.
 */
export function runTool(
  file: string,
  args: string[],
  options: { env: Record<string, string>; stdin?: Readable; signal?: AbortSignal; /** Whole lines of stdout as they come, instead of keeping it in `stdout`. */ onStdoutLines?: (lines: string[]) => void },
): Promise<ToolResult> {
  return new Promise((resolve, reject) => {
    if (options.signal?.aborted) {
      options.stdin?.destroy();
      return reject(options.signal.reason as Error);
    }
    const child = spawn(file, args, { env: options.env, stdio: [options.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let inputError: unknown;
    let partial = '';
    child.stdout?.setEncoding('utf8').on('data', (d: string) => {
      if (options.onStdoutLines) {
        const lines = (partial + d).split('\n');
        partial = lines.pop() ?? '';
        options.onStdoutLines(lines);
      } else if (stdout.length < 50_000_000) stdout += d;
    });
    child.stderr?.setEncoding('utf8').on('data', (d: string) => {
      if (stderr.length < 100_000) stderr += d;
    });
    const onAbort = (): void => {
      child.kill('SIGTERM');
    };
    options.signal?.addEventListener('abort', onAbort, { once: true });
    child.on('error', (error) => {
      options.signal?.removeEventListener('abort', onAbort);
      // Missing or not executable: the runner's setup, exit 2 as any setting. The tools are found
      // on PATH (no flag or variable names another directory), as the backup's are.
      const tool = path.basename(file);
      const missing = (error as NodeJS.ErrnoException).code === 'ENOENT';
      reject(
        new OperatorError(
          missing
            ? `${tool} not found${file === tool ? ' on PATH' : ` (${file})`}: install the PostgreSQL client tools (pg_restore, psql) or put them on PATH`
            : `cannot run ${file}: ${oneLine(error)}; put a working PostgreSQL client (pg_restore, psql) on PATH`,
          2,
        ),
      );
    });
    if (options.stdin && child.stdin) {
      const stdin = options.stdin;
      // A child that exits early (psql ON_ERROR_STOP) closes its input: its exit code says why.
      child.stdin.on('error', () => undefined);
      // Killed with its input still open, so that it never sees an end of input: its transaction
      // is not committed. pipe() leaves the child's input open when `stdin` fails.
      stdin.on('error', (error) => {
        inputError ??= error;
        child.kill('SIGTERM');
      });
      stdin.pipe(child.stdin);
    }
    child.on('close', (code) => {
      options.signal?.removeEventListener('abort', onAbort);
      if (partial !== '') options.onStdoutLines?.([partial]);
      options.stdin?.destroy();
      if (options.signal?.aborted) reject(options.signal.reason as Error);
      else if (inputError !== undefined) reject(inputError as Error);
      else resolve({ code, stdout, stderr });
    });
  });
}

/** The line of a PostgreSQL tool's stderr that says what went wrong, for a one-line error. */
export function errorLine(stderr: string): string {
  const lines = stderr.split('\n').filter((l) => l.trim() !== '');
  return oneLine(lines.find(isErrorLine) ?? lines[0] ?? 'no message').slice(0, 300);
}
