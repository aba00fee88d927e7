import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';

/**
 * Loses the answer of the first DynamoDB request that `matches`, after the table has applied it, as
 * a reset connection or a timeout would: the SDK's own retry strategy then sends the same request
 * again, and a conditional write meets its own earlier write. Returns the names of the commands
 * whose answer was lost (to check that the retry really happened).
 *
 * Added at the deserialize step, inside the SDK's retry middleware (finalizeRequest), so the retry
 * is the real one, with the client's attempts and backoff. Give it a client of its own: the
 * middleware stays on the client.
 */
export function loseFirstAnswer(client: DynamoDBClient, matches: (commandName: string, input: Record<string, unknown>) => boolean): string[] {
  const lost: string[] = [];
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const result = await next(args);
      const commandName = String(context.commandName);
      // Inside the deserializer, a refused request (a failed condition: HTTP 400) is a response too;
      // only a request the table applied has an answer worth losing.
      const status = (result.response as { statusCode?: number } | undefined)?.statusCode;
      const applied = status === undefined || status < 300;
      if (applied && lost.length === 0 && matches(commandName, args.input as Record<string, unknown>)) {
        lost.push(commandName);
        throw Object.assign(new Error('socket hang up'), { name: 'Error', code: 'ECONNRESET' });
      }
      return result;
    },
    { step: 'deserialize', name: 'loseFirstAnswer' },
  );
  return lost;
}

export interface LossyDynamo {
  readonly client: DynamoDBClient;
  /** A document client over `client` (undefined attributes left out, as the code's own). */
  readonly doc: DynamoDBDocumentClient;
  /** The commands whose answer was lost (at most one). */
  readonly lost: string[];
  destroy(): void;
}

/** A new client of the local DynamoDB at `endpoint` that loses the first answer `matches` picks. */
export function lossyDynamo(endpoint: string, matches: (commandName: string, input: Record<string, unknown>) => boolean): LossyDynamo {
  const client = new DynamoDBClient({ endpoint, region: 'eu-west-3', credentials: { accessKeyId: 'local', secretAccessKey: 'local' } });
  const lost = loseFirstAnswer(client, matches);
  const doc = DynamoDBDocumentClient.from(client, { marshallOptions: { removeUndefinedValues: true } });
  return { client, doc, lost, destroy: () => client.destroy() };
}
