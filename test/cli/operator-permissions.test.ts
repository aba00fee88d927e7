import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { sdkCallsOf } from '../support/sdk-calls';

/**
 * docs/operator-permissions.md tells the on-call which IAM actions each command needs. This keeps it
 * true: the actions a CLI module can send (test/support/sdk-calls.ts, from the source) must be the
 * ones its commands' rows list, plus the page's "loads but never sends" entries for that module.
 * A new SDK call anywhere a command reaches fails here until the page names it.
 */

const ROOT = path.join(__dirname, '..', '..');
const PAGE = path.join(ROOT, 'docs', 'operator-permissions.md');

/** Each table of the page whose header starts with `first`: its rows, as cells. */
function tableRows(markdown: string, first: string): string[][] {
  const lines = markdown.split('\n');
  const start = lines.findIndex((line) => line.startsWith(`| ${first} |`));
  if (start < 0) throw new Error(`${PAGE}: no table whose first column is "${first}"`);
  const rows: string[][] = [];
  for (const line of lines.slice(start + 2)) {
    if (!line.startsWith('|')) break;
    rows.push(line.split('|').slice(1, -1).map((cell) => cell.trim()));
  }
  return rows;
}

/** The `service:Action` names quoted in a cell. */
const actionsIn = (cell: string): string[] => [...cell.matchAll(/`([\w-]+:\w+)`/g)].map((m) => m[1]);

/** The top-level commands of each CLI module, as bin/atmr-dr.ts's CONCERNS table names them. */
function moduleOfCommand(): Map<string, string> {
  const source = fs.readFileSync(path.join(ROOT, 'bin', 'atmr-dr.ts'), 'utf8');
  const modules = new Map<string, string>();
  for (const m of source.matchAll(/commands: \[([^\]]*)\], load: async \(\) => \(await import\('\.\/cli\/(\w+)'\)\)/g)) {
    for (const command of m[1].matchAll(/'([\w-]+)'/g)) modules.set(command[1], `bin/cli/${m[2]}.ts`);
  }
  return modules;
}

/** Every command line that runs an action, from the CLI's own tree (test/cli/commands-harness.ts). */
function runnableCommands(): string[] {
  const child = spawnSync(path.join(ROOT, 'node_modules', '.bin', 'tsx'), ['test/cli/commands-harness.ts'], { cwd: ROOT, encoding: 'utf8' });
  if (child.status !== 0) throw new Error(`commands harness failed: ${child.stderr}`);
  return JSON.parse(child.stdout) as string[];
}

const page = fs.readFileSync(PAGE, 'utf8');
const commandRows = tableRows(page, 'Command').map(([command, actions]) => ({ command: command.replace(/`/g, ''), actions: actionsIn(actions) }));
const notSentRows = tableRows(page, 'Module').map(([module, actions]) => ({ module: module.replace(/`/g, ''), actions: actionsIn(actions) }));
const modules = moduleOfCommand();

jest.setTimeout(60_000);

describe('docs/operator-permissions.md', () => {
  it('has one row for every command the CLI runs, and no other', () => {
    const commands = runnableCommands();

    expect(commandRows.map((row) => row.command).sort()).toEqual(commands.sort());
    // Each row belongs to a module, whose calls the next tests compare with the page.
    expect(commandRows.filter((row) => !modules.has(row.command.split(' ')[0]))).toEqual([]);
  });

  it.each([...new Set(modules.values())])('lists exactly the AWS calls %s and what it imports can send', (module) => {
    const documented = new Set([
      ...commandRows.filter((row) => modules.get(row.command.split(' ')[0]) === module).flatMap((row) => row.actions),
      ...notSentRows.filter((row) => row.module === module).flatMap((row) => row.actions),
    ]);

    const sent = sdkCallsOf(path.join(ROOT, module));

    const missing = [...sent.keys()].filter((action) => !documented.has(action)).map((action) => `${action} (${[...(sent.get(action) ?? [])].join(', ')})`);
    const stale = [...documented].filter((action) => !sent.has(action));
    expect({ missing, stale }).toEqual({ missing: [], stale: [] });
  });
});
