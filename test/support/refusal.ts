import { OperatorError } from '../../lambdas/shared/errors';

/** The OperatorError `attempt` rejects with; fails the test if it resolves or rejects with anything else. */
export async function operatorErrorOf(attempt: Promise<unknown>): Promise<OperatorError> {
  const error = await attempt.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(error instanceof OperatorError)) throw new Error(`expected an OperatorError, got ${String(error)}`);
  return error;
}
