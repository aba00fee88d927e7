import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import { captureLambdaHandler } from '@aws-lambda-powertools/tracer/middleware';
import { SecretsProvider } from '@aws-lambda-powertools/parameters/secrets';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { GetParameterCommand, SSMClient } from '@aws-sdk/client-ssm';
import middy from '@middy/core';
import { effectiveMode, parseKillswitchValue, type KillswitchMode } from '../killswitch/value';
import { SDK_RETRY } from '../shared/aws';
import { observability } from '../shared/observability';
import { resolveConnection, type PgConnection } from '../shared/pg-connection';
import { openDatabaseSession, openRedisSession } from './clients';
import { PROBE_SERVICE, ProbeDeps, ProbeReport, runProbe } from './probe';
import { parseProbeEnvironment, type ProbeEnvironment } from './settings';

const { logger, metrics, tracer } = observability(PROBE_SERVICE);
const secretsManager = tracer.captureAWSv3Client(new SecretsManagerClient(SDK_RETRY));
const ssm = tracer.captureAWSv3Client(new SSMClient(SDK_RETRY));

/** The database credentials, re-read from Secrets Manager every 15 minutes (rotation). */
const CONNECTION_MAX_AGE_MS = 15 * 60_000;
let cachedConnection: { connection: PgConnection; at: number } | undefined;

async function databaseConnection(db: NonNullable<ProbeEnvironment['database']>): Promise<PgConnection> {
  if (cachedConnection && Date.now() - cachedConnection.at < CONNECTION_MAX_AGE_MS) return cachedConnection.connection;
  const connection = await resolveConnection({
    env: {},
    secretArn: db.secretArn,
    secretsManager,
    overrides: { host: db.host, port: db.port, database: db.name, sslMode: db.sslMode },
  });
  cachedConnection = { connection, at: Date.now() };
  return connection;
}

// Powertools' cache, as the other functions read their secrets: no hand-kept timestamp.
const secrets = new SecretsProvider({ awsSdkV3Client: secretsManager });
interface RedisCredentials {
  readonly username?: string;
  readonly password: string;
}

/**
 * The Redis AUTH token, re-read every 15 minutes like the database's (rotation). The secret holds
 * the token itself, or JSON with `password` (and `username` for an ACL user).
 */
async function redisCredentials(secretArn: string): Promise<RedisCredentials> {
  const raw = String((await secrets.get(secretArn, { maxAge: CONNECTION_MAX_AGE_MS / 1000 })) ?? '');
  try {
    const json = JSON.parse(raw) as { password?: unknown; username?: unknown };
    if (typeof json.password === 'string') return { password: json.password, ...(typeof json.username === 'string' && { username: json.username }) };
  } catch {
    // not JSON: the secret string is the token
  }
  return { password: raw };
}

/** Builds the probe's clients from its settings: what the Lambda (and the bench) run. */
export function probeDeps(settings: ProbeEnvironment, overrides: Partial<ProbeDeps> = {}): ProbeDeps {
  const { redis, database, killswitchParameter } = settings;
  return {
    metrics,
    logger,
    ...(redis && {
      openRedis: async () => openRedisSession({ ...redis, ...(redis.authSecretArn && (await redisCredentials(redis.authSecretArn))) }),
    }),
    ...(database && { openDatabase: async () => openDatabaseSession(await databaseConnection(database), database.timeoutMs) }),
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
