/**
 * The retry settings of every SDK client, apart from lambdas/shared/aws.ts (which builds the S3
 * client and so loads the S3 SDK): the CLI's name resolution and its other commands import these
 * without evaluating the S3 client, a third of a restore command's start.
 */
export const DEFAULT_MAX_ATTEMPTS = 5;

/** Time to open a connection to an AWS endpoint (S3 included). */
export const SDK_CONNECTION_TIMEOUT_MS = 5_000;

/**
 * How long a control-plane request (SSM, ECS, RDS, DynamoDB, Step Functions, CloudFormation, STS...)
 * may sit on an open socket without a byte: they answer within a second or two. Without it, an
 * endpoint that accepts the connection and then says nothing (a black-holed VPC endpoint, a hung
 * proxy) held `atmr-dr killswitch enable` forever on the worst day; now each attempt times out and
 * is retried, and the command ends with "SSM is unreachable" after about DEFAULT_MAX_ATTEMPTS x 13 s
 * (the SDK arms the idle timer 3 s after a request starts).
 */
export const SDK_IDLE_TIMEOUT_MS = 10_000;

/**
 * The settings every SDK client of atmr-dr is built with (`new ECSClient(SDK_RETRY)`): the SDK's
 * standard mode retries throttling and transient errors, and the timeouts above end a silent
 * endpoint's attempts. Endpoints come from the SDK's own variables (AWS_ENDPOINT_URL_DYNAMODB,
 * AWS_ENDPOINT_URL_ECS, ...).
 */
export const SDK_RETRY = {
  maxAttempts: DEFAULT_MAX_ATTEMPTS,
  retryMode: 'standard',
  requestHandler: { connectionTimeout: SDK_CONNECTION_TIMEOUT_MS, socketTimeout: SDK_IDLE_TIMEOUT_MS },
} as const;
