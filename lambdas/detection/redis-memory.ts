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
  const fields = new Map<string, string>();
  for (const line of info.split(/\r?\n/)) {
    const colon = line.indexOf(':');
    if (colon > 0 && !line.startsWith('#')) fields.set(line.slice(0, colon), line.slice(colon + 1).trim());
  }
  const bytes = (name: string): number => {
    const raw = fields.get(name);
    const value = raw === undefined || raw === '' ? NaN : Number(raw);
    if (!Number.isFinite(value) || value < 0) throw new Error(`INFO memory: ${name} is ${raw === undefined ? 'missing' : JSON.stringify(raw)}`);
    return value;
  };
  const usedBytes = bytes('used_memory');
  const maxmemoryBytes = bytes('maxmemory');
  return {
    usedBytes,
    maxmemoryBytes,
    policy: fields.get('maxmemory_policy') ?? 'unknown',
    ...(maxmemoryBytes > 0 && { usedPercent: Math.round((10_000 * usedBytes) / maxmemoryBytes) / 100 }),
  };
}
