/*
 * The load generator, run as its own process: autocannon against one endpoint, with user ids spread
 * over BENCH_USERS users and a fresh request_id per request. Prints the autocannon result as JSON.
 *   argv: url path duration_s connections [rate]
 */
import autocannon from 'autocannon';

const [url, path, duration, connections, rate] = process.argv.slice(2);
/** GET mode: `path` is 'GET' and BENCH_PATHS a JSON list of paths to cycle through. */
const getPaths: string[] | null = path === 'GET' ? (JSON.parse(process.env.BENCH_PATHS ?? '[]') as string[]) : null;
const users = Number(process.env.BENCH_USERS ?? 1000);
const prefix = process.env.BENCH_USER_PREFIX ?? 'bench';
const service = process.env.BENCH_SERVICE ?? 'passport';
let n = 0;
const run = process.hrtime.bigint().toString(36);

const result = await autocannon({
  url,
  duration: Number(duration),
  connections: Number(connections),
  ...(rate ? { overallRate: Number(rate) } : {}),
  requests: getPaths ? [
    {
      method: 'GET',
      headers: { authorization: `Bearer ${process.env.GATEWAY_TOKEN ?? 'bench'}` },
      setupRequest: (req) => ({ ...req, path: getPaths[n++ % getPaths.length] }),
    },
  ] : [
    {
      method: 'POST',
      path,
      headers: { 'content-type': 'application/json', authorization: `Bearer ${process.env.GATEWAY_TOKEN ?? 'bench'}` },
      setupRequest: (req) => {
        n++;
        const body = path.endsWith('/deduct')
          ? { request_id: `${run}-${n}`, user_id: `${prefix}${n % users}`, service_name: service }
          : { user_id: `${prefix}${n % users}`, service_name: service };
        return { ...req, body: JSON.stringify(body) };
      },
    },
  ],
});
process.stdout.write(JSON.stringify({
  // Only 2xx answers count as throughput: an error answered fast is not work done.
  requests: result['2xx'] / result.duration,
  total: result.requests.total,
  non2xx: result.non2xx,
  errors: result.errors,
  timeouts: result.timeouts,
  latency: { p50: result.latency.p50, p90: result.latency.p90, p99: result.latency.p99, max: result.latency.max },
  duration: result.duration,
}));
