import { operatorCommand } from '../shared/constants';
import { OperatorError } from '../shared/errors';

// The downgrade's revision and the command that runs it, apart from the downgrade's own code: a
// command that only names the downgrade (db revision) loads neither its SDK calls nor the killswitch.

/** Alembic's symbolic targets, each refused by parseRevision: why, for its line. */
const SYMBOLIC_TARGETS: Record<string, string> = {
  base: 'Alembic\'s "base" undoes every migration, which drops the whole schema and its data',
  head: 'Alembic\'s "head" is the newest revision, a target to upgrade to, not to downgrade to',
  heads: 'Alembic\'s "heads" are the newest revisions, a target to upgrade to, not to downgrade to',
};

/**
 * An Alembic revision to downgrade TO: a revision id, never a relative step such as `-1`, which
 * would go one step further on every retry, nor a symbolic target (base, head, heads): `base` drops
 * the whole schema, and the two others are no downgrade.
 */
export function parseRevision(revision: string | null | undefined): string {
  const text = (revision ?? '').trim();
  if (!/^[A-Za-z0-9_]{1,64}$/.test(text)) {
    throw new OperatorError(
      `backout: "${revision ?? ''}" is not an Alembic revision: pass the revision to go back to (e.g. abc123def456), never a relative step like -1`,
      2,
    );
  }
  const symbolic = SYMBOLIC_TARGETS[text.toLowerCase()];
  if (symbolic) {
    throw new OperatorError(
      `backout: "${text}" is refused as a downgrade target: ${symbolic}; pass a revision id: the last known good's head, which the CLI's db revision and rollback status name (its alembic)`,
      2,
    );
  }
  return text;
}

/**
 * The exact command a human runs when atmr-dr does not downgrade by itself. It names the failing
 * release's task definition (the rollback's `from`, where the workflow's own downgrade runs too):
 * only that image holds the downgrade script, and after the rollback the service runs the last
 * known good, which does not know the newer revision, so "the current task definition" would be
 * the wrong one. `--env` names the environment: without it the CLI acts on cdk.json's default one.
 */
/** What a downgrade costs, said wherever one is advised: it is not the default answer to a schema ahead. */
export const DOWNGRADE_DROPS = 'drops what the migration added: see docs/backout.md, "When not to downgrade"';

export function downgradeCommandLine(revision: string, failingTaskDefinition: string, environmentName: string): string {
  return operatorCommand(environmentName, `rollback migration --to ${parseRevision(revision)} --task-definition ${failingTaskDefinition}`);
}

/**
 * The rollback of `service` a page or a line tells the on-call to run: to `to` (an ARN, or a
 * placeholder such as TASK_DEF_ARN), else to its last known good. Unquoted: each line quotes it as
 * it quotes its other commands. `--env` as in downgradeCommandLine.
 */
export function rollbackServiceCommand(service: string, environmentName: string, to?: string): string {
  const target = to === undefined ? '' : ` --to ${to}`;
  return operatorCommand(environmentName, `rollback service --service ${service}${target}`);
}

/** The status of `service`'s backout (what it runs, its last known good, its lock): unquoted, as rollbackServiceCommand. */
export function rollbackStatusCommand(service: string, environmentName: string): string {
  return operatorCommand(environmentName, `rollback status --service ${service}`);
}
