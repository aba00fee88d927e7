import { CloudWatchClient } from '@aws-sdk/client-cloudwatch';
import { ECSClient } from '@aws-sdk/client-ecs';
import { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import { RDSClient } from '@aws-sdk/client-rds';
import { SNSClient } from '@aws-sdk/client-sns';
import { SSMClient } from '@aws-sdk/client-ssm';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { SDK_RETRY } from '../shared/aws';
import { opsStateDynamoDB } from '../shared/ops-state-client';

/** The SDK clients of the backout, with the house retry settings (throttling is retried by the SDK). */
export function backoutClients() {
  return {
    ecs: new ECSClient(SDK_RETRY),
    cloudwatch: new CloudWatchClient(SDK_RETRY),
    doc: DynamoDBDocumentClient.from(opsStateDynamoDB(), { marshallOptions: { removeUndefinedValues: true } }),
    ssm: new SSMClient(SDK_RETRY),
    sns: new SNSClient(SDK_RETRY),
    events: new EventBridgeClient(SDK_RETRY),
    rds: new RDSClient(SDK_RETRY),
  };
}
