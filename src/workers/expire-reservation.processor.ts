import type { Job } from 'bullmq';
import type { JobPayloads } from '../jobs/jobs.js';
import type { ReservationService } from '../services/reservation.service.js';

export function expireReservationProcessor(reservations: ReservationService) {
  return async (job: Job<JobPayloads['expire-reservation']>) => {
    const r = await reservations.release(job.data.reservationId, 'expired');
    return { outcome: r.outcome };
  };
}

export function expireReservationsProcessor(reservations: ReservationService) {
  return async () => ({ expired: await reservations.expireDue() });
}
