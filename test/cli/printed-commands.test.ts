import * as fs from 'node:fs';
import * as path from 'node:path';
import { rollbackServiceCommand, rollbackStatusCommand } from '../../lambdas/backout/revision';
import { unlockCommandLine } from '../../lambdas/backout/state';
import { OPERATOR_CLI } from '../../lambdas/shared/constants';
import { withRecoverOptions } from '../../bin/cli/recover';
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
    .replace(ASSIGNMENTS, '')
    // A pipe into another program (or a redirection, a next command), or a parenthesis of the prose after the command.
    .replace(/ (\||>|&&|\().*$/, '')
    .replace(/\s+$|(?<!\.)\.$/g, '')
    .replace(/^(npx (--no )?)?atmr-dr ?/, '');
  if (line.replace(/"[^"]*"/g, '""').includes(': ') || line.startsWith('<')) return undefined;
  const filled = line.replace(/\$\{[^}]*\}|<[^>]*>|\{\}/g, 'x').replace(/[[\]]/g, '');
  // A choice of flags (`--resume | --undo`) is no command either; a word `a|b` is one, refused as written.
  if (filled.includes(' | ')) return undefined;
  return words(filled);
}

/** Variables set for the command before it (`PGDATABASE=atmr npx --no atmr-dr db revision`): the command is what follows. */
const ASSIGNMENTS = /^(?:[A-Z][A-Z0-9_]*=\S* )+/;

/** A text written `npx [--no] atmr-dr ...` that commandLine does not read as one command line. */
interface Unread {
  readonly file: string;
  readonly text: string;
}

/**
 * Texts written `npx --no atmr-dr ...` that no static reading can check, each with why: they are
 * left out of the parse, and named here rather than skipped without a word. Each must still be
 * found where it is said to be (a text changed or gone is taken off the list).
 */
const NOT_READ: readonly { file: string; text: RegExp; why: string }[] = [
  {
    file: path.join('lib', 'constructs', 'recovery.ts'),
    text: /^npx --no atmr-dr recover status \{\} --env <x> says what to do: check it by hand$/,
    why: 'the workflow\'s page (States.Format) goes on with prose after the command, no punctuation between: the end of the command is not in the text',
  },
  {
    file: path.join('bin', 'atmr-dr.ts'),
    text: /^npx --no atmr-dr <x> --mode <x> --reason "\.\.\."$|^npx --no atmr-dr <x> --service <x>$|^npx --no atmr-dr <x> --help$/,
    why: 'the parser\'s refusals name the command as typed (its words are the command line\'s): the refusals run below print and parse them',
  },
  {
    file: path.join('bin', 'atmr-dr.ts'),
    text: /^npx --no atmr-dr backups <x> \(see /,
    why: '`backup list` refused: <x> is the subcommand of backups typed after backup, one of those the refusal checked exists',
  },
];

/**
 * Commands of lib/ and lambdas/ printed without --env, each with why that is right. Each must still
 * be found where it is said to be (a text changed or gone is taken off the list).
 */
const WITHOUT_ENV: readonly { file: string; text: RegExp; why: string }[] = [
  {
    file: path.join('lambdas', 'shared', 'manifest.ts'),
    text: /^npx --no atmr-dr backups list$/,
    why: 'parseManifest\'s refusal (InvalidManifestError) knows no environment; the restore\'s catalog, which does, replaces its fix with one naming --env (lambdas/restore/catalog.ts)',
  },
];

/**
 * Files of lambdas/recovery whose lines reach the operator through the recover command only
 * (bin/cli/recover.ts `carrying` and `say`): withRecoverOptions puts in the options it was given,
 * --env (and --table, --state-machine, --parameter) into each `recover`, `killswitch`, `backups <sub>`
 * and `restore` they hold; none without --env, as it was run. Their commands are read as printed
 * with --env. The workflow's own texts (workflow.ts, and the copy's refusals of rds.ts it records)
 * name the environment themselves.
 */
const PRINTED_BY_RECOVER = ['operations.ts', 'rds.ts', 'store.ts', 'time.ts', 'verify.ts', 'cutover.ts', 'contract.ts'].map((file) => path.join('lambdas', 'recovery', file));

/**
 * A command line as read from `file`, or nothing when `text` is none (commandLine) or in NOT_READ.
 * A text that starts with npx is one to copy and run: one not read goes to `unread` (when given),
 * which the test holds to NOT_READ, so that none is left unchecked without a word.
 */
function printedAs(file: string, text: string, unread?: Unread[]): Printed[] {
  const written = text.replace(/\s+/g, ' ').replace(ASSIGNMENTS, '');
  // The form every command takes (`npx --no atmr-dr <command>`, `npx --no atmr-dr ...`) names none.
  if (/^(npx (--no )?)?atmr-dr (<command>|\.\.\.)/.test(written)) return [];
  const bare = !written.startsWith('npx ');
  if (NOT_READ.some((n) => n.file === file && n.text.test(written))) {
    unread?.push({ file, text: written });
    return [];
  }
  const args = commandLine(text);
  if (!args && !bare) unread?.push({ file, text: written });
  return args ? [{ file, text, args, bare }] : [];
}

/** A string literal, single- or double-quoted, or a template literal holding no other: its text in group 1, 2 or 3. */
const STRING_LITERAL = String.raw`'((?:[^'\\\n]|\\.)*)'|"((?:[^"\\\n]|\\.)*)"|\`((?:[^\`\\]|\\.)*)\``;

/**
 * A template literal's placeholders filled in, and the string literals of their expressions that
 * are not put in their place, each to be read on its own: a command written in a conditional piece
 * (`${readOnly ? `; run "${OPERATOR_CLI} db read-write"` : ''}`) is printed when its condition
 * holds. A choice between two strings (`${p ? `--parameter ${p}` : `--env ${env}`}`) is filled in
 * with the first, its options read in the command they complete, and the second is read on its own;
 * any other placeholder becomes `<x>`. Innermost placeholders first, so that an outer one holds no
 * brace of an inner one; one whose expression holds other braces (an object) becomes `<x>` whole.
 */
function placeholderPieces(code: string): { code: string; pieces: string[] } {
  const pieces: string[] = [];
  const choice = new RegExp(String.raw`^[^?'"\`]*\?\s*(?:${STRING_LITERAL})\s*:\s*(?:${STRING_LITERAL})\s*$`);
  let rest = code;
  for (let before = ''; before !== rest; ) {
    before = rest;
    rest = rest.replace(/\$\{([^{}]*)\}/g, (_, expression: string) => {
      const branches = choice.exec(expression);
      if (branches) {
        pieces.push(branches[4] ?? branches[5] ?? branches[6]);
        return branches[1] ?? branches[2] ?? branches[3];
      }
      for (const m of expression.matchAll(new RegExp(STRING_LITERAL, 'g'))) pieces.push(m[1] ?? m[2] ?? m[3]);
      return '<x>';
    });
  }
  return { code: rest.replace(/\$\{[^}]*\}/g, '<x>'), pieces };
}

/**
 * The calls of operatorCommand (lambdas/shared/constants.ts) written as the command they print,
 * `${OPERATOR_CLI} <args> --env <x>`: a call that is a whole placeholder of a template literal in
 * its place there, any other as a template literal of its own. Its second argument must be a string
 * or template literal; a call whose argument is anything else is left in the code and named in
 * `unread`, its command unread.
 */
function operatorCommandCalls(file: string, code: string, unread?: Unread[]): string {
  const call = String.raw`operatorCommand\(\s*[^,()'"\`]+?\s*,\s*(?:${STRING_LITERAL})\s*\)`;
  const command = (single?: string, double?: string, template?: string) =>
    `${OPERATOR_CLI} ${single?.replaceAll("\\'", "'") ?? double?.replaceAll('\\"', '"') ?? template} --env <x>`;
  const read = code
    .replace(new RegExp(String.raw`\$\{\s*${call}\s*\}`, 'g'), (_, single?: string, double?: string, template?: string) => command(single, double, template))
    .replace(new RegExp(call, 'g'), (_, single?: string, double?: string, template?: string) => `\`${command(single, double, template)}\``);
  for (const m of read.matchAll(/(?<!function )\boperatorCommand\([^\n]*/g)) unread?.push({ file, text: m[0] });
  return read;
}

/** Commands in the string literals of one source file of the deployed code (its text `source`). */
function commandsInCode(file: string, source: string, unread?: Unread[]): Printed[] {
  const printed: Printed[] = [];
  // A bare `atmr-dr <command>` is read only when <command> is one of the CLI's: `atmr-dr rolls the API back` is prose.
  const bareCommand = new RegExp(`(?<![\\w:/-])(atmr-dr (?:${commandNames().join('|')})(?![\\w:-])(?:[^;,'\`)\\n"]|"[^"\\n]*")*)`, 'g');
  // Comments name commands in passing (`atmr-dr scale`); only what the code prints is read.
  const code = source.split('\n').filter((line) => !/^\s*(\*|\/\/|\/\*)/.test(line)).join('\n');
  // The command prefix as a page prints it, then a placeholder: its expression may hold quotes or
  // parentheses, and strings printed when it holds (placeholderPieces), read after the code.
  // An escaped backtick (a code span in a template literal) is the span's end, as printed; an escaped newline, the line's.
  const { code: withoutPlaceholders, pieces } = placeholderPieces(operatorCommandCalls(file, code, unread).replaceAll('${OPERATOR_CLI}', OPERATOR_CLI));
  const filled = [withoutPlaceholders, ...pieces].join('\n').replaceAll('\\`', '`').replaceAll('\\n', '\n');
  // A quoted command, or one introduced by npx up to the end of its clause.
  const quotedOrNpx = /"((?:npx (?:--no )?)?atmr-dr [^"\n]*)"|(npx (?:--no )?atmr-dr (?:[^;,'`)\n"]|"[^"\n]*")*)/g;
  for (const m of filled.matchAll(quotedOrNpx)) printed.push(...printedAs(file, m[1] ?? m[2], unread));
  // Then an unquoted one without npx, in the text left once those are taken out.
  const rest = filled.replace(quotedOrNpx, ' ');
  for (const m of rest.matchAll(bareCommand)) if (!NOT_COMMANDS.some((re) => re.test(m[1].trimEnd()))) printed.push(...printedAs(file, m[1].trimEnd()));
  return printed;
}

/** The CLI's own sources: its refusals and hints are pasted from the terminal. */
function cliSources(): string[] {
  return [path.join('bin', 'atmr-dr.ts'), ...filesUnder(path.join('bin', 'cli'), '.ts')];
}

/**
 * Commands in a markdown text: code spans (`npx --no atmr-dr ...`, `PGDATABASE=atmr npx --no
 * atmr-dr ...`, `atmr-dr ...`), and in fenced blocks each line's npx command (a shell comment
 * after it left out) or quoted one, as the code's are read.
 */
function commandsInMarkdown(file: string, text: string, unread?: Unread[]): Printed[] {
  const printed: Printed[] = [];
  const fences = /^ *```[^\n]*\n([\s\S]*?)^ *```/gm;
  for (const m of text.replace(fences, '').matchAll(/`((?:[A-Z][A-Z0-9_]*=[^\s`]* )*(?:npx (?:--no )?)?atmr-dr [^`]*)`/g)) printed.push(...printedAs(file, m[1], unread));
  const quotedOrNpx = /"((?:npx (?:--no )?)?atmr-dr [^"\n]*)"|(npx (?:--no )?atmr-dr (?:[^;,'`)\n"]|"[^"\n]*")*)/g;
  for (const block of text.matchAll(fences)) {
    for (const line of block[1].split('\n')) {
      for (const m of line.replace(/\s#\s.*$/, '').matchAll(quotedOrNpx)) printed.push(...printedAs(file, (m[1] ?? m[2]).trimEnd(), unread));
    }
  }
  return printed;
}

/** Commands in string literals of the code (pages, alarms, messages, the CLI's lines) and in the docs. */
function printedCommands(unread?: Unread[]): Printed[] {
  const printed: Printed[] = [];
  for (const file of [...filesUnder('lambdas', '.ts'), ...filesUnder('lib', '.ts'), ...cliSources()]) printed.push(...commandsInCode(file, fs.readFileSync(path.join(ROOT, file), 'utf8'), unread));
  for (const file of [...filesUnder('docs', '.md'), 'README.md']) printed.push(...commandsInMarkdown(file, fs.readFileSync(path.join(ROOT, file), 'utf8'), unread));
  return printed;
}

describe('the atmr-dr commands the project prints parse with the CLI', () => {
  const unread: Unread[] = [];
  const printed = printedCommands(unread);

  it('reads every command written `npx --no atmr-dr ...`, but those NOT_READ names, each found where it is said to be', () => {
    const excepted = (u: Unread) => NOT_READ.some((n) => n.file === u.file && n.text.test(u.text));

    expect(unread.filter((u) => !excepted(u))).toEqual([]);
    expect(NOT_READ.filter((n) => !unread.some((u) => u.file === n.file && n.text.test(u.text))).map((n) => `${n.file}: ${n.text}`)).toEqual([]);
  });

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
    // Its --force, a conditional piece of the template, read in the command it completes.
    expect(found(path.join('lambdas', 'backout', 'state.ts'), /^npx --no atmr-dr rollback unlock --service \S+ --owner \S+ --env \S+ --force$/)).toBe(true);
    expect(found(path.join('docs', 'backout.md'), /rollback unlock --service NAME --owner ID \[--force\]/)).toBe(true);
    expect(found('README.md', /rollback unlock --service NAME --owner ID \[--force\]/)).toBe(true);
    expect(found('README.md', /recover --to-time "5 minutes ago"/)).toBe(true);
    // The on-call table's commands, written `npx --no atmr-dr`, and a fenced block's, after its variable.
    expect(found('README.md', /^npx --no atmr-dr incident ack <id>$/)).toBe(true);
    expect(found('README.md', /^PGDATABASE=atmr npx --no atmr-dr db revision$/)).toBe(true);
    expect(found(path.join('docs', 'restore.md'), /^npx --no atmr-dr restore latest --target-db atmr_restored --count-timeout 3h$/)).toBe(true);
    // Commands in a conditional piece of a template literal, printed when its condition holds.
    expect(found(path.join('bin', 'cli', 'recover.ts'), /^npx --no atmr-dr recover cutover <x> --undo --yes$/)).toBe(true);
    // And the CLI's own hints.
    expect(found(path.join('bin', 'cli', 'interrupt.ts'), /^npx --no atmr-dr rollback status$/)).toBe(true);
    // Commands built by operatorCommand, read at its call sites with --env appended: a sentence's
    // placeholder, a builder's value, a page of lib/.
    expect(found(path.join('lambdas', 'restore', 'catalog.ts'), /^npx --no atmr-dr backups list --database <x> --env <x>$/)).toBe(true);
    expect(found(path.join('lambdas', 'backout', 'migration.ts'), /^npx --no atmr-dr killswitch disable --reason "migration downgrade finished" --env <x>$/)).toBe(true);
    expect(found(path.join('lib', 'constructs', 'recovery.ts'), /^npx --no atmr-dr recover cutover \{\} --unverified --yes --env <x>$/)).toBe(true);
  });

  it('reads each command operatorCommand builds at its call site, --env appended, and refuses a broken one; a call whose command is no literal is named, unread', () => {
    // As lambdas/ writes them: a whole placeholder of a sentence, a value of its own, a template argument.
    const unreadHere: Unread[] = [];
    const code = commandsInCode(
      'fixture.ts',
      [
        "throw new OperatorError(`list them with: ${operatorCommand(environmentName, 'backups list')}`, 2);",
        'const list = operatorCommand(deps.environmentName, `backups list --tier ${tier}${database}`);',
        "const check = `check \"${operatorCommand(settings.environmentName, 'killswitch status')}\" first`;",
        "return operatorCommand(env, 'backups lst');",
        'return operatorCommand(env, args);',
      ].join('\n'),
      unreadHere,
    );

    expect(code.map((p) => p.text)).toEqual([
      `${OPERATOR_CLI} backups list --env <x>`,
      `${OPERATOR_CLI} backups list --tier <x><x> --env <x>`,
      `${OPERATOR_CLI} killswitch status --env <x>`,
      `${OPERATOR_CLI} backups lst --env <x>`,
    ]);
    expect(refusals(code.map((p) => p.args))).toEqual([null, null, null, expect.stringMatching(/^unknown command 'lst'/)]);
    expect(unreadHere).toEqual([{ file: 'fixture.ts', text: 'operatorCommand(env, args);' }]);
  });

  it('reads a command in either branch of a template\'s conditional piece and in the docs\' `npx --no atmr-dr` spans and blocks, and refuses a broken one', () => {
    // As lambdas/restore, bin/cli/killswitch.ts and bin/cli/recover.ts write them; the last one mistyped.
    const code = commandsInCode(
      'fixture.ts',
      [
        'throw new OperatorError(`cannot create ${db}${readOnly ? `; the server refuses writes: "${OPERATOR_CLI} db read-write" shows why` : \'\'}`);',
        'return `${OPERATOR_CLI} killswitch disable ${parameter !== undefined ? `--parameter ${shellWord(parameter)}` : `--env ${environmentName}`}`;',
        'say(`continue with "${OPERATOR_CLI} recover cutover ${id} --resume --yes"${reopened ? \'\' : ` or put back with "${OPERATOR_CLI} recover cutover ${id} --undoo --yes"`}`);',
      ].join('\n'),
    );
    const markdown = commandsInMarkdown(
      'fixture.md',
      [
        '| page | `npx --no atmr-dr incident ack <id>` (or `PGDATABASE=atmr npx --no atmr-dr db revision`) |',
        '```sh',
        'PGDATABASE=atmr npx --no atmr-dr restore latest --target-db atmr_restored     # or a manifest key, from backups list',
        'npx --no atmr-dr backups lst',
        '```',
      ].join('\n'),
    );

    // A branch put in place is read in the text around it; the other branch, after the source.
    expect(code.map((p) => p.text)).toEqual([
      `${OPERATOR_CLI} db read-write`,
      `${OPERATOR_CLI} killswitch disable --parameter <x>`,
      `${OPERATOR_CLI} recover cutover <x> --resume --yes`,
      `${OPERATOR_CLI} recover cutover <x> --undoo --yes`,
    ]);
    expect(markdown.map((p) => p.text)).toEqual([
      `${OPERATOR_CLI} incident ack <id>`,
      `PGDATABASE=atmr ${OPERATOR_CLI} db revision`,
      `${OPERATOR_CLI} restore latest --target-db atmr_restored`,
      `${OPERATOR_CLI} backups lst`,
    ]);
    expect([...code, ...markdown].filter((p) => p.bare)).toEqual([]);
    expect(refusals([...code, ...markdown].map((p) => p.args))).toEqual([
      null,
      null,
      null,
      expect.stringMatching(/^unknown option '--undoo'/),
      null,
      null,
      null,
      expect.stringMatching(/^unknown command 'lst'/),
    ]);
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

  it('prints no bare `atmr-dr <command>` in an alarm, a page, a message of lib/ and lambdas/, or a hint or refusal of the CLI', () => {
    // `atmr-dr` alone is "command not found" on an on-call laptop without npm link, and the CLI's
    // messages reach pages too (the monthly restore test runs the restore's code): all say OPERATOR_CLI.
    const bare = printed.filter((p) => p.bare && p.file.endsWith('.ts')).map((p) => `${p.file}: ${p.text}`);

    expect(bare).toEqual([]);
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

  it('every command a page, an alarm or a message of lib/ and lambdas/ prints names its environment with --env, but those WITHOUT_ENV names, each found where it is said to be', () => {
    // Without --env the CLI acts on cdk.json's default environment, whichever environment paged:
    // staging's page pasted in a terminal ended prod's maintenance (`killswitch disable`) before
    // every such command was built by operatorCommand. Read as printed: the recover command's lines with its --env (PRINTED_BY_RECOVER).
    const deployed = printed.filter((p) => /^(lib|lambdas)\//.test(p.file) && !p.bare);
    const asPrinted = (p: Printed) => (PRINTED_BY_RECOVER.includes(p.file) ? { ...p, args: commandLine(withRecoverOptions(p.text, { env: 'staging' }))! } : p);
    const withoutEnv = deployed.map(asPrinted).filter((p) => !p.args.includes('--env'));
    const excepted = (p: Printed) => WITHOUT_ENV.some((w) => w.file === p.file && w.text.test(p.text));

    expect(deployed.length).toBeGreaterThan(150);
    expect(withoutEnv.filter((p) => !excepted(p)).map((p) => `${p.file}: ${p.text}`)).toEqual([]);
    expect(WITHOUT_ENV.filter((w) => !withoutEnv.some((p) => p.file === w.file && w.text.test(p.text))).map((w) => `${w.file}: ${w.text}`)).toEqual([]);
  });

  it('the recover command prints the commands of lambdas/recovery with the --env it was given, and none without', () => {
    // Read from its code, as the operator sees them: a refusal of rds.ts names a dump to restore instead.
    const text = 'pick a time between them, or restore an older dump (npx --no atmr-dr backups list); (npx --no atmr-dr restore); run "npx --no atmr-dr recover abandon r-1"';

    expect(withRecoverOptions(text, { env: 'staging' })).toBe(
      'pick a time between them, or restore an older dump (npx --no atmr-dr backups list --env staging); (npx --no atmr-dr restore --env staging); run "npx --no atmr-dr recover --env staging abandon r-1"',
    );
    expect(withRecoverOptions(text, {})).toBe(text);
    expect(withRecoverOptions('npx --no atmr-dr restore-test --json', { env: 'staging' })).toBe('npx --no atmr-dr restore-test --json');
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
      `too many arguments for 'enable'. Expected 0 arguments but got 1: down: a value of several words is quoted: --reason "OSRM down" (see npx --no atmr-dr killswitch enable --help)`,
      `too many arguments for 'recover'. Expected 0 arguments but got 2: minutes, ago: a value of several words is quoted: --to-time "5 minutes ago" (see npx --no atmr-dr recover --help)`,
      `too many arguments for 'resolve'. Expected 1 argument but got 2: x, Dupont: a value of several words is quoted: --by "Jean Dupont" (see npx --no atmr-dr incident resolve --help)`,
      'killswitch enable takes the mode as --mode maintenance, not a word after it (`/killswitch enable maintenance` is the Slack command\'s form): npx --no atmr-dr killswitch enable --mode maintenance --reason "..." (see npx --no atmr-dr killswitch enable --help)',
      "too many arguments for 'restore'. Expected 1 argument but got 2: latest, extra. (see npx --no atmr-dr restore --help)",
      "too many arguments for 'list'. Expected 0 arguments but got 1: extra. (see npx --no atmr-dr backups list --help)",
      'rollback service names its service with --service, not a word after it: npx --no atmr-dr rollback service --service atmr-celery-worker (see npx --no atmr-dr rollback service --help)',
    ]);
  });

  it('the parse refuses the command the backout page once printed, and the forms an operator might type from it', () => {
    expect(refusals([commandLine('npx atmr-dr rollback service atmr-celery-worker')!, ['rollback', 'service', '--service'], ['rollback', 'servce']])).toEqual([
      'rollback service names its service with --service, not a word after it: npx --no atmr-dr rollback service --service atmr-celery-worker (see npx --no atmr-dr rollback service --help)',
      "option '--service <name>' argument missing (see npx --no atmr-dr rollback service --help)",
      expect.stringMatching(/^unknown command 'servce'/),
    ]);
  });
});
