import { main } from './processes.js';

await main(['scheduler']);
