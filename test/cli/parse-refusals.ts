import { spawnSync } from 'node:child_process';
import * as path from 'node:path';

const ROOT = path.join(__dirname, '..', '..');

/** Shell-like words: a double-quoted value is one word. */
export function words(line: string): string[] {
  return [...line.matchAll(/"([^"]*)"|(\S+)/g)].map((m) => m[1] ?? m[2]);
}

/** The parser's refusal of each command line (null: accepted), from test/cli/parse-harness.ts in a child process. */
export function refusals(lines: string[][], env: NodeJS.ProcessEnv = {}): (string | null)[] {
  const child = spawnSync(path.join(ROOT, 'node_modules', '.bin', 'tsx'), ['test/cli/parse-harness.ts'], { cwd: ROOT, encoding: 'utf8', input: JSON.stringify(lines), env: { ...process.env, ...env } });
  if (child.status !== 0) throw new Error(`parse harness failed: ${child.stderr}`);
  return JSON.parse(child.stdout) as (string | null)[];
}

/** The CLI's top-level command names (backup, backups, restore, ...), from its real program. */
export function commandNames(): string[] {
  const child = spawnSync(path.join(ROOT, 'node_modules', '.bin', 'tsx'), ['test/cli/parse-harness.ts', '--commands'], { cwd: ROOT, encoding: 'utf8' });
  if (child.status !== 0) throw new Error(`parse harness failed: ${child.stderr}`);
  return JSON.parse(child.stdout) as string[];
}
