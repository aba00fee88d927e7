import { PutParameterCommand, SSMClient } from '@aws-sdk/client-ssm';
import { mockClient } from 'aws-sdk-client-mock';
import 'aws-sdk-client-mock-jest';
import { fakeParameter, PARAMETER, value } from './fixtures';

const ssmMock = mockClient(SSMClient);
process.env.KILLSWITCH_PARAMETER = PARAMETER;
process.env.AWS_REGION = 'eu-west-3';
process.env.POWERTOOLS_TRACE_ENABLED = 'false';
process.env.POWERTOOLS_LOG_LEVEL = 'SILENT';
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { revert } = require('../../../lambdas/killswitch/revert-handler') as typeof import('../../../lambdas/killswitch/revert-handler');

const enabled = value({ mode: 'maintenance', actor: 'alice', reason: 'OSRM down', updatedAt: '2026-06-01T08:00:00.000Z', expiresAt: '2026-06-01T10:00:00.000Z' });

beforeEach(() => ssmMock.reset());

describe('expiry revert handler (Scheduler target)', () => {
  it('reverts the value the schedule was armed for', async () => {
    const store = fakeParameter(ssmMock, enabled);

    const outcome = await revert({ parameterName: PARAMETER, expectedUpdatedAt: enabled.updatedAt });

    expect(outcome).toEqual({ reverted: true });
    expect(JSON.parse(store.raw).mode).toBe('normal');
  });

  it('leaves a newer change alone', async () => {
    fakeParameter(ssmMock, { ...enabled, updatedAt: '2026-06-01T09:00:00.000Z' });

    const outcome = await revert({ parameterName: PARAMETER, expectedUpdatedAt: enabled.updatedAt });

    expect(outcome.reverted).toBe(false);
    expect(ssmMock).not.toHaveReceivedCommand(PutParameterCommand);
  });

  it("refuses another environment's parameter and a malformed event, writing nothing", async () => {
    fakeParameter(ssmMock, enabled);

    await expect(revert({ parameterName: '/atmr/prod/killswitch', expectedUpdatedAt: enabled.updatedAt })).rejects.toThrow(/is not this environment's/);
    await expect(revert({ parameterName: PARAMETER })).rejects.toThrow();
    expect(ssmMock).not.toHaveReceivedCommand(PutParameterCommand);
  });
});
