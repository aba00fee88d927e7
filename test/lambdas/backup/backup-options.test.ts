import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createHash } from 'node:crypto';
import { Writable } from 'node:stream';
import { S3Client } from '@aws-sdk/client-s3';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { assertCompressionLevel, parseFormats, runBackup } from '../../../lambdas/backup/backup';
import { HashingStream } from '../../../lambdas/backup/hashing-stream';
import { backupObjectKeys } from '../../../lambdas/shared/s3-layout';
import { formatProgress, parseCompressionLevel } from '../../../bin/cli/backup';
import { describeLockWait } from '../../../lambdas/backup/lock-wait';
import { formatBytes } from '../../../lambdas/shared/format';

describe('backup options', () => {
  it('parses formats in a stable order, without repeats', () => {
    expect(parseFormats(['plain', 'custom'])).toEqual(['custom', 'plain']);
    expect(parseFormats(['custom', ' custom '])).toEqual(['custom']);
    expect(parseFormats(['plain'])).toEqual(['plain']);
  });

  it.each([[['xml']], [['custom', 'tar']], [[]], [['']]])('rejects formats %j naming the valid values (exit 2)', (formats) => {
    expect(() => parseFormats(formats)).toThrow(/invalid backup format.*use custom, plain or custom,plain/);
    try {
      parseFormats(formats);
    } catch (error) {
      expect((error as { exitCode: number }).exitCode).toBe(2);
    }
  });

  it('accepts compression levels 0..9 only', () => {
    expect(assertCompressionLevel(0)).toBe(0);
    expect(assertCompressionLevel(9)).toBe(9);
    for (const bad of [-1, 10, 1.5, Number.NaN]) expect(() => assertCompressionLevel(bad)).toThrow(/invalid compression level/);
  });

  it('reads a typed --compression-level as one digit: an empty or blank flag is refused, not taken as level 0', () => {
    // Arrange
    const typed = ['', ' ', '0x3', '3e0', '1.5', '10', '-1', 'abc'];

    // Act / Assert
    expect(parseCompressionLevel('0')).toBe(0);
    expect(parseCompressionLevel('7')).toBe(7);
    for (const bad of typed) {
      expect(() => parseCompressionLevel(bad)).toThrow(new RegExp(`^invalid compression level "${bad.replace('.', '\\.')}": use an integer from 0`));
      expect(() => parseCompressionLevel(bad)).toThrow(expect.objectContaining({ exitCode: 2 }));
    }
  });

  it('the core checks numbers only: a text level (an untyped event field) is refused, not parsed', () => {
    expect(() => assertCompressionLevel('7' as unknown as number)).toThrow(/^invalid compression level "7": use an integer from 0/);
  });

  it('names the objects of one run after the tier, database and UTC start second', () => {
    expect(backupObjectKeys('hourly', 'atmr', new Date('2026-11-24T06:42:05.999Z'))).toEqual({
      stem: 'hourly/atmr_backup_20261124_064205',
      custom: 'hourly/atmr_backup_20261124_064205.dump',
      plain: 'hourly/atmr_backup_20261124_064205.sql.gz',
      manifest: 'hourly/atmr_backup_20261124_064205.manifest.json',
    });
  });
});

describe('HashingStream', () => {
  it('passes bytes through unchanged while computing their SHA-256 and count', async () => {
    // Arrange
    const chunks = [Buffer.from('PGDMP'), Buffer.alloc(100_000, 7), Buffer.from('é\n')];
    const expected = createHash('sha256').update(Buffer.concat(chunks)).digest('hex');
    const hasher = new HashingStream();
    const received: Buffer[] = [];

    // Act
    await pipeline(
      Readable.from(chunks),
      hasher,
      new Writable({
        write(chunk: Buffer, _enc, cb) {
          received.push(chunk);
          cb();
        },
      }),
    );

    // Assert
    expect(Buffer.concat(received)).toEqual(Buffer.concat(chunks));
    expect(hasher.bytes).toBe(100_008);
    expect(hasher.sha256).toBe(expected);
  });

  it('has no SHA-256 before the stream ended', () => {
    const hasher = new HashingStream();
    hasher.write(Buffer.from('x'));
    expect(() => hasher.sha256).toThrow(/only after the stream has ended/);
  });
});

describe('CLI progress line', () => {
  it('formats bytes and rate for stderr', () => {
    expect(formatBytes(512)).toBe('512 B');
    expect(formatBytes(1536)).toBe('1.5 KiB');
    expect(formatBytes(5 * 1024 ** 3)).toBe('5.0 GiB');
    expect(formatProgress({ bytes: 150 * 1024 ** 2, bytesPerSecond: 48 * 1024 ** 2 })).toBe('backup: 150.0 MiB dumped, 48.0 MiB/s');
    expect(formatProgress({ bytes: 150 * 1024 ** 2, bytesPerSecond: 48 * 1024 ** 2 }, 5 * 1024 ** 3)).toBe('backup: 150.0 MiB dumped (compressed) from a 5.0 GiB database, 48.0 MiB/s');
  });

  it('a dump standing still says what it waits for after the rate', () => {
    expect(formatProgress({ bytes: 0, bytesPerSecond: 0, waiting: 'waiting 4 s for a lock on public.t held by pid 7' })).toBe('backup: 0 B dumped, 0 B/s; waiting 4 s for a lock on public.t held by pid 7');
  });

  it('the lock wait names what this role may see of the holder, the others blocking, and the bound in minutes', () => {
    const wait = { table: 'public.rides', waitedSeconds: 75, blockerPid: 4242, otherBlockers: 0, blockerRole: 'app', blockerApplication: 'psql', blockerState: 'idle in transaction', blockerTransactionSeconds: 182 };
    expect(describeLockWait(wait, 300_000)).toBe(
      'waiting 1 min 15 s for a lock on public.rides held by pid 4242 (role app, application "psql", idle in transaction, transaction open 3 min 2 s); the backup gives up at 5 min: end that session (SELECT pg_terminate_backend(4242)) or wait for it',
    );
    // Another role's session without pg_read_all_stats: no state, no transaction start
    expect(describeLockWait({ ...wait, otherBlockers: 2, blockerApplication: '', blockerState: null, blockerTransactionSeconds: null }, 90_000)).toBe(
      'waiting 1 min 15 s for a lock on public.rides held by pid 4242 (role app) and 2 more; the backup gives up at 1 min 30 s: end that session (SELECT pg_terminate_backend(4242)) or wait for it',
    );
  });
});

describe('runBackup input checks (before any process, S3 or database call)', () => {
  const deps = (signal?: AbortSignal) => ({
    // Nothing listens there: a call reaching S3 or PostgreSQL would fail differently.
    s3: new S3Client({ region: 'eu-west-3', endpoint: 'http://127.0.0.1:9', forcePathStyle: true, maxAttempts: 1, credentials: { accessKeyId: 'x', secretAccessKey: 'y' } }),
    bucket: 'b',
    connection: { host: '127.0.0.1', port: 9, user: 'u', database: 'd' },
    metrics: new Metrics({ namespace: 'AtmrDr/example', serviceName: 'backup' }),
    signal,
  });

  it('an already aborted signal fails at once with the reason and emits BackupFailure', async () => {
    const d = deps(AbortSignal.abort(new Error('Lambda deadline reached')));
    await expect(runBackup(d, { tier: 'hourly' })).rejects.toThrow('backup aborted (Lambda deadline reached), nothing published');
    expect(d.metrics.serializeMetrics()._aws.CloudWatchMetrics[0].Metrics.map((m) => m.Name)).toEqual(['BackupFailure']);
  });

  it.each([
    [{ partSizeBytes: 1024 }, /invalid part size 1024: S3 multipart parts are at least 5242880 bytes/],
    [{ queueSize: 0 }, /invalid upload queue size 0/],
    [{ compressionLevel: 10 }, /invalid compression level "10"/],
    [{ formats: ['tar' as never] }, /invalid backup format "tar"/],
  ])('rejects %j with exit code 2', async (bad, message) => {
    const run = runBackup(deps(), { tier: 'daily', ...bad });
    await expect(run).rejects.toThrow(message);
    await expect(run).rejects.toMatchObject({ exitCode: 2 });
  });
});
