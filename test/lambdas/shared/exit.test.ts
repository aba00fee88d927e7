import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const ROOT = path.join(__dirname, '..', '..', '..');
const EXIT_MODULE = path.join(ROOT, 'lambdas', 'shared', 'exit.ts');

/** `body` run as a script of its own under tsx (a real process: node's end of an empty event loop is what is tested). */
function runScript(body: string): { status: number | null; stdout: string; stderr: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'atmr-dr-exit-test-'));
  try {
    const script = path.join(dir, 'script.ts');
    fs.writeFileSync(script, `import { failIfStranded } from ${JSON.stringify(EXIT_MODULE)};\nvoid failIfStranded;\n${body}\n`);
    const run = spawnSync(path.join(ROOT, 'node_modules', '.bin', 'tsx'), [script], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
    return { status: run.status, stdout: run.stdout, stderr: run.stderr };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** A command that awaits a wait whose timer holds nothing open: node finds its event loop empty there. */
const STRANDED_COMMAND = `
async function command(): Promise<number> {
  await new Promise((resolve) => setTimeout(resolve, 1000).unref());
  console.log('result');
  return 0;
}`;

describe('failIfStranded', () => {
  it('without it, node ends a command stranded on an empty event loop with exit 0 and no result: the end it guards against', () => {
    // Act
    const run = runScript(`${STRANDED_COMMAND}\nvoid command().then((code) => (process.exitCode = code));`);

    // Assert
    expect(run).toEqual({ status: 0, stdout: '', stderr: '' });
  });

  it('a command stranded on an empty event loop before its result ends 1 with its line, not 0 in silence', () => {
    // Act
    const run = runScript(`${STRANDED_COMMAND}\nconst guard = failIfStranded('atmr-dr: internal error: stranded');\nvoid command().then((code) => { guard.finished(); process.exitCode = code; });`);

    // Assert
    expect(run).toEqual({ status: 1, stdout: '', stderr: 'atmr-dr: internal error: stranded\n' });
  });

  it('once finished, the process ends as node ends it: its own code, no line', () => {
    // Act
    const run = runScript(
      `const guard = failIfStranded('atmr-dr: internal error: stranded');\nvoid new Promise((resolve) => setTimeout(resolve, 50)).then(() => { console.log('result'); guard.finished(); process.exitCode = 3; });`,
    );

    // Assert
    expect(run).toEqual({ status: 3, stdout: 'result\n', stderr: '' });
  });
});
