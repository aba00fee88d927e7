/**
 * Prints, as JSON, the top-level commands of the CLI program (bin/atmr-dr.ts) built for the
 * command line given as arguments, and those each concern module registers on its own. Runs in a
 * child process: commander 15 is ESM-only and cannot load inside jest.
 */
import { Command } from 'commander';
import { CONCERNS, buildProgram } from '../../bin/atmr-dr';

/** The top-level command names a program registers (commander adds `help` only when printing). */
function commandNames(program: Command): string[] {
  return program.commands.map((c) => c.name());
}

async function run(): Promise<void> {
  const program = await buildProgram(['node', 'atmr-dr', ...process.argv.slice(2)]);
  const concerns: { table: readonly string[]; registered: string[] }[] = [];
  for (const concern of CONCERNS) {
    const alone = new Command('atmr-dr');
    (await concern.load())(alone);
    concerns.push({ table: concern.commands, registered: commandNames(alone) });
  }
  process.stdout.write(JSON.stringify({ registered: commandNames(program), all: CONCERNS.flatMap((c) => c.commands), concerns }));
}

void run();
