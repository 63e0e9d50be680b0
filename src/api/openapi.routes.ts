import express, { Router } from 'express';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { buildOpenApiDocument, type OpenApiOptions } from './openapi.document.js';

/** Where an npm package's files are, wherever node_modules is (source tree or a built copy). */
export function packageDir(name: string): string {
  return dirname(createRequire(import.meta.url).resolve(`${name}/package.json`));
}

const DOCS_PAGE = `<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Billing service API</title>
  <link rel="stylesheet" href="/docs/assets/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/assets/swagger-ui-bundle.js"></script>
  <script src="/docs/init.js"></script>
</body>
</html>
`;

const DOCS_INIT = `window.ui = SwaggerUIBundle({ url: '/openapi.json', dom_id: '#swagger-ui', deepLinking: true });\n`;

/**
 * `GET /openapi.json` (the document, built once) and `GET /docs` (Swagger UI from the npm package,
 * served from node_modules: no CDN). Public: the document holds no secret, only the API's shape.
 */
export function openApiRoutes(opts: OpenApiOptions): Router {
  const router = Router();
  const document = JSON.stringify(buildOpenApiDocument(opts));
  router.get('/openapi.json', (_req, res) => {
    res.type('application/json').send(document);
  });
  router.get('/docs', (_req, res) => {
    res.type('text/html').send(DOCS_PAGE);
  });
  router.get('/docs/init.js', (_req, res) => {
    res.type('text/javascript').send(DOCS_INIT);
  });
  router.use('/docs/assets', express.static(packageDir('swagger-ui-dist'), { index: false, maxAge: '1h' }));
  return router;
}
