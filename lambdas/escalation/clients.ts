import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { SFNClient } from '@aws-sdk/client-sfn';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { SDK_RETRY } from '../shared/aws';
import { namedClient } from '../shared/named-clients';
import { opsStateDynamoDB } from '../shared/ops-state-client';
import { IncidentStore } from './store';

/** The incident store over the real clients (endpoints from AWS_ENDPOINT_URL_DYNAMODB / _SFN when set). */
export function incidentStore(tableName: string, clients: { ddb?: DynamoDBClient; sfn?: SFNClient } = {}, environmentName?: string): IncidentStore {
  const ddb = DynamoDBDocumentClient.from(clients.ddb ?? opsStateDynamoDB(), { marshallOptions: { removeUndefinedValues: true } });
  return { ddb, tableName, environmentName, sfn: clients.sfn ?? namedClient(new SFNClient(SDK_RETRY), 'Step Functions') };
}
