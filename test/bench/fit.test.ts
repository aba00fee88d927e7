import { fitLine } from '../../bench/fit';

describe('fitLine (the benches extrapolate a time to a large database with it)', () => {
  it('through two points, is the line joining them: the fixed cost stays fixed', () => {
    // 1.0 s fixed + 10 s per GiB, measured at 0.25 and 0.5 GiB.
    const fit = fitLine([
      { x: 0.25, y: 3.5 },
      { x: 0.5, y: 6 },
    ]);
    expect(fit.ok).toBe(true);
    if (!fit.ok) return;
    expect(fit.fixed).toBeCloseTo(1, 10);
    expect(fit.slope).toBeCloseTo(10, 10);
  });

  it('on three points off a line, is the least-squares line', () => {
    // x 1, 2, 3; y 2, 3, 5: mean x 2, mean y 10/3, Sxx 2, Sxy 3 -> slope 1.5, fixed 1/3.
    const fit = fitLine([
      { x: 1, y: 2 },
      { x: 2, y: 3 },
      { x: 3, y: 5 },
    ]);
    expect(fit.ok).toBe(true);
    if (!fit.ok) return;
    expect(fit.slope).toBeCloseTo(1.5, 10);
    expect(fit.fixed).toBeCloseTo(1 / 3, 10);
  });

  it.each([
    ['shorter at the larger size', [{ x: 0.15, y: 2 }, { x: 0.45, y: 1.9 }]],
    ['the same at both sizes', [{ x: 0.15, y: 2 }, { x: 0.45, y: 2 }]],
  ])('refuses a time %s (the noise of the runs): no extrapolation', (_, points) => {
    const fit = fitLine(points);
    expect(fit).toEqual({ ok: false, reason: expect.stringMatching(/^unusable: the time does not grow with the size/) });
  });

  it('refuses one size (repeated or not): a line needs two', () => {
    expect(fitLine([{ x: 0.15, y: 2 }])).toEqual({ ok: false, reason: 'the fit needs two sizes or more' });
    expect(fitLine([{ x: 0.15, y: 2 }, { x: 0.15, y: 2.2 }])).toEqual({ ok: false, reason: 'the fit needs two sizes or more' });
  });
});
