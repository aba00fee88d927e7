import { z } from 'zod';
import { RECOVERY_ID_PATTERN } from './contract';
import { WorkflowDeps, cleanupStep, passwordStatusStep, reportStep, resetPasswordStep, restoreStep, statusStep, verifyStep } from './workflow';

/** The workflow's states call one function with `{step, request, ...}`; this validates and dispatches (no Lambda runtime here, so benches and tests run it as is). */
const RequestSchema = z.strictObject({
  recoveryId: z.string().regex(RECOVERY_ID_PATTERN),
  toTime: z.iso.datetime({ offset: true }),
  newInstance: z.string().min(1),
  actor: z.string().min(1),
  reason: z.string().min(1),
  requestedAt: z.iso.datetime({ offset: true }),
});

const InstanceSchema = z.object({ ready: z.boolean(), expired: z.boolean(), status: z.string(), host: z.string(), port: z.number().optional() });
const ErrorSchema = z.object({ Error: z.string().optional(), Cause: z.string().optional() });

/** What each state of the workflow sends (the request is the execution's input). */
const EventSchema = z.discriminatedUnion('step', [
  z.strictObject({ step: z.literal('restore'), request: RequestSchema }),
  z.strictObject({ step: z.literal('status'), request: RequestSchema }),
  z.strictObject({ step: z.literal('verify'), request: RequestSchema, instance: InstanceSchema }),
  z.strictObject({ step: z.literal('reset-password'), request: RequestSchema, instance: InstanceSchema, loginError: ErrorSchema.optional() }),
  z.strictObject({ step: z.literal('password-status'), request: RequestSchema, reset: z.object({ requestedAt: z.iso.datetime({ offset: true }) }) }),
  z.strictObject({ step: z.literal('report'), request: RequestSchema, verification: z.object({ ok: z.boolean(), report: z.any() }) }),
  z.strictObject({ step: z.literal('cleanup'), request: RequestSchema, error: ErrorSchema.optional() }),
]);

export async function dispatchStep(event: unknown, deps: WorkflowDeps, log: (message: string, fields: Record<string, unknown>) => void = () => undefined): Promise<unknown> {
  const input = EventSchema.parse(event);
  log('recovery step', { step: input.step, recoveryId: input.request.recoveryId });
  switch (input.step) {
    case 'restore':
      return restoreStep(deps, input.request);
    case 'status':
      return statusStep(deps, input.request);
    case 'verify':
      return verifyStep(deps, { ...input.request, instance: input.instance });
    case 'reset-password':
      return resetPasswordStep(deps, { ...input.request, instance: input.instance, loginError: input.loginError });
    case 'password-status':
      return passwordStatusStep(deps, { ...input.request, reset: input.reset });
    case 'report':
      return reportStep(deps, { ...input.request, verification: input.verification });
    case 'cleanup':
      return cleanupStep(deps, { ...input.request, error: input.error }, log);
  }
}
