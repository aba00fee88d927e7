import { z } from 'zod';
import { durationSeconds, meantDuration } from '../shared/duration';
import { OperatorError } from '../shared/errors';
import { andList, boundedLine } from '../shared/format';

import { ENABLE_MODES, type EnableMode, KILLSWITCH_MODES, type KillswitchMode } from './modes';

export { ENABLE_MODES, KILLSWITCH_MODES };
export type { EnableMode, KillswitchMode };

/** Value of the `KillswitchMode` metric: 0 normal, 1 degraded, 2 maintenance. */
export const MODE_METRIC_VALUE: Readonly<Record<KillswitchMode, number>> = { normal: 0, degraded: 1, maintenance: 2 };

/** The runbook's maintenance message, as the 503 body (docs/contracts.md). */
export const MAINTENANCE_MESSAGE = 'Service en maintenance - Merci de réessayer plus tard';
export const MAINTENANCE_BODY = JSON.stringify({ error: MAINTENANCE_MESSAGE });

/** Paths that stay served in maintenance, so load balancers and orchestrators keep the tasks. */
export const MAINTENANCE_EXEMPT_PATHS: readonly string[] = ['/health', '/ready'];

/** What maintenance does to the API's users, in the lines of the CLI and of the Slack command. */
export const MAINTENANCE_EFFECT = `every request but ${andList(MAINTENANCE_EXEMPT_PATHS)} answered 503`;

/** Reason length cap: SSM String values are limited to 4 KB and Slack lines should stay readable. */
export const MAX_REASON_LENGTH = 500;

const isoDate = z.iso.datetime({ offset: true });

/** The parameter's JSON value (docs/contracts.md): the single source of truth of the mode. */
export const KillswitchValueSchema = z.strictObject({
  mode: z.enum(KILLSWITCH_MODES),
  reason: z.string().max(MAX_REASON_LENGTH),
  actor: z.string().min(1),
  updatedAt: isoDate,
  expiresAt: isoDate.nullable(),
});
export type KillswitchValue = z.infer<typeof KillswitchValueSchema>;

/** The value a fresh parameter is created with (once: deploys never write it again). */
export const INITIAL_VALUE: KillswitchValue = {
  mode: 'normal',
  reason: 'initial value (created by deploy)',
  actor: 'atmr-dr deploy',
  updatedAt: '1970-01-01T00:00:00.000Z',
  expiresAt: null,
};

/**
 * The mode in effect at `now` (ms): a value whose `expiresAt` has passed counts as normal, so a late
 * or failed expiry schedule never keeps maintenance on. Every reader decides with this.
 */
export function effectiveMode(value: KillswitchValue, now: number = Date.now()): KillswitchMode {
  if (value.mode !== 'normal' && isExpired(value, now)) return 'normal';
  return value.mode;
}

/** True when the value has an `expiresAt` at or before `now` (ms). */
export function isExpired(value: KillswitchValue, now: number = Date.now()): boolean {
  return value.expiresAt !== null && Date.parse(value.expiresAt) <= now;
}

export type ParseResult = { readonly ok: true; readonly value: KillswitchValue } | { readonly ok: false; readonly error: string };

/** Parses a raw parameter value; never throws (readers decide what a malformed value means). */
export function parseKillswitchValue(raw: string): ParseResult {
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch {
    return { ok: false, error: 'value is not JSON' };
  }
  const result = KillswitchValueSchema.safeParse(json);
  if (!result.success) {
    const issue = result.error.issues[0];
    return { ok: false, error: `${issue.path.join('.') || 'value'}: ${issue.message}` };
  }
  return { ok: true, value: result.data };
}

/** Validates an operator-supplied mode for `enable`, naming the valid values. */
export function parseEnableMode(mode: string | undefined): EnableMode {
  if (mode === undefined || mode === '') {
    throw new OperatorError(`killswitch: --mode is required: use one of ${ENABLE_MODES.join(', ')}`, 2);
  }
  if (!(ENABLE_MODES as readonly string[]).includes(mode)) {
    throw new OperatorError(`killswitch: invalid mode "${mode}": use one of ${ENABLE_MODES.join(', ')} (disable returns to normal)`, 2);
  }
  return mode as EnableMode;
}

/**
 * Validates an operator reason: required to enable, one line, bounded. `named`: what the caller's
 * user calls it in a refusal (Slack's /killswitch has no --reason option: "the reason").
 */
export function parseReason(reason: string | undefined, required: boolean, named = '--reason'): string | undefined {
  const text = boundedLine(reason, `killswitch: ${named}`, MAX_REASON_LENGTH);
  if (!text && required) throw new OperatorError('killswitch: --reason is required to enable: say why, e.g. --reason "OSRM down"', 2);
  return text;
}

/** Bounds of `--expires`: a schedule needs a future time, and a killswitch is not a permanent setting. */
export const MIN_EXPIRY_SECONDS = 60;
export const MAX_EXPIRY_SECONDS = 7 * 86400;

/**
 * `--expires never`: no expiry. An enable without --expires keeps the expiry of the mode it
 * re-enables (an expiry set on purpose does not vanish on a reason change), so removing one is
 * said, not implied.
 */
export const NO_EXPIRY = 'never';

/** `--expires`: seconds until the mode reverts, or null for NO_EXPIRY. */
export function parseExpires(text: string): number | null {
  return text === NO_EXPIRY ? null : parseDuration(text);
}

/**
 * A duration a reason names (`pendant 2h`, `migration 30 min`, `for 2 hours`, `1 heure`), in
 * `--expires`' spelling (`2h`, `30m`): an enable without --expires whose reason says how long it
 * lasts was most likely meant to end by itself. Minutes, hours and days only: `500 s` or `3 pods`
 * says nothing of how long the mode lasts. Undefined when the reason names none.
 */
export function durationInReason(reason: string): string | undefined {
  // A word starting with a number (`2h`, `1h30`, `2H`, `v2` excluded, `1.5h` too), and the word after it (`2 heures`).
  for (const [, word, next] of reason.matchAll(/(?<![\p{L}\p{N}.,])(\d[\p{L}\p{N}]*)(?![.,]\d)(?:\s+(\p{L}+))?/gu)) {
    const compact = word.toLowerCase();
    const spelled = (durationSeconds(compact) !== undefined ? compact : undefined) ?? meantDuration(word) ?? (next === undefined ? undefined : meantDuration(`${word} ${next}`));
    const seconds = spelled === undefined || /^\d+s$/.test(spelled) ? undefined : durationSeconds(spelled);
    if (seconds !== undefined && seconds >= MIN_EXPIRY_SECONDS && seconds <= MAX_EXPIRY_SECONDS) return spelled;
  }
  return undefined;
}

/** Parses a duration such as `90s`, `30m`, `2h`, `1d` or `1h30m` into seconds. */
export function parseDuration(text: string): number {
  const seconds = durationSeconds(text);
  if (seconds === undefined) {
    const meant = meantDuration(text);
    throw new OperatorError(`killswitch: malformed duration "${text}": use a number with a unit s, m, h or d (e.g. 30m, 2h, 1h30m), or ${NO_EXPIRY}${meant ? `; write ${meant}` : ''}`, 2);
  }
  if (seconds < MIN_EXPIRY_SECONDS || seconds > MAX_EXPIRY_SECONDS) {
    throw new OperatorError(`killswitch: duration "${text}" is out of range: use between 1m and 7d`, 2);
  }
  return seconds;
}
