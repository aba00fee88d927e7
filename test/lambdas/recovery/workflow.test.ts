import { CloudWatchClient, PutMetricDataCommand } from '@aws-sdk/client-cloudwatch';
import { EventBridgeClient, PutEventsCommand } from '@aws-sdk/client-eventbridge';
import {
  DeleteDBInstanceCommand,
  DescribeDBInstanceAutomatedBackupsCommand,
  DescribeDBInstancesCommand,
  ModifyDBInstanceCommand,
  RDSClient,
  RestoreDBInstanceToPointInTimeCommand,
} from '@aws-sdk/client-rds';
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { mockClient } from 'aws-sdk-client-mock';
import { RecoveryRequest } from '../../../lambdas/recovery/contract';
import { activeRecoveryId, beginRecovery, getRecovery, takeCutoverLease, updateRecovery } from '../../../lambdas/recovery/store';
import { WorkflowDeps, cleanupStep } from '../../../lambdas/recovery/workflow';
import { testCluster, uniqueDatabaseName, testClient } from '../../support/cluster';
import { LocalDynamo, startLocalDynamo } from '../../support/dynamodb';
import { PostgresCluster, psql, startPostgres, stopPostgres } from '../../support/postgres';
import { WorkflowDefinition, recoveryDefinition, runRecoveryWorkflow } from '../../support/recovery-workflow';
import { EARLIEST, LATEST, notFound, sourceInstance } from './fixtures';

/**
 * The synthesized workflow definition, executed with aws-local-stepfunctions: every Lambda task runs
 * the real step code (RDS, EventBridge, CloudWatch mocked at the SDK; the ops-state table on
 * dynalite; verification against two real PostgreSQL databases), the SNS tasks record the page.
 */
const rds = mockClient(RDSClient);
const events = mockClient(EventBridgeClient);
const cloudwatch = mockClient(CloudWatchClient);
const secrets = mockClient(SecretsManagerClient);
const cluster = testCluster();
const production = uniqueDatabaseName('wf_prod');
const recovered = uniqueDatabaseName('wf_copy');
const NEW = 'atmr-prod-pitr-202611301402';
let dynamo: LocalDynamo;
let definition: WorkflowDefinition;
let pages: string[];

function deps(overrides: Partial<WorkflowDeps['settings']> = {}): WorkflowDeps {
  return {
    rds: new RDSClient({}),
    secretsManager: new SecretsManagerClient({}),
    events: new EventBridgeClient({}),
    cloudwatch: new CloudWatchClient({}),
    store: { ddb: dynamo.ddb, tableName: dynamo.tableName },
    connect: async (side) => ({ host: cluster.host, port: cluster.port, user: cluster.user, database: side === 'recovered' ? recovered : production }),
    settings: {
      environmentName: 'drill',
      sourceInstance: 'atmr-prod',
      newInstancePrefix: 'atmr-prod-pitr-',
      subnetGroupName: 'atmr-private',
      tags: { team: 'atmr-sre' },
      databaseName: 'atmr',
      productionHost: 'atmr-prod.invalid',
      productionPort: 5432,
      secretArn: 'arn:aws:secretsmanager:eu-west-3:111111111111:secret:db',
      checks: { criticalTables: ['company', 'booking'], criticalQueries: ['SELECT COUNT(*) FROM company'], alembicVersionTable: 'alembic_version' },
      maxWaitSeconds: 3600,
      metricsNamespace: 'AtmrDr/drill',
      ...overrides,
    },
  };
}

let counter = 0;
async function newRequest(): Promise<RecoveryRequest> {
  counter += 1;
  const request: RecoveryRequest = {
    recoveryId: `r20261130143${String(counter).padStart(3, '0')}-abcd`,
    toTime: '2026-11-30T14:02:00.000Z',
    newInstance: NEW,
    actor: 'alice',
    reason: 'bookings deleted',
    requestedAt: new Date(Date.now() - 600_000).toISOString(),
  };
  const store = deps().store;
  const previous = await activeRecoveryId(store);
  if (previous) await updateRecovery(store, previous, { status: 'abandoned' });
  await beginRecovery(store, { ...request, sourceInstance: 'atmr-prod' });
  return request;
}

function execute(request: RecoveryRequest, workflowDeps: WorkflowDeps, lostAnswers: string[] = []) {
  return runRecoveryWorkflow(definition, request, workflowDeps, pages, lostAnswers);
}

beforeAll(async () => {
  definition = recoveryDefinition();
  dynamo = await startLocalDynamo();
  const schema = `CREATE TABLE company (id int PRIMARY KEY); CREATE TABLE booking (id int PRIMARY KEY);
    CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY); INSERT INTO company SELECT generate_series(1, 3);`;
  psql(cluster, 'postgres', `CREATE DATABASE ${production}; CREATE DATABASE ${recovered};`);
  psql(cluster, production, `${schema} INSERT INTO booking SELECT generate_series(1, 50); INSERT INTO alembic_version VALUES ('4f2a');`);
  psql(cluster, recovered, `${schema} INSERT INTO booking SELECT generate_series(1, 40); INSERT INTO alembic_version VALUES ('3e1b');`);
}, 120_000);

afterAll(async () => {
  await dynamo.stop();
  psql(cluster, 'postgres', `DROP DATABASE IF EXISTS ${production} WITH (FORCE); DROP DATABASE IF EXISTS ${recovered} WITH (FORCE);`);
});

beforeEach(() => {
  rds.reset();
  events.reset();
  cloudwatch.reset();
  secrets.reset();
  pages = [];
  rds.on(DescribeDBInstancesCommand).rejects(notFound());
  rds.on(DescribeDBInstancesCommand, { DBInstanceIdentifier: 'atmr-prod' }).resolves({ DBInstances: [sourceInstance()] });
  rds.on(DescribeDBInstanceAutomatedBackupsCommand).resolves({ DBInstanceAutomatedBackups: [{ Status: 'active', RestoreWindow: { EarliestTime: EARLIEST, LatestTime: LATEST } }] });
  rds.on(RestoreDBInstanceToPointInTimeCommand).resolves({ DBInstance: { DBInstanceStatus: 'creating' } });
  rds.on(DeleteDBInstanceCommand).resolves({});
  events.on(PutEventsCommand).resolves({ FailedEntryCount: 0 });
  cloudwatch.on(PutMetricDataCommand).resolves({});
});

/** The new instance: absent until the restore is asked for, then the given states, one per describe (an Error: that describe fails with it). */
function newInstanceStates(...states: ({ status: string; host?: string } | Error)[]) {
  let calls = 0;
  rds.on(DescribeDBInstancesCommand, { DBInstanceIdentifier: NEW }).callsFake(() => {
    if (rds.commandCalls(RestoreDBInstanceToPointInTimeCommand).length === 0) throw notFound();
    calls += 1;
    const state = states[Math.min(calls - 1, states.length - 1)];
    if (state instanceof Error) throw state;
    return {
      DBInstances: [
        {
          DBInstanceIdentifier: NEW,
          DBInstanceStatus: state.status,
          ...(state.host && { Endpoint: { Address: state.host, Port: 5432 } }),
          TagList: [
            { Key: 'atmr-dr:purpose', Value: 'recovery' },
            { Key: 'atmr-dr:recovery-id', Value: `r20261130143${String(counter).padStart(3, '0')}-abcd` },
          ],
        },
      ],
    };
  });
}

/** What the SDK throws once its attempts are spent on a short degradation of the RDS API. */
function internalFailure(): Error {
  return Object.assign(new Error('We encountered an internal error. Please try again.'), { name: 'InternalFailure', $fault: 'server', $metadata: { httpStatusCode: 500 } });
}

/** The `stage` of each RecoverySeconds datum the steps sent to CloudWatch, in order. */
function publishedStages(): (string | undefined)[] {
  return cloudwatch
    .commandCalls(PutMetricDataCommand)
    .flatMap((call) => call.args[0].input.MetricData ?? [])
    .filter((datum) => datum.MetricName === 'RecoverySeconds')
    .map((datum) => datum.Dimensions?.find((d) => d.Name === 'stage')?.Value);
}

describe('recovery workflow (aws-local-stepfunctions)', () => {
  it('restores, waits through "creating", verifies side by side, reports, and is ready for cutover', async () => {
    const request = await newRequest();
    newInstanceStates({ status: 'creating' }, { status: 'modifying' }, { status: 'available', host: `${NEW}.rds` });

    const { output, error } = await execute(request, deps());

    expect(error).toBeUndefined();
    expect(output).toMatchObject({ report: { ok: true } });
    const record = await getRecovery(deps().store, request.recoveryId);
    expect(record).toMatchObject({ status: 'verified', newInstanceHost: `${NEW}.rds`, verification: { ok: true } });
    expect(record.verification!.rows).toContainEqual({ check: 'rows in booking', production: '50', recovered: '40 (-10)', outcome: 'differs' });
    expect(record.verification!.rows).toContainEqual({ check: 'Alembic revision', production: '4f2a', recovered: '3e1b', outcome: 'differs' });
    expect(rds.commandCalls(RestoreDBInstanceToPointInTimeCommand)[0].args[0].input).toMatchObject({ TargetDBInstanceIdentifier: NEW, RestoreTime: new Date('2026-11-30T14:02:00Z') });
    expect(rds.commandCalls(DeleteDBInstanceCommand)).toHaveLength(0);
    expect(events.commandCalls(PutEventsCommand).map((c) => c.args[0].input.Entries![0].DetailType)).toEqual(['Recovery Started', 'Recovery Verified']);
    const verified = events.commandCalls(PutEventsCommand).map((c) => c.args[0].input.Entries![0]).find((e) => e.DetailType === 'Recovery Verified')!;
    // The event reaches a page as written: its command names the environment.
    expect((JSON.parse(verified.Detail!) as { summary: string }).summary).toMatch(/; cut over with "npx --no atmr-dr recover cutover \S+ --yes --env drill"$/);
    expect(cloudwatch.commandCalls(PutMetricDataCommand)[0].args[0].input).toMatchObject({
      Namespace: 'AtmrDr/drill',
      MetricData: [{ MetricName: 'RecoverySeconds', Dimensions: [{ Name: 'service', Value: 'recovery' }, { Name: 'stage', Value: 'verified' }] }],
    });
    expect(publishedStages()).toEqual(['verified']);
    expect(pages).toEqual([]);
    expect(await activeRecoveryId(deps().store)).toBe(request.recoveryId);
  });

  it('verifies a copy while RDS takes its first backup ("backing-up" accepts connections) instead of waiting for "available"', async () => {
    const request = await newRequest();
    newInstanceStates({ status: 'backing-up', host: `${NEW}.rds` });

    // The maximum wait is over at the first describe: a copy not taken as ready then is deleted.
    const { output, error } = await execute(request, deps({ maxWaitSeconds: 60 }));

    expect(error).toBeUndefined();
    expect(output).toMatchObject({ instance: { ready: true, status: 'backing-up' }, report: { ok: true } });
    expect(await getRecovery(deps().store, request.recoveryId)).toMatchObject({ status: 'verified', newInstanceHost: `${NEW}.rds` });
    expect(rds.commandCalls(DeleteDBInstanceCommand)).toHaveLength(0);
  });

  it('a new instance that fails is deleted, the recovery marked failed (lock freed) and on-call paged', async () => {
    const request = await newRequest();
    newInstanceStates({ status: 'creating' }, { status: 'incompatible-restore' });

    const { error } = await execute(request, deps());

    expect(error?.name).toBe('RecoveryFailed');
    expect(rds.commandCalls(DeleteDBInstanceCommand)[0].args[0].input).toEqual({ DBInstanceIdentifier: NEW, SkipFinalSnapshot: true, DeleteAutomatedBackups: true });
    expect(pages).toHaveLength(1);
    expect(pages[0]).toMatch(/FAILED: RecoveryInstanceFailed: atmr-prod-pitr-202611301402 is "incompatible-restore".*Cleanup: deleting atmr-prod-pitr-202611301402 \(no final snapshot\)/);
    expect((await getRecovery(deps().store, request.recoveryId)).status).toBe('failed');
    expect(await activeRecoveryId(deps().store)).toBeUndefined();
  });

  it('a new instance that never becomes available in time is deleted and on-call paged', async () => {
    const request = await newRequest();
    newInstanceStates({ status: 'creating' });

    const { error } = await execute(request, deps({ maxWaitSeconds: 60 }));

    expect(error?.name).toBe('RecoveryFailed');
    expect(pages[0]).toMatch(/RecoveryInstanceTimeout: the new instance did not become available within 240 minutes/);
    expect(rds.commandCalls(DeleteDBInstanceCommand)).toHaveLength(1);
  });

  it('a restore RDS refuses (PITR off) pages without deleting anything', async () => {
    const request = await newRequest();
    rds.on(DescribeDBInstancesCommand, { DBInstanceIdentifier: 'atmr-prod' }).resolves({ DBInstances: [sourceInstance({ BackupRetentionPeriod: 0 })] });

    const { error } = await execute(request, deps());

    expect(error?.name).toBe('RecoveryFailed');
    expect(rds.commandCalls(RestoreDBInstanceToPointInTimeCommand)).toHaveLength(0);
    expect(rds.commandCalls(DeleteDBInstanceCommand)).toHaveLength(0);
    expect(pages[0]).toMatch(/point-in-time recovery is off on atmr-prod.*Cleanup: atmr-prod-pitr-202611301402 does not exist/);
  });

  it('a copy missing a critical table fails verification: kept for inspection, paged, never cut over', async () => {
    const request = await newRequest();
    newInstanceStates({ status: 'available', host: `${NEW}.rds` });
    psql(cluster, recovered, 'ALTER TABLE booking RENAME TO booking_old');
    try {
      const { error } = await execute(request, deps());

      expect(error?.name).toBe('RecoveryVerificationFailed');
      expect(pages[0]).toMatch(/FAILED verification; it is kept for inspection: npx --no atmr-dr recover status \S+ --env example ; npx --no atmr-dr recover abandon \S+ --env example$/);
      expect(rds.commandCalls(DeleteDBInstanceCommand)).toHaveLength(0);
      const record = await getRecovery(deps().store, request.recoveryId);
      expect(record.status).toBe('verification-failed');
      expect(record.verification!.problems[0]).toMatch(/table booking cannot be counted on the recovered copy/);
      expect(events.commandCalls(PutEventsCommand).map((c) => c.args[0].input.Entries![0].DetailType)).toContain('Recovery Verification Failed');
      // The stage "verified" was not reached: RecoverySeconds{stage=verified} measures the time to a copy one can cut over.
      expect(publishedStages()).toEqual([]);
    } finally {
      psql(cluster, recovered, 'ALTER TABLE booking_old RENAME TO booking');
    }
  });
});

describe('recovery workflow: a copy none of whose data can be read within the statement timeout', () => {
  it.each([[[]], [['Verify', 'Report']]])(
    'is not verified (lost answers retried: %j): recorded "unverified" with the Alembic revision only, kept, paged with what to do, and the lock held for a cutover on the operator\'s word or an abandon',
    async (lostAnswers: string[]) => {
      // Arrange: the copy's critical tables locked, so every count and query outlasts a short timeout,
      // as the first full scans of a fresh copy loading its blocks from S3 do.
      const request = await newRequest();
      newInstanceStates({ status: 'available', host: `${NEW}.rds` });
      const base = deps();
      const slow = deps({ checks: { ...base.settings.checks, statementTimeoutMs: 300 } });
      const holder = testClient({ host: cluster.host, port: cluster.port, user: cluster.user, database: recovered });
      // A holder left open by a failed assertion is ended by the drop of its database: not a crash of the run.
      holder.on('error', () => undefined);
      await holder.connect();
      await holder.query('BEGIN; LOCK TABLE company, booking IN ACCESS EXCLUSIVE MODE');
      try {
        // Act
        const { error } = await execute(request, slow, lostAnswers);

        // Assert
        expect(error?.name).toBe('RecoveryNotVerified');
        const record = await getRecovery(base.store, request.recoveryId);
        expect(record.status).toBe('unverified');
        expect(record.verification).toMatchObject({ ok: false, unread: true, unreadBy: { statementTimeoutMs: 300 }, problems: [] });
        expect(record.verification!.rows.filter((r) => r.outcome !== 'slow').map((r) => r.check)).toEqual(['Alembic revision']);
        expect(rds.commandCalls(DeleteDBInstanceCommand)).toHaveLength(0);
        expect(pages).toHaveLength(1);
        expect(pages[0]).toMatch(new RegExp(`but no count or critical query of the copy finished within the 0.3 s statement timeout \\(a fresh copy .*NOT verified and kept\\. npx --no atmr-dr recover status ${request.recoveryId} --env example says what to do.*npx --no atmr-dr recover cutover ${request.recoveryId} --unverified --yes --env example, or npx --no atmr-dr recover abandon ${request.recoveryId} --env example`));
        const announced = events.commandCalls(PutEventsCommand).map((c) => c.args[0].input.Entries![0]).filter((e) => e.DetailType === 'Recovery Verification Failed');
        expect(announced.length).toBeGreaterThanOrEqual(1);
        expect((JSON.parse(announced[0].Detail!) as { summary: string }).summary).toMatch(/NOT verified: no count or critical query of the copy finished within the 0.3 s statement timeout \(/);
        // The event reaches a page as written: its commands name the environment.
        expect((JSON.parse(announced[0].Detail!) as { summary: string }).summary).toMatch(
          new RegExp(`then "npx --no atmr-dr recover cutover ${request.recoveryId} --unverified --yes --env drill" .*, or "npx --no atmr-dr recover abandon ${request.recoveryId} --env drill"$`),
        );
        // Not verified: no RecoverySeconds{stage=verified}, also when the report step runs again.
        expect(publishedStages()).toEqual([]);
        expect(await activeRecoveryId(base.store)).toBe(request.recoveryId);
      } finally {
        await holder.end();
      }
    },
  );
});

describe('recovery workflow: a failure after the copy became available', () => {
  it('a copy that refuses the verifier for another reason than its password (a role it does not know) is kept, not deleted, its password left alone, and the page says so', async () => {
    const request = await newRequest();
    newInstanceStates({ status: 'available', host: `${NEW}.rds` });
    const base = deps();
    // The copy has the master password of the target time; the secret holds the rotated one.
    const refused: WorkflowDeps = {
      ...base,
      connect: async (side, host, port) => (side === 'recovered' ? { ...(await base.connect!(side, host, port)), user: 'atmr_rotated_away' } : base.connect!(side, host, port)),
    };

    const { error } = await execute(request, refused);

    expect(error?.name).toBe('RecoveryFailed');
    expect(rds.commandCalls(DeleteDBInstanceCommand)).toHaveLength(0);
    expect(rds.commandCalls(ModifyDBInstanceCommand)).toHaveLength(0);
    expect(pages).toHaveLength(1);
    expect(pages[0]).toMatch(/atmr_rotated_away/);
    expect(pages[0]).toMatch(new RegExp(`${NEW} is kept.*npx --no atmr-dr recover abandon ${request.recoveryId}`));
    const record = await getRecovery(deps().store, request.recoveryId);
    expect(record.status).toBe('failed');
    expect(record.error).toMatch(new RegExp(`${NEW} is kept`));
  });

  it('an available copy whose verification cannot write the record (DynamoDB refuses) is kept, not deleted, and the page says so', async () => {
    const request = await newRequest();
    newInstanceStates({ status: 'available', host: `${NEW}.rds` });
    const base = deps();
    // The ops-state table refuses the verification's first write (status verifying, with the host):
    // a value it sets, not one its condition compares (the cleanup's condition names "verifying" too).
    const refusing = {
      send: (command: { input: { ExpressionAttributeValues?: Record<string, unknown> } }) =>
        Object.entries(command.input.ExpressionAttributeValues ?? {}).some(([key, value]) => key.startsWith(':v') && value === 'verifying')
          ? Promise.reject(Object.assign(new Error('The level of configured provisioned throughput for the table was exceeded'), { name: 'ProvisionedThroughputExceededException' }))
          : base.store.ddb.send(command as never),
    } as unknown as typeof base.store.ddb;

    const { error } = await execute(request, { ...base, store: { ...base.store, ddb: refusing } });

    expect(error?.name).toBe('RecoveryFailed');
    expect(rds.commandCalls(DeleteDBInstanceCommand)).toHaveLength(0);
    expect(pages).toHaveLength(1);
    expect(pages[0]).toMatch(new RegExp(`${NEW} is kept \\(it is available\\).*npx --no atmr-dr recover abandon ${request.recoveryId}`));
    expect((await getRecovery(deps().store, request.recoveryId)).status).toBe('failed');
  });

  it('a restore whose "Recovery Started" event EventBridge refuses goes on (not deleted), the refusal kept in its record', async () => {
    const request = await newRequest();
    newInstanceStates({ status: 'creating' }, { status: 'available', host: `${NEW}.rds` });
    events.on(PutEventsCommand).callsFake((input: { Entries: { DetailType: string }[] }) =>
      input.Entries[0].DetailType === 'Recovery Started' ? { FailedEntryCount: 1, Entries: [{ ErrorCode: 'InternalFailure', ErrorMessage: 'try again' }] } : { FailedEntryCount: 0 },
    );

    const { error } = await execute(request, deps());

    expect(error).toBeUndefined();
    expect(rds.commandCalls(DeleteDBInstanceCommand)).toHaveLength(0);
    expect(pages).toEqual([]);
    expect(await getRecovery(deps().store, request.recoveryId)).toMatchObject({ status: 'verified', error: expect.stringMatching(/^the "Recovery Started" event failed: .*EventBridge refused/) });
  });

  it('a verified copy whose announcement EventBridge refuses stays verified (ready for cutover, nothing deleted), the refusal kept in its record', async () => {
    const request = await newRequest();
    newInstanceStates({ status: 'available', host: `${NEW}.rds` });
    events.on(PutEventsCommand).callsFake((input: { Entries: { DetailType: string }[] }) =>
      input.Entries[0].DetailType === 'Recovery Verified' ? { FailedEntryCount: 1, Entries: [{ ErrorCode: 'InternalFailure', ErrorMessage: 'try again' }] } : { FailedEntryCount: 0 },
    );

    const { error } = await execute(request, deps());

    expect(error).toBeUndefined();
    expect(rds.commandCalls(DeleteDBInstanceCommand)).toHaveLength(0);
    expect(pages).toEqual([]);
    const record = await getRecovery(deps().store, request.recoveryId);
    expect(record.status).toBe('verified');
    expect(record.error).toMatch(/^the "Recovery Verified" event or the RecoverySeconds metric failed: .*EventBridge refused/);
  });
});

describe('recovery workflow: Step Functions retries a step whose answer Lambda lost', () => {
  it('the retried restore, verification and report carry on with the same instance: one restore, verified, nothing deleted, nobody paged', async () => {
    const request = await newRequest();
    newInstanceStates({ status: 'creating' }, { status: 'available', host: `${NEW}.rds` });

    const { error } = await execute(request, deps(), ['Restore', 'Verify', 'Report']);

    expect(error).toBeUndefined();
    expect(rds.commandCalls(RestoreDBInstanceToPointInTimeCommand)).toHaveLength(1);
    expect(rds.commandCalls(DeleteDBInstanceCommand)).toHaveLength(0);
    expect(pages).toEqual([]);
    expect(await getRecovery(deps().store, request.recoveryId)).toMatchObject({ status: 'verified', newInstanceHost: `${NEW}.rds` });
  });

  it("a restore the SDK sent again after its first answer was lost (the retry refused: the name is taken by this recovery's copy) carries on with that copy: verified, nothing deleted, nobody paged", async () => {
    const request = await newRequest();
    newInstanceStates({ status: 'creating' }, { status: 'available', host: `${NEW}.rds` });
    // What the SDK surfaces once its retry of an accepted request is refused: the first attempt created the copy.
    rds.on(RestoreDBInstanceToPointInTimeCommand).rejects(Object.assign(new Error('DB instance already exists'), { name: 'DBInstanceAlreadyExistsFault', $metadata: { httpStatusCode: 400 } }));

    const { error } = await execute(request, deps());

    expect(error).toBeUndefined();
    expect(rds.commandCalls(DeleteDBInstanceCommand)).toHaveLength(0);
    expect(pages).toEqual([]);
    expect(await getRecovery(deps().store, request.recoveryId)).toMatchObject({ status: 'verified', newInstanceHost: `${NEW}.rds` });
  });
});

describe('recovery workflow: RDS throttles the wait or fails it transiently (5xx, network)', () => {
  it('a poll still throttled after the SDK retries waits for the next one instead of deleting the copy being restored', async () => {
    const request = await newRequest();
    // What the SDK throws once its own retries are spent: RDS answered "Throttling" to each.
    const throttled = () => Object.assign(new Error('Rate exceeded'), { name: 'Throttling' });
    newInstanceStates({ status: 'creating' }, throttled(), throttled(), { status: 'available', host: `${NEW}.rds` });

    const { error } = await execute(request, deps());

    expect(error).toBeUndefined();
    expect(rds.commandCalls(DeleteDBInstanceCommand)).toHaveLength(0);
    expect(pages).toEqual([]);
    expect((await getRecovery(deps().store, request.recoveryId)).status).toBe('verified');
  });

  it('a poll on which RDS answered 500 InternalFailure (after the SDK retries) waits for the next one: the copy becomes available, is verified, nothing deleted, nobody paged', async () => {
    const request = await newRequest();
    newInstanceStates({ status: 'creating' }, internalFailure(), { status: 'creating' }, { status: 'available', host: `${NEW}.rds` });

    const { error } = await execute(request, deps());

    expect(error).toBeUndefined();
    expect(rds.commandCalls(DeleteDBInstanceCommand)).toHaveLength(0);
    expect(pages).toEqual([]);
    expect((await getRecovery(deps().store, request.recoveryId)).status).toBe('verified');
  });

  it('a poll whose request timed out on the network waits for the next one instead of deleting the copy', async () => {
    const request = await newRequest();
    const timedOut = Object.assign(new Error('connect ETIMEDOUT 52.47.0.1:443'), { code: 'ETIMEDOUT' });
    newInstanceStates({ status: 'creating' }, timedOut, { status: 'available', host: `${NEW}.rds` });

    const { error } = await execute(request, deps());

    expect(error).toBeUndefined();
    expect(rds.commandCalls(DeleteDBInstanceCommand)).toHaveLength(0);
    expect((await getRecovery(deps().store, request.recoveryId)).status).toBe('verified');
  });

  it('a wait that gets no answer at all still ends at its limit and pages: the copy is not available in time', async () => {
    const request = await newRequest();
    newInstanceStates({ status: 'creating' }, internalFailure());
    let polls = 0;
    // Each reading of the clock, one more poll, 20 minutes later: past the limit of an hour after 3.
    const now = () => new Date(Date.now() + ++polls * 20 * 60_000);

    const { error } = await execute(request, { ...deps(), now });

    expect(error?.name).toBe('RecoveryFailed');
    // The cleanup cannot describe the copy either: it leaves it in place and says so.
    expect(pages[0]).toMatch(new RegExp(`RecoveryInstanceTimeout: the new instance did not become available within .*${NEW} left in place \\(We encountered an internal error`));
  });

  it('a poll refused for another reason (access denied) still fails at once and pages, the copy still being restored kept for a human: only its own failure or the wait\'s limit deletes it', async () => {
    const request = await newRequest();
    newInstanceStates({ status: 'creating' }, Object.assign(new Error('not authorized to perform rds:DescribeDBInstances'), { name: 'AccessDenied' }), { status: 'creating' });

    const { error } = await execute(request, deps());

    expect(error?.name).toBe('RecoveryFailed');
    expect(pages[0]).toMatch(new RegExp(`AccessDenied: not authorized.*Cleanup: ${NEW} is kept \\("creating"; the failure is not the copy's own\\): "npx --no atmr-dr recover status ${request.recoveryId} --env drill" shows it, "npx --no atmr-dr recover abandon ${request.recoveryId} --env drill" deletes it`));
    expect(rds.commandCalls(DeleteDBInstanceCommand)).toHaveLength(0);
    expect((await getRecovery(deps().store, request.recoveryId)).status).toBe('failed');
  });

  it('a copy that RDS reports failed is deleted whatever failed the step: it holds no data to keep', async () => {
    const request = await newRequest();
    newInstanceStates({ status: 'creating' }, Object.assign(new Error('not authorized to perform rds:DescribeDBInstances'), { name: 'AccessDenied' }), { status: 'failed' });

    const { error } = await execute(request, deps());

    expect(error?.name).toBe('RecoveryFailed');
    expect(rds.commandCalls(DeleteDBInstanceCommand)).toHaveLength(1);
    expect(pages[0]).not.toMatch(/is kept/);
  });
});

describe('recovery workflow: the cleanup fails too', () => {
  it('still pages on-call, naming the instance to check by hand', async () => {
    const request = await newRequest();
    newInstanceStates({ status: 'creating' }, { status: 'failed' });
    // EventBridge refuses the "Recovery Failed" announcement: the cleanup step itself fails.
    events.on(PutEventsCommand).callsFake((input: { Entries: { DetailType: string }[] }) =>
      input.Entries[0].DetailType === 'Recovery Failed' ? { FailedEntryCount: 1, Entries: [{ ErrorCode: 'InternalFailure', ErrorMessage: 'try again' }] } : { FailedEntryCount: 0 },
    );

    const { error } = await execute(request, deps());

    expect(error?.name).toBe('RecoveryFailed');
    expect(pages).toHaveLength(1);
    expect(pages[0]).toMatch(new RegExp(`Recovery ${request.recoveryId} FAILED and its cleanup failed too \\(.*EventBridge refused the "Recovery Failed" event.*\\): check instance ${NEW} by hand`));
  });
});

describe('recovery workflow: an operator claims the recovery while the workflow fails', () => {
  it.each(['abandoning', 'abandoned'] as const)(
    'the cleanup leaves an operator\'s "%s" as it is (conditional write refused by the table), says so in the page and keeps the lock as the operator left it',
    async (status) => {
      const request = await newRequest();
      const store = deps().store;
      // The restore fails on RDS right after the operator's abandon claimed the recovery (and, for
      // "abandoned", finished it and freed the lock): the cleanup runs after both.
      newInstanceStates({ status: 'creating' }, { status: 'incompatible-restore' });
      await updateRecovery(store, request.recoveryId, { status: 'abandoning' }, ['restoring']);
      if (status === 'abandoned') await updateRecovery(store, request.recoveryId, { status: 'abandoned' }, ['abandoning']);

      const { error } = await execute(request, deps());

      expect(error?.name).toBe('RecoveryFailed');
      const record = await getRecovery(store, request.recoveryId);
      expect(record.status).toBe(status);
      expect(record.error).toBeUndefined();
      expect(pages).toHaveLength(1);
      expect(pages[0]).toMatch(new RegExp(`The recovery is now "${status}", no longer a status of the running workflow .*: left as it is, not marked failed`));
      expect(await activeRecoveryId(store)).toBe(status === 'abandoning' ? request.recoveryId : undefined);
    },
  );

  it('a cleanup run again after Lambda lost its answer (its first run marked the recovery failed) pages the failure, not a claim by an operator that never happened', async () => {
    const request = await newRequest();
    newInstanceStates({ status: 'creating' }, { status: 'incompatible-restore' });

    const { error } = await execute(request, deps(), ['CleanUp']);

    expect(error?.name).toBe('RecoveryFailed');
    expect((await getRecovery(deps().store, request.recoveryId)).status).toBe('failed');
    expect(await activeRecoveryId(deps().store)).toBeUndefined();
    expect(pages).toHaveLength(1);
    expect(pages[0]).toMatch(/FAILED: RecoveryInstanceFailed: atmr-prod-pitr-202611301402 is "incompatible-restore"/);
    expect(pages[0]).not.toMatch(/not marked failed|an abandon or a cutover may have claimed it/);
  });

  it('a cleanup that finds an operator\'s cutover under way ("cutting-over": a report retried seconds after the operator began it) does not page "Production is unchanged": it says production is in that cutover\'s hands and how to go on, as "recover status" does', async () => {
    // Arrange: the copy was verified, then the report step failed (its retries spent) while an
    // operator, who had seen "verified", took the cutover lease.
    const request = await newRequest();
    const store = deps().store;
    await updateRecovery(store, request.recoveryId, { status: 'verified', newInstanceHost: `${NEW}.rds`, availableAt: '2026-11-30T14:50:00.000Z' }, ['restoring']);
    await takeCutoverLease(store, request.recoveryId, { from: ['verified'], owner: 'bob (pid 4242 on bob-laptop)', token: 'lease-1', leaseSeconds: 120, changes: { status: 'cutting-over', journal: [] } });

    // Act
    const { message } = await cleanupStep(deps(), { ...request, error: { Error: 'States.TaskFailed', Cause: 'the report step failed' } });

    // Assert
    expect(message).not.toMatch(/Production is unchanged|restore a dump|recover abandon/);
    expect(message).toContain(
      `The recovery is now "cutting-over": a cutover by bob (pid 4242 on bob-laptop) is putting production on ${NEW} (it may be in maintenance meanwhile); left as it is, not marked failed, and ${NEW} is kept. Production is in that cutover's hands: "npx --no atmr-dr recover status ${request.recoveryId} --env drill" shows its journal; the cutover stopped or is running: continue it with "npx --no atmr-dr recover cutover ${request.recoveryId} --resume --yes --env drill", or put back what it changed with "npx --no atmr-dr recover cutover ${request.recoveryId} --undo --yes --env drill".`,
    );
    const announced = events.commandCalls(PutEventsCommand).map((c) => c.args[0].input.Entries![0]).filter((e) => e.DetailType === 'Recovery Failed');
    expect((JSON.parse(announced[0].Detail!) as { summary: string }).summary).toBe(message);
    expect((await getRecovery(store, request.recoveryId)).status).toBe('cutting-over');
    expect(rds.commandCalls(DeleteDBInstanceCommand)).toHaveLength(0);
  });

  it.each([
    ['cut-over', (id: string) => `The recovery is now "cut-over": production runs on ${NEW} (an operator's cutover finished); left as it is, not marked failed. See "npx --no atmr-dr recover status ${id} --env drill" for what is left to do.`],
    [
      'cutover-failed',
      (id: string) =>
        `The recovery is now "cutover-failed": an operator's cutover to ${NEW} failed; left as it is, not marked failed, and ${NEW} is kept. Production is as before only if that cutover undid every change: "npx --no atmr-dr recover status ${id} --env drill" shows its journal (a step "undo-failed": "npx --no atmr-dr recover cutover ${id} --undo --yes --env drill").`,
    ],
  ] as const)('a cleanup that finds the recovery already "%s" does not page "Production is unchanged": it says what the cutover left', async (status, expected) => {
    const request = await newRequest();
    const store = deps().store;
    await updateRecovery(store, request.recoveryId, { status: 'verified', newInstanceHost: `${NEW}.rds` }, ['restoring']);
    await updateRecovery(store, request.recoveryId, { status }, ['verified']);

    const { message } = await cleanupStep(deps(), { ...request, error: { Error: 'States.TaskFailed', Cause: 'the report step failed' } });

    expect(message).not.toMatch(/Production is unchanged|restore a dump|recover abandon/);
    expect(message).toContain(expected(request.recoveryId));
    expect((await getRecovery(store, request.recoveryId)).status).toBe(status);
  });

  it('the cleanup logs the lost race with the status it left', async () => {
    const request = await newRequest();
    const store = deps().store;
    await updateRecovery(store, request.recoveryId, { status: 'abandoning' }, ['restoring']);
    rds.on(DescribeDBInstancesCommand, { DBInstanceIdentifier: NEW }).rejects(notFound());
    const log = jest.fn();

    await cleanupStep(deps(), { ...request, error: { Error: 'RecoveryInstanceFailed', Cause: 'restore failed' } }, log);

    expect(log).toHaveBeenCalledWith('recovery cleanup: status "failed" not written', expect.objectContaining({ recoveryId: request.recoveryId, status: 'abandoning' }));
    expect((await getRecovery(store, request.recoveryId)).status).toBe('abandoning');
  });
});

/**
 * The copy on a PostgreSQL cluster of its own that checks passwords (SCRAM), holding the master
 * password of the target time; the database secret holds the rotated one. Production is on the
 * shared cluster (it trusts the role: production is only read). No connection override: the steps
 * read the secret and connect as the Lambda function does. ModifyDBInstance, answered at the SDK
 * boundary, sets the role's password on the copy's cluster as RDS would.
 */
describe('recovery workflow: the password was rotated after the target time (real PostgreSQL with passwords)', () => {
  const master = uniqueDatabaseName('wf_master');
  const database = uniqueDatabaseName('wf_pw');
  const SECRET = 'arn:aws:secretsmanager:eu-west-3:111111111111:secret:atmr-prod-master';
  let secured: PostgresCluster;

  beforeAll(async () => {
    secured = await startPostgres({ hba: `local all all trust\nhost all postgres 127.0.0.1/32 trust\nhost all ${master} 127.0.0.1/32 scram-sha-256\n` });
    const schema = `CREATE TABLE company (id int PRIMARY KEY); CREATE TABLE booking (id int PRIMARY KEY);
      CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY); INSERT INTO company SELECT generate_series(1, 3);`;
    for (const [side, bookings, revision] of [[secured, 40, '3e1b'], [cluster, 50, '4f2a']] as const) {
      psql(side, 'postgres', `CREATE ROLE ${master} LOGIN; CREATE DATABASE ${database} OWNER ${master};`);
      psql(side, database, `SET ROLE ${master}; ${schema} INSERT INTO booking SELECT generate_series(1, ${bookings}); INSERT INTO alembic_version VALUES ('${revision}');`);
    }
  }, 120_000);

  afterAll(() => {
    if (secured) stopPostgres(secured);
    psql(cluster, 'postgres', `DROP DATABASE IF EXISTS ${database} WITH (FORCE); DROP ROLE IF EXISTS ${master};`);
  });

  beforeEach(() => {
    // The copy holds the password of the target time; the secret, the rotated one.
    psql(secured, 'postgres', `ALTER ROLE ${master} PASSWORD 'target-time-password'`);
    secrets.on(GetSecretValueCommand, { SecretId: SECRET }).resolves({ SecretString: JSON.stringify({ username: master, password: 'rotated-password' }) });
  });

  /** The copy's status as last described whenever ModifyDBInstance is called. */
  let modifiedWhile: string[] = [];
  beforeEach(() => (modifiedWhile = []));

  function passwordDeps(now?: () => Date): WorkflowDeps {
    const { connect: _none, ...base } = deps({ databaseName: database, productionHost: cluster.host, productionPort: cluster.port, secretArn: SECRET, sslMode: 'disable' });
    return { ...base, ...(now && { now }) };
  }

  /**
   * The copy as RDS describes it: absent until restored, then available on the password cluster;
   * after ModifyDBInstance, `pendingPolls` describes show the reset in progress before it is
   * available again, and only then does the cluster take the new password (unless `apply` is false:
   * RDS accepts the reset but the copy keeps refusing).
   */
  function copyOnPasswordCluster(recoveryId: string, options: { apply: boolean; pendingPolls: number; busyModifies?: number; backingUpDescribes?: number; failedPollsAfterModify?: number }) {
    let pollsSinceModify = 0;
    let newPassword: string | undefined;
    let busy = options.busyModifies ?? 0;
    // The copy's first automated backup: its first describes say "backing-up" (it accepts connections).
    let backingUp = options.backingUpDescribes ?? 0;
    let described = '';
    let failedPolls = options.failedPollsAfterModify ?? 0;
    rds.on(ModifyDBInstanceCommand).callsFake((input: { DBInstanceIdentifier: string; MasterUserPassword: string }) => {
      modifiedWhile.push(described);
      // The copy's first automated backup, right after it became available: RDS refuses any modification.
      if (busy-- > 0) throw Object.assign(new Error('Database instance is not in available state.'), { name: 'InvalidDBInstanceStateFault' });
      // RDS refuses a modification while the previous one is still being applied.
      if (newPassword !== undefined) throw Object.assign(new Error(`Database instance is not in available state.`), { name: 'InvalidDBInstanceState' });
      newPassword = input.MasterUserPassword;
      return { DBInstance: { DBInstanceIdentifier: input.DBInstanceIdentifier, DBInstanceStatus: 'available', PendingModifiedValues: { MasterUserPassword: '****' } } };
    });
    rds.on(DescribeDBInstancesCommand, { DBInstanceIdentifier: NEW }).callsFake(() => {
      if (rds.commandCalls(RestoreDBInstanceToPointInTimeCommand).length === 0) throw notFound();
      const modified = rds.commandCalls(ModifyDBInstanceCommand).length > 0;
      // The RDS API degraded while the reset applies: these describes fail, the SDK's attempts spent.
      if (modified && failedPolls-- > 0) throw internalFailure();
      const pending = modified && pollsSinceModify++ < options.pendingPolls;
      // RDS changes the password while the reset is pending: it holds once the copy is available again.
      if (modified && !pending && options.apply && newPassword !== undefined) {
        psql(secured, 'postgres', `ALTER ROLE ${master} PASSWORD '${newPassword}'`);
        newPassword = undefined;
      }
      described = pending ? 'resetting-master-credentials' : backingUp-- > 0 ? 'backing-up' : 'available';
      return {
        DBInstances: [
          {
            DBInstanceIdentifier: NEW,
            DBInstanceStatus: described,
            ...(pending && { PendingModifiedValues: { MasterUserPassword: '****' } }),
            Endpoint: { Address: secured.host, Port: secured.port },
            TagList: [
              { Key: 'atmr-dr:purpose', Value: 'recovery' },
              { Key: 'atmr-dr:recovery-id', Value: recoveryId },
            ],
          },
        ],
      };
    });
  }

  it("sets the copy's password to the secret's current one, verifies again once RDS applied it, and the copy is ready for cutover", async () => {
    // Arrange
    const request = await newRequest();
    copyOnPasswordCluster(request.recoveryId, { apply: true, pendingPolls: 2 });

    // Act
    const { error, output } = await execute(request, passwordDeps());

    // Assert
    expect(error).toBeUndefined();
    expect(output).toMatchObject({ report: { ok: true } });
    expect(rds.commandCalls(ModifyDBInstanceCommand).map((c) => c.args[0].input)).toEqual([{ DBInstanceIdentifier: NEW, MasterUserPassword: 'rotated-password', ApplyImmediately: true }]);
    const record = await getRecovery(deps().store, request.recoveryId);
    expect(record.status).toBe('verified');
    expect(record.verification!.rows).toContainEqual({ check: 'rows in booking', production: '50', recovered: '40 (-10)', outcome: 'differs' });
    expect(record.passwordReset).toEqual({ requestedAt: expect.any(String), appliedAt: expect.any(String), reason: expect.stringMatching(new RegExp(`${NEW} refused the database secret's credentials \\(password authentication failed for user "${master}"\\)`)) });
    expect(JSON.stringify(record)).not.toContain('rotated-password');
    // Still the time the copy first became available, not the time of the second verification.
    expect(record.availableAt! < record.passwordReset!.requestedAt).toBe(true);
    expect(rds.commandCalls(DeleteDBInstanceCommand)).toHaveLength(0);
    expect(pages).toEqual([]);
    expect(events.commandCalls(PutEventsCommand).map((c) => c.args[0].input.Entries![0].DetailType)).toEqual(['Recovery Started', 'Recovery Verified']);
  });

  it('a copy verified while "backing-up" gets its reset only once it is available (RDS documents modifications for "available" only), then is verified', async () => {
    // Arrange: the wait's describe and the first two reset attempts see the first backup
    const request = await newRequest();
    copyOnPasswordCluster(request.recoveryId, { apply: true, pendingPolls: 1, backingUpDescribes: 3 });

    // Act
    const { error, output } = await execute(request, passwordDeps());

    // Assert
    expect(error).toBeUndefined();
    expect(output).toMatchObject({ instance: { status: 'backing-up' }, report: { ok: true } });
    expect(modifiedWhile).toEqual(['available']);
    expect((await getRecovery(deps().store, request.recoveryId)).status).toBe('verified');
    expect(pages).toEqual([]);
  });

  it('a reset RDS refuses while the new copy is busy (its first backup) is tried again, and the copy is verified', async () => {
    // Arrange: the first two modifications are refused (InvalidDBInstanceState)
    const request = await newRequest();
    copyOnPasswordCluster(request.recoveryId, { apply: true, pendingPolls: 1, busyModifies: 2 });

    // Act
    const { error, output } = await execute(request, passwordDeps());

    // Assert
    expect(error).toBeUndefined();
    expect(output).toMatchObject({ report: { ok: true } });
    expect(rds.commandCalls(ModifyDBInstanceCommand)).toHaveLength(3);
    expect((await getRecovery(deps().store, request.recoveryId)).status).toBe('verified');
    expect(pages).toEqual([]);
  });

  it('a poll of the reset on which RDS answered 500 InternalFailure waits for the next one: the copy is verified, not failed', async () => {
    // Arrange
    const request = await newRequest();
    copyOnPasswordCluster(request.recoveryId, { apply: true, pendingPolls: 1, failedPollsAfterModify: 2 });

    // Act
    const { error, output } = await execute(request, passwordDeps());

    // Assert
    expect(error).toBeUndefined();
    expect(output).toMatchObject({ report: { ok: true } });
    expect((await getRecovery(deps().store, request.recoveryId)).status).toBe('verified');
    expect(pages).toEqual([]);
  });

  it('a reset step run again after Lambda lost its answer does not reset again (RDS would refuse it while the first one applies): the copy is verified', async () => {
    // Arrange
    const request = await newRequest();
    copyOnPasswordCluster(request.recoveryId, { apply: true, pendingPolls: 2 });

    // Act: the reset ran, its answer was lost, and the state's Retry runs it again at once
    const { error, output } = await execute(request, passwordDeps(), ['ResetCopyPassword']);

    // Assert
    expect(error).toBeUndefined();
    expect(output).toMatchObject({ report: { ok: true } });
    expect(rds.commandCalls(ModifyDBInstanceCommand)).toHaveLength(1);
    expect((await getRecovery(deps().store, request.recoveryId)).status).toBe('verified');
  });

  it('a copy that still refuses the password after the reset is not reset again: the recovery fails, the copy is kept and the page says why', async () => {
    // Arrange: RDS accepts the reset but the copy keeps refusing (e.g. the secret's user is not the master user)
    const request = await newRequest();
    copyOnPasswordCluster(request.recoveryId, { apply: false, pendingPolls: 0 });

    // Act
    const { error } = await execute(request, passwordDeps());

    // Assert
    expect(error?.name).toBe('RecoveryFailed');
    expect(rds.commandCalls(ModifyDBInstanceCommand)).toHaveLength(1);
    expect(rds.commandCalls(DeleteDBInstanceCommand)).toHaveLength(0);
    expect(pages).toHaveLength(1);
    expect(pages[0]).toMatch(new RegExp(`RecoveryLoginRefused: ${NEW} refused the database secret's credentials even after its master password was set to the secret's current one at .*${NEW} is kept`));
    const record = await getRecovery(deps().store, request.recoveryId);
    expect(record.status).toBe('failed');
    expect(record.passwordReset?.appliedAt).toEqual(expect.any(String));
  });

  it('a password reset RDS does not apply within 15 minutes fails the recovery, the copy kept and on-call paged', async () => {
    // Arrange: RDS keeps the reset pending; from the reset on, each reading of the clock is 5 minutes later
    const request = await newRequest();
    copyOnPasswordCluster(request.recoveryId, { apply: true, pendingPolls: 1000 });
    let skipped = 0;
    const now = () => new Date(Date.now() + (rds.commandCalls(ModifyDBInstanceCommand).length > 0 ? ++skipped * 5 * 60_000 : 0));

    // Act
    const { error } = await execute(request, passwordDeps(now));

    // Assert
    expect(error?.name).toBe('RecoveryFailed');
    expect(pages[0]).toMatch(new RegExp(`RecoveryPasswordResetTimeout: RDS did not apply the new master password of ${NEW} within 15 minutes \\(it is "resetting-master-credentials"\\).*${NEW} is kept`));
    expect(rds.commandCalls(DeleteDBInstanceCommand)).toHaveLength(0);
    expect((await getRecovery(deps().store, request.recoveryId)).status).toBe('failed');
  });
});
