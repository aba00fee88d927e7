import Redis from 'ioredis';
import type { PgConnection } from '../shared/pg-connection';
import { openClient, pgClientConfig } from '../shared/pg-connection';
import type { RedisProbeClient, SqlProbeClient } from './probe';

/**
 * One Redis connection for one probe run: no reconnection, no offline queue and no retries, so a
 * dead broker fails the run's check at once instead of queueing commands.
 */
export function openRedisSession(options: { host: string; port: number; tls: boolean; timeoutMs: number; username?: string; password?: string }): {
  client: RedisProbeClient;
  close(): void;
} {
  const redis = new Redis({
    host: options.host,
    port: options.port,
    ...(options.tls && { tls: { servername: options.host } }),
    // ElastiCache AUTH token / requirepass (and an ACL user when given).
    ...(options.password && { password: options.password }),
    ...(options.username && { username: options.username }),
    connectTimeout: options.timeoutMs,
    commandTimeout: options.timeoutMs,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    enableOfflineQueue: true,
    // ioredis' ready check sends INFO before any command and drops the connection when it is refused:
    // a Redis with INFO renamed or denied (managed Redis) then failed PING too and looked down. The
    // probe reads INFO memory itself; a Redis still loading its data refuses PING (LOADING) and is
    // reported down at once instead of after the deadline.
    enableReadyCheck: false,
    lazyConnect: false,
    // A down broker is the probe's finding, not an unhandled 'error' event.
    showFriendlyErrorStack: false,
  });
  let lastError: Error | undefined;
  redis.on('error', (error: Error) => {
    lastError = error;
  });
  const withCause = async <T>(work: Promise<T>): Promise<T> => {
    try {
      return await work;
    } catch (error) {
      // ioredis reports "Connection is closed"; the socket error behind it names the cause.
      if (lastError && error instanceof Error && !(error as { cause?: unknown }).cause) (error as { cause?: unknown }).cause = lastError;
      throw error;
    }
  };
  return {
    client: {
      ping: () => withCause(redis.ping()),
      llen: (key) => withCause(redis.llen(key)),
      info: (section) => withCause(redis.info(section)),
      set: (key, value, expiry, seconds) => withCause(redis.set(key, value, expiry, seconds)),
    },
    close: () => redis.disconnect(),
  };
}

/**
 * One PostgreSQL session for one probe run (see `openDatabase` in probe.ts: a fresh session each run).
 * `statement_timeout` bounds each query on the server side as well.
 */
export async function openDatabaseSession(connection: PgConnection, timeoutMs: number): Promise<{ client: SqlProbeClient; close(): Promise<void> }> {
  const client = await openClient({
    ...pgClientConfig(connection),
    application_name: 'atmr-dr-health-probe',
    connectionTimeoutMillis: timeoutMs,
    statement_timeout: timeoutMs,
    query_timeout: timeoutMs,
  });
  return { client, close: () => client.end() };
}
