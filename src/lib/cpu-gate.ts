import { readFile } from 'node:fs/promises';
import { getPriority } from 'node:os';

/**
 * Holds the delivering process's attempts while the machine's CPU is taken by work at normal priority
 * (the gateway path, persistence, Redis, MySQL): the idle CPU class yields each core, but a delivery
 * already running on one core is not preempted for a deduct waiting on the other, so at saturation every
 * CPU second delivering spends is one the gateway lacks. A held attempt waits `maxHoldMs` at most, so a
 * machine that stays saturated still delivers, more slowly.
 *
 * Busy is the share of all cores that went, over the last sample, to user, system and interrupt time
 * (/proc/stat). Niced processes' time is not counted (the webhooks process's own, a bench's receivers),
 * nor steal (holding gives none of it back). A process that only delivers also leaves out its own
 * system time (and its user time, if not niced). Linux only: elsewhere it never holds.
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
  /** this process does nothing but deliver: its own CPU is not the gateway's and is left out */
  leaveOutOwn: boolean;
  /** told when the gate starts or stops holding, and when it cannot read the machine's CPU */
  onChange?: (holding: boolean, busyPercent: number | null, err?: Error) => void;
  /** reads /proc/stat's text (tests feed their own) */
  readStat?: () => Promise<string>;
  /** this process's CPU so far, µs (tests feed their own) */
  ownCpu?: () => { user: number; system: number; niced: boolean };
}

/** /proc/stat counts in USER_HZ ticks, 100 per second on every Linux architecture Node runs on. */
const MS_PER_TICK = 10;
/** Once holding, the gate lets go only this far below its limit: a busy share hovering at it does not flap. */
const RELEASE_MARGIN_PERCENT = 5;

interface CpuSample {
  /** all time of all cores, ms */
  totalMs: number;
  /** user + system + irq + softirq of all cores, ms (nice, idle, iowait and steal left out) */
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
    normalMs: (user + system + irq + softirq) * MS_PER_TICK,
  };
}

const processCpu = () => ({ ...process.cpuUsage(), niced: getPriority() > 0 });

export function cpuGate(opts: CpuGateOptions): CpuGate {
  const readStat = opts.readStat ?? (() => readFile('/proc/stat', 'utf8'));
  const ownCpu = opts.ownCpu ?? processCpu;
  let previous: { sample: CpuSample; user: number; system: number } | null = null;
  let busy: number | null = null;
  let holding = false;
  let stopped = false;
  let failing = false;
  const waiters = new Set<() => void>();

  const release = () => {
    for (const resolve of waiters) resolve();
    waiters.clear();
  };
  const setHolding = (hold: boolean, err?: Error) => {
    if (hold !== holding) {
      holding = hold;
      opts.onChange?.(holding, busy, err);
    }
    if (!holding) release();
  };
  /** One sample; false when /proc/stat cannot be read at all (not Linux): the gate then never holds. */
  const sample = async (): Promise<boolean> => {
    let current: CpuSample | null;
    try {
      current = parseProcStat(await readStat());
      if (!current) throw new Error('/proc/stat has no cpu line');
    } catch (err) {
      // Never read: nothing to go by. Read before: a passing failure (too many open files) lets go meanwhile.
      if (!previous) return false;
      if (!failing && !holding) opts.onChange?.(false, busy, err as Error);
      failing = true;
      setHolding(false, err as Error);
      return true;
    }
    failing = false;
    const own = ownCpu();
    if (previous && current.totalMs > previous.sample.totalMs) {
      // This process's share, from the deltas: its nice value may change between two samples (at start-up).
      const ownMs = opts.leaveOutOwn
        ? (own.system - previous.system + (own.niced ? 0 : own.user - previous.user)) / 1000
        : 0;
      const others = current.normalMs - previous.sample.normalMs - ownMs;
      busy = Math.max(0, Math.min(100, (100 * others) / (current.totalMs - previous.sample.totalMs)));
      setHolding(holding ? busy > opts.holdAbovePercent - RELEASE_MARGIN_PERCENT : busy > opts.holdAbovePercent);
    }
    previous = { sample: current, user: own.user, system: own.system };
    return true;
  };
  let timer: NodeJS.Timeout | undefined;
  const loop = async () => {
    if (stopped) return;
    if (!(await sample().catch(() => true))) return;
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
