// API, workers and scheduler in one process: what `npm start` runs for local use.
import { main } from './processes.js';

await main(['api', 'worker', 'scheduler']);
