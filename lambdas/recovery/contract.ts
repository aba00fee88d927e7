import { OPERATOR_CLI } from '../shared/constants';
import type { KillswitchValue } from '../killswitch/value';

/**
 * What the recovery workflow, its handler, the construct and the CLI agree on: names of
 * environment variables, the record kept in the ops-state table, event detail types, metrics.
 */

export const RECOVERY_SERVICE = 'recovery';

/** Environment of the workflow's function (non-secret settings only). */
export const RECOVERY_ENV = {
  /** The cdk.json environment, named with --env in every command a page prints. */
  environmentName: 'RECOVERY_ENVIRONMENT_NAME',
  sourceInstance: 'RECOVERY_SOURCE_INSTANCE',
  newInstancePrefix: 'RECOVERY_NEW_INSTANCE_PREFIX',
  subnetGroupName: 'RECOVERY_SUBNET_GROUP',
  tags: 'RECOVERY_TAGS',
  opsTable: 'RECOVERY_OPS_TABLE',
  databaseName: 'RECOVERY_DATABASE_NAME',
  productionHost: 'RECOVERY_PRODUCTION_HOST',
  productionPort: 'RECOVERY_PRODUCTION_PORT',
  secretArn: 'RECOVERY_SECRET_ARN',
  criticalTables: 'RECOVERY_CRITICAL_TABLES',
  criticalQueries: 'RECOVERY_CRITICAL_QUERIES',
  alembicVersionTable: 'RECOVERY_ALEMBIC_TABLE',
  maxWaitSeconds: 'RECOVERY_MAX_WAIT_SECONDS',
  sslMode: 'RECOVERY_PGSSLMODE',
} as const;

/** CloudWatch metric: seconds from the request to a verified copy (stage `verified`) and to a finished cutover (stage `cutover`). */
export const RECOVERY_SECONDS_METRIC = 'RecoverySeconds';

/** EventBridge detail types (source `atmr-dr`). */
export const RECOVERY_EVENTS = {
  started: 'Recovery Started',
  verified: 'Recovery Verified',
  verificationFailed: 'Recovery Verification Failed',
  failed: 'Recovery Failed',
  cutoverStarted: 'Recovery Cutover Started',
  cutOver: 'Recovery Cut Over',
  cutoverFailed: 'Recovery Cutover Failed',
  cutoverInterrupted: 'Recovery Cutover Interrupted',
  cutoverUndone: 'Recovery Cutover Undone',
  abandoned: 'Recovery Abandoned',
} as const;

/** Tags on every instance this tool creates; cleanup may delete only instances that carry them. */
export const RECOVERY_PURPOSE_TAG = { Key: 'atmr-dr:purpose', Value: 'recovery' } as const;
export const MANAGED_TAG = { Key: 'atmr-dr:managed', Value: 'true' } as const;

export const RECOVERY_STATUSES = [
  'restoring',
  'verifying',
  'verified',
  'verification-failed',
  /**
   * The copy answered (its Alembic revision was read) but none of its data did: every critical count
   * and query outlasted the statement timeout or was left unstarted by the verification's budget. Nothing about the data was checked, so it is not
   * `verified`; nothing is known missing either, so it is not `verification-failed`. Cut over only
   * on an operator's explicit word (`recover cutover --unverified`), or abandoned.
   */
  'unverified',
  'failed',
  'cutting-over',
  'cutover-failed',
  'cut-over',
  /** Claimed by `recover abandon` (a conditional write) before it stops or deletes anything: no cutover starts from it. */
  'abandoning',
  'abandoned',
] as const;
export type RecoveryStatus = (typeof RECOVERY_STATUSES)[number];

/** A recovery stops holding the one-at-a-time lock in these states. */
export const FINAL_STATUSES: readonly RecoveryStatus[] = ['failed', 'cut-over', 'abandoned'];

/** What the workflow starts with (the CLI writes the record and the lock first). */
export interface RecoveryRequest {
  readonly recoveryId: string;
  /** ISO time to restore to. */
  readonly toTime: string;
  readonly newInstance: string;
  readonly actor: string;
  readonly reason: string;
  /** ISO time of the request: the start of the measured recovery time. */
  readonly requestedAt: string;
}

/** One side of the verification: counts, query results, Alembic revision. */
export interface SideSnapshot {
  readonly tables: Record<string, number | null>;
  readonly queries: Record<string, string | null>;
  readonly alembicRevision: string | null;
}

export interface VerificationRow {
  readonly check: string;
  readonly production: string;
  readonly recovered: string;
  /**
   * `same`; `differs` (expected after a recovery to an earlier time: shown, not a failure);
   * `slow` (the copy's read outlasted the statement timeout, or the verification's budget left no
   * time to start it: present but not read in time, shown,
   * not a failure); `missing` (absent on the recovered copy, or failing there: a failure).
   */
  readonly outcome: 'same' | 'differs' | 'slow' | 'missing';
}

export interface VerificationReport {
  /** Nothing missing on the copy, and at least one data check (count or query) read there. */
  readonly ok: boolean;
  /**
   * Every critical count and query of the copy is `slow` (outlasted the statement timeout, or not
   * started within the verification's budget): none of its data was read. Not a problem of the copy (nothing is known missing), not a verification.
   */
  readonly unread?: boolean;
  /**
   * With `unread`, what left the copy's data unread, each with its length at the time:
   * `statementTimeoutMs` when checks outlasted the statement timeout, `budgetMs` when the
   * verification's overall budget left no time to start them; both when some were of each.
   * Absent in records written before it was kept: those were the statement timeout's alone.
   */
  readonly unreadBy?: { readonly statementTimeoutMs?: number; readonly budgetMs?: number };
  readonly checkedAt: string;
  readonly rows: readonly VerificationRow[];
  readonly problems: readonly string[];
}

/** The recovery as the ops-state table keeps it (pk `RECOVERY#<id>`, sk `RECORD`). */
export interface RecoveryRecord extends RecoveryRequest {
  readonly sourceInstance: string;
  /**
   * The DbiResourceId of the instance restored from, read when the recovery started: the cutover
   * renames the old instance only if the one under its name (or under the new name, on a resume)
   * still has it. A name can be given to another instance meanwhile; a resource id cannot.
   */
  readonly sourceResourceId?: string;
  readonly status: RecoveryStatus;
  readonly updatedAt: string;
  readonly executionArn?: string;
  readonly newInstanceHost?: string;
  readonly newInstancePort?: number;
  readonly availableAt?: string;
  readonly verification?: VerificationReport;
  readonly recoverySeconds?: number;
  /**
   * The workflow's: why it failed, or a refused event or metric that let the outcome stand (a
   * "Recovery Verified" event not sent). Kept after a cutover: it still stands.
   */
  readonly error?: string;
  /**
   * The last cutover attempt's failure (a reopening that failed, an undo's cause), kept apart from
   * the workflow's `error`: a cutover that finishes removes it, and it alone. Records written before
   * it existed hold a cutover's failure in `error`.
   */
  readonly cutoverError?: string;
  /** Steps of the last cutover attempt, with times. */
  readonly cutover?: readonly CutoverStepReport[];
  readonly replacedInstance?: string;
  /**
   * The cutover's journal: one entry per step, written before the step acts (with what undoing it
   * needs) and after it; what `recover status` shows and what `--resume` / `--undo` work from.
   */
  readonly journal?: readonly JournalEntry[];
  /** Who holds the cutover lease (one operator at a time), its token, and when it goes stale (epoch ms). */
  readonly leaseOwner?: string;
  readonly leaseToken?: string;
  readonly leaseExpiresAt?: number;
  /**
   * Set by the workflow when the copy refused the database secret's credentials (the password was
   * rotated after the target time) and it set the copy's master password to the secret's current one.
   */
  readonly passwordReset?: PasswordReset;
}

/** The workflow's reset of the copy's master password, as the record keeps it (never the password). */
export interface PasswordReset {
  /** When ModifyDBInstance was accepted. */
  readonly requestedAt: string;
  /** When RDS reported it applied (the copy available again, no pending password). */
  readonly appliedAt?: string;
  /** Why: the login error of the first verification. */
  readonly reason: string;
}

/**
 * Error names the workflow's Catch states match on: the copy refused the secret's credentials
 * (PostgreSQL 28P01), and a password reset that RDS did not apply in time.
 */
export const LOGIN_REFUSED_ERROR = 'RecoveryLoginRefused';
/**
 * The copy is not `available` (RDS takes its first automated backup right after the restore): the
 * password reset is not asked of RDS then, and the workflow's Retry tries it again.
 */
export const COPY_BUSY_ERROR = 'RecoveryCopyBusy';
export const PASSWORD_RESET_TIMEOUT_ERROR = 'RecoveryPasswordResetTimeout';

/** How long RDS gets to apply a reset of the copy's password before the recovery fails (copy kept). */
export const PASSWORD_RESET_MAX_SECONDS = 15 * 60;

/** What undoing a step needs, recorded before the step changes anything. */
export interface JournalUndo {
  /** The killswitch value before the cutover (null: malformed, read as normal) and the reason the cutover wrote. */
  readonly killswitch?: { readonly previous: KillswitchValue | null; readonly setReason: string };
  /** The API's endpoint before (`host:port`) and the one the cutover sets. */
  readonly endpoint?: { readonly previous: string; readonly target: string };
  /** The name the old instance is renamed to (fixed once, so a resumed rename aims at the same name). */
  readonly renamedTo?: string;
  /** The old instance's DbiResourceId (the record's, else read before the first rename): what the rename checks, by either name. */
  readonly oldResourceId?: string;
}

export interface JournalEntry {
  readonly step: string;
  /**
   * started: written before acting (the change may or may not have happened); done / failed: after;
   * by-hand: after, left to someone the cutover's role may not act for (the commands in `detail`),
   * never retried by a resume, but for the killswitch's reopening left to whoever holds it (a resume
   * reads it again); undone / undo-failed: by an undo.
   */
  readonly state: 'started' | 'done' | 'failed' | 'by-hand' | 'undone' | 'undo-failed';
  readonly startedAt: string;
  readonly finishedAt?: string;
  readonly detail?: string;
  readonly undo?: JournalUndo;
  /** Who ran the step (the lease owner at the time). */
  readonly by: string;
}

export interface CutoverStepReport {
  readonly step: string;
  readonly startedAt: string;
  readonly seconds: number;
  /** by-hand: not a failure, a change the on-call's role is never granted, its commands in `detail` for someone allowed. */
  readonly outcome: 'done' | 'failed' | 'by-hand' | 'undone' | 'undo-failed' | 'skipped';
  readonly detail: string;
}

/** `r<yyyymmddhhmmss>-<4 hex>`: sortable, valid as a Step Functions execution name. */
export function newRecoveryId(now: Date, random: () => number = Math.random): string {
  const stamp = now.toISOString().replace(/[-:T]/g, '').slice(0, 14);
  const suffix = Math.floor(random() * 0x10000).toString(16).padStart(4, '0');
  return `r${stamp}-${suffix}`;
}

export const RECOVERY_ID_PATTERN = /^r\d{14}-[0-9a-f]{4}$/;

/** The id's form as RECOVERY_ID_PATTERN accepts it, for the lines that name it. */
export const RECOVERY_ID_FORM = 'r<yyyymmddhhmmss>-<4 hex digits>';

/** What `recover status` without an id shows, for the lines that send the operator there for an id. */
export const STATUS_WITHOUT_ID = `"${OPERATOR_CLI} recover status" without an id shows the one in progress, else the latest`;
