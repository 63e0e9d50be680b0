// `npm run simulator`: the payment-service simulator on its own (npm start runs it in-process).
// It pays any order for free: development and demos only (production config refuses it).
import { PaymentSimulator } from './payment-simulator.js';

const sim = await new PaymentSimulator({
  host: process.env.SIMULATOR_HOST ?? '127.0.0.1',
  grpcPort: Number(process.env.SIMULATOR_GRPC_PORT ?? 9101),
  httpPort: Number(process.env.SIMULATOR_HTTP_PORT ?? 9102),
  controlPort: Number(process.env.SIMULATOR_CONTROL_PORT ?? 9103),
  callbackSecret: process.env.PAYMENT_CALLBACK_SECRET ?? 'dev-callback-secret',
  publicUrl: process.env.SIMULATOR_PUBLIC_URL,
}).start();
console.log(
  `payment simulator: gRPC ${sim.grpcAddr}, pay pages ${sim.httpUrl}/pay/<payment id>, ` +
    `control API ${sim.controlUrl} (loopback only)`,
);
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => void sim.stop().then(() => process.exit(0)));
