import type { ServiceConfig } from '../config/config.js';
import { AppError } from '../lib/errors.js';
import { formatMoney } from '../lib/money.js';

/** The configured service catalogue: free quota and unit price of each billable service. */
export class CatalogueService {
  private readonly byName: ReadonlyMap<string, ServiceConfig>;

  constructor(
    readonly services: readonly ServiceConfig[],
    private readonly currency: string,
  ) {
    this.byName = new Map(services.map((s) => [s.name, s]));
  }

  get(name: string): ServiceConfig {
    const s = this.byName.get(name);
    if (!s) throw new AppError('UNKNOWN_SERVICE', `unknown service: ${name}`, [{ field: 'service_name', message: `must be one of: ${[...this.byName.keys()].join(', ')}` }]);
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
