/**
 * Runs the real `atmr-dr` CLI (bin/atmr-dr.ts main) in a child process for the backout commands:
 * DynamoDB is the dynalite server of the test (AWS_ENDPOINT_URL_DYNAMODB), ECS, CloudWatch, SSM,
 * SNS, EventBridge and STS are mocked at the SDK boundary (commander 15 is ESM-only and cannot load
 * inside jest), as "atmr-api runs BAD and fails" (arrangeHappyAws). The rollback deployment never
 * becomes steady, so `rollback service --wait` follows it until it is interrupted. The migration
 * task of `rollback migration` (MIGRATION_TASK_ARN) runs and never stops, StopTask or not. The SNS
 * messages published are written to ROLLBACK_RESULT as JSON. ROLLBACK_EXPIRED_TOKEN set: ECS answers
 * every DescribeServices as it does once the caller's `aws sso login` has expired.
 */
import { DescribeServicesCommand, DescribeTasksCommand, RunTaskCommand } from '@aws-sdk/client-ecs';
import { PublishCommand } from '@aws-sdk/client-sns';
import { GetCallerIdentityCommand, STSClient } from '@aws-sdk/client-sts';
import { mockClient } from 'aws-sdk-client-mock';
import * as fs from 'node:fs';
import { exitWhenFailed, main } from '../../bin/atmr-dr';
import { arrangeHappyAws, BAD, GOOD, MIGRATION_TASK_ARN, mockBackoutAws, service } from '../lambdas/backout/fixtures';

async function run(): Promise<void> {
  const mocks = mockBackoutAws();
  arrangeHappyAws(mocks);
  mockClient(STSClient).on(GetCallerIdentityCommand).resolves({ Arn: 'arn:aws:sts::111111111111:assumed-role/atmr-oncall/alice' });
  mocks.ecs.on(DescribeServicesCommand).resolvesOnce(service(BAD)).resolvesOnce(service(BAD)).resolves(service(GOOD, { rolloutState: 'IN_PROGRESS', running: 0, others: 1 }));
  if (process.env.ROLLBACK_EXPIRED_TOKEN) {
    mocks.ecs
      .on(DescribeServicesCommand)
      .rejects(Object.assign(new Error('The security token included in the request is expired'), { name: 'ExpiredTokenException', $fault: 'client', $metadata: { httpStatusCode: 400 } }));
  }
  mocks.ecs.on(RunTaskCommand).resolves({ tasks: [{ taskArn: MIGRATION_TASK_ARN }] });
  mocks.ecs.on(DescribeTasksCommand).callsFake((input: { tasks?: string[] }) => ({
    tasks: input.tasks?.includes(MIGRATION_TASK_ARN) ? [{ taskArn: MIGRATION_TASK_ARN, lastStatus: 'RUNNING', containers: [{ name: 'api' }] }] : [],
  }));
  const code = await main(['node', 'atmr-dr', ...process.argv.slice(2)]);
  const published = mocks.sns.commandCalls(PublishCommand).map((call) => call.args[0].input);
  fs.writeFileSync(process.env.ROLLBACK_RESULT as string, JSON.stringify({ code, published }));
  // As bin/atmr-dr.ts: a failed run ends once its line is out (the poll's timer would hold it 10 s).
  exitWhenFailed(code);
}

void run();
