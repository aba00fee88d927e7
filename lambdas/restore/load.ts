import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { type Readable, pipeline } from 'node:stream';
import { createGunzip } from 'node:zlib';
import type { RoleUse } from '../shared/backup-roles';
import { firstError, isErrorLine, pgToolPath, quoteIdent } from '../shared/postgres';
import { OperatorError, oneLine } from '../shared/errors';
import type { BackupObject } from '../shared/manifest';
import { libpqEnv, PgConnection } from '../shared/pg-connection';
import { parseToolVersion, type PgVersion, toolVersion } from '../backup/pg-tools';
import { badBackupFix } from './download';
import { createRolesAdvice, missingRolesLine } from './guards';

/**
 * Loads a verified local file into a database: `pg_restore` pre-data, then data and post-data
 * `-j <cores>`, for the custom archive,
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
  /** The environment the restore runs for (CatalogDeps.environmentName): named in the commands a bad backup's line prints. */
  readonly environmentName?: string;
  /** The target's name when it is a new database (the staging database is then the restoring role's): what a refusal in public advises. */
  readonly newTarget?: string;
  /** The backed-up database's owner as its manifest records it (a backup taken before manifests did has none): the owner a refusal in public advises. */
  readonly backupOwner?: string;
  /**
   * How the caller asks for noOwner, offered by a load that stopped on an owner (e.g. 'pass
   * --no-owner'); undefined: offered nowhere (the plain format, which cannot take it; the restore
   * test, which has no such option).
   */
  readonly noOwnerAdvice?: string;
  /** The custom archive's table of contents, as checkArchiveReadable returned it ('' for the plain SQL): where schema public's grants are found. */
  readonly toc: string;
}

/**
 * Refuses, before the staging database is created, a custom archive pg_restore cannot read (its
 * table of contents, at the head of the file: milliseconds). The file passed its sha256, so the
 * backup wrote it so: the line gives `backups verify`'s advice (the other format, another backup),
 * unless this pg_restore is too old for it (pgRestoreTooOld). Returns the table of contents
 * (`pg_restore --list`), which the load reads schema public's grants from.
 */
export async function checkArchiveReadable(input: Pick<LoadInput, 'file' | 'pgBinDir' | 'signal' | 'otherCopy' | 'environmentName'> & { readonly madeBy?: string }, untouched: string): Promise<string> {
  const pgRestore = pgToolPath('pg_restore', input.pgBinDir);
  const result = await runTool(pgRestore, ['--list', input.file], { env: toolEnv(undefined), signal: input.signal });
  if (result.code === 0) return result.stdout;
  const tooOld = await pgRestoreTooOld(pgRestore, result.stderr, input.file, input.madeBy);
  if (tooOld) throw new OperatorError(`${tooOld.problem}; nothing was created, ${untouched}; ${tooOld.fix}`, 2);
  throw new OperatorError(`pg_restore cannot read ${path.basename(input.file)} (exit ${result.code}): ${firstError(result.stderr)}; nothing was created, ${untouched}; ${badBackupFix(input.otherCopy, input.environmentName)}`);
}

/**
 * When pg_restore refused `file` (its `stderr`) because the archive was made by a newer pg_dump
 * (`madeBy`, the version its manifest records) whose format this pg_restore does not read: the
 * backup is good and the client tools are too old (the runner's setup, exit 2), which the restore
 * and `backups verify` must not call a bad backup. pg_restore names only the archive's format
 * version, and any bytes after "PGDMP" read as one: a format it refuses is the tools' fault only
 * when the manifest's pg_dump is of a newer major version than this pg_restore. Else undefined.
 */
export async function pgRestoreTooOld(pgRestore: string, stderr: string, file: string, madeBy: string | undefined): Promise<{ problem: string; fix: string } | undefined> {
  const format = /unsupported version \((\d+\.\d+)\) in file header/.exec(stderr)?.[1];
  const made = format === undefined ? undefined : readVersion(madeBy);
  const local = made && (await toolVersion(pgRestore, toolEnv(undefined)).catch(() => undefined));
  if (!made || !local || made.major <= local.major) return undefined;
  return {
    problem: `pg_restore ${local.text} is too old for ${path.basename(file)}: its archive format is ${format} (made by pg_dump ${made.text}), newer than this pg_restore reads; the backup is not at fault`,
    fix: `restore with pg_restore ${made.major} or newer (install the PostgreSQL ${made.major} client tools in the runner image, or put them first on PATH)`,
  };
}

/** A manifest's pg_dump version, or undefined when it reads as none. */
function readVersion(text: string | undefined): PgVersion | undefined {
  try {
    return text === undefined ? undefined : parseToolVersion(text);
  } catch {
    return undefined;
  }
}

export async function loadBackup(input: LoadInput): Promise<void> {
  const env = toolEnv(input.connection, input.database);
  if (input.format === 'custom') {
    const pgRestore = pgToolPath('pg_restore', input.pgBinDir);
    const noOwner = input.noOwner ? ['--no-owner'] : [];
    // Pre-data first, on its own: it holds the owners, and the grants of tables and large objects
    // (pg_restore counts an ACL entry in its object's section), so a role the server lacks fails
    // it in milliseconds, where a single run fails a grant only in its last pass, after all the
    // data. Without --exit-on-error, so that one run names the missing roles of every object: the
    // staging database is dropped on any failure anyway. Two gaps. A DEFAULT ACL entry (ALTER
    // DEFAULT PRIVILEGES) is post-data, restored in the second run's grants pass: a grantee the
    // server lacks that only default privileges name gets the same roles line, "after the data",
    // once the whole data and its indexes are loaded, and that time is lost (the staging database
    // is dropped). And the grants now apply before the data (an owner that revoked its own INSERT,
    // restored by a role that is not a superuser, has its COPY refused).
    const run = async (args: string[], when: string): Promise<void> => {
      const missing = missingRoles();
      const result = await runTool(pgRestore, [...noOwner, ...args, '-d', input.database, input.file], { env, signal: input.signal, onStderrLines: missing.read });
      if (result.code !== 0) throw loadFailure(result, missing.roles, input, when);
    };
    // Schema public is made by CREATE DATABASE (PostgreSQL 15: the database owner's), so the archive
    // holds only its grants, e.g. GRANT CREATE ON SCHEMA public TO app: the usual way to let the
    // application's role create its tables in a database another role (RDS's master user) owns.
    // pg_restore runs grants in its last pass, after giving each object to its owner, and a role
    // that is not a superuser may give an object in public only to a role that may create there:
    // each such restore failed at the load's start ("permission denied for schema public").
    await grantPublicFirst(input, pgRestore, env);
    await run(['--section=pre-data'], 'before the data');
    await run(['--section=data', '--section=post-data', '--exit-on-error', '-j', String(input.jobs ?? os.availableParallelism())], 'after the data');
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
      throw new OperatorError(`${name} is not a readable gzip stream (${reason}): psql was stopped before it committed; the target was not touched; ${badBackupFix(input.otherCopy, input.environmentName)}`);
    }
    throw new OperatorError(`cannot read the downloaded ${name} (${reason}): psql was stopped before it committed; the target was not touched; retry, and check the local disk (TMPDIR)`);
  });
  if (result.code !== 0) {
    throw new OperatorError(serverGone(result.stderr) ?? `psql failed (exit ${result.code}): ${firstError(result.stderr)}${ownerFix(firstError(result.stderr), input, input.backupOwner)}; the target was not touched`);
  }
}

/**
 * The words of libpq and PostgreSQL when the connection was lost under the load: the server
 * crashed or restarted (its disk full: pg_wal ENOSPC stops the whole server), a session was ended,
 * or a connection again was refused while the server is down or recovers. Only those: a connection
 * the server answered and refused for its settings (a password, a database, a permission: `...
 * failed: FATAL:  password authentication failed`) is no server gone, and waiting for it to answer
 * mends nothing; that one is the load's own failure, quoted as such.
 */
const CONNECTION_LOST =
  /server closed the connection unexpectedly|terminating connection|connection to server (?:was )?lost|(?:connection to server (?:at .*?, port \d+|on socket "[^"]*") failed|could not connect to server): (?:Connection refused|No such file or directory)|the database system is (?:in recovery mode|not yet accepting connections|starting up|shutting down)/;

/**
 * The line of a load that failed because the server went away (CONNECTION_LOST on pg_restore's or
 * psql's stderr, whose line is quoted): what to look at and when to rerun, not a pg_restore or psql fault. Undefined otherwise.
 */
function serverGone(stderr: string): string | undefined {
  const lost = stderr.split('\n').find((line) => CONNECTION_LOST.test(line));
  if (lost === undefined) return undefined;
  return `the server went away during the load (a crash, a restart, or its disk full: check the server's log, on RDS FreeStorageSpace): ${oneLine(lost).slice(0, 300)}; rerun once it answers (psql -c 'SELECT 1'); the target was not touched`;
}

/**
 * The roles PostgreSQL said are missing on pg_restore's stderr (`ERROR:  role "x" does not exist`,
 * then `Command was: <statement>`), read as its lines come (stderr is kept only in part), each as
 * 'owner' when every statement that named it gave it an object (ALTER ... OWNER TO), which
 * --no-owner leaves out, else 'grants'. An object's grants are one command: PostgreSQL names only
 * the first missing role of each.
 */
function missingRoles(): { readonly roles: Map<string, RoleUse>; read(lines: string[]): void } {
  const roles = new Map<string, RoleUse>();
  let named: string | undefined;
  return {
    roles,
    read(lines) {
      for (const line of lines) {
        const role = MISSING_ROLE.exec(line)?.[1];
        if (role !== undefined) named = role;
        else if (named !== undefined && line.startsWith('Command was: ')) {
          const use = /^Command was: ALTER .+ OWNER TO /.test(line) ? 'owner' : 'grants';
          if (roles.get(named) !== 'grants') roles.set(named, use);
          named = undefined;
        }
      }
    },
  };
}

const MISSING_ROLE = /role "(.+?)" does not exist/;

/**
 * A pg_restore run's failure: the roles it found missing, in one line with what creates them
 * (exit 2, the server's setup), saying `when` it stopped; else, its first error, as any load's.
 */
function loadFailure(result: ToolResult, missing: ReadonlyMap<string, RoleUse>, input: LoadInput, when: string): OperatorError {
  const first = firstError(result.stderr);
  const gone = serverGone(result.stderr);
  if (gone !== undefined) return new OperatorError(gone);
  if (missing.size === 0) return new OperatorError(`pg_restore failed (exit ${result.code}): ${first}${ownerFix(first, input, failedOwnerTo(result.stderr) ?? input.backupOwner, result.stderr)}; the target was not touched`);
  return new OperatorError(`pg_restore stopped ${when}: ${missingRolesLine(missing, input.connection.user, input.noOwnerAdvice, true)}; the target was not touched`, 2);
}

/**
 * The role the statement under pg_restore's first error gave its object to (`Command was: ALTER
 * TABLE public.t OWNER TO alice;`, the name quoted as pg_dump writes it); undefined when that
 * statement gives no owner.
 */
function failedOwnerTo(stderr: string): string | undefined {
  const lines = stderr.split('\n');
  const command = lines[lines.findIndex(isErrorLine) + 1] ?? '';
  const owner = /^Command was: ALTER .+ OWNER TO (?:"((?:[^"]|"")+)"|([^\s";]+));$/.exec(command);
  return owner === null ? undefined : (owner[2] ?? owner[1].replaceAll('""', '"'));
}

/**
 * The GRANT statements of the archive's grant entry for schema public, run before the load: they
 * only add rights, all of which the entry gives again in pg_restore's last pass, after its REVOKEs
 * (pg_dump writes those first), so public ends exactly as backed up. Its REVOKEs wait for that
 * pass: run first, an owner's revoke of its own CREATE would refuse every table to the restoring
 * role. Best effort: an entry given under another role's authority (SET SESSION AUTHORIZATION,
 * a superuser's), or a run that fails (a role this server lacks, no psql), leaves the load as it
 * was without it, and the load names what is wrong. The entry's line in the archive's table of
 * contents is `<id>; 0 0 ACL - SCHEMA public <owner>`; a schema "public x" has one more word.
 */
async function grantPublicFirst(input: LoadInput, pgRestore: string, env: Record<string, string>): Promise<void> {
  const entry = input.toc.split('\n').filter((line) => /^\d+; \d+ \d+ ACL - SCHEMA public \S+$/.test(line));
  if (entry.length === 0) return;
  const list = path.join(path.dirname(input.file), 'public-grants.list');
  fs.writeFileSync(list, `${entry.join('\n')}\n`);
  const sql = (await runTool(pgRestore, ['--use-list', list, '--file=-', input.file], { env: toolEnv(undefined), signal: input.signal })).stdout;
  const grants = sql.split('\n').filter((line) => line.startsWith('GRANT ') && line.endsWith(';'));
  if (grants.length === 0 || sql.includes('SET SESSION AUTHORIZATION')) return;
  await runTool(pgToolPath('psql', input.pgBinDir), ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', input.database, '-c', grants.join('\n')], { env, signal: input.signal }).catch((error: unknown) => {
    if (input.signal?.aborted) throw error;
  });
}

/** PostgreSQL's refusal to give an object to a role the restoring role is not a member of (16: may not SET ROLE to). */
const NOT_MEMBER = /must be (?:member of role|able to SET ROLE) "(.+?)"/;

/**
 * What to do when the load stopped on an object's owner. pg_restore (without --no-owner) and the
 * plain SQL give each object to its owner in the backup right after creating it, so this comes
 * within seconds of the load's start: the restoring role is neither a superuser nor a member of
 * that role (PostgreSQL 16 says "must be able to SET ROLE"), or the server has no such role (a new
 * server: roles are not in a pg_dump). '' for any other failure.
 */
function ownerFix(line: string, input: LoadInput, knownOwner: string | undefined, stderr = ''): string {
  const { connection: { user: restorer }, newTarget, noOwnerAdvice } = input;
  const you = quoteIdent(restorer);
  const orNoOwner = noOwnerAdvice ? `, or ${noOwnerAdvice} to have them owned by "${restorer}"` : '';
  // PostgreSQL 15: only the database's owner may create in public, and giving an object in public
  // to a role needs that role to be allowed to create there. A new name's database is the
  // restoring role's, so a role that is not a superuser cannot give the backup's objects back.
  // The owner to create it for: the one pg_restore's failed statement gives objects to, which needs
  // CREATE in public (the backed-up database's owner may be another role, one this role may not
  // even create a database for: RDS's master user, a superuser's database); else the manifest's
  // database owner. Unknown, and left for the operator to fill in, for a backup taken before
  // manifests recorded it, with the plain format (psql prints no failed statement).
  if (newTarget !== undefined && /permission denied for schema public/.test(line)) {
    return ` (the new database is owned by "${restorer}", and only its owner may create in its schema public, so "${restorer}", not a superuser, cannot give the backup's objects to their owner: create the database empty for that owner first (CREATE DATABASE ${quoteIdent(newTarget)} OWNER ${knownOwner === undefined ? "<the backup's owner>" : quoteIdent(knownOwner)}) and restore into it${noOwnerAdvice ? `, restore as a superuser, or ${noOwnerAdvice}` : ', or restore as a superuser'})`;
  }
  // The plain SQL runs in its order, schema public's grants at its end: the custom archive's
  // load gives them first (loadBackup).
  if (input.format === 'plain' && /permission denied for schema public/.test(line)) {
    return ` (the backup grants CREATE on schema public to the objects' owner, which the plain SQL does only at its end, after giving them their objects: restore the custom format (without --format plain), whose load gives those grants first, or restore as a superuser)`;
  }
  if (NOT_MEMBER.test(line)) {
    // pg_restore's pre-data run goes on past a refusal: every owner refused is on its stderr, each
    // named once here, so that one GRANT unblocks the restore (psql stops at its first).
    const owners = [...new Set(Array.from(`${line}\n${stderr}`.matchAll(new RegExp(NOT_MEMBER, 'g')), (m) => m[1]))];
    if (owners.length > 1) {
      const named = owners.map((o) => `"${o}"`).join(', ');
      return ` (the backup's objects are owned by roles ${named}, and role "${restorer}" may not give them to them: restore as a member of them all (have an admin run GRANT ${owners.map(quoteIdent).join(', ')} TO ${you})${orNoOwner})`;
    }
    const [owner] = owners;
    return ` (the backup's objects are owned by role "${owner}", and role "${restorer}" may not give them to it: restore as "${owner}" or as a member of it (have an admin run GRANT ${quoteIdent(owner)} TO ${you})${orNoOwner})`;
  }
  // The restoring role (not a superuser) writes as a member of the objects' owner: refused one of
  // those, the owner itself lacks it. pg_restore gives the objects' grants with them, before the
  // data (the load's pre-data run), so an owner that revoked a privilege from itself (INSERT,
  // REFERENCES, TRIGGER, a sequence's UPDATE, a large object's) has its own data or constraints
  // refused. A superuser ignores grants; with --no-owner the restoring role owns the objects.
  if (/permission denied for (?:table|sequence|large object) |could not open large object .*permission denied/.test(line)) {
    return ` (the backup's grants revoke a privilege from the objects' owner, which "${restorer}", not a superuser, loads the data as, or "${restorer}" is NOINHERIT and does not use the owner's rights: restore as a superuser${noOwnerAdvice ? `, or ${noOwnerAdvice} to have them owned by "${restorer}"` : ''})`;
  }
  const missing = MISSING_ROLE.exec(line);
  if (missing) {
    const owner = missing[1];
    return ` (the backup names role "${owner}", which this server does not have: roles are not in a pg_dump: ${createRolesAdvice([owner], owner)}${orNoOwner})`;
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
 * How long a client program has to end after an abort's SIGTERM before it gets SIGKILL. pg_restore's
 * and psql's SIGTERM handlers first ask the server to cancel their queries, and wait for it: a
 * server that does not answer (stopped, overloaded, cut off) held the stopped restore, and its
 * cleanup after it, for as long as it did not answer. Killed, the child leaves nothing the cleanup
 * needs: its connections close, its uncommitted transaction is rolled back by the server, and the
 * staging database it loaded is dropped (DROP DATABASE ... WITH (FORCE) ends what still runs there).
 */
export const KILL_AFTER_MS = 3_000;

/**
 * Runs a client program to its end. `stdin` is piped in; an error of `stdin` (a gzip stream cut
 * short) kills the child and rejects with that error once the child has exited: ending the child's
 * input instead would read as the end of the SQL to psql, which commits what it has. An abort
 * kills the child (SIGTERM, then SIGKILL after KILL_AFTER_MS) and rejects with the signal's reason
 * once the child has exited, so nothing outlives the caller's cleanup.
 */
export function runTool(
  file: string,
  args: string[],
  options: {
    env: Record<string, string>;
    stdin?: Readable;
    signal?: AbortSignal;
    /** Whole lines of stderr as they come, besides keeping its start in `stderr`. */
    onStderrLines?: (lines: string[]) => void;
  },
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
    const stderrLines = options.onStderrLines && lineSplitter(options.onStderrLines);
    child.stdout?.setEncoding('utf8').on('data', (d: string) => {
      if (stdout.length < 50_000_000) stdout += d;
    });
    child.stderr?.setEncoding('utf8').on('data', (d: string) => {
      stderrLines?.write(d);
      if (stderr.length < 100_000) stderr += d;
    });
    let killer: NodeJS.Timeout | undefined;
    const onAbort = (): void => {
      child.kill('SIGTERM');
      killer = setTimeout(() => killWithWorkers(child), KILL_AFTER_MS);
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
      clearTimeout(killer);
      options.signal?.removeEventListener('abort', onAbort);
      stderrLines?.end();
      options.stdin?.destroy();
      if (options.signal?.aborted) reject(options.signal.reason as Error);
      else if (inputError !== undefined) reject(inputError as Error);
      else resolve({ code, stdout, stderr });
    });
  });
}

/**
 * SIGKILL to `child` and to its own children: pg_restore -j forks its workers, which hold its stdout
 * and stderr, so the child's end is seen only once they are gone too, and they wait on the same
 * server. Read before the kill, while they are still the child's (Linux's /proc; elsewhere, the
 * child alone).
 */
function killWithWorkers(child: ChildProcess): void {
  let workers: number[] = [];
  try {
    workers = fs.readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8').split(' ').filter(Boolean).map(Number);
  } catch {
    // No /proc, or the child already gone.
  }
  child.kill('SIGKILL');
  for (const pid of workers) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
}

/** Text as it comes, to `onLines` a whole line at a time; end() gives the last line without its line end. */
function lineSplitter(onLines: (lines: string[]) => void): { write(text: string): void; end(): void } {
  let partial = '';
  return {
    write(text) {
      const lines = (partial + text).split('\n');
      partial = lines.pop() ?? '';
      onLines(lines);
    },
    end() {
      if (partial !== '') onLines([partial]);
      partial = '';
    },
  };
}
