import { SSMClient } from '@aws-sdk/client-ssm';
import { GetCallerIdentityCommand, STSClient } from '@aws-sdk/client-sts';
import { Command } from 'commander';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseEnvironmentConfig } from '../../lib/config';
import { KillswitchCommand, KillswitchCommandResult, runKillswitchCommand } from '../../lambdas/killswitch/commands';
import { describeValue } from '../../lambdas/killswitch/core';
import { OperatorError, oneLine } from '../../lambdas/shared/errors';

const CDK_JSON = path.resolve(__dirname, '..', '..', 'cdk.json');

/** `--parameter`, else KILLSWITCH_PARAMETER, else the environment's config in cdk.json. */
export function resolveParameterName(option: string | undefined, envName: string, env: NodeJS.ProcessEnv = process.env): string {
  if (option?.trim()) return option.trim();
  if (env.KILLSWITCH_PARAMETER?.trim()) return env.KILLSWITCH_PARAMETER.trim();
  let context: { environments?: Record<string, unknown> };
  try {
    context = (JSON.parse(fs.readFileSync(CDK_JSON, 'utf8')) as { context: typeof context }).context;
  } catch (error) {
    throw new OperatorError(`killswitch: no parameter name (${oneLine(error)}): pass --parameter NAME or set KILLSWITCH_PARAMETER`, 2);
  }
  try {
    return parseEnvironmentConfig(envName, context.environments?.[envName]).killswitch.parameterName;
  } catch (error) {
    throw new OperatorError(`killswitch: no parameter name from config (${oneLine(error)}): pass --parameter NAME or set KILLSWITCH_PARAMETER`, 2);
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
    .option('--parameter <name>', 'SSM parameter name (default: $KILLSWITCH_PARAMETER, else the config of --env)')
    .option('--env <name>', 'cdk.json environment whose config names the parameter', 'example');

  const run = async (command: KillswitchCommand, json: boolean): Promise<void> => {
    const globals = killswitch.opts<{ parameter?: string; env: string }>();
    const parameterName = resolveParameterName(globals.parameter, globals.env);
    const result = await runKillswitchCommand(
      { ssm: new SSMClient({ maxAttempts: 5, retryMode: 'standard' }), parameterName, resolveActor: () => resolveCliActor() },
      command,
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
    .option('--mode <mode>', 'maintenance | degraded')
    .option('--reason <text>', 'why (shown to operators and in notifications)')
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
