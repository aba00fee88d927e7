import { GetMetricDataCommand } from '@aws-sdk/client-cloudwatch';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { AccessDeniedException, ClusterNotFoundException, DescribeServicesCommand, DescribeTaskDefinitionCommand, ECSServiceException, InvalidParameterException, ServerException, UpdateServiceCommand } from '@aws-sdk/client-ecs';
import { CreateDBSnapshotCommand, RDSServiceException } from '@aws-sdk/client-rds';
import { PublishCommand } from '@aws-sdk/client-sns';
import { GetParameterCommand, InternalServerError, PutParameterCommand } from '@aws-sdk/client-ssm';
import { DynamoDBDocumentClient, GetCommand } from '@aws-sdk/lib-dynamodb';
import { claimReleaseRollback, readLock, releaseClaim } from '../../../lambdas/backout/state';
import { finishDowngradeStep, guards, prepareDowngradeStep, report, RollbackState, rollOut, rollOutStep } from '../../../lambdas/backout/workflow';
import { alarmEvent, BAD, backoutDeps, backoutSuite, lkg, metricData, seedLkg, settings, thrownBy } from './fixtures';

/**
 * The once-per-release claim (ROLLBACK#<service> RELEASE#<arn>) of an automatic run that ends in the
 * report without having changed anything on ECS: the real steps one by one, as the workflow runs them
 * (a step that throws is handed to the report as Step Functions' Catch hands it, `{Error, Cause}`),
 * on dynalite; ECS, RDS and SNS mocked at the SDK boundary.
 */
const suite = backoutSuite();
const { mocks } = suite;
const OWNER = 'exec-1';

beforeEach(() => {
  // The bad release keeps failing for every run of the guards.
  mocks.cloudwatch.on(GetMetricDataCommand).resolves(metricData());
});

const alarmInput = () => ({ service: 'atmr-api', event: alarmEvent() });
const lastMessage = () => mocks.sns.commandCalls(PublishCommand).at(-1)?.args[0].input.Message ?? '';
const claimOf = async (tableName: string) =>
  (await suite.dynamo.doc.send(new GetCommand({ TableName: tableName, Key: { pk: 'ROLLBACK#atmr-api', sk: `RELEASE#${BAD}` }, ConsistentRead: true }))).Item;

/** What a step threw, as the state machine's Catch (ResultPath $.error) hands it to the report: the Lambda's error type is the error's name. */
function caught(state: RollbackState, error: unknown): RollbackState {
  const e = error as Error;
  return { ...state, error: { Error: e.name, Cause: JSON.stringify({ errorType: e.name, errorMessage: e.message }) } };
}

/** A table whose last known good declares `alembicHead`, the settings on it, and the guards' state of the first alarm (this run). */
async function firstRun(options: { autoDowngradeMigrations?: boolean; alembicHead?: string } = {}) {
  const tableName = await suite.dynamo.freshTable();
  await seedLkg(suite.dynamo.doc, lkg({ alembicHead: options.alembicHead ?? 'bbb222' }), tableName);
  const s = settings({ tableName, autoDowngradeMigrations: options.autoDowngradeMigrations ?? false });
  const deps = backoutDeps(suite.dynamo.doc);
  const state = await guards(deps, s, alarmInput(), OWNER);
  expect(state).toMatchObject({ decision: 'proceed', claimed: BAD });
  expect(await claimOf(tableName)).toMatchObject({ owner: OWNER });
  return { tableName, s, deps, state };
}

const RELEASED = `Once-per-release claim of ${BAD} released: this run changed nothing on ECS (no UpdateService accepted, no migration task started), so the next alarm of this release may roll it back automatically again`;

/** An ECS answer as the SDK throws it once its retries are spent. */
const ecsError = <T extends ECSServiceException>(Kind: new (o: { message: string; $metadata: object }) => T, status: number, attempts = 1) =>
  new Kind({ message: `${Kind.name} (test)`, $metadata: { httpStatusCode: status, attempts } });
const throttled = () =>
  new ECSServiceException({ name: 'ThrottlingException', $fault: 'client', message: 'Rate exceeded', $metadata: { httpStatusCode: 400, attempts: 3 } });

describe('the report gives the release its claim back when the run changed nothing on ECS', () => {
  it.each([
    ['AccessDeniedException', () => ecsError(AccessDeniedException, 400)],
    ['InvalidParameterException', () => ecsError(InvalidParameterException, 400)],
    ['ClusterNotFoundException', () => ecsError(ClusterNotFoundException, 400)],
  ])('ECS refused UpdateService outright (%s): the claim is released and the next alarm of the still-failing release rolls it back', async (_name, refusal) => {
    // Arrange: the guards claimed the release; ECS refuses the rollout with a 4xx
    const { tableName, s, deps, state } = await firstRun();
    mocks.ecs.on(UpdateServiceCommand).rejects(refusal());

    // Act: RollOut throws, the Catch hands the report the state and the error
    const thrown = await thrownBy(rollOutStep(deps, s, state));
    const told = await report(deps, s, caught(state, thrown), OWNER);

    // Assert
    expect(thrown.name).toBe('RollbackNotStarted');
    expect(told).toMatchObject({ outcome: 'error', page: true });
    expect(lastMessage()).toContain(RELEASED);
    expect(await claimOf(tableName)).toBeUndefined();
    const next = await guards(deps, s, alarmInput(), 'exec-2');
    expect(next).toMatchObject({ decision: 'proceed', claimed: BAD });
  });

  it('the rollback target could not be pinned after a moved tag, and RollOut sent nothing: the claim is released', async () => {
    // Arrange: the state of a retagged release, whose pinned copy ECS refuses to register
    const { tableName, s, deps, state } = await firstRun();
    const retagged: RollbackState = { ...state, retagged: 'the running tasks of X run Y', to: { ...state.to!, images: ['111111111111.dkr.ecr.eu-west-3.amazonaws.com/atmr-backend:41'] } };
    mocks.ecs.on(UpdateServiceCommand).rejects(new Error('UpdateService must not be sent'));
    mocks.ecs.on(DescribeTaskDefinitionCommand).rejects(ecsError(AccessDeniedException, 400));

    // Act
    const thrown = await thrownBy(rollOutStep(deps, s, retagged));
    await report(deps, s, caught(retagged, thrown), OWNER);

    // Assert
    expect(thrown).toMatchObject({ name: 'RollbackNotStarted', message: expect.stringContaining('nothing rolled back') });
    expect(mocks.ecs.commandCalls(UpdateServiceCommand)).toHaveLength(0);
    expect(lastMessage()).toContain(RELEASED);
    expect(await claimOf(tableName)).toBeUndefined();
  });

  it('the downgrade preparation failed (RDS refused the snapshot): the claim is released', async () => {
    // Arrange: autoDowngradeMigrations on, the releases at different Alembic heads
    const { tableName, s, deps, state } = await firstRun({ autoDowngradeMigrations: true, alembicHead: 'aaa111' });
    expect(state.downgrade.run).toBe(true);
    mocks.rds.on(CreateDBSnapshotCommand).rejects(new RDSServiceException({ name: 'SnapshotQuotaExceeded', $fault: 'client', message: 'quota', $metadata: { httpStatusCode: 400, attempts: 1 } }));

    // Act
    const thrown = await thrownBy(prepareDowngradeStep(deps, s, state));
    await report(deps, s, caught(state, thrown), OWNER);

    // Assert: an error of the function's own, before the killswitch: nothing said of it
    expect(mocks.ecs.commandCalls(UpdateServiceCommand)).toHaveLength(0);
    expect(lastMessage()).not.toContain('Killswitch:');
    expect(lastMessage()).toContain(RELEASED);
    expect(await claimOf(tableName)).toBeUndefined();
  });

  it('SSM applied the maintenance write, answered a 5xx and then stopped answering: the page says the killswitch may be in maintenance and how to put it back, and the claim is released', async () => {
    // Arrange: autoDowngradeMigrations on; the put lands and fails, every SSM call after it fails too
    const { tableName, s, deps, state } = await firstRun({ autoDowngradeMigrations: true, alembicHead: 'aaa111' });
    const ssm5xx = () => new InternalServerError({ message: 'We encountered an internal error', $metadata: { httpStatusCode: 500, attempts: 5 } });
    let putSent = false;
    mocks.ssm.on(PutParameterCommand).callsFake(async () => {
      putSent = true;
      throw ssm5xx();
    });
    mocks.ssm.on(GetParameterCommand).callsFake(async () => {
      if (putSent) throw ssm5xx();
      return { Parameter: { Value: JSON.stringify({ mode: 'normal', reason: 'r', actor: 'alice', updatedAt: '2026-05-01T00:00:00.000Z', expiresAt: null }), Version: 1 } };
    });

    // Act
    const thrown = await thrownBy(prepareDowngradeStep(deps, s, state));
    const told = await report(deps, s, caught(state, thrown), OWNER);

    // Assert: one Killswitch line with the whole story and the command, not the error a second time
    expect(told).toMatchObject({ outcome: 'error', page: true });
    const killswitchLine = lastMessage()
      .split('\n')
      .find((line) => line.startsWith('Killswitch: '));
    expect(killswitchLine).toMatch(/^Killswitch: SSM did not say whether it took atmr-dr's maintenance write before the downgrade \(InternalServerError: We encountered an internal error\), so no downgrade was started, and it could not be read back or put back \(InternalServerError: .*\): \/atmr\/test\/killswitch may be in maintenance set by atmr-dr backout, the API answering 503 to every user/);
    expect(killswitchLine).toContain('put it back: npx --no atmr-dr killswitch disable --reason "migration downgrade finished" --env test (the snapshot atmr-dr-backout-');
    expect(lastMessage()).not.toContain('Error: KillswitchWriteUnanswered');
    expect(lastMessage()).toContain(RELEASED);
    expect(await claimOf(tableName)).toBeUndefined();
  });

  it('the PrepareDowngrade Lambda timed out (a silent SSM outlasting it during the maintenance write): the page says the killswitch may be in maintenance and how to put it back, and the claim is released', async () => {
    // Arrange: the Catch of a PrepareDowngrade whose function Lambda stopped at its timeout (no error of its own)
    const { tableName, s, deps, state } = await firstRun({ autoDowngradeMigrations: true, alembicHead: 'aaa111' });
    const timedOut = { Error: 'Sandbox.Timedout', Cause: JSON.stringify({ errorType: 'Sandbox.Timedout', errorMessage: 'RequestId: r1 Error: Task timed out after 60.00 seconds' }) };

    // Act
    const told = await report(deps, s, { ...state, error: timedOut }, OWNER);

    // Assert
    expect(told).toMatchObject({ outcome: 'error', page: true });
    expect(lastMessage()).toContain(
      'Killswitch: PrepareDowngrade stopped (Sandbox.Timedout) before saying whether it had set it to maintenance: /atmr/test/killswitch may be in maintenance set by atmr-dr backout, the API answering 503 to every user and the next alarm of this release held by it (a notice, no page); check "npx --no atmr-dr killswitch status --env test" and, if it shows maintenance by atmr-dr backout, put it back: the value it had before ("aws ssm get-parameter-history --name /atmr/test/killswitch" shows it; from normal: npx --no atmr-dr killswitch disable --reason "migration downgrade finished" --env test)',
    );
    expect(lastMessage()).toContain('Error: Sandbox.Timedout: ');
    expect(lastMessage()).toContain(RELEASED);
    expect(await claimOf(tableName)).toBeUndefined();
  });

  it('ECS started no downgrade task (RunTask refused after the retries): the claim is released', async () => {
    // Arrange: prepared, then the .sync RunTask's Catch: ECS refused it, no task in the cause
    const { tableName, s, deps, state } = await firstRun({ autoDowngradeMigrations: true, alembicHead: 'aaa111' });
    const prepared = await prepareDowngradeStep(deps, s, state);
    const refusedRunTask = { Error: 'ECS.AmazonECSException', Cause: 'Rate exceeded (Service: AmazonECS; Status Code: 400; Error Code: ThrottlingException)' };

    // Act: FinishDowngrade reads the refusal, MigrationOk sends the run to the report
    const finished = await finishDowngradeStep(deps, s, { ...prepared, downgrade: { ...prepared.downgrade, taskError: refusedRunTask } });
    const told = await report(deps, s, finished, OWNER);

    // Assert
    expect(told.outcome).toBe('migration-failed');
    expect(lastMessage()).toContain(RELEASED);
    expect(await claimOf(tableName)).toBeUndefined();
  });

  it('ECS refused the downgrade RunTask outright (ECS.AccessDeniedException, a missing iam:PassRole): the claim is released and the report says not started', async () => {
    // Arrange: prepared, then the .sync RunTask's Catch: ECS refused the request, no task in the cause
    const { tableName, s, deps, state } = await firstRun({ autoDowngradeMigrations: true, alembicHead: 'aaa111' });
    const prepared = await prepareDowngradeStep(deps, s, state);
    const refusedRunTask = {
      Error: 'ECS.AccessDeniedException',
      Cause: 'User: arn:aws:sts::111111111111:assumed-role/sfn/x is not authorized to perform: iam:PassRole on resource: arn:aws:iam::111111111111:role/atmr-api-task-v2 (Service: AmazonECS; Status Code: 400; Error Code: AccessDeniedException)',
    };

    // Act
    const finished = await finishDowngradeStep(deps, s, { ...prepared, downgrade: { ...prepared.downgrade, taskError: refusedRunTask } });
    const told = await report(deps, s, finished, OWNER);

    // Assert
    expect(told.outcome).toBe('migration-failed');
    expect(lastMessage()).toMatch(/exit code none \(not started: ECS refused RunTask, the schema is unchanged \(ECS\.AccessDeniedException: /);
    expect(lastMessage()).toContain(RELEASED);
    expect(await claimOf(tableName)).toBeUndefined();
  });

  it('the claim write failed after DynamoDB applied it (the guards stop on the error): the claim is released', async () => {
    // Arrange: a client whose claim put reaches the table, then fails as a DynamoDB 5xx answers
    const tableName = await suite.dynamo.freshTable();
    await seedLkg(suite.dynamo.doc, lkg({ alembicHead: 'bbb222' }), tableName);
    const s = settings({ tableName });
    const client = new DynamoDBClient({ endpoint: suite.dynamo.endpoint, region: 'eu-west-3', credentials: { accessKeyId: 'local', secretAccessKey: 'local' }, maxAttempts: 1 });
    client.middlewareStack.add(
      (next) => async (args) => {
        const result = await next(args);
        if ((args.input as { Item?: { sk?: { S?: string } } }).Item?.sk?.S?.startsWith('RELEASE#')) throw Object.assign(new Error('Internal server error'), { name: 'InternalServerError' });
        return result;
      },
      { step: 'build', name: 'failAfterTheClaim' },
    );
    try {
      const deps = backoutDeps(DynamoDBDocumentClient.from(client, { marshallOptions: { removeUndefinedValues: true } }));

      // Act
      const state = await guards(deps, s, alarmInput(), OWNER);
      expect(await claimOf(tableName)).toMatchObject({ owner: OWNER });
      await report(deps, s, state, OWNER);
    } finally {
      client.destroy();
    }

    // Assert
    expect(lastMessage()).toContain(RELEASED);
    expect(await claimOf(tableName)).toBeUndefined();
    expect((await guards(backoutDeps(suite.dynamo.doc), s, alarmInput(), 'exec-2')).decision).toBe('proceed');
  });
});

describe('a claim the report could not release', () => {
  it('says so on the page, with the rollback to run by hand, when DynamoDB refuses the delete', async () => {
    // Arrange: ECS refused the rollout outright; the report's delete of the claim gets a DynamoDB 5xx
    const { tableName, s, state } = await firstRun();
    mocks.ecs.on(UpdateServiceCommand).rejects(ecsError(AccessDeniedException, 400));
    const client = new DynamoDBClient({ endpoint: suite.dynamo.endpoint, region: 'eu-west-3', credentials: { accessKeyId: 'local', secretAccessKey: 'local' }, maxAttempts: 1 });
    client.middlewareStack.add(
      (next) => async (args) => {
        if ((args.input as { Key?: { sk?: { S?: string } } }).Key?.sk?.S?.startsWith('RELEASE#')) throw Object.assign(new Error('Internal server error'), { name: 'InternalServerError' });
        return next(args);
      },
      { step: 'build', name: 'failTheClaimDelete' },
    );
    try {
      const deps = backoutDeps(DynamoDBDocumentClient.from(client, { marshallOptions: { removeUndefinedValues: true } }));

      // Act
      const thrown = await thrownBy(rollOut(deps, s, state));
      await report(deps, s, caught(state, thrown), OWNER);
    } finally {
      client.destroy();
    }

    // Assert: the claim stays, the page says what the next alarm will do and what to run; the lock is released
    expect(lastMessage()).toContain(
      `Once-per-release claim of ${BAD} NOT released (InternalServerError: Internal server error) although this run changed nothing on ECS: the next alarm of this release pages "already rolled back automatically once" instead of rolling back; roll back by hand: "npx --no atmr-dr rollback service --service atmr-api --env test"`,
    );
    expect(await claimOf(tableName)).toMatchObject({ owner: OWNER });
    expect(await readLock(suite.dynamo.doc, tableName, 'atmr-api', new Date())).toBeNull();
  });
});

describe('the report keeps the claim when ECS may have acted (one release is never rolled back automatically twice)', () => {
  it.each([
    ['ECS failed (ServerException, 500)', () => ecsError(ServerException, 500, 3)],
    ['UpdateService timed out', () => Object.assign(new Error('socket timed out'), { name: 'TimeoutError' })],
    ['a throttle after earlier attempts', throttled],
  ])('UpdateService\'s outcome is unknown: %s', async (_why, failure) => {
    // Arrange
    const { tableName, s, deps, state } = await firstRun();
    mocks.ecs.on(UpdateServiceCommand).rejects(failure());

    // Act
    const thrown = await thrownBy(rollOut(deps, s, state));
    await report(deps, s, caught(state, thrown), OWNER);

    // Assert: kept, the page says why (not that nothing changed), and the next alarm is refused as before
    expect(thrown).toMatchObject({ name: 'OperatorError', message: expect.stringMatching(/^backout: no answer says whether ECS accepted UpdateService of atmr-api to \S+ \(.*\): atmr-api may be rolling back to /) });
    expect(lastMessage()).toMatch(/^atmr-api: backout stopped on an error without knowing whether ECS accepted the rollback to \S+: "npx --no atmr-dr rollback status --service atmr-api --env test" shows what it runs: /);
    expect(lastMessage()).not.toMatch(/nothing was rolled back|before changing the service/);
    expect(lastMessage()).toContain(`Once-per-release claim of ${BAD} kept (RollOut stopped on OperatorError: whether ECS accepted the UpdateService is unknown): no second automatic rollback of this release`);
    expect(await claimOf(tableName)).toMatchObject({ owner: OWNER });
    const next = await guards(deps, s, alarmInput(), 'exec-2');
    expect(next.reason).toContain(`${BAD} was already rolled back automatically once`);
  });

  it('ECS refused UpdateService but DescribeServices failed, so an earlier attempt of RollOut may have started the rollback: kept', async () => {
    // Arrange: a refusal (a 4xx) on an attempt of RollOut, and no answer on what the service runs
    const { tableName, s, deps, state } = await firstRun();
    mocks.ecs.on(UpdateServiceCommand).rejects(ecsError(AccessDeniedException, 400));
    mocks.ecs.on(DescribeServicesCommand).rejects(ecsError(ServerException, 500, 3));

    // Act
    const thrown = await thrownBy(rollOutStep(deps, s, state));
    await report(deps, s, caught(state, thrown), OWNER);

    // Assert
    expect(thrown).toMatchObject({ name: 'OperatorError', message: expect.stringContaining(`its primary deployment runs an unknown task definition (ServerException: ServerException (test)), not ${BAD}`) });
    expect(lastMessage()).not.toMatch(/before changing the service/);
    expect(lastMessage()).toContain(`Once-per-release claim of ${BAD} kept (RollOut stopped on OperatorError: whether ECS accepted the UpdateService is unknown)`);
    expect(await claimOf(tableName)).toMatchObject({ owner: OWNER });
  });

  it('the RollOut Lambda timed out (Step Functions names it States.Timeout): kept', async () => {
    const { tableName, s, deps, state } = await firstRun();

    await report(deps, s, { ...state, error: { Error: 'States.Timeout', Cause: 'Task timed out after 60.00 seconds' } }, OWNER);

    expect(lastMessage()).toContain(`kept (RollOut stopped on States.Timeout: whether ECS accepted the UpdateService is unknown)`);
    expect(await claimOf(tableName)).toMatchObject({ owner: OWNER });
  });

  it('ECS accepted the rollback deployment: kept', async () => {
    const { tableName, s, deps, state } = await firstRun();

    const rolledOut = await rollOut(deps, s, state);
    await report(deps, s, { ...rolledOut, steady: { status: 'failed', detail: 'circuit breaker', at: new Date().toISOString() } }, OWNER);

    expect(lastMessage()).toContain(`Once-per-release claim of ${BAD} kept (ECS accepted the rollback deployment)`);
    expect(await claimOf(tableName)).toMatchObject({ owner: OWNER });
  });

  it.each([
    ['ran and failed (States.TaskFailed)', { Error: 'States.TaskFailed', Cause: JSON.stringify({ TaskArn: 'arn:aws:ecs:eu-west-3:111111111111:task/atmr-prod/f00', Containers: [{ Name: 'api', ExitCode: 1 }] }) }],
    ['may have started (ECS.ServerException)', { Error: 'ECS.ServerException', Cause: 'Service Unavailable (Service: AmazonECS; Status Code: 500)' }],
    ['outlasted the state\'s timeout (States.Timeout)', { Error: 'States.Timeout', Cause: '' }],
  ])('a migration downgrade task %s: kept', async (_why, taskError) => {
    const { tableName, s, deps, state } = await firstRun({ autoDowngradeMigrations: true, alembicHead: 'aaa111' });
    const prepared = await prepareDowngradeStep(deps, s, state);

    const finished = await finishDowngradeStep(deps, s, { ...prepared, downgrade: { ...prepared.downgrade, taskError } });
    await report(deps, s, finished, OWNER);

    expect(lastMessage()).toContain(`Once-per-release claim of ${BAD} kept (a migration downgrade task was started, or may have been)`);
    expect(await claimOf(tableName)).toMatchObject({ owner: OWNER });
  });

  it('says nothing of a claim the run did not make (another run\'s claim refused this one) and leaves it to its owner', async () => {
    // Arrange: another run claimed the release earlier
    const tableName = await suite.dynamo.freshTable();
    await seedLkg(suite.dynamo.doc, lkg({ alembicHead: 'bbb222' }), tableName);
    await claimReleaseRollback(suite.dynamo.doc, tableName, { service: 'atmr-api', taskDefinitionArn: BAD, owner: 'exec-0', now: new Date() });
    const s = settings({ tableName });
    const deps = backoutDeps(suite.dynamo.doc);

    // Act
    const state = await guards(deps, s, alarmInput(), OWNER);
    await report(deps, s, state, OWNER);

    // Assert
    expect(state.claimed).toBeUndefined();
    expect(lastMessage()).not.toMatch(/Once-per-release claim/);
    expect(await claimOf(tableName)).toMatchObject({ owner: 'exec-0' });
    expect(await readLock(suite.dynamo.doc, tableName, 'atmr-api', new Date())).toBeNull();
  });
});

describe('releaseClaim (DynamoDB protocol, dynalite)', () => {
  it('deletes the claim of its owner only', async () => {
    // Arrange
    const tableName = await suite.dynamo.freshTable();
    const claim = { service: 'atmr-api', taskDefinitionArn: BAD, owner: 'exec-a' };
    await claimReleaseRollback(suite.dynamo.doc, tableName, { ...claim, now: new Date() });

    // Act / Assert: another owner's delete is refused, the owner's takes it, once
    expect(await releaseClaim(suite.dynamo.doc, tableName, { ...claim, owner: 'exec-b' })).toBe(false);
    expect(await claimOf(tableName)).toMatchObject({ owner: 'exec-a' });
    expect(await releaseClaim(suite.dynamo.doc, tableName, claim)).toBe(true);
    expect(await claimOf(tableName)).toBeUndefined();
    expect(await releaseClaim(suite.dynamo.doc, tableName, claim)).toBe(false);
  });
});
