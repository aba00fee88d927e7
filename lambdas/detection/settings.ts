import { z } from 'zod';
import { OperatorError } from '../shared/errors';

/**
 * What the probe checks, as the construct passes it in one environment variable (`PROBE_SETTINGS`,
 * JSON, no secrets: the database password is read from Secrets Manager at run time).
 */
export const ProbeEnvironmentSchema = z.strictObject({
  /** The environment probed (the construct's), for the --env of the commands the probe prints. */
  environmentName: z.string().min(1).optional(),
  api: z.strictObject({ baseUrl: z.string().url(), timeoutMs: z.number().int().positive() }).optional(),
  osrm: z
    .strictObject({ healthUrl: z.string().url(), timeoutMs: z.number().int().positive(), attempts: z.number().int().min(1).max(10) })
    .optional(),
  redis: z
    .strictObject({
      host: z.string().min(1),
      port: z.number().int().min(1).max(65535),
      tls: z.boolean(),
      timeoutMs: z.number().int().positive(),
      queues: z.array(z.string().min(1)),
      /** Secret holding the AUTH token (read at run time, never in the environment). */
      authSecretArn: z.string().startsWith('arn:').optional(),
    })
    .optional(),
  database: z
    .strictObject({
      host: z.string().min(1),
      port: z.number().int().min(1).max(65535),
      name: z.string().min(1),
      secretArn: z.string().startsWith('arn:'),
      /** libpq sslmode; RDS: require. */
      sslMode: z.enum(['disable', 'require', 'verify-full']).default('require'),
      timeoutMs: z.number().int().positive(),
    })
    .optional(),
  killswitchParameter: z.string().startsWith('/').optional(),
});
export type ProbeEnvironment = z.infer<typeof ProbeEnvironmentSchema>;

/** Parses `PROBE_SETTINGS`; a bad value fails the cold start with one line naming the field. */
export function parseProbeEnvironment(raw: string | undefined): ProbeEnvironment {
  if (!raw) throw new OperatorError('health probe: PROBE_SETTINGS is not set (the detection construct sets it)');
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch {
    throw new OperatorError('health probe: PROBE_SETTINGS is not JSON');
  }
  const result = ProbeEnvironmentSchema.safeParse(json);
  if (!result.success) {
    const issue = result.error.issues[0];
    throw new OperatorError(`health probe: PROBE_SETTINGS.${issue.path.join('.')}: ${issue.message}`);
  }
  return result.data;
}
