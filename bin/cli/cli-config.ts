import { EnvironmentConfig, parseEnvironmentConfig } from '../../lib/config';
import { assertEnvironment, packageRoot, readCdkJson } from './resolve';

/**
 * The environment's validated config from cdk.json (the key is its name). Its own module so that
 * the config's schemas are evaluated only by the commands that read the config (bin/cli/resolve.ts
 * loads it on demand).
 */
export function loadCliConfig(envName: string, root: string = packageRoot()): EnvironmentConfig {
  // The config's own line ends with the synth's flag (-c env=...): on the CLI the flag is --env,
  // and the names it can take are in cdk.json. A wrong --env is a bad command line: exit 2.
  assertEnvironment(envName, root);
  // Without the deploy-only limits: a cdk.json an older version deployed (backups.fargateTimeoutMinutes
  // above today's maximum) must not stop the killswitch, rollbacks or recoveries, which never use them.
  return parseEnvironmentConfig(envName, readCdkJson(root).context?.environments?.[envName], { deployLimits: false });
}
