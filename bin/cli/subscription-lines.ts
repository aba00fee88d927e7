import { GetSMSSandboxAccountStatusCommand, type SNSClient } from '@aws-sdk/client-sns';
import { maskEndpoint } from '../../lambdas/escalation/mask-endpoint';
import { awsReason } from '../../lambdas/escalation/replies';
import { endpointDigest, type LevelReport, type SubscriptionProtocol } from '../../lambdas/escalation/subscriptions';

/**
 * What `incident subscriptions` says of each declared subscription, apart from the command (which
 * loads commander, ESM-only): its lines are built and tested here.
 */

/** Where one declared subscription stands, as `incident subscriptions` says it. */
export type SubscriptionState = 'confirmed' | 'pending' | 'gone';

export interface SubscriptionLine {
  readonly position: number;
  readonly protocol: SubscriptionProtocol;
  readonly state: SubscriptionState;
  /** The endpoint as maskEndpoint shows it (an HTTPS URL cut after its host, a phone number's last two digits), from SNS or, for a gone one, from the config; null when unknown. */
  readonly endpoint: string | null;
  /** What brings it back: who clicks which e-mail, or the subscribe command. Null when confirmed. */
  readonly fix: string | null;
}

/**
 * The endpoints the environment's config declares, by the first 12 hex digits of their digest, as
 * maskEndpoint shows them: a subscription SNS no longer lists is known to the check by its digest
 * only (lambdas/escalation/subscriptions.ts), and its line must still say whose it is. An e-mail
 * address is kept whole (the subscribe command needs it); an integration URL or a phone number is
 * masked as on every other line, the URL's path carrying its key.
 */
export function declaredEndpoints(levels: readonly { readonly subscriptions: readonly { readonly protocol: SubscriptionProtocol; readonly endpoint: string }[] }[]): Map<string, string> {
  const all = levels.flatMap((level) => level.subscriptions);
  return new Map(all.map((s) => [endpointDigest(s.protocol, s.endpoint).slice(0, 12), maskEndpoint(s.protocol, s.endpoint)]));
}

/** The topic as its lines name it: its level, or its name for a topic without one. */
function levelName(report: LevelReport): string {
  return report.level === undefined ? report.name : `level ${report.level}`;
}

/** The lines of one topic's declared subscriptions, each with its fix; `endpoints` as declaredEndpoints gives them. */
export function subscriptionLines(report: LevelReport, endpoints: ReadonlyMap<string, string>): SubscriptionLine[] {
  return report.declared.map((d) => {
    const state: SubscriptionState = d.state === 'missing' ? 'gone' : d.state;
    const endpoint = d.endpoint ?? endpoints.get(d.sha256) ?? null;
    let fix: string | null = null;
    if (state === 'pending') {
      fix =
        d.protocol === 'email'
          ? `${endpoint} clicks "Confirm subscription" in the e-mail "AWS Notification - Subscription Confirmation" for topic ${report.topicArn} (SNS deletes the subscription 3 days after it was made)`
          : `the ${d.protocol} endpoint has not confirmed the subscription SNS sent it: check the integration, or subscribe it again (SNS deletes it 3 days after it was made)`;
    } else if (state === 'gone') {
      // Only an e-mail address is printed whole: the others are named for the reader to copy from cdk.json.
      const target =
        d.protocol === 'email' && endpoint !== null
          ? endpoint
          : `<the ${d.protocol} endpoint${endpoint === null ? '' : ` ${endpoint}`} of subscription ${d.position} of ${levelName(report)} in cdk.json${endpoint === null ? `, sha256 ${d.sha256}...` : ''}>`;
      // SNS confirms an SMS subscription by itself; an e-mail or an HTTPS endpoint must answer.
      const then = d.protocol === 'sms' ? '' : ', then its owner confirms';
      fix = `aws sns subscribe --topic-arn ${report.topicArn} --protocol ${d.protocol} --notification-endpoint ${target}${then} (a redeploy does not recreate it)`;
    }
    return { position: d.position, protocol: d.protocol, state, endpoint, fix };
  });
}

/**
 * The headline of a topic whose page reaches nobody: no declared subscription confirmed, and none
 * added by hand. Undefined when one reaches someone. Its lines say each fix; the headline says the
 * topic and what to do, before all the lines that are fine.
 */
export function reachesNobodyLine(report: LevelReport, lines: readonly SubscriptionLine[]): string | undefined {
  if (report.undeclaredConfirmed > 0 || lines.some((l) => l.state === 'confirmed')) return undefined;
  const topic = `${report.level === undefined ? report.name : `level ${report.level} ${report.name}`} reaches nobody`;
  const gone = lines.filter((l) => l.state === 'gone').length;
  if (gone === lines.length) {
    const what = lines.length === 1 ? 'its declared subscription is gone' : `all ${lines.length} of its declared subscriptions are gone`;
    return `${topic}: ${what} (deleted, or never confirmed within 3 days; a redeploy does not recreate it): subscribe ${lines.length === 1 ? 'it' : 'each'} again with the command on its line below`;
  }
  return `${topic}: none of its ${lines.length} declared subscription(s) is confirmed (${lines.length - gone} pending, ${gone} gone): do what each of its lines below says`;
}

/**
 * The warning of an account in the SNS SMS sandbox (one per region): SNS then delivers SMS only to
 * the numbers verified in the sandbox's destination list, and lists the subscription of any other
 * number as confirmed all the same, which this check alone would call reaching a human. Undefined
 * when no declared subscription is an SMS one, or the account is out of the sandbox. A failed call
 * (a role without sns:GetSMSSandboxAccountStatus) says the sandbox could not be checked, and the
 * report stands without it.
 */
export async function smsSandboxLine(sns: SNSClient, reports: readonly LevelReport[]): Promise<string | undefined> {
  const count = reports.reduce((sum, r) => sum + r.declared.filter((d) => d.protocol === 'sms').length, 0);
  if (count === 0) return undefined;
  // The topics' region: SNS sends their SMS from there, and the sandbox is per region.
  const region = reports.find((r) => r.declared.some((d) => d.protocol === 'sms'))?.topicArn.split(':')[3];
  const sms = `the ${count} SMS subscription(s) declared`;
  try {
    const { IsInSandbox } = await sns.send(new GetSMSSandboxAccountStatusCommand({}));
    if (!IsInSandbox) return undefined;
  } catch (error) {
    return `whether this account is in the SNS SMS sandbox of ${region} could not be checked (${awsReason(error)}): if it is, ${sms} reach only the numbers verified in its sandbox destination list (SNS console, Text messaging (SMS))`;
  }
  return (
    `this account is in the SNS SMS sandbox of ${region}: ${sms} reach only the numbers verified in its sandbox destination list, even those listed as confirmed: ` +
    `verify each number there (SNS console, Text messaging (SMS), Sandbox destination phone numbers), or request production access (same page, Exit SMS sandbox)`
  );
}
