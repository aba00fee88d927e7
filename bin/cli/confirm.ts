import * as readline from 'node:readline/promises';
import { OperatorError } from '../../lambdas/shared/errors';

/**
 * Confirmation of a production change: `--yes` answers for the operator; without it, standard input
 * must be a terminal (a script or a pipe never confirms by accident). The answer is y/N, or with
 * `typed` that exact text: for what cannot be undone (a database overwritten), a reflex `y` is not
 * enough, typing the name makes the operator read it.
 */
export function confirmer(yes: boolean | undefined, input: NodeJS.ReadableStream & { isTTY?: boolean } = process.stdin): (question: string, typed?: string) => Promise<boolean> {
  return async (question, typed) => {
    if (yes) return true;
    if (!input.isTTY) throw new OperatorError(`${question} needs confirmation: standard input is not a terminal; pass --yes to confirm`, 2);
    const rl = readline.createInterface({ input, output: process.stderr });
    try {
      if (typed !== undefined) return (await rl.question(`${question}: type ${typed} to confirm: `)).trim() === typed;
      return /^(y|yes|o|oui)$/i.test((await rl.question(`${question} [y/N] `)).trim());
    } finally {
      rl.close();
    }
  };
}
