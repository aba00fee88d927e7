import { ListSubscriptionsByTopicCommand, SNSClient, type Subscription } from '@aws-sdk/client-sns';
import { mockClient } from 'aws-sdk-client-mock';
import {
  checkSubscriptions,
  endpointDigest,
  SUBSCRIPTIONS_CHECK_SERVICE,
  UNCONFIRMED_SUBSCRIPTIONS_METRIC,
  type LevelToCheck,
  type SubscriptionProtocol,
} from '../../../lambdas/escalation/subscriptions';
import { captureProbeOutput, metricValue } from '../detection/fixtures';
import { LEVEL_TOPICS } from './harness';

const PAGERDUTY = 'https://events.pagerduty.com/integration/0123456789abcdef0123456789abcdef/enqueue';

/** A level as the construct describes it: digests of the declared endpoints, never the endpoints. */
function level(index: number, name: string, declared: [SubscriptionProtocol, string][]): LevelToCheck {
  return { level: index + 1, name, topicArn: LEVEL_TOPICS[index], declared: declared.map(([protocol, endpoint]) => ({ protocol, sha256: endpointDigest(protocol, endpoint) })) };
}

/**
 * The key guard alarm's own topic, subscribed by levels 1 and 2, as the construct describes it: no
 * level, a name. The page that still goes out when the operations key is disabled, so an address
 * nobody confirmed there must be seen too.
 */
const KEY_GUARD_TOPIC = 'arn:aws:sns:eu-west-3:111111111111:key-guard';
const KEY_GUARD_NAME = 'KeyGuardTopic (alarm Backups-KeyDeletionOrDisable, levels 1 and 2)';
function keyGuard(endpoints: string[]): LevelToCheck {
  return { name: KEY_GUARD_NAME, topicArn: KEY_GUARD_TOPIC, declared: endpoints.map((endpoint) => ({ protocol: 'email', sha256: endpointDigest('email', endpoint) })) };
}

const LEVELS = [
  level(0, 'On-call engineer', [['email', 'oncall@example.com'], ['https', PAGERDUTY]]),
  level(1, 'Lead DevOps', [['email', 'lead@example.com']]),
  level(2, 'CTO', [['email', 'cto@example.com']]),
];

const confirmed = (topic: number, protocol: string, endpoint: string, n = 1): Subscription => ({
  TopicArn: LEVEL_TOPICS[topic],
  Protocol: protocol,
  Endpoint: endpoint,
  SubscriptionArn: `${LEVEL_TOPICS[topic]}:0000000${n}-aaaa-bbbb-cccc-${topic}${n}`,
});
const pending = (topic: number, protocol: string, endpoint: string): Subscription => ({ TopicArn: LEVEL_TOPICS[topic], Protocol: protocol, Endpoint: endpoint, SubscriptionArn: 'PendingConfirmation' });

/** Every level confirmed, as SNS lists it once each owner clicked the link. */
function allConfirmed(): Record<string, Subscription[]> {
  return {
    [LEVEL_TOPICS[0]]: [confirmed(0, 'email', 'oncall@example.com'), confirmed(0, 'https', PAGERDUTY, 2)],
    [LEVEL_TOPICS[1]]: [confirmed(1, 'email', 'lead@example.com')],
    [LEVEL_TOPICS[2]]: [confirmed(2, 'email', 'cto@example.com')],
  };
}

/** SNS at the SDK boundary. */
const sns = mockClient(SNSClient);

/** ListSubscriptionsByTopic answers `byTopic`, in one page. */
function snsListing(byTopic: Record<string, Subscription[]>): void {
  sns.on(ListSubscriptionsByTopicCommand).callsFake((input: { TopicArn: string }) => ({ Subscriptions: byTopic[input.TopicArn] ?? [] }));
}

async function run(levels: readonly LevelToCheck[] = LEVELS) {
  const client = new SNSClient({ region: 'eu-west-3' });
  return captureProbeOutput(({ metrics, logger }) => checkSubscriptions({ sns: client, metrics, logger }, levels), SUBSCRIPTIONS_CHECK_SERVICE);
}

describe('escalation subscriptions check (SNS at the SDK boundary)', () => {
  beforeEach(() => sns.reset());
  afterAll(() => sns.restore());

  it('publishes 0 when every declared subscription of every level is confirmed', async () => {
    snsListing(allConfirmed());

    const { result, metrics, logs } = await run();

    expect(result.unconfirmed).toBe(0);
    expect(metricValue(metrics, UNCONFIRMED_SUBSCRIPTIONS_METRIC, { service: SUBSCRIPTIONS_CHECK_SERVICE })).toBe(0);
    expect(result.levels.map((l) => [l.level, l.confirmed, l.pending.length, l.missing.length])).toEqual([[1, 2, 0, 0], [2, 1, 0, 0], [3, 1, 0, 0]]);
    expect(logs.filter((l) => l.level === 'WARN' || l.level === 'ERROR')).toEqual([]);
    expect(sns.commandCalls(ListSubscriptionsByTopicCommand).map((c) => c.args[0].input.TopicArn)).toEqual(LEVEL_TOPICS);
  });

  it('counts a subscription waiting for its confirmation link, and the log names the level, its topic and the address', async () => {
    const listing = allConfirmed();
    listing[LEVEL_TOPICS[1]] = [pending(1, 'email', 'lead@example.com')];
    snsListing(listing);

    const { result, metrics, logs } = await run();

    expect(metricValue(metrics, UNCONFIRMED_SUBSCRIPTIONS_METRIC)).toBe(1);
    expect(result.levels[1]).toMatchObject({ confirmed: 0, pending: ['email:lead@example.com'], missing: [] });
    // Level 2's only subscription is pending: that level reaches nobody, said as an error.
    const line = logs.find((l) => l.level === 'ERROR');
    expect(line).toMatchObject({
      message: 'paging level 2 (Lead DevOps) reaches nobody: no confirmed subscription',
      topicArn: LEVEL_TOPICS[1],
      pending: ['email:lead@example.com'],
    });
    expect(line?.remedy).toContain('Confirm subscription');
    expect(logs.filter((l) => l.level === 'WARN' || l.level === 'ERROR')).toHaveLength(1);
  });

  it('counts a declared subscription SNS no longer lists (deleted after 3 days unconfirmed), with the command that brings it back', async () => {
    const listing = allConfirmed();
    listing[LEVEL_TOPICS[0]] = [confirmed(0, 'email', 'oncall@example.com')];
    snsListing(listing);

    const { result, metrics, logs } = await run();

    expect(metricValue(metrics, UNCONFIRMED_SUBSCRIPTIONS_METRIC)).toBe(1);
    expect(result.levels[0]).toMatchObject({ confirmed: 1, pending: [], missing: [{ position: 2, protocol: 'https', sha256: endpointDigest('https', PAGERDUTY).slice(0, 12) }] });
    const line = logs.find((l) => l.level === 'WARN');
    expect(line).toMatchObject({ message: 'paging level 1 (On-call engineer) has unconfirmed subscriptions', topicArn: LEVEL_TOPICS[0] });
    expect(line?.remedy).toContain(`aws sns subscribe --topic-arn ${LEVEL_TOPICS[0]} --protocol <protocol>`);
  });

  it('follows NextToken: a declared subscription on the second page counts as confirmed', async () => {
    const filler = Array.from({ length: 100 }, (_, i) => confirmed(0, 'email', `someone-${i}@example.com`, i));
    // Recorded as each call arrives: the paginator reuses one input object for every page.
    const tokens: (string | undefined)[] = [];
    sns.on(ListSubscriptionsByTopicCommand).callsFake((input: { TopicArn: string; NextToken?: string }) => {
      if (input.TopicArn !== LEVEL_TOPICS[0]) return { Subscriptions: allConfirmed()[input.TopicArn] };
      tokens.push(input.NextToken);
      return input.NextToken === 'page-2'
        ? { Subscriptions: allConfirmed()[LEVEL_TOPICS[0]] }
        : { Subscriptions: filler, NextToken: 'page-2' };
    });

    const { result, metrics } = await run();

    expect(metricValue(metrics, UNCONFIRMED_SUBSCRIPTIONS_METRIC)).toBe(0);
    expect(result.levels[0]).toMatchObject({ confirmed: 2, undeclaredConfirmed: 100 });
    expect(tokens).toEqual([undefined, 'page-2']);
  });

  it('masks an https endpoint after its host in the logs (its path carries the integration key)', async () => {
    const listing = allConfirmed();
    listing[LEVEL_TOPICS[0]] = [confirmed(0, 'email', 'oncall@example.com'), pending(0, 'https', PAGERDUTY)];
    snsListing(listing);

    const { metrics, logs } = await run();

    expect(metricValue(metrics, UNCONFIRMED_SUBSCRIPTIONS_METRIC)).toBe(1);
    expect(logs.find((l) => l.level === 'WARN')).toMatchObject({ pending: ['https:https://events.pagerduty.com/…'] });
    expect(JSON.stringify(logs)).not.toContain('0123456789abcdef');
  });

  it('checks the key guard topic too (no level): an unconfirmed subscription there is logged under its name, with its topic, and counted', async () => {
    const listing = allConfirmed();
    listing[KEY_GUARD_TOPIC] = [
      { TopicArn: KEY_GUARD_TOPIC, Protocol: 'email', Endpoint: 'oncall@example.com', SubscriptionArn: `${KEY_GUARD_TOPIC}:00000001-aaaa-bbbb-cccc-000000000001` },
      { TopicArn: KEY_GUARD_TOPIC, Protocol: 'email', Endpoint: 'lead@example.com', SubscriptionArn: 'PendingConfirmation' },
    ];
    snsListing(listing);

    const { result, metrics, logs } = await run([...LEVELS, keyGuard(['oncall@example.com', 'lead@example.com'])]);

    expect(sns.commandCalls(ListSubscriptionsByTopicCommand).map((c) => c.args[0].input.TopicArn)).toEqual([...LEVEL_TOPICS, KEY_GUARD_TOPIC]);
    expect(metricValue(metrics, UNCONFIRMED_SUBSCRIPTIONS_METRIC)).toBe(1);
    expect(result.levels[3]).toMatchObject({ name: KEY_GUARD_NAME, confirmed: 1, pending: ['email:lead@example.com'], missing: [] });
    const problems = logs.filter((l) => l.level === 'WARN' || l.level === 'ERROR');
    expect(problems).toEqual([expect.objectContaining({ level: 'WARN', message: `${KEY_GUARD_NAME} has unconfirmed subscriptions`, topicArn: KEY_GUARD_TOPIC, pending: ['email:lead@example.com'] })]);
    expect(problems[0].remedy).toContain(`aws sns list-subscriptions-by-topic --topic-arn ${KEY_GUARD_TOPIC}`);
  });

  it('names the key guard topic, not a level, in the command that brings back a subscription gone from it', async () => {
    snsListing({ ...allConfirmed(), [KEY_GUARD_TOPIC]: [] });

    const { metrics, logs } = await run([...LEVELS, keyGuard(['lead@example.com'])]);

    expect(metricValue(metrics, UNCONFIRMED_SUBSCRIPTIONS_METRIC)).toBe(1);
    const line = logs.find((l) => l.level === 'ERROR');
    expect(line).toMatchObject({ message: `${KEY_GUARD_NAME} reaches nobody: no confirmed subscription`, topicArn: KEY_GUARD_TOPIC });
    expect(line?.remedy).toContain(`aws sns subscribe --topic-arn ${KEY_GUARD_TOPIC} --protocol <protocol> --notification-endpoint <endpoint declared for ${KEY_GUARD_NAME}>`);
  });

  it('runs as deployed with the key guard topic in its settings: the handler accepts a topic with no level', async () => {
    snsListing({ ...allConfirmed(), [KEY_GUARD_TOPIC]: [{ TopicArn: KEY_GUARD_TOPIC, Protocol: 'email', Endpoint: 'lead@example.com', SubscriptionArn: 'PendingConfirmation' }] });
    const saved = { ...process.env };
    Object.assign(process.env, {
      SUBSCRIPTION_LEVELS: JSON.stringify([...LEVELS, keyGuard(['lead@example.com'])]),
      AWS_REGION: 'eu-west-3',
      POWERTOOLS_TRACE_ENABLED: 'false',
      POWERTOOLS_LOG_LEVEL: 'SILENT',
    });
    try {
      // Loaded here, once: the handler reads its settings when loaded (and its SNS client is the mocked class).
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const { check } = require('../../../lambdas/escalation/subscriptions-handler') as typeof import('../../../lambdas/escalation/subscriptions-handler');

      await expect(check()).resolves.toEqual({ unconfirmed: 1 });
    } finally {
      process.env = saved;
    }
  });

  it('fails on an SNS error and publishes no count at all (no 0 that would clear the alarm)', async () => {
    snsListing(allConfirmed());
    sns.on(ListSubscriptionsByTopicCommand, { TopicArn: LEVEL_TOPICS[2] }).rejects(Object.assign(new Error('User is not authorized to perform: SNS:ListSubscriptionsByTopic'), { name: 'AuthorizationErrorException' }));
    const client = new SNSClient({ region: 'eu-west-3', maxAttempts: 1 });

    const { result, metrics } = await captureProbeOutput(
      ({ metrics: m, logger }) => checkSubscriptions({ sns: client, metrics: m, logger }, LEVELS).then(() => undefined, (error: unknown) => error),
      SUBSCRIPTIONS_CHECK_SERVICE,
    );

    expect(result).toMatchObject({ name: 'AuthorizationErrorException' });
    expect(metrics.filter((m) => m.name === UNCONFIRMED_SUBSCRIPTIONS_METRIC)).toEqual([]);
  });
});
