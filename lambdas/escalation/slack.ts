import { OperatorError, oneLine } from '../shared/errors';
import { incidentStore } from './clients';
import { acknowledgeIncident, IncidentStore } from './store';

export interface IncidentSlackReply {
  readonly statusCode: number;
  readonly body: { readonly response_type: 'in_channel' | 'ephemeral'; readonly text: string };
}

/**
 * `/incident ack <id>`, after the Slack endpoint has checked the request's signature, replay window
 * and user allow-list (the killswitch command's checks): acknowledges as the Slack user.
 */
export async function handleIncidentSlackText(store: IncidentStore, text: string, actor: string, userId: string): Promise<IncidentSlackReply> {
  const [action = '', id, ...rest] = text.trim().split(/\s+/).filter(Boolean);
  if (action.toLowerCase() !== 'ack' || !id || rest.length > 0) {
    return { statusCode: 200, body: { response_type: 'ephemeral', text: 'usage: /incident ack <incident id> (the id is in the page)' } };
  }
  try {
    // The alarm named: in a storm ids share their time prefix, and a pasted wrong id shows here.
    const { alarmName } = await acknowledgeIncident(store, id, { by: actor, via: 'slack' });
    return { statusCode: 200, body: { response_type: 'in_channel', text: `<@${userId}> acknowledged incident ${id} (${alarmName}): escalation stopped` } };
  } catch (error) {
    const message = error instanceof OperatorError ? error.message : `acknowledgement failed: ${oneLine(error)}`;
    return { statusCode: 200, body: { response_type: 'ephemeral', text: message } };
  }
}

/** The `/incident` handler the Slack endpoint calls once its checks passed (clients created once). */
export function incidentSlackCommand(tableName: string): (text: string, actor: string, userId: string) => Promise<IncidentSlackReply> {
  const store = incidentStore(tableName);
  return (text, actor, userId) => handleIncidentSlackText(store, text, actor, userId);
}
