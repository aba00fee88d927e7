import * as readline from 'node:readline/promises';
import { OperatorError } from '../../lambdas/shared/errors';

/**
 * Ctrl-C at a confirmation prompt. The terminal is in raw mode there, so Ctrl-C is a key that
 * readline answers by closing the prompt with an AbortError ("Aborted with Ctrl+C"), not a signal:
 * left alone, node printed that error and exited 1, as if the command had failed. It is the
 * operator's interrupt, before anything changed (every prompt here comes before its change):
 * one line and the interrupt's exit code, 130.
 */
export class ConfirmationInterrupted extends OperatorError {
  constructor(question: string) {
    super(`interrupted (Ctrl-C) at the confirmation of "${question}": not confirmed, nothing changed`, 130);
  }
}

/**
 * Confirmation of a production change: `--yes` answers for the operator; without it, standard input
 * must be a terminal (a script or a pipe never confirms by accident). The answer is y/N, or with
 * `typed` that exact text: for what cannot be undone (a database overwritten), a reflex `y` is not
 * enough, typing the name makes the operator read it.
 */
export function confirmer(
  yes: boolean | undefined,
  input: NodeJS.ReadableStream & { isTTY?: boolean } = process.stdin,
): (question: string, typed?: string, signal?: AbortSignal) => Promise<boolean> {
  // `signal`: a command that has taken the stop signals over (restore) stops the prompt with it; the
  // prompt's own rejection is then rethrown, for the command to say what it had done.
  return async (question, typed, signal) => {
    if (yes) return true;
    // The question often ends on a name ("...: they stay on atmr-prod"): its question mark ends it,
    // so that the refusal is not read as its last words; then why, and the fix.
    if (!input.isTTY) throw new OperatorError(`${question}? refused: standard input is not a terminal, so nobody can answer; pass --yes to confirm (nothing changed)`, 2);
    const rl = readline.createInterface({ input, output: process.stderr });
    const options = { signal };
    try {
      if (typed !== undefined) return (await rl.question(`${question}: type ${typed} to confirm: `, options)).trim() === typed;
      return /^(y|yes|o|oui)$/i.test((await rl.question(`${question} [y/N] `, options)).trim());
    } catch (error) {
      if (signal?.aborted) throw error;
      if ((error as { code?: unknown }).code === 'ABORT_ERR') {
        // The cursor is still after the prompt (raw mode echoes no ^C): the line stands on its own.
        process.stderr.write('\n');
        throw new ConfirmationInterrupted(question);
      }
      throw error;
    } finally {
      rl.close();
    }
  };
}

/**
 * Whether a restore asks, at the swap, to end the sessions that connected to the target during the
 * load instead of refusing them: only with an operator at the terminal to answer (standard input,
 * and stderr where the question is shown), and not with --yes or --json, which a script passes:
 * those runs are refused as the Lambda's are.
 */
export function asksAtSwap(opts: { readonly yes?: boolean; readonly json?: boolean }, stdin: { readonly isTTY?: boolean } = process.stdin, stderr: { readonly isTTY?: boolean } = process.stderr): boolean {
  return opts.yes !== true && opts.json !== true && stdin.isTTY === true && stderr.isTTY === true;
}
