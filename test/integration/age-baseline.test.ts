import { GetObjectCommand } from '@aws-sdk/client-s3';
import { ageBaseline } from '../../lambdas/backup/age-baseline';
import { createS3Client } from '../../lambdas/shared/aws';
import { startRefusingS3 } from '../support/refusing-s3';
import { LocalS3, startLocalS3 } from '../support/s3';

const KEY = 'state/age-baseline/hourly.json';

describe('age baseline marker against S3 (s3rver)', () => {
  let s3: LocalS3;
  beforeAll(async () => {
    s3 = await startLocalS3();
  });
  afterAll(async () => {
    await s3.stop();
  });

  it('a write that meets another at the same moment (409 ConditionalRequestConflict), with no marker there yet: read again and written, the baseline is now', async () => {
    // Arrange: S3 answers the first write of the marker 409, as when another write was landing
    let refused = 0;
    const proxy = await startRefusingS3(s3, (method, url) => method === 'PUT' && url.pathname.endsWith(KEY) && ++refused === 1, 409, 'ConditionalRequestConflict');
    const now = new Date('2026-12-04T10:00:00.000Z');
    try {
      // Act
      const baseline = await ageBaseline(createS3Client({ ...s3.env, AWS_ENDPOINT_URL_S3: proxy.endpoint }), s3.bucket, KEY, now);

      // Assert
      expect(baseline).toEqual(now);
      const stored = await createS3Client(s3.env).send(new GetObjectCommand({ Bucket: s3.bucket, Key: KEY }));
      expect(JSON.parse(await stored.Body!.transformToString())).toEqual({ schema: 1, since: now.toISOString() });
      expect(refused).toBe(2);
    } finally {
      await proxy.stop();
    }
  });

  it('a 409 at every attempt: one line saying another write met each, not the bucket or the role', async () => {
    // Arrange
    const proxy = await startRefusingS3(s3, (method, url) => method === 'PUT' && url.pathname.endsWith('other.json'), 409, 'ConditionalRequestConflict');
    try {
      // Act
      const attempt = ageBaseline(createS3Client({ ...s3.env, AWS_ENDPOINT_URL_S3: proxy.endpoint }), s3.bucket, 'state/age-baseline/other.json', new Date());

      // Assert
      await expect(attempt).rejects.toThrow(
        `S3 refused to write state/age-baseline/other.json in bucket ${s3.bucket}: another write to this key met each of 3 attempts (ConditionalRequestConflict); the next run writes it`,
      );
    } finally {
      await proxy.stop();
    }
  });
});
