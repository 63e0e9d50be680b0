import { createServer } from 'node:net';
import type { ChildProcess } from 'node:child_process';
import { ErrorCodes } from '../../src/lib/errors.js';
import { spawnRole, exited } from './processes.js';

/** An answer, timed from the first byte sent to the last byte read. */
export interface TimedAnswer {
  status: number;
  ms: number;
  text: string;
  json: any;
  contentType: string;
  /** no complete answer within the limit */
  timedOut: boolean;
}

export interface TimedRequest {
  method: 'GET' | 'POST' | 'PUT';
  path: string;
  /** raw request body (sent as is, with content-type application/json unless headers say otherwise) */
  body?: string;
  headers?: Record<string, string>;
}

/** Any request slower than this did work proportional to an unchecked input (SPEC 10.7). */
export const ANSWER_LIMIT_MS = 2_000;

/** Sends one request and waits at most `limitMs` (plus a margin to tell a slow answer from none). */
export async function timedRequest(base: string, req: TimedRequest, limitMs = ANSWER_LIMIT_MS): Promise<TimedAnswer> {
  const started = performance.now();
  try {
    const res = await fetch(base + req.path, {
      method: req.method,
      headers: { ...(req.body !== undefined ? { 'content-type': 'application/json' } : {}), ...req.headers },
      body: req.method === 'GET' ? undefined : req.body,
      signal: AbortSignal.timeout(limitMs + 500),
    });
    const text = await res.text();
    let json: any;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return {
      status: res.status,
      ms: performance.now() - started,
      text,
      json,
      contentType: res.headers.get('content-type') ?? '',
      timedOut: false,
    };
  } catch (err) {
    const name = (err as Error).name;
    if (name === 'TimeoutError' || name === 'AbortError') {
      return { status: 0, ms: performance.now() - started, text: '', json: undefined, contentType: '', timedOut: true };
    }
    throw err;
  }
}

/**
 * What an answer may be: a success status (200, 202), or an error as [HTTP status, SPEC code].
 * A case lists every answer SPEC allows for its input; ambiguous inputs list both.
 */
export type Allowed = (number | [number, number])[];

export const VALIDATION: [number, number] = [400, 40000];

const STATUS_OF_CODE = new Map<number, number[]>();
for (const { code, status } of Object.values(ErrorCodes))
  STATUS_OF_CODE.set(code, [...(STATUS_OF_CODE.get(code) ?? []), status]);

/**
 * Why an answer breaks SPEC 2/8 or the case's expectation; null when it is right. Checked: an answer
 * within the limit, JSON (never HTML, never a stack trace), the envelope, a code whose HTTP status is
 * the one of SPEC 8, never a 5xx, and one of the allowed answers.
 */
export function answerProblem(a: TimedAnswer, allowed: Allowed, limitMs = ANSWER_LIMIT_MS): string | null {
  if (a.timedOut) return `no answer within ${limitMs} ms`;
  const shown = `${a.status} ${a.text.slice(0, 160).replace(/\s+/g, ' ')}`;
  if (a.ms > limitMs) return `answered after ${Math.round(a.ms)} ms (> ${limitMs}): ${shown}`;
  if (/<html|<!doctype/i.test(a.text)) return `an HTML page: ${shown}`;
  if (/\n\s+at .+\(.*:\d+:\d+\)|node_modules\/|\/src\/[a-z]/i.test(a.text))
    return `a stack trace or a source path: ${shown}`;
  if (!/^application\/json/.test(a.contentType)) return `content-type ${a.contentType}: ${shown}`;
  if (!a.json || typeof a.json !== 'object' || typeof a.json.success !== 'boolean')
    return `not the SPEC envelope: ${shown}`;
  if (a.status >= 500) return `a ${a.status}: ${shown}`;
  if (a.json.success) {
    if (a.status < 200 || a.status > 299 || a.json.data === undefined)
      return `success with status ${a.status} or no data: ${shown}`;
    return allowed.includes(a.status) ? null : `success, expected ${describeAllowed(allowed)}: ${shown}`;
  }
  const { code, message } = a.json;
  if (typeof code !== 'number' || typeof message !== 'string')
    return `error without a numeric code and a message: ${shown}`;
  if (!(STATUS_OF_CODE.get(code) ?? []).includes(a.status))
    return `code ${code} with HTTP ${a.status}, not SPEC 8's: ${shown}`;
  if (code === 40000 && a.status === 400 && !Array.isArray(a.json.details))
    return `validation error without details: ${shown}`;
  const ok = allowed.some((x) => Array.isArray(x) && x[0] === a.status && x[1] === code);
  return ok ? null : `expected ${describeAllowed(allowed)}: ${shown}`;
}

function describeAllowed(allowed: Allowed): string {
  return allowed.map((x) => (Array.isArray(x) ? `${x[0]}/${x[1]}` : String(x))).join(' or ');
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

/**
 * The API role in a process of its own, joined to a harness through its environment. A request that
 * stalls this process's event loop cannot stall the test: the test times it out and kills the process.
 */
export interface ApiProcess {
  url: string;
  child: ChildProcess;
  /** SIGTERM, and SIGKILL if it has not exited within `graceMs` (a stalled event loop) */
  stop(graceMs?: number): Promise<void>;
}

export async function startApiProcess(env: Record<string, string>): Promise<ApiProcess> {
  const port = await freePort();
  const child = spawnRole('api', { ...env, PORT: String(port), MIGRATE_ON_START: 'false' });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`api process exited with ${child.exitCode}`);
    const up = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(1000) }).then(
      (r) => r.ok,
      () => false,
    );
    if (up) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error('api process did not start within 60 s');
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return {
    url,
    child,
    async stop(graceMs = 5_000) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      try {
        await exited(child, graceMs);
      } catch {
        child.kill('SIGKILL');
        await exited(child, 10_000);
      }
    },
  };
}
