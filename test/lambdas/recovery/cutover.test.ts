import { CloudWatchClient, PutMetricDataCommand } from '@aws-sdk/client-cloudwatch';
import { DescribeServicesCommand, ECSClient, UpdateServiceCommand } from '@aws-sdk/client-ecs';
import { EventBridgeClient, PutEventsCommand } from '@aws-sdk/client-eventbridge';
import { AddTagsToResourceCommand, DeleteDBInstanceCommand, DescribeDBInstancesCommand, ModifyDBInstanceCommand, RDSClient } from '@aws-sdk/client-rds';
import { GetSecretValueCommand, PutSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { GetParameterCommand, PutParameterCommand, SSMClient } from '@aws-sdk/client-ssm';
import { mockClient } from 'aws-sdk-client-mock';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { CutoverDeps, CutoverSettings, cutover, undoCutover } from '../../../lambdas/recovery/cutover';
import { RecoveryRequest } from '../../../lambdas/recovery/contract';
import { activeRecoveryId, beginRecovery, getRecovery, updateRecovery } from '../../../lambdas/recovery/store';
import { testCluster, uniqueDatabaseName } from '../../support/cluster';
import { LocalDynamo, startLocalDynamo } from '../../support/dynamodb';
import { psql } from '../../support/postgres';
import { sourceInstance } from './fixtures';

/**
 * The cutover against: SSM, Secrets Manager, ECS, RDS, EventBridge, CloudWatch mocked at the SDK
 * boundary (stateful fakes for the parameters and the secret), the ops-state table on dynalite,
 * the API's /ready on a local HTTP server, and the write check on a real PostgreSQL database.
 */
const ssm = mockClient(SSMClient);
const secrets = mockClient(SecretsManagerClient);
const ecs = mockClient(ECSClient);
const rds = mockClient(RDSClient);
const events = mockClient(EventBridgeClient);
const cloudwatch = mockClient(CloudWatchClient);

const KILLSWITCH = '/atmr/example/killswitch';
const SECRET = 'arn:aws:secretsmanager:eu-west-3:111111111111:secret:rds!db-atmr-prod-AbCdEf';
const OLD_HOST = 'atmr-prod.abcdefghijkl.eu-west-3.rds.amazonaws.com';
const NEW_HOST = 'atmr-prod-pitr-202611301402.abcdefghijkl.eu-west-3.rds.amazonaws.com';

let dynamo: LocalDynamo;
let ready: http.Server;
let readyStatus = 200;
let readyUrl: string;
const cluster = testCluster();
const recoveredDb = uniqueDatabaseName('rec_cutover');
let parameters: Map<string, { value: string; version: number }>;
let secretValue: Record<string, unknown>;

beforeAll(async () => {
  dynamo = await startLocalDynamo();
  ready = http.createServer((_req, res) => {
    res.statusCode = readyStatus;
    res.end(readyStatus === 200 ? '{"status":"ready"}' : '{"status":"not ready"}');
  });
  await new Promise<void>((resolve) => ready.listen(0, '127.0.0.1', resolve));
  readyUrl = `http://127.0.0.1:${(ready.address() as AddressInfo).port}/ready`;
  psql(cluster, 'postgres', `CREATE DATABASE ${recoveredDb}`);
});

afterAll(async () => {
  await dynamo.stop();
  await new Promise((resolve) => ready.close(resolve));
  psql(cluster, 'postgres', `DROP DATABASE IF EXISTS ${recoveredDb} WITH (FORCE)`);
});

let counter = 0;
async function verifiedRecovery(): Promise<string> {
  counter += 1;
  const id = `r2026113014${String(counter).padStart(4, '0')}-abcd`;
  const request: RecoveryRequest = {
    recoveryId: id,
    toTime: '2026-11-30T14:02:00.000Z',
    newInstance: 'atmr-prod-pitr-202611301402',
    actor: 'alice',
    reason: 'bookings deleted',
    requestedAt: new Date(Date.now() - 1200_000).toISOString(),
  };
  const store = { ddb: dynamo.ddb, tableName: dynamo.tableName };
  // Each test starts its own recovery: the previous test's one (if still holding the lock) is abandoned.
  const previous = await activeRecoveryId(store);
  if (previous) await updateRecovery(store, previous, { status: 'abandoned' });
  await beginRecovery(store, { ...request, sourceInstance: 'atmr-prod' });
  await updateRecovery(store, id, { status: 'verified', newInstanceHost: NEW_HOST, newInstancePort: 5432 });
  return id;
}

beforeEach(() => {
  for (const mock of [ssm, secrets, ecs, rds, events, cloudwatch]) mock.reset();
  readyStatus = 200;
  parameters = new Map([[KILLSWITCH, { value: JSON.stringify({ mode: 'normal', reason: 'initial', actor: 'deploy', updatedAt: '2026-01-01T00:00:00.000Z', expiresAt: null }), version: 1 }]]);
  ssm.on(GetParameterCommand).callsFake((input: { Name: string }) => {
    const p = parameters.get(input.Name)!;
    return { Parameter: { Name: input.Name, Value: p.value, Version: p.version } };
  });
  ssm.on(PutParameterCommand).callsFake((input: { Name: string; Value: string }) => {
    const version = (parameters.get(input.Name)?.version ?? 0) + 1;
    parameters.set(input.Name, { value: input.Value, version });
    return { Version: version };
  });
  secretValue = { username: 'atmr', password: 's3cret', host: OLD_HOST, port: 5432, dbname: 'atmr' };
  secrets.on(GetSecretValueCommand).callsFake(() => ({ SecretString: JSON.stringify(secretValue) }));
  secrets.on(PutSecretValueCommand).callsFake((input: { SecretString: string }) => {
    secretValue = JSON.parse(input.SecretString) as Record<string, unknown>;
    return {};
  });
  ecs.on(UpdateServiceCommand).resolves({});
  ecs.on(DescribeServicesCommand).resolves({
    services: ['atmr-api', 'atmr-celery-worker'].map((serviceName) => ({
      serviceName,
      deployments: [{ status: 'PRIMARY', rolloutState: 'COMPLETED', runningCount: 2, desiredCount: 2 }],
    })),
  });
  rds.on(DescribeDBInstancesCommand).resolves({ DBInstances: [sourceInstance()] });
  events.on(PutEventsCommand).resolves({ FailedEntryCount: 0, Entries: [{ EventId: '1' }] });
  cloudwatch.on(PutMetricDataCommand).resolves({});
});

function deps(overrides: Partial<CutoverDeps> = {}): CutoverDeps {
  return {
    ssm: new SSMClient({}),
    secretsManager: new SecretsManagerClient({}),
    ecs: new ECSClient({}),
    rds: new RDSClient({}),
    events: new EventBridgeClient({}),
    cloudwatch: new CloudWatchClient({}),
    store: { ddb: dynamo.ddb, tableName: dynamo.tableName },
    connectRecovered: async () => ({ host: cluster.host, port: cluster.port, user: cluster.user, database: recoveredDb }),
    sleep: async () => undefined,
    ...overrides,
  };
}

const settings = (overrides: Partial<CutoverSettings> = {}): CutoverSettings => ({
  killswitchParameter: KILLSWITCH,
  endpoint: { kind: 'secretHost', secretArn: SECRET },
  ecs: { clusterArn: 'arn:aws:ecs:eu-west-3:111111111111:cluster/atmr', serviceNames: ['atmr-api', 'atmr-celery-worker'] },
  readinessUrl: undefined,
  sourceInstance: 'atmr-prod',
  rtoObjectiveSeconds: 1800,
  readinessTimeoutSeconds: 0,
  serviceStableTimeoutSeconds: 0,
  ...overrides,
});

const killswitchModes = () =>
  ssm
    .commandCalls(PutParameterCommand)
    .filter((c) => c.args[0].input.Name === KILLSWITCH)
    .map((c) => (JSON.parse(c.args[0].input.Value!) as { mode: string }).mode);

describe('cutover', () => {
  it('runs maintenance -> endpoint -> redeploy -> /ready and a write -> normal, then renames and tags the old instance', async () => {
    const id = await verifiedRecovery();

    const result = await cutover(deps(), id, settings({ readinessUrl: readyUrl }), 'alice');

    expect(result.ok).toBe(true);
    expect(result.steps.map((s) => [s.step, s.outcome])).toEqual([
      ['killswitch maintenance', 'done'],
      ['switch database endpoint', 'done'],
      ['redeploy ECS services', 'done'],
      ['check /ready', 'done'],
      ['check writes accepted', 'done'],
      ['killswitch back', 'done'],
      ['rename and tag old instance', 'done'],
    ]);
    expect(killswitchModes()).toEqual(['maintenance', 'normal']);
    expect(secretValue).toEqual({ username: 'atmr', password: 's3cret', host: NEW_HOST, port: 5432, dbname: 'atmr' });
    expect(ecs.commandCalls(UpdateServiceCommand).map((c) => c.args[0].input)).toEqual([
      { cluster: 'arn:aws:ecs:eu-west-3:111111111111:cluster/atmr', service: 'atmr-api', forceNewDeployment: true },
      { cluster: 'arn:aws:ecs:eu-west-3:111111111111:cluster/atmr', service: 'atmr-celery-worker', forceNewDeployment: true },
    ]);
    expect(rds.commandCalls(ModifyDBInstanceCommand)[0].args[0].input).toMatchObject({ DBInstanceIdentifier: 'atmr-prod', NewDBInstanceIdentifier: expect.stringMatching(/^atmr-prod-replaced-\d{12}$/) });
    expect(rds.commandCalls(AddTagsToResourceCommand)).toHaveLength(1);
    expect(rds.commandCalls(DeleteDBInstanceCommand)).toHaveLength(0);
    const record = await getRecovery(deps().store, id);
    expect(record.status).toBe('cut-over');
    expect(record.recoverySeconds).toBeGreaterThanOrEqual(1200);
    expect(cloudwatch.commandCalls(PutMetricDataCommand)[0].args[0].input.MetricData![0]).toMatchObject({
      MetricName: 'RecoverySeconds',
      Dimensions: [
        { Name: 'service', Value: 'recovery' },
        { Name: 'stage', Value: 'cutover' },
      ],
    });
    const detailTypes = events.commandCalls(PutEventsCommand).map((c) => c.args[0].input.Entries![0]);
    expect(detailTypes.map((e) => e.DetailType)).toEqual(['Recovery Cutover Started', 'Recovery Cut Over']);
    expect(detailTypes.every((e) => e.Source === 'atmr-dr')).toBe(true);
    const detail = JSON.parse(detailTypes[1].Detail!) as { summary: string; at: string };
    expect(detail.summary).toMatch(/production runs on atmr-prod-pitr-202611301402/);
    expect(detail.at).toMatch(/^\d{4}-/);
  });

  it('switches an SSM parameter when the API reads its host there', async () => {
    const id = await verifiedRecovery();
    parameters.set('/atmr/prod/database-host', { value: `${OLD_HOST}:5432`, version: 3 });

    const result = await cutover(deps(), id, settings({ endpoint: { kind: 'ssmParameter', parameterName: '/atmr/prod/database-host' } }), 'alice');

    expect(result.ok).toBe(true);
    expect(parameters.get('/atmr/prod/database-host')!.value).toBe(`${NEW_HOST}:5432`);
    expect(secrets.commandCalls(PutSecretValueCommand)).toHaveLength(0);
  });

  it('refuses an unverified recovery before changing anything', async () => {
    const id = await verifiedRecovery();
    await updateRecovery(deps().store, id, { status: 'verification-failed' });

    await expect(cutover(deps(), id, settings(), 'alice')).rejects.toThrow(
      `recover cutover: recovery ${id} is "verification-failed", expected verified or cutover-failed: only a verified recovery can be cut over (see "atmr-dr recover status ${id}")`,
    );
    expect(ssm.commandCalls(PutParameterCommand)).toHaveLength(0);
    expect(secrets.commandCalls(PutSecretValueCommand)).toHaveLength(0);
    expect(ecs.commandCalls(UpdateServiceCommand)).toHaveLength(0);
  });

  it('failing half-way (/ready never 200) sets the endpoint back, redeploys on it, restores the killswitch, and reports each change', async () => {
    const id = await verifiedRecovery();
    readyStatus = 503;

    const result = await cutover(deps(), id, settings({ readinessUrl: readyUrl }), 'alice');

    expect(result.ok).toBe(false);
    expect(result.error).toMatch(/\/ready did not answer 200 within 0 s \(last: HTTP 503\)/);
    expect(result.steps.map((s) => [s.step, s.outcome])).toEqual([
      ['killswitch maintenance', 'done'],
      ['switch database endpoint', 'done'],
      ['redeploy ECS services', 'done'],
      ['check /ready', 'failed'],
      ['switch database endpoint', 'undone'],
      ['redeploy ECS services', 'undone'],
      ['killswitch maintenance', 'undone'],
    ]);
    expect(secretValue).toEqual({ username: 'atmr', password: 's3cret', host: OLD_HOST, port: 5432, dbname: 'atmr' });
    expect(ecs.commandCalls(UpdateServiceCommand)).toHaveLength(4);
    expect(killswitchModes()).toEqual(['maintenance', 'normal']);
    expect(rds.commandCalls(ModifyDBInstanceCommand)).toHaveLength(0);
    expect((await getRecovery(deps().store, id)).status).toBe('cutover-failed');
    expect(events.commandCalls(PutEventsCommand).map((c) => c.args[0].input.Entries![0].DetailType)).toEqual(['Recovery Cutover Started', 'Recovery Cutover Failed']);
  });

  it('keeps a killswitch an operator had set before (degraded) when undoing', async () => {
    const id = await verifiedRecovery();
    parameters.set(KILLSWITCH, { value: JSON.stringify({ mode: 'degraded', reason: 'OSRM down', actor: 'bob', updatedAt: '2026-11-30T13:00:00.000Z', expiresAt: null }), version: 4 });
    ecs.on(DescribeServicesCommand).resolves({ services: [{ serviceName: 'atmr-api', deployments: [{ status: 'PRIMARY', rolloutState: 'FAILED', rolloutStateReason: 'tasks failed to start' }] }] });

    const result = await cutover(deps(), id, settings(), 'alice');

    expect(result.ok).toBe(false);
    expect(result.error).toBe('ECS service atmr-api: deployment failed (tasks failed to start)');
    expect(JSON.parse(parameters.get(KILLSWITCH)!.value)).toMatchObject({ mode: 'degraded', reason: 'OSRM down', actor: 'bob' });
  });

  it('a failed undo is reported for a human, blocks a new attempt until undone, then a retry is allowed', async () => {
    const id = await verifiedRecovery();
    readyStatus = 503;
    let puts = 0;
    secrets.on(PutSecretValueCommand).callsFake((input: { SecretString: string }) => {
      puts += 1;
      if (puts === 2) throw Object.assign(new Error('AccessDenied'), { name: 'AccessDeniedException' });
      secretValue = JSON.parse(input.SecretString) as Record<string, unknown>;
      return {};
    });

    const failed = await cutover(deps(), id, settings({ readinessUrl: readyUrl }), 'alice');

    expect(failed.steps.find((s) => s.outcome === 'undo-failed')).toMatchObject({ step: 'switch database endpoint', detail: 'AccessDenied: do it by hand' });
    expect(secretValue.host).toBe(NEW_HOST);
    // A new attempt would journal the copy's host as "previous": refused until the undo is finished.
    await expect(cutover(deps(), id, settings({ readinessUrl: readyUrl }), 'alice')).rejects.toThrow(
      `recover cutover: recovery ${id} has changes of a failed cutover not undone (switch database endpoint): run "atmr-dr recover cutover ${id} --undo --yes" first`,
    );
    secrets.on(PutSecretValueCommand).callsFake((input: { SecretString: string }) => {
      secretValue = JSON.parse(input.SecretString) as Record<string, unknown>;
      return {};
    });
    const undone = await undoCutover(deps(), id, settings({ readinessUrl: readyUrl }), 'alice');
    expect(undone.steps.map((s) => [s.step, s.outcome])).toEqual([
      ['switch database endpoint', 'undone'],
      ['redeploy ECS services', 'undone'],
    ]);
    expect(secretValue.host).toBe(OLD_HOST);
    readyStatus = 200;
    const retried = await cutover(deps(), id, settings({ readinessUrl: readyUrl }), 'alice');
    expect(retried.ok).toBe(true);
  });
});
