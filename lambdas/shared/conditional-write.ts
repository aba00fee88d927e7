import { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';

/**
 * The condition of a DynamoDB write did not hold. Matched by name too: an error from another copy
 * of the SDK (a bundled client, a test double) is not an instance of this copy's class.
 */
export function isConditionFailure(error: unknown): boolean {
  return error instanceof ConditionalCheckFailedException || (error as { name?: string }).name === 'ConditionalCheckFailedException';
}

/**
 * Runs a conditional write: true when it was written, false when its condition did not hold (a lock
 * held, a claim already made, an entry already there). Any other error propagates.
 */
export async function conditionalWrite(write: () => Promise<unknown>): Promise<boolean> {
  try {
    await write();
    return true;
  } catch (error) {
    if (isConditionFailure(error)) return false;
    throw error;
  }
}
