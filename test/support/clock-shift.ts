import * as fs from 'node:fs';
import * as path from 'node:path';

/**
 * Environment for a CLI run on a machine whose clock is `shiftMs` off (positive: ahead): a preload,
 * written to `dir`, makes Date.now() and new Date() of its node processes read that much off. The
 * SDK then meets AWS (a local endpoint on the real clock) as it would from such a machine: its
 * first request is refused as RequestTimeTooSkewed, and it corrects its signing time from the answer.
 */
export function clockShiftEnv(dir: string, shiftMs: number): Record<string, string> {
  const preload = path.join(dir, 'shifted-clock.cjs');
  fs.writeFileSync(
    preload,
    `const shift = Number(process.env.ATMR_TEST_CLOCK_SHIFT_MS);
const RealDate = Date;
globalThis.Date = class extends RealDate {
  constructor(...args) { if (args.length === 0) super(RealDate.now() + shift); else super(...args); }
  static now() { return RealDate.now() + shift; }
};
`,
  );
  return { NODE_OPTIONS: `--require ${preload}`, ATMR_TEST_CLOCK_SHIFT_MS: String(shiftMs) };
}
