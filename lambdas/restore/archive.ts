/**
 * The restore's steps (restore.ts): catalog -> guards and leftovers -> download -> archive -> load
 * -> check -> properties -> swap. This is the archive, after the download and before the
 * load: what a load of a custom archive needs from the server, read from the archive before
 * anything is created: the roles it names (checkRoles refuses a load that needs one the server
 * lacks). It loads nothing (load.ts).
 */

import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Client } from 'pg';
import { pgToolPath, quoteIdent } from '../shared/postgres';
import { OperatorError, oneLine } from '../shared/errors';
import { LocalSpaceError, badBackupFix, isOutOfSpace } from './download';
import { errorLine, LoadInput, runTool, ToolResult, toolEnv } from './load';

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
 */
export async function archiveNeeds(input: Pick<LoadInput, 'file' | 'pgBinDir' | 'noOwner' | 'signal' | 'otherCopy'>, untouched: string): Promise<ArchiveNeeds> {
  const reader = roleReader();
  const pgRestore = pgToolPath('pg_restore', input.pgBinDir);
  const noOwner = input.noOwner ? ['--no-owner'] : [];
  const largeObjects: string[] = [];
  const readList = (lines: string[]): void => {
    for (const line of lines) if (LARGE_OBJECT_ENTRY.test(line)) largeObjects.push(line);
  };
  const run = (args: string[], onStdoutLines: (lines: string[]) => void): Promise<ToolResult> => runTool(pgRestore, [...args, input.file], { env: toolEnv(undefined), signal: input.signal, onStdoutLines });
  // Both at once, and both waited for: neither outlives a failure of the other.
  const [schema, list] = await Promise.allSettled([run(['--schema-only', ...noOwner, '--file=-'], (lines) => reader.read(lines)), run(['--list'], readList)]);
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
  return { roles: reader.roles };
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
