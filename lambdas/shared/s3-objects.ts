import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { OperatorError, oneLine } from './errors';

/**
 * S3's "no such object", whichever way the SDK (or an S3-compatible server) reports it. A missing
 * bucket is also a 404 but is not a missing object: taking it for one would tell the operator
 * "no backup yet" when BACKUP_BUCKET is wrong.
 */
export function isNotFound(error: unknown): boolean {
  const e = error as { name?: string; Code?: string; $metadata?: { httpStatusCode?: number } } | undefined;
  if (e?.name === 'NoSuchBucket' || e?.Code === 'NoSuchBucket') return false;
  return e?.name === 'NoSuchKey' || e?.name === 'NotFound' || e?.Code === 'NoSuchKey' || e?.$metadata?.httpStatusCode === 404;
}

/**
 * A small object's body as text (pointers, manifests, reports). A missing object fails with
 * `notFound()` when given; any other failure says what to check.
 */
export async function getText(s3: S3Client, bucket: string, key: string, notFound?: () => string): Promise<string> {
  try {
    const response = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    return (await response.Body?.transformToString('utf8')) ?? '';
  } catch (error) {
    if (notFound && isNotFound(error)) throw new OperatorError(notFound());
    throw new OperatorError(`cannot read s3://${bucket}/${key}: ${oneLine(error)}; check the endpoint, BACKUP_BUCKET and credentials`);
  }
}
