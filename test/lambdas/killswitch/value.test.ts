import { durationInReason, INITIAL_VALUE, KillswitchValueSchema, parseDuration, parseEnableMode, parseKillswitchValue, parseReason } from '../../../lambdas/killswitch/value';
import { OperatorError } from '../../../lambdas/shared/errors';
import { value } from './fixtures';

describe('killswitch value schema (docs/contracts.md)', () => {
  it('accepts the documented shape, with expiresAt null or an ISO date', () => {
    expect(KillswitchValueSchema.safeParse(value()).success).toBe(true);
    expect(KillswitchValueSchema.safeParse(value({ mode: 'maintenance', expiresAt: '2026-06-01T12:00:00.000Z' })).success).toBe(true);
    expect(KillswitchValueSchema.safeParse(INITIAL_VALUE).success).toBe(true);
  });

  it.each([
    ['an unknown mode', { ...value(), mode: 'off' }],
    ['a missing field', { mode: 'normal', reason: 'x', actor: 'y', updatedAt: '2026-01-01T00:00:00Z' }],
    ['an extra field', { ...value(), extra: 1 }],
    ['a non-ISO updatedAt', { ...value(), updatedAt: 'yesterday' }],
    ['an empty actor', { ...value(), actor: '' }],
  ])('rejects %s', (_label, candidate) => {
    expect(KillswitchValueSchema.safeParse(candidate).success).toBe(false);
  });

  it('parses raw JSON without throwing, naming what is wrong', () => {
    expect(parseKillswitchValue('{oops')).toEqual({ ok: false, error: 'value is not JSON' });
    expect(parseKillswitchValue(JSON.stringify({ ...value(), mode: 'off' }))).toEqual({ ok: false, error: expect.stringMatching(/^mode: /) });
    expect(parseKillswitchValue(JSON.stringify(value()))).toEqual({ ok: true, value: value() });
  });
});

describe('operator inputs', () => {
  it.each([
    ['30m', 1800],
    ['2h', 7200],
    ['1h30m', 5400],
    ['1d', 86400],
    ['90s', 90],
  ])('parses the duration %s', (text, seconds) => {
    expect(parseDuration(text)).toBe(seconds);
  });

  it.each(['2', 'h', '2 hours', '-1h', '2h-', '', '1.5h'])('rejects the malformed duration "%s" naming the valid units', (text) => {
    expect(() => parseDuration(text)).toThrow(/malformed duration .*use a number with a unit s, m, h or d/);
  });

  it.each([
    ['30min', '30m'],
    ['90mn', '90m'],
    ['90 mn', '90m'],
    ['1j', '1d'],
  ])('rejects "%s" with the spelling it means, %s', (text, meant) => {
    expect(() => parseDuration(text)).toThrow(new RegExp(`malformed duration "${text}": .*; write ${meant}$`));
  });

  it('rejects durations under a minute or over a week', () => {
    expect(() => parseDuration('30s')).toThrow(/out of range: use between 1m and 7d/);
    expect(() => parseDuration('8d')).toThrow(/out of range/);
  });

  it('names the valid modes for an invalid or missing mode, with a usage exit code', () => {
    expect(() => parseEnableMode('normal')).toThrow(/invalid mode "normal": use one of maintenance, degraded/);
    expect(() => parseEnableMode(undefined)).toThrow(/--mode is required: use one of maintenance, degraded/);
    try {
      parseEnableMode('panic');
    } catch (error) {
      expect(error).toBeInstanceOf(OperatorError);
      expect((error as OperatorError).exitCode).toBe(2);
    }
  });

  it('requires a reason to enable, collapses it to one line, and bounds it', () => {
    expect(() => parseReason('   ', true)).toThrow(/--reason is required/);
    expect(parseReason(undefined, false)).toBeUndefined();
    expect(parseReason(' OSRM\n down ', true)).toBe('OSRM down');
    expect(() => parseReason('x'.repeat(501), true)).toThrow(/shorten it to 500 or fewer/);
  });
});

describe('durationInReason: the expiry a reason names', () => {
  it.each([
    ['pendant 2h', '2h'],
    ['pendant 2 heures', '2h'],
    ['migration 30 min', '30m'],
    ['for 2 hours', '2h'],
    ['2H migration', '2h'],
    ['tests (1h30)', '1h30m'],
    ['3 pods down for 90 minutes', '90m'],
  ])('%s: %s, as --expires takes it', (reason, expires) => {
    expect(durationInReason(reason)).toBe(expires);
    expect(parseDuration(expires)).toBeGreaterThan(0);
  });

  it.each(['OSRM down', '500 errors', '3 pods down', 'v2 deploy', 'release 1.2h', 'retry in 30 s', 'reboot 0h'])('%s: none', (reason) => {
    expect(durationInReason(reason)).toBeUndefined();
  });
});
