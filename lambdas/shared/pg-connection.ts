import type { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { readFileSync } from 'node:fs';
import type { Client, ClientConfig, QueryResultRow } from 'pg';
import { z } from 'zod';
import { describeAwsError, MISSING_SETTING_EXIT_CODE, missingAwsSetting } from './aws-errors';
import { OperatorError, oneLine } from './errors';
import { andList } from './format';
import { safeJson } from './json';
import { SDK_RETRY } from './sdk-retry';
import { isQueryReadTimeout, LOCK_NOT_AVAILABLE, QUERY_CANCELED, sqlState } from './pg-errors';
import { quoteIdent, reopenDatabaseStatement } from './postgres';

/**
 * Where the PostgreSQL connection comes from, in this order:
 *  1. a Secrets Manager secret (`--database-secret <arn>` on the CLI; the configured RDS secret in AWS),
 *  2. IAM database authentication (a short-lived token instead of a password),
 *  3. libpq's standard variables (PGHOST PGPORT PGUSER PGPASSWORD PGDATABASE PGSSLMODE ...).
 * The password never goes to logs; child processes receive it through their own environment only.
 */
export interface PgConnection {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly password?: string;
  readonly database: string;
  /** libpq sslmode (disable, prefer, require, verify-full). */
  readonly sslMode?: string;
  /** CA bundle for verify-full (the RDS global bundle in the runner image). */
  readonly sslRootCert?: string;
  /**
   * libpq password file (PGPASSFILE), for an operator who keeps the password there rather than in
   * PGPASSWORD: node-postgres reads it from the environment, child processes get it from libpqEnv.
   */
  readonly passFile?: string;
}

/** Shape of an RDS-managed secret (extra fields ignored). */
const RdsSecretSchema = z.object({
  username: z.string().min(1),
  password: z.string().min(1),
  host: z.string().min(1).optional(),
  port: z.union([z.number(), z.string()]).optional(),
  dbname: z.string().min(1).optional(),
});

export interface ResolveConnectionOptions {
  readonly env?: NodeJS.ProcessEnv;
  /** Secret ARN with {username, password[, host, port, dbname]}. */
  readonly secretArn?: string;
  readonly secretsManager?: SecretsManagerClient;
  /**
   * Reads the secret's string in place of one GetSecretValue through `secretsManager` (the health
   * probe: Powertools Parameters' cache); an SDK error it throws is described as the SDK read's are.
   */
  readonly readSecret?: (secretArn: string) => Promise<string | undefined>;
  /** Use IAM database authentication as this user. */
  readonly iamAuthUser?: string;
  /** Region for the IAM auth token. */
  readonly region?: string;
  /** Overrides applied last (e.g. the configured host, or a target database name). */
  readonly overrides?: Partial<PgConnection>;
  /** Values used only where neither the environment nor the secret gives one (e.g. the maintenance database). */
  readonly fallbacks?: Partial<PgConnection>;
}

/** libpq's sslmode values: any other PGSSLMODE is refused, as libpq refuses it. */
const SSL_MODES = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'] as const;

/**
 * libpq refuses an sslmode it does not know; pgClientConfig would read one as TLS without a
 * certificate check: a typo of verify-full (verify-ful) connecting unverified, the operator
 * believing the certificate checked. Refused (exit 2) before anything is read or changed: by
 * resolveConnection, and by a command that reads PGSSLMODE itself (recover cutover's write check
 * on the copy, late in the cutover) at its start.
 */
export function checkPgSslMode(env: NodeJS.ProcessEnv): void {
  if (env.PGSSLMODE !== undefined && !(SSL_MODES as readonly string[]).includes(env.PGSSLMODE)) {
    throw new OperatorError(`invalid PGSSLMODE "${env.PGSSLMODE}": use one of ${SSL_MODES.join(', ')} (libpq's sslmode), or unset it for TLS where the server has it`, 2);
  }
}

export async function resolveConnection(options: ResolveConnectionOptions = {}): Promise<PgConnection> {
  const env = options.env ?? process.env;
  checkPgSslMode(env);
  const fromEnv: Partial<PgConnection> = {
    host: env.PGHOST,
    port: env.PGPORT ? Number(env.PGPORT) : undefined,
    user: env.PGUSER,
    password: env.PGPASSWORD,
    // libpq reads an empty PGDATABASE as unset (psql connects to its default database): so does
    // atmr-dr, and a fallback (restore's maintenance database) applies as when it is not exported.
    database: env.PGDATABASE || undefined,
    sslMode: env.PGSSLMODE,
    sslRootCert: env.PGSSLROOTCERT,
    passFile: env.PGPASSFILE,
  };
  let merged: Partial<PgConnection> = { ...fromEnv };

  if (options.secretArn) {
    // The Secrets Manager SDK (and the RDS signer below) are loaded when a connection needs them,
    // not with this module: a CLI command given PG* variables starts without evaluating them.
    const { GetSecretValueCommand, SecretsManagerClient } = await import('@aws-sdk/client-secrets-manager');
    const client = options.secretsManager ?? new SecretsManagerClient(SDK_RETRY);
    let raw: string | undefined;
    try {
      raw = options.readSecret
        ? await options.readSecret(options.secretArn)
        : (await client.send(new GetSecretValueCommand({ SecretId: options.secretArn }))).SecretString;
    } catch (error) {
      const name = (error as Error | undefined)?.name;
      // A named answer of the service (AccessDenied, ResourceNotFound) points at the ARN or the role.
      // A failure before any answer (no region, no credentials, endpoint unreachable) is named "Error"
      // or after the client: said the shared way, with its own cause, not as a bare "Error". So is
      // the service's answer that the credentials have expired: a login fixes it, not the ARN.
      if (name === undefined || name === 'Error' || name === 'CredentialsProviderError' || name === 'TimeoutError' || missingAwsSetting(error)) {
        // No region (or an empty or malformed one), no or expired credentials: a setting to fix, exit 2 as for every command.
        throw new OperatorError(describeAwsError('SecretsManager', `read database secret ${options.secretArn}`, error), missingAwsSetting(error) ? MISSING_SETTING_EXIT_CODE : 1);
      }
      throw new OperatorError(
        `cannot read database secret ${options.secretArn}: ${name}; check the ARN and that this role may call secretsmanager:GetSecretValue on it`,
      );
    }
    const parsed = RdsSecretSchema.safeParse(raw ? safeJson(raw) : undefined);
    if (!parsed.success) {
      throw new OperatorError(`database secret ${options.secretArn} is not an RDS secret JSON with username and password; fix the secret value`);
    }
    const s = parsed.data;
    merged = {
      ...merged,
      user: s.username,
      password: s.password,
      host: s.host ?? merged.host,
      port: s.port !== undefined ? Number(s.port) : merged.port,
      database: s.dbname ?? merged.database,
    };
  }
  merged = { ...stripUndefined(options.fallbacks ?? {}), ...stripUndefined(merged), ...stripUndefined(options.overrides ?? {}) };

  if (options.iamAuthUser) {
    if (!merged.host) throw new OperatorError('IAM database authentication needs a host: set PGHOST or the configured database host');
    const { Signer } = await import('@aws-sdk/rds-signer');
    const signer = new Signer({
      hostname: merged.host,
      port: merged.port ?? 5432,
      username: options.iamAuthUser,
      region: options.region ?? env.AWS_REGION,
    });
    merged = { ...merged, user: options.iamAuthUser, password: await signer.getAuthToken(), sslMode: merged.sslMode ?? 'require' };
  }

  missingConnectionSettings(merged, env, options.secretArn);
  if (merged.port !== undefined && !(Number.isInteger(merged.port) && merged.port > 0 && merged.port < 65536)) {
    throw new OperatorError(`invalid database port "${env.PGPORT}": set PGPORT to a number such as 5432`, 2);
  }
  return { ...merged, host: merged.host, user: merged.user, database: merged.database, port: merged.port ?? 5432 };
}

/**
 * Refuses a connection without its host, user or database name (exit 2), naming every one missing
 * in one line: one at a time, the operator fixed PGHOST, ran again, and only then heard of PGUSER.
 */
function missingConnectionSettings(merged: Partial<PgConnection>, env: NodeJS.ProcessEnv, secretArn?: string): asserts merged is Partial<PgConnection> & Pick<PgConnection, 'host' | 'user' | 'database'> {
  // "set PGDATABASE" to someone who did (to an empty string) would not say what is wrong.
  const emptyDatabase = env.PGDATABASE === '';
  const missing = [
    !merged.host && { what: 'host', variable: 'PGHOST', inSecret: 'a host' },
    !merged.user && { what: 'user', variable: 'PGUSER' },
    !merged.database && { what: 'name', variable: 'PGDATABASE', inSecret: 'a dbname' },
  ].filter((m): m is { what: string; variable: string; inSecret?: string } => Boolean(m));
  if (missing.length === 0) return;
  const inSecret = missing.flatMap((m) => (m.inSecret ? [m.inSecret] : []));
  // Given a secret already: what it lacks, not the flag the operator passed.
  const secret = secretArn
    ? `(or add ${andList(inSecret.length ? inSecret : ['them'])} to secret ${secretArn})`
    : `(or pass --database-secret <arn>${inSecret.length ? ` whose secret has ${andList(inSecret)}` : ''})`;
  if (missing.length === 1 && !merged.database && emptyDatabase) {
    throw new OperatorError(`no database name: PGDATABASE is set but empty (libpq reads that as unset): set it to the database's name ${secret}`, 2);
  }
  const empty = !merged.database && emptyDatabase ? ' (PGDATABASE is set but empty: libpq reads that as unset)' : '';
  throw new OperatorError(`no database ${andList(missing.map((m) => m.what))}: set ${andList(missing.map((m) => m.variable))}${empty} ${secret}`, 2);
}

/**
 * application_name of every session atmr-dr opens, its own and its children's: a restore knows
 * the sessions of a killed restore's pg_restore by it.
 */
export const APPLICATION_NAME = 'atmr-dr';

/** libpq variables for a child process (pg_dump, pg_restore, psql). Never log the result. */
export function libpqEnv(conn: PgConnection, database = conn.database): Record<string, string> {
  const env: Record<string, string> = {
    PGHOST: conn.host,
    PGPORT: String(conn.port),
    PGUSER: conn.user,
    PGDATABASE: database,
    PGAPPNAME: APPLICATION_NAME,
    PGCONNECT_TIMEOUT: '15',
  };
  if (conn.password !== undefined) env.PGPASSWORD = conn.password;
  if (conn.sslMode) env.PGSSLMODE = conn.sslMode;
  if (conn.sslRootCert) env.PGSSLROOTCERT = conn.sslRootCert;
  // A path, not a secret: without it pg_dump/psql fail with "no password supplied" where the
  // node-postgres connection of the same run, which reads PGPASSFILE itself, succeeded.
  if (conn.passFile) env.PGPASSFILE = conn.passFile;
  return env;
}

/**
 * node-postgres settings, plus the one part of libpq's sslmode that node-postgres has not got: the
 * plain connection made again when the TLS attempt fails (openClient does it).
 */
export interface SessionConfig extends ClientConfig {
  /** TLS asked without a certificate check, as libpq's prefer: a failed TLS attempt is made again without TLS (openClient says which failures). */
  readonly plainIfTlsFails?: boolean;
}

/** node-postgres' words for a server that answered the TLS request with 'N' (no TLS: ssl off, or built without). */
const SERVER_HAS_NO_TLS = 'The server does not support SSL connections';
/** node-postgres' words for an answer to the TLS request that is neither 'S' (TLS follows) nor 'N': not a PostgreSQL that speaks TLS. */
const TLS_ANSWER_NOT_UNDERSTOOD = 'There was an error establishing an SSL connection';

/**
 * node-postgres settings for the same connection, with libpq's meaning of PGSSLMODE, so a session of
 * the tool connects wherever psql and pg_dump of the same environment do. Unset (libpq's default),
 * `prefer` and `allow` try TLS first, without a certificate check, and connect without when that
 * fails as libpq's prefer does (see openClient): a server that takes TLS connections only (RDS PostgreSQL 15+,
 * rds.force_ssl=1) is reached without PGSSLMODE, as psql reaches it. `allow` is libpq's plain first:
 * taken as `prefer`, which connects to the same servers and encrypts where it can. `disable`: plain
 * only. `require`: TLS only, no certificate check; `verify-ca` / `verify-full`: TLS, certificate
 * checked (against PGSSLROOTCERT, e.g. the RDS CA bundle).
 */
export function pgClientConfig(conn: PgConnection, database = conn.database): SessionConfig {
  const preferTls = conn.sslMode === undefined || conn.sslMode === 'prefer' || conn.sslMode === 'allow';
  const ssl =
    conn.sslMode === 'disable'
      ? false
      : conn.sslMode === 'verify-full' || conn.sslMode === 'verify-ca'
        ? { rejectUnauthorized: true, ...(conn.sslRootCert && { ca: readFileSync(conn.sslRootCert, 'utf8') }) }
        : { rejectUnauthorized: false };
  return {
    host: conn.host,
    port: conn.port,
    user: conn.user,
    password: conn.password,
    database,
    ssl,
    ...(preferTls && { plainIfTlsFails: true }),
    application_name: APPLICATION_NAME,
    connectionTimeoutMillis: PG_CONNECT_TIMEOUT_MS,
    // A restore's session waits idle through a download and a load that take minutes: TCP
    // keepalives every 30 s keep a NAT gateway or load balancer from dropping it as idle.
    keepAlive: true,
    keepAliveInitialDelayMillis: 30_000,
  };
}

/** How long a connection to PostgreSQL may take to open: every connection the tool makes. */
export const PG_CONNECT_TIMEOUT_MS = 15_000;

/** A connection description safe for logs (no password). */
export function describeConnection(conn: PgConnection): string {
  return `${conn.user}@${conn.host}:${conn.port}/${conn.database}`;
}

/** What connectionFailure tells the operator for one kind of refused or failed connection. */
interface ConnectionFailureRule {
  /** The SQLSTATE the server answered; absent: any, including no answer (ECONNREFUSED, a timeout). */
  readonly code?: string;
  /** What the (English) message must say; absent: anything. */
  readonly pattern?: RegExp;
  /** Said instead of the message, when the driver's own words mislead. */
  readonly reason?: string;
  readonly advice: (conn: PgConnection) => string;
  /** 2: the server refused a setting the operator gave; 1: a state that passes, retry later. */
  readonly exitCode: 1 | 2;
}

const CHECK_SETTINGS = () => 'check PGHOST/PGPORT/PGUSER/PGPASSWORD/PGDATABASE (or --database-secret)';

/**
 * First match wins. The settings are the suspect only when the server was not reached or refused
 * them; when it was refused (wrong password, unknown role or database, no pg_hba.conf entry) the
 * fix is a setting, as for any other bad setting (exit 2). A server that answers that it cannot
 * take connections now (closed database, starting up, shutting down, recovering) has the right
 * settings: checking PGHOST would waste the operator's time, and the same command works later
 * (exit 1). The variants of SQLSTATE 57P03 are told apart by their (English) text; another language
 * gets the advice common to them. node-postgres reports a server that asks for a password when none
 * is set as "SASL: ... client password must be a string": say what is missing instead.
 */
const CONNECTION_FAILURES: readonly ConnectionFailureRule[] = [
  { pattern: /client password must be a string/, reason: 'the server asks for a password and none is set', advice: CHECK_SETTINGS, exitCode: 2 },
  {
    // Only PGSSLMODE require or verify-* get here: unset, prefer and allow connect again without TLS (openClient).
    pattern: new RegExp(`^${SERVER_HAS_NO_TLS}$`),
    reason: 'the server does not take TLS connections (ssl is off on it)',
    advice: (conn) => `PGSSLMODE=${conn.sslMode} asks for TLS: turn ssl on on the server, or unset PGSSLMODE (TLS where the server has it, as psql) or set it to disable`,
    exitCode: 2,
  },
  {
    // The server reached, its password check refused: the password is wrong, or the role does not
    // exist (PostgreSQL answers both the same, not to tell who exists). Where the password comes
    // from is what to check (libpq reads PGPASSWORD, else the password file).
    code: '28P01',
    advice: ({ user, passFile }) => `check the password of user "${user}" (and that the role exists: the server refuses both alike): PGPASSWORD, or its line in ${passFile ?? '~/.pgpass'} (or --database-secret)`,
    exitCode: 2,
  },
  {
    // pg_hba.conf has no line for this host, role, database and encryption ("no pg_hba.conf entry"),
    // or one that rejects them ("pg_hba.conf rejects connection", RDS's form). Without TLS by the
    // operator's PGSSLMODE=disable, the server may take TLS connections only (RDS's rds.force_ssl):
    // PGSSLMODE is the setting to change. Without TLS because the server has none (unset, prefer),
    // PGSSLMODE changes nothing and is not named.
    code: '28000',
    pattern: /pg_hba\.conf .*, no encryption$/,
    advice: (conn) =>
      conn.sslMode === 'disable'
        ? `${CHECK_SETTINGS()}; PGSSLMODE=disable connects without TLS, and a server that takes TLS connections only (RDS's rds.force_ssl) refuses it: unset PGSSLMODE (TLS first, as psql) or set it to require, or verify-full with PGSSLROOTCERT to check the certificate`
        : CHECK_SETTINGS(),
    exitCode: 2,
  },
  {
    // Refused over TLS: the server may take this role without TLS only (hostnossl lines). Only
    // PGSSLMODE require or verify-* get here: unset, prefer and allow connect again without TLS (openClient).
    code: '28000',
    pattern: /pg_hba\.conf .*, SSL encryption$/,
    advice: () => `${CHECK_SETTINGS()}; the connection used TLS, and a server that takes this role without TLS only (hostnossl in pg_hba.conf) refuses it: PGSSLMODE=disable connects without`,
    exitCode: 2,
  },
  { code: '28000', advice: CHECK_SETTINGS, exitCode: 2 }, // role does not exist, no pg_hba.conf entry
  { code: '3D000', advice: CHECK_SETTINGS, exitCode: 2 }, // database does not exist
  {
    // The role may log in but not into this database: a grant to fix, not a state that passes.
    code: '42501',
    pattern: /permission denied for database/,
    advice: ({ database, user }) =>
      `the role has no CONNECT privilege on this database: have its owner run GRANT CONNECT ON DATABASE ${quoteIdent(database)} TO ${quoteIdent(user)}, or connect as a role that has it`,
    exitCode: 2,
  },
  {
    code: '55000',
    pattern: /not currently accepting connections/,
    advice: ({ database }) => `the database is closed to connections (ALLOW_CONNECTIONS false): reopen it from another database, e.g. psql -d postgres -c '${reopenDatabaseStatement(database)}'`,
    exitCode: 1,
  },
  { code: '57P03', pattern: /starting up/, advice: () => 'the server is starting up: wait a minute and retry', exitCode: 1 },
  {
    code: '57P03',
    pattern: /shutting down/,
    advice: () => 'the server is shutting down (a stop, a restart or a failover): wait until it is back (on RDS, its status and events say when), then retry',
    exitCode: 1,
  },
  { code: '57P03', pattern: /recovery mode/, advice: () => 'the server is recovering after a crash (replaying its log): wait and retry, it can take minutes', exitCode: 1 },
  { code: '57P03', advice: () => 'the server cannot take connections now (a standby not yet open, or recovering): wait and retry, or connect to the primary', exitCode: 1 },
];
/** Not reached (down, unreachable, a timeout), or an answer not listed above: a retry may do, or a setting is wrong. */
const NOT_REACHED: ConnectionFailureRule = { advice: CHECK_SETTINGS, exitCode: 1 };
/**
 * Not reached (no answer of the server: refused, a timeout) by a command whose connections with the
 * same settings worked earlier in its run: the server went away (a restart, a failover), and the
 * operator's settings are not what to check.
 */
const GONE_AWAY: ConnectionFailureRule = {
  advice: () => "it took this run's connections before: the server went away (a restart, a failover), the settings are not the cause; rerun once it answers (psql -c 'SELECT 1')",
  exitCode: 1,
};

/**
 * One line for a failed connection, the same in every command, with the fix and exit code that fit
 * the server's answer. `answeredBefore`: this run connected with the same settings earlier.
 */
export function connectionFailure(conn: PgConnection, error: unknown, answeredBefore = false): OperatorError {
  const message = oneLine(error);
  const code = sqlState(error);
  const rule =
    CONNECTION_FAILURES.find((r) => (r.code === undefined || r.code === code) && (r.pattern === undefined || r.pattern.test(message))) ??
    (answeredBefore && code === undefined ? GONE_AWAY : NOT_REACHED);
  return new OperatorError(`cannot connect to ${describeConnection(conn)}: ${rule.reason ?? message}; ${rule.advice(conn)}`, rule.exitCode);
}

/**
 * A connected client, or the driver's own error. Every node-postgres session of the tool is opened
 * here. With `plainIfTlsFails` (sslmode unset, prefer, allow), a TLS attempt that fails in one of the
 * ways libpq's prefer connects again without TLS after is made once more without TLS, so the tool
 * connects wherever psql and pg_dump of the same environment do: see plainMayConnect. If that plain
 * attempt fails too, its error is the one reported, as libpq does (the server was reached without
 * TLS, and that answer says what to fix). Any other failure is the caller's, as it came.
 *
 * The client answers its 'error' event: the server ending a session (a restart, a failover, an
 * administrator's pg_terminate_backend, DROP DATABASE WITH (FORCE)) while no statement of it runs,
 * or the socket closing after a statement that ended it, emits 'error' on the client, and without a
 * listener that event crashes the whole process (a Lambda function with nothing reported, the CLI
 * with a stack trace). The next statement fails instead, where the caller reads it. node-postgres is
 * loaded here, on the first connection, not when this module is: commands that resolve a connection
 * without opening one (and the CLI's start) do not pay for it.
 */
export async function openClient(config: SessionConfig): Promise<Client> {
  const { plainIfTlsFails, ...clientConfig } = config;
  try {
    return await connectOnce(clientConfig);
  } catch (error) {
    if (!plainIfTlsFails || !clientConfig.ssl || !plainMayConnect(error)) throw error;
    return connectOnce({ ...clientConfig, ssl: false });
  }
}

/**
 * Whether a failed TLS attempt is one after which libpq's prefer tries without TLS, and a plain
 * connection may succeed: the server has no TLS ('N' to the TLS request); the TLS session was never
 * set up (an answer neither 'S' nor 'N', an OpenSSL error ERR_SSL_* or EPROTO, the socket reset
 * during the handshake: a proxy or server that breaks TLS); or pg_hba.conf refuses the role over
 * TLS while it may take it without (hostnossl lines only: SQLSTATE 28000, "..., SSL encryption").
 * Other refusals (a wrong password, an unknown role or database) would be the same without TLS:
 * they are reported as they came, not replaced by a plain attempt's answer (libpq retries after any
 * refusal; against a TLS-only server that would hide a wrong password behind "no encryption").
 * A timeout is not retried: the wait would double for a server that does not answer at all.
 */
function plainMayConnect(error: unknown): boolean {
  const { message, code } = (error ?? {}) as { message?: unknown; code?: unknown };
  if (message === SERVER_HAS_NO_TLS || message === TLS_ANSWER_NOT_UNDERSTOOD) return true;
  if (typeof code === 'string' && (code.startsWith('ERR_SSL_') || code === 'EPROTO' || code === 'ECONNRESET')) return true;
  return sqlState(error) === '28000' && typeof message === 'string' && /SSL encryption$/.test(message);
}

async function connectOnce(config: ClientConfig): Promise<Client> {
  const { Client: PgClient } = await import('pg');
  const client = new PgClient(config);
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (error) {
    // A failed authentication can leave the socket open (node-postgres does not close it when the
    // server asks for a password it has not got): close it, or the process waits for the server's
    // authentication_timeout (a minute) before it exits.
    await client.end().catch(() => undefined);
    throw error;
  }
  return client;
}

/**
 * A client to `database` (default: the connection's own), or one line naming the settings to check.
 * `bounds`: the session's server-side timeouts and node-postgres' wait for each answer, if any.
 * `answeredBefore`: this run connected with these settings earlier (a restore's later sessions): a
 * server not reached now went away, which the line says instead of naming the settings.
 *
 * `ownTimeouts`: the session's timeouts are its own whatever the database says, given in the
 * startup packet's `options` (which outrank the server's, the role's and the database's settings,
 * and need no statement that a 1 ms statement_timeout could cancel): `bounds`' or none. For a
 * session on a copy a restore gave the backed-up database's settings: the restore test's critical
 * queries failed on production's `statement_timeout = '30s'`, a failure that is not the backup's.
 * node-postgres sends no timeout of 0, hence `options`. Only there: RDS Proxy and PgBouncer (by
 * default) refuse a connection that sends `options`, and a session on production needs none.
 */
export async function connectTo(
  connection: PgConnection,
  database = connection.database,
  bounds: Pick<ClientConfig, 'statement_timeout' | 'lock_timeout' | 'query_timeout'> = {},
  { answeredBefore = false, ownTimeouts = false }: { readonly answeredBefore?: boolean; readonly ownTimeouts?: boolean } = {},
): Promise<Client> {
  const own = `-c statement_timeout=${bounds.statement_timeout || 0} -c lock_timeout=${bounds.lock_timeout || 0} -c idle_in_transaction_session_timeout=0`;
  try {
    return await openClient({ ...pgClientConfig(connection, database), ...(ownTimeouts ? { query_timeout: bounds.query_timeout, options: own } : bounds) });
  } catch (error) {
    throw connectionFailure({ ...connection, database }, error, answeredBefore);
  }
}

/**
 * The bounds of atmr-dr's own short sessions on a server it works on (a database's size for a
 * progress line, a catalog read): the server cancels a wait for another session's lock after 10 s
 * (lock_timeout) and a statement after 15 s (statement_timeout), and node-postgres gives the answer
 * up 5 s after that (query_timeout), for a server that sends not even the cancel (a hung backend, a
 * network that drops the packets). Without them such a read took the server's own timeouts (none by
 * default), and one that waited for ever held the command with no line. The server's two are set
 * with SET LOCAL in the read's transaction (setShortBounds), never as startup parameters: PgBouncer
 * (by default) and RDS Proxy refuse a connection that sends them, and the backup's size read failed
 * behind one. Never for pg_dump's and pg_restore's sessions, nor as the restore's own session's
 * settings, whose statements are long by design (its size watch bounds one read's transaction).
 */
export const SHORT_SESSION_BOUNDS = { lock_timeout: 10_000, statement_timeout: 15_000, query_timeout: 20_000 } as const;

/** A bound in ms as an operator reads it: "60 min", "15 s". */
export function boundText(ms: number): string {
  return ms % 60_000 === 0 ? `${ms / 60_000} min` : `${ms / 1000} s`;
}

/** A read's bounds, in ms: the server's lock_timeout and statement_timeout, node-postgres' wait for the answer (query_timeout). */
export interface ReadBounds {
  readonly lock_timeout: number;
  readonly statement_timeout: number;
  readonly query_timeout: number;
}

/** A short session's read that one of SHORT_SESSION_BOUNDS ended: its line names the server and what to check. */
export class ReadGivenUp extends OperatorError {
  /** The server sent nothing (query_timeout): the session may still be busy, and is not to be waited for. */
  readonly unanswered: boolean;
  /** The bound that ended the read: only a statement_timeout is the read being too long for its bound. */
  readonly bound: keyof ReadBounds;
  constructor(message: string, bound: keyof ReadBounds) {
    super(message);
    this.bound = bound;
    this.unanswered = bound === 'query_timeout';
  }
}

/**
 * `text` on `client`, a session to `database` of `connection` bounded by `bounds` (its own,
 * shortRead's and the row counts', or a transaction's SET LOCAL, the restore's size watch); a bound
 * that ends it is one ReadGivenUp line naming `what`, the server, the bound, and what to check there.
 */
export async function shortQuery<R extends QueryResultRow>(
  client: Client,
  connection: PgConnection,
  database: string,
  what: string,
  text: string,
  values?: unknown[],
  bounds: ReadBounds = SHORT_SESSION_BOUNDS,
): Promise<R[]> {
  try {
    return (await client.query<R>(text, values)).rows;
  } catch (error) {
    const code = sqlState(error);
    const bound: keyof ReadBounds | undefined =
      code === LOCK_NOT_AVAILABLE ? 'lock_timeout' : code === QUERY_CANCELED ? 'statement_timeout' : isQueryReadTimeout(error) ? 'query_timeout' : undefined;
    if (bound === undefined) throw error;
    const why = {
      lock_timeout: `waited ${boundText(bounds.lock_timeout)} for a lock another session holds (lock_timeout)`,
      statement_timeout: `did not end within ${boundText(bounds.statement_timeout)} (statement_timeout)`,
      query_timeout: `got no answer within ${boundText(bounds.query_timeout)} (the server accepts connections but does not answer)`,
    }[bound];
    throw new ReadGivenUp(
      `${what} on ${describeConnection({ ...connection, database })} ${why}: check that the server answers (psql -c 'SELECT 1') and which session holds a lock or runs long there (SELECT pid, state, wait_event_type, query FROM pg_stat_activity WHERE state <> 'idle')`,
      bound,
    );
  }
}

/** SHORT_SESSION_BOUNDS' server-side bounds for the rest of the transaction `client` is in (after its BEGIN). */
export async function setShortBounds(client: Client): Promise<void> {
  await client.query(`SET LOCAL lock_timeout = ${SHORT_SESSION_BOUNDS.lock_timeout}`);
  await client.query(`SET LOCAL statement_timeout = ${SHORT_SESSION_BOUNDS.statement_timeout}`);
}

/**
 * One read on a short session of its own (SHORT_SESSION_BOUNDS, shortQuery), in a transaction that
 * sets the server's bounds (setShortBounds); the session is ended after it, the transaction with it.
 */
export async function shortRead<R extends QueryResultRow>(connection: PgConnection, database: string, what: string, text: string, values?: unknown[]): Promise<R[]> {
  const client = await connectTo(connection, database, { query_timeout: SHORT_SESSION_BOUNDS.query_timeout });
  let unanswered = false;
  try {
    await client.query('BEGIN');
    await setShortBounds(client);
    return await shortQuery<R>(client, connection, database, what, text, values);
  } catch (error) {
    // The BEGIN or a SET LOCAL unanswered as well (shortQuery words only the read's own bound).
    unanswered = (error instanceof ReadGivenUp && error.unanswered) || isQueryReadTimeout(error);
    throw error;
  } finally {
    // A server that sends nothing may not answer the end either: not waited for.
    const ending = client.end().catch(() => undefined);
    if (!unanswered) await ending;
  }
}

function stripUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}

