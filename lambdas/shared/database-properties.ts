/**
 * What a database has set on itself, which a pg_restore into another database does not carry: its
 * owner, connection limit, comment, grants, settings (ALTER DATABASE ... SET) and its roles'
 * settings in it (ALTER ROLE ... IN DATABASE ... SET). Read from the catalogs by the backup (into
 * the manifest) and by a restore over an existing target (the target's live ones), and given to a
 * database by the same statements either way.
 */

import { z } from 'zod';
import { quoteIdent, quoteLiteral } from './postgres';

export const DatabasePropertiesSchema = z.object({
  owner: z.string().min(1),
  /** -1: no limit. */
  connectionLimit: z.number().int(),
  comment: z.string().nullable(),
  /** null: the default privileges (never granted nor revoked); else every grant, in the catalog's order. */
  acl: z
    .array(
      z.object({
        /**
         * The privileges a database has (aclexplode's names). Written into the GRANT as a keyword,
         * unquoted: a manifest edited in the bucket must not put any other word there.
         */
        privilege: z.enum(['CREATE', 'CONNECT', 'TEMPORARY']),
        /** null: PUBLIC. */
        grantee: z.string().min(1).nullable(),
        grantable: z.boolean(),
      }),
    )
    .nullable(),
  /** As pg_db_role_setting stores them: `name=value`. */
  settings: z.array(z.string()),
  roleSettings: z.array(z.object({ role: z.string().min(1), entry: z.string() })),
});

export type DatabaseProperties = z.infer<typeof DatabasePropertiesSchema>;

/**
 * One read of the catalogs, which every role may read (pg_database, pg_db_role_setting and
 * pg_shdescription are readable by PUBLIC): the backup runner needs no right for it. Undefined when
 * there is no database `database`. `query`: a session's, or a bounded one.
 */
export async function readDatabaseProperties(query: (sql: string, params: unknown[]) => Promise<{ rows: unknown[] }>, database: string): Promise<DatabaseProperties | undefined> {
  const { rows } = await query(
    `SELECT pg_get_userbyid(d.datdba) AS owner, d.datconnlimit AS "connectionLimit", shobj_description(d.oid, 'pg_database') AS comment,
            CASE WHEN d.datacl IS NOT NULL THEN coalesce((SELECT json_agg(json_build_object('privilege', a.privilege_type, 'grantee', CASE WHEN a.grantee <> 0 THEN pg_get_userbyid(a.grantee) END, 'grantable', a.is_grantable))
                                                          FROM aclexplode(d.datacl) a), '[]') END AS acl,
            coalesce((SELECT setconfig FROM pg_db_role_setting WHERE setdatabase = d.oid AND setrole = 0), '{}') AS settings,
            coalesce((SELECT json_agg(json_build_object('role', pg_get_userbyid(r.setrole), 'entry', e) ORDER BY pg_get_userbyid(r.setrole))
                        FROM pg_db_role_setting r, unnest(r.setconfig) e WHERE r.setdatabase = d.oid AND r.setrole <> 0), '[]') AS "roleSettings"
       FROM pg_database d WHERE d.datname = $1`,
    [database],
  );
  return rows.length === 0 ? undefined : DatabasePropertiesSchema.parse(rows[0]);
}

/** The statements that give `database` such properties, but its owner (what a database is created with). */
export interface PropertyStatements {
  /** Its connection limit, grants and comment: without them a copy is a hole (no lockdown) or an outage (no CONNECT). */
  readonly required: string[];
  /** Its settings. */
  readonly settings: string[];
  /** Its roles' settings in it, which need rights over each role. */
  readonly roleSettings: string[];
}

/**
 * Grants are made as whoever runs them (the owner, a member of it, or a superuser), whoever granted
 * them: the same rights. A non-default ACL replaces the default one whole: what PUBLIC and the owner
 * had by default is revoked first, then each grant given.
 */
export function propertyStatements(properties: DatabaseProperties, database: string): PropertyStatements {
  const name = quoteIdent(database);
  const { acl } = properties;
  const grants =
    acl === null
      ? []
      : [
          // Two statements: one naming a role this server lacks (the owner, on another instance)
          // is refused whole, and the lockdown from PUBLIC must not be refused with it.
          `REVOKE ALL ON DATABASE ${name} FROM PUBLIC`,
          `REVOKE ALL ON DATABASE ${name} FROM ${quoteIdent(properties.owner)}`,
          ...acl.map((a) => `GRANT ${a.privilege} ON DATABASE ${name} TO ${a.grantee === null ? 'PUBLIC' : quoteIdent(a.grantee)}${a.grantable ? ' WITH GRANT OPTION' : ''}`),
        ];
  return {
    required: [
      ...(properties.connectionLimit === -1 ? [] : [`ALTER DATABASE ${name} CONNECTION LIMIT ${properties.connectionLimit}`]),
      ...grants,
      ...(properties.comment === null ? [] : [`COMMENT ON DATABASE ${name} IS ${quoteLiteral(properties.comment)}`]),
    ],
    settings: properties.settings.map((entry) => `ALTER DATABASE ${name} ${setClause(entry)}`),
    roleSettings: properties.roleSettings.map(({ role, entry }) => `ALTER ROLE ${quoteIdent(role)} IN DATABASE ${name} ${setClause(entry)}`),
  };
}

/**
 * Settings whose value is a list of names, each quoted as an identifier where needed (GUC_LIST_QUOTE):
 * pg_dump's own list (variable_is_guc_list_quote), as the server does not say which they are.
 */
const LIST_SETTINGS = new Set(['local_preload_libraries', 'search_path', 'session_preload_libraries', 'shared_preload_libraries', 'temp_tablespaces', 'unix_socket_directories']);

/**
 * `SET <name> TO <value>` of a setting as pg_db_role_setting stores it (`name=value`), written as
 * pg_dump writes it (makeAlterConfigCommand). A list setting is stored as its names
 * (`"$user", public`): given back as one literal, search_path would name one schema called
 * `"$user", public`; so each name is a literal of its own (`'$user', 'public'`).
 */
export function setClause(entry: string): string {
  const at = entry.indexOf('=');
  const name = entry.slice(0, at);
  const value = entry.slice(at + 1);
  const names = LIST_SETTINGS.has(name.toLowerCase()) ? splitNameList(value) : undefined;
  return `SET ${quoteIdent(name)} TO ${names !== undefined && names.length > 0 ? names.map(quoteLiteral).join(', ') : quoteLiteral(value)}`;
}

/** The names of a stored list setting (the server's SplitGUCList): `"a ""b""", c` is `a "b"` and `c`; undefined when it is not such a list. */
function splitNameList(value: string): string[] | undefined {
  const names: string[] = [];
  const item = /\s*(?:"((?:[^"]|"")*)"|([^\s,"][^\s,]*))\s*(?:,|$)/y;
  while (value.slice(item.lastIndex).trim() !== '') {
    const match = item.exec(value);
    if (match === null) return undefined;
    names.push(match[1] === undefined ? match[2] : match[1].replaceAll('""', '"'));
  }
  return names;
}
