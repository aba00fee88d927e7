/**
 * Parses command lines with the CLI's real program (bin/atmr-dr.ts) without running them: every
 * command's action is replaced by one that does nothing, so the parser alone judges each line (its
 * commands, options, required options and arguments). Reads a JSON array of argument lists on
 * stdin and prints, as JSON, the one line the CLI would print for each that the parser refuses
 * (null for a line it accepts). Runs in a child process: commander 15 is ESM-only and cannot load
 * inside jest. With --commands, prints the top-level command names instead (a JSON array).
 * HARNESS_NEW_BACKUPS_SUBCOMMAND=<name>: `backups` is declared with one subcommand more,
 * <name>, as a change to bin/cli/backups.ts would add it.
 */
import { Command, CommanderError } from 'commander';
import { CONCERNS, buildProgram, usageLine } from '../../bin/atmr-dr';
import { oneLine } from '../../lambdas/shared/errors';

/** Replaces the action of every command that has one; a command without one keeps refusing to run alone. */
function disarm(command: Command): void {
  if ((command as unknown as { _actionHandler?: unknown })._actionHandler) command.action(() => undefined);
  for (const sub of command.commands) disarm(sub);
}

const NEW_BACKUPS_SUBCOMMAND = process.env.HARNESS_NEW_BACKUPS_SUBCOMMAND;
const concerns: typeof CONCERNS = NEW_BACKUPS_SUBCOMMAND
  ? CONCERNS.map((concern) =>
      concern.commands.includes('backups')
        ? {
            commands: concern.commands,
            load: async () => {
              const register = await concern.load();
              return (program: Command) => {
                register(program);
                program.commands.find((c) => c.name() === 'backups')?.command(NEW_BACKUPS_SUBCOMMAND);
              };
            },
          }
        : concern,
    )
  : CONCERNS;

async function refusal(args: readonly string[]): Promise<string | null> {
  const argv = ['node', 'atmr-dr', ...args];
  const program = await buildProgram(argv);
  disarm(program);
  try {
    await program.parseAsync(argv);
    return null;
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode === 0 ? null : usageLine(error, argv, program, concerns);
    return oneLine(error);
  }
}

async function run(): Promise<void> {
  // --commands: the top-level command names, to tell a command written in a text from prose.
  if (process.argv.includes('--commands')) {
    process.stdout.write(JSON.stringify(CONCERNS.flatMap((concern) => concern.commands)));
    return;
  }
  let text = '';
  for await (const chunk of process.stdin) text += String(chunk);
  const lines = JSON.parse(text) as string[][];
  // --help prints its page: not part of the answer.
  const write = process.stdout.write.bind(process.stdout);
  process.stdout.write = () => true;
  const refusals: (string | null)[] = [];
  for (const args of lines) refusals.push(await refusal(args));
  write(JSON.stringify(refusals));
}

void run();
