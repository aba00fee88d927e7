import {
  CreateRuleCommand,
  DeleteRuleCommand,
  ElasticLoadBalancingV2Client,
  ModifyRuleCommand,
} from '@aws-sdk/client-elastic-load-balancing-v2';
import { SSMClient } from '@aws-sdk/client-ssm';
import { mockClient } from 'aws-sdk-client-mock';
import 'aws-sdk-client-mock-jest';
import { enforceKillswitch, maintenanceAction, RULE_TAG_KEY } from '../../../lambdas/killswitch/enforcer';
import { MAINTENANCE_BODY } from '../../../lambdas/killswitch/value';
import { fakeListener, LISTENER_ARN, MAINTENANCE_TARGET_GROUP_ARN, TARGET_GROUP_ARN } from './elbv2-fake';
import { fakeParameter, PARAMETER, value } from './fixtures';

const ssmMock = mockClient(SSMClient);
const elbMock = mockClient(ElasticLoadBalancingV2Client);
const deps = { ssm: new SSMClient({ region: 'eu-west-3' }), elbv2: new ElasticLoadBalancingV2Client({ region: 'eu-west-3' }) };
const settings = {
  parameterName: PARAMETER,
  listenerArn: LISTENER_ARN,
  priority: 1,
  maintenanceTargetGroupArn: MAINTENANCE_TARGET_GROUP_ARN,
  apiTargetGroupArn: TARGET_GROUP_ARN,
};
const maintenance = value({ mode: 'maintenance', reason: 'OSRM down', actor: 'alice' });

beforeEach(() => {
  ssmMock.reset();
  elbMock.reset();
});

describe('enforceKillswitch', () => {
  it('in maintenance, forwards every path to the maintenance responder, with a pass-through rule for /health and /ready before it', async () => {
    fakeParameter(ssmMock, maintenance);
    const listener = fakeListener(elbMock);

    const result = await enforceKillswitch(deps, settings);

    expect(result.changes).toHaveLength(2);
    const [exempt, blocked] = listener.rules();
    expect(exempt).toMatchObject({ Priority: '1', Conditions: [{ Field: 'path-pattern', PathPatternConfig: { Values: ['/health', '/ready'] } }] });
    expect(exempt.Actions?.[0]).toMatchObject({ Type: 'forward', TargetGroupArn: TARGET_GROUP_ARN });
    expect(blocked).toMatchObject({ Priority: '2', Conditions: [{ Field: 'path-pattern', PathPatternConfig: { Values: ['*'] } }] });
    expect(blocked.Actions).toHaveLength(1);
    expect(blocked.Actions?.[0]).toMatchObject({ Type: 'forward', TargetGroupArn: MAINTENANCE_TARGET_GROUP_ARN });
    expect(blocked.Actions?.[0].FixedResponseConfig).toBeUndefined();
    expect(elbMock).toHaveReceivedCommandWith(CreateRuleCommand, { Priority: 2, Actions: [{ Type: 'forward', TargetGroupArn: MAINTENANCE_TARGET_GROUP_ARN }] });
    expect(listener.tagsOf(blocked.RuleArn as string)).toEqual([{ Key: RULE_TAG_KEY, Value: 'maintenance' }]);
  });

  it('is idempotent: a second run in the same mode changes nothing on the listener', async () => {
    fakeParameter(ssmMock, maintenance);
    fakeListener(elbMock);
    await enforceKillswitch(deps, settings);
    elbMock.resetHistory();

    const again = await enforceKillswitch(deps, settings);

    expect(again.changes).toEqual([]);
    expect(elbMock).not.toHaveReceivedCommand(CreateRuleCommand);
    expect(elbMock).not.toHaveReceivedCommand(ModifyRuleCommand);
    expect(elbMock).not.toHaveReceivedCommand(DeleteRuleCommand);
  });

  it.each(['normal', 'degraded'] as const)('in %s, removes its own rules and leaves the API rules alone', async (mode) => {
    const store = fakeParameter(ssmMock, maintenance);
    const listener = fakeListener(elbMock);
    const apiRule = listener.addForeignRule(10);
    await enforceKillswitch(deps, settings);
    store.raw = JSON.stringify(value({ mode }));

    const result = await enforceKillswitch(deps, settings);

    expect(result.changes).toHaveLength(2);
    expect(listener.rules()).toEqual([apiRule]);
    expect(elbMock).not.toHaveReceivedCommandWith(DeleteRuleCommand, { RuleArn: apiRule.RuleArn });
  });

  it('in normal with nothing to remove, makes no change', async () => {
    fakeParameter(ssmMock, value());
    fakeListener(elbMock);

    const result = await enforceKillswitch(deps, settings);

    expect(result).toEqual({ mode: 'normal', changes: [] });
    expect(elbMock).not.toHaveReceivedCommand(DeleteRuleCommand);
  });

  it('treats a malformed value as normal (removes the 503), like the readers', async () => {
    const store = fakeParameter(ssmMock, maintenance);
    const listener = fakeListener(elbMock);
    await enforceKillswitch(deps, settings);
    store.raw = '{"mode": "maint';

    await enforceKillswitch(deps, settings);

    expect(listener.rules()).toEqual([]);
  });

  it('treats a maintenance value whose expiresAt has passed as normal (removes the 503 even when the expiry schedule never ran)', async () => {
    const store = fakeParameter(ssmMock, { ...maintenance, expiresAt: '2026-06-01T10:00:00.000Z' });
    const listener = fakeListener(elbMock);
    await enforceKillswitch({ ...deps, now: () => Date.parse('2026-06-01T09:59:00.000Z') }, settings);
    expect(listener.rules()).toHaveLength(2);
    store.raw = JSON.stringify({ ...maintenance, expiresAt: '2026-06-01T10:00:00.000Z' });

    const result = await enforceKillswitch({ ...deps, now: () => Date.parse('2026-06-01T10:00:01.000Z') }, settings);

    expect(result.mode).toBe('normal');
    expect(listener.rules()).toEqual([]);
  });

  it("forwards /health and /ready to the configured API target group, not to the listener's default action", async () => {
    fakeParameter(ssmMock, maintenance);
    const listener = fakeListener(elbMock, {
      defaultActions: [{ Type: 'fixed-response', FixedResponseConfig: { StatusCode: '404', ContentType: 'text/plain', MessageBody: 'no' } }],
    });

    await enforceKillswitch(deps, settings);

    const [exempt] = listener.rules();
    expect(exempt.Actions).toEqual([expect.objectContaining({ Type: 'forward', TargetGroupArn: TARGET_GROUP_ARN })]);
    expect(elbMock).toHaveReceivedCommandWith(CreateRuleCommand, { Priority: 1, Actions: [{ Type: 'forward', TargetGroupArn: TARGET_GROUP_ARN }] });
  });

  it('repairs a managed rule that drifted to another target group (e.g. edited in the console)', async () => {
    fakeParameter(ssmMock, maintenance);
    const listener = fakeListener(elbMock);
    await enforceKillswitch(deps, settings);
    const blocked = listener.rules()[1];
    blocked.Actions = [
      { Type: 'forward', Order: 1, TargetGroupArn: TARGET_GROUP_ARN, ForwardConfig: { TargetGroups: [{ TargetGroupArn: TARGET_GROUP_ARN, Weight: 1 }] } },
    ];

    const result = await enforceKillswitch(deps, settings);

    expect(result.changes).toEqual([expect.stringMatching(/^modified maintenance rule/)]);
    expect(elbMock).toHaveReceivedCommandWith(ModifyRuleCommand, { RuleArn: blocked.RuleArn, Actions: [maintenanceAction(MAINTENANCE_TARGET_GROUP_ARN)] });
    expect(listener.rules()[1].Actions?.[0]).toMatchObject({ Type: 'forward', TargetGroupArn: MAINTENANCE_TARGET_GROUP_ARN });
  });

  it('upgrades a fixed-response 503 rule left by the previous version to the forward to the responder, once', async () => {
    fakeParameter(ssmMock, maintenance);
    const listener = fakeListener(elbMock);
    await enforceKillswitch(deps, settings);
    const blocked = listener.rules()[1];
    blocked.Actions = [{ Type: 'fixed-response', Order: 1, FixedResponseConfig: { StatusCode: '503', ContentType: 'application/json', MessageBody: MAINTENANCE_BODY } }];

    const upgraded = await enforceKillswitch(deps, settings);
    const again = await enforceKillswitch(deps, settings);

    expect(upgraded.changes).toEqual([`modified maintenance rule ${blocked.RuleArn}`]);
    expect(listener.rules()[1].Actions).toEqual([expect.objectContaining({ Type: 'forward', TargetGroupArn: MAINTENANCE_TARGET_GROUP_ARN })]);
    expect(again.changes).toEqual([]);
  });

  it('follows a new responder target group (e.g. after a redeploy replaced it)', async () => {
    fakeParameter(ssmMock, maintenance);
    const listener = fakeListener(elbMock);
    await enforceKillswitch(deps, settings);
    const replaced = MAINTENANCE_TARGET_GROUP_ARN.replace('8899aabbccddeeff', '0123012301230123');

    const result = await enforceKillswitch(deps, { ...settings, maintenanceTargetGroupArn: replaced });

    expect(result.changes).toEqual([expect.stringMatching(/^modified maintenance rule/)]);
    expect(listener.rules()[1].Actions?.[0]).toMatchObject({ TargetGroupArn: replaced });
    expect(listener.rules()[0].Actions?.[0]).toMatchObject({ TargetGroupArn: TARGET_GROUP_ARN });
  });

  it('refuses to take a priority used by a rule it does not own, naming the config field', async () => {
    fakeParameter(ssmMock, maintenance);
    const listener = fakeListener(elbMock);
    listener.addForeignRule(2);

    await expect(enforceKillswitch(deps, settings)).rejects.toThrow(/priority 2 .* not managed by atmr-dr: set killswitch.listenerRulePriority/);
    expect(elbMock).not.toHaveReceivedCommandWith(CreateRuleCommand, { Priority: 2 });
  });
});

describe('enforcer handler: the 5-minute reconcile converges after a missed event', () => {
  let enforce: (event: unknown) => Promise<{ changes: readonly string[] }>;
  beforeAll(() => {
    process.env.KILLSWITCH_PARAMETER = PARAMETER;
    process.env.LISTENER_ARN = LISTENER_ARN;
    process.env.LISTENER_RULE_PRIORITY = '1';
    process.env.MAINTENANCE_TARGET_GROUP_ARN = MAINTENANCE_TARGET_GROUP_ARN;
    process.env.API_TARGET_GROUP_ARN = TARGET_GROUP_ARN;
    process.env.AWS_REGION = 'eu-west-3';
    process.env.POWERTOOLS_TRACE_ENABLED = 'false';
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    enforce = require('../../../lambdas/killswitch/enforce-handler').enforce;
  });

  it('adds the 503 on a scheduled tick when the change event was missed, then does nothing on the next tick', async () => {
    fakeParameter(ssmMock, maintenance);
    const listener = fakeListener(elbMock);
    const tick = { 'detail-type': 'Scheduled Event', source: 'aws.events', detail: {} };

    const first = await enforce(tick);
    const second = await enforce(tick);

    expect(first.changes).toHaveLength(2);
    expect(second.changes).toEqual([]);
    expect(listener.rules()).toHaveLength(2);
    // The responder's target group comes from MAINTENANCE_TARGET_GROUP_ARN.
    expect(listener.rules()[1].Actions?.[0]).toMatchObject({ Type: 'forward', TargetGroupArn: MAINTENANCE_TARGET_GROUP_ARN });
  });

  it('rejects an event it was not wired for', async () => {
    await expect(enforce({ 'detail-type': 'Something Else' })).rejects.toThrow();
  });
});
