// The webhooks role alone: the events' fan-out and their deliveries (SPEC 13), at a lower CPU priority
// (webhooks.nice), beside a worker started with WEBHOOKS_OWN_PROCESS=true. `npm start` and compose run one.
import { main } from './processes.js';

await main(['webhooks']);
