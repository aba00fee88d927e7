import * as fs from 'node:fs';
import * as path from 'node:path';
import { OPERATOR_CLI } from '../../lambdas/shared/constants';
import { refusals, words } from './parse-refusals';

/**
 * Every atmr-dr command line the project tells an operator to run, in a page, an alarm's first
 * actions, a message or the docs, must parse with the CLI as it is: a page once said
 * `npx atmr-dr rollback service <service>`, which the CLI refused (its service is --service), and
 * an operator who deleted the word it called too many would have rolled back the API instead.
 */
const ROOT = path.join(__dirname, '..', '..');

jest.setTimeout(60_000);

interface Printed {
  /** Where it is written (file). */
  readonly file: string;
  /** As written there. */
  readonly text: string;
  /** The arguments after atmr-dr, placeholders filled in. */
  readonly args: string[];
}

function filesUnder(dir: string, ext: string): string[] {
  return fs.readdirSync(path.join(ROOT, dir), { withFileTypes: true }).flatMap((entry) => {
    const relative = path.join(dir, entry.name);
    if (entry.isDirectory()) return filesUnder(relative, ext);
    return entry.name.endsWith(ext) ? [relative] : [];
  });
}

/**
 * The arguments of a command line as written for a reader, or undefined for a mention that is not
 * one command line (`atmr-dr <command>`, `killswitch enable|disable`, a log line `atmr-dr backup
 * task: ...`). Placeholders (`<id>`, `${incident.id}`) become a value; `[--flag X]` is given.
 */
function commandLine(written: string): string[] | undefined {
  const line = written
    .replace(/\s+/g, ' ')
    // A pipe into another program, or a parenthesis of the prose after the command.
    .replace(/ (\||\().*$/, '')
    .replace(/\s+$|(?<!\.)\.$/g, '')
    .replace(/^(npx (--no )?)?atmr-dr ?/, '');
  if (line.includes(': ') || line.includes('|') || line.startsWith('<')) return undefined;
  return words(line.replace(/\$\{[^}]*\}|<[^>]*>/g, 'x').replace(/[[\]]/g, ''));
}

/** Commands in string literals of the deployed code (pages, alarms, messages) and in the docs' code spans. */
function printedCommands(): Printed[] {
  const printed: Printed[] = [];
  const add = (file: string, text: string) => {
    const args = commandLine(text);
    if (args) printed.push({ file, text, args });
  };
  for (const file of [...filesUnder('lambdas', '.ts'), ...filesUnder('lib', '.ts')]) {
    // Comments name commands in passing (`atmr-dr scale`); only what the code prints is read.
    const code = fs.readFileSync(path.join(ROOT, file), 'utf8').split('\n').filter((line) => !/^\s*(\*|\/\/|\/\*)/.test(line)).join('\n');
    // The command prefix as a page prints it, then a placeholder: its expression may hold quotes or parentheses.
    const filled = code.replaceAll('${OPERATOR_CLI}', OPERATOR_CLI).replace(/\$\{[^}]*\}/g, '<x>');
    // A quoted command, or one introduced by npx up to the end of its clause.
    for (const m of filled.matchAll(/"((?:npx (?:--no )?)?atmr-dr [^"\n]*)"|(npx (?:--no )?atmr-dr (?:[^;,'`)\n"]|"[^"\n]*")*)/g)) add(file, m[1] ?? m[2]);
  }
  for (const file of [...filesUnder('docs', '.md'), 'README.md']) {
    for (const m of fs.readFileSync(path.join(ROOT, file), 'utf8').matchAll(/`((?:npx )?atmr-dr [^`]*)`/g)) add(file, m[1]);
  }
  return printed;
}

describe('the atmr-dr commands the project prints parse with the CLI', () => {
  const printed = printedCommands();

  it('finds the commands of the backout page, the alarms, the recovery messages and the docs', () => {
    const found = (file: string, text: RegExp) => printed.some((p) => p.file === file && text.test(p.text));

    expect(found(path.join('lambdas', 'backout', 'workflow.ts'), /rollback service/)).toBe(true);
    expect(found(path.join('lambdas', 'backout', 'revision.ts'), /rollback migration --to/)).toBe(true);
    expect(found(path.join('lambdas', 'escalation', 'tasks.ts'), /incident ack .* --by/)).toBe(true);
    expect(found(path.join('lambdas', 'recovery', 'workflow.ts'), /recover cutover .* --undo --yes/)).toBe(true);
    expect(found(path.join('lib', 'constructs', 'rollback.ts'), /rollback status/)).toBe(true);
    expect(found(path.join('docs', 'backout.md'), /rollback service/)).toBe(true);
    // The release of a lock nothing else releases, as the backout's lines and the docs print it.
    expect(found(path.join('lambdas', 'backout', 'state.ts'), /^atmr-dr rollback unlock --service \S+ --owner \S+$/)).toBe(true);
    expect(found(path.join('docs', 'backout.md'), /rollback unlock --service NAME --owner ID \[--force\]/)).toBe(true);
    expect(found('README.md', /rollback unlock --service NAME --owner ID \[--force\]/)).toBe(true);
    expect(found('README.md', /recover --to-time "5 minutes ago"/)).toBe(true);
  });

  it('every page, alarm and hint names the CLI as OPERATOR_CLI: none can fetch a package atmr-dr from the npm registry', () => {
    // A bare `npx atmr-dr` outside the checkout offers to install whatever someone publishes under
    // the name; `npx --no atmr-dr` never installs. Written as the constant, no text can forget it.
    const bare = [...filesUnder('lambdas', '.ts'), ...filesUnder('lib', '.ts'), ...filesUnder(path.join('bin', 'cli'), '.ts')].flatMap((file) =>
      fs
        .readFileSync(path.join(ROOT, file), 'utf8')
        .split('\n')
        .flatMap((line, i) => (/npx (--no )?atmr-dr/.test(line) && !/^\s*(\*|\/\/|\/\*)|^export const OPERATOR_CLI = /.test(line) ? [`${file}:${i + 1}: ${line.trim()}`] : [])),
    );

    expect(OPERATOR_CLI).toBe('npx --no atmr-dr');
    expect(bare).toEqual([]);
    expect(printed.filter((p) => p.file.endsWith('.ts') && p.text.startsWith('npx ') && !p.text.startsWith(`${OPERATOR_CLI} `))).toEqual([]);
  });

  it('every one parses', () => {
    const refused = refusals(printed.map((p) => p.args));
    // A command named with no option at all (a heading's `atmr-dr recover`, "behind `atmr-dr
    // backup`") is a mention, not a line to run: it names a command that exists, and only the
    // options it leaves out, which the prose does not claim to give, are missing.
    const mention = (p: Printed, refusal: string) => !p.args.some((word) => word.startsWith('-')) && /^[a-z -]+: required options? not given: /.test(refusal);
    const wrong = printed.flatMap((p, i) => (refused[i] === null || mention(p, refused[i]) ? [] : [`${p.file}: "${p.text}": ${refused[i]}`]));

    expect(wrong).toEqual([]);
  });

  it('parses the unlock command as the lines that keep a migration\'s lock print it (with --force and an owner holding colons)', () => {
    expect(refusals([commandLine('"atmr-dr rollback unlock --service atmr-api --owner cli:arn:aws:sts::111111111111:assumed-role/atmr-oncall/alice:1796222302120 --force"'.slice(1, -1))!])).toEqual([null]);
  });

  it('a value of several words the shell split, and the Slack form of killswitch enable: the refusal says how to write it', () => {
    // Act
    const refused = refusals([
      ['killswitch', 'enable', '--mode', 'maintenance', '--reason', 'OSRM', 'down', '--expires', '2h'],
      ['recover', '--to-time', '5', 'minutes', 'ago', '--reason', 'x'],
      ['incident', 'resolve', 'x', '--by', 'Jean', 'Dupont'],
      ['killswitch', 'enable', 'maintenance', '--reason', 'x'],
      // The word after the value is the command's own argument, or the value is no prose: no split value to quote.
      ['restore', '--target-db', 'atmr_restored', 'latest', 'extra'],
      ['backups', 'list', '--env', 'example', 'extra'],
      // A service named as a word after another option's value: the --service line, never a value to quote.
      ['rollback', 'service', '--to', 'arn:aws:ecs:eu-west-3:111111111111:task-definition/atmr-api:41', 'atmr-celery-worker'],
    ]);

    // Assert
    expect(refused).toEqual([
      `too many arguments for 'enable'. Expected 0 arguments but got 1: down: a value of several words is quoted: --reason "OSRM down" (see atmr-dr killswitch enable --help)`,
      `too many arguments for 'recover'. Expected 0 arguments but got 2: minutes, ago: a value of several words is quoted: --to-time "5 minutes ago" (see atmr-dr recover --help)`,
      `too many arguments for 'resolve'. Expected 1 argument but got 2: x, Dupont: a value of several words is quoted: --by "Jean Dupont" (see atmr-dr incident resolve --help)`,
      'killswitch enable takes the mode as --mode maintenance, not a word after it (`/killswitch enable maintenance` is the Slack command\'s form): atmr-dr killswitch enable --mode maintenance --reason "..." (see atmr-dr killswitch enable --help)',
      "too many arguments for 'restore'. Expected 1 argument but got 2: latest, extra. (see atmr-dr restore --help)",
      "too many arguments for 'list'. Expected 0 arguments but got 1: extra. (see atmr-dr backups list --help)",
      'rollback service names its service with --service, not a word after it: atmr-dr rollback service --service atmr-celery-worker (see atmr-dr rollback service --help)',
    ]);
  });

  it('the parse refuses the command the backout page once printed, and the forms an operator might type from it', () => {
    expect(refusals([commandLine('npx atmr-dr rollback service atmr-celery-worker')!, ['rollback', 'service', '--service'], ['rollback', 'servce']])).toEqual([
      'rollback service names its service with --service, not a word after it: atmr-dr rollback service --service atmr-celery-worker (see atmr-dr rollback service --help)',
      "option '--service <name>' argument missing (see atmr-dr rollback service --help)",
      expect.stringMatching(/^unknown command 'servce'/),
    ]);
  });
});
