import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import { captureLambdaHandler } from '@aws-lambda-powertools/tracer/middleware';
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { GetParameterCommand, SSMClient } from '@aws-sdk/client-ssm';
import middy from '@middy/core';
import { effectiveMode, parseKillswitchValue, type KillswitchMode } from '../killswitch/value';
import { SDK_RETRY } from '../shared/aws';
import { observability } from '../shared/observability';
import { resolveConnection } from '../shared/pg-connection';
import { openDatabaseSession, openRedisSession } from './clients';
import { CachedCredentials } from './credentials';
import { PROBE_SERVICE, ProbeDeps, ProbeReport, runProbe } from './probe';
import { parseProbeEnvironment, type ProbeEnvironment } from './settings';

const { logger, metrics, tracer } = observability(PROBE_SERVICE);
const secretsManager = tracer.captureAWSv3Client(new SecretsManagerClient(SDK_RETRY));
const ssm = tracer.captureAWSv3Client(new SSMClient(SDK_RETRY));

/** Credentials are read from Secrets Manager again after 15 minutes, and at once when refused (CachedCredentials). */
const CREDENTIALS_MAX_AGE_MS = 15 * 60_000;
/** Kept across the runs of a warm container, one entry per secret and what is read with it. */
const credentialCaches = new Map<string, CachedCredentials<unknown>>();
function cachedCredentials<T>(key: string, read: () => Promise<T>): CachedCredentials<T> {
  let cache = credentialCaches.get(key);
  if (!cache) credentialCaches.set(key, (cache = new CachedCredentials(read, CREDENTIALS_MAX_AGE_MS)));
  return cache as CachedCredentials<T>;
}
type Log = ProbeDeps['logger'];
const logReread = (log: Log, target: string, secretArn: string) => (refusal: { reason: string; detail: string }) =>
  log.info('credentials refused (a rotation?): secret read again and the connection made once more', { target, secretArn, ...refusal });

type DatabaseSettings = NonNullable<ProbeEnvironment['database']>;

/** A session with the database's credentials (an RDS-managed secret, rotated every 7 days by default). */
async function openDatabase(db: DatabaseSettings, log: Log) {
  const credentials = cachedCredentials(`database ${JSON.stringify(db)}`, () =>
    resolveConnection({
      env: {},
      secretArn: db.secretArn,
      secretsManager,
      overrides: { host: db.host, port: db.port, database: db.name, sslMode: db.sslMode },
    }),
  );
  return credentials.use((connection) => openDatabaseSession(connection, db.timeoutMs), logReread(log, 'database', db.secretArn));
}

interface RedisCredentials {
  readonly username?: string;
  readonly password: string;
}

/** The secret holds the AUTH token itself, or JSON with `password` (and `username` for an ACL user). */
async function readRedisCredentials(secretArn: string): Promise<RedisCredentials> {
  const raw = (await secretsManager.send(new GetSecretValueCommand({ SecretId: secretArn }))).SecretString ?? '';
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
  const credentials = cachedCredentials(`redis ${authSecretArn}`, () => readRedisCredentials(authSecretArn));
  return credentials.use(async (auth) => {
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
  }, logReread(log, 'redis', authSecretArn));
}

/** Builds the probe's clients from its settings: what the Lambda (and the bench) run. */
export function probeDeps(settings: ProbeEnvironment, overrides: Partial<ProbeDeps> = {}): ProbeDeps {
  const { redis, database, killswitchParameter } = settings;
  const log = overrides.logger ?? logger;
  return {
    metrics,
    logger,
    ...(redis && { openRedis: () => openRedis(redis, log) }),
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
