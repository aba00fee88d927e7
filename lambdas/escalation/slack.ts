import { SFNClient } from '@aws-sdk/client-sfn';
import { OperatorError } from '../shared/errors';
import { namedClient } from '../shared/named-clients';
import { opsStateDynamoDB } from '../shared/ops-state-client';
import { SLACK_COMMAND_SDK } from '../shared/sdk-retry';
import { incidentStore } from './clients';
import { canonicalIncidentId } from './model';
import { awsReason, incidentNotFound, notWokenLine, remindersLine } from './replies';
import { acknowledgeIncident, IncidentStore } from './store';
import { operatorCommand } from '../shared/constants';

export interface IncidentSlackReply {
  readonly statusCode: number;
  readonly body: { readonly response_type: 'in_channel' | 'ephemeral'; readonly text: string };
}

/**
 * What `/incident help` and a command it does not know are answered with. The Slack command names no
 * level (it has not the environment's levels to check one against): it acknowledges for level 1,
 * which gets the reminders; whoever answers another level's page is told, before acknowledging, the
 * two ways that record their level (a second acknowledgement is refused, so none changes it after).
 */
const incidentUsage = (environmentName?: string) =>
  `/incident ack <incident id> (the id is in the page): acknowledges for level 1, the on-call, who then gets the reminders; ` +
  `to answer another level's page, use its acknowledgement link or \`${operatorCommand(environmentName, 'incident ack <incident id> --level <n>')}\`; ` +
  `to resolve by hand: \`${operatorCommand(environmentName, 'incident resolve <incident id>')}\``;

/**
 * `/incident ack <id>`, after the Slack endpoint has checked the request's signature, replay window
 * and user allow-list (the killswitch command's checks): acknowledges as the Slack user.
 */
export async function handleIncidentSlackText(store: IncidentStore, text: string, actor: string, userId: string): Promise<IncidentSlackReply> {
  const [action = '', typed, ...rest] = text.trim().split(/\s+/).filter(Boolean);
  // Resolving by hand checks the alarm's state and asks to confirm: the CLI's, not a slash command's.
  if (action.toLowerCase() === 'resolve') {
    const resolve = `\`${operatorCommand(store.environmentName, `incident resolve ${typed ? canonicalIncidentId(typed) : '<incident id>'}`)}\``;
    return { statusCode: 200, body: { response_type: 'ephemeral', text: `/incident resolve is not a Slack command: run ${resolve} (it checks whether the alarm is still in ALARM, then asks to confirm)` } };
  }
  if (action.toLowerCase() !== 'ack' || !typed || rest.length > 0) {
    return { statusCode: 200, body: { response_type: 'ephemeral', text: `usage: ${incidentUsage(store.environmentName)}` } };
  }
  // As stored: a phone's keyboard types the id in lower case.
  const id = canonicalIncidentId(typed);
  try {
    // The alarm named: in a storm ids share their time prefix, and a pasted wrong id shows here.
    // A wake refused (throttled) leaves the acknowledgement written: said as recorded, in the channel,
    // not as a failure the on-call would retry into "already acknowledged" while believing it pages on.
    let wakeError: unknown;
    const acked = await acknowledgeIncident(store, id, { by: actor, via: 'slack' }, { wakeFailed: (error) => (wakeError = error) }).catch(async (error: unknown) => {
      // There is no /incident list: the id is in the page, and the CLI lists them.
      throw error instanceof OperatorError && error.exitCode === 4 ? await incidentNotFound(store, id, `check the id in the page, or with \`${operatorCommand(store.environmentName, 'incident list --open')}\``) : error;
    });
    const notWoken = wakeError === undefined ? '' : `\n:warning: ${notWokenLine('acknowledgement', { status: 'OPEN', level: acked.level }, wakeError)}`;
    return { statusCode: 200, body: { response_type: 'in_channel', text: `<@${userId}> acknowledged incident ${id} (${acked.alarmName}): escalation stopped; ${remindersLine(acked, undefined, store.environmentName)}${notWoken}` } };
  } catch (error) {
    if (error instanceof OperatorError) return { statusCode: 200, body: { response_type: 'ephemeral', text: error.message } };
    // A write with no answer, or a failure after it (its timeline entry), may have acknowledged:
    // asking again is the check, and the retry when it was not written.
    const text = `acknowledgement of incident ${id}: outcome unknown (${awsReason(error)}): check with \`/incident ack ${id}\`: it answers "already acknowledged" if this one was written, else acknowledges`;
    return { statusCode: 200, body: { response_type: 'ephemeral', text } };
  }
}

/**
 * The `/incident` handler the Slack endpoint calls once its checks passed (clients created once,
 * with Slack's bounded settings: an unanswering DynamoDB is told within Slack's 3 s).
 */
export function incidentSlackCommand(tableName: string, environmentName: string): (text: string, actor: string, userId: string) => Promise<IncidentSlackReply> {
  const store = incidentStore(tableName, { ddb: opsStateDynamoDB(SLACK_COMMAND_SDK), sfn: namedClient(new SFNClient(SLACK_COMMAND_SDK), 'Step Functions') }, environmentName);
  return (text, actor, userId) => handleIncidentSlackText(store, text, actor, userId);
}
