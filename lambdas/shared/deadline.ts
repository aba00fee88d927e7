import type { Context } from 'aws-lambda';

/**
 * How long before Lambda's hard timeout a run stops itself: it then ends on its own terms (uploads
 * aborted, staging and scratch databases dropped, failure reported) instead of being killed mid-step.
 */
export const DEADLINE_MARGIN_MS = 30_000;

/** Milliseconds from now until the run must stop (at least 1 s); undefined outside Lambda (no context). */
export function msUntilDeadline(context: Pick<Context, 'getRemainingTimeInMillis'> | undefined): number | undefined {
  const remainingMs = context?.getRemainingTimeInMillis?.();
  return remainingMs === undefined ? undefined : Math.max(1_000, remainingMs - DEADLINE_MARGIN_MS);
}
