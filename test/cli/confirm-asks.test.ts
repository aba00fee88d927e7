import { asksAtSwap } from '../../bin/cli/confirm';

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
