import type { Logger } from '@aws-lambda-powertools/logger';
import { MetricUnit, type Metrics } from '@aws-lambda-powertools/metrics';
import { paginateListSubscriptionsByTopic, type SNSClient, type Subscription } from '@aws-sdk/client-sns';
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { maskEndpoint } from './mask-endpoint';

/** Powertools `service` of the subscriptions check: the dimension its metric carries. */
export const SUBSCRIPTIONS_CHECK_SERVICE = 'escalation-subscriptions';

/**
 * Declared subscriptions of all levels that reach nobody yet: pending confirmation, or gone from
 * the topic (SNS deletes an unconfirmed subscription after 3 days while CloudFormation still
 * believes it exists). One datapoint per run, in the environment's namespace, dimension service.
 */
export const UNCONFIRMED_SUBSCRIPTIONS_METRIC = 'UnconfirmedSubscriptions';

export type SubscriptionProtocol = 'email' | 'sms' | 'https';

/** One subscription the config declares, as the function receives it: no endpoint, its digest only. */
export interface DeclaredSubscription {
  readonly protocol: SubscriptionProtocol;
  /** `endpointDigest(protocol, endpoint)`. */
  readonly sha256: string;
}

/**
 * One escalation level, as the construct describes it to the check; or another topic that pages
 * people (the key guard's own topic), which has no level.
 */
export interface LevelToCheck {
  /** 1-based, as pages and the runbook number them. Absent for a topic that is no escalation level. */
  readonly level?: number;
  /** The level's name; for a topic without a level, what the log calls it (the topic and whom it reaches). */
  readonly name: string;
  readonly topicArn: string;
  readonly declared: readonly DeclaredSubscription[];
}

/** A declared subscription SNS does not list (any more): the config position and digest name it. */
export interface MissingSubscription {
  /** 1-based position among the level's declared subscriptions. */
  readonly position: number;
  readonly protocol: SubscriptionProtocol;
  /** First 12 hex digits of the endpoint's digest (`printf %s <endpoint> | sha256sum`, an e-mail lowercased). */
  readonly sha256: string;
}

/** Where one declared subscription stands: what SNS lists for it. */
export interface DeclaredSubscriptionState {
  /** 1-based position among the level's declared subscriptions. */
  readonly position: number;
  readonly protocol: SubscriptionProtocol;
  /** confirmed: it reaches its owner; pending: waiting for its confirmation link; missing: SNS does not list it. */
  readonly state: 'confirmed' | 'pending' | 'missing';
  /** The endpoint SNS lists, masked as in the log (maskEndpoint); undefined when missing. */
  readonly endpoint?: string;
  /** First 12 hex digits of the declared endpoint's digest, as MissingSubscription gives it. */
  readonly sha256: string;
}

export interface LevelReport {
  readonly level?: number;
  readonly name: string;
  readonly topicArn: string;
  /** Declared subscriptions SNS lists as confirmed. */
  readonly confirmed: number;
  /** Declared subscriptions waiting for their confirmation link, endpoint masked for logs. */
  readonly pending: readonly string[];
  readonly missing: readonly MissingSubscription[];
  /** Confirmed subscriptions the config does not declare (added by hand): they reach someone too. */
  readonly undeclaredConfirmed: number;
  /** Each declared subscription in config order, for a reader who checks them one by one (`incident subscriptions`). */
  readonly declared: readonly DeclaredSubscriptionState[];
}

export interface SubscriptionsReport {
  readonly levels: readonly LevelReport[];
  /** Pending + missing, all levels: the value of UNCONFIRMED_SUBSCRIPTIONS_METRIC. */
  readonly unconfirmed: number;
}

export interface SubscriptionsCheckDeps {
  readonly sns: SNSClient;
  /** Powertools' Metrics in the function; the CLI, which publishes nothing, passes a no-op. */
  readonly metrics: { addMetric(...args: Parameters<Metrics['addMetric']>): unknown };
  readonly logger: Pick<Logger, 'info' | 'warn' | 'error'>;
}

/**
 * The digest of an endpoint that the construct passes instead of the endpoint: an HTTPS endpoint
 * (a PagerDuty or Opsgenie integration URL) carries its integration key, and a function's
 * environment variables are readable by anyone who may read its configuration. E-mail addresses are
 * compared lowercased, as mail systems treat them.
 */
export function endpointDigest(protocol: SubscriptionProtocol, endpoint: string): string {
  const normalized = protocol === 'email' ? endpoint.trim().toLowerCase() : endpoint.trim();
  return createHash('sha256').update(normalized, 'utf8').digest('hex');
}


/**
 * The topics to check as the construct writes them (the function's SUBSCRIPTION_LEVELS, the Ops
 * stack's output EscalationSubscriptionTopics): JSON [{level, name, topicArn, declared: [{protocol,
 * sha256}]}], the levels in order, then the topics without a level (no `level`: the key guard's).
 * Throws zod's or JSON's error on anything else.
 */
export function parseTopicsToCheck(json: string): LevelToCheck[] {
  return z
    .array(
      z.object({
        level: z.number().int().positive().optional(),
        name: z.string(),
        topicArn: z.string().startsWith('arn:'),
        declared: z.array(z.object({ protocol: z.enum(['email', 'sms', 'https']), sha256: z.string().regex(/^[0-9a-f]{64}$/) })).min(1),
      }),
    )
    .min(1)
    .parse(JSON.parse(json));
}

/** SNS lists a subscription waiting for its link with this in place of its ARN. */
const PENDING = 'PendingConfirmation';

/** Every subscription SNS lists for `topicArn`, all pages (ListSubscriptionsByTopic returns 100 at a time). */
async function listSubscriptions(sns: SNSClient, topicArn: string): Promise<Subscription[]> {
  const all: Subscription[] = [];
  for await (const page of paginateListSubscriptionsByTopic({ client: sns }, { TopicArn: topicArn })) all.push(...(page.Subscriptions ?? []));
  return all;
}

/** Compares one level's declared subscriptions with what SNS lists for its topic. */
function compareLevel(level: LevelToCheck, listed: readonly Subscription[]): LevelReport {
  // A subscription SNS reports as "Deleted" (being removed) or with no ARN reaches nobody: only
  // confirmed and pending ones take part.
  const candidates = listed
    .filter((s) => s.SubscriptionArn === PENDING || s.SubscriptionArn?.startsWith('arn:'))
    .map((s) => ({
      protocol: s.Protocol ?? '',
      endpoint: s.Endpoint ?? '',
      confirmed: s.SubscriptionArn !== PENDING,
      digest: isProtocol(s.Protocol) ? endpointDigest(s.Protocol, s.Endpoint ?? '') : '',
      used: false,
    }));
  let confirmed = 0;
  const pending: string[] = [];
  const missing: MissingSubscription[] = [];
  const states: DeclaredSubscriptionState[] = [];
  level.declared.forEach((declared, index) => {
    const same = candidates.filter((c) => !c.used && c.protocol === declared.protocol && c.digest === declared.sha256);
    // A confirmed copy wins over a pending one (a re-subscription by hand next to the old one).
    const match = same.find((c) => c.confirmed) ?? same[0];
    const named = { position: index + 1, protocol: declared.protocol, sha256: declared.sha256.slice(0, 12) };
    if (!match) {
      missing.push(named);
      states.push({ ...named, state: 'missing' });
      return;
    }
    match.used = true;
    const endpoint = maskEndpoint(match.protocol, match.endpoint);
    states.push({ ...named, state: match.confirmed ? 'confirmed' : 'pending', endpoint });
    if (match.confirmed) confirmed += 1;
    else pending.push(`${match.protocol}:${endpoint}`);
  });
  const undeclaredConfirmed = candidates.filter((c) => !c.used && c.confirmed).length;
  return { level: level.level, name: level.name, topicArn: level.topicArn, confirmed, pending, missing, undeclaredConfirmed, declared: states };
}

function isProtocol(protocol: string | undefined): protocol is SubscriptionProtocol {
  return protocol === 'email' || protocol === 'sms' || protocol === 'https';
}

/** What the log calls the topic: its level and name, or the name alone for a topic without a level. */
function topicLabel(report: LevelReport): string {
  return report.level === undefined ? report.name : `paging level ${report.level} (${report.name})`;
}

/** The commands that bring a level's subscriptions back, for the log line the on-call reads. */
function remedy(report: LevelReport): string {
  const parts: string[] = [];
  if (report.pending.length > 0) {
    parts.push(
      'pending: the owner clicks "Confirm subscription" in the "AWS Notification - Subscription Confirmation" e-mail (the link is valid 3 days; SNS then deletes the subscription)',
    );
  }
  if (report.missing.length > 0) {
    parts.push(
      `missing (deleted unconfirmed, or removed by hand; a redeploy does not recreate it): aws sns subscribe --topic-arn ${report.topicArn} --protocol <protocol> --notification-endpoint <endpoint declared for ${report.level === undefined ? report.name : `level ${report.level}`}>, then confirm`,
    );
  }
  parts.push(`check: aws sns list-subscriptions-by-topic --topic-arn ${report.topicArn}`);
  return parts.join('; ');
}

/**
 * Lists each level topic's subscriptions (and those of the other topics given, such as the key
 * guard's) and compares them with what the config declared for that topic: confirmed, pending (waiting for the link), missing (declared, not listed). Publishes the
 * pending + missing count of all levels (UNCONFIRMED_SUBSCRIPTIONS_METRIC) and logs each level with
 * a problem, naming its pending endpoints (masked) and the commands that fix it.
 *
 * Any SNS error fails the whole check before any metric is added: a partial count, or a 0 for a
 * topic it could not read, would tell the alarm that every level reaches someone. The failed run
 * is retried twice by Lambda, then lands in the escalation dead-letter queue, whose alarm pages.
 */
export async function checkSubscriptions(deps: SubscriptionsCheckDeps, levels: readonly LevelToCheck[]): Promise<SubscriptionsReport> {
  const reports: LevelReport[] = [];
  for (const level of levels) {
    reports.push(compareLevel(level, await listSubscriptions(deps.sns, level.topicArn)));
  }
  for (const report of reports) {
    // `level` is Powertools' own key (the log level): the escalation level goes under another name.
    const detail = {
      escalationLevel: report.level,
      levelName: report.name,
      topicArn: report.topicArn,
      confirmed: report.confirmed,
      pending: report.pending,
      missing: report.missing,
      undeclaredConfirmed: report.undeclaredConfirmed,
    };
    if (report.pending.length === 0 && report.missing.length === 0) {
      deps.logger.info('paging level subscriptions confirmed', detail);
      continue;
    }
    const reachesNobody = report.confirmed + report.undeclaredConfirmed === 0;
    const message = reachesNobody
      ? `${topicLabel(report)} reaches nobody: no confirmed subscription`
      : `${topicLabel(report)} has unconfirmed subscriptions`;
    (reachesNobody ? deps.logger.error : deps.logger.warn).call(deps.logger, message, { ...detail, remedy: remedy(report) });
  }
  const unconfirmed = reports.reduce((sum, r) => sum + r.pending.length + r.missing.length, 0);
  deps.metrics.addMetric(UNCONFIRMED_SUBSCRIPTIONS_METRIC, MetricUnit.Count, unconfirmed);
  return { levels: reports, unconfirmed };
}
