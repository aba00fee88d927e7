/**
 * Runs the real `atmr-dr` CLI (bin/atmr-dr.ts main) in a child process: DynamoDB is the dynalite
 * server of the test (AWS_ENDPOINT_URL_DYNAMODB), SFN and STS are mocked at the SDK boundary
 * (commander 15 is ESM-only and cannot load inside jest). DescribeExecution answers the status in
 * INCIDENT_WORKFLOW_STATUS; the SFN calls made are written to INCIDENT_RESULT as JSON.
 */
import { DescribeExecutionCommand, SendTaskSuccessCommand, SFNClient } from '@aws-sdk/client-sfn';
import { GetCallerIdentityCommand, STSClient } from '@aws-sdk/client-sts';
import { mockClient } from 'aws-sdk-client-mock';
import * as fs from 'node:fs';
import { main } from '../../bin/atmr-dr';

async function run(): Promise<void> {
  const sfn = mockClient(SFNClient);
  const sts = mockClient(STSClient);
  sts.on(GetCallerIdentityCommand).resolves({ Arn: 'arn:aws:sts::111111111111:assumed-role/atmr-oncall/alice' });
  sfn.on(SendTaskSuccessCommand).resolves({});
  sfn.on(DescribeExecutionCommand).resolves({ status: (process.env.INCIDENT_WORKFLOW_STATUS ?? 'RUNNING') as 'RUNNING' });
  const code = await main(['node', 'atmr-dr', ...process.argv.slice(2)]);
  const calls = sfn.calls().map((call) => ({ command: call.args[0].constructor.name, input: call.args[0].input }));
  fs.writeFileSync(process.env.INCIDENT_RESULT as string, JSON.stringify({ code, calls }));
  process.exitCode = code;
}

void run();
