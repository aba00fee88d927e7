import { CloudWatchClient, PutMetricDataCommand } from '@aws-sdk/client-cloudwatch';
import { DescribeServicesCommand, type Deployment, ECSClient, UpdateServiceCommand } from '@aws-sdk/client-ecs';
import { EventBridgeClient, PutEventsCommand } from '@aws-sdk/client-eventbridge';
import { AddTagsToResourceCommand, DBInstance, DeleteDBInstanceCommand, DescribeDBInstancesCommand, ModifyDBInstanceCommand, RDSClient, RemoveTagsFromResourceCommand, Tag } from '@aws-sdk/client-rds';
import { GetSecretValueCommand, PutSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { DescribeExecutionCommand, SFNClient } from '@aws-sdk/client-sfn';
import { GetParameterCommand, PutParameterCommand, SSMClient } from '@aws-sdk/client-ssm';
import { DynamoDBDocumentClient, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { mockClient } from 'aws-sdk-client-mock';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { CUTOVER_STEPS, CutoverDeps, CutoverSettings, LEASE_SECONDS, cutover, keptInMaintenance, killswitchUnknown, reopeningStarted, undoCutover } from '../../../lambdas/recovery/cutover';
import { RecoveryRequest } from '../../../lambdas/recovery/contract';
import { abandonRecovery } from '../../../lambdas/recovery/operations';
import { OperatorError } from '../../../lambdas/shared/errors';
import { activeRecoveryId, beginRecovery, getRecovery, updateRecovery } from '../../../lambdas/recovery/store';
import { testCluster, uniqueDatabaseName } from '../../support/cluster';
import { LocalDynamo, loseFirstAnswer, startLocalDynamo } from '../../support/dynamodb';
import { psql } from '../../support/postgres';
import { operatorErrorOf } from '../../support/refusal';
import { SOURCE_RESOURCE_ID, notFound, sourceInstance } from './fixtures';

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
/** Only for the abandon a closed cutover allows: its workflow found ended. */
const sfn = mockClient(SFNClient);

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
  ready = http.createServer((req, res) => {
    // A sign-in page that answers 200 to anyone: where a misconfigured /ready redirects.
    if (req.url === '/login') return void res.end('<html>sign in</html>');
    if (readyStatus === 302) return void res.writeHead(302, { location: '/login' }).end();
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
/** The recovery the last verifiedRecovery() started: the one its copy is tagged with. */
let latestId = '';
async function verifiedRecovery(): Promise<string> {
  counter += 1;
  const id = `r2026113014${String(counter).padStart(4, '0')}-abcd`;
  latestId = id;
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
  // As startRecovery records it: the resource id of the instance restored from.
  await beginRecovery(store, { ...request, sourceInstance: 'atmr-prod', sourceResourceId: SOURCE_RESOURCE_ID });
  await updateRecovery(store, id, { status: 'verified', newInstanceHost: NEW_HOST, newInstancePort: 5432 });
  return id;
}

/** SSM refuses alice's reopening (the killswitch back to normal): every other write goes through. */
function refuseReopening(): void {
  ssm.on(PutParameterCommand).callsFake((input: { Name: string; Value: string }) => {
    if ((JSON.parse(input.Value) as { mode: string }).mode === 'normal') throw Object.assign(new Error('User: alice is not authorized to perform: ssm:PutParameter'), { name: 'AccessDeniedException' });
    const version = parameters.get(input.Name)!.version + 1;
    parameters.set(input.Name, { value: input.Value, version });
    return { Version: version };
  });
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
  fakeEcs();
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
  rtoObjectiveSeconds: 1800,
  environmentName: 'drill',
  metricsNamespace: 'AtmrDr/drill',
  readinessTimeoutSeconds: 0,
  serviceStableTimeoutSeconds: 0,
  ...overrides,
});

/** The cutover's renames of the old instance (its other ModifyDBInstance turns deletion protection on for the copy). */
const renames = () => rds.commandCalls(ModifyDBInstanceCommand).filter((c) => c.args[0].input.DeletionProtection === undefined);
/** The cutover's ModifyDBInstance turning deletion protection on (for the copy, production now). */
const protections = () => rds.commandCalls(ModifyDBInstanceCommand).filter((c) => c.args[0].input.DeletionProtection !== undefined);

const killswitchModes = () =>
  ssm
    .commandCalls(PutParameterCommand)
    .filter((c) => c.args[0].input.Name === KILLSWITCH)
    .map((c) => (JSON.parse(c.args[0].input.Value!) as { mode: string }).mode);

interface FakeEcsOptions {
  /** UpdateService calls (1-based, over the test) whose answer is lost after ECS started the deployment: the SDK sees a reset socket. */
  readonly lostAnswers?: readonly number[];
  /** Runs when an UpdateService reaches ECS, before it starts anything: throwing refuses the request. */
  readonly onUpdate?: (service: string) => void;
  /** What DescribeServices shows of each latest deployment, asked once per call. @default COMPLETED, 2/2 running */
  readonly rollout?: () => Partial<Deployment>;
}

interface FakeEcs {
  /** Deployments started per service by the test's UpdateService calls. */
  readonly started: () => Record<string, number>;
  /** A service's deployment ids, latest first: `<service>/0` ran before the test, `<service>/<n>` is the nth forced. */
  readonly ids: (service: string) => readonly string[];
}

/**
 * ECS as the cutover meets it: each UpdateService that reaches it starts a deployment with a new id
 * (its answer names it PRIMARY, IN_PROGRESS), and DescribeServices shows each service's latest
 * deployment alone, PRIMARY, COMPLETED with every task running unless `rollout` says otherwise.
 */
function fakeEcs(options: FakeEcsOptions = {}): FakeEcs {
  const deployments = new Map<string, string[]>();
  const of = (name: string) => deployments.get(name) ?? deployments.set(name, [`${name}/0`]).get(name)!;
  let calls = 0;
  ecs.on(UpdateServiceCommand).callsFake((input: { service: string }) => {
    calls += 1;
    options.onUpdate?.(input.service);
    const ids = of(input.service);
    ids.unshift(`${input.service}/${ids.length}`);
    if (options.lostAnswers?.includes(calls)) throw Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
    return { service: { serviceName: input.service, deployments: [{ id: ids[0], status: 'PRIMARY', rolloutState: 'IN_PROGRESS' }] } };
  });
  ecs.on(DescribeServicesCommand).callsFake((input: { services: string[] }) => {
    const rollout = options.rollout?.() ?? {};
    return {
      services: input.services.map((serviceName) => ({
        serviceName,
        deployments: [{ id: of(serviceName)[0], status: 'PRIMARY', rolloutState: 'COMPLETED', runningCount: 2, desiredCount: 2, ...rollout }],
      })),
    };
  });
  return {
    started: () => Object.fromEntries([...deployments].map(([name, ids]) => [name, ids.length - 1])),
    ids: (service) => of(service),
  };
}

/** The steps of a cutover whose /ready check failed, and of its undo, in order: every change put back. */
const UNDONE_AFTER_READY_FAILED = [
  ['killswitch maintenance', 'done'],
  ['switch database endpoint', 'done'],
  ['redeploy ECS services', 'done'],
  ['check /ready', 'failed'],
  ['switch database endpoint', 'undone'],
  ['redeploy ECS services', 'undone'],
  ['killswitch maintenance', 'undone'],
];

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
      ['deletion protection on new production instance', 'done'],
      ['untag new production instance', 'done'],
    ]);
    expect(killswitchModes()).toEqual(['maintenance', 'normal']);
    expect(secretValue).toEqual({ username: 'atmr', password: 's3cret', host: NEW_HOST, port: 5432, dbname: 'atmr' });
    expect(ecs.commandCalls(UpdateServiceCommand).map((c) => c.args[0].input)).toEqual([
      { cluster: 'arn:aws:ecs:eu-west-3:111111111111:cluster/atmr', service: 'atmr-api', forceNewDeployment: true },
      { cluster: 'arn:aws:ecs:eu-west-3:111111111111:cluster/atmr', service: 'atmr-celery-worker', forceNewDeployment: true },
    ]);
    expect(renames()[0].args[0].input).toMatchObject({ DBInstanceIdentifier: 'atmr-prod', NewDBInstanceIdentifier: expect.stringMatching(/^atmr-prod-replaced-\d{12}$/) });
    expect(rds.commandCalls(AddTagsToResourceCommand)).toHaveLength(1);
    expect(rds.commandCalls(DeleteDBInstanceCommand)).toHaveLength(0);
    const record = await getRecovery(deps().store, id);
    expect(record.status).toBe('cut-over');
    expect(record.recoverySeconds).toBeGreaterThanOrEqual(1200);
    expect(cloudwatch.commandCalls(PutMetricDataCommand)[0].args[0].input.Namespace).toBe('AtmrDr/drill');
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

  it('a final write (cut-over, lease removed) stored but whose answer was lost: the SDK retry meets it, the cutover is done and the one-recovery lock freed', async () => {
    const id = await verifiedRecovery();
    const losing = loseFirstAnswer(dynamo, (command, input) => command === 'UpdateItemCommand' && JSON.stringify(input).includes('"cut-over"'));

    try {
      const result = await cutover(deps({ store: { ddb: losing.ddb, tableName: dynamo.tableName } }), id, settings({ readinessUrl: readyUrl }), 'alice');

      expect(losing.lost()).toBe(1);
      expect(result).toMatchObject({ ok: true, status: 'cut-over' });
    } finally {
      losing.destroy();
    }
    const record = await getRecovery(deps().store, id);
    expect(record.status).toBe('cut-over');
    expect(record.leaseToken).toBeUndefined();
    expect(await activeRecoveryId(deps().store)).toBeUndefined();
    expect(events.commandCalls(PutEventsCommand).map((c) => c.args[0].input.Entries![0].DetailType)).toEqual(['Recovery Cutover Started', 'Recovery Cut Over']);
  });

  it('a forced redeploy whose answer was lost (ECS started it) is not sent again: one deployment per service', async () => {
    const id = await verifiedRecovery();
    const forced = fakeEcs({ lostAnswers: [1] }).started;

    const result = await cutover(deps(), id, settings({ readinessUrl: readyUrl }), 'alice');

    expect(result).toMatchObject({ ok: true, status: 'cut-over' });
    expect(ecs.commandCalls(UpdateServiceCommand).map((c) => c.args[0].input.service)).toEqual(['atmr-api', 'atmr-celery-worker']);
    expect(forced()).toEqual({ 'atmr-api': 1, 'atmr-celery-worker': 1 });
  });

  it('the undo redeploy whose answer was lost is not sent again either', async () => {
    const id = await verifiedRecovery();
    readyStatus = 503;
    // The 3rd UpdateService is the undo's first (atmr-api back on the previous endpoint).
    const forced = fakeEcs({ lostAnswers: [3] }).started;

    const result = await cutover(deps(), id, settings({ readinessUrl: readyUrl }), 'alice');

    expect(result.steps.find((s) => s.step === 'redeploy ECS services' && s.outcome !== 'done')?.outcome).toBe('undone');
    expect(ecs.commandCalls(UpdateServiceCommand).map((c) => c.args[0].input.service)).toEqual(['atmr-api', 'atmr-celery-worker', 'atmr-api', 'atmr-celery-worker']);
    expect(forced()).toEqual({ 'atmr-api': 2, 'atmr-celery-worker': 2 });
  });

  it('an UpdateService answer that names no deployment: the services are never counted stable on an unknown one; the step fails in one line, /ready is not probed, traffic stays closed', async () => {
    const id = await verifiedRecovery();
    fakeEcs();
    // ECS starts the deployments but its answers name none; its reads show the one before (<service>/0), COMPLETED.
    ecs.on(UpdateServiceCommand).resolves({});
    let probes = 0;
    const probing: typeof fetch = (input, init) => {
      probes += 1;
      return fetch(input, init);
    };

    const result = await cutover(deps({ fetch: probing }), id, settings({ readinessUrl: readyUrl, serviceStableTimeoutSeconds: 900 }), 'alice');

    const unknown = (service: string) =>
      `ECS service ${service}: UpdateService answered without the deployment it started (no PRIMARY deployment id), so the wait cannot tell its tasks from the previous ones; look at the service's deployments (aws ecs describe-services --cluster arn:aws:ecs:eu-west-3:111111111111:cluster/atmr --services ${service})`;
    expect(result).toMatchObject({ ok: false, status: 'cutover-failed', error: `${unknown('atmr-api')}; ${unknown('atmr-celery-worker')}` });
    expect(probes).toBe(0);
    expect(killswitchModes()).toEqual(['maintenance']);
    expect(secretValue.host).toBe(OLD_HOST);
    expect(result.steps.map((s) => [s.step, s.outcome])).toEqual([
      ['killswitch maintenance', 'done'],
      ['switch database endpoint', 'done'],
      ['redeploy ECS services', 'failed'],
      ['switch database endpoint', 'undone'],
      ['redeploy ECS services', 'undo-failed'],
      ['killswitch maintenance', 'undo-failed'],
    ]);
    // Every service was forced anyway, both times: their tasks move off the copy while the operator looks.
    expect(ecs.commandCalls(UpdateServiceCommand).map((c) => c.args[0].input.service)).toEqual(['atmr-api', 'atmr-celery-worker', 'atmr-api', 'atmr-celery-worker']);
  });

  it("once production runs on the copy, removes the copy's atmr-dr:purpose tag (the recovery role's reach) after the rename and before the recovery is recorded cut-over", async () => {
    const id = await verifiedRecovery();
    const copyArn = 'arn:aws:rds:eu-west-3:111111111111:db:atmr-prod-pitr-202611301402';
    let copyTags: Tag[] = [
      { Key: 'project', Value: 'atmr' },
      { Key: 'atmr-dr:purpose', Value: 'recovery' },
      { Key: 'atmr-dr:recovery-id', Value: id },
    ];
    rds.on(DescribeDBInstancesCommand, { DBInstanceIdentifier: 'atmr-prod-pitr-202611301402' }).callsFake(() => ({
      DBInstances: [{ DBInstanceIdentifier: 'atmr-prod-pitr-202611301402', DBInstanceArn: copyArn, DBInstanceStatus: 'available', Endpoint: { Address: NEW_HOST, Port: 5432 }, TagList: copyTags }],
    }));
    rds.on(AddTagsToResourceCommand).resolves({});
    rds.on(ModifyDBInstanceCommand).resolves({});
    const statusWhenUntagged: string[] = [];
    rds.on(RemoveTagsFromResourceCommand).callsFake(async (input: { TagKeys: string[] }) => {
      statusWhenUntagged.push((await getRecovery(deps().store, id)).status);
      copyTags = copyTags.filter((t) => !input.TagKeys.includes(t.Key!));
      return {};
    });

    const result = await cutover(deps(), id, settings({ readinessUrl: readyUrl }), 'alice');

    expect(result.ok).toBe(true);
    expect(rds.commandCalls(RemoveTagsFromResourceCommand).map((c) => c.args[0].input)).toEqual([{ ResourceName: copyArn, TagKeys: ['atmr-dr:purpose'] }]);
    const order = rds.calls().map((c) => (c.args[0] as object).constructor.name).filter((name) => name === 'ModifyDBInstanceCommand' || name === 'RemoveTagsFromResourceCommand');
    // The old instance's rename, the copy's deletion protection (while it still carries the tag), the untag.
    expect(order).toEqual(['ModifyDBInstanceCommand', 'ModifyDBInstanceCommand', 'RemoveTagsFromResourceCommand']);
    expect(statusWhenUntagged).toEqual(['cutting-over']);
    expect(copyTags.map((t) => t.Key)).toEqual(['project', 'atmr-dr:recovery-id']);
    expect(result.steps.find((s) => s.step === CUTOVER_STEPS.untag)).toMatchObject({ outcome: 'done', detail: expect.stringMatching(/atmr-prod-pitr-202611301402: tag atmr-dr:purpose removed/) });
    const record = await getRecovery(deps().store, id);
    expect(record.status).toBe('cut-over');
    expect(record.journal!.map((e) => [e.step, e.state]).slice(-2)).toEqual([
      [CUTOVER_STEPS.protect, 'done'],
      [CUTOVER_STEPS.untag, 'done'],
    ]);
  });

  describe('deletion protection of the copy, production now (restored without it so that abandon could delete it)', () => {
    const COPY = 'atmr-prod-pitr-202611301402';
    beforeEach(() => {
      rds.on(DescribeDBInstancesCommand, { DBInstanceIdentifier: COPY }).callsFake(() => ({
        DBInstances: [{ DBInstanceIdentifier: COPY, DBInstanceArn: `arn:aws:rds:eu-west-3:111111111111:db:${COPY}`, DBInstanceStatus: 'available', TagList: [{ Key: 'atmr-dr:purpose', Value: 'recovery' }, { Key: 'atmr-dr:recovery-id', Value: latestId }] }],
      }));
      rds.on(AddTagsToResourceCommand).resolves({});
      rds.on(RemoveTagsFromResourceCommand).resolves({});
      rds.on(ModifyDBInstanceCommand).resolves({});
    });

    it('is turned on by the cutover itself (ModifyDBInstance DeletionProtection, without ApplyImmediately: pending changes stay pending), before the untag (the on-call may modify only a copy still tagged atmr-dr:purpose)', async () => {
      const id = await verifiedRecovery();

      const result = await cutover(deps(), id, settings(), 'alice');

      expect(result.ok).toBe(true);
      expect(protections().map((c) => c.args[0].input)).toEqual([{ DBInstanceIdentifier: COPY, DeletionProtection: true }]);
      const [protect] = protections();
      const [untag] = rds.commandCalls(RemoveTagsFromResourceCommand);
      expect(protect.calledBefore(untag)).toBe(true);
      expect(result.steps.at(-2)).toMatchObject({ step: CUTOVER_STEPS.protect, outcome: 'done', detail: `${COPY}: deletion protection on` });
      expect(result.steps.at(-1)).toMatchObject({ step: CUTOVER_STEPS.untag, outcome: 'done' });
      expect((await getRecovery(deps().store, id)).journal!.find((e) => e.step === CUTOVER_STEPS.protect)!.state).toBe('done');
    });

    it('refused (the operator may not ModifyDBInstance the copy): the step fails with the reason, the cutover stays done and the recovery cut-over', async () => {
      const id = await verifiedRecovery();
      rds.on(ModifyDBInstanceCommand, { DeletionProtection: true }).rejects(
        Object.assign(new Error(`User: arn:aws:sts::111111111111:assumed-role/oncall/alice is not authorized to perform: rds:ModifyDBInstance on resource: arn:aws:rds:eu-west-3:111111111111:db:${COPY}`), { name: 'AccessDenied' }),
      );

      const result = await cutover(deps(), id, settings(), 'alice');

      expect(result).toMatchObject({ ok: true, status: 'cut-over' });
      expect(result.steps.find((s) => s.step === CUTOVER_STEPS.protect)).toMatchObject({
        step: CUTOVER_STEPS.protect,
        outcome: 'failed',
        detail: `AccessDenied: User: arn:aws:sts::111111111111:assumed-role/oncall/alice is not authorized to perform: rds:ModifyDBInstance on resource: arn:aws:rds:eu-west-3:111111111111:db:${COPY}`,
      });
      expect((await getRecovery(deps().store, id)).status).toBe('cut-over');
    });
  });

  it("leaves the purpose tag of a copy that is not this recovery's (another recovery id) and says so; the cutover stays done", async () => {
    const id = await verifiedRecovery();
    rds.on(DescribeDBInstancesCommand, { DBInstanceIdentifier: 'atmr-prod-pitr-202611301402' }).resolves({
      DBInstances: [
        {
          DBInstanceIdentifier: 'atmr-prod-pitr-202611301402',
          DBInstanceArn: 'arn:aws:rds:eu-west-3:111111111111:db:atmr-prod-pitr-202611301402',
          DBInstanceStatus: 'available',
          TagList: [
            { Key: 'atmr-dr:purpose', Value: 'recovery' },
            { Key: 'atmr-dr:recovery-id', Value: 'r20261129000000-ffff' },
          ],
        },
      ],
    });
    rds.on(AddTagsToResourceCommand).resolves({});
    rds.on(ModifyDBInstanceCommand).resolves({});
    rds.on(RemoveTagsFromResourceCommand).resolves({});

    const result = await cutover(deps(), id, settings(), 'alice');

    expect(result.ok).toBe(true);
    expect(rds.commandCalls(RemoveTagsFromResourceCommand)).toHaveLength(0);
    expect(result.steps.find((s) => s.step === CUTOVER_STEPS.untag)).toMatchObject({
      outcome: 'failed',
      detail: `recover: atmr-prod-pitr-202611301402 is not tagged atmr-dr:recovery-id=${id} (tagged r20261129000000-ffff): its atmr-dr:purpose tag is left as it is; check which instance production runs on, then remove that tag from it by hand: aws rds remove-tags-from-resource --resource-name arn:aws:rds:eu-west-3:111111111111:db:atmr-prod-pitr-202611301402 --tag-keys atmr-dr:purpose`,
    });
    expect((await getRecovery(deps().store, id)).status).toBe('cut-over');
  });

  it('refuses a copy that is not available (stopped to save money, deleted) before touching production', async () => {
    for (const copy of [{ DBInstanceStatus: 'stopped' }, undefined]) {
      const id = await verifiedRecovery();
      rds.reset();
      rds.on(DescribeDBInstancesCommand, { DBInstanceIdentifier: 'atmr-prod' }).resolves({ DBInstances: [sourceInstance()] });
      if (copy) rds.on(DescribeDBInstancesCommand, { DBInstanceIdentifier: 'atmr-prod-pitr-202611301402' }).resolves({ DBInstances: [{ DBInstanceIdentifier: 'atmr-prod-pitr-202611301402', ...copy }] });
      else rds.on(DescribeDBInstancesCommand, { DBInstanceIdentifier: 'atmr-prod-pitr-202611301402' }).rejects(notFound());

      await expect(cutover(deps(), id, settings({ readinessUrl: readyUrl }), 'alice')).rejects.toThrow(
        `recover cutover: recovery ${id}: its copy atmr-prod-pitr-202611301402 is "${copy ? 'stopped' : 'not-found'}", not available: nothing was changed; ${copy ? 'start it' : 'it is gone: start a new recovery'}`,
      );
      expect(ssm.commandCalls(PutParameterCommand)).toHaveLength(0);
      expect(secrets.commandCalls(PutSecretValueCommand)).toHaveLength(0);
      expect(ecs.commandCalls(UpdateServiceCommand)).toHaveLength(0);
      const record = await getRecovery(deps().store, id);
      expect([record.status, record.journal, record.leaseToken]).toEqual(['verified', undefined, undefined]);
    }
  });

  it.each(['start', 'resume'] as const)(
    'refuses to %s a cutover with no ECS service to redeploy (recovery.ecs unset): exit 2, one line naming recovery.ecs and the fix, nothing changed',
    async (mode) => {
      const id = await verifiedRecovery();
      // An interrupted cutover, for --resume: the lease is free.
      if (mode === 'resume') await updateRecovery(deps().store, id, { status: 'cutting-over', journal: [] });
      const before = await getRecovery(deps().store, id);
      const command = mode === 'start' ? 'recover cutover' : 'recover cutover --resume';

      const error = await operatorErrorOf(cutover(deps(), id, settings({ readinessUrl: readyUrl, ecs: undefined }), 'alice', mode));

      expect(error.message).toBe(
        `${command}: recovery.ecs is not set: no ECS service would be redeployed, so no task would read the recovered instance's endpoint (they read it at start), /ready and the write check would pass on the old instance, and the old instance would be renamed under the API still using it; set recovery.ecs to {"clusterArn": ..., "serviceNames": [the API and every Celery service]} in cdk.json, then run the command again; nothing was changed`,
      );
      expect(error.exitCode).toBe(2);
      expect(ssm.commandCalls(PutParameterCommand)).toHaveLength(0);
      expect(secrets.commandCalls(PutSecretValueCommand)).toHaveLength(0);
      expect(renames()).toHaveLength(0);
      expect(events.commandCalls(PutEventsCommand)).toHaveLength(0);
      expect(await getRecovery(deps().store, id)).toEqual(before);
    },
  );

  it.each(['start', 'resume'] as const)(
    'refuses to %s a cutover whose killswitch SSM will not let it read (AccessDenied): exit 1, one line naming the parameter and the refusal, nothing changed, no "cutover started" event',
    async (mode) => {
      const id = await verifiedRecovery();
      if (mode === 'resume') await updateRecovery(deps().store, id, { status: 'cutting-over', journal: [] });
      const before = await getRecovery(deps().store, id);
      ssm.on(GetParameterCommand).rejects(Object.assign(new Error('User: alice is not authorized to perform: ssm:GetParameter'), { name: 'AccessDeniedException' }));

      const error = await operatorErrorOf(cutover(deps(), id, settings({ readinessUrl: readyUrl }), 'alice', mode));

      expect(error.message).toBe(
        `recover cutover${mode === 'resume' ? ' --resume' : ''}: cannot read the killswitch ${KILLSWITCH}: AccessDeniedException: User: alice is not authorized to perform: ssm:GetParameter; nothing was changed`,
      );
      expect(error.exitCode).toBe(1);
      expect(ssm.commandCalls(PutParameterCommand)).toHaveLength(0);
      expect(secrets.commandCalls(PutSecretValueCommand)).toHaveLength(0);
      expect(events.commandCalls(PutEventsCommand)).toHaveLength(0);
      expect(await getRecovery(deps().store, id)).toEqual(before);
    },
  );

  it('refuses, before touching production, a secret that holds no host (an RDS-managed rds! secret: username and password only)', async () => {
    const id = await verifiedRecovery();
    secretValue = { username: 'atmr', password: 's3cret' };

    await expect(cutover(deps(), id, settings({ readinessUrl: readyUrl }), 'alice')).rejects.toThrow(
      `recover cutover: secret ${SECRET} holds no host and port ("username", "password"): the API cannot be reading its database host there (an RDS-managed secret holds only the credentials, and RDS rewrites it at each rotation); set recovery.endpoint to where the API reads it ({"kind": "ssmParameter", ...}); nothing was changed`,
    );
    expect(ssm.commandCalls(PutParameterCommand)).toHaveLength(0);
    expect(secrets.commandCalls(PutSecretValueCommand)).toHaveLength(0);
    expect(ecs.commandCalls(UpdateServiceCommand)).toHaveLength(0);
    expect((await getRecovery(deps().store, id)).status).toBe('verified');
  });

  it('a cutover that is done stays done when EventBridge refuses its "Recovery Cut Over" event: reported, not thrown', async () => {
    const id = await verifiedRecovery();
    events.on(PutEventsCommand).callsFake((input: { Entries: { DetailType: string }[] }) =>
      input.Entries[0].DetailType === 'Recovery Cut Over' ? { FailedEntryCount: 1, Entries: [{ ErrorCode: 'InternalFailure', ErrorMessage: 'try again' }] } : { FailedEntryCount: 0, Entries: [{ EventId: '1' }] },
    );

    const result = await cutover(deps(), id, settings({ readinessUrl: readyUrl }), 'alice');

    expect(result.ok).toBe(true);
    expect(result.steps.at(-1)).toMatchObject({ step: 'announce', outcome: 'failed', detail: expect.stringMatching(/^production runs on the copy; the "Recovery Cut Over" event or the RecoverySeconds metric failed: .*EventBridge refused/) });
    expect((await getRecovery(deps().store, id)).status).toBe('cut-over');
  });

  it('goes on when EventBridge refuses the "Recovery Cutover Started" event, reporting it, instead of stopping with the record cutting-over and the lease held', async () => {
    const id = await verifiedRecovery();
    events.on(PutEventsCommand).callsFake((input: { Entries: { DetailType: string }[] }) =>
      input.Entries[0].DetailType === 'Recovery Cutover Started' ? { FailedEntryCount: 1, Entries: [{ ErrorCode: 'InternalFailure', ErrorMessage: 'try again' }] } : { FailedEntryCount: 0, Entries: [{ EventId: '1' }] },
    );

    const result = await cutover(deps(), id, settings({ readinessUrl: readyUrl }), 'alice');

    expect(result.ok).toBe(true);
    expect(result.steps[0]).toMatchObject({ step: 'announce', outcome: 'failed', detail: expect.stringMatching(/"Recovery Cutover Started" event failed: .*EventBridge refused/) });
    expect((await getRecovery(deps().store, id)).status).toBe('cut-over');
  });

  it('switches an SSM parameter when the API reads its host there', async () => {
    const id = await verifiedRecovery();
    parameters.set('/atmr/prod/database-host', { value: `${OLD_HOST}:5432`, version: 3 });

    const result = await cutover(deps(), id, settings({ endpoint: { kind: 'ssmParameter', parameterName: '/atmr/prod/database-host' } }), 'alice');

    expect(result.ok).toBe(true);
    expect(parameters.get('/atmr/prod/database-host')!.value).toBe(`${NEW_HOST}:5432`);
    expect(secrets.commandCalls(PutSecretValueCommand)).toHaveLength(0);
  });

  it.each([
    ['a bare hostname', OLD_HOST],
    ['a URL', `postgresql://${OLD_HOST}:5432/atmr`],
    ['nothing', ''],
  ])('refuses, before touching production, an SSM parameter holding %s, not the host:port the cutover writes: one line naming the value, nothing changed', async (_what, value) => {
    const id = await verifiedRecovery();
    parameters.set('/atmr/prod/database-host', { value, version: 3 });

    const refusal = await operatorErrorOf(cutover(deps(), id, settings({ endpoint: { kind: 'ssmParameter', parameterName: '/atmr/prod/database-host' } }), 'alice'));

    expect(refusal).toMatchObject({
      exitCode: 2,
      message: `recover cutover: parameter /atmr/prod/database-host holds "${value}", not "host:port", the form the cutover writes there: after the switch the API would read a value of another form than it reads now and could reach no database; make the API read host:port there and store it so, or set recovery.endpoint to where the API reads its host, then run the command again; nothing was changed`,
    });
    expect(ssm.commandCalls(PutParameterCommand)).toHaveLength(0);
    expect(ecs.commandCalls(UpdateServiceCommand)).toHaveLength(0);
    expect(parameters.get('/atmr/prod/database-host')!.value).toBe(value);
    expect((await getRecovery(deps().store, id)).status).toBe('verified');
  });

  it('refuses an unverified recovery before changing anything', async () => {
    const id = await verifiedRecovery();
    await updateRecovery(deps().store, id, { status: 'verification-failed' });

    await expect(cutover(deps(), id, settings(), 'alice')).rejects.toThrow(
      `recover cutover: recovery ${id} is "verification-failed", expected verified or unverified or cutover-failed: only a verified recovery can be cut over (see "npx --no atmr-dr recover status ${id}")`,
    );
    expect(ssm.commandCalls(PutParameterCommand)).toHaveLength(0);
    expect(secrets.commandCalls(PutSecretValueCommand)).toHaveLength(0);
    expect(ecs.commandCalls(UpdateServiceCommand)).toHaveLength(0);
  });

  describe('a copy whose verification could not read its data in time ("unverified")', () => {
    const unread = { ok: false, unread: true, checkedAt: '2026-11-30T15:00:00.000Z', problems: [], rows: [{ check: 'rows in booking', production: '120', recovered: 'not read within 60 s (first reads of a fresh copy come from S3)', outcome: 'slow' as const }] };

    // Stored as records were before the report kept its cause (no unreadBy): the statement timeout's.
    it('is refused without --unverified, in one line saying what to do, before changing anything', async () => {
      const id = await verifiedRecovery();
      await updateRecovery(deps().store, id, { status: 'unverified', verification: unread });

      const error = (await cutover(deps(), id, settings(), 'alice').catch((e: unknown) => e)) as OperatorError;

      expect(error.message).toBe(
        `recover cutover: recovery ${id} is not verified: no count or critical query of the copy finished within the statement timeout; check its data by hand (psql on the copy with a longer statement_timeout: counts of the critical tables), then "npx --no atmr-dr recover cutover ${id} --unverified --yes" (the cutover still checks /ready and a write on the copy, and undoes itself if they fail), or "npx --no atmr-dr recover abandon ${id}"; nothing was changed`,
      );
      expect(error.exitCode).toBe(3);
      expect(ssm.commandCalls(PutParameterCommand)).toHaveLength(0);
      expect(secrets.commandCalls(PutSecretValueCommand)).toHaveLength(0);
      expect((await getRecovery(deps().store, id)).status).toBe('unverified');
    });

    it('is cut over with --unverified, its /ready and write checks run as always', async () => {
      const id = await verifiedRecovery();
      await updateRecovery(deps().store, id, { status: 'unverified', verification: unread });

      const result = await cutover(deps(), id, settings({ readinessUrl: readyUrl }), 'alice', 'start', { unverified: true });

      expect(result.ok).toBe(true);
      expect(result.steps.filter((s) => s.outcome === 'done').map((s) => s.step)).toEqual(expect.arrayContaining([CUTOVER_STEPS.ready, CUTOVER_STEPS.write]));
      expect((await getRecovery(deps().store, id)).status).toBe('cut-over');
    });

    it.each(['verified', 'cutover-failed'] as const)(
      '--unverified on a copy whose verification read its data ("%s") is refused in one line naming the flag and the fix, exit 2, before changing anything',
      async (status) => {
        const id = await verifiedRecovery();
        await updateRecovery(deps().store, id, { status });
        const before = await getRecovery(deps().store, id);

        const error = await operatorErrorOf(cutover(deps(), id, settings(), 'alice', 'start', { unverified: true }));

        expect(error.message).toBe(
          `recover cutover: --unverified: recovery ${id} is "${status}": its verification read the copy's data, so there is nothing to cut over unverified: run "npx --no atmr-dr recover cutover ${id} --yes" without it; nothing changed`,
        );
        expect(error.exitCode).toBe(2);
        expect(ssm.commandCalls(PutParameterCommand)).toHaveLength(0);
        expect(secrets.commandCalls(PutSecretValueCommand)).toHaveLength(0);
        expect(await getRecovery(deps().store, id)).toEqual(before);
      },
    );

    it('after a failed (undone) cutover of it, a new one still needs --unverified', async () => {
      const id = await verifiedRecovery();
      await updateRecovery(deps().store, id, { status: 'cutover-failed', verification: unread });

      await expect(cutover(deps(), id, settings(), 'alice')).rejects.toThrow(`recover cutover: recovery ${id} is not verified`);
      expect(ssm.commandCalls(PutParameterCommand)).toHaveLength(0);
    });
  });

  it('does not take a /ready that redirects (to a sign-in page answering 200) for ready: the cutover fails and is undone', async () => {
    const id = await verifiedRecovery();
    readyStatus = 302;

    const result = await cutover(deps(), id, settings({ readinessUrl: readyUrl }), 'alice');

    expect(result.ok).toBe(false);
    expect(result.error).toMatch(/\/ready did not answer 200 within 0 s \(last: HTTP 302\)/);
    expect(result.steps.find((s) => s.step === 'check /ready')?.outcome).toBe('failed');
  });

  it('failing half-way (/ready never 200) sets the endpoint back, redeploys on it, restores the killswitch, and reports each change', async () => {
    const id = await verifiedRecovery();
    readyStatus = 503;

    const result = await cutover(deps(), id, settings({ readinessUrl: readyUrl }), 'alice');

    expect(result.ok).toBe(false);
    expect(result.error).toMatch(/\/ready did not answer 200 within 0 s \(last: HTTP 503\)/);
    expect(result.steps.map((s) => [s.step, s.outcome])).toEqual(UNDONE_AFTER_READY_FAILED);
    expect(secretValue).toEqual({ username: 'atmr', password: 's3cret', host: OLD_HOST, port: 5432, dbname: 'atmr' });
    expect(ecs.commandCalls(UpdateServiceCommand)).toHaveLength(4);
    expect(killswitchModes()).toEqual(['maintenance', 'normal']);
    expect(renames()).toHaveLength(0);
    expect((await getRecovery(deps().store, id)).status).toBe('cutover-failed');
    expect(events.commandCalls(PutEventsCommand).map((c) => c.args[0].input.Entries![0].DetailType)).toEqual(['Recovery Cutover Started', 'Recovery Cutover Failed']);
  });

  it('keeps a killswitch an operator had set before (degraded) when undoing', async () => {
    const id = await verifiedRecovery();
    parameters.set(KILLSWITCH, { value: JSON.stringify({ mode: 'degraded', reason: 'OSRM down', actor: 'bob', updatedAt: '2026-11-30T13:00:00.000Z', expiresAt: null }), version: 4 });
    // The cutover's deployment (on the copy) fails; the undo's, on the previous endpoint, completes.
    fakeEcs({ rollout: () => (secretValue.host === NEW_HOST ? { rolloutState: 'FAILED', rolloutStateReason: 'tasks failed to start', runningCount: 0 } : {}) });

    const result = await cutover(deps(), id, settings(), 'alice');

    expect(result.ok).toBe(false);
    expect(result.error).toBe('ECS service atmr-api: deployment failed (tasks failed to start)');
    expect(JSON.parse(parameters.get(KILLSWITCH)!.value)).toMatchObject({ mode: 'degraded', reason: 'OSRM down', actor: 'bob' });
  });

  describe('a killswitch someone changes during the cutover', () => {
    const HOLD = { mode: 'maintenance', reason: 'HOLD: copy is missing bookings, do not reopen', actor: 'bob', updatedAt: '2026-11-30T14:20:00.000Z', expiresAt: null };
    /** bob's write, landing as a version of its own. */
    const bobWrites = () => parameters.set(KILLSWITCH, { value: JSON.stringify(HOLD), version: parameters.get(KILLSWITCH)!.version + 1 });

    const said = `NOT reopened: the killswitch is maintenance (set by bob: ${HOLD.reason}) since the cutover's maintenance: left as is; see "npx --no atmr-dr killswitch status", and lift it with "npx --no atmr-dr killswitch disable" once whoever set it agrees`;

    it('a hold set during the redeploy is left as it is, and the cutover stops there: the old instance is not renamed (bob may go back to it), the copy keeps its recovery tag, the record stays cutting-over with the lease released', async () => {
      const id = await verifiedRecovery();
      fakeEcs({ onUpdate: (service) => service === 'atmr-api' && bobWrites() });

      const result = await cutover(deps(), id, settings({ readinessUrl: readyUrl }), 'alice');

      expect(JSON.parse(parameters.get(KILLSWITCH)!.value)).toEqual(HOLD);
      expect(killswitchModes()).toEqual(['maintenance']);
      expect(result.steps.find((s) => s.step === CUTOVER_STEPS.reopen)).toMatchObject({ outcome: 'by-hand', detail: said });
      expect(result.steps.map((s) => s.step)).not.toContain(CUTOVER_STEPS.rename);
      expect(result).toMatchObject({ ok: false, interrupted: true, status: 'cutting-over', notReopened: said });
      expect(result.error).toBe(
        `production runs on atmr-prod-pitr-202611301402 but was ${said}; the cutover stops there: atmr-prod is NOT renamed and atmr-prod-pitr-202611301402 keeps its recovery tag (whoever holds users out may go back to atmr-prod); once the hold is lifted, --resume renames atmr-prod and finishes; if they take production back to atmr-prod instead, --undo gives the steps by hand and, once they are done, closes the cutover`,
      );
      expect(renames()).toHaveLength(0);
      expect(rds.commandCalls(AddTagsToResourceCommand)).toHaveLength(0);
      expect(rds.commandCalls(RemoveTagsFromResourceCommand)).toHaveLength(0);
      expect(protections()).toHaveLength(0);
      const record = await getRecovery(deps().store, id);
      expect(record.status).toBe('cutting-over');
      expect(record.leaseOwner).toBeUndefined();
      expect(record.journal!.find((e) => e.step === CUTOVER_STEPS.reopen)).toMatchObject({ state: 'by-hand', detail: said });
      const last = events.commandCalls(PutEventsCommand).at(-1)!.args[0].input.Entries![0];
      expect(last.DetailType).toBe('Recovery Cutover Interrupted');
      expect((JSON.parse(last.Detail!) as { summary: string }).summary).toContain(said);
      // The event reaches a page as written: its command names the environment.
      expect((JSON.parse(last.Detail!) as { summary: string }).summary).toMatch(new RegExp(`\\(npx --no atmr-dr recover cutover ${id} --env drill --resume \\| --undo\\)$`));
    });

    it('--undo after the stop at a hold is refused, saying it stopped at a hold (not that the killswitch was reopened) and how to go back to the old instance by hand: nothing is changed', async () => {
      // Arrange: the cutover stopped at bob's hold
      const id = await verifiedRecovery();
      fakeEcs({ onUpdate: (service) => service === 'atmr-api' && bobWrites() });
      await cutover(deps(), id, settings(), 'alice');
      const updates = ecs.commandCalls(UpdateServiceCommand).length;
      const stoppedAt = (await getRecovery(deps().store, id)).journal!.find((e) => e.step === CUTOVER_STEPS.reopen)!.startedAt;

      // Act
      const undo = undoCutover(deps(), id, settings(), 'alice');

      // Assert: only the hold keeps users off the copy; an undo would lose what they write once it is
      // lifted. Going back by hand: the endpoint to the value journaled before the switch, the
      // services redeployed and stable, the killswitch lifted only then.
      const cluster = 'arn:aws:ecs:eu-west-3:111111111111:cluster/atmr';
      await expect(undo).rejects.toMatchObject({
        exitCode: 3,
        message:
          `recover cutover --undo: recovery ${id}: its cutover stopped at ${stoppedAt} at someone's hold on the killswitch (${said.slice('NOT reopened: '.length)}); only that hold keeps users off atmr-prod-pitr-202611301402, and writes they make there once it is lifted would be lost by going back: the undo is refused until the API's endpoint names atmr-prod again; ` +
          `finish with "npx --no atmr-dr recover cutover ${id} --resume --yes" once the hold is lifted; or go back to atmr-prod by hand while the hold keeps users out: ` +
          `(1) keep users out all along: "npx --no atmr-dr killswitch status" shows the hold and its expiry; unless it is a maintenance with no expiry, set one: "npx --no atmr-dr killswitch enable --mode maintenance --reason ... --expires never"; ` +
          `(2) point the API back at atmr-prod: "host" and "port" of secret ${SECRET} set to ${OLD_HOST}:5432; ` +
          `(3) redeploy atmr-api, atmr-celery-worker and wait until they are stable: "aws ecs update-service --cluster ${cluster} --service atmr-api --force-new-deployment", "aws ecs update-service --cluster ${cluster} --service atmr-celery-worker --force-new-deployment", then "aws ecs wait services-stable --cluster ${cluster} --services atmr-api atmr-celery-worker"; ` +
          `(4) only then let users in ("npx --no atmr-dr killswitch disable --reason ..."); atmr-prod-pitr-202611301402 is left as it is; then close the cutover with "npx --no atmr-dr recover cutover ${id} --undo --yes" (it finds production back on atmr-prod: nothing to set back, the killswitch left as it is)`,
      });
      expect(secretValue.host).toBe(NEW_HOST);
      expect(ecs.commandCalls(UpdateServiceCommand)).toHaveLength(updates);
      expect(JSON.parse(parameters.get(KILLSWITCH)!.value)).toEqual(HOLD);
      expect((await getRecovery(deps().store, id)).status).toBe('cutting-over');
    });

    it('--undo after a stop at a degraded value bob set (it serves users, on the copy) is refused as after a reopening: they may have written there, going back loses it; step (1) sets a maintenance', async () => {
      // Arrange: bob sets degraded during the redeploy; the cutover stops there
      const id = await verifiedRecovery();
      const degraded = { ...HOLD, mode: 'degraded', reason: 'pic de charge' };
      fakeEcs({ onUpdate: (service) => service === 'atmr-api' && parameters.set(KILLSWITCH, { value: JSON.stringify(degraded), version: parameters.get(KILLSWITCH)!.version + 1 }) });
      await cutover(deps(), id, settings(), 'alice');
      const stoppedAt = (await getRecovery(deps().store, id)).journal!.find((e) => e.step === CUTOVER_STEPS.reopen)!.startedAt;

      // Act
      const error = await operatorErrorOf(undoCutover(deps(), id, settings(), 'alice'));

      // Assert
      expect(error.exitCode).toBe(3);
      expect(error.message).toMatch(
        new RegExp(
          `^recover cutover --undo: recovery ${id}: its cutover stopped at ${stoppedAt} at someone's hold on the killswitch \\(the killswitch is degraded \\(set by bob: pic de charge\\) since the cutover's maintenance: [^;]*; [^)]*\\), ` +
            `but a degraded killswitch serves users: they may have written on atmr-prod-pitr-202611301402 since it was set: going back to atmr-prod would lose those writes, so the undo is refused until the API's endpoint names atmr-prod again; ` +
            `finish with "npx --no atmr-dr recover cutover ${id} --resume --yes" once the hold is lifted; to go back all the same, losing them, by hand: ` +
            `\\(1\\) keep users out all along: "npx --no atmr-dr killswitch status" shows the hold and its expiry; unless it is a maintenance with no expiry, set one: "npx --no atmr-dr killswitch enable --mode maintenance --reason \\.\\.\\. --expires never"; \\(2\\) `,
        ),
      );
      expect(error.message).not.toContain('only that hold keeps users off');
      expect(secretValue.host).toBe(NEW_HOST);
      expect(JSON.parse(parameters.get(KILLSWITCH)!.value)).toEqual(degraded);
    });

    it('--resume while the hold is still there stops again, nothing renamed; once bob lifts it, --resume renames the old instance and finishes', async () => {
      const id = await verifiedRecovery();
      fakeEcs({ onUpdate: (service) => service === 'atmr-api' && bobWrites() });
      await cutover(deps(), id, settings(), 'alice');

      const again = await cutover(deps(), id, settings(), 'alice', 'resume');

      expect(again).toMatchObject({ ok: false, status: 'cutting-over', notReopened: said });
      expect(renames()).toHaveLength(0);
      const lifted = { mode: 'normal', reason: 'copy checked, let them in', actor: 'bob', updatedAt: '2026-11-30T14:40:00.000Z', expiresAt: null };
      parameters.set(KILLSWITCH, { value: JSON.stringify(lifted), version: parameters.get(KILLSWITCH)!.version + 1 });

      const resumed = await cutover(deps(), id, settings(), 'alice', 'resume');

      expect(resumed).toMatchObject({ ok: true, status: 'cut-over' });
      expect(resumed.notReopened).toBeUndefined();
      expect(resumed.steps.find((s) => s.step === CUTOVER_STEPS.reopen)).toMatchObject({ outcome: 'done', detail: expect.stringMatching(/^already reopened by bob/) });
      expect(renames()).toHaveLength(1);
      expect(resumed.steps.map((s) => s.step).slice(-3)).toEqual([CUTOVER_STEPS.rename, CUTOVER_STEPS.protect, CUTOVER_STEPS.untag]);
      expect(JSON.parse(parameters.get(KILLSWITCH)!.value)).toEqual(lifted);
      expect((await getRecovery(deps().store, id)).status).toBe('cut-over');
    });

    describe('production taken back to the old instance by hand after the stop at the hold, as the undo\'s refusal says', () => {
      const backOnOld = { mode: 'normal', reason: 'back on atmr-prod', actor: 'bob', updatedAt: '2026-11-30T15:00:00.000Z', expiresAt: null };
      /** The cutover stopped at bob's hold, then (2) the endpoint set back, (3) the services redeployed, (4) bob let users in. */
      async function takenBackByHand(): Promise<string> {
        const id = await verifiedRecovery();
        fakeEcs({ onUpdate: (service) => service === 'atmr-api' && secretValue.host === NEW_HOST && bobWrites() });
        await cutover(deps(), id, settings(), 'alice');
        secretValue = { ...secretValue, host: OLD_HOST, port: 5432 };
        parameters.set(KILLSWITCH, { value: JSON.stringify(backOnOld), version: parameters.get(KILLSWITCH)!.version + 1 });
        return id;
      }

      it('--resume stops before the reopening (exit 3, one line): atmr-prod, production again, is not renamed; the killswitch is left as bob set it', async () => {
        const id = await takenBackByHand();
        const writes = ssm.commandCalls(PutParameterCommand).length;

        const error = await operatorErrorOf(cutover(deps(), id, settings(), 'carol', 'resume'));

        expect([error.exitCode, error.message]).toEqual([
          3,
          `recover cutover --resume: recovery ${id}: secret ${SECRET} host reads ${OLD_HOST}:5432 again, as before the cutover, not ${NEW_HOST}:5432 (atmr-prod-pitr-202611301402): production was taken back to atmr-prod by hand; nothing renamed, the cutover stops here: close it with "npx --no atmr-dr recover cutover ${id} --undo --yes"`,
        ]);
        expect(renames()).toHaveLength(0);
        expect(rds.commandCalls(AddTagsToResourceCommand)).toHaveLength(0);
        expect(rds.commandCalls(RemoveTagsFromResourceCommand)).toHaveLength(0);
        expect(protections()).toHaveLength(0);
        expect(ssm.commandCalls(PutParameterCommand)).toHaveLength(writes);
        expect(JSON.parse(parameters.get(KILLSWITCH)!.value)).toEqual(backOnOld);
        const record = await getRecovery(deps().store, id);
        expect([record.status, record.leaseOwner]).toEqual(['cutting-over', undefined]);
        expect(record.journal!.find((e) => e.step === CUTOVER_STEPS.reopen)).toMatchObject({ state: 'by-hand', detail: said });
        // The team, told the cutover resumed, is told it stopped, with the same line.
        const last = events.commandCalls(PutEventsCommand).at(-1)!.args[0].input.Entries![0];
        expect([last.DetailType, (JSON.parse(last.Detail!) as { summary: string }).summary]).toEqual(['Recovery Cutover Interrupted', error.message]);
      });

      it('--undo closes the cutover: nothing to set back, the killswitch left as bob set it, every step undone, cutover-failed (no point of no return left for abandon)', async () => {
        const id = await takenBackByHand();
        const writes = ssm.commandCalls(PutParameterCommand).length;

        const undone = await undoCutover(deps(), id, settings(), 'alice');

        expect(undone).toMatchObject({ ok: false, status: 'cutover-failed', error: 'cutover interrupted and undone by alice' });
        expect(undone.steps.find((s) => s.step === CUTOVER_STEPS.endpoint)).toMatchObject({ outcome: 'undone', detail: `secret ${SECRET} host still ${OLD_HOST}:5432: nothing to set back` });
        expect(undone.steps.find((s) => s.step === CUTOVER_STEPS.maintenance)).toMatchObject({ outcome: 'skipped', detail: 'now normal (set by bob: back on atmr-prod) since the cutover: left as is' });
        expect(ssm.commandCalls(PutParameterCommand)).toHaveLength(writes);
        expect(JSON.parse(parameters.get(KILLSWITCH)!.value)).toEqual(backOnOld);
        expect(secretValue.host).toBe(OLD_HOST);
        expect(renames()).toHaveLength(0);
        const record = await getRecovery(deps().store, id);
        expect([record.status, record.leaseOwner]).toEqual(['cutover-failed', undefined]);
        expect(record.journal!.every((e) => e.state === 'undone')).toBe(true);
        expect(reopeningStarted(record.journal)).toBeUndefined();
        // bob's hold alone kept users off the copy: had it expired first, they wrote there.
        const warning = `users may have written on atmr-prod-pitr-202611301402 before production was taken back to atmr-prod: those writes are not on atmr-prod; atmr-prod-pitr-202611301402 is left as it is, and "npx --no atmr-dr recover abandon ${id}" deletes it (after a final snapshot): look for them there first`;
        expect(undone.warning).toBe(warning);
        const last = events.commandCalls(PutEventsCommand).at(-1)!.args[0].input.Entries![0];
        expect([last.DetailType, (JSON.parse(last.Detail!) as { summary: string }).summary]).toEqual(['Recovery Cutover Undone', `Recovery ${id}: cutover undone by alice; 2 change(s) undone, 0 undo(s) failed; WARNING: ${warning}`]);
      });

      it("--undo whose redeploy fails after users were let in on atmr-prod does not say they are kept in maintenance: the killswitch step says what it found (bob's normal, left as is), only the redeploy is left for --undo", async () => {
        // Arrange: production taken back by hand, bob let users in; the undo's redeploy then fails
        const id = await takenBackByHand();
        fakeEcs({ rollout: () => ({ rolloutState: 'FAILED', rolloutStateReason: 'tasks failed to start' }) });

        // Act
        const undone = await undoCutover(deps(), id, settings(), 'alice');

        // Assert
        expect(undone.steps.find((s) => s.step === CUTOVER_STEPS.redeploy)).toMatchObject({ outcome: 'undo-failed' });
        expect(undone.steps.find((s) => s.step === CUTOVER_STEPS.maintenance)).toMatchObject({ outcome: 'skipped', detail: 'now normal (set by bob: back on atmr-prod) since the cutover: left as is' });
        expect(JSON.parse(parameters.get(KILLSWITCH)!.value)).toEqual(backOnOld);
        const summary = (JSON.parse(events.commandCalls(PutEventsCommand).at(-1)!.args[0].input.Entries![0].Detail!) as { summary: string }).summary;
        expect(summary).not.toContain('stays in maintenance');
        const record = await getRecovery(deps().store, id);
        expect(record.journal!.filter((e) => e.state !== 'undone').map((e) => [e.step, e.state])).toEqual([[CUTOVER_STEPS.redeploy, 'undo-failed']]);
      });

      it('--undo whose redeploy fails while the killswitch cannot be read says its state is unknown, never that production stays in maintenance', async () => {
        // Arrange: production taken back by hand, bob let users in; the undo's redeploy fails, SSM throttles the killswitch read
        const id = await takenBackByHand();
        fakeEcs({ rollout: () => ({ rolloutState: 'FAILED', rolloutStateReason: 'tasks failed to start' }) });
        ssm.on(GetParameterCommand, { Name: KILLSWITCH }).rejects(Object.assign(new Error('Rate exceeded'), { name: 'ThrottlingException' }));

        // Act
        const undone = await undoCutover(deps(), id, settings(), 'alice');

        // Assert
        expect(undone.steps.find((s) => s.step === CUTOVER_STEPS.maintenance)).toMatchObject({ outcome: 'undo-failed', detail: expect.stringMatching(/^not reopened \(the killswitch could not be read: ThrottlingException: Rate exceeded\)/) });
        expect(JSON.parse(parameters.get(KILLSWITCH)!.value)).toEqual(backOnOld);
        const summary = (JSON.parse(events.commandCalls(PutEventsCommand).at(-1)!.args[0].input.Entries![0].Detail!) as { summary: string }).summary;
        expect(summary).not.toContain('maintenance until');
        expect(summary).toMatch(/; 1 change\(s\) undone, 2 undo\(s\) failed; the killswitch's state is unknown \(could not be read\): check it with "npx --no atmr-dr killswitch status"/);
      });

      it('set to another value (an RDS Proxy in front of the copy, maybe): --resume stops naming both ways out, not --undo alone, which stays refused; following either way then works', async () => {
        const id = await takenBackByHand();
        const PROXY = 'atmr-proxy.proxy-abcdefghijkl.eu-west-3.rds.amazonaws.com';
        secretValue = { ...secretValue, host: PROXY, port: 5432 };

        const error = await operatorErrorOf(cutover(deps(), id, settings(), 'carol', 'resume'));

        expect([error.exitCode, error.message]).toEqual([
          3,
          `recover cutover --resume: recovery ${id}: secret ${SECRET} host reads "${PROXY}:5432", neither ${NEW_HOST}:5432 (atmr-prod-pitr-202611301402) that the cutover set nor ${OLD_HOST}:5432 (atmr-prod) from before it: someone changed it by hand; nothing renamed, the cutover stops here: ` +
            `to finish on atmr-prod-pitr-202611301402, point it back at atmr-prod-pitr-202611301402: "host" and "port" of secret ${SECRET} set to ${NEW_HOST}:5432, then "npx --no atmr-dr recover cutover ${id} --resume --yes"; ` +
            `or, to go back to atmr-prod, point it at atmr-prod: "host" and "port" of secret ${SECRET} set to ${OLD_HOST}:5432, then "npx --no atmr-dr recover cutover ${id} --undo --yes"`,
        ]);
        expect(renames()).toHaveLength(0);
        const last = events.commandCalls(PutEventsCommand).at(-1)!.args[0].input.Entries![0];
        expect([last.DetailType, (JSON.parse(last.Detail!) as { summary: string }).summary]).toEqual(['Recovery Cutover Interrupted', error.message]);
        // Not taken back: the proxy may reach the copy, and an undo closing the cutover would let abandon delete it.
        expect((await operatorErrorOf(undoCutover(deps(), id, settings(), 'alice'))).exitCode).toBe(3);
        expect((await getRecovery(deps().store, id)).status).toBe('cutting-over');

        secretValue = { ...secretValue, host: OLD_HOST };
        expect(await undoCutover(deps(), id, settings(), 'alice')).toMatchObject({ status: 'cutover-failed' });
        expect(secretValue.host).toBe(OLD_HOST);
      });

      it('set to another value during the redeploy, no hold anywhere: the stop (exit 3), then --undo leaves the endpoint as is, redeploys nothing onto it and keeps users out (maintenance), until it names atmr-prod again; the undo then redeploys the services on it before it lets users in', async () => {
        const id = await verifiedRecovery();
        const PROXY = 'atmr-proxy.proxy-abcdefghijkl.eu-west-3.rds.amazonaws.com';
        const killswitchMode = () => (JSON.parse(parameters.get(KILLSWITCH)!.value) as { mode: string }).mode;
        fakeEcs({ onUpdate: (service) => service === 'atmr-api' && secretValue.host === NEW_HOST && (secretValue = { ...secretValue, host: PROXY }) });
        expect((await operatorErrorOf(cutover(deps(), id, settings(), 'alice'))).exitCode).toBe(3);
        expect(killswitchMode()).toBe('maintenance');

        const redeploysBefore = ecs.commandCalls(UpdateServiceCommand).length;

        const undone = await undoCutover(deps(), id, settings(), 'alice');

        // No task restarted onto the proxy, nor the redeploy journaled undone "on the previous endpoint".
        expect(ecs.commandCalls(UpdateServiceCommand)).toHaveLength(redeploysBefore);
        expect(undone.steps.find((s) => s.step === CUTOVER_STEPS.redeploy)).toBeUndefined();
        expect(undone.steps.find((s) => s.step === CUTOVER_STEPS.endpoint)).toMatchObject({
          outcome: 'undo-failed',
          detail: `secret ${SECRET} host is now "${PROXY}:5432", neither ${NEW_HOST}:5432 (atmr-prod-pitr-202611301402) that the cutover set nor ${OLD_HOST}:5432 (atmr-prod) from before it: left as is, and users kept out; point it back at atmr-prod: "host" and "port" of secret ${SECRET} set to ${OLD_HOST}:5432, then "npx --no atmr-dr recover cutover ${id} --undo --yes"`,
        });
        expect(killswitchMode()).toBe('maintenance');
        expect(secretValue.host).toBe(PROXY);
        const record = await getRecovery(deps().store, id);
        expect(record.journal!.find((e) => e.step === CUTOVER_STEPS.endpoint)?.state).toBe('undo-failed');

        secretValue = { ...secretValue, host: OLD_HOST };
        const hostsAtRedeploy: string[] = [];
        fakeEcs({ onUpdate: () => void hostsAtRedeploy.push(String(secretValue.host)) });
        expect(await undoCutover(deps(), id, settings(), 'alice')).toMatchObject({ status: 'cutover-failed' });
        // Every service restarted on atmr-prod (its tasks had read the proxy) before users are let in.
        expect(hostsAtRedeploy).toEqual([OLD_HOST, OLD_HOST]);
        expect(killswitchMode()).toBe('normal');
        expect((await getRecovery(deps().store, id)).journal!.every((e) => e.state === 'undone')).toBe(true);
      });

      it('a secret with no "port" before the cutover: the refusal says to set its host back only, and the host set back (any case, the port the cutover wrote left) is taken back: --resume offers --undo, which closes the cutover', async () => {
        secretValue = { username: 'atmr', password: 's3cret', host: OLD_HOST, dbname: 'atmr' };
        const id = await verifiedRecovery();
        fakeEcs({ onUpdate: (service) => service === 'atmr-api' && secretValue.host === NEW_HOST && bobWrites() });
        await cutover(deps(), id, settings(), 'alice');
        expect(secretValue).toMatchObject({ host: NEW_HOST, port: 5432 });
        const refusal = await operatorErrorOf(undoCutover(deps(), id, settings(), 'alice'));
        expect(refusal.message).toContain(`(2) point the API back at atmr-prod: "host" of secret ${SECRET} set to ${OLD_HOST}; (3)`);
        secretValue = { ...secretValue, host: OLD_HOST.toUpperCase() };
        parameters.set(KILLSWITCH, { value: JSON.stringify(backOnOld), version: parameters.get(KILLSWITCH)!.version + 1 });

        const stop = await operatorErrorOf(cutover(deps(), id, settings(), 'carol', 'resume'));
        expect([stop.exitCode, stop.message]).toEqual([
          3,
          `recover cutover --resume: recovery ${id}: secret ${SECRET} host reads ${OLD_HOST.toUpperCase()}:5432 again, as before the cutover, not ${NEW_HOST}:5432 (atmr-prod-pitr-202611301402): production was taken back to atmr-prod by hand; nothing renamed, the cutover stops here: close it with "npx --no atmr-dr recover cutover ${id} --undo --yes"`,
        ]);

        const undone = await undoCutover(deps(), id, settings(), 'alice');

        expect(undone).toMatchObject({ status: 'cutover-failed', error: 'cutover interrupted and undone by alice' });
        expect(undone.steps.find((s) => s.step === CUTOVER_STEPS.endpoint)).toMatchObject({ outcome: 'undone', detail: `secret ${SECRET} host still ${OLD_HOST.toUpperCase()}:5432: nothing to set back` });
        expect(secretValue).toMatchObject({ host: OLD_HOST.toUpperCase(), port: 5432 });
        expect(renames()).toHaveLength(0);
        expect(reopeningStarted((await getRecovery(deps().store, id)).journal)).toBeUndefined();
      });
    });

    it('normal set by bob during the redeploy (a killswitch disable) is no hold: the reopen step says production was already reopened by him, with no advice to disable', async () => {
      const id = await verifiedRecovery();
      const lifted = { mode: 'normal', reason: 'copy checked, let them in', actor: 'bob', updatedAt: '2026-11-30T14:20:00.000Z', expiresAt: null };
      fakeEcs({ onUpdate: (service) => service === 'atmr-api' && parameters.set(KILLSWITCH, { value: JSON.stringify(lifted), version: parameters.get(KILLSWITCH)!.version + 1 }) });

      const result = await cutover(deps(), id, settings({ readinessUrl: readyUrl }), 'alice');

      expect(JSON.parse(parameters.get(KILLSWITCH)!.value)).toEqual(lifted);
      expect(result.steps.find((s) => s.step === CUTOVER_STEPS.reopen)).toMatchObject({
        outcome: 'done',
        detail: "already reopened by bob (normal: copy checked, let them in) since the cutover's maintenance: left as is",
      });
      expect(result).toMatchObject({ ok: true, status: 'cut-over' });
      expect(result.notReopened).toBeUndefined();
      const summary = (JSON.parse(events.commandCalls(PutEventsCommand).at(-1)!.args[0].input.Entries![0].Detail!) as { summary: string }).summary;
      expect(summary).not.toMatch(/NOT reopened|killswitch disable/);
    });

    it('a maintenance bob set during the redeploy whose expiry has passed is no hold (every reader takes it for normal): the reopen step says users are served by its expiry, and the cutover finishes', async () => {
      const id = await verifiedRecovery();
      const expired = { ...HOLD, expiresAt: new Date(Date.now() - 60_000).toISOString() };
      fakeEcs({ onUpdate: (service) => service === 'atmr-api' && parameters.set(KILLSWITCH, { value: JSON.stringify(expired), version: parameters.get(KILLSWITCH)!.version + 1 }) });

      const result = await cutover(deps(), id, settings({ readinessUrl: readyUrl }), 'alice');

      expect(result.steps.find((s) => s.step === CUTOVER_STEPS.reopen)).toMatchObject({
        outcome: 'done',
        detail: `already reopened by the expiry of bob's maintenance (${HOLD.reason}; expired at ${expired.expiresAt}: normal to every reader) since the cutover's maintenance: left as is`,
      });
      expect(result).toMatchObject({ ok: true, status: 'cut-over' });
      expect(result.notReopened).toBeUndefined();
      expect(renames()).toHaveLength(1);
      expect(JSON.parse(parameters.get(KILLSWITCH)!.value)).toEqual(expired);
    });

    it("a write landing right after the cutover's maintenance (writeKillswitch's conflict): maintenance is not in effect, so nothing is switched; the undo leaves that write as it is", async () => {
      const id = await verifiedRecovery();
      const history: string[] = [];
      ssm.on(PutParameterCommand).callsFake((input: { Name: string; Value: string }) => {
        const version = parameters.get(input.Name)!.version + 1;
        parameters.set(input.Name, { value: input.Value, version });
        history[version] = input.Value;
        if ((JSON.parse(input.Value) as { mode: string }).mode === 'maintenance') bobWrites();
        return { Version: version };
      });
      ssm.on(GetParameterCommand).callsFake((input: { Name: string }) => {
        const [name, version] = input.Name.split(/:(?=\d+$)/);
        const p = parameters.get(name)!;
        return { Parameter: { Name: name, Value: version ? history[Number(version)] : p.value, Version: version ? Number(version) : p.version } };
      });
      bobWrites();

      const result = await cutover(deps(), id, settings({ readinessUrl: readyUrl }), 'alice');

      expect(result.ok).toBe(false);
      expect(result.steps[0]).toMatchObject({ step: CUTOVER_STEPS.maintenance, outcome: 'failed', detail: expect.stringMatching(/^maintenance not in effect: conflict: another write \(v\d+ by bob: maintenance, "HOLD: /) });
      expect(secretValue.host).toBe(OLD_HOST);
      expect(ecs.commandCalls(UpdateServiceCommand)).toHaveLength(0);
      expect(JSON.parse(parameters.get(KILLSWITCH)!.value)).toEqual(HOLD);
    });

    it('a reopening that fails (SSM refuses it): interrupted, naming both states production may be in and the command for each', async () => {
      const id = await verifiedRecovery();
      refuseReopening();

      const result = await cutover(deps(), id, settings(), 'alice');

      expect(result).toMatchObject({ ok: false, interrupted: true, status: 'cutting-over' });
      expect(result.error).toBe(
        'User: alice is not authorized to perform: ssm:PutParameter: production may still be in maintenance (the reopening may not have happened: --resume reopens it, then renames the old instance), or the killswitch may be open on the new instance already (production taking writes there: --resume finishes the rename); "npx --no atmr-dr killswitch status" tells which',
      );
      // What `recover status` shows later, to whoever is on call then: the same line.
      expect((await getRecovery(deps().store, id)).cutoverError).toBe(result.error);
    });

    it("a reopening refused with a long message: the record keeps the operator's line, the SDK's text cut at 500 characters, the way on whole", async () => {
      // Arrange: SSM refuses the reopening with a 5000-character message
      const id = await verifiedRecovery();
      ssm.on(PutParameterCommand).callsFake((input: { Name: string; Value: string }) => {
        if ((JSON.parse(input.Value) as { mode: string }).mode === 'normal') throw Object.assign(new Error(`User: alice is not authorized ${'x'.repeat(5000)}`), { name: 'AccessDeniedException' });
        const version = parameters.get(input.Name)!.version + 1;
        parameters.set(input.Name, { value: input.Value, version });
        return { Version: version };
      });

      // Act
      const result = await cutover(deps(), id, settings(), 'alice');

      // Assert
      const stored = (await getRecovery(deps().store, id)).cutoverError!;
      expect(stored).toBe(result.error);
      expect(stored.indexOf(': production may still be in maintenance')).toBe(500);
      expect(stored).toMatch(/; "npx --no atmr-dr killswitch status" tells which$/);
    });
  });

  it("stops before the reopening when the API's endpoint cannot be read after the switch (exit 1, one line): nothing renamed, users kept out, the cutover left cutting-over for --resume, which finishes once the read works", async () => {
    // Arrange: Secrets Manager refuses reads once the secret names the copy (the check before the reopening)
    const id = await verifiedRecovery();
    let refuse = true;
    secrets.on(GetSecretValueCommand).callsFake(() => {
      if (refuse && secretValue.host === NEW_HOST) throw Object.assign(new Error('User: alice is not authorized to perform: secretsmanager:GetSecretValue'), { name: 'AccessDeniedException' });
      return { SecretString: JSON.stringify(secretValue) };
    });

    // Act
    const error = await operatorErrorOf(cutover(deps(), id, settings(), 'alice'));

    // Assert
    expect([error.exitCode, error.message]).toEqual([
      1,
      `recover cutover: recovery ${id}: cannot read where the API's database endpoint points (secret ${SECRET} host: AccessDeniedException: User: alice is not authorized to perform: secretsmanager:GetSecretValue), so cannot tell whether production was taken back to atmr-prod by hand: nothing renamed, the cutover stops here; fix the cause, then run "npx --no atmr-dr recover cutover ${id} --resume --yes"`,
    ]);
    expect(renames()).toHaveLength(0);
    expect(rds.commandCalls(RemoveTagsFromResourceCommand)).toHaveLength(0);
    expect(protections()).toHaveLength(0);
    expect(killswitchModes()).toEqual(['maintenance']);
    const record = await getRecovery(deps().store, id);
    expect([record.status, record.leaseOwner]).toEqual(['cutting-over', undefined]);
    expect(record.journal!.find((e) => e.step === CUTOVER_STEPS.reopen)).toBeUndefined();
    const last = events.commandCalls(PutEventsCommand).at(-1)!.args[0].input.Entries![0];
    expect([last.DetailType, (JSON.parse(last.Detail!) as { summary: string }).summary]).toEqual(['Recovery Cutover Interrupted', error.message]);

    refuse = false;
    const resumed = await cutover(deps(), id, settings(), 'alice', 'resume');

    expect(resumed).toMatchObject({ ok: true, status: 'cut-over' });
    expect(renames()).toHaveLength(1);
    expect(killswitchModes()).toEqual(['maintenance', 'normal']);
  });

  it('fails at once when ECS\'s circuit breaker rolled the forced deployment back (it is FAILED, no longer PRIMARY), naming its reason, instead of waiting out the timeout', async () => {
    // Arrange: on the copy the forced deployment fails; ECS makes a rollback deployment PRIMARY and
    // keeps the failed one listed, FAILED. On the previous endpoint (the undo) it completes.
    const id = await verifiedRecovery();
    const ecsFake = fakeEcs();
    ecs.on(DescribeServicesCommand).callsFake((input: { services: string[] }) => {
      return {
        services: input.services.map((serviceName) => {
          const [forced] = ecsFake.ids(serviceName);
          const onCopy = secretValue.host === NEW_HOST;
          return {
            serviceName,
            deployments: onCopy
              ? [
                  { id: `${serviceName}/rollback`, status: 'PRIMARY', rolloutState: 'IN_PROGRESS', runningCount: 0, desiredCount: 2 },
                  { id: forced, status: 'ACTIVE', rolloutState: 'FAILED', rolloutStateReason: 'ECS deployment circuit breaker: tasks failed to start', runningCount: 0, desiredCount: 2 },
                ]
              : [{ id: forced, status: 'PRIMARY', rolloutState: 'COMPLETED', runningCount: 2, desiredCount: 2 }],
          };
        }),
      };
    });

    // Act
    const result = await cutover(deps(), id, settings({ readinessUrl: readyUrl }), 'alice');

    // Assert: the failure named, not a wait run out; the undo's wait then completes
    expect(result.ok).toBe(false);
    expect(result.error).toBe('ECS service atmr-api: deployment failed (ECS deployment circuit breaker: tasks failed to start)');
    expect(killswitchModes()).toEqual(['maintenance', 'normal']);
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
    // The API still reads the copy's host: traffic stays closed.
    expect(failed.steps.at(-1)).toMatchObject({ step: 'killswitch maintenance', outcome: 'undo-failed' });
    expect(killswitchModes()).toEqual(['maintenance']);
    // A new attempt would journal the copy's host as "previous": refused until the undo is finished.
    // The redeploy too is left to undo: tasks restarted while the endpoint still names the copy would read it again.
    await expect(cutover(deps(), id, settings({ readinessUrl: readyUrl }), 'alice')).rejects.toThrow(
      `recover cutover: recovery ${id} has changes of a failed cutover not undone (killswitch maintenance, switch database endpoint, redeploy ECS services): run "npx --no atmr-dr recover cutover ${id} --undo --yes" first`,
    );
    secrets.on(PutSecretValueCommand).callsFake((input: { SecretString: string }) => {
      secretValue = JSON.parse(input.SecretString) as Record<string, unknown>;
      return {};
    });
    const undone = await undoCutover(deps(), id, settings({ readinessUrl: readyUrl }), 'alice');
    expect(undone.steps.map((s) => [s.step, s.outcome])).toEqual([
      ['switch database endpoint', 'undone'],
      ['redeploy ECS services', 'undone'],
      ['killswitch maintenance', 'undone'],
    ]);
    expect(secretValue.host).toBe(OLD_HOST);
    expect(killswitchModes()).toEqual(['maintenance', 'normal']);
    readyStatus = 200;
    const retried = await cutover(deps(), id, settings({ readinessUrl: readyUrl }), 'alice');
    expect(retried.ok).toBe(true);
  });
});

/**
 * An undo after the redeploy: every task read the copy's endpoint and users may write to the copy
 * until each one runs on the previous endpoint again. Traffic may reopen only then. The same fake
 * ECS (eventually consistent reads included) serves the cutover's own redeploy, whose /ready and
 * write check must not run on the old tasks.
 */
describe('undoing a cutover whose tasks ran on the copy', () => {
  const SERVICES = ['atmr-api', 'atmr-celery-worker'];
  /** Which database each ECS call, and each killswitch write, happened under: the order that matters. */
  let log: string[];
  /** Polls of DescribeServices that still see the latest forced deployment IN_PROGRESS. */
  let pendingPolls: number;
  /**
   * ECS reads are eventually consistent: after an UpdateService while the endpoint is on `staleOn`,
   * this many polls still show the deployment before it, PRIMARY and COMPLETED (the state before).
   */
  let stale: { on?: 'copy' | 'old'; polls: number };
  /**
   * What ECS does once the endpoint is back on the old instance (the undo's deployment). `otherPrimary`:
   * someone else's deployment is PRIMARY (and COMPLETED), the undo's one ACTIVE under it.
   * `whenForced`: runs at each UpdateService the undo sends.
   */
  let onUndo: { refuseUpdate?: boolean; rollout?: 'FAILED' | 'IN_PROGRESS'; otherPrimary?: boolean; whenForced?: () => void };
  const endpointNow = () => (secretValue.host === OLD_HOST ? 'old' : 'copy');
  let deployments: FakeEcs;

  beforeEach(() => {
    log = [];
    pendingPolls = 0;
    stale = { polls: 0 };
    onUndo = {};
    deployments = fakeEcs({
      onUpdate: (service) => {
        log.push(`UpdateService ${service} (endpoint on ${endpointNow()})`);
        if (endpointNow() === 'old') onUndo.whenForced?.();
        if (endpointNow() === 'old' && onUndo.refuseUpdate) throw Object.assign(new Error('User is not authorized to perform ecs:UpdateService'), { name: 'AccessDeniedException' });
        pendingPolls = 1;
        if (stale.on === endpointNow()) stale.polls = 1;
      },
    });
    ecs.on(DescribeServicesCommand).callsFake((input: { services: string[] }) => {
      let rolloutState: 'COMPLETED' | 'IN_PROGRESS' | 'FAILED' = pendingPolls > 0 ? 'IN_PROGRESS' : 'COMPLETED';
      if (endpointNow() === 'old' && onUndo.rollout) rolloutState = onUndo.rollout;
      const staleRead = stale.polls > 0;
      const otherPrimary = endpointNow() === 'old' && onUndo.otherPrimary === true;
      // Only the wait's polls (every service at once) count and are logged; a read of one service
      // (a redeploy looking at its deployments before forcing one) is neither.
      if (input.services.length === SERVICES.length) {
        if (staleRead) {
          stale.polls -= 1;
          log.push('DescribeServices stale: the previous deployment PRIMARY COMPLETED');
        } else {
          pendingPolls = Math.max(0, pendingPolls - 1);
          log.push(otherPrimary ? "DescribeServices someone else's deployment PRIMARY COMPLETED" : `DescribeServices ${rolloutState}`);
        }
      }
      return {
        services: SERVICES.map((serviceName) => {
          const [latest, previous] = deployments.ids(serviceName);
          if (staleRead) return { serviceName, deployments: [{ id: previous, status: 'PRIMARY', rolloutState: 'COMPLETED', runningCount: 2, desiredCount: 2 }] };
          if (otherPrimary) {
            return {
              serviceName,
              deployments: [
                { id: `${serviceName}/someone-else`, status: 'PRIMARY', rolloutState: 'COMPLETED', runningCount: 2, desiredCount: 2 },
                { id: latest, status: 'ACTIVE', rolloutState: 'IN_PROGRESS', runningCount: 0, desiredCount: 2 },
              ],
            };
          }
          return {
            serviceName,
            deployments: [
              { id: latest, status: 'PRIMARY', rolloutState, rolloutStateReason: rolloutState === 'FAILED' ? 'tasks failed to start' : undefined, runningCount: rolloutState === 'COMPLETED' ? 2 : 0, desiredCount: 2 },
              ...(rolloutState === 'COMPLETED' ? [] : [{ id: previous, status: 'ACTIVE', rolloutState: 'COMPLETED', runningCount: 2, desiredCount: 2 }]),
            ],
          };
        }),
      };
    });
    ssm.on(PutParameterCommand).callsFake((input: { Name: string; Value: string }) => {
      const version = (parameters.get(input.Name)?.version ?? 0) + 1;
      parameters.set(input.Name, { value: input.Value, version });
      if (input.Name === KILLSWITCH) log.push(`killswitch ${(JSON.parse(input.Value) as { mode: string }).mode}`);
      return { Version: version };
    });
  });

  const killswitchMode = () => (JSON.parse(parameters.get(KILLSWITCH)!.value) as { mode: string }).mode;

  it('reopens traffic only once the services are stable on a deployment forced after the endpoint was set back, polling like the cutover', async () => {
    const id = await verifiedRecovery();
    readyStatus = 503;
    const sleeps: number[] = [];

    const result = await cutover(deps({ sleep: async (ms) => void sleeps.push(ms) }), id, settings({ readinessUrl: readyUrl, serviceStableTimeoutSeconds: 900 }), 'alice');

    expect(result).toMatchObject({ ok: false, status: 'cutover-failed' });
    const lastUpdate = log.findLastIndex((line) => line.startsWith('UpdateService'));
    expect(log.slice(lastUpdate - 1)).toEqual([
      'UpdateService atmr-api (endpoint on old)',
      'UpdateService atmr-celery-worker (endpoint on old)',
      'DescribeServices IN_PROGRESS',
      'DescribeServices COMPLETED',
      'killswitch normal',
    ]);
    // One poll interval in the cutover's wait, one in the undo's: the same polling (lease renewed at each).
    expect(sleeps).toEqual([10_000, 10_000]);
    expect(result.steps.map((s) => [s.step, s.outcome])).toEqual(UNDONE_AFTER_READY_FAILED);
    expect(result.steps.find((s) => s.outcome === 'undone' && s.step === CUTOVER_STEPS.redeploy)!.detail).toBe('atmr-api, atmr-celery-worker redeployed and stable on the previous endpoint');
    expect(killswitchMode()).toBe('normal');
  });

  it("reopens traffic only once the undo's own deployment is PRIMARY and COMPLETED, not on a stale read still showing the deployment on the copy", async () => {
    const id = await verifiedRecovery();
    readyStatus = 503;
    stale.on = 'old';

    const result = await cutover(deps(), id, settings({ readinessUrl: readyUrl, serviceStableTimeoutSeconds: 900 }), 'alice');

    expect(result).toMatchObject({ ok: false, status: 'cutover-failed' });
    const lastUpdate = log.findLastIndex((line) => line.startsWith('UpdateService'));
    expect(log.slice(lastUpdate - 1)).toEqual([
      'UpdateService atmr-api (endpoint on old)',
      'UpdateService atmr-celery-worker (endpoint on old)',
      'DescribeServices stale: the previous deployment PRIMARY COMPLETED',
      'DescribeServices IN_PROGRESS',
      'DescribeServices COMPLETED',
      'killswitch normal',
    ]);
    expect(result.steps.map((s) => [s.step, s.outcome])).toEqual(UNDONE_AFTER_READY_FAILED);
  });

  it("the cutover's redeploy too: /ready is probed only once its own deployment is PRIMARY and COMPLETED, not on a stale read still showing the old tasks'", async () => {
    const id = await verifiedRecovery();
    stale.on = 'copy';
    const probing: typeof fetch = (input, init) => {
      log.push('GET /ready');
      return fetch(input, init);
    };

    const result = await cutover(deps({ fetch: probing }), id, settings({ readinessUrl: readyUrl, serviceStableTimeoutSeconds: 900 }), 'alice');

    expect(result).toMatchObject({ ok: true, status: 'cut-over' });
    expect(log.slice(log.findIndex((line) => line.startsWith('UpdateService')))).toEqual([
      'UpdateService atmr-api (endpoint on copy)',
      'UpdateService atmr-celery-worker (endpoint on copy)',
      'DescribeServices stale: the previous deployment PRIMARY COMPLETED',
      'DescribeServices IN_PROGRESS',
      'DescribeServices COMPLETED',
      'GET /ready',
      'killswitch normal',
    ]);
  });

  it.each([
    ['UpdateService is refused', { refuseUpdate: true }, /^User is not authorized to perform ecs:UpdateService: /],
    ['the deployment fails', { rollout: 'FAILED' as const }, /^ECS service atmr-api: deployment failed \(tasks failed to start\): /],
    ['the services are not stable in time', { rollout: 'IN_PROGRESS' as const }, /^ECS services not stable after 900 s: atmr-api, atmr-celery-worker: /],
    [
      "someone else's deployment is PRIMARY (not the undo's) until the wait ends",
      { otherPrimary: true },
      new RegExp(
        `^ECS services not stable after 900 s: ${['atmr-api', 'atmr-celery-worker']
          .map((service) => `${service} \\(its PRIMARY deployment is ${service}/someone-else, not ${service}/2 that this redeploy started: someone else deployed since\\? look at the service's deployments\\)`)
          .join(', ')}: `,
      ),
    ],
  ])('when %s, traffic stays closed: the killswitch is left in maintenance, both steps undo-failed; a second --undo finishes', async (_when, failure, detail) => {
    const id = await verifiedRecovery();
    readyStatus = 503;
    onUndo = failure;
    // The wait ends on its deadline: each poll is 10 s on this clock.
    let clock = Date.now();
    const now = () => new Date(clock);

    const result = await cutover(deps({ now, sleep: async (ms) => void (clock += ms) }), id, settings({ readinessUrl: readyUrl, serviceStableTimeoutSeconds: 900 }), 'alice');

    expect(killswitchModes()).toEqual(['maintenance']);
    expect(killswitchMode()).toBe('maintenance');
    expect(secretValue.host).toBe(OLD_HOST);
    expect(result).toMatchObject({ ok: false, status: 'cutover-failed', error: `${readyUrl} did not answer 200 within 0 s (last: HTTP 503)` });
    const undoSteps = result.steps.slice(4);
    expect(undoSteps.map((s) => [s.step, s.outcome])).toEqual([
      ['switch database endpoint', 'undone'],
      ['redeploy ECS services', 'undo-failed'],
      ['killswitch maintenance', 'undo-failed'],
    ]);
    expect(undoSteps[1].detail).toMatch(detail);
    expect(undoSteps[1].detail).toMatch(
      new RegExp(`: the services may still run tasks on the copy; once the cause is fixed, "npx --no atmr-dr recover cutover ${id} --undo --yes" redeploys them and waits again$`),
    );
    expect(undoSteps[2].detail).toBe(
      `kept in maintenance: traffic reopens only once the services run on the previous endpoint (redeploy ECS services not undone); "npx --no atmr-dr recover cutover ${id} --undo --yes" reopens it after the redeploy`,
    );
    const record = await getRecovery(deps().store, id);
    expect(record.status).toBe('cutover-failed');
    expect(record.leaseToken).toBeUndefined();
    expect(record.journal!.filter((e) => e.state !== 'undone').map((e) => [e.step, e.state])).toEqual([
      ['killswitch maintenance', 'undo-failed'],
      ['redeploy ECS services', 'undo-failed'],
    ]);
    // A new cutover is refused until the undo is finished.
    await expect(cutover(deps(), id, settings({ readinessUrl: readyUrl }), 'alice')).rejects.toThrow(/has changes of a failed cutover not undone \(killswitch maintenance, redeploy ECS services\)/);

    onUndo = {};
    log = [];
    const finished = await undoCutover(deps(), id, settings({ readinessUrl: readyUrl, serviceStableTimeoutSeconds: 900 }), 'alice');

    expect(finished.steps.map((s) => [s.step, s.outcome])).toEqual([
      ['redeploy ECS services', 'undone'],
      ['killswitch maintenance', 'undone'],
    ]);
    expect(log).toEqual(['UpdateService atmr-api (endpoint on old)', 'UpdateService atmr-celery-worker (endpoint on old)', 'DescribeServices IN_PROGRESS', 'DescribeServices COMPLETED', 'killswitch normal']);
    expect((await getRecovery(deps().store, id)).journal!.every((e) => e.state === 'undone')).toBe(true);
  });

  it("Ctrl-C during the undo's wait stops it with traffic still closed, the lease released, and --undo to finish", async () => {
    const id = await verifiedRecovery();
    readyStatus = 503;
    let stop = false;
    // The operator presses Ctrl-C while the undo's redeploy rolls out.
    onUndo = { rollout: 'IN_PROGRESS', whenForced: () => void (stop = true) };

    const result = await cutover(deps({ stopRequested: () => stop }), id, settings({ readinessUrl: readyUrl, serviceStableTimeoutSeconds: 900 }), 'alice');

    expect(killswitchMode()).toBe('maintenance');
    expect(result.steps.slice(4).map((s) => [s.step, s.outcome])).toEqual([
      ['switch database endpoint', 'undone'],
      ['redeploy ECS services', 'undo-failed'],
      ['killswitch maintenance', 'undo-failed'],
    ]);
    expect(result.steps[5].detail).toMatch(/^stopped at the operator's request before the services were stable: the services may still run tasks on the copy; /);
    const record = await getRecovery(deps().store, id);
    expect([record.status, record.leaseToken]).toEqual(['cutover-failed', undefined]);
  });
});

/**
 * The CLI process running a cutover dies (laptop closed, killed, network lost). Dying is simulated
 * at the ops-state table: the process's Nth write to the record never leaves (it hangs forever), so
 * every write before it landed and nothing after it happens. With 9 steps each journaled before and
 * after, plus the lease and the final status, a full cutover makes 20 writes: killing it at each one
 * in turn covers every step boundary and every "acted but not yet journaled" moment.
 */
describe('an interrupted cutover', () => {
  const WRITES = 20;
  const REOPEN_STARTED = 12;
  const RENAME_STARTED = 14;
  const RENAME_DONE = 15;
  // Deletion protection (writes 16, 17) comes before the untag: the on-call may modify only a tagged copy.
  const UNTAG_STARTED = 18;
  const UNTAG_DONE = 19;
  let instances: Map<string, DBInstance>;
  const later = (ms: number) => () => new Date(Date.now() + ms);
  const stale = { now: later((LEASE_SECONDS + 60) * 1000) };

  beforeEach(() => {
    instances = new Map([
      ['atmr-prod', sourceInstance()],
      [
        'atmr-prod-pitr-202611301402',
        { DBInstanceIdentifier: 'atmr-prod-pitr-202611301402', DBInstanceArn: 'arn:aws:rds:eu-west-3:111111111111:db:atmr-prod-pitr-202611301402', DBInstanceStatus: 'available', Endpoint: { Address: NEW_HOST, Port: 5432 } },
      ],
    ]);
    // The copy carries the tags the restore gave it, for the recovery the test started.
    const copyTags = () => [
      { Key: 'atmr-dr:purpose', Value: 'recovery' },
      { Key: 'atmr-dr:recovery-id', Value: latestId },
    ];
    rds.on(DescribeDBInstancesCommand).callsFake((input: { DBInstanceIdentifier: string }) => {
      const instance = instances.get(input.DBInstanceIdentifier);
      if (!instance) throw notFound();
      return { DBInstances: [instance.DBInstanceIdentifier === 'atmr-prod-pitr-202611301402' ? { ...instance, TagList: instance.TagList ?? copyTags() } : instance] };
    });
    rds.on(RemoveTagsFromResourceCommand).callsFake((input: { ResourceName: string; TagKeys: string[] }) => {
      const [name, instance] = [...instances].find(([, i]) => i.DBInstanceArn === input.ResourceName)!;
      instances.set(name, { ...instance, TagList: (instance.TagList ?? copyTags()).filter((t) => !input.TagKeys.includes(t.Key!)) });
      return {};
    });
    rds.on(AddTagsToResourceCommand).resolves({});
    rds.on(ModifyDBInstanceCommand).callsFake((input: { DBInstanceIdentifier: string; NewDBInstanceIdentifier?: string; DeletionProtection?: boolean }) => {
      const instance = instances.get(input.DBInstanceIdentifier)!;
      if (!input.NewDBInstanceIdentifier) {
        instances.set(input.DBInstanceIdentifier, { ...instance, DeletionProtection: input.DeletionProtection });
        return {};
      }
      instances.delete(input.DBInstanceIdentifier);
      instances.set(input.NewDBInstanceIdentifier, { ...instance, DBInstanceIdentifier: input.NewDBInstanceIdentifier });
      return {};
    });
    // As RDS does: a deletion-protected instance is not deleted.
    rds.on(DeleteDBInstanceCommand).callsFake((input: { DBInstanceIdentifier: string }) => {
      const instance = instances.get(input.DBInstanceIdentifier)!;
      if (instance.DeletionProtection) throw Object.assign(new Error('Cannot delete protected DB Instance, please disable deletion protection and try again.'), { name: 'InvalidParameterCombination' });
      instances.set(input.DBInstanceIdentifier, { ...instance, DBInstanceStatus: 'deleting' });
      return {};
    });
  });

  /** The ops-state table as a process that dies at its `killAt`th update sees it; `gate` resolves when that write may leave after all (the process woke up), or rejects: the write refused, the process lives on. */
  function dyingStore(killAt: number, gate?: Promise<void>): { store: CutoverDeps['store']; writes: () => number } {
    let writes = 0;
    const ddb = {
      send: (command: unknown) => {
        if (command instanceof UpdateCommand) {
          writes += 1;
          if (writes === killAt) return gate ? gate.then(() => dynamo.ddb.send(command)) : new Promise(() => undefined);
        }
        return dynamo.ddb.send(command as UpdateCommand);
      },
    } as unknown as DynamoDBDocumentClient;
    return { store: { ddb, tableName: dynamo.tableName }, writes: () => writes };
  }

  /**
   * The ops-state table refusing each update `fails` says fails (asked at every update, in order): as
   * DynamoDB throttling it, the process living on; or, `killed`, hanging it: the process dead there.
   */
  function failingStore(fails: (command: UpdateCommand) => boolean, how: 'throttled' | 'killed' = 'throttled'): CutoverDeps['store'] {
    const ddb = {
      send: (command: unknown) => {
        if (command instanceof UpdateCommand && fails(command)) {
          return how === 'killed' ? new Promise(() => undefined) : Promise.reject(Object.assign(new Error('Throughput exceeds the current capacity of your table'), { name: 'ProvisionedThroughputExceededException' }));
        }
        return dynamo.ddb.send(command as UpdateCommand);
      },
    } as unknown as DynamoDBDocumentClient;
    return { ddb, tableName: dynamo.tableName };
  }

  /** Starts a cutover that dies at its `killAt`th write; resolves once it is dead (the write hangs). */
  async function killedCutover(killAt: number, gate?: Promise<void>): Promise<{ id: string; dead: Promise<unknown> }> {
    const id = await verifiedRecovery();
    const dying = dyingStore(killAt, gate);
    const dead = cutover(deps({ store: dying.store, leaseOwner: 'alice (pid 4242 on laptop)' }), id, settings({ readinessUrl: readyUrl }), 'alice');
    for (let i = 0; i < 500 && dying.writes() < killAt; i += 1) await new Promise((resolve) => setTimeout(resolve, 10));
    expect(dying.writes()).toBe(killAt);
    return { id, dead };
  }

  const killswitchNow = () => JSON.parse(parameters.get(KILLSWITCH)!.value) as { mode: string };

  /** `atmr-dr recover abandon` of the recovery (no workflow ARN recorded: found ended by its name), at `now`. */
  const abandon = (id: string, now?: () => Date) => {
    sfn.reset();
    sfn.on(DescribeExecutionCommand).resolves({ status: 'SUCCEEDED' });
    const { rds: rdsClient, events: eventsClient, store, ssm: ssmClient, secretsManager } = deps();
    return abandonRecovery({ rds: rdsClient, sfn: new SFNClient({}), events: eventsClient, store, ssm: ssmClient, secretsManager, endpoint: settings().endpoint, ...(now && { now }) }, id, 'carol', 'atmr-prod', {
      stateMachineArn: 'arn:aws:states:eu-west-3:111111111111:stateMachine:atmr-dr-recovery',
    });
  };

  it(`makes ${WRITES} journal and lease writes in a full cutover`, async () => {
    const id = await verifiedRecovery();
    const counting = dyingStore(Number.POSITIVE_INFINITY);

    expect((await cutover(deps({ store: counting.store }), id, settings({ readinessUrl: readyUrl }), 'alice')).ok).toBe(true);

    expect(counting.writes()).toBe(WRITES);
  });

  it.each(Array.from({ length: WRITES - 1 }, (_, i) => i + 2))('killed at write %i: status shows the journal, --resume finishes the cutover', async (killAt) => {
    const { id } = await killedCutover(killAt);
    const journal = (await getRecovery(deps().store, id)).journal ?? [];
    expect((await getRecovery(deps().store, id)).status).toBe('cutting-over');
    // The journal says what was done (two writes per step after the lease): the step being written when it died is "started" or absent.
    expect(journal.filter((e) => e.state === 'done')).toHaveLength(Math.max(0, Math.floor((killAt - 2) / 2)));

    const resumed = await cutover(deps(stale), id, settings({ readinessUrl: readyUrl }), 'bob', 'resume');

    expect(resumed.ok).toBe(true);
    const record = await getRecovery(deps().store, id);
    expect(record.status).toBe('cut-over');
    expect(record.leaseToken).toBeUndefined();
    expect(record.journal!.map((e) => [e.step, e.state])).toEqual(Object.values(CUTOVER_STEPS).map((step) => [step, 'done']));
    expect(killswitchModes()[0]).toBe('maintenance');
    expect(killswitchModes().filter((m) => m === 'maintenance')).toHaveLength(1);
    expect(killswitchNow().mode).toBe('normal');
    expect(secretValue).toMatchObject({ host: NEW_HOST, port: 5432, password: 's3cret' });
    expect(renames()).toHaveLength(1);
    expect([...instances.keys()].sort()).toEqual(['atmr-prod-pitr-202611301402', expect.stringMatching(/^atmr-prod-replaced-\d{12}$/)]);
    expect(instances.get('atmr-prod-pitr-202611301402')!.TagList).toEqual([{ Key: 'atmr-dr:recovery-id', Value: id }]);
    expect(rds.commandCalls(DeleteDBInstanceCommand)).toHaveLength(0);
  });

  it.each(Array.from({ length: REOPEN_STARTED - 1 }, (_, i) => i + 2))('killed at write %i: --undo puts back the killswitch and the endpoint, redeploys, never touches the old instance', async (killAt) => {
    const { id } = await killedCutover(killAt);
    const switched = secretValue.host === NEW_HOST;

    const undone = await undoCutover(deps(stale), id, settings({ readinessUrl: readyUrl }), 'bob');

    expect(undone).toMatchObject({ ok: false, status: 'cutover-failed', error: 'cutover interrupted and undone by bob' });
    expect(undone.steps.every((s) => s.outcome === 'undone')).toBe(true);
    const record = await getRecovery(deps().store, id);
    expect(record.status).toBe('cutover-failed');
    expect(record.journal!.every((e) => e.state === 'undone')).toBe(true);
    expect(record.leaseToken).toBeUndefined();
    expect(killswitchNow().mode).toBe('normal');
    expect(secretValue).toEqual({ username: 'atmr', password: 's3cret', host: OLD_HOST, port: 5432, dbname: 'atmr' });
    if (switched) expect(ecs.commandCalls(UpdateServiceCommand).length).toBeGreaterThanOrEqual(2);
    expect(renames()).toHaveLength(0);
    expect(rds.commandCalls(DeleteDBInstanceCommand)).toHaveLength(0);
    expect(events.commandCalls(PutEventsCommand).map((c) => c.args[0].input.Entries![0].DetailType)).toContain('Recovery Cutover Undone');
    // Undone: a new cutover may start again from the first step.
    expect((await cutover(deps(), id, settings({ readinessUrl: readyUrl }), 'bob')).ok).toBe(true);
  });

  it('killed once the killswitch was reopened, then held by someone and resumed: the stop at the hold keeps that users may have written on the copy, and --undo is refused saying going back would lose their writes', async () => {
    // Arrange: the reopening wrote the killswitch (users in) and died before journaling it; bob then
    // holds users out, and a resume stops at his hold.
    const { id } = await killedCutover(REOPEN_STARTED + 1);
    const reopenedAt = (await getRecovery(deps().store, id)).journal!.find((e) => e.step === CUTOVER_STEPS.reopen)!.startedAt;
    const hold = { mode: 'maintenance', reason: 'HOLD: copy is missing bookings', actor: 'bob', updatedAt: '2026-11-30T14:40:00.000Z', expiresAt: null };
    parameters.set(KILLSWITCH, { value: JSON.stringify(hold), version: 20 });
    const earlier = `; an earlier attempt of "killswitch back" may have reopened the killswitch (left started at ${reopenedAt}): users may have written on atmr-prod-pitr-202611301402 since`;
    const stopped = await cutover(deps(stale), id, settings(), 'bob', 'resume');
    expect(stopped).toMatchObject({ ok: false, status: 'cutting-over', notReopened: expect.stringMatching(/^NOT reopened: the killswitch is maintenance \(set by bob/) });
    expect(stopped.notReopened!.endsWith(earlier)).toBe(true);
    // A second resume still held keeps it: the attempt that may have let users in is not forgotten.
    const again = await cutover(deps({ now: later((LEASE_SECONDS + 120) * 1000) }), id, settings(), 'bob', 'resume');
    expect(again.notReopened!.endsWith(earlier)).toBe(true);
    const stoppedAt = (await getRecovery(deps().store, id)).journal!.find((e) => e.step === CUTOVER_STEPS.reopen)!.startedAt;

    // Act
    const undo = undoCutover(deps(stale), id, settings(), 'bob');

    // Assert
    await expect(undo).rejects.toMatchObject({
      exitCode: 3,
      message: expect.stringContaining(
        `recover cutover --undo: recovery ${id}: its cutover stopped at ${stoppedAt} at someone's hold on the killswitch (the killswitch is maintenance (set by bob: HOLD: copy is missing bookings) since the cutover's maintenance: left as is; see "npx --no atmr-dr killswitch status", and lift it with "npx --no atmr-dr killswitch disable" once whoever set it agrees), ` +
          `but an earlier attempt of "killswitch back" may have reopened the killswitch (left started at ${reopenedAt}): users may have written on atmr-prod-pitr-202611301402 since: going back to atmr-prod would lose those writes, so the undo is refused until the API's endpoint names atmr-prod again; ` +
          `finish with "npx --no atmr-dr recover cutover ${id} --resume --yes" once the hold is lifted; to go back all the same, losing them, by hand: (1) keep users out all along`,
      ),
    });
    expect(secretValue.host).toBe(NEW_HOST);
    expect(JSON.parse(parameters.get(KILLSWITCH)!.value)).toEqual(hold);
    expect(renames()).toHaveLength(0);
  });

  it.each([REOPEN_STARTED + 1, REOPEN_STARTED + 2, WRITES])('killed at write %i (the killswitch reopened on the copy): --undo is refused, --resume is the way', async (killAt) => {
    const { id } = await killedCutover(killAt);

    await expect(undoCutover(deps(stale), id, settings(), 'bob')).rejects.toThrow(
      new RegExp(`^recover cutover --undo: recovery ${id}: the killswitch was reopened on atmr-prod-pitr-202611301402 at .*: production may have taken writes there and going back would lose them; finish with "npx --no atmr-dr recover cutover ${id} --resume --yes"$`),
    );
    expect(secretValue.host).toBe(NEW_HOST);
    expect((await cutover(deps(stale), id, settings({ readinessUrl: readyUrl }), 'bob', 'resume')).ok).toBe(true);
  });

  it("a reopening that failed, an --undo refused, then a --resume that finishes: the record keeps no error of the failed attempt, and keeps the workflow's (a \"Recovery Verified\" event not sent), which recover status prints", async () => {
    // Arrange: the workflow's error, as its report step records a refused event; SSM refuses the
    // reopening (the killswitch back to normal) until the resume
    const id = await verifiedRecovery();
    const workflowError = 'the "Recovery Verified" event or the RecoverySeconds metric failed: EventBridge down';
    await updateRecovery(deps().store, id, { error: workflowError });
    let reopeningRefused = true;
    ssm.on(PutParameterCommand).callsFake((input: { Name: string; Value: string }) => {
      if (reopeningRefused && (JSON.parse(input.Value) as { mode: string }).mode === 'normal') throw Object.assign(new Error('User: alice is not authorized to perform: ssm:PutParameter'), { name: 'AccessDeniedException' });
      const version = parameters.get(input.Name)!.version + 1;
      parameters.set(input.Name, { value: input.Value, version });
      return { Version: version };
    });
    expect(await cutover(deps(), id, settings(), 'alice')).toMatchObject({ ok: false, interrupted: true, status: 'cutting-over' });
    const failed = await getRecovery(deps().store, id);
    expect([failed.error, failed.cutoverError]).toEqual([workflowError, expect.stringMatching(/^User: alice is not authorized to perform: ssm:PutParameter/)]);
    await expect(undoCutover(deps(), id, settings(), 'bob')).rejects.toThrow(`recover cutover --undo: recovery ${id}: the killswitch was reopened on atmr-prod-pitr-202611301402 at `);
    reopeningRefused = false;

    // Act
    const resumed = await cutover(deps(), id, settings(), 'bob', 'resume');

    // Assert: `recover status` prints the record's errors whenever it has them
    expect(resumed.ok).toBe(true);
    const record = await getRecovery(deps().store, id);
    expect([record.status, record.error, record.cutoverError, record.leaseToken]).toEqual(['cut-over', workflowError, undefined, undefined]);
    expect(killswitchNow().mode).toBe('normal');
  });

  describe('killed once the killswitch was reopened, production then taken back to the old instance by hand', () => {

    /** What the closing undo warns of: users let in on the copy by the reopening, before the way back. */
    const wroteOnCopy = (id: string) =>
      `users may have written on atmr-prod-pitr-202611301402 before production was taken back to atmr-prod: those writes are not on atmr-prod; atmr-prod-pitr-202611301402 is left as it is, and "npx --no atmr-dr recover abandon ${id}" deletes it (after a final snapshot): look for them there first`;

    /** Killed once atmr-prod was renamed; the rename then put back by hand, and the endpoint: the recovery's id. */
    async function renamedAndPutBack(): Promise<string> {
      const { id } = await killedCutover(RENAME_DONE);
      secretValue = { ...secretValue, host: OLD_HOST, port: 5432 };
      const renamedTo = [...instances.keys()].find((name) => name.startsWith('atmr-prod-replaced-'))!;
      instances.set('atmr-prod', { ...instances.get(renamedTo)!, DBInstanceIdentifier: 'atmr-prod' });
      instances.delete(renamedTo);
      return id;
    }

    it('--resume stops before the rename (exit 3), offering --undo; --undo finds both instances under their names and closes the cutover (lock released, abandon allowed), renaming nothing and warning of the writes on the copy', async () => {
      // Arrange: killed before the rename was journaled; the endpoint set back to atmr-prod by hand
      const { id } = await killedCutover(RENAME_STARTED);
      secretValue = { ...secretValue, host: OLD_HOST, port: 5432 };
      const reopenedAt = (await getRecovery(deps().store, id)).journal!.find((e) => e.step === CUTOVER_STEPS.reopen)!.startedAt;
      const error = await operatorErrorOf(cutover(deps(stale), id, settings({ readinessUrl: readyUrl }), 'bob', 'resume'));
      expect([error.exitCode, error.message]).toEqual([
        3,
        `recover cutover --resume: recovery ${id}: secret ${SECRET} host reads ${OLD_HOST}:5432 again, as before the cutover, not ${NEW_HOST}:5432 (atmr-prod-pitr-202611301402): production was taken back to atmr-prod by hand; nothing renamed, the cutover stops here: the killswitch was reopened on atmr-prod-pitr-202611301402 at ${reopenedAt} (users may have written there, and those writes are not on atmr-prod): close it with "npx --no atmr-dr recover cutover ${id} --undo --yes" (it checks that atmr-prod and atmr-prod-pitr-202611301402 still have their names, and renames nothing)`,
      ]);
      const killswitchBefore = parameters.get(KILLSWITCH)!.value;

      // Act
      const undone = await undoCutover(deps(stale), id, settings(), 'bob');

      // Assert
      expect(undone).toMatchObject({ ok: false, status: 'cutover-failed', error: 'cutover interrupted and undone by bob', warning: wroteOnCopy(id) });
      expect(undone.steps.find((s) => s.step === CUTOVER_STEPS.reopen)).toMatchObject({
        outcome: 'skipped',
        detail: `production found back on atmr-prod (secret ${SECRET} host reads ${OLD_HOST}:5432), atmr-prod and atmr-prod-pitr-202611301402 under their names: left as is`,
      });
      expect(rds.commandCalls(DescribeDBInstancesCommand).map((c) => c.args[0].input.DBInstanceIdentifier)).toEqual(expect.arrayContaining(['atmr-prod', 'atmr-prod-pitr-202611301402']));
      expect(rds.commandCalls(ModifyDBInstanceCommand)).toHaveLength(0);
      expect([...instances.keys()].sort()).toEqual(['atmr-prod', 'atmr-prod-pitr-202611301402']);
      expect(parameters.get(KILLSWITCH)!.value).toBe(killswitchBefore);
      expect(secretValue.host).toBe(OLD_HOST);
      const record = await getRecovery(deps().store, id);
      expect([record.status, record.leaseOwner]).toEqual(['cutover-failed', undefined]);
      expect(record.journal!.every((e) => e.state === 'undone')).toBe(true);
      expect(reopeningStarted(record.journal)).toBeUndefined();
      const last = events.commandCalls(PutEventsCommand).at(-1)!.args[0].input.Entries![0];
      expect(last.DetailType).toBe('Recovery Cutover Undone');
      expect((JSON.parse(last.Detail!) as { summary: string }).summary).toContain(`; WARNING: ${wroteOnCopy(id)}`);
    });

    it('--undo after a rename that took effect is refused in one line naming what it found and the steps by hand, nothing changed; once atmr-prod is back under its name, --undo closes the cutover, the rename journaled as never in effect', async () => {
      // Arrange: killed once atmr-prod was renamed (the rename started, not journaled done); the endpoint set back by hand
      const { id } = await killedCutover(RENAME_DONE);
      secretValue = { ...secretValue, host: OLD_HOST, port: 5432 };
      const journal = (await getRecovery(deps().store, id)).journal!;
      const reopenedAt = journal.find((e) => e.step === CUTOVER_STEPS.reopen)!.startedAt;
      const rename = journal.find((e) => e.step === CUTOVER_STEPS.rename)!;
      const renamedTo = rename.undo!.renamedTo!;
      expect([rename.state, [...instances.keys()].sort()]).toEqual(['started', ['atmr-prod-pitr-202611301402', renamedTo]]);
      const modifies = rds.commandCalls(ModifyDBInstanceCommand).length;

      // Act
      const error = await operatorErrorOf(undoCutover(deps(stale), id, settings(), 'bob'));

      // Assert
      expect([error.exitCode, error.message]).toEqual([
        3,
        `recover cutover --undo: recovery ${id}: the killswitch was reopened on atmr-prod-pitr-202611301402 at ${reopenedAt} and the rename of atmr-prod was left started at ${rename.startedAt}; secret ${SECRET} host reads ${OLD_HOST}:5432 again (atmr-prod), but no instance is named atmr-prod: nothing changed, nothing renamed; ` +
          `by hand, either put atmr-prod back under its name (it may be ${renamedTo} now: "aws rds modify-db-instance --db-instance-identifier ${renamedTo} --new-db-instance-identifier atmr-prod --apply-immediately", then remove its atmr-dr:replaced-* tags), with atmr-prod-pitr-202611301402 still under its name, then run "npx --no atmr-dr recover cutover ${id} --undo --yes" again; ` +
          `or finish on atmr-prod-pitr-202611301402: point the API at it ("host" and "port" of secret ${SECRET} set to ${NEW_HOST}:5432), then "npx --no atmr-dr recover cutover ${id} --resume --yes"`,
      ]);
      expect(rds.commandCalls(ModifyDBInstanceCommand)).toHaveLength(modifies);
      expect(ecs.commandCalls(UpdateServiceCommand).length).toBe(2);
      expect(secretValue.host).toBe(OLD_HOST);
      const record = await getRecovery(deps().store, id);
      expect([record.status, record.leaseOwner, record.journal]).toEqual(['cutting-over', undefined, journal]);

      // The admin renames it back by hand.
      instances.set('atmr-prod', { ...instances.get(renamedTo)!, DBInstanceIdentifier: 'atmr-prod' });
      instances.delete(renamedTo);

      const undone = await undoCutover(deps(stale), id, settings(), 'bob');

      expect(undone).toMatchObject({ status: 'cutover-failed', warning: wroteOnCopy(id) });
      expect(undone.steps.find((s) => s.step === CUTOVER_STEPS.rename)).toMatchObject({
        outcome: 'undone',
        detail: `production found back on atmr-prod (secret ${SECRET} host reads ${OLD_HOST}:5432), atmr-prod and atmr-prod-pitr-202611301402 under their names: the rename never took effect (or was undone by hand), nothing renamed`,
      });
      expect(rds.commandCalls(ModifyDBInstanceCommand)).toHaveLength(modifies);
      const closed = await getRecovery(deps().store, id);
      expect([closed.status, closed.journal!.every((e) => e.state === 'undone')]).toEqual(['cutover-failed', true]);
    });

    it('--undo after a rename that took effect and the copy deleted by hand is refused naming both, with the one way left by hand and no "finish on" the deleted copy; once atmr-prod is back under its name, --undo closes the cutover', async () => {
      // Arrange: killed once atmr-prod was renamed; the endpoint set back by hand, then the copy deleted by hand
      const { id } = await killedCutover(RENAME_DONE);
      secretValue = { ...secretValue, host: OLD_HOST, port: 5432 };
      instances.delete('atmr-prod-pitr-202611301402');
      const journal = (await getRecovery(deps().store, id)).journal!;
      const reopenedAt = journal.find((e) => e.step === CUTOVER_STEPS.reopen)!.startedAt;
      const rename = journal.find((e) => e.step === CUTOVER_STEPS.rename)!;
      const renamedTo = rename.undo!.renamedTo!;
      expect([...instances.keys()]).toEqual([renamedTo]);

      // Act
      const error = await operatorErrorOf(undoCutover(deps(stale), id, settings(), 'bob'));

      // Assert
      expect([error.exitCode, error.message]).toEqual([
        3,
        `recover cutover --undo: recovery ${id}: the killswitch was reopened on atmr-prod-pitr-202611301402 at ${reopenedAt} and the rename of atmr-prod was left started at ${rename.startedAt}; secret ${SECRET} host reads ${OLD_HOST}:5432 again (atmr-prod), but no instance is named atmr-prod, and no instance is named atmr-prod-pitr-202611301402 (deleted by hand): nothing changed, nothing renamed; ` +
          `by hand, put atmr-prod back under its name (it may be ${renamedTo} now: "aws rds modify-db-instance --db-instance-identifier ${renamedTo} --new-db-instance-identifier atmr-prod --apply-immediately", then remove its atmr-dr:replaced-* tags), then run "npx --no atmr-dr recover cutover ${id} --undo --yes" again`,
      ]);
      expect(error.message).not.toContain('finish on');
      expect(rds.commandCalls(ModifyDBInstanceCommand).filter((c) => c.args[0].input.NewDBInstanceIdentifier === 'atmr-prod')).toHaveLength(0);
      expect(await getRecovery(deps().store, id)).toMatchObject({ status: 'cutting-over', journal });

      // The admin renames it back by hand.
      instances.set('atmr-prod', { ...instances.get(renamedTo)!, DBInstanceIdentifier: 'atmr-prod' });
      instances.delete(renamedTo);

      const undone = await undoCutover(deps(stale), id, settings(), 'bob');

      expect(undone).toMatchObject({ status: 'cutover-failed', error: 'cutover interrupted and undone by bob', warning: expect.stringContaining('no instance is named atmr-prod-pitr-202611301402 any more (deleted by hand)') });
      expect((await getRecovery(deps().store, id)).journal!.every((e) => e.state === 'undone')).toBe(true);
    });

    it('--undo whose read of the endpoint fails is refused with exit 1 naming the read error (not the exit-3 "finish with --resume"), nothing changed, the lease released', async () => {
      const { id } = await killedCutover(RENAME_STARTED);
      const journal = (await getRecovery(deps().store, id)).journal;
      secrets.on(GetSecretValueCommand).rejects(Object.assign(new Error(`User: bob is not authorized to perform: secretsmanager:GetSecretValue on resource: ${SECRET}`), { name: 'AccessDeniedException' }));

      const error = await operatorErrorOf(undoCutover(deps(stale), id, settings(), 'bob'));

      expect([error.exitCode, error.message]).toEqual([
        1,
        `recover cutover --undo: recovery ${id}: cannot read where the API's database endpoint points (secret ${SECRET} host: AccessDeniedException: User: bob is not authorized to perform: secretsmanager:GetSecretValue on resource: ${SECRET}), so cannot tell whether production was taken back to atmr-prod: nothing changed; fix the cause (your right to read it, recovery.endpoint), then run "npx --no atmr-dr recover cutover ${id} --undo --yes" again`,
      ]);
      const record = await getRecovery(deps().store, id);
      expect([record.status, record.leaseOwner, record.journal]).toEqual(['cutting-over', undefined, journal]);
    });

    it('--undo after the copy was protected and untagged is refused (exit 3) with the commands that give it back to abandon, nothing changed; once run by hand, --undo closes the cutover and abandon deletes the copy', async () => {
      // Arrange: the rename left by hand (the on-call's role refused), the copy protected and untagged, killed before the untag was journaled done; the endpoint set back by hand
      rds.on(AddTagsToResourceCommand).callsFake(() => Promise.reject(Object.assign(new Error('User: alice is not authorized to perform: rds:AddTagsToResource'), { name: 'AccessDenied' })));
      const { id } = await killedCutover(UNTAG_DONE);
      secretValue = { ...secretValue, host: OLD_HOST, port: 5432 };
      const journal = (await getRecovery(deps().store, id)).journal!;
      const reopenedAt = journal.find((e) => e.step === CUTOVER_STEPS.reopen)!.startedAt;
      const rename = journal.find((e) => e.step === CUTOVER_STEPS.rename)!;
      const copy = () => instances.get('atmr-prod-pitr-202611301402')!;
      expect([copy().DeletionProtection, copy().TagList]).toEqual([true, [{ Key: 'atmr-dr:recovery-id', Value: id }]]);
      const modifies = rds.commandCalls(ModifyDBInstanceCommand).length;

      // Act
      const error = await operatorErrorOf(undoCutover(deps(stale), id, settings(), 'bob'));

      // Assert
      expect([error.exitCode, error.message]).toEqual([
        3,
        `recover cutover --undo: recovery ${id}: the killswitch was reopened on atmr-prod-pitr-202611301402 at ${reopenedAt} and the rename of atmr-prod was left ${rename.state} at ${rename.startedAt}; secret ${SECRET} host reads ${OLD_HOST}:5432 again (atmr-prod), but atmr-prod-pitr-202611301402 is not tagged atmr-dr:purpose=recovery and atmr-prod-pitr-202611301402 is deletion-protected: nothing changed, nothing renamed; ` +
          `by hand, either give atmr-prod-pitr-202611301402 back to abandon (someone allowed to change it runs: "aws rds add-tags-to-resource --resource-name ${copy().DBInstanceArn} --tags Key=atmr-dr:purpose,Value=recovery", then "aws rds modify-db-instance --db-instance-identifier atmr-prod-pitr-202611301402 --no-deletion-protection --apply-immediately"), then run "npx --no atmr-dr recover cutover ${id} --undo --yes" again; ` +
          `or finish on atmr-prod-pitr-202611301402: point the API at it ("host" and "port" of secret ${SECRET} set to ${NEW_HOST}:5432), then "npx --no atmr-dr recover cutover ${id} --resume --yes"`,
      ]);
      expect(rds.commandCalls(ModifyDBInstanceCommand)).toHaveLength(modifies);
      expect(await getRecovery(deps().store, id)).toMatchObject({ status: 'cutting-over', journal });

      // Someone allowed runs the two commands.
      instances.set('atmr-prod-pitr-202611301402', { ...copy(), DeletionProtection: false, TagList: [{ Key: 'atmr-dr:recovery-id', Value: id }, { Key: 'atmr-dr:purpose', Value: 'recovery' }] });

      const undone = await undoCutover(deps(stale), id, settings(), 'bob');

      expect(undone.status).toBe('cutover-failed');
      expect(undone.steps.filter((s) => s.step === CUTOVER_STEPS.protect || s.step === CUTOVER_STEPS.untag).map((s) => [s.step, s.outcome])).toEqual([
        [CUTOVER_STEPS.protect, 'undone'],
        [CUTOVER_STEPS.untag, 'undone'],
      ]);
      expect(undone.steps.find((s) => s.step === CUTOVER_STEPS.untag)!.detail).toContain('atmr-prod-pitr-202611301402 without deletion protection and tagged atmr-dr:purpose=recovery: nothing to put back');
      expect((await getRecovery(deps().store, id)).journal!.every((e) => e.state === 'undone')).toBe(true);
      await abandon(id);
      expect(rds.commandCalls(DeleteDBInstanceCommand).map((c) => c.args[0].input.DBInstanceIdentifier)).toEqual(['atmr-prod-pitr-202611301402']);
      expect([(await getRecovery(deps().store, id)).status, copy().DBInstanceStatus]).toEqual(['abandoned', 'deleting']);
    });

    it('--undo killed between the close\'s two writes (the rename marked undone, not the reopening) is run again: it still finds the reopening, closes the cutover, and abandon deletes the copy', async () => {
      const id = await renamedAndPutBack();
      // The undo's lease is its first write, the close's marks the next two: it dies at the second of them.
      const dying = dyingStore(3);
      void undoCutover(deps({ ...stale, store: dying.store }), id, settings(), 'bob');
      for (let i = 0; i < 300 && dying.writes() < 3; i += 1) await new Promise((resolve) => setTimeout(resolve, 10));
      expect(dying.writes()).toBe(3);

      // Act
      const undone = await undoCutover(deps({ now: later((LEASE_SECONDS * 3 + 60) * 1000) }), id, settings(), 'carol');

      // Assert
      expect(undone.status).toBe('cutover-failed');
      const closed = await getRecovery(deps().store, id);
      expect([closed.status, closed.journal!.filter((e) => e.state !== 'undone').map((e) => e.step)]).toEqual(['cutover-failed', []]);
      await abandon(id);
      expect(rds.commandCalls(DeleteDBInstanceCommand).map((c) => c.args[0].input.DBInstanceIdentifier)).toEqual(['atmr-prod-pitr-202611301402']);
      expect((await getRecovery(deps().store, id)).status).toBe('abandoned');
    });

    it('--undo whose mark of the rename is refused (DynamoDB throttling, the process lives on) leaves the reopening journaled and says to run --undo again, which closes the cutover; abandon then deletes the copy', async () => {
      const id = await renamedAndPutBack();
      const throttled = Promise.reject(Object.assign(new Error('Throughput exceeds the current capacity of your table'), { name: 'ProvisionedThroughputExceededException' }));
      throttled.catch(() => undefined);
      // The undo's lease is its first write, the rename's mark the second: refused.
      const refusing = dyingStore(2, throttled);

      // Act
      const first = await undoCutover(deps({ ...stale, store: refusing.store }), id, settings(), 'bob');

      // Assert
      expect([first.status, first.error]).toEqual(['cutover-failed', 'cutover undo by bob not finished (1 undo(s) failed)']);
      expect(first.steps.filter((s) => s.outcome === 'undo-failed' || s.step === CUTOVER_STEPS.rename)).toEqual([
        expect.objectContaining({ step: CUTOVER_STEPS.rename, outcome: 'undo-failed', detail: `Throughput exceeds the current capacity of your table: "npx --no atmr-dr recover cutover ${id} --undo --yes" marks it again` }),
      ]);
      const left = await getRecovery(deps().store, id);
      expect(left.journal!.filter((e) => e.state !== 'undone').map((e) => e.step).sort()).toEqual([CUTOVER_STEPS.reopen, CUTOVER_STEPS.rename].sort());

      const second = await undoCutover(deps({ now: later((LEASE_SECONDS * 3 + 60) * 1000) }), id, settings(), 'carol');

      expect([second.status, second.error]).toEqual(['cutover-failed', 'cutover interrupted and undone by carol']);
      expect(second.steps.map((s) => [s.step, s.outcome])).toEqual(expect.arrayContaining([[CUTOVER_STEPS.rename, 'undone'], [CUTOVER_STEPS.reopen, 'skipped']]));
      expect((await getRecovery(deps().store, id)).journal!.every((e) => e.state === 'undone')).toBe(true);
      await abandon(id);
      expect(rds.commandCalls(DeleteDBInstanceCommand).map((c) => c.args[0].input.DBInstanceIdentifier)).toEqual(['atmr-prod-pitr-202611301402']);
      expect((await getRecovery(deps().store, id)).status).toBe('abandoned');
    });

    it('--undo whose mark of the killswitch step is refused (DynamoDB throttling) says what the killswitch was found to be and that its mark was not saved, not that it could not be read; the next --undo closes the cutover', async () => {
      // Arrange: killed before the rename; the endpoint set back to atmr-prod by hand
      const { id } = await killedCutover(RENAME_STARTED);
      secretValue = { ...secretValue, host: OLD_HOST, port: 5432 };
      const killswitchBefore = parameters.get(KILLSWITCH)!.value;
      const throttled = Promise.reject(Object.assign(new Error('Throughput exceeds the current capacity of your table'), { name: 'ProvisionedThroughputExceededException' }));
      throttled.catch(() => undefined);
      // The undo's lease, then the marks of the reopening, the endpoint and the redeploy; the killswitch step's mark refused.
      const refusing = dyingStore(5, throttled);

      // Act
      const first = await undoCutover(deps({ ...stale, store: refusing.store }), id, settings(), 'bob');

      // Assert
      expect([first.status, first.error]).toEqual(['cutover-failed', 'cutover undo by bob not finished (1 undo(s) failed)']);
      expect(first.steps.filter((s) => s.outcome === 'undo-failed')).toEqual([
        expect.objectContaining({
          step: CUTOVER_STEPS.maintenance,
          detail: expect.stringMatching(
            new RegExp(`^the killswitch was read: now normal \\(set by alice: .*\\) since the cutover: left as is; its journal mark was not saved \\(Throughput exceeds the current capacity of your table\\): "npx --no atmr-dr recover cutover ${id} --undo --yes" writes it$`),
          ),
        }),
      ]);
      const summary = (JSON.parse(events.commandCalls(PutEventsCommand).at(-1)!.args[0].input.Entries![0].Detail!) as { summary: string }).summary;
      expect(summary).toContain('1 undo(s) failed');
      expect(summary).not.toContain('could not be read');
      expect(parameters.get(KILLSWITCH)!.value).toBe(killswitchBefore);
      expect((await getRecovery(deps().store, id)).journal!.filter((e) => e.state !== 'undone').map((e) => e.step)).toEqual([CUTOVER_STEPS.maintenance]);

      const second = await undoCutover(deps({ now: later((LEASE_SECONDS * 3 + 60) * 1000) }), id, settings(), 'carol');

      expect([second.status, second.error]).toEqual(['cutover-failed', 'cutover interrupted and undone by carol']);
      expect(second.steps.find((s) => s.step === CUTOVER_STEPS.maintenance)).toMatchObject({ outcome: 'skipped', detail: expect.stringMatching(/^now normal \(set by alice: .*\) since the cutover: left as is$/) });
      expect(parameters.get(KILLSWITCH)!.value).toBe(killswitchBefore);
      expect((await getRecovery(deps().store, id)).journal!.every((e) => e.state === 'undone')).toBe(true);
    });

    it('--undo after the copy was deleted by hand (production taken back) closes the cutover, warning that the writes on it are gone with it; abandon then finishes, nothing left to delete', async () => {
      // Arrange: killed before the rename; the endpoint set back to atmr-prod, then the copy deleted by hand
      const { id } = await killedCutover(RENAME_STARTED);
      secretValue = { ...secretValue, host: OLD_HOST, port: 5432 };
      instances.delete('atmr-prod-pitr-202611301402');

      // Act
      const undone = await undoCutover(deps(stale), id, settings(), 'bob');

      // Assert
      expect(undone).toMatchObject({
        status: 'cutover-failed',
        error: 'cutover interrupted and undone by bob',
        warning: wroteOnCopy(id).replace(
          '; atmr-prod-pitr-202611301402 is left as it is, and "npx --no atmr-dr recover abandon ' + id + '" deletes it (after a final snapshot): look for them there first',
          ', and no instance is named atmr-prod-pitr-202611301402 any more (deleted by hand)',
        ),
      });
      expect(undone.steps.find((s) => s.step === CUTOVER_STEPS.reopen)!.detail).toBe(
        `production found back on atmr-prod (secret ${SECRET} host reads ${OLD_HOST}:5432), atmr-prod under its name, no instance named atmr-prod-pitr-202611301402: left as is`,
      );
      expect((await getRecovery(deps().store, id)).journal!.every((e) => e.state === 'undone')).toBe(true);
      await abandon(id);
      expect(rds.commandCalls(DeleteDBInstanceCommand)).toHaveLength(0);
      expect([(await getRecovery(deps().store, id)).status, [...instances.keys()]]).toEqual(['abandoned', ['atmr-prod']]);
    });

    it.each([
      ['another instance under atmr-prod (created since)', 3, 'atmr-prod is another instance (DbiResourceId db-OTHER, the recovery recorded db-ABCDEFGHIJKLMNOPQRSTUVWXY0)'],
      ['RDS refusing the read', 1, 'the instances cannot be read (AccessDenied: User: bob is not authorized to perform: rds:DescribeDBInstances)'],
    ])('--undo with %s is refused in one line naming it, nothing changed', async (_, exitCode, found) => {
      const { id } = await killedCutover(RENAME_STARTED);
      secretValue = { ...secretValue, host: OLD_HOST, port: 5432 };
      if (exitCode === 3) instances.set('atmr-prod', { ...instances.get('atmr-prod')!, DbiResourceId: 'db-OTHER' });
      else rds.on(DescribeDBInstancesCommand).rejects(Object.assign(new Error('User: bob is not authorized to perform: rds:DescribeDBInstances'), { name: 'AccessDenied' }));
      const journal = (await getRecovery(deps().store, id)).journal;

      const error = await operatorErrorOf(undoCutover(deps(stale), id, settings(), 'bob'));

      expect(error.exitCode).toBe(exitCode);
      expect(error.message).toMatch(new RegExp(`^recover cutover --undo: recovery ${id}: the killswitch was reopened on atmr-prod-pitr-202611301402 at [^;]*; secret ${SECRET} host reads ${OLD_HOST}:5432 again \\(atmr-prod\\), but `));
      expect(error.message).toContain(`, but ${found}: nothing changed, nothing renamed; `);
      expect(rds.commandCalls(ModifyDBInstanceCommand)).toHaveLength(0);
      const record = await getRecovery(deps().store, id);
      expect([record.status, record.leaseOwner, record.journal]).toEqual(['cutting-over', undefined, journal]);
    });
  });

  it('--undo whose killswitch give-back SSM applies but whose re-read is throttled says the state is unknown, not kept in maintenance (users are let in); the next --undo closes the cutover', async () => {
    // Arrange: killed at the redeploy's mark, before the reopening: the undo gives the killswitch back
    const { id } = await killedCutover(8);
    const applied = () => ssm.commandCalls(PutParameterCommand).length;
    const puts = applied();
    ssm.on(GetParameterCommand).callsFake((input: { Name: string }) => {
      if (applied() > puts) throw Object.assign(new Error('Rate exceeded'), { name: 'ThrottlingException' });
      const p = parameters.get(input.Name)!;
      return { Parameter: { Name: input.Name, Value: p.value, Version: p.version } };
    });

    // Act
    const first = await undoCutover(deps(stale), id, settings(), 'bob');

    // Assert
    expect(killswitchNow().mode).toBe('normal');
    expect(first.steps.filter((s) => s.outcome === 'undo-failed')).toEqual([
      expect.objectContaining({
        step: CUTOVER_STEPS.maintenance,
        detail: `the give-back was sent but not confirmed (Rate exceeded): the killswitch may be back to normal or still in maintenance; check it with "npx --no atmr-dr killswitch status"; "npx --no atmr-dr recover cutover ${id} --undo --yes" reads it again`,
      }),
    ]);
    expect(keptInMaintenance(first.steps)).toBe(false);
    expect(killswitchUnknown(first.steps)).toBe(`the killswitch's state is unknown (its give-back was sent but not confirmed): check it with "npx --no atmr-dr killswitch status"`);
    const summary = (JSON.parse(events.commandCalls(PutEventsCommand).at(-1)!.args[0].input.Entries![0].Detail!) as { summary: string }).summary;
    expect(summary).toContain(`; the killswitch's state is unknown (its give-back was sent but not confirmed): check it with "npx --no atmr-dr killswitch status"`);
    expect(summary).not.toMatch(/stays in maintenance|could not be read/);

    ssm.on(GetParameterCommand).callsFake((input: { Name: string }) => {
      const p = parameters.get(input.Name)!;
      return { Parameter: { Name: input.Name, Value: p.value, Version: p.version } };
    });
    const second = await undoCutover(deps({ now: later((LEASE_SECONDS * 3 + 60) * 1000) }), id, settings(), 'carol');

    expect([second.status, second.error]).toEqual(['cutover-failed', 'cutover interrupted and undone by carol']);
    expect(killswitchNow().mode).toBe('normal');
    expect((await getRecovery(deps().store, id)).journal!.every((e) => e.state === 'undone')).toBe(true);
  });

  it('--undo whose mark of the endpoint step is refused (DynamoDB throttling) after setting it back says its mark was not saved, not "do it by hand"; the next --undo closes the cutover', async () => {
    // Arrange: killed at the redeploy's mark, before the reopening: the endpoint points at the copy
    const { id } = await killedCutover(8);
    expect(secretValue.host).toBe(NEW_HOST);
    const throttled = Promise.reject(Object.assign(new Error('Throughput exceeds the current capacity of your table'), { name: 'ProvisionedThroughputExceededException' }));
    throttled.catch(() => undefined);
    // The undo's lease, then the endpoint step's mark: refused.
    const refusing = dyingStore(2, throttled);

    // Act
    const first = await undoCutover(deps({ ...stale, store: refusing.store }), id, settings(), 'bob');

    // Assert
    expect(secretValue.host).toBe(OLD_HOST);
    const endpoint = first.steps.find((s) => s.step === CUTOVER_STEPS.endpoint)!;
    expect(endpoint).toMatchObject({
      outcome: 'undo-failed',
      detail: expect.stringMatching(
        new RegExp(`^.* set back to .*; its journal mark was not saved \\(Throughput exceeds the current capacity of your table\\): "npx --no atmr-dr recover cutover ${id} --undo --yes" writes it$`),
      ),
    });
    expect(first.steps.map((s) => s.detail).join('\n')).not.toContain('do it by hand');

    const second = await undoCutover(deps({ now: later((LEASE_SECONDS * 3 + 60) * 1000) }), id, settings(), 'carol');

    expect([second.status, second.error]).toEqual(['cutover-failed', 'cutover interrupted and undone by carol']);
    expect(secretValue.host).toBe(OLD_HOST);
    expect(killswitchNow().mode).toBe('normal');
    expect((await getRecovery(deps().store, id)).journal!.every((e) => e.state === 'undone')).toBe(true);
  });

  it('--undo whose mark of the redeploy is refused (DynamoDB throttling) once the services are stable says its mark was not saved, not that tasks may still run on the copy; the next --undo redeploys again and closes the cutover', async () => {
    const { id } = await killedCutover(8);
    const throttled = Promise.reject(Object.assign(new Error('Throughput exceeds the current capacity of your table'), { name: 'ProvisionedThroughputExceededException' }));
    throttled.catch(() => undefined);
    // The undo's lease, the endpoint step's mark, then the redeploy's: refused.
    const refusing = dyingStore(3, throttled);

    const first = await undoCutover(deps({ ...stale, store: refusing.store }), id, settings(), 'bob');

    expect(first.steps.find((s) => s.step === CUTOVER_STEPS.redeploy)).toMatchObject({
      outcome: 'undo-failed',
      detail: `atmr-api, atmr-celery-worker redeployed and stable on the previous endpoint; its journal mark was not saved (Throughput exceeds the current capacity of your table): "npx --no atmr-dr recover cutover ${id} --undo --yes" redeploys them again and writes it`,
    });

    const second = await undoCutover(deps({ now: later((LEASE_SECONDS * 3 + 60) * 1000) }), id, settings(), 'carol');

    expect([second.status, second.error]).toEqual(['cutover-failed', 'cutover interrupted and undone by carol']);
    expect(second.steps.find((s) => s.step === CUTOVER_STEPS.redeploy)).toMatchObject({ outcome: 'undone' });
    expect(killswitchNow().mode).toBe('normal');
    expect((await getRecovery(deps().store, id)).journal!.every((e) => e.state === 'undone')).toBe(true);
  });

  it('--undo of a cutover killed after its endpoint switch, every write after the redeploy\'s entry refused (throttling to the end): the endpoint is set back unmarked, and the next --undo redeploys the services before giving the killswitch back', async () => {
    // Arrange: killed once the endpoint step is journaled done, before the redeploy
    const { id } = await killedCutover(6);
    // The undo's lease, then the redeploy's entry; every write after refused.
    let writes = 0;
    const first = await undoCutover(deps({ ...stale, store: failingStore(() => ++writes >= 3) }), id, settings(), 'bob');
    expect(first.steps.find((s) => s.step === CUTOVER_STEPS.endpoint)).toMatchObject({ outcome: 'undo-failed', detail: expect.stringMatching(/its journal mark was not saved/) });
    expect(killswitchNow().mode).toBe('maintenance');
    const before = ecs.commandCalls(UpdateServiceCommand).length;

    // Act: the endpoint is back on the old instance, its step still journaled done
    const second = await undoCutover(deps({ now: later((LEASE_SECONDS * 3 + 60) * 1000) }), id, settings(), 'carol');

    // Assert: tasks that read the copy's endpoint are restarted before users are let in
    expect(ecs.commandCalls(UpdateServiceCommand).length - before).toBeGreaterThan(0);
    expect(second.steps.find((s) => s.step === CUTOVER_STEPS.redeploy)).toMatchObject({ outcome: 'undone' });
    expect(killswitchNow().mode).toBe('normal');
    expect((await getRecovery(deps().store, id)).journal!.every((e) => e.state === 'undone')).toBe(true);
  });

  it('--undo killed while waiting for the services it redeploys (the endpoint already set back, the cutover killed before its own redeploy): the next --undo redeploys again before giving the killswitch back', async () => {
    // Arrange: killed after the endpoint switch; the undo sets the endpoint back, redeploys, and dies
    // waiting for the services to be stable (DescribeServices never answers once both are redeployed)
    const { id } = await killedCutover(6);
    const base = ecs.commandCalls(UpdateServiceCommand).length;
    ecs.on(DescribeServicesCommand).callsFake((input: { services: string[] }) => {
      if (ecs.commandCalls(UpdateServiceCommand).length >= base + 2) return new Promise(() => undefined);
      return { services: input.services.map((serviceName) => ({ serviceName, deployments: [{ id: `${serviceName}/x`, status: 'PRIMARY', rolloutState: 'IN_PROGRESS', runningCount: 1, desiredCount: 2 }] })) };
    });
    void undoCutover(deps(stale), id, settings({ serviceStableTimeoutSeconds: 900 }), 'bob');
    for (let i = 0; i < 500 && ecs.commandCalls(UpdateServiceCommand).length < base + 2; i += 1) await new Promise((resolve) => setTimeout(resolve, 10));
    expect(ecs.commandCalls(UpdateServiceCommand).length).toBe(base + 2);
    expect(killswitchNow().mode).toBe('maintenance');
    fakeEcs();
    const before = ecs.commandCalls(UpdateServiceCommand).length;

    // Act: that undo is dead (its lease stale)
    const second = await undoCutover(deps({ now: later((LEASE_SECONDS * 3 + 60) * 1000) }), id, settings(), 'carol');

    // Assert: the services restarted and stable before users are let in
    expect(ecs.commandCalls(UpdateServiceCommand).length - before).toBe(2);
    expect(second.steps.find((s) => s.step === CUTOVER_STEPS.redeploy)).toMatchObject({ outcome: 'undone' });
    expect(killswitchNow().mode).toBe('normal');
    expect((await getRecovery(deps().store, id)).journal!.every((e) => e.state === 'undone')).toBe(true);
  });

  it.each(['refused (throttling to the end)', 'killed'])(
    '--undo of a cutover killed before its own redeploy, every write after the endpoint\'s undone mark %s: the next --undo forces a new deployment of each service before giving the killswitch back',
    async (how) => {
      // Arrange: killed once the endpoint step is journaled done, before the redeploy
      const { id } = await killedCutover(6);
      // Once the endpoint is set back, its undone mark is saved; the writes after it are refused, or the process dies at the first.
      let sinceSetBack = 0;
      const store = failingStore(() => secretValue.host === OLD_HOST && ++sinceSetBack >= 2, how === 'killed' ? 'killed' : 'throttled');
      const first = undoCutover(deps({ ...stale, store }), id, settings(), 'bob');
      if (how === 'killed') for (let i = 0; i < 500 && sinceSetBack < 2; i += 1) await new Promise((resolve) => setTimeout(resolve, 10));
      else await first;
      expect(sinceSetBack).toBeGreaterThanOrEqual(2);
      expect((await getRecovery(deps().store, id)).journal!.find((e) => e.step === CUTOVER_STEPS.endpoint)).toMatchObject({ state: 'undone' });
      expect(killswitchNow().mode).toBe('maintenance');
      const keptOutAtEachUpdate: string[] = [];
      fakeEcs({ onUpdate: () => keptOutAtEachUpdate.push(killswitchNow().mode) });
      const before = ecs.commandCalls(UpdateServiceCommand).length;

      // Act: that undo is over (its lease stale)
      const second = await undoCutover(deps({ now: later((LEASE_SECONDS * 3 + 60) * 1000) }), id, settings(), 'carol');

      // Assert: every service restarted on the old endpoint, and stable, before users are let in
      expect(ecs.commandCalls(UpdateServiceCommand).slice(before).map((c) => [c.args[0].input.service, c.args[0].input.forceNewDeployment])).toEqual([
        ['atmr-api', true],
        ['atmr-celery-worker', true],
      ]);
      expect(keptOutAtEachUpdate).toEqual(['maintenance', 'maintenance']);
      expect(second.steps.find((s) => s.step === CUTOVER_STEPS.redeploy)).toMatchObject({ outcome: 'undone' });
      expect(killswitchNow().mode).toBe('normal');
      expect((await getRecovery(deps().store, id)).journal!.every((e) => e.state === 'undone')).toBe(true);
    },
  );

  /** How a run whose release of the lease DynamoDB refused (throttling) ends its last line: the lease as the record keeps it. */
  const leaseKept = async (id: string, owner: string) =>
    `; the lease was not released (ProvisionedThroughputExceededException: Throughput exceeds the current capacity of your table): it stays ${owner}'s until ${new Date((await getRecovery(deps().store, id)).leaseExpiresAt!).toISOString()}, and a --resume or --undo run before then, yours too, is refused as held`;

  it('a reopening that failed, its release of the lease refused too (DynamoDB throttling): the line says until when the lease stays and that a run before then is refused', async () => {
    const id = await verifiedRecovery();
    refuseReopening();
    const releases = failingStore((command) => command.input.UpdateExpression?.includes(' REMOVE ') === true);

    const result = await cutover(deps({ store: releases }), id, settings(), 'alice');

    expect(result).toMatchObject({ ok: false, interrupted: true, status: 'cutting-over' });
    expect(result.error!.endsWith(`"npx --no atmr-dr killswitch status" tells which${await leaseKept(id, 'alice')}`)).toBe(true);
  });

  it("--undo whose last write (the lease released with it) is refused says the undo is not recorded, until when the lease stays, and that a run before then is refused; the next --undo before then is refused naming that time, one after it closes the cutover", async () => {
    // Arrange: killed at the redeploy's mark, before the reopening; the undo's writes that release the lease refused
    const { id } = await killedCutover(8);
    const releases = failingStore((command) => command.input.UpdateExpression?.includes(' REMOVE ') === true);

    // Act
    const first = await undoCutover(deps({ ...stale, store: releases }), id, settings(), 'bob');

    // Assert: production is back; the record is not, and the lease is live until a time the warning names
    expect(secretValue.host).toBe(OLD_HOST);
    expect(killswitchNow().mode).toBe('normal');
    const record = await getRecovery(deps().store, id);
    expect([first.status, record.status, record.leaseOwner]).toEqual(['cutting-over', 'cutting-over', 'bob']);
    const until = new Date(record.leaseExpiresAt!).toISOString();
    expect(first.warning).toBe(
      `the undo is not recorded, the record still says "cutting-over"; the lease was not released (ProvisionedThroughputExceededException: Throughput exceeds the current capacity of your table): it stays bob's until ${until}, and a --resume or --undo run before then, yours too, is refused as held: "npx --no atmr-dr recover cutover ${id} --undo --yes" run after that records it`,
    );
    expect(first.unrecorded).toEqual({ takenOver: false, line: first.warning });
    await expect(undoCutover(deps(stale), id, settings(), 'bob')).rejects.toThrow(`recover cutover --undo: recovery ${id} is being cut over by bob (lease live until ${until})`);
    const next = await undoCutover(deps({ now: () => new Date(Date.parse(until) + 1000) }), id, settings(), 'bob');
    expect([next.status, next.error, next.warning]).toEqual(['cutover-failed', 'cutover interrupted and undone by bob', undefined]);
    expect((await getRecovery(deps().store, id)).leaseToken).toBeUndefined();
  });

  it('a second --undo that finishes what the first left, its last write refused: not recorded, the record keeping the first outcome, with no advice to run --undo again (it would find nothing to undo)', async () => {
    // Arrange: the first undo leaves the record cutover-failed, its redeploy's mark not saved
    const { id } = await killedCutover(8);
    const throttled = Promise.reject(Object.assign(new Error('Throughput exceeds the current capacity of your table'), { name: 'ProvisionedThroughputExceededException' }));
    throttled.catch(() => undefined);
    await undoCutover(deps({ ...stale, store: dyingStore(3, throttled).store }), id, settings(), 'bob');
    expect((await getRecovery(deps().store, id)).status).toBe('cutover-failed');
    const releases = failingStore((command) => command.input.UpdateExpression?.includes(' REMOVE ') === true);

    // Act
    const second = await undoCutover(deps({ now: later((LEASE_SECONDS * 3 + 60) * 1000), store: releases }), id, settings(), 'carol');

    // Assert
    expect(second.steps.filter((s) => s.outcome === 'undo-failed')).toEqual([]);
    expect(second.unrecorded?.takenOver).toBe(false);
    expect(second.unrecorded?.line).toMatch(/^the undo is not recorded, the record still says "cutover-failed" with its earlier outcome; the lease was not released \(ProvisionedThroughputExceededException: [^)]+\): it stays carol's until \S+, and a --resume or --undo run before then, yours too, is refused as held$/);
  });

  it("--undo whose last write finds the lease taken over by another operator: the record's status, and a warning naming who took it over; never \"cutover-failed\"", async () => {
    // Arrange: killed at the redeploy's mark; carol takes the lease over just as the undo's last write (the release) goes out
    const { id } = await killedCutover(8);
    const ddb = {
      send: async (command: unknown) => {
        if (command instanceof UpdateCommand && command.input.UpdateExpression?.includes(' REMOVE ')) {
          await dynamo.ddb.send(new UpdateCommand({ TableName: dynamo.tableName, Key: command.input.Key, UpdateExpression: 'SET leaseToken = :t, leaseOwner = :o', ExpressionAttributeValues: { ':t': 'carol-token', ':o': 'carol (pid 7 on desk)' } }));
        }
        return dynamo.ddb.send(command as UpdateCommand);
      },
    } as unknown as DynamoDBDocumentClient;
    const sent = events.commandCalls(PutEventsCommand).length;

    // Act
    const result = await undoCutover(deps({ ...stale, store: { ddb, tableName: dynamo.tableName } }), id, settings(), 'bob');

    // Assert: production is back; the record is carol's, and the result says so
    expect(secretValue.host).toBe(OLD_HOST);
    const record = await getRecovery(deps().store, id);
    expect([record.status, record.leaseOwner]).toEqual(['cutting-over', 'carol (pid 7 on desk)']);
    expect(result.status).toBe(record.status);
    expect(result.warning).toBe(
      `this run put back what it found, but its undo is not recorded; recovery ${id} was taken over by carol (pid 7 on desk): this process stops here and changes nothing more (see "npx --no atmr-dr recover status ${id}")`,
    );
    expect(result.unrecorded).toEqual({ takenOver: true, line: result.warning });
    const told = events.commandCalls(PutEventsCommand).slice(sent).map((c) => JSON.parse(c.args[0].input.Entries![0].Detail!) as { summary: string });
    expect(told.map((d) => d.summary)).toEqual([expect.stringContaining(`WARNING: ${result.warning}`)]);
  });

  it('--undo whose entry for the redeploy is refused (DynamoDB throttling to the end) stops before setting the endpoint back, in one line saying nothing was undone and to run --undo again, the team told in that line; that --undo finishes', async () => {
    // Arrange: killed once the endpoint step is journaled done, before the redeploy; every write after the undo's lease refused
    const { id } = await killedCutover(6);
    let writes = 0;
    const store = failingStore(() => ++writes >= 2);
    const journal = (await getRecovery(deps().store, id)).journal;
    const secretWrites = secrets.commandCalls(PutSecretValueCommand).length;
    const sent = events.commandCalls(PutEventsCommand).length;

    // Act
    const refusal = await operatorErrorOf(undoCutover(deps({ ...stale, store }), id, settings(), 'bob'));

    // Assert: nothing changed, the endpoint still on the copy
    expect([refusal.exitCode, refusal.message]).toEqual([
      1,
      `recover cutover --undo: recovery ${id}: cannot journal the redeploy of atmr-api, atmr-celery-worker before setting secret ${SECRET} host back (ProvisionedThroughputExceededException: Throughput exceeds the current capacity of your table): nothing undone: the endpoint not set back, the killswitch left as it is (users are kept out only while it holds the cutover's maintenance: check with "npx --no atmr-dr killswitch status"); fix the cause, then run "npx --no atmr-dr recover cutover ${id} --undo --yes"${await leaseKept(id, 'bob')}`,
    ]);
    // The cutover's stops announce themselves: this one too, in its line
    const told = events.commandCalls(PutEventsCommand).slice(sent).map((c) => c.args[0].input.Entries![0]);
    expect(told.map((e) => [e.DetailType, JSON.parse(e.Detail!) as unknown])).toEqual([['Recovery Cutover Interrupted', { summary: refusal.message, at: expect.any(String), recoveryId: id }]]);
    expect(secretValue.host).toBe(NEW_HOST);
    expect(secrets.commandCalls(PutSecretValueCommand)).toHaveLength(secretWrites);
    expect(killswitchNow().mode).toBe('maintenance');
    expect((await getRecovery(deps().store, id)).journal).toEqual(journal);
    const before = ecs.commandCalls(UpdateServiceCommand).length;

    const next = await undoCutover(deps({ now: later((LEASE_SECONDS * 3 + 60) * 1000) }), id, settings(), 'carol');

    expect([next.status, next.error]).toEqual(['cutover-failed', 'cutover interrupted and undone by carol']);
    expect(secretValue.host).toBe(OLD_HOST);
    expect(ecs.commandCalls(UpdateServiceCommand).length - before).toBe(2);
    expect(killswitchNow().mode).toBe('normal');
  });

  it.each([
    ['the killswitch lifted by hand during the cutover (users in, on the copy)', 'killswitch'],
    ['the endpoint set back to the old instance by hand', 'endpoint'],
  ] as const)(
    '--undo whose entry for the redeploy is refused, %s: its line says nothing was undone, never that users are kept out or that the endpoint is on the copy',
    async (_, byHand) => {
      // Arrange: killed once the endpoint step is journaled done; then changed by hand; every write after the undo's lease refused
      const { id } = await killedCutover(6);
      if (byHand === 'killswitch') parameters.set(KILLSWITCH, { value: JSON.stringify({ mode: 'normal', reason: 'let them in', actor: 'carol', updatedAt: '2026-11-30T14:40:00.000Z', expiresAt: null }), version: parameters.get(KILLSWITCH)!.version + 1 });
      else secretValue = { ...secretValue, host: OLD_HOST };
      const killswitch = parameters.get(KILLSWITCH);
      const host = secretValue.host;
      let writes = 0;

      // Act
      const refusal = await operatorErrorOf(undoCutover(deps({ ...stale, store: failingStore(() => ++writes >= 2) }), id, settings(), 'bob'));

      // Assert: the line holds in both cases, and nothing was changed
      expect([refusal.exitCode, refusal.message]).toEqual([
        1,
        `recover cutover --undo: recovery ${id}: cannot journal the redeploy of atmr-api, atmr-celery-worker before setting secret ${SECRET} host back (ProvisionedThroughputExceededException: Throughput exceeds the current capacity of your table): nothing undone: the endpoint not set back, the killswitch left as it is (users are kept out only while it holds the cutover's maintenance: check with "npx --no atmr-dr killswitch status"); fix the cause, then run "npx --no atmr-dr recover cutover ${id} --undo --yes"${await leaseKept(id, 'bob')}`,
      ]);
      expect(parameters.get(KILLSWITCH)).toEqual(killswitch);
      expect(secretValue.host).toBe(host);
    },
  );

  it('a cutover whose endpoint mark is refused (DynamoDB throttling to the end) undoes nothing once its redeploy cannot be journaled: one line saying the cutover failed, nothing undone, and to run --undo, which finishes', async () => {
    // Arrange: the lease, the maintenance step, the endpoint step started; every write from the endpoint's done mark on refused
    const id = await verifiedRecovery();
    let writes = 0;

    // Act
    const refusal = await operatorErrorOf(cutover(deps({ store: failingStore(() => ++writes >= 5) }), id, settings(), 'alice'));

    // Assert: production left on the copy in maintenance, for --undo
    expect([refusal.exitCode, refusal.message]).toEqual([
      1,
      `recover cutover: recovery ${id}: the cutover failed (ProvisionedThroughputExceededException: Throughput exceeds the current capacity of your table), and its undo cannot journal the redeploy of atmr-api, atmr-celery-worker before setting secret ${SECRET} host back (the same error): nothing undone: the endpoint not set back, the killswitch left as it is (users are kept out only while it holds the cutover's maintenance: check with "npx --no atmr-dr killswitch status"); fix the cause, then run "npx --no atmr-dr recover cutover ${id} --undo --yes"${await leaseKept(id, 'alice')}`,
    ]);
    expect(secretValue.host).toBe(NEW_HOST);
    expect(killswitchNow().mode).toBe('maintenance');
    expect(ecs.commandCalls(UpdateServiceCommand)).toHaveLength(0);

    const undone = await undoCutover(deps(stale), id, settings(), 'bob');

    expect([undone.status, undone.error]).toEqual(['cutover-failed', 'cutover interrupted and undone by bob']);
    expect(secretValue.host).toBe(OLD_HOST);
    expect(ecs.commandCalls(UpdateServiceCommand)).toHaveLength(2);
    expect(killswitchNow().mode).toBe('normal');
  });

  it('the redeploy the undo journals before setting the endpoint back says it was not run yet, in recover status\'s journal and abandon\'s refusal; the next --undo runs it', async () => {
    // Arrange: killed before its own redeploy; the undo's lease and redeploy entry taken, every write after refused
    const { id } = await killedCutover(6);
    let writes = 0;
    await undoCutover(deps({ ...stale, store: failingStore(() => ++writes >= 3) }), id, settings(), 'bob');

    // Act
    const record = await getRecovery(deps().store, id);
    const refusal = await operatorErrorOf(abandon(id, later((LEASE_SECONDS * 3 + 60) * 1000)));

    // Assert
    expect(record.journal!.find((e) => e.step === CUTOVER_STEPS.redeploy)).toMatchObject({ state: 'started', detail: 'journaled by the undo before setting the endpoint back: not run yet' });
    expect(refusal.message).toContain(`(killswitch maintenance, switch database endpoint, redeploy ECS services (journaled by the undo before setting the endpoint back: not run yet)): production may still use atmr-prod-pitr-202611301402`);
    const before = ecs.commandCalls(UpdateServiceCommand).length;
    const next = await undoCutover(deps({ now: later((LEASE_SECONDS * 3 + 60) * 1000) }), id, settings(), 'carol');
    expect(next.steps.find((s) => s.step === CUTOVER_STEPS.redeploy)).toMatchObject({ outcome: 'undone' });
    expect(ecs.commandCalls(UpdateServiceCommand).length - before).toBe(2);
  });

  it.each(['taken', 'refused too'])(
    'a failed cutover whose undo cannot journal the redeploy (the write after it %s): the record keeps the cause and the steps, its lease released when DynamoDB takes it, and the team hears it FAILED; the line is said all the same',
    async (after) => {
      // Arrange: the endpoint's done mark (write 5) and the undo's redeploy entry (write 6) refused; the release (write 7) taken, or refused too
      const id = await verifiedRecovery();
      let writes = 0;
      const store = failingStore(() => (++writes >= 5 && writes <= 6) || (after === 'refused too' && writes >= 7));
      if (after === 'refused too') events.on(PutEventsCommand).callsFake((input: { Entries: { DetailType: string }[] }) => (input.Entries[0].DetailType === 'Recovery Cutover Failed' ? Promise.reject(new Error('EventBridge down')) : { FailedEntryCount: 0, Entries: [{ EventId: '1' }] }));

      // Act
      const refusal = await operatorErrorOf(cutover(deps({ store }), id, settings(), 'alice'));

      // Assert
      const cause = 'Throughput exceeds the current capacity of your table';
      expect(refusal.exitCode).toBe(1);
      expect(refusal.message).toMatch(new RegExp(`^recover cutover: recovery ${id}: the cutover failed \\(ProvisionedThroughputExceededException: ${cause}\\), and its undo cannot journal the redeploy of atmr-api, atmr-celery-worker before setting`));
      const record = await getRecovery(deps().store, id);
      expect(record.status).toBe('cutting-over');
      expect(secretValue.host).toBe(NEW_HOST);
      expect(killswitchNow().mode).toBe('maintenance');
      if (after === 'refused too') return;
      expect([record.cutoverError, record.leaseToken, record.cutover?.map((s) => [s.step, s.outcome])]).toEqual([cause, undefined, [[CUTOVER_STEPS.maintenance, 'done']]]);
      // The journal says what the line says: the endpoint switched (its mark saved by the release), the redeploy not journaled.
      expect(record.journal!.map((e) => [e.step, e.state])).toEqual([
        [CUTOVER_STEPS.maintenance, 'done'],
        [CUTOVER_STEPS.endpoint, 'done'],
      ]);
      const failed = events.commandCalls(PutEventsCommand).map((c) => c.args[0].input.Entries![0]).filter((e) => e.DetailType === 'Recovery Cutover Failed');
      expect(failed.map((e) => (JSON.parse(e.Detail!) as { summary: string }).summary)).toEqual([
        `Recovery ${id}: cutover FAILED ${refusal.message.slice(refusal.message.indexOf('the cutover failed ') + 'the cutover failed '.length)}`,
      ]);
    },
  );

  it.each([
    [6, '"switch database endpoint" is'],
    [7, '"switch database endpoint" and "redeploy ECS services" are'],
  ])(
    '--undo of a cutover killed at write %i, recovery.ecs since taken out of cdk.json: refused before anything changes (exit 2, one line naming recovery.ecs and the fix); with it set again, --undo redeploys before letting users in',
    async (killAt, left) => {
      // Arrange: killed once the endpoint is switched (6), or once its own redeploy is journaled started (7)
      const { id } = await killedCutover(killAt);
      const before = await getRecovery(deps().store, id);
      const killswitchWrites = ssm.commandCalls(PutParameterCommand).length;
      const updates = ecs.commandCalls(UpdateServiceCommand).length;

      // Act
      const refusal = await operatorErrorOf(undoCutover(deps(stale), id, settings({ ecs: undefined }), 'bob'));

      // Assert: nothing changed, users kept out on the copy
      expect([refusal.exitCode, refusal.message]).toEqual([
        2,
        `recover cutover --undo: recovery ${id}: recovery.ecs is not set, and its cutover's ${left} not undone: tasks started since the endpoint switch read the copy's endpoint (they read it at start), and with no ECS service to redeploy they would stay on the copy once users are let in (their writes there lost); set recovery.ecs to {"clusterArn": ..., "serviceNames": [the API and every Celery service]} in cdk.json, then run the command again; nothing was changed`,
      ]);
      // Only alice's stale lease taken and released, as by every refused undo.
      expect(await getRecovery(deps().store, id)).toEqual({ ...before, leaseOwner: undefined, leaseToken: undefined, leaseExpiresAt: undefined, updatedAt: expect.any(String) });
      expect(secretValue.host).toBe(NEW_HOST);
      expect(ssm.commandCalls(PutParameterCommand)).toHaveLength(killswitchWrites);
      expect(killswitchNow().mode).toBe('maintenance');
      expect(ecs.commandCalls(UpdateServiceCommand)).toHaveLength(updates);

      const undone = await undoCutover(deps(stale), id, settings(), 'bob');

      expect([undone.status, undone.error]).toEqual(['cutover-failed', 'cutover interrupted and undone by bob']);
      expect(secretValue.host).toBe(OLD_HOST);
      expect(ecs.commandCalls(UpdateServiceCommand)).toHaveLength(updates + 2);
      expect(killswitchNow().mode).toBe('normal');
    },
  );

  it.each([
    ['a completed cutover (cut-over)', 'cut-over', /^recover cutover --undo: recovery \S+ is "cut-over", expected cutting-over or cutover-failed: only an interrupted or failed cutover can be undone/],
    ['a cutover killed once the killswitch was reopened', 'reopened', /^recover cutover --undo: recovery \S+: the killswitch was reopened on atmr-prod-pitr-202611301402 at .*; finish with "npx --no atmr-dr recover cutover \S+ --resume --yes"$/],
    ["a cutover another process holds the live lease of", 'leased', /^recover cutover --undo: recovery \S+ is being cut over by alice \(pid 4242 on laptop\) \(lease live until /],
  ] as const)(
    '--undo of %s, recovery.ecs unset: the same refusal as with it set, not one saying to set recovery.ecs for an undo that cannot run',
    async (_, state, refusal) => {
      // Arrange
      let id: string;
      let undoDeps = deps(stale);
      if (state === 'cut-over') {
        id = await verifiedRecovery();
        expect((await cutover(deps(), id, settings({ readinessUrl: readyUrl }), 'alice')).ok).toBe(true);
      } else {
        ({ id } = await killedCutover(state === 'reopened' ? REOPEN_STARTED + 1 : 6));
        if (state === 'leased') undoDeps = deps();
      }
      const journal = (await getRecovery(deps().store, id)).journal;

      // Act
      const unset = await operatorErrorOf(undoCutover(undoDeps, id, settings({ ecs: undefined }), 'bob'));
      const set = await operatorErrorOf(undoCutover(undoDeps, id, settings(), 'bob'));

      // Assert
      expect([unset.exitCode, unset.message]).toEqual([set.exitCode, set.message]);
      expect([unset.exitCode, unset.message]).toEqual([3, expect.stringMatching(refusal)]);
      expect((await getRecovery(deps().store, id)).journal).toEqual(journal);
    },
  );

  it('--undo of a cutover killed before its endpoint switch needs no recovery.ecs: the killswitch is given back', async () => {
    const { id } = await killedCutover(4);

    const undone = await undoCutover(deps(stale), id, settings({ ecs: undefined }), 'bob');

    expect([undone.status, undone.error]).toEqual(['cutover-failed', 'cutover interrupted and undone by bob']);
    expect(killswitchNow().mode).toBe('normal');
  });

  it('a live lease refuses a second operator (resume, undo or a new cutover) naming who holds it; it goes stale after LEASE_SECONDS', async () => {
    const { id } = await killedCutover(6);
    const held = /is being cut over by alice \(pid 4242 on laptop\) \(lease live until .*\): wait for them; if that process is dead, its lease goes stale at/;

    await expect(cutover(deps({ now: later((LEASE_SECONDS - 5) * 1000) }), id, settings(), 'bob', 'resume')).rejects.toThrow(held);
    await expect(undoCutover(deps(), id, settings(), 'bob')).rejects.toThrow(held);
    await expect(cutover(deps(), id, settings(), 'bob')).rejects.toThrow(`recover cutover: recovery ${id} is "cutting-over", expected verified or unverified or cutover-failed: a cutover was interrupted`);
    expect(ssm.commandCalls(PutParameterCommand)).toHaveLength(1);

    const resumed = await cutover(deps({ now: later((LEASE_SECONDS + 5) * 1000), leaseOwner: 'bob' }), id, settings(), 'bob', 'resume');

    expect(resumed.ok).toBe(true);
  });

  it('of two operators taking over a stale lease at once, exactly one runs the cutover', async () => {
    const { id } = await killedCutover(6);

    const results = await Promise.allSettled([cutover(deps(stale), id, settings(), 'bob', 'resume'), cutover(deps(stale), id, settings(), 'carol', 'resume')]);

    expect(results.filter((r) => r.status === 'fulfilled' && r.value.ok)).toHaveLength(1);
    expect(results.filter((r) => r.status === 'rejected').map((r) => String((r as PromiseRejectedResult).reason))).toEqual([expect.stringMatching(/is being cut over by|is "cut-over"/)]);
  });

  it('a process that wakes up after its lease was taken over stops at its next write and changes nothing more', async () => {
    let wake!: () => void;
    const { id, dead } = await killedCutover(5, new Promise<void>((resolve) => (wake = resolve)));
    expect((await cutover(deps(stale), id, settings(), 'bob', 'resume')).ok).toBe(true);
    const callsBefore = ssm.calls().length + secrets.calls().length + ecs.calls().length + rds.calls().length;

    wake();
    const woken = (await dead) as Awaited<ReturnType<typeof cutover>>;

    expect(woken).toMatchObject({ ok: false, interrupted: true });
    expect(woken.error).toBe(`recover cutover: recovery ${id} was taken over by another operator (now "cut-over"): this process stops here and changes nothing more (see "npx --no atmr-dr recover status ${id}")`);
    expect(ssm.calls().length + secrets.calls().length + ecs.calls().length + rds.calls().length).toBe(callsBefore);
    expect((await getRecovery(deps().store, id)).status).toBe('cut-over');
  });

  it('Ctrl-C stops at the next poll or step boundary, releases the lease at once and leaves a resumable record', async () => {
    const id = await verifiedRecovery();
    let stop = false;
    // The wait's first look, once both services were forced (each forcing reads its service first), sees the rollout in progress.
    let looks = 0;
    fakeEcs({
      onUpdate: () => void (stop = true), // the operator presses Ctrl-C while the services redeploy
      rollout: () => (ecs.commandCalls(UpdateServiceCommand).length === 2 && looks++ === 0 ? { rolloutState: 'IN_PROGRESS', runningCount: 1 } : {}),
    });

    const interrupted = await cutover(deps({ stopRequested: () => stop }), id, settings({ readinessUrl: readyUrl, serviceStableTimeoutSeconds: 900 }), 'alice');

    expect(interrupted).toMatchObject({ ok: false, interrupted: true, status: 'cutting-over', error: 'interrupted during "redeploy ECS services": atmr-api, atmr-celery-worker already redeploying onto the copy' });
    const record = await getRecovery(deps().store, id);
    expect(record.journal!.map((e) => [e.step, e.state])).toEqual([
      ['killswitch maintenance', 'done'],
      ['switch database endpoint', 'done'],
      ['redeploy ECS services', 'started'],
    ]);
    expect(record.leaseToken).toBeUndefined();
    const told = events.commandCalls(PutEventsCommand).map((c) => c.args[0].input.Entries![0]).filter((e) => e.DetailType === 'Recovery Cutover Interrupted');
    // The event reaches a page as written: its command names the environment.
    expect(told.map((e) => (JSON.parse(e.Detail!) as { summary: string }).summary)).toEqual([expect.stringMatching(new RegExp(`; resume or undo it \\(npx --no atmr-dr recover cutover ${id} --env drill --resume \\| --undo\\)$`))]);

    stop = false;
    const resumed = await cutover(deps(), id, settings({ readinessUrl: readyUrl }), 'alice', 'resume');

    expect(resumed.ok).toBe(true);
    // The redeploy was cut short while waiting: it runs again (forcing a deployment twice is harmless).
    expect(ecs.commandCalls(UpdateServiceCommand)).toHaveLength(4);
    expect(resumed.steps.map((s) => [s.step, s.outcome])).toEqual([
      ['killswitch maintenance', 'skipped'],
      ['switch database endpoint', 'skipped'],
      ['redeploy ECS services', 'done'],
      ['check /ready', 'done'],
      ['check writes accepted', 'done'],
      ['killswitch back', 'done'],
      ['rename and tag old instance', 'done'],
      ['deletion protection on new production instance', 'done'],
      ['untag new production instance', 'done'],
    ]);
  });

  it.each([
    [UNTAG_STARTED, 'before it removed anything', 1],
    [UNTAG_DONE, 'after it removed the tag, before it journaled so', 0],
  ])('killed at write %i (the untag %s): --resume removes the purpose tag from the copy, once', async (killAt, _when, removals) => {
    const { id } = await killedCutover(killAt);
    expect(rds.commandCalls(RemoveTagsFromResourceCommand)).toHaveLength(1 - removals);
    rds.resetHistory();

    const resumed = await cutover(deps(stale), id, settings({ readinessUrl: readyUrl }), 'bob', 'resume');

    expect(resumed.ok).toBe(true);
    expect(rds.commandCalls(RemoveTagsFromResourceCommand)).toHaveLength(removals);
    expect(renames()).toHaveLength(0);
    expect(instances.get('atmr-prod-pitr-202611301402')!.TagList).toEqual([{ Key: 'atmr-dr:recovery-id', Value: id }]);
    expect(resumed.steps.find((s) => s.step === CUTOVER_STEPS.untag)).toMatchObject({ outcome: 'done' });
    const record = await getRecovery(deps().store, id);
    expect(record.status).toBe('cut-over');
    expect(record.journal!.find((e) => e.step === CUTOVER_STEPS.untag)!.state).toBe('done');
  });

  /** Another instance under the old name: same name, another DbiResourceId (RDS gives each instance its own). */
  const stranger = (): DBInstance => ({
    ...sourceInstance(),
    DbiResourceId: 'db-ZZZZZZZZZZZZZZZZZZZZZZZZZ9',
    DBInstanceArn: 'arn:aws:rds:eu-west-3:111111111111:db:atmr-prod',
    DBInstanceStatus: 'creating',
  });

  it('--resume after the old instance was renamed, a new instance created under the old name meanwhile: the rename is recognised by resource id, the new instance is left alone', async () => {
    // Killed at the rename's "done" write: the old instance is renamed, the journal says "started".
    const { id } = await killedCutover(RENAME_DONE);
    expect(renames()).toHaveLength(1);
    const renamedTo = [...instances.keys()].find((name) => name.startsWith('atmr-prod-replaced-'))!;
    instances.set('atmr-prod', stranger());

    const resumed = await cutover(deps(stale), id, settings({ readinessUrl: readyUrl }), 'bob', 'resume');

    expect(resumed.ok).toBe(true);
    expect(resumed.replacedInstance).toBe(renamedTo);
    expect(renames()).toHaveLength(1);
    expect(rds.commandCalls(AddTagsToResourceCommand).map((c) => c.args[0].input.ResourceName)).toEqual([sourceInstance().DBInstanceArn]);
    expect(instances.get('atmr-prod')).toEqual(stranger());
    expect(instances.get(renamedTo)?.DbiResourceId).toBe(SOURCE_RESOURCE_ID);
  });

  it("--resume after a rename left by hand (the on-call's role refused): not tried again nor counted failed; the event names the rename still to do", async () => {
    rds.on(AddTagsToResourceCommand).callsFake(() => Promise.reject(Object.assign(new Error('User: alice is not authorized to perform: rds:AddTagsToResource'), { name: 'AccessDenied' })));
    const { id } = await killedCutover(UNTAG_STARTED);
    expect((await getRecovery(deps().store, id)).journal!.find((e) => e.step === CUTOVER_STEPS.rename)!.state).toBe('by-hand');
    rds.resetHistory();

    const resumed = await cutover(deps(stale), id, settings({ readinessUrl: readyUrl }), 'bob', 'resume');

    expect(resumed.ok).toBe(true);
    expect(rds.commandCalls(AddTagsToResourceCommand)).toHaveLength(0);
    expect(renames()).toHaveLength(0);
    expect(resumed.replacedInstance).toBeUndefined();
    const rename = resumed.steps.find((s) => s.step === CUTOVER_STEPS.rename)!;
    expect(rename.outcome).toBe('by-hand');
    expect(rename.detail).toMatch(/^left to a human before \(\S+Z\): recover: atmr-prod not renamed: AccessDenied: /);
    expect(resumed.steps.filter((s) => s.outcome === 'failed')).toEqual([]);
    const record = await getRecovery(deps().store, id);
    expect(record.status).toBe('cut-over');
    expect(record.replacedInstance).toBeUndefined();
    expect(record.journal!.find((e) => e.step === CUTOVER_STEPS.rename)!.state).toBe('by-hand');
    const cutOver = events.commandCalls(PutEventsCommand).map((c) => c.args[0].input.Entries![0]).find((e) => e.DetailType === 'Recovery Cut Over')!;
    expect((JSON.parse(cutOver.Detail!) as { summary: string }).summary).toContain(`; atmr-prod NOT renamed yet (it keeps the production name): to be renamed by someone allowed to change atmr-prod: see "npx --no atmr-dr recover status ${id}"`);
  });

  it('--resume when the old name now holds another instance and the old one is not under the journaled name: refused in one line naming both resource ids, nothing renamed or tagged', async () => {
    // Killed at the rename's "started" write: nothing renamed yet. Then the old instance is renamed
    // by someone else and a new one takes its name.
    const { id } = await killedCutover(RENAME_STARTED);
    expect(renames()).toHaveLength(0);
    instances.set('atmr-prod-renamed-by-hand', { ...instances.get('atmr-prod')!, DBInstanceIdentifier: 'atmr-prod-renamed-by-hand' });
    instances.set('atmr-prod', stranger());

    const resumed = await cutover(deps(stale), id, settings({ readinessUrl: readyUrl }), 'bob', 'resume');

    const rename = resumed.steps.find((s) => s.step === CUTOVER_STEPS.rename)!;
    expect(rename.outcome).toBe('failed');
    expect(rename.detail).toBe(
      `recover: atmr-prod is not the instance recovery ${id} restored from (its DbiResourceId is db-ZZZZZZZZZZZZZZZZZZZZZZZZZ9, the recovery recorded ${SOURCE_RESOURCE_ID}: another instance took the name since): nothing renamed or tagged; find the old instance with "aws rds describe-db-instances --filters Name=dbi-resource-id,Values=${SOURCE_RESOURCE_ID}" and rename it by hand`,
    );
    expect(renames()).toHaveLength(0);
    expect(rds.commandCalls(AddTagsToResourceCommand)).toHaveLength(0);
    expect(instances.get('atmr-prod')).toEqual(stranger());
    // Production runs on the copy either way: the cutover is done, the rename left to a human.
    expect(resumed.ok).toBe(true);
    expect((await getRecovery(deps().store, id)).journal!.find((e) => e.step === CUTOVER_STEPS.rename)!.state).toBe('failed');
  });

  it('a cutover whose old instance name was given to the copy since the recovery started (config change, rename) refuses to rename it: the recorded resource id differs', async () => {
    const id = await verifiedRecovery();
    const copy = instances.get('atmr-prod-pitr-202611301402')!;
    instances.set('atmr-prod', { ...copy, DBInstanceIdentifier: 'atmr-prod', DbiResourceId: 'db-COPYCOPYCOPYCOPYCOPYCOPY1' });

    const result = await cutover(deps(), id, settings({ readinessUrl: readyUrl }), 'alice');

    expect(result.steps.find((s) => s.step === CUTOVER_STEPS.rename)).toMatchObject({ outcome: 'failed', detail: expect.stringMatching(/^recover: atmr-prod is not the instance recovery .* restored from \(its DbiResourceId is db-COPYCOPYCOPYCOPYCOPYCOPY1, the recovery recorded db-ABCDEFGHIJKLMNOPQRSTUVWXY0/) });
    expect(renames()).toHaveLength(0);
    expect(rds.commandCalls(AddTagsToResourceCommand)).toHaveLength(0);
  });

  it('undo leaves a killswitch someone changed since the cutover set it, and says so', async () => {
    const { id } = await killedCutover(6);
    parameters.set(KILLSWITCH, { value: JSON.stringify({ mode: 'degraded', reason: 'OSRM down', actor: 'carol', updatedAt: '2026-11-30T14:40:00.000Z', expiresAt: null }), version: 9 });

    const undone = await undoCutover(deps(stale), id, settings(), 'bob');

    expect(undone.steps.find((s) => s.step === 'killswitch maintenance')).toMatchObject({ outcome: 'skipped', detail: 'now degraded (set by carol: OSRM down) since the cutover: left as is' });
    expect(killswitchNow()).toMatchObject({ mode: 'degraded' });
    expect(secretValue.host).toBe(OLD_HOST);
  });

  it('undo judges a maintenance someone set since with its expiry, as every reader does: one whose expiry has passed is said normal by its expiry, and left as is', async () => {
    const { id } = await killedCutover(6);
    const expired = { mode: 'maintenance', reason: 'HOLD: copy is missing bookings', actor: 'carol', updatedAt: '2026-11-30T14:40:00.000Z', expiresAt: new Date(Date.now() - 60_000).toISOString() };
    parameters.set(KILLSWITCH, { value: JSON.stringify(expired), version: 9 });

    const undone = await undoCutover(deps(stale), id, settings(), 'bob');

    expect(undone.steps.find((s) => s.step === 'killswitch maintenance')).toMatchObject({
      outcome: 'skipped',
      detail: `now normal, by the expiry of carol's maintenance (HOLD: copy is missing bookings; expired at ${expired.expiresAt}: normal to every reader), set since the cutover: left as is`,
    });
    expect(JSON.parse(parameters.get(KILLSWITCH)!.value)).toEqual(expired);
    expect(secretValue.host).toBe(OLD_HOST);
  });

  it("undo of a maintenance step journaled started whose write never landed judges the value found with its expiry: the on-call's maintenance from before, expired since, is said normal, not still maintenance", async () => {
    // Arrange: alice's own maintenance from before the cutover, expired since; the cutover died
    // with its maintenance step "started" and the killswitch still holding her value.
    const before = { mode: 'maintenance', reason: 'runbook step 1', actor: 'alice', updatedAt: '2026-11-30T14:00:00.000Z', expiresAt: new Date(Date.now() - 60_000).toISOString() };
    parameters.set(KILLSWITCH, { value: JSON.stringify(before), version: 3 });
    const { id } = await killedCutover(3);
    expect((await getRecovery(deps().store, id)).journal).toEqual([expect.objectContaining({ step: CUTOVER_STEPS.maintenance, state: 'started' })]);
    parameters.set(KILLSWITCH, { value: JSON.stringify(before), version: 5 });

    // Act
    const undone = await undoCutover(deps(stale), id, settings(), 'bob');

    // Assert: what the API does (normal), said by the expiry that makes it so
    expect(undone.steps.find((s) => s.step === CUTOVER_STEPS.maintenance)).toMatchObject({
      outcome: 'undone',
      detail: `never set by this cutover: now normal, by the expiry of alice's maintenance (runbook step 1; expired at ${before.expiresAt}: normal to every reader)`,
    });
    expect(JSON.parse(parameters.get(KILLSWITCH)!.value)).toEqual(before);
  });

  it('resume and undo are refused on a recovery with no interrupted cutover', async () => {
    const id = await verifiedRecovery();

    await expect(cutover(deps(), id, settings(), 'bob', 'resume')).rejects.toThrow(`recover cutover --resume: recovery ${id} is "verified", expected cutting-over: only an interrupted cutover can be resumed`);
    await expect(undoCutover(deps(), id, settings(), 'bob')).rejects.toThrow(`recover cutover --undo: recovery ${id} is "verified", expected cutting-over or cutover-failed`);
  });
});

/**
 * RDS takes a first automated backup right after a point-in-time restore, and production takes its
 * own in its backup window: the instance is then "backing-up". It accepts connections (the cutover
 * only connects to the copy), but RDS documents modifications only for "available" ones, so the
 * rename of the old instance waits for it.
 */
describe('an instance that RDS is backing up', () => {
  let statuses: Map<string, string[]>;

  beforeEach(() => {
    // Each describe of an instance takes the next of its statuses (the last one stays).
    statuses = new Map([
      ['atmr-prod', ['available']],
      ['atmr-prod-pitr-202611301402', ['available']],
    ]);
    rds.on(DescribeDBInstancesCommand).callsFake((input: { DBInstanceIdentifier: string }) => {
      const list = statuses.get(input.DBInstanceIdentifier);
      if (!list) throw notFound();
      const status = list.length > 1 ? list.shift()! : list[0];
      if (input.DBInstanceIdentifier === 'atmr-prod') return { DBInstances: [sourceInstance({ DBInstanceStatus: status })] };
      return {
        DBInstances: [
          {
            DBInstanceIdentifier: input.DBInstanceIdentifier,
            DBInstanceArn: `arn:aws:rds:eu-west-3:111111111111:db:${input.DBInstanceIdentifier}`,
            DBInstanceStatus: status,
            Endpoint: { Address: NEW_HOST, Port: 5432 },
            TagList: [
              { Key: 'atmr-dr:purpose', Value: 'recovery' },
              { Key: 'atmr-dr:recovery-id', Value: latestId },
            ],
          },
        ],
      };
    });
    rds.on(AddTagsToResourceCommand).resolves({});
    rds.on(RemoveTagsFromResourceCommand).resolves({});
    rds.on(ModifyDBInstanceCommand).callsFake((input: { DBInstanceIdentifier: string }) => {
      if (statuses.get(input.DBInstanceIdentifier)![0] !== 'available') throw Object.assign(new Error('Database instance is not in available state.'), { name: 'InvalidDBInstanceStateFault' });
      return {};
    });
  });

  it('cuts over to a copy taking its first backup: the cutover only connects to it', async () => {
    const id = await verifiedRecovery();
    statuses.set('atmr-prod-pitr-202611301402', ['backing-up']);

    const result = await cutover(deps(), id, settings({ readinessUrl: readyUrl }), 'alice');

    expect(result.ok).toBe(true);
    // RDS modifies an available instance only: deletion protection is left to the printed command.
    expect(result.steps.filter((s) => s.outcome !== 'done').map((s) => [s.step, s.outcome, s.detail])).toEqual([
      [CUTOVER_STEPS.protect, 'failed', 'InvalidDBInstanceStateFault: Database instance is not in available state.'],
    ]);
    expect(secretValue.host).toBe(NEW_HOST);
    expect((await getRecovery(deps().store, id)).status).toBe('cut-over');
  });

  it('renames the old instance once its backup is over, polling meanwhile (the lease renewed at each poll)', async () => {
    const id = await verifiedRecovery();
    // The rename's first two describes see it backing up, the third available.
    statuses.set('atmr-prod', ['backing-up', 'backing-up', 'available']);
    const sleeps: number[] = [];

    const result = await cutover(deps({ sleep: async (ms) => void sleeps.push(ms) }), id, settings({ serviceStableTimeoutSeconds: 900 }), 'alice');

    expect(result.ok).toBe(true);
    expect(result.steps.find((s) => s.step === CUTOVER_STEPS.rename)).toMatchObject({ outcome: 'done' });
    expect(renames().map((c) => c.args[0].input.DBInstanceIdentifier)).toEqual(['atmr-prod']);
    expect(rds.commandCalls(AddTagsToResourceCommand)).toHaveLength(1);
    expect(sleeps).toEqual([10_000, 10_000]);
    expect((await getRecovery(deps().store, id)).replacedInstance).toMatch(/^atmr-prod-replaced-\d{12}$/);
  });

  it('an old instance still backing up when the wait ends is not renamed: the step fails with the command to run by hand, production stays on the copy, the copy is untagged', async () => {
    const id = await verifiedRecovery();
    statuses.set('atmr-prod', ['backing-up']);

    const result = await cutover(deps(), id, settings({ renameTimeoutSeconds: 0 }), 'alice');

    expect(result.ok).toBe(true);
    expect(renames()).toHaveLength(0);
    expect(rds.commandCalls(AddTagsToResourceCommand)).toHaveLength(0);
    const rename = result.steps.find((s) => s.step === CUTOVER_STEPS.rename)!;
    expect(rename.outcome).toBe('failed');
    expect(rename.detail).toMatch(
      /^recover: atmr-prod is "backing-up" still, after 0 s \(RDS documents modifications of an available instance only\): nothing renamed or tagged; once it is available: aws rds modify-db-instance --db-instance-identifier atmr-prod --new-db-instance-identifier atmr-prod-replaced-\d{12} --apply-immediately, then, once renamed: aws rds add-tags-to-resource --resource-name "\$\(aws rds describe-db-instances --db-instance-identifier atmr-prod-replaced-\d{12} --query 'DBInstances\[0\]\.DBInstanceArn' --output text\)" --tags Key=atmr-dr:replaced-by,Value=atmr-prod-pitr-202611301402 Key=atmr-dr:replaced-by-recovery,Value=r\d{14}-[0-9a-f]{4} Key=atmr-dr:keep,Value=true$/,
    );
    expect(result.steps.find((s) => s.step === CUTOVER_STEPS.untag)).toMatchObject({ outcome: 'done' });
    expect((await getRecovery(deps().store, id)).status).toBe('cut-over');
  });

  it.each([
    ['AddTagsToResource', 'rds:AddTagsToResource'],
    ['ModifyDBInstance', 'rds:ModifyDBInstance'],
  ])("the on-call's role refused %s on the old instance (never granted): the step is left by hand (not failed) with the commands for someone allowed, the cutover is done, its event names the rename still to do", async (refused, action) => {
    const id = await verifiedRecovery();
    const denied = () => Object.assign(new Error(`User: arn:aws:sts::111111111111:assumed-role/oncall/alice is not authorized to perform: ${action} on resource: arn:aws:rds:eu-west-3:111111111111:db:atmr-prod`), { name: 'AccessDenied' });
    if (refused === 'AddTagsToResource') rds.on(AddTagsToResourceCommand).callsFake(() => Promise.reject(denied()));
    else rds.on(ModifyDBInstanceCommand).callsFake((input: { NewDBInstanceIdentifier?: string }) => (input.NewDBInstanceIdentifier ? Promise.reject(denied()) : {}));

    const result = await cutover(deps(), id, settings({ serviceStableTimeoutSeconds: 900 }), 'alice');

    expect(result.ok).toBe(true);
    const rename = result.steps.find((s) => s.step === CUTOVER_STEPS.rename)!;
    expect(rename.outcome).toBe('by-hand');
    expect(rename.detail).toMatch(
      new RegExp(
        `^recover: atmr-prod not renamed: AccessDenied: User: \\S+ is not authorized to perform: ${action} on resource: \\S+ \\(the on-call's recovery role is never granted changes to the production instance\\); someone allowed to change it runs: aws rds modify-db-instance --db-instance-identifier atmr-prod --new-db-instance-identifier (atmr-prod-replaced-\\d{12}) --apply-immediately, then, once renamed: aws rds add-tags-to-resource --resource-name "\\$\\(aws rds describe-db-instances --db-instance-identifier \\1 --query 'DBInstances\\[0\\]\\.DBInstanceArn' --output text\\)" --tags Key=atmr-dr:replaced-by,Value=atmr-prod-pitr-202611301402 Key=atmr-dr:replaced-by-recovery,Value=${id} Key=atmr-dr:keep,Value=true$`,
      ),
    );
    // Refused at once, not waited for as a busy instance.
    expect(result.steps.filter((s) => s.outcome !== 'done').map((s) => s.step)).toEqual([CUTOVER_STEPS.rename]);
    const record = await getRecovery(deps().store, id);
    expect(record).toMatchObject({ status: 'cut-over' });
    expect(record.replacedInstance).toBeUndefined();
    expect(record.journal!.find((e) => e.step === CUTOVER_STEPS.rename)).toMatchObject({ state: 'by-hand', detail: rename.detail });
    // The team channel hears that the old instance still holds the production name, and who renames it.
    const cutOver = events.commandCalls(PutEventsCommand).map((c) => c.args[0].input.Entries![0]).find((e) => e.DetailType === 'Recovery Cut Over')!;
    expect((JSON.parse(cutOver.Detail!) as { summary: string }).summary).toMatch(
      new RegExp(`; atmr-prod NOT renamed yet \\(it keeps the production name\\): to be renamed by someone allowed to change atmr-prod: see "npx --no atmr-dr recover status ${id}"$`),
    );
  });

  it('an old instance in a state RDS does not leave by itself (storage-full) is not waited for: the step fails at once with the command to run by hand', async () => {
    const id = await verifiedRecovery();
    statuses.set('atmr-prod', ['storage-full']);
    const sleeps: number[] = [];

    const result = await cutover(deps({ sleep: async (ms) => void sleeps.push(ms) }), id, settings({ serviceStableTimeoutSeconds: 900 }), 'alice');

    expect(result.ok).toBe(true);
    const rename = result.steps.find((s) => s.step === CUTOVER_STEPS.rename)!;
    expect(rename.outcome).toBe('failed');
    expect(rename.detail).toMatch(/^recover: atmr-prod is "storage-full" now \(RDS documents modifications of an available instance only\): nothing renamed or tagged; once it is available: aws rds modify-db-instance /);
    expect(sleeps.filter((ms) => ms === 10_000)).toHaveLength(0);
    expect(renames()).toHaveLength(0);
    expect((await getRecovery(deps().store, id)).status).toBe('cut-over');
  });
});
