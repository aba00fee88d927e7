import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { type Readable, pipeline } from 'node:stream';
import type { Client } from 'pg';
import { createGunzip } from 'node:zlib';
import { isErrorLine, pgToolPath, quoteIdent } from '../shared/postgres';
import { OperatorError, oneLine } from '../shared/errors';
import type { BackupObject } from '../shared/manifest';
import { libpqEnv, PgConnection, ReadGivenUp, setShortBounds, shortQuery } from '../shared/pg-connection';
import { LocalSpaceError, badBackupFix, isOutOfSpace } from './download';

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

/**
 * A role name as pg_dump writes it (fmtId): quoted when it must be (`"Weird Role"`, inner quotes
 * doubled), else bare. Bare `PUBLIC` is not a role but everybody.
 */
const ROLE = String.raw`("(?:[^"]|"")+"|[^\s";]+)`;
/**
 * The header pg_restore writes above each table-of-contents entry, with the entry's type and
 * owner (`-` with --no-owner); names in it are not quoted, and line ends in them are blanked out.
 * Read from the right: an object's own name may hold "; Type: ", the type is one of pg_dump's
 * upper-case words, and a table in a tablespace of its own ends with "; Tablespace: ts".
 */
const ENTRY_HEADER = /^-- (?:\w+ for )?Name: .*; Type: ([A-Z ]+); Schema: .*; Owner: (.*?)(?:; Tablespace: .*)?$/;
/** The owner pg_dump gives an entry's object, right after creating it: always the entry's owner. */
const OWNER_STATEMENT = new RegExp(`^ALTER (?!DEFAULT PRIVILEGES ).+ OWNER TO ${ROLE};$`);
/**
 * The statements of an ACL or DEFAULT ACL entry that name a role: a grantee (`GRANT ... TO r;`,
 * `REVOKE ... FROM r;`, both after `ALTER DEFAULT PRIVILEGES`), the role whose default privileges
 * those are (`FOR ROLE r`), and a grantor that is not the owner (`SET SESSION AUTHORIZATION r;`).
 */
const GRANT_STATEMENTS: readonly RegExp[] = [
  new RegExp(`^(?:GRANT|REVOKE|ALTER DEFAULT PRIVILEGES) .+ (?:TO|FROM) ${ROLE}(?: WITH GRANT OPTION| CASCADE)?;$`),
  new RegExp(`^ALTER DEFAULT PRIVILEGES FOR ROLE ${ROLE} `),
  new RegExp(`^SET SESSION AUTHORIZATION ${ROLE};$`),
];

/** What the backup does with a role: give it objects (which --no-owner leaves out), or privileges (which only the role itself satisfies). */
export type RoleUse = 'owner' | 'grant';

/**
 * Reads the roles that `pg_restore --schema-only --file=-` names, and what for (a role both owner
 * and grantee counts as 'grant'), from its lines as they come. A statement counts only where
 * pg_dump writes it, by the header of the entry it is in: grants in an ACL or DEFAULT ACL entry,
 * and an ALTER ... OWNER TO naming the entry's owner. A function body or a comment may hold lines
 * of exactly those shapes, naming any role, without the load ever granting to it; only a body that
 * also holds a copy of an entry's header could still add one. One reader per pg_restore output
 * (the entry it is in is the output's); `roles`: the map of another output's reader, to add to.
 */
export function roleReader(roles = new Map<string, RoleUse>()): { readonly roles: Map<string, RoleUse>; read(lines: Iterable<string>): void } {
  let entry: { readonly type: string; readonly owner: string } | undefined;
  const add = (role: string, use: RoleUse): void => {
    if (roles.get(role) !== 'grant') roles.set(role, use);
  };
  return {
    roles,
    read(lines) {
      for (const line of lines) {
        const header = ENTRY_HEADER.exec(line);
        if (header) entry = { type: header[1], owner: header[2] };
        if (header || entry === undefined) continue;
        const owner = OWNER_STATEMENT.exec(line)?.[1];
        if (owner !== undefined && unquoteRole(owner) === entry.owner) add(entry.owner, 'owner');
        if (entry.type !== 'ACL' && entry.type !== 'DEFAULT ACL') continue;
        for (const pattern of GRANT_STATEMENTS) {
          const name = pattern.exec(line)?.[1];
          // Bare PUBLIC is everybody; a quoted "PUBLIC" is a role of that name.
          if (name !== undefined && name !== 'PUBLIC') add(unquoteRole(name), 'grant');
        }
      }
    },
  };
}

function unquoteRole(name: string): string {
  return name.startsWith('"') ? name.slice(1, -1).replaceAll('""', '"') : name;
}

/**
 * The table-of-contents lines (`pg_restore --list`) of a large object's owner (`3340; 2613 4242
 * BLOB - 4242 app`; one entry for many large objects, `BLOB METADATA`, from PostgreSQL 17) and of
 * its privileges (`3349; 0 0 ACL - LARGE OBJECT 4242 app`). pg_restore counts them as data, so
 * `--schema-only` leaves them out, yet their statements are in the table of contents like any
 * schema entry's: the large objects' contents are a separate `BLOBS` entry, not selected here.
 */
const LARGE_OBJECT_ENTRY = /^\d+; \d+ \d+ (?:BLOB |ACL - LARGE OBJECTS? )/;

/** What a load of a custom archive needs from the server, read from the archive before anything is created. */
export interface ArchiveNeeds {
  /** Every role the load names, and what for. */
  readonly roles: Map<string, RoleUse>;
  /** The owner of the backed-up database (its DATABASE entry); undefined when the entry is missing or not of that name. */
  readonly databaseOwner: string | undefined;
  /** The backed-up database's own properties, as the archive gives them (propertyReader). */
  readonly databaseProperties: DatabasePropertiesOfBackup;
}

export interface DatabasePropertiesOfBackup {
  /**
   * The statements that give the backed-up database its own properties (its settings and its roles'
   * settings in it, its comment, its grants), naming it as pg_dump does (fmtId), one each.
   */
  readonly statements: string[];
  /**
   * Whether pg_dump wrote them for standard_conforming_strings on (its `SET standard_conforming_strings
   * = on` before them, as every server since 9.1 by default: a backslash in a literal is then a
   * backslash) or off (backslashes are escapes): the session that runs them is set the same way
   * (giveBackupProperties), or a literal would end elsewhere than pg_dump meant.
   */
  readonly conformingStrings: boolean;
  /**
   * The first characters of each statement that ends without its final `;` (pg_dump always writes
   * one: the archive is cut or odd), one line each; absent when every statement ended. Never run:
   * what it would do, cut, is not known (a cut REVOKE revokes less). One is known to end where the
   * next entry's header (or psql's next own line) begins, outside quotes: the entries after it are
   * still read.
   */
  readonly unfinished?: readonly string[];
  /**
   * The last unfinished statement opens a quote the text never closes: every line after it was
   * read as part of it, so the property entries after it (a lockdown REVOKE among them) were not
   * read either, and the warning must say so.
   */
  readonly quoteLeftOpen?: true;
}

/** How much of an unfinished statement a line quotes. */
const UNFINISHED_SHOWN = 80;

/**
 * The list lines of the backed-up database's own properties, which pg_dump always writes and
 * pg_restore lists, and loads, only with --create (which the load does not use: it loads into the
 * staging database): `3342; 0 0 DATABASE PROPERTIES - atmr app` (its ALTER DATABASE ... SET and
 * ALTER ROLE ... IN DATABASE ... SET), `3340; 0 0 COMMENT - DATABASE atmr app`, `3341; 0 0 ACL -
 * DATABASE atmr app`. Only a database's entries are of these kinds with that tag.
 */
const DATABASE_PROPERTY_ENTRY = /^\d+; 0 0 (?:DATABASE PROPERTIES|COMMENT - DATABASE|ACL - DATABASE) /;
/** The types those entries have in the headers pg_restore writes above their statements. */
const DATABASE_PROPERTY_TYPES = new Set(['DATABASE PROPERTIES', 'COMMENT', 'ACL']);
/**
 * A whole statement: it ends with a semicolon outside quotes (a comment may hold semicolons and line
 * ends). A doubled quote inside a literal (`'it''s'`) reads as two literals side by side, which splits
 * the same way: each character has one way to match, so the test is linear. (`'(?:[^']|'')*'` had two
 * ways for each `''`, and a comment with some 30 apostrophes before a line end took minutes, the
 * event loop blocked: no Ctrl-C, no deadline.)
 */
const WHOLE_STATEMENT = /^(?:[^'";]|'[^']*'|"[^"]*")*;$/;
/** The session setting pg_restore writes before the entries: how pg_dump wrote their literals. */
const CONFORMING_STRINGS = /^SET standard_conforming_strings = (on|off);$/;

/**
 * The statements of the database-property entries in `pg_restore --create -L <those entries>`'s
 * SQL, which also holds the CREATE DATABASE (an entry of type DATABASE, left out) and psql's own
 * lines (`\connect`, `\restrict`), after which come the session's SETs, which are no entry's.
 */
export function propertyReader(): { readonly properties: DatabasePropertiesOfBackup; read(lines: Iterable<string>): void } {
  const statements: string[] = [];
  let conformingStrings = false;
  let inEntry = false;
  let pending = '';
  const unfinished: string[] = [];
  // Its text as a line names it: the comment lines pg_restore wrote after it (the next header's `--`) left out.
  const shown = (text: string): string =>
    text
      .replace(/(?:\n(?:--.*)?)+$/, '')
      .replace(/\s+/g, ' ')
      .trim()
      .slice(0, UNFINISHED_SHOWN);
  /** Outside quotes at its end: a `;` there would have ended it. */
  const quotesClosed = (text: string): boolean => WHOLE_STATEMENT.test(`${text};`);
  return {
    // A statement still pending at the end had no final `;`: named, never run.
    get properties() {
      const cut = pending === '' ? unfinished : [...unfinished, shown(pending)];
      return { statements, conformingStrings, ...(cut.length > 0 && { unfinished: cut }), ...(pending !== '' && !quotesClosed(pending) && { quoteLeftOpen: true as const }) };
    },
    read(lines) {
      for (const line of lines) {
        // The next entry's header (or psql's own line) outside quotes: the statement before it ended
        // without its `;`. Named, and the entries after it still read (before, one cut statement
        // took every later entry, a lockdown REVOKE included, into its text, and none was given).
        // Inside quotes such a line is a literal's text (a comment written to look like a header),
        // never a boundary: the literal's text must not be read as statements.
        if (pending !== '' && (ENTRY_HEADER.test(line) || line.startsWith('\\')) && quotesClosed(pending)) {
          unfinished.push(shown(pending));
          pending = '';
        }
        if (pending === '') {
          const header = ENTRY_HEADER.exec(line);
          if (header || line.startsWith('\\')) inEntry = header !== null && DATABASE_PROPERTY_TYPES.has(header[1]);
          const conforming = inEntry ? null : CONFORMING_STRINGS.exec(line);
          if (conforming) conformingStrings = conforming[1] === 'on';
          if (header || !inEntry || line.trim() === '' || line.startsWith('--') || line.startsWith('\\')) continue;
        }
        pending = pending === '' ? line : `${pending}\n${line}`;
        if (WHOLE_STATEMENT.test(pending)) {
          statements.push(pending);
          pending = '';
        }
      }
    },
  };
}

/**
 * Every role a load of the custom archive `file` needs on the server: the roles of the SQL that
 * `pg_restore --schema-only` writes for it, and of its large objects' owners and privileges, which
 * `--schema-only` leaves out (the archive has them among its data: restored with it, an owner
 * fails the load's start, a grant its very end). With the load's --no-owner, so exactly the owners
 * the load would set. No data is read, no database touched: the statements are in the archive's
 * table of contents, which `--list` names and `-L` of just the large objects' entries prints (run
 * only when there are large objects). Milliseconds. Read as it streams: a schema of many objects
 * is not held.
 *
 * The same list gives the owner of the backed-up database `database` (the manifest's), from the
 * DATABASE entry that pg_dump always writes and pg_restore lists with --create: `3344; 1262 16386
 * DATABASE - atmr app`. The list's names are not quoted, so the owner is what follows the
 * database's own name. And the entries of that database's own properties, whose statements `-L`
 * of just those lines prints (with --create, which they belong to): a new name is given them.
 */
export async function archiveNeeds(input: Pick<LoadInput, 'file' | 'pgBinDir' | 'noOwner' | 'signal' | 'otherCopy'>, database: string, untouched: string): Promise<ArchiveNeeds> {
  const reader = roleReader();
  const pgRestore = pgToolPath('pg_restore', input.pgBinDir);
  const noOwner = input.noOwner ? ['--no-owner'] : [];
  const largeObjects: string[] = [];
  const propertyEntries: string[] = [];
  const databaseEntry = `DATABASE - ${database} `;
  let databaseOwner: string | undefined;
  const readList = (lines: string[]): void => {
    for (const line of lines) {
      if (LARGE_OBJECT_ENTRY.test(line)) largeObjects.push(line);
      if (DATABASE_PROPERTY_ENTRY.test(line)) propertyEntries.push(line);
      const rest = /^\d+; \d+ \d+ (.*)$/.exec(line)?.[1];
      if (databaseOwner === undefined && rest?.startsWith(databaseEntry)) databaseOwner = rest.slice(databaseEntry.length) || undefined;
    }
  };
  const run = (args: string[], onStdoutLines: (lines: string[]) => void): Promise<ToolResult> => runTool(pgRestore, [...args, input.file], { env: toolEnv(undefined), signal: input.signal, onStdoutLines });
  // Both at once, and both waited for: neither outlives a failure of the other.
  const [schema, list] = await Promise.allSettled([run(['--schema-only', ...noOwner, '--file=-'], (lines) => reader.read(lines)), run(['--create', '--list'], readList)]);
  for (const result of [schema, list]) {
    if (result.status === 'rejected') throw result.reason as Error;
    checkReadable(result.value, input, untouched);
  }
  // -L alone prints exactly the entries listed, whatever pg_restore counts them as. The lines are
  // held (one per large object up to PostgreSQL 16) as pg_restore holds its whole list anyway.
  const printListed = async (kind: string, entries: string[], args: string[], onStdoutLines: (lines: string[]) => void): Promise<void> => {
    const listFile = `${input.file}.${kind}.list`;
    try {
      await writeList(listFile, entries, kind, untouched);
      checkReadable(await run(['-L', listFile, ...args, '--file=-'], onStdoutLines), input, untouched);
    } finally {
      await fs.promises.rm(listFile, { force: true });
    }
  };
  if (largeObjects.length > 0) {
    const largeObjectReader = roleReader(reader.roles);
    await printListed('large-object', largeObjects, noOwner, (lines) => largeObjectReader.read(lines));
  }
  const properties = propertyReader();
  if (propertyEntries.length > 0) await printListed('database-property', propertyEntries, ['--create'], (lines) => properties.read(lines));
  return { roles: reader.roles, databaseOwner, databaseProperties: properties.properties };
}

/** Lines of the list of large objects' entries written at a time: ~0.5 MB, far below V8's longest string. */
const LIST_CHUNK_LINES = 10_000;

/**
 * Writes `lines`, entries of `kind`, to `file` for pg_restore -L, a chunk at a time: one string of the whole list (a
 * line per large object up to PostgreSQL 16, so millions of lines for some databases) would pass
 * V8's longest string and fail with "Invalid string length". A failed write is one line saying
 * what to do; the caller removes the partial file.
 */
async function writeList(file: string, lines: readonly string[], kind: string, untouched: string): Promise<void> {
  try {
    const handle = await fs.promises.open(file, 'w');
    try {
      // writeFile on a handle writes from its current position, and the whole chunk (write() may not).
      for (let i = 0; i < lines.length; i += LIST_CHUNK_LINES) await handle.writeFile(`${lines.slice(i, i + LIST_CHUNK_LINES).join('\n')}\n`);
    } finally {
      await handle.close();
    }
  } catch (error) {
    const what = `the list of the archive's ${lines.length} ${kind} entries`;
    const dir = path.dirname(file);
    if (isOutOfSpace(error)) {
      throw new LocalSpaceError(
        `the local disk is full: TMPDIR (${dir}) ran out of space for ${what} (${(error as NodeJS.ErrnoException).code}): nothing was created, ${untouched}; the backup is not at fault: point TMPDIR at a larger disk (or free space there, or raise the Lambda ephemeral storage) and retry`,
      );
    }
    throw new OperatorError(`cannot write ${what} to ${file} (${oneLine(error)}): nothing was created, ${untouched}; check the local disk (TMPDIR: ${dir}) and retry`);
  }
}

/** The file passed its sha256: an archive pg_restore cannot read is as the backup wrote it. */
function checkReadable(result: ToolResult, input: Pick<LoadInput, 'file' | 'otherCopy'>, untouched: string): void {
  if (result.code !== 0) {
    throw new OperatorError(`pg_restore cannot read ${path.basename(input.file)} (exit ${result.code}): ${errorLine(result.stderr)}; nothing was created, ${untouched}; ${badBackupFix(input.otherCopy)}`);
  }
}

/**
 * Refuses, before anything is created, a load that needs roles this server does not have: a GRANT
 * to a missing role fails only at the end of the load (privileges come last), after all the data.
 * Roles are the server's, not a pg_dump's: a new server has none of the source's but its own.
 */
export async function checkRoles(admin: Client, roles: ReadonlyMap<string, RoleUse>, backup: string, restorer: string, untouched: string, noOwnerAdvice?: string): Promise<void> {
  const { rows } = await admin.query<{ name: string }>(
    'SELECT name FROM unnest($1::text[]) AS name WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = name) ORDER BY name COLLATE "C"',
    [[...roles.keys()]],
  );
  if (rows.length === 0) return;
  const missing = rows.map((r) => r.name);
  const named = missing.map((r) => `"${r}" (${roles.get(r) === 'owner' ? 'owner' : 'grants'})`).join(', ');
  const create = missing.map((r) => `CREATE ROLE ${quoteIdent(r)}`).join('; ');
  // --no-owner leaves out the owners, never a GRANT: offered only when it would be enough.
  const noOwner = noOwnerAdvice && missing.every((r) => roles.get(r) === 'owner') ? `, or ${noOwnerAdvice} to have the objects owned by "${restorer}"` : '';
  throw new OperatorError(
    `backup ${backup} names ${missing.length === 1 ? 'a role' : `${missing.length} roles`} this server does not have: ${named}; roles are not in a pg_dump: create them first as on the source server (${create}; or pg_dumpall --roles-only there, run here)${noOwner}, then restore again; nothing was created, ${untouched}`,
    2,
  );
}

/**
 * Reports `database`'s size on disk through `admin` (the restore's session) now, every `intervalMs`
 * and once more on `stop()` (which waits for a read in flight, so that `admin` is free again when it
 * resolves). On that session, not one of its own: a second session takes a connection slot that
 * pg_restore needs when the role's CONNECTION LIMIT or max_connections is nearly reached. Each read is
 * bounded on the server (SET LOCAL lock_timeout and statement_timeout of SHORT_SESSION_BOUNDS, in a
 * transaction of its own): a lock held on pg_database is one warning and the load goes on without
 * its progress; the cancel ends the read's transaction, never the session, so the restore's
 * session-level advisory lock stays (9d7e91d ended the session on a read given up, and a second
 * restore took the first's staging database for a killed one's). Any other failure only skips a
 * report: this is progress, and what broke the connection breaks the next step.
 */
export function watchDatabaseSize(
  admin: Client,
  connection: PgConnection,
  maintenance: string,
  database: string,
  onSize: (bytes: number) => void,
  warn: (line: string) => void,
  intervalMs = 1000,
): { stop(): Promise<void> } {
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  let givenUp = false;
  let inFlight: Promise<void> = Promise.resolve();
  const sample = async (): Promise<void> => {
    if (givenUp) return;
    try {
      await admin.query('BEGIN');
      try {
        await setShortBounds(admin);
        const rows = await shortQuery<{ bytes: string }>(admin, connection, maintenance, `the read of "${database}"'s size (pg_database_size)`, 'SELECT pg_database_size($1) AS bytes', [database]);
        onSize(Number(rows[0].bytes));
      } finally {
        await admin.query('ROLLBACK');
      }
    } catch (error) {
      if (!(error instanceof ReadGivenUp)) return;
      givenUp = true;
      warn(`${error.message}; the load goes on without its progress`);
    }
  };
  const tick = (): void => {
    inFlight = sample().then(() => {
      if (!stopped && !givenUp) timer = setTimeout(tick, intervalMs);
    });
  };
  tick();
  return {
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await inFlight;
      await sample();
    },
  };
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
