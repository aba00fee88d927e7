import { DescribeTasksCommand, ECSClient, ListTasksCommand } from '@aws-sdk/client-ecs';
import { mockClient } from 'aws-sdk-client-mock';
import { stoppedTasksSince } from '../../../lambdas/backout/ecs';
import type { BackoutSettings } from '../../../lambdas/backout/settings';

const ecsMock = mockClient(ECSClient);
const TARGET = 'arn:aws:ecs:eu-west-3:111111111111:task-definition/atmr-api:41';
const BAD = 'arn:aws:ecs:eu-west-3:111111111111:task-definition/atmr-api:42';
const since = new Date('2026-12-02T05:00:00Z');
const arn = (i: number): string => `arn:aws:ecs:eu-west-3:111111111111:task/atmr-prod/t${i}`;

describe('stoppedTasksSince', () => {
  beforeEach(() => ecsMock.reset());

  it('finds a stopped task of the target past the first page of ListTasks and past the first 100 described', async () => {
    // Arrange: 150 stopped tasks of the failing release (its crash loop), then one of the target
    ecsMock
      .on(ListTasksCommand)
      .resolvesOnce({ taskArns: Array.from({ length: 100 }, (_, i) => arn(i)), nextToken: 'page-2' })
      .resolvesOnce({ taskArns: [...Array.from({ length: 50 }, (_, i) => arn(100 + i)), arn(150)] });
    ecsMock.on(DescribeTasksCommand).callsFake((input: { tasks: string[] }) => ({
      tasks: input.tasks.map((taskArn) => ({
        taskArn,
        taskDefinitionArn: taskArn === arn(150) ? TARGET : BAD,
        stoppingAt: new Date('2026-12-02T05:03:00Z'),
        stoppedReason: taskArn === arn(150) ? 'Essential container in task exited' : 'crash loop',
      })),
    }));

    // Act
    const stopped = await stoppedTasksSince(new ECSClient({ region: 'eu-west-3' }), { clusterName: 'atmr-prod' } as BackoutSettings, 'atmr-api', TARGET, since);

    // Assert
    expect(stopped).toEqual(['t150: Essential container in task exited']);
    expect(ecsMock.commandCalls(ListTasksCommand)).toHaveLength(2);
    expect(ecsMock.commandCalls(DescribeTasksCommand).map((c) => c.args[0].input.tasks?.length)).toEqual([100, 51]);
  });
});
