import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHmac, timingSafeEqual } from 'node:crypto';

/** One request a receiver got. */
export interface Received {
  path: string;
  eventId: string;
  eventType: string;
  signature: string;
  body: string;
  at: number;
}

/**
 * How a path answers: 'ok' (204), 'fail:<n>' (500 for the first n attempts of each event, then 200),
 * 'stall:<n>' (no answer for the first n attempts of each event, then 200), 'dead' (never answers),
 * 'huge' (200 with a 1 MiB body).
 */
export type Behaviour = 'ok' | 'dead' | 'huge' | `fail:${number}` | `stall:${number}`;

/** A real HTTP receiver of webhooks for tests: it fails, stalls and answers as told per path. */
export class WebhookReceiver {
  readonly received: Received[] = [];
  private readonly behaviours = new Map<string, Behaviour>();
  private readonly attempts = new Map<string, number>();
  private server?: Server;
  url = '';

  on(path: string, behaviour: Behaviour): string {
    this.behaviours.set(path, behaviour);
    return `${this.url}${path}`;
  }

  async start(): Promise<this> {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const path = req.url ?? '/';
        const eventId = String(req.headers['x-billing-event-id'] ?? '');
        this.received.push({
          path,
          eventId,
          eventType: String(req.headers['x-billing-event-type'] ?? ''),
          signature: String(req.headers['x-billing-signature'] ?? ''),
          body: Buffer.concat(chunks).toString(),
          at: Date.now(),
        });
        const key = `${path} ${eventId}`;
        const n = (this.attempts.get(key) ?? 0) + 1;
        this.attempts.set(key, n);
        const b = this.behaviours.get(path) ?? 'ok';
        const [kind, count] = b.split(':');
        if (b === 'dead' || (kind === 'stall' && n <= Number(count))) return; // never answers
        if (kind === 'fail' && n <= Number(count)) {
          res.writeHead(500, { 'content-type': 'text/plain' }).end(`failing attempt ${n}`);
          return;
        }
        if (b === 'huge') {
          res.writeHead(200, { 'content-type': 'text/plain' }).end('x'.repeat(1 << 20));
          return;
        }
        res.writeHead(kind === 'ok' ? 204 : 200).end();
      });
    });
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  /** Requests to `path` (optionally of one event id). */
  at(path: string, eventId?: string): Received[] {
    return this.received.filter((r) => r.path === path && (eventId === undefined || r.eventId === eventId));
  }

  async waitFor(test: () => boolean, timeoutMs = 20_000, what = 'deliveries'): Promise<void> {
    const started = Date.now();
    while (!test()) {
      if (Date.now() - started > timeoutMs) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise((r) => this.server?.close(r));
  }
}

/** Whether a X-Billing-Signature header signs `body` with `secret` (any of its v1 parts), SPEC 13. */
export function signatureValid(header: string, body: string, secret: string): boolean {
  const parts = header.split(',');
  const t = parts.find((p) => p.startsWith('t='))?.slice(2);
  if (!t || !/^\d+$/.test(t)) return false;
  const expected = createHmac('sha256', secret).update(`${t}.${body}`).digest();
  return parts
    .filter((p) => p.startsWith('v1='))
    .some((p) => {
      const given = Buffer.from(p.slice(3), 'hex');
      return given.length === expected.length && timingSafeEqual(given, expected);
    });
}
