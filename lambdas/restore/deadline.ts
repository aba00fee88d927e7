import { DEADLINE_MARGIN_MS } from '../shared/deadline';
import { RECONNECT_BOUND_MS, SWAP_STATEMENT_BOUND_MS } from './session';

/**
 * The restore-test function's time limit (Lambda's maximum). The construct sets it, and warns at
 * synth when the RTO objective is longer than what a run of this length can measure.
 */
export const RESTORE_FUNCTION_TIMEOUT_SECONDS = 900;

/**
 * How long before Lambda's limit a restore stops. The swap does not stop when told (stopped
 * halfway, the target would be left aside), so a swap that started just before the stop must end
 * within the margin: at the most seven statements that each wait SWAP_STATEMENT_BOUND_MS for their
 * answer (with terminateConnections: close the target, end its sessions, the wait for them to go;
 * then the rename aside, the rename in, the rename back when the server refuses the one in, and
 * the target's reopening), the session coming back once between two of them (RECONNECT_BOUND_MS:
 * a connection dropped while the target is aside is the window a kill must not cut; one that
 * cannot come back ends the swap), and the usual DEADLINE_MARGIN_MS for the rest (the report). A
 * rename whose answer is lost ends the swap there (Unsettled): nothing follows it. The drop of
 * what the target was (dropReplaced), or the reopening of the copy kept after a
 * terminateConnections swap, comes after the swap: killed there, the next restore names it.
 */
export const RESTORE_DEADLINE_MARGIN_MS = DEADLINE_MARGIN_MS + 7 * SWAP_STATEMENT_BOUND_MS + RECONNECT_BOUND_MS;

/**
 * The longest RTO one run of the function can measure: a restore still running then is stopped,
 * and reported as "RTO > N s" with N at most this.
 */
export const MEASURABLE_RTO_SECONDS = Math.floor(RESTORE_FUNCTION_TIMEOUT_SECONDS - RESTORE_DEADLINE_MARGIN_MS / 1000);

/**
 * The reason the function's deadline aborts a run with. Only this stop says "RTO > N s" (a restore
 * the run cannot hold); an operator's Ctrl-C or SIGTERM of the CLI says only that it was interrupted.
 * The name stays Error's, so that the lines quoting it are unchanged.
 */
export class FunctionDeadlineStop extends Error {}
