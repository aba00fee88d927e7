import type { Logger } from '@aws-lambda-powertools/logger';
import { MetricUnit, type Metrics } from '@aws-lambda-powertools/metrics';
import { SSMClient } from '@aws-sdk/client-ssm';
import type { MiddlewareObj } from '@middy/core';
import { namedLine } from '../shared/errors';
import { REQUEST_PATH_SDK } from '../shared/sdk-retry';
import { KillswitchReading, readKillswitch } from './core';
import { INITIAL_VALUE, isExpired, KillswitchMode, KillswitchValue, MAINTENANCE_BODY, MAINTENANCE_EXEMPT_PATHS } from './value';

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
  /** When SSM applied the write that holds `value` (ms, SSM's clock: `LastModifiedDate`); null when nothing was read or SSM gave none. */
  readonly lastModified: number | null;
}

export interface KillswitchReaderOptions {
  readonly parameterName: string;
  /** The SSM client (inject a traced or test one, built with REQUEST_PATH_SDK). @default new SSMClient(REQUEST_PATH_SDK) */
  readonly ssm?: SSMClient;
  /** @default 5 */
  readonly maxAgeSeconds?: number;
  readonly logger?: Pick<Logger, 'error' | 'warn'>;
  readonly metrics?: Pick<Metrics, 'addMetric'>;
  readonly clock?: () => number;
}

const DEFAULT_STATE = toState(INITIAL_VALUE, 'default', null);

function toState(value: KillswitchValue, source: KillswitchState['source'], lastModified: number | null): KillswitchState {
  return { mode: value.mode, degraded: value.mode === 'degraded', maintenance: value.mode === 'maintenance', value, source, lastModified };
}

/**
 * Reads the killswitch with `readKillswitch` (the CLI's and the enforcer's read: one GetParameter,
 * its value, version and SSM's `LastModifiedDate`) behind a `maxAge` cache. Powertools Parameters
 * is not used: its `get` returns the value alone, and the maintenance responder needs SSM's time of
 * the write (the writer's `updatedAt` is the writer's clock). Never throws: on SSM
 * errors or throttling it keeps the last known state (and waits one cache age before retrying, so
 * throttling is not amplified); a malformed value counts as normal, with an error log and a
 * `KillswitchInvalid` metric (once per distinct raw value). A refresh under way never holds other
 * requests once the first one has ended: they answer from the last state meanwhile (an SSM that does
 * not answer must not queue the whole API behind one call); only the first read is waited for.
 */
export class KillswitchReader {
  private readonly ssm: SSMClient;
  private readonly maxAgeSeconds: number;
  private readonly clock: () => number;
  private lastRaw: string | undefined;
  private lastState: KillswitchState = DEFAULT_STATE;
  private lastGood: KillswitchState | undefined;
  /** Until then, answer from memory without any call (the warm path). */
  private freshUntil = 0;
  /** One refresh at a time: concurrent requests at expiry share it (no burst of SSM calls). */
  private inflight: Promise<KillswitchState> | undefined;
  /** A refresh has ended (with a value, or failing open): later refreshes hold no other request. */
  private settled = false;

  constructor(private readonly options: KillswitchReaderOptions) {
    this.ssm = options.ssm ?? new SSMClient(REQUEST_PATH_SDK);
    this.maxAgeSeconds = options.maxAgeSeconds ?? DEFAULT_MAX_AGE_SECONDS;
    // Looked up at each call, not captured: a replaced global Date (tests, polyfills) is honoured.
    this.clock = options.clock ?? (() => Date.now());
  }

  read(): Promise<KillswitchState> | KillswitchState {
    if (this.clock() < this.freshUntil) return this.inEffect(this.lastState);
    if (this.inflight && this.settled) return this.inEffect(this.lastState);
    this.inflight ??= this.refresh().finally(() => {
      this.inflight = undefined;
      this.settled = true;
    });
    return this.inflight.then((state) => this.inEffect(state));
  }

  /** The state in effect now, from memory, without any call to SSM (for /health and /ready). */
  peek(): KillswitchState {
    return this.inEffect(this.lastState);
  }

  /** Decided at each read, not at parse time: a cached value can expire while it sits in memory. */
  private inEffect(state: KillswitchState): KillswitchState {
    if (state.mode === 'normal' || !isExpired(state.value, this.clock())) return state;
    return { ...state, mode: 'normal', degraded: false, maintenance: false, source: 'expired' };
  }

  private async refresh(): Promise<KillswitchState> {
    let reading: KillswitchReading;
    try {
      reading = await readKillswitch(this.ssm, this.options.parameterName);
    } catch (error) {
      // Keep the last known value, and wait one cache age: retrying at once would feed a throttle.
      this.freshUntil = this.clock() + this.maxAgeSeconds * 1000;
      this.lastState = this.lastGood ? { ...this.lastGood, source: 'last-known' } : this.lastState;
      this.options.logger?.warn('killswitch read failed; keeping the last known value', {
        parameterName: this.options.parameterName,
        error: namedLine(error),
        mode: this.lastState.mode,
      });
      return this.lastState;
    }
    this.freshUntil = this.clock() + this.maxAgeSeconds * 1000;
    // The same value keeps the state of its first read, and so its first `lastModified`: a write of
    // identical bytes (by hand) does not move the time the value took effect.
    if (reading.raw === this.lastRaw && this.lastState.source !== 'last-known') return this.lastState;
    this.lastRaw = reading.raw;
    if (reading.value) {
      this.lastGood = toState(reading.value, 'ssm', reading.lastModified);
      this.lastState = this.lastGood;
    } else {
      this.options.logger?.error('killswitch value is malformed; treating it as normal', { parameterName: this.options.parameterName, reason: reading.invalidReason });
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
 * /health and /ready are decided before any read and never wait on SSM: they are never refused,
 * and a health check held by a silent SSM would fail and have every task replaced.
 */
export async function checkKillswitch(
  reader: KillswitchReader,
  path: string | undefined,
): Promise<{ readonly state: KillswitchState; readonly respond?: MaintenanceResponse }> {
  if (isExemptPath(path)) return { state: reader.peek() };
  const state = await reader.read();
  if (state.maintenance) return { state, respond: maintenanceResponse(state) };
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
