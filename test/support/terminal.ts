import { spawn } from 'node:child_process';

/**
 * A command at a terminal: util-linux `script` runs it on a pseudo-terminal (standard input and
 * output are a TTY, as an operator's), and `answer` is typed once the output shows `prompt` (or,
 * a function, called then instead: e.g. to signal the command while it waits at the prompt).
 * Output is stdout and stderr together.
 */
export function runAtTerminal(
  command: readonly string[],
  options: { readonly cwd: string; readonly env: NodeJS.ProcessEnv; readonly prompt: string; readonly answer: string | (() => void) },
): Promise<{ status: number | null; output: string }> {
  const quote = (word: string) => `'${word.replaceAll("'", "'\\''")}'`;
  const child = spawn('script', ['-qec', command.map(quote).join(' '), '/dev/null'], { cwd: options.cwd, env: options.env, stdio: ['pipe', 'pipe', 'pipe'] });
  let output = '';
  let answered = false;
  const onData = (d: string) => {
    output += d;
    if (!answered && output.includes(options.prompt)) {
      answered = true;
      if (typeof options.answer === 'function') options.answer();
      else child.stdin.write(`${options.answer}\n`);
    }
  };
  child.stdout.setEncoding('utf8').on('data', onData);
  child.stderr.setEncoding('utf8').on('data', onData);
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (status) => {
      child.stdin.end();
      resolve({ status, output });
    });
  });
}
