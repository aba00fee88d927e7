import { nowOf } from '../shared/clock';
import { OPERATOR_CLI } from '../shared/constants';
import { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import { RDSClient } from '@aws-sdk/client-rds';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { DescribeExecutionCommand, SFNClient, StartExecutionCommand, StopExecutionCommand } from '@aws-sdk/client-sfn';
import { SSMClient } from '@aws-sdk/client-ssm';
import { namedLine, OperatorError, oneLine } from '../shared/errors';
import { boundedLine } from '../shared/format';
import { announce } from './announce';
import { CUTOVER_STEPS, ENDPOINT_LEFT_AS_IS, EndpointSwitch, describeEndpoint, endpointCommand, readEndpoint, reopeningStarted, UNDO_REDEPLOY_NOT_RUN, undoPastReopening } from './cutover';
import { RECOVERY_EVENTS, RecoveryRecord, RecoveryRequest, newRecoveryId } from './contract';
import { RestoreWindow, dataAlsoIn, defaultInstanceName, validateRecovery, deleteRecoveredInstance, finalSnapshotRefusal, instanceState } from './rds';
import { StoreDeps, beginRecovery, getRecovery, updateRecovery } from './store';

/** The operator's side of a recovery (CLI): start, abandon. The workflow does the rest. */

export const MAX_REASON_LENGTH = 500;

export function parseRecoveryReason(reason: string | undefined): string {
  const text = boundedLine(reason, 'recover: --reason', MAX_REASON_LENGTH);
  if (!text) throw new OperatorError('recover: --reason is required: say why, e.g. --reason "bookings deleted by migration 4f2a at 14:05"', 2);
  return text;
}

export interface StartDeps {
  readonly rds: RDSClient;
  readonly sfn: SFNClient;
  readonly store: StoreDeps;
  readonly now?: () => Date;
}

interface StartRequestBase {
  readonly sourceInstance: string;
  readonly newInstancePrefix: string;
  readonly toTime: Date;
  readonly newInstance?: string;
  readonly reason: string;
}

/**
 * A dry run records nothing, so it takes no actor: who starts a recovery is asked (STS, the
 * operator's name) only when a record will hold it.
 */
export type StartRequest =
  | (StartRequestBase & { readonly dryRun: true })
  | (StartRequestBase & {
      readonly dryRun: false;
      readonly actor: string;
      /** Refused when missing (the ops stack deployed without recovery). */
      readonly stateMachineArn?: string;
    });

/** A dry run's plan: the request a start would make, without its actor (null: nobody was asked). */
export type PlannedRequest = Omit<RecoveryRequest, 'actor'> & { readonly actor: null };

interface StartSummary {
  readonly window: RestoreWindow;
  readonly sourceClass?: string;
  readonly multiAz?: boolean;
}

export type StartResult =
  | (StartSummary & { readonly dryRun: true; readonly request: PlannedRequest })
  | (StartSummary & { readonly dryRun: false; readonly request: RecoveryRequest; readonly executionArn: string });

/**
 * Checks everything first (time in the window, name free, PITR on), then takes the lock and starts
 * the workflow. The execution is named after the recovery, so `recover status ID` finds it again.
 */
export async function startRecovery(deps: StartDeps, request: StartRequest): Promise<StartResult> {
  const now = nowOf(deps);
  const newInstance = request.newInstance ?? defaultInstanceName(request.newInstancePrefix, request.toTime);
  const validated = await validateRecovery(deps.rds, { sourceInstance: request.sourceInstance, newInstance, newInstancePrefix: request.newInstancePrefix, toTime: request.toTime });
  const planned: PlannedRequest = {
    recoveryId: newRecoveryId(now),
    toTime: request.toTime.toISOString(),
    newInstance,
    actor: null,
    reason: request.reason,
    requestedAt: now.toISOString(),
  };
  const summary: StartSummary = { window: validated.window, sourceClass: validated.source.DBInstanceClass, multiAz: validated.source.MultiAZ };
  if (request.dryRun) return { dryRun: true, request: planned, ...summary };
  const recoveryRequest: RecoveryRequest = { ...planned, actor: request.actor };
  if (!request.stateMachineArn) throw new OperatorError('recover: no recovery state machine: deploy the ops stack with recovery.enabled, or pass --state-machine ARN', 2);

  await beginRecovery(deps.store, { ...recoveryRequest, sourceInstance: request.sourceInstance, sourceResourceId: validated.source.DbiResourceId });
  const startInput = { stateMachineArn: request.stateMachineArn, name: recoveryRequest.recoveryId, input: JSON.stringify(recoveryRequest) };
  let started = await startExecution(deps.sfn, startInput);
  if ('unanswered' in started) {
    // A request whose every answer was lost (the SDK's retries spent) may have started the
    // execution all the same: marked failed, the record would free the lock under a workflow that
    // restores a copy anyway, and "nothing was created" would be false. A read of the execution
    // (DescribeExecution) is eventually consistent and may miss one just started; sending the same
    // request again is not: Step Functions answers a standard execution's name and input with that
    // execution while it runs, ExecutionAlreadyExists once it has ended, and starts it otherwise.
    const again = await startExecution(deps.sfn, startInput);
    if ('unanswered' in again) {
      // Neither answer says whether the workflow runs: marked failed, the record would free the lock
      // under a workflow that may be restoring a copy. It stays "restoring" without the execution's
      // ARN, which `recover status` and `recover abandon` look up by the recovery's name.
      const id = recoveryRequest.recoveryId;
      throw new OperatorError(
        `recover: cannot tell whether the workflow of recovery ${id} started: StartExecution failed (${namedLine(started.unanswered)}) and sending it again failed too (${namedLine(again.unanswered)}); the recovery is left "restoring", holding the one-recovery lock, not marked failed: run "${OPERATOR_CLI} recover status ${id}": if it shows the workflow RUNNING, the recovery goes on (follow it there, start no other); if it shows the workflow never started, nothing was created: "${OPERATOR_CLI} recover abandon ${id}" frees the lock, then start the recovery again`,
      );
    }
    started = again;
  }
  if ('refused' in started) {
    await updateRecovery(deps.store, recoveryRequest.recoveryId, { status: 'failed', error: `workflow not started: ${oneLine(started.refused)}` }).catch(() => undefined);
    throw new OperatorError(`recover: the recovery workflow did not start (${oneLine(started.refused)}): nothing was created; check the state machine ARN and your permissions, then retry`);
  }
  const executionArn = started.executionArn;
  // The workflow runs from here on, whatever happens to this write: the recovery keeps its lock.
  try {
    await updateRecovery(deps.store, recoveryRequest.recoveryId, { executionArn });
  } catch (error) {
    throw new OperatorError(
      `recover: recovery ${recoveryRequest.recoveryId} started (workflow ${executionArn}) but its record did not take the workflow's ARN (${oneLine(error)}): it goes on; "${OPERATOR_CLI} recover status ${recoveryRequest.recoveryId}" shows its record (not the workflow's state: see that execution in the Step Functions console)`,
    );
  }
  return { dryRun: false, request: recoveryRequest, ...summary, executionArn };
}

/** The ARN the execution of recovery `recoveryId` has (it is named after the recovery), started or not. */
export function recoveryExecutionArn(stateMachineArn: string, recoveryId: string): string {
  return `${stateMachineArn.replace(':stateMachine:', ':execution:')}:${recoveryId}`;
}

/**
 * Step Functions' answers that refuse a StartExecution for what the request is (who sends it, to
 * which state machine, with which name and input): the same request is refused every time, so no
 * earlier attempt of it, whose answer the SDK's retries may have lost, started the execution either.
 * Any other failure (no answer, throttled, a server error) says nothing about whether it started.
 */
const START_REFUSALS = new Set([
  'AccessDeniedException',
  'StateMachineDoesNotExist',
  'StateMachineDeleting',
  'InvalidArn',
  'InvalidName',
  'InvalidExecutionInput',
  'ValidationException',
]);

type StartOutcome = { executionArn: string } | { refused: unknown } | { unanswered: unknown };

async function startExecution(sfn: SFNClient, input: { stateMachineArn: string; name: string; input: string }): Promise<StartOutcome> {
  const executionArn = recoveryExecutionArn(input.stateMachineArn, input.name);
  try {
    return { executionArn: (await sfn.send(new StartExecutionCommand(input))).executionArn ?? executionArn };
  } catch (error) {
    const name = (error as { name?: string }).name ?? '';
    // The name is the recovery's own id (the lock rules out another start of it): an execution
    // under it that has ended, or a first attempt of this very request, started it.
    if (name === 'ExecutionAlreadyExists') return { executionArn };
    return START_REFUSALS.has(name) ? { refused: error } : { unanswered: error };
  }
}

export interface ExecutionView {
  readonly status: string;
  readonly error?: string;
}

export async function describeExecution(sfn: SFNClient, executionArn: string | undefined): Promise<ExecutionView | undefined> {
  if (!executionArn) return undefined;
  const execution = await sfn.send(new DescribeExecutionCommand({ executionArn }));
  return { status: execution.status ?? 'UNKNOWN', ...(execution.error && { error: `${execution.error}: ${execution.cause ?? ''}`.trim() }) };
}

/**
 * What a cutover left, from the journal's steps not undone, for an abandon that must not delete the
 * copy under production: undefined when nothing is left. The endpoint switched and not put back, or
 * the services not redeployed since it was, production may use the copy; otherwise it runs on the
 * old instance (maybe in maintenance); once the killswitch reopening started (and no undo closed it,
 * reopeningStarted), production may have taken writes on the copy and only --resume is left.
 */
function cutoverLeft(record: RecoveryRecord): string | undefined {
  const entries = (record.journal ?? []).filter((entry) => entry.state !== 'undone');
  const left = entries.map((entry) => entry.step);
  // A redeploy the undo journaled and has not run yet is said so: not read as one that ran.
  const listed = entries.map((entry) => (entry.detail === UNDO_REDEPLOY_NOT_RUN ? `${entry.step} (${entry.detail})` : entry.step));
  const id = record.recoveryId;
  if (reopeningStarted(record.journal)) {
    return `its cutover reached "${CUTOVER_STEPS.reopen}": production may run on ${record.newInstance} and have taken writes there, so it is never deleted by this tool; finish it with "${OPERATOR_CLI} recover cutover ${id} --resume --yes", ${undoPastReopening(record)} first`;
  }
  if (!left.length) return undefined;
  const switched = record.journal?.find((entry) => entry.step === CUTOVER_STEPS.endpoint);
  // An undo that found the endpoint set by someone else since left that value: the journal does not
  // say where it points, only that it is neither the copy's address nor the one before the cutover.
  const where =
    left.includes(CUTOVER_STEPS.endpoint) || (switched && left.includes(CUTOVER_STEPS.redeploy))
      ? `production may still use ${record.newInstance}`
      : switched?.detail?.includes(ENDPOINT_LEFT_AS_IS)
        ? `its database endpoint was switched to ${record.newInstance}, then set to another value by someone else, which the undo left as is (not put back: see "${OPERATOR_CLI} recover status ${id}")`
        : `production still runs on ${record.sourceInstance} (its database endpoint was ${switched ? 'switched and put back' : 'not switched'})`;
  const closed = left.includes(CUTOVER_STEPS.maintenance) ? ', maybe in maintenance (the killswitch)' : '';
  return `its cutover left changes not undone (${listed.join(', ')}): ${where}${closed}; run "${OPERATOR_CLI} recover cutover ${id} --undo --yes" first`;
}

/** Whether `value` (host:port, a bare host, a URL) names `host`: RDS addresses are case-insensitive. */
function namesHost(value: string, host: string): boolean {
  return value.toLowerCase().split(/[^a-z0-9.-]+/).includes(host.toLowerCase());
}

export interface AbandonDeps {
  readonly rds: RDSClient;
  readonly sfn: SFNClient;
  readonly events: EventBridgeClient;
  readonly store: StoreDeps;
  readonly ssm: SSMClient;
  readonly secretsManager: SecretsManagerClient;
  /** Where the API reads its database endpoint (recovery.endpoint), the one the cutover switches. */
  readonly endpoint: EndpointSwitch;
  readonly now?: () => Date;
}

/**
 * Stops the workflow if it runs and deletes the recovered instance after a final snapshot. Refused
 * once production runs on it (cut over), while a cutover is in progress, while the API's endpoint
 * names it (or cannot be read), and when a cutover starts between its read and its claim. A recovery left `abandoning` (the deletion failed) is abandoned
 * again the same way.
 */
export async function abandonRecovery(
  deps: AbandonDeps,
  recoveryId: string,
  actor: string,
  protectedInstance: string,
  options: {
    skipFinalSnapshot?: boolean;
    /**
     * The recovery workflow: a record without the execution's ARN (a start stopped between the lock
     * and StartExecution's answer) may have launched it all the same, found then by its name.
     */
    stateMachineArn?: string;
  } = {},
): Promise<{ record: RecoveryRecord; detail: string }> {
  const now = nowOf(deps);
  const record = await getRecovery(deps.store, recoveryId);
  if (record.status === 'cut-over') {
    throw new OperatorError(`recover abandon: recovery ${recoveryId} is "cut-over": production runs on ${record.newInstance}; it is never deleted by this tool`, 3);
  }
  if (record.status === 'abandoned') throw new OperatorError(`recover abandon: recovery ${recoveryId} is already abandoned`, 3);
  // A cutover under way, stopped, or failed with an undo that failed: what its journal says it left
  // decides what production may be using, and the way out is the cutover's own (--undo or --resume).
  const left = cutoverLeft(record);
  if (record.status === 'cutting-over') {
    // A live lease: the cutover runs in another terminal, and refuses --resume and --undo until it ends or its lease expires.
    const leaseLive = record.leaseOwner !== undefined && (record.leaseExpiresAt ?? 0) > now.getTime();
    const next = leaseLive
      ? `its cutover is running, by ${record.leaseOwner} (--resume and --undo are refused while its lease is live): wait for it to end, or, if its holder is gone, for its lease to expire at ${new Date(record.leaseExpiresAt ?? 0).toISOString()}, then see "${OPERATOR_CLI} recover status ${recoveryId}"`
      : (left ?? `its cutover has journaled no step yet (production unchanged); run "${OPERATOR_CLI} recover cutover ${recoveryId} --undo --yes" first`);
    throw new OperatorError(`recover abandon: recovery ${recoveryId} is "cutting-over": ${next}`, 3);
  }
  if (left) throw new OperatorError(`recover abandon: recovery ${recoveryId}: ${left}`, 3);
  // A copy RDS cannot snapshot (it cannot use its KMS key) would fail the deletion at every run,
  // after the claim, and hold the lock for good: said before anything changes, with the way out and
  // where the data still is (production's automated backups, which need the same key).
  const copy = await instanceState(deps.rds, record.newInstance);
  const refusal = finalSnapshotRefusal(record.newInstance, copy.status, Boolean(options.skipFinalSnapshot));
  if (refusal?.skip === false) {
    throw new OperatorError(
      `recover abandon: recovery ${recoveryId}: ${refusal.reason}; ${dataAlsoIn(protectedInstance, { toTime: record.toTime, kmsKeyId: copy.kmsKeyId })}: delete the copy without a snapshot with "${OPERATOR_CLI} recover abandon ${recoveryId} --skip-final-snapshot", ${refusal.keep}; nothing changed`,
      3,
    );
  }
  if (refusal?.skip) {
    throw new OperatorError(`recover abandon: --skip-final-snapshot: ${refusal.reason}: run "${OPERATOR_CLI} recover abandon ${recoveryId}" without it; nothing changed`, 2);
  }
  // The journal says only what the cutover did and undid: the endpoint may name the copy all the
  // same (someone pointed the API at it by hand, or an undo left a value set since). Deleting the
  // copy would then take the API's database away: read where it points, and refuse when unsure.
  // A copy with no address yet (its restore failed or never got that far) is nothing the API could
  // use: no read, so that a wrong right or setting does not hold the recovery lock there.
  const copyHosts = [record.newInstanceHost, copy.host].filter((host): host is string => Boolean(host));
  const endpoint = copyHosts.length === 0 ? '' : await readEndpoint(deps, deps.endpoint).catch((error: unknown) => {
    throw new OperatorError(
      `recover abandon: recovery ${recoveryId}: cannot read where the API's database endpoint points (${describeEndpoint(deps.endpoint)}: ${namedLine(error)}), so cannot tell whether the API uses ${record.newInstance}: nothing was stopped or deleted; fix the cause (your right to read it, recovery.endpoint), then run "${OPERATOR_CLI} recover abandon ${recoveryId}" again`,
    );
  });
  if (copyHosts.some((host) => namesHost(endpoint, host))) {
    const back = `<${protectedInstance}'s address>:<port>`;
    const how = endpointCommand(deps.endpoint, back);
    throw new OperatorError(
      `recover abandon: recovery ${recoveryId}: ${describeEndpoint(deps.endpoint)} holds "${endpoint}", the address of ${record.newInstance}: the API may be using it, and abandoning would delete its database; point the API back at production with ${how} and redeploy its services, then run "${OPERATOR_CLI} recover abandon ${recoveryId}" again; nothing changed`,
      3,
    );
  }
  // A record without the workflow's ARN (its start was cut off before StartExecution answered) may
  // have a workflow running all the same, under the recovery's name: without the state machine to
  // look in, it could not be stopped before its copy is deleted under it.
  if (!record.executionArn && !options.stateMachineArn) {
    throw new OperatorError(
      `recover abandon: recovery ${recoveryId} has no workflow recorded (its start was cut off before Step Functions answered) and no state machine was given to look for one under its name: pass --state-machine with the recovery state machine's ARN; nothing changed`,
      2,
    );
  }
  // The claim, before anything is stopped or deleted: one conditional write that holds only if the
  // record is still as read above (same status, not written since, no live cutover lease). A
  // cutover that started in between makes it fail; once written, a cutover is refused ("abandoning"
  // is not a status it starts from): one of the two loses, never both half-way.
  try {
    await updateRecovery(deps.store, recoveryId, { status: 'abandoning' }, [record.status], { freeAt: now.getTime(), unchangedSince: record.updatedAt });
  } catch (error) {
    if (!(error instanceof OperatorError)) throw error;
    const current = await getRecovery(deps.store, recoveryId);
    throw new OperatorError(
      `recover abandon: recovery ${recoveryId} changed while this command ran (it read "${record.status}", it is now "${current.status}"${current.leaseOwner ? `, a cutover lease held by ${current.leaseOwner}` : ''}): nothing was stopped or deleted; see "${OPERATOR_CLI} recover status ${recoveryId}", then decide again`,
      3,
    );
  }
  // A workflow whose state cannot be read may still run: deleting its copy under it would make it
  // fail, write "failed" over "abandoned" and page a recovery failure nobody had. Stop here, claimed:
  // running abandon again goes on from "abandoning".
  const executionArn = record.executionArn ?? (options.stateMachineArn && recoveryExecutionArn(options.stateMachineArn, recoveryId));
  const execution = await describeExecution(deps.sfn, executionArn || undefined).catch((error: unknown) => {
    // Found by name only: no execution under it means the start never launched one.
    if (!record.executionArn && (error as { name?: string }).name === 'ExecutionDoesNotExist') return undefined;
    throw new OperatorError(
      `recover abandon: cannot tell whether the workflow of recovery ${recoveryId} still runs (${namedLine(error)}): nothing was stopped or deleted; run "${OPERATOR_CLI} recover abandon ${recoveryId}" again`,
    );
  });
  if (execution?.status === 'RUNNING') {
    await deps.sfn.send(new StopExecutionCommand({ executionArn: executionArn || undefined, error: 'RecoveryAbandoned', cause: `abandoned by ${actor}` }));
  }
  const snapshot = `${record.newInstance}-final-${now.toISOString().replace(/[-:T]/g, '').slice(0, 12)}`.slice(0, 255);
  const { detail } = await deleteRecoveredInstance(deps.rds, record.newInstance, { finalSnapshotIdentifier: snapshot, skipFinalSnapshot: options.skipFinalSnapshot, protectedInstance, recoveryId });
  const updated = await updateRecovery(deps.store, recoveryId, { status: 'abandoned' });
  await announce(deps.events, RECOVERY_EVENTS.abandoned, { summary: `Recovery ${recoveryId} abandoned by ${actor}: ${detail}`, at: now.toISOString(), recoveryId, actor });
  return { record: updated, detail };
}
