import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { effectiveMode, MAINTENANCE_EXEMPT_PATHS, parseKillswitchValue } from '../../../lambdas/killswitch/value';

/**
 * docs/killswitch.md gives the Flask API its reader of the parameter: the block is what ATMR copies
 * into the API, so it is run here, as written, against the Node reader on the same values. boto3 and
 * Flask are replaced by the few names the block uses (the value contract is under test, not Flask).
 */
const DOC = path.join(__dirname, '..', '..', '..', 'docs', 'killswitch.md');

function flaskBlock(): string {
  const doc = fs.readFileSync(DOC, 'utf8');
  const section = doc.slice(doc.indexOf('## The same contract in the Flask API'));
  const match = /```python\n([\s\S]*?)```/.exec(section);
  if (!match) throw new Error('no python block in the Flask section of docs/killswitch.md');
  return match[1];
}

/**
 * The block with boto3 and Flask faked: SSM answers read() (the harness defines it), every request
 * reads the parameter afresh (MAX_AGE 0), and answer(path) runs the request hook on a path.
 */
const FAKED_BLOCK = `
import json, os, sys, types
class SSM:
    def get_parameter(self, Name):
        return {"Parameter": {"Value": read()}}
boto3 = types.ModuleType("boto3"); boto3.client = lambda name, **config: SSM(); sys.modules["boto3"] = boto3
class Response:
    def __init__(self, body): self.body, self.status_code, self.headers = body, 200, {}
class App:
    def __init__(self, name): self.config, self.hooks = {}, []
    def before_request(self, fn): self.hooks.append(fn); return fn
flask = types.ModuleType("flask"); flask.Flask = App; flask.jsonify = Response
flask.request = types.SimpleNamespace(path="/")
sys.modules["flask"] = flask
ns = {"__name__": "killswitch_snippet"}
os.environ["KILLSWITCH_PARAMETER"] = "/atmr/test/killswitch"
exec(compile(open(sys.argv[1]).read(), "docs/killswitch.md (Flask block)", "exec"), ns)
ns["MAX_AGE"] = 0.0
app = ns["app"]
hook = app.hooks[0]
def answer(path):
    flask.request = types.SimpleNamespace(path=path); ns["request"] = flask.request
    response = hook()
    return {"path": path, "status": response.status_code if response else 200, "degraded": flask.request.degraded,
            "retryAfter": response.headers.get("Retry-After") if response else None}
`;

const HARNESS = `${FAKED_BLOCK}
values = json.loads(sys.stdin.read())
current = {"raw": None}
read = lambda: current["raw"]
out = []
for raw in values:
    current["raw"] = raw
    for path in ["/api/bookings", "/health", "/ready/"]:
        out.append(answer(path))
print(json.dumps(out))
`;

/**
 * Requests on threads, each stopped between two bytecodes of the request hook while another
 * thread's refresh replaces the value: what free-threaded Python (3.13t and later, no GIL) allows
 * at any point, run here deterministically (a trace function does the other thread's refresh at
 * every bytecode of the hook). SSM answers the two values of argv[2] (JSON) in turn; one request
 * per parity, so each value is the one in memory when some request starts.
 */
const PREEMPTED_HARNESS = `${FAKED_BLOCK}
values = json.loads(sys.argv[2])
reads = iter(range(10**9))
read = lambda: values[next(reads) % 2]
def refresh_between_bytecodes(frame, event, arg):
    if frame.f_code is not hook.__code__: return None
    frame.f_trace_opcodes = True
    if event == "opcode": ns["killswitch"]("/atmr/test/killswitch")
    return refresh_between_bytecodes
out = []
for _ in range(2):
    next(reads)
    sys.settrace(refresh_between_bytecodes)
    try: out.append(answer("/api/bookings"))
    finally: sys.settrace(None)
print(json.dumps(out))
`;

/**
 * The block as written, with the real Flask, started the way the API's container starts it: with
 * KILLSWITCH_PARAMETER from the environment as given in argv[2] (absent when "-", empty when "").
 * Prints the import's exception, else the statuses of an API path and /health and the names read
 * from SSM (a fake client answering maintenance replaces boto3's).
 */
const STARTUP_HARNESS = `
import json, os, sys
os.environ.update(AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="x", AWS_DEFAULT_REGION="eu-west-3")
os.environ.pop("KILLSWITCH_PARAMETER", None)
if sys.argv[2] != "-": os.environ["KILLSWITCH_PARAMETER"] = sys.argv[2]
ns = {"__name__": "killswitch_snippet"}
try:
    exec(compile(open(sys.argv[1]).read(), "docs/killswitch.md (Flask block)", "exec"), ns)
except Exception as exc:
    print(json.dumps({"importError": f"{type(exc).__name__}: {exc}"})); sys.exit(0)
names = []
class SSM:
    def get_parameter(self, Name):
        names.append(Name)
        return {"Parameter": {"Value": json.dumps({"mode": "maintenance", "reason": "r", "actor": "a",
                                                   "updatedAt": "2026-12-02T04:00:00Z", "expiresAt": None})}}
ns["_ssm"] = SSM()
app = ns["app"]
app.add_url_rule("/health", "health", lambda: "ok"); app.add_url_rule("/api/<name>", "api", lambda name: "ok")
client = app.test_client()
print(json.dumps({"importError": None, "api": client.get("/api/bookings").status_code,
                  "health": client.get("/health").status_code, "read": names}))
`;

/** What the Node readers answer for a raw value on each path (503 in maintenance but on /health and /ready). */
function nodeAnswers(raw: string, now: number): { path: string; status: number; degraded: boolean }[] {
  const parsed = parseKillswitchValue(raw);
  const mode = parsed.ok ? effectiveMode(parsed.value, now) : 'normal';
  return ['/api/bookings', '/health', '/ready/'].map((p) => ({
    path: p,
    status: mode === 'maintenance' && !MAINTENANCE_EXEMPT_PATHS.includes(p.replace(/\/+$/, '')) ? 503 : 200,
    degraded: mode === 'degraded',
  }));
}

const valid = { mode: 'maintenance', reason: 'OSRM down', actor: 'alice', updatedAt: '2026-12-02T04:00:00.000Z', expiresAt: null };
const VALUES: Record<string, string> = {
  'maintenance, no expiry': JSON.stringify(valid),
  'degraded': JSON.stringify({ ...valid, mode: 'degraded' }),
  'normal': JSON.stringify({ ...valid, mode: 'normal' }),
  'maintenance, expired': JSON.stringify({ ...valid, expiresAt: '2000-01-01T00:00:00Z' }),
  'maintenance, expires later, offset and nanoseconds': JSON.stringify({ ...valid, expiresAt: '2100-01-01T01:00:00.123456789+01:00' }),
  'expiresAt typed by hand ("2h")': JSON.stringify({ ...valid, expiresAt: '2h' }),
  'expiresAt without its offset': JSON.stringify({ ...valid, expiresAt: '2100-01-01T00:00:00' }),
  'expiresAt a date that does not exist': JSON.stringify({ ...valid, expiresAt: '2100-02-30T00:00:00Z' }),
  'expiresAt a number': JSON.stringify({ ...valid, expiresAt: 4102444800 }),
  'updatedAt missing': JSON.stringify({ mode: 'maintenance', reason: 'r', actor: 'a', expiresAt: null }),
  'an extra key': JSON.stringify({ ...valid, ticket: 'INC-1' }),
  'reason over 500 characters': JSON.stringify({ ...valid, reason: 'x'.repeat(501) }),
  'reason of 500 characters': JSON.stringify({ ...valid, reason: 'x'.repeat(500) }),
  'empty actor': JSON.stringify({ ...valid, actor: '' }),
  'unknown mode': JSON.stringify({ ...valid, mode: 'MAINTENANCE' }),
  'mode a list': JSON.stringify({ ...valid, mode: ['maintenance'] }),
  'a JSON array': JSON.stringify([valid]),
  'not JSON': 'maintenance',
  // Fits a 4 KB Standard parameter; deeper than Python's json parses (RecursionError, not a ValueError).
  'nested 2,000 deep': '['.repeat(2000) + ']'.repeat(2000),
};

/**
 * The block as written, with the real boto3 and Flask, against an SSM endpoint on 127.0.0.1 that
 * accepts connections and never answers. Prints how long each request took and its status.
 * `warm`: a first read had returned maintenance (its state is in memory, now stale).
 */
const SILENT_SSM_HARNESS = `
import json, os, socket, sys, threading, time
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(50)
conns = []
threading.Thread(target=lambda: [conns.append(srv.accept()[0]) for _ in iter(int, 1)], daemon=True).start()
os.environ.update(AWS_ENDPOINT_URL_SSM=f"http://127.0.0.1:{srv.getsockname()[1]}", AWS_ACCESS_KEY_ID="x",
                  AWS_SECRET_ACCESS_KEY="x", AWS_DEFAULT_REGION="eu-west-3", KILLSWITCH_PARAMETER="/atmr/test/killswitch")
ns = {"__name__": "killswitch_snippet"}
exec(compile(open(sys.argv[1]).read(), "docs/killswitch.md (Flask block)", "exec"), ns)
app = ns["app"]
app.add_url_rule("/health", "health", lambda: "ok"); app.add_url_rule("/api/<name>", "api", lambda name: "ok")
if sys.argv[2] == "warm":
    ns["_state"] = ns["State"](mode="maintenance", expires=None, fresh_until=0.0, settled=True)
out = {}
def get(key, path):
    start = time.monotonic()
    status = app.test_client().get(path).status_code
    out[key] = {"status": status, "seconds": round(time.monotonic() - start, 2)}
refresh = threading.Thread(target=get, args=("refreshing", "/api/a"), daemon=True); refresh.start()
time.sleep(0.3)                                   # the refresh is now waiting on the silent SSM
for key, path in (("health", "/health"), ("meanwhile", "/api/b")):
    t = threading.Thread(target=get, args=(key, path), daemon=True); t.start(); t.join(1.5)
refresh.join(10)
print(json.dumps(out))
`;

describe('the Flask reader of docs/killswitch.md', () => {
  let dir: string;
  let block: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'atmr-dr-flask-'));
    block = path.join(dir, 'snippet.py');
    fs.writeFileSync(block, flaskBlock());
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  const silentSsm = (state: 'cold' | 'warm') =>
    JSON.parse(execFileSync('python3', ['-c', SILENT_SSM_HARNESS, block, state], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 30_000 })) as Record<
      'refreshing' | 'health' | 'meanwhile',
      { status: number; seconds: number } | undefined
    >;

  const startUp = (variable: string) =>
    JSON.parse(execFileSync('python3', ['-c', STARTUP_HARNESS, block, variable], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 30_000 })) as {
      importError: string | null;
      api?: number;
      health?: number;
      read?: string[];
    };

  it('reads the parameter named by KILLSWITCH_PARAMETER, the variable the prose tells the task definition to set', () => {
    expect(startUp('/atmr/prod/killswitch')).toEqual({ importError: null, api: 503, health: 200, read: ['/atmr/prod/killswitch'] });
  }, 40_000);

  it.each([
    ['unset', '-'],
    ['empty', ''],
  ])('refuses to start with KILLSWITCH_PARAMETER %s, naming it, instead of answering 500 to every request behind a healthy /health', (_, variable) => {
    const { importError } = startUp(variable);

    expect(importError).toMatch(/KILLSWITCH_PARAMETER.*KillswitchParameterName/);
  }, 40_000);

  it('answers /health at once while SSM is silent, and the first read fails open within seconds', () => {
    const answers = silentSsm('cold');

    expect(answers.health).toEqual({ status: 200, seconds: expect.any(Number) });
    expect(answers.health?.seconds).toBeLessThan(1);
    expect(answers.refreshing).toEqual({ status: 200, seconds: expect.any(Number) });
    expect(answers.refreshing?.seconds).toBeLessThan(8);
  }, 40_000);

  it('answers other requests from the last known state (maintenance) while a refresh waits on the silent SSM', () => {
    const answers = silentSsm('warm');

    expect(answers.health?.status).toBe(200);
    expect(answers.health?.seconds).toBeLessThan(1);
    expect(answers.meanwhile?.status).toBe(503);
    expect(answers.meanwhile?.seconds).toBeLessThan(1);
    expect(answers.refreshing?.status).toBe(503);
    expect(answers.refreshing?.seconds).toBeLessThan(8);
  }, 40_000);

  it('answers as the Node reader for every value, valid or malformed, and never raises (no 500 for a value typed by hand)', () => {
    const raws = Object.values(VALUES);

    const python = JSON.parse(execFileSync('python3', ['-c', HARNESS, block], { input: JSON.stringify(raws), encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] })) as {
      path: string;
      status: number;
      degraded: boolean;
      retryAfter: string | null;
    }[];

    const now = Date.now();
    const byValue = Object.keys(VALUES).map((name, i) => ({ name, python: python.slice(i * 3, i * 3 + 3).map(({ path: p, status, degraded }) => ({ path: p, status, degraded })) }));
    expect(byValue).toEqual(Object.entries(VALUES).map(([name, raw]) => ({ name, python: nodeAnswers(raw, now) })));
    // The malformed values all count as normal, and maintenance still says when to come back.
    expect(python.slice(0, 3).map((a) => [a.status, a.retryAfter])).toEqual([[503, '120'], [200, null], [200, null]]);
    expect(Number(python[4 * 3].retryAfter)).toBeGreaterThan(60 * 86400);
  });

  it("never answers with one read's mode and another's expiry when a refresh lands in the middle of a request (gunicorn --threads)", () => {
    // maintenance without expiry (503, come back in 120 s) and degraded that has expired (normal):
    // a request pairing degraded with the other's "no expiry" would serve degraded, which neither says.
    const values = [VALUES['maintenance, no expiry'], JSON.stringify({ ...valid, mode: 'degraded', expiresAt: '2000-01-01T00:00:00Z' })];

    const answers = JSON.parse(execFileSync('python3', ['-c', PREEMPTED_HARNESS, block, JSON.stringify(values)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })) as unknown[];

    const eitherValue = [
      { path: '/api/bookings', status: 503, degraded: false, retryAfter: '120' },
      { path: '/api/bookings', status: 200, degraded: false, retryAfter: null },
    ];
    expect(answers).toHaveLength(2);
    for (const answer of answers) expect(eitherValue).toContainEqual(answer);
  });
});
