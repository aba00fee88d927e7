import { quoteIdent } from './postgres';

/**
 * The runbook's "DB Read-Only" state, as one query in a fresh session (a database-level setting only
 * shows in sessions opened after it was set): what the probe publishes as DbReadOnly every minute
 * and what `atmr-dr db read-write` shows and repairs; the restore and the restore test read the same
 * setting. No client library here: each passes its own.
 */
export const READ_ONLY_STATE_SQL = `SELECT current_setting('transaction_read_only') AS tro,
        s.setting, s.source,
        pg_is_in_recovery() AS recovery,
        current_database() AS db,
        current_user AS role,
        (SELECT split_part(c, '=', 2)
           FROM pg_db_role_setting r JOIN pg_database d ON d.oid = r.setdatabase, unnest(r.setconfig) AS c
          WHERE d.datname = current_database() AND r.setrole = 0 AND c LIKE 'default_transaction_read_only=%') AS dbsetting
   FROM pg_settings s WHERE s.name = 'default_transaction_read_only'`;

export interface ReadOnlyState {
  readonly database: string;
  /** The role that read it (`current_user`). */
  readonly role: string;
  /** `SHOW transaction_read_only` in a new session. */
  readonly transactionReadOnly: boolean;
  /** The database-level `default_transaction_read_only` (ALTER DATABASE ... SET), when set. */
  readonly databaseSetting?: string;
  /** Where the session's `default_transaction_read_only` comes from (pg_settings.source: database, user, configuration file, default...). */
  readonly defaultSource: string;
  readonly defaultValue: string;
  /** `pg_is_in_recovery()`: a standby (or a promoted-but-not-yet replica) refuses writes whatever the settings. */
  readonly inRecovery: boolean;
}

/** The row of READ_ONLY_STATE_SQL as a ReadOnlyState. */
export function readOnlyStateFromRow(row: Record<string, unknown>): ReadOnlyState {
  return {
    database: String(row.db),
    role: String(row.role),
    transactionReadOnly: row.tro === 'on',
    ...(row.dbsetting !== null && row.dbsetting !== undefined && { databaseSetting: String(row.dbsetting) }),
    defaultSource: String(row.source),
    defaultValue: String(row.setting),
    inRecovery: row.recovery === true,
  };
}

/** A boolean setting's value that PostgreSQL reads as true (parse_bool: on, true, yes, 1, and the prefixes it takes). */
const TRUE_SETTING = /^(?:on|t|tr|tru|true|y|ye|yes|1)$/i;

/**
 * Whether a boolean setting's value, as pg_settings shows it (`on`) or as pg_db_role_setting stores
 * what ALTER ... SET was given (`yes`, `TRUE`, `t`), is true: the one reader of such a value.
 */
export function isOn(value: string | undefined): boolean {
  return value !== undefined && TRUE_SETTING.test(value.trim());
}

/**
 * The row of READ_ONLY_STATE_SQL read inside a transaction of the reader's own declared READ ONLY
 * (BEGIN READ ONLY: what the probe does, so that it writes nothing whatever its role may do). That
 * makes `transaction_read_only` on in that transaction only; what a new transaction of the session
 * gets is the session's `default_transaction_read_only`, which BEGIN READ ONLY leaves as it is, or a
 * server in recovery.
 */
export function readOnlyStateInReadOnlyTransaction(row: Record<string, unknown>): ReadOnlyState {
  const state = readOnlyStateFromRow(row);
  return { ...state, transactionReadOnly: state.inRecovery || isOn(state.defaultValue) };
}

/** pg_settings sources that are the connected role's own (ALTER ROLE ... [IN DATABASE ...] SET). */
const ROLE_SOURCES: readonly string[] = ['user', 'database user'];

/**
 * The statement that removes the reading role's own read-only default, when it has one: such a
 * default hides a server-wide one (ALTER SYSTEM, a parameter group) from refusesApplicationWrites.
 */
export function roleReadOnlyDefaultReset(state: ReadOnlyState): string | undefined {
  if (!ROLE_SOURCES.includes(state.defaultSource) || !isOn(state.defaultValue)) return undefined;
  return roleReadOnlyReset(state);
}

/**
 * `ALTER ROLE <role> [IN DATABASE <database>] RESET default_transaction_read_only`: the statement
 * that lifts a role's read-only default, per database when it comes from there (`database user`).
 */
export function roleReadOnlyReset(state: Pick<ReadOnlyState, 'role' | 'database' | 'defaultSource'>): string {
  const inDatabase = state.defaultSource === 'database user' ? ` IN DATABASE ${quoteIdent(state.database)}` : '';
  return `ALTER ROLE ${quoteIdent(state.role)}${inDatabase} RESET default_transaction_read_only`;
}

/**
 * Whether the application's sessions are refused writes: a server in recovery, the database-level
 * setting, or a read-only default that does not come from the reading role's own settings. A role
 * made read-only with `ALTER ROLE ... SET default_transaction_read_only = on` says nothing of the
 * application's role: counted, it would hold Database-ReadOnly in ALARM forever and page up to the
 * CTO. But it hides what is under it (a server-wide default: ALTER SYSTEM, a parameter group), so
 * the probe's role must not carry it (docs/detection.md: its safety is having no write grant), and
 * the probe warns with roleReadOnlyDefaultReset's statement when it does.
 */
export function refusesApplicationWrites(state: ReadOnlyState): boolean {
  if (state.inRecovery || isOn(state.databaseSetting)) return true;
  return state.transactionReadOnly && !ROLE_SOURCES.includes(state.defaultSource);
}
