import type { RequestHandler, Router } from 'express';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import type { JobQueues } from '../jobs/queues.js';
import { secretEquals } from './auth.middleware.js';

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
}

/** Basic auth with the Bull Board credentials, or the admin bearer token (scripts). */
function boardAuth({ boardUser, boardPassword, adminToken }: BoardAuth): RequestHandler {
  return (req, res, next) => {
    const header = req.get('authorization') ?? '';
    const basic = /^Basic (.+)$/.exec(header);
    if (basic) {
      const decoded = Buffer.from(basic[1], 'base64').toString();
      const colon = decoded.indexOf(':');
      if (
        colon > 0 &&
        secretEquals(decoded.slice(0, colon), boardUser) &&
        secretEquals(decoded.slice(colon + 1), boardPassword)
      )
        return next();
    }
    const bearer = /^Bearer (.+)$/.exec(header);
    if (bearer && secretEquals(bearer[1], adminToken)) return next();
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
export function boardRoutes({ queues, auth }: BoardRouteDeps): [RequestHandler, Router] {
  const serverAdapter = new ExpressAdapter();
  serverAdapter.setBasePath(BOARD_PATH);
  createBullBoard({
    queues: queues.all().map((q) => new BullMQAdapter(q, { readOnlyMode: true })),
    serverAdapter,
    options: { uiConfig: { boardTitle: 'Billing queues' } },
  });
  return [boardAuth(auth), serverAdapter.getRouter() as Router];
}
