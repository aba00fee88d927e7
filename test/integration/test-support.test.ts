import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { createS3Client } from '../../lambdas/shared/aws';
import { testCluster } from '../support/cluster';
import { psql } from '../support/postgres';
import { startConditionalS3 } from '../support/conditional-s3';
import { LocalS3, startLocalS3 } from '../support/s3';

// The real components every integration test relies on: a PostgreSQL cluster and an S3 protocol server.
describe('test support', () => {
  let s3: LocalS3;
  beforeAll(async () => {
    s3 = await startLocalS3();
  });
  afterAll(async () => {
    await s3.stop();
  });

  it('reaches the throwaway PostgreSQL cluster on 127.0.0.1', () => {
    const version = psql(testCluster(), 'postgres', 'SHOW server_version_num;');
    expect(Number(version)).toBeGreaterThanOrEqual(120000);
  });

  it('round-trips an object through s3rver with path-style addressing', async () => {
    const client = createS3Client(s3.env);
    await client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: 'probe/a.txt', Body: 'hello' }));
    const got = await client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: 'probe/a.txt' }));
    expect(await got.Body?.transformToString()).toBe('hello');
  });

  it('conditional S3: of two put-if-absent writes of one key arriving together, one lands and the other is refused (412), as S3 decides them', async () => {
    // Arrange: each write is held a moment before it is looked at, so that both are in the proxy at once
    const conditional = await startConditionalS3(s3, () => new Promise((resolve) => setTimeout(resolve, 200)));
    const client = createS3Client(conditional.env);
    const put = (body: string) => client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: 'probe/race.txt', Body: body, IfNoneMatch: '*' }));
    try {
      // Act
      const outcomes = await Promise.allSettled([put('one'), put('two')]);

      // Assert: one landed and stayed, the other was refused
      const landed = outcomes.findIndex((o) => o.status === 'fulfilled');
      expect(outcomes.map((o) => o.status).sort()).toEqual(['fulfilled', 'rejected']);
      expect(outcomes[1 - landed]).toMatchObject({ reason: { name: 'PreconditionFailed' } });
      expect(conditional.refused).toEqual(['probe/race.txt']);
      const got = await createS3Client(s3.env).send(new GetObjectCommand({ Bucket: s3.bucket, Key: 'probe/race.txt' }));
      expect(await got.Body?.transformToString()).toBe(['one', 'two'][landed]);
    } finally {
      await conditional.stop();
    }
  });
});
