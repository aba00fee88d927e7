import { Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';

/**
 * `events:PutEvents` on the account's default event bus of the stack's region, where every atmr-dr
 * announcement goes (the killswitch, the backout, the recovery, the runbook's first actions): the
 * one bus ATMR's rules listen on, and no other.
 */
export function putEventsOnDefaultBus(stack: Stack, sid?: string): iam.PolicyStatement {
  return new iam.PolicyStatement({
    ...(sid && { sid }),
    actions: ['events:PutEvents'],
    resources: [stack.formatArn({ service: 'events', resource: 'event-bus', resourceName: 'default' })],
  });
}
