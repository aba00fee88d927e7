import { OperatorError } from './errors';

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
 * proxy) held a Lambda function until its own timeout; now each attempt times out and is retried
 * (the SDK arms the idle timer 3 s after a request starts). The operator CLI bounds its calls
 * tighter: see useOperatorSdkSettings.
 */
export const SDK_IDLE_TIMEOUT_MS = 10_000;

/**
 * How long the operator CLI waits for an AWS endpoint to start answering one attempt of a read
 * (connection, request and the response's headers; writes are not bounded so, see isRead).
 * Control-plane calls answer within a second; a silent endpoint fails a call after
 * OPERATOR_UNANSWERED_ATTEMPTS of these (about 3 x 3 s = 9 s with the backoff), instead of the
 * minutes the idle timeouts above allow.
 */
export const OPERATOR_ANSWER_TIMEOUT_MS = 3_000;

/**
 * How many attempts of one operator CLI call (S3 apart) a silent endpoint gets: an attempt that
 * timed out is retried twice, not DEFAULT_MAX_ATTEMPTS - 1 times. An endpoint silent for three
 * attempts is down, not slow, and each retry added 3 s: a command that reads a name from
 * CloudFormation, falls back to the config and then reads SSM (killswitch status) waited about
 * 33 s on the worst day, and now about 19 s. Throttling and server errors keep the SDK's
 * DEFAULT_MAX_ATTEMPTS: those come from an AWS that answers, and waiting fixes them.
 */
export const OPERATOR_UNANSWERED_ATTEMPTS = 3;

/**
 * A request body larger than this (an S3 part upload, a large object) takes as long as the link
 * needs to carry it: such a request is bounded by its socket's idle time only, never by
 * OPERATOR_ANSWER_TIMEOUT_MS. Every control-plane request, an S3 GET, LIST or HEAD, a manifest
 * or a pointer is far smaller.
 */
export const OPERATOR_BOUNDED_BODY_BYTES = 64 * 1024;

/** The HTTP handler options the SDK clients of the Lambda functions and the backup task use. */
const SERVICE_CONTROL_PLANE_HANDLER = { connectionTimeout: SDK_CONNECTION_TIMEOUT_MS, socketTimeout: SDK_IDLE_TIMEOUT_MS } as const;

let operatorSettings = false;

/**
 * Called once by the operator CLI (bin/atmr-dr.ts) before it builds any client. From then on every
 * client built with SDK_RETRY or lambdas/shared/aws.ts (the same code as the Lambda functions',
 * which keep their settings: they never call this):
 *  - refuses a malformed AWS_REGION or AWS_ENDPOINT_URL[_<SERVICE>] when it is built, before any
 *    request, with one line naming the variable (exit 2, a bad setting);
 *  - gives each attempt of a read OPERATOR_ANSWER_TIMEOUT_MS to be answered, and keeps the SDK's own retry
 *    strategy (standard mode, DEFAULT_MAX_ATTEMPTS), but for a silent endpoint, which gets
 *    OPERATOR_UNANSWERED_ATTEMPTS (S3 apart): an operator waiting on a silent endpoint gets a line
 *    within seconds, not minutes;
 *  - names the service and the endpoint in a timed-out attempt's error (see AwsTimeoutDetails).
 */
export function useOperatorSdkSettings(): void {
  operatorSettings = true;
}

let beforeFirstRequest: (() => void) | undefined;

/**
 * Runs `call` once, just before the operator CLI sends its first AWS request (through any client
 * built with the operator settings), and not at all if it sends none: a notice about the AWS
 * settings (the region the CLI chose, bin/cli/region.ts) is then said only by a command that uses
 * them, and never before a command line refused by its own checks, whose one line stays one line.
 */
export function beforeFirstAwsRequest(call: () => void): void {
  beforeFirstRequest = call;
}

/** True once the operator CLI has called useOperatorSdkSettings. */
export function operatorSdkSettingsInUse(): boolean {
  return operatorSettings;
}

/**
 * The settings every SDK client of atmr-dr is built with (`new ECSClient(SDK_RETRY)`): the SDK's
 * standard mode retries throttling and transient errors, and the timeouts above end a silent
 * endpoint's attempts. Endpoints come from the SDK's own variables (AWS_ENDPOINT_URL_DYNAMODB,
 * AWS_ENDPOINT_URL_ECS, ...). The handler options and extensions are read when a client is built,
 * which is how the operator CLI's settings reach the clients of the shared code.
 */
export const SDK_RETRY = {
  maxAttempts: DEFAULT_MAX_ATTEMPTS,
  retryMode: 'standard',
  get requestHandler() {
    return operatorSettings ? { ...SERVICE_CONTROL_PLANE_HANDLER, throwOnRequestTimeout: true } : SERVICE_CONTROL_PLANE_HANDLER;
  },
  get extensions() {
    return operatorSettings ? [OPERATOR_EXTENSION] : [];
  },
} as const;

/**
 * The settings of an SDK client on a request's path (the API's killswitch reader, the maintenance
 * responder, the Slack command): someone is waiting for each answer (an HTTP client, a load
 * balancer's health check, Slack's 3 s), so a silent or unreachable endpoint must fail the call in
 * seconds, not in SDK_RETRY's minutes: 1 s to connect, 2 s for the answer of one attempt (thrown,
 * not only warned), 2 attempts (about 4 s at worst). Throttling gets one retry too: the callers
 * keep their last known value, or tell the user, rather than wait.
 */
export const REQUEST_PATH_SDK = {
  maxAttempts: 2,
  retryMode: 'standard',
  requestHandler: { connectionTimeout: 1_000, requestTimeout: 2_000, throwOnRequestTimeout: true },
} as const;

/**
 * The client settings of the Slack slash commands (`/killswitch`, `/incident`). Slack gives a
 * command 3 s, and a command makes up to three calls (the killswitch: read, write, re-read; an
 * acknowledgement: the status write, its timeline entry, the workflow's wake): each attempt gets
 * 0.5 s to connect and 0.8 s to answer, and there is no retry (the SDK's default attempts with
 * backoff, throttled or unanswered, outlasted the 3 s, and the on-call saw Slack's
 * operation_timeout while the write may have landed). A write sent and not answered is told as
 * such, in time: the command says its outcome is unknown and how to check it.
 */
export const SLACK_COMMAND_SDK = {
  ...REQUEST_PATH_SDK,
  maxAttempts: 1,
  requestHandler: { connectionTimeout: 500, requestTimeout: 800, throwOnRequestTimeout: true },
} as const;

/**
 * The operator CLI's extensions for the S3 client (lambdas/shared/aws.ts): the same checks and
 * answer bound, and the SDK's own DEFAULT_MAX_ATTEMPTS for a silent endpoint (a download is one
 * call, and its command makes few others).
 */
export function s3OperatorExtensions(): (typeof OPERATOR_S3_EXTENSION)[] {
  return operatorSettings ? [OPERATOR_S3_EXTENSION] : [];
}

/** What the operator CLI adds to the error of a call that got no answer (unreachable or timed out), for its one line. */
export interface AwsEndpointDetails {
  /** e. "SSM", "DynamoDB", "CloudFormation". */
  readonly awsService: string;
  /** The endpoint that did not answer, e.g. https://ssm.eu-west-3.amazonaws.com or http://127.0.0.1:4566. */
  readonly awsEndpoint: string;
  /** The SDK variable that points this service elsewhere, e.g. AWS_ENDPOINT_URL_SSM. */
  readonly awsEndpointVariable: string;
}

/** What the operator CLI adds to a timed-out attempt's error. */
export interface AwsTimeoutDetails extends AwsEndpointDetails {
  /** How long the attempt waited: OPERATOR_ANSWER_TIMEOUT_MS for a read, SDK_IDLE_TIMEOUT_MS of silence for a write. */
  readonly awsAttemptBoundMs: number;
}

/** The service's name in the SDK's user agent (`api/<id>#<version>`), as an operator knows it. */
const SERVICE_NAMES: Readonly<Record<string, string>> = {
  s3: 'S3',
  ssm: 'SSM',
  sts: 'STS',
  dynamodb: 'DynamoDB',
  cloudformation: 'CloudFormation',
  'secrets-manager': 'Secrets Manager',
  ecs: 'ECS',
  rds: 'RDS',
  cloudwatch: 'CloudWatch',
  sns: 'SNS',
  sfn: 'Step Functions',
  eventbridge: 'EventBridge',
  scheduler: 'EventBridge Scheduler',
};

/** The parts of the SDK's HTTP request and handler that the operator bound uses. */
interface SdkHttpRequest {
  readonly method?: string;
  readonly protocol: string;
  readonly hostname: string;
  readonly port?: number;
  readonly headers: Record<string, string>;
  readonly body?: unknown;
}
interface SdkHandlerOptions {
  readonly requestTimeout?: number;
}
interface SdkHttpHandler {
  handle(request: SdkHttpRequest, options?: SdkHandlerOptions): Promise<unknown>;
  updateHttpClientConfig(key: never, value: never): void;
  httpHandlerConfigs(): unknown;
  destroy?(): void;
  readonly metadata?: unknown;
}

/** The parts of the SDK's retry strategy (RetryStrategyV2) that capUnanswered uses. */
interface SdkRetryToken {
  getRetryCount(): number;
}
interface SdkRetryStrategy {
  readonly mode?: string;
  acquireInitialRetryToken?(scope: string): Promise<SdkRetryToken>;
  refreshRetryTokenForRetry?(token: SdkRetryToken, errorInfo: { readonly error?: unknown }): Promise<SdkRetryToken>;
  recordSuccess?(token: SdkRetryToken): void;
}
type SdkRetryStrategyProvider = () => Promise<SdkRetryStrategy>;

/**
 * The client's own retry strategy (its maxAttempts, backoff and retry quota), except that an
 * attempt that timed out is not retried once OPERATOR_UNANSWERED_ATTEMPTS attempts have been made:
 * the SDK then throws that attempt's TimeoutError, with $metadata.attempts counting them.
 */
function capUnanswered(strategy: SdkRetryStrategy): SdkRetryStrategy {
  const { acquireInitialRetryToken, refreshRetryTokenForRetry, recordSuccess } = strategy;
  if (acquireInitialRetryToken === undefined || refreshRetryTokenForRetry === undefined || recordSuccess === undefined) return strategy;
  return {
    mode: strategy.mode,
    acquireInitialRetryToken: (scope) => acquireInitialRetryToken.call(strategy, scope),
    refreshRetryTokenForRetry: async (token, errorInfo) => {
      const timedOut = (errorInfo.error as { name?: unknown } | null | undefined)?.name === 'TimeoutError';
      if (timedOut && token.getRetryCount() + 1 >= OPERATOR_UNANSWERED_ATTEMPTS) throw new Error('no retry: the endpoint did not answer');
      return refreshRetryTokenForRetry.call(strategy, token, errorInfo);
    },
    recordSuccess: (token) => recordSuccess.call(strategy, token),
  };
}

/** The extension configuration's parts the operator extension uses. */
interface SdkExtensionConfiguration {
  httpHandler(): SdkHttpHandler;
  setHttpHandler(handler: SdkHttpHandler): void;
  retryStrategy(): SdkRetryStrategyProvider;
  setRetryStrategy(provider: SdkRetryStrategyProvider): void;
}

/**
 * A runtime extension (the SDK's hook into a client being built): it checks the AWS variables, then
 * wraps the client's HTTP handler so that each small request gets OPERATOR_ANSWER_TIMEOUT_MS to be
 * answered (the handler's own requestTimeout, which throws the SDK's retryable TimeoutError) and a
 * timed-out attempt's error names the service and the endpoint; with `capRetries`, a silent
 * endpoint gets OPERATOR_UNANSWERED_ATTEMPTS attempts (capUnanswered).
 */
function operatorExtension(capRetries: boolean) {
  return { configure: (config: SdkExtensionConfiguration) => configureOperatorClient(config, capRetries) };
}
const OPERATOR_EXTENSION = operatorExtension(true);
const OPERATOR_S3_EXTENSION = operatorExtension(false);

function configureOperatorClient(config: SdkExtensionConfiguration, capRetries: boolean): void {
  assertAwsVariables(process.env);
  if (capRetries) {
    // The client's strategy is made once and shared by its calls (its retry quota): so is the cap.
    const provider = config.retryStrategy();
    let capped: Promise<SdkRetryStrategy> | undefined;
    config.setRetryStrategy(() => (capped ??= provider().then(capUnanswered)));
  }
  const inner = config.httpHandler();
  const bounded: SdkHttpHandler = {
    metadata: inner.metadata,
    updateHttpClientConfig: (key, value) => inner.updateHttpClientConfig(key, value),
    httpHandlerConfigs: () => inner.httpHandlerConfigs(),
    destroy: () => inner.destroy?.(),
    handle: async (request, options = {}) => {
      const first = beforeFirstRequest;
      beforeFirstRequest = undefined;
      first?.();
      const answerBound = options.requestTimeout === undefined && isRead(request) && bodyBytes(request) <= OPERATOR_BOUNDED_BODY_BYTES;
      try {
        return await inner.handle(request, answerBound ? { ...options, requestTimeout: OPERATOR_ANSWER_TIMEOUT_MS } : options);
      } catch (error) {
        // The handler throws only when no answer came (DNS, a refused or reset connection, a
        // timeout): the service and its endpoint variable are added for the one line that says
        // which service could not be reached (asOperatorError), whatever client made the call.
        if (typeof error === 'object' && error !== null) {
          Object.assign(error, (error as { name?: unknown }).name === 'TimeoutError' ? timeoutDetails(request, answerBound ? OPERATOR_ANSWER_TIMEOUT_MS : SDK_IDLE_TIMEOUT_MS) : endpointDetails(request));
        }
        throw error;
      }
    },
  };
  config.setHttpHandler(bounded);
}

/** Operations that only read: their name starts so in every AWS API (GetParameter, DescribeStacks, Query, ListObjectsV2...). */
const READ_OPERATION = /^(Get|Describe|List|Query|Scan|BatchGet|Search|Lookup|Head)/;

/**
 * Whether the request only reads. Only reads get OPERATOR_ANSWER_TIMEOUT_MS: the SDK retries a
 * timed-out attempt, and a write whose first attempt succeeded but answered late would be sent
 * again and meet its own earlier write (a conditional put of a lock or an acknowledgement fails
 * its condition, an SSM overwrite adds a version): the operator would read a conflict that is
 * not one, and a lock could stay held. Writes keep the idle bound every client has
 * (SDK_IDLE_TIMEOUT_MS). The operation is in the method (REST: GET, HEAD), the X-Amz-Target
 * header (JSON protocols: `AmazonSSM.GetParameter`, `DynamoDB_20120810.Query`) or the `Action`
 * of the form body (query protocols: RDS, CloudFormation, CloudWatch, SNS, STS).
 */
export function isRead(request: Pick<SdkHttpRequest, 'method' | 'headers' | 'body'>): boolean {
  const method = (request.method ?? '').toUpperCase();
  if (method === 'GET' || method === 'HEAD') return true;
  const target = Object.entries(request.headers).find(([name]) => name.toLowerCase() === 'x-amz-target')?.[1];
  if (target) return READ_OPERATION.test(target.slice(target.lastIndexOf('.') + 1));
  const action = typeof request.body === 'string' ? new URLSearchParams(request.body).get('Action') : null;
  return action !== null && READ_OPERATION.test(action);
}

function bodyBytes(request: SdkHttpRequest): number {
  const declared = Number(request.headers['content-length'] ?? request.headers['Content-Length']);
  if (Number.isFinite(declared)) return declared;
  const { body } = request;
  if (body === undefined || body === null) return 0;
  if (typeof body === 'string') return Buffer.byteLength(body);
  if (body instanceof Uint8Array) return body.byteLength;
  // A stream of unknown length: an upload.
  return Number.POSITIVE_INFINITY;
}

function timeoutDetails(request: SdkHttpRequest, attemptBoundMs: number): AwsTimeoutDetails {
  return { awsAttemptBoundMs: attemptBoundMs, ...endpointDetails(request) };
}

function endpointDetails(request: SdkHttpRequest): AwsEndpointDetails {
  const agent = `${request.headers['x-amz-user-agent'] ?? ''} ${request.headers['user-agent'] ?? ''}`;
  const id = /\bapi\/([a-z0-9-]+)#/i.exec(agent)?.[1]?.toLowerCase() ?? 'aws';
  return {
    awsService: SERVICE_NAMES[id] ?? id.toUpperCase(),
    awsEndpoint: `${request.protocol}//${request.hostname}${request.port ? `:${request.port}` : ''}`,
    awsEndpointVariable: `AWS_ENDPOINT_URL_${id.toUpperCase().replace(/-/g, '_')}`,
  };
}

/**
 * AWS region names: two to four letters, one or more words, a number (eu-west-3, us-gov-west-1,
 * eusc-de-east-1). A typo (`eu-west3`, `bogus`) would otherwise become a host name that does not
 * resolve, reported as a network failure.
 */
const REGION_SHAPE = /^[a-z]{2,4}(-[a-z]+)+-\d+$/;

/** True for a string shaped as an AWS region name (REGION_SHAPE). */
export function isAwsRegionName(value: string): boolean {
  return REGION_SHAPE.test(value);
}

/**
 * The AWS variables an operator sets by hand, checked before any request: a malformed one is a bad
 * setting (exit 2) named with its fix, instead of the SDK's "TypeError: Invalid URL" or a DNS
 * failure blamed on the network. Every AWS_ENDPOINT_URL_<SERVICE> is checked, not only the one
 * of the client being built: one line names the first that is wrong.
 */
export function assertAwsVariables(env: NodeJS.ProcessEnv): void {
  const region = env.AWS_REGION;
  if (region !== undefined && !isAwsRegionName(region)) {
    const what = region.trim() === '' ? 'AWS_REGION is set but empty' : `AWS_REGION "${region}" is not an AWS region name`;
    throw new OperatorError(`${what}: export AWS_REGION=<region> (e.g. AWS_REGION=eu-west-3), or unset it to use the profile's region`, 2);
  }
  for (const [name, value] of Object.entries(env)) {
    if (name !== 'AWS_ENDPOINT_URL' && !name.startsWith('AWS_ENDPOINT_URL_')) continue;
    if (value === undefined || isHttpUrl(value)) continue;
    const what = value.trim() === '' ? `${name} is set but empty` : `${name} "${value}" is not an http(s) URL`;
    throw new OperatorError(`${what}: set it to the endpoint's URL (e.g. ${name}=https://vpce-example.amazonaws.com or http://127.0.0.1:4566), or unset it to use AWS's own endpoint`, 2);
  }
}

/** Whether `value` parses as an http(s) URL with a host. */
export function isHttpUrl(value: string): boolean {
  try {
    const url = new URL(value);
    return (url.protocol === 'http:' || url.protocol === 'https:') && url.hostname !== '';
  } catch {
    return false;
  }
}
