import { SSMClient } from '@aws-sdk/client-ssm';
import { mockClient } from 'aws-sdk-client-mock';
import { runKillswitchCommand } from '../../../lambdas/killswitch/commands';
import { fakeParameter, PARAMETER, value } from './fixtures';

/**
 * runKillswitchCommand, the core of `atmr-dr killswitch` and of Slack's /killswitch: with AWS silent,
 * the CLI's actor lookup (STS) and the SSM read each take seconds before they give up, and one after
 * the other they added up before the on-call's one line.
 */
const ssmMock = mockClient(SSMClient);
const ssm = new SSMClient({ region: 'eu-west-3' });

beforeEach(() => ssmMock.reset());

describe.each([
  ['enable', { action: 'enable', mode: 'maintenance', reason: 'OSRM down' }],
  ['disable', { action: 'disable', reason: 'OSRM back' }],
] as const)('killswitch %s', (_name, command) => {
  it('reads the parameter while the actor is being looked up, not after, and writes with that actor', async () => {
    // Arrange: an actor lookup that answers only after 200 ms; when SSM is first read is recorded
    const events: string[] = [];
    const store = fakeParameter(ssmMock, value(), { version: 4, beforeGet: (index) => index === 0 && events.push('parameter read') });
    const resolveActor = () =>
      new Promise<string>((resolve) =>
        setTimeout(() => {
          events.push('actor known');
          resolve('arn:aws:sts::111111111111:assumed-role/oncall/alice');
        }, 200),
      );

    // Act
    const result = await runKillswitchCommand({ ssm, parameterName: PARAMETER, resolveActor }, command);

    // Assert
    expect(events).toEqual(['parameter read', 'actor known']);
    expect(JSON.parse(store.raw)).toMatchObject({ actor: 'arn:aws:sts::111111111111:assumed-role/oncall/alice' });
    expect(result).toMatchObject({ write: { version: 5, previous: { version: 4 }, conflict: undefined } });
  });
});
