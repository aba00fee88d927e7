/**
 * Where the CLI reads the name of whoever makes a change when AWS cannot say who they are (STS: see
 * resolveCliActor, bin/cli/killswitch.ts), for that code and for every help that says it: one list,
 * so that a help cannot name another order than the one read. Loads nothing else: the top-level
 * help (bin/atmr-dr.ts) imports it without loading a command's SDK clients.
 */

/** The variable naming the operator when STS cannot (killswitch and incident also take --by). */
export const OPERATOR_VARIABLE = 'ATMR_OPERATOR';

/** Read in this order when AWS cannot say who the operator is and no --by is given: the first one set names them. */
export const OPERATOR_NAME_VARIABLES = [OPERATOR_VARIABLE, 'USER', 'LOGNAME'] as const;

/** Recorded as the actor when none of OPERATOR_NAME_VARIABLES is set. */
export const UNKNOWN_OPERATOR = 'unknown-operator';

/** That order, as the helps say it: "$ATMR_OPERATOR, else $USER, else $LOGNAME, else unknown-operator". */
export const OPERATOR_NAME_ORDER = [...OPERATOR_NAME_VARIABLES.map((name) => `$${name}`), UNKNOWN_OPERATOR].join(', else ');
