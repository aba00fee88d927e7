import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { RecoveryRequest } from '../../lambdas/recovery/contract';
import { activeRecoveryId, beginRecovery, getRecovery, listRecoveryIds, releaseLock, updateRecovery } from '../../lambdas/recovery/store';
import { SECOND_SIGNAL_AFTER_MS } from '../../bin/cli/interrupt';
import { testCluster, uniqueDatabaseName } from '../support/cluster';
import { LocalDynamo, startLocalDynamo } from '../support/dynamodb';
import { installedCopy, type InstalledCopy } from '../support/installed-copy';
import { psql } from '../support/postgres';
import { operatorEnv as baseOperatorEnv } from '../support/operator-env';
import { refusals, words } from './parse-refusals';

/**
 * A successful `atmr-dr recover cutover ID --yes` as an operator runs it: the real entry point
 * (bin/atmr-dr.cjs running the bundle `npm run build` makes) in a child process, installed with its
 * own cdk.json (the API's /ready on a local server). The ops-state table is dynalite; SSM, Secrets
 * Manager, ECS, EventBridge, CloudWatch and RDS are one local HTTP server speaking their JSON and
 * query protocols, holding the state the cutover changes and recording every call; the write check
 * runs on a real PostgreSQL database playing the recovered instance. STS, SFN and CloudFormation
 * point at a closed port: a call there would fail, not pass by accident.
 */
const ROOT = path.join(__dirname, '..', '..');
const CLOSED = 'http://127.0.0.1:9';
const KILLSWITCH = '/atmr/example/killswitch';
/** The secret the API reads its host from (the app's own: an RDS-managed rds! secret holds no host, and the config refuses it). */
const SECRET = 'arn:aws:secretsmanager:eu-west-3:111111111111:secret:atmr/prod/database-AbCdEf';
const OLD_HOST = 'atmr-prod.abcdefghijkl.eu-west-3.rds.amazonaws.com';
const CLUSTER_ARN = 'arn:aws:ecs:eu-west-3:111111111111:cluster/atmr-prod';
const SERVICES = ['atmr-api', 'atmr-celery-worker', 'atmr-celery-beat'];
const ID = 'r20261130143000-e2e0';

jest.setTimeout(180_000);

interface AwsCall {
  readonly service: string;
  readonly action: string;
  readonly input: Record<string, unknown>;
}

/** The AWS side of a cutover, stateful: a killswitch parameter, the database secret, ECS services, two RDS instances. */
interface FakeAws {
  readonly url: string;
  readonly calls: AwsCall[];
  readonly parameters: Map<string, { value: string; version: number }>;
  secret(): Record<string, unknown>;
  /** Each instance's tags as RDS keeps them (the copy gets the restore's in verifiedRecovery). */
  readonly instances: Map<string, { arn: string; resourceId: string; tags: Map<string, string>; deletionProtection?: boolean }>;
  /** When true, ModifyDBInstance DeletionProtection is refused (AccessDenied: the operator's role may not). */
  protectionRefused: boolean;
  /**
   * When false (as the on-call's recovery role: lib/constructs/recovery.ts grants nothing that
   * changes the production instance), AddTagsToResource and the rename (ModifyDBInstance
   * NewDBInstanceIdentifier) on an instance without the atmr-dr:purpose tag are refused, AccessDenied.
   */
  adminRole: boolean;
  /** When false, the services' deployments stay IN_PROGRESS (the redeploy waits). */
  ecsStable: boolean;
  /** When true, the services' deployments fail (tasks that do not start). */
  ecsFailed: boolean;
  /** How long ECS takes to answer a DescribeServices (a slow ECS API): 0, at once. */
  ecsDescribeDelayMs: number;
  /** How long RDS takes to answer the rename's AddTagsToResource (a slow rename, after the killswitch is back): 0, at once. */
  renameDelayMs: number;
  /** Runs at each UpdateService (someone acting while the services redeploy). */
  onRedeploy?: () => void;
  /** How many GetSecretValue are answered before the others are refused (AccessDenied): Infinity, all. */
  secretReads: number;
  /** When true, EventBridge refuses PutEvents (the team's events: reported, never a step's failure). */
  eventsRefused: boolean;
  /** When true, SSM refuses every read of the killswitch (GetParameter: AccessDenied). */
  killswitchUnread: boolean;
  /** When true, SSM refuses the killswitch's PutParameter (AccessDenied: nothing written). */
  killswitchPutRefused: boolean;
  /** When true, every read of the killswitch after a PutParameter of it (one in `calls`) is throttled: the write applied, its re-read refused. */
  killswitchRereadThrottled: boolean;
  reset(): void;
  stop(): Promise<void>;
}

function startFakeAws(): Promise<FakeAws> {
  const calls: AwsCall[] = [];
  const parameters = new Map<string, { value: string; version: number }>();
  const cluster = testCluster();
  let secret: Record<string, unknown> = {};
  const instances = new Map<string, { arn: string; resourceId: string; tags: Map<string, string>; deletionProtection?: boolean }>();
  const state: { ecsStable: boolean; ecsFailed: boolean; protectionRefused: boolean; adminRole: boolean; ecsDescribeDelayMs: number; renameDelayMs: number; onRedeploy?: () => void; secretReads: number; eventsRefused: boolean; killswitchUnread: boolean; killswitchPutRefused: boolean; killswitchRereadThrottled: boolean } = { ecsStable: true, ecsFailed: false, protectionRefused: false, adminRole: false, ecsDescribeDelayMs: 0, renameDelayMs: 0, secretReads: Infinity, eventsRefused: false, killswitchUnread: false, killswitchPutRefused: false, killswitchRereadThrottled: false };
  /** Deployments forced per service since the reset. */
  const forced = new Map<string, number>();
  const reset = () => {
    calls.splice(0);
    forced.clear();
    parameters.clear();
    parameters.set(KILLSWITCH, { value: JSON.stringify({ mode: 'normal', reason: 'all clear', actor: 'deploy', updatedAt: '2026-11-30T08:00:00.000Z', expiresAt: null }), version: 3 });
    secret = { username: cluster.user, password: 'unused-by-trust-auth', host: OLD_HOST, port: 5432, dbname: 'atmr', engine: 'postgres' };
    instances.clear();
    // RDS gives each instance a DbiResourceId of its own, kept across renames.
    instances.set('atmr-prod', { arn: 'arn:aws:rds:eu-west-3:111111111111:db:atmr-prod', resourceId: 'db-PRODPRODPRODPRODPRODPROD1', tags: new Map([['project', 'atmr']]) });
    instances.set('atmr-prod-pitr-202611301402', { arn: 'arn:aws:rds:eu-west-3:111111111111:db:atmr-prod-pitr-202611301402', resourceId: 'db-COPYCOPYCOPYCOPYCOPYCOPY1', tags: new Map() });
    state.ecsStable = true;
    state.ecsFailed = false;
    state.protectionRefused = false;
    state.ecsDescribeDelayMs = 0;
    state.renameDelayMs = 0;
    state.adminRole = false;
    state.onRedeploy = undefined;
    state.secretReads = Infinity;
    state.eventsRefused = false;
    state.killswitchUnread = false;
    state.killswitchPutRefused = false;
    state.killswitchRereadThrottled = false;
  };
  reset();

  const json = (res: http.ServerResponse, body: unknown, status = 200) => {
    res.statusCode = status;
    res.setHeader('content-type', 'application/x-amz-json-1.1');
    res.end(JSON.stringify(body));
  };
  const xml = (res: http.ServerResponse, action: string, result: string, status = 200) => {
    res.statusCode = status;
    res.setHeader('content-type', 'text/xml');
    res.end(
      status === 200
        ? `<${action}Response xmlns="http://rds.amazonaws.com/doc/2014-10-31/"><${action}Result>${result}</${action}Result><ResponseMetadata><RequestId>1</RequestId></ResponseMetadata></${action}Response>`
        : `<ErrorResponse xmlns="http://rds.amazonaws.com/doc/2014-10-31/"><Error><Type>Sender</Type><Code>DBInstanceNotFound</Code><Message>${result}</Message></Error><RequestId>1</RequestId></ErrorResponse>`,
    );
  };

  const server = http.createServer((req, res) => {
    let text = '';
    req.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
    req.on('end', () => {
      const target = String(req.headers['x-amz-target'] ?? '');
      if (!target) {
        // RDS: the query protocol (form-encoded Action=...), XML answers.
        const form = Object.fromEntries(new URLSearchParams(text));
        const { Action: action, Version: _v, ...input } = form;
        calls.push({ service: 'rds', action, input });
        const name = form.DBInstanceIdentifier;
        const denied = (arn: string) => {
          res.statusCode = 403;
          res.setHeader('content-type', 'text/xml');
          res.end(
            `<ErrorResponse xmlns="http://rds.amazonaws.com/doc/2014-10-31/"><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>User: arn:aws:sts::111111111111:assumed-role/oncall/alice is not authorized to perform: rds:${action} on resource: ${arn}</Message></Error><RequestId>1</RequestId></ErrorResponse>`,
          );
        };
        // The recovery role's grants on RDS changes are conditioned on the copy's purpose tag.
        const outOfReach = (instance: { tags: Map<string, string> } | undefined) => !state.adminRole && !instance?.tags.has('atmr-dr:purpose');
        const tagging = () => (outOfReach([...instances.values()].find((i) => i.arn === form.ResourceName)) ? denied(form.ResourceName) : xml(res, action, ''));
        if (action === 'AddTagsToResource') return state.renameDelayMs ? void setTimeout(tagging, state.renameDelayMs) : tagging();
        if (action === 'ModifyDBInstance' && form.NewDBInstanceIdentifier !== undefined && outOfReach(instances.get(name))) return denied(instances.get(name)?.arn ?? name);
        if (action === 'DescribeDBInstances') {
          const instance = instances.get(name);
          if (!instance) return xml(res, action, `DBInstance ${name} not found.`, 404);
          const tags = [...instance.tags].map(([key, value]) => `<Tag><Key>${key}</Key><Value>${value}</Value></Tag>`).join('');
          return xml(res, action, `<DBInstances><DBInstance><DBInstanceIdentifier>${name}</DBInstanceIdentifier><DBInstanceArn>${instance.arn}</DBInstanceArn><DbiResourceId>${instance.resourceId}</DbiResourceId><DBInstanceStatus>available</DBInstanceStatus><TagList>${tags}</TagList></DBInstance></DBInstances>`);
        }
        if (action === 'RemoveTagsFromResource') {
          const instance = [...instances.values()].find((i) => i.arn === form.ResourceName)!;
          for (const [key, value] of Object.entries(form)) if (key.startsWith('TagKeys.member.')) instance.tags.delete(value);
          return xml(res, action, '');
        }
        if (action === 'ModifyDBInstance' && form.DeletionProtection !== undefined) {
          if (state.protectionRefused) {
            res.statusCode = 403;
            res.setHeader('content-type', 'text/xml');
            return res.end(
              `<ErrorResponse xmlns="http://rds.amazonaws.com/doc/2014-10-31/"><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>User: arn:aws:sts::111111111111:assumed-role/oncall/alice is not authorized to perform: rds:ModifyDBInstance</Message></Error><RequestId>1</RequestId></ErrorResponse>`,
            );
          }
          instances.get(name)!.deletionProtection = form.DeletionProtection === 'true';
          return xml(res, action, `<DBInstance><DBInstanceIdentifier>${name}</DBInstanceIdentifier><DBInstanceStatus>available</DBInstanceStatus><DeletionProtection>true</DeletionProtection></DBInstance>`);
        }
        if (action === 'ModifyDBInstance') {
          const instance = instances.get(name)!;
          instances.delete(name);
          instances.set(form.NewDBInstanceIdentifier, instance);
          return xml(res, action, `<DBInstance><DBInstanceIdentifier>${name}</DBInstanceIdentifier><DBInstanceStatus>renaming</DBInstanceStatus></DBInstance>`);
        }
        return xml(res, action, `unexpected ${action}`, 400);
      }
      const [prefix, action] = target.split('.');
      const input = JSON.parse(text || '{}') as Record<string, unknown>;
      const service = { AmazonSSM: 'ssm', secretsmanager: 'secretsmanager', AmazonEC2ContainerServiceV20141113: 'ecs', AWSEvents: 'events', GraniteServiceVersion20100801: 'cloudwatch' }[prefix] ?? prefix;
      calls.push({ service, action, input });
      if (service === 'ssm' && action === 'GetParameter' && state.killswitchUnread && input.Name === KILLSWITCH) return json(res, { __type: 'AccessDeniedException', message: `User is not authorized to perform: ssm:GetParameter on resource: ${KILLSWITCH}` }, 400);
      if (service === 'ssm' && action === 'GetParameter' && state.killswitchRereadThrottled && input.Name === KILLSWITCH && calls.some((c) => c.action === 'PutParameter' && c.input.Name === KILLSWITCH)) {
        return json(res, { __type: 'ThrottlingException', message: 'Rate exceeded' }, 400);
      }
      if (service === 'ssm' && action === 'PutParameter' && state.killswitchPutRefused && input.Name === KILLSWITCH) {
        return json(res, { __type: 'AccessDeniedException', message: `User is not authorized to perform: ssm:PutParameter on resource: ${KILLSWITCH}` }, 400);
      }
      if (service === 'ssm' && action === 'GetParameter') {
        const p = parameters.get(input.Name as string);
        if (!p) return json(res, { __type: 'ParameterNotFound', message: 'not found' }, 400);
        return json(res, { Parameter: { Name: input.Name, Type: 'String', Value: p.value, Version: p.version } });
      }
      if (service === 'ssm' && action === 'PutParameter') {
        const version = (parameters.get(input.Name as string)?.version ?? 0) + 1;
        parameters.set(input.Name as string, { value: input.Value as string, version });
        return json(res, { Version: version, Tier: 'Standard' });
      }
      if (service === 'secretsmanager' && action === 'GetSecretValue' && calls.filter((c) => c.action === 'GetSecretValue').length > state.secretReads) {
        return json(res, { __type: 'AccessDeniedException', message: `User is not authorized to perform: secretsmanager:GetSecretValue on resource: ${SECRET}` }, 400);
      }
      if (service === 'secretsmanager' && action === 'GetSecretValue') return json(res, { ARN: SECRET, Name: 'db', SecretString: JSON.stringify(secret), VersionId: 'v1' });
      if (service === 'secretsmanager' && action === 'PutSecretValue') {
        secret = JSON.parse(input.SecretString as string) as Record<string, unknown>;
        return json(res, { ARN: SECRET, Name: 'db', VersionId: 'v2' });
      }
      // Each forced deployment gets an id of its own (<service>/<n>), named PRIMARY in the answer and in later reads, as ECS does.
      const latest = (serviceName: string) => `${serviceName}/${forced.get(serviceName) ?? 0}`;
      if (service === 'ecs' && action === 'UpdateService') {
        state.onRedeploy?.();
        forced.set(input.service as string, (forced.get(input.service as string) ?? 0) + 1);
        return json(res, { service: { serviceName: input.service, deployments: [{ id: latest(input.service as string), status: 'PRIMARY', rolloutState: 'IN_PROGRESS' }] } });
      }
      if (service === 'ecs' && action === 'DescribeServices') {
        const rolloutState = state.ecsFailed ? 'FAILED' : state.ecsStable ? 'COMPLETED' : 'IN_PROGRESS';
        const answer = () => json(res, { services: (input.services as string[]).map((serviceName) => ({ serviceName, deployments: [{ id: latest(serviceName), status: 'PRIMARY', rolloutState, ...(state.ecsFailed && { rolloutStateReason: 'tasks failed to start' }), runningCount: state.ecsStable ? 2 : 1, desiredCount: 2 }] })), failures: [] });
        if (state.ecsDescribeDelayMs) return void setTimeout(answer, state.ecsDescribeDelayMs);
        return answer();
      }
      if (service === 'events' && action === 'PutEvents' && state.eventsRefused) return json(res, { __type: 'AccessDeniedException', message: 'User is not authorized to perform: events:PutEvents' }, 400);
      if (service === 'events' && action === 'PutEvents') return json(res, { FailedEntryCount: 0, Entries: [{ EventId: String(calls.length) }] });
      if (service === 'cloudwatch' && action === 'PutMetricData') {
        res.setHeader('content-type', 'application/x-amz-json-1.0');
        return res.end('{}');
      }
      return json(res, { __type: 'ValidationException', message: `unexpected ${target}` }, 400);
    });
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () =>
      // The switches (ecsStable, adminRole...) are `state` itself: a test's assignment is what the server reads.
      resolve(
        Object.assign(state, {
          url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
          calls,
          parameters,
          secret: () => secret,
          instances,
          reset,
          stop: () => new Promise<void>((done) => server.close(() => done())),
        }),
      ),
    ),
  );
}

/** The operator's install (installedCopy): the launcher, the bundle, and a cdk.json whose example environment switches SECRET and points /ready at a local server. */
function installWithConfig(readinessUrl: string, databaseName: string, instanceIdentifier?: string, options: { withoutEcs?: boolean; withProd?: boolean } = {}): InstalledCopy {
  return installedCopy('atmr-dr-cutover-', (environments) => {
    const environment = environments.example as { database: { name: string; instanceIdentifier: string }; recovery: Record<string, unknown> };
    environment.database.name = databaseName;
    environment.recovery = { ...environment.recovery, endpoint: { kind: 'secretHost', secretArn: SECRET }, readinessUrl, ecs: { clusterArn: CLUSTER_ARN, serviceNames: SERVICES } };
    // A cdk.json of an older version, which let recovery be enabled without services to redeploy.
    if (options.withoutEcs) delete environment.recovery.ecs;
    // A second environment (prod, deployed with -c env=prod) beside the default one.
    if (options.withProd) environments.prod = JSON.parse(JSON.stringify(environment)) as Record<string, unknown>;
    if (instanceIdentifier) {
      // Step 10 as docs/recovery.md says it: the config names the copy, and the example's explicit
      // prefix, which the copy is named under, gives way to one production's name does not start with.
      environment.database.instanceIdentifier = instanceIdentifier;
      environment.recovery.newInstancePrefix = 'atmr-prod-r2-';
    }
  });
}

interface Run {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

function start(launcher: string, args: string[], env: NodeJS.ProcessEnv): { child: ReturnType<typeof spawn>; done: Promise<Run> } {
  const child = spawn(process.execPath, [launcher, ...args], { cwd: os.tmpdir(), env, stdio: ['ignore', 'pipe', 'pipe'] });
  const done = new Promise<Run>((resolve, reject) => {
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
  return { child, done };
}

const run = (launcher: string, args: string[], env: NodeJS.ProcessEnv): Promise<Run> => start(launcher, args, env).done;

let dynamo: LocalDynamo;
let aws: Awaited<ReturnType<typeof startFakeAws>>;
let ready: http.Server;
const readyHits: string[] = [];
let install: InstalledCopy;
const cluster = testCluster();
const recoveredDb = uniqueDatabaseName('rec_e2e');

beforeAll(async () => {
  execFileSync('npm', ['run', 'build', '--silent'], { cwd: ROOT, stdio: 'pipe' });
  dynamo = await startLocalDynamo();
  aws = await startFakeAws();
  ready = http.createServer((req, res) => {
    readyHits.push(String(req.url));
    res.end('{"status":"ready"}');
  });
  await new Promise<void>((resolve) => ready.listen(0, '127.0.0.1', resolve));
  install = installWithConfig(`http://127.0.0.1:${(ready.address() as AddressInfo).port}/ready`, recoveredDb);
  psql(cluster, 'postgres', `CREATE DATABASE ${recoveredDb}`);
});

afterAll(async () => {
  await dynamo.stop();
  await aws.stop();
  await new Promise((resolve) => ready.close(resolve));
  fs.rmSync(install.root, { recursive: true, force: true });
  psql(cluster, 'postgres', `DROP DATABASE IF EXISTS ${recoveredDb} WITH (FORCE)`);
});

async function verifiedRecovery(id: string): Promise<void> {
  const store = { ddb: dynamo.ddb, tableName: dynamo.tableName };
  const request: RecoveryRequest & { sourceInstance: string; sourceResourceId: string } = {
    recoveryId: id,
    toTime: '2026-11-30T14:02:00.000Z',
    newInstance: 'atmr-prod-pitr-202611301402',
    actor: 'alice',
    reason: 'bookings deleted by a migration',
    requestedAt: new Date(Date.now() - 20 * 60_000).toISOString(),
    sourceInstance: 'atmr-prod',
    // As startRecovery records it: the old instance's id, which the rename checks.
    sourceResourceId: 'db-PRODPRODPRODPRODPRODPROD1',
  };
  await beginRecovery(store, request);
  await updateRecovery(store, id, { status: 'verified', newInstanceHost: cluster.host, newInstancePort: cluster.port });
  // The tags the restore gave the copy.
  const copy = aws.instances.get('atmr-prod-pitr-202611301402')!;
  copy.tags = new Map([
    ['project', 'atmr'],
    ['atmr-dr:purpose', 'recovery'],
    ['atmr-dr:recovery-id', id],
  ]);
}

function operatorEnv(): NodeJS.ProcessEnv {
  return baseOperatorEnv({
    AWS_MAX_ATTEMPTS: '1',
    AWS_ENDPOINT_URL_DYNAMODB: dynamo.endpoint,
    ...Object.fromEntries(['SSM', 'SECRETS_MANAGER', 'ECS', 'RDS', 'EVENTBRIDGE', 'CLOUDWATCH'].map((s) => [`AWS_ENDPOINT_URL_${s}`, aws.url])),
    ...Object.fromEntries(['STS', 'SFN', 'CLOUDFORMATION'].map((s) => [`AWS_ENDPOINT_URL_${s}`, CLOSED])),
    ATMR_OPS_TABLE: dynamo.tableName,
    KILLSWITCH_PARAMETER: KILLSWITCH,
    // The local PostgreSQL playing the recovered instance has no TLS; the CLI requires it unless told.
    PGSSLMODE: 'disable',
  });
}

/**
 * Each test starts with production on atmr-prod, as the fake's reset leaves it: an earlier test's
 * cut-over recovery (of atmr-prod) is retired, or the cutover would refuse every recovery of
 * atmr-prod as one of the instance that cutover replaced.
 */
async function retireCutOvers(): Promise<void> {
  const store = { ddb: dynamo.ddb, tableName: dynamo.tableName };
  for (const id of await listRecoveryIds(store, 100)) {
    if ((await getRecovery(store, id)).status === 'cut-over') await updateRecovery(store, id, { status: 'abandoned' });
  }
}

describe('atmr-dr recover cutover ID --yes (the bundle, end to end)', () => {
  beforeEach(async () => {
    aws.reset();
    await retireCutOvers();
  });

  /**
   * An earlier recovery of atmr-prod cut over (its journal as the cutover writes it: the endpoint
   * switched from atmr-prod's address to the copy's), then a second recovery of atmr-prod verified.
   * Returns when the first finished its cutover.
   */
  async function cutOverThenVerified(first: string, second: string): Promise<string> {
    const store = { ddb: dynamo.ddb, tableName: dynamo.tableName };
    await verifiedRecovery(first);
    const finishedAt = '2026-11-30T15:20:00.000Z';
    await updateRecovery(store, first, {
      status: 'cut-over',
      journal: [
        { step: 'switch database endpoint', state: 'done', startedAt: '2026-11-30T15:10:00.000Z', finishedAt: '2026-11-30T15:10:01.000Z', by: 'alice', undo: { endpoint: { previous: `${OLD_HOST}:5432`, target: `${cluster.host}:${cluster.port}` } } },
        { step: 'killswitch back', state: 'done', startedAt: '2026-11-30T15:19:00.000Z', finishedAt, by: 'alice' },
      ],
    });
    await releaseLock(store, first);
    await verifiedRecovery(second);
    return finishedAt;
  }

  /** The API's endpoint where the first cutover left it: the copy's address. */
  const endpointOnCopy = () => Object.assign(aws.secret(), { host: cluster.host, port: cluster.port });
  const ENDPOINT = `secret ${SECRET} host`;

  it('a recovery of the instance an earlier cutover replaced, while production\'s endpoint names the copy, is refused before anything changes: exit 2, one line naming that cutover, its copy and when, and the cdk.json keys', async () => {
    const store = { ddb: dynamo.ddb, tableName: dynamo.tableName };
    const first = 'r20261130150000-aa01';
    const second = 'r20261130160000-aa02';
    const finishedAt = await cutOverThenVerified(first, second);
    endpointOnCopy();

    const result = await run(install.launcher, ['recover', 'cutover', second, '--yes'], operatorEnv()).finally(() => releaseLock(store, second));

    expect(result.status).toBe(2);
    expect(result.stdout).toBe('');
    expect(result.stderr).toBe(
      `atmr-dr: recover cutover: recovery ${first} cut production (example) over to atmr-prod-pitr-202611301402 at ${finishedAt}, replacing atmr-prod: recovery ${second} restored atmr-prod, not production: cutting it over would lose production's writes on atmr-prod-pitr-202611301402; abandon it ("npx --no atmr-dr recover abandon ${second}"), then start a new recovery once database.instanceIdentifier and database.host name atmr-prod-pitr-202611301402 in cdk.json\n`,
    );
    // The endpoint read, and nothing else.
    expect(aws.calls.map((c) => `${c.service}:${c.action}`)).toEqual(['secretsmanager:GetSecretValue']);
    expect((await getRecovery(store, second)).status).toBe('verified');
  });

  it('production taken back by hand to the instance an earlier cutover replaced (its endpoint names it again): a recovery of that instance is cut over, one stderr line saying so; status names the endpoint and the instance', async () => {
    const store = { ddb: dynamo.ddb, tableName: dynamo.tableName };
    const first = 'r20261130150000-aa03';
    const second = 'r20261130160000-aa04';
    const finishedAt = await cutOverThenVerified(first, second);
    // aws.reset() left the endpoint on atmr-prod: as the documented commands going back by hand leave it.

    const result = await run(install.launcher, ['recover', 'cutover', second, '--yes'], operatorEnv()).finally(() => releaseLock(store, second));

    expect(result.stderr).toBe(
      `atmr-dr: recover cutover: recovery ${first} cut production (example) over to atmr-prod-pitr-202611301402 at ${finishedAt}, and production's endpoint (${ENDPOINT}: ${OLD_HOST}:5432) names atmr-prod again (taken back by hand): the recovery proceeds from atmr-prod\n`,
    );
    expect(result.status).toBe(0);
    expect((await getRecovery(store, second)).status).toBe('cut-over');
    expect(aws.secret()).toMatchObject({ host: cluster.host, port: cluster.port });
    // Its /ready call is this test's: the next test counts its own.
    expect(readyHits.splice(0)).toEqual(['/ready']);

    // Status of the first, before the second's cutover is done: the endpoint names atmr-prod.
    Object.assign(aws.secret(), { host: OLD_HOST, port: 5432 });
    await updateRecovery(store, second, { status: 'abandoned' });
    const status = await run(install.launcher, ['recover', 'status', first], operatorEnv());

    expect(status.status).toBe(0);
    expect(status.stdout.split('\n')).toContain(`production's endpoint: ${OLD_HOST}:5432 (atmr-prod, the instance recovery ${first} replaced: taken back by hand)`);
  });

  it("an endpoint that names neither the copy nor the instance an earlier cutover replaced (a proxy, another instance) refuses a recovery of that instance: exit 2, one line naming the endpoint's value, both instances and the fix", async () => {
    const store = { ddb: dynamo.ddb, tableName: dynamo.tableName };
    const first = 'r20261130150000-aa05';
    const second = 'r20261130160000-aa06';
    const finishedAt = await cutOverThenVerified(first, second);
    const proxy = 'atmr-proxy.proxy-abcdefghijkl.eu-west-3.rds.amazonaws.com';
    Object.assign(aws.secret(), { host: proxy, port: 5432 });

    const result = await run(install.launcher, ['recover', 'cutover', second, '--yes'], operatorEnv()).finally(() => releaseLock(store, second));

    expect(result.status).toBe(2);
    expect(result.stdout).toBe('');
    expect(result.stderr).toBe(
      `atmr-dr: recover cutover: recovery ${first} cut production (example) over to atmr-prod-pitr-202611301402 at ${finishedAt}, replacing atmr-prod, and production's endpoint (${ENDPOINT}) reads "${proxy}:5432", which names neither atmr-prod-pitr-202611301402 nor atmr-prod: which one production runs on is not known; point it at the instance production runs on, then run the command again (if that is atmr-prod-pitr-202611301402: abandon recovery ${second}, it restored atmr-prod, not production)\n`,
    );
    expect(aws.calls.map((c) => `${c.service}:${c.action}`)).toEqual(['secretsmanager:GetSecretValue']);
    expect((await getRecovery(store, second)).status).toBe('verified');
    await updateRecovery(store, second, { status: 'abandoned' });
  });

  it('an endpoint that cannot be read (AccessDenied) refuses a recovery of the instance an earlier cutover replaced as if it named the copy, the line saying why it could not tell; status says it could not be read and exits 0', async () => {
    const store = { ddb: dynamo.ddb, tableName: dynamo.tableName };
    const first = 'r20261130150000-aa07';
    const second = 'r20261130160000-aa08';
    const finishedAt = await cutOverThenVerified(first, second);
    aws.secretReads = 0;

    const result = await run(install.launcher, ['recover', 'cutover', second, '--yes'], operatorEnv()).finally(() => releaseLock(store, second));

    expect(result.status).toBe(2);
    expect(result.stdout).toBe('');
    const denied = `AccessDeniedException: User is not authorized to perform: secretsmanager:GetSecretValue on resource: ${SECRET}`;
    expect(result.stderr).toBe(
      `atmr-dr: recover cutover: recovery ${first} cut production (example) over to atmr-prod-pitr-202611301402 at ${finishedAt}, replacing atmr-prod: recovery ${second} restored atmr-prod, not production: cutting it over would lose production's writes on atmr-prod-pitr-202611301402; abandon it ("npx --no atmr-dr recover abandon ${second}"), then start a new recovery once database.instanceIdentifier and database.host name atmr-prod-pitr-202611301402 in cdk.json; production's endpoint (${ENDPOINT}) could not be read (${denied}): if production was taken back to atmr-prod by hand, check that endpoint and your right to read it, then run the command again\n`,
    );
    expect((await getRecovery(store, second)).status).toBe('verified');

    const status = await run(install.launcher, ['recover', 'status', first], operatorEnv());

    expect(status.status).toBe(0);
    expect(status.stdout.split('\n')).toContain(`production's endpoint (${ENDPOINT}) could not be read: ${denied}`);
    await updateRecovery(store, second, { status: 'abandoned' });
  });

  it("status of a recovery while an earlier one is cut over says where production's endpoint points: the copy", async () => {
    const store = { ddb: dynamo.ddb, tableName: dynamo.tableName };
    const first = 'r20261130150000-aa09';
    const second = 'r20261130160000-aa0a';
    await cutOverThenVerified(first, second);
    await releaseLock(store, second);
    endpointOnCopy();

    const status = await run(install.launcher, ['recover', 'status', second, '--no-follow'], operatorEnv());

    expect(status.status).toBe(0);
    expect(status.stdout.split('\n')).toContain(`production's endpoint: ${cluster.host}:${cluster.port} (atmr-prod-pitr-202611301402, the copy recovery ${first} cut over to)`);
    await updateRecovery(store, second, { status: 'abandoned' });
  });

  it("puts production on the recovered instance, step by step; the old one, which the on-call's role may not change, is left with the commands for someone allowed (again in status)", async () => {
    const store = { ddb: dynamo.ddb, tableName: dynamo.tableName };
    await verifiedRecovery(ID);
    const env = operatorEnv();

    const result = await run(install.launcher, ['recover', 'cutover', ID, '--yes'], env);

    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    // With --yes the question is not asked: its words come first, with the writes the copy lacks.
    expect(result.stdout.split('\n')[0]).toMatch(
      /^recover cutover: put production \(example\) on atmr-prod-pitr-202611301402 \(as of 2026-11-30T14:02:00.000Z\); production's writes after 2026-11-30T14:02:00Z \((\d+ (?:min|h|d)|\d+\.\d h) ago\) are not on the copy: they stay on atmr-prod$/,
    );
    // Each step reported with its start time and duration.
    const steps = ['killswitch maintenance', 'switch database endpoint', 'redeploy ECS services', 'check /ready', 'check writes accepted', 'killswitch back', 'rename and tag old instance', 'deletion protection on new production instance', 'untag new production instance'];
    for (const step of steps.filter((s) => s !== 'rename and tag old instance')) expect(result.stdout).toMatch(new RegExp(`^  \\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z\\s+\\d+ s  done\\s+${step.replace('/', '\\/')}: `, 'm'));
    // The role is never granted changes to the production instance: refused, the commands printed.
    const renamedTo = /--new-db-instance-identifier (atmr-prod-replaced-\d{12}) /.exec(result.stdout)?.[1] ?? 'not printed';
    const commands = `aws rds modify-db-instance --db-instance-identifier atmr-prod --new-db-instance-identifier ${renamedTo} --apply-immediately, then, once renamed: aws rds add-tags-to-resource --resource-name "$(aws rds describe-db-instances --db-instance-identifier ${renamedTo} --query 'DBInstances[0].DBInstanceArn' --output text)" --tags Key=atmr-dr:replaced-by,Value=atmr-prod-pitr-202611301402 Key=atmr-dr:replaced-by-recovery,Value=${ID} Key=atmr-dr:keep,Value=true`;
    const refusal = `AccessDenied: User: arn:aws:sts::111111111111:assumed-role/oncall/alice is not authorized to perform: rds:AddTagsToResource on resource: arn:aws:rds:eu-west-3:111111111111:db:atmr-prod`;
    // Left to someone allowed, on every on-call cutover: not shown as a failure.
    expect(result.stdout).toMatch(/^ {2}\S+Z\s+\d+ s {2}by-hand {5}rename and tag old instance: /m);
    expect(result.stdout).not.toMatch(/ failed /);
    expect(result.stdout).toContain(`rename and tag old instance: recover: atmr-prod not renamed: ${refusal} (the on-call's recovery role is never granted changes to the production instance); someone allowed to change it runs: ${commands}\n`);
    const next = `next: rename and tag atmr-prod, the instance production ran on (the cutover could not); someone allowed to change it runs: ${commands}`;
    expect(result.stdout.split('\n')).toContain(next);
    expect(result.stdout).toMatch(/total \d+ s; recovery \d+ s since the request against the RTO objective 1800 s \(met\)/);

    // The calls, in order, with their arguments.
    const sequence = aws.calls.map((c) => `${c.service}:${c.action}`);
    expect(sequence).toEqual([
      'secretsmanager:GetSecretValue', // the secret holds the host the API reads: nothing changes otherwise
      'ssm:GetParameter', // the killswitch parameter exists: nothing changes otherwise
      'rds:DescribeDBInstances', // the copy is available: nothing changes otherwise
      'events:PutEvents',
      'ssm:GetParameter', // the killswitch's previous value, journaled before anything changes
      'ssm:GetParameter',
      'ssm:GetParameter',
      'ssm:PutParameter',
      'ssm:GetParameter',
      'secretsmanager:GetSecretValue', // the endpoint's previous value, journaled
      'secretsmanager:GetSecretValue',
      'secretsmanager:PutSecretValue',
      'ecs:DescribeServices', // each service's deployments before its forced one (sent once: its outcome is read back, never retried blind)
      'ecs:UpdateService',
      'ecs:DescribeServices',
      'ecs:UpdateService',
      'ecs:DescribeServices',
      'ecs:UpdateService',
      'ecs:DescribeServices',
      'secretsmanager:GetSecretValue', // credentials of the write check
      'secretsmanager:GetSecretValue', // the endpoint still names the copy (not taken back by hand): the reopening and the rename may go on
      'ssm:GetParameter',
      'ssm:PutParameter',
      'ssm:GetParameter',
      'rds:DescribeDBInstances',
      'rds:AddTagsToResource', // refused: nothing renamed
      'rds:ModifyDBInstance', // deletion protection on, while the copy still carries the purpose tag
      'rds:DescribeDBInstances', // the copy's tags: this recovery's, with the purpose tag
      'rds:RemoveTagsFromResource', // production now runs on it: out of the recovery workflow's (and the on-call's) reach
      'cloudwatch:PutMetricData',
      'events:PutEvents',
    ]);
    // RecoverySeconds{stage=cutover} in the namespace of the environment the CLI runs for (cdk.json's env).
    expect(aws.calls.find((c) => c.action === 'PutMetricData')!.input.Namespace).toBe('AtmrDr/example');
    const killswitchWrites = aws.calls.filter((c) => c.action === 'PutParameter').map((c) => ({ name: c.input.Name, ...(JSON.parse(c.input.Value as string) as { mode: string; reason: string }) }));
    expect(killswitchWrites).toEqual([
      expect.objectContaining({ name: KILLSWITCH, mode: 'maintenance', reason: `recovery ${ID}: cutover to atmr-prod-pitr-202611301402` }),
      expect.objectContaining({ name: KILLSWITCH, mode: 'normal', reason: `recovery ${ID}: cutover done` }),
    ]);
    expect(JSON.parse(aws.parameters.get(KILLSWITCH)!.value)).toMatchObject({ mode: 'normal' });
    expect(aws.calls.find((c) => c.action === 'PutSecretValue')!.input.SecretId).toBe(SECRET);
    expect(aws.secret()).toMatchObject({ host: cluster.host, port: cluster.port, username: cluster.user, dbname: 'atmr' });
    expect(aws.calls.filter((c) => c.action === 'UpdateService').map((c) => c.input)).toEqual(SERVICES.map((service) => ({ cluster: CLUSTER_ARN, service, forceNewDeployment: true })));
    expect(readyHits).toEqual(['/ready']);
    expect(aws.calls.filter((c) => c.action === 'ModifyDBInstance' && c.input.DeletionProtection !== undefined).map((c) => c.input)).toEqual([
      { DBInstanceIdentifier: 'atmr-prod-pitr-202611301402', DeletionProtection: 'true' },
    ]);
    expect(aws.instances.get('atmr-prod-pitr-202611301402')!.deletionProtection).toBe(true);
    // Done by the cutover: no line tells the operator to do it.
    expect(result.stdout).not.toMatch(/deletion-protection/);
    // Back to normal: nobody is shut out.
    expect(result.stdout).not.toMatch(/shut out/);
    const tags = aws.calls.find((c) => c.action === 'AddTagsToResource')!.input;
    expect(tags).toMatchObject({ ResourceName: 'arn:aws:rds:eu-west-3:111111111111:db:atmr-prod', 'Tags.Tag.1.Key': 'atmr-dr:replaced-by', 'Tags.Tag.1.Value': 'atmr-prod-pitr-202611301402' });
    expect(aws.calls.find((c) => c.action === 'RemoveTagsFromResource')!.input).toEqual({ ResourceName: 'arn:aws:rds:eu-west-3:111111111111:db:atmr-prod-pitr-202611301402', 'TagKeys.member.1': 'atmr-dr:purpose' });
    expect([...aws.instances.get('atmr-prod-pitr-202611301402')!.tags.keys()]).toEqual(['project', 'atmr-dr:recovery-id']);
    expect(aws.calls.some((c) => c.action.startsWith('Delete'))).toBe(false);
    expect([...aws.instances.keys()].sort()).toEqual(['atmr-prod', 'atmr-prod-pitr-202611301402']);
    const events = aws.calls.filter((c) => c.action === 'PutEvents').map((c) => (c.input.Entries as { DetailType: string; Source: string; Detail: string }[])[0]);
    expect(events.map((e) => [e.Source, e.DetailType])).toEqual([
      ['atmr-dr', 'Recovery Cutover Started'],
      ['atmr-dr', 'Recovery Cut Over'],
    ]);
    // The team channel hears the rename still to do, and who does it.
    expect((JSON.parse(events[1].Detail) as { summary: string }).summary).toContain(
      `; atmr-prod NOT renamed yet (it keeps the production name): to be renamed by someone allowed to change atmr-prod: see "npx --no atmr-dr recover status ${ID}"`,
    );

    const record = await getRecovery(store, ID);
    expect(record).toMatchObject({ status: 'cut-over' });
    expect(record.replacedInstance).toBeUndefined();
    expect(record.journal!.map((e) => [e.step, e.state])).toEqual(steps.map((step) => [step, step === 'rename and tag old instance' ? 'by-hand' : 'done']));
    expect(record.leaseToken).toBeUndefined();
    expect(record.recoverySeconds).toBeGreaterThanOrEqual(1200);

    // Status says it again while RDS shows the old instance under its name; not once someone renamed it.
    const status = await run(install.launcher, ['recover', 'status', ID], env);
    expect([status.status, status.stderr]).toEqual([0, '']);
    expect(status.stdout.split('\n')).toContain(next);
    expect(status.stdout).toMatch(/^ {2}\S+Z {2}by-hand {5}rename and tag old instance: recover: atmr-prod not renamed: /m);
    aws.instances.set(renamedTo, aws.instances.get('atmr-prod')!);
    aws.instances.delete('atmr-prod');
    const renamed = await run(install.launcher, ['recover', 'status', ID], env);
    expect(renamed.stdout).not.toContain('next: rename and tag');
  });

  it('renames the instance the recovery restored from even when the config already names the copy (step 10 done first), never the copy production now runs on', async () => {
    const id = 'r20261130143000-e2e9';
    await verifiedRecovery(id);
    const early = installWithConfig(`http://127.0.0.1:${(ready.address() as AddressInfo).port}/ready`, recoveredDb, 'atmr-prod-pitr-202611301402');
    // Run by someone allowed to change the old instance.
    aws.adminRole = true;
    try {
      const result = await run(early.launcher, ['recover', 'cutover', id, '--yes'], operatorEnv());

      expect(result.status).toBe(0);
      expect(aws.calls.filter((c) => c.action === 'ModifyDBInstance' && c.input.NewDBInstanceIdentifier !== undefined).map((c) => c.input.DBInstanceIdentifier)).toEqual(['atmr-prod']);
      expect(aws.instances.has('atmr-prod-pitr-202611301402')).toBe(true);
    } finally {
      fs.rmSync(early.root, { recursive: true, force: true });
    }
  });

  it('a cutover whose ModifyDBInstance DeletionProtection is refused (the role may not) stays done, exit 0, and its last line is the command to run, with the reason', async () => {
    const id = 'r20261130143000-e2e8';
    await verifiedRecovery(id);
    aws.protectionRefused = true;

    const result = await run(install.launcher, ['recover', 'cutover', id, '--yes'], operatorEnv());

    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    const refusal = 'AccessDenied: User: arn:aws:sts::111111111111:assumed-role/oncall/alice is not authorized to perform: rds:ModifyDBInstance';
    expect(result.stdout).toMatch(new RegExp(`^  \\S+Z\\s+\\d+ s  failed\\s+deletion protection on new production instance: ${refusal}$`, 'm'));
    expect(result.stdout.trimEnd().split('\n').at(-1)).toBe(
      `next: turn deletion protection on for atmr-prod-pitr-202611301402, production now (the cutover could not turn it on: ${refusal}; once the cause is gone (the copy available, the right granted)): aws rds modify-db-instance --db-instance-identifier atmr-prod-pitr-202611301402 --deletion-protection --apply-immediately`,
    );
    expect((await getRecovery({ ddb: dynamo.ddb, tableName: dynamo.tableName }, id)).status).toBe('cut-over');
  });

  it('a cutover started with the killswitch already in maintenance (the runbook\'s first step) puts it back there, exit 0, and its last line says users are still shut out and how to let them in, for the environment and killswitch the cutover was given', async () => {
    const store = { ddb: dynamo.ddb, tableName: dynamo.tableName };
    const id = 'r20261130143000-e2ea';
    await verifiedRecovery(id);
    const onCall = { mode: 'maintenance', reason: 'bookings deleted: recovering', actor: 'bob', updatedAt: '2026-11-30T14:10:00.000Z', expiresAt: null };
    aws.parameters.set(KILLSWITCH, { value: JSON.stringify(onCall), version: 4 });

    const result = await run(install.launcher, ['recover', '--env', 'example', '--parameter', KILLSWITCH, 'cutover', id, '--yes'], operatorEnv());

    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    expect(result.stdout).toMatch(/^ {2}\S+Z\s+\d+ s {2}done\s+killswitch back: back to maintenance$/m);
    // Run as printed, it writes the killswitch the cutover put back, not cdk.json's default environment's.
    const command = `npx --no atmr-dr killswitch --env example --parameter ${KILLSWITCH} disable --reason "recovery ${id} cut over"`;
    expect(result.stdout.trimEnd().split('\n').at(-1)).toBe(
      `users are still shut out: the killswitch is in maintenance, as it was before the cutover (set by bob: bookings deleted: recovering); to let them in: ${command}`,
    );
    expect(refusals([words(command).slice(3)])).toEqual([null]);
    expect(JSON.parse(aws.parameters.get(KILLSWITCH)!.value)).toMatchObject({ mode: 'maintenance', reason: 'bookings deleted: recovering', actor: 'bob' });
    expect((await getRecovery(store, id)).status).toBe('cut-over');

    // Later, `recover status` repeats it while the killswitch still holds that maintenance, and not once someone let users in.
    const status = await run(install.launcher, ['recover', '--env', 'example', '--parameter', KILLSWITCH, 'status', id], operatorEnv());

    expect([status.status, status.stderr]).toEqual([0, '']);
    expect(status.stdout.trimEnd().split('\n').at(-1)).toBe(result.stdout.trimEnd().split('\n').at(-1));
    aws.parameters.set(KILLSWITCH, { value: JSON.stringify({ mode: 'normal', reason: `recovery ${id} cut over`, actor: 'bob', updatedAt: '2026-11-30T15:00:00.000Z', expiresAt: null }), version: 9 });

    const lifted = await run(install.launcher, ['recover', '--env', 'example', '--parameter', KILLSWITCH, 'status', id], operatorEnv());

    expect([lifted.status, lifted.stderr]).toEqual([0, '']);
    expect(lifted.stdout).not.toMatch(/shut out/);
  });

  it('a cutover started with the killswitch degraded puts it back there, exit 0, and its last line says users still get a degraded API and how to serve them in full', async () => {
    // Arrange: the on-call degraded the API before the cutover
    const id = 'r20261130143000-e2ec';
    await verifiedRecovery(id);
    const onCall = { mode: 'degraded', reason: 'bookings read-only while we recover', actor: 'bob', updatedAt: '2026-11-30T14:10:00.000Z', expiresAt: null };
    aws.parameters.set(KILLSWITCH, { value: JSON.stringify(onCall), version: 4 });

    // Act
    const result = await run(install.launcher, ['recover', '--env', 'example', '--parameter', KILLSWITCH, 'cutover', id, '--yes'], operatorEnv());

    // Assert
    expect([result.status, result.stderr]).toEqual([0, '']);
    expect(result.stdout).toMatch(/^ {2}\S+Z\s+\d+ s {2}done\s+killswitch back: back to degraded$/m);
    const command = `npx --no atmr-dr killswitch --env example --parameter ${KILLSWITCH} disable --reason "recovery ${id} cut over"`;
    expect(result.stdout.trimEnd().split('\n').at(-1)).toBe(
      `users still get a degraded API: the killswitch is degraded, as it was before the cutover (set by bob: bookings read-only while we recover); to serve them in full: ${command}`,
    );
    expect(refusals([words(command).slice(3)])).toEqual([null]);
    expect(JSON.parse(aws.parameters.get(KILLSWITCH)!.value)).toMatchObject({ mode: 'degraded', actor: 'bob' });

    // `recover status` later repeats it, the killswitch still degraded.
    const status = await run(install.launcher, ['recover', '--env', 'example', '--parameter', KILLSWITCH, 'status', id], operatorEnv());

    expect([status.status, status.stderr]).toEqual([0, '']);
    expect(status.stdout.trimEnd().split('\n').at(-1)).toBe(`users still get a degraded API: the killswitch is degraded, as it was before the cutover (set by bob: bookings read-only while we recover); to serve them in full: ${command}`);
  });

  it('a cutover started in maintenance, which someone lifts (normal) during the redeploy: not put back in maintenance, and no line says users are shut out or not reopened', async () => {
    const id = 'r20261130143000-e2eb';
    await verifiedRecovery(id);
    const onCall = { mode: 'maintenance', reason: 'bookings deleted: recovering', actor: 'bob', updatedAt: '2026-11-30T14:10:00.000Z', expiresAt: null };
    aws.parameters.set(KILLSWITCH, { value: JSON.stringify(onCall), version: 4 });
    const lifted = { mode: 'normal', reason: 'copy checked, let them in', actor: 'bob', updatedAt: '2026-11-30T14:40:00.000Z', expiresAt: null };
    aws.onRedeploy = () => aws.parameters.set(KILLSWITCH, { value: JSON.stringify(lifted), version: aws.parameters.get(KILLSWITCH)!.version + 1 });

    const result = await run(install.launcher, ['recover', 'cutover', id, '--yes'], operatorEnv());

    expect([result.status, result.stderr]).toEqual([0, '']);
    expect(JSON.parse(aws.parameters.get(KILLSWITCH)!.value)).toEqual(lifted);
    expect(result.stdout).toMatch(/^ {2}\S+Z\s+\d+ s {2}done\s+killswitch back: already reopened by bob \(normal: copy checked, let them in\) since the cutover's maintenance: left as is$/m);
    expect(result.stdout).not.toMatch(/shut out|NOT reopened|killswitch disable/);
  });

  it('a hold someone set during the redeploy is left on and stops the cutover before the rename (exit 1, the last line says so, status and --json too); --resume once it is lifted renames the old instance and finishes', async () => {
    const id = 'r20261130143000-e2e7';
    await verifiedRecovery(id);
    aws.adminRole = true;
    const hold = { mode: 'maintenance', reason: 'HOLD: copy is missing bookings', actor: 'bob', updatedAt: '2026-11-30T14:40:00.000Z', expiresAt: null };
    aws.onRedeploy = () => aws.parameters.set(KILLSWITCH, { value: JSON.stringify(hold), version: aws.parameters.get(KILLSWITCH)!.version + 1 });

    const result = await run(install.launcher, ['recover', 'cutover', id, '--yes', '--parameter', KILLSWITCH], operatorEnv());

    expect(result.status).toBe(1);
    expect(JSON.parse(aws.parameters.get(KILLSWITCH)!.value)).toEqual(hold);
    const notReopened = `NOT reopened: the killswitch is maintenance (set by bob: HOLD: copy is missing bookings) since the cutover's maintenance: left as is; see "npx --no atmr-dr killswitch --parameter ${KILLSWITCH} status", and lift it with "npx --no atmr-dr killswitch --parameter ${KILLSWITCH} disable" once whoever set it agrees`;
    expect(result.stdout).toMatch(/^ {2}\S+Z\s+\d+ s {2}by-hand\s+killswitch back: NOT reopened: /m);
    expect(result.stderr.trimEnd().split('\n').at(-1)).toBe(
      `atmr-dr: recover cutover: production runs on atmr-prod-pitr-202611301402 but was ${notReopened}; the cutover stops there: atmr-prod is NOT renamed and atmr-prod-pitr-202611301402 keeps its recovery tag (whoever holds users out may go back to atmr-prod); once the hold is lifted, --resume renames atmr-prod and finishes; if they take production back to atmr-prod instead, --undo gives the steps by hand and, once they are done, closes the cutover; the journal is in the record ("npx --no atmr-dr recover --parameter ${KILLSWITCH} status ${id}"): continue with "npx --no atmr-dr recover --parameter ${KILLSWITCH} cutover ${id} --resume --yes"`,
    );
    expect(refusals([['killswitch', '--parameter', KILLSWITCH, 'status']])).toEqual([null]);
    expect(aws.calls.filter((c) => c.service === 'rds' && ['ModifyDBInstance', 'AddTagsToResource', 'RemoveTagsFromResource'].includes(c.action))).toEqual([]);
    expect([...aws.instances.keys()]).toEqual(['atmr-prod', 'atmr-prod-pitr-202611301402']);

    const status = await run(install.launcher, ['recover', 'status', id], operatorEnv());

    expect(status.status).toBe(0);
    expect(status.stdout).toMatch(new RegExp(`recovery ${id}: cutting-over`));
    expect(status.stdout).toMatch(/^ {2}\S+Z {2}by-hand {5}killswitch back: NOT reopened: /m);
    expect(status.stdout.trimEnd().split('\n').at(-1)).toBe(
      `next: the cutover stopped at the killswitch someone set during it (NOT reopened, above): atmr-prod is NOT renamed, in case they go back to it; once they lift it, continue it with "npx --no atmr-dr recover cutover ${id} --resume --yes"; if they go back to atmr-prod instead, "npx --no atmr-dr recover cutover ${id} --undo --yes" gives the steps by hand until the API's endpoint names atmr-prod again, then closes the cutover`,
    );
    const json = await run(install.launcher, ['recover', 'status', id, '--json'], operatorEnv());
    const record = JSON.parse(json.stdout) as { status: string; journal: { step: string; state: string; detail: string }[] };
    expect(record.status).toBe('cutting-over');
    expect(record.journal.find((e) => e.step === 'killswitch back')).toMatchObject({ state: 'by-hand', detail: expect.stringMatching(/^NOT reopened: /) });

    // --undo is refused (exit 3, nothing changed), with the way back to atmr-prod by hand, its
    // killswitch commands carrying the --parameter given, as the parser accepts them.
    const undo = await run(install.launcher, ['recover', '--parameter', KILLSWITCH, 'cutover', id, '--undo', '--yes'], operatorEnv());

    expect(undo.status).toBe(3);
    const refusal = undo.stderr.trimEnd().split('\n').at(-1)!;
    expect(refusal).toMatch(/^atmr-dr: recover cutover --undo: recovery \S+: its cutover stopped at \S+ at someone's hold on the killswitch \(.*\); only that hold keeps users off atmr-prod-pitr-202611301402, .*; or go back to atmr-prod by hand while the hold keeps users out: \(1\) /);
    const enable = `npx --no atmr-dr killswitch --parameter ${KILLSWITCH} enable --mode maintenance --reason ... --expires never`;
    expect(refusal).toContain(`(1) keep users out all along: "npx --no atmr-dr killswitch --parameter ${KILLSWITCH} status" shows the hold and its expiry; unless it is a maintenance with no expiry, set one: "${enable}"`);
    expect(refusal).toContain(`(4) only then let users in ("npx --no atmr-dr killswitch --parameter ${KILLSWITCH} disable --reason ..."); atmr-prod-pitr-202611301402 is left as it is`);
    expect(refusals([words(enable).slice(3)])).toEqual([null]);
    expect(JSON.parse(aws.parameters.get(KILLSWITCH)!.value)).toEqual(hold);
    expect((await getRecovery({ ddb: dynamo.ddb, tableName: dynamo.tableName }, id)).status).toBe('cutting-over');

    const lifted = { mode: 'normal', reason: 'copy checked, let them in', actor: 'bob', updatedAt: '2026-11-30T14:50:00.000Z', expiresAt: null };
    aws.parameters.set(KILLSWITCH, { value: JSON.stringify(lifted), version: aws.parameters.get(KILLSWITCH)!.version + 1 });

    const resumed = await run(install.launcher, ['recover', 'cutover', id, '--resume', '--yes'], operatorEnv());

    expect([resumed.status, resumed.stderr]).toEqual([0, '']);
    expect(resumed.stdout).toMatch(/^ {2}\S+Z\s+\d+ s {2}done\s+killswitch back: already reopened by bob \(normal: copy checked, let them in\)/m);
    expect(resumed.stdout).toMatch(/^ {2}\S+Z\s+\d+ s {2}done\s+rename and tag old instance: atmr-prod -> atmr-prod-replaced-/m);
    expect(aws.instances.has('atmr-prod')).toBe(false);
    expect((await getRecovery({ ddb: dynamo.ddb, tableName: dynamo.tableName }, id)).status).toBe('cut-over');
  });

  it("a reopening SSM refuses stops the cutover (exit 1) and status shows it beside the workflow's own error; once --resume finishes, status shows the workflow's error alone", async () => {
    // Arrange: a recovery whose "Recovery Verified" event was not sent (the workflow's report step
    // records it); SSM refuses every killswitch write after the maintenance, the reopening's too
    const id = 'r20261130143000-e2ee';
    const store = { ddb: dynamo.ddb, tableName: dynamo.tableName };
    const active = await activeRecoveryId(store);
    if (active) await releaseLock(store, active);
    await verifiedRecovery(id);
    const workflowError = 'the "Recovery Verified" event or the RecoverySeconds metric failed: AccessDeniedException: User is not authorized to perform: events:PutEvents';
    await updateRecovery(store, id, { error: workflowError });
    aws.adminRole = true;
    aws.onRedeploy = () => (aws.killswitchPutRefused = true);
    const statusLine = async () => {
      const status = await run(install.launcher, ['recover', 'status', id], operatorEnv());
      expect([status.status, status.stderr]).toEqual([0, '']);
      return status.stdout.split('\n')[0];
    };

    // Act
    const result = await run(install.launcher, ['recover', 'cutover', id, '--yes'], operatorEnv());
    const afterFailure = await statusLine();
    aws.killswitchPutRefused = false;
    aws.onRedeploy = undefined;
    const resumed = await run(install.launcher, ['recover', 'cutover', id, '--resume', '--yes'], operatorEnv());

    // Assert
    expect(result.status).toBe(1);
    expect(afterFailure).toContain(`recovery ${id}: cutting-over; `);
    expect(afterFailure).toContain(`; asked by alice: bookings deleted by a migration; error: ${workflowError}; cutover error: `);
    // The cutover's error is the line the operator read, for whoever is on call when status is run.
    const stored = afterFailure.slice(afterFailure.indexOf('; cutover error: ') + '; cutover error: '.length);
    expect(stored).toMatch(/^User is not authorized to perform: ssm:PutParameter on resource: \S+: production may still be in maintenance /);
    expect(result.stderr.trimEnd().split('\n').at(-1)).toBe(
      `atmr-dr: recover cutover: ${stored}; the journal is in the record ("npx --no atmr-dr recover status ${id}"): continue with "npx --no atmr-dr recover cutover ${id} --resume --yes"`,
    );
    expect([resumed.status, resumed.stderr]).toEqual([0, '']);
    const afterResume = await statusLine();
    expect(afterResume).toContain(`recovery ${id}: cut-over; `);
    expect(afterResume.slice(afterResume.indexOf('; asked by '))).toBe(`; asked by alice: bookings deleted by a migration; error: ${workflowError}`);
  });

  /**
   * `recover cutover ID --yes` of a verified recovery, sent `signal` once the redeploy started (the
   * services never become stable); with `againAfterMs`, sent it once more that many ms later.
   */
  async function interruptedCutover(id: string, signal: NodeJS.Signals, againAfterMs?: number) {
    await verifiedRecovery(id);
    aws.ecsStable = false;
    const cutoverRun = start(install.launcher, ['recover', 'cutover', id, '--yes'], operatorEnv());
    for (let i = 0; i < 600 && !aws.calls.some((c) => c.action === 'UpdateService'); i += 1) await new Promise((resolve) => setTimeout(resolve, 50));
    cutoverRun.child.kill(signal);
    if (againAfterMs !== undefined) {
      await new Promise((resolve) => setTimeout(resolve, againAfterMs));
      cutoverRun.child.kill(signal);
    }
    return cutoverRun.done;
  }

  /** The line a first stop signal prints at once: what may be left (maintenance), the two ways on, and what quitting at once costs (the lease). */
  const firstLine = (signal: NodeJS.Signals, id: string) =>
    `atmr-dr: recover cutover: ${signal}: stopping at the next step boundary; production may stay in maintenance (the killswitch) until "npx --no atmr-dr recover cutover ${id} --resume --yes" or "npx --no atmr-dr recover cutover ${id} --undo --yes" (the last line says where it stopped); again to quit at once, which leaves the lease live for up to 120 s (--resume and --undo refused until it expires)`;

  it('Ctrl-C during the redeploy: exit 130 with how to resume or undo; status shows the journal; --undo --yes puts everything back', async () => {
    const id = 'r20261130150000-e2e1';
    const launcher = install.launcher;

    const interrupted = await interruptedCutover(id, 'SIGINT');

    expect(interrupted.status).toBe(130);
    const lines = interrupted.stderr.trimEnd().split('\n');
    expect(lines[0]).toBe(firstLine('SIGINT', id));
    expect(lines[lines.length - 1]).toBe(
      `atmr-dr: recover cutover: interrupted during "redeploy ECS services": atmr-api, atmr-celery-worker, atmr-celery-beat already redeploying onto the copy; production stays in maintenance (the killswitch) until the cutover is resumed or undone; the journal is in the record ("npx --no atmr-dr recover status ${id}"): continue with "npx --no atmr-dr recover cutover ${id} --resume --yes" or put back what changed with "npx --no atmr-dr recover cutover ${id} --undo --yes"`,
    );
    expect(aws.secret().host).toBe(cluster.host);

    // Given where to look (the table), status says it in the commands it prints.
    const status = await run(launcher, ['recover', 'status', id, '--env', 'example', '--table', dynamo.tableName], operatorEnv());

    expect(status.status).toBe(0);
    expect(status.stdout).toMatch(new RegExp(`recovery ${id}: cutting-over`));
    expect(status.stdout).toMatch(/^ {2}\S+Z {2}done {8}killswitch maintenance: was normal \(by alice \(pid \d+ on .+\)\)$/m);
    expect(status.stdout).toMatch(/^ {2}\S+Z {2}done {8}switch database endpoint: secret .* host: atmr-prod\.abcdefghijkl\.eu-west-3\.rds\.amazonaws\.com:5432 -> /m);
    expect(status.stdout).toMatch(/^ {2}\S+Z {2}started {5}redeploy ECS services/m);
    const given = `--env example --table ${dynamo.tableName}`;
    expect(status.stdout).toContain(`next: the cutover stopped or is running: continue it with "npx --no atmr-dr recover ${given} cutover ${id} --resume --yes", or put back what it changed with "npx --no atmr-dr recover ${given} cutover ${id} --undo --yes"`);
    expect(refusals([words(`recover ${given} cutover ${id} --resume --yes`), words(`recover ${given} cutover ${id} --undo --yes`)])).toEqual([null, null]);
    aws.calls.splice(0);
    aws.ecsStable = true;

    const undo = await run(launcher, ['recover', 'cutover', id, '--undo', '--yes'], operatorEnv());

    expect(undo.stderr).toBe('');
    expect(undo.status).toBe(0);
    expect(undo.stdout).toMatch(/undone\s+switch database endpoint: secret .* host set back to atmr-prod\.abcdefghijkl\.eu-west-3\.rds\.amazonaws\.com:5432/);
    expect(undo.stdout).toMatch(/undone\s+redeploy ECS services: atmr-api, atmr-celery-worker, atmr-celery-beat redeployed and stable on the previous endpoint/);
    expect(undo.stdout).toMatch(/undone\s+killswitch maintenance: back to normal/);
    expect(undo.stdout).toContain(`cutover of recovery ${id} undone: production is back as before the cutover`);
    expect(aws.secret()).toMatchObject({ host: OLD_HOST, port: 5432 });
    expect(JSON.parse(aws.parameters.get(KILLSWITCH)!.value)).toMatchObject({ mode: 'normal' });
    expect(aws.calls.filter((c) => c.action === 'UpdateService').map((c) => c.input.service)).toEqual(SERVICES);
    // Traffic reopens only once the services are stable on the undo's deployment.
    const order = aws.calls.filter((c) => c.service === 'ecs' || c.action === 'PutParameter').map((c) => (c.action === 'PutParameter' ? `PutParameter ${String(c.input.Name)}` : c.action));
    const reopened = order.indexOf(`PutParameter ${KILLSWITCH}`);
    expect(order.slice(order.lastIndexOf('UpdateService'), reopened + 1)).toEqual(['UpdateService', 'DescribeServices', `PutParameter ${KILLSWITCH}`]);
    expect(aws.calls.filter((c) => c.service === 'rds')).toEqual([]);
    expect(aws.instances.has('atmr-prod')).toBe(true);
    expect(await getRecovery({ ddb: dynamo.ddb, tableName: dynamo.tableName }, id)).toMatchObject({ status: 'cutover-failed', cutoverError: expect.stringMatching(/^cutover interrupted and undone by /) });
  });

  it('an undo whose last write (the lease released with it) DynamoDB refuses: exit 1, one line saying production is back, the undo not recorded and until when to wait before --undo again', async () => {
    // Arrange: an interrupted cutover; DynamoDB (behind a proxy) throttles every write that removes the lease
    const store = { ddb: dynamo.ddb, tableName: dynamo.tableName };
    const active = await activeRecoveryId(store);
    if (active) await releaseLock(store, active);
    const id = 'r20261130153000-e2e5';
    expect((await interruptedCutover(id, 'SIGINT')).status).toBe(130);
    aws.ecsStable = true;
    const throttled = JSON.stringify({ __type: 'com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException', message: 'Throughput exceeds the current capacity of your table' });
    const proxy = http.createServer((req, res) => {
      let body = '';
      req.on('data', (chunk: Buffer) => (body += chunk.toString('utf8')));
      req.on('end', () => {
        if (String(req.headers['x-amz-target']).endsWith('.UpdateItem') && body.includes(' REMOVE ')) {
          res.writeHead(400, { 'content-type': 'application/x-amz-json-1.0' }).end(throttled);
          return;
        }
        const forward = http.request(dynamo.endpoint, { method: req.method, path: req.url, headers: req.headers }, (answer) => {
          res.writeHead(answer.statusCode ?? 500, answer.headers);
          answer.pipe(res);
        });
        forward.end(body);
      });
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));

    // Act
    const undo = await run(install.launcher, ['recover', 'cutover', id, '--undo', '--yes'], { ...operatorEnv(), AWS_ENDPOINT_URL_DYNAMODB: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}` }).finally(
      () => new Promise((resolve) => proxy.close(resolve)),
    );

    // Assert: production is back, the record is not: a failure, its warning in its one line
    expect(aws.secret()).toMatchObject({ host: OLD_HOST });
    expect(JSON.parse(aws.parameters.get(KILLSWITCH)!.value)).toMatchObject({ mode: 'normal' });
    const record = await getRecovery(store, id);
    expect(record.status).toBe('cutting-over');
    const until = new Date(record.leaseExpiresAt!).toISOString();
    expect(undo.status).toBe(1);
    expect(undo.stdout).not.toContain('undone: production is back');
    expect(undo.stderr).toBe(
      `atmr-dr: recover cutover --undo: production is back as before the cutover, but the undo is not recorded, the record still says "cutting-over"; the lease was not released (ProvisionedThroughputExceededException: Throughput exceeds the current capacity of your table): it stays ${record.leaseOwner}'s until ${until}, and a --resume or --undo run before then, yours too, is refused as held: "npx --no atmr-dr recover cutover ${id} --undo --yes" run after that records it\n`,
    );
  });

  it("an undo whose redeploy fails keeps production in maintenance: exit 1, one line naming what failed and how to finish; a second --undo reopens once the services are stable", async () => {
    const store = { ddb: dynamo.ddb, tableName: dynamo.tableName };
    const active = await activeRecoveryId(store);
    if (active) await releaseLock(store, active);
    const id = 'r20261130153000-e2e4';
    const launcher = install.launcher;
    expect((await interruptedCutover(id, 'SIGINT')).status).toBe(130);
    aws.ecsFailed = true;

    const failed = await run(launcher, ['recover', 'cutover', id, '--undo', '--yes'], operatorEnv());

    expect(failed.status).toBe(1);
    expect(failed.stderr).toBe(
      `atmr-dr: recover cutover --undo: NOT undone: redeploy ECS services, killswitch maintenance; production stays in maintenance (the killswitch) until the undo is finished; redeploy ECS services: ECS service atmr-api: deployment failed (tasks failed to start): the services may still run tasks on the copy; once the cause is fixed, "npx --no atmr-dr recover cutover ${id} --undo --yes" redeploys them and waits again\n`,
    );
    expect(JSON.parse(aws.parameters.get(KILLSWITCH)!.value)).toMatchObject({ mode: 'maintenance' });
    expect(aws.secret()).toMatchObject({ host: OLD_HOST, port: 5432 });
    const record = await getRecovery(store, id);
    expect([record.status, record.leaseToken]).toEqual(['cutover-failed', undefined]);

    aws.ecsFailed = false;
    aws.ecsStable = true;
    const finished = await run(launcher, ['recover', 'cutover', id, '--undo', '--yes'], operatorEnv());

    expect([finished.status, finished.stderr]).toEqual([0, '']);
    expect(finished.stdout).toMatch(/undone\s+redeploy ECS services: atmr-api, atmr-celery-worker, atmr-celery-beat redeployed and stable on the previous endpoint/);
    expect(finished.stdout).toMatch(/undone\s+killswitch maintenance: back to normal/);
    expect(JSON.parse(aws.parameters.get(KILLSWITCH)!.value)).toMatchObject({ mode: 'normal' });
  });

  it('an undo whose redeploy fails while SSM refuses the killswitch reads says its state is unknown, not that production stays in maintenance: exit 1', async () => {
    const store = { ddb: dynamo.ddb, tableName: dynamo.tableName };
    const active = await activeRecoveryId(store);
    if (active) await releaseLock(store, active);
    const id = 'r20261130153000-e2e9';
    expect((await interruptedCutover(id, 'SIGINT')).status).toBe(130);
    aws.ecsFailed = true;
    aws.killswitchUnread = true;

    const failed = await run(install.launcher, ['recover', 'cutover', id, '--undo', '--yes'], operatorEnv());

    expect(failed.status).toBe(1);
    expect(failed.stderr).toBe(
      `atmr-dr: recover cutover --undo: NOT undone: redeploy ECS services, killswitch maintenance; the killswitch's state is unknown (could not be read): check it with "npx --no atmr-dr killswitch status"; redeploy ECS services: ECS service atmr-api: deployment failed (tasks failed to start): the services may still run tasks on the copy; once the cause is fixed, "npx --no atmr-dr recover cutover ${id} --undo --yes" redeploys them and waits again\n`,
    );
  });

  it('an undo whose killswitch give-back is applied but its re-read throttled says the state is unknown, never that production stays in maintenance (users are let in): exit 1; the next --undo closes', async () => {
    const store = { ddb: dynamo.ddb, tableName: dynamo.tableName };
    const active = await activeRecoveryId(store);
    if (active) await releaseLock(store, active);
    const id = 'r20261130153000-e2f1';
    expect((await interruptedCutover(id, 'SIGINT')).status).toBe(130);
    aws.ecsStable = true;
    aws.calls.splice(0);
    aws.killswitchRereadThrottled = true;

    const failed = await run(install.launcher, ['recover', 'cutover', id, '--undo', '--yes'], operatorEnv());

    expect(failed.status).toBe(1);
    expect(JSON.parse(aws.parameters.get(KILLSWITCH)!.value)).toMatchObject({ mode: 'normal' });
    expect(failed.stdout).toMatch(/undo-failed\s+killswitch maintenance: the give-back was sent but not confirmed \(.*Rate exceeded\): the killswitch may be back to normal or still in maintenance; check it with "npx --no atmr-dr killswitch status"/);
    expect(failed.stderr).toMatch(
      new RegExp(`^atmr-dr: recover cutover --undo: NOT undone: killswitch maintenance; the killswitch's state is unknown \\(its give-back was sent but not confirmed\\): check it with "npx --no atmr-dr killswitch status"; killswitch maintenance: the give-back was sent but not confirmed \\(.*Rate exceeded\\): .*"npx --no atmr-dr recover cutover ${id} --undo --yes" reads it again\n$`),
    );
    const summary = (JSON.parse((aws.calls.filter((c) => c.action === 'PutEvents').at(-1)!.input.Entries as { Detail: string }[])[0].Detail) as { summary: string }).summary;
    expect(summary).toContain(`the killswitch's state is unknown (its give-back was sent but not confirmed): check it with "npx --no atmr-dr killswitch status"`);
    for (const said of [failed.stdout, failed.stderr, summary]) expect(said).not.toMatch(/stays in maintenance|kept in maintenance|could not be read/);

    aws.killswitchRereadThrottled = false;
    const finished = await run(install.launcher, ['recover', 'cutover', id, '--undo', '--yes'], operatorEnv());

    expect([finished.status, finished.stderr]).toEqual([0, '']);
    expect(finished.stdout).toMatch(/skipped\s+killswitch maintenance: now normal \(set by .*: recovery .*: cutover undone\) since the cutover: left as is/);
    expect((await getRecovery(store, id)).journal!.every((e) => e.state === 'undone')).toBe(true);
  });

  it('an undo whose killswitch give-back SSM refuses outright (AccessDenied: nothing written) still says production stays in maintenance: exit 1', async () => {
    const store = { ddb: dynamo.ddb, tableName: dynamo.tableName };
    const active = await activeRecoveryId(store);
    if (active) await releaseLock(store, active);
    const id = 'r20261130153000-e2f2';
    expect((await interruptedCutover(id, 'SIGINT')).status).toBe(130);
    aws.ecsStable = true;
    aws.killswitchPutRefused = true;

    const failed = await run(install.launcher, ['recover', 'cutover', id, '--undo', '--yes'], operatorEnv());

    expect(failed.status).toBe(1);
    expect(JSON.parse(aws.parameters.get(KILLSWITCH)!.value)).toMatchObject({ mode: 'maintenance' });
    expect(failed.stderr).toMatch(
      /^atmr-dr: recover cutover --undo: NOT undone: killswitch maintenance; production stays in maintenance \(the killswitch\) until the undo is finished; killswitch maintenance: kept in maintenance: .*not authorized to perform: ssm:PutParameter.*: do it by hand; then run /,
    );
    const summary = (JSON.parse((aws.calls.filter((c) => c.action === 'PutEvents').at(-1)!.input.Entries as { Detail: string }[])[0].Detail) as { summary: string }).summary;
    expect(summary).toContain(`production stays in maintenance until "npx --no atmr-dr recover cutover ${id} --undo --yes" finishes`);
  });

  it('a step whose preparation fails after an earlier step was done (the secret refused between the start\'s read and the endpoint switch\'s): FAILED after the step done, not "before its first step"; exit 1, the killswitch put back', async () => {
    const store = { ddb: dynamo.ddb, tableName: dynamo.tableName };
    const active = await activeRecoveryId(store);
    if (active) await releaseLock(store, active);
    const id = 'r20261130153000-e2e7';
    await verifiedRecovery(id);
    // The start's read of the endpoint answered; the endpoint switch's own read, after the maintenance, refused.
    aws.secretReads = 1;
    // And the team's "cutover started" event refused, reported as a failed "announce": not the step that failed.
    aws.eventsRefused = true;

    const result = await run(install.launcher, ['recover', 'cutover', id, '--yes'], operatorEnv());

    expect(result.status).toBe(1);
    expect(result.stdout).toMatch(/done\s+killswitch maintenance: was normal/);
    expect(result.stderr.trimEnd().split('\n').at(-1)).toBe(
      `atmr-dr: recover cutover: FAILED after "killswitch maintenance" (User is not authorized to perform: secretsmanager:GetSecretValue on resource: ${SECRET}); every change was undone, production is as before`,
    );
    expect(JSON.parse(aws.parameters.get(KILLSWITCH)!.value)).toMatchObject({ mode: 'normal' });
    expect(aws.secret()).toMatchObject({ host: OLD_HOST, port: 5432 });
    expect((await getRecovery(store, id)).status).toBe('cutover-failed');
  });

  it('a cdk.json with recovery enabled but no recovery.ecs: the CLI still reads it, the cutover refuses to start (exit 2, one line), nothing written', async () => {
    const store = { ddb: dynamo.ddb, tableName: dynamo.tableName };
    const active = await activeRecoveryId(store);
    if (active) await releaseLock(store, active);
    const id = 'r20261130154500-e2e5';
    await verifiedRecovery(id);
    const before = await getRecovery(store, id);
    const older = installWithConfig(`http://127.0.0.1:${(ready.address() as AddressInfo).port}/ready`, recoveredDb, undefined, { withoutEcs: true });
    try {
      const refused = await run(older.launcher, ['recover', 'cutover', id, '--yes'], operatorEnv());

      expect(refused.status).toBe(2);
      expect(refused.stderr).toMatch(/^atmr-dr: recover cutover: recovery\.ecs is not set: no ECS service would be redeployed, .* set recovery\.ecs to .* in cdk\.json, then run the command again; nothing was changed\n$/);
      expect(aws.calls.filter((c) => /^(Put|Update|Modify|AddTags|RemoveTags)/.test(c.action))).toEqual([]);
      expect(await getRecovery(store, id)).toEqual(before);
    } finally {
      fs.rmSync(older.root, { recursive: true, force: true });
    }
  });

  it('PGSSLMODE=verify-ful (a typo of verify-full), which only the write check on the copy reads, late in the cutover: refused at the start, exit 2, one line, nothing written', async () => {
    const store = { ddb: dynamo.ddb, tableName: dynamo.tableName };
    const active = await activeRecoveryId(store);
    if (active) await releaseLock(store, active);
    const id = 'r20261130154600-e2e6';
    await verifiedRecovery(id);
    const before = await getRecovery(store, id);

    const refused = await run(install.launcher, ['recover', 'cutover', id, '--yes'], { ...operatorEnv(), PGSSLMODE: 'verify-ful' });

    expect(refused.status).toBe(2);
    expect(refused.stderr).toBe(
      'atmr-dr: invalid PGSSLMODE "verify-ful": use one of disable, allow, prefer, require, verify-ca, verify-full (libpq\'s sslmode), or unset it for TLS where the server has it\n',
    );
    expect(aws.calls.filter((c) => /^(Put|Update|Modify|AddTags|RemoveTags)/.test(c.action))).toEqual([]);
    expect(await getRecovery(store, id)).toEqual(before);
  });

  it("a killswitch parameter cdk.json's default environment names and SSM does not have: the cutover changes nothing, and its line says which environment it was looked in, and the others; not with --env", async () => {
    const store = { ddb: dynamo.ddb, tableName: dynamo.tableName };
    const active = await activeRecoveryId(store);
    if (active) await releaseLock(store, active);
    const id = 'r20261130160000-e2ed';
    await verifiedRecovery(id);
    aws.parameters.delete(KILLSWITCH);
    const twoEnvironments = installWithConfig(`http://127.0.0.1:${(ready.address() as AddressInfo).port}/ready`, recoveredDb, undefined, { withProd: true });
    // The parameter's name from the default environment's config (CloudFormation is closed), as an operator without --env gets it.
    const { KILLSWITCH_PARAMETER: _given, ...env } = operatorEnv();
    try {
      const failed = await run(twoEnvironments.launcher, ['recover', 'cutover', id, '--yes'], env);

      expect(failed.stderr).toBe(
        `atmr-dr: recover cutover: killswitch: parameter ${KILLSWITCH} does not exist in eu-west-3: pass --parameter / KILLSWITCH_PARAMETER with the right name; nothing was changed; without --env this is cdk.json's default environment "example": for another, --env NAME (example, prod)\n`,
      );
      expect(failed.status).toBe(2);
      // Nothing written, not even the team's "cutover started" event; the recovery still ready to cut over.
      expect(aws.calls.filter((c) => /^(Put|Update|Modify|AddTags|RemoveTags)/.test(c.action))).toEqual([]);
      expect(aws.secret()).toMatchObject({ host: OLD_HOST });
      expect((await getRecovery(store, id)).status).toBe('verified');

      const withEnv = await run(twoEnvironments.launcher, ['recover', '--env', 'example', 'cutover', id, '--yes'], env);

      expect(withEnv.stderr).toContain(`parameter ${KILLSWITCH} does not exist`);
      expect(withEnv.stderr).not.toContain('without --env');
    } finally {
      fs.rmSync(twoEnvironments.root, { recursive: true, force: true });
    }
  });

  it('two SIGINTs 5 ms apart (timeout -s INT, a process manager: to the process and its group) are one Ctrl-C, the second said to be the same stop: it stops at the step boundary with how to resume or undo, exit 130', async () => {
    const store = { ddb: dynamo.ddb, tableName: dynamo.tableName };
    const active = await activeRecoveryId(store);
    if (active) await releaseLock(store, active);

    const interrupted = await interruptedCutover('r20261130151500-e2e6', 'SIGINT', 5);

    expect(interrupted.status).toBe(130);
    const lines = interrupted.stderr.trimEnd().split('\n');
    expect(lines[0]).toBe(firstLine('SIGINT', 'r20261130151500-e2e6'));
    expect(lines[1]).toBe(`atmr-dr: second SIGINT within ${SECOND_SIGNAL_AFTER_MS} ms: taken as the same stop; press Ctrl-C again to quit at once`);
    expect(lines[lines.length - 1]).toMatch(/^atmr-dr: recover cutover: interrupted during "redeploy ECS services": atmr-api, atmr-celery-worker, atmr-celery-beat already redeploying onto the copy; .*--resume --yes/);
  });

  it('a second Ctrl-C 800 ms after the first quits at once, mid-step: exit 130 and one line saying production may be in maintenance, when the lease expires and the two ways on; the record and --undo agree', async () => {
    const store = { ddb: dynamo.ddb, tableName: dynamo.tableName };
    const active = await activeRecoveryId(store);
    if (active) await releaseLock(store, active);
    const id = 'r20261130152000-e2e7';
    // A slow ECS API: the cutover is still in its redeploy (waiting on ECS) when the second Ctrl-C comes.
    aws.ecsDescribeDelayMs = 2000;

    const interrupted = await interruptedCutover(id, 'SIGINT', 800);

    expect(interrupted.status).toBe(130);
    const lines = interrupted.stderr.trimEnd().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toBe(firstLine('SIGINT', id));
    const second = new RegExp(
      `^atmr-dr: second SIGINT, quitting at once; the cutover stops where it stands: production may be in maintenance \\(the killswitch\\), the step under way may be left "started" in the journal \\("npx --no atmr-dr recover status ${id}"\\) and the lease expires in 120 s at the latest \\((\\S+Z)\\), refusing --resume and --undo until then; then run "npx --no atmr-dr recover cutover ${id} --resume --yes" or "npx --no atmr-dr recover cutover ${id} --undo --yes"$`,
    ).exec(lines[1]);
    expect(second).not.toBeNull();
    // What the line says is what the operator is left with.
    const record = await getRecovery(store, id);
    expect(record.status).toBe('cutting-over');
    expect(record.journal!.map((e) => [e.step, e.state])).toEqual([
      ['killswitch maintenance', 'done'],
      ['switch database endpoint', 'done'],
      ['redeploy ECS services', 'started'],
    ]);
    expect(JSON.parse(aws.parameters.get(KILLSWITCH)!.value)).toMatchObject({ mode: 'maintenance' });
    expect(record.leaseExpiresAt).toBeGreaterThan(Date.now());
    expect(record.leaseExpiresAt).toBeLessThanOrEqual(Date.parse(second![1]));

    const undo = await run(install.launcher, ['recover', 'cutover', id, '--undo', '--yes'], operatorEnv());

    expect(undo.status).toBe(3);
    expect(undo.stderr).toMatch(new RegExp(`^atmr-dr: recover cutover --undo: recovery ${id} is being cut over by .* \\(lease live until `));
  });

  it('Ctrl-C during a slow rename, past the killswitch\'s reopening: every line offers --resume only (--undo is refused from there) and none says production stays in maintenance; exit 130', async () => {
    const store = { ddb: dynamo.ddb, tableName: dynamo.tableName };
    const active = await activeRecoveryId(store);
    if (active) await releaseLock(store, active);
    const id = 'r20261130153500-e2e8';
    await verifiedRecovery(id);
    aws.renameDelayMs = 3000;
    const cutoverRun = start(install.launcher, ['recover', 'cutover', id, '--yes'], operatorEnv());
    for (let i = 0; i < 600 && !aws.calls.some((c) => c.action === 'AddTagsToResource'); i += 1) await new Promise((resolve) => setTimeout(resolve, 50));
    cutoverRun.child.kill('SIGINT');

    const interrupted = await cutoverRun.done;

    expect(interrupted.status).toBe(130);
    const lines = interrupted.stderr.trimEnd().split('\n');
    expect(lines[0]).toBe(
      `atmr-dr: recover cutover: SIGINT: stopping at the next step boundary; the killswitch was being given back on the new instance, where production may take writes: --undo is refused from there on, finish with "npx --no atmr-dr recover cutover ${id} --resume --yes"; again to quit at once, which leaves the lease live for up to 120 s (--resume refused until it expires)`,
    );
    expect(lines.at(-1)).toBe(`atmr-dr: recover cutover: interrupted after "killswitch back"; the journal is in the record ("npx --no atmr-dr recover status ${id}"): continue with "npx --no atmr-dr recover cutover ${id} --resume --yes"`);
    expect(interrupted.stderr).not.toContain('--undo --yes');
    expect(interrupted.stderr).not.toMatch(/stay in maintenance/);
    expect(JSON.parse(aws.parameters.get(KILLSWITCH)!.value)).toMatchObject({ mode: 'normal' });
  });

  it.each([
    ['SIGTERM', 143, 'as the other commands give for SIGTERM (130 is for Ctrl-C)', 'r20261130151500-e2e2'],
    ['SIGHUP', 129, 'a dropped SSH session: stops at the step boundary like Ctrl-C instead of dying mid-step', 'r20261130151500-e2e3'],
  ] as const)('%s during the redeploy: exit %d, %s', async (signal: NodeJS.Signals, code: number, _why: string, id: string) => {
    // One recovery at a time: free the lock a test before may hold (an interrupted cutover keeps it).
    const store = { ddb: dynamo.ddb, tableName: dynamo.tableName };
    const active = await activeRecoveryId(store);
    if (active) await releaseLock(store, active);

    const interrupted = await interruptedCutover(id, signal);

    expect(interrupted.status).toBe(code);
    const lines = interrupted.stderr.trimEnd().split('\n');
    expect(lines[0]).toBe(firstLine(signal, id));
    expect(lines[lines.length - 1]).toMatch(/^atmr-dr: recover cutover: interrupted during "redeploy ECS services": atmr-api, atmr-celery-worker, atmr-celery-beat already redeploying onto the copy; .*--resume --yes/);
  });
});
