import { MetricUnit, type Metrics } from '@aws-lambda-powertools/metrics';
import { nowOf } from '../shared/clock';
import { IngestDeps, restartIfStopped } from './ingest';
import { getIncident, openIncidentIds } from './store';

/** Powertools `service` of the sweep: the dimension its metric carries (and its alarm names). */
export const SWEEP_SERVICE = 'escalation-sweep';

/**
 * Escalation runs the sweep restarted, published once per complete sweep (0 included): its Sum is
 * the restarts, its SampleCount the sweeps that read every open incident (Escalation-SweepSilent).
 */
export const RUNS_RESTARTED_METRIC = 'EscalationRunsRestarted';

export interface SweepDeps extends Pick<IngestDeps, 'store' | 'sfn' | 'levelTimeoutsSeconds'> {
  /** Powertools' Metrics in the function. */
  readonly metrics: { addMetric(...args: Parameters<Metrics['addMetric']>): unknown };
}

export interface SweepResult {
  /** Open incidents read. */
  readonly open: number;
  /** The restarts: each incident and the execution started for it. */
  readonly restarted: readonly { readonly incidentId: string; readonly execution: string }[];
}

/**
 * Every open incident whose escalation run has stopped (failed, timed out, aborted) is started
 * again where it stopped, by the same code as an ALARM that joins it (ingest.ts `restartIfStopped`:
 * the conditional pointer write makes one restart of a sweep, a second sweep and a joining ALARM
 * racing each other). Without it, a state alarm that stays in ALARM sends no later ALARM, and its
 * incident stays open with nobody paged, for as long as the alarm stays in ALARM.
 *
 * Left alone: a resolved incident (its pointer is released just after its status is written), one
 * whose record is not written yet (its opening delivery writes it and starts its run), a running or
 * handed-over run, and an incident's first execution Step Functions does not list yet.
 *
 * An incident that cannot be read or restarted does not stop the others; the sweep then throws,
 * naming each, and publishes no metric: the invocation fails (Lambda's retries, then the escalation
 * dead-letter queue), and Escalation-SweepSilent pages once no sweep has completed for 15 minutes.
 */
export async function sweepStoppedRuns(deps: SweepDeps): Promise<SweepResult> {
  const ids = await openIncidentIds(deps.store);
  const at = nowOf(deps.store).toISOString();
  const restarted: { incidentId: string; execution: string }[] = [];
  const failures: string[] = [];
  for (const id of ids) {
    try {
      const incident = await getIncident(deps.store, id);
      if (!incident || incident.status === 'RESOLVED') continue;
      const execution = await restartIfStopped(deps, incident, at, 'sweep');
      if (execution) restarted.push({ incidentId: id, execution });
    } catch (error) {
      failures.push(`${id}: ${(error as { name?: string }).name ?? 'Error'}: ${(error as Error).message}`);
    }
  }
  if (failures.length > 0) {
    const done = restarted.length > 0 ? `; restarted meanwhile: ${restarted.map((r) => r.execution).join(', ')}` : '';
    throw new Error(`escalation sweep: ${failures.length} of ${ids.length} open incidents not checked (${failures.join('; ')})${done}`);
  }
  deps.metrics.addMetric(RUNS_RESTARTED_METRIC, MetricUnit.Count, restarted.length);
  return { open: ids.length, restarted };
}
