import { CloudWatchClient } from '@aws-sdk/client-cloudwatch';
import { ECSClient } from '@aws-sdk/client-ecs';
import { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import { RDSClient } from '@aws-sdk/client-rds';
import { SNSClient } from '@aws-sdk/client-sns';
import { SSMClient } from '@aws-sdk/client-ssm';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { SDK_RETRY } from '../shared/aws';
import { namedClient } from '../shared/named-clients';
import { opsStateDynamoDB } from '../shared/ops-state-client';

/** The SDK clients of the backout, with the house retry settings (throttling is retried by the SDK), each refusal named (namedClient). */
export function backoutClients() {
  return {
    ecs: namedClient(new ECSClient(SDK_RETRY), 'ECS'),
    cloudwatch: namedClient(new CloudWatchClient(SDK_RETRY), 'CloudWatch'),
    doc: DynamoDBDocumentClient.from(opsStateDynamoDB(), { marshallOptions: { removeUndefinedValues: true } }),
    ssm: namedClient(new SSMClient(SDK_RETRY), 'SSM'),
    sns: namedClient(new SNSClient(SDK_RETRY), 'SNS'),
    events: namedClient(new EventBridgeClient(SDK_RETRY), 'EventBridge'),
    rds: namedClient(new RDSClient(SDK_RETRY), 'RDS'),
  };
}
