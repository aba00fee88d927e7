import { SSMClient } from '@aws-sdk/client-ssm';
import { GetCallerIdentityCommand, STSClient } from '@aws-sdk/client-sts';
import { Command } from 'commander';
import { KillswitchCommand, KillswitchCommandResult, runKillswitchCommand } from '../../lambdas/killswitch/commands';
import { describeValue, KillswitchReading, MISSING_PARAMETER_FIX, sentUnconfirmed } from '../../lambdas/killswitch/core';
import { durationInReason, effectiveMode, isExpired, MAINTENANCE_EFFECT, NO_EXPIRY, parseEnableMode, parseExpires, parseReason } from '../../lambdas/killswitch/value';
import { awsCall, unansweredService } from '../../lambdas/shared/aws-errors';
import { serviceNow } from '../../lambdas/shared/clock-offset';
import { namedClient } from '../../lambdas/shared/named-clients';
import { SDK_RETRY } from '../../lambdas/shared/sdk-retry';
import { namedLine, OperatorError } from '../../lambdas/shared/errors';
import { OPERATOR_CLI } from '../../lambdas/shared/constants';
import { shellWord } from '../../lambdas/shared/format';
import { OPERATOR_NAME_ORDER, OPERATOR_NAME_VARIABLES, OPERATOR_VARIABLE, UNKNOWN_OPERATOR } from './actor';
import { confirmer } from './confirm';
import { checkBeforeRetry } from './interrupt';
import { defaultEnvironmentName, DEPLOYED_NAMES, deployedNameValue, ENV_DEFAULT, envNameValue, notFoundHint, resolveDeployedName } from './resolve';

/**
 * Every argument checked before anything is resolved or read: a bad `--mode`, a missing `--reason`
 * or a malformed `--expires` is what the operator hears about first, not a missing parameter name.
 */
export function validateKillswitchCommand(command: KillswitchCommand): void {
  if (command.action === 'enable') {
    parseEnableMode(command.mode);
    parseReason(command.reason, true);
    if (command.expires !== undefined) parseExpires(command.expires);
  } else if (command.action === 'disable') {
    parseReason(command.reason, false);
  }
}

/** A --by option's help: what the audit trail records with it and without it (see resolveCliActor). */
export function byOptionHelp(who: string): string {
  return `${who}: recorded as "NAME (your AWS identity)", without --by as the identity alone; when AWS cannot say who you are, as NAME, else ${OPERATOR_NAME_ORDER}`;
}

/**
 * The caller's identity, as the audit trail records it: the STS caller ARN in AWS, with the name
 * `by` (a command's --by) beside it when given ("Marie (arn:aws:sts::...)": a name typed on the
 * command line proves nothing, so it never replaces the identity AWS vouches for); else `by`, else
 * the first of OPERATOR_NAME_VARIABLES set ($ATMR_OPERATOR, then the login: $USER, $LOGNAME). With
 * none of them the change is recorded as unknown-operator, and one stderr line says so, why, and
 * how to give a name: a trail that only says "by unknown-operator" cannot tell who put the site in
 * maintenance. An STS that did not answer (two attempts of OPERATOR_ANSWER_TIMEOUT_MS, as every
 * read of the CLI: useOperatorSdkSettings) is said in one stderr line too: the operator waited for
 * it, and the change goes without the identity AWS vouches for. A dry run does not call this: it
 * records no one, and stays offline (recover --dry-run).
 */
export async function resolveCliActor(by?: string, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  const given = by?.trim();
  // `--by ""` (an unset shell variable) would record the change under the AWS identity alone, the
  // name the operator meant to give lost: refused before anything is read or written.
  if (by !== undefined && !given) throw new OperatorError('--by is empty: give your name (--by NAME), or leave --by out to be recorded as your AWS identity', 2);
  const named = given || OPERATOR_NAME_VARIABLES.map((name) => env[name]?.trim()).find(Boolean);
  let why: string;
  try {
    const identity = await new STSClient({ ...SDK_RETRY, maxAttempts: 2 }).send(new GetCallerIdentityCommand({}));
    if (identity.Arn) return given ? `${given} (${identity.Arn})` : identity.Arn;
    why = 'STS answered no caller ARN';
  } catch (error) {
    // No credentials or no network: the name the operator set, or the login's.
    why = `STS: ${namedLine(error)}`;
    const silent = unansweredService(error);
    if (named && silent) process.stderr.write(`atmr-dr: ${silent}: changes this command makes are recorded as by ${named}, without the AWS identity STS vouches for\n`);
  }
  if (named) return named;
  process.stderr.write(
    `atmr-dr: your identity could not be read (${why}; ${OPERATOR_NAME_VARIABLES.slice(0, -1).join(', ')} and ${OPERATOR_NAME_VARIABLES.at(-1)} unset): changes this command makes are recorded as by ${UNKNOWN_OPERATOR}; name yourself with ${OPERATOR_VARIABLE}=NAME (killswitch and incident also take --by NAME)\n`,
  );
  return UNKNOWN_OPERATOR;
}

function print(line: string): void {
  process.stdout.write(`${line}\n`);
}

/**
 * The disable of the parameter a command acted on: the one --parameter named, else the
 * environment's. Without either, the copied command would act on cdk.json's default environment,
 * whatever environment the line was printed for.
 */
export function killswitchDisableCommand(parameter: string | undefined, environmentName: string): string {
  return `${OPERATOR_CLI} killswitch disable ${parameter !== undefined ? `--parameter ${shellWord(parameter)}` : `--env ${environmentName}`}`;
}

/**
 * `killswitch status --json` of a reading (`rollback status --json` gives the same): `mode` is the
 * mode in effect (an expired or malformed value is normal for the readers), `expired` whether the
 * stored mode's expiry has passed. `now`: SSM's clock (ms), as killswitchStatusLines takes it.
 */
export function killswitchStatusJson(parameterName: string, reading: KillswitchReading, now: number) {
  return {
    parameterName,
    version: reading.version,
    mode: reading.value ? effectiveMode(reading.value, now) : 'normal',
    expired: reading.value ? isExpired(reading.value, now) : false,
    value: reading.value,
    ...(reading.invalidReason && { invalid: reading.invalidReason, raw: reading.raw }),
  };
}

/**
 * `killswitch status`'s lines of a reading (`rollback status` ends with the same). `now`: SSM's
 * clock (ms), so an expiry is called past or not as the readers will, whatever this machine's clock says.
 */
export function killswitchStatusLines(parameterName: string, reading: KillswitchReading, now: number, disable: string): string[] {
  if (!reading.value) return [`killswitch ${parameterName} v${reading.version}: MALFORMED value (${reading.invalidReason}), readers treat it as normal: ${reading.raw}`];
  const lines = [`killswitch ${parameterName} v${reading.version}: ${describeValue(reading.value, now)}`];
  // Nothing reverts a mode set without --expires: the operator reading it learns it has no end.
  if (reading.value.mode !== 'normal' && !reading.value.expiresAt) lines.push(`  stays ${reading.value.mode} until \`${disable}\` (no --expires)`);
  return lines;
}

/**
 * `now`: SSM's clock (ms), as killswitchStatusLines takes it. `disable`: the command that lifts a
 * mode written with no expiry, which nothing else ends.
 */
function report(parameterName: string, result: KillswitchCommandResult, json: boolean, now: number, disable: string): void {
  if (result.action === 'status') {
    const { reading } = result;
    if (json) print(JSON.stringify(killswitchStatusJson(parameterName, reading, now)));
    else for (const line of killswitchStatusLines(parameterName, reading, now, disable)) print(line);
    return;
  }
  if ('unchanged' in result) {
    const { unchanged } = result;
    print(json ? JSON.stringify({ parameterName, version: unchanged.version, value: unchanged.value, conflict: null, unchanged: true }) : result.line);
    return;
  }
  const { write } = result;
  if (json) {
    print(JSON.stringify({ parameterName, version: write.version, value: write.written, conflict: write.conflict?.message ?? null }));
  } else {
    print(`killswitch ${parameterName} v${write.version}: ${describeValue(write.written, now)}`);
    const before = write.previous.value ? describeValue(write.previous.value, now) : `malformed (${write.previous.invalidReason})`;
    print(`  was v${write.previous.version}: ${before}`);
    if (write.written.mode !== 'normal' && !write.written.expiresAt) print(`  no expiry: stays on until \`${disable}\``);
  }
  if (write.conflict) throw new OperatorError(`killswitch: ${write.conflict.message}`, 3);
}

/** What a write asks the operator to confirm, in the terms of what users will get. `disable`: the command that ends it. */
function changeOf(command: Exclude<KillswitchCommand, { action: 'status' }>, disable: string): string {
  if (command.action === 'disable') return 'return the API to normal';
  const what = command.mode === 'maintenance' ? `put the API in maintenance (${MAINTENANCE_EFFECT})` : 'put the API in degraded mode';
  // Said from the command alone: without --expires, whether an expiry is kept depends on the value.
  if (command.expires === undefined) return `${what} until \`${disable}\`, or until its current expiry if it is already on with one (no --expires)`;
  return `${what}${command.expires === NO_EXPIRY ? ` until \`${disable}\` (--expires ${NO_EXPIRY})` : ` for ${command.expires}`}`;
}

/** The end of a failure's line that says to retry at once: a write that may have landed is checked first. */
const RUN_AGAIN = /(, then run the command again|; run the command again in a minute)$/;

/** `atmr-dr killswitch status|enable|disable`: the same core as the Slack slash command. */
export function registerKillswitchCommands(program: Command): void {
  const killswitch = program
    .command('killswitch')
    .description('the SSM killswitch: maintenance (503 at the load balancer and in the API) or degraded mode')
    .option('--parameter <name>', 'SSM parameter name (default: $KILLSWITCH_PARAMETER, else the Data stack output of --env, else its config)', deployedNameValue(DEPLOYED_NAMES.killswitchParameter))
    .option('--env <name>', `environment whose deployed stacks and config name the parameter (default: ${ENV_DEFAULT})`, envNameValue);

  const run = async (command: KillswitchCommand, json: boolean, yes?: boolean, by?: string): Promise<void> => {
    validateKillswitchCommand(command);
    // `--reason "pendant 2h"` without --expires sets no expiry: the operator meant one, most likely.
    // Said before the question, which is the moment to add it; not refused: the reason may mean
    // something else, and the maintenance must go on.
    if (command.action === 'enable' && command.expires === undefined) {
      const meant = durationInReason(command.reason ?? '');
      if (meant) process.stderr.write(`atmr-dr: warning: --reason "${command.reason}" names a duration but --expires is not given, so it sets no expiry: to end it by itself, add --expires ${meant}\n`);
    }
    const globals = killswitch.opts<{ parameter?: string; env?: string }>();
    const parameterName = await resolveDeployedName(DEPLOYED_NAMES.killswitchParameter, { flagValue: globals.parameter, envName: globals.env });
    const disable = killswitchDisableCommand(globals.parameter === undefined ? undefined : parameterName, globals.env ?? defaultEnvironmentName());
    // enable and disable change what every user of the API gets: asked for, as every production
    // change of the CLI is (a script passes --yes; Slack's /killswitch is the other quick path),
    // once the value is read: a request that changes nothing says so without asking.
    // The question names the environment whose parameter it writes (the default one, without --env):
    // staging and prod in one account, the last chance to see it is the wrong one. A parameter named
    // by --parameter or KILLSWITCH_PARAMETER is no environment's: the name alone.
    const named = globals.parameter !== undefined || process.env[DEPLOYED_NAMES.killswitchParameter.envVar] !== undefined;
    const where = named ? `parameter ${parameterName}` : `environment ${globals.env ?? defaultEnvironmentName()}: parameter ${parameterName}`;
    const confirm = async (): Promise<void> => {
      if (command.action === 'status' || (await confirmer(yes)(`killswitch ${command.action}: ${changeOf(command, disable)} (${where})`))) return;
      throw new OperatorError(`killswitch ${command.action}: not confirmed, nothing changed`, 1);
    };
    const action = command.action === 'status' ? `read parameter ${parameterName}` : `${command.action} the killswitch (parameter ${parameterName})`;
    const ssm = namedClient(new SSMClient(SDK_RETRY), 'SSM');
    const check = 'the parameter name (--parameter, KILLSWITCH_PARAMETER, --env)';
    let unconfirmed = false;
    const result = await awsCall(
      'SSM',
      action,
      () =>
        runKillswitchCommand({ ssm, parameterName, resolveActor: () => resolveCliActor(by), missingParameterFix: MISSING_PARAMETER_FIX.cli, confirm }, command).catch((error: unknown) => {
          unconfirmed = sentUnconfirmed(error);
          throw error;
        }),
      check,
    ).catch((error: unknown) => {
      const line = notFoundHint(error, DEPLOYED_NAMES.killswitchParameter, { flagValue: globals.parameter, envName: globals.env });
      if (!unconfirmed || !(line instanceof OperatorError)) throw line;
      throw new OperatorError(`${line.message.replace(RUN_AGAIN, '')}; it may have been written: ${checkBeforeRetry('killswitch')}`, line.exitCode);
    });
    report(parameterName, result, json, serviceNow(ssm).getTime(), disable);
  };

  killswitch
    .command('status')
    .description('print the current mode, who set it, why and until when')
    .option('--json', 'print the value as JSON')
    .action(async (opts: { json?: boolean }) => run({ action: 'status' }, Boolean(opts.json)));

  killswitch
    .command('enable')
    .description('enable maintenance or degraded mode (reason required)')
    .requiredOption('--mode <mode>', 'maintenance or degraded')
    .requiredOption('--reason <text>', 'why, e.g. "OSRM down": shown to operators and in notifications')
    .option('--expires <duration>', `revert to normal after this long (e.g. 30m, 2h, 1d); without it, re-enabling the mode on keeps its expiry; --expires "${NO_EXPIRY}" removes it`)
    .option('--yes', 'confirm without asking (required when standard input is not a terminal)')
    .option('--by <name>', byOptionHelp('who changes it'))
    .option('--json', 'print the result as JSON')
    .action(async (opts: { mode?: string; reason?: string; expires?: string; yes?: boolean; by?: string; json?: boolean }) =>
      run({ action: 'enable', mode: opts.mode, reason: opts.reason, expires: opts.expires }, Boolean(opts.json), opts.yes, opts.by),
    );

  killswitch
    .command('disable')
    .description('return to normal')
    .option('--reason <text>', 'why')
    .option('--yes', 'confirm without asking (required when standard input is not a terminal)')
    .option('--by <name>', byOptionHelp('who changes it'))
    .option('--json', 'print the result as JSON')
    .action(async (opts: { reason?: string; yes?: boolean; by?: string; json?: boolean }) => run({ action: 'disable', reason: opts.reason }, Boolean(opts.json), opts.yes, opts.by));
}
