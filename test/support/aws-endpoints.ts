import * as http from 'node:http';
import * as net from 'node:net';

/** A local endpoint for the CLI's AWS variables (AWS_ENDPOINT_URL...), and what reached it. */
export interface LocalEndpoint {
  readonly url: string;
  /** Connections (silent endpoint) or requests (CloudFormation) received so far. */
  readonly received: () => number;
  stop(): Promise<void>;
}

/**
 * An endpoint that accepts every connection and never answers a byte: a black-holed VPC endpoint,
 * a hung proxy. Only a timeout of the client's own ends a request to it.
 */
export async function startSilentEndpoint(): Promise<LocalEndpoint> {
  const sockets: net.Socket[] = [];
  const server = net.createServer((socket) => sockets.push(socket));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    received: () => sockets.length,
    stop: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * CloudFormation (its query protocol) in an account where no atmr-dr stack is deployed: every
 * DescribeStacks answers the ValidationError "Stack with id ... does not exist", as AWS does.
 */
export function startCloudFormationWithoutStacks(): Promise<LocalEndpoint> {
  return startCloudFormationAnswering(400, 'ValidationError', (stackName) => `Stack with id ${stackName} does not exist`);
}

/**
 * CloudFormation where the stacks of `outputs` are deployed: DescribeStacks answers each with its
 * outputs (key to value), any other stack with AWS's "does not exist".
 */
export function startCloudFormationWithOutputs(outputs: Record<string, Record<string, string>>): Promise<LocalEndpoint> {
  return startQueryEndpoint((params) => {
    const stackName = params.get('StackName') ?? '';
    const stack = outputs[stackName];
    if (!stack) return queryError(400, 'ValidationError', `Stack with id ${xml(stackName)} does not exist`);
    const members = Object.entries(stack).map(([key, value]) => `<member><OutputKey>${xml(key)}</OutputKey><OutputValue>${xml(value)}</OutputValue></member>`);
    return {
      status: 200,
      body: `<DescribeStacksResponse><DescribeStacksResult><Stacks><member><StackName>${xml(stackName)}</StackName><StackStatus>UPDATE_COMPLETE</StackStatus><Outputs>${members.join('')}</Outputs></member></Stacks></DescribeStacksResult><ResponseMetadata><RequestId>r1</RequestId></ResponseMetadata></DescribeStacksResponse>`,
    };
  });
}

/**
 * CloudFormation refusing the caller, as AWS does for a role without cloudformation:DescribeStacks
 * on the stack (or credentials of another role than the one granted): 403 AccessDenied.
 */
export function startCloudFormationRefusing(delayMs = 0): Promise<LocalEndpoint> {
  return startCloudFormationAnswering(
    403,
    'AccessDenied',
    (stackName) =>
      `User: arn:aws:sts::111111111111:assumed-role/atmr-readonly/bob is not authorized to perform: cloudformation:DescribeStacks on resource: arn:aws:cloudformation:eu-west-3:111111111111:stack/${stackName}/* because no identity-based policy allows the cloudformation:DescribeStacks action`,
    delayMs,
  );
}

/** CloudFormation answering every request with one error of its query protocol, its message naming the stack asked for, after `delayMs`. */
function startCloudFormationAnswering(status: number, code: string, message: (stackName: string) => string, delayMs = 0): Promise<LocalEndpoint> {
  return startQueryEndpointAnswering(status, code, (params) => message(params.get('StackName') ?? ''), delayMs);
}

/**
 * A service of the query protocol (RDS, SNS, CloudFormation) refusing every call as AWS does a role
 * without the right: `code` (RDS's AccessDenied, SNS's AuthorizationError), a message that names
 * neither the call nor the resource.
 */
export function startQueryEndpointRefusing(code: string): Promise<LocalEndpoint> {
  return startQueryEndpointAnswering(403, code, () => 'User: arn:aws:sts::111111111111:assumed-role/atmr-readonly/bob is not authorized to perform this operation');
}

/** A query-protocol service answering every request with one error, its message made from the request's parameters. */
function startQueryEndpointAnswering(status: number, code: string, message: (params: URLSearchParams) => string, delayMs = 0): Promise<LocalEndpoint> {
  return startQueryEndpoint((params) => queryError(status, code, message(params)), delayMs);
}

/** Text escaped for an XML element of a query-protocol answer. */
function xml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** A query-protocol error answer (the ErrorResponse document AWS sends). */
function queryError(status: number, code: string, message: string): { status: number; body: string } {
  return { status, body: `<ErrorResponse><Error><Type>Sender</Type><Code>${code}</Code><Message>${message}</Message></Error><RequestId>r1</RequestId></ErrorResponse>` };
}

/**
 * A local query-protocol service (RDS, SNS, CloudFormation: form-encoded POSTs, XML answers) on
 * 127.0.0.1, answering each request with `answer(its parameters)` after `delayMs`; `received` counts
 * requests.
 */
async function startQueryEndpoint(answer: (params: URLSearchParams) => { status: number; body: string }, delayMs = 0): Promise<LocalEndpoint> {
  let requests = 0;
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk.toString('utf8')));
    req.on('end', () => {
      requests += 1;
      const reply = answer(new URLSearchParams(body));
      setTimeout(() => {
        res.writeHead(reply.status, { 'content-type': 'text/xml' });
        res.end(reply.body);
      }, delayMs);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return { url: `http://127.0.0.1:${port}`, received: () => requests, stop: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

/** One request as a local JSON-protocol endpoint (ECS, DynamoDB) received it: the X-Amz-Target operation and the JSON body. */
export interface EcsRequest {
  readonly operation: string;
  readonly body: Record<string, unknown>;
}

/**
 * ECS, or any service of the same JSON protocol (DynamoDB: `startJsonEndpoint`), answering each request with `answer(request, index)`: a status and a
 * body, or 'reset' to drop the connection before any byte of answer, as a socket reset after ECS
 * has acted on the request does. `received` counts requests; `requests` lists them.
 */
export async function startEcsEndpoint(
  answer: (request: EcsRequest, index: number) => { status: number; body: Record<string, unknown> } | 'reset',
): Promise<LocalEndpoint & { readonly requests: EcsRequest[] }> {
  const requests: EcsRequest[] = [];
  const server = http.createServer((req, res) => {
    let text = '';
    req.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
    req.on('end', () => {
      const request = { operation: String(req.headers['x-amz-target'] ?? '').split('.').pop() ?? '', body: JSON.parse(text || '{}') as Record<string, unknown> };
      requests.push(request);
      const reply = answer(request, requests.length - 1);
      if (reply === 'reset') {
        req.socket.destroy();
        return;
      }
      res.writeHead(reply.status, { 'content-type': 'application/x-amz-json-1.1' });
      res.end(JSON.stringify(reply.body));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    received: () => requests.length,
    stop: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** A DynamoDB (or other JSON-protocol service) endpoint: the same server as startEcsEndpoint. */
export const startJsonEndpoint = startEcsEndpoint;

export interface SsmRequest {
  readonly target: string;
  readonly body: { Name?: string };
  /** The region the request was signed for: its Authorization header's credential scope (<key>/<date>/<region>/ssm/aws4_request). */
  readonly region?: string;
}

/**
 * An SSM endpoint holding one killswitch value (version 3, normal) under any name: GetParameter
 * answers the last value written, PutParameter writes a new version; every request is recorded.
 * `missing`: the names it answers ParameterNotFound for, as SSM does for a parameter never created.
 * `failing`: operations (X-Amz-Target, e.g. AmazonSSM.PutParameter) it never answers ('silent', a
 * hung endpoint) or refuses with a 400 of that error type (AccessDeniedException), writing nothing;
 * `after-put:<type>` refuses it so only once a PutParameter was written (a read-back that fails).
 */
export async function startFakeSsm(
  missing: readonly string[] = [],
  failing: Readonly<Record<string, string>> = {},
): Promise<{ url: string; requests: SsmRequest[]; stop(): Promise<void> }> {
  const requests: SsmRequest[] = [];
  let current = { value: JSON.stringify({ mode: 'normal', reason: 'all clear', actor: 'alice', updatedAt: '2026-11-30T08:00:00.000Z', expiresAt: null }), version: 3 };
  let put = false;
  const server = http.createServer((req, res) => {
    let text = '';
    req.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
    req.on('end', () => {
      const target = String(req.headers['x-amz-target'] ?? '');
      const body = JSON.parse(text || '{}') as { Name?: string; Value?: string };
      const region = /Credential=[^/]+\/\d{8}\/([^/]+)\/ssm\/aws4_request/.exec(String(req.headers.authorization ?? ''))?.[1];
      requests.push({ target, body, region });
      res.setHeader('content-type', 'application/x-amz-json-1.1');
      if (failing[target] === 'silent') return;
      const refusal = failing[target]?.startsWith('after-put:') ? (put ? failing[target].slice('after-put:'.length) : undefined) : failing[target];
      if (refusal !== undefined) {
        res.statusCode = 400;
        res.end(JSON.stringify({ __type: refusal, message: `refused ${target}` }));
      } else if (body.Name !== undefined && missing.includes(body.Name)) {
        res.statusCode = 400;
        res.end(JSON.stringify({ __type: 'ParameterNotFound', message: '' }));
      } else if (target === 'AmazonSSM.GetParameter') {
        res.end(JSON.stringify({ Parameter: { Name: body.Name, Type: 'String', Value: current.value, Version: current.version } }));
      } else if (target === 'AmazonSSM.PutParameter') {
        put = true;
        current = { value: body.Value ?? '', version: current.version + 1 };
        res.end(JSON.stringify({ Version: current.version, Tier: 'Standard' }));
      } else {
        res.statusCode = 400;
        res.end(JSON.stringify({ __type: 'ValidationException', message: `unexpected ${target}` }));
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    stop: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        // A request left unanswered ('silent') would hold close() open.
        server.closeAllConnections();
      }),
  };
}
