import { SSMClient } from '@aws-sdk/client-ssm';
import { GetCallerIdentityCommand, STSClient } from '@aws-sdk/client-sts';
import { Command } from 'commander';
import { KillswitchCommand, KillswitchCommandResult, runKillswitchCommand } from '../../lambdas/killswitch/commands';
import { describeValue } from '../../lambdas/killswitch/core';
import { parseDuration, parseEnableMode, parseReason } from '../../lambdas/killswitch/value';
import { awsCall } from '../../lambdas/shared/aws-errors';
import { SDK_RETRY } from '../../lambdas/shared/sdk-retry';
import { OperatorError } from '../../lambdas/shared/errors';
import { DEPLOYED_NAMES, resolveDeployedName } from './resolve';

/**
 * Every argument checked before anything is resolved or read: a bad `--mode`, a missing `--reason`
 * or a malformed `--expires` is what the operator hears about first, not a missing parameter name.
 */
export function validateKillswitchCommand(command: KillswitchCommand): void {
  if (command.action === 'enable') {
    parseEnableMode(command.mode);
    parseReason(command.reason, true);
    if (command.expires !== undefined) parseDuration(command.expires);
  } else if (command.action === 'disable') {
    parseReason(command.reason, false);
  }
}

/** The caller's identity: the STS caller ARN in AWS, `$USER` when there are no usable credentials. */
export async function resolveCliActor(env: NodeJS.ProcessEnv = process.env): Promise<string> {
  try {
    const identity = await new STSClient({ maxAttempts: 2 }).send(new GetCallerIdentityCommand({}));
    if (identity.Arn) return identity.Arn;
  } catch {
    // no credentials or no network: fall back to the local user name
  }
  return env.USER?.trim() || env.LOGNAME?.trim() || 'unknown-operator';
}

function print(line: string): void {
  process.stdout.write(`${line}\n`);
}

function report(parameterName: string, result: KillswitchCommandResult, json: boolean): void {
  if (result.action === 'status') {
    const { reading } = result;
    if (json) {
      print(JSON.stringify({ parameterName, version: reading.version, value: reading.value, ...(reading.invalidReason && { invalid: reading.invalidReason, raw: reading.raw }) }));
    } else if (reading.value) {
      print(`killswitch ${parameterName} v${reading.version}: ${describeValue(reading.value)}`);
    } else {
      print(`killswitch ${parameterName} v${reading.version}: MALFORMED value (${reading.invalidReason}), readers treat it as normal: ${reading.raw}`);
    }
    return;
  }
  const { write } = result;
  if (json) {
    print(JSON.stringify({ parameterName, version: write.version, value: write.written, conflict: write.conflict?.message ?? null }));
  } else {
    print(`killswitch ${parameterName} v${write.version}: ${describeValue(write.written)}`);
    const before = write.previous.value ? describeValue(write.previous.value) : `malformed (${write.previous.invalidReason})`;
    print(`  was v${write.previous.version}: ${before}`);
  }
  if (write.conflict) throw new OperatorError(`killswitch: ${write.conflict.message}`, 3);
}

/** `atmr-dr killswitch status|enable|disable`: the same core as the Slack slash command. */
export function registerKillswitchCommands(program: Command): void {
  const killswitch = program
    .command('killswitch')
    .description('the SSM killswitch: maintenance (503 at the load balancer and in the API) or degraded mode')
    .option('--parameter <name>', 'SSM parameter name (default: $KILLSWITCH_PARAMETER, else the Data stack output of --env, else its config)')
    .option('--env <name>', "environment whose deployed stacks and config name the parameter (default: cdk.json's env)");

  const run = async (command: KillswitchCommand, json: boolean): Promise<void> => {
    validateKillswitchCommand(command);
    const globals = killswitch.opts<{ parameter?: string; env?: string }>();
    const parameterName = await resolveDeployedName(DEPLOYED_NAMES.killswitchParameter, { flagValue: globals.parameter, envName: globals.env });
    const action = command.action === 'status' ? `read parameter ${parameterName}` : `${command.action} the killswitch (parameter ${parameterName})`;
    const result = await awsCall(
      'SSM',
      action,
      () => runKillswitchCommand({ ssm: new SSMClient(SDK_RETRY), parameterName, resolveActor: () => resolveCliActor() }, command),
      'the parameter name (--parameter, KILLSWITCH_PARAMETER, --env)',
    );
    report(parameterName, result, json);
  };

  killswitch
    .command('status')
    .description('print the current mode, who set it, why and until when')
    .option('--json', 'print the value as JSON')
    .action(async (opts: { json?: boolean }) => run({ action: 'status' }, Boolean(opts.json)));

  killswitch
    .command('enable')
    .description('enable maintenance or degraded mode (reason required)')
    .option('--mode <mode>', '(required) maintenance | degraded')
    .option('--reason <text>', '(required) why (shown to operators and in notifications)')
    .option('--expires <duration>', 'revert to normal after this long (e.g. 30m, 2h, 1d)')
    .option('--json', 'print the result as JSON')
    .action(async (opts: { mode?: string; reason?: string; expires?: string; json?: boolean }) =>
      run({ action: 'enable', mode: opts.mode, reason: opts.reason, expires: opts.expires }, Boolean(opts.json)),
    );

  killswitch
    .command('disable')
    .description('return to normal')
    .option('--reason <text>', 'why')
    .option('--json', 'print the result as JSON')
    .action(async (opts: { reason?: string; json?: boolean }) => run({ action: 'disable', reason: opts.reason }, Boolean(opts.json)));
}
