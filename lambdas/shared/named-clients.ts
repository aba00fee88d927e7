import { type AwsService, nameFailedCalls } from './aws-errors';

/**
 * What a call of each service is about, read from its input, for the one line of a refusal
 * (asOperatorError): AWS's AccessDenied often names neither the call nor the resource, and the
 * on-call must know which grant is missing on what. Undefined where the input names none (a
 * filtered describe, GetCallerIdentity).
 */
type ResourceOf = (input: Record<string, unknown>) => string | undefined;

/** The first of a list (ECS's services, tasks; CloudWatch's AlarmNames), or the value itself. */
const first = (value: unknown): unknown => (Array.isArray(value) ? value[0] : value);
const text = (value: unknown): string | undefined => (typeof value === 'string' && value !== '' ? value : undefined);

/** A service, a task, a task definition or a cluster. */
function ecsResource(input: Record<string, unknown>): string | undefined {
  const cluster = text(input.cluster);
  const inCluster = cluster ? ` in cluster ${cluster}` : '';
  const service = text(first(input.service ?? input.services));
  if (service) return `service ${service}${inCluster}`;
  const task = text(first(input.tasks));
  if (task) return `task ${task}${inCluster}`;
  const taskDefinition = text(input.taskDefinition ?? input.family);
  if (taskDefinition) return `task definition ${taskDefinition}`;
  return cluster ? `cluster ${cluster}` : undefined;
}

/** The instance a call creates or acts on (a point-in-time restore names its new one), a snapshot, or a tagged ARN. */
function rdsResource(input: Record<string, unknown>): string | undefined {
  const snapshot = text(input.DBSnapshotIdentifier);
  if (snapshot) return `snapshot ${snapshot}`;
  const target = text(input.TargetDBInstanceIdentifier);
  const source = text(input.SourceDBInstanceIdentifier);
  if (target) return `instance ${target}${source ? ` (from ${source})` : ''}`;
  const instance = text(input.DBInstanceIdentifier) ?? source;
  if (instance) return `instance ${instance}`;
  const arn = text(input.ResourceName);
  return arn ? `resource ${arn}` : undefined;
}

const RESOURCE_OF: Readonly<Partial<Record<AwsService, ResourceOf>>> = {
  ECS: ecsResource,
  RDS: rdsResource,
  SSM: (input) => {
    const name = text(input.Name) ?? text(first(input.Names));
    return name && `parameter ${name}`;
  },
  'Step Functions': (input) => {
    const execution = text(input.executionArn);
    if (execution) return `execution ${execution}`;
    const stateMachine = text(input.stateMachineArn);
    return stateMachine && `state machine ${stateMachine}`;
  },
  SNS: (input) => {
    const topic = text(input.TopicArn);
    return topic && `topic ${topic}`;
  },
  EventBridge: (input) => {
    const rule = text(input.Name);
    if (rule) return `rule ${rule}`;
    // PutEvents: the bus of its first entry (none named: the account's default bus).
    const entries = Array.isArray(input.Entries) ? (input.Entries as { EventBusName?: unknown }[]) : undefined;
    return entries ? `event bus ${text(entries[0]?.EventBusName) ?? 'default'}` : undefined;
  },
  CloudWatch: (input) => {
    const alarm = text(first(input.AlarmNames)) ?? text(input.AlarmName);
    if (alarm) return `alarm ${alarm}`;
    const namespace = text(input.Namespace);
    return namespace && `metric namespace ${namespace}`;
  },
  SecretsManager: (input) => {
    const secret = text(input.SecretId);
    return secret && `secret ${secret}`;
  },
};

/**
 * The client, its refused calls named in the CLI's one line (service, call, resource, IAM action):
 * every client the operator CLI builds goes through this (the ops-state table's has its own,
 * opsStateDynamoDB). `check` names the command's settings that name the resource.
 */
export function namedClient<C extends { readonly middlewareStack: unknown }>(client: C, service: AwsService, check?: string): C {
  const resourceOf = RESOURCE_OF[service] ?? (() => undefined);
  return nameFailedCalls(client, service, resourceOf, check);
}
