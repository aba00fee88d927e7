import { nowOf } from '../shared/clock';
import { OPERATOR_CLI } from '../shared/constants';
import { CloudWatchClient } from '@aws-sdk/client-cloudwatch';
import { DescribeServicesCommand, ECSClient } from '@aws-sdk/client-ecs';
import { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import { RDSClient } from '@aws-sdk/client-rds';
import { GetSecretValueCommand, PutSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { GetParameterCommand, PutParameterCommand, SSMClient } from '@aws-sdk/client-ssm';
import { randomUUID } from 'node:crypto';
import { type KillswitchReading, MISSING_PARAMETER_FIX, readKillswitch, sentUnconfirmed, writeKillswitch } from '../killswitch/core';
import { type KillswitchValue, effectiveMode } from '../killswitch/value';
import { checkHttp } from '../detection/targets';
import { forceNewDeploymentOnce } from '../shared/ecs-deployments';
import { isAccessDenied } from '../shared/aws-errors';
import { NotFoundError, OperatorError, namedLine, oneLine } from '../shared/errors';
import { openClient, type SessionConfig } from '../shared/pg-connection';
import { proveWriteRolledBack } from '../shared/postgres';
import { announce, publishRecoverySeconds, secondsBetween } from './announce';
import { CutoverStepReport, JournalEntry, JournalUndo, RECOVERY_EVENTS, RECOVERY_PURPOSE_TAG, RecoveryRecord, RecoveryStatus } from './contract';
import { CONNECTABLE_STATES, InstanceBusyError, PASSING_STATES, copyKeptFromAbandon, instanceResourceId, instanceState, markReplacedInstance, protectNewProduction, removeRecoveryPurposeTag, renameCommands, replacedInstanceName } from './rds';
import { unverifiedFlagRefusal, unverifiedRefusal } from './verify';
import { LeaseLostError, StoreDeps, getRecovery, takeCutoverLease, updateRecovery } from './store';

/**
 * The guided cutover, in the runbook's order: maintenance on, the API's database endpoint switched
 * to the recovered instance, the ECS services redeployed (their tasks read the endpoint at start),
 * `/ready` 200 and a write accepted by the new database, maintenance off. The old instance is then
 * renamed and tagged, never deleted, and the copy loses the tag that put it in the recovery
 * workflow's reach. A failure half-way undoes what was done (endpoint back, tasks
 * redeployed on it, killswitch back to its previous value) and says what changed and what was undone.
 *
 * It runs in the operator's CLI, which may die half-way (laptop closed, Ctrl-C, network lost). So
 * every step is journaled in the recovery record before it acts (with what undoing it needs: the
 * killswitch's and the endpoint's previous values) and after; every step can run twice; and one
 * operator at a time holds a lease on the record, renewed at each journal write and each poll of a
 * wait. A lease not renewed for `leaseSeconds` is stale: its holder is presumed dead and `--resume`
 * or `--undo` take it over; the old holder's next write then fails and it stops.
 */
export type EndpointSwitch = { readonly kind: 'secretHost'; readonly secretArn: string } | { readonly kind: 'ssmParameter'; readonly parameterName: string };

export interface CutoverSettings {
  readonly killswitchParameter: string;
  readonly endpoint: EndpointSwitch;
  readonly ecs?: { readonly clusterArn: string; readonly serviceNames: readonly string[] };
  readonly readinessUrl?: string;
  readonly rtoObjectiveSeconds: number;
  /** The cdk.json environment: the commands of the events, which reach a page as written, name it with --env. */
  readonly environmentName: string;
  /** CloudWatch namespace of RecoverySeconds{stage=cutover}: the environment's (`metricsNamespace(<env>)`). */
  readonly metricsNamespace: string;
  /** How long the services may take to be stable again. @default 900 s */
  readonly serviceStableTimeoutSeconds?: number;
  /** How long /ready may take to answer 200. @default 300 s */
  readonly readinessTimeoutSeconds?: number;
  /** How long the rename waits for the old instance to be available (its backup window). @default 900 s */
  readonly renameTimeoutSeconds?: number;
  /** Poll interval of the waits. @default 10 s */
  readonly pollSeconds?: number;
}

export interface CutoverDeps {
  readonly ssm: SSMClient;
  readonly secretsManager: SecretsManagerClient;
  readonly ecs: ECSClient;
  readonly rds: RDSClient;
  readonly events: EventBridgeClient;
  readonly cloudwatch: CloudWatchClient;
  readonly store: StoreDeps;
  /** Connection to the recovered instance for the write check (credentials from the database secret). */
  readonly connectRecovered: (host: string, port: number) => Promise<SessionConfig>;
  readonly fetch?: typeof fetch;
  readonly now?: () => Date;
  readonly sleep?: (ms: number) => Promise<void>;
  /** True once the operator asked to stop (Ctrl-C, SIGTERM): the cutover stops at the next step boundary or poll. */
  readonly stopRequested?: () => boolean;
  /**
   * Told each step the cutover goes on to, once past its stop check and before it prepares or acts
   * (a step done before, skipped, is not told): what a stop leaves depends on the step reached.
   */
  readonly onStep?: (step: string) => void;
  /** Who holds the lease, as shown to a second operator. @default the actor */
  readonly leaseOwner?: string;
  /** A lease not renewed for this long is stale and may be taken over. @default LEASE_SECONDS */
  readonly leaseSeconds?: number;
}

/** 2 minutes: the longest gap between two renewals is one poll (10 s) or one check (15 s); a live holder never goes this long. */
export const LEASE_SECONDS = 120;

export interface CutoverResult {
  readonly ok: boolean;
  readonly recoveryId: string;
  readonly steps: readonly CutoverStepReport[];
  readonly totalSeconds: number;
  readonly rtoObjectiveSeconds: number;
  readonly recoverySeconds?: number;
  readonly replacedInstance?: string;
  readonly error?: string;
  /** Stopped at an operator's request or after losing the lease; the record stays `cutting-over`. */
  readonly interrupted?: boolean;
  /** The status the record was left in. */
  readonly status?: RecoveryStatus;
  /**
   * The reopen step's detail when it found the killswitch changed by someone else since the
   * cutover's maintenance and left it as is (NOT_REOPENED...): production runs on the copy but users
   * get what that person set. The cutover stops there, `cutting-over` (`interrupted`), the old
   * instance not renamed: `--resume` reads the killswitch again and finishes once the hold is lifted.
   */
  readonly notReopened?: string;
  /**
   * An undo that closed a cutover taken back to the old instance by hand: users may have written on
   * the copy before the way back, and those writes are not on the old instance. The CLI prints it on
   * stderr; the team's event carries it.
   */
  readonly warning?: string;
  /**
   * An undo whose last write (the record's outcome, the lease released with it) did not take: what
   * the record still says and why, which the CLI makes its failure line (exit 1). `takenOver`:
   * another operator holds the recovery now, and production is as their run left it.
   */
  readonly unrecorded?: { readonly line: string; readonly takenOver: boolean };
  readonly journal?: readonly JournalEntry[];
}

/**
 * A cutover can start only from these: the copy was verified (a failed cutover was fully undone), or
 * its data could not be read in time (`unverified`), then only with the operator's explicit
 * `unverified` option (Session.open checks the record's verification, whatever the status).
 */
export const CUTOVER_FROM = ['verified', 'unverified', 'cutover-failed'] as const;

export interface CutoverOptions {
  /** Cut over a copy whose verification read none of its data (every read outlasted the statement timeout or the verification's budget): the operator's word. */
  readonly unverified?: boolean;
}

/** The steps in order; journal entries are keyed by these names. */
export const CUTOVER_STEPS = {
  maintenance: 'killswitch maintenance',
  endpoint: 'switch database endpoint',
  redeploy: 'redeploy ECS services',
  ready: 'check /ready',
  write: 'check writes accepted',
  reopen: 'killswitch back',
  rename: 'rename and tag old instance',
  protect: 'deletion protection on new production instance',
  untag: 'untag new production instance',
} as const;

/**
 * The cutover's point of no return: its journal entry of the killswitch reopening, once that step
 * started. From there production may have taken writes on the copy: abandon is refused, and the
 * undo too until production is back on the old instance by hand (undoPastReopening says so). An
 * entry `undone` is past: an undo got through only because production was back on the old instance
 * (taken back by hand, after a stop at a hold or a reopening, both instances under their names),
 * and closed the cutover.
 */
export function reopeningStarted(journal: readonly JournalEntry[] | undefined): JournalEntry | undefined {
  return journal?.find((entry) => entry.step === CUTOVER_STEPS.reopen && entry.state !== 'undone');
}

/**
 * The way back a cutover past its reopening still has, for the lines that offer --resume there
 * (recover status, abandon's refusal): --undo closes it only once production is back on the old
 * instance by hand, both instances under their names (undoAll).
 */
export function undoPastReopening(record: Pick<RecoveryRecord, 'recoveryId' | 'sourceInstance' | 'newInstance'>): string {
  const { recoveryId: id, sourceInstance: old, newInstance: copy } = record;
  return `or, once production is back on ${old} by hand (the API's endpoint set back to it, ${old} and ${copy} under their names), close it with "${OPERATOR_CLI} recover cutover ${id} --undo --yes"`;
}

class Interrupted extends Error {}

/**
 * Where a stop left the cutover: the step under way when there is one (journaled "started": it had
 * begun acting), with what it had already done, else after the last step done. A stop during the
 * redeploy's wait comes after every service was told to redeploy (the stop is heard at the wait's
 * polls only): they are moving onto the copy, which "after the endpoint switch" would hide.
 */
function interruptedWhere(journal: readonly JournalEntry[], settings: CutoverSettings): string {
  const during = journal.findLast((e) => e.state === 'started' && e.detail !== UNDO_REDEPLOY_NOT_RUN);
  if (during) {
    const did = during.step === CUTOVER_STEPS.redeploy && settings.ecs ? `: ${settings.ecs.serviceNames.join(', ')} already redeploying onto the copy` : '';
    return `during "${during.step}"${did}`;
  }
  return `after "${journal.findLast((e) => e.state === 'done')?.step ?? 'no step'}"`;
}

/** A stop of the cutover's own, its lease already released: thrown to the operator as it is, never undone. */
class Stopped extends OperatorError {}

/** The undo keeps the killswitch in maintenance: the services are not known to be back on the previous endpoint. */
class KeptClosed extends Error {}

/** The undo found the API's endpoint on a value the cutover did not set and that is not the old instance's. */
class EndpointElsewhere extends Error {}

/**
 * A change the on-call's role is never granted (the old instance's rename): not a failure, the
 * step's message hands its commands to someone allowed. The cutover goes on, and a resume does not
 * try it again (it would be refused the same way). Also the reopening of a killswitch someone else
 * holds: left to them, the cutover stops there, and a resume reads it again.
 */
class ByHand extends Error {}

/**
 * Whether `value` is the maintenance this cutover set (its reason names the recovery and the copy):
 * only that one is the cutover's to give back, forward or undone; any other value was set by someone
 * since (a hold because the copy misses rows) and is left as it is.
 */
const isCutoverMaintenance = (value: KillswitchValue | null | undefined, setReason: string): boolean => value?.mode === 'maintenance' && value.reason === setReason;

/**
 * How the undo's killswitch step begins when it found the cutover's own maintenance and did not give
 * it back (kept for the services, or the give-back refused before SSM applied it): the one case said
 * as production staying in maintenance (keptInMaintenance).
 */
const KEPT_IN_MAINTENANCE = 'kept in maintenance: ';

/** Whether an undo's killswitch step, not undone, found the cutover's maintenance. */
export function keptInMaintenance(steps: readonly CutoverStepReport[]): boolean {
  return steps.some((s) => s.step === CUTOVER_STEPS.maintenance && s.outcome === 'undo-failed' && s.detail.startsWith(KEPT_IN_MAINTENANCE));
}

/**
 * How the undo's killswitch step begins when it read the killswitch (and gave it back, or left it)
 * but its journal mark was refused: the killswitch is known, only the mark is left to write.
 */
const KILLSWITCH_READ = 'the killswitch was read: ';

/**
 * How the undo's killswitch step begins when it found the cutover's maintenance and sent its give-back,
 * unconfirmed (the answer lost, or the read after it failed): SSM may have applied it.
 */
const GIVE_BACK_UNCONFIRMED = 'the give-back was sent but not confirmed';

/**
 * What an undo says of the killswitch when its step, not undone, leaves its state unknown: it could
 * not be read, or its give-back was sent unconfirmed (users may be let in: never said as maintenance).
 * None when it was kept in maintenance (keptInMaintenance) or read, only its mark refused. The CLI's
 * closing line and the team's event both say it.
 */
export function killswitchUnknown(steps: readonly CutoverStepReport[]): string | undefined {
  const step = steps.find((s) => s.step === CUTOVER_STEPS.maintenance && s.outcome === 'undo-failed');
  if (!step || step.detail.startsWith(KEPT_IN_MAINTENANCE) || step.detail.startsWith(KILLSWITCH_READ)) return undefined;
  const why = step.detail.startsWith(GIVE_BACK_UNCONFIRMED) ? 'its give-back was sent but not confirmed' : 'could not be read';
  return `the killswitch's state is unknown (${why}): check it with "${OPERATOR_CLI} killswitch status"`;
}

/** How the reopen step's detail begins when it left someone else's killswitch value as it is. */
export const NOT_REOPENED = 'NOT reopened: ';

/**
 * Joins the reopen step's detail after NOT_REOPENED... when an earlier attempt of that step was left
 * `started` or `failed` (it may have written the killswitch and let users in) and a resume then found
 * a hold: the undo's refusal tells that case from a hold users were kept out by all along.
 */
export const EARLIER_REOPENING = `; an earlier attempt of "${CUTOVER_STEPS.reopen}" may have reopened the killswitch`;

/** How a resume reports a step an earlier attempt did (`skipped`): the undo's own `skipped` never begins so. */
export const DONE_BEFORE = 'done before ';

/** The team's events and the RTO metric, reported as a step of their own: a failure there is said, never the cutover's failed step. */
export const ANNOUNCE = 'announce';

/** How the reopen step's detail begins when someone set normal since the cutover's maintenance: users are served, nothing held. */
export const ALREADY_REOPENED = 'already reopened by ';

/** Ends the endpoint step's undo detail when the undo found a value someone else set since and left it. */
export const ENDPOINT_LEFT_AS_IS = 'set by someone else since: left as is';

/**
 * The detail of the redeploy entry the undo journals before it sets the endpoint back (a cutover
 * stopped before its own redeploy): `recover status` and abandon's refusal must not read it as a
 * redeploy that ran.
 */
export const UNDO_REDEPLOY_NOT_RUN = 'journaled by the undo before setting the endpoint back: not run yet';

/** An entry still holding a change to undo (or a change that may have happened). */
const outstanding = (entry: JournalEntry) => entry.state !== 'undone';

export type CutoverMode = 'start' | 'resume';

/** The fix of a cutover or undo refused for want of recovery.ecs. */
const SET_RECOVERY_ECS = 'set recovery.ecs to {"clusterArn": ..., "serviceNames": [the API and every Celery service]} in cdk.json, then run the command again; nothing was changed';

/**
 * `start`: a verified recovery (or one whose failed cutover was fully undone) from its first step.
 * `resume`: an interrupted cutover (`cutting-over`, lease free or stale) from its first step not done.
 */
export async function cutover(
  deps: CutoverDeps,
  recoveryId: string,
  settings: CutoverSettings,
  actor: string,
  mode: CutoverMode = 'start',
  options: CutoverOptions = {},
): Promise<CutoverResult> {
  // Tasks read the endpoint at start: with no service to redeploy none reads the new one, /ready
  // and the write check pass on the old tasks, traffic reopens on them, and the old instance is
  // renamed under the API still using it. Refused before anything is read or written (a resumed
  // cutover would go on the same way).
  if (!settings.ecs?.serviceNames.length) {
    throw new OperatorError(
      `recover cutover${mode === 'resume' ? ' --resume' : ''}: recovery.ecs is not set: no ECS service would be redeployed, so no task would read the recovered instance's endpoint (they read it at start), /ready and the write check would pass on the old instance, and the old instance would be renamed under the API still using it; ${SET_RECOVERY_ECS}`,
      2,
    );
  }
  if (mode === 'start' && settings.endpoint.kind === 'secretHost') {
    // A secret without a host is not where the API reads it: switching it would move nothing, and
    // the old instance would then be renamed under the API's feet.
    const { secretArn } = settings.endpoint;
    const secret = await readSecretJson(deps.secretsManager, secretArn);
    if (!secret.host) {
      throw new OperatorError(
        `recover cutover: secret ${secretArn} holds no host and port (${Object.keys(secret).map((key) => `"${key}"`).join(', ')}): the API cannot be reading its database host there (an RDS-managed secret holds only the credentials, and RDS rewrites it at each rotation); set recovery.endpoint to where the API reads it ({"kind": "ssmParameter", ...}); nothing was changed`,
        2,
      );
    }
  }
  if (mode === 'start' && settings.endpoint.kind === 'ssmParameter') {
    // The cutover writes `host:port`. A parameter the API reads in another form (a bare host, a
    // URL) would hold, after the switch, a value the API cannot use: with no readinessUrl nothing
    // would see it, and the cutover would report success with the API on no database. Refused rather
    // than rewritten in the form found: the port an API reading a bare host uses, or the rest of a
    // URL, is not the cutover's to guess.
    const { parameterName } = settings.endpoint;
    const value = await readEndpoint(deps, settings.endpoint);
    if (!HOST_PORT.test(value)) {
      throw new OperatorError(
        `recover cutover: parameter ${parameterName} holds "${value}", not "host:port", the form the cutover writes there: after the switch the API would read a value of another form than it reads now and could reach no database; make the API read host:port there and store it so, or set recovery.endpoint to where the API reads its host, then run the command again; nothing was changed`,
        2,
      );
    }
  }
  // The killswitch is the first thing the cutover changes: one it cannot read is refused now, before
  // the lease, the team's "cutover started" event and a record left cutover-failed with nothing
  // changed. A parameter that does not exist (the name of an environment not deployed here) keeps
  // readKillswitch's words and exit 2, SSM's error its cause (the CLI says which environment named
  // it); any other refusal (AccessDenied, SSM still failing after the SDK's retries) is named, exit 1.
  const command = `recover cutover${mode === 'resume' ? ' --resume' : ''}`;
  // Run by the CLI only (recover cutover): its fix names the flag and variable.
  await readKillswitch(deps.ssm, settings.killswitchParameter, MISSING_PARAMETER_FIX.cli).catch((error: unknown) => {
    // A parameter not found keeps its parts: the CLI says between them in which region it looked.
    if (error instanceof NotFoundError) throw new NotFoundError(`${command}: ${error.subject}`, `${error.fix}; nothing was changed`, { cause: error.cause });
    if (error instanceof OperatorError) throw new OperatorError(`${command}: ${error.message}; nothing was changed`, error.exitCode, { cause: error.cause });
    throw new OperatorError(`${command}: cannot read the killswitch ${settings.killswitchParameter}: ${namedLine(error)}; nothing was changed`, 1, { cause: error });
  });
  const session = await Session.open(deps, recoveryId, actor, mode, options);
  return session.forward(settings);
}

/**
 * Puts back what the journal says an interrupted or failed cutover changed (endpoint, tasks,
 * killswitch), never the old instance; refused once the killswitch was reopened on the new instance
 * (production has taken writes there: going back would lose them).
 */
export async function undoCutover(deps: CutoverDeps, recoveryId: string, settings: CutoverSettings, actor: string): Promise<CutoverResult> {
  const session = await Session.open(deps, recoveryId, actor, 'undo');
  return session.undoAll(settings, undefined);
}

class Session {
  private readonly steps: CutoverStepReport[] = [];
  private journal: JournalEntry[];
  private readonly started: Date;

  private constructor(
    private readonly deps: CutoverDeps,
    private readonly id: string,
    private readonly actor: string,
    private readonly token: string,
    private record: RecoveryRecord,
    private readonly mode: CutoverMode | 'undo',
  ) {
    this.journal = [...(record.journal ?? [])];
    this.started = this.now();
  }

  static async open(deps: CutoverDeps, id: string, actor: string, mode: CutoverMode | 'undo', options: CutoverOptions = {}): Promise<Session> {
    const command = mode === 'start' ? 'recover cutover' : `recover cutover --${mode}`;
    // One clock for the lease and the steps.
    const store: StoreDeps = { ...deps.store, now: deps.now ?? deps.store.now };
    const current = await getRecovery(store, id);
    if (mode === 'start' && current.status === 'cutover-failed' && (current.journal ?? []).some(outstanding)) {
      const left = (current.journal ?? []).filter(outstanding).map((e) => e.step);
      throw new OperatorError(`${command}: recovery ${id} has changes of a failed cutover not undone (${left.join(', ')}): run "${OPERATOR_CLI} recover cutover ${id} --undo --yes" first`, 3);
    }
    // Nothing about the copy's data was read: only the operator decides to go on without it (its
    // /ready and write checks still run), also on a retry after a failed cutover of that copy.
    if (mode === 'start' && (CUTOVER_FROM as readonly string[]).includes(current.status) && current.verification?.unread && !options.unverified) {
      throw new OperatorError(unverifiedRefusal(command, id, current.verification), 3);
    }
    if (mode === 'start' && options.unverified && (CUTOVER_FROM as readonly string[]).includes(current.status) && !current.verification?.unread) {
      throw new OperatorError(unverifiedFlagRefusal(command, id, current.status), 2);
    }
    if (mode === 'undo' && current.status === 'cutover-failed' && !(current.journal ?? []).some(outstanding)) {
      throw new OperatorError(`${command}: recovery ${id}: nothing to undo, every change of its cutover was undone`, 3);
    }
    if (mode === 'start' && (CUTOVER_FROM as readonly string[]).includes(current.status)) {
      // A copy stopped since its verification (to save money) or deleted would only be found at
      // /ready or the write check, after maintenance, the endpoint switch and a redeploy, and
      // their undo: minutes of downtime for nothing.
      // A copy taking its first backup ("backing-up") accepts connections: that is all the cutover
      // asks of it (the endpoint switch, /ready, the write check; its untag is no modification).
      const copy = await instanceState(deps.rds, current.newInstance);
      if (!CONNECTABLE_STATES.includes(copy.status)) {
        const fix = copy.status === 'stopped' ? `start it (aws rds start-db-instance --db-instance-identifier ${current.newInstance}), then` : copy.status === 'not-found' ? 'it is gone: start a new recovery, or' : 'wait until it is available, then';
        throw new OperatorError(`${command}: recovery ${id}: its copy ${current.newInstance} is "${copy.status}", not available: nothing was changed; ${fix} run the cutover again`, 3);
      }
    }
    const from: readonly RecoveryStatus[] = mode === 'start' ? CUTOVER_FROM : mode === 'resume' ? ['cutting-over'] : ['cutting-over', 'cutover-failed'];
    const token = randomUUID();
    const taken = await takeCutoverLease(store, id, {
      from,
      owner: deps.leaseOwner ?? actor,
      token,
      leaseSeconds: deps.leaseSeconds ?? LEASE_SECONDS,
      ...(mode === 'start' && { changes: { status: 'cutting-over', journal: [] }, expectUpdatedAt: current.updatedAt }),
    });
    if ('refused' in taken) {
      const { record } = taken.refused;
      if (taken.refused.kind === 'changed') {
        throw new OperatorError(`${command}: recovery ${id} changed while this command started (another operator's cutover or undo): see "${OPERATOR_CLI} recover status ${id}", then decide again`, 3);
      }
      if (taken.refused.kind === 'held') {
        const until = new Date(record.leaseExpiresAt ?? 0).toISOString();
        throw new OperatorError(
          `${command}: recovery ${id} is being cut over by ${record.leaseOwner ?? 'another operator'} (lease live until ${until}): wait for them; if that process is dead, its lease goes stale at ${until} and this command may take it over then`,
          3,
        );
      }
      const hint =
        mode === 'start'
          ? record.status === 'cutting-over'
            ? `a cutover was interrupted: "${OPERATOR_CLI} recover status ${id}", then --resume or --undo`
            : 'only a verified recovery can be cut over'
          : mode === 'resume'
            ? 'only an interrupted cutover can be resumed'
            : 'only an interrupted or failed cutover can be undone';
      throw new OperatorError(`${command}: recovery ${id} is "${record.status}", expected ${from.join(' or ')}: ${hint} (see "${OPERATOR_CLI} recover status ${id}")`, 3);
    }
    return new Session(deps, id, actor, token, taken.record, mode);
  }

  private now(): Date {
    return nowOf(this.deps);
  }

  private get leaseOwner(): string {
    return this.deps.leaseOwner ?? this.actor;
  }

  private entry(step: string): JournalEntry | undefined {
    return this.journal.find((e) => e.step === step);
  }

  /** Whether `step` is journaled and not undone. */
  private left(step: string): boolean {
    const entry = this.entry(step);
    return entry !== undefined && outstanding(entry);
  }

  /** Writes the journal (and renews the lease) while this session holds the lease; throws LeaseLostError otherwise. */
  private async put(entry: JournalEntry | undefined, extra: Partial<Omit<RecoveryRecord, 'recoveryId'>> = {}, release = false): Promise<void> {
    if (entry) {
      const index = this.journal.findIndex((e) => e.step === entry.step);
      if (index >= 0) this.journal[index] = entry;
      else this.journal.push(entry);
    }
    this.record = await updateRecovery(
      { ...this.deps.store, now: () => this.now() },
      this.id,
      { ...extra, journal: this.journal, ...(!release && { leaseExpiresAt: this.now().getTime() + (this.deps.leaseSeconds ?? LEASE_SECONDS) * 1000 }) },
      undefined,
      { leaseToken: this.token, release },
    );
  }

  /**
   * The write that ends a run which goes on when it is refused (DynamoDB throttling: often what
   * stopped it), the lease released with it. Refused, the lease stays live until its last renewal
   * runs out, and the next --resume or --undo, this operator's too, is refused until then as held:
   * the run's last line says so (returned, starting "; "; '' once released), `then` after it.
   * Refused because another operator took the lease over, the record is theirs: the line names them
   * (this run's end is not recorded, and waiting for a lease they renew does not help).
   */
  private async release(extra: Partial<Omit<RecoveryRecord, 'recoveryId'>> = {}, then = ''): Promise<string> {
    return (await this.released(extra, then))?.line ?? '';
  }

  /** release(), and whether the lease was another operator's by then: undefined once released. */
  private async released(extra: Partial<Omit<RecoveryRecord, 'recoveryId'>>, then: string): Promise<{ line: string; takenOver: boolean } | undefined> {
    try {
      await this.put(undefined, extra, true);
      return undefined;
    } catch (error) {
      if (error instanceof LeaseLostError) return { line: `; ${error.message.replace(/^recover cutover: /, '')}`, takenOver: true };
      const until = new Date(this.record.leaseExpiresAt ?? 0).toISOString();
      return { line: `; the lease was not released (${namedLine(error)}): it stays ${this.leaseOwner}'s until ${until}, and a --resume or --undo run before then, yours too, is refused as held${then}`, takenOver: false };
    }
  }

  /** Called at each poll of a wait: stop if asked, else renew the lease. */
  private readonly tick = async () => {
    if (this.deps.stopRequested?.()) throw new Interrupted('stop requested');
    await this.put(undefined);
  };

  /**
   * How the cutover's waits poll, its undo's too: sleeps in slices so that a stop request is seen
   * within a second, not at the end of a 10 s poll; each poll renews the lease (tick).
   */
  private polling(settings: CutoverSettings): Polling {
    const { deps } = this;
    const sleep =
      deps.sleep ??
      (async (ms: number) => {
        for (let left = ms; left > 0 && !deps.stopRequested?.(); left -= 1000) await new Promise<void>((resolve) => setTimeout(resolve, Math.min(1000, left)));
      });
    return { pollMs: (settings.pollSeconds ?? 10) * 1000, sleep, now: () => this.now(), tick: this.tick };
  }

  private report(step: string, at: Date, outcome: CutoverStepReport['outcome'], detail: string): void {
    this.steps.push({ step, startedAt: at.toISOString(), seconds: secondsBetween(at, this.now()), outcome, detail });
  }

  private result(ok: boolean, status: RecoveryStatus, extra: Partial<CutoverResult>, settings: CutoverSettings): CutoverResult {
    return {
      ok,
      recoveryId: this.id,
      steps: this.steps,
      totalSeconds: secondsBetween(this.started, this.now()),
      rtoObjectiveSeconds: settings.rtoObjectiveSeconds,
      status,
      journal: this.journal,
      ...extra,
    };
  }

  /**
   * Journal "started" (with the undo data, computed once), act, journal "done" or "failed".
   * `retryByHand`: a step left to a human before is run again (its act reads before it acts).
   */
  private async step(name: string, prepare: () => Promise<JournalUndo | undefined>, act: (undo: JournalUndo | undefined) => Promise<string>, retryByHand = false): Promise<void> {
    const previous = this.entry(name);
    if (previous?.state === 'done') {
      this.report(name, new Date(previous.startedAt), 'skipped', `${DONE_BEFORE}(${previous.finishedAt ?? previous.startedAt}): ${previous.detail ?? ''}`.trim());
      return;
    }
    if (previous?.state === 'by-hand' && !retryByHand) {
      this.report(name, new Date(previous.startedAt), 'by-hand', `left to a human before (${previous.finishedAt ?? previous.startedAt}): ${previous.detail ?? ''}`);
      return;
    }
    if (this.deps.stopRequested?.()) throw new Interrupted('stop requested');
    this.deps.onStep?.(name);
    const at = this.now();
    // Resumed: the values recorded before the first attempt acted are the ones to undo to, never re-read.
    const undo = previous?.undo ?? (await prepare());
    const started: JournalEntry = { step: name, state: 'started', startedAt: at.toISOString(), by: this.leaseOwner, ...(undo && { undo }) };
    await this.put(started);
    let detail: string;
    try {
      detail = await act(undo);
    } catch (error) {
      if (error instanceof Interrupted || error instanceof LeaseLostError) throw error;
      if (error instanceof ByHand) {
        this.report(name, at, 'by-hand', error.message);
        await this.put({ ...started, state: 'by-hand', finishedAt: this.now().toISOString(), detail: error.message });
        return;
      }
      this.report(name, at, 'failed', oneLine(error));
      await this.put({ ...started, state: 'failed', finishedAt: this.now().toISOString(), detail: oneLine(error) });
      throw error;
    }
    await this.put({ ...started, state: 'done', finishedAt: this.now().toISOString(), detail });
    this.report(name, at, 'done', detail);
  }

  async forward(settings: CutoverSettings): Promise<CutoverResult> {
    const { deps, id, record } = this;
    const host = record.newInstanceHost;
    const port = record.newInstancePort ?? 5432;
    if (!host) {
      await this.put(undefined, { status: 'cutover-failed', cutoverError: 'no endpoint recorded' }, true);
      throw new OperatorError(`recover cutover: recovery ${id} has no endpoint recorded: it was never available`, 3);
    }
    const now = () => this.now();
    const polling = this.polling(settings);
    // A refused event must not stop the cutover with its lease held: it is reported with the steps.
    await announce(deps.events, RECOVERY_EVENTS.cutoverStarted, {
      summary: `Recovery ${id}: cutover to ${record.newInstance} ${this.mode === 'resume' ? 'resumed' : 'started'} by ${this.actor}`,
      at: this.started.toISOString(),
      recoveryId: id,
      actor: this.actor,
      resumed: this.mode === 'resume',
    }).catch((error: unknown) => this.report(ANNOUNCE, this.started, 'failed', `the "${RECOVERY_EVENTS.cutoverStarted}" event failed: ${oneLine(error)}`));
    const setReason = `recovery ${id}: cutover to ${record.newInstance}`;
    try {
      await this.step(
        CUTOVER_STEPS.maintenance,
        async () => ({ killswitch: { previous: (await readKillswitch(deps.ssm, settings.killswitchParameter)).value, setReason } }),
        async (undo) => {
          const current = await readKillswitch(deps.ssm, settings.killswitchParameter);
          let conflict = '';
          if (!isCutoverMaintenance(current.value, setReason)) {
            const written = await writeKillswitch({ ssm: deps.ssm, now }, { parameterName: settings.killswitchParameter, mode: 'maintenance', reason: setReason, actor: this.actor, expiresAt: null });
            // Another write landed after ours: maintenance is not in effect, and switching the
            // endpoint now would let users write while it moves. The undo leaves that value as is.
            if (written.conflict?.kind === 'after') throw new Error(`maintenance not in effect: ${written.conflict.message}`);
            if (written.conflict) conflict = `; ${written.conflict.message}`;
          }
          return `was ${undo?.killswitch?.previous?.mode ?? 'malformed'}${conflict}`;
        },
      );
      await this.step(
        CUTOVER_STEPS.endpoint,
        async () => ({ endpoint: { previous: await readEndpoint(deps, settings.endpoint), target: `${host}:${port}` } }),
        async (undo) => {
          await writeEndpoint(deps, settings.endpoint, `${host}:${port}`);
          return `${describeEndpoint(settings.endpoint)}: ${undo?.endpoint?.previous} -> ${host}:${port}`;
        },
      );
      if (settings.ecs) {
        const { clusterArn, serviceNames } = settings.ecs;
        await this.step(
          CUTOVER_STEPS.redeploy,
          async () => undefined,
          async () => {
            const forced = await forceRedeploy(deps.ecs, clusterArn, serviceNames, deps.sleep);
            await waitStable(deps.ecs, clusterArn, forced, settings.serviceStableTimeoutSeconds ?? 900, polling);
            return `${serviceNames.join(', ')} stable on the new endpoint`;
          },
        );
      }
      if (settings.readinessUrl) {
        const url = settings.readinessUrl;
        await this.step(
          CUTOVER_STEPS.ready,
          async () => undefined,
          async () => {
            await waitReady(deps.fetch ?? fetch, url, settings.readinessTimeoutSeconds ?? 300, polling);
            return `${url} answered 200`;
          },
        );
      }
      await this.step(
        CUTOVER_STEPS.write,
        async () => undefined,
        async () => {
          await writeCheck(await deps.connectRecovered(host, port));
          return `${host} accepted a write (rolled back)`;
        },
      );
      await this.stillOnCopy(settings, `${host}:${port}`);
      // An attempt before this one left "started" or "failed" may have reopened the killswitch (users
      // let in on the copy), and a hold that stopped a later one does not undo that: kept in the
      // step's detail, from attempt to attempt, for the undo's refusal to say.
      const before = this.entry(CUTOVER_STEPS.reopen);
      const earlier =
        before?.state === 'started' || before?.state === 'failed'
          ? `${EARLIER_REOPENING} (left ${before.state} at ${before.startedAt}): users may have written on ${record.newInstance} since`
          : before?.detail?.includes(EARLIER_REOPENING)
            ? before.detail.slice(before.detail.indexOf(EARLIER_REOPENING))
            : '';
      await this.step(
        CUTOVER_STEPS.reopen,
        async () => undefined,
        async () => {
          const previous = this.entry(CUTOVER_STEPS.maintenance)?.undo?.killswitch?.previous ?? null;
          const reason = `recovery ${id}: cutover done`;
          // Read first, as the undo does: a value someone set since the cutover's maintenance (a hold
          // because the copy misses rows) is theirs to lift, not the cutover's. A value this step
          // wrote before an interruption is its own and done.
          const reading = await readKillswitch(deps.ssm, settings.killswitchParameter);
          const current = reading.value;
          const back = restoredValue(previous, reason);
          if (current?.mode === back.mode && current.reason === back.reason) return `back to ${back.mode}`;
          // Normal set by someone since (a `killswitch disable` during the cutover) holds nobody out,
          // nor a value whose expiry has passed (every reader takes it for normal, as here):
          // production is open on the copy already, nothing for anyone to lift.
          if (current && effectiveMode(current, this.now().getTime()) === 'normal') {
            const by = current.mode === 'normal' ? `${current.actor} (normal: ${current.reason})` : expiryOf(current);
            return `${ALREADY_REOPENED}${by} since the cutover's maintenance: left as is`;
          }
          // Someone else's value (a hold because the copy misses rows) is left to them, and so is the
          // rest: whoever holds users out may be about to go back to the old instance, which the
          // rename would take from under them. A resume runs this step again and goes on once it is lifted.
          if (!isCutoverMaintenance(current, setReason)) {
            throw new ByHand(
              `${NOT_REOPENED}the killswitch is ${current?.mode ?? 'malformed'} (set by ${current?.actor ?? '?'}: ${current?.reason ?? '?'}) since the cutover's maintenance: left as is; see "${OPERATOR_CLI} killswitch status", and lift it with "${OPERATOR_CLI} killswitch disable" once whoever set it agrees${earlier}`,
            );
          }
          const conflict = await restoreKillswitch(deps, settings.killswitchParameter, previous, this.actor, reason, reading);
          return `back to ${previous?.mode ?? 'normal'}${conflict ? `; ${conflict}` : ''}`;
        },
        true,
      );
    } catch (error) {
      if (error instanceof Stopped) throw error;
      if (error instanceof LeaseLostError) return this.result(false, 'cutting-over', { interrupted: true, error: error.message }, settings);
      if (error instanceof Interrupted) return this.interrupted(settings);
      // Once the killswitch reopening was attempted, production may be taking writes on the copy: no automatic undo.
      if (this.entry(CUTOVER_STEPS.reopen)) {
        // The record keeps the line the operator reads (what failed, what may be left, the way on),
        // not the bare SDK error: `recover status` shows it later to whoever is on call then. The
        // SDK's text is bounded, as stored causes are elsewhere (500 characters), so the way on stays.
        const line = `${oneLine(error).slice(0, 500)}: production may still be in maintenance (the reopening may not have happened: --resume reopens it, then renames the old instance), or the killswitch may be open on the new instance already (production taking writes there: --resume finishes the rename); "${OPERATOR_CLI} killswitch status" tells which`;
        const kept = await this.release({ cutoverError: line });
        return this.result(false, 'cutting-over', { interrupted: true, error: `${line}${kept}` }, settings);
      }
      return this.undoAll(settings, oneLine(error));
    }
    const reopened = this.entry(CUTOVER_STEPS.reopen);
    if (reopened?.state === 'by-hand') return this.held(settings, reopened.detail ?? NOT_REOPENED);

    // Production now runs on the copy: the old instance is only renamed and tagged, whatever happens next.
    // The old instance is the one this recovery restored from (its record), not the config's, which
    // may already name the copy (step 10 done first): renaming the copy would move production's endpoint.
    const old = record.sourceInstance;
    let replacedInstance: string | undefined;
    try {
      await this.step(
        CUTOVER_STEPS.rename,
        // The old instance's resource id is fixed before the first rename (the record's, taken when
        // the recovery started; a record without one: the instance under the name now), so a
        // resumed rename can tell the old instance from one that took its name since.
        async () => ({
          renamedTo: replacedInstanceName(old, this.now()),
          oldResourceId: record.sourceResourceId ?? (await instanceResourceId(deps.rds, old)),
        }),
        async (undo) => {
          const renamedTo = undo?.renamedTo ?? replacedInstanceName(old, this.now());
          const timeout = settings.renameTimeoutSeconds ?? 900;
          const commands = renameCommands(old, renamedTo, record.newInstance, id);
          const renameByHand = (status: string, when: string) =>
            `recover: ${old} is "${status}" ${when} (RDS documents modifications of an available instance only): nothing renamed or tagged; once it is available: ${commands}`;
          // RDS documents an instance as open to modifications in "available" only, not while it is
          // backed up (production's backup window): the rename waits for it, polling like the other
          // waits (the lease renewed, Ctrl-C heard), rather than sending a rename RDS may refuse.
          await pollUntil(
            polling,
            timeout,
            async () => {
              try {
                replacedInstance = await markReplacedInstance(deps.rds, old, id, record.newInstance, this.now(), renamedTo, undo?.oldResourceId ?? record.sourceResourceId);
                return undefined;
              } catch (error) {
                // The on-call's role is never granted changes to the production instance (on
                // purpose: an admin renames it): the step hands them the commands.
                if (isAccessDenied(error)) {
                  throw new ByHand(`recover: ${old} not renamed: ${namedLine(error)} (the on-call's recovery role is never granted changes to the production instance); someone allowed to change it runs: ${commands}`);
                }
                if (!(error instanceof InstanceBusyError)) throw error;
                // Only a state RDS leaves by itself (a backup, a change under way) is worth waiting
                // for; an instance that is full, failed, stopped or without its KMS key stays so, and
                // the operator gets the step's command at once rather than after the whole wait.
                if (!PASSING_STATES.includes(error.status)) throw new Error(renameByHand(error.status, 'now'));
                return error.status;
              }
            },
            (status) => renameByHand(status, `still, after ${timeout} s`),
          );
          return `${old} -> ${replacedInstance} (kept, tagged atmr-dr:replaced-by=${record.newInstance})`;
        },
      );
      // Renamed before an interruption (a resume): the journaled name. Left by hand: not renamed.
      const rename = this.entry(CUTOVER_STEPS.rename);
      if (rename?.state === 'done') replacedInstance ??= rename.undo?.renamedTo;
    } catch (error) {
      if (error instanceof LeaseLostError) return this.result(false, 'cutting-over', { interrupted: true, error: error.message }, settings);
      if (error instanceof Interrupted) return this.interrupted(settings);
      // recorded in the steps; the cutover itself succeeded
      replacedInstance = undefined;
    }
    // Restored without deletion protection (abandon must be able to delete a copy), the copy is
    // production now: protected here, not left to a printed command on the worst day. Before the
    // untag below: the on-call's role may modify only a copy that still carries atmr-dr:purpose
    // (lib/constructs/recovery.ts grantOperator), so that once production runs on it, untagged, no
    // one's recovery rights can modify it (turn protection off, drop its backups). A refusal
    // (the operator's role may not, the copy busy) is recorded in the steps; the CLI then prints the
    // command with the reason. Production runs on the copy either way.
    try {
      await this.step(
        CUTOVER_STEPS.protect,
        async () => undefined,
        async () => protectNewProduction(deps.rds, record.newInstance),
      );
    } catch (error) {
      if (error instanceof LeaseLostError) return this.result(false, 'cutting-over', { interrupted: true, error: error.message }, settings);
      if (error instanceof Interrupted) return this.interrupted(settings);
    }
    // The copy is production now, and keeps its name under the recovery prefix: without its
    // atmr-dr:purpose tag the recovery workflow's role can no longer modify or delete it. Whether or
    // not the rename went through (the two are independent), and before the record says cut-over, so
    // that a cutover interrupted here is resumed (from cutting-over) and removes it then.
    try {
      await this.step(
        CUTOVER_STEPS.untag,
        async () => undefined,
        async () => removeRecoveryPurposeTag(deps.rds, record.newInstance, id),
      );
    } catch (error) {
      if (error instanceof LeaseLostError) return this.result(false, 'cutting-over', { interrupted: true, error: error.message }, settings);
      if (error instanceof Interrupted) return this.interrupted(settings);
      // recorded in the steps, with the command to run by hand; production runs on the copy either way
    }
    // The old instance keeps the production name until renamed: the team hears who must do it.
    const notRenamed = replacedInstance ? '' : `; ${old} NOT renamed yet (it keeps the production name): to be renamed by someone allowed to change ${old}: see "${OPERATOR_CLI} recover status ${id}"`;
    const finished = this.now();
    const recoverySeconds = secondsBetween(record.requestedAt, finished);
    await this.put(undefined, { status: 'cut-over', cutover: this.steps, recoverySeconds, ...(replacedInstance && { replacedInstance }) }, true);
    const totalSeconds = secondsBetween(this.started, finished);
    // The cutover is done: a refused metric or event is reported with the steps, never thrown (the
    // operator would read a failure, without the steps, of a cutover that succeeded).
    try {
      await publishRecoverySeconds(deps.cloudwatch, settings.metricsNamespace, 'cutover', recoverySeconds, finished);
      await announce(deps.events, RECOVERY_EVENTS.cutOver, {
        summary: `Recovery ${id}: production runs on ${record.newInstance} (as of ${record.toTime}); cutover ${totalSeconds} s, recovery ${recoverySeconds} s (RTO objective ${settings.rtoObjectiveSeconds} s)${notRenamed}`,
        at: finished.toISOString(),
        recoveryId: id,
        newInstance: record.newInstance,
        replacedInstance,
        totalSeconds,
        recoverySeconds,
      });
    } catch (error) {
      this.report(ANNOUNCE, finished, 'failed', `production runs on the copy; the "${RECOVERY_EVENTS.cutOver}" event or the RecoverySeconds metric failed: ${oneLine(error)}`);
    }
    return this.result(true, 'cut-over', { recoverySeconds, ...(replacedInstance && { replacedInstance }) }, settings);
  }

  /**
   * Before the reopening, and so before the rename whatever the path: the API's endpoint must still
   * read the copy's address the cutover set (`target` when the journal has none). Taken back to the
   * old instance by hand (the steps the undo's refusal after a hold gives), the reopening would take
   * its holder's `killswitch disable` for "already reopened" and the rename would take the old
   * instance, production again, from under the API. Stops here, nothing renamed, the lease released,
   * the record `cutting-over` for --undo to close; an endpoint that cannot be read stops too.
   */
  private async stillOnCopy(settings: CutoverSettings, target: string): Promise<void> {
    const { id } = this;
    const { sourceInstance: old, newInstance: copy } = this.record;
    const command = `recover cutover${this.mode === 'resume' ? ' --resume' : ''}: recovery ${id}`;
    const journaled = this.entry(CUTOVER_STEPS.endpoint)?.undo?.endpoint;
    const set = journaled?.target ?? target;
    let current: string;
    try {
      current = await readEndpoint(this.deps, settings.endpoint);
    } catch (error) {
      throw await this.stop(
        `${command}: cannot read where the API's database endpoint points (${describeEndpoint(settings.endpoint)}: ${namedLine(error)}), so cannot tell whether production was taken back to ${old} by hand: nothing renamed, the cutover stops here; fix the cause, then run "${OPERATOR_CLI} recover cutover ${id} --resume --yes"`,
        1,
        error,
      );
    }
    if (current === set) return;
    const previous = journaled?.previous;
    const back = backOnOld(current, previous);
    const before = previous ?? `<${old}'s address>:<port>`;
    const found = back
      ? `reads ${current} again, as before the cutover, not ${set} (${copy}): production was taken back to ${old} by hand`
      : `reads "${current}", neither ${set} (${copy}) that the cutover set nor ${before} (${old}) from before it: someone changed it by hand`;
    // Past a reopening that may have let users in on the copy, the undo closes the cutover only once
    // production is back on the old instance, both instances under their names (undoAll).
    const reopen = reopeningStarted(this.journal);
    const reopened = reopen && !(reopen.state === 'by-hand' && reopen.detail?.startsWith(NOT_REOPENED));
    const resume = `to finish on ${copy}, point it back at ${copy}: ${endpointCommand(settings.endpoint, set)}, then "${OPERATOR_CLI} recover cutover ${id} --resume --yes"`;
    // Only a value naming the old instance is production taken back (backOnOld): any other (a proxy
    // in front of the copy) may still reach the copy, which an undo closing the cutover would let
    // abandon delete. Both ways out are named instead, each to a value its command accepts.
    const next = reopened
      ? `the killswitch was reopened on ${copy} at ${reopen.startedAt} (users may have written there, and those writes are not on ${old}): ${back ? `close it with "${OPERATOR_CLI} recover cutover ${id} --undo --yes" (it checks that ${old} and ${copy} still have their names, and renames nothing)` : `--undo is refused while it does not name ${old}; ${resume}`}`
      : back
        ? `close it with "${OPERATOR_CLI} recover cutover ${id} --undo --yes"`
        : `${resume}; or, to go back to ${old}, point it at ${old}: ${endpointCommand(settings.endpoint, before)}, then "${OPERATOR_CLI} recover cutover ${id} --undo --yes"`;
    throw await this.stop(`${command}: ${describeEndpoint(settings.endpoint)} ${found}; nothing renamed, the cutover stops here: ${next}`, 3);
  }

  /**
   * A stop of the cutover's own (stillOnCopy): the lease released, and the team told with the stop's
   * line, as at a hold (held), since the cutover they were told of is left `cutting-over`.
   */
  private async stop(message: string, exitCode: number, cause?: unknown): Promise<Stopped> {
    await this.put(undefined, { cutover: this.steps }, true);
    await announce(this.deps.events, RECOVERY_EVENTS.cutoverInterrupted, { summary: message, at: this.now().toISOString(), recoveryId: this.id }).catch(() => undefined);
    return new Stopped(message, exitCode, cause === undefined ? undefined : { cause });
  }

  /**
   * The killswitch holds someone else's value (`notReopened`, the reopen step's detail): production
   * runs on the copy, users held out, and the old instance is neither renamed nor the copy untagged.
   * The lease is released, the record stays `cutting-over`: a resume reads the killswitch again.
   */
  private async held(settings: CutoverSettings, notReopened: string): Promise<CutoverResult> {
    const old = this.record.sourceInstance;
    const error = `production runs on ${this.record.newInstance} but was ${notReopened}; the cutover stops there: ${old} is NOT renamed and ${this.record.newInstance} keeps its recovery tag (whoever holds users out may go back to ${old}); once the hold is lifted, --resume renames ${old} and finishes; if they take production back to ${old} instead, --undo gives the steps by hand and, once they are done, closes the cutover`;
    await this.put(undefined, { cutover: this.steps }, true);
    await announce(this.deps.events, RECOVERY_EVENTS.cutoverInterrupted, {
      summary: `Recovery ${this.id}: ${error} (${OPERATOR_CLI} recover cutover ${this.id} --env ${settings.environmentName} --resume | --undo)`,
      at: this.now().toISOString(),
      recoveryId: this.id,
    }).catch(() => undefined);
    return this.result(false, 'cutting-over', { interrupted: true, notReopened, error }, settings);
  }

  /**
   * The undo's refusal after a stop at someone's hold (the reopen step `by-hand`): finishing with
   * --resume, or going back to the old instance by hand, each step named, in the order that keeps
   * users off the copy until the tasks run on the old instance again. An earlier attempt of the
   * reopening that may have let users in (EARLIER_REOPENING), or a degraded hold (it serves users, on
   * the copy), is said first: going back loses their writes.
   */
  private heldUndoRefusal(reopen: JournalEntry, settings: CutoverSettings): string {
    const { id } = this;
    const { sourceInstance: old, newInstance: copy } = this.record;
    const detail = (reopen.detail ?? '').slice(NOT_REOPENED.length);
    const cut = detail.indexOf(EARLIER_REOPENING);
    const hold = cut < 0 ? detail : detail.slice(0, cut);
    // The reopen step's detail names the value it found: "the killswitch is <mode> (set by ...".
    const degraded = hold.startsWith('the killswitch is degraded ');
    const resume = `finish with "${OPERATOR_CLI} recover cutover ${id} --resume --yes" once the hold is lifted`;
    const previous = this.entry(CUTOVER_STEPS.endpoint)?.undo?.endpoint?.previous ?? `<${old}'s address>:<port>`;
    const ecs = settings.ecs;
    const redeploy = ecs
      ? `redeploy ${ecs.serviceNames.join(', ')} and wait until they are stable: ${ecs.serviceNames.map((service) => `"aws ecs update-service --cluster ${ecs.clusterArn} --service ${service} --force-new-deployment"`).join(', ')}, then "aws ecs wait services-stable --cluster ${ecs.clusterArn} --services ${ecs.serviceNames.join(' ')}"`
      : "redeploy the API's services and wait until they are stable";
    const byHand =
      `(1) keep users out all along: "${OPERATOR_CLI} killswitch status" shows the hold and its expiry; unless it is a maintenance with no expiry, set one: "${OPERATOR_CLI} killswitch enable --mode maintenance --reason ... --expires never"; ` +
      `(2) point the API back at ${old}: ${endpointCommand(settings.endpoint, previous)}; (3) ${redeploy}; (4) only then let users in ("${OPERATOR_CLI} killswitch disable --reason ..."); ` +
      `${copy} is left as it is; then close the cutover with "${OPERATOR_CLI} recover cutover ${id} --undo --yes" (it finds production back on ${old}: nothing to set back, the killswitch left as it is)`;
    const head = `recover cutover --undo: recovery ${id}: its cutover stopped at ${reopen.startedAt} at someone's hold on the killswitch (${hold})`;
    const wrote = cut >= 0 ? detail.slice(cut + 1) : degraded ? ` a degraded killswitch serves users: they may have written on ${copy} since it was set` : undefined;
    if (wrote) {
      return `${head}, but${wrote}: going back to ${old} would lose those writes, so the undo is refused until the API's endpoint names ${old} again; ${resume}; to go back all the same, losing them, by hand: ${byHand}`;
    }
    return `${head}; only that hold keeps users off ${copy}, and writes they make there once it is lifted would be lost by going back: the undo is refused until the API's endpoint names ${old} again; ${resume}; or go back to ${old} by hand while the hold keeps users out: ${byHand}`;
  }

  /** Stopped at an operator's request: the lease is released at once (no need to wait for it to go stale), the status stays `cutting-over`. */
  private async interrupted(settings: CutoverSettings): Promise<CutoverResult> {
    const where = interruptedWhere(this.journal, settings);
    await this.put(undefined, { cutover: this.steps }, true);
    await announce(this.deps.events, RECOVERY_EVENTS.cutoverInterrupted, {
      summary: `Recovery ${this.id}: cutover interrupted by ${this.actor} ${where}; resume or undo it (${OPERATOR_CLI} recover cutover ${this.id} --env ${settings.environmentName} --resume | --undo)`,
      at: this.now().toISOString(),
      recoveryId: this.id,
    }).catch(() => undefined);
    return this.result(false, 'cutting-over', { interrupted: true, error: `interrupted ${where}` }, settings);
  }

  /**
   * Undoes in the order that makes the API whole again: endpoint, then the tasks re-read it, then
   * traffic. Each change is put back only if it is still the cutover's own (a value someone set
   * since is left as is, and said). `cause`: the failure that triggered it, none for `--undo`.
   *
   * Traffic reopens only once every task runs on the previous endpoint: the services stable on a
   * deployment forced after the endpoint was set back. Until then users would write to the copy,
   * and those writes are lost when the tasks move back. So if the endpoint or the redeploy could not
   * be undone (refused, a deployment that fails or is not stable in time, Ctrl-C during its wait),
   * the killswitch stays in maintenance and its step is `undo-failed` too: `--undo` again finishes.
   */
  async undoAll(settings: CutoverSettings, cause: string | undefined): Promise<CutoverResult> {
    const { deps, id } = this;
    const reopen = reopeningStarted(this.journal);
    const held = reopen?.state === 'by-hand' && reopen.detail?.startsWith(NOT_REOPENED);
    // Taken back to the old instance by hand (after a stop at a hold, the steps the refusal below
    // gives; or after a reopening): the endpoint reads its value from before the switch again, and
    // the undo only closes the cutover (endpoint found as it was, killswitch left as it is) so that
    // the recovery can be abandoned, warning of what users may have written on the copy meanwhile.
    const previous = this.entry(CUTOVER_STEPS.endpoint)?.undo?.endpoint?.previous;
    // Unread, the endpoint would pass for one not taken back, and the refusal offer --resume alone.
    const current = reopen
      ? await readEndpoint(deps, settings.endpoint).catch(async (error: unknown) => {
          await this.put(undefined, {}, true);
          throw new OperatorError(
            `recover cutover --undo: recovery ${id}: cannot read where the API's database endpoint points (${describeEndpoint(settings.endpoint)}: ${namedLine(error)}), so cannot tell whether production was taken back to ${this.record.sourceInstance}: nothing changed; fix the cause (your right to read it, recovery.endpoint), then run "${OPERATOR_CLI} recover cutover ${id} --undo --yes" again`,
          );
        })
      : '';
    const back = reopen !== undefined && backOnOld(current, previous);
    // Past a reopening, the journal says what was started (the rename among it), the world what
    // happened: closed only while both instances keep their names from before the rename.
    const instances = reopen && !held && back ? await this.instancesFound() : undefined;
    const moved = instances?.moved;
    const copyGone = instances?.copyGone === true;
    if (reopen && moved) {
      await this.put(undefined, {}, true);
      throw new OperatorError(this.movedRefusal(reopen, current, moved, copyGone, settings), moved.unread ? 1 : 3);
    }
    let warning = back && reopen ? this.writesLeftOnCopy(copyGone) : undefined;
    if (reopen && !back) {
      await this.put(undefined, {}, true);
      throw new OperatorError(
        // Stopped at someone's hold, nothing was reopened; but the hold is all that keeps users off
        // the copy, its holder may lift it (or it may expire) during an undo's redeploy, and their
        // writes there would then be lost: refused too, in words that say what happened.
        held
          ? this.heldUndoRefusal(reopen, settings)
          : `recover cutover --undo: recovery ${id}: the killswitch was reopened on ${this.record.newInstance} at ${reopen.startedAt}: production may have taken writes there and going back would lose them; finish with "${OPERATOR_CLI} recover cutover ${id} --resume --yes"`,
        3,
      );
    }
    // recovery.ecs taken out of cdk.json since the cutover: tasks started after the endpoint switch
    // read the copy's value, and with no service to redeploy the undo would set the endpoint back and
    // let users in on them (their writes on the copy lost), or keep production in maintenance for a
    // redeploy no undo can run. Refused, as the forward is, before any change; but only here, after
    // the status, the lease and the refusals above: an undo those refuse is refused whatever
    // cdk.json says, and editing it would not let that undo run.
    const left = settings.ecs?.serviceNames.length ? [] : [CUTOVER_STEPS.endpoint, CUTOVER_STEPS.redeploy].filter((step) => this.left(step));
    if (left.length) {
      await this.put(undefined, {}, true);
      throw new OperatorError(
        `recover cutover --undo: recovery ${id}: recovery.ecs is not set, and its cutover's "${left.join('" and "')}" ${left.length > 1 ? 'are' : 'is'} not undone: tasks started since the endpoint switch read the copy's endpoint (they read it at start), and with no ECS service to redeploy they would stay on the copy once users are let in (their writes there lost); ${SET_RECOVERY_ECS}`,
        2,
      );
    }
    const undoCommand = `"${OPERATOR_CLI} recover cutover ${id} --undo --yes"`;
    /** An undo done whose journal mark alone was refused: nothing is left by hand, `next` is what the next --undo does. */
    const markNotSaved = (done: string, error: unknown, next = 'writes it') => `${done}; its journal mark was not saved (${oneLine(error)}): ${undoCommand} ${next}`;
    /** What an undo that threw leaves: its mark alone when it was done, else the change, to be put back by hand. */
    const byHand = (error: unknown, done?: string) => (done !== undefined ? markNotSaved(done, error) : `${oneLine(error)}: do it by hand`);
    /**
     * `failed`: what the report says of an undo that threw, given what the action did when only its
     * journal mark was refused. @default byHand
     */
    type Failed = (error: unknown, done?: string) => string;
    const undo = async (entry: JournalEntry, action: () => Promise<{ outcome: 'undone' | 'skipped'; detail: string }>, failed: Failed = byHand) => {
      const at = this.now();
      let done: string | undefined;
      try {
        const { outcome, detail } = await action();
        done = detail;
        // Reported once journaled: a refused write is the step's one report, `undo-failed`.
        await this.put({ ...entry, state: 'undone', detail: `${entry.detail ?? ''}${entry.detail ? '; ' : ''}undo: ${detail}` });
        this.report(entry.step, at, outcome, detail);
      } catch (error) {
        if (error instanceof LeaseLostError) throw error;
        const detail = failed(error, done);
        this.report(entry.step, at, 'undo-failed', detail);
        await this.put({ ...entry, state: 'undo-failed', detail: `undo failed: ${detail}` }).catch(() => undefined);
      }
    };
    // Set when a mark of the close was refused: the reopening then stays journaled, so that the next
    // --undo runs down the close path again (marked undone, it would leave that mark outstanding for good).
    let closeLeft = false;
    try {
      if (reopen && !held) {
        const { sourceInstance: old, newInstance: copy } = this.record;
        const found = `production found back on ${old} (${describeEndpoint(settings.endpoint)} reads ${current}), ${copyGone ? `${old} under its name, no instance named ${copy}` : `${old} and ${copy} under their names`}`;
        const markRefused = (error: unknown) => `${oneLine(error)}: ${undoCommand} marks it again`;
        const rename = this.entry(CUTOVER_STEPS.rename);
        if (rename && outstanding(rename)) await undo(rename, async () => ({ outcome: 'undone', detail: `${found}: the rename never took effect (or was undone by hand), nothing renamed` }), markRefused);
        // instancesFound found the copy unprotected and tagged again (as abandon needs it), or gone.
        const kept = [CUTOVER_STEPS.protect, CUTOVER_STEPS.untag].map((step) => this.entry(step)).filter((entry): entry is JournalEntry => entry !== undefined && outstanding(entry));
        const unkept = copyGone ? '' : `, ${copy} without deletion protection and tagged ${RECOVERY_PURPOSE_TAG.Key}=${RECOVERY_PURPOSE_TAG.Value}`;
        for (const entry of kept) await undo(entry, async () => ({ outcome: 'undone', detail: `${found}${unkept}: nothing to put back` }), markRefused);
        // Last of the close's writes, and only once the others are journaled: while the reopening
        // stays journaled, an undo killed or refused between two of them runs again down this path
        // and closes what is left (a rename left outstanding behind an undone reopening would hold
        // the recovery for good).
        closeLeft = [CUTOVER_STEPS.rename, CUTOVER_STEPS.protect, CUTOVER_STEPS.untag].some((step) => this.left(step));
        if (!closeLeft) await undo(reopen, async () => ({ outcome: 'skipped', detail: `${found}: left as is` }));
      }
      let endpointSetBack = false;
      const endpoint = this.entry(CUTOVER_STEPS.endpoint);
      if (endpoint && outstanding(endpoint) && endpoint.undo?.endpoint) {
        const { previous, target } = endpoint.undo.endpoint;
        const old = this.record.sourceInstance;
        if (settings.ecs && !this.entry(CUTOVER_STEPS.redeploy)) {
          // Journaled before the endpoint is set back: an undo that stops once it is (killed, its
          // mark refused, killed in the services' wait) leaves the redeploy outstanding, so the next
          // one restarts the tasks that read the copy's value before it lets users in. Refused, the
          // undo stops with nothing changed.
          const services = settings.ecs.serviceNames.join(', ');
          await this.put({ step: CUTOVER_STEPS.redeploy, state: 'started', startedAt: this.now().toISOString(), by: this.leaseOwner, detail: UNDO_REDEPLOY_NOT_RUN }).catch(async (error: unknown) => {
            if (error instanceof LeaseLostError) throw error;
            // Not journaled: the release below must not write it either (the line says it was not).
            this.journal = this.journal.filter((e) => e.step !== CUTOVER_STEPS.redeploy);
            const refused = namedLine(error);
            // A cutover failed by the same refusal (DynamoDB throttling its marks) names it once.
            const same = cause !== undefined && refused.endsWith(cause);
            // Says what this undo did (it wrote nothing), not what the journal implies: the
            // killswitch may have been lifted or set degraded by hand during the cutover (users in,
            // on the copy), the endpoint set back by hand; neither was read here.
            const stopped = `cannot journal the redeploy of ${services} before setting ${describeEndpoint(settings.endpoint)} back (${same ? 'the same error' : refused}): nothing undone: the endpoint not set back, the killswitch left as it is (users are kept out only while it holds the cutover's maintenance: check with "${OPERATOR_CLI} killswitch status"); fix the cause, then run ${undoCommand}`;
            if (!cause) {
              // A stop of the undo's own, the cutover left as it was: the team is told with its line,
              // as at the cutover's stops (best-effort: EventBridge may refuse too).
              const line = `recover cutover --undo: recovery ${id}: ${stopped}${await this.release()}`;
              await announce(deps.events, RECOVERY_EVENTS.cutoverInterrupted, { summary: line, at: this.now().toISOString(), recoveryId: id }).catch(() => undefined);
              throw new OperatorError(line, 1, { cause: error });
            }
            // A failed cutover left `cutting-over`: as a stop of its own, the record keeps why and its
            // steps, and the team hears it failed. Both best-effort: DynamoDB may be what refused.
            const failed = `(${same ? refused : cause}), and its undo ${stopped}${await this.release({ cutoverError: cause, cutover: this.steps })}`;
            await announce(deps.events, RECOVERY_EVENTS.cutoverFailed, { summary: `Recovery ${id}: cutover FAILED ${failed}`, at: this.now().toISOString(), recoveryId: id, steps: this.steps }).catch(() => undefined);
            throw new OperatorError(`recover cutover${this.mode === 'resume' ? ' --resume' : ''}: recovery ${id}: the cutover failed ${failed}`, 1, { cause: error });
          });
        }
        await undo(
          endpoint,
          async () => {
            const current = await readEndpoint(deps, settings.endpoint);
            if (current === target) {
              await writeEndpoint(deps, settings.endpoint, previous);
              endpointSetBack = true;
              return { outcome: 'undone', detail: `${describeEndpoint(settings.endpoint)} set back to ${previous}` };
            }
            if (backOnOld(current, previous)) {
              // Back on the old instance while the step is outstanding: set back by hand, or by an
              // earlier undo whose mark was refused (or, journaled only as started, maybe never
              // switched). Tasks may have read the copy's value meanwhile: they restart before users
              // are let in, at the cost of a redeploy that may not have been needed.
              endpointSetBack = true;
              return { outcome: 'undone', detail: `${describeEndpoint(settings.endpoint)} still ${current}: nothing to set back` };
            }
            // Another value (an RDS Proxy or a CNAME that may reach the copy): never taken for production
            // back on the old instance. Left outstanding, so the killswitch stays in maintenance (users
            // kept off whatever it reaches) and abandon is refused, until someone points it back.
            throw new EndpointElsewhere(
              `${describeEndpoint(settings.endpoint)} is now "${current}", neither ${target} (${this.record.newInstance}) that the cutover set nor ${previous} (${old}) from before it: left as is, and users kept out; point it back at ${old}: ${endpointCommand(settings.endpoint, previous)}, then ${undoCommand}`,
            );
          },
          (error, done) => (error instanceof EndpointElsewhere ? error.message : byHand(error, done)),
        );
      }
      const redeploy = this.entry(CUTOVER_STEPS.redeploy);
      const endpointLeft = endpoint !== undefined && outstanding(this.entry(CUTOVER_STEPS.endpoint) ?? endpoint);
      // Journaled by the endpoint's undo before it set anything back: an endpoint set back always finds it here.
      if (settings.ecs && redeploy && !endpointLeft && (endpointSetBack || outstanding(redeploy))) {
        const { clusterArn, serviceNames } = settings.ecs;
        // Tasks started while the endpoint pointed at the copy read it: they all restart on the
        // previous one, and are back only once the services are stable on that deployment (the
        // cutover's own wait: its polling renews the lease and hears Ctrl-C).
        await undo(
          redeploy,
          async () => {
            const forced = await forceRedeploy(deps.ecs, clusterArn, serviceNames, deps.sleep);
            await waitStable(deps.ecs, clusterArn, forced, settings.serviceStableTimeoutSeconds ?? 900, this.polling(settings));
            return { outcome: 'undone', detail: `${serviceNames.join(', ')} redeployed and stable on the previous endpoint` };
          },
          (error, done) =>
            // Stable, only the mark refused: the redeploy stays journaled, so the next --undo runs it again.
            done !== undefined
              ? markNotSaved(done, error, 'redeploys them again and writes it')
              : `${error instanceof Interrupted ? "stopped at the operator's request before the services were stable" : oneLine(error)}: the services may still run tasks on the copy; once the cause is fixed, ${undoCommand} redeploys them and waits again`,
        );
      }
      // Not back on the previous endpoint yet (endpoint or redeploy not undone): users let in now would write to the copy.
      const notBack = [CUTOVER_STEPS.endpoint, CUTOVER_STEPS.redeploy].filter((step) => this.left(step));
      const maintenance = this.entry(CUTOVER_STEPS.maintenance);
      if (maintenance && outstanding(maintenance) && maintenance.undo?.killswitch) {
        const { previous, setReason } = maintenance.undo.killswitch;
        const keptClosed = `traffic reopens only once the services run on the previous endpoint (${notBack.join(', ')} not undone); ${undoCommand} reopens it after the redeploy`;
        let found = false;
        await undo(maintenance, async () => {
          // Read first, even while the services are not back: only the cutover's own maintenance is
          // kept; a value someone set since (users let in after a way back by hand) is said as it is.
          const current = await readKillswitch(deps.ssm, settings.killswitchParameter).catch((error: unknown) => {
            if (notBack.length) throw new KeptClosed(`not reopened (the killswitch could not be read: ${namedLine(error)}): ${keptClosed}`);
            throw error;
          });
          if (isCutoverMaintenance(current.value, setReason)) {
            found = true;
            if (notBack.length) throw new KeptClosed(`${KEPT_IN_MAINTENANCE}${keptClosed}`);
            const conflict = await restoreKillswitch(deps, settings.killswitchParameter, previous, this.actor, `recovery ${id}: cutover undone`, current);
            return { outcome: 'undone', detail: `back to ${previous?.mode ?? 'normal'}${conflict ? `; ${conflict}` : ''}` };
          }
          // Judged as every reader judges it: a value whose expiry has passed is normal.
          const expired = current.value && effectiveMode(current.value, this.now().getTime()) !== current.value.mode ? current.value : undefined;
          if (maintenance.state === 'started' && current.value?.reason !== setReason) {
            return { outcome: 'undone', detail: `never set by this cutover: ${expired ? `now normal, by ${expiryOf(expired)}` : `still ${current.value?.mode ?? 'malformed'}`}` };
          }
          if (expired) return { outcome: 'skipped', detail: `now normal, by ${expiryOf(expired)}, set since the cutover: left as is` };
          return { outcome: 'skipped', detail: `now ${current.value?.mode ?? 'malformed'} (set by ${current.value?.actor ?? '?'}: ${current.value?.reason ?? '?'}) since the cutover: left as is` };
        }, (error, done) =>
          // Read and acted on, only the mark refused: the next --undo reads it again and marks it.
          done !== undefined
            ? `${KILLSWITCH_READ}${markNotSaved(done, error)}`
            : error instanceof KeptClosed
              ? error.message
              : found && sentUnconfirmed(error)
                ? `${GIVE_BACK_UNCONFIRMED} (${oneLine(error)}): the killswitch may be back to ${previous?.mode ?? 'normal'} or still in maintenance; check it with "${OPERATOR_CLI} killswitch status"; ${undoCommand} reads it again`
                : `${found ? KEPT_IN_MAINTENANCE : ''}${oneLine(error)}: do it by hand`);
      }
      // Checks changed nothing: nothing to undo.
      for (const entry of this.journal.filter((e) => outstanding(e) && !e.undo && e.step !== CUTOVER_STEPS.redeploy && !(closeLeft && e.step === CUTOVER_STEPS.reopen))) {
        await this.put({ ...entry, state: 'undone' });
      }
    } catch (error) {
      if (error instanceof LeaseLostError) return this.result(false, 'cutting-over', { interrupted: true, error: error.message }, settings);
      throw error;
    }
    const failedUndos = this.steps.filter((s) => s.outcome === 'undo-failed').length;
    const error = cause ?? (failedUndos ? `cutover undo by ${this.actor} not finished (${failedUndos} undo(s) failed)` : `cutover interrupted and undone by ${this.actor}`);
    const unknown = killswitchUnknown(this.steps);
    const closed = keptInMaintenance(this.steps) ? `; production stays in maintenance until ${undoCommand} finishes` : unknown ? `; ${unknown}` : '';
    // Refused, a record still `cutting-over` is closed by the next --undo; one already
    // `cutover-failed` keeps its earlier outcome (the next --undo finds nothing left to undo).
    const wasOpen = this.record.status === 'cutting-over';
    const kept = await this.released({ status: 'cutover-failed', cutover: this.steps, cutoverError: error }, wasOpen ? `: ${undoCommand} run after that records it` : '');
    const unrecorded = kept && {
      takenOver: kept.takenOver,
      line: kept.takenOver
        ? `this run put back what it found, but its undo is not recorded${kept.line}`
        : `the undo is not recorded, the record still says "${this.record.status}"${wasOpen ? '' : ' with its earlier outcome'}${kept.line}`,
    };
    if (unrecorded) warning = [warning, unrecorded.line].filter(Boolean).join('; ');
    await announce(deps.events, cause ? RECOVERY_EVENTS.cutoverFailed : RECOVERY_EVENTS.cutoverUndone, {
      summary: `Recovery ${id}: cutover ${cause ? `FAILED (${cause})` : `undone by ${this.actor}`}; ${this.steps.filter((s) => s.outcome === 'undone').length} change(s) undone, ${failedUndos} undo(s) failed${closed}${warning ? `; WARNING: ${warning}` : ''}`,
      at: this.now().toISOString(),
      recoveryId: id,
      steps: this.steps,
    }).catch(() => undefined);
    return this.result(false, unrecorded ? this.record.status : 'cutover-failed', { error, ...(warning && { warning }), ...(unrecorded && { unrecorded }) }, settings);
  }

  /**
   * What an undo closing a cutover taken back by hand warns of: whatever let users in on the copy
   * before the way back (a reopening, a hold that expired, was lifted or was degraded), their writes
   * there are not on the old instance.
   */
  private writesLeftOnCopy(copyGone: boolean): string {
    const { sourceInstance: old, newInstance: copy } = this.record;
    const where = copyGone
      ? `, and no instance is named ${copy} any more (deleted by hand)`
      : `; ${copy} is left as it is, and "${OPERATOR_CLI} recover abandon ${this.id}" deletes it (after a final snapshot): look for them there first`;
    return `users may have written on ${copy} before production was taken back to ${old}: those writes are not on ${old}${where}`;
  }

  /**
   * Past a reopening, with the endpoint back on the old instance: `moved`, what keeps the undo from
   * closing the cutover, none when the old instance keeps its name from before the rename (with the
   * resource id the recovery recorded) and the copy its own; `copyGone`, no instance under the copy's
   * name (deleted by hand since: nothing of it for abandon to keep or delete, no reason to refuse).
   */
  private async instancesFound(): Promise<{ moved?: Moved; copyGone?: boolean }> {
    const { sourceInstance: old, newInstance: copy } = this.record;
    const recorded = this.entry(CUTOVER_STEPS.rename)?.undo?.oldResourceId ?? this.record.sourceResourceId;
    let oldId: string | undefined;
    let copyGone: boolean;
    let kept: { found: string; command: string }[] = [];
    try {
      oldId = await instanceResourceId(this.deps.rds, old);
      copyGone = (await instanceState(this.deps.rds, copy)).status === 'not-found';
      // Journaled, the steps past the rename may have protected the copy and taken its purpose tag:
      // closed so, the cutover would leave abandon refused for good and the recovery held.
      if (!copyGone && [CUTOVER_STEPS.protect, CUTOVER_STEPS.untag].some((step) => this.left(step))) kept = await copyKeptFromAbandon(this.deps.rds, copy);
    } catch (error) {
      return { moved: { found: `the instances cannot be read (${namedLine(error)})`, unread: true } };
    }
    const renamed = !recorded
      ? `no resource id was recorded to tell ${old} by`
      : oldId === undefined
        ? `no instance is named ${old}`
        : oldId !== recorded && `${old} is another instance (DbiResourceId ${oldId}, the recovery recorded ${recorded})`;
    const found = [...(renamed ? [renamed] : []), ...kept.map((k) => k.found)];
    if (!found.length) return { copyGone };
    return { copyGone, moved: { found: found.join(' and '), ...(renamed && { names: true }), ...(kept.length && { copyCommands: kept.map((k) => `"${k.command}"`).join(', then ') }) } };
  }

  /**
   * The undo's refusal past a reopening when the endpoint is back on the old instance but the
   * instances are not as before the rename. `copyGone`: no instance under the copy's name (deleted by
   * hand): finishing on it is no way out, only putting the old instance back under its name is.
   */
  private movedRefusal(reopen: JournalEntry, current: string, moved: Moved, copyGone: boolean, settings: CutoverSettings): string {
    const { id } = this;
    const { sourceInstance: old, newInstance: copy } = this.record;
    const rename = this.entry(CUTOVER_STEPS.rename);
    const renamedTo = rename?.undo?.renamedTo;
    const target = this.entry(CUTOVER_STEPS.endpoint)?.undo?.endpoint?.target ?? `<${copy}'s address>:<port>`;
    const again = `"${OPERATOR_CLI} recover cutover ${id} --undo --yes"`;
    const back = [
      moved.names &&
        `put ${old} back under its name (it may be ${renamedTo ?? '<old>-replaced-<time>'} now: "aws rds modify-db-instance --db-instance-identifier ${renamedTo ?? '<its name now>'} --new-db-instance-identifier ${old} --apply-immediately", then remove its atmr-dr:replaced-* tags)${copyGone ? '' : `, with ${copy} still under its name`}`,
      moved.copyCommands && `give ${copy} back to abandon (someone allowed to change it runs: ${moved.copyCommands})`,
    ].filter(Boolean);
    const byHand = moved.unread
      ? `fix the cause (your right to rds:DescribeDBInstances), then run ${again} again`
      : copyGone
        ? `by hand, ${back.join(' and ')}, then run ${again} again`
        : `by hand, either ${back.join(' and ')}, then run ${again} again; or finish on ${copy}: point the API at it (${endpointCommand(settings.endpoint, target)}), then "${OPERATOR_CLI} recover cutover ${id} --resume --yes"`;
    const found = copyGone ? `${moved.found}, and no instance is named ${copy} (deleted by hand)` : moved.found;
    return `recover cutover --undo: recovery ${id}: the killswitch was reopened on ${copy} at ${reopen.startedAt}${rename ? ` and the rename of ${old} was left ${rename.state} at ${rename.startedAt}` : ''}; ${describeEndpoint(settings.endpoint)} reads ${current} again (${old}), but ${found}: nothing changed, nothing renamed; ${byHand}`;
  }
}

/**
 * What keeps the undo from closing a cutover taken back by hand past a reopening: `names`, the old
 * instance not under its name from before the rename; `copyCommands`, the copy left protected or
 * untagged, with the commands that give it back to abandon; `unread`, RDS could not be read.
 */
interface Moved {
  readonly found: string;
  readonly unread?: boolean;
  readonly names?: boolean;
  readonly copyCommands?: string;
}

/** The endpoint's form as the cutover writes it (`host:port`), and the undo writes back what it found. */
const HOST_PORT = /^[A-Za-z0-9.-]+:\d{1,5}$/;

export function describeEndpoint(endpoint: EndpointSwitch): string {
  return endpoint.kind === 'secretHost' ? `secret ${endpoint.secretArn} host` : `parameter ${endpoint.parameterName}`;
}

/** How to point the API's endpoint at `value` (`host:port`) by hand: the command, or the secret's keys to set. */
export function endpointCommand(endpoint: EndpointSwitch, value: string): string {
  return endpoint.kind === 'ssmParameter'
    ? `"aws ssm put-parameter --name ${endpoint.parameterName} --type String --overwrite --value ${value}"`
    : splitEndpoint(value).port === ''
      ? // The secret had no "port" key before the cutover: its host names the instance.
        `"host" of secret ${endpoint.secretArn} set to ${splitEndpoint(value).host}`
      : `"host" and "port" of secret ${endpoint.secretArn} set to ${value}`;
}

/**
 * The shell command that points the API's endpoint at `value` (`host:port`) as the cutover writes it
 * (setEndpoint): the parameter overwritten; the secret re-read and written back with only its host
 * and port (a number) changed, so a password rotated meanwhile is kept; without a port, its host alone.
 */
export function endpointWriteCommand(endpoint: EndpointSwitch, value: string): string {
  if (endpoint.kind === 'ssmParameter') return `aws ssm put-parameter --name ${endpoint.parameterName} --type String --overwrite --value ${value}`;
  const { host, port } = splitEndpoint(value);
  const edit = `.host = "${host}"${port ? ` | .port = ${Number(port)}` : ''}`;
  return `aws secretsmanager get-secret-value --secret-id ${endpoint.secretArn} --query SecretString --output text | jq -c '${edit}' | aws secretsmanager put-secret-value --secret-id ${endpoint.secretArn} --secret-string file:///dev/stdin`;
}

/** `host:port` split at its last colon; a value with none is a host alone. */
function splitEndpoint(value: string): { host: string; port: string } {
  const separator = value.lastIndexOf(':');
  return separator < 0 ? { host: value, port: '' } : { host: value.slice(0, separator), port: value.slice(separator + 1) };
}

/**
 * Production is back on the old instance: the endpoint (`current`) names the host it named before
 * the cutover (`previous`, journaled), case aside as DNS has it, on the same port, or on any port
 * when none was journaled (the secret had no "port" key: setting its host back is all it takes).
 * The one test of "taken back by hand", for the resume's stop and the undo alike: a value that only
 * no longer names the copy (a proxy in front of it) is not.
 */
function backOnOld(current: string, previous: string | undefined): boolean {
  if (!previous) return false;
  const before = splitEndpoint(previous);
  const now = splitEndpoint(current);
  return before.host !== '' && now.host.toLowerCase() === before.host.toLowerCase() && (before.port === '' || now.port === before.port);
}

/**
 * Which instance the API's endpoint (`current`, as readEndpoint gives it) names after a finished
 * cutover: the copy, when its host is the one the cutover set (journaled, else the record's) or its
 * first DNS label is the copy's name (an RDS address starts with its instance's, whatever the port);
 * the old instance, by backOnOld (taken back by hand); else neither (a proxy, a CNAME, another
 * instance: which one production runs on is not known). The copy is tested first: a value that
 * could be both is never taken for production back on the old instance.
 */
export function endpointNames(current: string, record: Pick<RecoveryRecord, 'newInstance' | 'newInstanceHost' | 'journal'>): 'copy' | 'old' | 'neither' {
  const switched = record.journal?.find((e) => e.step === CUTOVER_STEPS.endpoint)?.undo?.endpoint;
  const host = splitEndpoint(current).host.toLowerCase();
  const copyHost = (switched?.target ? splitEndpoint(switched.target).host : record.newInstanceHost)?.toLowerCase();
  if (host !== '' && (host === copyHost || host.split('.')[0] === record.newInstance.toLowerCase())) return 'copy';
  return backOnOld(current, switched?.previous) ? 'old' : 'neither';
}

/** Where the API's endpoint points now (`host:port`, or the parameter's value). */
export async function readEndpoint(deps: Pick<CutoverDeps, 'ssm' | 'secretsManager'>, endpoint: EndpointSwitch): Promise<string> {
  if (endpoint.kind === 'ssmParameter') return (await deps.ssm.send(new GetParameterCommand({ Name: endpoint.parameterName }))).Parameter?.Value ?? '';
  const secret = await readSecretJson(deps.secretsManager, endpoint.secretArn);
  return `${String(secret.host ?? '')}:${String(secret.port ?? '')}`;
}

/** Points the API at `value` (`host:port`); idempotent. */
async function writeEndpoint(deps: CutoverDeps, endpoint: EndpointSwitch, value: string): Promise<void> {
  if (endpoint.kind === 'ssmParameter') {
    await deps.ssm.send(new PutParameterCommand({ Name: endpoint.parameterName, Value: value, Type: 'String', Overwrite: true }));
    return;
  }
  // Only host and port change (re-read first): a password rotated meanwhile is kept.
  const secret = await readSecretJson(deps.secretsManager, endpoint.secretArn);
  const { host, port } = splitEndpoint(value);
  await deps.secretsManager.send(
    new PutSecretValueCommand({ SecretId: endpoint.secretArn, SecretString: JSON.stringify({ ...secret, host, ...(port && { port: Number(port) }) }) }),
  );
}

async function readSecretJson(client: SecretsManagerClient, secretArn: string): Promise<Record<string, unknown>> {
  const raw = (await client.send(new GetSecretValueCommand({ SecretId: secretArn }))).SecretString;
  try {
    const parsed = JSON.parse(raw ?? '') as unknown;
    if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) return parsed as Record<string, unknown>;
  } catch {
    // fall through
  }
  throw new OperatorError(`recover cutover: secret ${secretArn} is not a JSON object: the API's endpoint cannot be switched there; use recovery.endpoint.kind ssmParameter`);
}

/**
 * Gives back the value before the cutover's maintenance. `read`: the reading that found the cutover's
 * maintenance, so that a write landing after it is seen. Returns the conflict writeKillswitch saw
 * (another write around ours), for the step's detail.
 */
async function restoreKillswitch(deps: CutoverDeps, parameterName: string, value: KillswitchValue | null, actor: string, reason: string, read: KillswitchReading): Promise<string | undefined> {
  const { conflict } = await writeKillswitch({ ssm: deps.ssm, now: deps.now }, { parameterName, ...restoredValue(value, reason, actor) }, read);
  return conflict?.message;
}

/** A value whose expiry has passed, as the reopen step and the undo say it. */
const expiryOf = (value: KillswitchValue) => `the expiry of ${value.actor}'s ${value.mode} (${value.reason}; expired at ${value.expiresAt}: normal to every reader)`;

/** What the cutover gives back: the value before its maintenance, unless that was normal (then normal, with `reason`, by `actor`). */
function restoredValue(value: KillswitchValue | null, reason: string, actor = '') {
  return value && value.mode !== 'normal'
    ? { mode: value.mode, reason: value.reason, actor: value.actor, expiresAt: value.expiresAt ? new Date(value.expiresAt) : null }
    : { mode: 'normal' as const, reason, actor, expiresAt: null };
}

/**
 * One new deployment per service, never two: a retried request whose answer was lost would start a
 * second (forceNewDeploymentOnce). Its wait before reading back is a plain sleep, not the polls' one
 * that a stop request cuts short: read back too early, a started deployment could be missed and forced again.
 *
 * Returns each service's forced deployment id, for waitStable, which counts a service stable on that
 * deployment only. An answer naming none (forceNewDeploymentOnce returns no id when ECS's answer
 * lists no PRIMARY deployment) leaves nothing to wait for: the step fails rather than take some other
 * deployment, whose tasks may run on the other endpoint, for this one. Every service is forced first
 * all the same, so that every service's tasks move to the endpoint now set while the operator looks.
 */
async function forceRedeploy(ecs: ECSClient, cluster: string, services: readonly string[], sleep?: (ms: number) => Promise<void>): Promise<ReadonlyMap<string, string>> {
  const forced = new Map<string, string>();
  const unknown: string[] = [];
  for (const service of services) {
    const { deploymentId } = await forceNewDeploymentOnce(ecs, { cluster, service, sleep });
    if (deploymentId) forced.set(service, deploymentId);
    else unknown.push(service);
  }
  if (unknown.length) {
    throw new Error(
      unknown
        .map(
          (service) =>
            `ECS service ${service}: UpdateService answered without the deployment it started (no PRIMARY deployment id), so the wait cannot tell its tasks from the previous ones; look at the service's deployments (aws ecs describe-services --cluster ${cluster} --services ${service})`,
        )
        .join('; '),
    );
  }
  return forced;
}

/** How the cutover waits: the poll interval, its clock and sleep, and what runs between two polls. */
interface Polling {
  readonly pollMs: number;
  readonly sleep: (ms: number) => Promise<void>;
  readonly now: () => Date;
  /** Runs between two attempts: stops when asked, else renews the lease. */
  readonly tick: () => Promise<void>;
}

/**
 * Repeats `attempt` every `pollMs` until it reports done (undefined), or throws the message `late`
 * makes of what the last attempt still waited for once `timeoutSeconds` have passed. An error that
 * `attempt` throws ends the wait at once.
 */
async function pollUntil(polling: Polling, timeoutSeconds: number, attempt: () => Promise<string | undefined>, late: (waitingFor: string) => string): Promise<void> {
  const deadline = polling.now().getTime() + timeoutSeconds * 1000;
  for (;;) {
    const waitingFor = await attempt();
    if (waitingFor === undefined) return;
    if (polling.now().getTime() >= deadline) throw new Error(late(waitingFor));
    await polling.sleep(polling.pollMs);
    await polling.tick();
  }
}

/**
 * Waits until each service's PRIMARY deployment is the one forced for it (`forced`: service name ->
 * deployment id, from forceRedeploy) and that deployment is done. Any other PRIMARY deployment is
 * never counted: ECS reads are eventually consistent, and just after UpdateService they may still show
 * the previous deployment PRIMARY and COMPLETED, its tasks on the other endpoint (traffic reopened
 * then lets users write to the copy, or /ready and the write check run on the old tasks). A
 * deployment someone else started since looks the same from here: the wait goes on, and its timeout
 * names the deployment found for the operator to look at.
 */
function waitStable(ecs: ECSClient, cluster: string, forced: ReadonlyMap<string, string>, timeoutSeconds: number, polling: Polling): Promise<void> {
  return pollUntil(
    polling,
    timeoutSeconds,
    async () => {
      const described = (await ecs.send(new DescribeServicesCommand({ cluster, services: [...forced.keys()] }))).services ?? [];
      const pending: string[] = [];
      for (const [name, deploymentId] of forced) {
        const service = described.find((s) => s.serviceName === name);
        // Ours failed, wherever it is listed: ECS's circuit breaker, rolling it back, makes another
        // deployment PRIMARY and keeps ours FAILED beside it, so waiting for ours to be PRIMARY would
        // only run out the timeout.
        const ours = service?.deployments?.find((d) => d.id === deploymentId);
        if (ours?.rolloutState === 'FAILED') throw new Error(`ECS service ${name}: deployment failed (${ours.rolloutStateReason ?? 'no reason given'})`);
        const primary = service?.deployments?.find((d) => d.status === 'PRIMARY');
        if (primary?.id !== deploymentId) {
          pending.push(`${name} (its PRIMARY deployment is ${primary?.id ?? 'none'}, not ${deploymentId} that this redeploy started: someone else deployed since? look at the service's deployments)`);
          continue;
        }
        const done = primary.rolloutState === 'COMPLETED' || (service!.deployments!.length === 1 && primary.runningCount === primary.desiredCount);
        if (!done) pending.push(name);
      }
      return pending.length === 0 ? undefined : pending.join(', ');
    },
    (pending) => `ECS services not stable after ${timeoutSeconds} s: ${pending}`,
  );
}

function waitReady(fetchFn: typeof fetch, url: string, timeoutSeconds: number, polling: Polling): Promise<void> {
  return pollUntil(
    polling,
    timeoutSeconds,
    async () => {
      // The probe's own check: redirects are not followed (a /ready sent to a sign-in page that
      // answers 200 is not a ready API), and at most 64 KiB of the body is read.
      const result = await checkHttp(url, 10_000, fetchFn);
      if (result.up) return undefined;
      return result.reason?.startsWith('http-') ? `HTTP ${result.reason.slice('http-'.length)}` : `${result.reason}${result.detail ? `: ${result.detail}` : ''}`;
    },
    (last) => `${url} did not answer 200 within ${timeoutSeconds} s (last: ${last})`,
  );
}

/**
 * A real write on the new primary, rolled back: proves it is not read-only nor a replica in
 * recovery. It connects with the database secret's role, which need not own the database nor have
 * CREATE on its schemas (the shared proof writes a temporary table).
 */
export async function writeCheck(connection: SessionConfig): Promise<void> {
  const client = await openClient({ ...connection, statement_timeout: 15_000 });
  try {
    await proveWriteRolledBack(client);
  } catch (error) {
    throw new Error(`the recovered database refused a write: ${oneLine(error)}`);
  } finally {
    await client.end().catch(() => undefined);
  }
}
