import { SFNClient, StartExecutionCommand } from '@aws-sdk/client-sfn';
import type { ExecutionInput } from './ingest';

/** The execution that takes an incident over from another one (a hand-over, or a restart after a stopped run). */
export interface NextExecution {
  /** `<id>-h<n>`: the incident id and the number of executions before it. */
  readonly name: string;
  /** The name of the execution it takes over from. */
  readonly current: string;
  readonly executionArn: string;
  readonly stateMachineArn: string;
}

/**
 * The execution after `execution` (an execution ARN of incident `incidentId`): `<id>-h<n+1>` after
 * `<id>-h<n>` (`<id>` counts as `-h0`). Named by the one it follows only, so that every step that
 * takes over from the same execution (a retried hand-over, two ALARMs restarting the same stopped
 * run, a restart racing a hand-over) names the same one, and Step Functions starts it once.
 */
export function nextExecutionOf(incidentId: string, execution: string): NextExecution {
  const { arnPrefix, machineName, current, number } = parseExecution(incidentId, execution);
  const name = `${incidentId}-h${number + 1}`;
  return { name, current, executionArn: `${arnPrefix}execution:${machineName}:${name}`, stateMachineArn: `${arnPrefix}stateMachine:${machineName}` };
}

/**
 * `execution` itself as the successor of the one before it, when it is one (`<id>-h<n>`, n >= 1):
 * a successor recorded on the incident but not started yet is started under the same name.
 * `undefined` for the incident's first execution (`<id>`), which follows none.
 */
export function recordedSuccessor(incidentId: string, execution: string): NextExecution | undefined {
  const { arnPrefix, machineName, current, number } = parseExecution(incidentId, execution);
  if (number === 0) return undefined;
  return { name: current, current: number === 1 ? incidentId : `${incidentId}-h${number - 1}`, executionArn: execution, stateMachineArn: `${arnPrefix}stateMachine:${machineName}` };
}

function parseExecution(incidentId: string, execution: string): { arnPrefix: string; machineName: string; current: string; number: number } {
  const match = /^(arn:[^:]+:states:[^:]*:[^:]*:)execution:([^:]+):([^:]+)$/.exec(execution);
  if (!match) throw new Error(`not an execution ARN: ${execution}`);
  const [, arnPrefix, machineName, current] = match;
  const number = current === incidentId ? 0 : Number(/-h(\d+)$/.exec(current)?.[1] ?? Number.NaN);
  if (!Number.isInteger(number)) throw new Error(`execution ${current} is not one of incident ${incidentId}`);
  return { arnPrefix, machineName, current, number };
}

/**
 * Starts `next` with `input`, and returns its ARN. ExecutionAlreadyExists (the name ran already, or
 * runs with another input) is no error: whoever started it took the incident over.
 */
export async function startNextExecution(sfn: SFNClient, next: NextExecution, input: ExecutionInput): Promise<string> {
  try {
    const started = await sfn.send(new StartExecutionCommand({ stateMachineArn: next.stateMachineArn, name: next.name, input: JSON.stringify(input) }));
    return started.executionArn ?? next.executionArn;
  } catch (error) {
    if ((error as { name?: string }).name !== 'ExecutionAlreadyExists') throw error;
    return next.executionArn;
  }
}
