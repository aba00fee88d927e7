/**
 * A line `y = fixed + slope * x` through measured points, by least squares (through two points, the
 * line joining them). The benches extrapolate a time measured on small databases to a large one:
 * dividing the size by the measured throughput scales the fixed costs (process start, sessions,
 * manifest reads, the swap) as if they grew with the data; the fit keeps them fixed.
 */
export type LineFit = { ok: true; fixed: number; slope: number } | { ok: false; reason: string };

export function fitLine(points: readonly { x: number; y: number }[]): LineFit {
  if (new Set(points.map((p) => p.x)).size < 2) {
    return { ok: false, reason: 'the fit needs two sizes or more' };
  }
  const n = points.length;
  const meanX = points.reduce((sum, p) => sum + p.x, 0) / n;
  const meanY = points.reduce((sum, p) => sum + p.y, 0) / n;
  const sxx = points.reduce((sum, p) => sum + (p.x - meanX) ** 2, 0);
  const sxy = points.reduce((sum, p) => sum + (p.x - meanX) * (p.y - meanY), 0);
  const slope = sxy / sxx;
  // A time that does not grow with the size is the noise of the runs, not a property of the
  // restore: extrapolated, it would promise a large database in the time of a small one (or less).
  if (!Number.isFinite(slope) || slope <= 0) {
    return { ok: false, reason: `unusable: the time does not grow with the size (slope ${slope.toPrecision(3)}), the runs' noise is larger than the sizes' difference` };
  }
  return { ok: true, fixed: meanY - slope * meanX, slope };
}
