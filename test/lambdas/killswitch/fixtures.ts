import * as net from 'node:net';
import { GetParameterCommand, ParameterVersionNotFound, PutParameterCommand, SSMClient } from '@aws-sdk/client-ssm';
import type { AwsClientStub } from 'aws-sdk-client-mock';
import type { KillswitchValue } from '../../../lambdas/killswitch/value';

export const PARAMETER = '/atmr/test/killswitch';

export function value(overrides: Partial<KillswitchValue> = {}): KillswitchValue {
  return { mode: 'normal', reason: 'initial', actor: 'atmr-dr deploy', updatedAt: '2026-01-01T00:00:00.000Z', expiresAt: null, ...overrides };
}

/** GetParameter's answer; `lastModified` is SSM's own time of the write (`LastModifiedDate`), left out when not given. */
export function getParameterOutput(v: KillswitchValue | string, version: number, lastModified?: Date) {
  return {
    Parameter: { Name: PARAMETER, Value: typeof v === 'string' ? v : JSON.stringify(v), Version: version, Type: 'String' as const, ...(lastModified && { LastModifiedDate: lastModified }) },
  };
}

/**
 * A faithful in-memory SSM parameter behind the mocked client: PutParameter bumps the version and
 * stamps `lastModified` with the (fake) wall clock, as SSM stamps LastModifiedDate with its own;
 * GetParameter returns the latest, or the version a `name:N` selector asks for (ParameterVersionNotFound
 * when there is none, as SSM answers). The hooks inject another writer's write, or a retried
 * PutParameter's extra version, at a call; what they leave in `raw`/`version` enters the history.
 * A test that writes `raw` itself sets `lastModified` too when it matters (undefined: not returned).
 * `ssmClock` (ms) is SSM's clock: each answer sets the calling client's systemClockOffset from it,
 * as the SDK does from the Date header of a real answer (the mock skips the signer that does it).
 */
export function fakeParameter(
  ssm: AwsClientStub<SSMClient>,
  initial: KillswitchValue | string,
  options: {
    version?: number;
    lastModified?: Date;
    beforeGet?: (getIndex: number, store: { raw: string; version: number }) => void;
    beforePut?: (putIndex: number, store: { raw: string; version: number }, input: { Value: string }) => void;
    ssmClock?: () => number;
  } = {},
) {
  const store: { raw: string; version: number; lastModified?: Date } = {
    raw: typeof initial === 'string' ? initial : JSON.stringify(initial),
    version: options.version ?? 1,
    lastModified: options.lastModified,
  };
  const history = new Map<number, string>([[store.version, store.raw]]);
  const record = () => history.set(store.version, store.raw);
  let gets = 0;
  let puts = 0;
  const dated = (getClient: () => SSMClient) => {
    if (options.ssmClock) (getClient().config as { systemClockOffset?: number }).systemClockOffset = options.ssmClock() - Date.now();
  };
  ssm.on(GetParameterCommand).callsFake((input: { Name: string }, getClient: () => SSMClient) => {
    dated(getClient);
    // Only calls for the latest value count as gets for the hooks: version lookups are not re-reads.
    const selector = /^(.*):(\d+)$/.exec(input.Name);
    if (selector) {
      const raw = history.get(Number(selector[2]));
      if (raw === undefined) throw new ParameterVersionNotFound({ message: `Systems Manager could not find version ${selector[2]} of ${selector[1]}.`, $metadata: {} });
      return getParameterOutput(raw, Number(selector[2]));
    }
    options.beforeGet?.(gets++, store);
    record();
    return getParameterOutput(store.raw, store.version, store.lastModified);
  });
  ssm.on(PutParameterCommand).callsFake((input: { Value: string }, getClient: () => SSMClient) => {
    dated(getClient);
    options.beforePut?.(puts++, store, input);
    record();
    store.raw = input.Value;
    store.version += 1;
    store.lastModified = new Date();
    record();
    return { Version: store.version, Tier: 'Standard' };
  });
  return store;
}

/**
 * What SSM holds after the SDK retried a PutParameter whose first attempt was applied but whose
 * answer was lost: the same value twice, as two versions; the answer the SDK returns is the retry's.
 * Use as `beforePut`: it applies the first attempt, the fake's PutParameter then applies the retry.
 */
export function firstAttemptApplied(_putIndex: number, store: { raw: string; version: number }, input: { Value: string }): void {
  store.raw = input.Value;
  store.version += 1;
}

/** Fakes only the wall clock (Date), from `now`: the SDK and middy keep real timers and ticks. */
export function fakeWallClock(now: number): void {
  jest.useFakeTimers({
    now,
    doNotFake: ['hrtime', 'nextTick', 'performance', 'queueMicrotask', 'setImmediate', 'clearImmediate', 'setInterval', 'clearInterval', 'setTimeout', 'clearTimeout'],
  });
}

/** Moves the fake wall clock forward: Powertools' cache reads `new Date()`, the reader and responder `Date.now()`. */
export function advance(ms: number): void {
  jest.setSystemTime(Date.now() + ms);
}

/**
 * For the tests of a file that read the killswitch through the mocked `ssm` client: each starts
 * with a reset mock and the wall clock at `start`, and ends with real timers and spies restored.
 */
export function resetEachTest(ssm: AwsClientStub<SSMClient>, start: number): void {
  beforeEach(() => {
    ssm.reset();
    fakeWallClock(start);
  });
  afterEach(() => {
    jest.useRealTimers();
    jest.restoreAllMocks();
  });
}

/**
 * An SSM endpoint on 127.0.0.1 that accepts every connection and answers a request only when
 * `answer` returns a body for its operation (the X-Amz-Target's, e.g. "GetParameter"); else it says
 * nothing, ever (a black-holed VPC endpoint, a hung proxy). Real SDK clients point at `endpoint`.
 */
export async function silentSsm(answer: (operation: string) => object | undefined = () => undefined): Promise<{ endpoint: string; close: () => Promise<void> }> {
  const sockets: net.Socket[] = [];
  const server = net.createServer((socket) => {
    sockets.push(socket);
    socket.on('data', (chunk) => {
      const operation = /x-amz-target:\s*AmazonSSM\.(\w+)/i.exec(chunk.toString('latin1'))?.[1];
      const body = operation === undefined ? undefined : answer(operation);
      if (body === undefined) return;
      const json = JSON.stringify(body);
      socket.write(`HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: ${Buffer.byteLength(json)}\r\n\r\n${json}`);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    endpoint: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    close: async () => {
      sockets.forEach((socket) => socket.destroy());
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** How long `promise` took to settle (ms) and its value, or ms Infinity if it had not after `limitMs`. */
export async function timed<T>(promise: Promise<T>, limitMs: number): Promise<{ ms: number; value?: T }> {
  const start = Date.now();
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<{ ms: number }>((resolve) => {
    timer = setTimeout(() => resolve({ ms: Infinity }), limitMs);
  });
  const result = await Promise.race([promise.then((value) => ({ ms: Date.now() - start, value })), limit]);
  clearTimeout(timer);
  return result;
}
