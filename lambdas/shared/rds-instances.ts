import { DBInstance, DescribeDBInstancesCommand, RDSClient } from '@aws-sdk/client-rds';

/** RDS's answer for an instance name that does not exist (the SDK's fault name, or the API's code). */
const notFound = (error: unknown) => ['DBInstanceNotFoundFault', 'DBInstanceNotFound'].includes((error as { name?: string }).name ?? '');

/**
 * The instance named `identifier` as RDS describes it now (one DescribeDBInstances, its TagList
 * included); undefined when there is none. Any other error is thrown.
 */
export async function describeInstance(rds: RDSClient, identifier: string): Promise<DBInstance | undefined> {
  try {
    return (await rds.send(new DescribeDBInstancesCommand({ DBInstanceIdentifier: identifier }))).DBInstances?.[0];
  } catch (error) {
    if (notFound(error)) return undefined;
    throw error;
  }
}
