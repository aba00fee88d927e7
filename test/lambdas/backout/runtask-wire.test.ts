import { ECSClient, ECSClientConfig } from '@aws-sdk/client-ecs';
import { RDSClient } from '@aws-sdk/client-rds';
import { SSMClient } from '@aws-sdk/client-ssm';
import { CredentialsProviderError } from '@smithy/core/config';
import { runMigrationTask } from '../../../lambdas/backout/migration';
import { EcsRequest, LocalEndpoint, startEcsEndpoint } from '../../support/aws-endpoints';
import { BAD, settings } from './fixtures';

/**
 * The downgrade's RunTask through the real SDK (serialization, retries) against a local ECS, not
 * aws-sdk-client-mock: the mock replaces `send`, so it sees neither the SDK's retries nor the
 * clientToken the SDK fills in, nor the errors the SDK builds from what the connection did.
 */
const TASK_ARN = 'arn:aws:ecs:eu-west-3:111111111111:task/atmr-prod/w1';
let ecs: (LocalEndpoint & { requests: EcsRequest[] }) | undefined;

afterEach(async () => {
  await ecs?.stop();
  ecs = undefined;
});

async function runAgainst(answer: Parameters<typeof startEcsEndpoint>[0], config: ECSClientConfig = {}) {
  ecs = await startEcsEndpoint(answer);
  const client = new ECSClient({ region: 'eu-west-3', endpoint: ecs.url, credentials: { accessKeyId: 'x', secretAccessKey: 'x' }, maxAttempts: 3, ...config });
  const deps = { rds: new RDSClient({ region: 'eu-west-3' }), ssm: new SSMClient({ region: 'eu-west-3' }), ecs: client, sleep: async () => undefined };
  return runMigrationTask(deps, settings(), BAD, 'aaa111');
}

const runTasks = () => (ecs?.requests ?? []).filter((r) => r.operation === 'RunTask');
const stopped = { status: 200, body: { tasks: [{ taskArn: TASK_ARN, lastStatus: 'STOPPED', containers: [{ name: 'api', exitCode: 0 }] }] } };

describe('the downgrade RunTask on the wire', () => {
  it("the SDK's retry after a lost answer carries the same clientToken (ECS starts at most one task for both)", async () => {
    // Arrange: the first RunTask's connection drops before its answer, the retry is answered
    const result = await runAgainst((request, index) =>
      request.operation === 'RunTask' ? (index === 0 ? 'reset' : { status: 200, body: { tasks: [{ taskArn: TASK_ARN }], failures: [] } }) : stopped,
    );

    // Assert
    expect(result).toMatchObject({ taskArn: TASK_ARN, exitCode: 0 });
    const tokens = runTasks().map((r) => r.body.clientToken);
    expect(tokens).toHaveLength(2);
    expect(tokens[0]).toEqual(expect.stringMatching(/^[\x21-\x7e]{1,64}$/));
    expect(tokens[1]).toBe(tokens[0]);
  });

  it('no answer to any attempt: the task may have been started (unanswered), nothing thrown', async () => {
    const result = await runAgainst(() => 'reset');

    expect(runTasks()).toHaveLength(3);
    expect(result).toMatchObject({ taskArn: null, exitCode: null, unanswered: { why: expect.stringMatching(/socket hang up|ECONNRESET/) } });
    expect(result.stoppedReason).toMatch(/^RunTask got no answer, a migration task may have been started: /);
  });

  it('a server fault (500) on every attempt: the task may have been started too', async () => {
    const result = await runAgainst(() => ({ status: 500, body: { __type: 'ServerException', message: 'Service unavailable' } }));

    expect(result).toMatchObject({ taskArn: null, unanswered: { why: expect.stringMatching(/Service unavailable/) } });
  });

  it('a refusal on the only attempt (ClientException): no task, thrown as before (the CLI releases the lock)', async () => {
    const run = runAgainst(() => ({ status: 400, body: { __type: 'ClientException', message: 'Unable to describe task definition.' } }));

    await expect(run).rejects.toMatchObject({ name: 'ClientException', $fault: 'client' });
    expect(runTasks()).toHaveLength(1);
  });

  it('credentials that cannot be loaded (an expired SSO login): no request reaches ECS, so no task exists: thrown, naming the credentials and the fix', async () => {
    // Arrange: the provider fails as the SDK's SSO provider does once the SSO session has expired
    const expired = async () => {
      throw new CredentialsProviderError("Token is expired. To refresh this SSO session run 'aws sso login' with the corresponding profile.", { tryNextLink: false });
    };

    // Act
    const run = runAgainst(() => ({ status: 200, body: { tasks: [{ taskArn: TASK_ARN }], failures: [] } }), { credentials: expired });

    // Assert
    await expect(run).rejects.toMatchObject({
      name: 'OperatorError',
      message: expect.stringMatching(/^backout: RunTask was not sent \(CredentialsProviderError: Token is expired\..*\): .*log in \(aws sso login/),
    });
    expect(ecs?.requests).toEqual([]);
  });

  it('a region the SDK refuses (eu_west_3): no request reaches ECS either: thrown, naming the region and the fix', async () => {
    const run = runAgainst(() => ({ status: 200, body: { tasks: [{ taskArn: TASK_ARN }], failures: [] } }), { region: 'eu_west_3' });

    await expect(run).rejects.toMatchObject({ name: 'OperatorError', message: expect.stringMatching(/^backout: RunTask was not sent \(Error: Region not accepted: .*\): AWS region "eu_west_3" is not a region name; export AWS_REGION/) });
    expect(ecs?.requests).toEqual([]);
  });
});
