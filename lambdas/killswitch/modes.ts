/**
 * The killswitch's modes, apart from the value's schema (value.ts) so that the CLI's start, which
 * names them in a usage line, loads no validation library (test/cli/concerns.test.ts).
 */

/** Killswitch modes, in increasing severity (docs/contracts.md, "Killswitch"). */
export const KILLSWITCH_MODES = ['normal', 'degraded', 'maintenance'] as const;
export type KillswitchMode = (typeof KILLSWITCH_MODES)[number];

/** Modes an operator can enable (`normal` is reached with `disable`). */
export const ENABLE_MODES = ['maintenance', 'degraded'] as const;
export type EnableMode = (typeof ENABLE_MODES)[number];
