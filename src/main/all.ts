// API, workers and scheduler in one process, on the REDIS_URL / DATABASE_URL given (`npm start`
// runs scripts/dev-stack.ts instead, which also brings its own Redis, MariaDB and payment simulator).
import { main } from './processes.js';

await main(['api', 'worker', 'scheduler']);
