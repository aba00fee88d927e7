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
