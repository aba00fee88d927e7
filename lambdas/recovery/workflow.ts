import { nowOf } from '../shared/clock';
import { OPERATOR_CLI } from '../shared/constants';
import { CloudWatchClient } from '@aws-sdk/client-cloudwatch';
import { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import { RDSClient } from '@aws-sdk/client-rds';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { noNews } from '../shared/aws-errors';
import { OperatorError, oneLine } from '../shared/errors';
import { pgClientConfig, resolveConnection, type SessionConfig } from '../shared/pg-connection';
import { INVALID_PASSWORD, sqlState } from '../shared/pg-errors';
import { announce, publishRecoverySeconds, secondsBetween } from './announce';
import { LOGIN_REFUSED_ERROR, PASSWORD_RESET_MAX_SECONDS, PASSWORD_RESET_TIMEOUT_ERROR, RECOVERY_EVENTS, RecoveryRecord, RecoveryRequest, RecoveryStatus, VerificationReport } from './contract';
import {
  InstanceState,
  deleteRecoveredInstance,
  instanceState,
  ownRestoreStatus,
  passwordResetApplied,
  resetRecoveredPassword,
  startRestore,
  validateRecovery,
} from './rds';
import { StoreDeps, getRecovery, updateRecovery } from './store';
import { VerificationChecks, formatVerification, unreadCause, unverifiedNextStep, verificationStatus, verifyRecovery } from './verify';

/**
 * The steps of the recovery workflow (restore, wait, verify, report, and the failure paths), one
 * plain function each; the Step Functions definition strings them together and the handler only
 * dispatches. The CLI validated the request and took the lock before starting the execution.
 */
export interface WorkflowSettings {
  /** The cdk.json environment: the commands the workflow's events and pages print name it with --env. */
  readonly environmentName: string;
  readonly sourceInstance: string;
  readonly newInstancePrefix: string;
  readonly subnetGroupName?: string;
  readonly tags: Readonly<Record<string, string>>;
  readonly databaseName: string;
  readonly productionHost: string;
  readonly productionPort: number;
  readonly secretArn: string;
  readonly sslMode?: string;
  readonly checks: VerificationChecks;
  readonly maxWaitSeconds: number;
  /** CloudWatch namespace of RecoverySeconds: the environment's (POWERTOOLS_METRICS_NAMESPACE, set by the house function). */
  readonly metricsNamespace: string;
}

export interface WorkflowDeps {
  readonly rds: RDSClient;
  readonly secretsManager: SecretsManagerClient;
  readonly events: EventBridgeClient;
  readonly cloudwatch: CloudWatchClient;
  readonly store: StoreDeps;
  readonly settings: WorkflowSettings;
  readonly now?: () => Date;
  /** Overrides the database connections (tests point them at local PostgreSQL). */
  readonly connect?: (side: 'recovered' | 'production', host: string, port: number) => Promise<SessionConfig>;
}

/** The statuses the workflow writes while it runs (restore, wait, verify): the only ones its cleanup may mark failed. */
export const WORKFLOW_STATUSES: readonly RecoveryStatus[] = ['restoring', 'verifying'];


export async function restoreStep(deps: WorkflowDeps, request: RecoveryRequest): Promise<{ newInstance: string; status: string }> {
  const { settings } = deps;
  const target = { sourceInstance: settings.sourceInstance, newInstance: request.newInstance, newInstancePrefix: settings.newInstancePrefix, toTime: new Date(request.toTime) };
  const own = await ownRestoreStatus(deps.rds, request.newInstance, request.recoveryId);
  if (own) return { newInstance: request.newInstance, status: own };
  const validated = await validateRecovery(deps.rds, target);
  const { status } = await startRestore(deps.rds, validated, target, { expectedSubnetGroup: settings.subnetGroupName, extraTags: settings.tags, recoveryId: request.recoveryId });
  // The restore is under way: a refused event must not fail it (the cleanup would delete it); it is kept in the record.
  await announce(deps.events, RECOVERY_EVENTS.started, {
    summary: `Recovery ${request.recoveryId}: restoring ${settings.sourceInstance} to ${target.toTime.toISOString()} as ${request.newInstance} (asked by ${request.actor}: ${request.reason})`,
    at: nowOf(deps).toISOString(),
    recoveryId: request.recoveryId,
    sourceInstance: settings.sourceInstance,
    newInstance: request.newInstance,
    toTime: target.toTime.toISOString(),
    actor: request.actor,
    reason: request.reason,
  }).catch((error: unknown) => updateRecovery(deps.store, request.recoveryId, { error: `the "${RECOVERY_EVENTS.started}" event failed: ${oneLine(error)}` }).catch(() => undefined));
  return { newInstance: request.newInstance, status };
}

export interface WaitResult {
  readonly ready: boolean;
  readonly expired: boolean;
  readonly status: string;
  readonly host?: string;
  readonly port?: number;
}

/** One poll. A failed instance throws (the workflow's catch cleans up); past the maximum wait, `expired`. */
export async function statusStep(deps: WorkflowDeps, request: RecoveryRequest): Promise<WaitResult> {
  const state: InstanceState = await instanceState(deps.rds, request.newInstance).catch(noNews((status) => ({ status, ready: false, failed: false })));
  if (state.failed) {
    throw Object.assign(new Error(`${request.newInstance} is "${state.status}": the point-in-time restore failed (see the instance's RDS events)`), { name: 'RecoveryInstanceFailed' });
  }
  const expired = !state.ready && secondsBetween(request.requestedAt, nowOf(deps)) > deps.settings.maxWaitSeconds;
  return { ready: state.ready, expired, status: state.status, ...(state.host && { host: state.host, port: state.port }) };
}

async function connection(deps: WorkflowDeps, side: 'recovered' | 'production', host: string, port: number): Promise<SessionConfig> {
  if (deps.connect) return deps.connect(side, host, port);
  const conn = await resolveConnection({
    env: {},
    secretArn: deps.settings.secretArn,
    secretsManager: deps.secretsManager,
    overrides: { host, port, database: deps.settings.databaseName, sslMode: deps.settings.sslMode ?? 'require' },
  });
  return pgClientConfig(conn);
}

export async function verifyStep(deps: WorkflowDeps, request: RecoveryRequest & { instance: WaitResult }): Promise<{ ok: boolean; report: VerificationReport }> {
  const { settings } = deps;
  const host = request.instance.host!;
  const port = request.instance.port ?? 5432;
  // 'verifying' too: a retried verification (its first answer lost), or the one after a password
  // reset, finds the status it wrote; the copy became available at the first one.
  const before = await getRecovery(deps.store, request.recoveryId);
  const availableAt = before.availableAt ?? nowOf(deps).toISOString();
  const record = await updateRecovery(deps.store, request.recoveryId, { status: 'verifying', newInstanceHost: host, newInstancePort: port, availableAt }, ['restoring', 'verifying']);
  try {
    const report = await verifyRecovery(
      { recovered: await connection(deps, 'recovered', host, port), production: await connection(deps, 'production', settings.productionHost, settings.productionPort) },
      settings.checks,
      () => nowOf(deps),
    );
    return { ok: report.ok, report };
  } catch (error) {
    // Only the copy's login escapes verifyRecovery (production's failures are shown as "unavailable").
    // A wrong password there means the secret was rotated after the target time: the copy holds the
    // old one. The workflow catches this name and resets the copy's password, once.
    if (sqlState(error) !== INVALID_PASSWORD) throw error;
    const after = record.passwordReset ? ` even after its master password was set to the secret's current one at ${record.passwordReset.requestedAt}` : '';
    throw Object.assign(new Error(`${request.newInstance} refused the database secret's credentials${after} (${oneLine(error)})`), { name: LOGIN_REFUSED_ERROR });
  }
}

/**
 * The copy refused the secret's password (rotated after the target time): sets the copy's master
 * password to the secret's current one. Only the copy of this recovery, checked by name, prefix and
 * tags before any change (resetRecoveredPassword); production is never modified. Recorded in the
 * recovery's record once RDS accepted it. The workflow resets at most once, so a reset already in
 * the record means this step runs again after Lambda lost its answer: it returns that reset instead
 * of asking RDS again, which refuses a modification while the first one is applied
 * (InvalidDBInstanceState) and would fail a recovery that is going well.
 */
export async function resetPasswordStep(deps: WorkflowDeps, request: RecoveryRequest & { instance: WaitResult; loginError?: { Error?: string; Cause?: string } }): Promise<{ requestedAt: string }> {
  const { settings } = deps;
  const done = (await getRecovery(deps.store, request.recoveryId)).passwordReset;
  if (done) return { requestedAt: done.requestedAt };
  const credentials = await resolveConnection({
    env: {},
    secretArn: settings.secretArn,
    secretsManager: deps.secretsManager,
    overrides: { host: request.instance.host, port: request.instance.port, database: settings.databaseName },
  });
  if (!credentials.password) throw new Error(`the database secret ${settings.secretArn} holds no password to set on ${request.newInstance}`);
  await resetRecoveredPassword(deps.rds, request.newInstance, credentials.password, {
    protectedInstance: settings.sourceInstance,
    newInstancePrefix: settings.newInstancePrefix,
    recoveryId: request.recoveryId,
    environmentName: settings.environmentName,
  });
  const requestedAt = nowOf(deps).toISOString();
  const reason = request.loginError ? causeMessage(request.loginError.Cause) : 'the copy refused the database secret\'s credentials';
  await updateRecovery(deps.store, request.recoveryId, { passwordReset: { requestedAt, reason } }, ['verifying']);
  return { requestedAt };
}

/**
 * One poll of the password reset: applied once the copy is available with no pending password.
 * Past PASSWORD_RESET_MAX_SECONDS it fails (the cleanup keeps the copy and pages). A describe that
 * failed transiently is a poll without news, as in the wait for the restore.
 */
export async function passwordStatusStep(deps: WorkflowDeps, request: RecoveryRequest & { reset: { requestedAt: string } }): Promise<{ applied: boolean; status: string }> {
  const state = await passwordResetApplied(deps.rds, request.newInstance).catch(noNews((status) => ({ applied: false, status })));
  if (state.applied) {
    const record = await getRecovery(deps.store, request.recoveryId);
    await updateRecovery(deps.store, request.recoveryId, { passwordReset: { ...record.passwordReset!, appliedAt: nowOf(deps).toISOString() } }, ['verifying']);
    return state;
  }
  if (secondsBetween(request.reset.requestedAt, nowOf(deps)) > PASSWORD_RESET_MAX_SECONDS) {
    throw Object.assign(new Error(`RDS did not apply the new master password of ${request.newInstance} within ${PASSWORD_RESET_MAX_SECONDS / 60} minutes (it is "${state.status}")`), {
      name: PASSWORD_RESET_TIMEOUT_ERROR,
    });
  }
  return state;
}

/** Records the verification and the time it took, publishes RecoverySeconds (a verified copy only) and announces the result. */
export async function reportStep(
  deps: WorkflowDeps,
  request: RecoveryRequest & { verification: { ok: boolean; report: VerificationReport } },
): Promise<{ ok: boolean; recoverySeconds: number; status: RecoveryStatus; unreadCause?: string }> {
  const now = nowOf(deps);
  const recoverySeconds = secondsBetween(request.requestedAt, now);
  const { report } = request.verification;
  const status = verificationStatus(report);
  // A retried report (its first answer lost) finds the status it wrote.
  const record = await updateRecovery(deps.store, request.recoveryId, { status, verification: report, recoverySeconds }, ['verifying', status]);
  // The outcome is recorded: a refused metric or event must not turn a verified copy into a failed
  // recovery (no cutover then); it is kept in the record, which "recover status" shows. A failed
  // verification pages through the workflow's own SNS state either way.
  const eventType = report.ok ? RECOVERY_EVENTS.verified : RECOVERY_EVENTS.verificationFailed;
  try {
    // RecoverySeconds{stage=verified} is the time from the request to a copy one can cut over (the
    // RTO figure of docs/recovery.md): an unverified copy or a failed verification did not reach
    // that stage, and counted there they would pass for recoveries that did.
    if (status === 'verified') await publishRecoverySeconds(deps.cloudwatch, deps.settings.metricsNamespace, 'verified', recoverySeconds, now);
    await announce(deps.events, eventType, {
      summary: report.ok
        ? `Recovery ${request.recoveryId}: ${request.newInstance} (as of ${request.toTime}) verified in ${recoverySeconds} s; cut over with "${OPERATOR_CLI} recover cutover ${request.recoveryId} --yes --env ${deps.settings.environmentName}"`
        : status === 'unverified'
          ? `Recovery ${request.recoveryId}: ${request.newInstance} NOT verified: ${unreadCause(report)} (a fresh copy loads from S3); ${unverifiedNextStep(request.recoveryId, deps.settings.environmentName)}`
          : `Recovery ${request.recoveryId}: ${request.newInstance} FAILED verification: ${report.problems.join('; ')}`,
      at: now.toISOString(),
      recoveryId: request.recoveryId,
      newInstance: request.newInstance,
      host: record.newInstanceHost,
      recoverySeconds,
      verification: formatVerification(report),
    });
  } catch (error) {
    const what = status === 'verified' ? `the "${eventType}" event or the RecoverySeconds metric` : `the "${eventType}" event`;
    await updateRecovery(deps.store, request.recoveryId, { error: `${what} failed: ${oneLine(error)}` }).catch(() => undefined);
  }
  // The page of an unverified copy (a state of the workflow, not this step) names why nothing was read.
  return { ok: report.ok, recoverySeconds, status, ...(status === 'unverified' && { unreadCause: unreadCause(report) }) };
}

/** The copy itself failed, or the wait's budget ran out: the only failures whose cleanup deletes a copy that is not available. */
const COPY_LOST_ERRORS = ['RecoveryInstanceFailed', 'RecoveryInstanceTimeout'];

/**
 * The failure path: a new instance that failed or did not become available in time is deleted (no
 * final snapshot: it never became usable). One still being restored when something else failed is
 * kept (it may hold hours of restore), and so is one that became available (the verification or the
 * report failed: a rotated password, EventBridge refusing an event), since it holds the data asked
 * for and took the longest to get. The recovery is marked failed (freeing the lock) and announced;
 * the workflow then pages.
 */
export async function cleanupStep(
  deps: WorkflowDeps,
  request: RecoveryRequest & { error?: { Error?: string; Cause?: string } },
  log: (message: string, fields: Record<string, unknown>) => void = () => undefined,
): Promise<{ message: string }> {
  const why = request.error ? `${request.error.Error ?? 'Error'}: ${causeMessage(request.error.Cause)}` : 'unknown error';
  const record = await getRecovery(deps.store, request.recoveryId).catch(() => undefined);
  // Available by the record (the verification began), or by RDS: the record may not say so when the
  // verification could not write it, or when the record cannot be read now.
  const state = record?.newInstanceHost ? undefined : await instanceState(deps.rds, request.newInstance).catch(() => undefined);
  let deletion: string;
  if (record?.newInstanceHost || state?.ready) {
    deletion = `${request.newInstance} is kept (it ${record?.availableAt ? `became available at ${record.availableAt}` : 'is available'}): inspect it, then "${OPERATOR_CLI} recover abandon ${request.recoveryId} --env ${deps.settings.environmentName}" deletes it after a final snapshot`;
  } else if (!COPY_LOST_ERRORS.includes(request.error?.Error ?? '') && !state?.failed) {
    // The failure is not the copy's (a refused describe, a step Lambda could not run): a copy still
    // being restored may hold hours of restore and become available; a human decides. One that RDS
    // reports failed (or gone) holds nothing to keep, whatever failed the step.
    deletion = `${request.newInstance} is kept (${state ? `"${state.status}"` : 'its state could not be read'}; the failure is not the copy's own): "${OPERATOR_CLI} recover status ${request.recoveryId} --env ${deps.settings.environmentName}" shows it, "${OPERATOR_CLI} recover abandon ${request.recoveryId} --env ${deps.settings.environmentName}" deletes it`;
  } else {
    try {
      deletion = (await deleteRecoveredInstance(deps.rds, request.newInstance, { protectedInstance: deps.settings.sourceInstance, recoveryId: request.recoveryId, environmentName: deps.settings.environmentName })).detail;
    } catch (error) {
      deletion = `${request.newInstance} left in place (${oneLine(error)}): check it and delete it by hand if this recovery created it`;
    }
  }
  // Only over a status the workflow itself writes while it runs: an operator's abandon (`abandoning`,
  // `abandoned`) or a cutover may have claimed the recovery meanwhile (the step that failed may have
  // failed because of that claim), and "failed" over it would free the lock under them and hide
  // what they did. The lost race is logged and said in the page; their status is left as it is.
  let claimed: RecoveryRecord | undefined;
  await updateRecovery(deps.store, request.recoveryId, { status: 'failed', error: `${why} (cleanup: ${deletion})` }, WORKFLOW_STATUSES).catch(async (error: unknown) => {
    // A refused condition is an OperatorError; anything else (DynamoDB down) only failed to write.
    if (error instanceof OperatorError) claimed = await getRecovery(deps.store, request.recoveryId).catch(() => undefined);
    log('recovery cleanup: status "failed" not written', { recoveryId: request.recoveryId, status: claimed?.status ?? 'unknown', error: oneLine(error) });
  });
  const left = claimed?.status;
  const status = `"${OPERATOR_CLI} recover status ${request.recoveryId} --env ${deps.settings.environmentName}"`;
  let message = `Recovery ${request.recoveryId} of ${deps.settings.sourceInstance} to ${request.toTime} FAILED: ${why}.`;
  if (left === 'cutting-over') {
    // A cutover took the recovery (a step failing after the copy was verified, its retries spent,
    // while the operator began the cutover): production is being moved onto the copy, maybe in
    // maintenance meanwhile, and is in that operator's hands, not unchanged. The ways on are the
    // ones "recover status" prints for a cutover that stopped or runs.
    const by = claimed?.leaseOwner ? ` by ${claimed.leaseOwner}` : '';
    message += ` The recovery is now "cutting-over": a cutover${by} is putting production on ${request.newInstance} (it may be in maintenance meanwhile); left as it is, not marked failed, and ${request.newInstance} is kept. Production is in that cutover's hands: ${status} shows its journal; the cutover stopped or is running: continue it with "${OPERATOR_CLI} recover cutover ${request.recoveryId} --resume --yes --env ${deps.settings.environmentName}", or put back what it changed with "${OPERATOR_CLI} recover cutover ${request.recoveryId} --undo --yes --env ${deps.settings.environmentName}".`;
  } else if (left === 'cut-over') {
    message += ` The recovery is now "cut-over": production runs on ${request.newInstance} (an operator's cutover finished); left as it is, not marked failed. See ${status} for what is left to do.`;
  } else if (left === 'cutover-failed') {
    message += ` The recovery is now "cutover-failed": an operator's cutover to ${request.newInstance} failed; left as it is, not marked failed, and ${request.newInstance} is kept. Production is as before only if that cutover undid every change: ${status} shows its journal (a step "undo-failed": "${OPERATOR_CLI} recover cutover ${request.recoveryId} --undo --yes --env ${deps.settings.environmentName}").`;
  } else {
    // "failed" already: this cleanup runs again after Lambda lost the answer of a first run that
    // wrote it (the state's Retry); nobody else claimed the recovery, and the page must not say so.
    const outcome = left && left !== 'failed'
      ? ` The recovery is now "${left}", no longer a status of the running workflow (an abandon or a cutover may have claimed it meanwhile): left as it is, not marked failed.`
      : '';
    message += ` Cleanup: ${deletion}.${outcome} Production is unchanged; run ${status} and retry or restore a dump.`;
  }
  await announce(deps.events, RECOVERY_EVENTS.failed, { summary: message, at: nowOf(deps).toISOString(), recoveryId: request.recoveryId, newInstance: request.newInstance });
  return { message };
}

function causeMessage(cause: string | undefined): string {
  if (!cause) return 'no detail';
  try {
    const parsed = JSON.parse(cause) as { errorMessage?: string };
    return oneLine(parsed.errorMessage ?? cause);
  } catch {
    return oneLine(cause);
  }
}
