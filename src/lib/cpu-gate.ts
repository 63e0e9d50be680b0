import { readFile } from 'node:fs/promises';
import { getPriority } from 'node:os';

/**
 * Holds the delivering process's attempts while the machine's CPU is taken by work at normal priority
 * (the gateway path, persistence, Redis, MySQL): the idle CPU class yields each core, but a delivery
 * already running on one core is not preempted for a deduct waiting on the other, so at saturation every
 * CPU second delivering spends is one the gateway lacks. Deliveries are late by seconds, never lost.
 *
 * Busy is the share of all cores that went, over the last sample, to user, system, interrupt and steal
 * time, less this process's own (/proc/stat; time of niced processes, such as this one and the receivers
 * of a bench, is not counted). Linux only: elsewhere, or when /proc/stat cannot be read, it never holds.
 */
export interface CpuGate {
  /** Resolves once the machine has CPU to spare, or after `maxHoldMs`, or when the gate stops. */
  wait(): Promise<void>;
  /** The busy share of the last sample, in percent (null before the first). */
  busyPercent(): number | null;
  stop(): void;
}

export interface CpuGateOptions {
  /** hold while the busy share is above this (percent of all cores); 100 never holds */
  holdAbovePercent: number;
  /** a waiter goes on after this long however busy the machine is, so deliveries never stall for good */
  maxHoldMs: number;
  /** how often /proc/stat is read */
  sampleMs: number;
  /** told when the gate starts or stops holding */
  onChange?: (holding: boolean, busyPercent: number) => void;
  /** reads /proc/stat's text (tests feed their own) */
  readStat?: () => Promise<string>;
}

/** /proc/stat counts in USER_HZ ticks, 100 per second on every Linux architecture Node runs on. */
const MS_PER_TICK = 10;

interface CpuSample {
  /** all time of all cores, ms */
  totalMs: number;
  /** user + system + irq + softirq + steal of all cores, ms (nice, idle and iowait left out) */
  normalMs: number;
}

/** The machine's CPU counters from /proc/stat's first line, or null if it has none. */
export function parseProcStat(text: string): CpuSample | null {
  const m = /^cpu\s+(.*)$/m.exec(text);
  if (!m) return null;
  const [user, nice, system, idle, iowait, irq, softirq, steal = 0] = m[1].trim().split(/\s+/).map(Number);
  if ([user, nice, system, idle, iowait, irq, softirq, steal].some((n) => !Number.isFinite(n))) return null;
  return {
    totalMs: (user + nice + system + idle + iowait + irq + softirq + steal) * MS_PER_TICK,
    normalMs: (user + system + irq + softirq + steal) * MS_PER_TICK,
  };
}

/** This process's CPU that /proc/stat counts as normal: its system time, and its user time unless niced. */
function ownNormalMs(): number {
  const { user, system } = process.cpuUsage();
  return (system + (getPriority() > 0 ? 0 : user)) / 1000;
}

export function cpuGate(opts: CpuGateOptions): CpuGate {
  const readStat = opts.readStat ?? (() => readFile('/proc/stat', 'utf8'));
  let previous: { sample: CpuSample; ownMs: number } | null = null;
  let busy: number | null = null;
  let holding = false;
  let stopped = false;
  const waiters = new Set<() => void>();

  const release = () => {
    for (const resolve of waiters) resolve();
    waiters.clear();
  };
  const sample = async () => {
    let text: string;
    try {
      text = await readStat();
    } catch {
      return false; // not Linux, or no /proc: never holds
    }
    const sample = parseProcStat(text);
    if (!sample) return false;
    const ownMs = ownNormalMs();
    if (previous && sample.totalMs > previous.sample.totalMs) {
      const others = sample.normalMs - previous.sample.normalMs - (ownMs - previous.ownMs);
      busy = Math.max(0, Math.min(100, (100 * others) / (sample.totalMs - previous.sample.totalMs)));
      const hold = busy > opts.holdAbovePercent;
      if (hold !== holding) {
        holding = hold;
        opts.onChange?.(holding, busy);
      }
      if (!holding) release();
    }
    previous = { sample, ownMs };
    return true;
  };
  let timer: NodeJS.Timeout | undefined;
  const loop = async () => {
    if (stopped) return;
    if (!(await sample())) {
      holding = false;
      release();
      return;
    }
    if (!stopped) timer = setTimeout(() => void loop(), opts.sampleMs).unref();
  };
  if (opts.holdAbovePercent < 100) void loop();

  return {
    wait() {
      if (!holding || stopped) return Promise.resolve();
      return new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(t);
          waiters.delete(done);
          resolve();
        };
        const t = setTimeout(done, opts.maxHoldMs).unref();
        waiters.add(done);
      });
    },
    busyPercent: () => busy,
    stop() {
      stopped = true;
      clearTimeout(timer);
      release();
    },
  };
}
