import { OperatorError, oneLine } from '../shared/errors';
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
    await acknowledgeIncident(store, id, { by: actor, via: 'slack' });
    return { statusCode: 200, body: { response_type: 'in_channel', text: `<@${userId}> acknowledged incident ${id}: escalation stopped` } };
  } catch (error) {
    const message = error instanceof OperatorError ? error.message : `acknowledgement failed: ${oneLine(error)}`;
    return { statusCode: 200, body: { response_type: 'ephemeral', text: message } };
  }
}
