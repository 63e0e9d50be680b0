import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import type { ValidateFunction } from 'ajv';
import { loadConfig } from '../../src/config/config.js';
import { buildOpenApiDocument } from '../../src/api/openapi.document.js';

/*
 * Records every answer of the service that this test process receives through fetch (the harness's
 * calls, the payment simulator's callbacks, tests' own fetches) and checks each against the OpenAPI
 * document: status documented for the operation, content type documented, JSON body valid against
 * the documented schema. For a whole run, load this file as a mocha `--require` (or list it under
 * "require" in .mocharc): its root hooks fail the run on any mismatch (OPENAPI_RECORD=0 turns them
 * off). A test can also install a recorder of its own (openapi.test.ts).
 */

export interface RecordedAnswer {
  method: string;
  url: string;
  status: number;
  contentType: string;
  /** parsed JSON, or undefined for other content (never read: a CSV export may be huge) */
  json?: unknown;
}

type Json = Record<string, any>;
const addFormats = addFormatsModule as unknown as (ajv: Ajv2020) => Ajv2020;
const DOC_ID = 'https://billing.invalid/openapi.json';
const pointer = (...parts: string[]) =>
  parts.map((p) => encodeURIComponent(p.replace(/~/g, '~0').replace(/\//g, '~1'))).join('/');

export class OpenApiRecorder {
  readonly answers: RecordedAnswer[] = [];
  private original: typeof fetch | null = null;

  install(): this {
    if (this.original) return this;
    const original = globalThis.fetch;
    this.original = original;
    const answers = this.answers;
    globalThis.fetch = async function recordingFetch(input: string | URL | Request, init?: RequestInit) {
      const res = await original(input, init);
      const url = input instanceof Request ? input.url : String(input);
      const method = (init?.method ?? (input instanceof Request ? input.method : 'GET')).toUpperCase();
      const contentType = res.headers.get('content-type') ?? '';
      const entry: RecordedAnswer = { method, url, status: res.status, contentType };
      if (/^application\/json/.test(contentType)) {
        try {
          entry.json = JSON.parse(await res.clone().text());
        } catch {
          entry.json = Symbol.for('unparsable JSON');
        }
      }
      answers.push(entry);
      return res;
    } as typeof fetch;
    return this;
  }

  uninstall(): void {
    if (this.original) globalThis.fetch = this.original;
    this.original = null;
  }
}

/** Checks answers against a document; returns one line per problem (empty: all conform). */
export class OpenApiChecker {
  private readonly ajv = addFormats(new Ajv2020({ strict: false, allErrors: true }));
  private readonly compiled = new Map<string, ValidateFunction>();
  private readonly routes: { method: string; path: string; pattern: RegExp }[] = [];

  constructor(readonly document: Json) {
    this.ajv.addSchema({ ...document, $id: DOC_ID });
    for (const [path, ops] of Object.entries(document.paths as Json)) {
      const pattern = new RegExp(`^${path.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\{[^}]+\}/g, '[^/]+')}$`);
      for (const method of Object.keys(ops)) this.routes.push({ method: method.toUpperCase(), path, pattern });
    }
  }

  /** The documented operation an answer belongs to (method and path template), if any. */
  operationOf(a: { method: string; url: string }): { method: string; path: string } | undefined {
    const path = new URL(a.url).pathname;
    return this.routes.find((r) => r.method === a.method && r.pattern.test(path));
  }

  private validator(ref: string): ValidateFunction {
    let v = this.compiled.get(ref);
    if (!v) {
      v = this.ajv.compile({ $ref: `${DOC_ID}#/${ref}` });
      this.compiled.set(ref, v);
    }
    return v;
  }

  check(a: RecordedAnswer): string[] {
    const where = `${a.method} ${a.url} → ${a.status}`;
    const op = this.operationOf(a);
    const ours = typeof a.json === 'object' && a.json !== null && 'success' in a.json;
    if (!op) {
      // Not a documented operation: either not this service (the simulator's pages), or an error
      // answer of ours (an unknown route), which must still be a documented error.
      if (!ours) return [];
      const v = this.validator(pointer('components', 'schemas', 'Error'));
      return v(a.json) ? [] : [`${where}: not a documented error: ${this.ajv.errorsText(v.errors)}`];
    }
    const responses = this.document.paths[op.path][op.method.toLowerCase()].responses as Json;
    const response = responses[String(a.status)];
    if (!response) return [`${where}: status ${a.status} is not documented for ${op.method} ${op.path}`];
    const type = Object.keys(response.content ?? {}).find((t) => a.contentType.startsWith(t));
    if (!type)
      return [`${where}: content type ${a.contentType} is not documented for ${op.method} ${op.path} ${a.status}`];
    if (type !== 'application/json') return [];
    const v = this.validator(
      pointer('paths', op.path, op.method.toLowerCase(), 'responses', String(a.status), 'content', type, 'schema'),
    );
    return v(a.json) ? [] : [`${where}: ${this.ajv.errorsText(v.errors)} in ${JSON.stringify(a.json).slice(0, 300)}`];
  }

  checkAll(answers: RecordedAnswer[]): string[] {
    return answers.flatMap((a) => this.check(a));
  }
}

/** The document as the test harness's configuration builds it. */
export function testDocument(): Json {
  const config = loadConfig({ NODE_ENV: 'test' });
  return buildOpenApiDocument({
    maxCallsPerRequest: config.maxCallsPerRequest,
    maxBatchItems: config.maxBatchItems,
    version: '1.0',
  });
}

const wholeRun = new OpenApiRecorder();

const enabled = () => process.env.OPENAPI_RECORD !== '0';

/** Mocha root hooks (when this file is a --require): every answer of the run is checked at its end. */
export const mochaHooks = {
  beforeAll() {
    if (enabled()) wholeRun.install();
  },
  afterAll() {
    if (!enabled()) return;
    wholeRun.uninstall();
    const problems = new OpenApiChecker(testDocument()).checkAll(wholeRun.answers);
    if (problems.length > 0)
      throw new Error(
        `${problems.length} answers do not match the OpenAPI document:\n${problems.slice(0, 50).join('\n')}`,
      );
  },
};
