import { Router } from 'express';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ExportService } from '../services/export.service.js';
import type { Logger } from '../lib/logger.js';
import { exportQuery } from './export.schemas.js';
import { validate } from './validation.js';

/** `/api/v1/billing/records/export`: consumption records as a CSV download, streamed. */
export function exportRoutes(exports: ExportService, logger: Logger): Router {
  const router = Router();
  router.get('/records/export', async (req, res) => {
    const q = validate(exportQuery, req.query, 'query');
    const csv = await exports.open({ userId: q.user_id, serviceName: q.service_name, from: q.from, to: q.to });
    res.status(200);
    res.set('Content-Type', 'text/csv; charset=utf-8');
    res.set('Content-Disposition', `attachment; filename="${csv.filename}"`);
    res.set('Cache-Control', 'no-store');
    try {
      // pipeline honours backpressure, and a buffer of one chunk: the next page is read only when the
      // socket has taken the one before.
      await pipeline(Readable.from(csv.chunks, { highWaterMark: 1 }), res);
    } catch (err) {
      // Headers are gone: the only honest signal left is an aborted (incomplete) response.
      if (!res.destroyed) res.destroy(err as Error);
      const aborted = (err as { code?: string }).code === 'ERR_STREAM_PREMATURE_CLOSE';
      if (!aborted)
        logger.warn(
          { err: (err as Error).message, correlationId: res.locals.correlationId },
          'export failed mid-stream',
        );
    }
  });
  return router;
}
