import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { createS3Client } from '../../lambdas/shared/aws';
import { testCluster } from '../support/cluster';
import { psql } from '../support/postgres';
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
});
