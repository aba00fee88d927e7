import { CloudWatchClient } from '@aws-sdk/client-cloudwatch';
import { ECSClient } from '@aws-sdk/client-ecs';
import { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import { RDSClient } from '@aws-sdk/client-rds';
import { SNSClient } from '@aws-sdk/client-sns';
import { SSMClient } from '@aws-sdk/client-ssm';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { nameFailedCalls } from '../shared/aws-errors';
import { SDK_RETRY } from '../shared/aws';
import { opsStateDynamoDB } from '../shared/ops-state-client';

/** The SDK clients of the backout, with the house retry settings (throttling is retried by the SDK). */
export function backoutClients() {
  return {
    ecs: nameFailedCalls(new ECSClient(SDK_RETRY), 'ECS', ecsResource),
    cloudwatch: new CloudWatchClient(SDK_RETRY),
    doc: DynamoDBDocumentClient.from(opsStateDynamoDB(), { marshallOptions: { removeUndefinedValues: true } }),
    ssm: new SSMClient(SDK_RETRY),
    sns: new SNSClient(SDK_RETRY),
    events: new EventBridgeClient(SDK_RETRY),
    rds: new RDSClient(SDK_RETRY),
  };
}

/** What an ECS call of the backout is about, for a refusal's line: a service, a task, a task definition or a cluster. */
function ecsResource(input: { readonly cluster?: unknown; readonly service?: unknown; readonly services?: unknown; readonly tasks?: unknown; readonly taskDefinition?: unknown; readonly family?: unknown }): string | undefined {
  const first = (value: unknown) => (Array.isArray(value) ? value[0] : value) as unknown;
  const inCluster = typeof input.cluster === 'string' ? ` in cluster ${input.cluster}` : '';
  const service = first(input.service ?? input.services);
  if (typeof service === 'string') return `service ${service}${inCluster}`;
  const task = first(input.tasks);
  if (typeof task === 'string') return `task ${task}${inCluster}`;
  const taskDefinition = input.taskDefinition ?? input.family;
  if (typeof taskDefinition === 'string') return `task definition ${taskDefinition}`;
  return inCluster ? `cluster ${input.cluster as string}` : undefined;
}
