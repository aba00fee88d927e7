import { DescribeServicesCommand, DescribeServicesCommandOutput, Deployment } from '@aws-sdk/client-ecs';
import { PublishCommand } from '@aws-sdk/client-sns';
import { GetParameterCommand, PutParameterCommand } from '@aws-sdk/client-ssm';
import { deploymentStatus } from '../../../lambdas/backout/ecs';
import { stepRunner } from '../../../lambdas/backout/handler';
import { RollbackReport, RollbackState } from '../../../lambdas/backout/workflow';
import { alarmEvent, BAD, backoutDeps, backoutSuite, GOOD, seedLkg, service, settings, TD } from './fixtures';

/**
 * The steps after an automatic downgrade that worked, run one by one through the real step runner
 * (dynalite for the table, ECS/SSM/SNS mocked at the SDK): what happens to the maintenance the
 * downgrade set once the rollout is steady.
 */
const suite = backoutSuite();
const { mocks } = suite;
const KS = '/atmr/test/killswitch';
const NOW = new Date('2026-06-01T10:01:00.000Z');
let parameters: Map<string, { value: string; version: number }>;
const killswitch = () => JSON.parse(parameters.get(KS)!.value) as { mode: string; actor: string; reason: string };
/** The .sync output of a downgrade task that exited 0. */
const DOWNGRADED = { TaskArn: 'arn:aws:ecs:eu-west-3:111111111111:task/atmr-prod/abc123', Containers: [{ Name: 'api', ExitCode: 0 }], StartedAt: 1780308000000, StoppedAt: 1780308012000 };

/** Degraded for another hour: what the downgrade's maintenance gives back. */
const DEGRADED = { mode: 'degraded', reason: 'pic de charge', actor: 'alice', updatedAt: '2026-06-01T09:00:00.000Z', expiresAt: '2026-06-01T11:00:00.000Z' };

beforeEach(() => {
  // Normal when the guards read it: they hold an automatic rollback while degraded or maintenance is on.
  parameters = new Map([[KS, { value: JSON.stringify({ ...DEGRADED, mode: 'normal', expiresAt: null }), version: 1 }]]);
  mocks.ssm.on(GetParameterCommand).callsFake((input: { Name: string }) => ({ Parameter: { Value: parameters.get(input.Name)?.value, Version: parameters.get(input.Name)?.version } }));
  mocks.ssm.on(PutParameterCommand).callsFake((input: { Name: string; Value: string }) => {
    const version = (parameters.get(input.Name)?.version ?? 0) + 1;
    parameters.set(input.Name, { value: input.Value, version });
    return { Version: version };
  });
});

/**
 * Guards, preparation, the downgrade's end and the rollout: the state CheckSteady receives. ECS
 * describes the service running BAD to the guards, then `after`, one answer a poll (the last one repeated).
 */
async function rolledOutAfterDowngrade(...after: ReturnType<typeof service>[]): Promise<{ run: (event: unknown) => Promise<unknown>; state: RollbackState }> {
  const answers = [service(BAD), ...after];
  mocks.ecs.on(DescribeServicesCommand).callsFake(() => (answers.length > 1 ? answers.shift() : answers[0]));
  const table = await suite.dynamo.freshTable();
  await seedLkg(suite.dynamo.doc, undefined, table);
  const run = stepRunner(settings({ tableName: table, autoDowngradeMigrations: true }), backoutDeps(suite.dynamo.doc, () => NOW));
  let state = (await run({ action: 'guards', input: { service: 'atmr-api', event: alarmEvent() } })) as RollbackState;
  // Degraded turned on by hand after the guards passed and before the downgrade's preparation read
  // it: the value the preparation keeps and the rollout gives back.
  parameters.set(KS, { value: JSON.stringify(DEGRADED), version: 2 });
  state = (await run({ action: 'prepare-downgrade', state })) as RollbackState;
  state = (await run({ action: 'finish-downgrade', state: { ...state, downgrade: { ...state.downgrade, task: DOWNGRADED } } })) as RollbackState;
  state = (await run({ action: 'roll-out', state })) as RollbackState;
  return { run, state };
}

describe('maintenance set for a downgrade, lifted once the rollout is steady', () => {
  it('is kept through the rollout, then given back as it was before (degraded, its reason and expiry) when the service is steady', async () => {
    // Arrange
    const { run, state } = await rolledOutAfterDowngrade(service(GOOD, { rolloutState: 'IN_PROGRESS', running: 1, others: 1 }), service(GOOD));
    expect(killswitch()).toMatchObject({ mode: 'maintenance', actor: 'atmr-dr backout' });

    // Act: one poll in progress, one steady
    const inProgress = (await run({ action: 'check-steady', state })) as RollbackState;
    const modeWhileInProgress = killswitch().mode;
    const steady = (await run({ action: 'check-steady', state: inProgress })) as RollbackState;

    // Assert
    expect(modeWhileInProgress).toBe('maintenance');
    expect(killswitch()).toMatchObject({ mode: 'degraded', reason: 'pic de charge', actor: 'atmr-dr backout', expiresAt: '2026-06-01T11:00:00.000Z' });
    expect(steady.downgrade.lifted).toEqual({ ok: true, line: `restored to degraded once atmr-api was steady on ${GOOD}` });
  });

  it('is left as it is when someone changed the killswitch during the rollout (their change wins)', async () => {
    // Arrange: bob puts maintenance on himself while the rollout runs
    const { run, state } = await rolledOutAfterDowngrade(service(GOOD));
    const bob = JSON.stringify({ mode: 'maintenance', reason: 'checking the data', actor: 'bob', updatedAt: '2026-06-01T10:00:30.000Z', expiresAt: null });
    parameters.set(KS, { value: bob, version: 7 });

    // Act
    const steady = (await run({ action: 'check-steady', state })) as RollbackState;

    // Assert
    expect(parameters.get(KS)).toEqual({ value: bob, version: 7 });
    expect(steady.downgrade.lifted).toEqual({ ok: true, line: `left as is: changed since by bob (maintenance) once atmr-api was steady on ${GOOD}` });
  });

  it('pages with the command that gives the killswitch back when SSM refuses the restore, the rollback itself being done', async () => {
    // Arrange
    const { run, state } = await rolledOutAfterDowngrade(service(GOOD));
    mocks.ssm.on(PutParameterCommand).rejects(Object.assign(new Error('User is not authorized to perform ssm:PutParameter'), { name: 'AccessDeniedException' }));

    // Act
    const steady = (await run({ action: 'check-steady', state })) as RollbackState;
    const told = (await run({ action: 'report', state: { ...steady, checks: { ok: true, lines: [] } } })) as RollbackReport;

    // Assert
    expect(steady.steady?.status).toBe('steady');
    expect(killswitch().mode).toBe('maintenance');
    expect(told).toMatchObject({ outcome: 'rolled-back', page: true });
    expect(mocks.sns.commandCalls(PublishCommand)[0].args[0].input.Message).toContain(
      `Killswitch: still in maintenance though atmr-api is steady on ${GOOD}: the restore failed (AccessDeniedException: User is not authorized to perform ssm:PutParameter); restore it: npx --no atmr-dr killswitch enable --mode degraded --reason 'pic de charge' --expires 59m --env test`,
    );
  });

  it('stays on when the rollout never gets steady, and the report says so with the release that still serves', async () => {
    // Arrange
    const { run, state } = await rolledOutAfterDowngrade(service(GOOD, { rolloutState: 'FAILED' }));

    // Act
    const failed = (await run({ action: 'check-steady', state })) as RollbackState;
    const told = (await run({ action: 'report', state: failed })) as RollbackReport;

    // Assert
    expect(killswitch().mode).toBe('maintenance');
    expect(told).toMatchObject({ outcome: 'deployment-failed', page: true });
    expect(mocks.sns.commandCalls(PublishCommand)[0].args[0].input.Message).toContain(
      `Killswitch: still in maintenance (set by atmr-dr for the downgrade): atmr-api is not steady on ${GOOD}, and ${BAD} must not serve on the schema at aaa111; once "npx --no atmr-dr rollback status --service atmr-api --env test" shows it runs ${GOOD}, restore it: npx --no atmr-dr killswitch enable --mode degraded --reason 'pic de charge' --expires 59m --env test`,
    );
  });
});

/**
 * The service as DescribeServices shows it once ECS's deployment circuit breaker gave up on the
 * rollback's deployment (ecs-svc/3333, UpdateService's answer in the fixtures): a new PRIMARY of the
 * release ECS completed last, BAD, and ours listed beside it, FAILED (the ECS guide's deployment
 * events; the reasons as ECS words them).
 */
function rolledBackByTheCircuitBreaker(): DescribeServicesCommandOutput {
  return {
    services: [
      {
        serviceName: 'atmr-api',
        status: 'ACTIVE',
        taskDefinition: BAD,
        deployments: [
          { id: 'ecs-svc/4444', status: 'PRIMARY', taskDefinition: BAD, rolloutState: 'IN_PROGRESS', rolloutStateReason: 'ECS deployment circuit breaker: rolling back to deploymentId ecs-svc/2222.', runningCount: 1, desiredCount: 2 },
          { id: 'ecs-svc/3333', status: 'ACTIVE', taskDefinition: GOOD, rolloutState: 'FAILED', rolloutStateReason: 'ECS deployment circuit breaker: tasks failed to start.', runningCount: 0, desiredCount: 2 },
        ],
      },
    ],
  } as DescribeServicesCommandOutput;
}

describe('a rollback whose deployment is no longer primary', () => {
  it("names ECS's circuit breaker and its reasons when it rolled the rollback back, not someone else's deploy", () => {
    const status = deploymentStatus(rolledBackByTheCircuitBreaker().services![0], GOOD, 'ecs-svc/3333');

    expect(status).toEqual({
      status: 'failed',
      detail: `ECS's circuit breaker rolled the rollback back: ECS deployment circuit breaker: tasks failed to start.; ECS deployment circuit breaker: rolling back to deploymentId ecs-svc/2222.; the primary deployment runs ${BAD}, not ${GOOD}`,
    });
  });

  it('still asks whether someone deployed when another release is primary and nothing says the circuit breaker did it', () => {
    const other = TD('atmr-api', 43);
    const deployments: Deployment[] = [
      { id: 'ecs-svc/5555', status: 'PRIMARY', taskDefinition: other, rolloutState: 'IN_PROGRESS', rolloutStateReason: 'ECS deployment ecs-svc/5555 in progress.', runningCount: 1, desiredCount: 2 },
      { id: 'ecs-svc/3333', status: 'ACTIVE', taskDefinition: GOOD, rolloutState: 'IN_PROGRESS', runningCount: 2, desiredCount: 2 },
    ];

    const status = deploymentStatus({ serviceName: 'atmr-api', deployments }, GOOD, 'ecs-svc/3333');

    expect(status).toEqual({ status: 'failed', detail: `the primary deployment runs ${other}, not ${GOOD} (someone deployed meanwhile?)` });
  });

  it('says so in the report after a downgrade, keeping maintenance: the failing release serves again', async () => {
    // Arrange
    const { run, state } = await rolledOutAfterDowngrade(rolledBackByTheCircuitBreaker());

    // Act
    const failed = (await run({ action: 'check-steady', state })) as RollbackState;
    const told = (await run({ action: 'report', state: failed })) as RollbackReport;

    // Assert
    expect(told).toMatchObject({ outcome: 'deployment-failed', page: true });
    const message = mocks.sns.commandCalls(PublishCommand)[0].args[0].input.Message;
    expect(message).toContain("Deployment: failed: ECS's circuit breaker rolled the rollback back: ECS deployment circuit breaker: tasks failed to start.");
    expect(message).not.toContain('someone deployed');
    expect(killswitch().mode).toBe('maintenance');
  });
});
