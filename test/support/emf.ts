/** The EMF documents (CloudWatch embedded metric format) Powertools writes to stdout, for asserting what a function publishes. */

/** Runs fn and returns the EMF documents Powertools wrote to stdout meanwhile. */
export async function captureEmf<T>(fn: () => Promise<T>): Promise<{ result: T; emf: Record<string, unknown>[] }> {
  const lines: string[] = [];
  const spy = jest.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    lines.push(String(chunk));
    return true;
  });
  try {
    const result = await fn();
    const emf = lines
      .flatMap((l) => l.split('\n'))
      .filter((l) => l.includes('"_aws"'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    return { result, emf };
  } finally {
    spy.mockRestore();
  }
}

/** The first EMF document carrying metric `name`: its value, its dimension sets, the document. */
export function metricValue(emf: Record<string, unknown>[], name: string): { value: unknown; dimensions: string[][]; doc: Record<string, unknown> } | undefined {
  const doc = emf.find((d) => name in d);
  if (!doc) return undefined;
  const aws = doc._aws as { CloudWatchMetrics: { Dimensions: string[][] }[] };
  return { value: doc[name], dimensions: aws.CloudWatchMetrics[0].Dimensions, doc };
}
