import { S3Client, S3ClientConfig } from '@aws-sdk/client-s3';
import { DEFAULT_MAX_ATTEMPTS, operatorSdkSettingsInUse, s3OperatorExtensions, SDK_CONNECTION_TIMEOUT_MS } from './sdk-retry';

/**
 * SDK clients with the SDK's own retry strategy (standard mode: exponential backoff with jitter,
 * retry quota). Settings come from the SDK's standard variables (AWS_REGION, AWS_ENDPOINT_URL,
 * AWS_ENDPOINT_URL_S3, ...). With the default `env` (process.env) the SDK's own providers read them;
 * with another env object (tests, child configuration), the same variables are applied explicitly.
 */
export { DEFAULT_MAX_ATTEMPTS, SDK_RETRY } from './sdk-retry';

/**
 * S3 answers in milliseconds: an endpoint that accepts the connection and then says nothing (a
 * broken proxy, a black-holed VPC endpoint) would otherwise hold a request, and a scheduled backup
 * task with it, until someone stops the task. The timeout is the socket's idle time (the handler's
 * `socketTimeout`; its `requestTimeout` bounds a whole request and, in this SDK, only warns unless
 * told to throw): a long part upload or ranged GET that keeps moving bytes is never cut. Each
 * timed-out attempt is retried by the standard strategy, so a silent S3 fails a Lambda function or
 * the backup task after about DEFAULT_MAX_ATTEMPTS x 30 s with the SDK's TimeoutError. The operator
 * CLI also bounds the wait for S3's answer to a request without a large body (see
 * useOperatorSdkSettings): a silent S3 fails its commands in about 15 s.
 */
export const S3_CONNECTION_TIMEOUT_MS = SDK_CONNECTION_TIMEOUT_MS;
export const S3_IDLE_TIMEOUT_MS = 30_000;

export function s3ClientConfig(env: NodeJS.ProcessEnv = process.env, overrides: S3ClientConfig = {}): S3ClientConfig {
  const endpoint = env.AWS_ENDPOINT_URL_S3 ?? env.AWS_ENDPOINT_URL;
  const explicit: S3ClientConfig = {};
  if (env !== process.env) {
    if (endpoint) explicit.endpoint = endpoint;
    const region = env.AWS_REGION ?? env.AWS_DEFAULT_REGION;
    if (region) explicit.region = region;
    if (env.AWS_ACCESS_KEY_ID && env.AWS_SECRET_ACCESS_KEY) {
      explicit.credentials = {
        accessKeyId: env.AWS_ACCESS_KEY_ID,
        secretAccessKey: env.AWS_SECRET_ACCESS_KEY,
        sessionToken: env.AWS_SESSION_TOKEN,
      };
    }
  }
  return {
    maxAttempts: DEFAULT_MAX_ATTEMPTS,
    retryMode: 'standard',
    // A custom endpoint (s3rver, MinIO, a VPC endpoint URL) cannot take virtual-hosted buckets.
    forcePathStyle: Boolean(endpoint),
    requestHandler: { connectionTimeout: S3_CONNECTION_TIMEOUT_MS, socketTimeout: S3_IDLE_TIMEOUT_MS, ...(operatorSdkSettingsInUse() && { throwOnRequestTimeout: true }) },
    // The operator CLI's checks and answer bound (none for the Lambda functions and the backup task).
    extensions: s3OperatorExtensions(),
    ...explicit,
    ...overrides,
  };
}

export function createS3Client(env: NodeJS.ProcessEnv = process.env, overrides: S3ClientConfig = {}): S3Client {
  return new S3Client(s3ClientConfig(env, overrides));
}
