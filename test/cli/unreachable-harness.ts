/**
 * The SNS and Step Functions clients as the CLI builds them (SDK_RETRY, operator settings), outside
 * jest: jest runs a test in its own realm, where the SDK replaces a socket error by a wrapper that
 * loses its fields. Each client makes one call to AWS_ENDPOINT_URL (unreachable) and the line
 * `atmr-dr` would print for its failure is written to stdout, one JSON array.
 */
import { DescribeExecutionCommand, SFNClient } from '@aws-sdk/client-sfn';
import { PublishCommand, SNSClient } from '@aws-sdk/client-sns';
import { asOperatorError } from '../../lambdas/shared/aws-errors';
import { SDK_RETRY, useOperatorSdkSettings } from '../../lambdas/shared/sdk-retry';

async function lineOf(call: () => Promise<unknown>): Promise<{ message: string; exitCode: number }> {
  try {
    await call();
    return { message: 'the call succeeded', exitCode: 0 };
  } catch (error) {
    const { message, exitCode } = asOperatorError(error);
    return { message, exitCode };
  }
}

async function run(): Promise<void> {
  useOperatorSdkSettings();
  const settings = { ...SDK_RETRY, maxAttempts: 1 };
  const lines = [
    await lineOf(() => new SNSClient(settings).send(new PublishCommand({ TopicArn: 'arn:aws:sns:eu-west-3:111111111111:incidents', Message: 'm' }))),
    await lineOf(() => new SFNClient(settings).send(new DescribeExecutionCommand({ executionArn: 'arn:aws:states:eu-west-3:111111111111:execution:m:e' }))),
  ];
  process.stdout.write(JSON.stringify(lines));
}

void run();
