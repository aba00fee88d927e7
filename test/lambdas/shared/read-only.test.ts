import { isOn } from '../../../lambdas/shared/read-only';

describe('isOn: the one reader of a boolean setting', () => {
  it.each(['on', 'ON', 'true', 'True', 't', 'tr', 'yes', 'y', 'ye', '1', ' on '])('reads %p as true, as PostgreSQL does (parse_bool)', (value) => {
    expect(isOn(value)).toBe(true);
  });

  it.each(['off', 'false', 'f', 'no', 'n', '0', 'o', '', 'onn', 'yess', '10'])('reads %p as false', (value) => {
    expect(isOn(value)).toBe(false);
  });

  it('reads an absent value as false', () => {
    expect(isOn(undefined)).toBe(false);
  });
});
