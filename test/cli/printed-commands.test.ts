import * as fs from 'node:fs';
import * as path from 'node:path';
import { rollbackServiceCommand, rollbackStatusCommand } from '../../lambdas/backout/revision';
import { unlockCommandLine } from '../../lambdas/backout/state';
import { OPERATOR_CLI } from '../../lambdas/shared/constants';
import { commandNames, refusals, words } from './parse-refusals';

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
  /** Written `atmr-dr <command>`, without OPERATOR_CLI's `npx --no`: command not found outside an npm link. */
  readonly bare: boolean;
}

/**
 * Texts of lib/ and lambdas/ that name a component `atmr-dr <command> ...` and are no command line:
 * descriptions of deployed resources (a security group rule, the killswitch parameter), where
 * rewording would update the resource for nothing, and the prefix of the backup task's own lines.
 */
const NOT_COMMANDS = [/^atmr-dr backup runner to PostgreSQL$/, /^atmr-dr restore test to PostgreSQL$/, /^atmr-dr killswitch \(JSON: /, /^atmr-dr backup task: /];

function filesUnder(dir: string, ext: string): string[] {
  return fs.readdirSync(path.join(ROOT, dir), { withFileTypes: true }).flatMap((entry) => {
    const relative = path.join(dir, entry.name);
    if (entry.isDirectory()) return filesUnder(relative, ext);
    return entry.name.endsWith(ext) ? [relative] : [];
  });
}

/**
 * The arguments of a command line as written for a reader, or undefined for a mention that is not
 * one command line (`atmr-dr <command>`, a log line `atmr-dr backup task: ...`). Placeholders
 * (`<id>`, `${incident.id}`) become a value; `[--flag X]` is given. Two commands written as one
 * (`killswitch enable|disable`) are read as written, so that the parser refuses them.
 */
function commandLine(written: string): string[] | undefined {
  const line = written
    .replace(/\s+/g, ' ')
    // A pipe into another program, or a parenthesis of the prose after the command.
    .replace(/ (\||\().*$/, '')
    .replace(/\s+$|(?<!\.)\.$/g, '')
    .replace(/^(npx (--no )?)?atmr-dr ?/, '');
  if (line.includes(': ') || line.startsWith('<')) return undefined;
  const filled = line.replace(/\$\{[^}]*\}|<[^>]*>/g, 'x').replace(/[[\]]/g, '');
  // A choice of flags (`--resume | --undo`) is no command either; a word `a|b` is one, refused as written.
  if (filled.includes(' | ')) return undefined;
  return words(filled);
}

/** A command line as read from `file`, or nothing when `text` is none (commandLine). */
function printedAs(file: string, text: string): Printed[] {
  const args = commandLine(text);
  return args ? [{ file, text, args, bare: !text.startsWith('npx ') }] : [];
}

/** Commands in the string literals of one source file of the deployed code (its text `source`). */
function commandsInCode(file: string, source: string): Printed[] {
  const printed: Printed[] = [];
  // A bare `atmr-dr <command>` is read only when <command> is one of the CLI's: `atmr-dr rolls the API back` is prose.
  const bareCommand = new RegExp(`(?<![\\w:/-])(atmr-dr (?:${commandNames().join('|')})(?![\\w:-])(?:[^;,'\`)\\n"]|"[^"\\n]*")*)`, 'g');
  // Comments name commands in passing (`atmr-dr scale`); only what the code prints is read.
  const code = source.split('\n').filter((line) => !/^\s*(\*|\/\/|\/\*)/.test(line)).join('\n');
  // The command prefix as a page prints it, then a placeholder: its expression may hold quotes or parentheses.
  // An escaped backtick (a code span in a template literal) is the span's end, as printed.
  const filled = code.replaceAll('${OPERATOR_CLI}', OPERATOR_CLI).replace(/\$\{[^}]*\}/g, '<x>').replaceAll('\\`', '`');
  // A quoted command, or one introduced by npx up to the end of its clause.
  const quotedOrNpx = /"((?:npx (?:--no )?)?atmr-dr [^"\n]*)"|(npx (?:--no )?atmr-dr (?:[^;,'`)\n"]|"[^"\n]*")*)/g;
  for (const m of filled.matchAll(quotedOrNpx)) printed.push(...printedAs(file, m[1] ?? m[2]));
  // Then an unquoted one without npx, in the text left once those are taken out.
  const rest = filled.replace(quotedOrNpx, ' ');
  for (const m of rest.matchAll(bareCommand)) if (!NOT_COMMANDS.some((re) => re.test(m[1].trimEnd()))) printed.push(...printedAs(file, m[1].trimEnd()));
  return printed;
}

/** Commands in string literals of the deployed code (pages, alarms, messages) and in the docs' code spans. */
function printedCommands(): Printed[] {
  const printed: Printed[] = [];
  for (const file of [...filesUnder('lambdas', '.ts'), ...filesUnder('lib', '.ts')]) printed.push(...commandsInCode(file, fs.readFileSync(path.join(ROOT, file), 'utf8')));
  for (const file of [...filesUnder('docs', '.md'), 'README.md']) {
    for (const m of fs.readFileSync(path.join(ROOT, file), 'utf8').matchAll(/`((?:npx )?atmr-dr [^`]*)`/g)) printed.push(...printedAs(file, m[1]));
  }
  return printed;
}

describe('the atmr-dr commands the project prints parse with the CLI', () => {
  const printed = printedCommands();

  it('finds the commands of the backout page, the alarms, the recovery messages and the docs', () => {
    const found = (file: string, text: RegExp) => printed.some((p) => p.file === file && text.test(p.text));

    // The backout's rollback and status commands, written once beside the downgrade's.
    expect(found(path.join('lambdas', 'backout', 'revision.ts'), /rollback service --service <x><x> --env <x>/)).toBe(true);
    expect(found(path.join('lambdas', 'backout', 'revision.ts'), /rollback status --service <x> --env <x>/)).toBe(true);
    expect(found(path.join('lambdas', 'backout', 'revision.ts'), /rollback migration --to/)).toBe(true);
    expect(found(path.join('lambdas', 'escalation', 'tasks.ts'), /incident ack .* --by/)).toBe(true);
    expect(found(path.join('lambdas', 'recovery', 'workflow.ts'), /recover cutover .* --undo --yes/)).toBe(true);
    // A placeholder of a template literal, as the recovery's refusals print it.
    expect(found(path.join('lambdas', 'recovery', 'cutover.ts'), /^npx --no atmr-dr recover status <x>$/)).toBe(true);
    expect(found(path.join('lib', 'constructs', 'rollback.ts'), /rollback status/)).toBe(true);
    expect(found(path.join('docs', 'backout.md'), /rollback service/)).toBe(true);
    // The release of a lock nothing else releases, as the backout's lines and the docs print it.
    expect(found(path.join('lambdas', 'backout', 'state.ts'), /^npx --no atmr-dr rollback unlock --service \S+ --owner \S+ --env \S+$/)).toBe(true);
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

  it('prints no bare `atmr-dr <command>` in an alarm, a page or a message of lib/ and lambdas/', () => {
    // `atmr-dr` alone is "command not found" on an on-call laptop without npm link, and the CLI's
    // messages reach pages too (the monthly restore test runs the restore's code): all say OPERATOR_CLI.
    expect(printed.filter((p) => p.bare && p.file.endsWith('.ts')).map((p) => `${p.file}: ${p.text}`)).toEqual([]);
  });

  it('finds a bare command wherever it is written, and refuses it (and `killswitch enable|disable`, two commands as one)', () => {
    // Source lines as lambdas/ once wrote them: in a template literal with a placeholder, after an
    // environment variable, in a code span, in a plain string; a comment and OPERATOR_CLI are no bare command.
    const source = [
      'throw new OperatorError(`pointer ${key} is bad; name a manifest key instead (atmr-dr backups list --database ${database})`);',
      'return `rerun as the database\'s owner: PGUSER=${owner} atmr-dr db read-write (or --database-secret with that login)`;',
      'throw new OperatorError(`no incident ${id}: check the id with \\`atmr-dr incident list --open\\``, 4);',
      "const fix = 'do not restore it, choose another backup (atmr-dr backups list)';",
      '  // then atmr-dr backups list names it',
      'const hint = `list them with: ${OPERATOR_CLI} backups list`;',
    ].join('\n');
    const found = commandsInCode('fixture.ts', source);

    expect(found.filter((p) => p.bare).map((p) => p.args.join(' '))).toEqual(['backups list --database x', 'db read-write', 'incident list --open', 'backups list']);
    expect(found.filter((p) => !p.bare).map((p) => p.text)).toEqual([`${OPERATOR_CLI} backups list`]);
    expect(printed.some((p) => NOT_COMMANDS.some((re) => re.test(p.text)))).toBe(false);
    expect(refusals([commandLine('atmr-dr killswitch enable|disable')!])).toEqual([expect.stringMatching(/^unknown command 'enable\|disable'/)]);
  });

  it('every command a backout page, alarm or line prints names its environment with --env', () => {
    // Without --env the CLI acts on cdk.json's default environment: an on-call paged by staging's
    // backout who pastes the command would roll back (or unlock, or downgrade) another environment.
    const backout = printed.filter((p) => p.file.startsWith(path.join('lambdas', 'backout')) || p.file === path.join('lib', 'constructs', 'rollback.ts'));
    const withoutEnv = backout.filter((p) => !p.args.includes('--env')).map((p) => `${p.file}: ${p.text}`);

    // Each command is written once (the builders of lambdas/backout/revision.ts and state.ts), not once per line that prints it.
    expect(backout.length).toBeGreaterThan(12);
    expect(withoutEnv).toEqual([]);
  });

  it('the backout\'s command builders print, for any service and target, a command that parses and names --env', () => {
    const service = 'atmr-celery-worker';
    const arn = 'arn:aws:ecs:eu-west-3:111111111111:task-definition/atmr-api:41';
    const built = [
      rollbackServiceCommand(service, 'staging'),
      rollbackServiceCommand(service, 'staging', arn),
      rollbackServiceCommand(service, 'staging', 'TASK_DEF_ARN'),
      rollbackStatusCommand(service, 'staging'),
      unlockCommandLine(service, 'cli:alice:1', 'staging', true).slice(1, -1),
    ];

    expect(built).toEqual([
      `${OPERATOR_CLI} rollback service --service atmr-celery-worker --env staging`,
      `${OPERATOR_CLI} rollback service --service atmr-celery-worker --to ${arn} --env staging`,
      `${OPERATOR_CLI} rollback service --service atmr-celery-worker --to TASK_DEF_ARN --env staging`,
      `${OPERATOR_CLI} rollback status --service atmr-celery-worker --env staging`,
      `${OPERATOR_CLI} rollback unlock --service atmr-celery-worker --owner cli:alice:1 --env staging --force`,
    ]);
    expect(refusals(built.map((text) => commandLine(text)!))).toEqual(built.map(() => null));
  });

  it('every command the recovery workflow\'s events and pages print names its environment with --env', () => {
    // Read far from the CLI that started the recovery (a page, the incident channel): without --env
    // a pasted `recover abandon` or `recover cutover` acts on cdk.json's default environment.
    const workflow = printed.filter((p) => p.file === path.join('lambdas', 'recovery', 'workflow.ts'));
    const withoutEnv = workflow.filter((p) => !p.args.includes('--env')).map((p) => p.text);

    expect(workflow.length).toBeGreaterThanOrEqual(7);
    expect(withoutEnv).toEqual([]);
  });

  it('every `db read-write` a detection alarm prints names its environment with --env', () => {
    // db read-write reads the RDS instance of the environment it runs for: pasted from staging's
    // Database-ReadOnly page without --env, it would look at cdk.json's default environment's.
    const detection = printed.filter((p) => p.file === path.join('lib', 'constructs', 'detection.ts') && p.args[0] === 'db');
    const withoutEnv = detection.filter((p) => !p.args.includes('--env')).map((p) => p.text);

    expect(detection.length).toBeGreaterThanOrEqual(3);
    expect(withoutEnv).toEqual([]);
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
