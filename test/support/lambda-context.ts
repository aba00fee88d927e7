import type { Context } from 'aws-lambda';

/**
 * A Lambda invocation context for a handler run in a test: named after the function, with the
 * time left that the handler reads (getRemainingTimeInMillis), as Lambda would give it.
 */
export function lambdaContext(functionName: string, remainingMs = 30_000, memoryLimitInMB = '256'): Context {
  return {
    functionName,
    functionVersion: '$LATEST',
    invokedFunctionArn: `arn:aws:lambda:eu-west-3:111111111111:function:${functionName}`,
    memoryLimitInMB,
    awsRequestId: 'req-1',
    logGroupName: `/aws/lambda/${functionName}`,
    logStreamName: 's',
    callbackWaitsForEmptyEventLoop: true,
    getRemainingTimeInMillis: () => remainingMs,
    done: () => undefined,
    fail: () => undefined,
    succeed: () => undefined,
  };
}
