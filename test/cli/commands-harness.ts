/**
 * Prints, as JSON, every command line of the CLI's real program (bin/atmr-dr.ts) that runs an action
 * (`backups list`, `recover`; not the group `backups`). Runs in a child process: commander 15 is
 * ESM-only and cannot load inside jest.
 */
import type { Command } from 'commander';
import { buildProgram } from '../../bin/atmr-dr';

function runnable(command: Command, prefix: string[] = []): string[] {
  const names: string[] = [];
  for (const sub of command.commands) {
    const name = [...prefix, sub.name()];
    if ((sub as unknown as { _actionHandler?: unknown })._actionHandler) names.push(name.join(' '));
    names.push(...runnable(sub, name));
  }
  return names;
}

void buildProgram().then((program) => process.stdout.write(JSON.stringify(runnable(program))));
