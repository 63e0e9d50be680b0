import { Router } from 'express';
import { StatementService } from '../services/statement.service.js';
import { statementParams, statementQuery } from './statement.schemas.js';
import { validate, ok } from './validation.js';

/** `/api/v1/billing/statements/{YYYY-MM}`: a user's monthly statement, JSON or CSV. */
export function statementRoutes(statements: StatementService): Router {
  const router = Router();
  router.get('/statements/:month', async (req, res) => {
    const { month } = validate(statementParams, req.params, 'query');
    const q = validate(statementQuery, req.query, 'query');
    const statement = await statements.monthly(q.user_id, month);
    if (q.format === 'csv') {
      const name = `statement-${q.user_id.replace(/[^A-Za-z0-9_.-]/g, '_')}-${month}.csv`;
      res.set('Content-Type', 'text/csv; charset=utf-8');
      res.set('Content-Disposition', `attachment; filename="${name}"`);
      res.send(StatementService.toCsv(statement));
      return;
    }
    res.json(ok(statement));
  });
  return router;
}
