import { Metrics } from '@aws-lambda-powertools/metrics';
import { GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { runBackup } from '../../lambdas/backup/backup';
import { createS3Client } from '../../lambdas/shared/aws';
import { backupObjectKeys } from '../../lambdas/shared/s3-layout';
import { testCluster, uniqueDatabaseName } from '../support/cluster';
import { LocalS3, startLocalS3 } from '../support/s3';
import { startConditionalS3 } from '../support/conditional-s3';
import { startRefusingS3 } from '../support/refusing-s3';
import { createDatabase, dropDatabase, getJson, listKeys, sha256 } from './backup-support';

jest.setTimeout(180_000);

interface SentRequest {
  readonly command: string;
  readonly key: string;
  readonly headers: Record<string, string>;
}

/** Records every request the client sends, as it leaves (headers as signed). */
function recordRequests(client: S3Client): SentRequest[] {
  const sent: SentRequest[] = [];
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const request = args.request as { headers: Record<string, string>; path: string };
      const input = args.input as { Key?: string };
      sent.push({ command: String(context.commandName), key: input.Key ?? '', headers: { ...request.headers } });
      return next(args);
    },
    { step: 'finalizeRequest', name: 'recordRequests' },
  );
  return sent;
}

/** Incompressible enough that the custom dump exceeds one 5 MiB part: the multipart path is used. */
const MULTIPART_SQL = `
CREATE TABLE public.blobs AS
SELECT i AS id, md5(random()::text) || md5(random()::text) || md5(random()::text) || md5(random()::text) AS noise
FROM generate_series(1, 150000) AS i;`;

/**
 * The start of the next second, once it has come. The tests before some of these leave a .dump of
 * their own second without a manifest (their run failed after the write landed); the key claim
 * checks only the manifest key, so a run started in that same second met that object, and its first
 * write was refused before the case under test was set up (seen once in CI). A run stamped with a
 * second that began after every earlier test ended cannot meet one of their objects.
 */
async function secondAfterEarlierTests(): Promise<Date> {
  const next = (Math.floor(Date.now() / 1000) + 1) * 1000;
  await new Promise((resolve) => setTimeout(resolve, next - Date.now() + 5));
  return new Date(next);
}

describe('backup objects are written once (integration, real pg_dump + s3rver)', () => {
  let s3: LocalS3;
  let workDir: string;
  const database = uniqueDatabaseName('bk_once');

  beforeAll(async () => {
    s3 = await startLocalS3();
    workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'atmr-dr-write-once-'));
    createDatabase(database, MULTIPART_SQL);
  });
  afterAll(async () => {
    dropDatabase(database);
    await s3.stop();
    fs.rmSync(workDir, { recursive: true, force: true });
  });

  it('sends If-None-Match: * with every write under the tier prefix (PutObject and CompleteMultipartUpload), and each pointer write on the condition of what was read (If-None-Match: * where none was, then If-Match its ETag)', async () => {
    const cluster = testCluster();
    const client = createS3Client(s3.env);
    const sent = recordRequests(client);

    const { manifestKey, manifest } = await runBackup(
      { s3: client, bucket: s3.bucket, connection: { host: cluster.host, port: cluster.port, user: cluster.user, database } },
      { tier: 'daily' },
    );

    const writes = sent.filter((r) => ['PutObjectCommand', 'CompleteMultipartUploadCommand'].includes(r.command));
    const tierWrites = writes.filter((r) => r.key.startsWith('daily/'));
    expect(tierWrites.map((r) => r.key).sort()).toEqual([...manifest.objects.map((o) => o.key), manifestKey].sort());
    expect(tierWrites.some((r) => r.command === 'CompleteMultipartUploadCommand')).toBe(true);
    for (const write of tierWrites) expect(write.headers['if-none-match']).toBe('*');
    for (const write of tierWrites) expect(write.headers['x-amz-object-lock-mode']).toBeUndefined();
    // This describe's bucket is fresh: no pointer existed before the first backup.
    const pointerWrites = (): SentRequest[] => sent.filter((r) => r.command === 'PutObjectCommand' && r.key.startsWith('latest'));
    expect(pointerWrites()).toHaveLength(4);
    for (const write of pointerWrites()) expect([write.headers['if-none-match'], write.headers['if-match']]).toEqual(['*', undefined]);

    // A second backup replaces each pointer only as it read it: If-Match the ETag S3 gave for it.
    sent.length = 0;
    await runBackup({ s3: client, bucket: s3.bucket, connection: { host: cluster.host, port: cluster.port, user: cluster.user, database } }, { tier: 'daily', formats: ['custom'] });
    expect(pointerWrites()).toHaveLength(4);
    for (const write of pointerWrites()) expect([write.headers['if-none-match'], write.headers['if-match']]).toEqual([undefined, expect.stringMatching(/^"[0-9a-f]{32}"$/)]);
  });

  it('adds compliance-mode Object Lock (retain-until from the start, with a checksum) to every tier write when asked', async () => {
    const cluster = testCluster();
    const client = createS3Client(s3.env);
    const sent = recordRequests(client);
    const start = new Date('2026-07-01T04:30:00.000Z');
    let calls = 0;

    const { manifestKey } = await runBackup(
      {
        s3: client,
        bucket: s3.bucket,
        connection: { host: cluster.host, port: cluster.port, user: cluster.user, database },
        // The first instant is the retention's origin; later ones only stamp the manifest.
        now: () => (calls++ === 0 ? start : new Date(start.getTime() + calls * 1000)),
      },
      { tier: 'monthly', formats: ['custom'], complianceRetentionDays: 400 },
    );

    const creates = sent.filter((r) => ['PutObjectCommand', 'CreateMultipartUploadCommand'].includes(r.command) && r.key.startsWith('monthly/'));
    expect(creates.map((r) => r.key)).toContain(manifestKey);
    for (const create of creates) {
      expect(create.headers['x-amz-object-lock-mode']).toBe('COMPLIANCE');
      expect(create.headers['x-amz-object-lock-retain-until-date']).toBe('2027-08-05T04:30:00Z');
    }
    const puts = sent.filter((r) => r.command === 'PutObjectCommand' && r.key.startsWith('monthly/'));
    for (const put of puts) expect(put.headers['x-amz-checksum-crc32']).toBeDefined();
  });

  it('a manifest write that landed but whose answer was lost: the retry meets its own object (412) and the backup is published', async () => {
    // Arrange: S3 with real conditional writes; the first manifest PUT reaches it and is stored, then
    // its answer is lost as a reset connection would lose it, so that the SDK retries.
    const cluster = testCluster();
    const conditional = await startConditionalS3(s3);
    const client = createS3Client(conditional.env);
    let lost = 0;
    client.middlewareStack.add(
      (next, context) => async (args) => {
        const result = await next(args);
        const key = (args.input as { Key?: string }).Key ?? '';
        if (context.commandName === 'PutObjectCommand' && key.endsWith('.manifest.json') && lost++ === 0) {
          throw Object.assign(new Error('socket hang up'), { name: 'Error', code: 'ECONNRESET' });
        }
        return result;
      },
      { step: 'deserialize', name: 'loseFirstManifestAnswer' },
    );

    try {
      // Act
      const { manifestKey } = await runBackup(
        { s3: client, bucket: s3.bucket, connection: { host: cluster.host, port: cluster.port, user: cluster.user, database } },
        { tier: 'hourly', formats: ['custom'] },
      );

      // Assert: the retry was refused as a second write (412), and the run went on to publish
      expect(conditional.refused).toEqual([manifestKey]);
      const pointer = await client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: `latest/${database}/hourly.json` }));
      expect(JSON.parse(await pointer.Body!.transformToString())).toEqual({ manifest: manifestKey });
    } finally {
      await conditional.stop();
    }
  });

  it('a manifest write that landed, whose answer was lost and whose read-back then failed once: the run finds its own manifest, publishes it and counts it, not "another run took it"', async () => {
    // Arrange: as above, and the first read of the manifest after its lost answer fails (a reset
    // connection again), so that the run cannot tell at once that the object S3 holds is its own.
    const cluster = testCluster();
    const conditional = await startConditionalS3(s3);
    const client = createS3Client(conditional.env);
    let lost = 0;
    let readFailed = false;
    client.middlewareStack.add(
      (next, context) => async (args) => {
        const key = (args.input as { Key?: string }).Key ?? '';
        if (context.commandName === 'GetObjectCommand' && key.endsWith('.manifest.json') && lost > 0 && !readFailed) {
          readFailed = true;
          throw new Error('read refused once');
        }
        const result = await next(args);
        if (context.commandName === 'PutObjectCommand' && key.endsWith('.manifest.json') && lost++ === 0) {
          throw Object.assign(new Error('socket hang up'), { name: 'Error', code: 'ECONNRESET' });
        }
        return result;
      },
      { step: 'deserialize', name: 'loseFirstManifestAnswerThenARead' },
    );
    const metrics = new Metrics({ namespace: 'AtmrDr/example', serviceName: 'backup' });

    try {
      // Act
      const result = await runBackup(
        { s3: client, bucket: s3.bucket, connection: { host: cluster.host, port: cluster.port, user: cluster.user, database }, metrics },
        { tier: 'hourly', formats: ['custom'] },
      );

      // Assert: the read did fail; the run published its backup as its own and counted it
      expect(readFailed).toBe(true);
      expect(conditional.refused).toEqual([result.manifestKey]);
      expect(result.skipped).toBeUndefined();
      expect(await getJson(client, s3.bucket, `latest/${database}/hourly.json`)).toEqual({ manifest: result.manifestKey });
      const counted = metrics.serializeMetrics() as unknown as Record<string, unknown>;
      expect([counted.BackupSuccess, counted.BackupFailure]).toEqual([1, undefined]);
    } finally {
      await conditional.stop();
    }
  });

  it('a .dump sent as one PutObject (smaller than a part) that landed but whose answer was lost: the retry meets its own object (412) and the run publishes at once, no wait for another run, no blame', async () => {
    // Arrange: a database whose dump is one small PutObject; S3 with real conditional writes, whose
    // first answer to the .dump's write is lost once s3rver has stored it (the proxy drops the connection)
    const cluster = testCluster();
    const small = uniqueDatabaseName('bk_once_small');
    createDatabase(small, 'CREATE TABLE t AS SELECT generate_series(1, 10) AS id;');
    let lost = 0;
    const conditional = await startConditionalS3(s3, undefined, (key) => key.endsWith('.dump') && lost++ === 0);
    const client = createS3Client(conditional.env);
    const metrics = new Metrics({ namespace: 'AtmrDr/example', serviceName: 'backup' });

    try {
      // Act
      const started = Date.now();
      const result = await runBackup(
        { s3: client, bucket: s3.bucket, connection: { host: cluster.host, port: cluster.port, user: cluster.user, database: small }, metrics, otherRunWaitMs: 10_000 },
        { tier: 'hourly', formats: ['custom'] },
      );

      // Assert: the answer was lost and the retry refused (412); the run published its own .dump,
      // without waiting for another run's manifest, and counted it
      const [custom] = result.manifest.objects;
      expect(lost).toBeGreaterThanOrEqual(1);
      expect(conditional.refused).toEqual([custom.key]);
      expect(Date.now() - started).toBeLessThan(10_000);
      expect(result.skipped).toBeUndefined();
      const body = (await client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: custom.key }))).Body!;
      expect(sha256(Buffer.from(await body.transformToByteArray()))).toBe(custom.sha256);
      expect(await getJson(client, s3.bucket, `latest/${small}/hourly.json`)).toEqual({ manifest: result.manifestKey });
      const counted = metrics.serializeMetrics() as unknown as Record<string, unknown>;
      expect([counted.BackupSuccess, counted.BackupFailure]).toEqual([1, undefined]);
    } finally {
      await conditional.stop();
      dropDatabase(small);
    }
  });

  it.each([
    ['sent as one PutObject (smaller than a part)', 'CREATE TABLE t AS SELECT generate_series(1, 10) AS id;'],
    ['sent in parts (its CompleteMultipartUpload\'s answer lost)', MULTIPART_SQL],
  ])('a lost answer on a .dump %s whose HeadObject S3 refuses (AccessDenied: a role without GetObject on the dump keys) fails saying why it could not be told from another run\'s write and the right to grant, after the blame', async (_how, sql) => {
    // Arrange: a database whose .dump is one PutObject or several parts; S3 with real conditional
    // writes, whose first answer to the .dump's write (PutObject or CompleteMultipartUpload) is lost,
    // and which refuses every HEAD of a .dump (behind the conditional proxy)
    const cluster = testCluster();
    const db = uniqueDatabaseName('bk_once_unread');
    createDatabase(db, sql);
    const refusing = await startRefusingS3(s3, (method, url) => method === 'HEAD' && url.pathname.endsWith('.dump'), 403, 'AccessDenied');
    let lost = 0;
    const conditional = await startConditionalS3({ ...s3, endpoint: refusing.endpoint }, undefined, (key) => key.endsWith('.dump') && lost++ === 0);
    const client = createS3Client(conditional.env);

    try {
      // Act
      const run = runBackup(
        { s3: client, bucket: s3.bucket, connection: { host: cluster.host, port: cluster.port, user: cluster.user, database: db }, otherRunWaitMs: 1000 },
        { tier: 'hourly', formats: ['custom'] },
      );

      // Assert: the refusal stands (nothing published); the failure blames the other run and advises first, then says
      // the look S3 refused (a HEAD's bare 403) and the right to grant, in one line
      const failure = await run.then(
        () => undefined,
        (error: unknown) => error as Error,
      );
      expect(failure?.message).toMatch(
        new RegExp(
          `wrote it first, and published no manifest within 1 s \\(it failed, or hangs\\); run the backup again; it may instead be this run's own write: looking at it \\(HeadObject\\) failed \\(HTTP 403 Forbidden, most likely AccessDenied\\): grant s3:GetObject on hourly/${db}_backup_\\*\\.dump$`,
        ),
      );
      expect(failure?.message).not.toContain('\n');
      expect(conditional.refused).toHaveLength(1);
      expect(await listKeys(client, s3.bucket, `latest/${db}/`)).toEqual([]);
    } finally {
      await conditional.stop();
      await refusing.stop();
      dropDatabase(db);
    }
  });

  it('a refused single-part .dump whose key holds a larger object (another run\'s) is not read: the run looks at it with one HeadObject (its run token and size)', async () => {
    // Arrange: a small dump; another run's 24 MiB object lands at its key between the key check and
    // the write (the conditional proxy's hook), so the write is refused (412)
    const cluster = testCluster();
    const small = uniqueDatabaseName('bk_once_big');
    createDatabase(small, 'CREATE TABLE t AS SELECT generate_series(1, 10) AS id;');
    const direct = createS3Client(s3.env);
    const planted = 24 * 1024 * 1024;
    let plantedKey: string | undefined;
    const conditional = await startConditionalS3(s3, async (key) => {
      if (plantedKey !== undefined || !key.endsWith('.dump')) return;
      plantedKey = key;
      await direct.send(new PutObjectCommand({ Bucket: s3.bucket, Key: key, Body: Buffer.alloc(planted, 7) }));
    });
    const client = createS3Client(conditional.env);

    try {
      // Act
      const run = runBackup(
        { s3: client, bucket: s3.bucket, connection: { host: cluster.host, port: cluster.port, user: cluster.user, database: small }, otherRunWaitMs: 1000 },
        { tier: 'hourly', formats: ['custom'] },
      );

      // Assert: the other run is blamed as before (no manifest came), and the run took from the
      // planted object no more than what was in flight when it closed the answer (a read takes all 24 MiB)
      await expect(run).rejects.toThrow(/another backup of this tier and database started in the same second and wrote it first, and published no manifest/);
      expect(conditional.refused).toEqual([plantedKey]);
      expect(conditional.served.get(plantedKey!) ?? 0).toBeLessThan(planted / 3);
    } finally {
      await conditional.stop();
      dropDatabase(small);
    }
  });

  it('a multipart .dump whose CompleteMultipartUpload landed but whose answer was lost: the retry meets its own object (412) and the run publishes at once, no wait for another run, no blame', async () => {
    // Arrange: the describe's database, whose .dump is several parts; S3 with real conditional
    // writes, whose first answer to the .dump's CompleteMultipartUpload is lost once s3rver has
    // completed it (the proxy drops the connection), so that the SDK retries it
    const cluster = testCluster();
    let lost = 0;
    const conditional = await startConditionalS3(s3, undefined, (key) => key.endsWith('.dump') && lost++ === 0);
    const client = createS3Client(conditional.env);
    const sent = recordRequests(client);
    const metrics = new Metrics({ namespace: 'AtmrDr/example', serviceName: 'backup' });

    try {
      // Act
      const started = Date.now();
      const result = await runBackup(
        { s3: client, bucket: s3.bucket, connection: { host: cluster.host, port: cluster.port, user: cluster.user, database }, metrics, otherRunWaitMs: 30_000 },
        { tier: 'hourly', formats: ['custom'] },
      );

      // Assert: the .dump went multipart, its completion's answer was lost and the retry refused
      // (412); the run published its own .dump without waiting for another run's manifest
      const [custom] = result.manifest.objects;
      expect(sent.filter((r) => r.command === 'CompleteMultipartUploadCommand' && r.key === custom.key).length).toBeGreaterThanOrEqual(2);
      expect(conditional.refused).toEqual([custom.key]);
      expect(Date.now() - started).toBeLessThan(30_000);
      expect(result.skipped).toBeUndefined();
      const head = await client.send(new HeadObjectCommand({ Bucket: s3.bucket, Key: custom.key }));
      expect([head.ContentLength, head.Metadata?.['atmr-dr-run']]).toEqual([custom.bytes, expect.stringMatching(/^[0-9a-f-]{36}$/)]);
      expect(await getJson(client, s3.bucket, `latest/${database}/hourly.json`)).toEqual({ manifest: result.manifestKey });
      const counted = metrics.serializeMetrics() as unknown as Record<string, unknown>;
      expect([counted.BackupSuccess, counted.BackupFailure]).toEqual([1, undefined]);
    } finally {
      await conditional.stop();
    }
  });

  /** S3 where the first .dump completion lands with its answer lost, and each retry of it is answered 404 NoSuchUpload. */
  async function lostCompletionThenNoSuchUpload(): Promise<{ endpoint: string; counts: () => [number, number]; stop: () => Promise<void> }> {
    let lost = 0;
    let completions = 0;
    const conditional = await startConditionalS3(s3, undefined, (key) => key.endsWith('.dump') && lost++ === 0);
    const refusing = await startRefusingS3(
      { ...s3, endpoint: conditional.endpoint },
      (method, url) => method === 'POST' && url.searchParams.has('uploadId') && url.pathname.endsWith('.dump') && completions++ > 0,
      404,
      'NoSuchUpload',
    );
    return {
      endpoint: refusing.endpoint,
      counts: () => [lost, completions],
      stop: async () => {
        await refusing.stop();
        await conditional.stop();
      },
    };
  }

  it('a multipart .dump whose CompleteMultipartUpload landed, answer lost, and whose retry S3 answers NoSuchUpload (the completed upload\'s id is gone): the run publishes at once, no failure', async () => {
    // Arrange: as above, and a proxy in front answers the retried completion 404 NoSuchUpload
    const cluster = testCluster();
    const s3Lost = await lostCompletionThenNoSuchUpload();
    const client = createS3Client({ ...s3.env, AWS_ENDPOINT_URL_S3: s3Lost.endpoint });

    try {
      // Act
      const started = Date.now();
      const result = await runBackup(
        { s3: client, bucket: s3.bucket, connection: { host: cluster.host, port: cluster.port, user: cluster.user, database }, otherRunWaitMs: 30_000 },
        { tier: 'hourly', formats: ['custom'] },
      );

      // Assert: the first completion landed (its answer lost), the retry met NoSuchUpload, and the run published its .dump
      const [custom] = result.manifest.objects;
      expect(s3Lost.counts()).toEqual([1, 2]);
      expect(Date.now() - started).toBeLessThan(30_000);
      expect(result.skipped).toBeUndefined();
      const body = (await client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: custom.key }))).Body!;
      expect(sha256(Buffer.from(await body.transformToByteArray()))).toBe(custom.sha256);
      expect(await getJson(client, s3.bucket, `latest/${database}/hourly.json`)).toEqual({ manifest: result.manifestKey });
    } finally {
      await s3Lost.stop();
    }
  });

  it('a multipart .dump whose upload something else aborted (CompleteMultipartUpload answers NoSuchUpload, no object at the key): one line that says so and to run the backup again, nothing published', async () => {
    // Arrange: every completion of the .dump is answered 404 NoSuchUpload, and nothing lands
    const cluster = testCluster();
    const refusing = await startRefusingS3(s3, (method, url) => method === 'POST' && url.searchParams.has('uploadId') && url.pathname.endsWith('.dump'), 404, 'NoSuchUpload');
    const client = createS3Client({ ...s3.env, AWS_ENDPOINT_URL_S3: refusing.endpoint });
    const manifests = async (): Promise<string[]> =>
      ((await client.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: 'hourly/' }))).Contents ?? []).map((o) => o.Key!).filter((key) => key.endsWith('.json'));
    const before = await manifests();

    try {
      // Act
      const run = runBackup(
        { s3: client, bucket: s3.bucket, connection: { host: cluster.host, port: cluster.port, user: cluster.user, database }, otherRunWaitMs: 1000 },
        { tier: 'hourly', formats: ['custom'] },
      );

      // Assert: the cause named (not the bucket, the endpoint or the rights, which worked), no manifest
      await expect(run).rejects.toThrow(
        new RegExp(`^backup failed, nothing published .*S3 no longer knows the multipart upload of hourly/${database}_backup_\\d{8}_\\d{6}\\.dump in bucket ${s3.bucket} \\(NoSuchUpload\\): something other than this run aborted it \\(a person, a script, a lifecycle rule on incomplete uploads\\); run the backup again$`),
      );
      expect(await manifests()).toEqual(before);
    } finally {
      await refusing.stop();
    }
  });

  it('a multipart .dump whose CompleteMultipartUpload landed (answer lost), whose retry met NoSuchUpload and whose HeadObject S3 refused: the line says both causes (aborted by something else, or completed with the answer lost) and the right to grant', async () => {
    // Arrange: the first completion lands, its answer lost; the retry is answered NoSuchUpload; HEAD refused
    const cluster = testCluster();
    const s3Lost = await lostCompletionThenNoSuchUpload();
    const heads = await startRefusingS3({ ...s3, endpoint: s3Lost.endpoint }, (method, url) => method === 'HEAD' && url.pathname.endsWith('.dump'), 403, 'AccessDenied');
    const client = createS3Client({ ...s3.env, AWS_ENDPOINT_URL_S3: heads.endpoint });

    try {
      // Act
      const run = runBackup(
        { s3: client, bucket: s3.bucket, connection: { host: cluster.host, port: cluster.port, user: cluster.user, database }, otherRunWaitMs: 1000 },
        { tier: 'hourly', formats: ['custom'] },
      );

      // Assert: not "something else aborted it" alone, when the object may be this run's own
      await expect(run).rejects.toThrow(
        new RegExp(
          `\\(NoSuchUpload\\): something other than this run aborted it \\(a person, a script, a lifecycle rule on incomplete uploads\\), or this run completed it and lost the answer; run the backup again; it may instead be this run's own write: looking at it \\(HeadObject\\) failed \\(.*\\): grant s3:GetObject on hourly/${database}_backup_\\*\\.dump$`,
        ),
      );
      expect(s3Lost.counts()).toEqual([1, 2]);
    } finally {
      await heads.stop();
      await s3Lost.stop();
    }
  });

  it('a refused multipart .dump whose key holds another run\'s object of the same size (another run token) is not taken for its own: the run blames the other run, and reads no body', async () => {
    // Arrange: the first completion's answer is lost; before the retry reaches S3, the object at the
    // key becomes another run's: the same bytes, so the same size, under another run token
    const cluster = testCluster();
    const direct = createS3Client(s3.env);
    let lost = 0;
    let writes = 0;
    let replacedKey: string | undefined;
    const conditional = await startConditionalS3(
      s3,
      async (key) => {
        if (!key.endsWith('.dump') || writes++ !== 1) return;
        replacedKey = key;
        const stored = (await direct.send(new GetObjectCommand({ Bucket: s3.bucket, Key: key }))).Body!;
        await direct.send(new PutObjectCommand({ Bucket: s3.bucket, Key: key, Body: Buffer.from(await stored.transformToByteArray()), Metadata: { 'atmr-dr-run': 'another-run' } }));
      },
      (key) => key.endsWith('.dump') && lost++ === 0,
    );
    const client = createS3Client(conditional.env);
    const start = await secondAfterEarlierTests();

    try {
      // Act
      const run = runBackup(
        { s3: client, bucket: s3.bucket, connection: { host: cluster.host, port: cluster.port, user: cluster.user, database }, now: () => start, otherRunWaitMs: 1000 },
        { tier: 'hourly', formats: ['custom'] },
      );

      // Assert: the other run is blamed (no manifest came); its object's body was not read
      await expect(run).rejects.toThrow(/another backup of this tier and database started in the same second and wrote it first, and published no manifest within 1 s/);
      expect(replacedKey).toBeDefined();
      expect(conditional.refused).toEqual([replacedKey]);
      expect(conditional.served.get(replacedKey!) ?? 0).toBe(0);
    } finally {
      await conditional.stop();
    }
  });

  it('two runs of one tier started in the same second (a schedule delivered twice): one publishes, the other writes nothing after the key it lost and ends with one line, no failure', async () => {
    // Arrange: S3 with real conditional writes; the first .dump write is held a moment, long enough
    // for the other run's .sql.gz to land first if the objects were not written in a fixed order.
    const cluster = testCluster();
    let held = false;
    const conditional = await startConditionalS3(s3, async (key) => {
      if (held || !key.endsWith('.dump')) return;
      held = true;
      await new Promise((resolve) => setTimeout(resolve, 2000));
    });
    const client = createS3Client(conditional.env);
    // This second, the same for both: later than the backups of the tests before, so that it becomes `latest`.
    const start = new Date(Math.floor(Date.now() / 1000) * 1000);
    const keys = backupObjectKeys('daily', database, start);
    const metrics = [new Metrics({ namespace: 'AtmrDr/example', serviceName: 'backup' }), new Metrics({ namespace: 'AtmrDr/example', serviceName: 'backup' })];
    const run = (i: number) =>
      runBackup(
        { s3: client, bucket: s3.bucket, connection: { host: cluster.host, port: cluster.port, user: cluster.user, database }, now: () => start, metrics: metrics[i] },
        { tier: 'daily' },
      );

    try {
      // Act
      const outcomes = await Promise.allSettled([run(0), run(1)]);

      // Assert: both ended well, on one backup; the other run said so in one line
      expect(outcomes.map((o) => o.status)).toEqual(['fulfilled', 'fulfilled']);
      const results = outcomes.map((o) => (o as PromiseFulfilledResult<Awaited<ReturnType<typeof runBackup>>>).value);
      const manifestKey = keys.manifest;
      expect(results.map((r) => r.manifestKey)).toEqual([manifestKey, manifestKey]);
      const second = start.toISOString().replace('.000Z', 'Z');
      expect(results.map((r) => r.skipped).sort()).toEqual([`another run of the daily backup took ${second} (${manifestKey}); nothing to do`, undefined]);
      // The loser lost the .dump and then wrote nothing: the stored objects are the winner's, as its manifest says
      expect(conditional.refused).toEqual([keys.custom]);
      const stored = (await getJson(client, s3.bucket, manifestKey)) as { objects: { key: string; sha256: string }[] };
      expect(stored.objects.map((o) => o.key)).toEqual([keys.custom, keys.plain]);
      for (const object of stored.objects) {
        const body = (await client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: object.key }))).Body!;
        expect(sha256(Buffer.from(await body.transformToByteArray()))).toBe(object.sha256);
      }
      expect(await getJson(client, s3.bucket, `latest/${database}/daily.json`)).toEqual({ manifest: manifestKey });
      // One success counted, no failure (no page)
      const counted = metrics.map((m) => m.serializeMetrics() as unknown as Record<string, unknown>);
      expect(counted.map((c) => c.BackupSuccess ?? 0).sort()).toEqual([0, 1]);
      expect(counted.map((c) => c.BackupFailure)).toEqual([undefined, undefined]);
    } finally {
      await conditional.stop();
    }
  });

  it('loses a same-second race without overwriting, and the other run publishes nothing within the wait: names the other run and says to run again, publishes nothing', async () => {
    // Arrange: S3 with real conditional writes; another run of the same tier and second has already
    // completed its .dump (its manifest not written yet), so this run's key check finds the key free.
    const cluster = testCluster();
    const conditional = await startConditionalS3(s3);
    const client = createS3Client(conditional.env);
    const start = new Date('2026-08-01T10:00:00.000Z');
    const otherDump = `weekly/${database}_backup_20260801_100000.dump`;
    await client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: otherDump, Body: 'the other run' }));
    const latestPointers = async (): Promise<[string, string][]> =>
      Promise.all(
        (await listKeys(client, s3.bucket, 'latest')).map(async (key): Promise<[string, string]> => {
          const body = (await client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: key }))).Body!;
          return [key, await body.transformToString()];
        }),
      );
    const pointersBefore = await latestPointers();

    try {
      // Act
      const run = runBackup(
        { s3: client, bucket: s3.bucket, connection: { host: cluster.host, port: cluster.port, user: cluster.user, database }, now: () => start, otherRunWaitMs: 2000 },
        { tier: 'weekly', formats: ['custom'] },
      );

      // Assert
      await expect(run).rejects.toThrow(
        new RegExp(
          `^backup failed, nothing published \\(no manifest, latest pointers unchanged\\): S3 refused to overwrite ${otherDump} in bucket ${s3.bucket}: another backup of this tier and database started in the same second and wrote it first, and published no manifest within 2 s \\(it failed, or hangs\\); run the backup again$`,
        ),
      );
      expect(conditional.refused).toEqual([otherDump]);
      const kept = await client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: otherDump }));
      expect(await kept.Body!.transformToString()).toBe('the other run');
      expect(await listKeys(client, s3.bucket, 'weekly/')).toEqual([otherDump]);
      expect(await latestPointers()).toEqual(pointersBefore);
    } finally {
      await conditional.stop();
    }
  });

  it('loses its .dump to a `--formats custom` run of the same second: that run\'s backup has no .sql.gz, so this both-formats run fails naming the missing format and that run, instead of "nothing to do"', async () => {
    // Arrange: S3 with real conditional writes. The custom-only run starts first; its manifest write
    // is held until the both-formats run, started at the same second once that write arrived (so its
    // key check found the manifest free), writes its .dump, which the custom-only run stored first.
    const cluster = testCluster();
    const start = new Date('2026-08-08T10:00:00.000Z');
    const keys = backupObjectKeys('weekly', database, start);
    let manifestArrived = (): void => undefined;
    const customManifestArrived = new Promise<void>((resolve) => (manifestArrived = resolve));
    let release = (): void => undefined;
    const secondDumpArrived = new Promise<void>((resolve) => (release = resolve));
    let dumpWrites = 0;
    const conditional = await startConditionalS3(s3, async (key) => {
      if (key === keys.custom && ++dumpWrites === 2) release();
      if (key === keys.manifest) {
        manifestArrived();
        await secondDumpArrived;
      }
    });
    const client = createS3Client(conditional.env);
    const run = (formats: ('custom' | 'plain')[]) =>
      runBackup(
        { s3: client, bucket: s3.bucket, connection: { host: cluster.host, port: cluster.port, user: cluster.user, database }, now: () => start, otherRunWaitMs: 10_000 },
        { tier: 'weekly', formats },
      );

    try {
      // Act
      const customOnly = run(['custom']);
      await customManifestArrived;
      const both = run(['custom', 'plain']);

      // Assert: the custom-only run published; the other failed, naming the format and that run's manifest
      expect((await customOnly).skipped).toBeUndefined();
      await expect(both).rejects.toThrow(
        new Error(
          `backup failed, nothing published (no manifest, latest pointers unchanged): S3 refused to overwrite ${keys.custom} in bucket ${s3.bucket}: another backup of this tier and database started in the same second and wrote it first, and published ${keys.manifest} without the plain (${keys.plain}) this run was asked for: the tier has no plain backup of that second; run the backup again`,
        ),
      );
      expect(conditional.refused).toEqual([keys.custom]);
      expect((await listKeys(client, s3.bucket, keys.stem)).sort()).toEqual([keys.custom, keys.manifest].sort());
    } finally {
      await conditional.stop();
    }
  });

  it('runs pg_restore (the plain SQL conversion) without the database password or AWS credentials in its environment', async () => {
    const cluster = testCluster();
    const binDir = fs.mkdtempSync(path.join(workDir, 'bin-'));
    const envFile = path.join(workDir, 'pg_restore.env');
    const real = (tool: string) => {
      const found = process.env.PATH?.split(':').map((dir) => path.join(dir, tool)).find((candidate) => fs.existsSync(candidate));
      if (!found) throw new Error(`${tool} not on PATH`);
      return found;
    };
    fs.symlinkSync(real('pg_dump'), path.join(binDir, 'pg_dump'));
    fs.writeFileSync(path.join(binDir, 'pg_restore'), `#!/bin/sh\nenv >> '${envFile}'\nexec '${real('pg_restore')}' "$@"\n`, { mode: 0o755 });
    const saved = { ...process.env };
    Object.assign(process.env, { AWS_ACCESS_KEY_ID: 'AKIATESTKEY', AWS_SECRET_ACCESS_KEY: 'secret-key', AWS_SESSION_TOKEN: 'session-token' });

    try {
      await runBackup(
        {
          s3: createS3Client(s3.env),
          bucket: s3.bucket,
          pgBinDir: binDir,
          plainCompressor: 'zlib',
          // The test cluster trusts local connections: the password is only there to be looked for.
          connection: { host: cluster.host, port: cluster.port, user: cluster.user, database, password: 'db-password-1234' },
        },
        { tier: 'hourly', formats: ['custom', 'plain'] },
      );
    } finally {
      process.env = saved;
    }

    const env = fs.readFileSync(envFile, 'utf8');
    expect(env).toMatch(/^PATH=/m);
    expect(env).not.toMatch(/db-password-1234|AKIATESTKEY|secret-key|session-token/);
    expect(env).not.toMatch(/^(PGPASSWORD|PGHOST|AWS_[A-Z_]+)=/m);
  });
});
