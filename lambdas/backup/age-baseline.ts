import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { z } from 'zod';
import { OperatorError } from '../shared/errors';
import { safeJson } from '../shared/json';
import { getText, getTextIfExists, lostConditionalWrite, s3Failure } from '../shared/s3-objects';

/**
 * Since when an age counts while there is nothing yet to measure it from: a new deployment has no
 * backup of a tier until that tier's first run (up to a month for the monthly tier) and no
 * restore-test report until the first scheduled test (up to 5 weeks). Reporting no age then either
 * pages at once (missing data breaching: every fresh deploy pages) or never (missing data ignored:
 * a tier that never succeeds is never noticed). Reporting the time since a baseline makes the
 * first backup or report page exactly when it is as overdue as any later one.
 *
 * The baseline is a marker object, written put-if-absent (If-None-Match: *) by the backup runner
 * the first time it finds nothing: at most an hour after the deploy (the hourly schedule), and
 * never moved afterwards, so a run cannot restart the clock. Not the schedules' start: they are
 * created without a start date, and no run knows when the stack was deployed; the marker records
 * when watching actually began, in the bucket the ages are read from, and survives redeploys (no
 * lifecycle rule covers `state/`).
 */

const AgeBaselineSchema = z.object({ schema: z.literal(1), since: z.iso.datetime() });

/** Reads and writes of the marker before giving up while another write keeps meeting ours (409). */
const BASELINE_ATTEMPTS = 3;

/**
 * The baseline at `key`, written with `now` when there is none. Two runs that race both end up
 * with the one that was written first. An unreadable marker is an error (the caller then reports
 * no age, which the alarms read as breaching): it is left for a human, never overwritten.
 */
export async function ageBaseline(s3: S3Client, bucket: string, key: string, now: Date): Promise<Date> {
  for (let attempt = 1; ; attempt += 1) {
    const existing = await getTextIfExists(s3, bucket, key);
    if (existing !== undefined) return parseBaseline(key, existing);
    try {
      await s3.send(
        new PutObjectCommand({ Bucket: bucket, Key: key, Body: `${JSON.stringify({ schema: 1, since: now.toISOString() })}\n`, ContentType: 'application/json', IfNoneMatch: '*' }),
      );
      return now;
    } catch (error) {
      const lost = lostConditionalWrite(error);
      // Another run wrote it between our read and our write, or our own write landed and its answer
      // was lost (the SDK's retry then meets it): the marker there is the baseline.
      if (lost === 'precondition') return parseBaseline(key, await getText(s3, bucket, key));
      // Another write met ours at the same moment (409, which S3 says to retry): it may not have
      // landed either, so read again and write again if there is still none.
      if (lost === 'conflict') {
        if (attempt < BASELINE_ATTEMPTS) continue;
        throw new OperatorError(`S3 refused to write ${key} in bucket ${bucket}: another write to this key met each of ${BASELINE_ATTEMPTS} attempts (ConditionalRequestConflict); the next run writes it`);
      }
      throw s3Failure(`write of ${key}`, bucket, error);
    }
  }
}

function parseBaseline(key: string, text: string): Date {
  const parsed = AgeBaselineSchema.safeParse(safeJson(text));
  if (!parsed.success) {
    throw new OperatorError(`age baseline ${key} is not {"schema": 1, "since": "<ISO time>"}: restore its previous version (the bucket is versioned), or delete it to start the clock again now`);
  }
  return new Date(parsed.data.since);
}
