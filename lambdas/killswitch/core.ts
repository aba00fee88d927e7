import { nowOf } from '../shared/clock';
import { GetParameterCommand, ParameterNotFound, PutParameterCommand, SSMClient } from '@aws-sdk/client-ssm';
import { refusedWithoutEffect } from '../shared/aws-errors';
import { NotFoundError } from '../shared/errors';
import { utcMinute } from '../shared/format';
import { isExpired, KillswitchMode, KillswitchValue, parseKillswitchValue } from './value';

/** What is in the parameter now, as read with its version (the basis of conflict detection). */
export interface KillswitchReading {
  readonly version: number;
  readonly raw: string;
  /** The parsed value, or null when the stored JSON is malformed. */
  readonly value: KillswitchValue | null;
  /** Why the value is malformed, when it is. */
  readonly invalidReason?: string;
  /**
   * When SSM applied the write that holds this value (ms, `LastModifiedDate`), null if SSM gave
   * none. SSM's clock, not the writer's: `updatedAt` is whatever the writer's machine said.
   */
  readonly lastModified: number | null;
}

/**
 * What fixes a killswitch parameter SSM says does not exist, by who reads it: the fix is the
 * reader's setting that named it. A function (Slack's /killswitch, the backout page, the enforcer)
 * cannot take a flag: its name comes from its KILLSWITCH_PARAMETER setting, set by the deployment.
 * The CLI's names the flag and variable (on the worst day the stack is deployed, and the name or the
 * region is what is wrong: the CLI's line adds the region, bin/cli/region.ts).
 */
export const MISSING_PARAMETER_FIX = {
  function: "the Data stack creates it: check that it is deployed in this function's region and the function's KILLSWITCH_PARAMETER setting",
  cli: 'pass --parameter / KILLSWITCH_PARAMETER with the right name',
} as const;

/** `missingFix`: what the caller's user does about a parameter that does not exist (MISSING_PARAMETER_FIX). */
export async function readKillswitch(ssm: SSMClient, parameterName: string, missingFix: string = MISSING_PARAMETER_FIX.function): Promise<KillswitchReading> {
  let output;
  try {
    output = await ssm.send(new GetParameterCommand({ Name: parameterName }));
  } catch (error) {
    if (error instanceof ParameterNotFound || (error as { name?: string }).name === 'ParameterNotFound') {
      // The CLI tells a name not found from other refusals by the cause (notFoundHint).
      throw new NotFoundError(`killswitch: parameter ${parameterName} does not exist`, missingFix, { cause: error });
    }
    throw error;
  }
  const raw = output.Parameter?.Value ?? '';
  const version = output.Parameter?.Version ?? 0;
  const lastModified = output.Parameter?.LastModifiedDate?.getTime() ?? null;
  const parsed = parseKillswitchValue(raw);
  return parsed.ok ? { version, raw, value: parsed.value, lastModified } : { version, raw, value: null, invalidReason: parsed.error, lastModified };
}

export interface KillswitchChange {
  readonly parameterName: string;
  readonly mode: KillswitchMode;
  readonly reason: string;
  readonly actor: string;
  /** When the change reverts to normal by itself (Scheduler), or null. */
  readonly expiresAt: Date | null;
}

/** Someone else's write landed between our read and our re-read: neither intent is silently lost. */
export interface KillswitchConflict {
  /** `before`: a write landed between our read and our write (ours overwrote it);
   *  `after`: a write landed after ours (theirs is in effect). */
  readonly kind: 'before' | 'after';
  readonly message: string;
  /** What is in effect after the re-read. */
  readonly current: KillswitchReading;
}

export interface KillswitchWriteResult {
  readonly previous: KillswitchReading;
  readonly written: KillswitchValue;
  readonly version: number;
  readonly conflict?: KillswitchConflict;
}

export interface WriteDeps {
  readonly ssm: SSMClient;
  readonly now?: () => Date;
}

/**
 * Writes a new value: read the version, write, re-read. SSM has no compare-and-set, so a write by
 * someone else inside that window cannot be prevented, only detected and reported. `read` is the
 * reading the caller took before the write while it did something else (the CLI's actor lookup),
 * else it is taken here.
 */
export async function writeKillswitch(deps: WriteDeps, change: KillswitchChange, read?: KillswitchReading): Promise<KillswitchWriteResult> {
  const now = nowOf(deps);
  const written: KillswitchValue = {
    mode: change.mode,
    reason: change.reason,
    actor: change.actor,
    updatedAt: now.toISOString(),
    expiresAt: change.expiresAt ? change.expiresAt.toISOString() : null,
  };
  const previous = read ?? (await readKillswitch(deps.ssm, change.parameterName));
  try {
    return await putAndCheck(deps.ssm, change.parameterName, previous, written);
  } catch (error) {
    if (typeof error === 'object' && error !== null) WRITE_SENT.add(error);
    throw error;
  }
}

/** Errors thrown once the PutParameter was sent: it may have been applied (see writeOutcomeUnknown). */
const WRITE_SENT = new WeakSet<object>();
/** Errors thrown by the PutParameter itself (not by the re-reads after it): see sentUnconfirmed. */
const PUT_FAILED = new WeakSet<object>();

/**
 * Whether `error` came from writeKillswitch after its PutParameter was sent (it failed, timed out,
 * or the re-read did): the value may or may not be written, and only a fresh read tells.
 */
export function writeOutcomeUnknown(error: unknown): boolean {
  return typeof error === 'object' && error !== null && WRITE_SENT.has(error);
}

/**
 * A write sent and not confirmed (no answer in time, throttled, a 5xx, or its re-read failed): SSM
 * may have applied it. Only a PutParameter that SSM refused outright (denied, invalid) surely was not.
 * A refused re-read says nothing of the write before it, which may stand.
 */
export function sentUnconfirmed(error: unknown): boolean {
  return writeOutcomeUnknown(error) && !(PUT_FAILED.has(error as object) && refusedWithoutEffect(error));
}

/** The write and the re-read of writeKillswitch, with the conflict they reveal. */
async function putAndCheck(ssm: SSMClient, parameterName: string, previous: KillswitchReading, written: KillswitchValue): Promise<KillswitchWriteResult> {
  const ours = JSON.stringify(written);
  let put;
  try {
    put = await ssm.send(new PutParameterCommand({ Name: parameterName, Value: ours, Type: 'String', Overwrite: true }));
  } catch (error) {
    if (typeof error === 'object' && error !== null) PUT_FAILED.add(error);
    throw error;
  }
  const answered = put.Version ?? previous.version + 1;
  const current = await readKillswitch(ssm, parameterName);

  // The SDK retries a PutParameter whose answer was lost or late, and SSM applies each attempt as a
  // version of its own: our write can hold more than one version, before or after the one answered.
  // Every attempt carries the same value, down to the millisecond of updatedAt, so a version whose
  // value is exactly ours is ours; any other version in the window is another writer's.
  const versionIsOurs = async (v: number): Promise<boolean> =>
    v === answered || (v === current.version ? current.raw : await rawAtVersion(ssm, parameterName, v)) === ours;
  const others: number[] = [];
  for (let v = previous.version + 1; v <= current.version; v += 1) {
    if (!(await versionIsOurs(v))) others.push(v);
  }
  const latestIsOurs = current.version >= answered && others.at(-1) !== current.version;
  const version = latestIsOurs ? current.version : answered;

  let conflict: KillswitchConflict | undefined;
  if (!latestIsOurs) {
    conflict = {
      kind: 'after',
      current,
      message: `conflict: another write (v${current.version}${describeBy(current)}) landed right after yours (v${version}); it is in effect now: run "killswitch status" and agree before retrying`,
    };
  } else if (others.length > 0) {
    conflict = {
      kind: 'before',
      current,
      message: `conflict: ${others.length} other write(s) landed between your read (v${previous.version}) and your write (v${version}) and were overwritten by yours: check the incidents topic and "killswitch status"`,
    };
  }
  return { previous, written, version, conflict };
}

/**
 * The value of one past version (`name:version` selector, covered by ssm:GetParameter), or null
 * when SSM no longer keeps it (it keeps the last 100): such a version cannot be shown to be ours.
 */
export async function rawAtVersion(ssm: SSMClient, parameterName: string, version: number): Promise<string | null> {
  try {
    const output = await ssm.send(new GetParameterCommand({ Name: `${parameterName}:${version}` }));
    return output.Parameter?.Value ?? null;
  } catch (error) {
    if ((error as { name?: string }).name === 'ParameterVersionNotFound') return null;
    throw error;
  }
}

function describeBy(reading: KillswitchReading): string {
  return reading.value ? ` by ${reading.value.actor}: ${reading.value.mode}, "${reading.value.reason}"` : ', malformed';
}

/** The actor of automatic reverts, as shown in status and notifications. */
export const EXPIRY_ACTOR = 'atmr-dr expiry schedule';

export interface RevertRequest {
  readonly parameterName: string;
  /** `updatedAt` of the value the schedule was created for. */
  readonly expectedUpdatedAt: string;
}

export type RevertOutcome =
  | { readonly reverted: true; readonly result: KillswitchWriteResult }
  | { readonly reverted: false; readonly why: string };

/**
 * Reverts to normal when the value is still the one the expiry was scheduled for; a newer change
 * (another enable, a disable) wins and the schedule does nothing. The write is conditioned on the
 * very reading that was checked: a second read could hold an on-call's newer change and the write
 * would overwrite it without a conflict. SSM has no compare-and-set, so a change landing between
 * that read and the write (or right after it) is only detected: it throws, for a human to look.
 */
export async function revertExpired(deps: WriteDeps, request: RevertRequest): Promise<RevertOutcome> {
  const current = await readKillswitch(deps.ssm, request.parameterName);
  if (!current.value) return { reverted: false, why: `value is malformed (${current.invalidReason}); not touching it` };
  if (current.value.updatedAt !== request.expectedUpdatedAt) {
    return { reverted: false, why: `value changed since (updatedAt ${current.value.updatedAt}, expected ${request.expectedUpdatedAt})` };
  }
  if (current.value.mode === 'normal') return { reverted: false, why: 'already normal' };
  const result = await writeKillswitch(deps, {
    parameterName: request.parameterName,
    mode: 'normal',
    reason: `expired: ${current.value.mode} set by ${current.value.actor} ("${current.value.reason}") until ${current.value.expiresAt}`.slice(0, 500),
    actor: EXPIRY_ACTOR,
    expiresAt: null,
  }, current);
  if (result.conflict) throw new Error(`killswitch expiry: ${result.conflict.message}`);
  return { reverted: true, result };
}

/**
 * A one-line summary for humans (CLI status, Slack, SNS), times to the minute in UTC as Slack's
 * change line says them (--json keeps the stored ISO times); says so when the value has expired.
 */
export function describeValue(value: KillswitchValue, now: number = Date.now()): string {
  const at = utcMinute(Date.parse(value.updatedAt));
  const until = value.expiresAt ? utcMinute(Date.parse(value.expiresAt)) : '';
  if (value.mode !== 'normal' && isExpired(value, now)) {
    return `normal: ${value.mode} by ${value.actor} at ${at} expired at ${until} (readers treat it as normal; the expiry schedule has not reverted it yet): ${value.reason}`;
  }
  return `${value.mode} (by ${value.actor} at ${at}${until ? `, until ${until}` : ''}): ${value.reason}`;
}
