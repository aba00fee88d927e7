import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { operatorEnv } from '../../support/operator-env';
import { runAtTerminal } from '../../support/terminal';

const ROOT = path.join(__dirname, '..', '..', '..');

export interface SdkCall {
  command: string;
  input: Record<string, unknown>;
}

const TSX = path.join(ROOT, 'node_modules', '.bin', 'tsx');
const HARNESS = 'test/lambdas/detection/cli-harness.ts';

/** Runs the real CLI in a child process (stdin not a terminal) with the AWS SDK mocked (cli-harness.ts). */
export function atmrDr(args: string[], scenario: Record<string, unknown> = {}, env: Record<string, string> = {}) {
  const resultFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'det-cli-')), 'result.json');
  const run = spawnSync(TSX, [HARNESS, ...args], {
    cwd: ROOT,
    encoding: 'utf8',
    stdio: ['pipe', 'pipe', 'pipe'],
    env: operatorEnv({
      DET_RESULT: resultFile,
      DET_SCENARIO: JSON.stringify(scenario),
      ...env,
    }),
  });
  const result = fs.existsSync(resultFile) ? (JSON.parse(fs.readFileSync(resultFile, 'utf8')) as { code: number; calls: SdkCall[] }) : { code: -1, calls: [] };
  return { status: run.status, stdout: run.stdout, stderr: run.stderr, calls: result.calls };
}

/** The same at a terminal: `answer` is typed once `prompt` shows. Output is stdout and stderr together. */
export function atmrDrAtTerminal(args: string[], prompt: string, answer: string, env: Record<string, string> = {}) {
  const resultFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'det-cli-')), 'result.json');
  return runAtTerminal([TSX, HARNESS, ...args], { cwd: ROOT, env: operatorEnv({ DET_RESULT: resultFile, DET_SCENARIO: '{}', ...env }), prompt, answer });
}

/** The same, started without waiting: `onStdout` sees the output so far (to send a signal at a given point). */
export function startAtmrDr(args: string[], scenario: Record<string, unknown>, env: Record<string, string>, onStdout: (stdout: string, child: ChildProcess) => void) {
  const resultFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'det-cli-')), 'result.json');
  const child = spawn(TSX, [HARNESS, ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: operatorEnv({ DET_RESULT: resultFile, DET_SCENARIO: JSON.stringify(scenario), ...env }),
  });
  let stdout = '';
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  child.stdout.on('data', (d: Buffer) => {
    stdout += d.toString();
    onStdout(stdout, child);
  });
  return new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => child.on('close', (status) => resolve({ status, stdout, stderr })));
}
