import type { Logger } from '@aws-lambda-powertools/logger';
import { MetricUnit, type Metrics } from '@aws-lambda-powertools/metrics';
import { SSMProvider } from '@aws-lambda-powertools/parameters/ssm';
import type { MiddlewareObj } from '@middy/core';
import { INITIAL_VALUE, isExpired, KillswitchMode, KillswitchValue, MAINTENANCE_BODY, MAINTENANCE_EXEMPT_PATHS, parseKillswitchValue } from './value';

/** Cache age of the reader (5 s, as the Flask API's reader): at most 60 / 5 = 12 SSM calls per process per minute. */
export const DEFAULT_MAX_AGE_SECONDS = 5;
/** Retry-After when the value has no expiry (seconds). */
export const DEFAULT_RETRY_AFTER_SECONDS = 120;

export interface KillswitchState {
  readonly mode: KillswitchMode;
  readonly degraded: boolean;
  readonly maintenance: boolean;
  readonly value: KillswitchValue;
  /** `ssm`: a valid value as read; `last-known`: SSM failed, the last good value is kept;
   *  `invalid`: the value is malformed and counts as normal; `expired`: its `expiresAt` has passed
   *  and it counts as normal (whatever its mode says); `default`: nothing read yet. */
  readonly source: 'ssm' | 'last-known' | 'invalid' | 'expired' | 'default';
}

export interface KillswitchReaderOptions {
  readonly parameterName: string;
  /** The Powertools provider (inject one built on a custom SSM client). @default new SSMProvider() */
  readonly provider?: Pick<SSMProvider, 'get'>;
  /** @default 5 */
  readonly maxAgeSeconds?: number;
  readonly logger?: Pick<Logger, 'error' | 'warn'>;
  readonly metrics?: Pick<Metrics, 'addMetric'>;
  readonly clock?: () => number;
}

const DEFAULT_STATE = toState(INITIAL_VALUE, 'default');

function toState(value: KillswitchValue, source: KillswitchState['source']): KillswitchState {
  return { mode: value.mode, degraded: value.mode === 'degraded', maintenance: value.mode === 'maintenance', value, source };
}

/**
 * Reads the killswitch through Powertools Parameters with a `maxAge` cache. Never throws: on SSM
 * errors or throttling it keeps the last known state (and waits one cache age before retrying, so
 * throttling is not amplified); a malformed value counts as normal, with an error log and a
 * `KillswitchInvalid` metric (once per distinct raw value).
 */
export class KillswitchReader {
  private readonly provider: Pick<SSMProvider, 'get'>;
  private readonly maxAgeSeconds: number;
  private readonly clock: () => number;
  private lastRaw: string | undefined;
  private lastState: KillswitchState = DEFAULT_STATE;
  private lastGood: KillswitchState | undefined;
  /** Until then, answer from memory without any call (the warm path). */
  private freshUntil = 0;
  /** One refresh at a time: concurrent requests at expiry share it (no burst of SSM calls). */
  private inflight: Promise<KillswitchState> | undefined;

  constructor(private readonly options: KillswitchReaderOptions) {
    this.provider = options.provider ?? new SSMProvider();
    this.maxAgeSeconds = options.maxAgeSeconds ?? DEFAULT_MAX_AGE_SECONDS;
    // Looked up at each call, not captured: a replaced global Date (tests, polyfills) is honoured.
    this.clock = options.clock ?? (() => Date.now());
  }

  read(): Promise<KillswitchState> | KillswitchState {
    if (this.clock() < this.freshUntil) return this.inEffect(this.lastState);
    this.inflight ??= this.refresh().finally(() => {
      this.inflight = undefined;
    });
    return this.inflight.then((state) => this.inEffect(state));
  }

  /** Decided at each read, not at parse time: a cached value can expire while it sits in memory. */
  private inEffect(state: KillswitchState): KillswitchState {
    if (state.mode === 'normal' || !isExpired(state.value, this.clock())) return state;
    return { mode: 'normal', degraded: false, maintenance: false, value: state.value, source: 'expired' };
  }

  private async refresh(): Promise<KillswitchState> {
    let raw: string | undefined;
    try {
      raw = (await this.provider.get(this.options.parameterName, { maxAge: this.maxAgeSeconds })) as string | undefined;
    } catch (error) {
      // Keep the last known value, and wait one cache age: retrying at once would feed a throttle.
      this.freshUntil = this.clock() + this.maxAgeSeconds * 1000;
      this.lastState = this.lastGood ? { ...this.lastGood, source: 'last-known' } : this.lastState;
      this.options.logger?.warn('killswitch read failed; keeping the last known value', {
        parameterName: this.options.parameterName,
        error: error instanceof Error ? (error.cause instanceof Error ? error.cause.name : error.message) : String(error),
        mode: this.lastState.mode,
      });
      return this.lastState;
    }
    // Strictly after Powertools' own expiry (set just before, and checked with `<`): otherwise a
    // refresh in that very millisecond gets the cached value back and doubles the staleness.
    this.freshUntil = this.clock() + this.maxAgeSeconds * 1000 + 1;
    if (raw === this.lastRaw && this.lastState.source !== 'last-known') return this.lastState;
    this.lastRaw = raw;
    const parsed = parseKillswitchValue(raw ?? '');
    if (parsed.ok) {
      this.lastGood = toState(parsed.value, 'ssm');
      this.lastState = this.lastGood;
    } else {
      this.options.logger?.error('killswitch value is malformed; treating it as normal', { parameterName: this.options.parameterName, reason: parsed.error });
      this.options.metrics?.addMetric('KillswitchInvalid', MetricUnit.Count, 1);
      this.lastState = { ...DEFAULT_STATE, source: 'invalid' };
    }
    return this.lastState;
  }
}

/** Seconds a client should wait: until the expiry when there is one, else the default. */
export function retryAfterSeconds(state: KillswitchState, now: number = Date.now(), fallback = DEFAULT_RETRY_AFTER_SECONDS): number {
  if (!state.value.expiresAt) return fallback;
  return Math.max(1, Math.ceil((Date.parse(state.value.expiresAt) - now) / 1000));
}

export interface MaintenanceResponse {
  readonly statusCode: 503;
  readonly headers: Record<string, string>;
  readonly body: string;
}

export function maintenanceResponse(state: KillswitchState, now: number = Date.now()): MaintenanceResponse {
  return {
    statusCode: 503,
    headers: { 'Content-Type': 'application/json; charset=utf-8', 'Retry-After': String(retryAfterSeconds(state, now)), 'Cache-Control': 'no-store' },
    body: MAINTENANCE_BODY,
  };
}

export function isExemptPath(path: string | undefined): boolean {
  if (!path) return false;
  const clean = path.split('?')[0].replace(/\/+$/, '') || '/';
  return MAINTENANCE_EXEMPT_PATHS.includes(clean);
}

/** Path of an API Gateway (REST or HTTP API), ALB or Function URL event. */
export function eventPath(event: unknown): string | undefined {
  const e = event as { rawPath?: string; path?: string; requestContext?: { http?: { path?: string } } } | null;
  return e?.rawPath ?? e?.requestContext?.http?.path ?? e?.path;
}

/**
 * The plain function: what a request should get. `respond` is set in maintenance (except on
 * /health and /ready); otherwise the handler runs, with `state.degraded` to shed optional work.
 */
export async function checkKillswitch(
  reader: KillswitchReader,
  path: string | undefined,
): Promise<{ readonly state: KillswitchState; readonly respond?: MaintenanceResponse }> {
  const state = await reader.read();
  if (state.maintenance && !isExemptPath(path)) return { state, respond: maintenanceResponse(state) };
  return { state };
}

/** Where the middleware puts the state for the handler: `context.killswitch`. */
export interface KillswitchContext {
  killswitch?: KillswitchState;
}

/** middy middleware: 503 in maintenance (except /health and /ready), `context.killswitch` otherwise. */
export function killswitchMiddleware(reader: KillswitchReader): MiddlewareObj<unknown, unknown, Error, KillswitchContext> {
  return {
    before: async (request) => {
      const { state, respond } = await checkKillswitch(reader, eventPath(request.event));
      request.context.killswitch = state;
      if (respond) return respond;
      return undefined;
    },
  };
}
