import type { Logger } from '@aws-lambda-powertools/logger';
import { MetricUnit, type Metrics } from '@aws-lambda-powertools/metrics';
import type { MetricUnit as MetricUnitValue } from '@aws-lambda-powertools/metrics/types';
import { emitSingleMetric } from '../shared/single-metric';
import { MODE_METRIC_VALUE, type KillswitchMode } from '../killswitch/value';
import { CheckResult, checkHttp, checkHttpNamingHung, classifyError, tellingConnection, type TcpAddress, withTimeout } from './targets';
import { READ_ONLY_STATE_SQL, readOnlyStateInReadOnlyTransaction, refusesApplicationWrites, roleReadOnlyDefaultReset } from '../shared/read-only';
import { EvictedKeysCounter, policyEvictsAnyKey, redisEvictedKeysFromInfo, redisMemoryFromInfo, type RedisMemory } from './redis-memory';
import { oneLine } from '../shared/errors';
import { operatorCommand } from '../shared/constants';
import { INVALID_PASSWORD, sqlState } from '../shared/pg-errors';

/** Powertools `service` of the probe: the dimension every probe metric carries. */
export const PROBE_SERVICE = 'detection-probe';

/** Metric names of the probe (the environment's namespace AtmrDr/<env>, dimension service=detection-probe). */
export const PROBE_METRICS = {
  apiLive: 'ApiLive',
  apiReady: 'ApiReady',
  osrmAvailability: 'OsrmAvailability',
  redisUp: 'RedisUp',
  /** 100 x used_memory / maxmemory (`INFO memory`), only when Redis has a maxmemory. */
  redisMemoryUsedPercent: 'RedisMemoryUsedPercent',
  /** Keys Redis evicted since the probe's previous reading (`INFO stats` evicted_keys): a Celery broker must never evict. */
  redisEvictedKeys: 'RedisEvictedKeys',
  /** 1 when `maxmemory_policy` is allkeys-* (a full Redis drops any key, queued tasks included), else 0. */
  redisPolicyEvictsKeys: 'RedisPolicyEvictsKeys',
  /** Per queue (dimension `Queue`). */
  celeryQueueDepth: 'CeleryQueueDepth',
  /** Sum of the configured queues: what autoscaling and the growth alarm watch. */
  celeryQueueDepthTotal: 'CeleryQueueDepthTotal',
  databaseUp: 'DatabaseUp',
  dbReadOnly: 'DbReadOnly',
  /** Per target (dimension `Target`), milliseconds. */
  latency: 'ProbeLatency',
  /** Checks that failed / checks made this run: their ratio is the "flaky network" signal. */
  checksFailed: 'ProbeChecksFailed',
  checksMade: 'ProbeChecksMade',
  /** The killswitch mode seen this run (0 normal, 1 degraded, 2 maintenance): one datapoint a minute. */
  killswitchMode: 'KillswitchMode',
} as const;

/** OSRM's `Target` for its attempt `index` (from 0) of `attempts`: each attempt is a check of its own. */
function osrmTargetName(index: number, attempts: number): string {
  return attempts > 1 ? `osrm#${index + 1}` : 'osrm';
}

/**
 * Every `Target` a run with these settings reports (its checks' names in the logs, and the dimension
 * of each ProbeLatency datapoint), so that the dashboard graphs each target's latency by its name.
 */
export function probeTargetNames(settings: Pick<ProbeSettings, 'api' | 'osrm' | 'redis' | 'database'>): string[] {
  return [
    ...(settings.api ? ['api-health', 'api-ready'] : []),
    ...(settings.osrm ? Array.from({ length: settings.osrm.attempts }, (_, i) => osrmTargetName(i, settings.osrm!.attempts)) : []),
    ...(settings.redis ? ['redis'] : []),
    ...(settings.database ? ['database'] : []),
  ];
}

/** A Redis connection for one run; ioredis fits. */
export interface RedisProbeClient {
  ping(): Promise<string>;
  llen(key: string): Promise<number>;
  /** `INFO <section>`: read-only, answered from the server's own counters. */
  info(section: 'memory' | 'stats'): Promise<string>;
  /** `SET key value EX seconds`: the write check (REDIS_WRITE_CHECK_KEY). */
  set(key: string, value: string, expiry: 'EX', seconds: number): Promise<unknown>;
}

/**
 * The key of the probe's write check, written every run with a REDIS_WRITE_CHECK_TTL_SECONDS expiry
 * (never more than that one key). A Redis ACL user of the probe needs `+set` on it (docs/detection.md).
 */
export const REDIS_WRITE_CHECK_KEY = 'atmr-dr:probe:write-check';
/**
 * The size of the write check's value, as big as a Celery task message (its kombu envelope, headers
 * and base64 body: 1 to a few KB). A Redis at maxmemory that cannot evict refuses a write only when
 * the write's own bytes would take it over the limit: a write of a few bytes still fitted in a Redis
 * that refused every task Celery pushed, and the check passed while nothing could be queued.
 */
export const REDIS_WRITE_CHECK_BYTES = 4096;
/**
 * The write check's expiry: long enough to outlive the SET, short enough that its 4 KB are gone
 * seconds after each run (and after the last run if the probe stops), whatever the probe's ACL user
 * may do (it has `+set`, not `+del`).
 */
export const REDIS_WRITE_CHECK_TTL_SECONDS = 10;

/**
 * The error code a Redis server's error reply starts with (`READONLY` a replica, `OOM` full at
 * maxmemory without eviction, `MISCONF` writes stopped after a failed background save, `NOPERM` the
 * probe's ACL user, `LOADING` ...); undefined for anything else (ioredis' own "Connection is closed.",
 * "Command timed out", which have no upper-case code).
 */
export function redisErrorCode(error: unknown): string | undefined {
  return /^([A-Z][A-Z_]+) /.exec(error instanceof Error ? error.message : '')?.[1];
}

/**
 * classifyError, with a refusal by the Redis server itself named by its code in lower case (`readonly`,
 * `oom`, `misconf` ...). A refused login (NOAUTH, WRONGPASS) stays Redis down (Health-RedisDown,
 * which holds automatic rollbacks): it is also what the application meets when Redis lost its
 * AUTH token or ACL user (a restart, a failover), and the probe cannot tell that from its own wrong
 * token. Its detail says both causes and how to tell them apart.
 */
function classifyRedisError(error: unknown): { reason: string; detail: string } {
  const classified = classifyError(error);
  if (classified.reason === 'auth') {
    return {
      reason: 'auth',
      detail: `redis refused the probe's login (${classified.detail}): either the probe's token (detection.probe.redis.authSecretArn) is wrong or Redis lost its AUTH/ACL; if the API's /ready says redis ok, fix the probe's token`,
    };
  }
  const code = classified.reason === 'error' ? redisErrorCode(error) : undefined;
  return code ? { reason: code.toLowerCase(), detail: classified.detail } : classified;
}
/**
 * classifyError, with PostgreSQL refusing the probe's login (SQLSTATE class 28, reason `auth`) naming
 * the fix: the secret the probe logs in with. The handler reads the secret again after a first
 * refusal (a rotation), so a refusal that stays is the secret's own credentials. As for Redis, a
 * refused application login reads the same from here; the API's /ready tells them apart.
 */
function classifyDatabaseError(secretArn: string | undefined): (error: unknown) => { reason: string; detail: string } {
  const secret = `the probe's secret (detection.probe.database.secretArn, else database.secretArn${secretArn ? `: ${secretArn}` : ''})`;
  return (error) => {
    const classified = classifyError(error);
    if (classified.reason !== 'auth') return classified;
    const fix =
      sqlState(error) === INVALID_PASSWORD
        ? `${secret} does not hold its role's password (or names a role that does not exist: PostgreSQL answers both alike): put the role's password in that secret`
        : `the role in ${secret} may not connect (no pg_hba.conf line for it, a role that does not exist or has no LOGIN): create it as docs/detection.md says ("The probe's database role") or fix the secret's username`;
    return { reason: 'auth', detail: `the database refused the probe's login (${classified.detail}): ${fix}; if the API's /ready says database ok, only the probe's login is wrong` };
  };
}

/** A PostgreSQL connection for one run; node-postgres' Client fits. */
export interface SqlProbeClient {
  query(sql: string): Promise<{ rows: Record<string, unknown>[] }>;
}
interface Session<C> {
  readonly client: C;
  /** Ends the connection (also called on timeout, to free the socket). */
  close(): void | Promise<void>;
}

export interface ProbeSettings {
  /** The environment probed (PROBE_SETTINGS has it): the --env of the commands the probe's lines print. */
  readonly environmentName?: string;
  readonly api?: { readonly baseUrl: string; readonly timeoutMs: number };
  readonly osrm?: {
    readonly healthUrl: string;
    readonly timeoutMs: number;
    readonly attempts: number;
    /** Attempts start this far apart (concurrently), so a run stays short when OSRM hangs. @default 1000 */
    readonly attemptSpacingMs?: number;
  };
  /**
   * `host` and `port` (PROBE_SETTINGS has them): a check that times out tries a TCP connection there
   * within the same deadline, to say whether the server accepted the connection (noAnswerDetail).
   */
  readonly redis?: { readonly timeoutMs: number; readonly queues: readonly string[]; readonly host?: string; readonly port?: number };
  readonly database?: {
    readonly timeoutMs: number;
    readonly host?: string;
    readonly port?: number;
    /** The secret the probe logs in with (PROBE_SETTINGS has it): named in the detail of a refused login. */
    readonly secretArn?: string;
  };
}

export interface ProbeDeps {
  readonly metrics: Pick<Metrics, 'addMetric' | 'singleMetric'>;
  readonly logger: Pick<Logger, 'info' | 'warn' | 'error'>;
  readonly fetch?: typeof fetch;
  /** Opens a Redis connection for this run (a fresh one: a dead broker is seen at once). */
  readonly openRedis?: () => Session<RedisProbeClient> | Promise<Session<RedisProbeClient>>;
  /**
   * Opens a PostgreSQL session for this run. A fresh session each run on purpose: a database-level
   * `default_transaction_read_only` only shows in sessions opened after it was set.
   */
  readonly openDatabase?: () => Promise<Session<SqlProbeClient>>;
  /** Reads the killswitch mode. */
  readonly readKillswitchMode?: () => Promise<KillswitchMode>;
  /**
   * The previous run's `evicted_keys`, kept across runs by the caller (the Lambda's container):
   * RedisEvictedKeys is the difference. @default - no RedisEvictedKeys (the counter is still logged)
   */
  readonly redisEvictions?: EvictedKeysCounter;
}

export interface TargetReport extends CheckResult {
  readonly target: string;
  /**
   * An attempt that got no answer and was made again in the same run (see secondAttemptOnNoAnswer):
   * counted in checksMade and checksFailed (it is the check's first attempt), but not the target's outcome.
   */
  readonly retried?: true;
  /**
   * The attempt made again after a first one that got no answer: the target's outcome (RedisUp,
   * DatabaseUp, ApiReady), never counted in checksMade or checksFailed (see runProbe).
   */
  readonly secondAttempt?: true;
}

export interface MetricRecord {
  readonly name: string;
  readonly value: number;
  readonly unit: MetricUnitValue;
  readonly dimensions?: Readonly<Record<string, string>>;
}

export interface ProbeReport {
  readonly targets: readonly TargetReport[];
  readonly metrics: readonly MetricRecord[];
  readonly checksMade: number;
  readonly checksFailed: number;
  /** `target:reason` of each target down this run (its last attempt). */
  readonly down: readonly string[];
  /** `target:reason` of each attempt that got no answer and was made again. */
  readonly retried: readonly string[];
  readonly durationMs: number;
  readonly celeryQueueDepth?: Readonly<Record<string, number>>;
  /** Redis memory and eviction policy (`INFO memory`); absent when Redis is down or INFO was refused. */
  readonly redisMemory?: RedisMemory;
  /**
   * `INFO stats` evicted_keys (`total`, since Redis started) and the keys evicted since the previous
   * reading (`sincePrevious`, RedisEvictedKeys; absent for a first reading); absent when unread.
   */
  readonly redisEvictions?: { readonly total: number; readonly sincePrevious?: number };
  /** `readOnly`: the application's writes are refused (DbReadOnly); the rest says why (see refusesApplicationWrites). */
  readonly database?: { readonly readOnly: boolean; readonly transactionReadOnly: boolean; readonly inRecovery: boolean; readonly defaultSource: string; readonly databaseSetting?: string };
  readonly killswitchMode?: KillswitchMode;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** The pause before the second attempt of a check that got no answer: long enough for a reset or a lost SYN to pass. */
export const RETRY_PAUSE_MS = 300;
/**
 * A second attempt is made only when it can end (pause and its whole timeout included) within this
 * time of the run's start: with the 3 s default a run's binary checks end by 6.3 s; with a 15 s
 * timeout (the config's maximum) a timed-out first attempt is not tried again, so a run still ends
 * well inside the Lambda's 30 s (probeRunWorstCaseMs, checked by the construct).
 */
export const RETRY_BUDGET_MS = 20_000;

/** Reasons of a check that got no answer at all: worth a second attempt (an answer, such as a 503 or a refusal by Redis, is not). */
const NO_ANSWER = new Set(['refused', 'reset', 'dns', 'timeout', 'unreachable']);

/**
 * Runs `attempt`, and once more after RETRY_PAUSE_MS when it failed to reach the dependency or got
 * no answer (refused, reset, DNS, timeout): one lost connection no longer makes a bad minute for
 * RedisUp, DatabaseUp or ApiReady, whose alarms count bad minutes. An answer saying the dependency is
 * bad (a 503, a read-only database, a Redis refusing the write) is its state and is not tried again.
 * Returns every attempt made; the last one is the run's outcome.
 */
async function secondAttemptOnNoAnswer<T extends { result: CheckResult }>(runStarted: number, timeoutMs: number, attempt: () => Promise<T>): Promise<T[]> {
  const first = await attempt();
  const { up, reason } = first.result;
  if (up || !NO_ANSWER.has(reason ?? '')) return [first];
  if (performance.now() - runStarted + RETRY_PAUSE_MS + timeoutMs > RETRY_BUDGET_MS) return [first];
  await sleep(RETRY_PAUSE_MS);
  return [first, await attempt()];
}

/**
 * The longest a run can take with `settings` (every target hung): the OSRM attempts' spread plus one
 * timeout, a binary check's two attempts (bounded by RETRY_BUDGET_MS), the killswitch read's 5 s.
 * With the defaults (3 s timeouts, 3 OSRM attempts 1 s apart): 6.3 s.
 */
export function probeRunWorstCaseMs(settings: ProbeSettings): number {
  const twoAttempts = (timeoutMs: number) => Math.max(timeoutMs, Math.min(2 * timeoutMs + RETRY_PAUSE_MS, RETRY_BUDGET_MS));
  const { api, osrm, redis, database } = settings;
  return Math.max(
    KILLSWITCH_TIMEOUT_MS,
    ...(api ? [twoAttempts(api.timeoutMs)] : []),
    ...(osrm ? [(osrm.attempts - 1) * (osrm.attemptSpacingMs ?? OSRM_ATTEMPT_SPACING_MS) + osrm.timeoutMs] : []),
    ...(redis ? [twoAttempts(redis.timeoutMs)] : []),
    ...(database ? [twoAttempts(database.timeoutMs)] : []),
  );
}
const KILLSWITCH_TIMEOUT_MS = 5000;

/**
 * The runbook's /ready ("Healthchecks Kubernetes") answers `{"status": "ready", "checks":
 * {"database": "ok", "redis": "ok"}}` when ready. A 2xx whose body says otherwise (another status, a
 * check not "ok", an error object or page that is not that JSON: a framework's or a proxy's error
 * served with 200) is not ready, an answer and not asked again: reason `not-ready`.
 */
export function readyBodyDown(body: string): 'not-ready' | undefined {
  const { status, checks } = jsonFields(body);
  const checksOk = checks === undefined || (typeof checks === 'object' && checks !== null && Object.values(checks).every((v) => v === 'ok'));
  return status === 'ready' && checksOk ? undefined : 'not-ready';
}

/**
 * The runbook's /health (liveness) answers 200 with `{"status": "ok"}`. A 2xx without that body is
 * not the API answering: a load balancer's or proxy's default page (an nginx welcome page), a
 * framework's error served with 200. Not live, reason `not-live`, the body's start in the detail.
 */
export function liveBodyDown(body: string): 'not-live' | undefined {
  return jsonFields(body).status === 'ok' ? undefined : 'not-live';
}

/** The fields of a JSON object body; none for a body that is not one (HTML, empty, an array). */
function jsonFields(body: string): { status?: unknown; checks?: unknown } {
  try {
    const parsed: unknown = JSON.parse(body);
    return typeof parsed === 'object' && parsed !== null ? parsed : {};
  } catch {
    return {};
  }
}
const OSRM_ATTEMPT_SPACING_MS = 1000;

/**
 * One probe run: every configured target is checked at the same time, each within its own
 * deadline, so one hung target never delays or hides the others. A target that cannot be reached
 * is reported down with its reason (one structured log line each); the metrics of the run are
 * emitted through `deps.metrics` (EMF) and returned.
 */
export async function runProbe(settings: ProbeSettings, deps: ProbeDeps): Promise<ProbeReport> {
  const started = performance.now();
  const targets: TargetReport[] = [];
  const metrics: MetricRecord[] = [];
  const record = (name: string, value: number, unit: MetricUnitValue = MetricUnit.Count, dimensions?: Record<string, string>) =>
    metrics.push({ name, value, unit, ...(dimensions && { dimensions }) });
  const report = (target: string, result: CheckResult, secondAttempt = false) => {
    targets.push({ target, ...result, ...(secondAttempt && { secondAttempt: true as const }) });
    record(PROBE_METRICS.latency, result.latencyMs, MetricUnit.Milliseconds, { Target: target });
    if (!result.up) deps.logger.warn('probe target down', { target, reason: result.reason, detail: result.detail, latencyMs: result.latencyMs });
  };
  // Only a check's first attempt is a check made (and failed): the second attempt decides the
  // target's outcome (the last attempt) and is logged, but counting it too would let a hung
  // dependency fail more checks (its own two attempts and /ready's two) and push
  // ProbeChecksFailed / ProbeChecksMade over the flaky-network threshold on top of its own alarm.
  // Counted this way, a network failing a share p of attempts still reads p exactly.
  const reportAttempts = <T extends { result: CheckResult }>(target: string, attempts: readonly T[]): T => {
    for (const { result } of attempts.slice(0, -1)) {
      targets.push({ target, ...result, retried: true });
      deps.logger.info('probe target did not answer: trying again', { target, reason: result.reason, detail: result.detail, latencyMs: result.latencyMs });
    }
    const last = attempts[attempts.length - 1];
    report(target, last.result, attempts.length > 1);
    return last;
  };
  let celeryQueueDepth: Record<string, number> | undefined;
  let redisMemory: RedisMemory | undefined;
  let redisEvictions: ProbeReport['redisEvictions'];
  let database: ProbeReport['database'];
  let killswitchMode: KillswitchMode | undefined;

  const checks: Promise<void>[] = [];
  const { api, osrm, redis, database: db } = settings;
  if (api) {
    const base = api.baseUrl.replace(/\/+$/, '');
    checks.push(
      checkHttp(`${base}/health`, api.timeoutMs, deps.fetch, liveBodyDown).then((result) => {
        report('api-health', result);
        record(PROBE_METRICS.apiLive, result.up ? 1 : 0);
      }),
      secondAttemptOnNoAnswer(started, api.timeoutMs, async () => ({ result: await checkHttp(`${base}/ready`, api.timeoutMs, deps.fetch, readyBodyDown) })).then((attempts) => {
        const { result } = reportAttempts('api-ready', attempts);
        record(PROBE_METRICS.apiReady, result.up ? 1 : 0);
      }),
    );
  }
  if (osrm) {
    const spacing = osrm.attemptSpacingMs ?? OSRM_ATTEMPT_SPACING_MS;
    checks.push(
      Promise.all(
        Array.from({ length: osrm.attempts }, (_, i) => sleep(i * spacing).then(() => checkHttpNamingHung(osrm.healthUrl, osrm.timeoutMs, deps.fetch))),
      ).then((attempts) => {
        attempts.forEach((result, i) => report(osrmTargetName(i, osrm.attempts), result));
        const ok = attempts.filter((a) => a.up).length;
        record(PROBE_METRICS.osrmAvailability, (100 * ok) / attempts.length, MetricUnit.Percent);
      }),
    );
  }
  if (redis && deps.openRedis) {
    const openRedis = deps.openRedis;
    const attempt = () =>
      checkSession(redis, async () => openRedis(), async (client) => {
        await client.ping();
        const depths: Record<string, number> = {};
        for (const queue of redis.queues) {
          // A queue key that is not a list refuses Celery's push as it refuses LLEN: Redis down for
          // wrongtype (as for a read-only replica: tasks cannot be queued), the key named.
          depths[queue] = await client.llen(queue).catch((error: unknown) => {
            if (redisErrorCode(error) !== 'WRONGTYPE') throw error;
            throw new Error(`WRONGTYPE the Celery queue key "${queue}" is not a list (${oneLine(error)})`);
          });
        }
        // Then a write: a read-only replica (after a failover, or a stale endpoint) and a full Redis
        // that cannot evict answer PING, LLEN and INFO, yet refuse every task Celery queues. A refusal
        // by the server makes Redis down, named by its code; the depths and the memory read below are
        // still published (RedisMemoryUsedPercent is what says "full"). Before INFO, whose answer may
        // be given up below: a later command's reply would then be read as INFO's. A Redis that
        // stopped writes after a failed background save refuses PING itself (MISCONF), named the same way.
        const writeRefusal = await client.set(REDIS_WRITE_CHECK_KEY, String(Date.now()).padEnd(REDIS_WRITE_CHECK_BYTES, '.'), 'EX', REDIS_WRITE_CHECK_TTL_SECONDS).then(
          () => undefined,
          (error: unknown) => {
            if (!redisErrorCode(error)) throw error;
            const { reason, detail } = classifyRedisError(error);
            return { reason, detail: `SET ${REDIS_WRITE_CHECK_KEY}: ${detail}` };
          },
        );
        // Last, in the same session: the memory says whether a refused write is a full Redis, and
        // RedisMemoryHigh warns before it is full. A refused INFO (renamed or denied on a managed
        // Redis) is caught here so that it costs the memory metric only, never RedisUp; so is one
        // that does not answer, which gets a quarter of the Redis deadline (the rest of it stays
        // for PING and LLEN). INFO stats (evicted_keys: a full allkeys-* Redis drops queued tasks
        // and refuses nothing) is sent with it, answered in the same round trip, each read on its own.
        const infoQuarter = Math.floor(redis.timeoutMs / 4);
        const [memory, evictedKeys] = await Promise.all([
          readInfo(infoQuarter, () => client.info('memory'), redisMemoryFromInfo),
          readInfo(infoQuarter, () => client.info('stats'), redisEvictedKeysFromInfo),
        ]);
        return { depths, memory, evictedKeys, writeRefusal };
      }, classifyRedisError).then(({ result: session, value }) => ({
        // A refused write is an answer (the server's state): Redis down, not tried again.
        result: value?.writeRefusal ? { up: false, latencyMs: session.latencyMs, ...value.writeRefusal } : session,
        value,
      }));
    checks.push(
      secondAttemptOnNoAnswer(started, redis.timeoutMs, attempt).then((attempts) => {
        const { result, value } = reportAttempts('redis', attempts);
        record(PROBE_METRICS.redisUp, result.up ? 1 : 0);
        if (value) {
          celeryQueueDepth = value.depths;
          for (const [queue, depth] of Object.entries(value.depths)) record(PROBE_METRICS.celeryQueueDepth, depth, MetricUnit.Count, { Queue: queue });
          record(PROBE_METRICS.celeryQueueDepthTotal, Object.values(value.depths).reduce((a, b) => a + b, 0));
          if (!value.memory.ok) {
            deps.logger.warn('redis INFO memory unreadable: no RedisMemoryUsedPercent this run (RedisUp is unaffected)', classifyError(value.memory.error));
          } else {
            redisMemory = value.memory.value;
            // Without maxmemory there is no "full" to measure against: the metric is absent, and the
            // alarm treats that as not breaching.
            if (redisMemory.usedPercent !== undefined) record(PROBE_METRICS.redisMemoryUsedPercent, redisMemory.usedPercent, MetricUnit.Percent);
            // Read from INFO memory, whatever the fill: an allkeys-* broker is wrong before it is full.
            if (redisMemory.policy !== 'unknown') record(PROBE_METRICS.redisPolicyEvictsKeys, policyEvictsAnyKey(redisMemory.policy) ? 1 : 0);
          }
          if (!value.evictedKeys.ok) {
            deps.logger.warn('redis INFO stats unreadable: no RedisEvictedKeys this run (RedisUp is unaffected)', classifyError(value.evictedKeys.error));
          } else {
            const total = value.evictedKeys.value;
            const sincePrevious = deps.redisEvictions?.next(total);
            redisEvictions = { total, ...(sincePrevious !== undefined && { sincePrevious }) };
            // A first reading (a new container) has no base: no datapoint, which the alarm reads as
            // no eviction; the total is in the run's log line.
            if (sincePrevious !== undefined) record(PROBE_METRICS.redisEvictedKeys, sincePrevious);
            if (sincePrevious) deps.logger.error(redisEvictedKeysLine(sincePrevious, redisMemory?.policy), { evictedKeys: sincePrevious, evictedKeysTotal: total, policy: redisMemory?.policy });
          }
        }
      }),
    );
  }
  if (db && deps.openDatabase) {
    const openDatabase = deps.openDatabase;
    // A read-only database is an answer (its state): up, DbReadOnly 1, not tried again.
    const attempt = () =>
      checkSession(db, openDatabase, async (client) => {
        // A transaction of its own declared READ ONLY: the probe writes nothing whatever its role's
        // grants. Per transaction, it leaves the session's default (what it reads) as it is.
        await client.query('BEGIN READ ONLY');
        const state = readOnlyStateInReadOnlyTransaction((await client.query(READ_ONLY_STATE_SQL)).rows[0] ?? {});
        await client.query('COMMIT');
        const roleDefaultReset = roleReadOnlyDefaultReset(state);
        return {
          ...(roleDefaultReset && { roleDefaultReset }),
          readOnly: refusesApplicationWrites(state),
          transactionReadOnly: state.transactionReadOnly,
          inRecovery: state.inRecovery,
          defaultSource: state.defaultSource,
          ...(state.databaseSetting !== undefined && { databaseSetting: state.databaseSetting }),
        };
      }, classifyDatabaseError(db.secretArn));
    checks.push(
      secondAttemptOnNoAnswer(started, db.timeoutMs, attempt).then((attempts) => {
        const { result, value } = reportAttempts('database', attempts);
        record(PROBE_METRICS.databaseUp, result.up ? 1 : 0);
        if (value) {
          const { roleDefaultReset, ...state } = value;
          database = state;
          record(PROBE_METRICS.dbReadOnly, state.readOnly ? 1 : 0);
          if (state.readOnly) deps.logger.warn(databaseReadOnlyLine(settings.environmentName), state);
          if (roleDefaultReset) {
            // Not counted (the application's role does not have it), but it hides a server-wide
            // read-only (ALTER SYSTEM, a parameter group) from DbReadOnly: a setting to remove.
            deps.logger.warn(
              `the probe's own role defaults to read-only (ALTER ROLE ... SET default_transaction_read_only), which hides a server-wide read-only from DbReadOnly: as the master user run ${roleDefaultReset} (the probe's transactions are read-only anyway, and its role has no write grant)`,
              { ...state, fix: roleDefaultReset },
            );
          }
        }
      }),
    );
  }
  if (deps.readKillswitchMode) {
    const read = deps.readKillswitchMode;
    checks.push(
      withTimeout(KILLSWITCH_TIMEOUT_MS, read).then(
        (mode) => {
          killswitchMode = mode;
          record(PROBE_METRICS.killswitchMode, MODE_METRIC_VALUE[mode]);
        },
        // Not a platform target: the mode metric is simply absent this minute.
        (error: unknown) => deps.logger.error('killswitch mode unreadable', classifyError(error)),
      ),
    );
  }

  await Promise.all(checks);
  const counted = targets.filter((t) => !t.secondAttempt);
  const checksMade = counted.length;
  const checksFailed = counted.filter((t) => !t.up).length;
  record(PROBE_METRICS.checksMade, checksMade);
  record(PROBE_METRICS.checksFailed, checksFailed);
  emitMetrics(deps.metrics, metrics);
  const durationMs = Math.round(performance.now() - started);
  const down = targets.filter((t) => !t.up && !t.retried).map((t) => `${t.target}:${t.reason}`);
  const retried = targets.filter((t) => t.retried).map((t) => `${t.target}:${t.reason}`);
  deps.logger.info('probe run', {
    checksMade,
    checksFailed,
    durationMs,
    down,
    // Attempts that got no answer and were made again (their target's outcome is in `down` or not).
    retried,
    // The eviction policy says whether a full Redis refuses writes (noeviction) or drops keys.
    ...(redisMemory && { redisMemory }),
    ...(redisEvictions && { redisEvictions }),
  });
  return { targets, metrics, checksMade, checksFailed, down, retried, durationMs, celeryQueueDepth, redisMemory, redisEvictions, database, killswitchMode };
}

/** An INFO section parsed within `timeoutMs`; a refusal, a timeout or an unreadable answer is kept as the error, never thrown. */
function readInfo<T>(timeoutMs: number, read: () => Promise<string>, parse: (info: string) => T): Promise<{ ok: true; value: T } | { ok: false; error: unknown }> {
  return withTimeout(timeoutMs, read)
    .then((info) => ({ ok: true as const, value: parse(info) }))
    .catch((error: unknown) => ({ ok: false as const, error }));
}

/** The line of a Redis that evicted keys since the previous run: the Celery tasks it may have dropped, and the setting that stops it. */
export function redisEvictedKeysLine(evictedKeys: number, policy: string | undefined): string {
  return `redis evicted ${evictedKeys} key(s) since the previous run (maxmemory_policy ${policy ?? 'unread'}): queued Celery tasks or results may be lost; set maxmemory-policy noeviction (ElastiCache parameter group) and find the lost tasks in the API and worker logs`;
}

/**
 * The line of a read-only database, with the runbook's first check ("DB Read-Only": the database's
 * state) as the command that makes it: db read-write shows why (the database-level default, a
 * standby in recovery, full storage) and asks before it changes anything.
 */
export function databaseReadOnlyLine(environmentName: string | undefined): string {
  const command = operatorCommand(environmentName, 'db read-write');
  return `database is read-only (the application's writes are refused): check why first with "${command}" (it shows the cause and asks before changing anything; log in as the database's owner: PG* variables or --database-secret <arn>)`;
}

/**
 * Opens a session, runs `use` and closes it, all within the target's `timeoutMs`; never throws. A
 * timeout's detail says whether a TCP connection to the target's host and port was made.
 */
function checkSession<C, T>(
  target: { readonly timeoutMs: number; readonly host?: string; readonly port?: number },
  open: () => Promise<Session<C>>,
  use: (client: C) => Promise<T>,
  classify: (error: unknown) => { reason: string; detail: string } = classifyError,
): Promise<{ result: CheckResult; value?: T }> {
  const { timeoutMs, host, port } = target;
  const address: TcpAddress | undefined = host !== undefined && port !== undefined ? { host, port } : undefined;
  // A timeout says whether the server accepted a TCP connection (hung) or not (the network).
  return tellingConnection(address, timeoutMs, () => sessionOutcome(timeoutMs, open, use, classify));
}

async function sessionOutcome<C, T>(
  timeoutMs: number,
  open: () => Promise<Session<C>>,
  use: (client: C) => Promise<T>,
  classify: (error: unknown) => { reason: string; detail: string },
): Promise<{ result: CheckResult; value?: T }> {
  const started = performance.now();
  let session: Session<C> | undefined;
  let finished = false;
  const close = () => {
    finished = true;
    const s = session;
    session = undefined;
    if (s) void Promise.resolve().then(() => s.close()).catch(() => undefined);
  };
  try {
    const value = await withTimeout(
      timeoutMs,
      async () => {
        const opened = await open();
        session = opened;
        // Opened after the deadline: close it at once instead of leaking the connection.
        if (finished) close();
        return use(opened.client);
      },
      close,
    );
    return { result: { up: true, latencyMs: Math.round(performance.now() - started) }, value };
  } catch (error) {
    return { result: { up: false, latencyMs: Math.round(performance.now() - started), ...classify(error) } };
  } finally {
    close();
  }
}

/** Dimensionless metrics go to the run's EMF document; per-queue and per-target ones each in their own. */
function emitMetrics(metrics: Pick<Metrics, 'addMetric' | 'singleMetric'>, records: readonly MetricRecord[]): void {
  for (const r of records) {
    if (!r.dimensions) {
      metrics.addMetric(r.name, r.unit, r.value);
      continue;
    }
    emitSingleMetric(metrics, r.name, r.unit, r.value, r.dimensions);
  }
}
