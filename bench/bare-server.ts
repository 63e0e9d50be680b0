/*
 * The yardstick: a bare Express 5 route with the same middleware as the service's gateway routes
 * (correlation id, JSON body, bearer auth), answering a constant; and a GET route for the
 * statistics reads' control.
 *
 * With BARE_REDIS_URL set, the POST route first makes one script call to that Redis, through the
 * service's own connection settings, with a check's shape (the user's two keys, six arguments) and
 * a script that does nothing: the floor for any route that answers from Redis.
 */
import express from 'express';
import { randomUUID } from 'node:crypto';
import { requireBearer } from '../src/api/auth.middleware.js';
import { createRedis } from '../src/redis/connection.js';
import { scriptCaller } from '../src/redis/scripts.js';

const redisUrl = process.env.BARE_REDIS_URL;
const redis = redisUrl ? createRedis(redisUrl) : null;
// Called as the service calls its scripts (EVALSHA through scriptCaller).
const nothing = redis ? scriptCaller(redis, "return {1, 'free', '10000', '0'}", 2) : null;
const roundTrip = (user: string) =>
  nothing!(`bare:{${user}}:acct`, `bare:{${user}}:q`, 'passport', 1, 10000, '', Date.now(), '01');

const app = express();
app.disable('x-powered-by');
app.use((req, res, next) => {
  res.locals.correlationId = req.get('x-request-id') ?? randomUUID();
  res.set('X-Correlation-Id', res.locals.correlationId as string);
  next();
});
app.use(express.json({ limit: '16kb', strict: false }));
const auth = requireBearer(process.env.GATEWAY_TOKEN ?? 'bench');
app.post('/internal/v1/billing/:op', auth, async (req, res) => {
  if (redis) await roundTrip(String((req.body as { user_id?: unknown }).user_id));
  res.json({ success: true, data: { allowed: true, reason: 'free', freeRemaining: 10000, balance: '0.00' } });
});
// The control for the statistics reads: the same GETs, answered with a constant.
app.get('/api/v1/billing/*rest', auth, (_req, res) => {
  res.json({ success: true, data: { totalCount: 0, freeCount: 0, paidCount: 0, totalCost: '0.00' } });
});
const server = app.listen(Number(process.env.PORT), '127.0.0.1', () => console.log('ready'));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
