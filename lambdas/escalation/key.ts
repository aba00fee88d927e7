import { getSecret } from '@aws-lambda-powertools/parameters/secrets';

/** The HMAC key of the acknowledgement links, from Secrets Manager (cached 5 minutes: a rotation is picked up within that time). */
export async function readAckLinkKey(arn: string): Promise<string> {
  const secret = await getSecret(arn, { maxAge: 300 });
  if (typeof secret !== 'string' || secret.length < 32) throw new Error('acknowledgement link key is missing or shorter than 32 characters');
  return secret;
}
