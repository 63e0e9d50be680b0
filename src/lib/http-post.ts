import http from 'node:http';
import https from 'node:https';

/**
 * Keep-alive agents, one per scheme, shared by every post of the process: a receiver's connection
 * serves its next delivery instead of a handshake each time. An idle connection is closed after
 * IDLE_SOCKET_MS, before most servers close theirs (Node's own default is 5 s), so that a post seldom
 * meets a connection the receiver is closing; when one does, it is sent again once on a new connection.
 */
const IDLE_SOCKET_MS = 4_000;
const agents = {
  'http:': new http.Agent({ keepAlive: true, timeout: IDLE_SOCKET_MS }),
  'https:': new https.Agent({ keepAlive: true, timeout: IDLE_SOCKET_MS }),
};

/** What one POST got: the status (null when none came), at most `excerptBytes` of the answer, or why it failed. */
export interface PostOutcome {
  statusCode: number | null;
  /** the answer's first bytes as text (null when the answer was not read) */
  excerpt: string | null;
  /** why no (complete) answer came: the connection's error code, or the timeout */
  error: string | null;
}

export interface PostOptions {
  headers: Record<string, string>;
  body: string;
  /** the whole attempt (connect, send, status, excerpt) ends after this long */
  timeoutMs: number;
  /** at most this much of the answer is read; then the connection is dropped (an endless answer ends here) */
  excerptBytes: number;
}

const reason = (err: NodeJS.ErrnoException) => (err.code ?? err.message).slice(0, 255);

/**
 * POSTs once with node:http (redirects are not followed: a 3xx is the answer) and never throws. A
 * status that came before a timeout or a cut is kept beside the error (a 2xx then counts as answered).
 *
 * Why not fetch: per delivery, undici's fetch (WHATWG streams, a signal, Request and Response objects)
 * cost the webhooks process more CPU than everything else a delivery does (profiled), on the same cores
 * as the gateway path.
 */
export function postOnce(url: string, o: PostOptions): Promise<PostOutcome> {
  return new Promise((resolve) => {
    let target: URL;
    try {
      target = new URL(url);
    } catch {
      resolve({ statusCode: null, excerpt: null, error: 'invalid url' });
      return;
    }
    const agent =
      target.protocol === 'https:' ? agents['https:'] : target.protocol === 'http:' ? agents['http:'] : null;
    if (!agent) {
      resolve({ statusCode: null, excerpt: null, error: `unsupported protocol ${target.protocol}` });
      return;
    }
    let statusCode: number | null = null;
    let settled = false;
    let request: http.ClientRequest | undefined;
    const settle = (outcome: PostOutcome) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(outcome);
    };
    const timer = setTimeout(() => {
      settle({ statusCode, excerpt: null, error: `timed out after ${o.timeoutMs} ms` });
      request?.destroy();
    }, o.timeoutMs).unref();

    const send = (again: boolean) => {
      try {
        request = (target.protocol === 'https:' ? https : http).request(target, {
          method: 'POST',
          agent,
          headers: { ...o.headers, 'content-length': String(Buffer.byteLength(o.body)) },
        });
      } catch (err) {
        settle({ statusCode: null, excerpt: null, error: reason(err as NodeJS.ErrnoException) });
        return;
      }
      const sent = request;
      sent.on('error', (err: NodeJS.ErrnoException) => {
        // A kept connection the receiver closed as we reused it: nothing reached it; once more, anew.
        if (!again && statusCode === null && sent.reusedSocket && err.code === 'ECONNRESET' && !settled) {
          send(true);
          return;
        }
        settle({ statusCode, excerpt: null, error: reason(err) });
      });
      sent.on('response', (res) => {
        statusCode = res.statusCode ?? null;
        const chunks: Buffer[] = [];
        let size = 0;
        const answered = () => {
          const excerpt = Buffer.concat(chunks)
            .subarray(0, o.excerptBytes)
            .toString('utf8')
            .replace(/\uFFFD+$/, '');
          settle({ statusCode, excerpt, error: null });
        };
        res.on('data', (chunk: Buffer) => {
          if (settled) return;
          chunks.push(chunk);
          size += chunk.length;
          if (size < o.excerptBytes) return;
          answered();
          res.destroy();
        });
        res.on('end', answered);
        res.on('error', (err: NodeJS.ErrnoException) => settle({ statusCode, excerpt: null, error: reason(err) }));
        // Closed before its end (the receiver hung up mid-answer): what came is not an excerpt.
        res.on('close', () => settle({ statusCode, excerpt: null, error: 'the answer was cut short' }));
      });
      sent.end(o.body);
    };
    send(false);
  });
}
