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

/**
 * The Backups construct with the Fargate runner, synthesized alone; the cluster's ARN as deployed
 * (its physical name is CloudFormation's: stack, logical id, suffix).
 */
function fargateRunner() {
  const raw = structuredClone(exampleEnvironment()) as Json & { backups: Json };
  raw.backups.runner = 'fargate';
  const { config, stack, workload } = constructHarness(raw, 'BackupsOnly');
  new Backups(stack, 'Backups', backupsPropsFromConfig(config, workload));
  const template = Template.fromStack(stack);
  const [clusterId] = Object.keys(template.findResources('AWS::ECS::Cluster'));
  return { config, template, clusterId, clusterArn: `arn:aws:ecs:${config.region}:${config.account}:cluster/BackupsOnly-${clusterId}-x2EhFFoU0LqM` };
}

describe('the backup runner\'s stopped-run rule, against the ECS task state change events of the AWS documentation', () => {
  const { config, template, clusterId, clusterArn } = fargateRunner();
  const [taskDefinition] = Object.values(template.findResources('AWS::ECS::TaskDefinition')) as { Properties: { Family: string; ContainerDefinitions: { Name: string }[] } }[];
  const { Family: family, ContainerDefinitions: [container] } = taskDefinition.Properties;
  // The revision is a deploy's.
  const runner: TaskPlace = {
    region: config.region,
    account: config.account,
    clusterArn,
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

describe("the backup runner's unplaced-run rule: a scheduled RunTask answered with failures (no task started)", () => {
  const { config, template, clusterId, clusterArn } = fargateRunner();
  const [[taskDefinitionId, taskDefinition]] = Object.entries(template.findResources('AWS::ECS::TaskDefinition')) as [string, { Properties: { Family: string } }][];
  const [securityGroupId] = Object.keys(template.findResources('AWS::EC2::SecurityGroup')).filter((id) => id.startsWith('BackupsRunner'));
  const taskDefinitionArn = `arn:aws:ecs:${config.region}:${config.account}:task-definition/${taskDefinition.Properties.Family}:12`;
  const deployed = { 'AWS::Partition': 'aws', [`${clusterId}.Arn`]: clusterArn, [taskDefinitionId]: taskDefinitionArn, [`${securityGroupId}.GroupId`]: 'sg-0123456789abcdef0' };
  type Rule = { Properties: { EventPattern: Json; Targets: { Arn: Json }[] } };
  const rules = Object.entries(template.findResources('AWS::Events::Rule')) as [string, Rule][];
  const rule = rules.find(([id]) => id.startsWith('BackupsStoppedRunsUnplaced'))?.[1];
  const matches = (event: unknown) => {
    if (!rule) throw new Error('no unplaced-run rule in the template');
    return matchesEventPattern(deployedValue(rule.Properties.EventPattern, deployed), event);
  };

  /** The RunTask request each schedule sends (its target's input), as ECS receives it: field names in camelCase. */
  const camel = (value: unknown): unknown =>
    Array.isArray(value) ? value.map(camel) : typeof value === 'object' && value !== null ? Object.fromEntries(Object.entries(value).map(([k, v]) => [k[0].toLowerCase() + k.slice(1), camel(v)])) : value;
  const [schedule] = Object.values(template.findResources('AWS::Scheduler::Schedule')) as { Properties: { Target: { Input: unknown } } }[];
  const scheduledRequest = camel(JSON.parse(deployedValue(schedule.Properties.Target.Input, deployed) as string)) as Json;

  /**
   * The "AWS API Call via CloudTrail" event of a RunTask (CloudTrail's record: requestParameters as
   * sent, responseElements as answered), as EventBridge delivers it from a trail.
   */
  const runTaskCall = (requestParameters: Json, responseElements: Json) => ({
    version: '0',
    id: '6f5e1c0e-1f0b-4f7c-9a54-3c2b0e8d1a77',
    'detail-type': 'AWS API Call via CloudTrail',
    source: 'aws.ecs',
    account: config.account,
    time: '2026-12-01T02:00:03Z',
    region: config.region,
    resources: [],
    detail: {
      eventVersion: '1.08',
      userIdentity: { type: 'AssumedRole', invokedBy: 'scheduler.amazonaws.com' },
      eventTime: '2026-12-01T02:00:03Z',
      eventSource: 'ecs.amazonaws.com',
      eventName: 'RunTask',
      awsRegion: config.region,
      sourceIPAddress: 'scheduler.amazonaws.com',
      userAgent: 'scheduler.amazonaws.com',
      requestParameters,
      responseElements,
      eventType: 'AwsApiCall',
      managementEvent: true,
      readOnly: false,
    },
  });
  const noCapacity = { tasks: [], failures: [{ arn: clusterArn, reason: 'Capacity is unavailable at this time. Please try again later or in a different availability zone' }] };

  it("sends a schedule's RunTask answered with failures (no Fargate capacity: no task, no task event) to the stopped runs' queue", () => {
    expect(scheduledRequest).toMatchObject({ cluster: clusterArn, taskDefinition: taskDefinitionArn, launchType: 'FARGATE' });
    expect(matches(runTaskCall(scheduledRequest, noCapacity))).toBe(true);
    // The queue the RunnerStopped alarm counts, as the stop events
    const stopRule = rules.find(([id]) => id.startsWith('BackupsStoppedRunsRule'))?.[1];
    expect(rule?.Properties.Targets[0].Arn).toEqual(stopRule?.Properties.Targets[0].Arn);
  });

  it("sends a person's manual RunTask answered so too, when it names the cluster and task definition by ARN: the rule matches the call, not its caller (docs/backup-runner.md says so)", () => {
    const manual = runTaskCall(scheduledRequest, noCapacity);
    const byHand = { ...manual, detail: { ...manual.detail, userIdentity: { type: 'AssumedRole', arn: `arn:aws:sts::${config.account}:assumed-role/atmr-oncall/alice` }, sourceIPAddress: '203.0.113.7', userAgent: 'aws-cli/2.22.0' } };
    expect(matches(byHand)).toBe(true);
  });

  it('leaves out a RunTask that started its task (failures empty), and failed calls of another task definition or cluster', () => {
    expect(matches(runTaskCall(scheduledRequest, { tasks: [{ taskArn: `${clusterArn.replace(':cluster/', ':task/')}/c13b4cb40f1f4fe4a2971f76ae5a47ad` }], failures: [] }))).toBe(false);
    const other = (field: string, value: string) => runTaskCall({ ...scheduledRequest, [field]: value }, noCapacity);
    expect(matches(other('taskDefinition', `arn:aws:ecs:${config.region}:${config.account}:task-definition/atmr-celery:3`))).toBe(false);
    expect(matches(other('cluster', `arn:aws:ecs:${config.region}:${config.account}:cluster/atmr`))).toBe(false);
  });
});
