import * as net from 'node:net';
import { sqlState, TOO_MANY_CONNECTIONS } from '../shared/pg-errors';

/**
 * One check of one target, reduced to what an on-call engineer needs: up or down, how long it took,
 * and why it is down in a word (dns, refused, timeout, tls, http-503, ...) plus the raw detail.
 */
export interface CheckResult {
  readonly up: boolean;
  readonly latencyMs: number;
  /** Why the target is down: a short machine-readable word. */
  readonly reason?: string;
  /** The error or response behind `reason`, one line. */
  readonly detail?: string;
}

/** A check that did not answer within its time. */
export class CheckTimeout extends Error {
  override readonly name = 'CheckTimeout';
  constructor(readonly timeoutMs: number) {
    super(`no answer within ${timeoutMs} ms`);
  }
}

/**
 * Runs `work` with a deadline. On expiry `onTimeout` runs (to destroy a socket or client) and the
 * promise rejects with CheckTimeout, whatever the work does afterwards.
 */
export async function withTimeout<T>(timeoutMs: number, work: () => Promise<T>, onTimeout?: () => void): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      try {
        onTimeout?.();
      } finally {
        reject(new CheckTimeout(timeoutMs));
      }
    }, timeoutMs);
  });
  try {
    return await Promise.race([work(), deadline]);
  } finally {
    clearTimeout(timer);
  }
}

const TLS_CODES = /^(CERT_|ERR_TLS|ERR_SSL|UNABLE_TO_|SELF_SIGNED|DEPTH_ZERO|HOSTNAME_MISMATCH|ERR_OSSL)/;

/**
 * Classifies a failure (fetch, net, ioredis, pg) into one word: the cause chain of undici's
 * "fetch failed" holds the socket error code.
 */
export function classifyError(error: unknown): { reason: string; detail: string } {
  const chain: unknown[] = [];
  for (let e: unknown = error; e && chain.length < 5; e = (e as { cause?: unknown }).cause) chain.push(e);
  const detail = chain
    .map((e) => (e instanceof Error ? `${e.name}: ${e.message}` : String(e)))
    // A cause that says the same as the error it is under adds nothing: ioredis' ReplyError is its
    // own cause, which repeated the server's words (WRONGPASS ...) five times in the detail.
    .filter((text, i, texts) => i === 0 || text !== texts[i - 1])
    .join(' <- ')
    .replace(/\s+/g, ' ')
    .slice(0, 500);
  for (const e of chain) {
    if (e instanceof CheckTimeout) return { reason: 'timeout', detail };
    const name = (e as { name?: string }).name;
    if (name === 'TimeoutError' || name === 'AbortError') return { reason: 'timeout', detail };
    const code = String((e as { code?: unknown }).code ?? '');
    if (code === 'ENOTFOUND' || code === 'EAI_AGAIN' || code === 'EAI_NONAME') return { reason: 'dns', detail };
    if (code === 'ECONNREFUSED') return { reason: 'refused', detail };
    if (code === 'ECONNRESET' || code === 'EPIPE' || code === 'UND_ERR_SOCKET') return { reason: 'reset', detail };
    if (code === 'ETIMEDOUT' || code === 'UND_ERR_CONNECT_TIMEOUT' || code === 'UND_ERR_HEADERS_TIMEOUT') return { reason: 'timeout', detail };
    if (code === 'EHOSTUNREACH' || code === 'ENETUNREACH') return { reason: 'unreachable', detail };
    if (TLS_CODES.test(code)) return { reason: 'tls', detail };
    // PostgreSQL refusing the login (SQLSTATE class 28: 28P01 a wrong password, as after a rotation
    // the probe has not read yet; 28000 a role or pg_hba.conf refusal): credentials, not an outage.
    if (sqlState(e)?.startsWith('28')) return { reason: 'auth', detail };
    // PostgreSQL refusing a session because its connection slots are taken: the server answered, and
    // what to look at is who holds the connections (Database-ConnectionsNearLimit), not whether it runs.
    if (sqlState(e) === TOO_MANY_CONNECTIONS) return { reason: 'connections-full', detail };
  }
  const text = detail.toLowerCase();
  // Redis refusing the probe's credentials (none given, a rotated AUTH token, or a Redis that lost its
  // AUTH/ACL): reason auth, which the probe still counts as Redis down, its detail naming both causes
  // (classifyRedisError in probe.ts): the app may be refused too.
  if (/\b(noauth|wrongpass)\b|invalid password|authentication required/.test(text)) return { reason: 'auth', detail };
  if (/timed? ?out/.test(text)) return { reason: 'timeout', detail };
  if (/certificate|ssl|tls/.test(text)) return { reason: 'tls', detail };
  if (/connection is closed|econnrefused/.test(text)) return { reason: 'refused', detail };
  // node-postgres' words for a connection the server side closed without a word (a reset, a proxy or
  // a failover dropping it): no answer, as a reset is.
  if (/connection terminated unexpectedly/.test(text)) return { reason: 'reset', detail };
  return { reason: 'error', detail };
}

/**
 * How much of a response body the probe reads. A health answer is a few bytes; an endpoint that
 * streams megabytes (a misrouted URL, a debug dump) would otherwise fill the probe's 256 MB and end
 * the whole run, every target's metrics with it.
 */
export const MAX_BODY_BYTES = 64 * 1024;

/** The first `MAX_BODY_BYTES` of a body as UTF-8 text, without a byte order mark; the rest is cancelled, not downloaded. */
async function readBodyStart(res: Response): Promise<string> {
  if (!res.body) return '';
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    while (size < MAX_BODY_BYTES) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      size += value.byteLength;
    }
  } finally {
    if (size >= MAX_BODY_BYTES) await reader.cancel().catch(() => undefined);
    else reader.releaseLock();
  }
  // TextDecoder drops a leading UTF-8 byte order mark (Buffer's toString keeps it as U+FEFF), which
  // JSON.parse refuses: a /health or /ready answer a framework writes with one would read as down.
  return new TextDecoder().decode(Buffer.concat(chunks).subarray(0, MAX_BODY_BYTES));
}

/**
 * Whether a check got an HTTP answer (its status is in `reason`, `http-<status>`), as opposed to none
 * at all (dns, refused, reset, timeout, unreachable, tls...): a down target answers with an error
 * status, while no answer may only mean that it cannot be reached from where the check ran.
 */
export function answeredHttp(result: CheckResult): boolean {
  return result.up || (result.reason?.startsWith('http-') ?? false);
}

/**
 * GET `url` with a deadline; up when the status is 2xx and `bodyDown`, when given, finds nothing
 * wrong in the body (it returns the reason word of a body that says down). The body is drained
 * (the socket is reused), up to MAX_BODY_BYTES. A request that times out says whether a TCP
 * connection to the URL's host and port was made (noAnswerDetail): fetch's own timeout does not.
 */
export async function checkHttp(url: string, timeoutMs: number, fetchImpl: typeof fetch = fetch, bodyDown?: (body: string) => string | undefined): Promise<CheckResult> {
  return (await checkHttpTellingConnection(url, timeoutMs, fetchImpl, bodyDown)).result;
}

/** checkHttp, and for a timed-out request whether a TCP connection was made within the same deadline. */
async function checkHttpTellingConnection(
  url: string,
  timeoutMs: number,
  fetchImpl: typeof fetch = fetch,
  bodyDown?: (body: string) => string | undefined,
): Promise<{ result: CheckResult; connected?: boolean }> {
  return tellingConnection(urlAddress(url), timeoutMs, async () => ({ result: await requestHttp(url, timeoutMs, fetchImpl, bodyDown) }), 'HTTP answer');
}

async function requestHttp(url: string, timeoutMs: number, fetchImpl: typeof fetch, bodyDown?: (body: string) => string | undefined): Promise<CheckResult> {
  const started = performance.now();
  const controller = new AbortController();
  try {
    const response = await withTimeout(
      timeoutMs,
      async () => {
        const res = await fetchImpl(url, { signal: controller.signal, redirect: 'manual', headers: { 'user-agent': 'atmr-dr-health-probe' } });
        // The body counts in the deadline too: a server that sends headers and stalls is down.
        const body = await readBodyStart(res);
        return { status: res.status, body };
      },
      () => controller.abort(),
    );
    const latencyMs = Math.round(performance.now() - started);
    const detail = response.body.replace(/\s+/g, ' ').slice(0, 200);
    if (response.status < 200 || response.status >= 300) return { up: false, latencyMs, reason: `http-${response.status}`, detail };
    const reason = bodyDown?.(response.body);
    return reason ? { up: false, latencyMs, reason, detail: `HTTP ${response.status}: ${detail}` } : { up: true, latencyMs };
  } catch (error) {
    return { up: false, latencyMs: Math.round(performance.now() - started), ...classifyError(error) };
  }
}

/** Where a TCP connection to a target goes. */
export interface TcpAddress {
  readonly host: string;
  readonly port: number;
}

/** The host and port an HTTP(S) URL connects to; undefined for a URL that does not parse (its request fails on its own). */
function urlAddress(url: string): TcpAddress | undefined {
  try {
    const { hostname, port, protocol } = new URL(url);
    return { host: hostname.replace(/^\[|\]$/g, ''), port: Number(port) || (protocol === 'https:' ? 443 : 80) };
  } catch {
    return undefined;
  }
}

/**
 * Whether a new TCP connection to `address` is accepted within `timeoutMs`; `cancel` gives up
 * (false) at once. The connection is closed as soon as it is made: nothing is sent on it.
 */
function tcpConnects(address: TcpAddress, timeoutMs: number): { connected: Promise<boolean>; cancel(): void } {
  let done: (connected: boolean) => void = () => undefined;
  const connected = new Promise<boolean>((resolve) => {
    const socket = net.connect({ host: address.host, port: address.port });
    const timer = setTimeout(() => done(false), timeoutMs);
    done = (value) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(value);
    };
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
  return { connected, cancel: () => done(false) };
}

/**
 * The detail of a check that timed out: "connected, no <answer> within N s" when a TCP connection
 * to the target was accepted within the deadline (a process that accepts and never answers: hung,
 * overloaded), "no TCP connection within N s" when not even that (a security group or network rule
 * dropping the packets, a host gone). The two call for different first looks: the target's process
 * and logs, or the network path to it.
 */
export function noAnswerDetail(connected: boolean, timeoutMs: number, answer = 'answer'): string {
  return connected ? `connected, no ${answer} within ${timeoutMs / 1000} s` : `no TCP connection within ${timeoutMs / 1000} s`;
}

/**
 * Runs `check` while a TCP connection to `address` is tried alongside, within the same deadline, so
 * the check takes no longer for it. A check that timed out gets noAnswerDetail as its detail (and
 * `connected`); the connection attempt is given up as soon as the check ends any other way. Without
 * an address the check's result is left as it is.
 */
export async function tellingConnection<T extends { result: CheckResult }>(
  address: TcpAddress | undefined,
  timeoutMs: number,
  check: () => Promise<T>,
  answer?: string,
): Promise<T & { connected?: boolean }> {
  const tcp = address && tcpConnects(address, timeoutMs);
  const outcome = await check();
  if (!tcp) return outcome;
  if (outcome.result.reason !== 'timeout') {
    tcp.cancel();
    return outcome;
  }
  const connected = await tcp.connected;
  return { ...outcome, result: { ...outcome.result, detail: noAnswerDetail(connected, timeoutMs, answer) }, connected };
}

/**
 * checkHttp (no body check), with a timed-out request that got a TCP connection named `hung`: a
 * server that accepts and never answers ("connected, no HTTP answer within N s"); a `timeout` is
 * then one where not even that was made ("no TCP connection within N s": a network rule dropping
 * the packets, a host gone).
 */
export async function checkHttpNamingHung(url: string, timeoutMs: number, fetchImpl?: typeof fetch): Promise<CheckResult> {
  const { result, connected } = await checkHttpTellingConnection(url, timeoutMs, fetchImpl);
  return connected ? { ...result, reason: 'hung' } : result;
}
