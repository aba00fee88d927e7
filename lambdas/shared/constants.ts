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
