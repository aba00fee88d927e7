import { redisMemoryFromInfo } from '../../../lambdas/detection/redis-memory';

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
