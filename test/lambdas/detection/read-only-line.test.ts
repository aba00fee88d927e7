import { databaseReadOnlyLine } from '../../../lambdas/detection/probe';
import { OPERATOR_CLI } from '../../../lambdas/shared/constants';
import { refusals, words } from '../../cli/parse-refusals';

// The probe's line for a read-only database names the runbook's first check ("DB Read-Only": the
// database's state) as the command that makes it, in the environment probed when it is known.

describe('the read-only database line', () => {
  it('names db read-write with the environment probed, a command the CLI parses', () => {
    const line = databaseReadOnlyLine('staging');
    const command = /"([^"]+)"/.exec(line)?.[1] ?? '';

    expect(line).toMatch(/^database is read-only \(the application's writes are refused\): check why first with "/);
    expect(command).toBe(`${OPERATOR_CLI} db read-write --env staging`);
    expect(refusals([words(command.slice(`${OPERATOR_CLI} `.length))])).toEqual([null]);
  });

  it('without a known environment, the command has no --env (cdk.json\'s default), and still parses', () => {
    const command = /"([^"]+)"/.exec(databaseReadOnlyLine(undefined))?.[1] ?? '';

    expect(command).toBe(`${OPERATOR_CLI} db read-write`);
    expect(refusals([words(command.slice(`${OPERATOR_CLI} `.length))])).toEqual([null]);
  });
});
