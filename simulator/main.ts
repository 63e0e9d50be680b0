// `npm run simulator`: the payment-service simulator on its own (npm start runs it in-process).
import { PaymentSimulator } from './payment-simulator.js';

const sim = await new PaymentSimulator({
  host: process.env.SIMULATOR_HOST ?? '127.0.0.1',
  grpcPort: Number(process.env.SIMULATOR_GRPC_PORT ?? 9101),
  httpPort: Number(process.env.SIMULATOR_HTTP_PORT ?? 9102),
  callbackSecret: process.env.PAYMENT_CALLBACK_SECRET ?? 'dev-callback-secret',
  publicUrl: process.env.SIMULATOR_PUBLIC_URL,
}).start();
console.log(`payment simulator: gRPC ${sim.grpcAddr}, pages and control API ${sim.httpUrl}`);
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => void sim.stop().then(() => process.exit(0)));
