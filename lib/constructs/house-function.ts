import { Duration, RemovalPolicy, Validations } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as destinations from 'aws-cdk-lib/aws-lambda-destinations';
import * as nodejs from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import type * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import * as path from 'node:path';
import { metricsNamespace } from '../../lambdas/shared/constants';

/** Repository root, to resolve `lambdas/<concern>/handler.ts` entries. */
export const REPO_ROOT = path.resolve(__dirname, '..', '..');

export interface HouseFunctionProps {
  /** Handler file, relative to the repository root (e.g. `lambdas/killswitch/handler.ts`). */
  readonly entry: string;
  /** Exported handler name. @default 'handler' */
  readonly handler?: string;
  /** Powertools service name (logs, metrics dimension, traces). */
  readonly serviceName: string;
  /** The environment the function belongs to: it publishes its metrics in that environment's namespace only. */
  readonly environmentName: string;
  /** @default Duration.seconds(30) */
  readonly timeout?: Duration;
  /** @default 256 */
  readonly memorySize?: number;
  /** Non-secret configuration only: secrets are read at run time from Secrets Manager. */
  readonly environment?: Record<string, string>;
  /** Run inside the VPC (private subnets) with these placement settings. @default - outside any VPC */
  readonly vpcPlacement?: {
    readonly vpc: ec2.IVpc;
    readonly subnets: ec2.SubnetSelection;
    readonly securityGroups: ec2.ISecurityGroup[];
  };
  /** Log retention. @default logs.RetentionDays.THREE_MONTHS */
  readonly logRetention?: logs.RetentionDays;
  /** What deleting the stack does to the log group: RETAIN for an audit record. @default RemovalPolicy.DESTROY */
  readonly logRemovalPolicy?: RemovalPolicy;
  /** Reserved concurrency (e.g. 1 for runners that must not overlap). @default - unreserved */
  readonly reservedConcurrentExecutions?: number;
}


/**
 * Minified, but with the class names kept: error lines print an error's name, taken from its
 * class (ioredis' ReplyError, pg's DatabaseError ...), and minified alone they read
 * "f_: WRONGPASS ..." instead of "ReplyError: WRONGPASS ...".
 */
export const HOUSE_FUNCTION_NAMING = { minify: true, keepNames: true } as const;

/**
 * The house Lambda function: Node.js 22 on arm64, bundled locally with esbuild (no Docker),
 * X-Ray tracing, a log group of its own with bounded retention, Powertools settings.
 *
 * Outside a VPC its role may write logs only to that log group (CreateLogStream and PutLogEvents on
 * it; Lambda does not create a log group that exists): not AWSLambdaBasicExecutionRole, whose log
 * writes on `*` would let an internet-facing function (the ack link, the Slack command) write into
 * any log group, e.g. /ecs/atmr-api, whose metric filters feed alarms. In a VPC, CDK's default role
 * stays: AWSLambdaVPCAccessExecutionRole, which Lambda needs for the network interfaces, grants the
 * same log writes on `*` anyway (see VPC_MANAGED_POLICY_ACKNOWLEDGEMENTS).
 */
export class HouseFunction extends Construct {
  readonly function: nodejs.NodejsFunction;
  readonly logGroup: logs.LogGroup;

  constructor(scope: Construct, id: string, props: HouseFunctionProps) {
    super(scope, id);
    this.logGroup = new logs.LogGroup(this, 'Logs', {
      retention: props.logRetention ?? logs.RetentionDays.THREE_MONTHS,
      removalPolicy: props.logRemovalPolicy ?? RemovalPolicy.DESTROY,
    });
    // Named so that the role's and its policy's logical IDs keep the prefix of Lambda's default role (Function + ServiceRole).
    const role = props.vpcPlacement
      ? undefined
      : new iam.Role(this, 'FunctionServiceRole', { assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com') });
    role?.addToPrincipalPolicy(
      new iam.PolicyStatement({ sid: 'OwnLogGroupOnly', actions: ['logs:CreateLogStream', 'logs:PutLogEvents'], resources: [this.logGroup.logGroupArn] }),
    );
    this.function = new nodejs.NodejsFunction(this, 'Function', {
      role,
      entry: path.join(REPO_ROOT, props.entry),
      handler: props.handler ?? 'handler',
      runtime: lambda.Runtime.NODEJS_22_X,
      architecture: lambda.Architecture.ARM_64,
      timeout: props.timeout ?? Duration.seconds(30),
      memorySize: props.memorySize ?? 256,
      tracing: lambda.Tracing.ACTIVE,
      logGroup: this.logGroup,
      loggingFormat: lambda.LoggingFormat.JSON,
      reservedConcurrentExecutions: props.reservedConcurrentExecutions,
      projectRoot: REPO_ROOT,
      depsLockFilePath: path.join(REPO_ROOT, 'package-lock.json'),
      environment: {
        POWERTOOLS_SERVICE_NAME: props.serviceName,
        POWERTOOLS_METRICS_NAMESPACE: metricsNamespace(props.environmentName),
        NODE_OPTIONS: '--enable-source-maps',
        ...props.environment,
      },
      bundling: {
        ...HOUSE_FUNCTION_NAMING,
        sourceMap: true,
        target: 'node22',
        format: nodejs.OutputFormat.CJS,
        forceDockerBundling: false,
      },
      ...(props.vpcPlacement && {
        vpc: props.vpcPlacement.vpc,
        vpcSubnets: props.vpcPlacement.subnets,
        securityGroups: props.vpcPlacement.securityGroups,
      }),
    });
  }
}

/** What X-Ray needs (active tracing): PutTraceSegments/PutTelemetryRecords have no resource-level permissions. */
const XRAY_REASON = 'X-Ray PutTraceSegments/PutTelemetryRecords (active tracing) have no resource-level permissions.';

/**
 * The two AWS-managed policies CDK gives a function in a VPC, with what they really grant. Lambda
 * needs the network-interface actions to attach a VPC function, and AWS documents this managed
 * policy as the way to grant them; no resource- or condition-scoped replacement is documented.
 */
export const VPC_MANAGED_POLICY_ACKNOWLEDGEMENTS: { id: string; reason: string }[] = [
  {
    id: 'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole]',
    reason:
      "Grants ec2:CreateNetworkInterface, DescribeNetworkInterfaces, DescribeSubnets, DeleteNetworkInterface, Assign/UnassignPrivateIpAddresses and logs:CreateLogGroup, CreateLogStream, PutLogEvents, all on *: Lambda needs the ENI actions to attach a VPC function and this managed policy is AWS's documented way. Accepted: code running in the function could create, delete or re-address any network interface of the account and region and write into any log group (e.g. forge lines in the API's log group, whose metric filters feed alarms); the function runs only this repository's code and is not reachable from the internet.",
  },
  {
    id: 'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]',
    reason:
      'Grants logs:CreateLogGroup, CreateLogStream, PutLogEvents on *, so the function could write into any log group; AWSLambdaVPCAccessExecutionRole, which a VPC function needs, grants the same on * anyway, so scoping this one would change nothing. Accepted for a function not reachable from the internet that runs only this repository\'s code.',
  },
];

/**
 * The cdk-nag findings every house function outside a VPC raises by design, each with its reason:
 * X-Ray's `*` (plus `wildcardReason` when the function has other `*` actions, which must then be
 * named there), and the Node.js 22 house runtime.
 */
export function acknowledgeHouseFunctionFindings(fn: HouseFunction, wildcardReason: string = XRAY_REASON): void {
  Validations.of(fn).acknowledge(
    { id: 'AwsSolutions-IAM5[Resource::*]', reason: wildcardReason },
    { id: 'AwsSolutions-L1', reason: 'Node.js 22 is the house runtime: the CLI, the tests and the bench run the same code on Node 22.' },
    { id: 'Serverless-LambdaLatestVersion', reason: 'Node.js 22 is the house runtime: the CLI, the tests and the bench run the same code on Node 22.' },
  );
}

/**
 * Failed asynchronous runs (after Lambda's own retries: 2 unless `retryAttempts` says otherwise) go
 * to `queue` through the on-failure destination, which also answers cdk-nag's dead-letter finding
 * (`what` names the queue there). So do events older than `maxEventAge` (Lambda's default: 6 hours),
 * throttled ones included.
 */
export function deadLetterAsyncFailures(
  fn: HouseFunction,
  queue: sqs.IQueue,
  what: string,
  options: { maxEventAge?: Duration; retryAttempts?: number } = {},
): void {
  const { maxEventAge, retryAttempts = 2 } = options;
  fn.function.configureAsyncInvoke({ retryAttempts, onFailure: new destinations.SqsDestination(queue), ...(maxEventAge && { maxEventAge }) });
  Validations.of(fn).acknowledge({
    id: 'Serverless-LambdaDLQ',
    reason: `Failed asynchronous runs go to ${what} through the on-failure destination; the legacy DeadLetterConfig would only duplicate it.`,
  });
}

/**
 * For a workflow task that invokes a house function: Lambda refused to start it (its reserved
 * concurrency is used up, e.g. by an alarm storm or two rollbacks and a bake at once). Nothing ran,
 * so any step, even one that acts, is tried again (up to 6 times, 2 s doubling, about 2 min),
 * instead of failing the workflow or skipping what the step does.
 */
export function retryWhenThrottled<T extends sfn.TaskStateBase>(task: T): T {
  task.addRetry({ errors: ['Lambda.TooManyRequestsException'], interval: Duration.seconds(2), maxAttempts: 6, backoffRate: 2 });
  return task;
}
