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
 */
export function fakeParameter(
  ssm: AwsClientStub<SSMClient>,
  initial: KillswitchValue | string,
  options: {
    version?: number;
    lastModified?: Date;
    beforeGet?: (getIndex: number, store: { raw: string; version: number }) => void;
    beforePut?: (putIndex: number, store: { raw: string; version: number }, input: { Value: string }) => void;
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
  ssm.on(GetParameterCommand).callsFake((input: { Name: string }) => {
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
  ssm.on(PutParameterCommand).callsFake((input: { Value: string }) => {
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
