import {
  AccessDeniedException,
  DescribeServicesCommand,
  ECSClient,
  InvalidParameterException,
  ServerException,
  ServiceNotFoundException,
  UpdateServiceCommand,
  type Deployment,
} from '@aws-sdk/client-ecs';
import { mockClient } from 'aws-sdk-client-mock';
import 'aws-sdk-client-mock-jest';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { forceNewDeploymentOnce } from '../../../lambdas/shared/ecs-deployments';
import { OperatorError } from '../../../lambdas/shared/errors';
import { SDK_RETRY } from '../../../lambdas/shared/sdk-retry';

/** ECS mocked at the SDK boundary, on this client only: the real client below is not mocked. */
const ecs = new ECSClient({ region: 'eu-west-3' });
const ecsMock = mockClient(ecs);
const ref = { cluster: 'atmr-prod', service: 'atmr-osrm' };
const noSleep = async () => undefined;

const current: Deployment = { id: 'ecs-svc/current', status: 'PRIMARY', rolloutState: 'COMPLETED' };
const started: Deployment = { id: 'ecs-svc/started', status: 'PRIMARY', rolloutState: 'IN_PROGRESS' };
const deployments = (...list: Deployment[]) => ({ services: [{ serviceName: 'atmr-osrm', deployments: list }] });

/** What the SDK throws when the answer never came: a reset socket, a request timeout. */
const socketHangUp = () => Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
const requestTimeout = () => Object.assign(new Error('Connection timed out after 10000 ms'), { name: 'TimeoutError' });
const throttled = () => Object.assign(new Error('Rate exceeded'), { name: 'ThrottlingException', $metadata: { httpStatusCode: 400 } });
const serverError = () => new ServerException({ message: 'internal error', $metadata: { httpStatusCode: 500 } });

beforeEach(() => ecsMock.reset());

describe('forceNewDeploymentOnce', () => {
  it.each([
    ['a socket hang-up', socketHangUp],
    ['a request timeout', requestTimeout],
  ])('the request took effect but its answer was lost (%s): one UpdateService, the deployment it started', async (_name, lost) => {
    ecsMock.on(DescribeServicesCommand).resolvesOnce(deployments(current)).resolves(deployments(started, { ...current, status: 'ACTIVE' }));
    ecsMock.on(UpdateServiceCommand).rejects(lost());

    const result = await forceNewDeploymentOnce(ecs, { ...ref, sleep: noSleep });

    expect(result).toEqual({ deploymentId: 'ecs-svc/started', attempts: 1, recovered: true });
    expect(ecsMock).toHaveReceivedCommandTimes(UpdateServiceCommand, 1);
  });

  it.each([
    ['throttling', throttled],
    ['a 5xx', serverError],
    ['a socket hang-up', socketHangUp],
  ])('the request did not take effect (%s, no new deployment): sent again, and the second one starts it', async (_name, failure) => {
    ecsMock.on(DescribeServicesCommand).resolves(deployments(current));
    ecsMock.on(UpdateServiceCommand).rejectsOnce(failure()).resolves({ service: { deployments: [started, { ...current, status: 'ACTIVE' }] } });
    const waits: number[] = [];

    const result = await forceNewDeploymentOnce(ecs, { ...ref, sleep: async (ms) => void waits.push(ms) });

    expect(result).toEqual({ deploymentId: 'ecs-svc/started', attempts: 2, recovered: false });
    expect(ecsMock).toHaveReceivedCommandTimes(UpdateServiceCommand, 2);
    expect(ecsMock.commandCalls(UpdateServiceCommand)[1].args[0].input).toEqual({ ...ref, forceNewDeployment: true });
    expect(waits).toEqual([1000]);
  });

  it.each([
    ['ServiceNotFoundException', () => new ServiceNotFoundException({ message: 'Service not found.', $metadata: { httpStatusCode: 400 } })],
    ['AccessDeniedException', () => new AccessDeniedException({ message: 'User is not authorized to perform ecs:UpdateService', $metadata: { httpStatusCode: 400 } })],
    ['InvalidParameterException', () => new InvalidParameterException({ message: 'Invalid service name', $metadata: { httpStatusCode: 400 } })],
  ])('a client error (%s) is thrown at once, unchanged, after one UpdateService', async (name, refusal) => {
    ecsMock.on(DescribeServicesCommand).resolves(deployments(current));
    const error = refusal();
    ecsMock.on(UpdateServiceCommand).rejects(error);

    await expect(forceNewDeploymentOnce(ecs, { ...ref, sleep: noSleep })).rejects.toMatchObject({ name, message: error.message });
    expect(ecsMock).toHaveReceivedCommandTimes(UpdateServiceCommand, 1);
    // Only the read before: a refused request started nothing, there is nothing to look for.
    expect(ecsMock).toHaveReceivedCommandTimes(DescribeServicesCommand, 1);
  });

  it('three failures with an unknown outcome and no new deployment: one line naming the service and the last error, three UpdateService', async () => {
    ecsMock.on(DescribeServicesCommand).resolves(deployments(current));
    ecsMock.on(UpdateServiceCommand).rejectsOnce(socketHangUp()).rejectsOnce(throttled()).rejects(requestTimeout());
    const waits: number[] = [];

    const error = await forceNewDeploymentOnce(ecs, { ...ref, sleep: async (ms) => void waits.push(ms) }).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(OperatorError);
    const { message, exitCode } = error as OperatorError;
    expect(message.split('\n')).toHaveLength(1);
    expect(message).toMatch(/^ECS service atmr-osrm in cluster atmr-prod: no new deployment after 3 attempts .*last error: Connection timed out after 10000 ms/);
    expect(exitCode).toBe(1);
    expect(ecsMock).toHaveReceivedCommandTimes(UpdateServiceCommand, 3);
    // One read before, one after each failure (the last one too: it may have taken effect).
    expect(ecsMock).toHaveReceivedCommandTimes(DescribeServicesCommand, 4);
    expect(waits).toEqual([1000, 2000, 4000]);
  });

  it('the third request took effect though its answer was lost: its deployment, no error', async () => {
    ecsMock.on(DescribeServicesCommand).resolvesOnce(deployments(current)).resolvesOnce(deployments(current)).resolvesOnce(deployments(current)).resolves(deployments(started));
    ecsMock.on(UpdateServiceCommand).rejects(socketHangUp());

    await expect(forceNewDeploymentOnce(ecs, { ...ref, sleep: noSleep })).resolves.toEqual({ deploymentId: 'ecs-svc/started', attempts: 3, recovered: true });
    expect(ecsMock).toHaveReceivedCommandTimes(UpdateServiceCommand, 3);
  });

  it('cannot read the deployments back after a failure: one line, and no second request sent blind', async () => {
    ecsMock.on(DescribeServicesCommand).resolvesOnce(deployments(current)).rejects(serverError());
    ecsMock.on(UpdateServiceCommand).rejects(socketHangUp());

    const error = await forceNewDeploymentOnce(ecs, { ...ref, sleep: noSleep }).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(OperatorError);
    expect((error as OperatorError).message).toMatch(/atmr-osrm .*cannot tell whether the forced deployment started \(UpdateService: socket hang up; DescribeServices: internal error\)/);
    expect(ecsMock).toHaveReceivedCommandTimes(UpdateServiceCommand, 1);
  });
});

/**
 * ECS (its awsJson1_1 protocol, the operation in X-Amz-Target) on 127.0.0.1: DescribeServices
 * answers one deployment that never changes, UpdateService always fails with HTTP 500.
 */
async function startFailingEcs(): Promise<{ url: string; targets: string[]; stop(): Promise<void> }> {
  const targets: string[] = [];
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const target = String(req.headers['x-amz-target']);
      targets.push(target.slice(target.lastIndexOf('.') + 1));
      res.setHeader('content-type', 'application/x-amz-json-1.1');
      if (target.endsWith('.DescribeServices')) {
        res.statusCode = 200;
        res.end(JSON.stringify({ services: [{ serviceName: 'atmr-osrm', deployments: [current] }], failures: [] }));
        return;
      }
      res.statusCode = 500;
      res.end(JSON.stringify({ __type: 'ServerException', message: 'internal error' }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    targets,
    stop: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

describe('the SDK retry is off for the forced deployment only (a real ECSClient, the shared settings)', () => {
  let endpoint: Awaited<ReturnType<typeof startFailingEcs>>;
  let real: ECSClient;

  beforeAll(async () => {
    endpoint = await startFailingEcs();
    real = new ECSClient({ ...SDK_RETRY, region: 'eu-west-3', endpoint: endpoint.url, credentials: { accessKeyId: 'AKIDTEST', secretAccessKey: 'secret' } });
  });
  afterAll(async () => {
    real.destroy();
    await endpoint.stop();
  });
  beforeEach(() => endpoint.targets.splice(0));

  it('one helper attempt sends UpdateService once, though the client retries a 500 up to 5 times', async () => {
    const error = await forceNewDeploymentOnce(real, { ...ref, attempts: 1, sleep: noSleep }).catch((e: unknown) => e);

    expect((error as Error).message).toMatch(/no new deployment after 1 attempt .*internal error/);
    expect(endpoint.targets.filter((t) => t === 'UpdateService')).toHaveLength(1);
  });

  it('three helper attempts: three UpdateService in all', async () => {
    await expect(forceNewDeploymentOnce(real, { ...ref, sleep: noSleep })).rejects.toThrow(/no new deployment after 3 attempts/);

    expect(endpoint.targets).toEqual(['DescribeServices', 'UpdateService', 'DescribeServices', 'UpdateService', 'DescribeServices', 'UpdateService', 'DescribeServices']);
  });

  it('the same client still retries every other call, an UpdateService sent directly included', async () => {
    await expect(real.send(new UpdateServiceCommand({ ...ref, forceNewDeployment: true }))).rejects.toThrow('internal error');

    expect(endpoint.targets).toEqual(Array(SDK_RETRY.maxAttempts).fill('UpdateService'));
  });
});
