/**
 * The restore's steps (restore.ts): catalog -> guards and leftovers -> download -> archive -> load
 * -> check -> properties -> swap. This is the guards, checked before any download: the
 * target's name, production and the system databases, a non-empty target, its sessions, what
 * the role may do, and the roles the backup names. They read and refuse; they create, drop or
 * change nothing (swap.ts runs checkTarget again at the swap). What a killed restore left is
 * leftovers.ts'.
 */

import type { Client } from 'pg';
import type { BackupRoles, RoleUse } from '../shared/backup-roles';
import { quoteIdent } from '../shared/postgres';
import { OperatorError } from '../shared/errors';
import { countOf } from '../shared/format';
import { PgConnection, connectTo } from '../shared/pg-connection';
import { boundedQuery, GUARD_READ_BOUND_MS, stopOnNoAnswer, SWAP_LOCK_TIMEOUT_MS } from './session';

export const PRODUCTION_GUARD_FLAG = '--i-understand-this-overwrites-production';
const DATABASE_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

export interface TargetGuards {
  /** Replace a non-empty target. */
  readonly force?: boolean;
  /** End the sessions connected to the target at swap time instead of refusing. */
  readonly terminateConnections?: boolean;
}

/**
 * `backedUp`: the database whose backup is restored, when known before the manifest is read
 * (latest's, or the one its manifest key names: backedUpDatabase). A backup accepts any name; a restore under a refused one goes through an accepted
 * one, and the rename is the operator's (docs/restore.md, "Swapping by hand").
 */
export function checkTargetName(target: string, backedUp?: string): void {
  if (!DATABASE_NAME.test(target)) {
    const accepted = target.toLowerCase().replace(/[^a-z0-9_]+/g, '_').replace(/^(?=\d)/, '_').slice(0, 63);
    const rename = target === backedUp ? `; to restore "${target}" under its own name, restore into an accepted one (e.g. --target-db ${accepted}), then ALTER DATABASE ${accepted} RENAME TO ${quoteIdent(target)} by hand (docs/restore.md)` : '';
    throw new OperatorError(`invalid --target-db "${target}": use ASCII letters, digits and underscores (at most 63, not starting with a digit)${rename}`, 2);
  }
}

/**
 * Runs before any connection, so it cannot tell whether `target` exists: production may have been
 * dropped (the database lost), and then the restore would create it. The line is true either way.
 */
export function guardProduction(target: string, protectedNames: readonly string[], allowed: boolean | undefined): void {
  if (!allowed && protectedNames.includes(target)) {
    throw new OperatorError(
      `refusing to restore into "${target}", the production/source database: restore replaces it, or creates it if it is missing; restore into a new name and swap (see docs/restore.md), or pass ${PRODUCTION_GUARD_FLAG} with --force (then type the database's name at the prompt, or add --yes)`,
      2,
    );
  }
}

/**
 * The database the restore connects to for CREATE/RENAME/DROP cannot be renamed while it is in use,
 * and template0/template1 are PostgreSQL's own: refused before any download, rather than failing
 * at swap time after a whole load.
 */
export function guardSystemDatabase(target: string, maintenance: string): void {
  if (target === maintenance || target === 'template0' || target === 'template1') {
    throw new OperatorError(
      `refusing --target-db "${target}": it is ${target === maintenance ? 'the maintenance database the restore works from' : 'a PostgreSQL template database'}; restore into another name (e.g. --target-db atmr_restored)`,
      2,
    );
  }
}

/**
 * A client session in the target. `address`: its client's, `local socket`, or null when this role
 * may not see it (another role's session without pg_read_all_stats). `endable`: this role may end
 * it with pg_terminate_backend (--terminate-connections); `superuser`: its role is one.
 */
export interface TargetSession {
  readonly pid: number;
  readonly application: string;
  readonly role: string;
  readonly address: string | null;
  readonly endable: boolean;
  readonly superuser: boolean;
}

interface TargetState {
  readonly exists: boolean;
  /** What is in it, one `<n> <kind>` each (`3 relations`, `1 large object`): empty when nothing. */
  readonly contents: string[];
  readonly sessions: TargetSession[];
}

/**
 * "pid 4242 celery as app from 10.0.0.7, ...": who the target's sessions are, the first 5 named,
 * on the line that refuses them and on the one that says the swap ends them: which client, to stop
 * or to tell, and for the audit after the incident.
 */
export function sessionsWho(sessions: readonly TargetSession[]): string {
  const named = sessions.slice(0, 5).map((s) => `pid ${s.pid} ${s.application} as ${s.role}${s.address === null ? '' : ` from ${s.address}`}`);
  return sessions.length > named.length ? `${named.join(', ')} and ${sessions.length - named.length} more` : named.join(', ');
}

/** The distinct roles of some sessions. */
const rolesOf = (sessions: readonly TargetSession[]): string[] => [...new Set(sessions.map((s) => s.role))];

/** The refusal of a target with sessions, without --terminate-connections (before the download, and at the swap when nobody said to end them). */
export function sessionsRefusal(target: string, sessions: readonly TargetSession[]): OperatorError {
  // Offered only when it would end them all: for a session this role may not end, a restore with
  // it is refused in turn (checkTarget), and the way out stays stopping the clients.
  const unendable = sessions.filter((s) => !s.endable);
  const terminate =
    unendable.length === 0
      ? ', or pass --terminate-connections'
      : `; --terminate-connections would not end them all: this role may not end those of role(s) ${rolesOf(unendable).slice(0, 3).join(', ')}`;
  return new OperatorError(
    `target database "${target}" has ${sessions.length} open connection(s) (${sessionsWho(sessions)}): stop its clients (killswitch maintenance, scale the API/workers to 0)${terminate}`,
    2,
  );
}

/**
 * The sessions of a database that are somebody's: every backend but autovacuum workers. A rename or
 * drop of the database ends those itself (PostgreSQL signals them and waits up to 5 s), and a
 * freshly restored or busy database is where they run: counting one as a client refused a
 * `--force` restore with advice (maintenance, scale to 0) that could not help; terminating one is
 * refused to a role that is not a superuser. A role without pg_read_all_stats sees NULL as the
 * backend_type of other roles' sessions, but their role (usesysid) is shown to everybody, and an
 * autovacuum worker has none: without that second test, another role's client went unseen until the
 * swap, after the whole load.
 */
export const CLIENT_SESSION = "backend_type IS DISTINCT FROM 'autovacuum worker' AND usesysid IS NOT NULL";

/**
 * Whether this role may end a session (pg_terminate_backend's own rule): a superuser ends any; any
 * other role no superuser's, and another role's only with the rights of that role or of
 * pg_signal_backend (has_privs_of_role: 'USAGE'). Membership alone ('MEMBER') is not enough: a
 * NOINHERIT member has no rights until it SET ROLEs, passed this check and was refused at the
 * swap, after the whole load.
 */
const ENDABLE_SESSION = `(SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
   OR (NOT coalesce((SELECT rolsuper FROM pg_roles r WHERE r.oid = usesysid), false)
       AND (pg_has_role(current_user, usesysid, 'USAGE') OR pg_has_role(current_user, 'pg_signal_backend', 'USAGE')))`;

/**
 * Whatever a user created in a database, by kind: the swap drops all of it, so any of it makes
 * the target not empty. Tables alone were counted, and a target holding only a schema, functions
 * and large objects was replaced without --force. Parts of another object (a table's row type, an
 * array type, a range's constructors: an internal dependency) are not counted twice; objects
 * without a schema count by their oid: the ones initdb made, all that template0 holds, are below
 * 16384 (FirstNormalObjectId). Temporary schemas are sessions', not content.
 */
const CONTENTS_QUERY = `WITH ns AS (SELECT oid, nspname FROM pg_namespace WHERE nspname !~ '^pg_' AND nspname <> 'information_schema'),
  part AS (SELECT classid, objid FROM pg_depend WHERE deptype = 'i')
SELECT kind, n FROM (VALUES
  ('relation', (SELECT count(*) FROM pg_class c WHERE c.relnamespace IN (SELECT oid FROM ns) AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f'))),
  ('schema', (SELECT count(*) FROM ns WHERE nspname <> 'public')),
  ('function', (SELECT count(*) FROM pg_proc p WHERE p.pronamespace IN (SELECT oid FROM ns) AND (p.tableoid, p.oid) NOT IN (SELECT classid, objid FROM part))),
  ('type', (SELECT count(*) FROM pg_type t LEFT JOIN pg_class c ON c.oid = t.typrelid
             WHERE t.typnamespace IN (SELECT oid FROM ns) AND (t.typrelid = 0 OR c.relkind = 'c') AND (t.tableoid, t.oid) NOT IN (SELECT classid, objid FROM part))),
  ('large object', (SELECT count(*) FROM pg_largeobject_metadata)),
  ('extension', (SELECT count(*) FROM pg_extension WHERE oid >= 16384)),
  ('other object', (SELECT sum(n) FROM (
     SELECT count(*) AS n FROM pg_operator WHERE oid >= 16384 UNION ALL SELECT count(*) FROM pg_opfamily WHERE oid >= 16384
     UNION ALL SELECT count(*) FROM pg_opclass WHERE oid >= 16384 UNION ALL SELECT count(*) FROM pg_collation WHERE oid >= 16384
     UNION ALL SELECT count(*) FROM pg_conversion WHERE oid >= 16384 UNION ALL SELECT count(*) FROM pg_cast WHERE oid >= 16384
     UNION ALL SELECT count(*) FROM pg_ts_config WHERE oid >= 16384 UNION ALL SELECT count(*) FROM pg_ts_dict WHERE oid >= 16384
     UNION ALL SELECT count(*) FROM pg_ts_parser WHERE oid >= 16384 UNION ALL SELECT count(*) FROM pg_ts_template WHERE oid >= 16384
     UNION ALL SELECT count(*) FROM pg_event_trigger WHERE oid >= 16384 UNION ALL SELECT count(*) FROM pg_publication WHERE oid >= 16384
     UNION ALL SELECT count(*) FROM pg_foreign_data_wrapper WHERE oid >= 16384 UNION ALL SELECT count(*) FROM pg_foreign_server WHERE oid >= 16384
     UNION ALL SELECT count(*) FROM pg_language WHERE oid >= 16384 UNION ALL SELECT count(*) FROM pg_am WHERE oid >= 16384
     UNION ALL SELECT count(*) FROM pg_transform WHERE oid >= 16384 UNION ALL SELECT count(*) FROM pg_default_acl WHERE oid >= 16384) other))
) AS contents (kind, n)`;

async function inspectTarget(admin: Client, connection: PgConnection, target: string): Promise<TargetState> {
  const exists = (await boundedQuery(admin, 'SELECT 1 FROM pg_database WHERE datname = $1', GUARD_READ_BOUND_MS, [target])).rowCount === 1;
  if (!exists) return { exists, contents: [], sessions: [] };
  // Sessions first: our own short look inside the target below must not count as one.
  const sessions = await boundedQuery<TargetSession>(
    admin,
    `SELECT pid, coalesce(nullif(application_name, ''), usename::text, '?') AS application, coalesce(usename::text, '?') AS role,
            CASE WHEN client_port = -1 THEN 'local socket' ELSE host(client_addr) END AS address, ${ENDABLE_SESSION} AS endable,
            coalesce((SELECT rolsuper FROM pg_roles r WHERE r.oid = usesysid), false) AS superuser
       FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid() AND ${CLIENT_SESSION}`,
    GUARD_READ_BOUND_MS,
    [target],
    `the read of the sessions in "${target}" (pg_stat_activity)`,
  );
  // Its lock waits bounded as the restore's own session's are: the server answers them.
  // After the restore's own session connected: a server not reached now went away.
  const client = await connectTo(connection, target, { lock_timeout: SWAP_LOCK_TIMEOUT_MS }, { answeredBefore: true });
  try {
    const result = await boundedQuery<{ kind: string; n: string }>(client, CONTENTS_QUERY, GUARD_READ_BOUND_MS, undefined, `the read of what "${target}" holds (its catalogs, on a connection to it)`);
    const contents = result.rows.filter((r) => Number(r.n) > 0).map((r) => countOf(Number(r.n), r.kind));
    return { exists, contents, sessions: sessions.rows };
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * Refuses a non-empty target without force, and a target with sessions without terminateConnections.
 * Each read is bounded (GUARD_READ_BOUND_MS): a server that accepts the connection but does not
 * answer (a failover half done, a network that drops the packets) ends it with one line; the
 * connection it went unanswered on is ended (boundedQuery): `admin`'s session connects again before
 * its next statement.
 */
export async function checkTarget(admin: Client, connection: PgConnection, target: string, guards: TargetGuards): Promise<TargetState> {
  return stopOnNoAnswer(
    () => checkTargetReads(admin, connection, target, guards),
    (why) => `cannot check target database "${target}": ${why}, then rerun the restore; the check creates nothing: "${target}" untouched`,
  );
}

async function checkTargetReads(admin: Client, connection: PgConnection, target: string, guards: TargetGuards): Promise<TargetState> {
  const state = await inspectTarget(admin, connection, target);
  if (state.exists && state.contents.length > 0 && !guards.force) {
    throw new OperatorError(`target database "${target}" exists and is not empty (${state.contents.join(', ')}): pass --force to replace it, or restore into a new name`, 2);
  }
  if (state.sessions.length > 0 && !guards.terminateConnections) throw sessionsRefusal(target, state.sessions);
  const unendable = state.sessions.filter((s) => !s.endable);
  if (unendable.length > 0) {
    // Only a superuser may end a superuser's session: pg_signal_backend does not reach it, and
    // advising that GRANT sent the operator back to the same refusal.
    const superusers = rolesOf(unendable.filter((s) => s.superuser));
    // A member of pg_signal_backend without its rights has been granted it already: a plain GRANT
    // would change nothing. Up to PostgreSQL 15 that is a NOINHERIT role; from 16, a grant made
    // WITH INHERIT FALSE (a NOINHERIT role's default), whatever the role's INHERIT is now.
    const { role, version, noinherit } = (
      await boundedQuery<{ role: string; version: number; noinherit: boolean }>(
        admin,
        `SELECT current_user AS role, current_setting('server_version_num')::int AS version,
                pg_has_role(current_user, 'pg_signal_backend', 'MEMBER')
                AND CASE WHEN current_setting('server_version_num')::int >= ${PER_GRANT_INHERIT_VERSION} THEN NOT pg_has_role(current_user, 'pg_signal_backend', 'USAGE')
                         ELSE NOT (SELECT rolinherit FROM pg_roles WHERE rolname = current_user) END AS noinherit`,
        GUARD_READ_BOUND_MS,
        undefined,
        "the read of the role's membership in pg_signal_backend (pg_roles)",
      )
    ).rows[0];
    const grant = signalBackendAdvice(version, noinherit, role);
    const way =
      superusers.length > 0
        ? `or connect as a superuser (${superusers.slice(0, 3).join(', ')} ${superusers.length === 1 ? 'is one' : 'are superusers'}, and only a superuser may end a superuser's session; on RDS no role you can connect as is one, the master user included)`
        : `connect as a role that may end them (a superuser; on RDS, the master user), or ${grant}`;
    throw new OperatorError(
      `target database "${target}" has ${unendable.length} open connection(s) of role(s) ${rolesOf(unendable).slice(0, 3).join(', ')} that role "${role}" may not end (pg_terminate_backend): stop those clients first (killswitch maintenance, scale the API/workers to 0), ${way}`,
      2,
    );
  }
  await checkPrivileges(admin, target, state.exists);
  return state;
}

/** The first server_version_num whose role memberships carry their own INHERIT option (PostgreSQL 16). */
const PER_GRANT_INHERIT_VERSION = 160000;

/**
 * What gives `role` the rights of pg_signal_backend (--terminate-connections), for a server of
 * `version` (server_version_num); `noinherit`: the role is a member already, without the rights.
 * Up to PostgreSQL 15, a member inherits by its role's INHERIT attribute: ALTER ROLE ... INHERIT
 * gives a NOINHERIT member the rights. From 16, each grant carries its own INHERIT option, set when
 * it is made (by default from the member's INHERIT then): ALTER ROLE ... INHERIT no longer changes a
 * grant that exists, a plain GRANT of a membership that exists changes nothing, and to a NOINHERIT
 * role a new one gives no rights; GRANT ... WITH INHERIT TRUE does it in every case.
 */
export function signalBackendAdvice(version: number, noinherit: boolean, role: string): string {
  if (version >= PER_GRANT_INHERIT_VERSION) {
    const why = noinherit ? ' (it is a member of pg_signal_backend, but its membership does not inherit, and from PostgreSQL 16 that is the grant\'s own INHERIT option, which ALTER ROLE ... INHERIT does not change)' : '';
    return `have an admin run GRANT pg_signal_backend TO ${quoteIdent(role)} WITH INHERIT TRUE${why}`;
  }
  return noinherit
    ? `have an admin run ALTER ROLE ${quoteIdent(role)} INHERIT (it is a member of pg_signal_backend, but NOINHERIT: the membership gives it no rights)`
    : `have an admin run GRANT pg_signal_backend TO ${quoteIdent(role)}`;
}

/**
 * What the restore will do as this role, checked before any download: create the staging database
 * (CREATEDB), and for an existing target rename it aside and drop it (its owner, or a member of its
 * owner's role). Found at swap time instead, the refusal would come after the whole load.
 */
async function checkPrivileges(admin: Client, target: string, targetExists: boolean): Promise<void> {
  const { rows } = await boundedQuery<{ role: string; createdb: boolean; owns: boolean | null }>(
    admin,
    `SELECT current_user AS role, (SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user) AS createdb,
            (SELECT pg_has_role(current_user, datdba, 'USAGE') FROM pg_database WHERE datname = $1) AS owns`,
    GUARD_READ_BOUND_MS,
    [target],
    `the read of the role's CREATEDB and of who owns "${target}" (pg_roles, pg_database)`,
  );
  const { role, createdb, owns } = rows[0];
  if (!createdb) throw cannotCreateDatabases(role);
  if (targetExists && owns === false) {
    // Renaming a database takes CREATEDB as well as owning it: an owner that may not log in, or may
    // not create databases (an application's role, usually), could not replace the target either.
    const found = (
      await boundedQuery<{ owner: string; able: boolean }>(
        admin,
        `SELECT pg_get_userbyid(datdba) AS owner, coalesce((SELECT rolcanlogin AND (rolcreatedb OR rolsuper) FROM pg_roles WHERE oid = datdba), false) AS able
           FROM pg_database WHERE datname = $1`,
        GUARD_READ_BOUND_MS,
        [target],
      )
    ).rows[0];
    const owner = found?.owner ?? '?';
    throw new OperatorError(
      `role "${role}" does not own target database "${target}" (owner "${owner}"), and replacing it means renaming it aside and dropping it: ${found?.able ? `connect as "${owner}", ` : ''}have an admin run GRANT ${quoteIdent(owner)} TO ${quoteIdent(role)}, or restore into a new name`,
      2,
    );
  }
}

/** A role without CREATEDB: the same line wherever it is found (restore, restore-test's pre-flight). */
export function cannotCreateDatabases(role: string, why = 'a restore loads into a new staging database before it swaps it in'): OperatorError {
  return new OperatorError(
    `role "${role}" cannot create databases, and ${why}: have an admin run ALTER ROLE ${quoteIdent(role)} CREATEDB, or connect as a role that has it (on RDS, the master user)`,
    2,
  );
}

/**
 * Refuses, before anything is downloaded or created, a server that lacks a role the manifest says
 * the backup names (backup-roles.ts): one bounded read of pg_roles (GUARD_READ_BOUND_MS), which
 * costs seconds where the load's own refusal comes after the download, or, for a role only
 * default privileges name, after the whole load. With noOwner, a role that only owns objects is
 * not needed. A manifest without the list (taken before backups recorded it) is not checked: the
 * load names the missing roles then.
 */
export async function checkRoles(
  admin: Client,
  roles: BackupRoles | undefined,
  input: { readonly manifestKey: string; readonly restorer: string; readonly noOwner?: boolean; readonly noOwnerAdvice?: string; readonly untouched: string },
): Promise<void> {
  const needed = (roles ?? []).filter((r) => !input.noOwner || r.use === 'grants');
  if (needed.length === 0) return;
  const { rows } = await stopOnNoAnswer(
    () =>
      boundedQuery<{ name: string }>(
        admin,
        'SELECT name FROM unnest($1::text[]) AS r(name) WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r.name)',
        GUARD_READ_BOUND_MS,
        [needed.map((r) => r.name)],
        'the read of which roles the backup names this server lacks (pg_roles)',
      ),
    (why) => `cannot check that this server has the roles ${input.manifestKey} names: ${why}, then rerun the restore; nothing was downloaded or created: ${input.untouched}`,
  );
  if (rows.length === 0) return;
  const missing = new Map(needed.filter((r) => rows.some((row) => row.name === r.name)).map((r) => [r.name, r.use]));
  throw new OperatorError(`cannot restore ${input.manifestKey} here: ${missingRolesLine(missing, input.restorer, input.noOwnerAdvice, false)}; nothing was downloaded or created; ${input.untouched}`, 2);
}

/**
 * The roles a backup names that this server lacks, each with its use, and what creates them (the
 * same line from checkRoles and from the load's refusal, load.ts), with --no-owner
 * (`noOwnerAdvice`, for `restorer`) offered when every one only owns objects: it leaves out the
 * owners, never a GRANT. `fromLoad`: pg_restore found them, which names only the first
 * missing role of an object's grants (one command), so pg_dumpall's line says it brings the others.
 */
export function missingRolesLine(missing: ReadonlyMap<string, RoleUse>, restorer: string, noOwnerAdvice: string | undefined, fromLoad: boolean): string {
  const names = [...missing.keys()].sort();
  const named = names.map((r) => `"${r}" (${missing.get(r)})`).join(', ');
  const others = fromLoad ? ', which also brings the roles of a grant that names several: PostgreSQL names the first missing one only' : '';
  const noOwner = noOwnerAdvice && names.every((r) => missing.get(r) === 'owner') ? `, or ${noOwnerAdvice} to have the objects owned by "${restorer}"` : '';
  // The application's role is usually the objects' owner: the LOGIN example names an owner.
  const login = names.find((r) => missing.get(r) === 'owner') ?? names[0];
  return `the backup names ${names.length === 1 ? 'a role' : `${names.length} roles`} this server does not have: ${named}; roles are not in a pg_dump: ${createRolesAdvice(names, login, others)}${noOwner}, then restore again`;
}

/**
 * How to give this server the roles `names` a backup needs (it and load.ts's line for the plain
 * format). A bare CREATE ROLE makes a NOLOGIN role without a password: enough to own objects and be
 * granted privileges, but the application's role made so cannot log in, and the application is
 * down from the swap on. pg_dumpall --roles-only copies them as the source has them (LOGIN,
 * memberships, passwords); RDS does not let it read the passwords (pg_authid) without
 * --no-role-passwords, which leaves them to set. `login`: the role the LOGIN example names;
 * `others`, what the pg_dumpall part adds.
 */
export function createRolesAdvice(names: readonly string[], login: string, others = ''): string {
  const create = names.map((r) => `CREATE ROLE ${quoteIdent(r)}`).join('; ');
  const them = names.length === 1 ? 'it' : 'them';
  return (
    `copy the source server's roles (pg_dumpall --roles-only there, run here${others}; from RDS add --no-role-passwords, then set the passwords), ` +
    `or create ${them}: ${create} makes ${names.length === 1 ? 'a NOLOGIN role' : 'NOLOGIN roles'} without a password, which can own objects and be granted privileges, ` +
    `while a role the application logs in as needs LOGIN and its password (CREATE ROLE ${quoteIdent(login)} LOGIN PASSWORD '...')`
  );
}
