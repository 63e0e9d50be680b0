import { expect } from 'chai';
import { createRequire } from 'node:module';
import { ReplyError } from 'ioredis';
import { AppError, isDependencyError } from '../../src/lib/errors.js';

type ErrorClass = new (message: string) => Error;
/** ioredis's class for a command cut off (from its own dependency, which it does not re-export). */
const { AbortError } = createRequire(import.meta.url)('redis-errors') as { AbortError: ErrorClass };
const RedisReply = ReplyError as ErrorClass;

/** An error as mysql2 and Node's sockets make them: a message and a `code`. */
const withCode = (message: string, code: string) => Object.assign(new Error(message), { code });

describe('isDependencyError: what answers 503 / 50300 (retry later) instead of 500', () => {
  it('knows an unreachable, stopping or busy Redis or MySQL, as their clients report it', () => {
    const outages: unknown[] = [
      // ioredis
      new AbortError('Command aborted due to connection close'),
      new AbortError('Cluster is ended.'),
      new Error('Command timed out'),
      new Error('Connection is closed.'),
      new Error("Stream isn't writeable and enableOfflineQueue options is false"),
      new Error('Too many Cluster redirections. Last error: ReplyError: MOVED 866 127.0.0.1:7001'),
      new Error('None of startup nodes is available'),
      Object.assign(new Error('Reached the max retries per request limit (which is 1).'), {
        name: 'MaxRetriesPerRequestError',
      }),
      // Redis's own "not now" replies
      new RedisReply('LOADING Redis is loading the dataset in memory'),
      new RedisReply('CLUSTERDOWN The cluster is down'),
      new RedisReply('TRYAGAIN Multiple keys request during rehashing of slot'),
      new RedisReply('BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSCRIPT.'),
      new RedisReply("MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'."),
      new RedisReply("READONLY You can't write against a read only replica."),
      new RedisReply("OOM command not allowed when used memory > 'maxmemory'."),
      // mysql2, knex and sockets
      new Error("Can't add new command when connection is in closed state"),
      Object.assign(new Error('Knex: Timeout acquiring a connection. The pool is probably full.'), {
        name: 'KnexTimeoutError',
      }),
      withCode('connect ECONNREFUSED 127.0.0.1:3306', 'ECONNREFUSED'),
      withCode('connect EHOSTUNREACH 10.0.0.9:3306', 'EHOSTUNREACH'),
      withCode('getaddrinfo ENOTFOUND mysql', 'ENOTFOUND'),
      withCode('getaddrinfo EAI_AGAIN redis', 'EAI_AGAIN'),
      withCode('Connection lost: The server closed the connection.', 'PROTOCOL_CONNECTION_LOST'),
      withCode('Server shutdown in progress', 'ER_SERVER_SHUTDOWN'),
      withCode('Too many connections', 'ER_CON_COUNT_ERROR'),
    ];
    for (const err of outages) expect(isDependencyError(err), String(err)).to.equal(true);
  });

  it('leaves bugs and refusals alone: those are 500s or the refusal itself', () => {
    const others: unknown[] = [
      new Error('boom'),
      new TypeError("Cannot read properties of undefined (reading 'x')"),
      new RedisReply('ERR wrong number of arguments for command'),
      new RedisReply('WRONGTYPE Operation against a key holding the wrong kind of value'),
      new RedisReply('NOSCRIPT No matching script. Please use EVAL.'),
      new RedisReply('ERR Error running script: user_script:1: a Lua error mentioning OOM later'),
      withCode("Duplicate entry 'x' for key 'PRIMARY'", 'ER_DUP_ENTRY'),
      new AppError('INSUFFICIENT_BALANCE', 'insufficient balance'),
      null,
      'Command timed out',
    ];
    for (const err of others) expect(isDependencyError(err), String(err)).to.equal(false);
  });
});
