import { CloudWatchClient } from '@aws-sdk/client-cloudwatch';
import { ECSClient } from '@aws-sdk/client-ecs';
import { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import { DBInstance, RDSClient } from '@aws-sdk/client-rds';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { SFNClient } from '@aws-sdk/client-sfn';
import { SSMClient } from '@aws-sdk/client-ssm';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { Command } from 'commander';
import * as os from 'node:os';
import { EnvironmentConfig, defaultNewInstancePrefix, prefixNotCovering, resolveRecoveryConfig } from '../../lib/config';
import { FINAL_STATUSES, JournalEntry, RECOVERY_ID_FORM, RECOVERY_ID_PATTERN, RecoveryRecord, STATUS_WITHOUT_ID } from '../../lambdas/recovery/contract';
import { ALREADY_REOPENED, ANNOUNCE, CUTOVER_STEPS, CutoverResult, DONE_BEFORE, CutoverSettings, EndpointSwitch, LEASE_SECONDS, cutover, describeEndpoint, endpointNames, endpointWriteCommand, keptInMaintenance, killswitchUnknown, readEndpoint, reopeningStarted, undoCutover, undoPastReopening } from '../../lambdas/recovery/cutover';
import { abandonRecovery, describeExecution, parseRecoveryReason, recoveryExecutionArn, startRecovery } from '../../lambdas/recovery/operations';
import { dataAlsoIn, renameCommands } from '../../lambdas/recovery/rds';
import { describeInstance } from '../../lambdas/shared/rds-instances';
import { serviceNow } from '../../lambdas/shared/clock-offset';
import { StoreDeps, activeRecoveryId, getRecovery, listRecoveryIds } from '../../lambdas/recovery/store';
import { checkPitrReach, parseToTime, relativeToTimeSeconds } from '../../lambdas/recovery/time';
import { formatVerification, unreadCause, unverifiedFlagRefusal, unverifiedNextStep, unverifiedRefusal } from '../../lambdas/recovery/verify';
import { formatAge, shellWord, utcMinute, utcSecond } from '../../lambdas/shared/format';
import { type KillswitchValue, NO_EXPIRY, effectiveMode } from '../../lambdas/killswitch/value';
import { readKillswitch } from '../../lambdas/killswitch/core';
import { opsStateDynamoDB } from '../../lambdas/shared/ops-state-client';
import { namedClient } from '../../lambdas/shared/named-clients';
import { SDK_RETRY } from '../../lambdas/shared/sdk-retry';
import { metricsNamespace, OPERATOR_CLI } from '../../lambdas/shared/constants';
import { NotFoundError, OperatorError, namedLine } from '../../lambdas/shared/errors';
import { checkPgSslMode, pgClientConfig, resolveConnection } from '../../lambdas/shared/pg-connection';
import { OPERATOR_NAME_ORDER } from './actor';
import { resolveCliActor } from './killswitch';
import { DEPLOYED_NAMES, defaultEnvironmentName, ENV_DEFAULT, notFoundHint, resolveDeployedName } from './resolve';
import { loadCliConfig } from './cli-config';
import { confirmer } from './confirm';
import { exitCodeOf, interruptible, sayWhileStarting } from './interrupt';

interface RecoverGlobals {
  env?: string;
  table?: string;
  stateMachine?: string;
  parameter?: string;
  json?: boolean;
  follow: boolean;
}

function print(line: string): void {
  process.stdout.write(`${line}\n`);
}

/**
 * `text` with the options that chose where `recover` acted (--env, --table, --state-machine,
 * --parameter), as the operator gave them, put into every `atmr-dr recover` and `atmr-dr killswitch`
 * command line it holds (killswitch reads --env and --parameter only), and --env into its `atmr-dr
 * backups <sub>` and `atmr-dr restore` (a dump to restore instead: the environment's backups). Without them, a line run as
 * printed acts on cdk.json's default environment: "atmr-dr killswitch disable" after a cutover of
 * production wrote the default environment's killswitch while production stayed in maintenance. The
 * options go right after the command's name, where its parser reads them whatever follows, so the
 * lines the recovery code builds (lambdas/recovery) are given them here, at the one place they are
 * printed from. Options set by variables (ATMR_OPS_TABLE...) stay in the operator's shell.
 */
export function withRecoverOptions(text: string, g: Pick<RecoverGlobals, 'env' | 'table' | 'stateMachine' | 'parameter'>): string {
  const flags = (pairs: [string, string | undefined][]) => pairs.flatMap(([flag, value]) => (value === undefined ? [] : [` ${flag} ${shellWord(value)}`])).join('');
  // A line the workflow wrote names its environment already (a record's error, a page's text): --env once.
  const options = (name: string, named: boolean) => {
    const env: [string, string | undefined] = ['--env', named ? undefined : g.env];
    if (name === 'recover') return flags([env, ['--table', g.table], ['--state-machine', g.stateMachine], ['--parameter', g.parameter]]);
    if (name === 'killswitch') return flags([env, ['--parameter', g.parameter]]);
    // A dump to restore instead (`backups list`, `restore`): the backups of the environment recovered.
    return flags([env]);
  };
  // `backups` takes --env on its subcommand: after `backups list`, not after `backups`.
  return text.replace(/\batmr-dr (recover|killswitch|backups [a-z]+|restore)(?![\w-])(?=([^"\n;)]*))/g, (command, name: string, rest: string) =>
    `${command}${options(name.split(' ')[0], /(^| )--env /.test(rest))}`,
  );
}

/**
 * The command that starts the recovery a dry run planned, as the last line of the dry run: its time
 * as the plan's UTC instant, not as typed, since a time ago ("5 min ago") run later would restore a
 * later time than the plan showed (the default name follows the time: it stays the plan's too).
 * The options given are kept, each value as one shell word; the reason is put in after
 * withRecoverOptions, which would also edit a reason that names "atmr-dr recover".
 */
function startCommand(g: RecoverGlobals & { newInstance?: string }, toTime: string, reason: string): string {
  const newInstance = g.newInstance !== undefined ? ` --new-instance ${shellWord(g.newInstance)}` : '';
  const noFollow = g.follow === false ? ' --no-follow' : '';
  return `${withRecoverOptions(`${OPERATOR_CLI} recover`, g)} --to-time ${shellWord(toTime)}${newInstance}${noFollow} --reason ${shellWord(reason)}`;
}

/** Asks before changing production; refuses without a terminal unless --yes (confirm.ts). */
async function confirmOrRefuse(question: string, yes: boolean | undefined, what: string): Promise<void> {
  if (!(await confirmer(yes)(`${what}: ${question}`))) throw new OperatorError(`${what}: not confirmed, nothing changed`, 1);
}

/**
 * What a cutover leaves behind: the copy holds production's data as of the restore time, and every
 * write production took since (the minutes between the bad DELETE and now) stays on the old
 * instance only. Said before the operator confirms, so that a cutover is not taken for a rewind of
 * the bad change alone (docs/recovery.md gives the other way: copy the rows back, keep production).
 */
function writesNotOnCopy(record: Pick<RecoveryRecord, 'toTime' | 'sourceInstance'>, nowMs = Date.now()): string {
  const toTime = new Date(record.toTime);
  return `production's writes after ${utcSecond(toTime.getTime(), nowMs)} (${formatAge(Math.max(0, (nowMs - toTime.getTime()) / 1000))} ago) are not on the copy: they stay on ${record.sourceInstance}`;
}

function statusLine(record: RecoveryRecord, execution?: { status: string; error?: string }): string {
  const parts = [`recovery ${record.recoveryId}: ${record.status}`, `${record.sourceInstance} as of ${record.toTime} -> ${record.newInstance}`];
  if (record.newInstanceHost) parts.push(`endpoint ${record.newInstanceHost}:${record.newInstancePort ?? 5432}`);
  if (execution) parts.push(`workflow ${execution.status}${execution.error ? ` (${execution.error})` : ''}`);
  if (record.recoverySeconds !== undefined) parts.push(`${record.recoverySeconds} s since the request`);
  parts.push(`asked by ${record.actor}: ${record.reason}`);
  if (record.error) parts.push(`error: ${record.error}`);
  if (record.cutoverError) parts.push(`cutover error: ${record.cutoverError}`);
  return parts.join('; ');
}

/**
 * How long a recovery whose workflow runs has been restoring, counted from its request (the restore
 * starts right after it): RDS says nothing of its progress, and a restore takes many minutes, so
 * the operator who re-attaches reads whether it has just begun or has run for an hour. Undefined
 * for any other status, or a workflow that ended (its own line says what is left to do).
 */
function restoringFor(record: RecoveryRecord, execution: { status: string } | undefined, nowMs = Date.now()): string | undefined {
  if (record.status !== 'restoring' || execution?.status !== 'RUNNING') return undefined;
  const since = Date.parse(record.requestedAt);
  return `restoring for ${formatAge(Math.max(0, (nowMs - since) / 1000))} (since the request at ${utcMinute(since)})`;
}

/** The cutover journal and its lease, for `recover status`: what was done, what may have been, who holds it. */
function printJournal(record: RecoveryRecord, out: (line: string) => void, nowMs = Date.now()): void {
  if (!record.journal?.length && !record.leaseOwner) return;
  out('cutover journal (each step written before and after it acts):');
  for (const entry of record.journal ?? []) {
    out(`  ${entry.startedAt}  ${entry.state.padEnd(11)} ${entry.step}${entry.detail ? `: ${entry.detail}` : ''} (by ${entry.by})`);
  }
  if (record.leaseOwner) {
    const until = new Date(record.leaseExpiresAt ?? 0).toISOString();
    out(`  lease: ${record.leaseOwner}, ${(record.leaseExpiresAt ?? 0) > nowMs ? `live until ${until}` : `stale since ${until} (its holder stopped renewing it: presumed dead)`}`);
  }
  if (record.status === 'cutting-over') {
    const resume = `continue it with "${OPERATOR_CLI} recover cutover ${record.recoveryId} --resume --yes"`;
    // Past the reopening, production may take writes on the copy: --undo only once it is back on the old instance by hand (cutover.ts).
    const reopened = reopeningStarted(record.journal);
    // A killswitch someone set during the cutover (a hold) stopped it before the rename (cutover.ts held).
    if (reopened?.state === 'by-hand') {
      out(`next: the cutover stopped at the killswitch someone set during it (NOT reopened, above): ${record.sourceInstance} is NOT renamed, in case they go back to it; once they lift it, ${resume}; if they go back to ${record.sourceInstance} instead, "${OPERATOR_CLI} recover cutover ${record.recoveryId} --undo --yes" gives the steps by hand until the API's endpoint names ${record.sourceInstance} again, then closes the cutover`);
      return;
    }
    out(`next: the cutover stopped or is running: ${reopened ? `${resume} (the killswitch was reopened: users may have written on ${record.newInstance}), ${undoPastReopening(record)}` : `${resume}, or put back what it changed with "${OPERATOR_CLI} recover cutover ${record.recoveryId} --undo --yes"`}`);
  }
}

/**
 * What is left once production runs on the copy (the cutover's last lines, and `recover status` of a
 * cut-over recovery). An RDS-managed database secret (`...:secret:rds!...`) belongs to the instance
 * the recovery replaced: RDS rotates its password on that instance only (every 7 days by default)
 * and deletes the secret with it, while the copy keeps the password it was restored with (or the
 * one the workflow set). Left as it is, the API stops logging in to the copy at the next rotation,
 * days after a recovery that went well: moving the API to a secret the copy owns comes first.
 * `database`: the config as it is now; a step it shows done is not printed again (`recover status`
 * runs days later too, after steps 10 and 11). `copySecretArn`: the copy's own RDS-managed secret
 * (MasterUserSecret), when known: the configured secret being it means step 11 is done.
 */
export function afterCutoverSteps(
  record: Pick<RecoveryRecord, 'sourceInstance' | 'newInstance' | 'replacedInstance'> & Partial<Pick<RecoveryRecord, 'recoveryId' | 'journal'>>,
  database: { readonly instanceIdentifier: string; readonly secretArn: string },
  copySecretArn?: string,
  /** `recovery.newInstancePrefix` as cdk.json sets it (undefined: the default, derived from database.instanceIdentifier). */
  explicitPrefix?: string,
  /**
   * The copy's DeletionProtection as RDS describes it now, or as the cutover left it (`{ refused }`:
   * its ModifyDBInstance failed, with why); undefined: not known, the step is printed.
   */
  copyDeletionProtection?: boolean | { readonly refused: string },
  /** Whether RDS still shows the old instance under its name (false: renamed since, by hand); undefined: not known, its step is printed. */
  oldUnrenamed?: boolean,
): string[] {
  const copy = record.newInstance;
  const old = record.replacedInstance ? `${record.sourceInstance} (now ${record.replacedInstance})` : record.sourceInstance;
  const databaseSecretArn = database.secretArn;
  const steps: string[] = [];
  // The copy is named under the prefix the recovery used: kept as it is, an explicit prefix would put
  // production in the recovery workflow's reach (it may reset and delete what the prefix covers), and
  // synth refuses that once the config names the copy. The default follows the new name, but cut to
  // 46 characters it covers a copy of 46 or more (a source name of 28 or more): synth refuses it too.
  const defaultAfter = defaultNewInstancePrefix(copy);
  const prefix =
    explicitPrefix !== undefined
      ? copy.startsWith(explicitPrefix)
        ? `, and recovery.newInstancePrefix to a prefix ${copy} does not start with (not "${explicitPrefix}")`
        : ''
      : copy.startsWith(defaultAfter)
        ? `, and recovery.newInstancePrefix to a prefix ${copy} does not start with, e.g. "${prefixNotCovering(copy)}" (the default, "${defaultAfter}", cut to 46 characters, covers it)`
        : '';
  // The on-call's role may not rename the old instance (an admin does): the commands, until RDS shows it renamed.
  const renamedTo = record.journal?.find((e) => e.step === CUTOVER_STEPS.rename)?.undo?.renamedTo;
  if (!record.replacedInstance && renamedTo && record.recoveryId && oldUnrenamed !== false) {
    steps.push(`next: rename and tag ${record.sourceInstance}, the instance production ran on (the cutover could not); someone allowed to change it runs: ${renameCommands(record.sourceInstance, renamedTo, copy, record.recoveryId)}`);
  }
  if (database.instanceIdentifier !== copy) steps.push(`next: set database.instanceIdentifier and database.host to ${copy}${prefix} in cdk.json and redeploy, so backups and alarms follow the new instance`);
  if (databaseSecretArn.includes(':secret:rds!') && databaseSecretArn !== copySecretArn) {
    steps.push(
      `next, before the secret's next rotation: ${databaseSecretArn} is managed by RDS for ${old}, not for ${copy}: RDS rotates its password on that instance only (every 7 days by default) and deletes it with that instance, while ${copy} keeps its own password, so the API stops logging in at the next rotation. With the killswitch in maintenance: aws rds modify-db-instance --db-instance-identifier ${copy} --manage-master-user-password --apply-immediately (its password changes at once), point the API and database.secretArn at the copy's new secret (MasterUserSecret in aws rds describe-db-instances --db-instance-identifier ${copy}), redeploy both, then lift the killswitch; delete ${record.replacedInstance ?? 'the old instance'} only after that`,
    );
  }
  // The restore leaves deletion protection off (abandon must be able to delete the copy); the
  // cutover turns it on, and when it could not (or for a copy cut over before it did), production is
  // one delete-db-instance away from being lost again: the command, with the cutover's reason.
  if (copyDeletionProtection !== true) {
    const why = typeof copyDeletionProtection === 'object' ? `the cutover could not turn it on: ${copyDeletionProtection.refused}; once the cause is gone (the copy available, the right granted)` : 'restored without it, so that abandon could delete it';
    steps.push(`next: turn deletion protection on for ${copy}, production now (${why}): aws rds modify-db-instance --db-instance-identifier ${copy} --deletion-protection --apply-immediately`);
  }
  return steps;
}

/**
 * The copy as RDS describes it, for `recover status` of a cut-over recovery days later (its own
 * RDS-managed secret, its deletion protection); undefined when the describe fails (the steps are then
 * printed: better once too often than never).
 */
async function cutOverCopy(rds: RDSClient, record: RecoveryRecord): Promise<DBInstance | undefined> {
  if (record.status !== 'cut-over') return undefined;
  return describeInstance(rds, record.newInstance).catch(() => undefined);
}

/**
 * Whether the instance a cut-over recovery replaced still holds its old name (its resource id under
 * it), when the cutover could not rename it; undefined when not known (the describe failed: the
 * step is printed).
 */
async function oldUnrenamed(rds: RDSClient, record: RecoveryRecord): Promise<boolean | undefined> {
  if (record.status !== 'cut-over' || record.replacedInstance) return undefined;
  const old = await describeInstance(rds, record.sourceInstance).catch(() => null);
  if (old === null) return undefined;
  return old !== undefined && (!record.sourceResourceId || old.DbiResourceId === record.sourceResourceId);
}

/**
 * The killswitch now, for `recover status` of a cut-over recovery whose cutover put back a
 * maintenance or degraded set before it (stillShutOut); undefined when not asked or not known (the
 * parameter's name or value could not be read: the closing line is said, better once too often).
 */
async function killswitchLeft(ssm: SSMClient, g: Pick<RecoverGlobals, 'parameter' | 'env'>, record: RecoveryRecord): Promise<KillswitchValue | undefined> {
  if (record.status !== 'cut-over' || !stillShutOut(record)) return undefined;
  try {
    const parameterName = await resolveDeployedName(DEPLOYED_NAMES.killswitchParameter, { flagValue: g.parameter, envName: g.env });
    return (await readKillswitch(ssm, parameterName)).value ?? undefined;
  } catch {
    return undefined;
  }
}

/** Deletion protection of the copy as the cutover's step left it: on (done now or before), refused (with why), or not known. */
function deletionProtectionOf(result: CutoverResult): boolean | { refused: string } | undefined {
  const step = result.steps.find((s) => s.step === CUTOVER_STEPS.protect);
  if (step?.outcome === 'done' || step?.outcome === 'skipped') return true;
  return step?.outcome === 'failed' ? { refused: step.detail } : undefined;
}

/**
 * A killswitch in maintenance before the cutover (the runbook's first step: the on-call closes
 * production before anything else), or degraded, is put back so by the cutover's last killswitch
 * step, as the operator left it: the cutover ends well, exit 0, with users still shut out (or
 * served a degraded API). Said in the last line, with the command that serves them in full, and
 * again by `recover status`; undefined when the killswitch was normal before. `now`: the killswitch
 * as read later (`recover status`): a value other than the one put back, or no longer in effect,
 * says nothing (someone let users in since); undefined: not known, the line is said.
 */
function stillShutOut(cutover: { readonly recoveryId: string; readonly journal?: readonly JournalEntry[] }, now?: KillswitchValue): string | undefined {
  const before = cutover.journal?.find((e) => e.step === CUTOVER_STEPS.maintenance)?.undo?.killswitch?.previous;
  const mode = before && effectiveMode(before);
  if (!before || (mode !== 'maintenance' && mode !== 'degraded')) return undefined;
  // Someone set normal during the cutover: that value was not put back, users are served.
  if (cutover.journal?.find((e) => e.step === CUTOVER_STEPS.reopen)?.detail?.startsWith(ALREADY_REOPENED)) return undefined;
  if (now && (now.mode !== before.mode || now.reason !== before.reason || now.actor !== before.actor || effectiveMode(now) !== mode)) return undefined;
  const until = before.expiresAt ? ` (until ${before.expiresAt}, its expiry)` : '';
  const setBy = `as it was before the cutover (set by ${before.actor}: ${before.reason})`;
  const disable = `${OPERATOR_CLI} killswitch disable --reason "recovery ${cutover.recoveryId} cut over"`;
  return mode === 'maintenance'
    ? `users are still shut out: the killswitch is in maintenance${until}, ${setBy}; to let them in: ${disable}`
    : `users still get a degraded API: the killswitch is degraded${until}, ${setBy}; to serve them in full: ${disable}`;
}

/**
 * Where a failed cutover stopped: its failed step; when none was journaled as failed (a step's
 * preparation failed before it was), after the last step done, by this run or an earlier one (a
 * resume's `skipped` ones), or before its first step when none was.
 */
function failedAt(result: CutoverResult): string {
  const step = result.steps.find((s) => s.outcome === 'failed' && s.step !== ANNOUNCE)?.step;
  if (step) return `at "${step}"`;
  const done = result.steps.findLast((s) => s.outcome === 'done' || (s.outcome === 'skipped' && s.detail.startsWith(DONE_BEFORE)))?.step;
  return done ? `after "${done}"` : 'before its first step';
}

function printCutover(result: CutoverResult, out: (line: string) => void): void {
  out(`cutover of recovery ${result.recoveryId}:`);
  for (const step of result.steps) out(`  ${step.startedAt}  ${String(step.seconds).padStart(5)} s  ${step.outcome.padEnd(11)} ${step.step}: ${step.detail}`);
  const rto = result.recoverySeconds !== undefined ? `; recovery ${result.recoverySeconds} s since the request against the RTO objective ${result.rtoObjectiveSeconds} s (${result.recoverySeconds <= result.rtoObjectiveSeconds ? 'met' : 'MISSED'})` : '';
  out(`  total ${result.totalSeconds} s${rto}`);
}

/**
 * --to-time, --new-instance, --reason and --dry-run belong to `recover` itself (start a recovery):
 * given to status, cutover or abandon they would be ignored, and the operator may have meant to
 * start one.
 */
function refuseStartOptions(command: string, globals: { toTime?: string; newInstance?: string; reason?: string; dryRun?: boolean }): void {
  const given = [globals.toTime !== undefined && '--to-time', globals.newInstance !== undefined && '--new-instance', globals.reason !== undefined && '--reason', globals.dryRun && '--dry-run'].filter(Boolean);
  if (given.length) {
    const them = given.length > 1 ? 'them' : 'it';
    throw new OperatorError(`${command}: ${given.join(', ')} ${given.length > 1 ? 'are' : 'is'} for starting a recovery and not read here: drop ${them}, or give ${them} to "${OPERATOR_CLI} recover" alone to start one`, 2);
  }
}

/**
 * --no-follow is read by starting a recovery and by `recover status` (a running workflow is
 * followed unless it is given); cutover and abandon follow nothing, and would ignore it.
 */
function refuseNoFollow(command: string, globals: { follow?: boolean }): void {
  if (globals.follow === false) {
    throw new OperatorError(`${command}: --no-follow is read by "${OPERATOR_CLI} recover" and "${OPERATOR_CLI} recover status" only; ${command} follows no workflow: drop it`, 2);
  }
}

/** A recovery id as `atmr-dr recover` prints it, checked before the ops-state table is looked for. */
function checkRecoveryId(command: string, id: string): void {
  if (!RECOVERY_ID_PATTERN.test(id)) {
    throw new OperatorError(`${command}: "${id}" is not a recovery id (${RECOVERY_ID_FORM}, as "${OPERATOR_CLI} recover" printed it); ${STATUS_WITHOUT_ID}`, 2);
  }
}

/**
 * Who starting a recovery records (resolveCliActor), as its dry run says it in `actorAtStart`: the
 * dry run stays offline and does not ask STS (a silent one held the plan for seconds), so its plan's
 * actor is null rather than a name the start would not record (a login name, when STS answers).
 */
const ACTOR_AT_START = `your STS caller ARN, read when the recovery starts; when STS cannot be read, ${OPERATOR_NAME_ORDER}`;

/** When a cut-over recovery finished its cutover: its last journaled step's end, else the record's last write. */
function cutOverAt(record: RecoveryRecord): string {
  return record.journal?.findLast((e) => e.finishedAt)?.finishedAt ?? record.updatedAt;
}

/** What the caller read of the store already (`recover status`), which latestCutOver reads no second time. */
interface AlreadyRead {
  /** The listing of the last 10 recoveries (listRecoveryIds), newest first. */
  readonly ids?: readonly string[];
  readonly records?: readonly RecoveryRecord[];
}

/**
 * The latest recovery whose cutover finished (`cut-over`) among the last 10 (listRecoveryIds, newest
 * first). Read together: each record is an item of its own key, which no one query returns, and
 * usually none was cut over, so every one is read, except those in `read`. A store or record that
 * cannot be read counts as none (the start and the cutover read the store again and fail on their own).
 */
async function latestCutOver(store: StoreDeps, read: AlreadyRead = {}): Promise<RecoveryRecord | undefined> {
  const ids = read.ids ?? (await listRecoveryIds(store, 10).catch((): string[] => []));
  const records = await Promise.all(ids.map((id) => read.records?.find((record) => record.recoveryId === id) ?? getRecovery(store, id).catch(() => undefined)));
  return records.find((record) => record?.status === 'cut-over');
}

/** The clients that read production's endpoint (recovery.endpoint: an SSM parameter or a secret's host). */
type EndpointReaders = Parameters<typeof readEndpoint>[0];

/** Where the API's database endpoint (recovery.endpoint, the cutover's) points now, or why it could not be read. */
async function productionEndpoint(deps: EndpointReaders, endpoint: EndpointSwitch): Promise<{ value: string } | { unread: string }> {
  return readEndpoint(deps, endpoint).then(
    (value) => ({ value }),
    (error: unknown) => ({ unread: namedLine(error) }),
  );
}

/**
 * A recovery restores from database.instanceIdentifier. After a cutover production runs on the copy,
 * and until cdk.json names it (the cutover's "next" line), a new recovery would restore the old
 * instance, the one the cutover replaced, and cutting it over would put production back on data
 * without any of the writes it took on the copy since. When the latest finished cutover among the
 * recent recoveries replaced `source` (starting a recovery: the configured instance; cutting one
 * over: the instance it restored), the API's endpoint decides, read then only: naming the copy, or
 * neither instance, or unreadable, the command is refused before anything is started or changed;
 * naming `source` again (production taken back by hand, docs/recovery.md "Going back after a
 * cutover"), it goes on, said in one line on stderr. No flag picks another source: the endpoint or
 * the config is the fix.
 */
async function refuseIfReplaced(store: StoreDeps, readers: EndpointReaders, command: string, source: string, envName: string, endpoint: EndpointSwitch, recoveryId?: string): Promise<void> {
  const latest = await latestCutOver(store);
  if (!latest || latest.recoveryId === recoveryId || latest.sourceInstance !== source) return;
  const copy = latest.newInstance;
  const head = `recovery ${latest.recoveryId} cut production (${envName}) over to ${copy} at ${cutOverAt(latest)}`;
  const read = await productionEndpoint(readers, endpoint);
  if ('value' in read) {
    const names = endpointNames(read.value, latest);
    if (names === 'old') {
      process.stderr.write(`atmr-dr: ${command}: ${head}, and production's endpoint (${describeEndpoint(endpoint)}: ${read.value}) names ${source} again (taken back by hand): the recovery proceeds from ${source}\n`);
      return;
    }
    if (names === 'neither') {
      const fix = recoveryId
        ? `point it at the instance production runs on, then run the command again (if that is ${copy}: abandon recovery ${recoveryId}, it restored ${source}, not production)`
        : `point it, or database.instanceIdentifier and database.host in cdk.json, at the instance production runs on, then start it again`;
      throw new OperatorError(`${command}: ${head}, replacing ${source}, and production's endpoint (${describeEndpoint(endpoint)}) reads "${read.value}", which names neither ${copy} nor ${source}: which one production runs on is not known; ${fix}`, 2);
    }
  }
  const what = recoveryId
    ? `recovery ${recoveryId} restored ${source}, not production: cutting it over would lose production's writes on ${copy}; abandon it ("${OPERATOR_CLI} recover abandon ${recoveryId}"), then start a new recovery once database.instanceIdentifier and database.host name ${copy} in cdk.json`
    : `database.instanceIdentifier still names ${source}: a recovery would restore it, not production; set database.instanceIdentifier and database.host to ${copy} in cdk.json, then start it again`;
  // Unread, production may run on the copy: refused as if it did, with why it could not be told.
  const unread = 'unread' in read ? `; production's endpoint (${describeEndpoint(endpoint)}) could not be read (${read.unread}): if production was taken back to ${source} by hand, check that endpoint and your right to read it, then run the command again` : '';
  throw new OperatorError(`${command}: ${head}, replacing ${source}: ${what}${unread}`, 2);
}

/**
 * For `recover status`: where production's endpoint points when one of the recent recoveries was cut
 * over, and which instance that is (endpointNames); a failure to read it is said, never the command's.
 */
async function endpointStatusLine(store: StoreDeps, readers: EndpointReaders, endpoint: EndpointSwitch, alreadyRead: AlreadyRead): Promise<string | undefined> {
  const latest = await latestCutOver(store, alreadyRead);
  if (!latest) return undefined;
  const read = await productionEndpoint(readers, endpoint);
  if ('unread' in read) return `production's endpoint (${describeEndpoint(endpoint)}) could not be read: ${read.unread}`;
  const which = {
    copy: `${latest.newInstance}, the copy recovery ${latest.recoveryId} cut over to`,
    old: `${latest.sourceInstance}, the instance recovery ${latest.recoveryId} replaced: taken back by hand`,
    neither: `neither ${latest.newInstance}, the copy recovery ${latest.recoveryId} cut over to, nor ${latest.sourceInstance}, the instance it replaced`,
  }[endpointNames(read.value, latest)];
  return `production's endpoint: ${read.value} (${which})`;
}

/**
 * Going back to the old instance after a finished cutover, by hand (no undo may: production may have
 * taken writes on the copy): the commands in the cutover's order, ready to paste, from the endpoint
 * the cutover journaled before it switched. Users are let in only once the services are stable on
 * the old endpoint. A renamed old instance answers under its new name: RDS changes only the first
 * label of its address. Undefined when the journal holds no previous endpoint.
 */
function goBackCommands(record: RecoveryRecord, endpoint: EndpointSwitch, ecs: CutoverSettings['ecs']): string[] | undefined {
  const previous = record.journal?.find((e) => e.step === CUTOVER_STEPS.endpoint)?.undo?.endpoint?.previous;
  if (!previous) return undefined;
  const [first, ...rest] = previous.split('.');
  const value = record.replacedInstance && first.toLowerCase() === record.sourceInstance.toLowerCase() ? [record.replacedInstance, ...rest].join('.') : previous;
  const reason = shellWord(`going back to ${record.replacedInstance ?? record.sourceInstance} from recovery ${record.recoveryId}`);
  return [
    `${OPERATOR_CLI} killswitch enable --mode maintenance --reason ${reason} --expires ${NO_EXPIRY} --yes`,
    endpointWriteCommand(endpoint, value),
    ...(ecs
      ? [...ecs.serviceNames.map((service) => `aws ecs update-service --cluster ${ecs.clusterArn} --service ${service} --force-new-deployment`), `aws ecs wait services-stable --cluster ${ecs.clusterArn} --services ${ecs.serviceNames.join(' ')}`]
      : ["# redeploy the API's services and wait until they are stable"]),
    `${OPERATOR_CLI} killswitch disable --reason ${reason} --yes`,
  ];
}

/** `recover --to-time ... | status [ID] | cutover ID --yes | abandon ID`: RDS point-in-time recovery, verified, then a guided cutover. */
export function registerRecoverCommands(program: Command): void {
  const recover = program
    .command('recover')
    .description('RDS point-in-time recovery to a new instance (a Step Functions workflow), verified against production, then a guided cutover')
    // Required of `recover` itself only (starting a recovery), not of status, cutover or abandon:
    // listed under their own heading, so that "(required)" above the subcommands is not read as theirs.
    .optionsGroup('To start a recovery (recover alone, not status, cutover or abandon):')
    .requiredOption('--to-time <time>', 'time to restore to: ISO 8601 with a zone, e.g. 2026-11-30T14:02:00Z, or "5 minutes ago"')
    .option('--new-instance <name>', 'name of the new instance (default: <prefix><yyyymmddhhmm>; must start with the configured prefix)')
    .requiredOption('--reason <text>', 'why, e.g. "bookings deleted by migration 4f2a at 14:05": recorded with who asked')
    .option('--dry-run', 'check the time, the name and PITR, print the plan, start nothing (STS not asked: with --json, request.actor is null and actorAtStart says who the start records)')
    .option('--no-follow', 'return once the workflow started (follow it later with "recover status ID")')
    .optionsGroup('Options:')
    .option('--env <name>', `cdk.json environment (default: ${ENV_DEFAULT})`)
    .option('--table <name>', 'ops-state table (default: $ATMR_OPS_TABLE, else the Data stack output)')
    .option('--state-machine <arn>', 'recovery workflow (default: $ATMR_RECOVERY_STATE_MACHINE, else the Ops stack output)')
    .option('--parameter <name>', 'killswitch parameter (default: $KILLSWITCH_PARAMETER, else the Data stack output of --env, else its config)')
    .option('--json', 'print results as JSON');
  // Read by starting a recovery only (status, cutover and abandon refuse them: refuseStartOptions;
  // --no-follow, refuseNoFollow, status declaring its own): left out of the subcommands' help
  // (bin/atmr-dr.ts visibleGlobalOptions).
  for (const option of recover.options) {
    if (option.long === '--new-instance' || option.long === '--dry-run' || option.long === '--no-follow') Object.assign(option, { ownActionOnly: true });
  }

  const globals = () => recover.opts<RecoverGlobals & { toTime?: string; newInstance?: string; reason?: string; dryRun?: boolean }>();
  /** A line for the operator, its command lines carrying the options given (withRecoverOptions). */
  const say = (line: string) => print(withRecoverOptions(line, globals()));
  /** An action whose refusals and failures say their command lines with the options given, as say does. */
  const carrying =
    <A extends unknown[]>(action: (...args: A) => Promise<void>) =>
    async (...args: A): Promise<void> => {
      try {
        await action(...args);
      } catch (error) {
        // A name not found keeps its parts: the CLI puts the region it was looked for in between them.
        if (error instanceof NotFoundError) throw new NotFoundError(withRecoverOptions(error.subject, globals()), withRecoverOptions(error.fix, globals()), { cause: error });
        if (error instanceof OperatorError) throw new OperatorError(withRecoverOptions(error.message, globals()), error.exitCode, { cause: error });
        throw error;
      }
    };
  const context = async () => {
    const g = globals();
    const envName = g.env ?? defaultEnvironmentName();
    const config = loadCliConfig(envName);
    // --env as given, not envName, in every lookup: a name not found without --env then says it was
    // looked for in the default environment, and which others there are (otherEnvironmentHint).
    const tableName = await resolveDeployedName(DEPLOYED_NAMES.opsTable, { flagValue: g.table, envName: g.env });
    const store: StoreDeps = {
      ddb: DynamoDBDocumentClient.from(opsStateDynamoDB(), { marshallOptions: { removeUndefinedValues: true } }),
      tableName,
    };
    return {
      g,
      envName,
      config,
      store,
      sfn: namedClient(new SFNClient(SDK_RETRY), 'Step Functions'),
      rds: namedClient(new RDSClient(SDK_RETRY), 'RDS'),
      events: namedClient(new EventBridgeClient(SDK_RETRY), 'EventBridge'),
      ssm: namedClient(new SSMClient(SDK_RETRY), 'SSM'),
      secretsManager: namedClient(new SecretsManagerClient(SDK_RETRY), 'SecretsManager'),
    };
  };

  /**
   * The workflow of a recovery whose record has no execution ARN: a start stopped between the lock
   * and StartExecution's answer (Ctrl-C while it hung, a crash) may have launched it all the same,
   * under the recovery's name: the state machine to look in. That workflow moves the record on by
   * itself (verifying, unverified, ...) and an abandon that stopped half-way leaves it "abandoning":
   * whatever the status, no ARN means look by name. Undefined when it cannot be named, unless
   * `required` (abandon: deleting the copy under a workflow one could not look for is refused with
   * the reason the name could not be read).
   */
  const unrecordedWorkflow = async (g: RecoverGlobals, record: RecoveryRecord, required = false): Promise<string | undefined> => {
    if (record.executionArn) return undefined;
    const named = resolveDeployedName(DEPLOYED_NAMES.recoveryStateMachine, { flagValue: g.stateMachine, envName: g.env });
    return required ? named : named.catch(() => undefined);
  };

  /**
   * The workflow's state; one found by name only and absent was never started, and a recorded one
   * Step Functions no longer keeps (90 days after it ended) is left out. Any other failure is the
   * command's, as one line (a refusal names states:DescribeExecution and the execution): a status
   * without its workflow reads as one whose workflow ended, and the on-call would act on it.
   */
  const executionOf = (sfn: SFNClient, record: RecoveryRecord, byName?: string) =>
    describeExecution(sfn, record.executionArn ?? byName).catch((error: unknown) => {
      if ((error as { name?: string }).name !== 'ExecutionDoesNotExist') throw error;
      return record.executionArn ? undefined : { status: 'NOT STARTED' };
    });

  /** Follows the workflow until it ends; returns the record and the execution as they are then. */
  const follow = async (sfn: SFNClient, store: StoreDeps, id: string, json: boolean, byName?: string): Promise<{ record: RecoveryRecord; execution?: { status: string; error?: string } }> => {
    const pollMs = Number(process.env.ATMR_RECOVER_POLL_SECONDS ?? 15) * 1000;
    let last = '';
    for (;;) {
      const record = await getRecovery(store, id);
      const execution = await describeExecution(sfn, record.executionArn ?? byName);
      const line = statusLine(record, execution);
      // The time restoring goes with each line printed, not into the comparison: a line a minute would say nothing new.
      const elapsed = restoringFor(record, execution);
      if (line !== last && !json) process.stderr.write(`${new Date().toISOString()} ${line}${elapsed ? `; ${elapsed}` : ''}\n`);
      last = line;
      if (!execution || execution.status !== 'RUNNING') return { record, execution };
      await new Promise((resolve) => setTimeout(resolve, pollMs));
    }
  };

  const report = (record: RecoveryRecord, json: boolean, config: EnvironmentConfig, execution?: { status: string; error?: string }, copy?: DBInstance, oldUnrenamed?: boolean, killswitch?: KillswitchValue, endpointLine?: string) => {
    if (json) {
      print(JSON.stringify({ ...record, ...(execution && { workflow: execution }) }));
      return;
    }
    say(statusLine(record, execution));
    const elapsed = restoringFor(record, execution);
    if (elapsed) say(elapsed);
    if (record.verification) say(formatVerification(record.verification));
    printJournal(record, say);
    if (endpointLine) say(endpointLine);
    const reset = record.passwordReset;
    if (reset) {
      say(
        `password reset: ${reset.reason}; the workflow set the copy's master password to the secret's current one (rotated after the target time) at ${reset.requestedAt}, ${reset.appliedAt ? `applied at ${reset.appliedAt}` : 'not applied yet'}`,
      );
    }
    if (record.status === 'verifying' && reset) {
      // Only a running workflow verifies again: one that ended (stopped by hand, timed out) leaves
      // the record "verifying" with nobody left to change it.
      if (!execution || execution.status === 'RUNNING') {
        say(`next: wait: the workflow verifies the copy again once RDS has applied its new password; follow it with "${OPERATOR_CLI} recover status ${record.recoveryId}"`);
      } else {
        say(
          `next: the workflow ended (${execution.status}) before it verified ${record.newInstance} again: the copy is kept but not verified, so it cannot be cut over: "${OPERATOR_CLI} recover abandon ${record.recoveryId}" (deleted after a final snapshot), then start a new recovery`,
        );
      }
    }
    // A workflow that ended without writing its outcome (stopped by hand in the console, which
    // Recovery-WorkflowFailed does not page; timed out; its cleanup could not write): nothing will
    // change the record any more, and it holds the lock that refuses every new recovery.
    if ((record.status === 'restoring' || (record.status === 'verifying' && !reset)) && execution && execution.status !== 'RUNNING') {
      say(
        `next: ${execution.status === 'NOT STARTED' ? 'the workflow never started (the start stopped before Step Functions took it)' : `the workflow ended (${execution.status})`} with the recovery still "${record.status}": nothing will change it any more, and it holds the one-recovery lock: "${OPERATOR_CLI} recover abandon ${record.recoveryId}" deletes ${record.newInstance} and frees the lock, then start a new recovery`,
      );
    }
    if (record.status === 'verified') say(`next: ${OPERATOR_CLI} recover cutover ${record.recoveryId} --yes   (or: ${OPERATOR_CLI} recover abandon ${record.recoveryId})`);
    if (record.status === 'unverified') {
      say(`next: ${record.newInstance} is NOT verified: ${unreadCause(record.verification)} (a fresh copy loads its blocks from S3 on first read); ${unverifiedNextStep(record.recoveryId)}`);
    }
    // A copy that became available is kept by a failed workflow: say what can be done with it.
    if (record.status === 'failed' && record.newInstanceHost) {
      say(
        `next: ${record.newInstance} is kept (it became available) but is not verified, so it cannot be cut over: read the error above, then "${OPERATOR_CLI} recover abandon ${record.recoveryId}" (deleted after a final snapshot) and start a new recovery`,
      );
    }
    if (record.status === 'cut-over') {
      for (const line of afterCutoverSteps(record, config.database, copy?.MasterUserSecret?.SecretArn, config.recovery.newInstancePrefix, copy?.DeletionProtection, oldUnrenamed)) say(line);
      // The cutover's closing line, as long as the killswitch it put back still holds users out.
      const shutOut = stillShutOut(record, killswitch);
      if (shutOut) say(shutOut);
    }
    // Claimed by an abandon that stopped before the end (a refused deletion, a workflow it could not read).
    if (record.status === 'abandoning') say(`next: the abandon stopped before the end: run "${OPERATOR_CLI} recover abandon ${record.recoveryId}" again to finish it`);
  };

  recover.action(
    carrying(async () => {
    const g = globals();
    const reason = parseRecoveryReason(g.reason);
    // Refused before any AWS call by this machine's clock; a time ago is counted again below by RDS's.
    let toTime = parseToTime(g.toTime);
    checkPitrReach(toTime);
    const ctx = await context();
    await refuseIfReplaced(ctx.store, ctx, 'recover', ctx.config.database.instanceIdentifier, ctx.config.name, endpointSwitch(resolveRecoveryConfig(ctx.config)));
    if (relativeToTimeSeconds(g.toTime ?? '') !== undefined) {
      // "5 min ago" from RDS's clock, as the killswitch's --expires counts from SSM's: a laptop minutes
      // off would restore minutes more or less of the data. The SDK learns the offset from RDS's
      // answer to this read (clock-offset.ts); planning the recovery reads the source again.
      await describeInstance(ctx.rds, ctx.config.database.instanceIdentifier);
      const rdsNow = serviceNow(ctx.rds);
      toTime = parseToTime(g.toTime, rdsNow);
      checkPitrReach(toTime, rdsNow);
      if (!g.json) say(`--to-time "${g.toTime?.trim()}" is ${toTime.toISOString()} (UTC, by RDS's clock)`);
    }
    const recovery = resolveRecoveryConfig(ctx.config);
    const stateMachineArn = g.dryRun ? undefined : await resolveDeployedName(DEPLOYED_NAMES.recoveryStateMachine, { flagValue: g.stateMachine, envName: ctx.g.env });
    const planned = { sourceInstance: ctx.config.database.instanceIdentifier, newInstancePrefix: recovery.newInstancePrefix, toTime, newInstance: g.newInstance, reason };
    const result = await startRecovery(
      { rds: ctx.rds, sfn: ctx.sfn, store: ctx.store },
      // A dry run asks nobody who starts it: its plan says who the start records (ACTOR_AT_START).
      g.dryRun ? { ...planned, dryRun: true } : { ...planned, dryRun: false, actor: await resolveCliActor(), stateMachineArn },
    );
    const plan = `${ctx.config.database.instanceIdentifier} (${result.sourceClass ?? '?'}${result.multiAz ? ', Multi-AZ' : ''}) as of ${result.request.toTime} -> new instance ${result.request.newInstance}; restore window ${result.window.earliest.toISOString()} .. ${result.window.latest.toISOString()}`;
    if (result.dryRun) {
      if (g.json) print(JSON.stringify({ ...result, actorAtStart: ACTOR_AT_START }));
      else {
        say(`dry run, nothing started: ${plan}`);
        print(`next: ${startCommand(g, result.request.toTime, reason)}`);
      }
      return;
    }
    if (!g.json) say(`recovery ${result.request.recoveryId} started: ${plan}\n  workflow ${result.executionArn}\n  follow it: ${OPERATOR_CLI} recover status ${result.request.recoveryId}`);
    if (!g.follow) {
      if (g.json) print(JSON.stringify(result));
      return;
    }
    // Started, the recovery is the workflow's: a stop from here only ends the following.
    const id = result.request.recoveryId;
    sayWhileStarting((signal) => `recover interrupted (received ${signal}) while following: recovery ${id} keeps running (the workflow does not need this process): ${OPERATOR_CLI} recover status ${id}`);
    const { record, execution } = await follow(ctx.sfn, ctx.store, id, Boolean(g.json));
    report(record, Boolean(g.json), ctx.config, execution);
    if (record.status !== 'verified') throw new OperatorError(`recover: recovery ${record.recoveryId} ended "${record.status}"${record.error ? `: ${record.error}` : ''}`, 1);
  }),
    );

  recover
    .command('status')
    .description('a recovery (default: the one in progress, else the latest): its state, verification side by side; follows a running workflow')
    .argument('[id]', `recovery id (${RECOVERY_ID_FORM})`)
    // For its own help, with what it does here (recover's says "return once the workflow
    // started"): the parser gives `recover status --no-follow` to recover's option, which it reads
    // anywhere on the line, and the action reads that one (ctx.g.follow).
    .option('--no-follow', 'print the state once, without following a running workflow')
    .action(
      carrying(async (id: string | undefined) => {
      refuseStartOptions('recover status', globals());
      if (id !== undefined) checkRecoveryId('recover status', id);
      const ctx = await context();
      const chosen = id ?? (await activeRecoveryId(ctx.store));
      // None given or in progress: the latest, from the listing the endpoint's line reads too.
      const ids = chosen === undefined ? await listRecoveryIds(ctx.store, 10) : undefined;
      const target = chosen ?? ids?.[0];
      if (!target) {
        // --json prints one recovery's record as an object, and none as null: a script parsing the
        // output gets valid JSON either way (as incident list --json gives [] for no incident).
        print(ctx.g.json ? 'null' : 'no recovery recorded');
        return;
      }
      let record = await getRecovery(ctx.store, target);
      // A final status (failed, cut-over, abandoned) is written last, by the workflow's own cleanup,
      // a cutover of a copy it had verified or an abandon that stopped it: no workflow is left to
      // follow, and looking for one by name only cost a CloudFormation read (refused to an operator
      // without cloudformation:Describe*) and a Step Functions one. Any other status may have its
      // workflow running and is looked for (abandon needs it so as not to delete a copy under it).
      const stateMachine = FINAL_STATUSES.includes(record.status) ? undefined : await unrecordedWorkflow(ctx.g, record);
      const byName = stateMachine && recoveryExecutionArn(stateMachine, target);
      let execution = await executionOf(ctx.sfn, record, byName);
      if (execution?.status === 'RUNNING' && ctx.g.follow) {
        ({ record } = await follow(ctx.sfn, ctx.store, target, Boolean(ctx.g.json), byName));
        execution = await executionOf(ctx.sfn, record, byName);
      }
      report(
        record,
        Boolean(ctx.g.json),
        ctx.config,
        execution,
        ctx.g.json ? undefined : await cutOverCopy(ctx.rds, record),
        ctx.g.json ? undefined : await oldUnrenamed(ctx.rds, record),
        ctx.g.json ? undefined : await killswitchLeft(ctx.ssm, ctx.g, record),
        ctx.g.json ? undefined : await endpointStatusLine(ctx.store, ctx, endpointSwitch(resolveRecoveryConfig(ctx.config)), { ids, records: [record] }),
      );
    }),
    );

  recover
    .command('cutover')
    .description(
      'put production on a verified recovery: maintenance, endpoint switch, ECS redeploy, /ready and a write, maintenance off; the old instance is renamed and kept. Each step is journaled: --resume continues an interrupted cutover, --undo puts back what it changed',
    )
    .argument('<id>', `recovery id, from ${OPERATOR_CLI} recover status`)
    .option('--resume', 'continue an interrupted cutover from its first step not done')
    .option('--undo', 'put back what an interrupted or failed cutover changed (killswitch, endpoint, tasks); refused once the killswitch was reopened')
    .option('--unverified', 'cut over a copy whose verification could not read its data in time (status "unverified"), on your own check; /ready and the write check still run')
    .option('--yes', 'confirm (required when standard input is not a terminal)')
    .action(
      carrying(async (id: string, opts: { yes?: boolean; resume?: boolean; undo?: boolean; unverified?: boolean }) => {
      if (opts.resume && opts.undo) throw new OperatorError(`recover cutover: --resume and --undo exclude each other: pick one (see "${OPERATOR_CLI} recover status ID")`, 2);
      refuseStartOptions('recover cutover', globals());
      refuseNoFollow('recover cutover', globals());
      checkRecoveryId('recover cutover', id);
      // Read only at the write check on the copy, after the switch: a PGSSLMODE typo is refused now.
      checkPgSslMode(process.env);
      const ctx = await context();
      const record = await getRecovery(ctx.store, id);
      const mode = opts.undo ? 'undo' : opts.resume ? 'resume' : 'start';
      if (record.status === 'cut-over') {
        // Done already: a re-run has nothing to do, and an undo nothing it may put back (production
        // may have taken writes on the copy since). Exit 3 as every refused state (docs/contracts.md).
        const at = cutOverAt(record);
        const old = record.replacedInstance ? `${record.sourceInstance} (kept as ${record.replacedInstance})` : record.sourceInstance;
        const byHand = mode === 'undo' ? goBackCommands(record, endpointSwitch(resolveRecoveryConfig(ctx.config)), resolveRecoveryConfig(ctx.config).ecs) : undefined;
        if (byHand && !ctx.g.json) for (const command of byHand) say(command);
        const steps = byHand ? `the commands above (standard output), in order` : `as docs/recovery.md "Going back after a cutover" says: killswitch maintenance, the API's endpoint set to ${old}'s, the ECS services redeployed, then the killswitch lifted`;
        const line =
          mode === 'undo'
            ? `there is no undo once a cutover is done (production may have taken writes on ${record.newInstance}); going back to ${old} is by hand, ${steps}; the writes made on ${record.newInstance} since are not on ${old}: copy them over before the killswitch is lifted`
            : 'nothing to do';
        throw new OperatorError(`recover cutover${mode === 'start' ? '' : ` --${mode}`}: recovery ${id} was already cut over at ${at}: production runs on ${record.newInstance}; ${line}`, 3);
      }
      if (mode === 'start' && record.status !== 'verified' && record.status !== 'unverified' && record.status !== 'cutover-failed') {
        const hint = record.status === 'cutting-over' ? `a cutover was interrupted: see "${OPERATOR_CLI} recover status ${id}", then --resume or --undo` : `only a verified recovery can be cut over (see "${OPERATOR_CLI} recover status ${id}")`;
        throw new OperatorError(`recover cutover: recovery ${id} is "${record.status}": ${hint}`, 3);
      }
      // Refused here, before the question is asked or printed, as the lease would refuse it after (cutover.ts).
      const from = mode === 'resume' ? ['cutting-over'] : ['cutting-over', 'cutover-failed'];
      if (mode !== 'start' && !from.includes(record.status)) {
        const hint = mode === 'resume' ? 'only an interrupted cutover can be resumed' : 'only an interrupted or failed cutover can be undone';
        throw new OperatorError(`recover cutover --${mode}: recovery ${id} is "${record.status}", expected ${from.join(' or ')}: ${hint} (see "${OPERATOR_CLI} recover status ${id}")`, 3);
      }
      if (mode === 'start') await refuseIfReplaced(ctx.store, ctx, 'recover cutover', record.sourceInstance, ctx.config.name, endpointSwitch(resolveRecoveryConfig(ctx.config)), id);
      const unread = mode === 'start' && record.verification?.unread === true;
      if (mode === 'start' && opts.unverified && !unread) throw new OperatorError(unverifiedFlagRefusal('recover cutover', id, record.status), 2);
      if (unread && !opts.unverified) {
        throw new OperatorError(unverifiedRefusal('recover cutover', id, record.verification), 3);
      }
      const question =
        mode === 'undo'
          ? `put back what the cutover to ${record.newInstance} changed (killswitch, ${ctx.config.name}'s database endpoint, tasks)`
          : `${mode === 'resume' ? 'resume putting' : 'put'} production (${ctx.config.name}) on ${record.newInstance} (as of ${record.toTime})${unread ? ', whose data the verification could NOT read in time (unverified)' : ''}; ${writesNotOnCopy(record)}`;
      const what = `recover cutover${mode === 'start' ? '' : ` --${mode}`}`;
      await confirmOrRefuse(question, opts.yes, what);
      // With --yes nobody read the question: its words (which writes the copy lacks) are the run's first line.
      if (opts.yes && mode !== 'undo' && !ctx.g.json) say(`${what}: ${question}`);
      const recovery = resolveRecoveryConfig(ctx.config);
      const killswitchParameter = await resolveDeployedName(DEPLOYED_NAMES.killswitchParameter, { flagValue: ctx.g.parameter, envName: ctx.g.env });
      const actor = await resolveCliActor();
      // Ctrl-C / SIGTERM / SIGHUP (a dropped SSH session): stop at the next step boundary (or poll of
      // a wait), the journal says where, and the lease is released; a second one quits at once,
      // mid-step, with the lease still held. Each line says what the operator is left with, from the
      // step reached (no step starts once a stop is asked): nothing changed before the first; maybe
      // production in maintenance, until --resume or --undo; past the killswitch's reopening, only
      // --resume (--undo refuses it: production may have taken writes on the copy). A live lease
      // refuses both. Exit codes as the shell and the other commands give them: 130, 143, 129.
      const reached = new Set<string>((record.journal ?? []).map((e) => e.step));
      const phase = () => (mode !== 'undo' && reached.has(CUTOVER_STEPS.reopen) ? 'reopened' : reached.size ? 'changed' : 'unchanged');
      const resume = `"${OPERATOR_CLI} recover cutover ${id} --resume --yes"`;
      const ways = (p: string) => (p === 'reopened' ? resume : `${resume} or "${OPERATOR_CLI} recover cutover ${id} --undo --yes"`);
      const refused = (p: string) => (p === 'reopened' ? '--resume' : '--resume and --undo');
      const started = `the step under way may be left "started" in the journal ("${OPERATOR_CLI} recover status ${id}")`;
      const interrupt = interruptible(() => {
        const p = phase();
        const left = {
          unchanged: 'nothing was changed yet (production as before)',
          changed: `production may be in maintenance (the killswitch), ${started}`,
          reopened: `past the killswitch's reopening (production may take writes on the new instance: --undo is refused), ${started}`,
        }[p];
        const expiry = new Date(Date.now() + LEASE_SECONDS * 1000).toISOString();
        return withRecoverOptions(`the cutover stops where it stands: ${left} and the lease expires in ${LEASE_SECONDS} s at the latest (${expiry}), refusing ${refused(p)} until then; then run ${ways(p)}`, ctx.g);
      });
      interrupt.finishing((signal) => {
        const p = phase();
        const left = {
          unchanged: `nothing was changed yet (production as before), but the recovery stays "cutting-over" until ${ways(p)}`,
          changed: `production may stay in maintenance (the killswitch) until ${ways(p)} (the last line says where it stopped)`,
          reopened: `the killswitch was being given back on the new instance, where production may take writes: --undo is refused from there on, finish with ${ways(p)}`,
        }[p];
        return withRecoverOptions(`recover cutover: ${signal}: stopping at the next step boundary; ${left}; again to quit at once, which leaves the lease live for up to ${LEASE_SECONDS} s (${refused(p)} refused until it expires)`, ctx.g);
      });
      const deps = {
        ssm: ctx.ssm,
        secretsManager: ctx.secretsManager,
        ecs: namedClient(new ECSClient(SDK_RETRY), 'ECS'),
        rds: ctx.rds,
        events: ctx.events,
        cloudwatch: namedClient(new CloudWatchClient(SDK_RETRY), 'CloudWatch'),
        store: ctx.store,
        connectRecovered: async (host: string, port: number) => pgClientConfig(await recoveredConnection(ctx.config, ctx.secretsManager, host, port)),
        stopRequested: () => interrupt.received !== undefined,
        onStep: (step: string) => reached.add(step),
        leaseOwner: `${actor} (pid ${process.pid} on ${os.hostname()})`,
      };
      const settings: CutoverSettings = {
        killswitchParameter,
        endpoint: endpointSwitch(recovery),
        ecs: recovery.ecs,
        readinessUrl: recovery.readinessUrl,
        rtoObjectiveSeconds: recovery.rtoObjectiveSeconds,
        environmentName: ctx.envName,
        metricsNamespace: metricsNamespace(ctx.envName),
      };
      let result: CutoverResult;
      try {
        result =
          mode === 'undo'
            ? await undoCutover(deps, id, settings, actor)
            : await cutover(deps, id, settings, actor, mode, { unverified: Boolean(opts.unverified) }).catch((error: unknown) => {
                // A killswitch parameter not found, named by the default environment: the line says so.
                throw notFoundHint(error, DEPLOYED_NAMES.killswitchParameter, { flagValue: ctx.g.parameter, envName: ctx.g.env });
              });
      } finally {
        interrupt.done();
      }
      const stopped = interrupt.received;
      if (ctx.g.json) print(JSON.stringify(result));
      else printCutover(result, say);
      const notUndone = result.steps.filter((s) => s.outcome === 'undo-failed').map((s) => s.step);
      // An undo that put everything back but whose last write did not take (refused: the lease keeps
      // the recovery locked until it runs out; or the lease taken over by another operator): its
      // warning is then the failure line below, printed once.
      const unrecorded = mode === 'undo' && !result.interrupted && !notUndone.length ? result.unrecorded : undefined;
      if (result.warning && !unrecorded) process.stderr.write(`atmr-dr: warning: ${result.warning}\n`);
      const undoCommand = `"${OPERATOR_CLI} recover cutover ${id} --undo --yes"`;
      // What is left, whether users are still kept out, the first failure (the others follow from
      // it: a killswitch kept closed because the services are not back) and how to finish.
      const notUndoneLine = () => {
        const first = result.steps.find((s) => s.outcome === 'undo-failed')!;
        const unknown = killswitchUnknown(result.steps);
        const closed = keptInMaintenance(result.steps) ? 'production stays in maintenance (the killswitch) until the undo is finished; ' : unknown ? `${unknown}; ` : '';
        // The step's detail (lambdas/recovery) may give the command already, with or without OPERATOR_CLI's npx.
        const given = first.detail.includes(`recover cutover ${id} --undo --yes"`);
        return `NOT undone: ${notUndone.join(', ')}; ${closed}${first.step}: ${first.detail}${given ? '' : `; then run ${undoCommand}`}`;
      };
      if (result.interrupted) {
        const why = result.error?.startsWith('recover cutover:') ? result.error.replace(/^recover cutover: /, '') : `${result.error ?? 'interrupted'}`;
        // Past the point of no return (the killswitch reopening started), only --resume is offered: --undo would be refused.
        const reopened = reopeningStarted(result.journal);
        // Say what users get meanwhile: the maintenance page, until someone resumes or undoes.
        const maintenance = reopened ? undefined : result.journal?.find((e) => e.step === CUTOVER_STEPS.maintenance && e.state !== 'undone');
        const state = maintenance ? `production ${maintenance.state === 'done' ? 'stays' : 'may be'} in maintenance (the killswitch) until the cutover is resumed or undone; ` : '';
        throw new OperatorError(
          `recover cutover: ${why}; ${state}the journal is in the record ("${OPERATOR_CLI} recover status ${id}"): continue with "${OPERATOR_CLI} recover cutover ${id} --resume --yes"${reopened ? '' : ` or put back what changed with "${OPERATOR_CLI} recover cutover ${id} --undo --yes"`}`,
          stopped ? exitCodeOf(stopped) : 1,
        );
      }
      if (mode === 'undo') {
        if (notUndone.length) throw new OperatorError(`recover cutover --undo: ${notUndoneLine()}`, stopped ? exitCodeOf(stopped) : 1);
        // Taken over, production is as the other operator's run left it: not said to be back.
        if (unrecorded) throw new OperatorError(`recover cutover --undo: ${unrecorded.takenOver ? '' : 'production is back as before the cutover, but '}${result.warning}`, stopped ? exitCodeOf(stopped) : 1);
        if (!ctx.g.json) say(`cutover of recovery ${id} undone: production is back as before the cutover (steps "skipped" were changed by someone else since and left as they are)`);
        return;
      }
      if (!result.ok) {
        throw new OperatorError(
          `recover cutover: FAILED ${failedAt(result)} (${result.error}); ${notUndone.length ? notUndoneLine() : 'every change was undone, production is as before'}`,
          stopped ? exitCodeOf(stopped) : 1,
        );
      }
      if (!ctx.g.json) {
        for (const line of afterCutoverSteps(await getRecovery(ctx.store, id).catch(() => record), ctx.config.database, undefined, ctx.config.recovery.newInstancePrefix, deletionProtectionOf(result))) say(line);
        // Last: when the cutover put back the on-call's own maintenance from before it, that users are still shut out.
        const shutOut = stillShutOut(result);
        if (shutOut) say(shutOut);
      }
    }),
    );

  recover
    .command('abandon')
    .description(
      'delete the recovered instance (after a final snapshot, unless it is still creating or its restore failed: no data yet) and free the lock; refused once production runs on it; a copy RDS cannot snapshot (it cannot use its KMS key) only with --skip-final-snapshot',
    )
    .argument('<id>', `recovery id, from ${OPERATOR_CLI} recover status`)
    .option('--skip-final-snapshot', 'delete a copy RDS cannot snapshot (inaccessible-encryption-credentials: it cannot use its KMS key) without a final snapshot; refused for a copy RDS can snapshot')
    .option('--yes', 'confirm (required when standard input is not a terminal)')
    .action(
      carrying(async (id: string, opts: { yes?: boolean; skipFinalSnapshot?: boolean }) => {
      refuseStartOptions('recover abandon', globals());
      refuseNoFollow('recover abandon', globals());
      checkRecoveryId('recover abandon', id);
      const ctx = await context();
      const record = await getRecovery(ctx.store, id);
      const question = opts.skipFinalSnapshot
        ? `delete ${record.newInstance} WITHOUT a final snapshot (RDS refuses one while it cannot use its KMS key; ${dataAlsoIn(ctx.config.database.instanceIdentifier, { toTime: record.toTime })})`
        : `delete ${record.newInstance} (a final snapshot is kept unless it holds no data yet)`;
      await confirmOrRefuse(question, opts.yes, 'recover abandon');
      const stateMachine = await unrecordedWorkflow(ctx.g, record, true);
      const deps = {
        rds: ctx.rds,
        sfn: ctx.sfn,
        events: ctx.events,
        store: ctx.store,
        ssm: ctx.ssm,
        secretsManager: ctx.secretsManager,
        endpoint: endpointSwitch(resolveRecoveryConfig(ctx.config)),
      };
      const result = await abandonRecovery(deps, id, await resolveCliActor(), ctx.config.database.instanceIdentifier, {
        skipFinalSnapshot: Boolean(opts.skipFinalSnapshot),
        ...(stateMachine && { stateMachineArn: stateMachine }),
      });
      if (ctx.g.json) print(JSON.stringify(result));
      else say(`recovery ${id} abandoned: ${result.detail}`);
    }),
    );
}

/** The endpoint the cutover switches, which abandon reads too (recovery.endpoint, resolved). */
function endpointSwitch(recovery: ReturnType<typeof resolveRecoveryConfig>): EndpointSwitch {
  return recovery.endpoint.kind === 'secretHost' ? { kind: 'secretHost', secretArn: recovery.endpoint.secretArn! } : recovery.endpoint;
}

/**
 * The recovered copy has the source's master credentials (restored with it): the database secret,
 * another host. TLS is required unless the operator's libpq variables say otherwise
 * (PGSSLMODE=verify-full with PGSSLROOTCERT, the RDS CA bundle, to also check the certificate).
 */
async function recoveredConnection(config: EnvironmentConfig, secretsManager: SecretsManagerClient, host: string, port: number) {
  return resolveConnection({
    env: {},
    secretArn: config.database.secretArn,
    secretsManager,
    overrides: { host, port, database: config.database.name, sslMode: process.env.PGSSLMODE || 'require', sslRootCert: process.env.PGSSLROOTCERT || undefined },
  });
}
