import { CloudWatchClient, GetMetricStatisticsCommand } from '@aws-sdk/client-cloudwatch';
import { DescribeDBInstancesCommand, RDSClient } from '@aws-sdk/client-rds';
import type { Client } from 'pg';
import { asOperatorError } from '../shared/aws-errors';
import { OperatorError, oneLine } from '../shared/errors';
import { operatorCommand } from '../shared/constants';
import { formatBytes, shellWord } from '../shared/format';
import { connectionFailure, describeConnection, openClient, pgClientConfig, type PgConnection } from '../shared/pg-connection';
import { INSUFFICIENT_PRIVILEGE, LOCK_NOT_AVAILABLE, sqlState } from '../shared/pg-errors';
import { proveWriteRolledBack, quoteIdent } from '../shared/postgres';
import { isOn, READ_ONLY_STATE_SQL, readOnlyStateFromRow, type ReadOnlyState, roleReadOnlyReset } from '../shared/read-only';

export type { ReadOnlyState } from '../shared/read-only';

export interface StorageState {
  readonly freeBytes?: number;
  readonly allocatedBytes?: number;
  /** Why a value is missing (no credentials, no datapoint). */
  readonly unknown?: string;
}

/** The outcome, for the CLI's text or JSON. */
export interface ReadWriteOutcome {
  readonly before: ReadOnlyState;
  readonly storage?: StorageState;
  /**
   * `fixed`: the database-level setting was the cause and is now off, and a write went through.
   * `refused`: it was the cause, and the connected user may not change it (not the database's owner): nothing changed.
   */
  readonly result: 'already-read-write' | 'fixed' | 'declined' | 'not-a-database-setting' | 'refused';
  /** One line for the operator: what was found and what to do. */
  readonly finding: string;
  readonly after?: ReadOnlyState;
  /** The rolled-back write of the proof, when made. */
  readonly writeProof?: 'ok' | string;
}

export interface DbReadWriteDeps {
  readonly connection: PgConnection;
  /** RDS free storage (allocated and free), shown beside the settings. @default - not shown */
  readonly storage?: () => Promise<StorageState>;
  /** Asked before the ALTER DATABASE; `false` leaves everything as it is. */
  readonly confirm: (question: string) => Promise<boolean>;
  /** Progress lines for the operator. */
  readonly print?: (line: string) => void;
  /**
   * The ECS cluster and the services whose connection pools keep the old setting (the API and the
   * Celery workers), named in the commands that recycle them. @default - placeholders
   */
  readonly pools?: { readonly clusterName: string; readonly serviceNames: readonly string[] };
  /** The --env the operator gave, named in every `db read-write` its lines say to rerun. @default - none, as it was run */
  readonly environmentName?: string;
}

/** The commands that reopen the pools' sessions: one per service when they are known, else the form to fill in. */
function recyclePoolsCommands(pools: DbReadWriteDeps['pools']): string {
  if (!pools || pools.serviceNames.length === 0) return 'aws ecs update-service --cluster <cluster> --service <service> --force-new-deployment for each';
  return pools.serviceNames.map((service) => `aws ecs update-service --cluster ${pools.clusterName} --service ${service} --force-new-deployment`).join('; ');
}

async function withSession<T>(connection: PgConnection, use: (client: Client) => Promise<T>): Promise<T> {
  let client: Client;
  try {
    client = await openClient({ ...pgClientConfig(connection), application_name: 'atmr-dr-db-read-write' });
  } catch (error) {
    // As every command's connection (connectTo): a refused password, role or database is a setting
    // to fix (exit 2) and the line says which; a server down is a failure to retry (exit 1).
    throw connectionFailure(connection, error);
  }
  try {
    return await use(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Reads the read-only state in a new session (a database-level setting only shows in new sessions). */
export async function readOnlyState(connection: PgConnection): Promise<ReadOnlyState> {
  return withSession(connection, readState);
}

async function readState(client: Client): Promise<ReadOnlyState> {
  return readOnlyStateFromRow((await client.query<Record<string, unknown>>(READ_ONLY_STATE_SQL)).rows[0]);
}

/** A role whose own read-only default (ALTER ROLE ... [IN DATABASE ...] SET) refuses its sessions' writes in this database. */
export interface ReadOnlyRole {
  readonly role: string;
  /** Set for this database only (ALTER ROLE ... IN DATABASE ... SET), which wins over the role's setting for every database. */
  readonly inDatabase: boolean;
}

/**
 * Each role's own default_transaction_read_only for the connected database, for every database
 * (setdatabase 0) or this one, which the connected role's session does not show. Only roles that
 * may log in and may write here (a write grant on a table, or the database's owner) are read: a
 * role made read-only on purpose with nothing to write (the backup runner's, docs/backup-runner.md)
 * is no cause of the application's failed writes.
 */
const ROLE_SETTINGS_SQL = `SELECT r.rolname AS role, s.setdatabase <> 0 AS in_database, split_part(e, '=', 2) AS value
   FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole, unnest(s.setconfig) e
  WHERE s.setdatabase IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))
    AND lower(split_part(e, '=', 1)) = 'default_transaction_read_only'
    AND r.rolcanlogin
    AND (pg_has_role(r.oid, (SELECT datdba FROM pg_database WHERE datname = current_database()), 'USAGE')
         OR EXISTS (SELECT 1 FROM pg_class c
                     WHERE c.relkind IN ('r', 'p') AND c.relnamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)
                       AND has_table_privilege(r.oid, c.oid, 'INSERT, UPDATE, DELETE')))
  ORDER BY r.rolname COLLATE "C"`;

/** The roles whose new sessions on the connected database are read-only by their own setting. */
async function readOnlyRoles(client: Client): Promise<ReadOnlyRole[]> {
  const { rows } = await client.query<{ role: string; in_database: boolean; value: string }>(ROLE_SETTINGS_SQL);
  // The per-database setting of a role wins over its setting for every database (an "off" there lifts an "on" for all).
  const effective = new Map<string, { inDatabase: boolean; value: string }>();
  for (const row of rows) {
    if (row.in_database || !effective.has(row.role)) effective.set(row.role, { inDatabase: row.in_database, value: row.value });
  }
  return [...effective].filter(([, setting]) => isOn(setting.value)).map(([role, setting]) => ({ role, inDatabase: setting.inDatabase }));
}

/**
 * `ALTER ROLE ALL SET default_transaction_read_only` (pg_db_role_setting's row of no role and no
 * database): the default of every role without its own setting, in every database without one.
 */
const ALL_ROLES_SETTING_SQL = `SELECT split_part(e, '=', 2) AS value
   FROM pg_db_role_setting s, unnest(s.setconfig) e
  WHERE s.setrole = 0 AND s.setdatabase = 0 AND lower(split_part(e, '=', 1)) = 'default_transaction_read_only'`;

/** The setting for all roles, and the statement that lifts it, as it must be run: the superuser's own sessions start read-only by it too. */
const ALL_ROLES_READ_ONLY =
  'default_transaction_read_only=on for all roles (ALTER ROLE ALL ...): the sessions of every role without its own setting cannot write: as a superuser, run BEGIN READ WRITE; ALTER ROLE ALL RESET default_transaction_read_only; COMMIT;';

function describeRole(role: ReadOnlyRole, database: string): string {
  const reset = roleReadOnlyReset({ role: role.role, database, defaultSource: role.inDatabase ? 'database user' : 'user' });
  return role.inDatabase
    ? `role "${role.role}" has default_transaction_read_only=on in database "${database}" (ALTER ROLE ... IN DATABASE ... SET): its sessions on it cannot write: ${reset}`
    : `role "${role.role}" has default_transaction_read_only=on (ALTER ROLE ... SET): its sessions cannot write: ${reset}`;
}

/** Proves a write goes through in a new session: a temporary table written in a transaction that is rolled back. */
export async function proveWrite(connection: PgConnection): Promise<'ok' | string> {
  try {
    await withSession(connection, proveWriteRolledBack);
    return 'ok';
  } catch (error) {
    return oneLine(error);
  }
}

export function describeState(state: ReadOnlyState): string[] {
  return [
    `transaction_read_only (new session): ${state.transactionReadOnly ? 'on' : 'off'}`,
    `default_transaction_read_only: ${state.defaultValue} (source: ${state.defaultSource})`,
    `database-level setting (ALTER DATABASE ${state.database} SET): ${state.databaseSetting ?? 'not set'}`,
    `pg_is_in_recovery(): ${state.inRecovery}`,
  ];
}

function describeStorage(storage: StorageState): string {
  if (storage.freeBytes === undefined) return `RDS free storage: unknown (${storage.unknown ?? 'no datapoint'})`;
  const percent = storage.allocatedBytes ? ` (${((100 * storage.freeBytes) / storage.allocatedBytes).toFixed(1)} % of ${formatBytes(storage.allocatedBytes)})` : '';
  return `RDS free storage: ${formatBytes(storage.freeBytes)}${percent}`;
}

/**
 * The runbook's "DB Read-Only" recovery: shows the state, and when the database-level
 * `default_transaction_read_only` is the cause, sets it off (after confirmation) and proves that a
 * write goes through. Any other cause (recovery, parameter group, role setting, full disk) is
 * reported as found, and nothing is changed.
 */
export async function dbReadWrite(deps: DbReadWriteDeps): Promise<ReadWriteOutcome> {
  const print = deps.print ?? (() => undefined);
  // One session reads both; on a server in recovery (a standby) no role setting is the cause: not read.
  const { before, roleSettings, allRoles } = await withSession(deps.connection, async (client) => {
    const state = await readState(client);
    if (state.inRecovery) return { before: state, roleSettings: [], allRoles: undefined };
    return { before: state, roleSettings: await readOnlyRoles(client), allRoles: (await client.query<{ value: string }>(ALL_ROLES_SETTING_SQL)).rows[0]?.value };
  });
  print(`database ${describeConnection(deps.connection)}`);
  describeState(before).forEach((line) => print(`  ${line}`));
  let storage: StorageState | undefined;
  if (deps.storage) {
    // The CLI's own line for an AWS failure (no credentials: log in), not the SDK's words.
    storage = await deps.storage().catch((error: unknown) => ({ unknown: asOperatorError(error).message }));
    print(`  ${describeStorage(storage)}`);
  }
  const lowStorage = storage?.freeBytes !== undefined && storage.allocatedBytes ? storage.freeBytes / storage.allocatedBytes < 0.1 : false;
  const storageNote = lowStorage ? '; free storage is below 10 %: a full disk forces read-only too, add storage before it fills' : '';
  // Other roles' own settings (the application's, when another role connected): the connected
  // role's session does not show them, and no database-level change lifts them.
  // The setting for all roles counts only where the database has none of its own (ALTER DATABASE
  // ... SET, even off, wins over it); then it is the cause for every role without its own.
  const allRolesOn = isOn(allRoles) && before.databaseSetting === undefined;
  const roles = [...(allRolesOn ? [ALL_ROLES_READ_ONLY] : []), ...roleSettings.filter((r) => r.role !== before.role).map((r) => describeRole(r, before.database))];

  if (before.inRecovery) {
    return {
      before,
      storage,
      result: 'not-a-database-setting',
      finding: 'the server is in recovery (a standby or read replica): no setting makes it writable; fail over to the primary or promote it (RDS: check the instance role and events)',
    };
  }
  if (!before.transactionReadOnly && roles.length > 0) {
    return { before, storage, result: 'not-a-database-setting', finding: `${roles.join('; ')}${storageNote}` };
  }
  if (!before.transactionReadOnly) {
    const writeProof = await proveWrite(deps.connection);
    return {
      before,
      storage,
      writeProof,
      result: 'already-read-write',
      finding:
        writeProof === 'ok'
          ? `the database accepts writes (a rolled-back write went through): nothing to change${storageNote}`
          : `new sessions are read-write but a write still fails (${writeProof}): check the application's errors and the RDS events`,
    };
  }
  if (before.defaultSource !== 'database' || !isOn(before.databaseSetting)) {
    const where =
      before.defaultSource === 'configuration file'
        ? 'the server configuration (RDS parameter group): set default_transaction_read_only to off there'
        : before.defaultSource === 'user' || before.defaultSource === 'database user'
          ? roleSettingFix(before)
          : before.defaultSource === 'global' && allRolesOn
            ? undefined // named in roles
            : `"${before.defaultSource}"`;
    return {
      before,
      storage,
      result: 'not-a-database-setting',
      finding: `new sessions are read-only because of ${[where, ...roles].filter((cause) => cause !== undefined).join('; ')}${storageNote}`,
    };
  }
  if (roles.length > 0) {
    // The database-level setting is on too, but lifting it alone would leave these roles read-only
    // and the line would say fixed: nothing is changed until they are reset, as on every other cause.
    return {
      before,
      storage,
      result: 'not-a-database-setting',
      finding: `${roles.join('; ')}; the database-level setting is on too: once they are reset, rerun ${operatorCommand(deps.environmentName, 'db read-write')}`,
    };
  }

  const ok = await deps.confirm(`ALTER DATABASE ${before.database} SET default_transaction_read_only = off`);
  if (!ok) return { before, storage, result: 'declined', finding: 'nothing changed (not confirmed)' };
  const refusal = await withSession(deps.connection, async (client) => {
    // This session itself starts read-only: it must be made read-write before ALTER DATABASE.
    await client.query('SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE');
    // Never queued for longer: a statement still waiting when the operator gave up (Ctrl-C) would
    // take effect later, once the other session lets go, after the operator was told it had not.
    await client.query(`SET lock_timeout = ${ALTER_LOCK_TIMEOUT_MS}`);
    try {
      await client.query(`ALTER DATABASE ${quoteIdent(before.database)} SET default_transaction_read_only = off`);
      return undefined;
    } catch (error) {
      if (sqlState(error) === LOCK_NOT_AVAILABLE) throw await lockHeld(client, before.database, deps.environmentName);
      // Only the database's owner (or a superuser, RDS's master user) may: name who is, and how to rerun as them.
      if (sqlState(error) !== INSUFFICIENT_PRIVILEGE) throw error;
      const owner = String((await client.query<{ owner: string }>('SELECT pg_get_userbyid(datdba) AS owner FROM pg_database WHERE datname = current_database()')).rows[0].owner);
      return `user "${before.role}" may not ALTER DATABASE "${before.database}" (${oneLine(error)}): its owner is "${owner}"; nothing changed; rerun as the database's owner or the RDS master user: PGUSER=${shellWord(owner)} ${operatorCommand(deps.environmentName, 'db read-write')} (or --database-secret with that login)`;
    }
  });
  if (refusal) return { before, storage, result: 'refused', finding: refusal };
  print(`  ALTER DATABASE ${before.database} SET default_transaction_read_only = off: done`);
  const after = await readOnlyState(deps.connection);
  const writeProof = await proveWrite(deps.connection);
  const fixed = !after.transactionReadOnly && writeProof === 'ok';
  return {
    before,
    storage,
    after,
    writeProof,
    result: 'fixed',
    finding: fixed
      ? // ALTER DATABASE ... SET applies to new sessions only: the pools' sessions stay read-only until reopened.
        `the database-level setting was the cause; it is off and a write went through (rolled back); sessions opened before keep the old setting: recycle the API and Celery connection pools (${recyclePoolsCommands(deps.pools)}), then test a POST/PUT on the API`
      : `the setting is off but new sessions are still read-only or a write fails (${writeProof}): check the parameter group and the RDS events`,
  };
}

/** How long the ALTER DATABASE waits for another session's lock before it gives up, nothing changed. */
const ALTER_LOCK_TIMEOUT_MS = 5000;

/**
 * The sessions that may hold up an ALTER DATABASE ... SET, oldest transaction first: one that writes
 * the settings catalog in an open transaction (an ALTER DATABASE or ALTER ROLE ... SET not yet
 * committed), or that holds the database itself exclusively. Every session on a database holds a
 * weaker lock on it, hence the modes.
 */
const SETTING_LOCK_HOLDERS_SQL = `SELECT a.pid, a.usename, a.application_name, a.query_start
   FROM pg_stat_activity a
  WHERE a.pid <> pg_backend_pid()
    AND a.pid IN (SELECT l.pid FROM pg_locks l
                   WHERE l.granted
                     AND ((l.locktype = 'relation' AND l.relation = 'pg_db_role_setting'::regclass AND l.mode <> 'AccessShareLock')
                          OR (l.locktype = 'object' AND l.classid = 'pg_database'::regclass AND l.mode = 'AccessExclusiveLock'
                              AND l.objid = (SELECT oid FROM pg_database WHERE datname = current_database()))))
  ORDER BY a.xact_start`;

/** The ALTER DATABASE gave up waiting for a lock: one line naming who holds it and how to end that session. */
async function lockHeld(client: Client, database: string, environmentName: string | undefined): Promise<OperatorError> {
  const waited = `ALTER DATABASE "${database}" waited ${ALTER_LOCK_TIMEOUT_MS / 1000} s for a lock another session holds and gave up: nothing changed`;
  const [holder, ...others] = (await client.query<{ pid: number; usename: string | null; application_name: string | null; query_start: Date | null }>(SETTING_LOCK_HOLDERS_SQL)).rows;
  if (!holder) {
    return new OperatorError(`${waited}; find it with SELECT pid, usename, application_name, query_start, query FROM pg_stat_activity WHERE xact_start IS NOT NULL, end it with SELECT pg_terminate_backend(<pid>), then rerun ${operatorCommand(environmentName, 'db read-write')}`);
  }
  const who = `pid ${holder.pid} (user "${holder.usename ?? '?'}", application "${holder.application_name ?? ''}", query started ${holder.query_start?.toISOString() ?? 'unknown'})`;
  return new OperatorError(
    `${waited}; it is held by ${who}${others.length > 0 ? ` and ${others.length} more` : ''}: end it with SELECT pg_terminate_backend(${holder.pid}) (or let it finish), then rerun ${operatorCommand(environmentName, 'db read-write')}`,
  );
}

/**
 * A read-only default of the role that connected (`ALTER ROLE ... SET`, or `... IN DATABASE ...`),
 * with the statement that lifts it, as it must be run: in a transaction declared READ WRITE, since
 * a session of a role that is read-only by default refuses even the ALTER ROLE that would undo it.
 * The role itself may run it (a role may reset its own defaults), so may a superuser.
 */
function roleSettingFix(state: ReadOnlyState): string {
  const inDatabase = state.defaultSource === 'database user';
  return `a setting of role "${state.role}"${inDatabase ? ` in database "${state.database}"` : ''} (ALTER ROLE ...${inDatabase ? ' IN DATABASE ...' : ''} SET default_transaction_read_only): as that role (or a superuser), run BEGIN READ WRITE; ${roleReadOnlyReset(state)}; COMMIT;`;
}

/** RDS allocated storage and the last 10 minutes' minimum FreeStorageSpace. */
export async function rdsStorage(clients: { rds: RDSClient; cloudwatch: CloudWatchClient }, instanceIdentifier: string, now = new Date()): Promise<StorageState> {
  const { DBInstances } = await clients.rds.send(new DescribeDBInstancesCommand({ DBInstanceIdentifier: instanceIdentifier }));
  const allocatedGiB = DBInstances?.[0]?.AllocatedStorage;
  const { Datapoints } = await clients.cloudwatch.send(
    new GetMetricStatisticsCommand({
      Namespace: 'AWS/RDS',
      MetricName: 'FreeStorageSpace',
      Dimensions: [{ Name: 'DBInstanceIdentifier', Value: instanceIdentifier }],
      StartTime: new Date(now.getTime() - 10 * 60_000),
      EndTime: now,
      Period: 60,
      Statistics: ['Minimum'],
    }),
  );
  const latest = [...(Datapoints ?? [])].sort((a, b) => (b.Timestamp?.getTime() ?? 0) - (a.Timestamp?.getTime() ?? 0))[0];
  return {
    ...(allocatedGiB !== undefined && { allocatedBytes: allocatedGiB * 1024 ** 3 }),
    ...(latest?.Minimum !== undefined ? { freeBytes: latest.Minimum } : { unknown: 'no FreeStorageSpace datapoint in the last 10 minutes' }),
  };
}
