import { Readable } from 'node:stream';
import { asksAtSwap, confirmer } from '../../bin/cli/confirm';

describe('asksAtSwap: whether a restore asks about the sessions found at the swap instead of refusing them', () => {
  const terminal = { isTTY: true };
  const pipe = { isTTY: false };
  const redirected = {};

  it('asks with an operator at the terminal: standard input and stderr both terminals, neither --yes nor --json', () => {
    expect(asksAtSwap({}, terminal, terminal)).toBe(true);
  });

  it.each([
    ['--yes', { yes: true }, terminal, terminal],
    ['--json', { json: true }, terminal, terminal],
    ['standard input piped', {}, pipe, terminal],
    ['standard input from a file (no isTTY)', {}, redirected, terminal],
    ['stderr piped (where the question would go)', {}, terminal, pipe],
  ])('does not ask with %s: the run is refused as today', (_what, opts, stdin, stderr) => {
    expect(asksAtSwap(opts, stdin, stderr)).toBe(false);
  });
});

describe('confirmer without a terminal and without --yes', () => {
  it('refuses in one line: the question ended by its question mark, why nobody is asked, then the fix (exit 2)', async () => {
    // A question ending on a name, as the cutover's does: glued to the refusal, it read "they stay on atmr-prod needs confirmation".
    const refusal = confirmer(undefined, Object.assign(Readable.from([]), { isTTY: false }))('recover cutover: put production on the copy; writes after 14:02 stay on atmr-prod');

    await expect(refusal).rejects.toMatchObject({
      message: 'recover cutover: put production on the copy; writes after 14:02 stay on atmr-prod? refused: standard input is not a terminal, so nobody can answer; pass --yes to confirm (nothing changed)',
      exitCode: 2,
    });
  });

  it('does not refuse with --yes: it answers for the operator', async () => {
    await expect(confirmer(true, Object.assign(Readable.from([]), { isTTY: false }))('killswitch enable: maintenance')).resolves.toBe(true);
  });
});
