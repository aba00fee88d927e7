#!/usr/bin/env -S npx --no-install tsx
import { Command, CommanderError } from 'commander';
import { OperatorError, oneLine } from '../lambdas/shared/errors';
import { registerBackupCommands } from './cli/backup';
import { registerBackupsCommands } from './cli/backups';
import { registerRestoreCommands } from './cli/restore';
import { registerKillswitchCommands } from './cli/killswitch';
import { registerIncidentCommands } from './cli/incident';

/**
 * The operator CLI. Thin: each `bin/cli/<concern>.ts` declares its commands and calls the same
 * core code as the Lambda handlers. Every failure ends as one line on stderr and a non-zero exit.
 */
export function buildProgram(): Command {
  const program = new Command('atmr-dr')
    .description('ATMR disaster-recovery runbook, automated: backups, restore, killswitch, backout, incidents')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()
    .configureOutput({ writeErr: (text) => process.stderr.write(text) });
  // Concern modules register here (bin/cli/<concern>.ts).
  registerBackupCommands(program);
  registerBackupsCommands(program);
  registerRestoreCommands(program);
  registerKillswitchCommands(program);
  registerIncidentCommands(program);
  return program;
}

export async function main(argv: string[] = process.argv): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (error) {
    if (error instanceof CommanderError) {
      // commander already printed its message (and help for --help / --version, exit 0).
      return error.exitCode;
    }
    if (error instanceof OperatorError) {
      process.stderr.write(`atmr-dr: ${error.message}\n`);
      return error.exitCode;
    }
    process.stderr.write(`atmr-dr: ${oneLine(error)}\n`);
    return 1;
  }
}

if (require.main === module) {
  main().then(
    (code) => {
      process.exitCode = code;
    },
    (error: unknown) => {
      process.stderr.write(`atmr-dr: ${oneLine(error)}\n`);
      process.exitCode = 1;
    },
  );
}
