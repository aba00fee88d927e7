import { GetMetricDataCommand } from '@aws-sdk/client-cloudwatch';
import { DescribeServicesCommand, DescribeTaskDefinitionCommand, DescribeTasksCommand, ListTasksCommand, RegisterTaskDefinitionCommand, RegisterTaskDefinitionCommandInput, UpdateServiceCommand } from '@aws-sdk/client-ecs';
import { PublishCommand } from '@aws-sdk/client-sns';
import { PutParameterCommand } from '@aws-sdk/client-ssm';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { imageRepository, PINNED_BY_TAG, PINNED_FROM_TAG, runningImageDigests } from '../../../lambdas/backout/ecs';
import { recordAfterBake } from '../../../lambdas/backout/lkg';
import { backoutStatus, checkSteady, guards, planRollback, report, RollbackState, rollOut } from '../../../lambdas/backout/workflow';
import { alarmEvent, backoutDeps, backoutSuite, BACKEND_REPOSITORY, BAD, deploymentCompletedEvent, GOOD, lkg, metricData, seedLkg, service, settings, TD } from './fixtures';

const suite = backoutSuite();
const { mocks } = suite;
const PINNED = TD('atmr-api', 90);
const DIGEST = `${BACKEND_REPOSITORY}@sha256:aaaa`;
const SIDECAR = 'public.ecr.aws/aws-observability/aws-otel-collector@sha256:cccc';

/**
 * The last known good as a moving-tag pipeline registers it: the API container names :latest (the
 * runbook retags :latest at each release), a sidecar names its digest; BAD names :latest too. A
 * revision registered from GOOD (PINNED) carries the pinned-from tag, as ECS returns it.
 */
function arrangeTaggedReleases(extra: { registeredTags?: boolean } = {}): void {
  mocks.ecs.on(DescribeTaskDefinitionCommand).callsFake((input: { taskDefinition: string }) => ({
    taskDefinition: {
      taskDefinitionArn: input.taskDefinition,
      family: 'atmr-api',
      revision: Number(input.taskDefinition.split(':').pop()),
      status: 'ACTIVE',
      taskRoleArn: 'arn:aws:iam::111111111111:role/atmr-api-task',
      executionRoleArn: 'arn:aws:iam::111111111111:role/atmr-api-execution',
      networkMode: 'awsvpc',
      requiresCompatibilities: ['FARGATE'],
      compatibilities: ['EC2', 'FARGATE'],
      cpu: '512',
      memory: '1024',
      registeredAt: new Date('2026-05-31T08:00:00Z'),
      registeredBy: 'arn:aws:iam::111111111111:role/deployer',
      requiresAttributes: [{ name: 'com.amazonaws.ecs.capability.logging-driver.awslogs' }],
      containerDefinitions: [
        {
          name: 'api',
          image: input.taskDefinition === PINNED ? DIGEST : `${BACKEND_REPOSITORY}:latest`,
          environment: [{ name: 'ALEMBIC_HEAD', value: input.taskDefinition === BAD ? 'bbb222' : 'aaa111' }],
          logConfiguration: { logDriver: 'awslogs', options: { 'awslogs-group': '/ecs/atmr-api', 'awslogs-stream-prefix': 'ecs' } },
        },
        { name: 'otel', image: SIDECAR, essential: false },
      ],
    },
    tags: [
      { key: 'team', value: 'backend' },
      { key: 'aws:cloudformation:stack-name', value: 'AtmrApp' },
      ...(input.taskDefinition === PINNED && extra.registeredTags !== false ? [{ key: PINNED_FROM_TAG, value: GOOD }] : []),
    ],
  }));
}

const alarmInput = () => ({ service: 'atmr-api', event: alarmEvent() });
const messageOf = () => mocks.sns.commandCalls(PublishCommand).at(-1)?.args[0].input.Message ?? '';

beforeEach(() => {
  mocks.cloudwatch.on(GetMetricDataCommand).resolves(metricData());
});

async function rolledOut(record = lkg()): Promise<{ state: RollbackState; tableName: string }> {
  const tableName = await suite.dynamo.freshTable();
  await seedLkg(suite.dynamo.doc, record, tableName);
  const deps = backoutDeps(suite.dynamo.doc);
  const guarded = await guards(deps, settings({ tableName }), alarmInput());
  expect(guarded.decision).toBe('proceed');
  return { state: await rollOut(deps, settings({ tableName }), guarded), tableName };
}

describe('a rollback target that names its images by tag', () => {
  it('registers a copy of the last known good with the digests its tasks ran, and rolls the service to that copy', async () => {
    arrangeTaggedReleases();
    const { state, tableName } = await rolledOut();

    const registered = mocks.ecs.commandCalls(RegisterTaskDefinitionCommand);
    expect(registered).toHaveLength(1);
    const input = registered[0].args[0].input;
    // The digest the last known good ran, not :latest (which now names the bad image).
    expect(input.containerDefinitions?.map((c) => c.image)).toEqual([DIGEST, SIDECAR]);
    // The registrable fields are copied; what DescribeTaskDefinition adds (revision, status...) is not.
    expect(input).toMatchObject({ family: 'atmr-api', taskRoleArn: 'arn:aws:iam::111111111111:role/atmr-api-task', executionRoleArn: 'arn:aws:iam::111111111111:role/atmr-api-execution', cpu: '512', memory: '1024', networkMode: 'awsvpc' });
    expect(input.containerDefinitions?.[0].environment).toEqual([{ name: 'ALEMBIC_HEAD', value: 'aaa111' }]);
    expect(input).not.toHaveProperty('revision');
    expect(input).not.toHaveProperty('status');
    expect(input).not.toHaveProperty('registeredAt');
    expect(input.tags).toEqual([
      { key: 'team', value: 'backend' },
      { key: PINNED_FROM_TAG, value: GOOD },
      { key: PINNED_BY_TAG, value: state.owner },
    ]);

    expect(mocks.ecs.commandCalls(UpdateServiceCommand)[0].args[0].input.taskDefinition).toBe(PINNED);
    expect(state.to?.taskDefinitionArn).toBe(PINNED);
    expect(JSON.parse(mocks.ssm.commandCalls(PutParameterCommand)[0].args[0].input.Value as string).pinnedTaskDefinition).toBe(PINNED);

    // The steady wait follows the pinned revision (a primary running it is the rollback, not "someone deployed meanwhile").
    mocks.ecs.on(DescribeServicesCommand).resolves(service(PINNED));
    const steady = await checkSteady(backoutDeps(suite.dynamo.doc), settings({ tableName }), state);
    expect(steady.steady?.status).toBe('steady');

    await report(backoutDeps(suite.dynamo.doc), settings({ tableName }), steady);
    expect(messageOf()).toContain('Pinned atmr-api:90 to the digests the last known good ran (atmr-api:41 names its images by tag)');
  });

  /**
   * ECS's answer to DescribeTaskDefinition of the family (its latest ACTIVE revision): the copy once
   * one was registered, with the tags it was registered with, else BAD.
   */
  function arrangeFamilyNewest(): void {
    let copy: { input: RegisterTaskDefinitionCommandInput; arn: string } | undefined;
    let revision = 89;
    mocks.ecs.on(RegisterTaskDefinitionCommand).callsFake((input: RegisterTaskDefinitionCommandInput) => {
      copy = { input, arn: TD('atmr-api', ++revision) };
      return { taskDefinition: { ...input, taskDefinitionArn: copy.arn } };
    });
    mocks.ecs.on(DescribeTaskDefinitionCommand, { taskDefinition: 'atmr-api' }).callsFake(() =>
      copy
        ? { taskDefinition: { ...copy.input, taskDefinitionArn: copy.arn }, tags: copy.input.tags }
        : { taskDefinition: { taskDefinitionArn: BAD, family: 'atmr-api', containerDefinitions: [{ name: 'api', image: `${BACKEND_REPOSITORY}:latest` }] }, tags: [] },
    );
  }

  /** The alarm's guarded state for a tag-named GOOD, ECS answering as arrangeFamilyNewest says. */
  async function guardedWithFamilyNewest(): Promise<{ deps: ReturnType<typeof backoutDeps>; guarded: RollbackState; tableName: string }> {
    arrangeTaggedReleases();
    arrangeFamilyNewest();
    const tableName = await suite.dynamo.freshTable();
    await seedLkg(suite.dynamo.doc, lkg(), tableName);
    const deps = backoutDeps(suite.dynamo.doc);
    const guarded = await guards(deps, settings({ tableName }), alarmInput());
    return { deps, guarded, tableName };
  }

  it('a retried RollOut (the same state again: a Lambda timeout, an answer lost) reuses the copy its first attempt registered', async () => {
    // Arrange
    const { deps, guarded, tableName } = await guardedWithFamilyNewest();

    // Act
    const first = await rollOut(deps, settings({ tableName }), guarded);
    const retried = await rollOut(deps, settings({ tableName }), guarded);

    // Assert: one copy, and both UpdateService calls name it (no second deployment to another copy).
    expect(mocks.ecs.commandCalls(RegisterTaskDefinitionCommand)).toHaveLength(1);
    expect(mocks.ecs.commandCalls(UpdateServiceCommand).map((c) => c.args[0].input.taskDefinition)).toEqual([PINNED, PINNED]);
    expect(retried.to).toEqual(first.to);
    expect(retried.to?.images).toEqual([DIGEST, SIDECAR]);
    expect(retried.rollout?.images).toEqual(first.rollout?.images);
  });

  it('another rollback registers its own copy: the family\'s newest revision, pinned by an earlier rollback, is not taken for its own', async () => {
    // Arrange
    const { deps, guarded, tableName } = await guardedWithFamilyNewest();
    await rollOut(deps, settings({ tableName }), guarded);

    // Act
    const later = await rollOut(deps, settings({ tableName }), { ...guarded, owner: 'another-rollback' });

    // Assert
    const registered = mocks.ecs.commandCalls(RegisterTaskDefinitionCommand);
    expect(registered).toHaveLength(2);
    expect(registered[1].args[0].input.tags).toContainEqual({ key: PINNED_BY_TAG, value: 'another-rollback' });
    expect(later.to?.taskDefinitionArn).toBe(TD('atmr-api', 91));
  });

  it('pins a rollback by hand to the last known good too (the CLI names its target: the digests are still the record\'s)', async () => {
    arrangeTaggedReleases();
    const tableName = await suite.dynamo.freshTable();
    await seedLkg(suite.dynamo.doc, lkg(), tableName);
    const deps = backoutDeps(suite.dynamo.doc);
    const guarded = await guards(deps, settings({ tableName }), { service: 'atmr-api', manual: { actor: 'alice', targetTaskDefinition: GOOD } });
    expect(guarded.decision).toBe('proceed');
    await rollOut(deps, settings({ tableName }), guarded);
    expect(mocks.ecs.commandCalls(RegisterTaskDefinitionCommand)[0].args[0].input.containerDefinitions?.map((c) => c.image)).toEqual([DIGEST, SIDECAR]);
    expect(mocks.ecs.commandCalls(UpdateServiceCommand)[0].args[0].input.taskDefinition).toBe(PINNED);
  });

  it('pins a rollback by hand to an earlier last known good (the page\'s "before it") to that record\'s digests, not the newest one\'s', async () => {
    arrangeTaggedReleases();
    const OLDER = TD('atmr-api', 40);
    const OLDER_DIGEST = `${BACKEND_REPOSITORY}@sha256:0000`;
    const tableName = await suite.dynamo.freshTable();
    await seedLkg(suite.dynamo.doc, lkg({ taskDefinitionArn: OLDER, images: [OLDER_DIGEST, SIDECAR], recordedAt: '2026-05-30T09:10:00.000Z' }), tableName);
    await seedLkg(suite.dynamo.doc, lkg(), tableName);
    mocks.ecs.on(DescribeServicesCommand).resolves(service(GOOD));
    const deps = backoutDeps(suite.dynamo.doc);
    // The newest last known good runs: the page names the one before it.
    expect((await guards(deps, settings({ tableName }), alarmInput())).reason).toContain(`--to ${OLDER}`);
    const guarded = await guards(deps, settings({ tableName }), { service: 'atmr-api', manual: { actor: 'alice', targetTaskDefinition: OLDER } });
    expect(guarded.decision).toBe('proceed');
    const state = await rollOut(deps, settings({ tableName }), guarded);
    const registered = mocks.ecs.commandCalls(RegisterTaskDefinitionCommand);
    expect(registered).toHaveLength(1);
    expect(registered[0].args[0].input.containerDefinitions?.map((c) => c.image)).toEqual([OLDER_DIGEST, SIDECAR]);
    expect(registered[0].args[0].input.tags).toContainEqual({ key: PINNED_FROM_TAG, value: OLDER });
    expect(mocks.ecs.commandCalls(UpdateServiceCommand)[0].args[0].input.taskDefinition).toBe(PINNED);
    expect(state.rollout?.images?.line).toContain('Pinned atmr-api:90 to the digests the last known good ran (atmr-api:40 names its images by tag)');
  });

  it('does not register anything for a last known good that names its images by digest', async () => {
    // The fixtures' GOOD names the digest lkg() records.
    const { state, tableName } = await rolledOut();
    expect(mocks.ecs.commandCalls(RegisterTaskDefinitionCommand)).toHaveLength(0);
    expect(mocks.ecs.commandCalls(UpdateServiceCommand)[0].args[0].input.taskDefinition).toBe(GOOD);
    expect(state.rollout?.images).toBeUndefined();
    await report(backoutDeps(suite.dynamo.doc), settings({ tableName }), state);
    expect(messageOf()).not.toMatch(/to the digests|by tag/);
  });

  it('rolls back as recorded, with a warning line, when no digest was recorded (tasks that reported none)', async () => {
    arrangeTaggedReleases();
    const { state, tableName } = await rolledOut(lkg({ images: [`${BACKEND_REPOSITORY}:latest`, SIDECAR] }));
    expect(mocks.ecs.commandCalls(RegisterTaskDefinitionCommand)).toHaveLength(0);
    expect(mocks.ecs.commandCalls(UpdateServiceCommand)[0].args[0].input.taskDefinition).toBe(GOOD);
    await report(backoutDeps(suite.dynamo.doc), settings({ tableName }), state);
    expect(messageOf()).toContain(
      `Warning: ${GOOD} names ${BACKEND_REPOSITORY}:latest by tag and no digest of them is recorded: ECS pulls what the tags name now, which may not be the image that ran`,
    );
  });

  it('leaves by tag a container whose repository has two recorded digests (which one it ran is unknown), and says so', async () => {
    arrangeTaggedReleases();
    const { state } = await rolledOut(lkg({ images: [DIGEST, `${BACKEND_REPOSITORY}@sha256:bbbb`] }));
    expect(mocks.ecs.commandCalls(RegisterTaskDefinitionCommand)).toHaveLength(0);
    expect(state.rollout?.images?.line).toContain(`names ${BACKEND_REPOSITORY}:latest by tag and no digest of them is recorded`);
  });

  it('still rolls back, to the recorded revision, when ECS refuses the registration, and says the image may differ', async () => {
    arrangeTaggedReleases();
    mocks.ecs.on(RegisterTaskDefinitionCommand).rejects(Object.assign(new Error('not authorized to perform: iam:PassRole'), { name: 'AccessDeniedException' }));
    const { state } = await rolledOut();
    expect(mocks.ecs.commandCalls(UpdateServiceCommand)[0].args[0].input.taskDefinition).toBe(GOOD);
    expect(state.rollout?.images?.line).toMatch(new RegExp(`^Warning: could not pin ${GOOD} to the recorded digests \\(AccessDeniedException: not authorized.*\\): rolled back to it as it is`));
  });
});

describe('a pinned copy is the last known good for the guards (no loop)', () => {
  it('an alarm while the pinned copy runs, after the cooldown, is "a rollback cannot help", not a new copy every cooldown', async () => {
    arrangeTaggedReleases();
    const tableName = await suite.dynamo.freshTable();
    await seedLkg(suite.dynamo.doc, lkg(), tableName);
    mocks.ecs.on(DescribeServicesCommand).resolves(service(PINNED));
    const state = await guards(backoutDeps(suite.dynamo.doc), settings({ tableName }), alarmInput());
    expect(state.decision).toBe('notify');
    expect(state.page).toBe(true);
    expect(state.reason).toBe(`atmr-api already runs ${PINNED} (a copy of ${GOOD} pinned to its digests), the rollback target: a rollback cannot help, investigate by hand`);
    expect(state.lockHeld).toBe(false);
    expect(mocks.ecs.commandCalls(UpdateServiceCommand)).toHaveLength(0);
    expect(mocks.ecs.commandCalls(RegisterTaskDefinitionCommand)).toHaveLength(0);
  });

  it('the manual plan refuses it too (nothing to roll back)', async () => {
    arrangeTaggedReleases();
    const tableName = await suite.dynamo.freshTable();
    await seedLkg(suite.dynamo.doc, lkg(), tableName);
    mocks.ecs.on(DescribeServicesCommand).resolves(service(PINNED));
    await expect(planRollback(backoutDeps(suite.dynamo.doc), settings({ tableName }), 'atmr-api')).rejects.toThrow(
      `backout: atmr-api already runs ${PINNED} (a copy of ${GOOD} pinned to its digests): nothing to roll back`,
    );
  });

  it('a revision without the pinned-from tag is another release: it is rolled back as usual', async () => {
    arrangeTaggedReleases({ registeredTags: false });
    const tableName = await suite.dynamo.freshTable();
    await seedLkg(suite.dynamo.doc, lkg(), tableName);
    mocks.ecs.on(DescribeServicesCommand).resolves(service(PINNED));
    expect((await guards(backoutDeps(suite.dynamo.doc), settings({ tableName }), alarmInput())).decision).toBe('proceed');
  });
});

describe('image repositories', () => {
  it('strips the tag and digest, not a registry port', () => {
    expect(imageRepository('registry.internal:5000/atmr/backend:prod')).toBe('registry.internal:5000/atmr/backend');
    expect(imageRepository('registry.internal:5000/atmr/backend@sha256:abcd')).toBe('registry.internal:5000/atmr/backend');
    expect(imageRepository(`${BACKEND_REPOSITORY}:latest`)).toBe(BACKEND_REPOSITORY);
    expect(imageRepository('nginx')).toBe('nginx');
  });

  it('records the digests of a registry with a port under their repository', async () => {
    mocks.ecs.on(ListTasksCommand).resolves({ taskArns: ['t1'] });
    mocks.ecs.on(DescribeTasksCommand).resolves({ tasks: [{ taskDefinitionArn: GOOD, containers: [{ image: 'registry.internal:5000/atmr/backend:prod', imageDigest: 'sha256:abcd' }] }] });
    expect(await runningImageDigests(backoutDeps(suite.dynamo.doc).ecs, settings(), 'atmr-api', GOOD)).toEqual(['registry.internal:5000/atmr/backend@sha256:abcd']);
  });
});

describe('the last known good\'s own revision deployed again after its tag moved (force-new-deployment of :latest)', () => {
  const MOVED = `${BACKEND_REPOSITORY}@sha256:bbbb`;
  const RECORDED = [DIGEST, SIDECAR];
  /** The running tasks of `taskDefinition` and the digests they pulled (`api`: the API container's, none when ECS reported none). */
  function arrangeRunning(taskDefinition: string, api: string | undefined): void {
    mocks.ecs.on(DescribeServicesCommand).resolves(service(taskDefinition));
    mocks.ecs.on(ListTasksCommand).resolves({ taskArns: ['t1', 't2'] });
    const containers = [
      { name: 'api', image: `${BACKEND_REPOSITORY}:latest`, ...(api && { imageDigest: api }) },
      { name: 'otel', image: SIDECAR, imageDigest: 'sha256:cccc' },
    ];
    mocks.ecs.on(DescribeTasksCommand).resolves({ tasks: ['t1', 't2'].map((taskArn) => ({ taskArn, taskDefinitionArn: taskDefinition, containers })) });
  }
  /** GOOD's tasks running the API image `api` (arrangeRunning), its record holding `images`: the table. */
  async function goodRunning(api: string | undefined, images: string[]): Promise<string> {
    arrangeTaggedReleases();
    arrangeRunning(GOOD, api);
    const tableName = await suite.dynamo.freshTable();
    await seedLkg(suite.dynamo.doc, lkg({ images }), tableName);
    return tableName;
  }
  const CANNOT_HELP = `atmr-api already runs ${GOOD}, the rollback target: a rollback cannot help, investigate by hand`;
  const SAID = `the running tasks of ${GOOD} run ${MOVED} while its last known good ran ${DIGEST}: rolled back to a copy pinned to the last known good's digests`;

  it('rolls back to a copy pinned to the recorded digests, claims and pins the running revision, says why; an alarm on the copy then pages (no loop)', async () => {
    const tableName = await goodRunning('sha256:bbbb', RECORDED);
    const deps = backoutDeps(suite.dynamo.doc);
    const guarded = await guards(deps, settings({ tableName }), alarmInput());
    expect(guarded).toMatchObject({ decision: 'proceed', from: { taskDefinitionArn: GOOD } });
    const state = await rollOut(deps, settings({ tableName }), guarded);
    expect(mocks.ecs.commandCalls(RegisterTaskDefinitionCommand)[0].args[0].input.containerDefinitions?.map((c) => c.image)).toEqual([DIGEST, SIDECAR]);
    expect(mocks.ecs.commandCalls(UpdateServiceCommand)[0].args[0].input.taskDefinition).toBe(PINNED);
    expect(JSON.parse(mocks.ssm.commandCalls(PutParameterCommand)[0].args[0].input.Value as string)).toMatchObject({ pinnedTaskDefinition: PINNED, rolledBackFrom: GOOD });
    await report(deps, settings({ tableName }), state);
    expect(messageOf()).toContain(`${SAID}; Pinned atmr-api:90 to the digests the last known good ran`);

    // The pinned copy runs the recorded digests: the next alarm (after the cooldown) pages, it does not pin again.
    arrangeRunning(PINNED, 'sha256:aaaa');
    const later = await guards(backoutDeps(suite.dynamo.doc, () => new Date('2026-06-01T11:00:00.000Z')), settings({ tableName }), alarmInput());
    expect(later).toMatchObject({ decision: 'notify', page: true, reason: `atmr-api already runs ${PINNED} (a copy of ${GOOD} pinned to its digests), the rollback target: a rollback cannot help, investigate by hand` });
    expect(mocks.ecs.commandCalls(RegisterTaskDefinitionCommand)).toHaveLength(1);
  });

  it('names the bad digest the service ran, not the last known good\'s revision, as the release not to bring back: pin, page and rollback status', async () => {
    // Arrange: GOOD's revision redeployed after :latest moved to a bad build
    const tableName = await goodRunning('sha256:bbbb', RECORDED);
    const deps = backoutDeps(suite.dynamo.doc);
    const guarded = await guards(deps, settings({ tableName }), alarmInput());

    // Act
    const state = await rollOut(deps, settings({ tableName }), guarded);
    await report(deps, settings({ tableName }), state);

    // Assert
    const pin = JSON.parse(mocks.ssm.commandCalls(PutParameterCommand)[0].args[0].input.Value as string) as { badImages: string[]; pinnedImages: string[] };
    expect(pin).toMatchObject({ pinnedTaskDefinition: PINNED, pinnedImages: [DIGEST, SIDECAR], rolledBackFrom: GOOD, badImages: [MOVED] });
    expect(messageOf()).toContain(`Pinned in /atmr-dr/test/backout/pinned/atmr-api: the next deploy must not bring ${MOVED} (run under ${GOOD}) back`);
    const status = await backoutStatus(deps, settings({ tableName }), 'atmr-api');
    expect(status.rollbacks[0].summary).toContain(`roll atmr-api back from ${GOOD} (running ${MOVED}) to ${GOOD}`);
  });

  /** A document client on the suite's table that counts the Query calls sent (the last-known-good reads). */
  function countingQueries(): { doc: DynamoDBDocumentClient; queries: () => number } {
    const client = new DynamoDBClient({ endpoint: suite.dynamo.endpoint, region: 'eu-west-3', credentials: { accessKeyId: 'local', secretAccessKey: 'local' } });
    let queries = 0;
    client.middlewareStack.add(
      (next, context) => (args) => {
        if (context.commandName === 'QueryCommand') queries += 1;
        return next(args);
      },
      { step: 'initialize', name: 'countQueries' },
    );
    return { doc: DynamoDBDocumentClient.from(client, { marshallOptions: { removeUndefinedValues: true } }), queries: () => queries };
  }

  it.each([
    ['the guards', (deps: ReturnType<typeof backoutDeps>, tableName: string) => guards(deps, settings({ tableName }), alarmInput())],
    ['the manual plan', (deps: ReturnType<typeof backoutDeps>, tableName: string) => planRollback(deps, settings({ tableName }), 'atmr-api')],
  ])('%s read the newest last known good once, and decide the target and the moved tag on that one record', async (_who, decide) => {
    // Arrange
    const tableName = await goodRunning('sha256:bbbb', RECORDED);
    const counting = countingQueries();

    // Act
    const decided = await decide(backoutDeps(counting.doc), tableName);

    // Assert
    expect(decided).toMatchObject({ retagged: expect.stringContaining(`the running tasks of ${GOOD} run ${MOVED}`) });
    expect(counting.queries()).toBe(1);
  });

  it('pages as before when the running tasks pulled the recorded digests (the last known good itself runs)', async () => {
    const tableName = await goodRunning('sha256:aaaa', RECORDED);
    const state = await guards(backoutDeps(suite.dynamo.doc), settings({ tableName }), alarmInput());
    expect(state).toMatchObject({ decision: 'notify', page: true, reason: CANNOT_HELP });
    expect(state.retagged).toBeUndefined();
    await expect(planRollback(backoutDeps(suite.dynamo.doc), settings({ tableName }), 'atmr-api')).rejects.toThrow(`backout: atmr-api already runs ${GOOD}: nothing to roll back`);
  });

  it.each([
    ['no digest was recorded', [`${BACKEND_REPOSITORY}:latest`], 'sha256:bbbb'],
    ['the running tasks reported none', RECORDED, undefined],
  ])('pages as before when the digests are unknown: %s', async (_why, images, running) => {
    const tableName = await goodRunning(running, images);
    expect(await guards(backoutDeps(suite.dynamo.doc), settings({ tableName }), alarmInput())).toMatchObject({ decision: 'notify', page: true, reason: CANNOT_HELP });
    expect(mocks.ecs.commandCalls(UpdateServiceCommand)).toHaveLength(0);
  });

  it.each([
    ['ECS refuses the registration', RECORDED, 'AccessDeniedException: not authorized to perform: iam:PassRole'],
    ['the record holds two digests of the repository', [DIGEST, `${BACKEND_REPOSITORY}@sha256:dddd`, SIDECAR], `no single recorded digest for ${BACKEND_REPOSITORY}:latest`],
  ])('rolls nothing out when the pinned copy cannot be made (%s): the same revision would be a no-op reported as a rollback', async (_why, images, why) => {
    const tableName = await goodRunning('sha256:bbbb', images);
    mocks.ecs.on(RegisterTaskDefinitionCommand).rejects(Object.assign(new Error('not authorized to perform: iam:PassRole'), { name: 'AccessDeniedException' }));
    const deps = backoutDeps(suite.dynamo.doc);
    const guarded = await guards(deps, settings({ tableName }), alarmInput());
    expect(guarded).toMatchObject({ decision: 'proceed', retagged: expect.any(String) });
    const said = `the tag moved (the running tasks of ${GOOD} pulled other digests than its last known good), the pinned copy could not be registered (${why}): nothing rolled back; by hand: register a revision of atmr-api naming the digests of the To line and run "npx --no atmr-dr rollback service --service atmr-api --to <that revision> --env test"`;
    const error = await rollOut(deps, settings({ tableName }), guarded).then(() => null, (e: Error) => e);
    expect(error?.message).toBe(said);
    expect(mocks.ecs.commandCalls(UpdateServiceCommand)).toHaveLength(0);
    expect(mocks.ssm.commandCalls(PutParameterCommand)).toHaveLength(0);
    // The workflow's Catch hands the error to the report: a page that nothing was rolled back.
    const told = await report(deps, settings({ tableName }), { ...guarded, error: { Error: error?.name, Cause: error?.message } });
    expect(told).toMatchObject({ outcome: 'error', page: true });
    expect(messageOf()).toContain('backout stopped on an error before changing the service');
    expect(messageOf()).toContain(`Error: RollbackNotStarted: ${said}`);
    // Nothing was sent to ECS: the release keeps its one automatic rollback.
    expect(messageOf()).toContain(`Once-per-release claim of ${GOOD} released`);
  });

  it('rollback service plans the same rollback, saying why, and the manual run pins it', async () => {
    const tableName = await goodRunning('sha256:bbbb', RECORDED);
    const deps = backoutDeps(suite.dynamo.doc);
    const plan = await planRollback(deps, settings({ tableName }), 'atmr-api');
    expect(plan).toMatchObject({ current: { taskDefinitionArn: GOOD }, target: { taskDefinitionArn: GOOD }, retagged: `the running tasks of ${GOOD} run ${MOVED} while its last known good ran ${DIGEST}` });
    // The CLI names its target (the plan's) to the guards.
    const guarded = await guards(deps, settings({ tableName }), { service: 'atmr-api', manual: { actor: 'alice', targetTaskDefinition: plan.target.taskDefinitionArn } });
    expect(guarded.decision).toBe('proceed');
    const state = await rollOut(deps, settings({ tableName }), guarded);
    expect(mocks.ecs.commandCalls(UpdateServiceCommand)[0].args[0].input.taskDefinition).toBe(PINNED);
    expect(state.rollout?.images?.line).toMatch(new RegExp(`^${SAID.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}; Pinned atmr-api:90`));
  });
});

describe('"the last known good before it" is another release than a pinned copy\'s own', () => {
  const OLDER = TD('atmr-api', 40);
  /** The history: OLDER, then GOOD, then `newer` records (newest last). */
  async function history(...newer: Parameters<typeof lkg>[0][]): Promise<string> {
    const tableName = await suite.dynamo.freshTable();
    await seedLkg(suite.dynamo.doc, lkg({ taskDefinitionArn: OLDER, recordedAt: '2026-05-29T09:10:00.000Z' }), tableName);
    await seedLkg(suite.dynamo.doc, lkg({ recordedAt: '2026-05-30T09:10:00.000Z' }), tableName);
    for (const record of newer) await seedLkg(suite.dynamo.doc, lkg(record), tableName);
    return tableName;
  }
  const wentBad = (current: string) =>
    `atmr-api already runs ${current}, its newest last known good, so no automatic rollback; if it went bad after its bake, the last known good before it is ${OLDER} (recorded 2026-05-29T09:10:00.000Z)`;

  it('the pinned copy recorded by its bake runs: the page and the plan name the release before its original, not the original', async () => {
    arrangeTaggedReleases();
    // Recorded before the bake kept pinnedFrom: the copy's pinned-from tag says which record is its original.
    const tableName = await history({ taskDefinitionArn: PINNED, recordedAt: '2026-05-31T09:10:00.000Z' });
    mocks.ecs.on(DescribeServicesCommand).resolves(service(PINNED));
    const state = await guards(backoutDeps(suite.dynamo.doc), settings({ tableName }), alarmInput());
    expect(state).toMatchObject({ decision: 'notify', page: true, reason: `${wentBad(PINNED)}: decide by hand: npx --no atmr-dr rollback service --service atmr-api --to ${OLDER} --env test` });
    await expect(planRollback(backoutDeps(suite.dynamo.doc), settings({ tableName }), 'atmr-api')).rejects.toThrow(`backout: ${wentBad(PINNED)}: pass --to ${OLDER}`);
  });

  it('the bake records the copy\'s original, and rollback status skips it', async () => {
    arrangeTaggedReleases();
    const tableName = await history();
    mocks.ecs.on(DescribeServicesCommand).resolves(service(PINNED, { id: 'ecs-svc/1111' }));
    const deps = backoutDeps(suite.dynamo.doc, undefined, () => Promise.resolve(new Response(null, { status: 200 })));
    const outcome = await recordAfterBake(deps, settings({ tableName }), deploymentCompletedEvent());
    expect(outcome).toMatchObject({ recorded: true, record: { taskDefinitionArn: PINNED, pinnedFrom: GOOD } });
    const status = await backoutStatus(deps, settings({ tableName }), 'atmr-api');
    expect(status.lastKnownGoodBefore?.taskDefinitionArn).toBe(OLDER);
  });

  it('names the release before it past ten records of the one that runs, and a rollback to it pins to that same record', async () => {
    // Arrange: after OLDER and GOOD, eleven more records of the release that runs (GOOD baked again
    // after each rollback to its pinned copy, and the copy after it): "before it" lies 12 records back.
    arrangeTaggedReleases();
    const OLDER_DIGEST = `${BACKEND_REPOSITORY}@sha256:0000`;
    const tableName = await suite.dynamo.freshTable();
    await seedLkg(suite.dynamo.doc, lkg({ taskDefinitionArn: OLDER, images: [OLDER_DIGEST, SIDECAR], recordedAt: '2026-05-01T09:10:00.000Z' }), tableName);
    for (let day = 2; day <= 13; day++) {
      const recordedAt = `2026-05-${String(day).padStart(2, '0')}T09:10:00.000Z`;
      await seedLkg(suite.dynamo.doc, lkg(day % 2 ? { recordedAt } : { taskDefinitionArn: PINNED, pinnedFrom: GOOD, recordedAt }), tableName);
    }
    mocks.ecs.on(DescribeServicesCommand).resolves(service(GOOD));
    const deps = backoutDeps(suite.dynamo.doc);

    // Act: the alarm's page, then the rollback by hand it advises.
    const paged = await guards(deps, settings({ tableName }), alarmInput());
    const guarded = await guards(deps, settings({ tableName }), { service: 'atmr-api', manual: { actor: 'alice', targetTaskDefinition: OLDER } });
    await rollOut(deps, settings({ tableName }), guarded);

    // Assert: the page names OLDER, and the rollout pins to OLDER's record (both lookups see it).
    expect(paged.reason).toBe(
      `atmr-api already runs ${GOOD}, its newest last known good, so no automatic rollback; if it went bad after its bake, the last known good before it is ${OLDER} (recorded 2026-05-01T09:10:00.000Z): decide by hand: npx --no atmr-dr rollback service --service atmr-api --to ${OLDER} --env test`,
    );
    expect(mocks.ecs.commandCalls(RegisterTaskDefinitionCommand)[0].args[0].input.containerDefinitions?.map((c) => c.image)).toEqual([OLDER_DIGEST, SIDECAR]);
  });

  it('a copy of the revision that runs is not offered either (the original baked again after its copy)', async () => {
    arrangeTaggedReleases();
    const tableName = await history({ taskDefinitionArn: PINNED, pinnedFrom: GOOD, recordedAt: '2026-05-31T09:10:00.000Z' }, { recordedAt: '2026-05-31T12:00:00.000Z' });
    mocks.ecs.on(DescribeServicesCommand).resolves(service(GOOD));
    const state = await guards(backoutDeps(suite.dynamo.doc), settings({ tableName }), alarmInput());
    expect(state.reason).toBe(`${wentBad(GOOD)}: decide by hand: npx --no atmr-dr rollback service --service atmr-api --to ${OLDER} --env test`);
  });
});
