import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import { GetParameterError } from '@aws-lambda-powertools/parameters/errors';
import { SecretsProvider } from '@aws-lambda-powertools/parameters/secrets';
import { captureLambdaHandler } from '@aws-lambda-powertools/tracer/middleware';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { GetParameterCommand, SSMClient } from '@aws-sdk/client-ssm';
import middy from '@middy/core';
import { effectiveMode, parseKillswitchValue, type KillswitchMode } from '../killswitch/value';
import { SDK_RETRY } from '../shared/aws';
import { observability } from '../shared/observability';
import { resolveConnection } from '../shared/pg-connection';
import { openDatabaseSession, openRedisSession } from './clients';
import { PROBE_SERVICE, ProbeDeps, ProbeReport, runProbe } from './probe';
import { EvictedKeysCounter } from './redis-memory';
import { parseProbeEnvironment, type ProbeEnvironment } from './settings';
import { classifyError } from './targets';

const { logger, metrics, tracer } = observability(PROBE_SERVICE);
const secretsManager = tracer.captureAWSv3Client(new SecretsManagerClient(SDK_RETRY));
const ssm = tracer.captureAWSv3Client(new SSMClient(SDK_RETRY));

/**
 * The database's and the Redis AUTH token's secrets, kept 15 minutes by Powertools Parameters so that
 * a run every minute does not call Secrets Manager each time (the cache lives in the module: across
 * the runs of a warm container, one entry per secret).
 */
const secrets = new SecretsProvider({ awsSdkV3Client: secretsManager });
const SECRET_MAX_AGE_SECONDS = 15 * 60;

/** A secret's string, from the cache or (`forceFetch`) from Secrets Manager now. */
async function readSecret(secretArn: string, forceFetch: boolean): Promise<string | undefined> {
  try {
    const value = await secrets.get(secretArn, { maxAge: SECRET_MAX_AGE_SECONDS, forceFetch });
    return typeof value === 'string' ? value : undefined;
  } catch (error) {
    // Powertools wraps the SDK's error (AccessDeniedException, ThrottlingException...) in a
    // GetParameterError; the SDK's own names what to fix.
    throw error instanceof GetParameterError && error.cause !== undefined ? error.cause : error;
  }
}

/**
 * Redis's evicted_keys at this container's previous run: RedisEvictedKeys is the difference. In the
 * module, as the secrets' cache: a warm container runs every minute; a new one (a cold start, or a
 * second one beside it under the probe's reserved concurrency of 2) publishes no delta at its first
 * run and counts from there, so evictions in the minute of a cold start go uncounted; while Redis
 * keeps evicting (it stays full), the next minute counts its own.
 */
const redisEvictions = new EvictedKeysCounter();

type Log = ProbeDeps['logger'];

/**
 * Connects with credentials read from a secret (kept 15 minutes), and when the server refuses them
 * (reason `auth`: PostgreSQL SQLSTATE class 28, Redis WRONGPASS or NOAUTH) reads the secret again at
 * once (`forceFetch`, which keeps what it reads) and connects once more, no further. A rotation
 * changes the password on the server and in the secret within seconds: kept credentials would
 * otherwise be refused until they aged out (15 minutes of DatabaseUp 0, which Database-Down counts,
 * after every rotation of an RDS-managed secret, weekly).
 * Credentials the secret itself does not match cost one read of it a run (two in a container's first
 * run, whose first read is already fresh: Powertools does not say whether a value came from its
 * cache), so a fix of the secret is seen within a minute.
 */
async function connectReadingAgainOnRefusal<T, R>(
  target: string,
  secretArn: string,
  log: Log,
  read: (forceFetch: boolean) => Promise<T>,
  connect: (credentials: T) => Promise<R>,
): Promise<R> {
  try {
    return await connect(await read(false));
  } catch (error) {
    const refusal = classifyError(error);
    if (refusal.reason !== 'auth') throw error;
    // The refusal's words (the server's: "password authentication failed for user ...", WRONGPASS), never the credentials.
    log.info('credentials refused (a rotation?): secret read again and the connection made once more', { target, secretArn, ...refusal });
  }
  return connect(await read(true));
}

type DatabaseSettings = NonNullable<ProbeEnvironment['database']>;

/** A session with the database's credentials (an RDS-managed secret, rotated every 7 days by default). */
async function openDatabase(db: DatabaseSettings, log: Log) {
  const read = (forceFetch: boolean) =>
    resolveConnection({
      env: {},
      secretArn: db.secretArn,
      readSecret: (arn) => readSecret(arn, forceFetch),
      overrides: { host: db.host, port: db.port, database: db.name, sslMode: db.sslMode },
    });
  return connectReadingAgainOnRefusal('database', db.secretArn, log, read, (connection) => openDatabaseSession(connection, db.timeoutMs));
}

interface RedisCredentials {
  readonly username?: string;
  readonly password: string;
}

/** The secret holds the AUTH token itself, or JSON with `password` (and `username` for an ACL user). */
async function readRedisCredentials(secretArn: string, forceFetch: boolean): Promise<RedisCredentials> {
  const raw = (await readSecret(secretArn, forceFetch)) ?? '';
  try {
    const json = JSON.parse(raw) as { password?: unknown; username?: unknown };
    if (typeof json.password === 'string') return { password: json.password, ...(typeof json.username === 'string' && { username: json.username }) };
  } catch {
    // not JSON: the secret string is the token
  }
  return { password: raw };
}

type RedisSettings = NonNullable<ProbeEnvironment['redis']>;

/** A Redis session, with the AUTH token of `authSecretArn` when there is one. */
async function openRedis(redis: RedisSettings, log: Log) {
  const { authSecretArn } = redis;
  if (!authSecretArn) return openRedisSession(redis);
  return connectReadingAgainOnRefusal('redis', authSecretArn, log, (forceFetch) => readRedisCredentials(authSecretArn, forceFetch), async (auth) => {
    const session = openRedisSession({ ...redis, ...auth });
    // ioredis sends AUTH as it connects, and a refusal shows only at the first command: a PING here
    // meets it while the token can still be read again (the check's own commands follow).
    try {
      await session.client.ping();
    } catch (error) {
      session.close();
      throw error;
    }
    return session;
  });
}

/** Builds the probe's clients from its settings: what the Lambda (and the bench) run. */
export function probeDeps(settings: ProbeEnvironment, overrides: Partial<ProbeDeps> = {}): ProbeDeps {
  const { redis, database, killswitchParameter } = settings;
  const log = overrides.logger ?? logger;
  return {
    metrics,
    logger,
    ...(redis && { openRedis: () => openRedis(redis, log), redisEvictions }),
    ...(database && { openDatabase: () => openDatabase(database, log) }),
    ...(killswitchParameter && {
      readKillswitchMode: async (): Promise<KillswitchMode> => {
        const { Parameter } = await ssm.send(new GetParameterCommand({ Name: killswitchParameter }));
        const parsed = parseKillswitchValue(Parameter?.Value ?? '');
        // A malformed value counts as normal, and so does an expired one (its expiry schedule late or
        // failed), as for every reader of the killswitch: the mode published is the one the API applies.
        return parsed.ok ? effectiveMode(parsed.value) : 'normal';
      },
    }),
    ...overrides,
  };
}

/** The scheduled run: the settings are validated at each call (cheap) so a bad value names its field. */
export async function probe(): Promise<Pick<ProbeReport, 'checksMade' | 'checksFailed' | 'durationMs'> & { down: string[]; retried: string[] }> {
  const settings = parseProbeEnvironment(process.env.PROBE_SETTINGS);
  try {
    const report = await runProbe(settings, probeDeps(settings));
    return {
      checksMade: report.checksMade,
      checksFailed: report.checksFailed,
      durationMs: report.durationMs,
      down: [...report.down],
      retried: [...report.retried],
    };
  } catch (error) {
    // runProbe settles every check itself: reaching here is a bug, and it must not go unseen.
    logger.error('probe run failed', error as Error);
    throw error;
  }
}

export const handler = middy(probe).use(injectLambdaContext(logger)).use(logMetrics(metrics)).use(captureLambdaHandler(tracer));
