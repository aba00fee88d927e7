/**
 * Prints, as JSON, the top-level commands of the CLI program (bin/atmr-dr.ts) built for the
 * command line given as arguments, the repository and package modules evaluated to build it, and
 * the commands each concern module registers on its own. Runs in a child process: commander 15 is
 * ESM-only and cannot load inside jest. With HARNESS_RUN=1 it also runs the command line (its
 * output and its error, if any, dropped) and lists in `ran` the modules evaluated once it ended:
 * give it only command lines that end before any network (a usage error, --help, a missing setting).
 */
import { Command } from 'commander';
import * as path from 'node:path';
import { CONCERNS, buildProgram } from '../../bin/atmr-dr';

/** The top-level command names a program registers (commander adds `help` only when printing). */
function commandNames(program: Command): string[] {
  return program.commands.map((c) => c.name());
}

async function run(): Promise<void> {
  const program = await buildProgram(['node', 'atmr-dr', ...process.argv.slice(2)]);
  // Read before the loop below loads every concern: what this command line alone evaluated.
  const root = path.join(__dirname, '..', '..');
  const modules = (): string[] => Object.keys(require.cache).map((file) => path.relative(root, file));
  const loaded = modules();
  let ran: string[] | undefined;
  if (process.env.HARNESS_RUN === '1') {
    const write = process.stdout.write;
    process.stdout.write = () => true;
    await program.parseAsync(['node', 'atmr-dr', ...process.argv.slice(2)]).catch(() => undefined);
    process.stdout.write = write;
    ran = modules();
  }
  const concerns: { table: readonly string[]; registered: string[] }[] = [];
  for (const concern of CONCERNS) {
    const alone = new Command('atmr-dr');
    (await concern.load())(alone);
    concerns.push({ table: concern.commands, registered: commandNames(alone) });
  }
  process.stdout.write(JSON.stringify({ registered: commandNames(program), loaded, ran, all: CONCERNS.flatMap((c) => c.commands), concerns }));
}

void run();
