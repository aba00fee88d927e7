import { DynamoDBClient, DynamoDBClientConfig } from '@aws-sdk/client-dynamodb';
import { nameFailedCalls } from './aws-errors';
import { SDK_RETRY } from './sdk-retry';

/**
 * The DynamoDB client of the ops-state table. DynamoDB's ResourceNotFoundException says only
 * "Requested resource not found": a wrong ATMR_OPS_TABLE read as a region or credentials problem.
 * The client adds the table the refused call named to that error (`awsTableName`), and
 * asOperatorError turns it into the table's own line (its name and the setting that fixes it).
 * `settings`: the client's retry and timeouts (a request path's are bounded: SLACK_COMMAND_SDK).
 */
export function opsStateDynamoDB(settings: DynamoDBClientConfig = SDK_RETRY): DynamoDBClient {
  const client = new DynamoDBClient(settings);
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
  // A refusal (AccessDeniedException) is named with its call and table the same way.
  return nameFailedCalls(client, 'DynamoDB', (input) => {
    const table = tableOf(input);
    return table === undefined ? undefined : `table ${table}`;
  }, 'that ATMR_OPS_TABLE or --table names the ops-state table');
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
