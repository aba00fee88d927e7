import { Validations } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';
import { grantSecretValueRead } from './database-statements';
import { HouseFunction, HouseFunctionProps } from './house-function';

export interface SignedEndpointProps extends HouseFunctionProps {
  /** The key the function checks every request's HMAC signature with (read access is granted). */
  readonly signingSecret: secretsmanager.ISecret;
  /** Who calls the URL and sees its failures, e.g. "Slack" or "a person": the reason it has no dead-letter queue. */
  readonly caller: string;
}

/** A house function behind a public Function URL, and the URL. */
export interface SignedEndpoint {
  readonly handler: HouseFunction;
  readonly url: lambda.FunctionUrl;
}

/**
 * A public HTTPS endpoint for callers without AWS credentials (Slack's slash commands, people
 * following a link): a house function with a Function URL whose auth is NONE, because such callers
 * cannot sign with SigV4. The function must authenticate every request itself with an HMAC
 * signature over a key it reads from `signingSecret`, before it reads or writes anything else.
 * Created in `scope` under `id`, as a plain HouseFunction would be (same logical IDs).
 */
export function signedEndpoint(scope: Construct, id: string, props: SignedEndpointProps): SignedEndpoint {
  const { signingSecret, caller, ...functionProps } = props;
  const handler = new HouseFunction(scope, id, functionProps);
  const url = handler.function.addFunctionUrl({ authType: lambda.FunctionUrlAuthType.NONE });
  grantSecretValueRead(handler.function.role as iam.IRole, signingSecret);
  Validations.of(handler).acknowledge({
    id: 'Serverless-LambdaDLQ',
    reason: `Invoked synchronously through its Function URL by ${caller}, who sees the failure: no async event to dead-letter.`,
  });
  return { handler, url };
}
