/*
 * The receivers of bench/webhooks.ts, in a process of their own (so that receiving tens of thousands
 * of deliveries costs the load generator nothing): /dead never answers, every other path answers 204.
 * GET /count answers how many deliveries and distinct events each path received.
 */
import { createServer } from 'node:http';

const seen = new Map<string, { deliveries: number; events: Set<string> }>();
const server = createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/count') {
    const out = Object.fromEntries(
      [...seen].map(([path, s]) => [path, { deliveries: s.deliveries, events: s.events.size }]),
    );
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(out));
    return;
  }
  req.resume();
  req.on('end', () => {
    const path = req.url ?? '/';
    const s = seen.get(path) ?? { deliveries: 0, events: new Set<string>() };
    s.deliveries++;
    s.events.add(String(req.headers['x-billing-event-id']));
    seen.set(path, s);
    if (path !== '/dead') res.writeHead(204).end();
  });
});
server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => {
  console.log(`ready ${(server.address() as { port: number }).port}`);
});
