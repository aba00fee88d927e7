import { CreateTableCommand, DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';

/**
 * A real DynamoDB protocol server (dynalite) on 127.0.0.1 with an ops-state table (pk/sk strings),
 * for the conditional writes that locks and idempotency rely on.
 */
export interface LocalTable {
  readonly client: DynamoDBClient;
  readonly tableName: string;
  readonly endpoint: string;
  /** Another table of the same shape on the same server (a fresh one per test keeps state from leaking). */
  createTable(tableName: string): Promise<string>;
  close(): Promise<void>;
}

export interface LocalTableOptions {
  /**
   * The client's attempts per call (the SDK's default is 3). Tests of "DynamoDB unavailable" paths
   * use 2 so that a server that is down fails fast. @default - the SDK's default
   */
  readonly maxAttempts?: number;
}

export async function startLocalTable(tableName = 'ops-state', options: LocalTableOptions = {}): Promise<LocalTable> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const dynalite = require('dynalite') as (options: { createTableMs: number }) => Server;
  const server = dynalite({ createTableMs: 0 });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const client = new DynamoDBClient({ endpoint, region: 'eu-west-3', credentials: { accessKeyId: 'local', secretAccessKey: 'local' }, maxAttempts: options.maxAttempts });
  await createOpsTable(client, tableName);
  return {
    client,
    tableName,
    endpoint,
    createTable: async (name) => {
      await createOpsTable(client, name);
      return name;
    },
    close: async () => {
      client.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** The ops-state table's key schema (pk/sk strings, on demand). */
export async function createOpsTable(client: DynamoDBClient, tableName: string): Promise<void> {
  await client.send(
    new CreateTableCommand({
      TableName: tableName,
      AttributeDefinitions: [
        { AttributeName: 'pk', AttributeType: 'S' },
        { AttributeName: 'sk', AttributeType: 'S' },
      ],
      KeySchema: [
        { AttributeName: 'pk', KeyType: 'HASH' },
        { AttributeName: 'sk', KeyType: 'RANGE' },
      ],
      BillingMode: 'PAY_PER_REQUEST',
    }),
  );
}
