import type { Logger } from '@aws-lambda-powertools/logger';
import { MetricUnit, type Metrics } from '@aws-lambda-powertools/metrics';
import { z } from 'zod';
import { DEFAULT_RETRY_AFTER_SECONDS, KillswitchReader, type KillswitchState, maintenanceResponse, retryAfterSeconds } from './reader';
import type { KillswitchMode } from './value';

/**
 * Counted for every 503 answered while the killswitch is not in maintenance (a stale rule, or a
 * reader that failed open) once the rule's removal grace has passed: an event alarm (it pages and
 * escalates) watches it, since each one is a user refused for nothing.
 */
export const ANSWERED_OUTSIDE_MAINTENANCE_METRIC = 'MaintenanceAnsweredOutsideMaintenance';

/**
 * How long the rule may outlive maintenance before an answer counts (seconds). Every exit from
 * maintenance leaves the rule for a while by design: this function sees the change within its 5 s
 * cache (and an `expiresAt` at once), while the ALB follows only after the expiry schedule ->
 * reverter -> SSM change event -> enforcer chain, or EventBridge -> enforcer for a `disable`
 * (seconds, tens of seconds on a slow day); and the Retry-After sends clients back exactly at the
 * expiry. Counting those answers paged the on-call at every expiry and every `disable` under traffic.
 * Two minutes cover that chain with margin; the construct lowers it to the reconcile interval when
 * that is shorter, so a rule the reconcile should have removed always pages.
 */
export const MAINTENANCE_RULE_REMOVAL_GRACE_SECONDS = 120;

/**
 * The request an ALB hands to a Lambda target. With the target group attribute
 * `lambda.multi_value_headers.enabled`, headers come as `multiValueHeaders` and the answer must use
 * the same shape (ALB ignores `headers` then).
 */
export const AlbRequestSchema = z.looseObject({
  requestContext: z.looseObject({ elb: z.looseObject({ targetGroupArn: z.string() }) }),
  httpMethod: z.string(),
  path: z.string(),
  headers: z.record(z.string(), z.string()).optional(),
  multiValueHeaders: z.record(z.string(), z.array(z.string())).optional(),
});
export type AlbRequest = z.infer<typeof AlbRequestSchema>;

/** What an ALB expects back from a Lambda target. */
export type AlbResponse = {
  readonly statusCode: 503;
  readonly statusDescription: string;
  readonly isBase64Encoded: false;
  readonly body: string;
} & ({ readonly headers: Record<string, string> } | { readonly multiValueHeaders: Record<string, string[]> });

export interface MaintenanceResponderOptions {
  readonly reader: Pick<KillswitchReader, 'read'>;
  /** Retry-After (seconds) when the value has no expiry. @default 120 */
  readonly defaultRetryAfterSeconds?: number;
  /** Answers within this many seconds of the value leaving maintenance are not counted. @default MAINTENANCE_RULE_REMOVAL_GRACE_SECONDS */
  readonly removalGraceSeconds?: number;
  readonly logger?: Pick<Logger, 'warn' | 'error'>;
  readonly metrics?: Pick<Metrics, 'addMetric'>;
  readonly clock?: () => number;
}

/**
 * Answers the requests the killswitch's ALB rule forwards (everything but /health and /ready, in
 * maintenance): always 503 with the runbook body and a Retry-After, which an ALB fixed response
 * cannot carry.
 *
 * It never answers anything else. The rule exists only while the enforcer saw `maintenance`; if this
 * function reads another mode, either the value has just changed and the enforcer deletes the rule
 * within seconds (EventBridge delivery), or the reader failed open (SSM unreachable before any read,
 * or a malformed value). Passing the request on is impossible (a Lambda target is not a proxy), and a
 * 200 or 404 would be a lie; a short Retry-After would invite a retry storm exactly when the reading
 * may be wrong. So: the same 503 with the default Retry-After, and one warning per mode change; the
 * answer is counted (the alarm's metric) only once the removal grace has passed.
 */
export class MaintenanceResponder {
  private readonly defaultRetryAfterSeconds: number;
  private readonly removalGraceMs: number;
  private readonly clock: () => number;
  /** Last mode we warned about, so a stale rule logs once, not once per request. */
  private warnedMode: KillswitchMode | undefined;
  /** Since when the value has been out of maintenance, as this execution knows it (ms; reset by a maintenance read). */
  private outsideSince: number | undefined;

  constructor(private readonly options: MaintenanceResponderOptions) {
    this.defaultRetryAfterSeconds = options.defaultRetryAfterSeconds ?? DEFAULT_RETRY_AFTER_SECONDS;
    this.removalGraceMs = (options.removalGraceSeconds ?? MAINTENANCE_RULE_REMOVAL_GRACE_SECONDS) * 1000;
    // Looked up at each call, not captured: a replaced global Date (tests, polyfills) is honoured.
    this.clock = options.clock ?? (() => Date.now());
  }

  async answer(event: unknown): Promise<AlbResponse> {
    const request = AlbRequestSchema.safeParse(event);
    if (!request.success) {
      // Only the ALB may invoke this function: an unknown shape is an ALB format change, and the
      // client still deserves the maintenance answer rather than a 502.
      this.options.logger?.error('maintenance responder: not an ALB request; answering 503 anyway', { issue: request.error.issues[0]?.message });
    }
    const state = await this.options.reader.read();
    const now = this.clock();
    let retryAfter = this.defaultRetryAfterSeconds;
    if (state.maintenance) {
      this.warnedMode = undefined;
      this.outsideSince = undefined;
      retryAfter = retryAfterSeconds(state, now, this.defaultRetryAfterSeconds);
    } else {
      const left = this.leftMaintenanceAt(state);
      // A failed-open read counts at once, without becoming the start of a later value's grace.
      const since = left === undefined ? Number.NEGATIVE_INFINITY : (this.outsideSince = Math.min(this.outsideSince ?? now, left));
      if (now - since > this.removalGraceMs) {
        this.options.metrics?.addMetric(ANSWERED_OUTSIDE_MAINTENANCE_METRIC, MetricUnit.Count, 1);
      }
    }
    if (!state.maintenance && this.warnedMode !== state.mode) {
      this.warnedMode = state.mode;
      this.options.logger?.warn('maintenance rule still in place while the killswitch is not in maintenance: answering 503 until the enforcer removes it', {
        mode: state.mode,
        source: state.source,
      });
    }
    const { statusCode, headers, body } = maintenanceResponse(state, now);
    const answerHeaders = { ...headers, 'Retry-After': String(retryAfter) };
    const common = { statusCode, statusDescription: '503 Service Unavailable', isBase64Encoded: false as const, body };
    if (request.success && request.data.multiValueHeaders !== undefined) {
      return { ...common, multiValueHeaders: Object.fromEntries(Object.entries(answerHeaders).map(([name, v]) => [name, [v]])) };
    }
    return { ...common, headers: answerHeaders };
  }

  /**
   * When the value read left maintenance (ms). The caller keeps the earliest of this and of its
   * first read out of maintenance, so neither the reverter's write after an expiry nor a writer's
   * clock ahead pushes the grace back. Undefined when the reader failed open (malformed value,
   * nothing read yet): there is no time to measure from, and such an answer counts at once.
   *
   * A value written out of maintenance (`disable`, an enable of `degraded`, expired or not) left it
   * when SSM applied the write (`lastModified`, SSM's clock), which is also when the change event
   * that sends the enforcer to remove the rule leaves. Its `updatedAt` is not used, not even as
   * max(updatedAt, lastModified): it is the writer's clock (an operator's laptop), so a clock behind
   * ended the grace before it began and paged for the rule still being removed, and a clock ahead
   * would only delay the page. `updatedAt` stays as the fallback for a read without `lastModified`
   * (SSM always gives it).
   *
   * A maintenance value that expired left it at its `expiresAt`, the time the reader, the expiry
   * schedule and so the reverter all act on; but the writer computed it as its own now + duration,
   * so a clock behind by more than the duration writes a value already expired: it left maintenance
   * when it was written (the rule of the maintenance before it stood until then), hence the later of
   * the two.
   */
  private leftMaintenanceAt(state: KillswitchState): number | undefined {
    if (state.source === 'invalid' || state.source === 'default') return undefined;
    const written = state.lastModified ?? Date.parse(state.value.updatedAt);
    if (state.source === 'expired' && state.value.mode === 'maintenance' && state.value.expiresAt) {
      return Math.max(Date.parse(state.value.expiresAt), written);
    }
    return written;
  }
}
