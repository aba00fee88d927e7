import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { operatorEnv } from '../../support/operator-env';

const ROOT = path.join(__dirname, '..', '..', '..');

export interface SdkCall {
  command: string;
  input: Record<string, unknown>;
}

/** Runs the real CLI in a child process (stdin not a terminal) with the AWS SDK mocked (cli-harness.ts). */
export function atmrDr(args: string[], scenario: Record<string, unknown> = {}, env: Record<string, string> = {}) {
  const resultFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'det-cli-')), 'result.json');
  const run = spawnSync(path.join(ROOT, 'node_modules', '.bin', 'tsx'), ['test/lambdas/detection/cli-harness.ts', ...args], {
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
