import { CloudTrailClient, DescribeTrailsCommand, GetTrailStatusCommand, type Trail } from '@aws-sdk/client-cloudtrail';
import { awsReason } from '../../lambdas/escalation/replies';

/** What the trail feeds, for the lines below: the on-call must know which pages it silences. */
const WHAT_IT_FEEDS =
  'the key guard (Backups-KeyDeletionOrDisable, the one page left when the operations key is disabled) and RunnerStopped\'s RunTask records come from CloudTrail through EventBridge, which delivers them only while a trail logs management events';

/** The commands that fix it, for a new trail (the console makes every new trail multi-region too). */
const CREATE_TRAIL =
  'aws cloudtrail create-trail --name atmr-dr-management --s3-bucket-name <a bucket whose policy lets CloudTrail write> --is-multi-region-trail, then aws cloudtrail start-logging --name atmr-dr-management (management events, read and write, are its default)';

/** A trail logs the region's calls when it lives there or is multi-region (its shadow is listed there too). */
const logsRegion = (trail: Trail, region: string): boolean => trail.HomeRegion === region || trail.IsMultiRegionTrail === true;

/**
 * Undefined when a CloudTrail trail logs `region`'s calls and is logging; else the problem and its
 * fix, in one line. EventBridge gets the "AWS API Call via CloudTrail" events that the key guard's
 * rule matches (kms DisableKey, ScheduleKeyDeletion, PutKeyPolicy) only while such a trail logs: with
 * none, nothing says so, and a disabled operations key silences every page, that one included. A
 * call refused or failed is a problem too: whether the key guard can fire is then unknown.
 *
 * The trail's event selectors are not read: a trail set to log no management events, or to exclude
 * KMS's, passes here.
 */
export async function trailProblem(cloudtrail: CloudTrailClient, region: string): Promise<string | undefined> {
  try {
    // Shadow trails included: a multi-region trail of another home region logs this one too.
    const { trailList = [] } = await cloudtrail.send(new DescribeTrailsCommand({ includeShadowTrails: true }));
    const candidates = trailList.filter((trail) => logsRegion(trail, region));
    const stopped: string[] = [];
    for (const trail of candidates) {
      // By ARN: a shadow trail's status is read only by its ARN.
      const { IsLogging } = await cloudtrail.send(new GetTrailStatusCommand({ Name: trail.TrailARN ?? trail.Name }));
      if (IsLogging) return undefined;
      stopped.push(trail.Name ?? trail.TrailARN ?? '(unnamed)');
    }
    if (stopped.length > 0) {
      return `no CloudTrail trail is logging in ${region}: ${stopped.join(', ')} ${stopped.length === 1 ? 'is' : 'are'} stopped, and ${WHAT_IT_FEEDS}: aws cloudtrail start-logging --name ${stopped[0]} (in its home region), then run this again`;
    }
    return `no CloudTrail trail logs ${region}: ${WHAT_IT_FEEDS}: ${CREATE_TRAIL}, then run this again`;
  } catch (error) {
    return `whether a CloudTrail trail logs ${region} could not be checked (${awsReason(error)}): ${WHAT_IT_FEEDS}; grant cloudtrail:DescribeTrails and cloudtrail:GetTrailStatus (docs/operator-permissions.md), or check by hand with aws cloudtrail describe-trails and get-trail-status`;
  }
}
