import type * as grpc from '@grpc/grpc-js';
import type { Logger } from '../lib/logger.js';
import type { DeductInput } from '../services/billing.service.js';
import type { BatchService } from '../services/batch.service.js';
import { asAppError } from './errors.js';
import { deductOutcome, type Msg } from './messages.js';

/** Deducts read but not yet answered; past this the stream stops reading until answers drain. */
const MAX_IN_FLIGHT = 256;

/**
 * DeductStream: each message is one deduct (requestId required: a stream has no per-message
 * metadata), answered with its request id; a user's answers keep the order of that user's requests.
 *
 * Nothing grows without bound: the server stops reading (HTTP/2 flow control then holds the client)
 * while MAX_IN_FLIGHT deducts are running or while the answers it wrote are not taken by the client.
 * A message that fails validation is answered with its error, and the stream goes on. An outage on one
 * user's keys (a stalled Redis Cluster node) answers that message 50300, and the messages of that user
 * already queued behind it 50300 untried, at once; the user's messages read after those are tried again.
 */
export function serveDeductStream(
  call: grpc.ServerDuplexStream<Msg, unknown>,
  batches: BatchService,
  parse: (m: Msg) => DeductInput,
  logger: Logger,
): void {
  const tails = new Map<string, Promise<void>>();
  /** Users whose deduct met an outage, until their queue of messages empties. */
  const outages = new Set<string>();
  let inFlight = 0;
  let index = 0;
  let paused = false;
  let inputEnded = false;
  let finished = false;

  const resumeIfRoom = () => {
    if (paused && !finished && inFlight < MAX_IN_FLIGHT / 2 && !call.writableNeedDrain) {
      paused = false;
      call.resume();
    }
  };
  const finishIfDone = () => {
    if (inputEnded && inFlight === 0 && !finished) {
      finished = true;
      call.end();
    }
  };
  const answer = (outcome: unknown) => {
    if (!finished && !call.cancelled) call.write(outcome);
  };

  call.on('data', (message: Msg) => {
    const i = index++;
    inFlight++;
    if (inFlight >= MAX_IN_FLIGHT || call.writableNeedDrain) {
      paused = true;
      call.pause();
    }
    const userKey = typeof message.userId === 'string' ? message.userId : '';
    const ids = { requestId: typeof message.requestId === 'string' ? message.requestId : '', userId: userKey };
    const refuse = (err: unknown) =>
      answer(deductOutcome({ index: i, ok: false, error: asAppError(err, logger, 'DeductStream') }, ids));
    // Every message, refused or not, is answered in its user's order: after that user's earlier ones.
    const tail = (tails.get(userKey) ?? Promise.resolve())
      .then(async () => {
        let input: DeductInput;
        try {
          input = parse(message);
        } catch (err) {
          return refuse(err);
        }
        const outcome = await batches.streamDeduct(i, input, outages.has(userKey));
        if (!outcome.ok && outcome.error.kind === 'DEPENDENCY_UNAVAILABLE') outages.add(userKey);
        answer(deductOutcome(outcome, input));
      })
      .catch(refuse)
      .finally(() => {
        if (tails.get(userKey) === tail) {
          tails.delete(userKey);
          outages.delete(userKey);
        }
        inFlight--;
        resumeIfRoom();
        finishIfDone();
      });
    tails.set(userKey, tail);
  });
  call.on('drain', resumeIfRoom);
  call.on('end', () => {
    inputEnded = true;
    finishIfDone();
  });
  // A cancelled or broken stream: stop answering; deducts already running finish and are persisted.
  call.on('error', () => {
    finished = true;
  });
  call.on('cancelled', () => {
    finished = true;
  });
}
