/**
 * The retry settings of every SDK client, apart from lambdas/shared/aws.ts (which builds the S3
 * client and so loads the S3 SDK): the CLI's name resolution and its other commands import these
 * without evaluating the S3 client, a third of a restore command's start.
 */
export const DEFAULT_MAX_ATTEMPTS = 5;

/**
 * The retry settings every SDK client of atmr-dr is built with (`new ECSClient(SDK_RETRY)`): the SDK's
 * standard mode retries throttling and transient errors. Endpoints come from the SDK's own variables
 * (AWS_ENDPOINT_URL_DYNAMODB, AWS_ENDPOINT_URL_ECS, ...).
 */
export const SDK_RETRY = { maxAttempts: DEFAULT_MAX_ATTEMPTS, retryMode: 'standard' } as const;
