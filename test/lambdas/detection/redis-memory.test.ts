import { EvictedKeysCounter, policyEvictsAnyKey, redisEvictedKeysFromInfo, redisMemoryFromInfo } from '../../../lambdas/detection/redis-memory';

// The answer of INFO memory as redis-server 7 sends it (trimmed): CRLF lines, a section header.
const info = (fields: Record<string, string>) => ['# Memory', ...Object.entries(fields).map(([k, v]) => `${k}:${v}`), ''].join('\r\n');

describe('Redis memory from INFO memory', () => {
  it('computes used_memory as a percent of maxmemory, with the eviction policy', () => {
    // Act
    const memory = redisMemoryFromInfo(info({ used_memory: '1887436', used_memory_human: '1.80M', maxmemory: '2097152', maxmemory_policy: 'noeviction' }));

    // Assert
    expect(memory).toEqual({ usedBytes: 1887436, maxmemoryBytes: 2097152, policy: 'noeviction', usedPercent: 90 });
  });

  it('gives no percent without a maxmemory (0: no limit, nothing to be full against)', () => {
    // Act
    const memory = redisMemoryFromInfo(info({ used_memory: '900000', maxmemory: '0', maxmemory_policy: 'volatile-lru' }));

    // Assert
    expect(memory).toEqual({ usedBytes: 900000, maxmemoryBytes: 0, policy: 'volatile-lru' });
  });

  it.each([
    ['maxmemory missing', { used_memory: '900000' }, /maxmemory is missing/],
    ['used_memory not a number', { used_memory: 'n/a', maxmemory: '2097152' }, /used_memory is "n\/a"/],
  ])('refuses an answer with %s instead of reading it as 0 %%', (_case, fields, message) => {
    // Act + Assert
    expect(() => redisMemoryFromInfo(info(fields))).toThrow(message);
  });
});

describe('Redis evictions from INFO stats', () => {
  const stats = (fields: Record<string, string>) => ['# Stats', ...Object.entries(fields).map(([k, v]) => `${k}:${v}`), ''].join('\r\n');

  it('reads evicted_keys, and refuses an answer without it instead of reading it as no eviction', () => {
    // Act + Assert
    expect(redisEvictedKeysFromInfo(stats({ total_connections_received: '4', evicted_keys: '37', expired_keys: '2' }))).toBe(37);
    expect(() => redisEvictedKeysFromInfo(stats({ expired_keys: '2' }))).toThrow('INFO stats: evicted_keys is missing');
    expect(() => redisEvictedKeysFromInfo(stats({ evicted_keys: '-1' }))).toThrow('INFO stats: evicted_keys is "-1"');
  });

  it.each([
    ['allkeys-lru', true],
    ['allkeys-lfu', true],
    ['allkeys-random', true],
    ['noeviction', false],
    ['volatile-lru', false],
    ['volatile-ttl', false],
  ])('counts %s as evicting any key: %s', (policy, evicts) => {
    expect(policyEvictsAnyKey(policy)).toBe(evicts);
  });

  it('gives no delta for a first reading, then the keys evicted since the previous one, and 0 when none', () => {
    // Arrange
    const counter = new EvictedKeysCounter();

    // Act
    const readings = [120, 125, 125, 140].map((total) => counter.next(total));

    // Assert: the 120 of a first reading may be weeks old: not a delta.
    expect(readings).toEqual([undefined, 5, 0, 15]);
  });

  it('takes a counter lower than the previous reading (Redis restarted, CONFIG RESETSTAT) as evicted since, never a negative count', () => {
    // Arrange
    const counter = new EvictedKeysCounter();
    counter.next(500);

    // Act
    const afterRestart = counter.next(3);
    const afterRestartQuiet = counter.next(3);
    const restartedWithoutEviction = counter.next(0);

    // Assert
    expect(afterRestart).toBe(3);
    expect(afterRestartQuiet).toBe(0);
    expect(restartedWithoutEviction).toBe(0);
  });
});
