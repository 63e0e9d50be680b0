import type { RequestHandler, Router } from 'express';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import type { JobQueues } from '../jobs/queues.js';
import type { Queue } from 'bullmq';
import { secretMatcher } from './auth.middleware.js';

export const BOARD_PATH = '/admin/queues';

/** The operator credentials the board accepts. */
export interface BoardAuth {
  boardUser: string;
  boardPassword: string;
  adminToken: string;
}

export interface BoardRouteDeps {
  queues: Pick<JobQueues, 'all'>;
  auth: BoardAuth;
  /** queues that come and go (one per webhook endpoint), listed again on each board request */
  extraQueues?: () => Promise<Queue[]>;
}

/** Basic auth with the Bull Board credentials, or the admin bearer token (scripts). */
function boardAuth({ boardUser, boardPassword, adminToken }: BoardAuth): RequestHandler {
  const [isUser, isPassword, isAdmin] = [boardUser, boardPassword, adminToken].map(secretMatcher);
  return (req, res, next) => {
    const header = req.get('authorization') ?? '';
    const basic = /^Basic (.+)$/.exec(header);
    if (basic) {
      const decoded = Buffer.from(basic[1], 'base64').toString();
      const colon = decoded.indexOf(':');
      if (colon > 0 && isUser(decoded.slice(0, colon)) && isPassword(decoded.slice(colon + 1))) return next();
    }
    const bearer = /^Bearer (.+)$/.exec(header);
    if (bearer && isAdmin(bearer[1])) return next();
    res.set('WWW-Authenticate', 'Basic realm="billing queues", charset="UTF-8"');
    res.status(401).json({ success: false, code: 40100, message: 'Bull Board needs the operator credentials' });
  };
}

/**
 * Bull Board at /admin/queues, showing every queue of the service. Every queue moves money (persisting
 * changes, crediting payments, returning holds, reconciling), so each is read-only on the board: no
 * adding, retrying, promoting, editing or removing of jobs there (SPEC 10.6; bull-board refuses those
 * calls server-side with 405). Failed jobs are retried through POST /admin/v1/jobs/{queue}/{id}/retry,
 * which logs who and why.
 */
export function boardRoutes({ queues, auth, extraQueues }: BoardRouteDeps): [RequestHandler, RequestHandler, Router] {
  const serverAdapter = new ExpressAdapter();
  serverAdapter.setBasePath(BOARD_PATH);
  const board = createBullBoard({
    queues: queues.all().map((q) => new BullMQAdapter(q, { readOnlyMode: true })),
    serverAdapter,
    options: { uiConfig: { boardTitle: 'Billing queues' } },
  });
  // Webhook delivery queues (read-only too) are added as endpoints appear and leave with them.
  const shown = new Set<string>();
  const refresh: RequestHandler = (_req, _res, next) => {
    if (!extraQueues) return next();
    extraQueues()
      .then((list) => {
        const names = new Set(list.map((q) => q.name));
        for (const q of list) {
          if (!shown.has(q.name)) board.addQueue(new BullMQAdapter(q, { readOnlyMode: true }));
          shown.add(q.name);
        }
        for (const name of [...shown].filter((n) => !names.has(n))) {
          board.removeQueue(name);
          shown.delete(name);
        }
      })
      .then(() => next(), next);
  };
  return [boardAuth(auth), refresh, serverAdapter.getRouter() as Router];
}
