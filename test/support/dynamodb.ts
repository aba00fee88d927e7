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
