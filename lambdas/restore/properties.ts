/**
 * The restore's steps (restore.ts): catalog -> guards and leftovers -> download -> archive -> load
 * -> check -> properties -> swap. This is the properties, after the check and before the
 * swap: what a database has set on itself (settings, grants, connection limit, comment), given to
 * the staging database from the replaced target or, into a new name, from the backup; and the
 * warning of a copy read-only for the application. It does not touch the target, and does not read
 * the archive (the backup's properties come from its manifest, which the backup read them into).
 */

import type { Client } from 'pg';
import { type DatabaseProperties, type PropertyStatements, propertyStatements, readDatabaseProperties } from '../shared/database-properties';
import { quoteIdent, quoteLiteral } from '../shared/postgres';
import { OperatorError, oneLine } from '../shared/errors';
import { isRefusedStatement, sqlState, UNDEFINED_OBJECT } from '../shared/pg-errors';
import { isOn, roleReadOnlyReset } from '../shared/read-only';
import { boundedQuery, stopOnNoAnswer, SWAP_STATEMENT_BOUND_MS } from './session';

/**
 * What a database has set on itself besides its owner, which pg_restore without --create does not
 * load (the archive's DATABASE PROPERTIES entry belongs to --create): its settings (ALTER DATABASE
 * ... SET: the application's time zone, search_path), its grants (a REVOKE CONNECT ... FROM PUBLIC
 * that locks it down), its connection limit and its comment. A restore over `target` gives them
 * to `staging` before the swap, as it keeps the owner: without it the restored copy had none of
 * them, exit 0 and no word. They are read after the load: the live target's are the current ones.
 * Grants are made as the owner (the restoring role is the owner, a member of it, or a superuser:
 * checkTarget), whoever granted them: the same rights (propertyStatements). What cannot be given this way (a role's
 * settings in that database, which need rights over that role; what a database is created with)
 * is named in one warning line, with what it was: the old database is dropped after the swap with dropReplaced, and a kept one is renamed away.
 * Returns false, doing nothing, when `target` does not exist (a new name: giveBackupProperties
 * gives the backup's instead). A statement the server refuses (a superuser's setting, for a role
 * that is not one) is named in that warning with the statement that sets it on the target
 * afterwards: the restore of the data, which is what the worst day needs, is not thrown away after
 * its whole load for it (giveProperties).
 */
export async function keepDatabaseProperties(admin: Client, target: string, staging: string, warn: (line: string) => void): Promise<boolean> {
  const give = async (): Promise<{ properties: DatabaseProperties; notCarried: string[]; refused: string[] } | undefined> => {
    const properties = await readDatabaseProperties(
      (sql, params) => boundedQuery(admin, sql, SWAP_STATEMENT_BOUND_MS, params, `the read of what "${target}" has set on itself (pg_database, pg_db_role_setting)`),
      target,
    );
    if (properties === undefined) return undefined;
    const notCarried = (
      await boundedQuery<{ notCarried: string[] }>(
        admin,
        `SELECT array_remove(ARRAY[
                  CASE WHEN d.encoding <> s.encoding THEN format('ENCODING %s', pg_encoding_to_char(d.encoding)) END,
                  CASE WHEN (d.datcollate, d.datctype) <> (s.datcollate, s.datctype) THEN format('LC_COLLATE %s, LC_CTYPE %s', d.datcollate, d.datctype) END,
                  CASE WHEN d.dattablespace <> s.dattablespace THEN format('TABLESPACE %s', (SELECT spcname FROM pg_tablespace WHERE oid = d.dattablespace)) END,
                  CASE WHEN d.datistemplate THEN 'IS_TEMPLATE true' END,
                  CASE WHEN EXISTS (SELECT FROM pg_shseclabel l WHERE l.objoid = d.oid AND l.classoid = 'pg_database'::regclass) THEN 'its security labels' END
                ], NULL) AS "notCarried"
           FROM pg_database d, pg_database s WHERE d.datname = $1 AND s.datname = $2`,
        SWAP_STATEMENT_BOUND_MS,
        [target, staging],
        `the read of what "${target}" was created with (pg_database)`,
      )
    ).rows[0]?.notCarried ?? [];
    const statements = stagingStatements(properties, staging, target);
    const refused = await giveProperties(
      admin,
      statements.required,
      statements.settings,
      `what "${target}" has set on itself`,
      `restore as the owner of "${target}", a member of it, or a superuser`,
    );
    return { properties, notCarried, refused };
  };
  const found = await stopOnNoAnswer(give, (why) => `cannot give the restored copy what "${target}" has set on itself: ${why}`);
  if (found === undefined) return false;
  warnNotCarried(warn, `the replaced "${target}" to its restored copy`, [...found.refused, ...propertyStatements(found.properties, target).roleSettings, ...found.notCarried]);
  return true;
}

/** A statement that gives the staging database one of its properties, and how lines name it: as it sets that on the target once swapped in. */
interface PropertyStatement {
  readonly sql: string;
  readonly named: string;
}

/** The statements that give `staging` the database's properties, each named as it sets that on `target`. */
function stagingStatements(properties: DatabaseProperties, staging: string, target: string): Record<keyof PropertyStatements, PropertyStatement[]> {
  const onStaging = propertyStatements(properties, staging);
  const onTarget = propertyStatements(properties, target);
  const pair = (kind: keyof PropertyStatements): PropertyStatement[] => onStaging[kind].map((sql, i) => ({ sql, named: onTarget[kind][i] }));
  return { required: pair('required'), settings: pair('settings'), roleSettings: pair('roleSettings') };
}

/**
 * Runs on `admin` the statements that give the staging database its properties, whether they are
 * the replaced target's or the backup's, and returns those the server refused, each named with why.
 * The grants, connection limit and comment (`required`) first: one of them refused fails the
 * restore before the swap (staging dropped, the target untouched), since a copy swapped in without
 * its lockdown, or without its owner's CONNECT, is a hole or an outage; `advice` says what to do.
 * Except one refused because a role it names is not on this server (a backup restored on another
 * instance): it would grant to nobody and revoke from nobody here, so leaving it out opens nothing
 * (a REVOKE ... FROM PUBLIC names no role: it is always given); it is named with the refused. A
 * setting refused (a superuser's, for a role that is not one): named, not a restore thrown away
 * after its whole load. Any failure that is not the server refusing the statement (a lost
 * connection, a failover) stops the restore the same way.
 */
async function giveProperties(admin: Client, required: readonly PropertyStatement[], settings: readonly PropertyStatement[], what: string, advice: string): Promise<string[]> {
  const refused: string[] = [];
  const run = async ({ sql, named }: PropertyStatement, stop: boolean): Promise<void> => {
    await boundedQuery(admin, sql, SWAP_STATEMENT_BOUND_MS, undefined, sql, { single: true }).catch((error: unknown) => {
      if (!isRefusedStatement(error)) throw error;
      if (stop && sqlState(error) !== UNDEFINED_OBJECT) {
        throw new OperatorError(`cannot give the restored copy ${what}: ${sql} failed (${oneLine(error)}): ${sqlState(error) === '42501' ? advice : 'rerun the restore'}`);
      }
      refused.push(`${named} (refused: ${oneLine(error)})`);
    });
  };
  for (const statement of required) await run(statement, true);
  for (const statement of settings) await run(statement, false);
  return refused;
}

/**
 * One warning when the copy is read-only for the application: `default_transaction_read_only = on`
 * set on the database itself (the runbook's "DB Read-Only" mode, as the backed-up or replaced
 * database had it), or on a role in it (ALTER ROLE ... IN DATABASE, which the backup carries too),
 * which the copy was just given. The application's sessions then refuse every write, and the
 * restore said nothing of it: the worst day's restore looked done, the application down. Which role
 * the application connects as is not known here: each role's setting in the copy is named, with the
 * statement that lifts it, on the name the copy takes. A role's setting for every database (ALTER
 * ROLE ... SET, ALTER ROLE ALL SET) is the cluster's, which the restore neither gives nor changes,
 * and is often there on purpose (the backup runner's role, docs/backup-runner.md): not named.
 */
export async function warnIfReadOnly(admin: Client, staging: string, target: string, warn: (line: string) => void): Promise<void> {
  const check = `SELECT setrole::regrole AS role, setconfig FROM pg_db_role_setting WHERE setdatabase = (SELECT oid FROM pg_database WHERE datname = ${quoteLiteral(target)})`;
  // A warning only: a read that fails or is not answered must not stop the restore (the session's
  // own troubles show at the swap, which follows); the line then says how to look.
  // role: null for the database's own row.
  const rows = await boundedQuery<{ role: string | null; entry: string }>(
    admin,
    `SELECT r.rolname AS role, e AS entry
       FROM pg_db_role_setting s LEFT JOIN pg_roles r ON r.oid = s.setrole, unnest(s.setconfig) e
      WHERE s.setdatabase = (SELECT oid FROM pg_database WHERE datname = $1) AND lower(split_part(e, '=', 1)) = 'default_transaction_read_only'
      ORDER BY r.rolname COLLATE "C" NULLS FIRST`,
    SWAP_STATEMENT_BOUND_MS,
    [staging],
    `the read of whether the restored copy is read-only (pg_db_role_setting)`,
  ).then(
    (result) => result.rows,
    (error: unknown) => {
      warn(`could not read whether "${target}" will be read-only for the application (${oneLine(error)}): once the restore is done, look with ${check}; default_transaction_read_only=on there means every write is refused in it for that role (every role when "-")`);
      return [];
    },
  );
  const on = rows.filter((r) => isOn(r.entry.slice(r.entry.indexOf('=') + 1)));
  if (on.length === 0) return;
  const setting = 'default_transaction_read_only = on';
  const given = 'as the database it was given its settings from had it';
  const where = on.map(({ role }) => (role === null ? `it carries ${setting} at database level, ${given}` : `role "${role}" carries ${setting} in it (ALTER ROLE ... IN DATABASE), ${given}`));
  const resets = on.map(({ role }) =>
    role === null ? `ALTER DATABASE ${quoteIdent(target)} RESET default_transaction_read_only` : roleReadOnlyReset({ role, database: target, defaultSource: 'database user' }),
  );
  const roles = on.flatMap(({ role }) => (role === null ? [] : [`"${role}"`]));
  const everyone = on.some(({ role }) => role === null);
  warn(
    `"${target}" is read-only for the application${everyone ? '' : ` if it connects as ${roles.join(' or ')}`}: ${where.join(', and ')}, so ${everyone ? 'every session on it refuses' : `the sessions of ${roles.join(' and ')} on it refuse`} writes; to let the application write: ${resets.join('; ')}`,
  );
}

/** The one warning of what the restored copy was not given: `from` says whose and to which copy. */
function warnNotCarried(warn: (line: string) => void, from: string, lost: readonly string[]): void {
  if (lost.length > 0) warn(`not carried over from ${from}: ${lost.join('; ')}: set again by hand what is still needed`);
}

/**
 * A restore into a name that does not exist gives the staging database the backed-up database's
 * own properties, as the backup read them from the catalogs into its manifest (the manifest's
 * databaseProperties): its settings (the application's search_path and time zone), its roles'
 * settings in it, its comment, its grants (a REVOKE CONNECT ... FROM PUBLIC that locks it down), its
 * connection limit. Without it the copy had none of them, exit 0 and no word: another search_path
 * reads another schema's tables, and on the worst day production restored under its own name is a
 * new name. Each statement is run on `staging` and named on `target` in the lines. The policy is
 * keepDatabaseProperties' (giveProperties); a role's setting is given as a setting is, since a
 * superuser restoring may give it.
 */
export async function giveBackupProperties(admin: Client, properties: DatabaseProperties, source: string, target: string, staging: string, warn: (line: string) => void): Promise<void> {
  const statements = stagingStatements(properties, staging, target);
  const refused = await stopOnNoAnswer(
    () =>
      giveProperties(
        admin,
        statements.required,
        [...statements.settings, ...statements.roleSettings],
        `what the backed-up "${source}" had set on itself`,
        'restore as a superuser',
      ),
    (why) => `cannot give the restored copy what the backed-up "${source}" had set on itself: ${why}`,
  );
  warnNotCarried(warn, `the backed-up "${source}" to its restored copy "${target}"`, refused);
}
