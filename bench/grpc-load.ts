/*
 * gRPC load generator for bench/run.ts, in its own process (like wrk for HTTP): keeps `concurrency`
 * unary calls in flight on one channel (HTTP/2 multiplexes them), or for `stream`, `concurrency`
 * DeductStreams each holding up to WINDOW deducts unanswered. Prints one JSON line:
 * {"answers": n, "errors": n, "seconds": s}.
 *
 * Usage: tsx bench/grpc-load.ts <host:port> <check|deduct|stream> <seconds> <concurrency> <token> <users>
 */
import * as grpc from '@grpc/grpc-js';
import { billingServices } from '../proto/billing/v1/billing.grpc.js';

const [address, op, secondsArg, concurrencyArg, token, usersArg] = process.argv.slice(2);
const seconds = Number(secondsArg);
const concurrency = Number(concurrencyArg);
const users = Number(usersArg);
const WINDOW = 500;
const run = process.hrtime.bigint().toString(36);
const { BillingInternalService } = billingServices();
const client = new BillingInternalService(address, grpc.credentials.createInsecure()) as unknown as Record<
  string,
  (...args: unknown[]) => unknown
>;
const md = new grpc.Metadata();
md.set('authorization', `Bearer ${token}`);

let answers = 0;
let errors = 0;
let n = 0;
const deadline = Date.now() + seconds * 1000;
const started = Date.now();

function unary(method: 'CheckQuota' | 'DeductQuota'): Promise<void> {
  return new Promise((resolve) => {
    const loop = () => {
      if (Date.now() >= deadline) return resolve();
      n++;
      const req = { userId: `bench${n % users}`, serviceName: 'passport', count: 1, requestId: `${run}-${n}` };
      client[method](req, md, (err: grpc.ServiceError | null) => {
        if (err) errors++;
        else answers++;
        loop();
      });
    };
    loop();
  });
}

function stream(): Promise<void> {
  return new Promise((resolve) => {
    const s = client.DeductStream(md) as grpc.ClientDuplexStream<unknown, { ok: boolean }>;
    let inFlight = 0;
    let ended = false;
    const fill = () => {
      while (!ended && inFlight < WINDOW) {
        if (Date.now() >= deadline) {
          ended = true;
          s.end();
          return;
        }
        n++;
        inFlight++;
        s.write({ userId: `bench${n % users}`, serviceName: 'passport', count: 1, requestId: `${run}-${n}` });
      }
    };
    s.on('data', (a) => {
      inFlight--;
      if (a.ok) answers++;
      else errors++;
      if (inFlight < WINDOW / 2) fill();
    });
    s.on('end', resolve);
    s.on('error', () => {
      errors++;
      resolve();
    });
    fill();
  });
}

const work = Array.from({ length: concurrency }, () =>
  op === 'stream' ? stream() : unary(op === 'check' ? 'CheckQuota' : 'DeductQuota'),
);
await Promise.all(work);
console.log(JSON.stringify({ answers, errors, seconds: (Date.now() - started) / 1000 }));
client.close();
