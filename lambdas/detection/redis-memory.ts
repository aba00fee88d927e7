/**
 * Redis memory as `INFO memory` reports it. A Redis at `maxmemory` that cannot evict (policy
 * `noeviction`, or a `volatile-*` policy while the Celery lists have no TTL) refuses every write with
 * "OOM command not allowed", yet still answers PING and LLEN: only the memory figures show it.
 */
export interface RedisMemory {
  readonly usedBytes: number;
  /** 0: no limit (Redis grows until the host runs out). */
  readonly maxmemoryBytes: number;
  /** `maxmemory_policy` (noeviction, allkeys-lru, volatile-lru, ...): whether a full Redis refuses writes. */
  readonly policy: string;
  /** 100 x used / maxmemory; absent without a limit. May exceed 100 (Redis refuses writes from there). */
  readonly usedPercent?: number;
}

/**
 * Reads the answer of `INFO memory` (`field:value` lines, `#` section headers). Throws when
 * `used_memory` or `maxmemory` is missing or not a number, so a Redis that answers something else is
 * reported as "memory unreadable" rather than as 0 %.
 */
export function redisMemoryFromInfo(info: string): RedisMemory {
  const fields = infoFields(info);
  const usedBytes = infoNumber(fields, 'memory', 'used_memory');
  const maxmemoryBytes = infoNumber(fields, 'memory', 'maxmemory');
  return {
    usedBytes,
    maxmemoryBytes,
    policy: fields.get('maxmemory_policy') ?? 'unknown',
    ...(maxmemoryBytes > 0 && { usedPercent: Math.round((10_000 * usedBytes) / maxmemoryBytes) / 100 }),
  };
}

/** The `field:value` lines of an INFO answer (`#` section headers left out). */
function infoFields(info: string): Map<string, string> {
  const fields = new Map<string, string>();
  for (const line of info.split(/\r?\n/)) {
    const colon = line.indexOf(':');
    if (colon > 0 && !line.startsWith('#')) fields.set(line.slice(0, colon), line.slice(colon + 1).trim());
  }
  return fields;
}

/** A field that must be a number >= 0: missing or anything else throws, naming the section and the field. */
function infoNumber(fields: ReadonlyMap<string, string>, section: string, name: string): number {
  const raw = fields.get(name);
  const value = raw === undefined || raw === '' ? NaN : Number(raw);
  if (!Number.isFinite(value) || value < 0) throw new Error(`INFO ${section}: ${name} is ${raw === undefined ? 'missing' : JSON.stringify(raw)}`);
  return value;
}

/**
 * `evicted_keys` of `INFO stats`: the keys Redis has dropped to stay under maxmemory since it started
 * (or since CONFIG RESETSTAT). Throws when it is missing or not a number, so that an answer Redis did
 * not mean as one is never read as "no eviction".
 */
export function redisEvictedKeysFromInfo(info: string): number {
  return infoNumber(infoFields(info), 'stats', 'evicted_keys');
}

/**
 * Whether a full Redis with this `maxmemory_policy` drops any key, the Celery queue lists (the
 * broker's tasks) included: the allkeys-* policies. A volatile-* policy drops only keys with a TTL,
 * which Celery's queue lists do not have (its results do, and are evicted: evicted_keys counts them);
 * noeviction refuses the write instead (OOM, Health-RedisDown).
 */
export function policyEvictsAnyKey(policy: string): boolean {
  return policy.startsWith('allkeys-');
}

/**
 * The keys evicted between one reading of `evicted_keys` and the next, kept by whoever reads (the
 * probe's container, across its runs: one reading a minute).
 */
export class EvictedKeysCounter {
  private previous?: number;

  /**
   * The keys evicted since the previous reading, then remembers `evictedKeys` as the next one's base.
   * Undefined for the first reading (a new container): the counter counts since Redis started, maybe
   * weeks ago, and paging on its whole value would page for evictions already handled, after every
   * cold start. A counter lower than the previous reading was reset after that reading (Redis
   * restarted, CONFIG RESETSTAT, a failover to a former replica, which evicts nothing of its own while
   * a replica): every eviction it counts happened since, so its value is the delta, not a negative
   * count and not nothing (a lower bound: those made between the previous reading and the reset went
   * with the old counter). A reset counter that has already climbed back past the previous reading is
   * not told apart: it reads as fewer evictions than were made.
   */
  next(evictedKeys: number): number | undefined {
    const previous = this.previous;
    this.previous = evictedKeys;
    if (previous === undefined) return undefined;
    return evictedKeys >= previous ? evictedKeys - previous : evictedKeys;
  }
}
