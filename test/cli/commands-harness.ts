/**
 * Prints, as JSON, every command line of the CLI's real program (bin/atmr-dr.ts) that runs an action
 * (`backups list`, `recover`; not the group `backups`); with `--taking-stop-signals`, only those
 * whose action takes the stop signals over (ownsStopSignals, bin/cli/interrupt.ts). Runs in a child
 * process: commander 15 is ESM-only and cannot load inside jest.
 */
import type { Command } from 'commander';
import { buildProgram } from '../../bin/atmr-dr';
import { takesStopSignals } from '../../bin/cli/interrupt';

function runnable(command: Command, keep: (command: Command) => boolean, prefix: string[] = []): string[] {
  const names: string[] = [];
  for (const sub of command.commands) {
    const name = [...prefix, sub.name()];
    if ((sub as unknown as { _actionHandler?: unknown })._actionHandler && keep(sub)) names.push(name.join(' '));
    names.push(...runnable(sub, keep, name));
  }
  return names;
}

const keep = process.argv.includes('--taking-stop-signals') ? takesStopSignals : () => true;
void buildProgram().then((program) => process.stdout.write(JSON.stringify(runnable(program, keep))));
