import { CfnResource, CustomResource, RemovalPolicy, Stack, Validations } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as cr from 'aws-cdk-lib/custom-resources';
import { Construct } from 'constructs';
import { INITIAL_VALUE, KillswitchValue } from '../../lambdas/killswitch/value';

export interface KillswitchParameterProps {
  /** SSM parameter name (a path starting with `/`), from `killswitch.parameterName`. */
  readonly parameterName: string;
  /** Value the parameter is created with, once. @default mode normal, actor "atmr-dr deploy" */
  readonly initialValue?: KillswitchValue;
}

/** The SSM call that creates the parameter without ever overwriting an existing value. */
export const CREATE_IF_ABSENT_ERROR_CODES = 'ParameterAlreadyExists';

/**
 * The killswitch SSM String parameter, created once with a default value and never written again
 * by a deploy: both the create and the update calls are `PutParameter` with `Overwrite: false`,
 * whose `ParameterAlreadyExists` error is ignored (so a changed template, or a renamed parameter,
 * creates what is missing and keeps what operators set). Nothing deletes it.
 *
 * A String parameter has no resource policy: read access comes only from the identity policies
 * the Killswitch construct attaches to the named roles.
 */
export class KillswitchParameter extends Construct {
  readonly parameterName: string;
  /** The CloudFormation resource, to pin its logical ID in the stateful stack. */
  readonly resource: CfnResource;

  constructor(scope: Construct, id: string, props: KillswitchParameterProps) {
    super(scope, id);
    this.parameterName = props.parameterName;
    const createIfAbsent: cr.AwsSdkCall = {
      service: 'SSM',
      action: 'PutParameter',
      parameters: {
        Name: props.parameterName,
        Type: 'String',
        Value: JSON.stringify(props.initialValue ?? INITIAL_VALUE),
        Overwrite: false,
        Description: 'atmr-dr killswitch (JSON: mode, reason, actor, updatedAt, expiresAt); written by the CLI, Slack and the expiry schedule only',
      },
      physicalResourceId: cr.PhysicalResourceId.of(props.parameterName),
      ignoreErrorCodesMatching: CREATE_IF_ABSENT_ERROR_CODES,
    };
    const custom = new cr.AwsCustomResource(this, 'CreateIfAbsent', {
      resourceType: 'Custom::KillswitchParameter',
      onCreate: createIfAbsent,
      onUpdate: createIfAbsent,
      // no onDelete: the value outlives the stack, like the other stateful resources.
      removalPolicy: RemovalPolicy.RETAIN,
      installLatestAwsSdk: false,
      memorySize: 256,
      logGroup: new logs.LogGroup(this, 'ProviderLogs', { retention: logs.RetentionDays.THREE_MONTHS, removalPolicy: RemovalPolicy.DESTROY }),
      policy: cr.AwsCustomResourcePolicy.fromStatements([
        new iam.PolicyStatement({ actions: ['ssm:PutParameter'], resources: [KillswitchParameter.arn(this, props.parameterName)] }),
      ]),
    });
    this.resource = (custom.node.findChild('Resource') as CustomResource).node.defaultChild as CfnResource;

    // The provider is CDK's singleton function for AwsCustomResource, shared by the stack.
    const provider = Stack.of(this).node.tryFindChild(cr.AwsCustomResource.PROVIDER_FUNCTION_UUID.replace(/-/g, '').replace(/^/, 'AWS'));
    if (provider) {
      Validations.of(provider).acknowledge(
        {
          id: 'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]',
          reason:
            "CDK's own AwsCustomResource provider (not this repository's code) gets AWSLambdaBasicExecutionRole: logs:CreateLogGroup, CreateLogStream, PutLogEvents on *, so it could write into any log group. Accepted: it runs only CDK's provider code, only when CloudFormation invokes it during a deploy of this stack, and nothing else can invoke it.",
        },
        { id: 'Serverless-LambdaTracing', reason: 'Deploy-time provider of one idempotent PutParameter call: its log group is enough.' },
        {
          id: 'Serverless-LambdaDLQ',
          reason: 'Invoked only by CloudFormation for this custom resource: a failure fails (and rolls back) the stack operation, which is the record.',
        },
      );
    }
  }

  /** The parameter's ARN, built in `scope`'s own stack (no cross-stack export needed). */
  static arn(scope: Construct, parameterName: string): string {
    return Stack.of(scope).formatArn({ service: 'ssm', resource: 'parameter', resourceName: parameterName.replace(/^\//, '') });
  }
}
