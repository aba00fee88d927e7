import * as fs from 'node:fs';
import * as path from 'node:path';

/**
 * The IAM actions a module can ask AWS for, read from the source without running it: the module and
 * every local module it imports (static and `await import`, followed to the end) are scanned for the
 * names they import from the AWS SDK. A Command class, a paginator, lib-storage's Upload or the RDS
 * signer is an API call the code can make; each maps to the IAM action it needs. It over-approximates
 * (a module imported for one helper brings all its calls), never under: a new SDK call anywhere in
 * what a CLI module loads shows up here. `import type` brings no code and is not followed.
 */

/** IAM service prefix of each SDK package. A package missing here fails the scan, named. */
const SERVICE_OF_PACKAGE: Record<string, string> = {
  '@aws-sdk/client-cloudformation': 'cloudformation',
  '@aws-sdk/client-cloudtrail': 'cloudtrail',
  '@aws-sdk/client-cloudwatch': 'cloudwatch',
  '@aws-sdk/client-dynamodb': 'dynamodb',
  '@aws-sdk/client-ecs': 'ecs',
  '@aws-sdk/client-elastic-load-balancing-v2': 'elasticloadbalancing',
  '@aws-sdk/client-eventbridge': 'events',
  '@aws-sdk/client-rds': 'rds',
  '@aws-sdk/client-s3': 's3',
  '@aws-sdk/client-scheduler': 'scheduler',
  '@aws-sdk/client-secrets-manager': 'secretsmanager',
  '@aws-sdk/client-sfn': 'states',
  '@aws-sdk/client-sns': 'sns',
  '@aws-sdk/client-ssm': 'ssm',
  '@aws-sdk/client-sts': 'sts',
  '@aws-sdk/lib-dynamodb': 'dynamodb',
};

/** Calls whose IAM action is not the Command's name. */
const ACTION_OF_CALL: Record<string, string> = {
  // lib-dynamodb's document commands, named after the item operations they send.
  'dynamodb:Get': 'dynamodb:GetItem',
  'dynamodb:Put': 'dynamodb:PutItem',
  'dynamodb:Update': 'dynamodb:UpdateItem',
  'dynamodb:Delete': 'dynamodb:DeleteItem',
  'dynamodb:BatchGet': 'dynamodb:BatchGetItem',
  'dynamodb:BatchWrite': 'dynamodb:BatchWriteItem',
  's3:ListObjectsV2': 's3:ListBucket',
  // Multipart parts and completion are authorized as s3:PutObject.
  's3:Upload': 's3:PutObject',
  // IAM has no s3:HeadObject: a HEAD is authorized as s3:GetObject.
  's3:HeadObject': 's3:GetObject',
};

/** SDK names that make no call (clients, types, errors, helpers) are ignored; these are calls. */
function callOf(pkg: string, name: string): string | undefined {
  if (pkg === '@aws-sdk/lib-storage') return name === 'Upload' ? 's3:Upload' : undefined;
  // The signer makes no call: it signs a token that RDS checks against rds-db:connect.
  if (pkg === '@aws-sdk/rds-signer') return name === 'Signer' ? 'rds-db:connect' : undefined;
  const operation = /^(\w+)Command$/.exec(name)?.[1] ?? /^paginate(\w+)$/.exec(name)?.[1] ?? /^waitUntil(\w+)$/.exec(name)?.[1];
  if (operation === undefined) return undefined;
  const service = SERVICE_OF_PACKAGE[pkg];
  if (service === undefined) throw new Error(`sdk-calls: ${pkg} (imported for ${name}) has no IAM service prefix: add it to SERVICE_OF_PACKAGE`);
  return `${service}:${operation}`;
}

function resolveLocal(from: string, specifier: string): string | undefined {
  const base = path.resolve(path.dirname(from), specifier);
  for (const candidate of [`${base}.ts`, path.join(base, 'index.ts'), base]) {
    if (candidate.endsWith('.ts') && fs.existsSync(candidate)) return candidate;
  }
  return undefined; // .json and the like: no code
}

/** `{ A, B as C, type D }` -> the imported names A, B. */
function importedNames(braces: string): string[] {
  return braces
    .split(',')
    .map((part) => part.trim())
    .filter((part) => part !== '' && !part.startsWith('type '))
    .map((part) => part.split(/\s+as\s+|\s*:\s*/)[0].trim());
}

/** Each call found (as `service:Operation`, see ACTION_OF_CALL) with the files that import it. */
export function sdkCallsOf(entry: string): Map<string, Set<string>> {
  const calls = new Map<string, Set<string>>();
  const seen = new Set<string>();
  const queue = [path.resolve(entry)];
  const root = path.resolve(__dirname, '..', '..');
  while (queue.length > 0) {
    const file = queue.pop() as string;
    if (seen.has(file)) continue;
    seen.add(file);
    const source = fs.readFileSync(file, 'utf8');
    const found: { names: string[]; specifier: string }[] = [];
    // import { A } from 'x'; import X from 'x'; import 'x'; export { A } from 'x' (not `import type`).
    for (const m of source.matchAll(/^\s*(?:import|export)\s+(?!type\s)([\w$*{},\s]*?)\s*(?:from\s+)?'([^']+)'/gm)) {
      found.push({ names: importedNames(/\{([^}]*)\}/.exec(m[1])?.[1] ?? ''), specifier: m[2] });
    }
    // Loaded on use: import('./x') in any form; from the SDK, const { A, B } = await import('x').
    for (const m of source.matchAll(/\bimport\('(\.[^']+)'\)/g)) found.push({ names: [], specifier: m[1] });
    for (const m of source.matchAll(/\{([^{}]*)\}\s*=\s*await import\('(@aws-sdk\/[^']+)'\)/g)) {
      found.push({ names: importedNames(m[1]), specifier: m[2] });
    }
    if (/\bimport\('@aws-sdk\/[^']+'\)\)?\./.test(source)) throw new Error(`sdk-calls: ${file} loads an SDK package without naming what it takes: write const { ... } = await import(...)`);
    for (const { names, specifier } of found) {
      if (specifier.startsWith('.')) {
        const local = resolveLocal(file, specifier);
        if (local) queue.push(local);
      } else if (specifier.startsWith('@aws-sdk/')) {
        for (const name of names) {
          const call = callOf(specifier, name);
          if (call === undefined) continue;
          const action = ACTION_OF_CALL[call] ?? call;
          if (!calls.has(action)) calls.set(action, new Set());
          calls.get(action)?.add(path.relative(root, file));
        }
      }
    }
  }
  return calls;
}
