import { spawnSync } from 'node:child_process';
import { formatAge, formatSeconds, isoSecond, shellWord, takenAgo, utcMinute, utcSecond } from '../../../lambdas/shared/format';

describe('takenAgo: when a restored backup was taken, and how old it is', () => {
  const now = Date.parse('2026-12-05T10:00:00.000Z');

  it('says the age of a backup taken in the past', () => {
    // Arrange / Act / Assert
    expect(takenAgo('2026-11-28T10:00:00.000Z', now)).toBe('taken 2026-11-28T10:00:00.000Z, 7 d ago');
    expect(takenAgo('2026-12-05T09:48:00.000Z', now)).toBe('taken 2026-12-05T09:48:00.000Z, 12 min ago');
  });

  it('says a backup "taken" more than a minute after now is in the future, and that a clock is wrong, not a negative age', () => {
    // Arrange / Act / Assert
    expect(takenAgo('2026-12-05T12:00:00.000Z', now)).toBe("taken 2026-12-05T12:00:00.000Z, 2.0 h in the future: this machine's clock or the backup writer's is wrong");
  });

  it('takes a few seconds ahead (clocks within a minute) as just taken', () => {
    // Arrange / Act / Assert
    expect(takenAgo('2026-12-05T10:00:20.000Z', now)).toBe('taken 2026-12-05T10:00:20.000Z, 0 s ago');
  });
});

describe('utcMinute: an instant to the minute, in UTC', () => {
  it('drops the seconds rather than rounding them, and names UTC', () => {
    // Arrange / Act / Assert
    expect(utcMinute(Date.parse('2026-12-05T18:12:59.900Z'))).toBe('2026-12-05 18:12 UTC');
  });
});

describe('utcSecond: the moment after which writes are not in a copy', () => {
  const now = Date.parse('2026-12-05T10:00:00.000Z');

  it('says the time of day alone for a moment of today (UTC)', () => {
    // Arrange / Act / Assert
    expect(utcSecond(Date.parse('2026-12-05T08:00:03.900Z'), now)).toBe('08:00:03Z');
  });

  it('says the date too for a moment of another day, which a time of day alone would put this morning', () => {
    // Arrange / Act / Assert
    expect(utcSecond(Date.parse('2026-11-28T08:00:03.000Z'), now)).toBe('2026-11-28T08:00:03Z');
  });
});

describe('formatAge: how long ago, for operators', () => {
  it('says an age under a minute in seconds, not "0 min", and rounds to the unit above it', () => {
    // Arrange / Act / Assert
    expect([0, 6, 59.4, 59.5, 90, 3599, 7200, 259200].map(formatAge)).toEqual(['0 s', '6 s', '59 s', '1 min', '2 min', '60 min', '2.0 h', '3 d']);
  });
});

describe('formatSeconds: a duration for operators', () => {
  it('says seconds under a minute, minutes (and seconds) under an hour, hours and minutes from an hour on', () => {
    // Arrange / Act / Assert
    expect([50, 60, 3298, 3600, 25260, 25299].map(formatSeconds)).toEqual(['50 s', '1 min', '54 min 58 s', '1 h 00 min', '7 h 01 min', '7 h 01 min']);
  });
});

describe('isoSecond: an instant to the second', () => {
  it('drops the milliseconds of an ISO string or a Date', () => {
    // Arrange / Act / Assert
    expect([isoSecond('2026-11-30T10:15:00.123Z'), isoSecond(new Date('2026-12-01T02:00:05.999Z'))]).toEqual(['2026-11-30T10:15:00Z', '2026-12-01T02:00:05Z']);
  });
});

describe('shellWord: a value as one word of a command line an operator pastes', () => {
  it('leaves a word the shell reads as it is bare: a pasted command reads as typed', () => {
    expect(['2h', 'atmr-prod-pitr-202611301402', 'arn:aws:ecs:eu-west-3:111111111111:task-definition/atmr-api:41', 'a=b,c@d+e'].map(shellWord)).toEqual([
      '2h',
      'atmr-prod-pitr-202611301402',
      'arn:aws:ecs:eu-west-3:111111111111:task-definition/atmr-api:41',
      'a=b,c@d+e',
    ]);
  });

  it('single-quotes anything else, so that it runs nothing and stays one argument', () => {
    expect(shellWord('OSRM down')).toBe("'OSRM down'");
    expect(shellWord('$(rm -rf ~) `id` it\'s')).toBe("'$(rm -rf ~) `id` it'\\''s'");
    expect(shellWord('pic de charge été')).toBe("'pic de charge été'");
    expect(shellWord('~')).toBe("'~'");
    // zsh reads a leading '=' as a command's path (`=ls` is /bin/ls).
    expect(shellWord('=ls')).toBe("'=ls'");
    expect(shellWord('')).toBe("''");
  });

  it('gives the shell back the value as one argument, whatever it holds', () => {
    const values = ['2h', 'OSRM down', "it's $(id) `id` $HOME ~ * ; | & > x", 'été', ''];
    // Act: each value through a real shell, as a pasted command would be
    const argv = values.map((value) => spawnSync('sh', ['-c', `printf '%s\\0' ${shellWord(value)}`], { encoding: 'utf8' }).stdout);

    expect(argv).toEqual(values.map((value) => `${value}\0`));
  });
});
