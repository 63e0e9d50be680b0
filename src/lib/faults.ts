/**
 * Named crash points for fault-injection tests: with BILLING_FAULT_CRASH_AT=<name> (refused in
 * production), the process kills itself with SIGKILL when it reaches that point, as a power cut would.
 */
export class FaultPoints {
  constructor(private readonly crashAt: string | null) {}

  point(name: string): void {
    if (this.crashAt === name) process.kill(process.pid, 'SIGKILL');
  }
}
