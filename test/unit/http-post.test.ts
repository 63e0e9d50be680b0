import { expect } from 'chai';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { postOnce } from '../../src/lib/http-post.js';

/*
 * The webhook attempt's POST against a real HTTP server: the answer's status, at most an excerpt of
 * its body, a timeout that covers the whole attempt, no redirect followed, connections kept alive.
 */
describe('postOnce (webhook attempts)', function () {
  this.timeout(10_000);
  let server: Server;
  let base = '';
  let connections = 0;
  const routes = new Map<string, (req: IncomingMessage, res: ServerResponse) => void>();

  before(async () => {
    server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        (req as IncomingMessage & { text?: string }).text = Buffer.concat(chunks).toString();
        routes.get(req.url ?? '/')?.(req, res);
      });
    });
    server.on('connection', () => connections++);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  const post = (path: string, timeoutMs = 2_000) =>
    postOnce(`${base}${path}`, { headers: { 'x-test': 'yes' }, body: '{"a":"é"}', timeoutMs, excerptBytes: 16 });

  it('sends the body and headers, and returns the status and the answer', async () => {
    routes.set('/echo', (req, res) =>
      res.writeHead(201).end(`${req.headers['x-test']} ${(req as IncomingMessage & { text?: string }).text}`),
    );
    expect(await post('/echo')).to.deep.equal({ statusCode: 201, excerpt: 'yes {"a":"é"}', error: null });
  });

  it('keeps the connection for the next post', async () => {
    routes.set('/ok', (_req, res) => res.writeHead(204).end());
    await post('/ok');
    const before = connections;
    for (let i = 0; i < 5; i++) expect((await post('/ok')).statusCode).to.equal(204);
    expect(connections).to.equal(before);
  });

  it('sends again once, on a new connection, when a kept connection is closed as it is reused', async () => {
    const served = new WeakMap<object, number>();
    let requests = 0;
    routes.set('/closes-kept', (req, res) => {
      requests++;
      const n = (served.get(req.socket) ?? 0) + 1;
      served.set(req.socket, n);
      if (n > 1)
        req.socket.destroy(); // the receiver drops a kept connection instead of answering
      else res.writeHead(204).end();
    });
    expect((await post('/closes-kept')).statusCode).to.equal(204);
    expect(await post('/closes-kept')).to.deep.equal({ statusCode: 204, excerpt: '', error: null });
    expect(requests).to.equal(3);
  });

  it('reads at most the excerpt of an endless answer, then drops it', async () => {
    routes.set('/endless', (_req, res) => {
      res.writeHead(200);
      const more = () => {
        if (!res.destroyed && res.write('x'.repeat(4096))) setImmediate(more);
      };
      more();
      res.on('drain', more);
    });
    const started = Date.now();
    const got = await post('/endless');
    expect(got).to.deep.equal({ statusCode: 200, excerpt: 'x'.repeat(16), error: null });
    expect(Date.now() - started).to.be.below(1_000);
  });

  it('does not follow a redirect: the 3xx is the answer', async () => {
    routes.set('/moved', (_req, res) => res.writeHead(302, { location: `${base}/echo` }).end());
    expect((await post('/moved')).statusCode).to.equal(302);
  });

  it('times out a receiver that never answers, and one that stalls in its body', async () => {
    routes.set('/never', () => undefined);
    const started = Date.now();
    expect(await post('/never', 300)).to.deep.equal({
      statusCode: null,
      excerpt: null,
      error: 'timed out after 300 ms',
    });
    expect(Date.now() - started).to.be.within(250, 1_500);
    routes.set('/stall-body', (_req, res) => res.writeHead(200, { 'content-length': '100' }).write('part'));
    expect(await post('/stall-body', 300)).to.deep.equal({
      statusCode: 200,
      excerpt: null,
      error: 'timed out after 300 ms',
    });
  });

  it('reports an answer cut short and a refused connection, without throwing', async () => {
    routes.set('/cut', (_req, res) => {
      res.writeHead(200, { 'content-length': '100' }).write('part');
      setTimeout(() => res.socket?.destroy(), 20);
    });
    const cut = await post('/cut');
    expect(cut.statusCode).to.equal(200);
    expect(cut.excerpt).to.equal(null);
    expect(cut.error).to.be.a('string').and.not.equal('');
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((r) => closed.close(r));
    expect(
      await postOnce(`http://127.0.0.1:${port}/`, { headers: {}, body: '', timeoutMs: 1_000, excerptBytes: 16 }),
    ).to.deep.equal({ statusCode: null, excerpt: null, error: 'ECONNREFUSED' });
  });
});
