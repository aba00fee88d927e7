/**
 * Runs the real `atmr-dr` CLI (bin/atmr-dr.ts main) in a child process with ECS, EventBridge, RDS
 * and CloudWatch mocked at the SDK boundary (commander 15 is ESM-only and cannot load inside jest).
 * The scenario comes from DET_SCENARIO (JSON); the SDK calls made are written to DET_RESULT.
 */
import { CloudWatchClient, GetMetricStatisticsCommand } from '@aws-sdk/client-cloudwatch';
import { DescribeServicesCommand, ECSClient, UpdateServiceCommand, type Service } from '@aws-sdk/client-ecs';
import { EventBridgeClient, PutEventsCommand } from '@aws-sdk/client-eventbridge';
import { DescribeDBInstancesCommand, RDSClient } from '@aws-sdk/client-rds';
import { CloudFormationClient, DescribeStacksCommand } from '@aws-sdk/client-cloudformation';
import { mockClient } from 'aws-sdk-client-mock';
import * as fs from 'node:fs';
import { main } from '../../../bin/atmr-dr';

interface Scenario {
  /** DescribeServices answers, in order (the last one repeats). */
  readonly services?: Service[];
  readonly allocatedGiB?: number;
  readonly freeBytes?: number;
}

async function run(): Promise<void> {
  const scenario = JSON.parse(process.env.DET_SCENARIO ?? '{}') as Scenario;
  const ecs = mockClient(ECSClient);
  const events = mockClient(EventBridgeClient);
  const rds = mockClient(RDSClient);
  const cloudwatch = mockClient(CloudWatchClient);
  mockClient(CloudFormationClient).on(DescribeStacksCommand).rejects(new Error('Stack does not exist'));
  const answers = scenario.services ?? [];
  let index = 0;
  ecs.on(DescribeServicesCommand).callsFake(() => ({ services: [answers[Math.min(index++, answers.length - 1)]], failures: [] }));
  ecs.on(UpdateServiceCommand).callsFake((input: { forceNewDeployment?: boolean }) => ({
    service: { deployments: [{ id: input.forceNewDeployment ? 'ecs-svc/new' : 'ecs-svc/current', status: 'PRIMARY' }] },
  }));
  events.on(PutEventsCommand).resolves({ FailedEntryCount: 0, Entries: [{ EventId: 'e-1' }] });
  rds.on(DescribeDBInstancesCommand).resolves({ DBInstances: [{ AllocatedStorage: scenario.allocatedGiB ?? 100 }] });
  cloudwatch.on(GetMetricStatisticsCommand).resolves({
    Datapoints: scenario.freeBytes === undefined ? [] : [{ Timestamp: new Date(), Minimum: scenario.freeBytes }],
  });
  const code = await main(['node', 'atmr-dr', ...process.argv.slice(2)]);
  const calls = [ecs, events, rds, cloudwatch].flatMap((mock) => mock.calls().map((call) => ({ command: call.args[0].constructor.name, input: call.args[0].input })));
  fs.writeFileSync(process.env.DET_RESULT as string, JSON.stringify({ code, calls }));
  process.exitCode = code;
}

void run();
