import { randomUUID } from 'node:crypto';
import { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient, GetCommand, PutCommand, PutCommandInput, UpdateCommand, UpdateCommandInput } from '@aws-sdk/lib-dynamodb';

/**
 * The condition of a DynamoDB write did not hold. Matched by name too: an error from another copy
 * of the SDK (a bundled client, a test double) is not an instance of this copy's class.
 */
export function isConditionFailure(error: unknown): boolean {
  return error instanceof ConditionalCheckFailedException || (error as { name?: string }).name === 'ConditionalCheckFailedException';
}

/**
 * Runs a conditional write: true when it was written, false when its condition did not hold (a lock
 * held, a claim already made, an entry already there). Any other error propagates. For a write whose
 * retry would fail on its own earlier attempt and be misreported, use `conditionalWriteOnce`.
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

/** The attribute in which a guarded write stores its own id (`conditionalWriteOnce`); readers leave it out. */
export const WRITE_ID = 'writeId';

/**
 * `written`: the condition held (`item`: the attributes the write returned, per its ReturnValues).
 * `own`: the condition failed on this very write, applied by an earlier attempt (`item`: as read back).
 * `refused`: the condition failed on someone else's state (`item`: as read back, absent if none).
 */
export type WriteOnceResult = { readonly outcome: 'written' | 'own' | 'refused'; readonly item?: Record<string, unknown> };

/**
 * A guarded Put or Update that knows its own retried write. The SDK sends a write again when the
 * answer to its first attempt is lost or late, though that attempt may have been applied: the retry
 * then fails its condition on this call's own write, and taking that for a refusal misreports (a lock
 * "held" by its own holder, a claim "already made", a status "changed"). So the write stores a fresh
 * random id (`writeIdAttribute`), and a failed condition reads the item back, consistently: carrying
 * this id, it is this write, applied. Comparing the fields written could not tell two calls writing
 * the same values at the same millisecond apart; the id does. Items have the ops-state key (pk, sk).
 *
 * Guarded deletes are not run through this: a deleted item keeps no id. A retried delete whose
 * condition fails on an absent item may be its own first attempt, or another delete, or the TTL. That
 * is the same outcome for the caller only when the condition named what the caller alone holds (the
 * lock's owner, the recovery id: the thing it asked to remove is gone either way), and the deletes
 * under lambdas/ (rollback and recovery lock releases) are of that kind and ignore the refusal.
 */
export async function conditionalWriteOnce(
  ddb: DynamoDBDocumentClient,
  write: PutCommandInput | UpdateCommandInput,
  writeIdAttribute: string = WRITE_ID,
): Promise<WriteOnceResult> {
  const writeId = randomUUID();
  const put = 'Item' in write ? (write as PutCommandInput) : undefined;
  const key = put ? { pk: put.Item?.pk, sk: put.Item?.sk } : (write as UpdateCommandInput).Key;
  try {
    if (put) {
      const { Attributes } = await ddb.send(new PutCommand({ ...put, Item: { ...put.Item, [writeIdAttribute]: writeId } }));
      return { outcome: 'written', item: Attributes };
    }
    const update = write as UpdateCommandInput;
    // Into the SET clause if there is one (each clause may appear once), else a clause of its own.
    const set = '#ownWriteId = :ownWriteId';
    const clause = /(^|\s)SET\s/i;
    const expression = clause.test(update.UpdateExpression!) ? update.UpdateExpression!.replace(clause, `$1SET ${set}, `) : `${update.UpdateExpression} SET ${set}`;
    const { Attributes } = await ddb.send(
      new UpdateCommand({
        ...update,
        UpdateExpression: expression,
        ExpressionAttributeNames: { ...update.ExpressionAttributeNames, '#ownWriteId': writeIdAttribute },
        ExpressionAttributeValues: { ...update.ExpressionAttributeValues, ':ownWriteId': writeId },
      }),
    );
    return { outcome: 'written', item: Attributes };
  } catch (error) {
    if (!isConditionFailure(error)) throw error;
    const { Item } = await ddb.send(new GetCommand({ TableName: write.TableName, Key: key, ConsistentRead: true }));
    return { outcome: Item?.[writeIdAttribute] === writeId ? 'own' : 'refused', item: Item };
  }
}
