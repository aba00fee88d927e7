import { missingAwsSetting } from '../shared/aws-errors';
import { formatSeconds } from '../shared/format';
import { operatorCommand } from '../shared/constants';
import { namedLine, OperatorError } from '../shared/errors';
import { acknowledgingLevel, Incident, signalsEvent } from './model';
import { IncidentStore, listIncidents } from './store';

/** The intervals of an environment's escalation (cdk.json `escalation`) that the lines below name. */
export interface EscalationIntervals {
  readonly levels: readonly { readonly ackTimeoutSeconds?: number; readonly name?: string }[];
  readonly reminderIntervalSeconds: number;
}

/** An AWS error for a line: the fix of an expired or missing login (as every command says it), else its name and message. */
export function awsReason(error: unknown): string {
  return missingAwsSetting(error) ?? namedLine(error);
}

/**
 * What follows an acknowledgement, for its line: the acknowledging level (model.ts
 * `acknowledgingLevel`: the CLI's --level, else level 1, as for Slack, which names no level) is
 * still reminded (an event alarm's at each new failure, its OK resolving nothing), until the
 * incident is resolved. The level's name and the interval (`escalation.reminderIntervalSeconds`,
 * which the deployed workflow waits) are the environment's in cdk.json, said when `config` is known:
 * the CLI reads it; the Slack command leaves them out.
 */
export function remindersLine(incident: Incident, config?: EscalationIntervals, environmentName?: string): string {
  // Said in Slack too, where a bare atmr-dr is "command not found" outside an npm link.
  const resolve = `\`${operatorCommand(environmentName, `incident resolve ${incident.id}`)}\``;
  const level = acknowledgingLevel(incident);
  const name = config?.levels[level - 1]?.name;
  const to = `reminders to level ${level}${name ? ` (${name})` : ''}`;
  if (signalsEvent(incident.alarmDescription)) return `${to} at each new ALARM of this event alarm until ${resolve} (its OK resolves nothing)`;
  const every = config ? ` every ${formatSeconds(config.reminderIntervalSeconds)}` : '';
  return `${to}${every} while the alarm stays in ALARM, until it goes OK or ${resolve}`;
}

/**
 * What a failed wake (SendTaskSuccess refused: credentials, permission, throttling) leaves, for its
 * line: the acknowledgement or resolution is written, and the workflow reads the incident at the end
 * of the wait it is in (a page step's level timeout while OPEN, the reminder interval once
 * acknowledged: lib/constructs/escalation.ts), where a page step pages nobody for an incident no
 * longer OPEN and a re-read finds it resolved. `waiting`: the incident as the waiting step knows it
 * (an acknowledged incident was OPEN: its page step waits). So it stops by itself, only later:
 * nothing to redo (a second `ack` or `resolve` is refused as already done). The same line for the
 * CLI and the Slack command: an on-call told "failed" would believe the pager still climbs.
 * `config`: the environment's intervals when known (the CLI reads cdk.json), else they are left out.
 */
export function notWokenLine(what: 'acknowledgement' | 'resolution', waiting: Pick<Incident, 'status' | 'level'>, error: unknown, config?: EscalationIntervals): string {
  const level = Math.max(waiting.level, 1);
  const timeout = config && (config.levels[level - 1]?.ackTimeoutSeconds ?? config.reminderIntervalSeconds);
  const within =
    waiting.status === 'ACKED'
      ? `within ${config ? `${formatSeconds(config.reminderIntervalSeconds)}, ` : ''}the reminder interval`
      : `within ${timeout ? `${formatSeconds(timeout)}, ` : ''}level ${level}'s acknowledgement timeout`;
  const then =
    what === 'acknowledgement'
      ? 'it pages no further level and starts the reminders'
      : `it ${waiting.status === 'ACKED' ? 'sends no more reminders' : 'pages no further level'} and tells the levels paged of the resolution`;
  return `${what} recorded; the escalation workflow was not woken (${awsReason(error)}): at its next step (${within}) ${then}; nothing to redo`;
}

/**
 * The not-found line of an incident id (exit 4), naming the one incident it likely meant: the same
 * time part (a mistyped hash) or the same hash (a mistyped time), when exactly one incident has it.
 * `check`: where the caller can find the id (the CLI's list command; from Slack, the page first).
 */
export async function incidentNotFound(store: IncidentStore, id: string, check: string): Promise<OperatorError> {
  const [stamp, hash] = id.split('-');
  const ids = (await listIncidents(store)).map((incident) => incident.id);
  const byHash = hash ? ids.filter((other) => other.split('-')[1] === hash) : [];
  const byStamp = ids.filter((other) => other.split('-')[0] === stamp);
  const near = byHash.length === 1 ? byHash[0] : byStamp.length === 1 ? byStamp[0] : undefined;
  return new OperatorError(`no incident ${id}${near ? ` (did you mean ${near}?)` : ''}: ${check}`, 4);
}
