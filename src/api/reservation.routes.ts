import { Router } from 'express';
import type { ReservationService } from '../services/reservation.service.js';
import { reservationSchemas } from './reservation.schemas.js';
import { validate, ok } from './validation.js';

/** `/internal/v1/billing/reservations`: hold, commit, release. */
export interface ReservationRouteDeps {
  reservations: ReservationService;
  maxCallsPerRequest: number;
}

export function reservationRoutes({ reservations, maxCallsPerRequest }: ReservationRouteDeps): Router {
  const router = Router();
  const schemas = reservationSchemas(maxCallsPerRequest);

  router.post('/reservations', async (req, res) => {
    const b = validate(schemas.reserve, req.body);
    res.json(
      ok(
        await reservations.reserve({
          requestId: b.request_id,
          userId: b.user_id,
          serviceName: b.service_name,
          count: b.count,
          ttlMs: b.ttl_seconds === undefined ? undefined : b.ttl_seconds * 1000,
        }),
      ),
    );
  });

  router.post('/reservations/:id/commit', async (req, res) => {
    const { id } = validate(schemas.params, req.params, 'query');
    const b = validate(schemas.commit, req.body);
    res.json(ok(await reservations.commit(id, b.count)));
  });

  router.post('/reservations/:id/release', async (req, res) => {
    const { id } = validate(schemas.params, req.params, 'query');
    validate(schemas.release, req.body);
    const { outcome: _outcome, ...answer } = await reservations.release(id);
    res.json(ok(answer));
  });

  return router;
}
