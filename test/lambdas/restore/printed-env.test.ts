import { checkBackupRef, manifestKeyIn } from '../../../lambdas/restore/catalog';
import { badBackupFix } from '../../../lambdas/restore/download';
import { OPERATOR_CLI, operatorCommand } from '../../../lambdas/shared/constants';
import { refusals, words } from '../../cli/parse-refusals';

// A command the restore's lines print is pasted from a page or a terminal of one environment:
// without --env it acts on cdk.json's default environment, so it names the one it came from.

/** The commands `${OPERATOR_CLI} ...` in a line, up to the parenthesis or the end. */
function commandsIn(line: string): string[] {
  return [...line.matchAll(/npx --no atmr-dr ([^()"]+?)(?=\)|"|$)/g)].map((m) => m[1].trim());
}

describe('the commands lambdas/restore prints name the environment', () => {
  it('with the environment known, each command ends with --env <name> and parses with the CLI', () => {
    const lines = [
      (() => {
        try {
          checkBackupRef('foo', undefined, 'staging');
        } catch (error) {
          return (error as Error).message;
        }
        return '';
      })(),
      (() => {
        try {
          manifestKeyIn('s3://other/daily/db_backup_20260101_000000.manifest.json', 'mine', 'staging');
        } catch (error) {
          return (error as Error).message;
        }
        return '';
      })(),
      badBackupFix(undefined, 'staging'),
      badBackupFix({ format: 'plain' }, 'staging'),
    ];
    const commands = lines.flatMap(commandsIn);

    expect(commands).toEqual(['backups list --env staging', 'backups list --env staging', 'backups list --env staging', 'backups list --env staging']);
    expect(refusals(commands.map(words))).toEqual(commands.map(() => null));
  });

  it('without it (a caller that names none), the command has no --env, as before', () => {
    expect(operatorCommand(undefined, 'backups list')).toBe(`${OPERATOR_CLI} backups list`);
    expect(operatorCommand('prod', 'backup --tier daily --database atmr')).toBe(`${OPERATOR_CLI} backup --tier daily --database atmr --env prod`);
  });
});
