import type { NotFoundError } from '../../lambdas/shared/errors';
import { beforeFirstAwsRequest, isAwsRegionName } from '../../lambdas/shared/sdk-retry';
import { defaultEnvironmentName, packageRoot, readCdkJson } from './resolve';

/**
 * When the operator set no region, the region of the cdk.json environment the command works on
 * (`envName`, else cdk.json's `env`), which is where its stacks are deployed: set as AWS_REGION
 * for every client the command builds, and said once on stderr just before the command's first
 * AWS request (a command that sends none does not say it). Without it, the night's first command
 * (`killswitch status` with credentials and no AWS_REGION) failed on "no AWS region is set".
 *
 * The operator's own choice is kept: AWS_REGION or AWS_DEFAULT_REGION set (even empty or malformed,
 * which the checks of useOperatorSdkSettings then refuse), or a region the SDK's own chain finds
 * (the profile's `region` in the shared config files, the EC2 instance's). The SDK's chain is asked
 * only when cdk.json has a region to offer, so that a command without one pays nothing for it.
 * Called once by bin/atmr-dr.ts, before the command's action builds any client.
 */
export async function useEnvironmentRegion(envName: string | undefined, env: NodeJS.ProcessEnv = process.env): Promise<void> {
  if (env.AWS_REGION !== undefined || env.AWS_DEFAULT_REGION !== undefined) return;
  const environment = environmentRegion(envName);
  if (!environment || (await sdkRegion()) !== undefined) return;
  env.AWS_REGION = environment.region;
  // Said when the region is first used: a command line its own checks refuse (a bad --to-time)
  // gets its one line, not a notice about a region it never reached.
  beforeFirstAwsRequest(() => process.stderr.write(`atmr-dr: no AWS region set: using ${environment.region}, the region of environment ${environment.name} in cdk.json\n`));
}

/**
 * The line of a name not found (a stack not deployed, a table, a parameter, a cluster that does not
 * exist): it names the region it was looked for in, and when cdk.json puts the environment
 * (`envName`, else cdk.json's `env`) in another region, says that first, with the setting that fixes
 * it: on the worst day, an AWS_REGION left at us-east-1 sent the on-call to --table, which looked in
 * the same wrong region. The region is the one the command's clients used (AWS_REGION, else the
 * SDK's own chain), the same loader as theirs.
 */
export async function notFoundLine(error: NotFoundError, envName: string | undefined): Promise<string> {
  const region = await sdkRegion();
  if (region === undefined) return error.message;
  const environment = environmentRegion(envName);
  if (environment && environment.region !== region) {
    return `${error.subject} in ${region}, but cdk.json puts environment "${environment.name}" in ${environment.region}: set AWS_REGION=${environment.region}; else ${error.fix}`;
  }
  return `${error.subject} in ${region}: ${error.fix}`;
}

/** The environment's name and region in cdk.json, or undefined when cdk.json names none. */
function environmentRegion(envName: string | undefined): { name: string; region: string } | undefined {
  try {
    const root = packageRoot();
    const name = envName ?? defaultEnvironmentName(root);
    const region = (readCdkJson(root).context?.environments?.[name] as { region?: unknown } | undefined)?.region;
    return typeof region === 'string' && isAwsRegionName(region) ? { name, region } : undefined;
  } catch {
    // No cdk.json, or one that cannot be read: the command says so itself if it needs it; else
    // the missing region keeps its own line.
    return undefined;
  }
}

/** The region the SDK's clients would resolve with no AWS_REGION: its own loader, so that they agree. */
async function sdkRegion(): Promise<string | undefined> {
  const { loadConfig, NODE_REGION_CONFIG_OPTIONS, NODE_REGION_CONFIG_FILE_OPTIONS } = await import('@smithy/core/config');
  try {
    return await loadConfig(NODE_REGION_CONFIG_OPTIONS, NODE_REGION_CONFIG_FILE_OPTIONS)();
  } catch {
    return undefined;
  }
}
