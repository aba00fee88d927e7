import type { Logger } from '@aws-lambda-powertools/logger';
import { SSMClient } from '@aws-sdk/client-ssm';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { namedLine, OperatorError, oneLine } from '../shared/errors';
import { shellWord, utcMinute } from '../shared/format';
import { deniedAction, failedCall, isAccessDenied, refusedWithoutEffect } from '../shared/aws-errors';
import { durationSeconds, wordedDuration } from '../shared/duration';
import { KillswitchCommand, runKillswitchCommand } from './commands';
import { describeValue, sentUnconfirmed } from './core';
import { durationInReason, ENABLE_MODES, MAINTENANCE_EFFECT, parseEnableMode, parseReason } from './value';
import { operatorCommand } from '../shared/constants';

/** Slack's replay window: requests older (or further in the future) than this are refused. */
export const SLACK_MAX_SKEW_SECONDS = 5 * 60;

export interface SlackHttpRequest {
  readonly headers: Record<string, string | undefined>;
  /** The body exactly as received (the signature covers the raw bytes). */
  readonly rawBody: string;
}

export interface SlackReply {
  readonly statusCode: number;
  readonly body: { readonly response_type: 'in_channel' | 'ephemeral'; readonly text: string };
}

export type SignatureCheck = { readonly ok: true } | { readonly ok: false; readonly why: string };

function header(headers: Record<string, string | undefined>, name: string): string | undefined {
  const key = Object.keys(headers).find((k) => k.toLowerCase() === name);
  return key === undefined ? undefined : headers[key];
}

/** Slack v0 signing: HMAC-SHA256 of `v0:<timestamp>:<body>` with the signing secret, hex. */
export function slackSignature(signingSecret: string, timestamp: string, rawBody: string): string {
  return `v0=${createHmac('sha256', signingSecret).update(`v0:${timestamp}:${rawBody}`).digest('hex')}`;
}

/**
 * The checks that need no secret: both headers present, a well-formed signature and a timestamp
 * inside the replay window. Run first, so that junk traffic on the public URL never reaches
 * Secrets Manager (cost, throttling, and a secret read per forged request).
 */
export function checkSlackHeaders(request: SlackHttpRequest, nowSeconds: number): SignatureCheck {
  const timestamp = header(request.headers, 'x-slack-request-timestamp');
  const signature = header(request.headers, 'x-slack-signature');
  if (!timestamp || !signature) return { ok: false, why: 'missing Slack signature headers' };
  if (!/^\d{1,12}$/.test(timestamp)) return { ok: false, why: 'malformed timestamp' };
  if (!/^v0=[0-9a-f]{64}$/.test(signature)) return { ok: false, why: 'malformed signature' };
  if (Math.abs(nowSeconds - Number(timestamp)) > SLACK_MAX_SKEW_SECONDS) return { ok: false, why: 'timestamp outside the 5-minute window (replay?)' };
  return { ok: true };
}

export function verifySlackSignature(request: SlackHttpRequest, signingSecret: string, nowSeconds: number): SignatureCheck {
  const cheap = checkSlackHeaders(request, nowSeconds);
  if (!cheap.ok) return cheap;
  const timestamp = header(request.headers, 'x-slack-request-timestamp') as string;
  const signature = header(request.headers, 'x-slack-signature') as string;
  const expected = Buffer.from(slackSignature(signingSecret, timestamp, request.rawBody));
  const given = Buffer.from(signature);
  if (expected.length !== given.length || !timingSafeEqual(expected, given)) return { ok: false, why: 'signature mismatch' };
  return { ok: true };
}

/** The one option of the Slack text: the CLI's `--expires`, with its spelling rules. */
const EXPIRES_OPTION = '--expires';
const EXPIRES_FORMS = `${EXPIRES_OPTION} 2h or ${EXPIRES_OPTION}=2h`;

const ENABLE_USAGE = `enable ${ENABLE_MODES.join('|')} [${EXPIRES_OPTION} 30m] <reason>`;
/** What `/killswitch help` answers, and the end of an unknown command's line. */
export const SLACK_USAGE = `/killswitch status | ${ENABLE_USAGE} | disable [reason] | help`;

/** Words typed for a command they are not: answered with the command meant, not the whole usage. */
const MEANT = new Map([
  ['off', 'to return to normal, write /killswitch disable <reason>'],
  ['on', `to enable, write /killswitch ${ENABLE_USAGE}`],
  // Stop the API, or stop its maintenance: both are said rather than one guessed.
  ['stop', 'to stop the API, write /killswitch enable maintenance <reason>; to end a maintenance, /killswitch disable <reason>'],
]);

/** The reason as refusals name it here: the CLI's `--reason` is an option Slack refuses. */
const SLACK_REASON = 'the reason';

/** `/killswitch help`: answered with SLACK_USAGE, nothing read. */
export type SlackCommand = KillswitchCommand | { readonly action: 'help' };

/**
 * `enable <mode> [--expires 2h | --expires=2h] <reason...>` | `disable [reason...]` | `status` | `help`.
 * The option may stand anywhere after the action and is spelled as the CLI takes it (commander:
 * lower case, a separate value or `=value`). Any other word starting with `--` is refused rather
 * than kept in the reason: `--EXPIRES 2h` or `--expire=2h` would otherwise enable with no expiry,
 * and the on-call would believe the maintenance ends by itself.
 */
export function parseSlackText(text: string): SlackCommand {
  const words = text.trim().split(/\s+/).filter(Boolean);
  const action = (words.shift() ?? 'status').toLowerCase();
  if (action === 'help') return { action: 'help' };
  if (action !== 'status' && action !== 'enable' && action !== 'disable') {
    throw new OperatorError(`killswitch: unknown command "${action}": ${MEANT.get(action) ?? `use ${SLACK_USAGE}`}`, 2);
  }
  let expires: string | undefined;
  const rest: string[] = [];
  for (let i = 0; i < words.length; i++) {
    // Slack on a phone or a Mac with smart punctuation turns a typed `--` into an em or en dash:
    // `—expires 2h` is the option, not part of the reason (which would enable with no expiry); a
    // dash standing alone ("OSRM – migration") is punctuation of the reason.
    const word = words[i].replace(/^[\u2014\u2013](?=.)/, '--');
    if (!word.startsWith('--')) {
      rest.push(word);
      continue;
    }
    const equals = word.indexOf('=');
    const name = equals < 0 ? word : word.slice(0, equals);
    if (name !== EXPIRES_OPTION) throw new OperatorError(`killswitch: unknown option "${word}": the only option is ${EXPIRES_FORMS} (lower case)`, 2);
    if (expires !== undefined) throw new OperatorError(`killswitch: ${EXPIRES_OPTION} is given twice ("${word}"): give it once, as ${EXPIRES_FORMS}`, 2);
    expires = equals < 0 ? words[++i] : word.slice(equals + 1);
    if (!expires) throw new OperatorError(`killswitch: ${EXPIRES_OPTION} needs a duration such as 30m, 2h or 1d: ${EXPIRES_FORMS}`, 2);
    // `--expires "2 heures"`: Slack passes the quotes as typed, and the split above cut the value
    // in two ("2 and heures"); the words up to the closing quote are the value, without its quotes.
    const closing = /^["\u201c\u201d]/.test(expires) ? words.findIndex((_, j) => j >= i && QUOTED.test([expires, ...words.slice(i + 1, j + 1)].join(' '))) : -1;
    // A quote never closed (`--expires "2`, the rest lost to a keyboard or a paste) leaves nothing
    // to tell the value from the reason: named, rather than refused as a missing mode or reason, or
    // as a duration `"2` the on-call never typed.
    if (/^["\u201c\u201d]/.test(expires) && closing < 0) {
      const opened = equals < 0 ? `${EXPIRES_OPTION} ${expires}` : word;
      throw new OperatorError(`killswitch: the quote opened by ${opened} is never closed: close it, or write the duration without quotes, as ${EXPIRES_FORMS}; nothing changed`, 2);
    }
    const typed = closing < 0 ? undefined : unquoted([expires, ...words.slice(i + 1, closing + 1)].join(' '));
    if (typed !== undefined) {
      expires = typed;
      i = closing;
    }
    // `--expires 2 heures`: the number alone would be refused as "2", and the unit word kept as the reason's.
    const spelled = typed ?? (equals < 0 && /^\d+$/.test(expires) && words[i + 1] !== undefined ? `${expires} ${words[i + 1]}` : undefined);
    const worded = spelled === undefined || durationSeconds(spelled) !== undefined ? undefined : wordedDuration(spelled);
    if (worded) throw new OperatorError(`killswitch: ${EXPIRES_OPTION} "${spelled}" is not a duration ${EXPIRES_OPTION} takes: write ${EXPIRES_OPTION} ${worded}; nothing changed`, 2);
  }
  if (expires !== undefined && action !== 'enable') {
    throw new OperatorError(`killswitch: ${EXPIRES_OPTION} applies only to enable (${action} takes none): remove it`, 2);
  }
  switch (action) {
    case 'status':
      return { action: 'status' };
    case 'enable': {
      // The core's refusals of a missing mode or reason name the CLI's --mode and --reason, which
      // Slack refuses as options: these two are answered here in the slash command's own words.
      // Modes in any case, as the commands: `Maintenance` is what a phone's keyboard types.
      const mode = rest.shift()?.toLowerCase();
      if (mode === undefined) throw new OperatorError(`killswitch: a mode is required: /killswitch enable ${ENABLE_MODES.join('|')} <reason>`, 2);
      const enabled = parseEnableMode(mode); // an invalid mode is named first, never suggested
      // `enable maintenance 30m deploy` (or `pendant 2h deploy`, `for 2h deploy`) means an expiry,
      // but without --expires the 30m would be read as the reason's first word and the mode would
      // never end by itself. Refused with the command that says it. With --expires given, or quoted
      // ("30m of tests"), it is the reason's.
      const typed = expires === undefined ? typedDuration(rest) : undefined;
      if (typed) {
        const after = rest.slice(typed.words).join(' ') || '<reason>';
        throw new OperatorError(`killswitch: "${rest.slice(0, typed.words).join(' ')}" looks like a duration: write /killswitch enable ${enabled} ${EXPIRES_OPTION} ${typed.expires} ${after}; nothing changed`, 2);
      }
      const reason = unquoted(rest.join(' '));
      if (reason.trim() === '') {
        const expiry = expires === undefined ? '' : ` ${EXPIRES_OPTION} ${expires}`;
        throw new OperatorError(`killswitch: a reason is required: /killswitch enable ${enabled}${expiry} OSRM down`, 2);
      }
      return { action: 'enable', mode, reason: parseReason(reason, true, SLACK_REASON), expires };
    }
    case 'disable':
      return { action: 'disable', reason: parseReason(unquoted(rest.join(' ')), false, SLACK_REASON) };
  }
}

/** "for" before a duration at the reason's start (`pendant 2h migration`): the duration is meant as the expiry. */
const FOR_WORDS = new Set(['pendant', 'for']);

/**
 * The duration the reason's first words are, as typed on a phone (`2H`, `30 min`, `90 minutes`,
 * `1 h`), after "pendant" or "for" too, with how many words it took and its `--expires` spelling
 * (`2h`, `30m`): the spelling the refusal suggests must be one --expires takes (lower case, no
 * space). A number followed by any other word ("3 pods down", "for 500 errors") is a reason.
 */
function typedDuration(words: readonly string[]): { readonly words: number; readonly expires: string } | undefined {
  const lead = FOR_WORDS.has(words[0]?.toLowerCase() ?? '') ? 1 : 0;
  const [first, second] = words.slice(lead);
  if (first === undefined) return undefined;
  const one = durationSeconds(first.toLowerCase()) === undefined ? wordedDuration(first) : first.toLowerCase();
  if (one) return { words: lead + 1, expires: one };
  const two = second === undefined ? undefined : wordedDuration(`${first} ${second}`);
  return two ? { words: lead + 2, expires: two } : undefined;
}

/**
 * One pair of straight or curly double quotes around the whole reason, none inside: `"OSRM" down
 * "again"` is kept as typed. Single quotes are left alone: in French they are mostly apostrophes
 * (`l'API`), and a reason in them reads the same.
 */
const QUOTED = /^["\u201c\u201d]([^"\u201c\u201d]*)["\u201c\u201d]$/;

/**
 * The reason without the one pair of quotes around it: the CLI's shell takes them off `--reason
 * "deploy cassé"`, but Slack passes the text as typed, and the quotes were stored as the reason's.
 */
function unquoted(reason: string): string {
  const match = QUOTED.exec(reason);
  return match ? match[1] : reason;
}

export interface SlackDeps {
  readonly ssm: SSMClient;
  readonly parameterName: string;
  /** The environment this endpoint serves: the CLI commands its replies print name it (--env). */
  readonly environmentName: string;
  readonly signingSecret: () => Promise<string>;
  readonly allowedUserIds: readonly string[];
  /** The Slack workspace (`team_id`) and app (`api_app_id`) the command must come from. */
  readonly teamId: string;
  readonly apiAppId: string;
  /** Where refusals and failures are detailed: the caller only ever gets a generic answer. */
  readonly logger?: Pick<Logger, 'warn' | 'error'>;
  readonly nowSeconds?: () => number;
  /** `/incident ...` on this endpoint, after the same checks (lambdas/escalation/slack.ts). @default - refused */
  readonly incidentCommand?: (text: string, actor: string, userId: string) => Promise<SlackReply>;
}

const ephemeral = (statusCode: number, text: string): SlackReply => ({ statusCode, body: { response_type: 'ephemeral', text } });
/** The one answer to every refused request: what was wrong is logged, never told to the caller. */
export const SLACK_REFUSED = 'refused';
/** The answer to a failure nothing else explains (its detail logged): retry, or the CLI command that does what was asked. */
export function slackFailed(environmentName: string, command?: KillswitchCommand): string {
  return `killswitch failed: an internal error was logged; retry, or run from a terminal: \`${cliCommand(environmentName, command)}\``;
}
/** The answer when the write was sent but not confirmed (timed out, throttled, or its re-read failed). */
export const SLACK_OUTCOME_UNKNOWN = 'killswitch: the change may have been written (AWS did not confirm it in time): check `/killswitch status` before retrying';

/**
 * Handles one slash command: the cheap header checks, then the signature (the only step that reads
 * the secret), the workspace and app, the user allow-list, then the same core as the CLI. Changes are
 * answered in the channel with who, what and why; refusals and failures get a generic answer and
 * their detail goes to the log.
 */
export async function handleSlackCommand(deps: SlackDeps, request: SlackHttpRequest): Promise<SlackReply> {
  const nowSeconds = (deps.nowSeconds ?? (() => Math.floor(Date.now() / 1000)))();
  const refuse = (statusCode: number, why: string): SlackReply => {
    deps.logger?.warn('slack request refused', { statusCode, why });
    return ephemeral(statusCode, SLACK_REFUSED);
  };
  const cheap = checkSlackHeaders(request, nowSeconds);
  if (!cheap.ok) return refuse(401, cheap.why);
  let secret: string;
  try {
    secret = await deps.signingSecret();
  } catch (error) {
    deps.logger?.error('cannot read the Slack signing secret', { error: oneLine(error) });
    return ephemeral(503, slackFailed(deps.environmentName));
  }
  const check = verifySlackSignature(request, secret, nowSeconds);
  if (!check.ok) return refuse(401, check.why);

  const form = new URLSearchParams(request.rawBody);
  // Slack's periodic certificate check of the Request URL: acknowledge, do nothing.
  if (form.get('ssl_check') === '1') return ephemeral(200, '');
  const userId = form.get('user_id');
  const command = form.get('command');
  if (!userId || !command || !form.has('text')) return ephemeral(400, 'malformed slash command: user_id, command and text are required');
  // A signing secret leaked from another app or workspace must not drive this one.
  if (form.get('team_id') !== deps.teamId || form.get('api_app_id') !== deps.apiAppId) {
    return refuse(403, `team_id ${form.get('team_id')} / api_app_id ${form.get('api_app_id')} is not the configured workspace/app`);
  }
  // Only these two: any other command pointed at this URL is not read as a killswitch command.
  if (command !== '/killswitch' && command !== '/incident') return ephemeral(200, `unknown command ${command}: this endpoint answers /killswitch and /incident`);
  if (!deps.allowedUserIds.includes(userId)) {
    return ephemeral(200, `<@${userId}> is not allowed to use ${command}: ask the lead DevOps to add your Slack user id to killswitch.slack.allowedUserIds`);
  }
  const userName = form.get('user_name');
  const actor = `slack:${userId}${userName ? ` (${userName})` : ''}`;
  if (command === '/incident') {
    if (!deps.incidentCommand) return ephemeral(200, '/incident is not set up on this endpoint (no OPS_TABLE): acknowledge with the link in the page or `' + operatorCommand(deps.environmentName, 'incident ack <id>') + '`');
    return deps.incidentCommand(form.get('text') ?? '', actor, userId);
  }
  let parsed: SlackCommand | undefined;
  try {
    parsed = parseSlackText(form.get('text') ?? '');
    if (parsed.action === 'help') return ephemeral(200, `usage: ${SLACK_USAGE}`);
    const result = await runKillswitchCommand({ ssm: deps.ssm, parameterName: deps.parameterName, resolveActor: async () => actor }, parsed);
    if (result.action === 'status') {
      const { reading } = result;
      const text = reading.value ? `Killswitch: ${describeValue(reading.value)}` : `Killswitch value is MALFORMED (${reading.invalidReason}); readers treat it as normal`;
      return ephemeral(200, text);
    }
    // Nothing changed: the caller is told, the channel is not.
    if ('unchanged' in result) return ephemeral(200, result.line);
    const { write } = result;
    const verb = result.action === 'enable' ? `enabled *${write.written.mode}*` : 'returned to *normal*';
    const expiry = write.written.expiresAt ? ` until ${utcMinute(Date.parse(write.written.expiresAt))}` : '';
    // Nothing reverts a mode set with no end: the channel learns how it is lifted, and what it does.
    const effect = write.written.mode === 'maintenance' ? `; ${MAINTENANCE_EFFECT}` : '';
    const noEnd = write.written.mode !== 'normal' && !write.written.expiresAt ? `\nno end set: \`/killswitch disable\` lifts it${effect}` : '';
    // A reason that names a duration past its start (`migration pendant 2h`; at its start it is
    // refused by parseSlackText) was most likely meant as the expiry: the command that sets it.
    const meant = noEnd && parsed.action === 'enable' && parsed.expires === undefined ? durationInReason(write.written.reason) : undefined;
    const suggest = meant ? `\n:warning: the reason names a duration but --expires was not given: to end it by itself, \`/killswitch enable ${write.written.mode} ${EXPIRES_OPTION} ${meant} ${write.written.reason}\`` : '';
    const warning = write.conflict ? `\n:warning: ${write.conflict.message}` : '';
    return { statusCode: 200, body: { response_type: 'in_channel', text: `<@${userId}> ${verb}${expiry}: ${write.written.reason}${noEnd}${suggest}${warning}` } };
  } catch (error) {
    if (error instanceof OperatorError) return ephemeral(200, error.message);
    // What was asked, for the CLI command a failure's reply gives (help never fails).
    const asked = parsed?.action === 'help' ? undefined : parsed;
    if (sentUnconfirmed(error)) {
      deps.logger?.error('slack killswitch write not confirmed', { error: oneLine(error), name: (error as Error | undefined)?.name });
      return ephemeral(200, SLACK_OUTCOME_UNKNOWN);
    }
    // AWS answered, and no: nothing was written (a write refused, or a read before it).
    if (refusedWithoutEffect(error)) {
      deps.logger?.error('slack killswitch command refused by AWS', { error: oneLine(error), name: (error as Error | undefined)?.name });
      return ephemeral(200, awsRefusalLine(error, deps, asked));
    }
    deps.logger?.error('slack killswitch command failed', { error: oneLine(error), name: (error as Error | undefined)?.name });
    return ephemeral(200, slackFailed(deps.environmentName, asked));
  }
}

/**
 * The CLI command that does what `command` asked, for a reply that sends the on-call to a terminal,
 * with this endpoint's environment: run without --env it would act on cdk.json's default one.
 */
function cliCommand(environmentName: string, command: KillswitchCommand | undefined): string {
  if (command?.action === 'enable') {
    const expires = command.expires === undefined ? '' : ` --expires ${shellWord(command.expires)}`;
    return operatorCommand(environmentName, `killswitch enable --mode ${command.mode} --reason ${shellWord(command.reason ?? '')}${expires}`);
  }
  if (command?.action === 'disable' && command.reason !== undefined) return operatorCommand(environmentName, `killswitch disable --reason ${shellWord(command.reason)}`);
  if (command?.action === 'disable') return operatorCommand(environmentName, 'killswitch disable');
  return operatorCommand(environmentName, 'killswitch status');
}

/**
 * The reply to a call SSM refused (it answered 4xx: denied, invalid): AWS's own words, that nothing
 * changed, and for a denial the permission this function's role lacks (AWS's message names it; else
 * the call the named client saw fail).
 */
function awsRefusalLine(error: unknown, { parameterName, environmentName }: Pick<SlackDeps, 'parameterName' | 'environmentName'>, command: KillswitchCommand | undefined): string {
  const call = failedCall(error);
  const permission = isAccessDenied(error) ? (deniedAction(error) ?? (call && `ssm:${call.operation}`)) : undefined;
  const lacks = permission ? `: this function's role lacks ${permission} on ${parameterName} (the Ops stack grants it: redeploy it)` : '';
  return `killswitch: SSM refused (${namedLine(error)}); nothing changed${lacks}; meanwhile, from a terminal: \`${cliCommand(environmentName, command)}\``;
}
