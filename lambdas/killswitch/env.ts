import { z } from 'zod';
import { OperatorError } from '../shared/errors';

/** Validates a handler's environment once, at cold start, naming the missing variable. */
export function handlerEnv<T extends z.ZodRawShape>(shape: T, env: NodeJS.ProcessEnv = process.env): z.infer<z.ZodObject<T>> {
  const result = z.object(shape).safeParse(env);
  if (!result.success) {
    const issue = result.error.issues[0];
    throw new OperatorError(`killswitch handler: environment variable ${issue.path.join('.')}: ${issue.message}`);
  }
  return result.data;
}
