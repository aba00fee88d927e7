/**
 * npm run bench:false-pages — how often a dependency alarm of the probe (Health-RedisDown, Database-Down,
 * Health-ApiNotReady, Database-ReadOnly, with a 1/0 per-minute signal) pages with no outage, when
 * each attempt of its check fails at random with probability q, independently of every other.
 *
 * The alarm is bad in M of the last W minutes (defaults: 2 of probeFailureWindowMinutes = 10), and
 * CloudWatch evaluates it every minute, a new W-minute window starting each minute. A page is an
 * OK -> ALARM transition, so a run of bad windows pages once. A minute is bad with probability
 * b = q (one attempt a run) or q^2 (a second attempt after a first one that got no answer).
 *
 * Exact: the window ending at minute t alarms and the one ending at t-1 did not exactly when the
 * W-1 minutes they share hold M-1 bad minutes, minute t is bad and minute t-W was good, so the
 * pages per day are 1440 x C(W-1, M-1) b^M (1-b)^(W-M+1). The simulation runs the alarm's state
 * over BENCH_DAYS (default 20000) days of minutes, seeded, to check that figure.
 * Env: BENCH_DAYS, BENCH_M (default 2), BENCH_W (default 10).
 */
const DAYS = Number(process.env.BENCH_DAYS ?? 20_000);
const M = Number(process.env.BENCH_M ?? 2);
const W = Number(process.env.BENCH_W ?? 10);
const MINUTES_A_DAY = 1440;

function binomial(n: number, k: number): number {
  let result = 1;
  for (let i = 1; i <= k; i += 1) result = (result * (n - k + i)) / i;
  return result;
}

/** OK -> ALARM transitions per day, exactly, for a bad-minute probability b. */
function pagesPerDay(b: number, m = M, w = W): number {
  return MINUTES_A_DAY * binomial(w - 1, m - 1) * b ** m * (1 - b) ** (w - m + 1);
}

/** mulberry32: a small seeded generator, so that a run of the bench gives the same figures. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Simulated OK -> ALARM transitions per day: each minute's run makes `attempts` attempts (the next only after a failed one). */
function simulatedPagesPerDay(q: number, attempts: number, random: () => number): number {
  const window: number[] = new Array<number>(W).fill(0);
  let bad = 0;
  let alarm = false;
  let pages = 0;
  for (let minute = 0; minute < DAYS * MINUTES_A_DAY; minute += 1) {
    let failed = true;
    for (let i = 0; i < attempts && failed; i += 1) failed = random() < q;
    const slot = minute % W;
    bad += Number(failed) - window[slot];
    window[slot] = Number(failed);
    const breaching = bad >= M;
    if (breaching && !alarm && minute >= W - 1) pages += 1;
    alarm = breaching;
  }
  return pages / DAYS;
}

function main(): void {
  const random = seeded(20261203);
  console.log(`false pages per day, per alarm (M = ${M} bad minutes of W = ${W}, a new window every minute; ${DAYS} simulated days each)`);
  console.table(
    [0.01, 0.05, 0.25].flatMap((q) =>
      [1, 2].map((attempts) => ({
        'attempt fails (q)': `${q * 100} %`,
        attempts,
        'bad minute': (attempts === 1 ? q : q ** 2).toPrecision(2),
        'exact per day': pagesPerDay(attempts === 1 ? q : q ** 2).toPrecision(3),
        'simulated per day': simulatedPagesPerDay(q, attempts, random).toPrecision(3),
      })),
    ),
  );
}

main();
