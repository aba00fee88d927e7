/**
 * Root of atmr-dr's CloudWatch metrics namespaces. Never a namespace by itself: each environment
 * publishes in its own (`metricsNamespace`), so that two environments in one account and region
 * never mix their datapoints in one alarm.
 */
const METRICS_NAMESPACE_ROOT = 'AtmrDr';

/**
 * The CloudWatch metrics namespace of one environment, `AtmrDr/<env>`: every function, task, log
 * metric filter and CLI command of the environment publishes there, and its alarms and dashboard
 * read there. The only place the namespace is derived. Functions and tasks get it in
 * POWERTOOLS_METRICS_NAMESPACE (set by the constructs); the CLI from its --env.
 */
export function metricsNamespace(environmentName: string): string {
  return `${METRICS_NAMESPACE_ROOT}/${environmentName}`;
}

/** EventBridge `source` of the events atmr-dr emits (killswitch changes, rollbacks, incidents). */
export const EVENT_SOURCE = 'atmr-dr';

/**
 * The prefix of every atmr-dr command that a page, an alarm description or a hint tells a human to
 * run. atmr-dr is not published on the npm registry and its name there is free: a bare `npx
 * atmr-dr` run outside the checkout offers to install whatever package someone publishes under it,
 * and a tired on-call answering yes runs it with production credentials. `--no` makes npx never
 * install a missing package: outside the checkout the command fails, inside it runs the checkout's
 * own bin. Every such text uses this constant (a test checks it), so no new one can forget it.
 */
export const OPERATOR_CLI = 'npx --no atmr-dr';

/**
 * `${OPERATOR_CLI} <args>`, then `--env <environmentName>` when the environment is known: a command
 * pasted from a page or a line of one environment acts on that environment, not on cdk.json's
 * default one. Its call sites are what the check of printed commands reads (each call's `args`,
 * `--env` appended), so the command is assembled here without a template of its own.
 */
export function operatorCommand(environmentName: string | undefined, args: string): string {
  return [OPERATOR_CLI, args, ...(environmentName ? ['--env', environmentName] : [])].join(' ');
}
