import * as net from 'node:net';
import type { AddressInfo } from 'node:net';
import { atmrDr, runTsx } from '../lambdas/restore/fixtures';

const line = (service: string, variable: string, cause: string) => `${service} is unreachable (${cause}); check AWS_REGION, ${variable} or AWS_ENDPOINT_URL if set, and the network`;

describe('an AWS endpoint that cannot be reached: every service the CLI calls is named with its variable, as S3, SSM and CloudFormation are', () => {
  let refusing: string;
  let env: Record<string, string>;

  beforeAll(async () => {
    // A port that was just free: nothing listens there, the connection is refused.
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    await new Promise<void>((resolve) => server.close(() => resolve()));
    refusing = `127.0.0.1:${port}`;
    env = {
      AWS_REGION: 'eu-west-3',
      AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE',
      AWS_SECRET_ACCESS_KEY: 'secret',
      AWS_EC2_METADATA_DISABLED: 'true',
      AWS_ENDPOINT_URL: `http://${refusing}`,
      ATMR_OPS_TABLE: 'ops-state',
      ATMR_ECS_CLUSTER: 'atmr',
      ATMR_INCIDENTS_TOPIC: 'arn:aws:sns:eu-west-3:111111111111:incidents',
      ATMR_RECOVERY_STATE_MACHINE: 'arn:aws:states:eu-west-3:111111111111:stateMachine:recovery',
    };
  });

  it.each([
    ['scale celery 3 --yes', ['scale', 'celery', '3', '--yes'], 'ECS'],
    ['rollback status', ['rollback', 'status'], 'ECS'],
    ['recover --dry-run', ['recover', '--to-time', '5 minutes ago', '--reason', 'test', '--dry-run'], 'RDS'],
    ['recover status', ['recover', 'status'], 'DynamoDB'],
  ])('%s: one line naming the service and AWS_ENDPOINT_URL_<service>, exit 1', async (_name, args, service) => {
    const run = await atmrDr(args, env);

    expect([run.status, run.stderr]).toEqual([1, `atmr-dr: ${line(service, `AWS_ENDPOINT_URL_${service.toUpperCase()}`, `connect ECONNREFUSED ${refusing}`)}\n`]);
  });

  it('RDS at a name that does not resolve (AWS_ENDPOINT_URL_RDS=http://nonexistent.invalid)', async () => {
    const run = await atmrDr(['recover', '--to-time', '5 minutes ago', '--reason', 'test', '--dry-run'], { ...env, AWS_ENDPOINT_URL_RDS: 'http://nonexistent.invalid' });

    expect(run.status).toBe(1);
    expect(run.stderr).toMatch(/^atmr-dr: RDS is unreachable \(getaddrinfo (ENOTFOUND|EAI_AGAIN) nonexistent\.invalid\); check AWS_REGION, AWS_ENDPOINT_URL_RDS or AWS_ENDPOINT_URL if set, and the network\n$/);
  });

  it('SNS and Step Functions, as the CLI builds their clients', async () => {
    const run = await runTsx('test/cli/unreachable-harness.ts', [], env);

    expect(run.stderr).toBe('');
    expect(JSON.parse(run.stdout)).toEqual([
      { message: line('SNS', 'AWS_ENDPOINT_URL_SNS', `connect ECONNREFUSED ${refusing}`), exitCode: 1 },
      { message: line('Step Functions', 'AWS_ENDPOINT_URL_SFN', `connect ECONNREFUSED ${refusing}`), exitCode: 1 },
    ]);
  });
});
