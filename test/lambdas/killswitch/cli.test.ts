import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { utcMinute } from '../../../lambdas/shared/format';
import { clockShiftEnv } from '../../support/clock-shift';
import { operatorEnv } from '../../support/operator-env';
import { runAtTerminal } from '../../support/terminal';
import { PARAMETER, value } from './fixtures';

const ROOT = path.join(__dirname, '..', '..', '..');
const CALLER = 'arn:aws:sts::111111111111:assumed-role/atmr-oncall/alice';

interface Scenario {
  raw?: string;
  version?: number;
  writeAfterOurs?: string;
  retriedPut?: boolean;
  stsFails?: boolean;
  cloudFormation?: 'denied' | 'silent';
  clockShiftMs?: number;
}
interface SdkCall {
  command: string;
  input: { Name?: string; Value?: string };
}

const TSX = path.join(ROOT, 'node_modules', '.bin', 'tsx');
const HARNESS = 'test/lambdas/killswitch/cli-harness.ts';

function harnessEnv(resultFile: string, scenario: Scenario, env: Record<string, string>): NodeJS.ProcessEnv {
  return operatorEnv({
    USER: 'alice-local',
    KS_RESULT: resultFile,
    KS_SCENARIO: JSON.stringify({ raw: JSON.stringify(value()), version: 1, ...scenario }),
    ...env,
  });
}

function sdkCalls(resultFile: string): { calls: SdkCall[]; puts: SdkCall[] } {
  const result = JSON.parse(fs.readFileSync(resultFile, 'utf8')) as { code: number; calls: SdkCall[] };
  return { calls: result.calls, puts: result.calls.filter((c) => c.command === 'PutParameterCommand') };
}

/** Runs the real CLI in a child process with the SSM/STS SDK mocked (see cli-harness.ts); standard input is not a terminal. */
function atmrDr(args: string[], scenario: Scenario = {}, env: Record<string, string> = { KILLSWITCH_PARAMETER: PARAMETER }) {
  const resultFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'ks-cli-')), 'result.json');
  const run = spawnSync(TSX, [HARNESS, 'killswitch', ...args], { cwd: ROOT, encoding: 'utf8', env: harnessEnv(resultFile, scenario, env) });
  return { status: run.status, stdout: run.stdout, stderr: run.stderr, ...sdkCalls(resultFile) };
}

/** The same at a terminal; `answer` is typed when it asks. Output is stdout and stderr together. */
async function atmrDrAtTerminal(args: string[], answer: string, scenario: Scenario = {}) {
  const resultFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'ks-cli-')), 'result.json');
  const { status, output } = await runAtTerminal([TSX, HARNESS, 'killswitch', ...args], {
    cwd: ROOT,
    env: harnessEnv(resultFile, scenario, { KILLSWITCH_PARAMETER: PARAMETER }),
    prompt: '[y/N] ',
    answer,
  });
  return { status, output, ...sdkCalls(resultFile) };
}

describe('atmr-dr killswitch: bad input writes nothing', () => {
  it.each([
    [['enable', '--mode', 'panic', '--reason', 'x'], /invalid mode "panic": use one of maintenance, degraded/],
    [['enable', '--reason', 'x'], /required option not given: --mode <mode> \(maintenance or degraded\)/],
    [['enable', '--mode', 'maintenance'], /required option not given: --reason <text> \(why, e\.g\. "OSRM down"/],
    [['enable', '--mode', 'degraded', '--reason', 'peak', '--expires', '2 hours'], /malformed duration "2 hours": use a number with a unit s, m, h or d/],
  ])('%j: one line naming the valid values, exit non-zero, no PutParameter sent', (args, message) => {
    const run = atmrDr(args);

    expect(run.status).not.toBe(0);
    expect(run.stderr).toMatch(message);
    expect(run.stderr.trim().split('\n')).toHaveLength(1);
    expect(run.puts).toEqual([]);
  });
});

describe('atmr-dr killswitch enable / disable / status', () => {
  it.each([
    [
      ['enable', '--mode', 'maintenance', '--reason', 'OSRM down'],
      'killswitch enable: put the API in maintenance (every request but /health and /ready answered 503) until `npx --no atmr-dr killswitch disable --env example`, or until its current expiry if it is already on with one (no --expires)',
    ],
    [
      ['--parameter', PARAMETER, 'enable', '--mode', 'maintenance', '--reason', 'OSRM down', '--expires', 'never'],
      `killswitch enable: put the API in maintenance (every request but /health and /ready answered 503) until \`npx --no atmr-dr killswitch disable --parameter ${PARAMETER}\` (--expires never)`,
    ],
    [['disable', '--reason', 'OSRM back'], 'killswitch disable: return the API to normal'],
  ])('%j without --yes and without a terminal is refused in one line naming --yes, exit 2, nothing written', (args, change) => {
    const run = atmrDr(args, { raw: JSON.stringify(value({ mode: 'degraded', reason: 'peak' })) });

    expect(run.status).toBe(2);
    expect(run.stderr).toBe(`atmr-dr: ${change} (parameter ${PARAMETER})? refused: standard input is not a terminal, so nobody can answer; pass --yes to confirm (nothing changed)\n`);
    expect(run.puts).toEqual([]);
  });

  it.each([[['disable', '--reason', 'OSRM back']], [['--env', 'example', 'disable', '--reason', 'OSRM back']]])(
    '%j: the question names the environment whose parameter it writes (the default one without --env)',
    (args) => {
      // No --parameter nor KILLSWITCH_PARAMETER: the parameter is the environment's (here, from cdk.json).
      const run = atmrDr(args, { raw: JSON.stringify(value({ mode: 'maintenance', reason: 'OSRM down' })) }, {});

      expect(run.status).toBe(2);
      expect(run.stderr).toBe(
        'atmr-dr: killswitch disable: return the API to normal (environment example: parameter /atmr/example/killswitch)? refused: standard input is not a terminal, so nobody can answer; pass --yes to confirm (nothing changed)\n',
      );
      expect(run.puts).toEqual([]);
    },
  );

  it('at a terminal, enable asks first: "n" writes nothing (exit 1), "y" writes', async () => {
    const args = ['enable', '--mode', 'degraded', '--reason', 'pic de charge', '--expires', '30m'];
    const prompt = `killswitch enable: put the API in degraded mode for 30m (parameter ${PARAMETER}) [y/N] `;

    const declined = await atmrDrAtTerminal(args, 'n');

    expect(declined.output).toContain(prompt);
    expect(declined.output).toContain('atmr-dr: killswitch enable: not confirmed, nothing changed');
    expect(declined.status).toBe(1);
    expect(declined.puts).toEqual([]);

    const confirmed = await atmrDrAtTerminal(args, 'y');

    expect(confirmed.output).toContain(prompt);
    expect(confirmed.status).toBe(0);
    expect(confirmed.puts).toHaveLength(1);
    expect(JSON.parse(confirmed.puts[0].input.Value as string)).toMatchObject({ mode: 'degraded', reason: 'pic de charge' });
  });

  it('at a terminal, Ctrl-C at the prompt is the interrupt it is: one line saying nothing changed, exit 130, nothing written', async () => {
    const args = ['disable', '--reason', 'OSRM back'];

    const interrupted = await atmrDrAtTerminal(args, '\x03', { raw: JSON.stringify(value({ mode: 'maintenance', reason: 'OSRM down' })) });

    expect(interrupted.status).toBe(130);
    expect(interrupted.output.trimEnd().split('\n').at(-1)).toMatch(
      /^atmr-dr: interrupted \(Ctrl-C\) at the confirmation of "killswitch disable: return the API to normal \(parameter \/atmr\/test\/killswitch\)": not confirmed, nothing changed\r?$/,
    );
    expect(interrupted.output).not.toMatch(/AbortError|Aborted with Ctrl\+C| {4}at /);
    expect(interrupted.puts).toEqual([]);
  });

  it('enables maintenance with the STS caller as actor and a 2h expiry, and prints the new state', () => {
    const run = atmrDr(['enable', '--mode', 'maintenance', '--reason', 'OSRM down', '--expires', '2h', '--yes'], { version: 2 });

    expect(run.status).toBe(0);
    expect(run.puts).toHaveLength(1);
    expect(run.puts[0].input.Name).toBe(PARAMETER);
    const written = JSON.parse(run.puts[0].input.Value as string);
    expect(written).toMatchObject({ mode: 'maintenance', reason: 'OSRM down', actor: CALLER });
    expect(Date.parse(written.expiresAt) - Date.parse(written.updatedAt)).toBe(2 * 3600 * 1000);
    expect(run.stdout).toMatch(/^killswitch \/atmr\/test\/killswitch v3: maintenance \(by arn:aws:sts::111111111111:assumed-role\/atmr-oncall\/alice/);
    expect(run.stdout).toMatch(/\n {2}was v2: normal \(by atmr-dr deploy at 2026-01-01 00:00 UTC\): initial\n$/);
  });

  it('enable without --expires says there is no expiry and the disable command of the same environment; a reason naming a duration gets one warning suggesting --expires', () => {
    // Act: the operator meant two hours; and a reason that names no duration.
    const meant = atmrDr(['enable', '--mode', 'maintenance', '--reason', 'pendant 2h', '--yes'], { version: 2 });
    const plain = atmrDr(['--env', 'example', 'enable', '--mode', 'degraded', '--reason', 'OSRM down', '--yes'], { version: 2 });
    const named = atmrDr(['--parameter', PARAMETER, 'enable', '--mode', 'degraded', '--reason', 'migration 30 min', '--yes'], { version: 2 }, {});

    // Assert: written as asked (not refused), with no expiry, and said so.
    expect([meant.status, plain.status, named.status]).toEqual([0, 0, 0]);
    expect([meant.puts, plain.puts, named.puts].map((puts) => JSON.parse(puts[0].input.Value as string).expiresAt)).toEqual([null, null, null]);
    expect(meant.stderr).toBe('atmr-dr: warning: --reason "pendant 2h" names a duration but --expires is not given, so it sets no expiry: to end it by itself, add --expires 2h\n');
    expect(named.stderr).toBe('atmr-dr: warning: --reason "migration 30 min" names a duration but --expires is not given, so it sets no expiry: to end it by itself, add --expires 30m\n');
    expect(plain.stderr).toBe('');
    // The parameter came from KILLSWITCH_PARAMETER or --env: the environment's disable (cdk.json's env is example); from --parameter: that parameter's.
    expect(meant.stdout).toMatch(/\n {2}no expiry: stays on until `npx --no atmr-dr killswitch disable --env example`\n$/);
    expect(plain.stdout).toMatch(/\n {2}no expiry: stays on until `npx --no atmr-dr killswitch disable --env example`\n$/);
    expect(named.stdout).toMatch(new RegExp(`\\n {2}no expiry: stays on until \`npx --no atmr-dr killswitch disable --parameter ${PARAMETER}\`\\n$`));
  });

  it('enable with --expires, or disable, says nothing of an expiry nor warns, whatever the reason says', () => {
    const expiring = atmrDr(['enable', '--mode', 'maintenance', '--reason', 'pendant 2h', '--expires', '2h', '--yes'], { version: 2 });
    const disabled = atmrDr(['disable', '--reason', 'back after 2h', '--yes'], { raw: JSON.stringify(value({ mode: 'maintenance', reason: 'x' })), version: 2 });

    expect([expiring.status, expiring.stderr, disabled.status, disabled.stderr]).toEqual([0, '', 0, '']);
    expect(expiring.stdout + disabled.stdout).not.toContain('no expiry');
  });

  it('disable when already normal writes nothing, says since when and by whom, exit 0; --json says unchanged', () => {
    const run = atmrDr(['disable', '--reason', 'OSRM back', '--yes'], { version: 4 });
    const json = atmrDr(['disable', '--yes', '--json'], { version: 4 });

    expect([run.status, run.stdout, run.stderr]).toEqual([0, 'killswitch already normal (since 2026-01-01 00:00 UTC, by atmr-dr deploy): nothing changed\n', '']);
    expect([json.status, JSON.parse(json.stdout)]).toEqual([0, { parameterName: PARAMETER, version: 4, value: value(), conflict: null, unchanged: true }]);
    expect([...run.puts, ...json.puts]).toEqual([]);
  });

  it('asks nothing for a request that changes nothing, even without --yes or a terminal: says "already", exit 0, nothing written', () => {
    const maintenance = { raw: JSON.stringify(value({ mode: 'maintenance', reason: 'OSRM down' })) };

    const disable = atmrDr(['disable', '--reason', 'OSRM back']);
    const enable = atmrDr(['enable', '--mode', 'maintenance', '--reason', 'OSRM down'], maintenance);

    expect([disable.status, disable.stdout, disable.stderr]).toEqual([0, 'killswitch already normal (since 2026-01-01 00:00 UTC, by atmr-dr deploy): nothing changed\n', '']);
    expect([enable.status, enable.stdout, enable.stderr]).toEqual([0, 'killswitch already maintenance (since 2026-01-01 00:00 UTC, by atmr-dr deploy): nothing changed\n', '']);
    expect([...disable.puts, ...enable.puts]).toEqual([]);
  });

  it('at a terminal, disable when already normal says so without asking, exit 0', async () => {
    const run = await atmrDrAtTerminal(['disable', '--reason', 'OSRM back'], 'y');

    expect(run.output).not.toContain('[y/N]');
    expect(run.output).toContain('killswitch already normal (since 2026-01-01 00:00 UTC, by atmr-dr deploy): nothing changed');
    expect(run.status).toBe(0);
    expect(run.puts).toEqual([]);
  });

  it('enable without --expires of the mode on keeps its expiry; --expires never removes it', () => {
    const expiresAt = new Date(Date.now() + 30 * 60_000).toISOString();
    const raw = JSON.stringify(value({ mode: 'maintenance', reason: 'OSRM down', expiresAt }));

    const kept = atmrDr(['enable', '--mode', 'maintenance', '--reason', 'OSRM down, provider paged', '--yes'], { raw });
    const removed = atmrDr(['enable', '--mode', 'maintenance', '--reason', 'OSRM down', '--expires', 'never', '--yes'], { raw });

    expect([kept.status, JSON.parse(kept.puts[0].input.Value as string)]).toEqual([0, expect.objectContaining({ reason: 'OSRM down, provider paged', expiresAt })]);
    expect(kept.stdout).toContain(`, until ${utcMinute(Date.parse(expiresAt))}): OSRM down, provider paged\n`);
    expect([removed.status, JSON.parse(removed.puts[0].input.Value as string)]).toEqual([0, expect.objectContaining({ reason: 'OSRM down', expiresAt: null })]);
  });

  it('falls back to $USER as actor when there are no usable AWS credentials', () => {
    const run = atmrDr(['disable', '--reason', 'OSRM back', '--yes'], { raw: JSON.stringify(value({ mode: 'maintenance' })), stsFails: true });

    expect(run.status).toBe(0);
    expect(JSON.parse(run.puts[0].input.Value as string)).toMatchObject({ mode: 'normal', reason: 'OSRM back', actor: 'alice-local', expiresAt: null });
  });

  it('with STS unreachable and USER unset, records unknown-operator and says so in one stderr line, naming why and how to give a name', () => {
    // Act
    const run = atmrDr(['disable', '--reason', 'OSRM back', '--yes'], { raw: JSON.stringify(value({ mode: 'maintenance' })), stsFails: true }, { KILLSWITCH_PARAMETER: PARAMETER, USER: '' });

    // Assert
    expect(run.status).toBe(0);
    expect(JSON.parse(run.puts[0].input.Value as string)).toMatchObject({ mode: 'normal', actor: 'unknown-operator' });
    expect(run.stderr).toBe(
      'atmr-dr: your identity could not be read (STS: Error: Could not load credentials from any providers; ATMR_OPERATOR, USER and LOGNAME unset): changes this command makes are recorded as by unknown-operator; name yourself with ATMR_OPERATOR=NAME (killswitch and incident also take --by NAME)\n',
    );
  });

  it('with STS unreachable, records the operator ATMR_OPERATOR or --by names, without a warning', () => {
    // Act
    const maintenance = { raw: JSON.stringify(value({ mode: 'maintenance' })), stsFails: true };
    const named = atmrDr(['disable', '--reason', 'OSRM back', '--yes'], maintenance, { KILLSWITCH_PARAMETER: PARAMETER, USER: '', ATMR_OPERATOR: 'Jean Dupont' });
    const by = atmrDr(['enable', '--mode', 'maintenance', '--reason', 'OSRM down', '--by', 'Marie', '--yes'], { stsFails: true }, { KILLSWITCH_PARAMETER: PARAMETER, USER: '' });

    // Assert
    expect([named, by].map((run) => [run.status, JSON.parse(run.puts[0].input.Value as string).actor, run.stderr])).toEqual([
      [0, 'Jean Dupont', ''],
      [0, 'Marie', ''],
    ]);
  });

  it('with STS answering, records the caller ARN whatever --by or ATMR_OPERATOR say, the --by name beside it', () => {
    // Act: a name typed on the command line must not replace the identity AWS vouches for.
    const by = atmrDr(['enable', '--mode', 'maintenance', '--reason', 'OSRM down', '--by', 'Marie', '--yes'], {}, { KILLSWITCH_PARAMETER: PARAMETER, ATMR_OPERATOR: 'Jean Dupont' });
    const named = atmrDr(['enable', '--mode', 'maintenance', '--reason', 'OSRM down', '--yes'], {}, { KILLSWITCH_PARAMETER: PARAMETER, ATMR_OPERATOR: 'Jean Dupont' });

    // Assert
    expect([by, named].map((run) => [run.status, JSON.parse(run.puts[0].input.Value as string).actor, run.stderr])).toEqual([
      [0, `Marie (${CALLER})`, ''],
      [0, CALLER, ''],
    ]);
  });

  it('takes --parameter first, then KILLSWITCH_PARAMETER, then the config (cdk.json)', () => {
    const names = [
      atmrDr(['--parameter', '/other/killswitch', 'status']),
      atmrDr(['status']),
      atmrDr(['status'], {}, {}),
    ].map((run) => run.calls[0].input.Name);

    expect(names).toEqual(['/other/killswitch', PARAMETER, '/atmr/example/killswitch']);
  });

  it.each([
    ['refused (AccessDenied)', 'denied', 'CloudFormation refused: AccessDenied: User: arn:aws:sts::111111111111:assumed-role/dev/alice is not authorized to perform: cloudformation:DescribeStacks'],
    ['silent', 'silent', 'CloudFormation did not answer: TimeoutError: Connection timed out after 3000 ms'],
  ] as const)('CloudFormation %s: enable writes the parameter cdk.json names and says so in one stderr line, naming it and why', (_, cloudFormation, why) => {
    // Act: no --parameter nor KILLSWITCH_PARAMETER, so the stack's output is looked up first.
    const run = atmrDr(['enable', '--mode', 'maintenance', '--reason', 'OSRM down', '--yes'], { cloudFormation }, {});

    // Assert
    expect(run.status).toBe(0);
    expect(run.puts.map((put) => put.input.Name)).toEqual(['/atmr/example/killswitch']);
    expect(run.stderr).toBe(`atmr-dr: the killswitch parameter /atmr/example/killswitch comes from cdk.json (environment example), not from the deployed stack's output: ${why}\n`);
  });

  it('the stack not deployed: enable writes the parameter cdk.json names without a notice (nothing deployed to differ from)', () => {
    const run = atmrDr(['enable', '--mode', 'maintenance', '--reason', 'OSRM down', '--yes'], {}, {});

    expect(run.status).toBe(0);
    expect(run.puts.map((put) => put.input.Name)).toEqual(['/atmr/example/killswitch']);
    expect(run.stderr).toBe('');
  });

  it('prints status as JSON with the version, and writes nothing', () => {
    const run = atmrDr(['status', '--json'], { raw: JSON.stringify(value({ mode: 'degraded', reason: 'peak' })), version: 9 });

    expect(run.status).toBe(0);
    expect(JSON.parse(run.stdout)).toEqual({ parameterName: PARAMETER, version: 9, mode: 'degraded', expired: false, value: value({ mode: 'degraded', reason: 'peak' }) });
    expect(run.puts).toEqual([]);
  });

  it('status --json gives the mode in effect and whether the stored one expired, as the text says "expired at"; a malformed value is in effect normal', () => {
    const stored = value({ mode: 'maintenance', reason: 'OSRM down', expiresAt: '2026-01-01T01:00:00.000Z' });
    const expired = atmrDr(['status', '--json'], { raw: JSON.stringify(stored), version: 5 });
    const malformed = atmrDr(['status', '--json'], { raw: 'maintenance', version: 6 });

    expect([expired.status, JSON.parse(expired.stdout)]).toEqual([0, { parameterName: PARAMETER, version: 5, mode: 'normal', expired: true, value: stored }]);
    expect([malformed.status, JSON.parse(malformed.stdout)]).toEqual([0, { parameterName: PARAMETER, version: 6, mode: 'normal', expired: false, value: null, invalid: expect.any(String), raw: 'maintenance' }]);
  });

  it('status of a mode set without --expires says it stays on until the disable of the same environment or parameter; with an expiry, or normal, it says nothing more', () => {
    const stays = atmrDr(['status'], { raw: JSON.stringify(value({ mode: 'degraded', reason: 'peak', actor: 'alice' })), version: 9 });
    const named = atmrDr(['--parameter', PARAMETER, 'status'], { raw: JSON.stringify(value({ mode: 'degraded', reason: 'peak', actor: 'alice' })), version: 9 }, {});
    const expiring = atmrDr(['status'], { raw: JSON.stringify(value({ mode: 'maintenance', reason: 'OSRM down', expiresAt: '2999-01-01T00:00:00.000Z' })), version: 4 });
    const normal = atmrDr(['status'], { version: 2 });

    expect([stays.status, stays.stdout]).toEqual([
      0,
      `killswitch ${PARAMETER} v9: degraded (by alice at 2026-01-01 00:00 UTC): peak\n  stays degraded until \`npx --no atmr-dr killswitch disable --env example\` (no --expires)\n`,
    ]);
    expect([named.status, named.stdout.split('\n')[1]]).toEqual([0, `  stays degraded until \`npx --no atmr-dr killswitch disable --parameter ${PARAMETER}\` (no --expires)`]);
    expect([expiring.status, expiring.stdout]).toEqual([0, `killswitch ${PARAMETER} v4: maintenance (by atmr-dr deploy at 2026-01-01 00:00 UTC, until 2999-01-01 00:00 UTC): OSRM down\n`]);
    expect([normal.status, normal.stdout]).toEqual([0, `killswitch ${PARAMETER} v2: normal (by atmr-dr deploy at 2026-01-01 00:00 UTC): initial\n`]);
    expect([stays, named, expiring, normal].flatMap((run) => run.puts)).toEqual([]);
  });

  it('says a stored value is malformed instead of failing', () => {
    const run = atmrDr(['status'], { raw: '{"mode":' });

    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(/MALFORMED value \(value is not JSON\), readers treat it as normal/);
  });

  it('reports a plain success when the SDK retried its PutParameter and SSM kept both attempts as versions', () => {
    const run = atmrDr(['enable', '--mode', 'maintenance', '--reason', 'OSRM down', '--yes'], { version: 5, retriedPut: true });

    expect(run.status).toBe(0);
    expect(run.stderr).toBe('');
    expect(run.stdout).toMatch(/killswitch \/atmr\/test\/killswitch v7: maintenance/);
  });

  describe.each([
    ['ahead of', 10 * 60_000],
    ['behind', -10 * 60_000],
  ])("on a laptop whose clock is 10 min %s AWS's", (_direction, shiftMs) => {
    /** The CLI on that laptop; SSM answers on the real clock, as AWS does. */
    const onSkewedLaptop = (args: string[], scenario: Scenario = {}) =>
      atmrDr(args, { ...scenario, clockShiftMs: shiftMs }, { KILLSWITCH_PARAMETER: PARAMETER, ...clockShiftEnv(fs.mkdtempSync(path.join(os.tmpdir(), 'ks-clock-')), shiftMs) });

    it('enable --expires 5m expires 5 min from now by AWS\'s clock (not already past, not 20 min off), and says "until", not "expired"', () => {
      const before = Date.now();
      const run = onSkewedLaptop(['enable', '--mode', 'maintenance', '--reason', 'OSRM down', '--expires', '5m', '--yes']);
      const after = Date.now();

      expect(run.status).toBe(0);
      const written = JSON.parse(run.puts[0].input.Value as string);
      expect(Date.parse(written.updatedAt)).toBeGreaterThanOrEqual(before);
      expect(Date.parse(written.updatedAt)).toBeLessThanOrEqual(after);
      expect(Date.parse(written.expiresAt) - Date.parse(written.updatedAt)).toBe(5 * 60_000);
      expect(run.stdout).toMatch(new RegExp(`^killswitch /atmr/test/killswitch v2: maintenance \\(by ${CALLER} at [^)]*, until ${utcMinute(Date.parse(written.expiresAt))}\\): OSRM down\n`));
    });

    it('status calls a value expiring in 5 min by AWS\'s clock in effect, as the readers do', () => {
      const expiresAt = new Date(Date.now() + 5 * 60_000).toISOString();
      const run = onSkewedLaptop(['status'], { raw: JSON.stringify(value({ mode: 'maintenance', reason: 'OSRM down', expiresAt })) });

      expect(run.status).toBe(0);
      expect(run.stdout).toBe(`killswitch ${PARAMETER} v1: maintenance (by atmr-dr deploy at 2026-01-01 00:00 UTC, until ${utcMinute(Date.parse(expiresAt))}): OSRM down\n`);
    });
  });

  it('exits 3 with a one-line conflict when another write landed right after ours', () => {
    const run = atmrDr(['enable', '--mode', 'maintenance', '--reason', 'OSRM down', '--yes'], {
      version: 5,
      writeAfterOurs: JSON.stringify(value({ mode: 'degraded', actor: 'bob', reason: 'peak' })),
    });

    expect(run.status).toBe(3);
    expect(run.stderr).toMatch(/^atmr-dr: killswitch: conflict: another write \(v7 by bob: degraded, "peak"\) landed right after yours \(v6\)/);
    expect(run.stderr.trim().split('\n')).toHaveLength(1);
  });
});
