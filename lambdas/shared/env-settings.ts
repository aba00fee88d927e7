import { z } from 'zod';
import { OperatorError } from './errors';

export interface EnvSettingsOptions {
  /** Who reads them, for the message (e.g. "runner environment"). */
  readonly what: string;
  /** How to fix a bad or missing one (e.g. "it is set by the backups construct: redeploy the stack"). */
  readonly fix: string;
}

/**
 * A function's or task's settings from its environment variables, validated once by a zod schema
 * (use `z.coerce` for numbers). A blank variable counts as unset, so defaults apply. The error is one
 * line naming the variable, whether it is missing or invalid, and the fix (exit code 2).
 */
export function parseEnvSettings<S extends z.ZodType>(schema: S, env: NodeJS.ProcessEnv, options: EnvSettingsOptions): z.infer<S> {
  const present = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v.trim() !== ''));
  const parsed = schema.safeParse(present);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  const name = issue.path.map(String).join('.');
  const problem = present[name] === undefined ? 'is not set' : `is invalid (${JSON.stringify(present[name])}: ${issue.message})`;
  throw new OperatorError(`${options.what}: ${name} ${problem}; ${options.fix}`, 2);
}
