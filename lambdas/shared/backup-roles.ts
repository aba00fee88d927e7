/**
 * The roles a backed-up database's objects name. Roles are the server's, not a database's: a
 * pg_dump holds none of them, and a restore onto a server that lacks one fails. Recorded in the
 * manifest by the backup, so that a restore can refuse, before anything is downloaded, a server
 * that lacks one.
 */

import { z } from 'zod';

/**
 * How the backup uses a role: 'owner' when it only owns objects (ALTER ... OWNER TO, which
 * pg_restore --no-owner leaves out), 'grants' when anything else names it (a grant, a grant's
 * grantor, a default privilege, a policy, a user mapping), which every restore needs.
 */
export const RoleUseSchema = z.enum(['owner', 'grants']);
export type RoleUse = z.infer<typeof RoleUseSchema>;

export const BackupRolesSchema = z.array(z.object({ name: z.string().min(1), use: RoleUseSchema }));
export type BackupRoles = z.infer<typeof BackupRolesSchema>;

/**
 * One read of pg_shdepend (readable by every role: the backup runner needs no right for it), for
 * the database the session is connected to: the roles its objects depend on (refclassid
 * pg_authid). Its deptypes: 'o' an owner, 'a' a role in an ACL (grantee or grantor: a table's
 * grants, a column's, a default privilege's), 'r' a policy's role; 'i' (releases after 15: an
 * extension's initial privileges, which CREATE EXTENSION makes) is not read. A
 * default privilege (pg_default_acl) records its grantees as 'a' and its FOR ROLE as 'o', and a
 * user mapping (pg_user_mapping) its role as 'o' (seen on PostgreSQL 15): pg_dump writes both
 * names whatever --no-owner says (ALTER DEFAULT PRIVILEGES FOR ROLE r ..., CREATE USER MAPPING FOR
 * r), so they count as 'grants'. PostgreSQL records no dependency on a pinned role (15: none at
 * all on the bootstrap superuser, `postgres` or RDS's `rdsadmin`, whatever it owns), so such a
 * role is never listed: it exists on any server of the same kind. Neither are the database's own
 * owner and grants (dbid 0, a shared object's), which the manifest's databaseProperties holds.
 * Left out, since pg_dump writes no name for them and a restore without the role succeeds: the
 * owner of an extension and of its member objects (pg_dump writes CREATE EXTENSION, which makes
 * them the restoring role's; on RDS the master user creates extensions, and a new server's may
 * have another name), and every object in a temporary schema (pg_temp_N) and every grant on one:
 * a temporary table, sequence or view, but also a function, type, domain, operator, collation...
 * that any session may create there (CREATE FUNCTION pg_temp.f() ...) and holds while the backup
 * runs, or that a crashed session left behind. pg_dump dumps no pg_temp_N schema's objects (seen
 * on PostgreSQL 15), so nothing in the dump names their roles. A temporary relation's TOAST table
 * (pg_toast_temp_N) records no owner. An object dropped while this query reads has no schema left
 * (pg_identify_object gives NULL) and stays counted. A grant on an extension member stays
 * listed: pg_dump writes it (GRANT ... ON FUNCTION digest(text, text) TO r), seen on PostgreSQL 15.
 */
export async function readBackupRoles(query: (sql: string) => Promise<{ rows: unknown[] }>): Promise<BackupRoles> {
  const { rows } = await query(
    `SELECT r.rolname AS name,
            CASE WHEN bool_and(s.deptype = 'o' AND s.classid NOT IN ('pg_default_acl'::regclass, 'pg_user_mapping'::regclass)) THEN 'owner' ELSE 'grants' END AS use
       FROM pg_shdepend s JOIN pg_roles r ON r.oid = s.refobjid
      WHERE s.refclassid = 'pg_authid'::regclass AND s.deptype IN ('o', 'a', 'r')
        AND s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
        AND NOT (s.deptype = 'o' AND (s.classid = 'pg_extension'::regclass
                 OR EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = s.classid AND d.objid = s.objid AND d.deptype = 'e')))
        AND coalesce((pg_identify_object(s.classid, s.objid, s.objsubid)).schema !~ '^pg_temp_', true)
      GROUP BY r.rolname ORDER BY r.rolname`,
  );
  return BackupRolesSchema.parse(rows);
}
