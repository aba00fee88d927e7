/**
 * When a create request of RDS (CreateDBSnapshot, RestoreDBInstanceToPointInTime, ...) carries
 * tags, RDS also authorizes rds:AddTagsToResource on the new resource. This says whether an Allow
 * statement's Condition admits that check for the given tags, as IAM evaluates it: the request
 * context holds aws:RequestTag/<key> for each tag and aws:TagKeys, nothing else a test can know;
 * any other key (such as a condition key RDS does not define) is absent, and StringEquals on an
 * absent key does not match. Operators this helper does not model throw, so no test passes
 * on a condition it did not read.
 */
export function admitsTagsOfCreate(condition: Record<string, unknown> | undefined, tags: readonly { Key?: string; Value?: string }[]): boolean {
  const requestTags = new Map(tags.map((t) => [t.Key ?? '', t.Value ?? '']));
  const single = (key: string): string | undefined => (key.startsWith('aws:RequestTag/') ? requestTags.get(key.slice('aws:RequestTag/'.length)) : undefined);
  const list = (values: unknown): string[] => (Array.isArray(values) ? values.map(String) : [String(values)]);
  for (const [operator, entries] of Object.entries(condition ?? {})) {
    for (const [key, values] of Object.entries(entries as Record<string, unknown>)) {
      if (operator === 'StringEquals') {
        const value = single(key);
        if (value === undefined || !list(values).includes(value)) return false;
      } else if (operator === 'ForAllValues:StringEquals' && key === 'aws:TagKeys') {
        if (![...requestTags.keys()].every((k) => list(values).includes(k))) return false;
      } else {
        throw new Error(`admitsTagsOfCreate: ${operator} on ${key} is not modelled`);
      }
    }
  }
  return true;
}
