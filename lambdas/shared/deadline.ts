import type { Context } from 'aws-lambda';

/**
 * How long before Lambda's hard timeout a run stops itself: it then ends on its own terms (uploads
 * aborted, staging and scratch databases dropped, failure reported) instead of being killed mid-step.
 */
export const DEADLINE_MARGIN_MS = 30_000;

/**
 * Milliseconds from now until the run must stop (at least 1 s); undefined outside Lambda (no context).
 * `marginMs`: a run whose last step does not stop when told (the restore's swap) needs more.
 */
export function msUntilDeadline(context: Pick<Context, 'getRemainingTimeInMillis'> | undefined, marginMs = DEADLINE_MARGIN_MS): number | undefined {
  const remainingMs = context?.getRemainingTimeInMillis?.();
  return remainingMs === undefined ? undefined : Math.max(1_000, remainingMs - marginMs);
}
