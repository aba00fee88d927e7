import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { SDK_RETRY } from './sdk-retry';

/**
 * The DynamoDB client of the ops-state table. DynamoDB's ResourceNotFoundException says only
 * "Requested resource not found": a wrong ATMR_OPS_TABLE read as a region or credentials problem.
 * The client adds the table the refused call named to that error (`awsTableName`), and
 * asOperatorError turns it into the table's own line (its name and the setting that fixes it).
 */
export function opsStateDynamoDB(): DynamoDBClient {
  const client = new DynamoDBClient(SDK_RETRY);
  client.middlewareStack.add(
    (next) => async (args) => {
      try {
        return await next(args);
      } catch (error) {
        const table = tableOf(args.input as CallInput);
        if (table !== undefined && typeof error === 'object' && error !== null && (error as { name?: unknown }).name === 'ResourceNotFoundException') {
          Object.assign(error, { awsTableName: table });
        }
        throw error;
      }
    },
    { step: 'initialize', name: 'atmrDrNameMissingTable' },
  );
  return client;
}

interface CallInput {
  readonly TableName?: unknown;
  readonly RequestItems?: Record<string, unknown>;
}

/** The table of a call: TableName (GetItem, Query, PutItem...), else the first of a batch's RequestItems. */
function tableOf(input: CallInput | undefined): string | undefined {
  if (typeof input?.TableName === 'string') return input.TableName;
  const batched = Object.keys(input?.RequestItems ?? {})[0];
  return batched;
}
