import type { ServiceConfig } from '../config/config.js';
import { AppError } from '../lib/errors.js';
import { formatMoney } from '../lib/money.js';

/** A catalogue entry with its price as the Lua scripts take it, derived once at start-up. */
export interface CatalogueEntry extends ServiceConfig {
  /** unit price in micro-units as a decimal string; '' for a free-only service */
  readonly priceArg: string;
}

/** The configured service catalogue: free quota and unit price of each billable service. */
export class CatalogueService {
  private readonly byName: ReadonlyMap<string, CatalogueEntry>;

  constructor(
    readonly services: readonly ServiceConfig[],
    private readonly currency: string,
  ) {
    this.byName = new Map(services.map((s) => [s.name, { ...s, priceArg: s.unitPrice?.toString() ?? '' }]));
  }

  get(name: string): CatalogueEntry {
    const s = this.byName.get(name);
    if (!s)
      throw new AppError('UNKNOWN_SERVICE', `unknown service: ${name}`, [
        { field: 'service_name', message: `must be one of: ${[...this.byName.keys()].join(', ')}` },
      ]);
    return s;
  }

  list() {
    return this.services.map((s) => ({
      serviceName: s.name,
      freeQuota: s.freeQuota,
      unitPrice: s.unitPrice === null ? null : formatMoney(s.unitPrice),
      currency: this.currency,
    }));
  }
}
