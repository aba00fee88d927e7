import { EnvironmentConfig, parseEnvironmentConfig } from '../../lib/config';
import { packageRoot, readCdkJson } from './resolve';

/**
 * The environment's validated config from cdk.json (the key is its name). Its own module so that
 * the config's schemas are evaluated only by the commands that read the config (bin/cli/resolve.ts
 * loads it on demand).
 */
export function loadCliConfig(envName: string, root: string = packageRoot()): EnvironmentConfig {
  return parseEnvironmentConfig(envName, readCdkJson(root).context?.environments?.[envName]);
}
