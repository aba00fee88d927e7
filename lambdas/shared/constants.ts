/** CloudWatch metrics namespace of every atmr-dr function, and of the alarms that read them. */
export const METRICS_NAMESPACE = 'AtmrDr';

/** EventBridge `source` of the events atmr-dr emits (killswitch changes, rollbacks, incidents). */
export const EVENT_SOURCE = 'atmr-dr';
