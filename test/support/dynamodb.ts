import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { startLocalTable } from './dynalite';

/** A local DynamoDB (dynalite) on 127.0.0.1 with the ops-state table, through a document client. */
export interface LocalDynamo {
  readonly endpoint: string;
  readonly tableName: string;
  readonly ddb: DynamoDBDocumentClient;
  stop(): Promise<void>;
}

/** `startLocalTable` for code that takes a document client (undefined attributes are left out). */
export async function startLocalDynamo(tableName = 'ops-state'): Promise<LocalDynamo> {
  const table = await startLocalTable(tableName);
  const ddb = DynamoDBDocumentClient.from(table.client, { marshallOptions: { removeUndefinedValues: true } });
  return { endpoint: table.endpoint, tableName, ddb, stop: () => table.close() };
}

/**
 * A document client on the same local table whose first write matching `lose` is stored, then its
 * answer is lost as a reset connection loses it. The SDK then sends the same request again (its own
 * retry, as in AWS when a write that succeeded times out), and that retry meets its own earlier write.
 * `lost()` counts the answers lost (0 or 1), so a test can check that the retry did happen.
 */
export function loseFirstAnswer(
  local: Pick<LocalDynamo, 'endpoint'>,
  lose: (commandName: string, input: Record<string, unknown>) => boolean,
): { client: DynamoDBClient; ddb: DynamoDBDocumentClient; lost: () => number; destroy(): void } {
  const client = new DynamoDBClient({ endpoint: local.endpoint, region: 'eu-west-3', credentials: { accessKeyId: 'local', secretAccessKey: 'local' } });
  let lost = 0;
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const result = await next(args);
      // Inside the deserializer a refused request (a failed condition: HTTP 400) is an answer too;
      // only a request the table applied has an answer worth losing.
      const status = (result.response as { statusCode?: number } | undefined)?.statusCode;
      const applied = status === undefined || status < 300;
      if (applied && lost === 0 && lose(context.commandName ?? '', args.input as Record<string, unknown>)) {
        lost += 1;
        throw Object.assign(new Error('socket hang up'), { name: 'Error', code: 'ECONNRESET' });
      }
      return result;
    },
    { step: 'deserialize', name: 'loseFirstAnswer' },
  );
  const ddb = DynamoDBDocumentClient.from(client, { marshallOptions: { removeUndefinedValues: true } });
  return { client, ddb, lost: () => lost, destroy: () => client.destroy() };
}
