import type { Clock } from '../../src/lib/clock.js';

/** A clock the test sets by hand. */
export class FakeClock implements Clock {
  constructor(private current: Date) {}
  now(): Date {
    return new Date(this.current);
  }
  set(iso: string | Date): void {
    this.current = new Date(iso);
  }
}
