import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import middy from '@middy/core';
import { z } from 'zod';
import { observability } from '../shared/observability';
import { backoutClients } from './clients';
import { BACKOUT_METRICS_SERVICE } from './metrics';
import { recordAfterBake } from './lkg';
import { BACKOUT_SETTINGS_ENV, BackoutSettings, parseBackoutSettings } from './settings';
import { BackoutDeps, checkSteady, finishDowngradeStep, guards, postChecks, prepareDowngradeStep, report, RollbackState, rollOutStep } from './workflow';

const { logger, metrics } = observability(BACKOUT_METRICS_SERVICE);

/**
 * Which step of the two workflows (rollback, last-known-good bake) to run, with its state.
 * `execution`: the rollback workflow's execution name, owner of what the guards take (guards, report).
 */
const execution = z.string().min(1).optional();
const StepSchema = z.discriminatedUnion('action', [
  z.strictObject({ action: z.literal('guards'), input: z.unknown(), execution }),
  z.strictObject({ action: z.literal('record-lkg'), event: z.unknown() }),
  z.strictObject({ action: z.literal('report'), state: z.looseObject({ service: z.string() }), execution }),
  z.strictObject({
    action: z.enum(['prepare-downgrade', 'finish-downgrade', 'roll-out', 'check-steady', 'post-checks']),
    state: z.looseObject({ service: z.string() }),
  }),
]);

/** The step runner over given settings and clients (the tests pass theirs). */
export function stepRunner(settings: BackoutSettings, deps: BackoutDeps): (event: unknown) => Promise<unknown> {
  return async (event) => {
    const parsed = StepSchema.parse(event);
    switch (parsed.action) {
      case 'guards':
        return guards(deps, settings, parsed.input, parsed.execution);
      case 'record-lkg':
        return recordAfterBake(deps, settings, parsed.event);
      case 'report':
        return report(deps, settings, parsed.state as unknown as RollbackState, parsed.execution);
      default: {
        const state = parsed.state as unknown as RollbackState;
        const run = { 'prepare-downgrade': prepareDowngradeStep, 'finish-downgrade': finishDowngradeStep, 'roll-out': rollOutStep, 'check-steady': checkSteady, 'post-checks': postChecks }[parsed.action];
        return run(deps, settings, state);
      }
    }
  };
}

let runner: ((event: unknown) => Promise<unknown>) | undefined;

/** Thin adapter: one function runs every step of both workflows, so they share one role and one log group. */
export async function step(event: unknown): Promise<unknown> {
  runner ??= stepRunner(parseBackoutSettings(process.env[BACKOUT_SETTINGS_ENV]), { ...backoutClients(), logger, metrics });
  return runner(event);
}

export const handler = middy(step).use(injectLambdaContext(logger)).use(logMetrics(metrics));
