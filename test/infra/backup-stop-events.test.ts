import { Template } from 'aws-cdk-lib/assertions';
import { Backups, backupsPropsFromConfig } from '../../lib/constructs/backups';
import { REPORTED_FAILURE_EXIT_CODE } from '../../lambdas/backup/runner-contract';
import { TaskPlace, taskEvents } from '../fixtures/ecs-task-state-change';
import { constructHarness, exampleEnvironment } from '../support/app';
import { matchesEventPattern } from '../support/event-pattern';

type Json = Record<string, unknown>;

/**
 * A template value with its CloudFormation references replaced by what they are once deployed:
 * `Ref` and `Fn::GetAtt` from `deployed` ("AWS::Partition", "<LogicalId>.Arn"), `Fn::Join` joined.
 */
function deployedValue(value: unknown, deployed: Record<string, string>): unknown {
  if (Array.isArray(value)) return value.map((v) => deployedValue(v, deployed));
  if (typeof value !== 'object' || value === null) return value;
  const v = value as Json;
  const lookup = (key: string) => {
    if (deployed[key] === undefined) throw new Error(`no deployed value given for ${key}`);
    return deployed[key];
  };
  if (v.Ref !== undefined) return lookup(String(v.Ref));
  if (v['Fn::GetAtt']) return lookup((v['Fn::GetAtt'] as string[]).join('.'));
  if (v['Fn::Join']) {
    const [separator, parts] = v['Fn::Join'] as [string, unknown[]];
    return parts.map((p) => deployedValue(p, deployed)).join(separator);
  }
  return Object.fromEntries(Object.entries(v).map(([k, inner]) => [k, deployedValue(inner, deployed)]));
}

describe('the backup runner\'s stopped-run rule, against the ECS task state change events of the AWS documentation', () => {
  const raw = structuredClone(exampleEnvironment()) as Json & { backups: Json };
  raw.backups.runner = 'fargate';
  const { config, stack, workload } = constructHarness(raw, 'BackupsOnly');
  new Backups(stack, 'Backups', backupsPropsFromConfig(config, workload));
  const template = Template.fromStack(stack);

  const [clusterId] = Object.keys(template.findResources('AWS::ECS::Cluster'));
  const [taskDefinition] = Object.values(template.findResources('AWS::ECS::TaskDefinition')) as { Properties: { Family: string; ContainerDefinitions: { Name: string }[] } }[];
  const { Family: family, ContainerDefinitions: [container] } = taskDefinition.Properties;
  // The cluster's physical name is CloudFormation's (stack, logical id, suffix); the revision a deploy's.
  const runner: TaskPlace = {
    region: config.region,
    account: config.account,
    clusterArn: `arn:aws:ecs:${config.region}:${config.account}:cluster/BackupsOnly-${clusterId}-x2EhFFoU0LqM`,
    taskDefinitionArn: `arn:aws:ecs:${config.region}:${config.account}:task-definition/${family}:12`,
    containerName: container.Name,
  };
  const [[, rule]] = Object.entries(template.findResources('AWS::Events::Rule')).filter(([id]) => id.startsWith('BackupsStoppedRuns')) as [string, { Properties: { EventPattern: Json; Targets: Json[] } }][];
  const pattern = deployedValue(rule.Properties.EventPattern, { 'AWS::Partition': 'aws', [`${clusterId}.Arn`]: runner.clusterArn });
  const matches = (event: unknown) => matchesEventPattern(pattern, event);
  const events = taskEvents(runner);

  it('takes its events from the task as ECS describes it, a Fargate task of the runner\'s family on its cluster, running', () => {
    expect(events.running).toMatchObject({ source: 'aws.ecs', 'detail-type': 'ECS Task State Change', detail: { launchType: 'FARGATE', group: `family:${family}`, clusterArn: runner.clusterArn } });
  });

  it.each([
    ['a crash', 1, undefined],
    ['a bad configuration', 2, undefined],
    ['out of memory', 137, 'OutOfMemoryError: Container killed due to memory usage'],
  ])('sends the stop of a run that exited unreported (%s: exit %i) to its queue once: the STOPPED event, not the ones before it', (_what, code, reason) => {
    const stop = events.exited(code, reason);
    expect(stop.map((e) => [e.detail.desiredStatus, e.detail.lastStatus])).toEqual([
      ['STOPPED', 'RUNNING'],
      ['STOPPED', 'DEPROVISIONING'],
      ['STOPPED', 'STOPPED'],
    ]);
    // Each of the three already carries the container's exit code: only lastStatus tells them apart.
    for (const event of stop) expect((event.detail.containers as Json[])[0].exitCode).toBe(code);
    expect(stop.map(matches)).toEqual([false, false, true]);
  });

  it.each([
    ['a finished run', 0],
    ['a run that failed and reported it (FailedRun pages for it)', REPORTED_FAILURE_EXIT_CODE],
  ])('leaves out every stop event of %s (exit %i)', (_what, code) => {
    expect(events.exited(code).map(matches)).toEqual([false, false, false]);
  });

  it('sends the stop of a run that never started (stopCode TaskFailedToStart, no exit code), whether its container is listed or not', () => {
    const unlisted = events.failedToStart('none');
    const unstarted = events.failedToStart('unstarted');
    expect(unlisted.detail.containers).toEqual([]);
    expect((unstarted.detail.containers as Json[])[0]).not.toHaveProperty('exitCode');
    expect(unstarted.detail.stoppedReason).toMatch(/^ResourceInitializationError: /);
    expect(matches(unlisted)).toBe(true);
    expect(matches(unstarted)).toBe(true);
  });

  it.each([
    ['stopped by hand (a StopTask)', 'UserInitiated', 'stopped by hand before the backup began'],
    ['its capacity taken back', 'TerminationNotice', 'Task stopped due to termination notice'],
    ['its Spot capacity taken back', 'SpotInterruption', 'Your Spot Task was interrupted.'],
  ])('sends the stop of a run stopped while still pending (%s: stopCode %s, no exit code), whole: the message holds its stop code and reason', (_what, stopCode, stoppedReason) => {
    const stop = events.stoppedPending(stopCode, stoppedReason);
    expect((stop.detail.containers as Json[])[0]).not.toHaveProperty('exitCode');
    expect(matches(stop)).toBe(true);
    // The queue gets the event as ECS sent it (no input, input path or transformer): the on-call
    // reads the stop code, the reason and the missing exit code there (docs/backup-runner.md).
    const [target] = rule.Properties.Targets as Json[];
    expect(Object.keys(target).filter((key) => key.startsWith('Input'))).toEqual([]);
    expect(stop.detail).toMatchObject({ lastStatus: 'STOPPED', stopCode, stoppedReason });
  });

  it('leaves out a run that is pending or running', () => {
    expect((events.pending.detail.containers as Json[])[0]).not.toHaveProperty('exitCode');
    expect(matches(events.pending)).toBe(false);
    expect(matches(events.running)).toBe(false);
  });

  it('leaves out the stops of another task definition (another family, one that starts alike) and of another cluster', () => {
    const elsewhere = (place: Partial<TaskPlace>) => taskEvents({ ...runner, ...place });
    const otherFamily = elsewhere({ taskDefinitionArn: `arn:aws:ecs:${config.region}:${config.account}:task-definition/atmr-celery:3` });
    const longerFamily = elsewhere({ taskDefinitionArn: `arn:aws:ecs:${config.region}:${config.account}:task-definition/${family}-debug:1` });
    const otherCluster = elsewhere({ clusterArn: `arn:aws:ecs:${config.region}:${config.account}:cluster/atmr` });
    for (const other of [otherFamily, longerFamily, otherCluster]) {
      expect(other.exited(1).map(matches)).toEqual([false, false, false]);
      expect(matches(other.failedToStart('none'))).toBe(false);
    }
    // Any revision of the runner's family is the runner: a deploy registers a new one.
    expect(matches(elsewhere({ taskDefinitionArn: `arn:aws:ecs:${config.region}:${config.account}:task-definition/${family}:1` }).exited(1)[2])).toBe(true);
  });
});
